//! `pl run`'s side of the control socket: who may connect, how many at once, and how
//! each connection's one request is read, checked and answered.

use std::{
    os::{linux::net::SocketAddrExt as _, unix::net::SocketAddr},
    time::Duration,
};

use super::{ControlError, Job, Reply, Request, Watcher, socket_name};
use crate::peer::{Access, Peer, Policy};

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
                turn_away(&stream, &peer, &self.policy, &mut refusals);
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

/// Refuses a peer with no access, without reading its request: one `Denied` line, written
/// only if the socket takes it at once.
fn turn_away(stream: &tokio::net::UnixStream, peer: &Peer, policy: &Policy, refusals: &mut Quiet) {
    let message = format!(
        "permission denied: uid {} may not use this socket; it needs {}",
        peer.uid,
        who_may(Access::Read, policy)
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
pub(super) struct Slot {
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
    let (read, write) = stream.into_split();
    let Some(line) = read_line(read, peer).await else {
        return;
    };
    let request = match parse(&line) {
        Ok(r) => r,
        Err(message) => {
            tracing::warn!("control: {peer}: {message}");
            let error = Reply::Error {
                message,
                kind: None,
            };
            return reply(write, peer, &error).await;
        }
    };
    if let Some(refusal) = refusal(&request, peer, policy, &slot) {
        return reply(write, peer, &refusal).await;
    }
    dispatch(request, write, slot, peer, jobs).await;
}

/// One request line, read within [`REQUEST_TIMEOUT`] and [`MAX_REQUEST`] bytes (so it may
/// lack its newline); `None` if there is nothing to answer.
async fn read_line(read: tokio::net::unix::OwnedReadHalf, peer: &Peer) -> Option<Vec<u8>> {
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _};
    let mut line = Vec::new();
    let mut limited = tokio::io::BufReader::new(read.take(MAX_REQUEST));
    match tokio::time::timeout(REQUEST_TIMEOUT, limited.read_until(b'\n', &mut line)).await {
        Err(_) => {
            tracing::info!("control: {peer}: no request within {REQUEST_TIMEOUT:?}; closed");
            None
        }
        Ok(Err(e)) => {
            tracing::info!("control: {peer}: reading the request: {e}; closed");
            None
        }
        // A liveness probe (`control::running`): connected and closed.
        Ok(Ok(0)) => None,
        Ok(Ok(_)) => Some(line),
    }
}

/// The request `line` holds, or the error to answer with.
fn parse(line: &[u8]) -> Result<Request, String> {
    serde_json::from_slice(line).map_err(|e| {
        if line.last() == Some(&b'\n') {
            format!("bad request: {e}")
        } else {
            format!("bad request: no complete line within {MAX_REQUEST} bytes")
        }
    })
}

/// The reply that refuses `request`, if `peer` may not have it answered: it lacks the
/// access, or it is a reader asking for a walk of the flow table too soon after another.
fn refusal(request: &Request, peer: &Peer, policy: &Policy, slot: &Slot) -> Option<Reply> {
    let what = request.name();
    if peer.access(policy) < request.needs() {
        let message = denial(request, peer, policy);
        tracing::warn!("control: {peer}: {what}: refused ({message})");
        return Some(Reply::Denied { message });
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
        return Some(Reply::Error {
            message,
            kind: None,
        });
    }
    None
}

/// Hands an allowed request to `pl run`'s loop and writes its answer; a watcher's
/// connection goes to the loop whole. The connection holds `slot` until it closes.
async fn dispatch(
    request: Request,
    write: tokio::net::unix::OwnedWriteHalf,
    slot: Slot,
    peer: &Peer,
    jobs: &tokio::sync::mpsc::Sender<Job>,
) {
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
    let what = request.name();
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
        Reply::Error { message, .. } => {
            tracing::warn!("control: {peer}: {what}: failed: {message}");
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::FlowFilter;

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
