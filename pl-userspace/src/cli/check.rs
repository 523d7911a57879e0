//! `pl check`: validates a config in full, as `pl run` would, without the kernel: no BPF,
//! no root. What only this host can say (an interface it lacks, a file others could
//! write) is a warning unless `--strict`.

use std::path::PathBuf;

use clap::Args;
use pl_userspace::{
    config::{ConfigError, Source},
    model::{Check, HostChecks, LiveInterfaces, Model},
};
use serde::Serialize;

use super::{
    exit::{Exit, Reported},
    output::OutputArgs,
};

#[derive(Args)]
pub struct CheckArgs {
    /// The config to check.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,
    /// Fail (exit 4) on what only this host can say too: an interface missing from this
    /// network namespace, a file another user could write. Use it where pl will run.
    #[arg(long)]
    pub strict: bool,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// `pl check -o json`: the verdict, and every error and warning with its fields.
#[derive(Serialize)]
struct Verdict<'a> {
    file: &'a std::path::Path,
    valid: bool,
    errors: &'a [ConfigError],
    warnings: &'a [ConfigError],
}

pub fn run(args: &CheckArgs) -> anyhow::Result<()> {
    let check = match read(args) {
        Ok((check, None)) => check,
        // pl run would refuse a file others could write: this host's business too.
        Ok((mut check, Some(p))) if args.strict => {
            check.errors.insert(0, p);
            check.model = None;
            check
        }
        Ok((mut check, Some(p))) => {
            check.warnings.insert(0, p);
            check
        }
        Err(unreadable) => Check {
            model: None,
            errors: vec![unreadable],
            warnings: Vec::new(),
        },
    };
    print(args, &check)
}

/// The config checked, and why pl run would not trust its file, if it would not.
fn read(args: &CheckArgs) -> Result<(Check, Option<ConfigError>), ConfigError> {
    let host = if args.strict {
        HostChecks::Errors
    } else {
        HostChecks::Warnings
    };
    let (src, problem) = match Source::read_trusted(&args.config, false) {
        Ok((src, _)) => (src, None),
        // Readable but not trusted: the refusal is the file's problem, not the config's.
        Err(refusal) => (Source::read(&args.config)?, Some(refusal)),
    };
    Ok((Model::check(&src, &LiveInterfaces, host), problem))
}

fn print(args: &CheckArgs, check: &Check) -> anyhow::Result<()> {
    let valid = check.errors.is_empty();
    if args.out.format().is_json() {
        let verdict = Verdict {
            file: &args.config,
            valid,
            errors: &check.errors,
            warnings: &check.warnings,
        };
        println!("{}", serde_json::to_string_pretty(&verdict)?);
    } else {
        for w in &check.warnings {
            eprintln!("pl: warning: {w}");
        }
        for e in &check.errors {
            eprintln!("pl: error: {e}");
        }
        match &check.model {
            Some(m) if valid => println!(
                "{}: valid: {}, {}, {}{}",
                args.config.display(),
                count(m.networks.len(), "network"),
                count(m.services.len(), "service"),
                count(m.endpoints.len(), "endpoint"),
                match check.warnings.len() {
                    0 => String::new(),
                    n => format!(" ({}, on stderr)", count(n, "warning")),
                }
            ),
            _ => eprintln!(
                "pl check: {}: invalid: {}",
                args.config.display(),
                count(check.errors.len(), "error")
            ),
        }
    }
    if valid {
        Ok(())
    } else {
        // Printed above: main only exits with the status.
        Err(Reported(Exit::Config).into())
    }
}

/// `n things`, or `1 thing`.
fn count(n: usize, thing: &str) -> String {
    format!("{n} {thing}{}", if n == 1 { "" } else { "s" })
}
