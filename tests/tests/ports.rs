//! Health probes and flows reserve provider-side ports in one place: a port a probe holds
//! is never handed to a new flow, so a check's SYN-ACK can never reach a consumer.

use std::net::Ipv4Addr;

use aya::maps::HashMap;
use pl_common::{
    flow::FlowKey,
    maps::PROBES_MAP,
    proto::{IPPROTO_TCP, XDP_REDIRECT},
};
use pl_tests::{
    TestLab, chain, programmed, require_kernel,
    wire::{CLIENT, EP1, NLB1, T1, T2},
    xdp_test_run,
};
use pl_userspace::{
    frame::{Ipv4, Mac, TCP_SYN, ipv4_frame},
    lab::LAB_CONFIG,
    lab::netns,
    plan::Neighbors,
};

const CA: Mac = [2, 0, 0, 0, 0x0a, 1];
const TM: Mac = [2, 0, 0, 0, 0x09, 0x11];

#[test]
fn a_new_flow_skips_a_port_a_health_probe_holds() {
    require_kernel!("a_new_flow_skips_a_port_a_health_probe_holds");
    let lab = TestLab::up("pp");
    let fa = lab.fw_mac("fw-acme");
    let config = format!("{LAB_CONFIG}\n[limits]\nsnat_port_min = 40000\nsnat_port_max = 40001\n");
    let ports = netns::run_in(&lab.fw_ns(), || {
        let neigh = Neighbors::from([
            ((2, Ipv4Addr::from(T1).into()), TM),
            ((2, Ipv4Addr::from(T2).into()), TM),
        ]);
        let (mut ebpf, model) = programmed(&config, 64, &neigh);
        let network = |name: &str| {
            model
                .networks
                .iter()
                .position(|n| n.interface == name)
                .expect("network")
        };
        let acme = model.networks[network("fw-acme")].ifindex;
        // What a check of T1 from NLB1's port 40000 waits for: the answer's key.
        let probe = FlowKey {
            src_be: u32::from_ne_bytes(T1),
            dst_be: u32::from_ne_bytes(NLB1),
            sport_be: 8443u16.to_be(),
            dport_be: 40000u16.to_be(),
            network: network("fw-prov") as u16,
            proto: IPPROTO_TCP,
            _pad: 0,
        };
        let mut probes: HashMap<_, FlowKey, u32> = ebpf
            .map_mut(PROBES_MAP)
            .expect("probe map")
            .try_into()
            .expect("a hash map");
        probes
            .insert(probe, 0, 0)
            .expect("reserve the probe's port");
        // A consumer whose own port is 40000 would keep it (probe 0): the probe has it.
        let syn = ipv4_frame(
            fa,
            CA,
            &Ipv4::new(CLIENT, EP1).tcp(40000, 443, 1, 0, TCP_SYN, &[]),
        );
        let (action, out) = xdp_test_run(&mut ebpf, acme, &syn);
        assert_eq!(action, XDP_REDIRECT, "the SYN was not forwarded");
        let snat = u16::from_be_bytes([out[34], out[35]]);
        // And once the probe is gone, the port is the next flow's again.
        let mut probes: HashMap<_, FlowKey, u32> = ebpf
            .map_mut(PROBES_MAP)
            .expect("probe map")
            .try_into()
            .expect("a hash map");
        probes.remove(&probe).expect("release the probe's port");
        let syn = ipv4_frame(
            fa,
            CA,
            &Ipv4::new([10, 0, 0, 11], EP1).tcp(40000, 443, 1, 0, TCP_SYN, &[]),
        );
        let (_, out) = xdp_test_run(&mut ebpf, acme, &syn);
        (snat, u16::from_be_bytes([out[34], out[35]]))
    })
    .unwrap_or_else(|e| panic!("{}", chain(e)));
    assert_eq!(
        ports,
        (40001, 40000),
        "(SNAT port with the probe, without it)"
    );
}
