//! `pl demo`: a lab, `pl run` on its forwarder, real traffic into every forwarder
//! interface, the counters from a separate `pl stats`, then teardown, also when a step
//! fails (the lab is removed when the guard drops; `pl`'s signal handler removes it on
//! Ctrl-C).

use std::{path::Path, time::Duration};

use anyhow::{Context as _, ensure};
use pl_common::stats::IfaceCounter;

use crate::{
    control::DEFAULT_INSTANCE,
    lab::{Lab, Topology},
    netns,
    runner::PlRun,
};

pub const DEFAULT_PREFIX: &str = "pl-demo-";
const UDP_PORT: u16 = 5353;

#[derive(Clone, Debug)]
pub struct DemoOptions {
    pub prefix: String,
    /// Datagrams sent from each lab network.
    pub packets: usize,
    /// UDP payload bytes per datagram.
    pub payload: usize,
}

/// Removes the lab when dropped, however the demo ends.
pub struct Teardown(pub Lab);

impl Drop for Teardown {
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

pub fn run(opts: &DemoOptions) -> anyhow::Result<()> {
    let lab = Lab::new(&opts.prefix)?;
    println!("==> bringing up lab {}", opts.prefix);
    let topo = lab.up()?;
    let teardown = Teardown(lab);
    print!("{topo}");
    drive(&teardown.0, &topo, opts)
}

fn drive(lab: &Lab, topo: &Topology, opts: &DemoOptions) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("locating the pl binary")?;
    let fw_ns = &topo.forwarder_ns;
    let ifaces = topo.fw_ifaces();
    println!("==> starting `pl run` on {} in {fw_ns}", ifaces.join(", "));
    let args: Vec<&str> = ifaces
        .iter()
        .flat_map(|i| ["--interface", i.as_str()])
        .collect();
    let run = PlRun::start(&exe, fw_ns, DEFAULT_INSTANCE, &args)?;

    println!(
        "==> sending {} UDP datagrams ({} payload bytes) from each network to its forwarder interface",
        opts.packets, opts.payload
    );
    for net in &topo.networks {
        let bytes = lab.send_udp(topo, &net.network, UDP_PORT, opts.packets, opts.payload)?;
        println!(
            "    {:<8} {} -> {}:{UDP_PORT} via {}: {} frames, {bytes} bytes",
            net.network,
            net.addrs[0].split('/').next().unwrap_or_default(),
            net.service_ip,
            net.fw_iface,
            opts.packets
        );
    }
    let want = opts.packets as u64;
    let report = run.wait_for_stats(Duration::from_secs(3), |r| {
        ifaces.iter().all(|i| {
            r.interface(i)
                .is_some_and(|s| s.get(IfaceCounter::Ipv4Udp) >= want)
        })
    })?;

    println!("==> `pl stats` (a separate process in {fw_ns})");
    print!("{}", pl_stats(&exe, fw_ns)?);

    println!("==> stopping `pl run` (SIGTERM)");
    let out = run.stop()?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    ensure!(
        out.status.success(),
        "pl run failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    for i in &ifaces {
        ensure!(
            !lab.xdp_attached(i)?,
            "{i} still has an XDP program after pl run exited"
        );
        let got = report
            .interface(i)
            .map_or(0, |s| s.get(IfaceCounter::Ipv4Udp));
        ensure!(
            got >= want,
            "{i}: pl counted {got} UDP frames of the {want} sent"
        );
    }
    println!(
        "==> every forwarder interface counted the {want} datagrams sent to it; no XDP program left attached"
    );
    Ok(())
}

fn pl_stats(exe: &Path, ns: &str) -> anyhow::Result<String> {
    let out = netns::exec(ns, exe).arg("stats").output()?;
    ensure!(
        out.status.success(),
        "pl stats failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
