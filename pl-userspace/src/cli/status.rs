//! `pl status` and `pl version`: how the `pl run` here is doing, and which versions talk.

use std::io::Write as _;

use clap::Args;
use pl_userspace::{
    control::{self, DEFAULT_INSTANCE},
    status::{EXIT_NO_DAEMON, StatusReport, VERSION},
};

use super::{
    exit::{Exit, Reported},
    output::OutputArgs,
};

#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub out: OutputArgs,
    #[arg(long, default_value = DEFAULT_INSTANCE)]
    pub instance: String,
}

#[derive(Args)]
pub struct VersionArgs {
    #[command(flatten)]
    pub out: OutputArgs,
    #[arg(long, default_value = DEFAULT_INSTANCE)]
    pub instance: String,
}

/// `pl status --json`: both versions, the verdict, and the daemon's report (null without one).
#[derive(serde::Serialize)]
struct StatusJson<'a> {
    client: Client,
    healthy: bool,
    problems: Vec<String>,
    daemon: Option<&'a StatusReport>,
    error: Option<String>,
}

#[derive(serde::Serialize)]
struct Client {
    version: &'static str,
}

/// Prints the status and exits 0 (healthy), 1 (degraded) or 2 (no daemon answered).
pub fn run(args: &StatusArgs) -> anyhow::Result<()> {
    let format = args.out.format();
    let (code, text) = match control::status(&args.instance) {
        Ok(report) => {
            let code = report.exit_code();
            let text = if format.is_json() {
                let problems = report.problems();
                serde_json::to_string_pretty(&StatusJson {
                    client: Client { version: VERSION },
                    healthy: problems.is_empty(),
                    problems,
                    daemon: Some(&report),
                    error: None,
                })? + "\n"
            } else {
                report.render(VERSION, format)
            };
            (code, text)
        }
        Err(e) => {
            let why = e.to_string();
            let text = if format.is_json() {
                serde_json::to_string_pretty(&StatusJson {
                    client: Client { version: VERSION },
                    healthy: false,
                    problems: vec![why.clone()],
                    daemon: None,
                    error: Some(why),
                })? + "\n"
            } else {
                format!("Status:  no daemon: {why}\nClient:  pl {VERSION}\n")
            };
            (EXIT_NO_DAEMON, text)
        }
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    match code {
        0 => Ok(()),
        c => Err(Reported(Exit::Status(c)).into()),
    }
}

/// `pl version --json`.
#[derive(serde::Serialize)]
struct VersionJson {
    client: Client,
    daemon: Option<String>,
    /// Why no daemon version: none answered (or it refused).
    daemon_error: Option<String>,
}

/// The client's version, and the daemon's if one answers (none is not an error).
pub fn version(args: &VersionArgs) -> anyhow::Result<()> {
    let daemon = control::status(&args.instance).map(|r| r.version);
    if args.out.format().is_json() {
        let json = VersionJson {
            client: Client { version: VERSION },
            daemon_error: daemon.as_ref().err().map(ToString::to_string),
            daemon: daemon.ok(),
        };
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(());
    }
    println!("client: pl {VERSION} ({})", env!("PL_GIT_REVISION"));
    match daemon {
        Ok(v) => println!("daemon: pl {v} (instance {:?})", args.instance),
        Err(e) => println!("daemon: none answered ({e})"),
    }
    Ok(())
}
