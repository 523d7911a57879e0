//! Real TCP: one iperf3 stream through pl, nftables and plain routing, at two MTUs.

use std::time::Duration;

use anyhow::{Context as _, bail};

use super::{driver::Bench, results::TcpResult, sized};
use crate::lab::netns;

/// Real TCP: iperf3 through pl, through nft, and plain routing (sink off: TCP needs the
/// stack), with every link at 1500 and then at 9000: on veth any XDP program strips GSO
/// from its peer, so pl moves MTU-sized packets where nftables moves 64 KB ones.
pub(super) fn real_tcp(b: &mut Bench<'_>, quick: bool) -> anyhow::Result<Vec<TcpResult>> {
    let seconds = if quick { 1 } else { 5 };
    let mut tcp = Vec::new();
    b.sink(false)?;
    for mtu in [1500, 9000] {
        b.leave()?;
        b.set_mtu(mtu)?;
        for (name, dst, port) in [
            ("pl", "10.0.0.100", 443),
            ("nftables", "10.0.0.100", 443),
            ("routing", "10.9.0.20", 8443),
        ] {
            match name {
                "pl" => b.start_pl(sized(1))?,
                "nftables" => b.enter_kernel(true)?,
                _ => b.enter_kernel(false)?,
            }
            let bps = iperf(b, dst, port, seconds)
                .with_context(|| format!("iperf3 through {name} at MTU {mtu}"))?;
            println!(
                "  iperf3 through {name} at MTU {mtu}: {:.2} Gbit/s",
                bps / 1e9
            );
            tcp.push(TcpResult {
                name: name.to_owned(),
                bits_per_second: bps,
                seconds,
                mtu,
            });
        }
    }
    b.leave()?;
    b.set_mtu(1500)?;
    b.sink(true)?;
    Ok(tcp)
}

/// iperf3 from globex to `dst:port` for `seconds`: received bits per second.
fn iperf(b: &Bench<'_>, dst: &str, port: u16, seconds: u32) -> anyhow::Result<f64> {
    let prov = b.ns_of("prov")?;
    let glob = b.ns_of("globex")?;
    let mut server = netns::exec(&prov, "iperf3")
        .args(["-s", "-1", "-p", "8443"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting iperf3 -s (is iperf3 installed? `cargo xtask setup`)")?;
    let out = wait_listening(&prov, 8443).and_then(|()| iperf_client(&glob, dst, port, seconds));
    let _ = server.kill();
    let _ = server.wait();
    let v = out?;
    v.pointer("/end/sum_received/bits_per_second")
        .and_then(serde_json::Value::as_f64)
        .context("iperf3 reported no received rate")
}

/// Waits (up to 5 s) until something in `ns` listens on TCP `port`: a loaded machine may
/// take longer than any fixed sleep to start the server.
fn wait_listening(ns: &str, port: u16) -> anyhow::Result<()> {
    let filter = format!("sport = :{port}");
    for _ in 0..50 {
        let out = netns::exec(ns, "ss")
            .args(["-Hltn", filter.as_str()])
            .output()
            .context("running ss")?;
        if !out.stdout.is_empty() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("nothing listens on port {port} in {ns} after 5 s")
}

/// One iperf3 client run; a refused connect is tried again (up to 5 times, 200 ms apart)
/// since a refusal never reaches the one-shot server.
fn iperf_client(ns: &str, dst: &str, port: u16, seconds: u32) -> anyhow::Result<serde_json::Value> {
    let mut tries = 0;
    loop {
        let out = netns::exec(ns, "iperf3")
            .args([
                "-J",
                "-c",
                dst,
                "-p",
                &port.to_string(),
                "-t",
                &seconds.to_string(),
            ])
            .output()
            .context("running iperf3 -c")?;
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).context("iperf3 -J output")?;
        let Some(e) = v.get("error").and_then(serde_json::Value::as_str) else {
            return Ok(v);
        };
        tries += 1;
        if !e.contains("Connection refused") || tries == 5 {
            bail!("iperf3 to {dst}:{port}: {e}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
