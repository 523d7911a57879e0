//! What a new flow costs in the XDP program alone, against an established packet: the
//! kernel's own per-run timing of BPF_PROG_TEST_RUN (no generator, no sink, no other
//! CPU's load in the figure). Ignored by default (a measurement, not a check):
//! `cargo test -p pl-tests --test newflow_cost -- --ignored --nocapture`.

use std::{net::Ipv4Addr, path::PathBuf};

use aya::programs::{TestRun as _, TestRunOptions, Xdp};
use pl_tests::{TestLab, chain, require_kernel};
use pl_userspace::{
    apply::apply,
    config::Source,
    dataplane,
    frame::{Ipv4, TCP_ACK, TCP_SYN, ipv4_frame},
    lab::{LAB_CONFIG, netns},
    model::{LiveInterfaces, Model},
    plan::{Neighbors, Plan},
};

const FLOWS: u16 = 60_000;

/// Mean ns per run of `frames` through the program, each arriving on `ifindex`.
fn mean_ns(prog: &mut Xdp, ifindex: u32, frames: &[Vec<u8>]) -> f64 {
    let mut total = 0u128;
    let mut out = vec![0u8; 2048];
    for f in frames {
        let ctx: Vec<u8> = [0, f.len() as u32, 0, ifindex, 0, 0]
            .iter()
            .flat_map(|w: &u32| w.to_ne_bytes())
            .collect();
        let r = prog
            .test_run(TestRunOptions {
                data_in: Some(f),
                data_out: Some(&mut out),
                ctx_in: Some(&ctx),
                ..TestRunOptions::default()
            })
            .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN: {e}"));
        assert_eq!(r.return_value, 4, "not redirected (XDP_REDIRECT)");
        total += r.duration.as_nanos();
    }
    total as f64 / frames.len() as f64
}

#[test]
#[ignore = "a measurement: run with --ignored --nocapture"]
fn new_flow_cost_over_an_established_packet() {
    require_kernel!("new_flow_cost_over_an_established_packet");
    let lab = TestLab::up_with("nc", |lab| lab);
    let [fa, _, _] = lab.fw_macs();
    let (new, est) = netns::run_in(&lab.fw_ns(), || {
        let src = Source {
            path: PathBuf::from("cost.toml"),
            text: LAB_CONFIG.to_owned(),
        };
        let cfg = src.parse().unwrap_or_else(|e| panic!("{e}"));
        let model = Model::build(&src, &cfg, &LiveInterfaces).unwrap_or_else(|e| panic!("{e}"));
        let neigh = Neighbors::from([(
            (2, Ipv4Addr::new(10, 9, 0, 11).into()),
            [2, 0, 0, 0, 9, 0x11],
        )]);
        let mut ebpf =
            dataplane::load_sized(Some(1 << 21)).unwrap_or_else(|e| panic!("{}", chain(e)));
        apply(
            &mut ebpf,
            &Plan::build(&model, &neigh, &Default::default()),
            None,
        )
        .unwrap_or_else(|e| panic!("{}", chain(e)));
        let ifindex = model.networks[0].ifindex;
        let ca = [2, 0, 0, 0, 0x0a, 1];
        let ip = Ipv4::new([10, 0, 0, 10], [10, 0, 0, 100]);
        let syns: Vec<Vec<u8>> = (0..FLOWS)
            .map(|i| ipv4_frame(fa, ca, &ip.tcp(1024 + i, 443, 1000, 0, TCP_SYN, &[])))
            .collect();
        let ack = ipv4_frame(fa, ca, &ip.tcp(1024, 443, 1001, 1, TCP_ACK, &[]));
        let acks = vec![ack; usize::from(FLOWS)];
        let prog: &mut Xdp = ebpf
            .program_mut(pl_common::maps::PROGRAM_NAME)
            .expect("program")
            .try_into()
            .expect("XDP");
        let new = mean_ns(prog, ifindex, &syns);
        let est = mean_ns(prog, ifindex, &acks);
        (new, est)
    })
    .unwrap_or_else(|e| panic!("{}", chain(e)));
    println!(
        "new flow {new:.0} ns, established {est:.0} ns: a new flow adds {:.0} ns",
        new - est
    );
}
