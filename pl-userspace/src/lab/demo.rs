//! `pl demo`: the PrivateLink story on a fresh lab. Two consumer networks with the same
//! address plan reach one provider service through their own endpoints over TCP and UDP;
//! the provider's log shows only NLB addresses; a refused source and a provider-initiated
//! attempt fail; an IPv6 consumer reaches the IPv6 service the same way; each network
//! resolves the endpoint names at its DNS address and connects by name, the same private
//! name giving each network its own endpoint; `pl stats` (a separate process) closes with
//! per-endpoint counters. The
//! lab is removed however the demo ends (the guard below; `pl`'s signal handler on Ctrl-C).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6},
    path::Path,
    time::Duration,
};

use anyhow::{Context as _, ensure};

use crate::{
    control::DEFAULT_INSTANCE,
    lab::{
        DNS_ADDR, DNS_ADDR6, LAB_CONFIG, Lab, Teardown, Topology, netns,
        runner::PlRun,
        serve::{TARGETS, TARGETS6, all_targets},
        traffic::{self, Servers, TCP_PORT, UDP_PORT},
        with_dns,
    },
};

pub const DEFAULT_PREFIX: &str = "pl-demo-";
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);
const OUTSIDER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 200);
const ENDPOINT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
const NLB: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 250);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xa, 0, 0, 0, 0, 0, 0x10);
const ENDPOINT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xa, 0, 0, 0, 0, 0, 0x100);
const NLB6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x9, 0, 0, 0, 0, 0, 0x250);
/// Every NLB address of the lab's config, both services: all a target may see.
const NLBS: [IpAddr; 4] = [
    IpAddr::V4(NLB),
    IpAddr::V4(Ipv4Addr::new(10, 9, 0, 251)),
    IpAddr::V6(NLB6),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0x9, 0, 0, 0, 0, 0, 0x251)),
];
const WAIT: Duration = Duration::from_secs(2);

#[derive(Clone, Debug)]
pub struct DemoOptions {
    pub prefix: String,
    /// UDP requests from each consumer network.
    pub packets: usize,
}

pub fn run(opts: &DemoOptions) -> anyhow::Result<()> {
    let lab = Lab::new(&opts.prefix)?;
    println!("==> bringing up lab {}", opts.prefix);
    let topo = lab.up()?;
    let teardown = Teardown::new(lab, "demo");
    print!("{topo}");
    drive(teardown.lab(), &topo, opts)
}

fn ns<'a>(topo: &'a Topology, network: &str) -> anyhow::Result<&'a str> {
    Ok(&topo
        .network(network)
        .with_context(|| format!("lab has no network {network}"))?
        .namespace)
}

/// The demo's steps, in the order a user would try them.
fn drive(lab: &Lab, topo: &Topology, opts: &DemoOptions) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("locating the pl binary")?;
    let (servers, run) = start(lab, topo, &exe)?;
    overlapping_consumers(topo, opts.packets)?;
    one_tuple_from_both(topo)?;
    refusals(topo)?;
    ipv6_consumer(topo)?;
    let fw_ns = &topo.forwarder_ns;
    names(topo)?;
    println!("==> `pl dns --network acme`: acme's names as pl run answers them now");
    print!("{}", pl(&exe, fw_ns, &["dns", "--network", "acme"])?);
    provider_log(&servers)?;
    println!("==> `pl stats` (a separate process in {fw_ns})");
    print!("{}", pl(&exe, fw_ns, &["stats"])?);
    println!("==> `pl flows`: both sides of every live flow");
    print!("{}", pl(&exe, fw_ns, &["flows"])?);
    stop(lab, topo, servers, run)
}

/// The provider's servers, then `pl run` with its targets resolved.
fn start(lab: &Lab, topo: &Topology, exe: &Path) -> anyhow::Result<(Servers, PlRun)> {
    let fw_ns = &topo.forwarder_ns;
    let config = lab.write_config(&with_dns(LAB_CONFIG))?;
    println!(
        "==> provider: servers on targets {} and {}, {} and {} (tcp 8443, udp 5353)",
        TARGETS[0], TARGETS[1], TARGETS6[0], TARGETS6[1]
    );
    let servers = Servers::start(ns(topo, "prov")?, &all_targets())?;
    println!("==> `pl run --config {}` in {fw_ns}", config.display());
    let config = config.to_string_lossy().into_owned();
    let run = PlRun::start(exe, fw_ns, DEFAULT_INSTANCE, &["--config", &config])?;
    run.wait_for_stats(Duration::from_secs(5), |r| {
        r.targets.iter().all(|t| t.mac.is_some())
    })?;
    Ok((servers, run))
}

/// Both consumer networks, one address plan, each through its own endpoint.
fn overlapping_consumers(topo: &Topology, packets: usize) -> anyhow::Result<()> {
    println!(
        "==> consumers: acme and globex both are 10.0.0.0/24 and both use endpoint address {ENDPOINT}"
    );
    for net in ["acme", "globex"] {
        let who = traffic::tcp_who(
            ns(topo, net)?,
            CLIENT,
            0,
            SocketAddrV4::new(ENDPOINT, TCP_PORT),
            WAIT,
        )?;
        println!("    {net:<7} tcp {CLIENT} -> {ENDPOINT}:{TCP_PORT}: {who}");
        for i in 0..packets {
            let who = traffic::udp_who(
                ns(topo, net)?,
                CLIENT,
                0,
                SocketAddrV4::new(ENDPOINT, UDP_PORT),
                WAIT,
            )?;
            if i == 0 {
                println!("    {net:<7} udp {CLIENT} -> {ENDPOINT}:{UDP_PORT}: {who} (x{packets})");
            }
        }
    }
    Ok(())
}

/// One client tuple from both networks at once: two flows, two provider-side tuples.
fn one_tuple_from_both(topo: &Topology) -> anyhow::Result<()> {
    println!("==> the same client tuple {CLIENT}:40000 from both networks at the same moment");
    let (a, g) = std::thread::scope(|s| {
        let one = |net: &'static str| {
            let ns = ns(topo, net).map(str::to_owned);
            s.spawn(move || {
                traffic::tcp_who(
                    &ns?,
                    CLIENT,
                    40000,
                    SocketAddrV4::new(ENDPOINT, TCP_PORT),
                    WAIT,
                )
                .map_err(anyhow::Error::from)
            })
        };
        let (a, g) = (one("acme"), one("globex"));
        (a.join(), g.join())
    });
    let a = a.map_err(|_| anyhow::anyhow!("acme client panicked"))??;
    let g = g.map_err(|_| anyhow::anyhow!("globex client panicked"))??;
    println!("    acme:   {a}\n    globex: {g}");
    ensure!(
        a != g,
        "both networks' flows got the same provider-side tuple"
    );
    Ok(())
}

/// A source outside `allowed_sources`, and the provider opening a connection: both fail.
fn refusals(topo: &Topology) -> anyhow::Result<()> {
    println!("==> refused: a source outside acme-billing's allowed_sources (10.0.0.0/25)");
    let refused = traffic::tcp_who(
        ns(topo, "acme")?,
        OUTSIDER,
        0,
        SocketAddrV4::new(ENDPOINT, TCP_PORT),
        WAIT,
    );
    ensure!(refused.is_err(), "{OUTSIDER} was let through: {refused:?}");
    println!(
        "    acme    tcp {OUTSIDER} -> {ENDPOINT}:{TCP_PORT}: no answer (dropped, counted as refused_source)"
    );
    println!("==> refused: the provider opening a connection toward an NLB address");
    let initiated = traffic::tcp_who(
        ns(topo, "prov")?,
        TARGETS[0],
        0,
        SocketAddrV4::new(NLB, TCP_PORT),
        WAIT,
    );
    ensure!(
        initiated.is_err(),
        "the provider opened a connection: {initiated:?}"
    );
    println!(
        "    prov    tcp {} -> {NLB}:{TCP_PORT}: no answer (dropped, counted as dropped_no_flow)",
        TARGETS[0]
    );
    Ok(())
}

/// An IPv6 consumer through the IPv6 service (`ledger`): the target sees the NLB's IPv6
/// address, as billing's targets see its IPv4 one.
fn ipv6_consumer(topo: &Topology) -> anyhow::Result<()> {
    println!(
        "==> IPv6: acme's {CLIENT6} reaches the ledger service through endpoint [{ENDPOINT6}]"
    );
    let acme = ns(topo, "acme")?;
    let tcp = traffic::tcp_who(
        acme,
        CLIENT6,
        0,
        SocketAddrV6::new(ENDPOINT6, TCP_PORT, 0, 0),
        WAIT,
    )?;
    println!("    acme    tcp [{CLIENT6}] -> [{ENDPOINT6}]:{TCP_PORT}: {tcp}");
    let udp = traffic::udp_who(
        acme,
        CLIENT6,
        0,
        SocketAddrV6::new(ENDPOINT6, UDP_PORT, 0, 0),
        WAIT,
    )?;
    println!("    acme    udp [{CLIENT6}] -> [{ENDPOINT6}]:{UDP_PORT}: {udp}");
    for who in [&tcp, &udp] {
        ensure!(
            who.contains(&format!("peer=[{NLB6}]:")),
            "the target saw a source other than the NLB address {NLB6}: {who}"
        );
    }
    Ok(())
}

/// Endpoint DNS names: each network asks its own DNS address (the same address in both
/// overlapping networks), then connects by name.
fn names(topo: &Topology) -> anyhow::Result<()> {
    println!(
        "==> DNS: pl answers each network's endpoint names at {DNS_ADDR} and [{DNS_ADDR6}] inside it"
    );
    for (net, name, v6) in [
        ("acme", "acme-billing.billing.vpce.internal", false),
        ("acme", "acme-billing-z1.billing.vpce.internal", false),
        ("acme", "billing.example.com", false),
        ("acme", "ledger.example.com", true),
        ("globex", "billing.example.com", false),
        ("globex", "acme-billing.billing.vpce.internal", false),
    ] {
        let server = if v6 {
            IpAddr::V6(DNS_ADDR6)
        } else {
            IpAddr::V4(DNS_ADDR)
        };
        let got = match traffic::resolve(ns(topo, net)?, server, name, v6, WAIT) {
            Ok(addrs) => addrs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            Err(traffic::TrafficError::Rcode { code, .. }) => {
                format!("{code} (a network sees only its own endpoints' names)")
            }
            Err(e) => return Err(e.into()),
        };
        let ty = if v6 { "AAAA" } else { "A" };
        println!("    {net:<7} {name} {ty}: {got}");
    }
    let acme = ns(topo, "acme")?;
    let addrs = traffic::resolve(
        acme,
        IpAddr::V4(DNS_ADDR),
        "billing.example.com",
        false,
        WAIT,
    )?;
    let first = *addrs
        .first()
        .context("billing.example.com had no address")?;
    let IpAddr::V4(first) = first else {
        anyhow::bail!("billing.example.com answered {first}, not IPv4");
    };
    let who = traffic::tcp_who(acme, CLIENT, 0, SocketAddrV4::new(first, TCP_PORT), WAIT)?;
    println!("    acme    tcp {CLIENT} -> billing.example.com ({first}):{TCP_PORT}: {who}");
    Ok(())
}

/// What the provider's servers saw: NLB addresses only.
fn provider_log(servers: &Servers) -> anyhow::Result<()> {
    println!("==> provider's log: every connection came from an NLB address");
    let seen = servers.seen();
    for (target, proto, peer) in seen.iter().filter(|(_, p, _)| *p == "tcp") {
        println!("    {target} accepted {proto} from {peer}");
    }
    let foreign: Vec<_> = seen
        .iter()
        .filter(|(_, _, p)| !NLBS.contains(&p.ip()))
        .collect();
    ensure!(
        foreign.is_empty(),
        "the provider saw non-NLB sources: {foreign:?}"
    );
    Ok(())
}

/// `pl run` stopped, `pl down` run, and nothing left attached.
fn stop(lab: &Lab, topo: &Topology, servers: Servers, run: PlRun) -> anyhow::Result<()> {
    println!("==> stopping `pl run` (SIGTERM), then `pl down` to detach");
    drop(servers);
    let out = run.stop_and_down()?;
    ensure!(
        out.status.success(),
        "pl run failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    for i in topo.fw_ifaces() {
        ensure!(
            !lab.xdp_attached(&i)?,
            "{i} still has an XDP program after pl run exited"
        );
    }
    println!(
        "==> done: both overlapping networks were served, the provider saw only NLB addresses, refusals held, nothing left attached"
    );
    Ok(())
}

/// `pl ARGS` run in namespace `ns`: its output.
fn pl(exe: &Path, ns: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = netns::exec(ns, exe).args(args).output()?;
    ensure!(
        out.status.success(),
        "pl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
