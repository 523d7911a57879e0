//! End to end, `pl reload` under load: the stream keeps going, the changes apply, and
//! flows the new config no longer allows are revoked (IPv4 and IPv6).

use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    time::{Duration, Instant},
};

use pl_common::stats::EndpointCounter;
use pl_tests::{
    chain, require_kernel,
    running::{CLIENT, CLIENT6, EP_Z1, EP6_Z1, Running, T1, T2, parse_who, pl_flows},
    stderr,
};
use pl_userspace::{
    lab::LAB_CONFIG,
    lab::cmd,
    lab::traffic::{self, TCP_PORT},
};

/// Target .12 (zone z2) goes, .13 comes; endpoint acme-extra appears.
fn changed() -> String {
    LAB_CONFIG
        .replace(
            r#"{ ip = "10.9.0.12", zone = "z2" }"#,
            r#"{ ip = "10.9.0.13", zone = "z2" }"#,
        )
        .replace(
            r#"accepted_endpoints = ["acme-billing", "globex-billing"]"#,
            r#"accepted_endpoints = ["acme-billing", "globex-billing", "acme-extra"]"#,
        )
        + "\n[[endpoint]]\nname = \"acme-extra\"\nservice = \"billing\"\nnetwork = \"acme\"\naddresses = [{ ip = \"10.0.0.102\", zone = \"z1\" }]\n"
}

/// A bad config first (refused, naming the interface), then the good one.
fn reload_bad_then_good(r: &Running, bad_path: &std::path::Path, new_path: &std::path::Path) {
    let fw = r.lab.fw_ns();
    // A bad config first: refused, nothing changes.
    let bad = r
        .lab
        .pl(&fw, &["reload", "--config", &bad_path.to_string_lossy()]);
    assert!(
        !bad.status.success(),
        "a config naming a missing interface was accepted on reload"
    );
    assert!(
        stderr(&bad).contains("fw-nope"),
        "reload error does not name the interface: {}",
        stderr(&bad)
    );
    let good = r
        .lab
        .pl(&fw, &["reload", "--config", &new_path.to_string_lossy()]);
    assert!(good.status.success(), "reload failed: {}", stderr(&good));
}

/// The new endpoint answers; the removed target is gone, the new one resolves; counters
/// of what stayed kept their history.
fn the_changes_apply(r: &Running) {
    let who = r
        .who_tcp("acme", CLIENT, 0, Ipv4Addr::new(10, 0, 0, 102), TCP_PORT)
        .unwrap_or_else(|e| panic!("new endpoint: {e}"));
    assert_eq!(parse_who(&who).0, T1, "{who}");
    let s = r.run.wait_for_stats(Duration::from_secs(5), |s| {
        s.targets
            .iter()
            .any(|t| t.ip == Ipv4Addr::new(10, 9, 0, 13) && t.mac.is_some())
    });
    let s = s.unwrap_or_else(|e| panic!("{}", chain(e)));
    assert!(
        s.targets.iter().all(|t| t.ip != T2),
        "removed target still listed: {:?}",
        s.targets
    );
    assert!(
        s.endpoint("acme-extra").is_some(),
        "new endpoint not in stats"
    );
    // Counters of what stayed kept their history (ids did not shift).
    assert!(
        s.endpoint("acme-billing")
            .expect("acme-billing")
            .get(EndpointCounter::ToProviderBytes)
            > 512 * 1024 * 1024
    );
}

#[test]
fn reload_under_load_keeps_the_stream_and_applies_the_changes() {
    require_kernel!("reload_under_load_keeps_the_stream_and_applies_the_changes");
    let r = Running::start("rl", LAB_CONFIG);
    let prov = r.ns("prov");
    cmd::ip(["-n", &prov, "addr", "add", "10.9.0.13/24", "dev", "eth0"])
        .unwrap_or_else(|e| panic!("{}", chain(e)));
    // Target .12 (zone z2) goes, .13 comes; endpoint acme-extra appears. The stream runs to .11.
    let new = changed();
    let new_path = std::env::temp_dir().join(format!("rl{}-new.toml", std::process::id()));
    std::fs::write(&new_path, &new).expect("write new config");
    let bad_path = std::env::temp_dir().join(format!("rl{}-bad.toml", std::process::id()));
    std::fs::write(
        &bad_path,
        new.replace("interface = \"fw-prov\"", "interface = \"fw-nope\""),
    )
    .expect("write bad config");
    let acme = r.ns("acme");

    let (transfer, reload_done_at, stream_done_at) = std::thread::scope(|s| {
        let stream = s.spawn(|| {
            let res = traffic::tcp_sink(
                &acme,
                CLIENT,
                SocketAddrV4::new(EP_Z1, TCP_PORT),
                512 * 1024 * 1024,
            );
            (res, Instant::now())
        });
        std::thread::sleep(Duration::from_millis(300));
        reload_bad_then_good(&r, &bad_path, &new_path);
        let reloaded = Instant::now();
        let (res, done) = stream.join().expect("stream thread");
        (res, reloaded, done)
    });
    let _ = std::fs::remove_file(&new_path);
    let _ = std::fs::remove_file(&bad_path);
    let (sent, got) =
        transfer.unwrap_or_else(|e| panic!("the stream broke across the reload: {}", chain(e)));
    assert_eq!(sent, got, "bytes lost across the reload");
    assert!(
        reload_done_at < stream_done_at,
        "the stream ended before the reload: the test proved nothing"
    );
    the_changes_apply(&r);
}

/// A reload that narrows an endpoint's allowed sources removes the established flows it
/// now refuses, counts them, and leaves every other flow alone.
#[test]
fn a_reload_revokes_the_flows_it_no_longer_allows() {
    require_kernel!("a_reload_revokes_the_flows_it_no_longer_allows");
    let r = Running::start("rv", LAB_CONFIG);
    let (acme, globex) = (r.ns("acme"), r.ns("globex"));
    let ep = SocketAddrV4::new(EP_Z1, TCP_PORT);
    let mut acme_held =
        traffic::tcp_hold(&acme, CLIENT, ep).unwrap_or_else(|e| panic!("{}", chain(e)));
    let mut globex_held =
        traffic::tcp_hold(&globex, CLIENT, ep).unwrap_or_else(|e| panic!("{}", chain(e)));
    let narrowed = LAB_CONFIG.replace(r#"["10.0.0.0/25"]"#, r#"["10.0.0.64/26"]"#);
    assert_ne!(narrowed, LAB_CONFIG, "the lab config changed shape");
    reload_revoking_one(&r, &narrowed, "globex-billing");
    assert_eq!(r.endpoint("acme-billing", EndpointCounter::Revoked), 1);
    assert_eq!(r.endpoint("globex-billing", EndpointCounter::Revoked), 0);
    across_the_reload(&mut globex_held, &mut acme_held);
    assert!(
        r.endpoint("acme-billing", EndpointCounter::RefusedNotSyn) > 0,
        "the revoked connection's segments were not refused"
    );
}

/// The lab config's acme-ledger, the IPv6 endpoint of the acme network.
const ACME_LEDGER: &str = "[[endpoint]]\nname = \"acme-ledger\"\nservice = \"ledger\"\nnetwork = \"acme\"\naddresses = [{ ip = \"fd00:a::100\", zone = \"z1\" }, { ip = \"fd00:a::101\", zone = \"z2\" }]\nallowed_sources = [\"fd00:a::/121\"]\n";

#[test]
fn a_reload_that_removes_an_ipv6_endpoint_revokes_its_flows() {
    require_kernel!("a_reload_that_removes_an_ipv6_endpoint_revokes_its_flows");
    let r = Running::start("r6", LAB_CONFIG);
    let ep = SocketAddr::from((EP6_Z1, TCP_PORT));
    // Tried again until pl has the IPv6 targets' MACs (neighbour solicitation).
    let hold = |network: &str| {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match traffic::tcp_hold(&r.ns(network), CLIENT6, ep) {
                Ok(s) => return s,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("{network} over IPv6: {}", chain(e)),
            }
        }
    };
    let mut acme_held = hold("acme");
    let mut globex_held = hold("globex");
    let removed = LAB_CONFIG.replace(ACME_LEDGER, "").replace(
        r#"accepted_endpoints = ["acme-ledger", "globex-ledger"]"#,
        r#"accepted_endpoints = ["globex-ledger"]"#,
    );
    assert_eq!(
        removed.len(),
        LAB_CONFIG.len() - ACME_LEDGER.len() - r#""acme-ledger", "#.len(),
        "the lab config changed shape"
    );
    reload_revoking_one(&r, &removed, "globex-ledger");
    assert_eq!(r.endpoint("globex-ledger", EndpointCounter::Revoked), 0);
    across_the_reload(&mut globex_held, &mut acme_held);
}

/// `pl reload` to `config`: it says one flow was revoked, and only `kept`'s remain.
fn reload_revoking_one(r: &Running, config: &str, kept: &str) {
    let said = r.reload(config);
    assert!(said.contains("1 flows revoked"), "reload said: {said}");
    let flows = pl_flows(r, &[]).unwrap_or_else(|e| panic!("pl flows: {e}"));
    let endpoints: Vec<&str> = flows.iter().map(|f| f.endpoint.as_str()).collect();
    assert_eq!(endpoints, [kept], "flows after the reload: {flows:?}");
}

/// The allowed connection finishes its request across the reload; the revoked one goes
/// nowhere.
fn across_the_reload(allowed: &mut std::net::TcpStream, revoked: &mut std::net::TcpStream) {
    let answer = traffic::finish_hold(allowed)
        .unwrap_or_else(|e| panic!("an allowed connection broke across the reload: {e}"));
    assert_eq!(answer.len(), 64, "not a sha256 answer: {answer:?}");
    revoked
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("read timeout");
    assert!(
        traffic::finish_hold(revoked).is_err(),
        "the revoked connection still reached its target"
    );
}
