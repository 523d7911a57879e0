//! `pl`: run the XDP data path, read its counters, and drive the lab.

use std::{path::PathBuf, time::Duration};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use pl_userspace::{
    control::{self, DEFAULT_INSTANCE, SentConfig},
    daemon,
    dataplane::{self, Dataplane, Mode},
    flows,
    lab::{
        Lab, bench,
        demo::{self, DEFAULT_PREFIX, DemoOptions},
    },
};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Parser)]
#[command(name = "pl", version, about = "A PrivateLink-style data plane in XDP")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load the XDP program, attach it to the interfaces and run until SIGINT/SIGTERM. The
    /// data plane outlives it: a restart takes over its links and flows; `pl down` removes it.
    Run(RunArgs),
    /// Detach what `pl run` left in this network namespace and free its flow table.
    Down(DownArgs),
    /// List the live flows of the `pl run` in this network namespace: both sides' tuples,
    /// endpoint, target, state, age, idle time and counters.
    Flows(FlowsArgs),
    /// Print the counters of the `pl run` in this network namespace.
    Stats(StatsArgs),
    /// Make the `pl run` in this network namespace reload its config (or FILE): it is
    /// validated in full first, and a bad one changes nothing. SIGHUP does the same.
    Reload(ReloadArgs),
    /// Build or remove a veth lab of network namespaces.
    Lab {
        #[command(subcommand)]
        command: LabCommand,
    },
    /// Bring up a lab, run pl on it, push traffic through it, print counters, tear down.
    Demo(DemoArgs),
    /// Measure packet rates through pl against the bare-redirect limit on a lab.
    Bench(BenchArgs),
}

#[derive(Args)]
struct BenchArgs {
    #[arg(long, default_value = "pl-bench-")]
    prefix: String,
    /// A short run (CI-sized): fewer repeats, shorter windows, up to 64k flows.
    #[arg(long)]
    quick: bool,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write BENCHMARKS.md and bench.svg (the plot) into this directory.
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
    /// Measure nothing: render the results of an earlier `--json` run (with --report).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["quick", "json"])]
    from_json: Option<PathBuf>,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["config", "interfaces"])))]
struct RunArgs {
    /// The PrivateLink config (TOML): networks, services, endpoints.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Observe only: attach to these interfaces, count frames and pass them on.
    #[arg(
        long = "interface",
        short = 'i',
        value_name = "IF",
        conflicts_with = "config"
    )]
    interfaces: Vec<String>,
    /// Attach in generic (skb) mode instead of native driver mode: needs no driver support,
    /// but every packet becomes an skb first (several times slower than native), and an
    /// interface with GRO or LRO on is refused (merged packets NAT cannot checksum).
    #[arg(long)]
    skb: bool,
    /// Start with empty tables instead of taking over the flows (and ids) the last run left;
    /// its links are still replaced atomically.
    #[arg(long)]
    fresh: bool,
    /// Name of this instance's control socket, for several pl runs in one namespace.
    #[arg(long, default_value = DEFAULT_INSTANCE)]
    instance: String,
    /// Serve Prometheus metrics (OpenMetrics text) at http://ADDR/metrics, e.g. 127.0.0.1:9464
    /// (bound in pl run's network namespace; bind it to a management address).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    /// Members of this group (name or gid) may use `pl stats`, `pl flows` and `pl flows
    /// --watch`; only root may do anything else. Default: nobody but root.
    #[arg(long, value_name = "GROUP")]
    read_group: Option<String>,
    /// Use a config file that a user other than root could change (writable by group or
    /// others, or owned by another user), with a warning, instead of refusing it.
    #[arg(long)]
    insecure_config: bool,
}

impl RunArgs {
    fn into_options(self) -> daemon::Options {
        daemon::Options {
            config: self.config,
            interfaces: self.interfaces,
            mode: if self.skb { Mode::Skb } else { Mode::Native },
            fresh: self.fresh,
            instance: self.instance,
            metrics: self.metrics,
            read_group: self.read_group,
            insecure_config: self.insecure_config,
        }
    }
}

#[derive(Args)]
struct FlowsArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Only this endpoint's flows.
    #[arg(long, value_name = "NAME")]
    endpoint: Option<String>,
    /// Only this service's flows.
    #[arg(long, value_name = "NAME")]
    service: Option<String>,
    /// The provider's question: which consumer owns the connection from this NLB address and
    /// port? (Errors if no live flow holds it.)
    #[arg(long, value_name = "IP:PORT")]
    nlb: Option<std::net::SocketAddrV4>,
    /// Stream flow opens, refusals (with the reason) and closes as they happen, one line
    /// each (JSON with --json), until interrupted.
    #[arg(long)]
    watch: bool,
    #[arg(long, default_value = DEFAULT_INSTANCE)]
    instance: String,
}

#[derive(Args)]
struct DownArgs {
    #[arg(long, default_value = DEFAULT_INSTANCE)]
    instance: String,
}

#[derive(Args)]
struct ReloadArgs {
    /// A new config file, read here and sent to `pl run` (which keeps it as the running
    /// config); default: `pl run` reads again the file it was started with.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    #[arg(long, default_value = DEFAULT_INSTANCE)]
    instance: String,
}

#[derive(Args)]
struct StatsArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[arg(long, default_value = DEFAULT_INSTANCE)]
    instance: String,
}

#[derive(Subcommand)]
enum LabCommand {
    /// Create the lab (replacing one with the same prefix) and print its topology.
    Up {
        #[arg(long)]
        prefix: String,
        /// Print the topology as JSON.
        #[arg(long)]
        json: bool,
        /// Every link's MTU (both veth ends); 9000 for jumbo frames.
        #[arg(long, default_value_t = pl_userspace::lab::DEFAULT_MTU, value_parser = clap::value_parser!(u32).range(68..=65535))]
        mtu: u32,
    },
    /// Remove everything the lab made. Idempotent.
    Down {
        #[arg(long)]
        prefix: String,
    },
}

#[derive(Args)]
struct DemoArgs {
    #[arg(long, default_value = DEFAULT_PREFIX)]
    prefix: String,
    /// UDP requests from each consumer network.
    #[arg(long, default_value_t = 10)]
    packets: usize,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Logs (pl run's, and the XDP program's through aya-log) go to stderr; RUST_LOG filters.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Run(args) => daemon::run(args.into_options()).await,
        Command::Stats(args) => stats(&args),
        Command::Down(args) => down(&args),
        Command::Flows(args) => flows_cmd(&args),
        Command::Reload(args) => reload_cmd(&args),
        Command::Lab { command } => lab(command),
        Command::Demo(args) => demo(args).await,
        Command::Bench(args) => bench(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pl: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn flows_cmd(args: &FlowsArgs) -> anyhow::Result<()> {
    let filter = control::FlowFilter {
        endpoint: args.endpoint.clone(),
        service: args.service.clone(),
        nlb: args.nlb,
    };
    if args.watch {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        control::watch(&args.instance, |e| {
            if filter.matches_event(&e) {
                let line = if args.json {
                    serde_json::to_string(&e).expect("an event serializes")
                } else {
                    e.line()
                };
                // A closed pipe (`| head`) ends the watch quietly.
                if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                    std::process::exit(0);
                }
            }
        })?;
        anyhow::bail!("pl run (instance {:?}) stopped", args.instance);
    }
    let flows = match control::flows(&args.instance, filter.clone()) {
        Ok(f) => f,
        Err(e) => left_behind(&args.instance, e)?.flows(&filter)?,
    };
    if let Some(nlb) = args.nlb
        && flows.is_empty()
    {
        anyhow::bail!("--nlb {nlb}: no live flow holds this NLB address and port");
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&flows)?);
    } else {
        print!("{}", flows::table(&flows));
    }
    Ok(())
}

fn down(args: &DownArgs) -> anyhow::Result<()> {
    match dataplane::down(&args.instance)? {
        None => println!("pl down: nothing of instance {:?} here", args.instance),
        Some(ifaces) => {
            let names: Vec<&str> = ifaces.iter().map(|i| i.name.as_str()).collect();
            println!(
                "pl down: detached from {} and removed instance {:?}'s flows and state",
                if names.is_empty() {
                    "nothing".to_owned()
                } else {
                    names.join(", ")
                },
                args.instance
            );
        }
    }
    Ok(())
}

fn reload_cmd(args: &ReloadArgs) -> anyhow::Result<()> {
    // pl run opens no path a client names: the file is read here and its text sent.
    let sent = args
        .config
        .as_ref()
        .map(|p| {
            std::fs::read_to_string(p)
                .map(|text| SentConfig {
                    name: p.display().to_string(),
                    text,
                })
                .with_context(|| format!("{}: cannot read", p.display()))
        })
        .transpose()?;
    println!("{}", control::reload(&args.instance, sent)?);
    Ok(())
}

/// Without a `pl run`, the data plane it left (if any) is read from its pins.
fn left_behind(instance: &str, err: control::ControlError) -> anyhow::Result<Dataplane> {
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

fn stats(args: &StatsArgs) -> anyhow::Result<()> {
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

fn lab(command: LabCommand) -> anyhow::Result<()> {
    match command {
        LabCommand::Up { prefix, json, mtu } => {
            let topo = Lab::new(&prefix)?.with_mtu(mtu).up()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&topo)?);
            } else {
                print!("{topo}");
            }
        }
        LabCommand::Down { prefix } => {
            Lab::new(&prefix)?.down()?;
            println!("lab {prefix}: down");
        }
    }
    Ok(())
}

fn bench(args: &BenchArgs) -> anyhow::Result<()> {
    let results = if let Some(path) = &args.from_json {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{}: not pl bench JSON", path.display()))?
    } else {
        let opts = bench::BenchOptions {
            prefix: args.prefix.clone(),
            quick: args.quick,
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

async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let opts = DemoOptions {
        prefix: args.prefix,
        packets: args.packets,
    };
    let lab = Lab::new(&opts.prefix)?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut steps = tokio::task::spawn_blocking(move || demo::run(&opts));
    let (signal, mut code) = tokio::select! {
        done = &mut steps => return done.context("pl demo panicked")?.context("pl demo"),
        _ = term.recv() => ("SIGTERM", 143),
        _ = int.recv() => ("SIGINT", 130),
    };
    // The steps run on a blocking thread that cannot be cancelled: tear the lab down from
    // here, which stops `pl run` inside it (it detaches) and makes the steps fail fast,
    // then let the steps' own teardown finish before exiting.
    let prefix = lab.prefix();
    eprintln!("pl demo: interrupted ({signal}); tearing down lab {prefix}");
    if let Err(e) = lab.down() {
        eprintln!(
            "pl demo: teardown failed: {:#}; run `pl lab down --prefix {prefix}`",
            anyhow::Error::from(e)
        );
        code = 1;
    }
    if tokio::time::timeout(Duration::from_secs(30), steps)
        .await
        .is_err()
    {
        eprintln!(
            "pl demo: its steps did not stop within 30 s; run `pl lab down --prefix {prefix}`"
        );
        code = 1;
    }
    std::process::exit(code);
}
