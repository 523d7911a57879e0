//! The `pl` command line: the clap definitions and one module per command. Each command
//! parses its flags, asks the library, and prints; none holds data-path logic.

mod admin;
mod bench;
mod check;
mod dns;
mod docs;
mod endpoints;
pub mod exit;
mod flows;
mod lab;
pub mod logging;
mod output;
mod run;
mod stats;
mod status;

use clap::{Parser, Subcommand};
use pl_userspace::{config_edit::Decision, control, daemon, dataplane::Dataplane};

#[derive(Parser)]
#[command(
    name = "pl",
    version,
    about = "A PrivateLink-style data plane in XDP",
    // Help wraps at the terminal's width, and at 100 columns on a wider one.
    max_term_width = 100
)]
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
    /// Attach the data plane to the interfaces and run until SIGINT/SIGTERM.
    ///
    /// Loads the XDP program and attaches it to every interface the config names (or that
    /// --interface names, to observe). The data plane outlives pl run: a restart takes over
    /// its links and flows, and pl down removes it.
    Run(run::RunArgs),
    /// Detach what `pl run` left in this network namespace and free its flow table.
    Down(admin::DownArgs),
    /// List the live flows, or stream flow events with --watch.
    ///
    /// The flows of the `pl run` in this network namespace. The table (fits 100 columns)
    /// shows endpoint, service, protocol, consumer, target, state and idle time; `-o wide`
    /// adds the network, the endpoint address, the NLB side, the age and the counters;
    /// `-o json` (or --json) prints every field as JSON.
    Flows(flows::FlowsArgs),
    /// Print the counters of the `pl run` in this network namespace.
    ///
    /// The table (fits 100 columns) has a row per counter of each interface and endpoint,
    /// zeros left out unless --all, then the targets: zone, router, MAC, health and flows.
    /// `-o wide` has a row per interface and endpoint and a column per counter; `-o json`
    /// (or --json) prints the report as JSON.
    Stats(stats::StatsArgs),
    /// Make the `pl run` in this network namespace reload its config.
    ///
    /// Its own file, or the one --config names. The config is validated in full first; a
    /// bad one changes nothing. SIGHUP does the same.
    Reload(admin::ReloadArgs),
    /// Validate a config in full, as `pl run` would, without the kernel or root.
    ///
    /// Exit 0 if it is valid (warnings on stderr), 4 with every error if not.
    Check(check::CheckArgs),
    /// One screen on the `pl run` here: health, versions, flow table, last reload.
    ///
    /// Versions, uptime, config, interfaces, flow table, service health, last reload.
    /// Exits 0 healthy, 1 degraded, 2 when no pl run answers.
    Status(status::StatusArgs),
    /// List every endpoint: service, network, addresses, state and live flows.
    Endpoints(endpoints::EndpointsArgs),
    /// List each network's endpoint DNS names and what pl run answers for them now.
    ///
    /// Regional (`<endpoint>.<service>.<domain>`), zonal (`<endpoint>-<zone>...`) and
    /// private names, per network: a network sees only its own endpoints. Regional and
    /// private answers leave out zones without a healthy target. `--config FILE` reads
    /// a config instead (no pl run, no root needed). `--zone-file` prints one network's
    /// as an RFC 1035 zone file.
    Dns(dns::DnsArgs),
    /// Accept ENDPOINT: edit the config in place and reload.
    ///
    /// Moves it to its service's accepted_endpoints in the config file (edited in place,
    /// comments kept) and has pl run reload it.
    Accept(endpoints::DecideArgs),
    /// Reject ENDPOINT: edit the config in place, reload, cut its connections.
    ///
    /// Moves it to its service's rejected_endpoints and has pl run reload; its live
    /// connections are cut at once.
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
        Command::Check(args) => check::run(&args),
        Command::Status(args) => status::run(&args),
        Command::Endpoints(args) => endpoints::endpoints(&args),
        Command::Dns(args) => dns::run(&args),
        Command::Accept(args) => endpoints::decide(&args, Decision::Accept),
        Command::Reject(args) => endpoints::decide(&args, Decision::Reject),
        Command::Version(args) => status::version(&args),
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
    let dp = match Dataplane::left_behind(instance) {
        Ok(Some(dp)) => dp,
        Ok(None) => return Err(err.into()),
        Err(e) => {
            let e = anyhow::Error::new(e);
            // Only root may read what a pl run left: to anyone else, no pl run is the answer.
            let denied = exit::classify(&e) == exit::Exit::Denied;
            return Err(if denied { err.into() } else { e });
        }
    };
    eprintln!(
        "pl: no pl run (instance {instance:?}) is active here; reading the data plane it left (still forwarding; target health unknown)"
    );
    Ok(dp)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    /// Every command below `cmd`, subcommands included, with its path (`pl lab up`).
    fn commands(cmd: &clap::Command, path: &str, out: &mut Vec<(String, clap::Command)>) {
        for sub in cmd.get_subcommands() {
            let path = format!("{path} {}", sub.get_name());
            out.push((path.clone(), sub.clone()));
            commands(sub, &path, out);
        }
    }

    #[test]
    fn summaries_are_one_short_line_and_help_fits_100_columns() {
        let mut all = vec![("pl".to_owned(), Cli::command())];
        commands(&Cli::command(), "pl", &mut all);
        for (path, cmd) in all {
            let about = cmd.get_about().map(ToString::to_string).unwrap_or_default();
            assert!(
                about.chars().count() <= 80 && !about.contains('\n'),
                "{path}: the summary `pl --help` lists is {} characters (at most 80; \
                 the doc comment's first paragraph, details after a blank line): {about}",
                about.chars().count()
            );
            let help = cmd.term_width(100).render_long_help().to_string();
            for line in help.lines() {
                assert!(
                    line.chars().count() <= 100,
                    "{path} --help has a line over 100 columns:\n{line}"
                );
            }
        }
    }
}
