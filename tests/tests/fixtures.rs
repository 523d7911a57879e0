//! Packet fixtures: each frame runs through the real XDP object with BPF_PROG_TEST_RUN
//! and is checked for the action, every byte of the output frame, and every counter's
//! delta (all counters not named must stay put).

use aya::{Ebpf, maps::Array};
use pl_common::{
    iface::IfaceConfig,
    maps::IFACES_MAP,
    proto::XDP_PASS,
    stats::{IFACE_COUNTERS, IfaceCounter, IfaceStats},
};
use pl_tests::{chain, check_frame, require_kernel, xdp_test_run};
use pl_userspace::{
    dataplane,
    frame::{Ipv4, Mac, TCP_SYN, arp_request, ethernet, ipv4_frame},
};

/// `lo` exists in every namespace; BPF_PROG_TEST_RUN resolves `ingress_ifindex` there.
const LO: u32 = 1;
const CLIENT_MAC: Mac = [0x02, 0, 0, 0, 0, 0x0a];
const FW_MAC: Mac = [0x02, 0, 0, 0, 0, 0xf1];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ingress {
    /// An interface registered with pl (slot 0).
    Managed,
    /// An interface pl was not told about.
    Unmanaged,
}

struct Fixture {
    desc: &'static str,
    ingress: Ingress,
    input: Vec<u8>,
    action: u32,
    /// None: the frame leaves unchanged.
    output: Option<Vec<u8>>,
    counters: Vec<(IfaceCounter, u64)>,
}

/// The deltas for a frame of `len` bytes counted as `class` and passed.
fn passed(len: usize, class: IfaceCounter) -> Vec<(IfaceCounter, u64)> {
    vec![
        (IfaceCounter::RxPackets, 1),
        (IfaceCounter::RxBytes, len as u64),
        (class, 1),
        (IfaceCounter::XdpPass, 1),
    ]
}

fn fixture(desc: &'static str, input: Vec<u8>, class: IfaceCounter) -> Fixture {
    Fixture {
        desc,
        ingress: Ingress::Managed,
        counters: passed(input.len(), class),
        input,
        action: XDP_PASS,
        output: None,
    }
}

fn fixtures() -> Vec<Fixture> {
    let ip = Ipv4::new([10, 0, 0, 10], [10, 0, 0, 100]);
    let udp = ipv4_frame(FW_MAC, CLIENT_MAC, &ip.udp(40000, 5353, b"hello"));
    let mut truncated_udp = ipv4_frame(FW_MAC, CLIENT_MAC, &ip.udp(40000, 5353, &[]));
    truncated_udp.truncate(14 + 20 + 4);
    let mut ihl4 = udp.clone();
    ihl4[14] = 0x44;
    let mut v6_in_v4 = udp.clone();
    v6_in_v4[14] = 0x65;
    vec![
        fixture(
            "UDP datagram to an endpoint address",
            udp.clone(),
            IfaceCounter::Ipv4Udp,
        ),
        fixture(
            "TCP SYN",
            ipv4_frame(FW_MAC, CLIENT_MAC, &ip.tcp(40000, 443, 1, 0, TCP_SYN, &[])),
            IfaceCounter::Ipv4Tcp,
        ),
        fixture(
            "ICMP echo request",
            ipv4_frame(FW_MAC, CLIENT_MAC, &ip.icmp_echo(7, 1)),
            IfaceCounter::Ipv4Other,
        ),
        fixture(
            "ARP request for an endpoint address",
            arp_request(CLIENT_MAC, [10, 0, 0, 10], [10, 0, 0, 100]),
            IfaceCounter::Arp,
        ),
        fixture(
            "IPv6 frame",
            ethernet(FW_MAC, CLIENT_MAC, 0x86dd, &[0x60; 40]),
            IfaceCounter::NonIpv4,
        ),
        fixture(
            "802.1Q-tagged frame",
            ethernet(FW_MAC, CLIENT_MAC, 0x8100, &[0; 46]),
            IfaceCounter::NonIpv4,
        ),
        fixture(
            "ARP frame cut inside the ARP body",
            ethernet([0xff; 6], CLIENT_MAC, 0x0806, &[0, 1, 8, 0]),
            IfaceCounter::Malformed,
        ),
        fixture(
            "IPv4 header cut short",
            ethernet(FW_MAC, CLIENT_MAC, 0x0800, &[0x45, 0, 0, 20, 0, 0]),
            IfaceCounter::Malformed,
        ),
        fixture(
            "UDP header cut short",
            truncated_udp,
            IfaceCounter::Malformed,
        ),
        fixture("IPv4 IHL below 5", ihl4, IfaceCounter::Malformed),
        fixture(
            "IP version 6 in an IPv4 EtherType",
            v6_in_v4,
            IfaceCounter::Malformed,
        ),
        Fixture {
            desc: "frame on an interface pl does not manage",
            ingress: Ingress::Unmanaged,
            input: udp,
            action: XDP_PASS,
            output: None,
            counters: vec![],
        },
    ]
}

/// The real object, loaded by the real loader, with `lo` registered (or not) in slot 0.
struct Harness {
    ebpf: Ebpf,
}

impl Harness {
    fn load() -> Self {
        Self {
            ebpf: dataplane::load()
                .unwrap_or_else(|e| panic!("loading the XDP object: {}", chain(e))),
        }
    }

    fn set_managed(&mut self, managed: bool) {
        if managed {
            dataplane::register(&mut self.ebpf, &[("lo".to_owned(), LO)])
                .unwrap_or_else(|e| panic!("registering lo: {}", chain(e)));
        } else {
            let mut ifaces: Array<_, IfaceConfig> = Array::try_from(
                self.ebpf
                    .map_mut(IFACES_MAP)
                    .unwrap_or_else(|| panic!("object has no map {IFACES_MAP}")),
            )
            .unwrap_or_else(|e| panic!("{IFACES_MAP}: {e}"));
            ifaces
                .set(LO, IfaceConfig::default(), 0)
                .unwrap_or_else(|e| panic!("unregistering lo: {e}"));
        }
    }

    fn counters(&self) -> IfaceStats {
        dataplane::iface_stats(&self.ebpf, 0).unwrap_or_else(|e| panic!("{}", chain(e)))
    }

    fn run(&mut self, input: &[u8]) -> (u32, Vec<u8>) {
        xdp_test_run(&mut self.ebpf, LO, input)
    }
}

#[test]
fn packet_fixtures() {
    require_kernel!("packet_fixtures");
    let mut h = Harness::load();
    let table = fixtures();
    let mut failures = Vec::new();
    for f in &table {
        h.set_managed(f.ingress == Ingress::Managed);
        let before = h.counters();
        let (action, output) = h.run(&f.input);
        let after = h.counters();
        let expected = f.output.as_ref().unwrap_or(&f.input);
        check_frame(
            f.desc,
            (action, &output),
            (f.action, expected),
            &mut failures,
        );
        let mut want = [0u64; IFACE_COUNTERS];
        for (c, n) in &f.counters {
            want[*c as usize] += n;
        }
        for &c in IfaceCounter::ALL {
            let got = after.get(c) - before.get(c);
            if got != want[c as usize] {
                failures.push(format!(
                    "{}: counter {} moved by {got}, expected {}",
                    f.desc,
                    c.name(),
                    want[c as usize]
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures failed:\n{}",
        failures.len(),
        table.len(),
        failures.join("\n")
    );
    eprintln!("{} packet fixtures passed", table.len());
}
