//! End to end, the lab: `pl lab up` replaces a lab of the same prefix and `pl lab down` is
//! idempotent; `pl demo` runs end to end.

use std::process::Command;

use pl_tests::{TestLab, chain, output, pl_bin, require_kernel, stderr};
use pl_userspace::{lab::PEER_IFACE, lab::netns};

#[test]
fn lab_up_replaces_and_down_is_idempotent() {
    require_kernel!("lab_up_replaces_and_down_is_idempotent");
    let lab = TestLab::up("lab");
    // A second `up` over the same prefix replaces the lab cleanly.
    let topo = lab
        .lab
        .up()
        .unwrap_or_else(|e| panic!("second lab up: {}", chain(e)));
    for ns in lab.lab.namespaces() {
        assert!(
            ns.starts_with(lab.lab.prefix()),
            "{ns} does not start with the prefix"
        );
        assert!(netns::exists(&ns), "{ns} missing after lab up");
    }
    let fw = lab.fw_ns();
    for net in &topo.networks {
        let addrs = output(Command::new("ip").args([
            "-n",
            &fw,
            "-4",
            "-o",
            "addr",
            "show",
            "dev",
            &net.fw_iface,
        ]));
        assert!(
            String::from_utf8_lossy(&addrs.stdout).trim().is_empty(),
            "{} carries an IPv4 address",
            net.fw_iface
        );
        let k = output(netns::exec(&net.namespace, "ethtool").args(["-k", PEER_IFACE]));
        let k = String::from_utf8_lossy(&k.stdout);
        assert!(
            k.contains("generic-receive-offload: on"),
            "{}: GRO is not on:\n{k}",
            net.namespace
        );
        assert!(
            k.contains("tx-checksumming: off"),
            "{}: tx checksumming is not off:\n{k}",
            net.namespace
        );
        assert_ne!(net.peer_mac, net.fw_mac);
    }
    let acme = topo.network("acme").expect("acme");
    let globex = topo.network("globex").expect("globex");
    assert_eq!(acme.addrs, globex.addrs, "consumer networks must overlap");
    // Printed topology names every namespace, interface and MAC.
    let printed = topo.to_string();
    for net in &topo.networks {
        for s in [&net.namespace, &net.fw_iface, &net.fw_mac, &net.peer_mac] {
            assert!(
                printed.contains(s.as_str()),
                "topology print lacks {s}:\n{printed}"
            );
        }
    }
    lab.lab
        .down()
        .unwrap_or_else(|e| panic!("lab down: {}", chain(e)));
    lab.lab
        .down()
        .unwrap_or_else(|e| panic!("second lab down: {}", chain(e)));
    for ns in lab.lab.namespaces() {
        assert!(!netns::exists(&ns), "{ns} left after lab down");
    }
}

#[test]
fn demo_runs_end_to_end() {
    require_kernel!("demo_runs_end_to_end");
    let prefix = format!("dm{}-", std::process::id());
    let out = output(Command::new(pl_bin()).args(["demo", "--prefix", &prefix, "--packets", "5"]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pl demo failed: {}\n{stdout}",
        stderr(&out)
    );
    // pl stats: a row per counter, naming the interface and its mode.
    for iface in ["fw-acme", "fw-globex", "fw-prov"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.split_whitespace().take(2).eq([iface, "native"])),
            "demo's pl stats lacks {iface} in native mode:\n{stdout}"
        );
    }
    for s in [
        "acme-billing",
        "globex-billing",
        "peer=10.9.0.250:",
        "refused_source",
        "tearing down",
    ] {
        assert!(stdout.contains(s), "demo output lacks {s:?}:\n{stdout}");
    }
    let lab = pl_userspace::lab::Lab::new(&prefix).expect("valid prefix");
    for ns in lab.namespaces() {
        assert!(!netns::exists(&ns), "demo left namespace {ns}");
    }
}
