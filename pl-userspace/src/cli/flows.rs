//! `pl flows`: the live flows, or a stream of flow events with `--watch`.

use clap::Args;
use pl_userspace::{
    control::{self, DEFAULT_INSTANCE},
    flows,
};

use super::{left_behind, output::OutputArgs};

#[derive(Args)]
pub struct FlowsArgs {
    #[command(flatten)]
    pub out: OutputArgs,
    /// Only this endpoint's flows.
    #[arg(long, value_name = "NAME")]
    pub endpoint: Option<String>,
    /// Only this service's flows.
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,
    /// The provider's question: which consumer owns the connection from this NLB address and
    /// port? IPv6 as `[ADDR]:PORT`. (Errors if no live flow holds it.)
    #[arg(long, value_name = "IP:PORT")]
    pub nlb: Option<std::net::SocketAddr>,
    /// Stream flow opens, refusals (with the reason) and closes as they happen, one line
    /// each, starting with the time (RFC 3339 UTC); with --json, one JSON object a line with
    /// a `time` field. Runs until interrupted.
    #[arg(long)]
    pub watch: bool,
    /// The `pl run` to ask: the --instance it was started with.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_INSTANCE)]
    pub instance: String,
}

pub fn run(args: &FlowsArgs) -> anyhow::Result<()> {
    let filter = control::FlowFilter {
        endpoint: args.endpoint.clone(),
        service: args.service.clone(),
        nlb: args.nlb,
    };
    if args.watch {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        control::watch(&args.instance, |e| {
            if filter.matches_event(&e) {
                let line = if args.out.format().is_json() {
                    serde_json::to_string(&e).expect("an event serializes")
                } else {
                    e.line()
                };
                // A closed pipe (`| head`) ends the watch quietly.
                if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                    std::process::exit(0);
                }
            }
        })?;
        anyhow::bail!("pl run (instance {:?}) stopped", args.instance);
    }
    let flows = match control::flows(&args.instance, filter.clone()) {
        Ok(f) => f,
        Err(e) => left_behind(&args.instance, e)?.flows(&filter)?,
    };
    if let Some(nlb) = args.nlb
        && flows.is_empty()
    {
        anyhow::bail!("--nlb {nlb}: no live flow holds this NLB address and port");
    }
    let format = args.out.format();
    if format.is_json() {
        println!("{}", serde_json::to_string_pretty(&flows)?);
    } else {
        print!("{}", flows::text(&flows, format));
    }
    Ok(())
}
