//! End to end, endpoint DNS names (issue 19): pl answers each consumer network's names on
//! its DNS addresses, asked with `dig` and with the C library's resolver (Python, through
//! `/etc/netns/<ns>/resolv.conf`), over UDP and TCP, IPv4 and IPv6; two overlapping
//! networks get different answers for the same private name; a zone whose target goes
//! unhealthy leaves the regional answer and comes back; hostile queries harm nothing;
//! reloads change the names at once; connections are made by name.

use std::{
    collections::BTreeSet,
    net::IpAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use pl_common::stats::IfaceCounter;
use pl_tests::{
    nft_delete_table, nft_input_rule, output_within, require_kernel,
    running::{Running, T1, T2, parse_who_ip},
    stderr,
};
use pl_userspace::lab::{DNS_ADDR, DNS_ADDR6, LAB_CONFIG, netns, with_dns};

const LIMIT: Duration = Duration::from_secs(20);

/// The lab's config with DNS names, and globex's billing endpoint moved to .110 and .111
/// so the two overlapping networks' answers for `billing.example.com` differ.
fn config() -> String {
    let c = with_dns(LAB_CONFIG);
    let globex = c.find("name = \"globex-billing\"").expect("globex-billing");
    let (head, tail) = c.split_at(globex);
    let tail = tail.replacen(
        r#"addresses = [{ ip = "10.0.0.100", zone = "z1" }, { ip = "10.0.0.101", zone = "z2" }]"#,
        r#"addresses = [{ ip = "10.0.0.110", zone = "z1" }, { ip = "10.0.0.111", zone = "z2" }]"#,
        1,
    );
    let out = format!("{head}{tail}");
    assert!(
        out.contains("10.0.0.110") && out.contains("private_dns_name"),
        "the lab config changed shape"
    );
    out
}

/// `dig` in namespace `ns` with `args`; its whole output.
fn dig(ns: &str, args: &[&str]) -> String {
    let mut cmd = netns::exec(ns, "dig");
    cmd.args(["+time=2", "+tries=2"]).args(args);
    let out = output_within(&mut cmd, LIMIT);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "dig {args:?} in {ns}: {text}{}",
        stderr(&out)
    );
    text
}

/// The addresses `dig +short` prints for `name` of type `ty` from `server` (`tcp`: over
/// TCP), sorted.
fn short(ns: &str, server: IpAddr, name: &str, ty: &str, tcp: bool) -> BTreeSet<IpAddr> {
    let at = format!("@{server}");
    let mut args = vec![at.as_str(), name, ty, "+short"];
    if tcp {
        args.push("+tcp");
    }
    dig(ns, &args)
        .lines()
        .map(|l| {
            l.parse()
                .unwrap_or_else(|e| panic!("dig {args:?}: {l:?}: {e}"))
        })
        .collect()
}

fn set(addrs: &[&str]) -> BTreeSet<IpAddr> {
    addrs.iter().map(|a| a.parse().expect("address")).collect()
}

/// `dig`'s status line word (NOERROR, NXDOMAIN, REFUSED...) and whether an SOA is in the
/// authority section.
fn status(ns: &str, name: &str) -> (String, bool) {
    let text = dig(ns, &[&format!("@{DNS_ADDR}"), name, "A"]);
    let status = text
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or_else(|| panic!("no status in:\n{text}"))
        .to_owned();
    let soa = text.split(";; AUTHORITY SECTION:").nth(1).is_some_and(|a| {
        a.lines()
            .skip(1)
            .take_while(|l| !l.is_empty())
            .any(|l| l.split_whitespace().nth(3) == Some("SOA"))
    });
    (status, soa)
}

/// Points namespace `ns`'s C library resolver at its DNS address (`tcp`: `use-vc`) for
/// as long as the guard lives.
struct ResolvConf(PathBuf);

impl ResolvConf {
    fn new(ns: &str, tcp: bool) -> Self {
        let dir = PathBuf::from("/etc/netns").join(ns);
        std::fs::create_dir_all(&dir).expect("/etc/netns/<ns>");
        let vc = if tcp { "options use-vc\n" } else { "" };
        std::fs::write(
            dir.join("resolv.conf"),
            format!("nameserver {DNS_ADDR}\n{vc}"),
        )
        .expect("resolv.conf");
        Self(dir)
    }
}

impl Drop for ResolvConf {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Resolves `name` with the C library in `ns` (getaddrinfo, IPv4), connects to its
/// first address on port 443, asks WHO and returns (the address used, the answer).
fn connect_by_name(ns: &str, name: &str) -> (IpAddr, String) {
    let script = r#"
import socket, sys
name = sys.argv[1]
addr = socket.getaddrinfo(name, 443, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
s = socket.create_connection((addr, 443), timeout=5)
s.sendall(b"WHO\n")
data = b""
while not data.endswith(b"\n"):
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
print(addr)
print(data.decode().strip())
"#;
    let mut cmd = netns::exec(ns, "/usr/bin/python3");
    cmd.args(["-c", script, name]);
    let out = output_within(&mut cmd, LIMIT);
    assert!(
        out.status.success(),
        "connecting to {name} in {ns}: {}",
        stderr(&out)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines();
    let addr = lines
        .next()
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    (addr, lines.next().unwrap_or_default().to_owned())
}

#[test]
fn every_name_answers_over_udp_and_tcp_in_two_overlapping_networks_and_connects_by_name() {
    require_kernel!(
        "every_name_answers_over_udp_and_tcp_in_two_overlapping_networks_and_connects_by_name"
    );
    let r = Running::start("dns", &config());
    r.wait_resolved();
    let (acme, globex) = (r.ns("acme"), r.ns("globex"));
    let (v4, v6) = (IpAddr::from(DNS_ADDR), IpAddr::from(DNS_ADDR6));
    for tcp in [false, true] {
        for server in [v4, v6] {
            let how = format!("server {server}, tcp {tcp}");
            assert_eq!(
                short(
                    &acme,
                    server,
                    "acme-billing.billing.vpce.internal",
                    "A",
                    tcp
                ),
                set(&["10.0.0.100", "10.0.0.101"]),
                "regional, {how}"
            );
            assert_eq!(
                short(
                    &acme,
                    server,
                    "acme-billing-z2.billing.vpce.internal",
                    "A",
                    tcp
                ),
                set(&["10.0.0.101"]),
                "zonal, {how}"
            );
            assert_eq!(
                short(
                    &acme,
                    server,
                    "acme-ledger.ledger.vpce.internal",
                    "AAAA",
                    tcp
                ),
                set(&["fd00:a::100", "fd00:a::101"]),
                "regional AAAA, {how}"
            );
            // The same private name, two overlapping networks, two answers.
            assert_eq!(
                short(&acme, server, "billing.example.com", "A", tcp),
                set(&["10.0.0.100", "10.0.0.101"]),
                "private in acme, {how}"
            );
            assert_eq!(
                short(&globex, server, "billing.example.com", "A", tcp),
                set(&["10.0.0.110", "10.0.0.111"]),
                "private in globex, {how}"
            );
        }
    }
    // A network sees only its own names; other names under the domain are NXDOMAIN with
    // the SOA; names that are not pl's are refused.
    assert_eq!(
        status(&globex, "acme-billing.billing.vpce.internal"),
        ("NXDOMAIN".into(), true)
    );
    assert_eq!(
        status(&acme, "nothing.vpce.internal"),
        ("NXDOMAIN".into(), true)
    );
    assert_eq!(status(&acme, "www.example.org"), ("REFUSED".into(), false));

    // Connect by name through the C library's resolver, over UDP and then TCP (use-vc).
    for tcp in [false, true] {
        let _conf = ResolvConf::new(&acme, tcp);
        let (addr, who) = connect_by_name(&acme, "billing.example.com");
        let (target, ..) = parse_who_ip(&who);
        assert!(
            [IpAddr::from([10, 0, 0, 100]), IpAddr::from([10, 0, 0, 101])].contains(&addr),
            "acme resolved {addr}"
        );
        assert!(
            [IpAddr::from(T1), IpAddr::from(T2)].contains(&target),
            "{who}"
        );
        let _conf = ResolvConf::new(&globex, tcp);
        let (addr, _) = connect_by_name(&globex, "globex-billing.billing.vpce.internal");
        assert!(
            addr.to_string().starts_with("10.0.0.11"),
            "globex resolved {addr}"
        );
    }

    let stats = r.stats();
    let acme_dns = stats
        .dns
        .iter()
        .find(|d| d.network == "acme")
        .expect("acme's DNS in stats");
    assert!(
        acme_dns.queries >= 20
            && acme_dns.answers >= 18
            && acme_dns.nxdomain >= 1
            && acme_dns.refused >= 1,
        "{acme_dns:?}"
    );
    assert!(
        stats
            .dns
            .iter()
            .any(|d| d.network == "globex" && d.nxdomain >= 1)
    );
    assert!(
        r.iface("fw-acme", IfaceCounter::PassedDns) >= 1,
        "ARP or neighbour discovery for the DNS address reached the stack"
    );
}

#[test]
fn a_zone_whose_target_goes_unhealthy_leaves_the_regional_answer_and_comes_back() {
    require_kernel!("a_zone_whose_target_goes_unhealthy_leaves_the_regional_answer_and_comes_back");
    let checked = config().replace(
        "cross_zone = false",
        "cross_zone = false\nhealth_check = { interval_s = 1, timeout_ms = 300, healthy_threshold = 2, unhealthy_threshold = 2 }",
    );
    let r = Running::start("dnh", &checked);
    r.wait_resolved();
    let acme = r.ns("acme");
    let regional = |want: &[&str], what: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = short(&acme, DNS_ADDR.into(), "billing.example.com", "A", false);
            if got == set(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: answered {got:?}, want {want:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    regional(&["10.0.0.100", "10.0.0.101"], "both zones");
    let prov = r.ns("prov");
    nft_input_rule(
        &prov,
        "pltest",
        "ip daddr 10.9.0.11 tcp dport 8443 tcp flags syn drop",
    );
    regional(&["10.0.0.101"], "z1's target silent");
    // pl dns asks pl run, which says the same.
    let out = r
        .lab
        .pl(&r.lab.fw_ns(), &["dns", "--network", "acme", "--json"]);
    assert!(out.status.success(), "pl dns: {}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("pl dns JSON");
    let names = json[0]["names"].as_array().cloned().unwrap_or_default();
    let answer = |name: &str| {
        names
            .iter()
            .find(|n| n["name"] == name)
            .map(|n| n["addresses"].clone())
            .unwrap_or_else(|| panic!("no {name} in {json}"))
    };
    assert_eq!(
        answer("acme-billing.billing.vpce.internal"),
        serde_json::json!(["10.0.0.101"])
    );
    assert_eq!(
        answer("acme-billing-z1.billing.vpce.internal"),
        serde_json::json!(["10.0.0.100"])
    );
    // Its zonal name still answers.
    assert_eq!(
        short(
            &acme,
            DNS_ADDR.into(),
            "acme-billing-z1.billing.vpce.internal",
            "A",
            false
        ),
        set(&["10.0.0.100"])
    );
    nft_delete_table(&prov, "pltest");
    regional(&["10.0.0.100", "10.0.0.101"], "z1's target back");
}

/// Raw queries from Python in `ns` to the DNS address: each a hex string, sent once over
/// UDP; prints how many got an answer.
fn send_raw(ns: &str, hex: &[String], flood: usize) -> String {
    let script = r#"
import socket, sys, time
dst, flood = sys.argv[1], int(sys.argv[2])
msgs = [bytes.fromhex(h) for h in sys.argv[3:]]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.3)
answered = 0
for m in msgs:
    s.sendto(m, (dst, 53))
    try:
        s.recvfrom(4096)
        answered += 1
    except socket.timeout:
        pass
q = msgs[-1]
s.setblocking(False)
sent = 0
began = time.monotonic()
while sent < flood:
    try:
        s.sendto(q, (dst, 53))
        sent += 1
    except BlockingIOError:
        time.sleep(0.0005)
    try:
        while True:
            s.recvfrom(4096)
    except BlockingIOError:
        pass
print(answered, sent, round(time.monotonic() - began, 3))
"#;
    let mut cmd = netns::exec(ns, "/usr/bin/python3");
    cmd.args(["-c", script, &DNS_ADDR.to_string(), &flood.to_string()])
        .args(hex);
    let out = output_within(&mut cmd, LIMIT);
    assert!(out.status.success(), "raw queries: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A query for `name` (type `ty`, question count `qd`) as hex.
fn raw_query(name: &str, ty: u16, qd: u16) -> Vec<u8> {
    let mut m = vec![0x12, 0x34, 0x01, 0x00];
    m.extend_from_slice(&qd.to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&ty.to_be_bytes());
    m.extend_from_slice(&[0, 1]);
    m
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn hostile_queries_are_answered_or_dropped_and_the_names_keep_answering() {
    require_kernel!("hostile_queries_are_answered_or_dropped_and_the_names_keep_answering");
    let r = Running::start("dnx", &config());
    let acme = r.ns("acme");
    let good = raw_query("acme-billing.billing.vpce.internal", 1, 1);
    let mut response = good.clone();
    response[2] |= 0x80;
    let mut looped = good[..12].to_vec();
    looped.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    let garbage: Vec<u8> = (0..300u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let hostile = [
        good[..good.len() - 3].to_vec(), // truncated
        looped,                          // compression loop
        raw_query("acme-billing.billing.vpce.internal", 1, 65_535), // huge count
        raw_query("acme-billing.billing.vpce.internal", 255, 1), // ANY
        response,                        // a response
        garbage,
        vec![0; 3],
        good,
    ];
    let sent: Vec<String> = hostile.iter().map(|m| hex(m)).collect();
    let before = r.stats();
    let out = send_raw(&acme, &sent, 20_000);
    println!("hostile queries: answered, flooded, seconds = {out}");
    let answered: usize = out
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("count");
    // Everything but the response, the 3-byte message and (maybe) the garbage gets an
    // answer; the last, a good query, among them.
    assert!(answered >= 5, "{out}");
    let a = r.stats();
    let acme_dns = |s: &pl_userspace::stats::StatsReport| {
        s.dns
            .iter()
            .find(|d| d.network == "acme")
            .cloned()
            .expect("acme DNS")
    };
    let (b, a) = (acme_dns(&before), acme_dns(&a));
    println!(
        "the server took {} queries of the {} sent ({} malformed)",
        a.queries - b.queries,
        hostile.len() + 20_000,
        a.malformed - b.malformed
    );
    assert!(a.malformed - b.malformed >= 4, "{b:?} -> {a:?}");
    assert!(a.queries - b.queries >= 8, "{b:?} -> {a:?}");
    // The flood went past max_qps (10 000 a second, per CPU): the rest stopped in XDP.
    assert!(
        r.iface("fw-acme", IfaceCounter::DroppedDnsRate) > 0,
        "a flood of 20 000 queries in {out} s never went past max_qps"
    );
    // Still answering, and still forwarding.
    assert_eq!(
        short(
            &acme,
            DNS_ADDR.into(),
            "acme-billing.billing.vpce.internal",
            "A",
            true
        ),
        set(&["10.0.0.100", "10.0.0.101"])
    );
    r.who_tcp(
        "acme",
        pl_tests::running::CLIENT,
        0,
        pl_tests::running::EP_Z1,
        443,
    )
    .unwrap_or_else(|e| panic!("forwarding after the flood: {e}"));
}

#[test]
fn a_reload_changes_the_names_at_once_and_a_restart_keeps_answering() {
    require_kernel!("a_reload_changes_the_names_at_once_and_a_restart_keeps_answering");
    let r = Running::start("dnr", &config());
    let acme = r.ns("acme");
    let v4 = IpAddr::from(DNS_ADDR);
    assert_eq!(short(&acme, v4, "billing.example.com", "A", false).len(), 2);
    let renamed = config().replace("billing.example.com", "pay.example.com");
    r.reload(&renamed);
    assert_eq!(
        short(&acme, v4, "pay.example.com", "A", false),
        set(&["10.0.0.100", "10.0.0.101"]),
        "the new name, at once"
    );
    assert_eq!(
        status(&acme, "billing.example.com").0,
        "REFUSED",
        "the old name is gone"
    );
    // A new DNS address by reload: served from the new one, the old one is gone.
    let moved = renamed.replace(&format!("\"{DNS_ADDR}\""), "\"10.0.0.3\"");
    r.reload(&moved);
    assert_eq!(
        short(
            &acme,
            "10.0.0.3".parse().expect("ip"),
            "pay.example.com",
            "A",
            false
        )
        .len(),
        2
    );
    let gone = output_within(
        netns::exec(&acme, "dig").args([
            "+time=1",
            "+tries=1",
            &format!("@{DNS_ADDR}"),
            "pay.example.com",
        ]),
        LIMIT,
    );
    assert!(!gone.status.success(), "the old DNS address still answers");

    // A restart: the names answer again within a few seconds (same MAC, so the
    // consumer's neighbour entry stays right).
    let (r, took) = r.restart(&moved, &[]);
    let began = Instant::now();
    loop {
        let mut cmd = netns::exec(&acme, "dig");
        cmd.args([
            "+time=1",
            "+tries=1",
            "+short",
            "@10.0.0.3",
            "pay.example.com",
        ]);
        let out = output_within(&mut cmd, LIMIT);
        if out.status.success() && String::from_utf8_lossy(&out.stdout).lines().count() == 2 {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "no answers after the restart"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "restart took {took:?}; answering again {:?} after",
        began.elapsed()
    );
    drop(r);
}
