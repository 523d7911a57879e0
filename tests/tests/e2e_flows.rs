//! End to end, the flow table under `pl run --config`: bounded, idle and closing flows
//! swept on their timeouts while either side still using a flow keeps it; `pl flows`
//! shows both sides and `pl flows --watch` streams opens, refusals and closes (of IPv4
//! and IPv6 flows).

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4},
    time::Duration,
};

use pl_common::stats::EndpointCounter;
use pl_tests::{
    chain, pl_bin, require_kernel,
    running::{
        CLIENT, CLIENT6, EP_Z1, EP6_Z1, NLB6_Z1, OUTSIDER, OUTSIDER6, Running, T1, T1_6, T2,
        pl_flows,
    },
    stderr,
};
use pl_userspace::{
    flows::{FlowReport, WatchEvent},
    frame::{TCP_ACK, parse_mac},
    lab::netns,
    lab::traffic::{self, TCP_PORT, UDP_PORT},
    lab::{LAB_CONFIG, PEER_IFACE},
};

#[test]
fn flow_table_is_bounded_and_idle_flows_free_their_entries() {
    require_kernel!("flow_table_is_bounded_and_idle_flows_free_their_entries");
    // Room for one flow (two entries); UDP flows idle out after 1 s.
    let r = Running::start(
        "ag",
        &format!("{LAB_CONFIG}\n[limits]\nflow_table_size = 1\nudp_idle_timeout_s = 1\n"),
    );
    r.who_udp("acme", CLIENT, 41000, EP_Z1)
        .unwrap_or_else(|e| panic!("first flow: {e}"));
    assert!(
        r.who_udp("acme", CLIENT, 41001, EP_Z1).is_err(),
        "a second flow fit a table sized for one"
    );
    assert!(r.endpoint("acme-billing", EndpointCounter::RefusedFlowTableFull) >= 1);
    // Health probes take no room in the flow table: it holds exactly one flow, above.
    // The established flow still works while the table is full.
    r.who_udp("acme", CLIENT, 41000, EP_Z1)
        .unwrap_or_else(|e| panic!("established flow while full: {e}"));
    // Once idle, the sweep removes it and the table takes a new flow.
    let swept = r.run.wait_for_stats(Duration::from_secs(10), |s| {
        s.endpoint("acme-billing")
            .is_some_and(|e| e.active_flows == 0)
    });
    assert_eq!(
        swept
            .expect("stats")
            .endpoint("acme-billing")
            .expect("acme")
            .active_flows,
        0,
        "idle flow never swept"
    );
    r.who_udp("acme", CLIENT, 41001, EP_Z1)
        .unwrap_or_else(|e| panic!("new flow after the sweep: {e}"));
    // The XDP program said so itself, through aya-log, into pl run's log.
    let Running {
        run,
        servers: _servers,
        lab: _lab,
    } = r;
    let out = run.stop().unwrap_or_else(|e| panic!("stop: {}", chain(e)));
    let log = stderr(&out);
    assert!(
        log.contains("flow table full: refusing new flows"),
        "the program's log line is missing from pl run's log:\n{log}"
    );
}

#[test]
fn closing_and_one_way_flows_age_out_fast_established_ones_stay() {
    require_kernel!("closing_and_one_way_flows_age_out_fast_established_ones_stay");
    // Short timeouts for all but established TCP and replied UDP; a UDP listener nobody
    // answers. The held connection survives only if it is seen as established.
    let config = LAB_CONFIG.replace(
        r#"{ protocol = "udp", port = 53, target_port = 5353 }]"#,
        r#"{ protocol = "udp", port = 53, target_port = 5353 }, { protocol = "udp", port = 54, target_port = 5354 }]"#,
    ) + "\n[limits]\ntcp_closing_timeout_s = 1\ntcp_transient_timeout_s = 1\nudp_oneway_timeout_s = 1\n";
    let r = Running::start("st", &config);
    let acme = r.ns("acme");
    let held = traffic::tcp_hold(&acme, CLIENT, SocketAddrV4::new(EP_Z1, TCP_PORT))
        .unwrap_or_else(|e| panic!("{}", chain(e)));
    r.who_tcp("acme", CLIENT, 0, EP_Z1, TCP_PORT)
        .unwrap_or_else(|e| panic!("closed connection: {e}"));
    r.who_udp("acme", CLIENT, 0, EP_Z1)
        .unwrap_or_else(|e| panic!("replied UDP: {e}"));
    assert!(
        traffic::udp_who(
            &acme,
            CLIENT,
            0,
            SocketAddrV4::new(EP_Z1, 54),
            Duration::from_millis(300)
        )
        .is_err(),
        "port 5354 has no server, yet UDP 54 was answered"
    );
    let before = r
        .stats()
        .endpoint("acme-billing")
        .expect("acme")
        .active_flows;
    assert_eq!(before, 4, "held TCP, closed TCP, replied UDP, one-way UDP");
    // The sweep runs every 5 s: the closed and the one-way flow go, the other two stay.
    let after = r
        .run
        .wait_for_stats(Duration::from_secs(15), |s| {
            s.endpoint("acme-billing")
                .is_some_and(|e| e.active_flows <= 2)
        })
        .unwrap_or_else(|e| panic!("{}", chain(e)));
    assert_eq!(
        after.endpoint("acme-billing").expect("acme").active_flows,
        2,
        "closing/one-way flows not swept, or the wrong ones"
    );
    drop(held);
}

/// The held TCP flow from `client` to `ep`, as `pl flows` shows it.
fn the_tcp_flow(flows: &[FlowReport], client: SocketAddrV4, ep: SocketAddrV4) -> &FlowReport {
    let tcp = flows
        .iter()
        .find(|f| f.proto == "tcp")
        .unwrap_or_else(|| panic!("no TCP flow: {flows:#?}"));
    assert_eq!(
        (
            tcp.network.as_str(),
            tcp.endpoint.as_str(),
            tcp.service.as_str(),
            tcp.consumer,
            tcp.endpoint_addr,
            tcp.target,
            tcp.state.as_str(),
        ),
        (
            "acme",
            "acme-billing",
            "billing",
            SocketAddr::from(client),
            SocketAddr::from(ep),
            SocketAddr::from(SocketAddrV4::new(T1, traffic::TCP_TARGET_PORT)),
            "established",
        ),
        "{tcp:#?}"
    );
    assert_eq!(tcp.nlb.ip(), Ipv4Addr::new(10, 9, 0, 250), "{tcp:#?}");
    assert!(tcp.age_s >= 1, "age: {tcp:#?}");
    // SYN, ACK, the request; SYN-ACK, ACK.
    assert!(
        tcp.to_provider_packets >= 3 && tcp.to_consumer_packets >= 2,
        "{tcp:#?}"
    );
    tcp
}

/// The globex UDP flow from port 4242, as `pl flows` shows it.
fn the_udp_flow(flows: &[FlowReport]) -> &FlowReport {
    let udp = flows
        .iter()
        .find(|f| f.proto == "udp")
        .unwrap_or_else(|| panic!("no UDP flow: {flows:#?}"));
    assert_eq!(
        (udp.network.as_str(), udp.consumer, udp.state.as_str()),
        (
            "globex",
            SocketAddr::from(SocketAddrV4::new(CLIENT, 4242)),
            "replied"
        ),
        "{udp:#?}"
    );
    assert_eq!(
        (udp.to_provider_packets, udp.to_consumer_packets),
        (1, 1),
        "{udp:#?}"
    );
    udp
}

/// Per-flow counters add up to the endpoint's, exactly (the first packet included); both
/// flows went to T1 (zone z1), as the targets' counters say.
fn flow_counters_add_up(r: &Running, flows: &[FlowReport]) {
    let s = r.stats();
    for f in flows {
        let e = s.endpoint(&f.endpoint).expect("endpoint in stats");
        assert_eq!(
            (
                f.to_provider_packets,
                f.to_provider_bytes,
                f.to_consumer_packets,
                f.to_consumer_bytes
            ),
            (
                e.get(EndpointCounter::ToProviderPackets),
                e.get(EndpointCounter::ToProviderBytes),
                e.get(EndpointCounter::ToConsumerPackets),
                e.get(EndpointCounter::ToConsumerBytes),
            ),
            "{} flow counters differ from its endpoint's",
            f.endpoint
        );
    }

    // Both flows went to T1 (zone z1): the target's counters say so too.
    let t1 = s.targets.iter().find(|t| t.ip == T1).expect("T1 in stats");
    assert_eq!((t1.new_flows, t1.active_flows), (2, 2), "{t1:?}");
    let t2 = s.targets.iter().find(|t| t.ip == T2).expect("T2 in stats");
    assert_eq!((t2.new_flows, t2.active_flows), (0, 0), "{t2:?}");
}

/// The provider's question: who is the connection from this NLB address and port?
fn the_nlb_lookup_names_the_consumer(r: &Running, tcp: &FlowReport, udp: &FlowReport) {
    let nlb = tcp.nlb.to_string();
    let who = pl_flows(r, &["--nlb", &nlb]).unwrap_or_else(|e| panic!("--nlb: {e}"));
    // The same flow, read a moment later: its age and idle time may have ticked on.
    let timeless = |f: &FlowReport| FlowReport {
        age_s: 0,
        idle_s: 0,
        ..f.clone()
    };
    assert_eq!(
        who.iter().map(timeless).collect::<Vec<_>>(),
        vec![timeless(tcp)],
        "--nlb {nlb}"
    );
    let who = pl_flows(r, &["--nlb", &udp.nlb.to_string()]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (who.len(), who[0].network.as_str()),
        (1, "globex"),
        "{who:#?}"
    );
    let none = pl_flows(r, &["--nlb", "10.9.0.250:1"]).expect_err("no flow holds port 1");
    assert!(
        none.contains("10.9.0.250:1") && none.contains("no live flow"),
        "{none}"
    );
}

#[test]
fn flows_show_both_sides_and_the_nlb_lookup_names_the_consumer() {
    require_kernel!("flows_show_both_sides_and_the_nlb_lookup_names_the_consumer");
    let r = Running::start("fl", LAB_CONFIG);
    let ep = SocketAddrV4::new(EP_Z1, TCP_PORT);
    // Two consumers with the same address in overlapping networks, one TCP, one UDP.
    let held = traffic::tcp_hold(&r.ns("acme"), CLIENT, ep)
        .unwrap_or_else(|e| panic!("held connection: {}", chain(e)));
    let client = match held.local_addr() {
        Ok(SocketAddr::V4(a)) => a,
        other => panic!("held connection's address: {other:?}"),
    };
    r.who_udp("globex", CLIENT, 4242, EP_Z1)
        .unwrap_or_else(|e| panic!("globex UDP: {e}"));
    std::thread::sleep(Duration::from_millis(1200));

    let flows = pl_flows(&r, &[]).unwrap_or_else(|e| panic!("pl flows: {e}"));
    assert_eq!(flows.len(), 2, "{flows:#?}");
    let tcp = the_tcp_flow(&flows, client, ep);
    let udp = the_udp_flow(&flows);
    flow_counters_add_up(&r, &flows);
    the_nlb_lookup_names_the_consumer(&r, tcp, udp);

    // Filters, and a name that does not exist.
    let acme = pl_flows(&r, &["--endpoint", "acme-billing"]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(acme.len(), 1, "{acme:#?}");
    assert_eq!(
        pl_flows(&r, &["--service", "billing"]).map(|f| f.len()),
        Ok(2)
    );
    let bad = pl_flows(&r, &["--endpoint", "nope"]).expect_err("unknown endpoint");
    assert!(bad.contains("no endpoint named \"nope\""), "{bad}");

    // The table names the service and fits 100 columns; -o wide has every field.
    let nlb = tcp.nlb.to_string();
    let out = r.lab.pl(&r.lab.fw_ns(), &["flows"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("established")
            && table.lines().count() == 3
            && table
                .lines()
                .skip(1)
                .all(|l| l.split_whitespace().nth(1) == Some("billing"))
            && table.lines().all(|l| l.len() <= 100),
        "{table}"
    );
    let out = r.lab.pl(&r.lab.fw_ns(), &["flows", "-o", "wide"]);
    let wide = String::from_utf8_lossy(&out.stdout);
    assert!(
        wide.contains(&nlb) && wide.contains("to_consumer_bytes"),
        "{wide}"
    );
    drop(held);
}

#[test]
fn watch_streams_opens_refusals_with_reasons_and_closes() {
    require_kernel!("watch_streams_opens_refusals_with_reasons_and_closes");
    let config = format!("{LAB_CONFIG}\n[limits]\ntcp_closing_timeout_s = 1\n");
    let r = Running::start("wt", &config);
    let began = pl_userspace::output::now_rfc3339();
    let mut child = netns::exec(&r.lab.fw_ns(), pl_bin())
        .args(["flows", "--watch", "--json"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("pl flows --watch: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel::<WatchEvent>();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let e = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("--watch --json printed {line:?}: {e}"));
            if tx.send(e).is_err() {
                break;
            }
        }
    });
    let mut seen: Vec<WatchEvent> = Vec::new();
    let mut wait_for =
        |what: &str, secs: u64, act: &dyn Fn(), want: &dyn Fn(&WatchEvent) -> bool| {
            let deadline = std::time::Instant::now() + Duration::from_secs(secs);
            loop {
                act();
                while let Ok(e) = rx.recv_timeout(Duration::from_millis(200)) {
                    seen.push(e);
                }
                if let Some(e) = seen.iter().find(|e| want(e)) {
                    return e.clone();
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "no {what} event within {secs} s; saw {seen:#?}"
                );
            }
        };
    // The watcher may not be registered yet when the first connection goes: repeat.
    let open = wait_for(
        "open",
        5,
        &|| {
            let _ = r.who_tcp("acme", CLIENT, 40001, EP_Z1, TCP_PORT);
        },
        &|e| e.event == "open" && e.consumer == SocketAddr::from(SocketAddrV4::new(CLIENT, 40001)),
    );
    assert_eq!(
        (open.endpoint.as_str(), open.network.as_str(), open.target),
        (
            "acme-billing",
            "acme",
            Some(SocketAddr::from(SocketAddrV4::new(
                T1,
                traffic::TCP_TARGET_PORT
            )))
        ),
        "{open:#?}"
    );
    assert!(open.nlb.is_some(), "{open:#?}");
    let refused = wait_for(
        "refused",
        5,
        &|| {
            let _ = r.who_udp("acme", OUTSIDER, 0, EP_Z1);
        },
        &|e| e.event == "refused",
    );
    assert_eq!(
        (refused.reason.as_deref(), refused.consumer.ip()),
        (Some("source"), IpAddr::V4(OUTSIDER)),
        "{refused:#?}"
    );
    // The connection closed (FIN both ways): gone at the first sweep past 1 s.
    let closed = wait_for("close", 12, &|| {}, &|e| {
        e.event == "close" && e.consumer == SocketAddr::from(SocketAddrV4::new(CLIENT, 40001))
    });
    assert_eq!(closed.state.as_deref(), Some("closing"), "{closed:#?}");
    // Each event has the time pl run saw it (RFC 3339 UTC, same width: they sort as text).
    let ended = pl_userspace::output::now_rfc3339();
    let times: Vec<&str> = [&open, &refused, &closed]
        .iter()
        .map(|e| {
            e.time
                .as_deref()
                .unwrap_or_else(|| panic!("no time: {e:#?}"))
        })
        .collect();
    assert!(
        times
            .iter()
            .all(|t| t.len() == ended.len() && t.ends_with('Z'))
            && began.as_str() <= times[0]
            && times[0] <= times[2]
            && times[2] <= ended.as_str(),
        "event times {times:?} outside {began}..{ended}"
    );
    // IPv6 flows too, in IPv6 notation (repeated until pl has the IPv6 targets' MACs).
    let open6 = wait_for(
        "IPv6 open",
        10,
        &|| {
            let _ = r.who_tcp("acme", CLIENT6, 40002, EP6_Z1, TCP_PORT);
        },
        &|e| e.event == "open" && e.consumer == SocketAddr::from((CLIENT6, 40002)),
    );
    assert_eq!(
        (
            open6.endpoint.as_str(),
            open6.service.as_str(),
            open6.endpoint_addr,
            open6.target
        ),
        (
            "acme-ledger",
            "ledger",
            SocketAddr::from((EP6_Z1, TCP_PORT)),
            Some(SocketAddr::from((T1_6, traffic::TCP_TARGET_PORT)))
        ),
        "{open6:#?}"
    );
    assert_eq!(
        open6.nlb.map(|n| n.ip()),
        Some(IpAddr::V6(NLB6_Z1)),
        "{open6:#?}"
    );
    let line = open6.line();
    assert!(
        line.contains(&format!(
            "[{CLIENT6}]:40002 -> [{EP6_Z1}]:{TCP_PORT} => [{NLB6_Z1}]:"
        )),
        "{line}"
    );
    let refused6 = wait_for(
        "IPv6 refused",
        5,
        &|| {
            let _ = r.who_udp("acme", OUTSIDER6, 0, EP6_Z1);
        },
        &|e| e.event == "refused" && e.consumer.ip() == IpAddr::V6(OUTSIDER6),
    );
    assert_eq!(
        (refused6.reason.as_deref(), refused6.endpoint.as_str()),
        (Some("source"), "acme-ledger"),
        "{refused6:#?}"
    );
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
}

/// Lifecycles that long-lived traffic goes through, with short timeouts: each would lose
/// data (or table room) if a flow were judged one direction at a time, if one FIN closed
/// it, if a reused port rode the old flow, or if any TCP segment opened a flow.
#[test]
fn flows_live_as_long_as_either_side_uses_them() {
    require_kernel!("flows_live_as_long_as_either_side_uses_them");
    let config = format!(
        "{LAB_CONFIG}\n[limits]\ntcp_closing_timeout_s = 1\ntcp_half_closed_timeout_s = 30\nudp_idle_timeout_s = 2\nudp_oneway_timeout_s = 2\n"
    );
    let r = Running::start("lc", &config);
    let (acme, globex) = (r.ns("acme"), r.ns("globex"));
    let ep = SocketAddrV4::new(EP_Z1, TCP_PORT);

    // Half-close: the client sends its request and FIN, the answer comes 6.5 s later, past
    // the closing timeout and at least one sweep: the flow is half-closed, not closing.
    let answer = traffic::tcp_half_closed(&acme, CLIENT, ep, 6500)
        .unwrap_or_else(|e| panic!("half-closed request lost its answer: {}", chain(e)));
    assert_eq!(answer, "late");

    // A UDP flow whose target is quiet for 3.5 s (past the 2 s UDP timeouts) while the
    // consumer keeps sending: alive in both directions, so the late answer arrives.
    let udp = SocketAddrV4::new(EP_Z1, UDP_PORT);
    let answer = traffic::udp_silent_target(&acme, CLIENT, 45001, udp, 3500)
        .unwrap_or_else(|e| panic!("the silent target's late answer was lost: {}", chain(e)));
    assert_eq!(answer, "late");

    // Port reuse: a connection from port 45000 closes (FIN both ways); the same port
    // connects again at once. The new connection gets a fresh, established flow (not the
    // closing one) and survives a pause longer than the closing timeout.
    let port = 45000;
    r.who_tcp("acme", CLIENT, port, EP_Z1, TCP_PORT)
        .unwrap_or_else(|e| panic!("first connection: {e}"));
    std::thread::sleep(Duration::from_millis(200));
    let mut held = traffic::tcp_hold_from(&acme, CLIENT, port, ep)
        .unwrap_or_else(|e| panic!("the reused port did not connect: {}", chain(e)));
    let flow = pl_flows(&r, &["--endpoint", "acme-billing"])
        .unwrap_or_else(|e| panic!("pl flows: {e}"))
        .into_iter()
        .find(|f| {
            f.consumer == SocketAddr::from(SocketAddrV4::new(CLIENT, port)) && f.proto == "tcp"
        })
        .expect("the reused port's flow");
    assert_eq!(
        flow.state, "established",
        "the reused port rides the old flow: {flow:?}"
    );
    std::thread::sleep(Duration::from_millis(2500));
    let answer = traffic::finish_hold(&mut held)
        .unwrap_or_else(|e| panic!("the reused port's connection died in a pause: {e}"));
    assert_eq!(answer.len(), 64, "not a sha256 answer: {answer:?}");

    // A flood of bare ACKs opens nothing.
    let g = r.lab.topo.network("globex").expect("globex");
    let macs = (
        parse_mac(&g.peer_mac).expect("peer MAC"),
        parse_mac(&g.fw_mac).expect("fw MAC"),
    );
    let before = r.stats();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let sent = traffic::tcp_flood(&globex, PEER_IFACE, macs, ep, TCP_ACK, (20_000, &stop))
        .unwrap_or_else(|e| panic!("ACK flood: {}", chain(e)));
    let after = r
        .run
        .wait_for_stats(Duration::from_secs(3), |s| {
            s.endpoint("globex-billing")
                .is_some_and(|e| e.get(EndpointCounter::RefusedNotSyn) >= sent * 9 / 10)
        })
        .unwrap_or_else(|e| panic!("{}", chain(e)));
    let g_before = before.endpoint("globex-billing").expect("globex-billing");
    let g_after = after.endpoint("globex-billing").expect("globex-billing");
    println!(
        "bare-ACK flood: {sent} sent, {} refused_not_syn, active flows {} -> {}",
        g_after.get(EndpointCounter::RefusedNotSyn),
        g_before.active_flows,
        g_after.active_flows
    );
    assert!(
        g_after.get(EndpointCounter::RefusedNotSyn) >= sent * 9 / 10,
        "bare ACKs not refused as not_syn: {g_after:?}"
    );
    assert_eq!(
        (g_after.active_flows, g_after.get(EndpointCounter::NewFlows)),
        (
            g_before.active_flows,
            g_before.get(EndpointCounter::NewFlows)
        ),
        "bare ACKs opened flows"
    );
}
