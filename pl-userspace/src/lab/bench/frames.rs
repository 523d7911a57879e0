//! What the generator sends and what the sink accepts: the frame templates (with real L4
//! checksums), the sink's expectations for each forwarder, and the skewed flow tables.

use std::net::{Ipv4Addr, Ipv6Addr};

use pl_common::bench::{GEN_FRAME4, GEN_FRAME6, GEN_HEADER, GenConfig, SinkConfig};

use super::{DNS, ENDPOINT, ENDPOINT6, FRAME_LEN, SOURCE_BASE, SOURCE_BASE6, TARGETS};
use crate::frame::{Ipv4, Ipv6, Mac, TCP_SYN, ipv4_frame, ipv6_frame};

/// The listener ports the generator sends to and the target ports pl and nftables
/// rewrite them to (the bench config's listeners).
pub(super) const UDP_PORT: u16 = 53;
pub(super) const UDP_TARGET_PORT: u16 = 5353;
pub(super) const TCP_PORT: u16 = 443;
pub(super) const TCP_TARGET_PORT: u16 = 8443;
/// The bench service's NLB address: the source of every rewritten frame.
pub(super) const NLB: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 250);
pub(super) const FIRST_TARGET: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 20);
/// The IPv6 twin service's NLB address and first target (the provider's /64).
pub(super) const NLB6: Ipv6Addr = Ipv6Addr::new(0xfd00, 9, 0, 0, 0, 0, 0, 0x250);
pub(super) const FIRST_TARGET6: Ipv6Addr = Ipv6Addr::new(0xfd00, 9, 0, 0, 0, 0, 0, 0x20);

/// Bytes of L4 (header and payload) in every frame, either family.
const L4_LEN: usize = FRAME_LEN - 34;

/// The generator's template: a UDP datagram to the endpoint's port 53, or a TCP SYN to
/// 443, from the first generator source, both with real checksums (the generator updates
/// them per frame). IPv6 frames carry the same L4 bytes to the endpoint's IPv6 address.
pub(super) fn gen_config(dst: Mac, src: Mac, tcp_syn: bool, flows: u32, ipv6: bool) -> GenConfig {
    let mut f = if ipv6 {
        let ip = Ipv6::new(SOURCE_BASE6.octets(), ENDPOINT6.octets());
        let packet = if tcp_syn {
            ip.tcp(1024, TCP_PORT, 1, 0, TCP_SYN, &[0; L4_LEN - 20])
        } else {
            ip.udp(1024, UDP_PORT, &[0; L4_LEN - 8])
        };
        ipv6_frame(dst, src, &packet)
    } else {
        let ip = Ipv4::new(SOURCE_BASE.octets(), ENDPOINT.octets());
        let packet = if tcp_syn {
            ip.tcp(1024, TCP_PORT, 1, 0, TCP_SYN, &[0; L4_LEN - 20])
        } else {
            ip.udp(1024, UDP_PORT, &[0; L4_LEN - 8])
        };
        ipv4_frame(dst, src, &packet)
    };
    let len = if ipv6 { GEN_FRAME6 } else { GEN_FRAME4 };
    debug_assert_eq!(f.len(), len);
    f.resize(GEN_HEADER, 0);
    let mut header = [0u8; GEN_HEADER];
    header.copy_from_slice(&f);
    GenConfig {
        header,
        header_len: len as u32,
        flows,
        cpus: 1,
        udp: u32::from(!tcp_syn),
        skew_base: 0,
        skew_len: 0,
        ipv6: u32::from(ipv6),
        dns_every: 0,
        dns: [0; GEN_FRAME4],
    }
}

/// The flood variant's query: from the first generator source to the network's DNS
/// address, at the DNS macvlan's MAC, a question for the root (REFUSED: pl holds no such
/// name, and answering it costs what any answer does). 59 bytes, padded to the slot.
pub(super) fn dns_query(dst: Mac, src: Mac) -> [u8; GEN_FRAME4] {
    // Header: id, RD, one question; then the root name, type A, class IN.
    let query = [
        0x50, 0x4c, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1,
    ];
    let ip = Ipv4::new(SOURCE_BASE.octets(), DNS.octets());
    let f = ipv4_frame(dst, src, &ip.udp(1024, 53, &query));
    let mut out = [0u8; GEN_FRAME4];
    out[..f.len()].copy_from_slice(&f);
    out
}

/// An IPv6 address's first 96 bits and last 32 (host order), as the sink matches them.
fn split6(a: Ipv6Addr) -> ([u8; 12], u32) {
    let o = a.octets();
    let mut prefix = [0u8; 12];
    prefix.copy_from_slice(&o[..12]);
    (prefix, u32::from_be_bytes([o[12], o[13], o[14], o[15]]))
}

/// What the sink accepts from pl for the IPv6 service: from its NLB address to an IPv6
/// target address and target port.
pub(super) fn expect_rewritten6(verify_checksums: bool) -> SinkConfig {
    let (src6_prefix, nlb) = split6(NLB6);
    let (dst6_prefix, first) = split6(FIRST_TARGET6);
    SinkConfig {
        src_lo: nlb,
        src_hi: nlb,
        dst_lo: first,
        dst_hi: first + u32::from(TARGETS) - 1,
        udp_port: UDP_TARGET_PORT,
        tcp_port: TCP_TARGET_PORT,
        verify_checksums: u32::from(verify_checksums),
        ipv6: 1,
        src6_prefix,
        dst6_prefix,
    }
}

/// The IPv6 target addresses, in order.
pub(super) fn targets6() -> impl Iterator<Item = Ipv6Addr> {
    (0..TARGETS).map(|i| Ipv6Addr::from(u128::from(FIRST_TARGET6) + u128::from(i)))
}

/// What the sink accepts from a forwarder that rewrites as the flow says (pl, nftables):
/// from the NLB address to a target address and target port.
pub(super) fn expect_rewritten(verify_checksums: bool) -> SinkConfig {
    let first = u32::from(FIRST_TARGET);
    SinkConfig {
        src_lo: u32::from(NLB),
        src_hi: u32::from(NLB),
        dst_lo: first,
        dst_hi: first + u32::from(TARGETS) - 1,
        udp_port: UDP_TARGET_PORT,
        tcp_port: TCP_TARGET_PORT,
        verify_checksums: u32::from(verify_checksums),
        ..SinkConfig::default()
    }
}

/// What the sink accepts through the bare redirect: the generator's frames unchanged.
pub(super) fn expect_unchanged(verify_checksums: bool) -> SinkConfig {
    SinkConfig {
        src_lo: u32::from(SOURCE_BASE),
        // Sources grow by one address per 60000 flows.
        src_hi: u32::from(SOURCE_BASE) | 0x00ff_ffff,
        dst_lo: u32::from(ENDPOINT),
        dst_hi: u32::from(ENDPOINT),
        udp_port: UDP_PORT,
        tcp_port: TCP_PORT,
        verify_checksums: u32::from(verify_checksums),
        ..SinkConfig::default()
    }
}

/// `len` flow indices in `[0, flows)`, drawn from Zipf with s = 1 (flow `k` has weight
/// 1 / (k + 1)), in random order. Deterministic for a seed, so runs compare.
pub(super) fn zipf_table(flows: u32, len: usize, seed: u64) -> Vec<u32> {
    let mut cdf = Vec::with_capacity(flows as usize);
    let mut acc = 0.0f64;
    for k in 0..flows {
        acc += 1.0 / f64::from(k + 1);
        cdf.push(acc);
    }
    let mut rng = SplitMix(seed);
    (0..len)
        .map(|_| {
            let u = rng.unit() * acc;
            let k = cdf.partition_point(|&c| c < u);
            u32::try_from(k.min(flows as usize - 1)).unwrap_or(0)
        })
        .collect()
}

/// The bench config: globex reaches one service with `TARGETS` targets in one zone, so
/// SNAT tuples (targets x ports) exceed two million; and its IPv6 twin (a service's
/// targets are one family), reached through a second endpoint's IPv6 address.
pub(super) fn config(flow_table_size: u32) -> String {
    let targets: Vec<String> = (0..TARGETS)
        .map(|i| {
            let ip = Ipv4Addr::from(u32::from(FIRST_TARGET) + u32::from(i));
            format!("{{ ip = \"{ip}\", zone = \"z1\" }}")
        })
        .collect();
    let targets6: Vec<String> = targets6()
        .map(|ip| format!("{{ ip = \"{ip}\", zone = \"z1\" }}"))
        .collect();
    format!(
        r#"[[network]]
name = "globex"
interface = "fw-globex"
dns_addresses = ["{DNS}"]

[[network]]
name = "prov"
interface = "fw-prov"

[[service]]
name = "bench"
network = "prov"
nlb_addresses = [{{ ip = "{NLB}", zone = "z1" }}]
allowed_principals = ["globex"]
accepted_endpoints = ["globex-bench"]
listeners = [{{ protocol = "udp", port = {UDP_PORT}, target_port = {UDP_TARGET_PORT} }}, {{ protocol = "tcp", port = {TCP_PORT}, target_port = {TCP_TARGET_PORT} }}]
# The sink answers nothing, and its counts must be the generator's frames only.
health_check = {{ enabled = false }}
targets = [{}]

[[endpoint]]
name = "globex-bench"
service = "bench"
network = "globex"
addresses = [{{ ip = "{ENDPOINT}", zone = "z1" }}]

[[service]]
name = "bench6"
network = "prov"
nlb_addresses = [{{ ip = "{NLB6}", zone = "z1" }}]
allowed_principals = ["globex"]
accepted_endpoints = ["globex-bench6"]
listeners = [{{ protocol = "udp", port = {UDP_PORT}, target_port = {UDP_TARGET_PORT} }}, {{ protocol = "tcp", port = {TCP_PORT}, target_port = {TCP_TARGET_PORT} }}]
health_check = {{ enabled = false }}
targets = [{}]

[[endpoint]]
name = "globex-bench6"
service = "bench6"
network = "globex"
addresses = [{{ ip = "{ENDPOINT6}", zone = "z1" }}]

[limits]
flow_table_size = {flow_table_size}
"#,
        targets.join(", "),
        targets6.join(", ")
    )
}

/// SplitMix64: a small, good-enough generator for sampling (no dependency needed).
pub(super) struct SplitMix(pub(super) u64);

impl SplitMix {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(super) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n).
    pub(super) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use pl_common::bench::{
        SINK_BAD_CHECKSUM, SINK_FRAME, SINK_OK, SINK_WRONG_HEADER, flow_source, gen_rewrite,
        gen_rewrite6, sink_verdict, sink_verdict6,
    };

    use super::*;

    const MAC: Mac = [2, 0, 0, 0, 0, 1];

    /// The first `GEN_FRAME4` bytes of a template: what the generator sends for IPv4.
    fn header4(cfg: &GenConfig) -> [u8; GEN_FRAME4] {
        cfg.header[..GEN_FRAME4].try_into().expect("64 bytes")
    }

    fn header6(cfg: &GenConfig) -> [u8; GEN_FRAME6] {
        cfg.header[..GEN_FRAME6].try_into().expect("84 bytes")
    }

    fn frame(v: Vec<u8>) -> [u8; SINK_FRAME] {
        v.try_into().expect("a 64-byte frame")
    }

    /// A frame as pl or nftables would send it on for flow `i` (built from scratch).
    fn rewritten(tcp: bool, dst: Ipv4Addr, sport: u16) -> [u8; SINK_FRAME] {
        let ip = Ipv4::new(NLB.octets(), dst.octets());
        frame(if tcp {
            ipv4_frame(
                MAC,
                MAC,
                &ip.tcp(sport, TCP_TARGET_PORT, 1, 0, TCP_SYN, &[0; 10]),
            )
        } else {
            ipv4_frame(MAC, MAC, &ip.udp(sport, UDP_TARGET_PORT, &[0; 22]))
        })
    }

    #[test]
    fn generated_frames_carry_checksums_that_verify_for_every_flow() {
        for tcp in [false, true] {
            let cfg = gen_config(MAC, MAC, tcp, 0, false);
            assert_ne!(
                cfg.header[40..42],
                [0, 0],
                "UDP template without a checksum"
            );
            for i in [0, 1, 59_999, 60_000, 999_999, 3_000_000, 0xffff_fff0] {
                let mut f = header4(&cfg);
                gen_rewrite(&mut f, i, !tcp);
                let (off, port) = flow_source(i);
                let ip = Ipv4::new(
                    (u32::from(SOURCE_BASE) + off).to_be_bytes(),
                    ENDPOINT.octets(),
                );
                let want = if tcp {
                    ipv4_frame(MAC, MAC, &ip.tcp(port, TCP_PORT, 1, 0, TCP_SYN, &[0; 10]))
                } else {
                    ipv4_frame(MAC, MAC, &ip.udp(port, UDP_PORT, &[0; 22]))
                };
                assert_eq!(f.to_vec(), want, "flow {i}, tcp {tcp}");
                let f = frame(f.to_vec());
                let verdict = sink_verdict(&f, &expect_unchanged(true));
                assert_eq!(verdict, SINK_OK, "flow {i}, tcp {tcp}");
            }
        }
    }

    #[test]
    fn every_generated_frame_verifies_over_many_flows() {
        // About one in 65536 TCP checksums is 0: a run of new flows meets several.
        for tcp in [false, true] {
            let cfg = gen_config(MAC, MAC, tcp, 0, false);
            let expect = expect_unchanged(true);
            for i in 0..300_000 {
                let mut f = header4(&cfg);
                gen_rewrite(&mut f, i, !tcp);
                assert_eq!(sink_verdict(&f, &expect), SINK_OK, "flow {i}, tcp {tcp}");
            }
        }
        let zero = (0..=u16::MAX)
            .map(|p| rewritten(true, FIRST_TARGET, p))
            .find(|f| f[50..52] == [0, 0])
            .expect("some source port gives a TCP checksum of 0");
        assert_eq!(sink_verdict(&zero, &expect_rewritten(true)), SINK_OK);
    }

    #[test]
    fn the_sink_counts_only_frames_rewritten_as_the_flow_says() {
        let expect = expect_rewritten(true);
        let last = Ipv4Addr::from(u32::from(FIRST_TARGET) + u32::from(TARGETS) - 1);
        for tcp in [false, true] {
            assert_eq!(
                sink_verdict(&rewritten(tcp, FIRST_TARGET, 1), &expect),
                SINK_OK
            );
            assert_eq!(
                sink_verdict(&rewritten(tcp, last, 65_535), &expect),
                SINK_OK
            );
            let beyond = Ipv4Addr::from(u32::from(last) + 1);
            assert_eq!(
                sink_verdict(&rewritten(tcp, beyond, 1), &expect),
                SINK_WRONG_HEADER
            );
            // Wrong destination port, wrong source address.
            let mut f = rewritten(tcp, FIRST_TARGET, 1);
            f[37] ^= 1;
            assert_eq!(sink_verdict(&f, &expect), SINK_WRONG_HEADER);
            let mut f = rewritten(tcp, FIRST_TARGET, 1);
            f[29] ^= 1;
            assert_eq!(sink_verdict(&f, &expect), SINK_WRONG_HEADER);
            // A payload byte changed: the L4 checksum no longer verifies.
            let mut f = rewritten(tcp, FIRST_TARGET, 1);
            f[63] ^= 0x40;
            assert_eq!(sink_verdict(&f, &expect), SINK_BAD_CHECKSUM);
            assert_eq!(
                sink_verdict(&f, &expect_rewritten(false)),
                SINK_OK,
                "counting without verifying checksums"
            );
            // The TTL changed without the IPv4 checksum.
            let mut f = rewritten(tcp, FIRST_TARGET, 1);
            f[22] -= 1;
            assert_eq!(sink_verdict(&f, &expect), SINK_BAD_CHECKSUM);
        }
        // UDP without a checksum is wrong: the generator always sends one.
        let mut f = rewritten(false, FIRST_TARGET, 1);
        f[40..42].fill(0);
        assert_eq!(sink_verdict(&f, &expect), SINK_BAD_CHECKSUM);
        // The generator's own frame is not what a forwarder that rewrites sends.
        let g = header4(&gen_config(MAC, MAC, false, 1, false));
        assert_eq!(sink_verdict(&g, &expect), SINK_WRONG_HEADER);
    }

    /// An IPv6 frame as pl would send it on for the IPv6 service (built from scratch).
    fn rewritten6(tcp: bool, dst: Ipv6Addr, sport: u16) -> [u8; GEN_FRAME6] {
        let ip = Ipv6::new(NLB6.octets(), dst.octets());
        let packet = if tcp {
            ip.tcp(sport, TCP_TARGET_PORT, 1, 0, TCP_SYN, &[0; 10])
        } else {
            ip.udp(sport, UDP_TARGET_PORT, &[0; 22])
        };
        ipv6_frame(MAC, MAC, &packet)
            .try_into()
            .expect("an 84-byte frame")
    }

    #[test]
    fn ipv6_generated_frames_are_the_flows_frames_with_the_same_l4_bytes() {
        for tcp in [false, true] {
            let cfg = gen_config(MAC, MAC, tcp, 0, true);
            assert_eq!((cfg.ipv6, cfg.header_len), (1, GEN_FRAME6 as u32));
            for i in [0, 1, 59_999, 60_000, 999_999, 3_000_000] {
                let mut f = header6(&cfg);
                gen_rewrite6(&mut f, i, !tcp);
                let (off, port) = flow_source(i);
                let src = Ipv6Addr::from(u128::from(SOURCE_BASE6) + u128::from(off));
                let ip = Ipv6::new(src.octets(), ENDPOINT6.octets());
                let want = if tcp {
                    ip.tcp(port, TCP_PORT, 1, 0, TCP_SYN, &[0; 10])
                } else {
                    ip.udp(port, UDP_PORT, &[0; 22])
                };
                assert_eq!(
                    f.to_vec(),
                    ipv6_frame(MAC, MAC, &want),
                    "flow {i}, tcp {tcp}"
                );
                // The L4 bytes are the IPv4 frame's, so the families compare like for like.
                let mut f4 = header4(&gen_config(MAC, MAC, tcp, 0, false));
                gen_rewrite(&mut f4, i, !tcp);
                let (l4_6, l4_4) = (&f[54..], &f4[34..]);
                assert_eq!(l4_6.len(), l4_4.len());
                let cks = if tcp { 16..18 } else { 6..8 };
                assert_eq!(l4_6[..cks.start], l4_4[..cks.start]);
                assert_eq!(l4_6[cks.end..], l4_4[cks.end..]);
            }
        }
    }

    #[test]
    fn the_ipv6_sink_counts_frames_pl_rewrote_for_the_ipv6_service() {
        let expect = expect_rewritten6(true);
        let last = targets6().last().expect("targets");
        for tcp in [false, true] {
            assert_eq!(
                sink_verdict6(&rewritten6(tcp, FIRST_TARGET6, 1), &expect),
                SINK_OK
            );
            assert_eq!(
                sink_verdict6(&rewritten6(tcp, last, 65_535), &expect),
                SINK_OK
            );
            let beyond = Ipv6Addr::from(u128::from(last) + 1);
            assert_eq!(
                sink_verdict6(&rewritten6(tcp, beyond, 1), &expect),
                SINK_WRONG_HEADER
            );
            let mut f = rewritten6(tcp, FIRST_TARGET6, 1);
            f[83] ^= 0x40;
            assert_eq!(sink_verdict6(&f, &expect), SINK_BAD_CHECKSUM);
            // The generator's own frame is not what pl sends on.
            let g = header6(&gen_config(MAC, MAC, tcp, 1, true));
            assert_eq!(sink_verdict6(&g, &expect), SINK_WRONG_HEADER);
        }
    }

    #[test]
    fn the_bench_config_parses_with_the_ports_the_frames_use() {
        let text = config(2048);
        crate::config::Source::from_text("bench.toml", text.clone())
            .parse()
            .unwrap_or_else(|e| panic!("bench config: {e:?}\n{text}"));
        assert!(text.contains("port = 53, target_port = 5353"), "{text}");
        assert!(text.contains("port = 443, target_port = 8443"), "{text}");
        assert!(
            text.contains("10.9.0.59") && !text.contains("10.9.0.60"),
            "{text}"
        );
        assert!(
            text.contains("\"fd00:9::20\"")
                && text.contains("\"fd00:9::47\"")
                && !text.contains("fd00:9::48"),
            "{text}"
        );
    }

    #[test]
    fn zipf_tables_are_skewed_and_in_range() {
        let t = zipf_table(1000, 100_000, 1);
        assert!(t.iter().all(|&i| i < 1000));
        let count = |k: u32| t.iter().filter(|&&i| i == k).count() as f64;
        // s = 1: flow 0 twice as often as flow 1, ten times as often as flow 9; H(1000) ~ 7.49.
        let p0 = count(0) / t.len() as f64;
        assert!((p0 - 1.0 / 7.485).abs() < 0.01, "p0 {p0}");
        assert!((count(0) / count(1) - 2.0).abs() < 0.2);
        assert!((count(0) / count(9) - 10.0).abs() < 1.5);
        assert_eq!(t, zipf_table(1000, 100_000, 1), "not deterministic");
        assert_eq!(zipf_table(1, 10, 1), vec![0; 10]);
    }
}
