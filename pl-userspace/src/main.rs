//! `pl`: run the XDP data path, read its counters, and drive the lab.

use std::{path::PathBuf, time::Duration};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use pl_common::{event::FlowEvent, maps::PROGRAM_NAME};
use pl_userspace::{
    config::Source,
    control::{self, DEFAULT_INSTANCE, Reply, Request, SentConfig},
    dataplane::{self, Dataplane, Mode, StartOptions},
    flows,
    lab::{
        Lab, bench,
        demo::{self, DEFAULT_PREFIX, DemoOptions},
    },
    metrics,
    model::{LiveInterfaces, Model},
    peer::{self, Policy},
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
        Command::Run(args) => run(args).await,
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

async fn run(args: RunArgs) -> anyhow::Result<()> {
    // Signals first, so a SIGTERM during start-up still ends in the orderly stop below.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    // Whatever pl run writes (state, pins) is root's alone.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let policy = Policy {
        read_group: args.read_group.as_deref().map(peer::group_id).transpose()?,
    };
    // The whole config is validated before anything touches the kernel.
    let model = args
        .config
        .as_deref()
        .map(|p| load_config(p, args.insecure_config))
        .transpose()?;
    // The socket before the program: a second instance fails here with nothing attached.
    let server = control::Server::bind(&args.instance, policy)?;
    // Likewise the metrics listener: a bad address fails with nothing attached.
    let metrics = match args.metrics {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("--metrics {addr}: cannot listen"))?,
        ),
        None => None,
    };
    let mode = if args.skb { Mode::Skb } else { Mode::Native };
    let opts = StartOptions {
        instance: &args.instance,
        mode,
        fresh: args.fresh,
    };
    let mut dp = match model {
        Some(m) => Dataplane::start_model(m, opts)?,
        None => Dataplane::start(&args.interfaces, opts)?,
    };
    let names: Vec<String> = dp
        .interfaces()
        .iter()
        .map(|i| format!("{} (ifindex {})", i.name, i.ifindex))
        .collect();
    tracing::info!(
        "attached {PROGRAM_NAME} in {} mode to {}",
        mode.name(),
        names.join(", ")
    );
    if dp.has_data_path() {
        resolve_targets(&mut dp).await;
        for line in dp.summary().lines() {
            tracing::info!("{}", line.trim_start());
        }
    }
    tracing::info!(
        "control socket @{}; `pl stats` in this network namespace reads the counters",
        server.name()
    );
    tracing::info!(
        "pinned links and maps in {} (they outlive this process; `pl down` removes them)",
        dp.state_dir().display()
    );

    // Control connections and scrapes are served on tasks of their own; only requests that
    // passed the peer check reach this loop, as jobs.
    let (jobs_tx, mut jobs) = tokio::sync::mpsc::channel(64);
    tokio::spawn(server.serve(jobs_tx));
    let (snapshot, scrapes) = tokio::sync::watch::channel(std::sync::Arc::<str>::from(""));
    if let (Some(listener), Some(addr)) = (metrics, args.metrics) {
        tokio::spawn(metrics::serve(listener, scrapes));
        tracing::info!("metrics at http://{addr}/metrics");
    }
    // Flow events for `pl flows --watch`: the program writes them only while someone watches.
    let mut events = dp
        .take_events()
        .map(readable)
        .transpose()
        .context("polling the flow event ring buffer")?;
    let mut watchers: Vec<control::Watcher> = Vec::new();
    let mut ebpf_log = dp
        .take_logger()
        .map(readable)
        .transpose()
        .context("polling the XDP program's log")?;
    let mut sweeping: Option<tokio::task::JoinHandle<Result<flows::Sweep, aya::maps::MapError>>> =
        None;
    // Live flows as the last sweep left them, for metrics scrapes (a walk per scrape would
    // stall this loop with a large table; `pl stats` still counts afresh).
    let mut live = flows::Counts::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // Health checks run on their own schedule; this only bounds how late a check is read.
    let mut health_tick = tokio::time::interval(Duration::from_millis(50));
    health_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut ticks = 0u64;
    let publish = |dp: &Dataplane, live: &flows::Counts| {
        if args.metrics.is_some() {
            let body = match dp.stats_with(live) {
                Ok(report) => metrics::render(&report),
                Err(e) => format!("# pl: {:#}\n", anyhow::Error::from(e)),
            };
            snapshot.send_replace(body.into());
        }
    };
    publish(&dp, &live);
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => match reload(&mut dp, None, &args) {
                Ok(message) => tracing::info!("SIGHUP: {message}"),
                Err(e) => tracing::warn!("SIGHUP: {e:#}; still running the previous configuration"),
            },
            _ = tick.tick(), if dp.has_data_path() => {
                ticks += 1;
                // ARP every second while a target is unresolved, every 10 s to stay fresh.
                if ticks.is_multiple_of(10) || !dp.unresolved_targets().is_empty() {
                    for e in dp.probe_targets() {
                        tracing::warn!("{e}");
                    }
                }
                match dp.refresh_targets() {
                    Ok(new) => new.iter().for_each(|t| tracing::info!("target {t}")),
                    Err(e) => tracing::warn!("{:#}", anyhow::Error::from(e)),
                }
                // The sweep walks the whole table: off this loop, one at a time.
                if ticks.is_multiple_of(5) && sweeping.is_none() {
                    sweeping = dp.sweep_job().map(tokio::task::spawn_blocking);
                }
                publish(&dp, &live);
            }
            swept = async {
                match sweeping.as_mut() {
                    Some(job) => job.await,
                    None => std::future::pending().await,
                }
            } => {
                sweeping = None;
                match swept {
                    Ok(Ok(s)) => {
                        let closed = dp.close_events(&s.closed);
                        broadcast(&mut dp, &mut watchers, &closed);
                        live = s.live;
                    }
                    Ok(Err(e)) => tracing::warn!("sweeping the flow table: {e}"),
                    Err(e) => tracing::warn!("the flow table sweep stopped: {e}"),
                }
            }
            ready = async {
                match ebpf_log.as_mut() {
                    Some(fd) => fd.readable_mut().await,
                    None => std::future::pending().await,
                }
            } => {
                if let Ok(mut guard) = ready {
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                }
            }
            ready = async {
                match events.as_mut() {
                    Some(fd) => fd.readable_mut().await,
                    None => std::future::pending().await,
                }
            } => {
                let mut batch = Vec::new();
                if let Ok(mut guard) = ready {
                    let ring = guard.get_inner_mut();
                    while let Some(item) = ring.next() {
                        if let Some(bytes) = item.get(..size_of::<FlowEvent>()) {
                            batch.push(bytemuck::pod_read_unaligned::<FlowEvent>(bytes));
                        }
                    }
                    guard.clear_ready();
                }
                let named: Vec<_> = batch.iter().filter_map(|e| dp.event(e)).collect();
                broadcast(&mut dp, &mut watchers, &named);
            }
            _ = health_tick.tick(), if dp.has_data_path() => match dp.check_health() {
                Ok(log) => log.iter().for_each(|l| tracing::info!("health: {l}")),
                Err(e) => tracing::warn!("health: {:#}", anyhow::Error::from(e)),
            },
            Some(job) = jobs.recv() => match job {
                control::Job::Ask { request, reply, .. } => {
                    let _ = reply.send(answer(&mut dp, request, &args));
                }
                control::Job::Watch { watcher, .. } => {
                    watchers.push(watcher);
                    if let Err(e) = dp.set_watch(true) {
                        tracing::warn!("watch: {:#}", anyhow::Error::from(e));
                    }
                }
            },
        }
    }
    let names: Vec<String> = dp.interfaces().iter().map(|i| i.name.clone()).collect();
    let instance = &args.instance;
    drop(dp);
    tracing::info!(
        "stopped; the data plane stays attached to {} and keeps forwarding (`pl run` again takes it over, `pl down --instance {instance}` removes it)",
        names.join(", ")
    );
    Ok(())
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
            let wanted = filter.endpoint.as_ref().is_none_or(|x| *x == e.endpoint)
                && filter.service.as_ref().is_none_or(|x| *x == e.service)
                && filter.nlb.is_none_or(|x| e.nlb == Some(x));
            if wanted {
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

/// `ring` (a ring buffer, or a reader owning one) polled for readability by tokio.
fn readable<T: std::os::fd::AsRawFd>(ring: T) -> std::io::Result<tokio::io::unix::AsyncFd<T>> {
    // SAFETY: `ring` owns its fd, and the AsyncFd owns `ring` until both drop together;
    // nothing else closes or replaces the fd.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(std::io::Error::from)
}

/// Writes `events` to every watcher, one JSON line each; a watcher that cannot take them
/// at once (gone, or not reading) is dropped. With none left the program stops writing.
fn broadcast(
    dp: &mut Dataplane,
    watchers: &mut Vec<control::Watcher>,
    events: &[flows::WatchEvent],
) {
    if events.is_empty() || watchers.is_empty() {
        return;
    }
    let mut text = String::new();
    for e in events {
        text.push_str(&serde_json::to_string(e).expect("an event serializes"));
        text.push('\n');
    }
    watchers.retain(|w| {
        w.stream
            .try_write(text.as_bytes())
            .is_ok_and(|n| n == text.len())
    });
    if watchers.is_empty()
        && let Err(e) = dp.set_watch(false)
    {
        tracing::warn!("watch: {:#}", anyhow::Error::from(e));
    }
}

/// The answer to an allowed control request.
fn answer(dp: &mut Dataplane, request: Request, args: &RunArgs) -> Reply {
    let failed = |e: anyhow::Error| Reply::Error {
        message: format!("{e:#}"),
    };
    match request {
        Request::Watch => unreachable!("watch requests come as Job::Watch"),
        Request::Stats { flows } => dp
            .stats(flows)
            .map_or_else(|e| failed(e.into()), Reply::Stats),
        Request::Flows { filter } => dp
            .flows(&filter)
            .map_or_else(|e| failed(e.into()), |flows| Reply::Flows { flows }),
        Request::Reload { sent } => {
            reload(dp, sent, args).map_or_else(failed, |message| Reply::Reloaded { message })
        }
    }
}

/// Reads `path` as pl run's config (refusing a file others could write unless `insecure`)
/// and validates it in full.
fn load_config(path: &std::path::Path, insecure: bool) -> anyhow::Result<Model> {
    let (src, warning) = Source::read_trusted(path, insecure)?;
    if let Some(w) = warning {
        tracing::warn!("{w}");
    }
    Ok(Model::from_source(&src, &LiveInterfaces)?)
}

/// Validates `sent` (a config a client read and sent), or else the file pl run was started
/// with, in full; then applies what changed. On any error the running configuration stays
/// as it was.
fn reload(dp: &mut Dataplane, sent: Option<SentConfig>, args: &RunArgs) -> anyhow::Result<String> {
    let model = match sent {
        // Only the client's own text is parsed and quoted: no path it names is opened.
        Some(c) => Model::from_source(&Source::from_text(&c.name, c.text), &LiveInterfaces)?,
        None => {
            let path = args
                .config
                .as_deref()
                .context("pl run was started without --config: nothing to reload")?;
            load_config(path, args.insecure_config)?
        }
    };
    let message = dp.reload(model)?;
    tracing::info!("{message}");
    Ok(message)
}

/// Asks ARP for every target and waits up to 3 s for answers, so the first flows find
/// them resolved.
async fn resolve_targets(dp: &mut Dataplane) {
    for e in dp.probe_targets() {
        tracing::warn!("{e}");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut asked = tokio::time::Instant::now();
    while !dp.unresolved_targets().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if asked.elapsed() > Duration::from_millis(500) {
            dp.probe_targets();
            asked = tokio::time::Instant::now();
        }
        if let Err(e) = dp.refresh_targets() {
            tracing::warn!("{:#}", anyhow::Error::from(e));
        }
    }
    let left = dp.unresolved_targets();
    if !left.is_empty() {
        let left: Vec<String> = left.iter().map(ToString::to_string).collect();
        tracing::warn!(
            "targets not answering ARP yet (they take no flows until they do): {}",
            left.join(", ")
        );
    }
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
