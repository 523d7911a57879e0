//! `pl stats`: the counters.

use clap::Args;
use pl_userspace::control::{self, DEFAULT_INSTANCE};

use super::{left_behind, output::OutputArgs};

#[derive(Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub out: OutputArgs,
    /// Show counters that are 0 too (the table leaves them out; wide and json never do).
    #[arg(long)]
    pub all: bool,
    /// The `pl run` to ask: the --instance it was started with.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_INSTANCE)]
    pub instance: String,
}

pub fn run(args: &StatsArgs) -> anyhow::Result<()> {
    let report = match control::stats(&args.instance) {
        Ok(r) => r,
        Err(e) => left_behind(&args.instance, e)?.stats(true)?,
    };
    let format = args.out.format();
    if format.is_json() {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.text(format, args.all));
    }
    Ok(())
}
