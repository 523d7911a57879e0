//! `pl bench`: packet rates and real TCP through pl against its baselines.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use pl_userspace::lab::bench;

#[derive(Args)]
pub struct BenchArgs {
    #[arg(long, default_value = "pl-bench-")]
    pub prefix: String,
    /// A short run (CI-sized): fewer repeats, shorter windows, up to 64k flows.
    #[arg(long)]
    pub quick: bool,
    /// Only compare flow-table designs (one lookup per run, no lab, no frames).
    #[arg(long, conflicts_with = "report")]
    pub tables_only: bool,
    /// Only time the data path stage by stage (on the lab, no frames on the wire).
    #[arg(long, conflicts_with_all = ["report", "tables_only"])]
    pub stages_only: bool,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write BENCHMARKS.md and bench.svg (the plot) into this directory.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Measure nothing: render the results of an earlier `--json` run (with --report).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["quick", "json"])]
    pub from_json: Option<PathBuf>,
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let results = if let Some(path) = &args.from_json {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{}: not pl bench JSON", path.display()))?
    } else {
        let opts = bench::BenchOptions {
            prefix: args.prefix.clone(),
            quick: args.quick,
            tables_only: args.tables_only,
            stages_only: args.stages_only,
        };
        let exe = std::env::current_exe().context("locating the pl binary")?;
        bench::run(&opts, &exe).context("pl bench")?
    };
    print!("{}", bench::table(&results));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&results)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("results written to {}", path.display());
    }
    if let Some(dir) = &args.report {
        let command = if results.quick {
            "cargo xtask bench --quick"
        } else {
            "cargo xtask bench"
        };
        bench::write_report(&results, dir, command)?;
        println!("BENCHMARKS.md and bench.svg written to {}", dir.display());
    }
    Ok(())
}
