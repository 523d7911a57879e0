//! `pl stats`: the counters.

use clap::Args;
use pl_userspace::control::{self, DEFAULT_INSTANCE};

use super::{left_behind, output::OutputArgs};

#[derive(Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub out: OutputArgs,
    #[arg(long, default_value = DEFAULT_INSTANCE)]
    pub instance: String,
}

pub fn run(args: &StatsArgs) -> anyhow::Result<()> {
    let report = match control::stats(&args.instance) {
        Ok(r) => r,
        Err(e) => left_behind(&args.instance, e)?.stats(true)?,
    };
    if args.out.format().is_json() {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}
