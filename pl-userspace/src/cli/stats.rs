//! `pl stats`: the counters.

use clap::Args;
use pl_userspace::control::{self, DEFAULT_INSTANCE};

use super::left_behind;

#[derive(Args)]
pub struct StatsArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[arg(long, default_value = DEFAULT_INSTANCE)]
    pub instance: String,
}

pub fn run(args: &StatsArgs) -> anyhow::Result<()> {
    let report = match control::stats(&args.instance) {
        Ok(r) => r,
        Err(e) => left_behind(&args.instance, e)?.stats(true)?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}
