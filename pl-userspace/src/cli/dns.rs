//! `pl dns`: the endpoint DNS names each consumer network has and what they answer.
//! With `--config`, read from a config as `pl check` reads it (no kernel, no root);
//! without, asked of the running `pl run`, whose answers follow target health.
//! `--zone-file` prints one network's as an RFC 1035 zone file, for people who serve the
//! names from their own DNS.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use pl_userspace::{
    config::{ConfigErrors, Source},
    control::{self, DEFAULT_INSTANCE},
    dns::{self, NetworkNames},
    model::{HostChecks, LiveInterfaces, Model},
    output::{self, Col},
};

use super::output::OutputArgs;

#[derive(Args)]
pub struct DnsArgs {
    /// Read the names from this config instead of asking the running pl run.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Only this consumer network's names.
    #[arg(long, value_name = "NETWORK")]
    pub network: Option<String>,
    /// Print the network's names as an RFC 1035 zone file (needs --network).
    #[arg(long, requires = "network", conflicts_with_all = ["output", "json"])]
    pub zone_file: bool,
    #[command(flatten)]
    pub out: OutputArgs,
    /// The pl run to ask (without --config).
    #[arg(long, default_value = DEFAULT_INSTANCE)]
    pub instance: String,
}

pub fn run(args: &DnsArgs) -> anyhow::Result<()> {
    let (all, zone) = match &args.config {
        Some(path) => from_config(args, path)?,
        None => control::dns(&args.instance, args.network.clone(), args.zone_file)?,
    };
    if args.zone_file {
        print!("{}", zone.context("--network: no zone file for it")?);
        return Ok(());
    }
    let format = args.out.format();
    if format.is_json() {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    let mut t = output::table(
        format,
        &[
            ("NETWORK", Col::Text),
            ("NAME", Col::Text),
            ("KIND", Col::Text),
            ("ADDRESSES", Col::Text),
        ],
    );
    for n in &all {
        for name in &n.names {
            let addrs: Vec<String> = name.addresses.iter().map(ToString::to_string).collect();
            t.add_row(vec![
                n.network.clone(),
                name.name.clone(),
                format!("{:?}", name.kind).to_lowercase(),
                addrs.join(" "),
            ]);
        }
    }
    print!("{}", output::render(&t));
    Ok(())
}

/// The names `path` gives (and with `--zone-file`, the network's zone file).
fn from_config(
    args: &DnsArgs,
    path: &std::path::Path,
) -> anyhow::Result<(Vec<NetworkNames>, Option<String>)> {
    let src = Source::read(path)?;
    let check = Model::check(&src, &LiveInterfaces, HostChecks::Warnings);
    let model = match check.model {
        Some(m) if check.errors.is_empty() => m,
        _ => return Err(ConfigErrors(check.errors).into()),
    };
    let all = dns::by_network(&model, args.network.as_deref()).with_context(|| {
        format!(
            "--network: {}: no network named {:?}",
            path.display(),
            args.network.as_deref().unwrap_or("")
        )
    })?;
    let zone = match &args.network {
        Some(n) if args.zone_file => {
            dns::network_id(&model, n).map(|id| dns::zone_file(&model, id))
        }
        _ => None,
    };
    Ok((all, zone))
}
