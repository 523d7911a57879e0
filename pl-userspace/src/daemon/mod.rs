//! `pl run`: start-up, the run loop and the orderly stop.
//!
//! The loop holds no logic of its own: each source (signals, the 1 s tick, the sweep's
//! result, the program's log and flow-event rings, the health tick, systemd's watchdog,
//! control jobs) is one `select!` arm that calls one method. Like `main.rs`, this is an edge of the crate and
//! speaks `anyhow`; everything it calls returns typed errors.

mod cluster;
mod schedule;
mod status;
mod watchers;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::Context as _;
use aya::maps::{MapData, MapError, RingBuf};
use pl_common::maps::PROGRAM_NAME;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{Signal, SignalKind, signal},
    sync::{mpsc, watch},
    task::JoinHandle,
};

pub use self::{schedule::Schedule, watchers::Watchers};
use crate::{
    config::{ConfigError, ConfigErrors, Source},
    control::{self, Job, Reply, Request, SentConfig},
    dataplane::{Dataplane, Mode, StartOptions},
    dns, flows, metrics,
    model::{LiveInterfaces, Model},
    notify::{Notifier, NotifyError},
    peer::{self, Policy},
};

/// What `pl run` was asked to do.
#[derive(Clone, Debug)]
pub struct Options {
    /// The config file; `None` observes `interfaces` instead.
    pub config: Option<PathBuf>,
    pub interfaces: Vec<String>,
    pub mode: Mode,
    pub fresh: bool,
    pub instance: String,
    pub metrics: Option<SocketAddr>,
    pub read_group: Option<String>,
    pub insecure_config: bool,
    /// This node's name in the config's `[cluster]`.
    pub node: Option<String>,
}

type Logger = aya_log::EbpfLogger<&'static dyn log::Log>;
/// The IPv4 and IPv6 flow tables, each if mapped.
type FlowTables = (Option<flows::FlowTable>, Option<flows::FlowTable6>);

type SweepJob = JoinHandle<Result<flows::Sweep, MapError>>;

/// Runs `pl run` until SIGINT or SIGTERM; the data plane stays attached after.
pub async fn run(opts: Options) -> anyhow::Result<()> {
    // Signals first, so a SIGTERM during start-up still ends in the orderly stop below.
    let mut signals = Signals::new()?;
    // Whatever pl run writes (state, pins) is root's alone.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let (dp, server, listener, member, dns) = start(&opts).await?;
    let mut daemon = Daemon::new(dp, opts, member, dns)?;
    let (jobs_tx, mut jobs) = mpsc::channel(64);
    // Control connections and scrapes are served on tasks of their own; only requests that
    // passed the peer check reach this loop, as jobs.
    tokio::spawn(server.serve(jobs_tx));
    daemon.serve_metrics(listener);
    // Attached and listening: a client that connects from now on is answered.
    daemon.notified(daemon.notifier.ready(&daemon.notify_status()));
    daemon.run_loop(&mut signals, &mut jobs).await;
    daemon.leave().await;
    daemon.stop();
    Ok(())
}

/// Validates everything, binds the socket and the metrics listener, then attaches: a bad
/// config, a second instance or a bad address fails with nothing attached.
async fn start(
    opts: &Options,
) -> anyhow::Result<(
    Dataplane,
    control::Server,
    Option<tokio::net::TcpListener>,
    Option<crate::cluster::Member>,
    Option<dns::Servers>,
)> {
    let policy = Policy {
        read_group: opts.read_group.as_deref().map(peer::group_id).transpose()?,
    };
    let model = opts
        .config
        .as_deref()
        .map(|p| load_config(p, opts.insecure_config))
        .transpose()?;
    let server = control::Server::bind(&opts.instance, policy)?;
    let listener = match opts.metrics {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("--metrics {addr}: cannot listen"))?,
        ),
        None => None,
    };
    // The cluster is checked before the data plane: a bad --node, a missing address, key
    // or keepalived leaves nothing attached. The election starts once the data plane is up.
    let mut member = match &model {
        Some(m) => crate::cluster::node_index(m, opts.node.as_deref())?
            .map(|me| crate::cluster::Member::start(m, me, &opts.instance))
            .transpose()?,
        None => None,
    };
    // The DNS namespaces before the data plane too: an address that cannot be bound fails
    // the start with nothing attached.
    let dns = match &model {
        Some(m) => {
            let servers = dns::Servers::new(&opts.instance, opts.node.as_deref())
                .context("starting the DNS server's thread")?;
            let prepared = servers.prepare(m)?;
            Some((servers, prepared))
        }
        None => None,
    };
    let start = StartOptions {
        instance: &opts.instance,
        mode: opts.mode,
        fresh: opts.fresh,
    };
    let mut dp = match model {
        Some(m) => Dataplane::start_model(m, start)?,
        None => Dataplane::start(&opts.interfaces, start)?,
    };
    if let (Some(m), Some(model)) = (member.as_mut(), dp.model()) {
        m.elect(model);
    }
    let dns = dns.map(|(mut servers, prepared)| {
        if let Some(model) = dp.model() {
            servers.commit(model, prepared, &dp.dead_zones());
        }
        servers
    });
    let names: Vec<String> = dp
        .interfaces()
        .iter()
        .map(|i| format!("{} (ifindex {})", i.name, i.ifindex))
        .collect();
    tracing::info!(
        "attached {PROGRAM_NAME} in {} mode to {}",
        opts.mode.name(),
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
    if let Some(m) = &member {
        tracing::info!(
            "node {} of the cluster: keepalived elects the zones' owners; serving none until it says so",
            m.name
        );
    }
    Ok((dp, server, listener, member, dns))
}

/// SIGTERM, SIGINT (stop) and SIGHUP (reload).
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }
}

/// The running data plane and what the loop keeps between events.
struct Daemon {
    dp: Dataplane,
    opts: Options,
    /// Flow events for `pl flows --watch`: the program writes them only while someone
    /// watches.
    events: Option<AsyncFd<RingBuf<MapData>>>,
    ebpf_log: Option<AsyncFd<Logger>>,
    watchers: Watchers,
    sweeping: Option<SweepJob>,
    /// Live flows as the last sweep left them, for metrics scrapes (a walk per scrape would
    /// stall this loop with a large table; `pl stats` still counts afresh).
    live: flows::Counts,
    schedule: Schedule,
    /// The metrics body scrapes read; `None` without `--metrics`.
    snapshot: Option<watch::Sender<Arc<str>>>,
    reloads: metrics::Reloads,
    /// systemd's notify socket, when run by systemd (`Type=notify`).
    notifier: Notifier,
    /// For `pl status`: when this run started, and how its last reload went.
    started: std::time::Instant,
    last_reload: Option<status::LastReload>,
    /// This node in its cluster; None for a lone forwarder.
    cluster: Option<crate::cluster::Member>,
    /// The flow tables, mapped once (flow sync reads and writes them).
    flows: FlowTables,
    /// Zones to announce again on the next tick.
    announce_again: u32,
    sync_warned: Option<std::time::Instant>,
    /// A zone keepalived gave this node waits for its last owner to let go.
    waiting: bool,
    /// Until when targets are looked for on every health tick (after a takeover).
    resolving: Option<std::time::Instant>,
    /// The networks' DNS servers; None when pl run observes interfaces.
    dns: Option<dns::Servers>,
    /// The zones DNS answers leave out, as last told to the servers.
    dead: dns::DeadZones,
}

impl Daemon {
    fn new(
        mut dp: Dataplane,
        opts: Options,
        mut cluster: Option<crate::cluster::Member>,
        dns: Option<dns::Servers>,
    ) -> anyhow::Result<Self> {
        let dead = dp.dead_zones();
        if let (Some(m), Some(model)) = (cluster.as_mut(), dp.model()) {
            m.sync.set_fingerprint(model);
        }
        let flows = match cluster {
            Some(_) => (dp.open_flows(), dp.open_flows6()),
            None => (None, None),
        };
        let events = dp
            .take_events()
            .map(readable)
            .transpose()
            .context("polling the flow event ring buffer")?;
        let ebpf_log = dp
            .take_logger()
            .map(readable)
            .transpose()
            .context("polling the XDP program's log")?;
        Ok(Self {
            dp,
            opts,
            events,
            ebpf_log,
            watchers: Watchers::default(),
            sweeping: None,
            live: flows::Counts::default(),
            schedule: Schedule::default(),
            snapshot: None,
            reloads: metrics::Reloads::new(std::time::SystemTime::now()),
            notifier: Notifier::from_env().unwrap_or_else(|e| {
                tracing::warn!("{e}; not notifying systemd");
                Notifier::default()
            }),
            started: std::time::Instant::now(),
            last_reload: None,
            cluster,
            flows,
            announce_again: 0,
            sync_warned: None,
            waiting: false,
            resolving: None,
            dns,
            dead,
        })
    }

    /// One line for `systemctl status`.
    fn notify_status(&self) -> String {
        let names: Vec<&str> = self
            .dp
            .interfaces()
            .iter()
            .map(|i| i.name.as_str())
            .collect();
        format!(
            "{} on {} ({} mode); control socket @pl.{}",
            if self.dp.has_data_path() {
                "forwarding"
            } else {
                "observing"
            },
            names.join(", "),
            self.opts.mode.name(),
            self.opts.instance
        )
    }

    fn notified(&self, sent: Result<(), NotifyError>) {
        if let Err(e) = sent {
            tracing::warn!("{e}");
        }
    }

    fn serve_metrics(&mut self, listener: Option<tokio::net::TcpListener>) {
        let (Some(listener), Some(addr)) = (listener, self.opts.metrics) else {
            return;
        };
        let (snapshot, scrapes) = watch::channel(Arc::<str>::from(""));
        tokio::spawn(metrics::serve(listener, scrapes));
        tracing::info!("metrics at http://{addr}/metrics");
        self.snapshot = Some(snapshot);
        self.publish();
    }

    async fn run_loop(&mut self, signals: &mut Signals, jobs: &mut mpsc::Receiver<Job>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        // Health checks run on their own schedule; this only bounds how late one is read.
        let mut health_tick = tokio::time::interval(Duration::from_millis(50));
        health_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let data_path = self.dp.has_data_path();
        // systemd's keep-alive comes from this loop, so a loop that stops turning is seen.
        let watched = self.notifier.watchdog_every();
        let mut watchdog = tokio::time::interval(watched.unwrap_or(Duration::from_secs(3600)));
        let clustered = self.cluster.is_some();
        let every = self
            .dp
            .model()
            .and_then(|m| m.cluster.as_ref())
            .map_or(1000, |c| c.sync_interval_ms);
        let mut sync_tick = tokio::time::interval(Duration::from_millis(u64::from(every)));
        sync_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let lease = self
            .dp
            .model()
            .and_then(|m| m.cluster.as_ref())
            .map_or(Duration::from_secs(3600), cluster::lease_of);
        let mut lease_tick = tokio::time::interval(lease / 4);
        let mut buf = vec![0u8; 65536];
        loop {
            tokio::select! {
                _ = signals.term.recv() => break,
                _ = signals.int.recv() => break,
                _ = signals.hup.recv() => self.on_hangup(),
                _ = tick.tick(), if data_path => self.on_tick(),
                swept = finished(&mut self.sweeping) => self.on_swept(swept),
                ready = ready(&mut self.ebpf_log) => {
                    if let Ok(mut guard) = ready {
                        guard.get_inner_mut().flush();
                        guard.clear_ready();
                    }
                }
                ready = ready(&mut self.events) => {
                    let batch = match ready {
                        Ok(mut guard) => {
                            let batch = watchers::drain(guard.get_inner_mut());
                            guard.clear_ready();
                            batch
                        }
                        Err(_) => Vec::new(),
                    };
                    self.on_events(&batch);
                }
                _ = health_tick.tick(), if data_path => self.on_health(),
                _ = watchdog.tick(), if watched.is_some() => self.notified(self.notifier.alive()),
                Some(job) = jobs.recv() => self.on_job(job),
                event = cluster::next_event(&mut self.cluster, &mut buf) => self.on_cluster(event, &buf),
                _ = sync_tick.tick(), if clustered => self.on_sync_tick(),
                _ = lease_tick.tick(), if clustered => self.renew_lease(),
            }
        }
    }

    fn on_hangup(&mut self) {
        match self.reload(None, "SIGHUP") {
            Ok(message) => tracing::info!("SIGHUP: {message}"),
            Err(e) => tracing::warn!("SIGHUP: {e:#}; still running the previous configuration"),
        }
    }

    fn on_tick(&mut self) {
        self.cluster_tick();
        let due = self.schedule.tick(!self.dp.unresolved_targets().is_empty());
        if due.probe {
            for e in self.dp.probe_targets() {
                tracing::warn!("{e}");
            }
        }
        match self.dp.refresh_targets() {
            Ok(new) => new.iter().for_each(|t| tracing::info!("target {t}")),
            Err(e) => tracing::warn!("{:#}", anyhow::Error::from(e)),
        }
        self.follow_health();
        // The sweep walks the whole table: off this loop, one at a time.
        if due.sweep && self.sweeping.is_none() {
            self.sweeping = self.dp.sweep_job().map(tokio::task::spawn_blocking);
        }
        self.publish();
    }

    fn on_swept(&mut self, swept: Result<Result<flows::Sweep, MapError>, tokio::task::JoinError>) {
        self.sweeping = None;
        match swept {
            Ok(Ok(s)) => {
                let mut closed = self.dp.close_events(&s.closed);
                closed.extend(self.dp.close_events(&s.closed6));
                self.broadcast(&closed);
                self.live = s.live;
            }
            Ok(Err(e)) => tracing::warn!("sweeping the flow table: {e}"),
            Err(e) => tracing::warn!("the flow table sweep stopped: {e}"),
        }
    }

    fn on_events(&mut self, batch: &[pl_common::event::Event]) {
        let named: Vec<_> = batch.iter().filter_map(|e| self.dp.event(e)).collect();
        self.broadcast(&named);
    }

    fn on_health(&mut self) {
        self.resolve_soon();
        match self.dp.check_health() {
            Ok(log) if !log.is_empty() => {
                log.iter().for_each(|l| tracing::info!("health: {l}"));
                self.follow_health();
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("health: {:#}", anyhow::Error::from(e)),
        }
    }

    /// DNS answers leave out zones that lost their last healthy target, and take them
    /// back when one returns.
    fn follow_health(&mut self) {
        let (Some(servers), Some(model)) = (&self.dns, self.dp.model()) else {
            return;
        };
        if servers.is_empty() {
            return;
        }
        let dead = self.dp.dead_zones();
        if dead == self.dead {
            return;
        }
        servers.update(model, &dead);
        let mut out: Vec<String> = dead
            .iter()
            .map(|(s, z)| {
                let service = model
                    .services
                    .get(usize::from(*s))
                    .map_or("?", |s| s.name.as_str());
                let zone = model.zones.get(usize::from(*z)).map_or("?", String::as_str);
                format!("{service} in {zone}")
            })
            .collect();
        out.sort();
        tracing::info!(
            "DNS: zones without a healthy target: {}",
            if out.is_empty() {
                "none".to_owned()
            } else {
                out.join(", ")
            }
        );
        self.dead = dead;
    }

    /// Each network's names as its server answers them now (health applied), or only
    /// `network`'s; with `zone_file`, that network's zone file.
    fn dns_names(
        &self,
        network: Option<&str>,
        zone_file: bool,
    ) -> anyhow::Result<(Vec<dns::NetworkNames>, Option<String>)> {
        let model = self
            .dp
            .model()
            .context("pl run was started without --config: it has no endpoint names")?;
        let mut all = dns::by_network(model, network).with_context(|| {
            format!(
                "--network: no network named {:?} in the running config",
                network.unwrap_or("")
            )
        })?;
        if let Some(servers) = &self.dns {
            for n in &mut all {
                for name in &mut n.names {
                    if let Some(a) = servers.answer_of(&n.network, &name.name) {
                        name.addresses = a;
                    }
                }
            }
        }
        let zone = match (zone_file, network) {
            (true, Some(name)) => dns::network_id(model, name).map(|id| dns::zone_file(model, id)),
            _ => None,
        };
        Ok((all, zone))
    }

    fn dns_stats(&self) -> Vec<dns::DnsStats> {
        self.dns
            .as_ref()
            .map(dns::Servers::stats)
            .unwrap_or_default()
    }

    fn on_job(&mut self, job: Job) {
        match job {
            Job::Ask { request, reply, .. } => {
                let _ = reply.send(self.answer(request));
            }
            Job::Watch { watcher, .. } => {
                self.watchers.add(watcher);
                self.set_watch(true);
            }
        }
    }

    /// The answer to an allowed control request.
    fn answer(&mut self, request: Request) -> Reply {
        let failed = |e: anyhow::Error| Reply::Error {
            kind: config_kind(&e),
            message: format!("{e:#}"),
        };
        match request {
            Request::Watch => unreachable!("watch requests come as Job::Watch"),
            Request::Stats { flows } => self.dp.stats(flows).map_or_else(
                |e| failed(e.into()),
                |mut r| {
                    r.node = self.cluster.as_ref().map(|m| m.name.clone());
                    r.dns = self.dns_stats();
                    Reply::Stats(r)
                },
            ),
            Request::Flows { filter } => self
                .dp
                .flows(&filter)
                .map_or_else(|e| failed(e.into()), |flows| Reply::Flows { flows }),
            Request::Reload { sent } => self
                .reload(sent, "control")
                .map_or_else(failed, |message| Reply::Reloaded { message }),
            Request::Status => Reply::Status(Box::new(self.status())),
            Request::Endpoints => Reply::Endpoints {
                endpoints: self.dp.endpoints(&self.dp.count_flows()),
            },
            Request::Dns { network, zone_file } => self
                .dns_names(network.as_deref(), zone_file)
                .map_or_else(failed, |(networks, zone_file)| Reply::Dns {
                    networks,
                    zone_file,
                }),
        }
    }

    /// A reload, told to systemd (RELOADING=1 before, READY=1 after), counted for metrics
    /// and kept for `pl status` with who asked (`by`: `control`, `SIGHUP`), applied or not.
    fn reload(&mut self, sent: Option<SentConfig>, by: &'static str) -> anyhow::Result<String> {
        self.notified(self.notifier.reloading());
        let result = self.load_and_apply(sent);
        self.reloads
            .record(result.is_ok(), std::time::SystemTime::now());
        self.last_reload = Some(status::LastReload::new(by, &result));
        self.publish();
        let status = match &result {
            Ok(_) => format!("reloaded; {}", self.notify_status()),
            Err(e) => format!("reload refused, previous configuration kept: {e:#}"),
        };
        self.notified(self.notifier.ready(&status));
        result
    }

    /// Validates `sent` (a config a client read and sent), or else the file pl run was
    /// started with, in full; then applies what changed. On any error the running
    /// configuration stays as it was.
    fn load_and_apply(&mut self, sent: Option<SentConfig>) -> anyhow::Result<String> {
        let model = match sent {
            // Only the client's own text is parsed and quoted: no path it names is opened.
            Some(c) => Model::from_source(&Source::from_text(&c.name, c.text), &LiveInterfaces)?,
            None => {
                let path = self
                    .opts
                    .config
                    .as_deref()
                    .context("pl run was started without --config: nothing to reload")?;
                load_config(path, self.opts.insecure_config)?
            }
        };
        // New DNS namespaces first: an address that cannot be bound refuses the reload.
        let prepared = self.dns.as_ref().map(|d| d.prepare(&model)).transpose()?;
        let message = self.dp.reload(model)?;
        if let (Some(servers), Some(prepared), Some(model)) =
            (self.dns.as_mut(), prepared, self.dp.model())
        {
            self.dead = self.dp.dead_zones();
            servers.commit(model, prepared, &self.dead);
        }
        // Flow sync numbers as the running model now does; keepalived keeps its config
        // until a restart (`[cluster]` and `[[node]]` changes need one).
        if let (Some(m), Some(model)) = (self.cluster.as_mut(), self.dp.model()) {
            m.sync.set_fingerprint(model);
        }
        tracing::info!("{message}");
        Ok(message)
    }

    /// Sends `events` to the watchers; with none left the program stops writing them.
    fn broadcast(&mut self, events: &[flows::WatchEvent]) {
        if self.watchers.broadcast(events) {
            self.set_watch(false);
        }
    }

    fn set_watch(&mut self, on: bool) {
        if let Err(e) = self.dp.set_watch(on) {
            tracing::warn!("watch: {:#}", anyhow::Error::from(e));
        }
    }

    fn publish(&self) {
        let Some(snapshot) = &self.snapshot else {
            return;
        };
        let body = match self.dp.stats_with(&self.live) {
            Ok(mut report) => {
                report.dns = self.dns_stats();
                let table = self.dp.flow_table(&self.live);
                let cluster = self.cluster_status();
                metrics::render(&report, table.as_ref(), &self.reloads, cluster.as_ref())
            }
            Err(e) => format!("# pl: {:#}\n", anyhow::Error::from(e)),
        };
        snapshot.send_replace(body.into());
    }

    /// Lets go of the data plane, which stays attached and forwarding.
    fn stop(self) {
        self.notified(
            self.notifier
                .stopping("stopping; the data plane stays attached and forwarding"),
        );
        let names: Vec<String> = self
            .dp
            .interfaces()
            .iter()
            .map(|i| i.name.clone())
            .collect();
        let instance = self.opts.instance;
        drop(self.dp);
        tracing::info!(
            "stopped; the data plane stays attached to {} and keeps forwarding (`pl run` again takes it over, `pl down --instance {instance}` removes it)",
            names.join(", ")
        );
    }
}

/// `Config` if `e` is a config refused (unreadable or invalid), for the client's exit status.
fn config_kind(e: &anyhow::Error) -> Option<control::ErrorKind> {
    e.chain()
        .any(|c| c.is::<ConfigErrors>() || c.is::<ConfigError>())
        .then_some(control::ErrorKind::Config)
}

/// Reads `path` as pl run's config (refusing a file others could write unless `insecure`)
/// and validates it in full.
fn load_config(path: &Path, insecure: bool) -> anyhow::Result<Model> {
    let (src, warning) = Source::read_trusted(path, insecure)?;
    if let Some(w) = warning {
        tracing::warn!("{w}");
    }
    Ok(Model::from_source(&src, &LiveInterfaces)?)
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

/// `ring` (a ring buffer, or a reader owning one) polled for readability by tokio.
fn readable<T: std::os::fd::AsRawFd>(ring: T) -> std::io::Result<AsyncFd<T>> {
    // SAFETY: `ring` owns its fd, and the AsyncFd owns `ring` until both drop together;
    // nothing else closes or replaces the fd.
    unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(std::io::Error::from)
}

/// Readiness of `fd`, or never when there is none.
async fn ready<T: std::os::fd::AsRawFd>(
    fd: &mut Option<AsyncFd<T>>,
) -> std::io::Result<tokio::io::unix::AsyncFdReadyMutGuard<'_, T>> {
    match fd.as_mut() {
        Some(fd) => fd.readable_mut().await,
        None => std::future::pending().await,
    }
}

/// The result of the running sweep, or never when none runs.
async fn finished(
    job: &mut Option<SweepJob>,
) -> Result<Result<flows::Sweep, MapError>, tokio::task::JoinError> {
    match job.as_mut() {
        Some(job) => job.await,
        None => std::future::pending().await,
    }
}
