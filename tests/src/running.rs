//! Helpers for the end-to-end tests: a lab running `pl run --config` with the provider's
//! servers ([`Running`]), the lab's addresses, and checks on what `pl` prints.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use pl_common::stats::{EndpointCounter, IfaceCounter};
use pl_userspace::{
    flows::FlowReport,
    frame::{Ipv4, Ipv6, ipv4_frame, ipv6_frame, parse_mac},
    lab::runner::PlRun,
    lab::serve::all_targets,
    lab::traffic::{self, Servers, UDP_PORT},
    lab::{PEER_IFACE, cmd, netns},
    neigh::RawSender,
    stats::StatsReport,
};

use crate::{TestLab, chain, pl_bin, stderr};

pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);
pub const OUTSIDER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 200);
pub const EP_Z1: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
pub const EP_Z2: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 101);
pub const T1: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 11);
pub const T2: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 12);
pub const SHORT: Duration = Duration::from_millis(1500);

/// The lab's IPv6 plan (the `ledger` service), address for address as IPv4's above.
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xa, 0, 0, 0, 0, 0, 0x10);
pub const OUTSIDER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xa, 0, 0, 0, 0, 0, 0x200);
pub const EP6_Z1: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xa, 0, 0, 0, 0, 0, 0x100);
pub const EP6_Z2: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xa, 0, 0, 0, 0, 0, 0x101);
pub const T1_6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x9, 0, 0, 0, 0, 0, 0x11);
pub const T2_6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x9, 0, 0, 0, 0, 0, 0x12);
pub const NLB6_Z1: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x9, 0, 0, 0, 0, 0, 0x250);
pub const NLB6_Z2: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x9, 0, 0, 0, 0, 0, 0x251);

/// A lab running `pl run --config` (with `config`) and the provider's servers (on the
/// targets' IPv4 and IPv6 addresses).
pub struct Running {
    pub run: PlRun,
    pub servers: Servers,
    pub lab: TestLab,
}

impl Running {
    pub fn start(tag: &str, config: &str) -> Self {
        Self::start_with(tag, config, &[])
    }

    /// As [`Running::start`], with more arguments for `pl run`.
    pub fn start_with(tag: &str, config: &str, extra: &[&str]) -> Self {
        Self::start_shaped(tag, config, extra, |lab| lab)
    }

    /// As [`Running::start_with`] on a lab shaped by `shape` (MTUs).
    pub fn start_shaped(
        tag: &str,
        config: &str,
        extra: &[&str],
        shape: impl FnOnce(pl_userspace::lab::Lab) -> pl_userspace::lab::Lab,
    ) -> Self {
        let lab = TestLab::up_with(tag, shape);
        let path = lab
            .lab
            .write_config(config)
            .unwrap_or_else(|e| panic!("{}", chain(e)));
        let servers = Servers::start(
            &lab.topo.network("prov").expect("prov").namespace,
            &all_targets(),
        )
        .unwrap_or_else(|e| panic!("servers: {}", chain(e)));
        let path = path.to_string_lossy().into_owned();
        let mut args = vec!["--config", path.as_str()];
        args.extend_from_slice(extra);
        let run = PlRun::start(&pl_bin(), &lab.fw_ns(), "default", &args)
            .unwrap_or_else(|e| panic!("pl run --config: {}", chain(e)));
        let me = Self { run, servers, lab };
        me.wait_resolved();
        me
    }

    /// Stops `pl run` (SIGTERM) and starts it again with `config` and `extra` arguments, as
    /// an operator upgrading it would; returns the new run and how long it took.
    pub fn restart(self, config: &str, extra: &[&str]) -> (Self, Duration) {
        let (me, took, ()) = self.restart_after(config, extra, |_| ());
        (me, took)
    }

    /// As [`Running::restart`], running `between` while no `pl run` is up (its data plane
    /// left attached, as during an upgrade).
    pub fn restart_after<T>(
        self,
        config: &str,
        extra: &[&str],
        between: impl FnOnce(&TestLab) -> T,
    ) -> (Self, Duration, T) {
        let Self { run, servers, lab } = self;
        let path = lab
            .lab
            .write_config(config)
            .unwrap_or_else(|e| panic!("{}", chain(e)));
        let path = path.to_string_lossy().into_owned();
        let mut args = vec!["--config", path.as_str()];
        args.extend_from_slice(extra);
        let began = Instant::now();
        let out = run
            .stop()
            .unwrap_or_else(|e| panic!("stopping pl run: {}", chain(e)));
        assert!(out.status.success(), "pl run failed: {}", stderr(&out));
        let seen = between(&lab);
        let run = PlRun::start(&pl_bin(), &lab.fw_ns(), "default", &args)
            .unwrap_or_else(|e| panic!("pl run {args:?} again: {}", chain(e)));
        let took = began.elapsed();
        (Self { run, servers, lab }, took, seen)
    }

    /// `pl reload --config` with `config`, which must be applied; what it printed.
    pub fn reload(&self, config: &str) -> String {
        let path = self
            .lab
            .lab
            .write_config(config)
            .unwrap_or_else(|e| panic!("{}", chain(e)));
        let out = self.lab.pl(
            &self.lab.fw_ns(),
            &["reload", "--config", &path.to_string_lossy()],
        );
        assert!(out.status.success(), "pl reload: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn ns(&self, network: &str) -> String {
        self.lab
            .topo
            .network(network)
            .unwrap_or_else(|| panic!("no network {network}"))
            .namespace
            .clone()
    }

    pub fn stats(&self) -> StatsReport {
        self.run
            .stats()
            .unwrap_or_else(|e| panic!("stats: {}", chain(e)))
    }

    /// Waits until every target that exists in the lab has a MAC.
    pub fn wait_resolved(&self) {
        let r = self
            .run
            .wait_for_stats(Duration::from_secs(5), |r| {
                r.targets
                    .iter()
                    .filter(|t| t.ip == T1 || t.ip == T2)
                    .all(|t| t.mac.is_some())
            })
            .unwrap_or_else(|e| panic!("stats: {}", chain(e)));
        let missing: Vec<_> = r
            .targets
            .iter()
            .filter(|t| (t.ip == T1 || t.ip == T2) && t.mac.is_none())
            .collect();
        assert!(
            missing.is_empty(),
            "targets never resolved by ARP: {missing:?}"
        );
    }

    /// A WHO over TCP from `src` (port `sport`, 0 for any) in `network` to `ep:port`;
    /// either family.
    pub fn who_tcp(
        &self,
        network: &str,
        src: impl Into<IpAddr>,
        sport: u16,
        ep: impl Into<IpAddr>,
        port: u16,
    ) -> Result<String, String> {
        traffic::tcp_who(
            &self.ns(network),
            src,
            sport,
            SocketAddr::new(ep.into(), port),
            SHORT,
        )
        .map_err(chain)
    }

    /// A WHO over UDP from `src:sport` in `network` to `ep`'s UDP listener; either family.
    pub fn who_udp(
        &self,
        network: &str,
        src: impl Into<IpAddr>,
        sport: u16,
        ep: impl Into<IpAddr>,
    ) -> Result<String, String> {
        traffic::udp_who(
            &self.ns(network),
            src,
            sport,
            SocketAddr::new(ep.into(), UDP_PORT),
            SHORT,
        )
        .map_err(chain)
    }

    pub fn endpoint(&self, name: &str, c: EndpointCounter) -> u64 {
        self.stats()
            .endpoint(name)
            .unwrap_or_else(|| panic!("no endpoint {name} in stats"))
            .get(c)
    }

    pub fn iface(&self, name: &str, c: IfaceCounter) -> u64 {
        self.stats()
            .interface(name)
            .unwrap_or_else(|| panic!("no interface {name} in stats"))
            .get(c)
    }

    /// `ip route get ADDR` in `network`'s namespace: where a cached path MTU shows.
    pub fn route_to(&self, network: &str, addr: IpAddr) -> String {
        let family = if addr.is_ipv6() { "-6" } else { "-4" };
        let out = crate::output(netns::exec(&self.ns(network), "ip").args([
            family,
            "route",
            "get",
            &addr.to_string(),
        ]));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits up to 3 s for `network`'s route to `addr` to show `want` (a cached path MTU:
    /// `"mtu 1400"`); panics if it does not.
    pub fn wait_route(&self, network: &str, addr: IpAddr, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(3);
        while !self.route_to(network, addr).contains(want) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let route = self.route_to(network, addr);
        assert!(
            route.contains(want),
            "{network}'s route to {addr} has no {want}:\n{route}"
        );
    }

    /// A connected UDP socket in `network` from `src` to `ep`, answered once through pl,
    /// and the flow it made.
    pub fn udp_flow(
        &self,
        network: &str,
        src: SocketAddr,
        ep: SocketAddr,
    ) -> (UdpSocket, FlowReport) {
        let sock = netns::run_in(&self.ns(network), || -> std::io::Result<UdpSocket> {
            let u = UdpSocket::bind(src)?;
            u.connect(ep)?;
            u.set_read_timeout(Some(SHORT))?;
            u.send(b"WHO")?;
            let mut buf = [0u8; 256];
            u.recv(&mut buf)?;
            Ok(u)
        })
        .unwrap_or_else(|e| panic!("{}", chain(e)))
        .unwrap_or_else(|e| panic!("UDP {src} -> {ep} through pl: {e}"));
        let flows = pl_flows(self, &[]).unwrap_or_else(|e| panic!("{e}"));
        let flow = flows
            .into_iter()
            .find(|f| f.consumer == src)
            .unwrap_or_else(|| panic!("no flow for the socket from {src}"));
        (sock, flow)
    }

    /// Sends the IP `packet` (IPv4 or IPv6, by its version) into pl from the provider
    /// side's peer, as a hop there would.
    pub fn from_provider(&self, packet: &[u8]) {
        let p = self.lab.topo.network("prov").expect("prov");
        let (peer, fw) = (
            parse_mac(&p.peer_mac).expect("MAC"),
            parse_mac(&p.fw_mac).expect("MAC"),
        );
        let (frame, ether_type) = if packet.first().is_some_and(|b| b >> 4 == 6) {
            (ipv6_frame(fw, peer, packet), 0x86dd)
        } else {
            (ipv4_frame(fw, peer, packet), 0x0800)
        };
        netns::run_in(&self.ns("prov"), || -> std::io::Result<()> {
            let ifindex =
                nix::net::if_::if_nametoindex(PEER_IFACE).map_err(std::io::Error::from)?;
            RawSender::open(ifindex)?.send(&frame, ether_type)
        })
        .unwrap_or_else(|e| panic!("{}", chain(e)))
        .unwrap_or_else(|e| panic!("sending from the provider side: {e}"));
    }
}

/// `target=IP peer=ADDR:PORT` -> (target, peer address, peer port), IPv4 only.
pub fn parse_who(answer: &str) -> (Ipv4Addr, Ipv4Addr, u16) {
    match parse_who_ip(answer) {
        (IpAddr::V4(target), IpAddr::V4(peer), port) => (target, peer, port),
        _ => panic!("answer {answer:?} is not IPv4"),
    }
}

/// `target=IP peer=ADDR:PORT` (IPv6 peers as `[ADDR]:PORT`) -> (target, peer address,
/// peer port), either family.
pub fn parse_who_ip(answer: &str) -> (IpAddr, IpAddr, u16) {
    let field = |k: &str| {
        answer
            .split_whitespace()
            .find_map(|f| f.strip_prefix(k))
            .unwrap_or_else(|| panic!("answer {answer:?} lacks {k}"))
            .to_owned()
    };
    let peer: SocketAddr = field("peer=")
        .parse()
        .unwrap_or_else(|e| panic!("peer in {answer:?}: {e}"));
    (
        field("target=")
            .parse()
            .unwrap_or_else(|e| panic!("target in {answer:?}: {e}")),
        peer.ip(),
        peer.port(),
    )
}

/// The ICMP error a hop on the provider side sends when the `WHO` datagram pl carried for
/// `flow` ([`Running::udp_flow`]: from its NLB address and SNAT port to its target, TTL or
/// hop limit one lower) is too big for an `mtu`-byte link: fragmentation needed (IPv4) or
/// packet too big (IPv6), from the target, quoting the datagram.
pub fn too_big_from_target(flow: &FlowReport, mtu: u16) -> Vec<u8> {
    match (flow.nlb, flow.target) {
        (SocketAddr::V4(nlb), SocketAddr::V4(target)) => {
            let quoted = Ipv4 {
                ttl: 63,
                ..Ipv4::new(nlb.ip().octets(), target.ip().octets())
            }
            .udp(nlb.port(), target.port(), b"WHO");
            let m = mtu.to_be_bytes();
            Ipv4::new(target.ip().octets(), nlb.ip().octets()).icmp_error(
                3,
                4,
                [0, 0, m[0], m[1]],
                &quoted,
            )
        }
        (SocketAddr::V6(nlb), SocketAddr::V6(target)) => {
            let quoted = Ipv6 {
                hop_limit: 63,
                ..Ipv6::new(nlb.ip().octets(), target.ip().octets())
            }
            .udp(nlb.port(), target.port(), b"WHO");
            let mut msg = vec![2, 0, 0, 0];
            msg.extend_from_slice(&u32::from(mtu).to_be_bytes());
            msg.extend_from_slice(&quoted);
            Ipv6::new(target.ip().octets(), nlb.ip().octets()).icmp6(&msg)
        }
        _ => panic!("a flow's provider side is of one family: {flow:?}"),
    }
}

/// `pl flows --json ARGS` in the forwarder namespace.
pub fn pl_flows(r: &Running, args: &[&str]) -> Result<Vec<FlowReport>, String> {
    let mut full = vec!["flows", "--json"];
    full.extend_from_slice(args);
    let out = r.lab.pl(&r.lab.fw_ns(), &full);
    if !out.status.success() {
        return Err(stderr(&out));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "pl flows printed no JSON: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// A namespace the test makes beside a lab, removed on drop.
pub struct ExtraNs(pub String);

impl Drop for ExtraNs {
    fn drop(&mut self) {
        let _ = cmd::ip(["netns", "del", &self.0]);
    }
}

/// Runs `pl run ARGS` in `ns` expecting it to fail with a one-line error that mentions
/// every fragment in `mentions`.
pub fn expect_run_error(lab: &TestLab, ns: &str, args: &[&str], mentions: &[&str]) {
    let mut full = vec!["run", "--instance", "bad"];
    full.extend_from_slice(args);
    let out = lab.pl(ns, &full);
    assert!(
        !out.status.success(),
        "pl {full:?} in {ns} succeeded; expected an error"
    );
    expect_one_line_error(&stderr(&out), mentions);
}

/// `err` is one line and names every one of `mentions`.
pub fn expect_one_line_error(err: &str, mentions: &[&str]) {
    assert_eq!(err.lines().count(), 1, "error is not one line:\n{err}");
    for m in mentions {
        assert!(err.contains(m), "error does not mention {m:?}: {err}");
    }
}

/// `pl run ARGS --instance INSTANCE` in the lab's forwarder namespace, started.
pub fn start_run(lab: &TestLab, instance: &str, args: &[String]) -> PlRun {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    PlRun::start(&pl_bin(), &lab.fw_ns(), instance, &args)
        .unwrap_or_else(|e| panic!("pl run {args:?}: {}", chain(e)))
}
