//! End to end, interfaces `pl run` refuses: missing, duplicated or unusable ones fail with
//! one line and leave nothing attached; interfaces that cannot carry pl are refused by the
//! feature they lack.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    time::Duration,
};

use pl_tests::running::{expect_one_line_error, expect_run_error, start_run};
use pl_tests::{PublicPl, TestLab, chain, output, pl_bin, require_kernel, stderr};
use pl_userspace::{
    lab::netns,
    lab::runner::PlRun,
    lab::traffic::{self, Servers, TCP_PORT},
    lab::{LAB_CONFIG, NETWORKS, PEER_IFACE},
};

/// Missing privilege: `pl run` as an unprivileged user is refused, attaching nothing.
fn refused_without_privilege(lab: &TestLab) {
    let fw = lab.fw_ns();
    let public = PublicPl::new();
    let out = output(
        netns::exec(&fw, "setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
            ])
            .arg(public.path())
            .args(["run", "--instance", "nopriv", "--interface", "fw-globex"]),
    );
    assert!(!out.status.success(), "pl run as nobody succeeded");
    expect_one_line_error(&stderr(&out), &["permission denied", "root"]);
    assert!(
        !lab.xdp_attached("fw-globex"),
        "fw-globex attached by an unprivileged run"
    );
}

#[test]
fn bad_interfaces_fail_with_one_line_and_leave_nothing_attached() {
    require_kernel!("bad_interfaces_fail_with_one_line_and_leave_nothing_attached");
    let lab = TestLab::up("bad");
    let fw = lab.fw_ns();
    let acme_ns = lab.topo.network("acme").expect("acme").namespace.clone();

    for (ns, args, mentions) in [
        (
            &fw,
            &["--interface", "nope0"][..],
            &["interface nope0", "not found in this network namespace"][..],
        ),
        // fw-acme exists, but in the forwarder's namespace, not the consumer's.
        (
            &acme_ns,
            &["--interface", "fw-acme"],
            &["interface fw-acme", "not found", "another one"],
        ),
        (
            &fw,
            &["--interface", "fw-acme", "--interface", "fw-acme"],
            &["interface fw-acme: given twice"],
        ),
        // lo has no native XDP support.
        (
            &fw,
            &["--interface", "lo"],
            &["interface lo", "native XDP", "--skb"],
        ),
    ] {
        expect_run_error(&lab, ns, args, mentions);
    }

    // Occupied slot: fw-globex attaches first, then fw-acme refuses; fw-globex must be
    // detached again and the owner of fw-acme left alone.
    let owner = start_run(
        &lab,
        "owner",
        &["--interface".to_owned(), "fw-acme".to_owned()],
    );
    expect_run_error(
        &lab,
        &fw,
        &["--interface", "fw-globex", "--interface", "fw-acme"],
        &["interface fw-acme", "already attached"],
    );
    assert!(
        !lab.xdp_attached("fw-globex"),
        "fw-globex left attached after a failed multi-interface attach"
    );
    assert!(
        lab.xdp_attached("fw-acme"),
        "the first instance lost its attachment"
    );
    owner
        .stats()
        .unwrap_or_else(|e| panic!("owner stats after the refused attach: {}", chain(e)));

    refused_without_privilege(&lab);

    drop(owner);
    assert!(
        lab.xdp_attached("fw-acme"),
        "fw-acme lost its program when its pl run stopped"
    );
    lab.pl_down("owner");
    assert!(
        !lab.xdp_attached("fw-acme"),
        "fw-acme left attached after pl down"
    );
}

/// Interfaces that cannot carry pl as asked are refused before anything is attached: in
/// native mode a driver that is no redirect target (a veth whose peer has neither XDP nor
/// GRO), in generic mode an interface with GRO on (generic XDP would see merged packets
/// whose checksums NAT cannot update). With GRO off, generic mode forwards.
#[test]
fn interfaces_that_cannot_carry_pl_are_refused_by_feature() {
    require_kernel!("interfaces_that_cannot_carry_pl_are_refused_by_feature");
    let lab = TestLab::up("feat");
    let config = lab
        .lab
        .write_config(LAB_CONFIG)
        .unwrap_or_else(|e| panic!("{}", chain(e)));
    let config = config.to_string_lossy().into_owned();
    let fw = lab.fw_ns();
    let acme = lab.topo.network("acme").expect("acme").namespace.clone();
    let ethtool = |ns: &str, args: &[&str]| {
        let out = output(netns::exec(ns, "ethtool").args(args));
        assert!(out.status.success(), "ethtool {args:?}: {}", stderr(&out));
    };
    let none_attached = || {
        for n in &NETWORKS {
            assert!(
                !lab.xdp_attached(n.fw_iface),
                "{} left attached",
                n.fw_iface
            );
        }
    };

    // Native: acme's end loses GRO, so fw-acme is no redirect target.
    ethtool(&acme, &["-K", PEER_IFACE, "gro", "off"]);
    expect_run_error(
        &lab,
        &fw,
        &["--config", &config],
        &["interface fw-acme", "redirect target", "--skb"],
    );
    none_attached();
    ethtool(&acme, &["-K", PEER_IFACE, "gro", "on"]);

    // Generic: GRO on the interface itself.
    ethtool(&fw, &["-K", "fw-globex", "gro", "on"]);
    expect_run_error(
        &lab,
        &fw,
        &["--skb", "--config", &config],
        &["interface fw-globex", "generic-receive-offload", "gro off"],
    );
    none_attached();
    ethtool(&fw, &["-K", "fw-globex", "gro", "off"]);

    // Generic mode with GRO off forwards (the lab's peers send with checksums done).
    let run = PlRun::start(&pl_bin(), &fw, "feat", &["--skb", "--config", &config])
        .unwrap_or_else(|e| panic!("pl run --skb: {}", chain(e)));
    let servers = Servers::start(
        &lab.topo.network("prov").expect("prov").namespace,
        &[Ipv4Addr::new(10, 9, 0, 11), Ipv4Addr::new(10, 9, 0, 12)],
    )
    .unwrap_or_else(|e| panic!("{}", chain(e)));
    run.wait_for_stats(Duration::from_secs(5), |r| {
        r.targets.iter().all(|t| t.mac.is_some())
    })
    .unwrap_or_else(|e| panic!("{}", chain(e)));
    let (sent, got) = traffic::tcp_sink(
        &acme,
        Ipv4Addr::new(10, 0, 0, 10),
        SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 100), TCP_PORT),
        4 * 1024 * 1024,
    )
    .unwrap_or_else(|e| panic!("through generic mode: {}", chain(e)));
    assert_eq!(sent, got, "sha256 through generic mode differs");
    drop(servers);
    let out = run.stop().unwrap_or_else(|e| panic!("{}", chain(e)));
    assert!(out.status.success(), "pl run --skb: {}", stderr(&out));
}
