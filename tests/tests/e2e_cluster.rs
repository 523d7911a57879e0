//! End to end, two forwarders on one switch (`pl lab up --nodes 2`): each zone's endpoint
//! address served by its own node; a node killed hard (processes killed, interfaces
//! removed) and its zone taken over within `takeover_s` + 2 s; a TCP stream and a UDP flow
//! through the dead node's zone go on; the node comes back and takes its zone back after
//! `failback_s`, with the flows opened meanwhile. An ARP prober in the consumer network
//! asks for both endpoint addresses every 100 ms throughout: no request is ever answered
//! by two nodes.

use nix::libc;
use std::{
    collections::{BTreeMap, BTreeSet},
    net::{Ipv4Addr, SocketAddrV4},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use pl_tests::{
    chain, pl_bin, require_kernel,
    running::{CLIENT, CLIENT6, EP_Z1, EP_Z2, EP6_Z2, T1_6, T2_6},
};
use pl_userspace::{
    control::{self, FlowFilter},
    flows::FlowReport,
    frame::{self, Mac},
    lab::{
        cluster::{ClusterLab, ClusterTopology},
        netns,
        runner::PlRun,
        traffic::{self, Servers, TCP_PORT, UDP_PORT},
    },
    status::StatusReport,
};

const TAKEOVER_S: u64 = 3;
const FAILBACK_S: u64 = 4;
/// Bytes of the stream through the dead node's zone.
const LEN: u64 = 1024 * 1024 * 1024;
const T1: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 11);
const T2: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 12);

/// The cluster lab, removed on drop.
struct Cluster {
    lab: ClusterLab,
    topo: ClusterTopology,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.lab.down();
    }
}

impl Cluster {
    fn up(tag: &str) -> Self {
        let prefix = format!("{tag}{}-", std::process::id());
        let lab = ClusterLab::new(&prefix, 2).unwrap_or_else(|e| panic!("{}", chain(e)));
        let topo = lab
            .up()
            .unwrap_or_else(|e| panic!("cluster lab {prefix}: {}", chain(e)));
        Self { lab, topo }
    }

    /// `pl run --node fw{i} EXTRA` in node i's namespace.
    fn run(&self, i: usize, config: &std::path::Path, extra: &[&str]) -> PlRun {
        let path = config.to_str().expect("utf-8 path");
        let node = format!("fw{i}");
        let mut args = vec!["--config", path, "--node", &node];
        args.extend_from_slice(extra);
        PlRun::start(&pl_bin(), &self.lab.node_ns(i), "default", &args)
            .unwrap_or_else(|e| panic!("pl run on fw{i}: {}", chain(e)))
    }

    fn mac(&self, node: usize, network: &str) -> Mac {
        let s = self.topo.nodes[node - 1]
            .fw_macs
            .get(network)
            .expect("node MAC");
        frame::parse_mac(s).expect("MAC")
    }

    fn status(&self, i: usize) -> Option<StatusReport> {
        netns::run_in(&self.lab.node_ns(i), || control::status("default"))
            .ok()?
            .ok()
    }

    fn flows(&self, i: usize) -> Vec<FlowReport> {
        netns::run_in(&self.lab.node_ns(i), || {
            control::flows("default", FlowFilter::default())
        })
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default()
    }

    /// The owner node i's status names for `zone`.
    fn owner(&self, i: usize, zone: &str) -> Option<String> {
        self.status(i)?
            .cluster?
            .zones
            .into_iter()
            .find(|z| z.zone == zone)?
            .owner
    }
}

/// Polls `f` every 50 ms for up to `limit`: how long it took, or None.
fn within(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// One ARP reply the prober saw: when, to which round's request, for which address, from
/// which MAC.
#[derive(Clone, Copy, Debug)]
struct Answer {
    at: Instant,
    round: u32,
    addr: Ipv4Addr,
    mac: Mac,
}

/// Asks ARP for `addrs` from `ns`'s `eth0` every 100 ms until `stop`; each round asks from
/// its own sender address (10.0.0.20-69, none of the lab's), so a reply names its round.
fn probe_arp(ns: &str, addrs: &[Ipv4Addr], stop: &AtomicBool) -> Vec<Answer> {
    netns::run_in(ns, || {
        let ifindex = nix::net::if_::if_nametoindex("eth0").expect("eth0");
        // SAFETY: plain socket(2); owned at once.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW,
                i32::from((libc::ETH_P_ARP as u16).to_be()),
            )
        };
        assert!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: fd is fresh and ours.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_ll is plain data.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ARP as u16).to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: binds to the address above, of its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const sll).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 10_000,
        };
        // SAFETY: a timeval of the right size.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                size_of::<libc::timeval>() as u32,
            );
        }
        let my_mac: Mac = [0x02, 0x99, 0, 0, 0, 1];
        let mut out = Vec::new();
        let mut round = 0u32;
        let mut buf = [0u8; 128];
        while !stop.load(Ordering::Relaxed) {
            let asker = [10, 0, 0, 20 + (round % 50) as u8];
            for a in addrs {
                let f = frame::arp_request(my_mac, asker, a.octets());
                // SAFETY: sends `f` out of the bound interface.
                unsafe {
                    libc::sendto(
                        fd.as_raw_fd(),
                        f.as_ptr().cast(),
                        f.len(),
                        0,
                        (&raw const sll).cast(),
                        size_of::<libc::sockaddr_ll>() as u32,
                    );
                }
            }
            let until = Instant::now() + Duration::from_millis(100);
            while Instant::now() < until {
                // SAFETY: reads into `buf`.
                let n =
                    unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n < 42 {
                    continue;
                }
                let b = &buf[..n as usize];
                // An ARP reply (op 2) to one of our askers.
                if b[12..14] != [8, 6] || b[20..22] != [0, 2] || b[38..41] != [10, 0, 0] {
                    continue;
                }
                let asked = u32::from(b[41]).wrapping_sub(20);
                // The most recent round that asked from this address.
                let r = round - (round % 50) + asked;
                let r = if r > round { r.saturating_sub(50) } else { r };
                out.push(Answer {
                    at: Instant::now(),
                    round: r,
                    addr: Ipv4Addr::new(b[28], b[29], b[30], b[31]),
                    mac: b[22..28].try_into().expect("6 bytes"),
                });
            }
            round += 1;
        }
        out
    })
    .expect("prober namespace")
}

/// A settled two-node cluster: the lab, its servers, the config file, both nodes running
/// and each serving its own zone.
fn settled(tag: &str) -> (Cluster, Servers, std::path::PathBuf, PlRun, PlRun) {
    let c = Cluster::up(tag);
    let prov = c.topo.network("prov").expect("prov").namespace.clone();
    let servers =
        Servers::start(&prov, &[T1, T2]).unwrap_or_else(|e| panic!("servers: {}", chain(e)));
    // UDP flows idle out after 10 minutes, not 2: the UDP flow checked after the takeover
    // waits out the 1 GiB stream, which a loaded host takes over 2 minutes to move.
    let config = c.lab.config().replace(
        "takeover_s = 3",
        &format!("takeover_s = {TAKEOVER_S}\nfailback_s = {FAILBACK_S}"),
    ) + "\n[limits]\nudp_idle_timeout_s = 600\n";
    assert!(config.contains("failback_s"), "{config}");
    let path = c
        .lab
        .lab()
        .write_config(&config)
        .unwrap_or_else(|e| panic!("{}", chain(e)));
    let fw1 = c.run(1, &path, &[]);
    let fw2 = c.run(2, &path, &[]);
    // Each node takes its own zone, and knows who has the other.
    let settled = within(Duration::from_secs(15), || {
        c.owner(1, "z1").as_deref() == Some("fw1")
            && c.owner(1, "z2").as_deref() == Some("fw2")
            && c.owner(2, "z2").as_deref() == Some("fw2")
            && c.owner(2, "z1").as_deref() == Some("fw1")
    });
    assert!(
        settled.is_some(),
        "zones did not settle on their primaries: fw1 {:?}, fw2 {:?}",
        c.status(1).and_then(|s| s.cluster),
        c.status(2).and_then(|s| s.cluster)
    );
    // keepalived's files (config, FIFO, pid files) are root's alone, as all of pl's state.
    let mut open = Vec::new();
    for dir in std::fs::read_dir("/run/pl").expect("/run/pl").flatten() {
        if !dir.file_name().to_string_lossy().ends_with(".cluster") {
            continue;
        }
        for f in std::fs::read_dir(dir.path())
            .expect("cluster dir")
            .flatten()
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = f.metadata().expect("metadata").permissions().mode();
            if mode & 0o077 != 0 {
                open.push(format!("{} {mode:o}", f.path().display()));
            }
        }
    }
    assert!(open.is_empty(), "cluster state open to others: {open:?}");
    // Counters say which node counted them.
    let stats = netns::run_in(&c.lab.node_ns(2), || control::stats("default"))
        .expect("netns")
        .unwrap_or_else(|e| panic!("pl stats on fw2: {}", chain(e)));
    assert_eq!(stats.node.as_deref(), Some("fw2"));
    (c, servers, path, fw1, fw2)
}

/// The ARP prober on its thread.
struct Prober {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Answer>>,
}

impl Prober {
    fn start(ns: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (ns, stop) = (ns.to_owned(), Arc::clone(&stop));
            std::thread::spawn(move || probe_arp(&ns, &[EP_Z1, EP_Z2], &stop))
        };
        Self { stop, thread }
    }

    /// Stops it; every answer, after checking no request was answered by two nodes.
    fn finish(self) -> Vec<Answer> {
        self.stop.store(true, Ordering::Relaxed);
        let answers = self.thread.join().expect("prober");
        let mut by_round: BTreeMap<(u32, Ipv4Addr), BTreeSet<Mac>> = BTreeMap::new();
        for a in &answers {
            by_round.entry((a.round, a.addr)).or_default().insert(a.mac);
        }
        let double: Vec<_> = by_round.iter().filter(|(_, m)| m.len() > 1).collect();
        assert!(
            double.is_empty(),
            "an address was answered by two nodes at once: {double:?}"
        );
        let rounds = by_round
            .keys()
            .map(|(r, _)| *r)
            .collect::<BTreeSet<_>>()
            .len();
        assert!(rounds > 30, "the prober heard only {rounds} rounds");
        println!(
            "ARP: {} answers over {rounds} rounds, none from two nodes",
            answers.len()
        );
        answers
    }
}

/// When `mac` first answered for `addr` after `since`.
fn first_answer(answers: &[Answer], addr: Ipv4Addr, mac: Mac, since: Instant) -> Option<Instant> {
    answers
        .iter()
        .find(|a| a.addr == addr && a.mac == mac && a.at > since)
        .map(|a| a.at)
}

#[test]
fn a_zone_moves_to_its_backup_with_its_flows_and_comes_back() {
    require_kernel!("a_zone_moves_to_its_backup_with_its_flows_and_comes_back");
    let (c, _servers, path, fw1, fw2) = settled("cl");
    let acme = c.topo.network("acme").expect("acme").namespace.clone();
    let prober = Prober::start(&acme);
    let (mac1, mac2) = (c.mac(1, "acme"), c.mac(2, "acme"));

    // Each zone's endpoint address is served by its own node.
    let udp = |sport: u16| {
        traffic::udp_who(
            &acme,
            CLIENT,
            sport,
            SocketAddrV4::new(EP_Z2, UDP_PORT),
            Duration::from_secs(1),
        )
    };
    for ep in [EP_Z1, EP_Z2] {
        traffic::tcp_who(
            &acme,
            CLIENT,
            0,
            SocketAddrV4::new(ep, TCP_PORT),
            Duration::from_secs(2),
        )
        .unwrap_or_else(|e| panic!("through {ep}: {}", chain(e)));
    }
    let neigh = pl_userspace::lab::cmd::ip(["-n", &acme, "neigh", "show", "dev", "eth0"])
        .unwrap_or_else(|e| panic!("{}", chain(e)));
    for (ep, mac) in [(EP_Z1, mac1), (EP_Z2, mac2)] {
        let want = format!("{ep} lladdr {}", pl_userspace::dataplane::mac_str(mac));
        assert!(
            neigh.contains(&want),
            "consumer neighbours lack {want:?}:\n{neigh}"
        );
    }

    // An IPv6 TCP connection through fw2's zone, held open across the takeover (tried
    // again until fw2 has the IPv6 targets' MACs).
    let prov = c.topo.network("prov").expect("prov").namespace.clone();
    let _servers6 = Servers::start(&prov, &[T1_6, T2_6])
        .unwrap_or_else(|e| panic!("IPv6 servers: {}", chain(e)));
    let ep6 = std::net::SocketAddr::from((EP6_Z2, TCP_PORT));
    let mut held6 = {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match traffic::tcp_hold(&acme, CLIENT6, ep6) {
                Ok(s) => break s,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("IPv6 through z2: {}", chain(e)),
            }
        }
    };

    // A UDP flow and a TCP stream through fw2's zone, both copied to fw1 before fw2 dies.
    let udp_started = Instant::now();
    let before = udp(41000).unwrap_or_else(|e| panic!("UDP through z2: {}", chain(e)));
    let stream = std::thread::spawn({
        let acme = acme.clone();
        move || {
            let r = traffic::tcp_sink(&acme, CLIENT, SocketAddrV4::new(EP_Z2, TCP_PORT), LEN);
            (r, Instant::now())
        }
    });
    let synced = within(Duration::from_secs(5), || {
        let f = c.flows(1);
        let has = |proto: &str, ep: std::net::IpAddr| {
            f.iter()
                .any(|x| x.proto == proto && x.endpoint_addr.ip() == ep)
        };
        has("tcp", EP_Z2.into()) && has("udp", EP_Z2.into()) && has("tcp", EP6_Z2.into())
    });
    assert!(
        synced.is_some(),
        "fw1 never got fw2's flows: {:?}",
        c.flows(1)
    );

    // fw2 dies hard: pl and keepalived killed, its interfaces gone.
    let killed_at = Instant::now();
    c.lab
        .kill_node(2)
        .unwrap_or_else(|e| panic!("killing fw2: {}", chain(e)));
    drop(fw2);
    let took = within(Duration::from_secs(TAKEOVER_S + 2), || {
        c.owner(1, "z2").as_deref() == Some("fw1")
    });
    let took = took.unwrap_or_else(|| {
        panic!(
            "fw1 did not take z2 over within {} s: {:?}",
            TAKEOVER_S + 2,
            c.status(1).and_then(|s| s.cluster)
        )
    });
    println!("takeover: fw1 serves z2 {took:?} after fw2 was killed");

    // The IPv6 connection goes on through fw1 (while the stream still runs: the server
    // gives up on a held connection idle for a minute): its flow came over as fw2 held it.
    let answer = traffic::finish_hold(&mut held6)
        .unwrap_or_else(|e| panic!("the IPv6 connection broke across the takeover: {e}"));
    assert_eq!(answer.len(), 64, "not a sha256 answer: {answer:?}");
    assert!(
        c.flows(1)
            .iter()
            .any(|f| f.proto == "tcp" && f.endpoint_addr == ep6),
        "fw1 has no IPv6 flow through {EP6_Z2}: {:?}",
        c.flows(1)
    );
    println!("IPv6 TCP connection through {EP6_Z2} kept across the takeover");

    let (sent, done_at) = stream.join().expect("stream thread");
    let (sent, got) =
        sent.unwrap_or_else(|e| panic!("the stream broke across the takeover: {}", chain(e)));
    assert_eq!(sent, got, "bytes lost across the takeover");
    assert!(
        done_at > killed_at + took,
        "the stream ended before the takeover: the test proved nothing"
    );
    let after = udp(41000).unwrap_or_else(|e| panic!("UDP after the takeover: {}", chain(e)));
    assert_eq!(before, after, "the UDP flow changed target or SNAT port");
    let kept = c
        .flows(1)
        .into_iter()
        .find(|f| f.proto == "udp" && f.consumer.port() == 41000)
        .unwrap_or_else(|| panic!("fw1 has no UDP flow from port 41000: {:?}", c.flows(1)));
    assert!(
        kept.age_s + 1 >= udp_started.elapsed().as_secs(),
        "fw1's UDP flow is new ({} s old, the flow began {:?} ago): not the one fw2 held",
        kept.age_s,
        udp_started.elapsed()
    );
    println!("TCP stream of {LEN} bytes intact (sha256 {sent}), UDP flow kept");

    // A flow opened through fw1 while fw2 is away; then fw2 comes back.
    let during = udp(41001).unwrap_or_else(|e| panic!("UDP during the outage: {}", chain(e)));
    c.lab
        .restore_node(2)
        .unwrap_or_else(|e| panic!("restoring fw2: {}", chain(e)));
    let back_at = Instant::now();
    // Its interfaces are new (as after a reboot): it starts afresh, flows come from fw1.
    let fw2 = c.run(2, &path, &["--fresh"]);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        c.owner(2, "z2").as_deref(),
        Some("fw1"),
        "fw2 took its zone back before failback_s"
    );
    within(Duration::from_secs(FAILBACK_S + TAKEOVER_S + 5), || {
        c.owner(2, "z2").as_deref() == Some("fw2") && c.owner(1, "z2").as_deref() == Some("fw2")
    })
    .unwrap_or_else(|| {
        panic!(
            "fw2 never took z2 back: {:?}",
            c.status(2).and_then(|s| s.cluster)
        )
    });
    let failback = back_at.elapsed();
    println!("failback: fw2 serves z2 again {failback:?} after it started");
    // preempt_delay runs from keepalived's start, after `back_at`.
    assert!(
        failback >= Duration::from_secs(FAILBACK_S),
        "fw2 took z2 back {failback:?} after it started, before failback_s"
    );
    let again = udp(41001).unwrap_or_else(|e| panic!("UDP after the failback: {}", chain(e)));
    assert_eq!(during, again, "the flow opened during the outage changed");
    assert!(
        c.flows(2)
            .iter()
            .any(|f| f.proto == "udp" && f.consumer.port() == 41001 && f.age_s >= 1),
        "fw2 did not get the flow fw1 opened while it was away: {:?}",
        c.flows(2)
    );

    // A few more rounds after the failback: fw2 answering, and still one node a request.
    std::thread::sleep(Duration::from_secs(1));
    let answers = prober.finish();
    let answered = first_answer(&answers, EP_Z2, mac1, killed_at)
        .unwrap_or_else(|| panic!("fw1 never answered ARP for {EP_Z2}"))
        - killed_at;
    assert!(
        answered <= Duration::from_secs(TAKEOVER_S + 2),
        "fw1 answered ARP for {EP_Z2} only {answered:?} after the kill"
    );
    println!("{EP_Z2} answered by fw1 {answered:?} after the kill");
    assert!(
        first_answer(&answers, EP_Z2, mac2, back_at).is_some(),
        "fw2 never answered for {EP_Z2} after it came back"
    );
    drop((fw1, fw2));
}

/// `pl run` alone dies on fw2 (SIGKILL; keepalived dies with it), its program still
/// attached: the lease lapses, so fw2 stops answering before fw1 takes z2 over, and the
/// UDP flow through z2 goes on through fw1.
#[test]
fn a_crashed_pl_run_stops_answering_before_its_zone_moves() {
    require_kernel!("a_crashed_pl_run_stops_answering_before_its_zone_moves");
    let (c, _servers, _path, fw1, fw2) = settled("cc");
    let acme = c.topo.network("acme").expect("acme").namespace.clone();
    let prober = Prober::start(&acme);
    let udp = || {
        traffic::udp_who(
            &acme,
            CLIENT,
            41000,
            SocketAddrV4::new(EP_Z2, UDP_PORT),
            Duration::from_secs(1),
        )
    };
    let before = udp().unwrap_or_else(|e| panic!("UDP through z2: {}", chain(e)));
    let synced = within(Duration::from_secs(5), || {
        c.flows(1)
            .iter()
            .any(|f| f.proto == "udp" && f.consumer.port() == 41000)
    });
    assert!(synced.is_some(), "fw1 never got the UDP flow");
    std::thread::sleep(Duration::from_millis(500));
    let killed_at = Instant::now();
    nix::sys::signal::kill(fw2.pid(), nix::sys::signal::Signal::SIGKILL).expect("kill pl run");
    let took = within(Duration::from_secs(TAKEOVER_S + 2), || {
        c.owner(1, "z2").as_deref() == Some("fw1")
    })
    .unwrap_or_else(|| {
        panic!(
            "fw1 did not take z2 over: {:?}",
            c.status(1).and_then(|s| s.cluster)
        )
    });
    println!("takeover after pl run died on fw2: {took:?}");
    // keepalived went with pl run; the program stays attached.
    let pids =
        || pl_userspace::lab::cmd::ip(["netns", "pids", &c.lab.node_ns(2)]).unwrap_or_default();
    assert!(
        within(Duration::from_secs(3), || pids().trim().is_empty()).is_some(),
        "processes left in fw2: {}",
        pids()
    );
    assert!(
        pl_userspace::lab::cmd::ip(["-n", &c.lab.node_ns(2), "link", "show", "fw-acme"])
            .is_ok_and(|l| l.contains("xdp")),
        "fw2's program is gone: the test proves nothing about a zombie data path"
    );
    let after = udp().unwrap_or_else(|e| panic!("UDP after the takeover: {}", chain(e)));
    assert_eq!(before, after, "the UDP flow changed target or SNAT port");
    forged_hellos_are_refused(&c);
    std::thread::sleep(Duration::from_secs(2));
    let answers = prober.finish();
    let (mac1, mac2) = (c.mac(1, "acme"), c.mac(2, "acme"));
    assert!(
        first_answer(&answers, EP_Z2, mac1, killed_at).is_some(),
        "fw1 never answered for {EP_Z2}"
    );
    let lapsed = killed_at + Duration::from_millis(TAKEOVER_S * 500 + 300);
    assert!(
        first_answer(&answers, EP_Z2, mac2, lapsed).is_none(),
        "fw2's program still answered for {EP_Z2} after its lease lapsed"
    );
    drop((fw1, fw2));
}

/// With fw2's `pl run` dead, anyone on fw2 can bind its sync address and port, as a local
/// user could. A hello under another key, an old one, one sent to another node and a
/// replayed one are refused and counted; the same hello under the cluster's key, fresh
/// and to fw1, is taken (so each refusal is the check's doing). The hellos claim no zone.
fn forged_hellos_are_refused(c: &Cluster) {
    use pl_userspace::cluster::{secret::Secret, wire};
    let fw1 = SocketAddrV4::new(Ipv4Addr::new(192, 168, 100, 1), 7946);
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as u64
    };
    let send = |key: &Secret, seq: u64, to: u8, sent_ms: u64| {
        let h = wire::Header {
            magic: wire::MAGIC,
            version: wire::VERSION,
            node: 1,
            kind: wire::KIND_HELLO,
            serving: 0,
            boot: u64::MAX / 2,
            seq,
            sent_ms,
            to,
            ..wire::Header::default()
        };
        let d = wire::encode::<wire::Record>(h, &[], key);
        netns::run_in(&c.lab.node_ns(2), || -> std::io::Result<()> {
            let s = std::net::UdpSocket::bind("192.168.100.2:7946")?;
            s.send_to(&d, fw1)?;
            Ok(())
        })
        .expect("netns")
        .unwrap_or_else(|e| panic!("sending from fw2's sync address: {e}"));
    };
    // fw1's count of refusals, and how long ago it last heard fw2.
    let seen = || {
        let cl = c
            .status(1)
            .and_then(|s| s.cluster)
            .expect("fw1's cluster status");
        let heard = cl
            .peers
            .iter()
            .find(|p| p.name == "fw2")
            .expect("fw2")
            .heard_ms_ago;
        (cl.sync.unauthenticated, heard.unwrap_or(u64::MAX))
    };
    let key = Secret::new(
        std::fs::read(pl_userspace::lab::cluster::secret_path(c.lab.prefix()))
            .expect("the lab's key"),
    )
    .expect("key");
    let other = Secret::new(vec![0x55; 32]).expect("key");
    let old = now_ms() - 120_000;
    for (what, key, seq, to, sent_ms) in [
        ("under another key", &other, 1, 0, now_ms()),
        ("sent two minutes ago", &key, 2, 0, old),
        ("sent to another node", &key, 3, 1, now_ms()),
    ] {
        let (before, _) = seen();
        send(key, seq, to, sent_ms);
        assert!(
            within(Duration::from_secs(2), || seen().0 > before).is_some(),
            "a hello {what} was not counted as unauthenticated"
        );
        let (_, heard) = seen();
        assert!(
            heard > 1500,
            "fw1 took a hello {what}: it heard fw2 {heard} ms ago"
        );
    }
    send(&key, 4, 0, now_ms());
    assert!(
        within(Duration::from_secs(2), || seen().1 < 1500).is_some(),
        "a good hello from fw2's address was refused too: the test proves nothing"
    );
    let (before, _) = seen();
    send(&key, 4, 0, now_ms());
    assert!(
        within(Duration::from_secs(2), || seen().0 > before).is_some(),
        "a replayed hello was taken"
    );
}
