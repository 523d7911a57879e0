//! `pl demo --nodes 2`: zones on separate forwarders. Two nodes on one switch, each
//! serving its zone; a UDP client through zone z2 asks every 200 ms while fw2 is killed
//! hard (its processes killed, its interfaces removed); fw1 takes z2 over and the client's
//! flow goes on; fw2 comes back and takes z2 back after `failback_s`. The lab is removed
//! however the demo ends.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};

use crate::{
    control::{self, DEFAULT_INSTANCE},
    lab::{
        cluster::{ClusterLab, ClusterTopology},
        netns,
        runner::PlRun,
        serve::TARGETS,
        traffic::{self, Servers, UDP_PORT},
    },
};

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);
const EP_Z2: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 101);
const FAILBACK_S: u64 = 5;

/// Removes the cluster lab when dropped.
struct Down(ClusterLab);

impl Drop for Down {
    fn drop(&mut self) {
        println!("==> tearing down lab {}", self.0.prefix());
        if let Err(e) = self.0.down() {
            eprintln!(
                "pl demo: teardown failed: {:#}; run `pl lab down --prefix {}`",
                anyhow::Error::from(e),
                self.0.prefix()
            );
        }
    }
}

pub fn run(prefix: &str) -> anyhow::Result<()> {
    let lab = ClusterLab::new(prefix, 2)?;
    println!("==> bringing up a cluster lab of two forwarders, {prefix}");
    let topo = lab.up()?;
    let lab = Down(lab);
    print!("{topo}");
    drive(&lab.0, &topo)
}

fn drive(lab: &ClusterLab, topo: &ClusterTopology) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("locating the pl binary")?;
    let prov = &topo.network("prov").context("no prov")?.namespace;
    let acme = topo.network("acme").context("no acme")?.namespace.clone();
    let _servers = Servers::start(prov, &TARGETS)?;
    let config = lab.config().replace(
        "takeover_s = 3",
        &format!("takeover_s = 3\nfailback_s = {FAILBACK_S}"),
    );
    let path = lab.lab().write_config(&config)?;
    let path = path.to_string_lossy().into_owned();
    println!("==> `pl run --config {path} --node fwN` in each forwarder namespace");
    let start = |i: usize, extra: &[&str]| {
        let node = format!("fw{i}");
        let mut args = vec!["--config", path.as_str(), "--node", &node];
        args.extend_from_slice(extra);
        PlRun::start(&exe, &lab.node_ns(i), DEFAULT_INSTANCE, &args)
    };
    let fw1 = start(1, &[])?;
    let fw2 = start(2, &[])?;
    wait_owner(lab, 1, "z2", "fw2", Duration::from_secs(15))?;
    show_zones(lab, &exe, 1)?;
    for ep in [Ipv4Addr::new(10, 0, 0, 100), EP_Z2] {
        let who = traffic::udp_who(
            &acme,
            CLIENT,
            0,
            SocketAddrV4::new(ep, UDP_PORT),
            Duration::from_secs(2),
        )?;
        println!("    acme udp -> {ep}:{UDP_PORT}: {who}");
    }
    println!(
        "==> acme's neighbour table: each zone's endpoint address at its own node's MAC\n{}",
        crate::lab::cmd::ip(["-n", &acme, "neigh", "show", "dev", "eth0"])?
    );

    println!(
        "==> a UDP client through z2 ({CLIENT}:41000 -> {EP_Z2}:{UDP_PORT}), one request every 200 ms; fw2 killed hard after 1 s"
    );
    let (asked, answered, longest) = std::thread::scope(|s| {
        let client = s.spawn(|| ticker(&acme, Duration::from_secs(8)));
        std::thread::sleep(Duration::from_secs(1));
        let killed = Instant::now();
        lab.kill_node(2)?;
        println!("    fw2 killed: pl run and keepalived SIGKILLed, its interfaces removed");
        wait_owner(lab, 1, "z2", "fw1", Duration::from_secs(5))?;
        println!(
            "    fw1 serves z2 {:.1} s after the kill",
            killed.elapsed().as_secs_f64()
        );
        client
            .join()
            .map_err(|_| anyhow::anyhow!("the client panicked"))?
    })?;
    println!(
        "    the client: {answered} of {asked} requests answered, the longest gap {:.1} s, the same flow (target and SNAT port) throughout",
        longest.as_secs_f64()
    );
    drop(fw2);
    show_zones(lab, &exe, 1)?;
    println!("==> `pl flows` on fw1: the flow fw2 opened, taken over");
    print!("{}", pl(&exe, &lab.node_ns(1), &["flows"])?);

    println!(
        "==> fw2 comes back (new interfaces, a fresh start); it takes z2 back after failback_s = {FAILBACK_S} s"
    );
    lab.restore_node(2)?;
    let fw2 = start(2, &["--fresh"])?;
    let back = wait_owner(lab, 1, "z2", "fw2", Duration::from_secs(FAILBACK_S + 10))?;
    println!("    fw2 serves z2 again after {:.1} s", back.as_secs_f64());
    show_zones(lab, &exe, 2)?;
    drop((fw1, fw2));
    println!(
        "==> done: each zone served by its own node, a dead node's zone taken over with its flows, given back when it returned"
    );
    Ok(())
}

/// Asks through z2 every 200 ms for `for_`: (asked, answered, longest gap without an
/// answer). Every answer must name the same target and SNAT port as the first.
fn ticker(ns: &str, for_: Duration) -> anyhow::Result<(usize, usize, Duration)> {
    let start = Instant::now();
    let (mut asked, mut answered) = (0, 0);
    let (mut first, mut last_ok, mut longest) = (None::<String>, Instant::now(), Duration::ZERO);
    while start.elapsed() < for_ {
        asked += 1;
        let t = Instant::now();
        if let Ok(who) = traffic::udp_who(
            ns,
            CLIENT,
            41000,
            SocketAddrV4::new(EP_Z2, UDP_PORT),
            Duration::from_millis(200),
        ) {
            answered += 1;
            let first = first.get_or_insert_with(|| who.clone());
            ensure!(*first == who, "the flow changed: {first} then {who}");
            longest = longest.max(last_ok.elapsed());
            last_ok = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(200).saturating_sub(t.elapsed()));
    }
    Ok((asked, answered, longest))
}

/// Waits until node `i` says `owner` serves `zone`: how long it took.
fn wait_owner(
    lab: &ClusterLab,
    i: usize,
    zone: &str,
    owner: &str,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        let status = netns::run_in(&lab.node_ns(i), || control::status(DEFAULT_INSTANCE))?;
        let now = status
            .ok()
            .and_then(|s| s.cluster)
            .and_then(|c| c.zones.into_iter().find(|z| z.zone == zone))
            .and_then(|z| z.owner);
        if now.as_deref() == Some(owner) {
            return Ok(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    anyhow::bail!("{owner} did not come to serve {zone} within {limit:?}")
}

/// The cluster lines of `pl status` on node `i`.
fn show_zones(lab: &ClusterLab, exe: &Path, i: usize) -> anyhow::Result<()> {
    println!("==> `pl status` on fw{i}");
    let out = pl(exe, &lab.node_ns(i), &["status"])?;
    for l in out.lines().filter(|l| {
        ["Node:", "Zone ", "Peer ", "Flow sync:"]
            .iter()
            .any(|p| l.starts_with(p))
    }) {
        println!("    {l}");
    }
    Ok(())
}

/// `pl ARGS` run in namespace `ns`: its output (`pl status` exits 1 when degraded, which
/// still prints the screen).
fn pl(exe: &Path, ns: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = netns::exec(ns, exe).args(args).output()?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
