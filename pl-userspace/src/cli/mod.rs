//! The `pl` command line: the clap definitions and one module per command. Each command
//! parses its flags, asks the library, and prints; none holds data-path logic.

mod admin;
mod bench;
mod endpoints;
mod flows;
mod lab;
mod output;
mod run;
mod stats;
mod status;

use clap::{Parser, Subcommand};
use pl_userspace::{config_edit::Decision, control, daemon, dataplane::Dataplane};

#[derive(Parser)]
#[command(name = "pl", version, about = "A PrivateLink-style data plane in XDP")]
pub struct Cli {
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
    /// How the `pl run` here is doing: versions, uptime, config, interfaces, flow table,
    /// service health, last reload. Exits 0 healthy, 1 degraded, 2 when no pl run answers.
    Status(status::StatusArgs),
    /// List every endpoint: service, network, addresses, state and live flows.
    Endpoints(endpoints::EndpointsArgs),
    /// Accept ENDPOINT: move it to its service's accepted_endpoints in the config file
    /// (edited in place, comments kept) and have pl run reload it.
    Accept(endpoints::DecideArgs),
    /// Reject ENDPOINT: move it to its service's rejected_endpoints and have pl run reload;
    /// its live connections are cut at once.
    Reject(endpoints::DecideArgs),
    /// Print the version of this pl and of the pl run here, if one answers.
    Version(status::VersionArgs),
    /// Build or remove a veth lab of network namespaces.
    Lab {
        #[command(subcommand)]
        command: lab::LabCommand,
    },
    /// Bring up a lab, run pl on it, push traffic through it, print counters, tear down.
    Demo(lab::DemoArgs),
    /// Measure packet rates through pl against the bare-redirect limit on a lab.
    Bench(bench::BenchArgs),
}

/// Runs one command to its end.
pub async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run(args) => daemon::run(args.into_options()).await,
        Command::Stats(args) => stats::run(&args),
        Command::Down(args) => admin::down(&args),
        Command::Flows(args) => flows::run(&args),
        Command::Reload(args) => admin::reload(&args),
        Command::Status(args) => status::run(&args),
        Command::Endpoints(args) => endpoints::endpoints(&args),
        Command::Accept(args) => endpoints::decide(&args, Decision::Accept),
        Command::Reject(args) => endpoints::decide(&args, Decision::Reject),
        Command::Version(args) => status::version(&args),
        Command::Lab { command } => lab::lab(command),
        Command::Demo(args) => lab::demo(args).await,
        Command::Bench(args) => bench::run(&args),
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
