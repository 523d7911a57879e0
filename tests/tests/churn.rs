//! The flow sweep against heavy churn on a small table: one thread runs consumer frames
//! through the real program (SYNs, resets, port reuse and UDP on a few hundred tuples
//! that share a 64-port SNAT range) while another sweeps the same table, part of the time
//! with a clock ahead of the data path's, so that it finds most flows due while XDP is
//! still using, closing and reopening them. After every round, with both stopped, the
//! table must hold only whole pairs:
//! - every forward entry has its reply entry, pointing back at it;
//! - every reply entry has its forward entry (no stray reservation);
//! - no two flows hold one provider tuple;
//! - the table's own entry count is its entries, and every entry is found by its key (the
//!   sweeper also empties tombstones while XDP inserts).
//!
//! `PL_CHURN_ROUNDS` sets the rounds (default 150; `cargo xtask churn` runs 5000) and
//! `PL_CHURN_SEED` replays a run; the seed is printed.

use std::{
    collections::{HashMap, HashSet},
    net::Ipv4Addr,
    sync::atomic::{AtomicBool, Ordering},
};

use aya::maps::{Map, MapData};
use pl_common::{
    flow::{FLOW_FORWARD, FlowKey, FlowValue, same_flow},
    maps::FLOWS_MAP,
    settings::Settings,
};
use pl_tests::{
    Rng, TestLab, chain, programmed, require_kernel,
    wire::{EP1, T1, T2},
    xdp_test_run,
};
use pl_userspace::{
    flows,
    frame::{Ipv4, Mac, TCP_ACK, TCP_RST, TCP_SYN, ipv4_frame},
    lab::LAB_CONFIG,
    lab::netns,
    plan::Neighbors,
};

const CA: Mac = [2, 0, 0, 0, 0x0a, 1];
const TM: Mac = [2, 0, 0, 0, 0x09, 0x11];
const TABLE: u32 = 512;
const FRAMES_PER_ROUND: usize = 4000;

/// What is wrong with the table's pairs, if anything.
fn broken_pairs(entries: &[(FlowKey, FlowValue)]) -> Vec<String> {
    let table: HashMap<FlowKey, FlowValue> = entries.iter().copied().collect();
    let mut wrong = Vec::new();
    let mut provider_tuples = HashSet::new();
    for (k, v) in entries {
        let other_key = v.reply_key(k.proto);
        let whole = table.get(&other_key).is_some_and(|o| same_flow(k, v, o));
        if v.dir == FLOW_FORWARD {
            if !whole {
                wrong.push(format!("forward entry {k:?} without its reply entry"));
            }
            if !provider_tuples.insert(other_key) {
                wrong.push(format!("two flows hold the provider tuple {other_key:?}"));
            }
        } else if !whole {
            wrong.push(format!("reply entry {k:?} without its forward entry"));
        }
    }
    wrong
}

/// Sweeps the flow table (map `id`) until `stop`, every other sweep with a clock 2 s ahead
/// so that everything idle-able is due; how many flows it closed.
fn sweep_until(stop: &AtomicBool, id: u32, settings: &Settings) -> usize {
    let map = Map::Array(MapData::from_id(id).expect("flow map by id"));
    let table: flows::FlowTable = flows::FlowTable::map(&map).expect("map the flow table");
    let (mut closed, mut n) = (0, 0u64);
    let mut tombs = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        // Every other sweep 2 s ahead: everything idle-able is due.
        let skew = if n % 2 == 0 { 2_000_000_000 } else { 0 };
        let clock = move || flows::now_ns() + skew;
        // It also empties tombstones while XDP inserts: no key may become unreachable.
        closed += flows::sweep_with_clock(&table, settings, &clock, &mut tombs)
            .closed
            .len();
        n += 1;
    }
    closed
}

/// A consumer packet to EP1: a SYN, data, a reset or a UDP datagram, from one of 4 hosts
/// and 64 ports, so that tuples recur and flows close, reopen and collide.
fn consumer_packet(rng: &mut Rng) -> Vec<u8> {
    // 4 hosts x 64 ports: tuples recur, so flows close, reopen and collide.
    let src = [10, 0, 0, 1 + rng.below(4) as u8];
    let sport = 50000 + rng.below(64) as u16;
    let ip = Ipv4::new(src, EP1);
    match rng.below(10) {
        0..=4 => ip.tcp(sport, 443, 1, 0, TCP_SYN, &[]),
        5 | 6 => ip.tcp(sport, 443, 2, 1, TCP_ACK, b"data"),
        7 => ip.tcp(sport, 443, 2, 0, TCP_RST, &[]),
        _ => ip.udp(sport, 53, b"q"),
    }
}

#[test]
fn the_sweep_never_leaves_half_a_flow_under_churn() {
    require_kernel!("the_sweep_never_leaves_half_a_flow_under_churn");
    let rounds: usize = std::env::var("PL_CHURN_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    let seed = pl_tests::seed("CHURN");
    println!("churn: {rounds} rounds, seed {seed} (replay: PL_CHURN_SEED={seed})");
    let lab = TestLab::up("ch");
    let fa = lab.fw_mac("fw-acme");
    let config = format!(
        "{LAB_CONFIG}\n[limits]\nflow_table_size = {TABLE}\nsnat_port_min = 40000\nsnat_port_max = 40063\ntcp_transient_timeout_s = 1\ntcp_closing_timeout_s = 1\nudp_oneway_timeout_s = 1\n"
    );
    let (made, swept, findings) = netns::run_in(&lab.fw_ns(), || {
        let neigh = Neighbors::from([
            ((2, Ipv4Addr::from(T1).into()), TM),
            ((2, Ipv4Addr::from(T2).into()), TM),
        ]);
        let (mut ebpf, model) = programmed(&config, TABLE, &neigh);
        let ifindex = model
            .networks
            .iter()
            .find(|n| n.interface == "fw-acme")
            .expect("acme")
            .ifindex;
        let id = match ebpf.map(FLOWS_MAP) {
            Some(Map::Array(m)) => m.info().expect("flow map info").id(),
            _ => panic!("no flow map"),
        };
        let (mut rng, mut made, mut swept, mut findings) = (Rng(seed), 0u64, 0usize, Vec::new());
        for round in 0..rounds {
            let stop = AtomicBool::new(false);
            let round_seed = rng.next_u64();
            let (redirected, closed) = std::thread::scope(|s| {
                let sweeper = s.spawn(|| sweep_until(&stop, id, &model.settings));
                let mut rng = Rng(round_seed | 1);
                let mut redirected = 0u64;
                for _ in 0..FRAMES_PER_ROUND {
                    let packet = consumer_packet(&mut rng);
                    let (action, _) =
                        xdp_test_run(&mut ebpf, ifindex, &ipv4_frame(fa, CA, &packet));
                    redirected += u64::from(action == pl_common::proto::XDP_REDIRECT);
                }
                stop.store(true, Ordering::Relaxed);
                (redirected, sweeper.join().expect("sweeper"))
            });
            made += redirected;
            swept += closed;
            let table: flows::FlowTable =
                flows::FlowTable::map(ebpf.map(FLOWS_MAP).expect("no flow map"))
                    .expect("map the flow table");
            let entries: Vec<(FlowKey, FlowValue)> = table
                .entries()
                .into_iter()
                .map(|e| (e.key, e.value))
                .collect();
            // Nothing in flight: the table's own count is its entries.
            if table.held() != entries.len() as u64 {
                findings.push(format!(
                    "round {round}: the table counts {} entries and holds {}",
                    table.held(),
                    entries.len()
                ));
            }
            // Every entry is found by its key (no tombstone emptied under a probe path).
            for (k, _) in &entries {
                if table.get(k).is_none() {
                    findings.push(format!(
                        "round {round}: {k:?} is in the table but not found"
                    ));
                }
            }
            for w in broken_pairs(&entries) {
                findings.push(format!("round {round}: {w}"));
            }
            if findings.len() >= 10 {
                break;
            }
        }
        (made, swept, findings)
    })
    .unwrap_or_else(|e| panic!("{}", chain(e)));
    println!("churn: {made} frames forwarded, {swept} flows swept");
    assert!(
        findings.is_empty(),
        "seed {seed}: {} findings:\n{}",
        findings.len(),
        findings.join("\n")
    );
    assert!(
        made > 0 && swept > 0,
        "seed {seed}: nothing was forwarded or swept: the churn tested nothing"
    );
}
