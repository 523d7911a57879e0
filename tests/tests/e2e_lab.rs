//! End to end, the lab: `pl lab up` replaces a lab of the same prefix and `pl lab down` is
//! idempotent; `pl demo` runs end to end; the quick start (`lab up --config-out --serve`,
//! `pl run`, curl over IPv4 and IPv6) works as written.

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
        // Dual-stack peers: every IPv6 address of the plan, no link-local one (nothing
        // the kernel would speak for unasked); the forwarder's side has none at all.
        let peer6 = output(Command::new("ip").args([
            "-n",
            &net.namespace,
            "-6",
            "-o",
            "addr",
            "show",
            "dev",
            PEER_IFACE,
        ]));
        let peer6 = String::from_utf8_lossy(&peer6.stdout);
        for a in net.addrs.iter().filter(|a| a.contains(':')) {
            assert!(
                peer6.contains(a.as_str()),
                "{}: {a} missing:\n{peer6}",
                net.namespace
            );
        }
        assert!(
            !peer6.contains("fe80"),
            "{}: a link-local address:\n{peer6}",
            net.namespace
        );
        let fw6 = output(Command::new("ip").args([
            "-n",
            &fw,
            "-6",
            "-o",
            "addr",
            "show",
            "dev",
            &net.fw_iface,
        ]));
        assert!(
            String::from_utf8_lossy(&fw6.stdout).trim().is_empty(),
            "{} carries an IPv6 address",
            net.fw_iface
        );
    }
    // A quiet wire: no router solicitation, DAD probe or MLD report reaches the forwarder
    // (the kernel sends MLD reports up to a second after link-up unless dropped).
    std::thread::sleep(std::time::Duration::from_secs(2));
    for net in &topo.networks {
        let link = output(Command::new("ip").args([
            "-n",
            &fw,
            "-j",
            "-s",
            "link",
            "show",
            "dev",
            &net.fw_iface,
        ]));
        let link: serde_json::Value =
            serde_json::from_slice(&link.stdout).expect("ip -j -s link prints JSON");
        assert_eq!(
            link[0]["stats64"]["rx"]["packets"].as_u64(),
            Some(0),
            "{} received frames nobody sent: {link}",
            net.fw_iface
        );
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
        // Names resolved in each network, the private name to each network's own
        // endpoint, a connection made by name.
        "acme    billing.example.com A: 10.0.0.10",
        "globex  acme-billing.billing.vpce.internal A: NXDOMAIN",
        "-> billing.example.com (10.0.0.10",
        "acme-billing-z1.billing.vpce.internal",
    ] {
        assert!(stdout.contains(s), "demo output lacks {s:?}:\n{stdout}");
    }
    let lab = pl_userspace::lab::Lab::new(&prefix).expect("valid prefix");
    for ns in lab.namespaces() {
        assert!(!netns::exists(&ns), "demo left namespace {ns}");
    }
}

/// `pl demo --nodes 2`: the cluster story, a takeover and a failback, ends clean.
#[test]
fn cluster_demo_shows_a_takeover() {
    require_kernel!("cluster_demo_shows_a_takeover");
    let prefix = format!("dc{}-", std::process::id());
    let out = output(Command::new(pl_bin()).args(["demo", "--nodes", "2", "--prefix", &prefix]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pl demo --nodes 2 failed: {}\n{stdout}",
        stderr(&out)
    );
    for s in [
        "Zone z2:      owner fw2",
        "fw1 serves z2",
        "Zone z2:      owner fw1; here backup (master)",
        "the same flow (target and SNAT port) throughout",
        "fw2 serves z2 again",
        "tearing down",
    ] {
        assert!(stdout.contains(s), "demo output lacks {s:?}:\n{stdout}");
    }
    let lab = pl_userspace::lab::cluster::ClusterLab::new(&prefix, 2).expect("valid prefix");
    for ns in lab.namespaces() {
        assert!(!netns::exists(&ns), "demo left namespace {ns}");
    }
}

/// The README's quick start, as a user types it: `pl lab up --config-out --serve`, `pl run`
/// on that config, one curl through an endpoint, and `pl lab down` stopping the servers.
#[test]
fn quick_start_serves_a_curl_through_an_endpoint() {
    require_kernel!("quick_start_serves_a_curl_through_an_endpoint");
    let prefix = format!("qs{}-", std::process::id());
    let lab = pl_userspace::lab::Lab::new(&prefix).expect("valid prefix");
    struct Down(pl_userspace::lab::Lab);
    impl Drop for Down {
        fn drop(&mut self) {
            let _ = self.0.down();
        }
    }
    let _down = Down(lab.clone());
    let config = std::env::temp_dir().join(format!("{prefix}quick.toml"));
    let up = output(Command::new(pl_bin()).args([
        "lab",
        "up",
        "--prefix",
        &prefix,
        "--config-out",
        config.to_str().expect("utf-8 temp dir"),
        "--serve",
    ]));
    assert!(up.status.success(), "pl lab up --serve: {}", stderr(&up));
    let text = std::fs::read_to_string(&config).expect("--config-out wrote the config");
    assert!(text.contains("[[endpoint]]"), "not a pl config:\n{text}");
    let serving = || {
        let pids = output(Command::new("ip").args(["netns", "pids", &format!("{prefix}prov")]));
        !String::from_utf8_lossy(&pids.stdout).trim().is_empty()
    };
    assert!(serving(), "no server process in {prefix}prov");
    let fw = format!("{prefix}fw");
    let mut run = netns::exec(&fw, pl_bin())
        .args(["run", "--config", config.to_str().expect("utf-8")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting pl run");
    // Until pl run has attached and resolved the targets: at most 10 s.
    let acme = format!("{prefix}acme");
    let mut answer = String::new();
    for _ in 0..20 {
        let out =
            output(netns::exec(&acme, "curl").args(["-s", "-m", "2", "http://10.0.0.100:443/"]));
        answer = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    // The IPv6 line, once IPv4 has shown pl run is up (the IPv6 target may resolve a
    // little later): at most 5 s.
    let mut answer6 = String::new();
    for _ in 0..10 {
        let out = output(netns::exec(&acme, "curl").args([
            "-sg",
            "-m",
            "2",
            "http://[fd00:a::100]:443/",
        ]));
        answer6 = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let _ = run.kill();
    let _ = run.wait();
    assert!(
        answer.starts_with("target=10.9.0.11 peer=10.9.0.250:"),
        "curl through the endpoint answered {answer:?}"
    );
    assert!(
        answer6.starts_with("target=fd00:9::11 peer=[fd00:9::250]:"),
        "curl through the IPv6 endpoint answered {answer6:?}"
    );
    let down = output(Command::new(pl_bin()).args(["lab", "down", "--prefix", &prefix]));
    assert!(down.status.success(), "pl lab down: {}", stderr(&down));
    let left = output(Command::new("pgrep").args(["-f", &format!("lab serve --prefix {prefix}")]));
    assert!(
        String::from_utf8_lossy(&left.stdout).trim().is_empty(),
        "pl lab down left the servers running"
    );
    let _ = std::fs::remove_file(&config);
}

/// `--config-out` never writes through a link planted at its path (as root, in a shared
/// directory such as /tmp), and a lab whose config could not be written comes down again.
#[test]
fn config_out_refuses_a_planted_link_and_leaves_no_lab() {
    require_kernel!("config_out_refuses_a_planted_link_and_leaves_no_lab");
    let prefix = format!("co{}-", std::process::id());
    let dir = std::env::temp_dir().join(format!("{prefix}dir"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let victim = dir.join("victim");
    std::fs::write(&victim, "keep me\n").expect("victim");
    let link = dir.join("lab.toml");
    std::os::unix::fs::symlink(&victim, &link).expect("symlink");
    let up = output(Command::new(pl_bin()).args([
        "lab",
        "up",
        "--prefix",
        &prefix,
        "--config-out",
        link.to_str().expect("utf-8"),
    ]));
    let lab = pl_userspace::lab::Lab::new(&prefix).expect("valid prefix");
    let left: Vec<String> = lab
        .namespaces()
        .into_iter()
        .filter(|n| netns::exists(n))
        .collect();
    let _ = lab.down();
    let victim_text = std::fs::read_to_string(&victim).expect("victim");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!up.status.success(), "pl lab up wrote through a symlink");
    assert!(stderr(&up).contains("--config-out"), "{}", stderr(&up));
    assert_eq!(victim_text, "keep me\n", "the link's target was written");
    assert!(left.is_empty(), "a failed lab up left {left:?}");
}
