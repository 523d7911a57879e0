//! The `pl` command line: the clap definitions and one module per command. Each command
//! parses its flags, asks the library, and prints; none holds data-path logic.

mod admin;
mod bench;
mod docs;
mod flows;
mod lab;
pub mod logging;
mod output;
mod run;
mod stats;

use clap::{Parser, Subcommand};
use pl_userspace::{control, daemon, dataplane::Dataplane};

#[derive(Parser)]
#[command(name = "pl", version, about = "A PrivateLink-style data plane in XDP")]
pub struct Cli {
    /// Log lines (on stderr) as text, or as JSON objects one per line (for a log collector).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t,
        value_name = "FORMAT"
    )]
    pub log_format: logging::LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Load the XDP program, attach it to the interfaces and run until SIGINT/SIGTERM. The
    /// data plane outlives it: a restart takes over its links and flows; `pl down` removes it.
    Run(run::RunArgs),
    /// Detach what `pl run` left in this network namespace and free its flow table.
    Down(admin::DownArgs),
    /// List the live flows of the `pl run` in this network namespace: both sides' tuples,
    /// endpoint, target, state, age, idle time and counters.
    Flows(flows::FlowsArgs),
    /// Print the counters of the `pl run` in this network namespace.
    Stats(stats::StatsArgs),
    /// Make the `pl run` in this network namespace reload its config (or FILE): it is
    /// validated in full first, and a bad one changes nothing. SIGHUP does the same.
    Reload(admin::ReloadArgs),
    /// Build or remove a veth lab of network namespaces.
    Lab {
        #[command(subcommand)]
        command: lab::LabCommand,
    },
    /// Bring up a lab, run pl on it, push traffic through it, print counters, tear down.
    Demo(lab::DemoArgs),
    /// Measure packet rates through pl against the bare-redirect limit on a lab.
    Bench(bench::BenchArgs),
    /// Print a completion script: `pl completions bash > /etc/bash_completion.d/pl`.
    Completions(docs::CompletionsArgs),
    /// Write man pages generated from these definitions.
    #[command(hide = true)]
    Man(docs::ManArgs),
}

/// Runs one command to its end.
pub async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run(args) => daemon::run(args.into_options()).await,
        Command::Stats(args) => stats::run(&args),
        Command::Down(args) => admin::down(&args),
        Command::Flows(args) => flows::run(&args),
        Command::Reload(args) => admin::reload(&args),
        Command::Lab { command } => lab::lab(command),
        Command::Demo(args) => lab::demo(args).await,
        Command::Bench(args) => bench::run(&args),
        Command::Completions(args) => {
            docs::completions(&args);
            Ok(())
        }
        Command::Man(args) => docs::man(&args),
    }
}

/// Without a `pl run`, the data plane it left (if any) is read from its pins.
pub(crate) fn left_behind(instance: &str, err: control::ControlError) -> anyhow::Result<Dataplane> {
    if !matches!(err, control::ControlError::NotRunning { .. }) {
        return Err(err.into());
    }
    let Some(dp) = Dataplane::left_behind(instance)? else {
        return Err(err.into());
    };
    eprintln!(
        "pl: no pl run (instance {instance:?}) is active here; reading the data plane it left (still forwarding; target health unknown)"
    );
    Ok(dp)
}
