//! The control socket: how `pl stats` (a separate process) finds a running `pl run`.
//!
//! Discovery is an abstract unix socket named `pl.<instance>`. Abstract sockets are scoped
//! to the network namespace, so `ip netns exec NS pl stats` reaches exactly the `pl run`
//! started with `ip netns exec NS`, with no file, pin or mount to share (each
//! `ip netns exec` gets a fresh /sys, so bpffs pins would not be seen). One request and one
//! reply per connection, each a line of JSON.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::SocketAddrV4,
    os::{linux::net::SocketAddrExt as _, unix::net::SocketAddr},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::{
    peer::{Access, Peer, Policy},
    stats::StatsReport,
};

pub const DEFAULT_INSTANCE: &str = "default";

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    BadInstance(#[from] crate::instance::BadInstance),
    #[error("another pl run (instance {instance:?}) is already active in this network namespace")]
    InUse { instance: String },
    #[error(
        "no pl run (instance {instance:?}) is active in this network namespace (looked for abstract socket @{name})"
    )]
    NotRunning { instance: String, name: String },
    #[error("control socket @{name}: {source}")]
    Io {
        name: String,
        source: std::io::Error,
    },
    #[error("control socket @{name}: bad reply: {source}")]
    Protocol {
        name: String,
        source: serde_json::Error,
    },
    #[error("pl run answered: {message}")]
    Remote { message: String },
    #[error("pl {request} (as uid {uid}): {message}")]
    Denied {
        request: &'static str,
        uid: u32,
        message: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Stats {
        /// Count live flows per endpoint (walks the flow table; skip it for cheap polls).
        #[serde(default = "yes")]
        flows: bool,
    },
    /// Validate a config and apply what changed. `pl run` never opens a path its peer names:
    /// `sent` carries the text the client read itself; without it, `pl run` reloads the
    /// file it was started with.
    Reload { sent: Option<SentConfig> },
    /// The live flows that pass the filter.
    Flows {
        #[serde(default)]
        filter: FlowFilter,
    },
    /// Keep the connection open and stream flow events, one JSON [`WatchEvent`] a line.
    ///
    /// [`WatchEvent`]: crate::flows::WatchEvent
    Watch,
}

impl Request {
    /// The request's name, as the CLI and the log say it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Stats { .. } => "stats",
            Self::Reload { .. } => "reload",
            Self::Flows { .. } => "flows",
            Self::Watch => "watch",
        }
    }

    /// True if answering walks the whole flow table (0.7 s at a million flows).
    pub fn walks_table(&self) -> bool {
        matches!(self, Self::Stats { flows: true } | Self::Flows { .. })
    }

    /// What a peer needs to be allowed this request.
    pub fn needs(&self) -> Access {
        match self {
            Self::Stats { .. } | Self::Flows { .. } | Self::Watch => Access::Read,
            Self::Reload { .. } => Access::Admin,
        }
    }
}

/// A config as the client read it: its text, and the name to quote in errors.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentConfig {
    pub name: String,
    pub text: String,
}

/// Which flows `pl flows` asks for; every given field must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowFilter {
    pub endpoint: Option<String>,
    pub service: Option<String>,
    /// The provider-side source: which flow holds this NLB address and SNAT port?
    pub nlb: Option<SocketAddrV4>,
}

impl FlowFilter {
    pub fn matches(&self, f: &crate::flows::FlowReport) -> bool {
        self.matches_parts(&f.endpoint, &f.service, Some(f.nlb))
    }

    /// For `pl flows --watch`: a refusal (no NLB side) never matches `nlb`.
    pub fn matches_event(&self, e: &crate::flows::WatchEvent) -> bool {
        self.matches_parts(&e.endpoint, &e.service, e.nlb)
    }

    fn matches_parts(&self, endpoint: &str, service: &str, nlb: Option<SocketAddrV4>) -> bool {
        self.endpoint.as_ref().is_none_or(|e| e == endpoint)
            && self.service.as_ref().is_none_or(|s| s == service)
            && self.nlb.is_none_or(|n| nlb == Some(n))
    }
}

const fn yes() -> bool {
    true
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Stats(StatsReport),
    Reloaded {
        message: String,
    },
    Flows {
        flows: Vec<crate::flows::FlowReport>,
    },
    Error {
        message: String,
    },
    /// The peer may not make this request; the connection closes after it.
    Denied {
        message: String,
    },
}

/// The abstract socket name for `instance`.
pub fn socket_name(instance: &str) -> Result<String, ControlError> {
    crate::instance::check(instance)?;
    Ok(format!("pl.{instance}"))
}

/// How long a client has to send its request once connected.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a client has to take its reply before the connection is dropped.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest request (a reload carries a whole config).
pub const MAX_REQUEST: u64 = 1 << 20;
/// Connections of non-root readers served at once; more are closed at once (root's are
/// not limited).
pub const MAX_CONNECTIONS: usize = 256;
/// Connections one non-root uid may have open at once.
pub const MAX_PER_UID: usize = 8;
/// How often a non-root uid may have the flow table walked (`stats` with flow counts,
/// `flows`).
pub const WALK_INTERVAL: Duration = Duration::from_secs(1);

/// An allowed request, handed to `pl run`'s loop to answer.
pub enum Job {
    /// Answer `request` through `reply`.
    Ask {
        request: Request,
        peer: Peer,
        reply: tokio::sync::oneshot::Sender<Reply>,
    },
    /// Write flow events to the watcher until it stops taking them.
    Watch { peer: Peer, watcher: Watcher },
}

/// A `watch` client's connection. It keeps its place among the open connections while it
/// lives, so watchers count against the same limits.
pub struct Watcher {
    pub stream: tokio::net::unix::OwnedWriteHalf,
    _slot: Slot,
}

/// The listening side, held by `pl run`.
pub struct Server {
    listener: tokio::net::UnixListener,
    name: String,
    policy: Policy,
}

impl Server {
    /// Binds the instance's socket; fails if another `pl run` in this namespace holds it.
    pub fn bind(instance: &str, policy: Policy) -> Result<Self, ControlError> {
        let name = socket_name(instance)?;
        let io = |source| ControlError::Io {
            name: name.clone(),
            source,
        };
        let addr = SocketAddr::from_abstract_name(&name).map_err(io)?;
        let listener = std::os::unix::net::UnixListener::bind_addr(&addr).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                ControlError::InUse {
                    instance: instance.to_owned(),
                }
            } else {
                io(e)
            }
        })?;
        listener.set_nonblocking(true).map_err(io)?;
        let listener = tokio::net::UnixListener::from_std(listener).map_err(io)?;
        Ok(Self {
            listener,
            name,
            policy,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Serves connections until `jobs` closes, each on a task of its own: a client that
    /// connects and says nothing, or never reads its reply, holds only its own task, and
    /// only for [`REQUEST_TIMEOUT`] and [`REPLY_TIMEOUT`]. Allowed requests go to `jobs`.
    pub async fn serve(self, jobs: tokio::sync::mpsc::Sender<Job>) {
        let open = std::sync::Arc::new(std::sync::Mutex::new(OpenConnections::default()));
        let mut refusals = Quiet::default();
        loop {
            let stream = tokio::select! {
                () = jobs.closed() => return,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!("control socket @{}: accept: {e}", self.name);
                        // EMFILE and the like: do not spin.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let peer = match Peer::of(&stream) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!("control: reading a peer's credentials: {e}; closed");
                    continue;
                }
            };
            // No access at all: refused at once, before it can hold a slot, a task or two
            // seconds of this socket. The request is not read, so the refusal cannot name
            // it; the client names it.
            if peer.access(&self.policy) == Access::None {
                let message = format!(
                    "permission denied: uid {} may not use this socket; it needs {}",
                    peer.uid,
                    who_may(Access::Read, &self.policy)
                );
                let mut line = serde_json::to_vec(&Reply::Denied {
                    message: message.clone(),
                })
                .expect("a reply serializes");
                line.push(b'\n');
                let _ = stream.try_write(&line);
                if refusals.should_log(peer.uid) {
                    tracing::warn!("control: {peer}: refused ({message})");
                }
                continue;
            }
            let Some(slot) = OpenConnections::take(&open, peer.uid) else {
                tracing::warn!(
                    "control: {peer}: too many connections open (at most {MAX_CONNECTIONS}, {MAX_PER_UID} per non-root uid); closed"
                );
                continue;
            };
            let (policy, jobs) = (self.policy.clone(), jobs.clone());
            tokio::spawn(async move { serve_one(stream, slot, &peer, &policy, &jobs).await });
        }
    }
}

/// Counts of open connections, in total and per uid, and when a non-root reader last had
/// the flow table walked.
#[derive(Default)]
struct OpenConnections {
    total: usize,
    per_uid: std::collections::HashMap<u32, usize>,
    last_walk: Option<std::time::Instant>,
}

/// One open connection's place in [`OpenConnections`], given back on drop.
struct Slot {
    open: std::sync::Arc<std::sync::Mutex<OpenConnections>>,
    uid: u32,
}

impl OpenConnections {
    /// Whether `uid` may have the flow table walked now: root always; readers, all of them
    /// together, once per [`WALK_INTERVAL`], so readers polling `pl stats` or `pl flows`
    /// (from any number of uids) cannot keep the run loop, and with it health checks and
    /// ARP, busy walking a million flows.
    fn may_walk(&mut self, uid: u32) -> bool {
        let now = std::time::Instant::now();
        if uid == 0 {
            return true;
        }
        if self
            .last_walk
            .is_some_and(|t| now.duration_since(t) < WALK_INTERVAL)
        {
            return false;
        }
        self.last_walk = Some(now);
        true
    }

    fn take(open: &std::sync::Arc<std::sync::Mutex<Self>>, uid: u32) -> Option<Slot> {
        let mut o = open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mine = o.per_uid.get(&uid).copied().unwrap_or(0);
        // Root is never locked out by others' connections.
        if uid != 0 && (o.total >= MAX_CONNECTIONS || mine >= MAX_PER_UID) {
            return None;
        }
        o.total += 1;
        o.per_uid.insert(uid, mine + 1);
        Some(Slot {
            open: open.clone(),
            uid,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut o = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        o.total -= 1;
        if let Some(n) = o.per_uid.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                o.per_uid.remove(&self.uid);
            }
        }
    }
}

/// Who may make a request that needs `need`, in words.
fn who_may(need: Access, policy: &Policy) -> String {
    match (need, policy.read_group) {
        (Access::Admin, _) => "root".to_owned(),
        (_, Some(g)) => format!("root or group {g} (pl run --read-group)"),
        (_, None) => "root (pl run has no --read-group)".to_owned(),
    }
}

/// Why `peer` may not make `request`, in the words the client shows.
fn denial(request: &Request, peer: &Peer, policy: &Policy) -> String {
    format!(
        "permission denied: uid {} may not use {}; it needs {}",
        peer.uid,
        request.name(),
        who_may(request.needs(), policy)
    )
}

/// Logs refusals of a uid at most once a second, so a flood of refused connections cannot
/// flood the log.
#[derive(Default)]
struct Quiet(std::collections::HashMap<u32, std::time::Instant>);

impl Quiet {
    fn should_log(&mut self, uid: u32) -> bool {
        let now = std::time::Instant::now();
        if self
            .0
            .get(&uid)
            .is_some_and(|t| now.duration_since(*t) < Duration::from_secs(1))
        {
            return false;
        }
        if self.0.len() > 1024 {
            self.0.clear();
        }
        self.0.insert(uid, now);
        true
    }
}

/// Reads one request from `stream`, checks it against `peer`'s access and has it answered.
/// The connection holds `slot` until it closes.
async fn serve_one(
    stream: tokio::net::UnixStream,
    slot: Slot,
    peer: &Peer,
    policy: &Policy,
    jobs: &tokio::sync::mpsc::Sender<Job>,
) {
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _};
    let (read, write) = stream.into_split();
    let mut line = Vec::new();
    let mut limited = tokio::io::BufReader::new(read.take(MAX_REQUEST));
    match tokio::time::timeout(REQUEST_TIMEOUT, limited.read_until(b'\n', &mut line)).await {
        Err(_) => {
            tracing::info!("control: {peer}: no request within {REQUEST_TIMEOUT:?}; closed");
            return;
        }
        Ok(Err(e)) => {
            tracing::info!("control: {peer}: reading the request: {e}; closed");
            return;
        }
        // A liveness probe (`control::running`): connected and closed.
        Ok(Ok(0)) => return,
        Ok(Ok(_)) => {}
    }
    let request = match serde_json::from_slice::<Request>(&line) {
        Ok(r) => r,
        Err(e) => {
            let message = if line.last() == Some(&b'\n') {
                format!("bad request: {e}")
            } else {
                format!("bad request: no complete line within {MAX_REQUEST} bytes")
            };
            tracing::warn!("control: {peer}: {message}");
            reply(write, peer, &Reply::Error { message }).await;
            return;
        }
    };
    let what = request.name();
    if peer.access(policy) < request.needs() {
        let message = denial(&request, peer, policy);
        tracing::warn!("control: {peer}: {what}: refused ({message})");
        reply(write, peer, &Reply::Denied { message }).await;
        return;
    }
    if peer.uid != 0
        && request.walks_table()
        && !slot
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .may_walk(peer.uid)
    {
        let message = format!(
            "busy: readers may have the flow table walked once per {WALK_INTERVAL:?} between them (stats with flow counts, flows); ask again later (uid {})",
            peer.uid
        );
        tracing::info!("control: {peer}: {what}: {message}");
        reply(write, peer, &Reply::Error { message }).await;
        return;
    }
    if matches!(request, Request::Watch) {
        tracing::info!("control: {peer}: watch: started");
        let _ = jobs
            .send(Job::Watch {
                peer: peer.clone(),
                watcher: Watcher {
                    stream: write,
                    _slot: slot,
                },
            })
            .await;
        return;
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job = Job::Ask {
        request,
        peer: peer.clone(),
        reply: tx,
    };
    if jobs.send(job).await.is_err() {
        return;
    }
    let Ok(answer) = rx.await else {
        return;
    };
    match &answer {
        Reply::Error { message } => tracing::warn!("control: {peer}: {what}: failed: {message}"),
        Reply::Reloaded { message } => tracing::info!("control: {peer}: {what}: {message}"),
        _ => tracing::info!("control: {peer}: {what}: answered"),
    }
    reply(write, peer, &answer).await;
}

/// Writes `answer` as one JSON line, giving up after [`REPLY_TIMEOUT`].
async fn reply(mut write: tokio::net::unix::OwnedWriteHalf, peer: &Peer, answer: &Reply) {
    use tokio::io::AsyncWriteExt as _;
    let mut out = serde_json::to_vec(answer).expect("a reply serializes");
    out.push(b'\n');
    match tokio::time::timeout(REPLY_TIMEOUT, write.write_all(&out)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::info!("control: {peer}: writing the reply: {e}"),
        Err(_) => tracing::info!(
            "control: {peer}: did not take its reply within {REPLY_TIMEOUT:?}; closed"
        ),
    }
}

/// Asks the `pl run` of `instance` to reload: `sent`, or the file it was started with.
pub fn reload(instance: &str, sent: Option<SentConfig>) -> Result<String, ControlError> {
    match request(instance, &Request::Reload { sent })? {
        Reply::Reloaded { message } => Ok(message),
        _ => Err(unexpected("reload")),
    }
}

/// The live flows of the `pl run` of `instance` that pass `filter`.
pub fn flows(
    instance: &str,
    filter: FlowFilter,
) -> Result<Vec<crate::flows::FlowReport>, ControlError> {
    match request(instance, &Request::Flows { filter })? {
        Reply::Flows { flows } => Ok(flows),
        _ => Err(unexpected("flows")),
    }
}

fn unexpected(request: &str) -> ControlError {
    ControlError::Remote {
        message: format!("answered {request} with something else"),
    }
}

/// Streams the flow events of the `pl run` of `instance` to `each` until it stops or the
/// connection ends.
pub fn watch(
    instance: &str,
    mut each: impl FnMut(crate::flows::WatchEvent),
) -> Result<(), ControlError> {
    let (mut stream, name) = connect(instance)?;
    let io = |source| ControlError::Io {
        name: name.clone(),
        source,
    };
    let req = Request::Watch;
    let mut msg = serde_json::to_vec(&req).expect("a request serializes");
    msg.push(b'\n');
    // As in `request`: a refusal may be waiting even if the write found the socket closed.
    let _ = stream.write_all(&msg);
    for line in BufReader::new(stream).lines() {
        let line = line.map_err(io)?;
        match serde_json::from_str(&line) {
            Ok(event) => each(event),
            // Not an event: a refusal or an error, the only line before the stream closes.
            Err(source) => {
                return Err(match serde_json::from_str::<Reply>(&line) {
                    Ok(reply) => failure(&req, reply)
                        .err()
                        .unwrap_or(ControlError::Protocol {
                            name: name.clone(),
                            source,
                        }),
                    Err(_) => ControlError::Protocol {
                        name: name.clone(),
                        source,
                    },
                });
            }
        }
    }
    Ok(())
}

/// `reply`, or the error it carries.
fn failure(req: &Request, reply: Reply) -> Result<Reply, ControlError> {
    match reply {
        Reply::Error { message } => Err(ControlError::Remote { message }),
        Reply::Denied { message } => Err(ControlError::Denied {
            request: req.name(),
            uid: nix::unistd::geteuid().as_raw(),
            message,
        }),
        other => Ok(other),
    }
}

/// True if a `pl run` of `instance` answers in this network namespace.
pub fn running(instance: &str) -> bool {
    socket_name(instance)
        .ok()
        .and_then(|name| SocketAddr::from_abstract_name(&name).ok())
        .is_some_and(|addr| std::os::unix::net::UnixStream::connect_addr(&addr).is_ok())
}

/// A connection to the `pl run` of `instance` in this network namespace, and its socket name.
fn connect(instance: &str) -> Result<(std::os::unix::net::UnixStream, String), ControlError> {
    let name = socket_name(instance)?;
    let io = |source| ControlError::Io {
        name: name.clone(),
        source,
    };
    let addr = SocketAddr::from_abstract_name(&name).map_err(io)?;
    let stream =
        std::os::unix::net::UnixStream::connect_addr(&addr).map_err(|e| match e.kind() {
            std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound => {
                ControlError::NotRunning {
                    instance: instance.to_owned(),
                    name: name.clone(),
                }
            }
            _ => io(e),
        })?;
    Ok((stream, name))
}

/// Sends one request to the `pl run` of `instance` in this network namespace; an error or
/// a refusal it answers comes back as an error.
pub fn request(instance: &str, req: &Request) -> Result<Reply, ControlError> {
    let (mut stream, name) = connect(instance)?;
    let io = |source| ControlError::Io {
        name: name.clone(),
        source,
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(io)?;
    let mut msg = serde_json::to_vec(req).map_err(|source| ControlError::Protocol {
        name: name.clone(),
        source,
    })?;
    msg.push(b'\n');
    // A peer refused at once gets its answer before the request is even read: a closed
    // socket here still has the refusal to read.
    let written = stream.write_all(&msg);
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).map_err(io)?;
    if line.is_empty() {
        written.map_err(io)?;
    }
    let reply =
        serde_json::from_str(&line).map_err(|source| ControlError::Protocol { name, source })?;
    failure(req, reply)
}

/// The counters of the `pl run` of `instance` in this network namespace.
pub fn stats(instance: &str) -> Result<StatsReport, ControlError> {
    stats_with(instance, true)
}

/// As [`stats`]; `flows: false` leaves `active_flows` at 0 and does not walk the flow table.
pub fn stats_with(instance: &str, flows: bool) -> Result<StatsReport, ControlError> {
    match request(instance, &Request::Stats { flows })? {
        Reply::Stats(report) => Ok(report),
        _ => Err(unexpected("stats")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_are_checked() {
        assert_eq!(socket_name("default").expect("valid"), "pl.default");
        for bad in ["", "Upper", "a/b", "sp ace", &"x".repeat(65)] {
            assert!(
                matches!(socket_name(bad), Err(ControlError::BadInstance(_))),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn a_watch_event_is_filtered_as_a_flow_is() {
        let event = |endpoint: &str, nlb: Option<&str>| crate::flows::WatchEvent {
            event: "open".to_owned(),
            proto: "tcp".to_owned(),
            endpoint: endpoint.to_owned(),
            service: "svc".to_owned(),
            network: "net".to_owned(),
            consumer: "10.0.0.1:1000".parse().expect("addr"),
            endpoint_addr: "10.0.0.2:80".parse().expect("addr"),
            nlb: nlb.map(|n| n.parse().expect("addr")),
            target: None,
            reason: None,
            state: None,
        };
        let by_nlb = FlowFilter {
            nlb: Some("10.9.0.250:40000".parse().expect("addr")),
            ..FlowFilter::default()
        };
        assert!(by_nlb.matches_event(&event("e", Some("10.9.0.250:40000"))));
        assert!(!by_nlb.matches_event(&event("e", Some("10.9.0.250:40001"))));
        // A refusal has no provider side: it never matches an NLB filter.
        assert!(!by_nlb.matches_event(&event("e", None)));
        let by_endpoint = FlowFilter {
            endpoint: Some("e".to_owned()),
            service: Some("svc".to_owned()),
            nlb: None,
        };
        assert!(by_endpoint.matches_event(&event("e", None)));
        assert!(!by_endpoint.matches_event(&event("f", None)));
    }

    #[test]
    fn wire_format_is_tagged_json() {
        let req = serde_json::to_string(&Request::Stats { flows: false }).expect("serialize");
        assert_eq!(req, r#"{"request":"stats","flows":false}"#);
        // Older clients send no field: flows are counted.
        let old: Request = serde_json::from_str(r#"{"request":"stats"}"#).expect("parse");
        assert!(matches!(old, Request::Stats { flows: true }));
        let reply: Reply =
            serde_json::from_str(r#"{"reply":"error","message":"boom"}"#).expect("parse");
        assert!(matches!(reply, Reply::Error { message } if message == "boom"));
    }

    #[test]
    fn a_reload_naming_a_path_is_not_a_request() {
        // What older clients sent, and what a hostile peer would: pl run must not open it.
        let e = serde_json::from_str::<Request>(r#"{"request":"reload","config":"/etc/shadow"}"#)
            .expect_err("a path to open is no longer part of the protocol");
        assert!(e.to_string().contains("unknown field `config`"), "{e}");
        let sent = Request::Reload {
            sent: Some(SentConfig {
                name: "pl.toml".into(),
                text: "[limits]\n".into(),
            }),
        };
        let wire = serde_json::to_string(&sent).expect("serialize");
        assert_eq!(
            wire,
            r#"{"request":"reload","sent":{"name":"pl.toml","text":"[limits]\n"}}"#
        );
        assert_eq!(sent.needs(), Access::Admin);
        assert_eq!(Request::Watch.needs(), Access::Read);
    }

    #[test]
    fn readers_walk_the_table_once_a_second_between_them_root_always() {
        let mut o = OpenConnections::default();
        assert!(o.may_walk(1000));
        assert!(!o.may_walk(1000), "a second walk within the interval");
        assert!(!o.may_walk(1001), "readers share one allowance");
        assert!(o.may_walk(0) && o.may_walk(0), "root is not limited");
        let flows = Request::Flows {
            filter: FlowFilter::default(),
        };
        assert!(flows.walks_table());
        assert!(!Request::Stats { flows: false }.walks_table());
    }

    #[test]
    fn a_denial_names_the_request_the_uid_and_who_may() {
        let peer = Peer {
            pid: 7,
            uid: 65534,
            gid: 65534,
            groups: vec![],
        };
        let stats = Request::Stats { flows: true };
        let open = denial(&stats, &peer, &Policy::default());
        assert_eq!(
            open,
            "permission denied: uid 65534 may not use stats; it needs root (pl run has no --read-group)"
        );
        let grouped = Policy {
            read_group: Some(4242),
        };
        assert!(denial(&stats, &peer, &grouped).contains("group 4242"));
        let reload = Request::Reload { sent: None };
        assert!(denial(&reload, &peer, &grouped).ends_with("needs root"));
    }
}
