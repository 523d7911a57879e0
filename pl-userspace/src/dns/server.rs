//! The DNS service: UDP and TCP on each network's DNS addresses, answered from that
//! network's [`Book`], on a thread and runtime of its own so that neither a flood of
//! queries nor pl run's own loop holds the other up.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    sync::{Semaphore, watch},
    task::JoinSet,
};

use super::{
    answer::{self, Book, DeadZones, Outcome, Transport},
    netns::{self, Namespace, NetnsError},
};
use crate::model::Model;

/// TCP connections served at once per network; more wait in the listen queue.
const TCP_CONNECTIONS: usize = 64;
/// A TCP connection that sends nothing for this long, or does not take an answer for this
/// long, is closed (RFC 7766 suggests seconds).
const TCP_IDLE: Duration = Duration::from_secs(10);
/// No TCP connection lives longer than this, so a slot always comes back.
const TCP_LIFETIME: Duration = Duration::from_secs(60);

/// One network's counters, as `pl stats` and metrics show them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsStats {
    pub network: String,
    pub addresses: Vec<IpAddr>,
    /// Messages received, over UDP and TCP.
    pub queries: u64,
    /// NOERROR answers (NODATA included).
    pub answers: u64,
    pub nxdomain: u64,
    /// REFUSED (not pl's name) and NOTIMP (not a standard query).
    pub refused: u64,
    /// FORMERR answers, and messages not answered at all.
    pub malformed: u64,
    /// Answers dropped because the socket's send buffer was full (answers to sources
    /// that do not answer ARP wait there): the server reads on instead of waiting.
    #[serde(default)]
    pub unsent: u64,
}

#[derive(Debug, Default)]
struct Counters {
    queries: AtomicU64,
    answers: AtomicU64,
    nxdomain: AtomicU64,
    refused: AtomicU64,
    malformed: AtomicU64,
    unsent: AtomicU64,
}

impl Counters {
    fn count(&self, outcome: Outcome) {
        self.queries.fetch_add(1, Ordering::Relaxed);
        let c = match outcome {
            Outcome::Answered => &self.answers,
            Outcome::NxDomain => &self.nxdomain,
            Outcome::Refused => &self.refused,
            Outcome::Malformed => &self.malformed,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// One network's server.
struct Server {
    interface: String,
    addrs: Vec<IpAddr>,
    /// Its macvlan's MAC: a replacement takes the other of the network's two.
    mac: [u8; 6],
    book: watch::Sender<Arc<Book>>,
    counters: Arc<Counters>,
    /// Aborted (sockets closed) when the server is dropped.
    _tasks: JoinSet<()>,
    /// Keeps the namespace while the tasks start.
    _ns: std::os::fd::OwnedFd,
}

/// Servers made for a new config, not serving yet: [`Servers::commit`] puts them in
/// place once the data plane took the config, dropping them gives everything back.
pub struct Prepared {
    new: BTreeMap<String, (Namespace, String, Vec<IpAddr>)>,
}

/// The two MACs network `network`'s macvlan takes on this node, in turn.
fn macs(instance: &str, node: Option<&str>, network: &str) -> [[u8; 6]; 2] {
    let node = node.unwrap_or("");
    [
        netns::mac_for(instance, Some(node), network),
        netns::mac_for(instance, Some(&format!("{node}\0replaced")), network),
    ]
}

/// Every network's DNS server.
pub struct Servers {
    runtime: tokio::runtime::Handle,
    /// Ends the runtime's thread when dropped.
    _stop: tokio::sync::oneshot::Sender<()>,
    servers: BTreeMap<String, Server>,
    instance: String,
    node: Option<String>,
}

impl Servers {
    /// Starts the runtime's thread; no network is served until [`Servers::commit`].
    pub fn new(instance: &str, node: Option<&str>) -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let runtime = rt.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("pl-dns".into())
            .spawn(move || {
                rt.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        Ok(Self {
            runtime,
            _stop: stop,
            servers: BTreeMap::new(),
            instance: instance.to_owned(),
            node: node.map(str::to_owned),
        })
    }

    /// Makes the namespaces `model` needs that are not there yet (a network new to DNS,
    /// or whose addresses or interface changed). Nothing serves or changes yet.
    pub fn prepare(&self, model: &Model) -> Result<Prepared, NetnsError> {
        let mut new = BTreeMap::new();
        for n in model.networks.iter().filter(|n| !n.removed) {
            let Some(addrs) = model.dns.addresses.get(&n.name) else {
                continue;
            };
            let same = self
                .servers
                .get(&n.name)
                .is_some_and(|s| s.interface == n.interface && &s.addrs == addrs);
            if same {
                continue;
            }
            // A changed network's macvlan cannot take the MAC the old one still holds:
            // it takes the other. A lone forwarder announces its MAC (consumers may hold
            // the other one, from before a change or a restart); a cluster node does not,
            // or a standby would pull consumers from the node that holds the lease.
            let [first, second] = macs(&self.instance, self.node.as_deref(), &n.name);
            let old = self.servers.get(&n.name).map(|s| s.mac);
            let mac = if old == Some(first) { second } else { first };
            let announce = self.node.is_none();
            let ns = netns::create(&n.name, &n.interface, addrs, mac, announce)?;
            new.insert(n.name.clone(), (ns, n.interface.clone(), addrs.clone()));
        }
        Ok(Prepared { new })
    }

    /// Serves `model`'s names: `prepared` networks start, networks gone from DNS stop,
    /// the others answer from the new names at once.
    pub fn commit(&mut self, model: &Model, prepared: Prepared, dead: &DeadZones) {
        let wanted: Vec<&str> = model
            .networks
            .iter()
            .filter(|n| !n.removed && model.dns.addresses.contains_key(&n.name))
            .map(|n| n.name.as_str())
            .collect();
        // A replaced network keeps its counters.
        let kept: BTreeMap<String, Arc<Counters>> = self
            .servers
            .iter()
            .map(|(name, s)| (name.clone(), Arc::clone(&s.counters)))
            .collect();
        self.servers
            .retain(|name, _| wanted.contains(&name.as_str()) && !prepared.new.contains_key(name));
        for (name, (ns, interface, addrs)) in prepared.new {
            let counters = kept.get(&name).cloned().unwrap_or_default();
            let id = network_id(model, &name);
            let (book, _) = watch::channel(Arc::new(Book::new(model, id, dead)));
            let mut tasks = JoinSet::new();
            let Namespace { fd, udp, tcp, mac } = ns;
            for s in udp {
                let (book, counters) = (book.subscribe(), Arc::clone(&counters));
                tasks.spawn_on(serve_udp(s, book, counters), &self.runtime);
            }
            for l in tcp {
                let (book, counters) = (book.subscribe(), Arc::clone(&counters));
                tasks.spawn_on(serve_tcp(l, book, counters), &self.runtime);
            }
            let shown: Vec<String> = addrs.iter().map(ToString::to_string).collect();
            tracing::info!(
                "DNS for network {name} at {} (UDP and TCP port {}), on {interface}",
                shown.join(", "),
                netns::PORT
            );
            self.servers.insert(
                name,
                Server {
                    interface,
                    addrs,
                    mac,
                    book,
                    counters,
                    _tasks: tasks,
                    _ns: fd,
                },
            );
        }
        self.update(model, dead);
    }

    /// Answers from `model`'s names and `dead` zones from now on.
    pub fn update(&self, model: &Model, dead: &DeadZones) {
        for (name, s) in &self.servers {
            let book = Book::new(model, network_id(model, name), dead);
            s.book.send_replace(Arc::new(book));
        }
    }

    /// Every served network's counters.
    pub fn stats(&self) -> Vec<DnsStats> {
        self.servers
            .iter()
            .map(|(name, s)| {
                let c = &s.counters;
                let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
                DnsStats {
                    network: name.clone(),
                    addresses: s.addrs.clone(),
                    queries: get(&c.queries),
                    answers: get(&c.answers),
                    nxdomain: get(&c.nxdomain),
                    refused: get(&c.refused),
                    malformed: get(&c.malformed),
                    unsent: get(&c.unsent),
                }
            })
            .collect()
    }

    /// What network `network`'s server answers for `name` now (health applied); None
    /// where it serves no such name, or no server runs for the network.
    pub fn answer_of(&self, network: &str, name: &str) -> Option<Vec<IpAddr>> {
        self.servers.get(network)?.book.borrow().addresses(name)
    }

    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }
}

fn network_id(model: &Model, name: &str) -> u16 {
    super::network_id(model, name).unwrap_or(u16::MAX)
}

/// A fresh random number for the zone order.
fn random() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish()
}

async fn serve_udp(
    socket: std::net::UdpSocket,
    book: watch::Receiver<Arc<Book>>,
    c: Arc<Counters>,
) {
    let Ok(socket) = tokio::net::UdpSocket::from_std(socket) else {
        tracing::warn!("DNS: cannot poll a UDP socket");
        return;
    };
    let mut buf = vec![0u8; 65_535];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let current = Arc::clone(&book.borrow());
        let (reply, outcome) = answer::answer(&current, &buf[..n], Transport::Udp, random());
        c.count(outcome);
        // Never wait to send: a full buffer drops this answer, not every later query.
        if let Some(reply) = reply
            && socket.try_send_to(&reply, from).is_err()
        {
            c.unsent.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn serve_tcp(
    listener: std::net::TcpListener,
    book: watch::Receiver<Arc<Book>>,
    c: Arc<Counters>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        tracing::warn!("DNS: cannot poll a TCP listener");
        return;
    };
    let slots = Arc::new(Semaphore::new(TCP_CONNECTIONS));
    // Connections end with the listener's task.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    // Out of fds, say: wait rather than spin this thread.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let Ok(permit) = Arc::clone(&slots).acquire_owned().await else { return };
                let (book, c) = (book.clone(), Arc::clone(&c));
                conns.spawn(async move {
                    let _ = tokio::time::timeout(TCP_LIFETIME, serve_conn(stream, book, c)).await;
                    drop(permit);
                });
            }
            Some(_) = conns.join_next() => {}
        }
    }
}

/// One TCP connection: length-prefixed messages (RFC 1035 4.2.2), answered in order,
/// until the client closes, idles or sends what cannot be framed.
async fn serve_conn(
    mut stream: tokio::net::TcpStream,
    book: watch::Receiver<Arc<Book>>,
    c: Arc<Counters>,
) {
    let mut buf = vec![0u8; 65_535];
    loop {
        let mut len = [0u8; 2];
        let Ok(Ok(_)) = tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)).await else {
            return;
        };
        let n = usize::from(u16::from_be_bytes(len));
        let Ok(Ok(_)) = tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut buf[..n])).await
        else {
            return;
        };
        let current = Arc::clone(&book.borrow());
        let (reply, outcome) = answer::answer(&current, &buf[..n], Transport::Tcp, random());
        c.count(outcome);
        let Some(reply) = reply else {
            return;
        };
        let Ok(rlen) = u16::try_from(reply.len()) else {
            return;
        };
        let mut out = Vec::with_capacity(reply.len() + 2);
        out.extend_from_slice(&rlen.to_be_bytes());
        out.extend_from_slice(&reply);
        // A client that does not read its answers does not hold the slot.
        let Ok(Ok(())) = tokio::time::timeout(TCP_IDLE, stream.write_all(&out)).await else {
            return;
        };
    }
}
