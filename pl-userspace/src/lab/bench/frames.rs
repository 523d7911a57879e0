//! What the generator sends and what the sink accepts: the frame templates (with real L4
//! checksums), the sink's expectations for each forwarder, and the skewed flow tables.

use std::net::Ipv4Addr;

use pl_common::bench::{GEN_HEADER, GenConfig, SinkConfig};

use super::{ENDPOINT, FRAME_LEN, SOURCE_BASE, TARGETS};
use crate::frame::{Ipv4, Mac, TCP_SYN, ipv4_frame};

/// The listener ports the generator sends to and the target ports pl and nftables
/// rewrite them to (the bench config's listeners).
pub(super) const UDP_PORT: u16 = 53;
pub(super) const UDP_TARGET_PORT: u16 = 5353;
pub(super) const TCP_PORT: u16 = 443;
pub(super) const TCP_TARGET_PORT: u16 = 8443;
/// The bench service's NLB address: the source of every rewritten frame.
pub(super) const NLB: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 250);
pub(super) const FIRST_TARGET: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 20);

/// The generator's template: a UDP datagram to the endpoint's port 53, or a TCP SYN to
/// 443, from the first generator source, both with real checksums (the generator updates
/// them per frame).
pub(super) fn gen_config(dst: Mac, src: Mac, tcp_syn: bool, flows: u32) -> GenConfig {
    let ip = Ipv4::new(SOURCE_BASE.octets(), ENDPOINT.octets());
    let mut f = if tcp_syn {
        let payload = [0; FRAME_LEN - 54];
        ipv4_frame(dst, src, &ip.tcp(1024, TCP_PORT, 1, 0, TCP_SYN, &payload))
    } else {
        ipv4_frame(dst, src, &ip.udp(1024, UDP_PORT, &[0; FRAME_LEN - 42]))
    };
    f.resize(GEN_HEADER, 0);
    let mut header = [0u8; GEN_HEADER];
    header.copy_from_slice(&f);
    GenConfig {
        header,
        header_len: GEN_HEADER as u32,
        flows,
        cpus: 1,
        udp: u32::from(!tcp_syn),
        skew_base: 0,
        skew_len: 0,
    }
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
/// SNAT tuples (targets x ports) exceed two million.
pub(super) fn config(flow_table_size: u32) -> String {
    let targets: Vec<String> = (0..TARGETS)
        .map(|i| {
            let ip = Ipv4Addr::from(u32::from(FIRST_TARGET) + u32::from(i));
            format!("{{ ip = \"{ip}\", zone = \"z1\" }}")
        })
        .collect();
    format!(
        r#"[[network]]
name = "globex"
interface = "fw-globex"

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

[limits]
flow_table_size = {flow_table_size}
"#,
        targets.join(", ")
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
        sink_verdict,
    };

    use super::*;

    const MAC: Mac = [2, 0, 0, 0, 0, 1];

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
            let cfg = gen_config(MAC, MAC, tcp, 0);
            assert_ne!(
                cfg.header[40..42],
                [0, 0],
                "UDP template without a checksum"
            );
            for i in [0, 1, 59_999, 60_000, 999_999, 3_000_000, 0xffff_fff0] {
                let mut f = cfg.header;
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
            let cfg = gen_config(MAC, MAC, tcp, 0);
            let expect = expect_unchanged(true);
            for i in 0..300_000 {
                let mut f = cfg.header;
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
        let g = gen_config(MAC, MAC, false, 1).header;
        assert_eq!(sink_verdict(&g, &expect), SINK_WRONG_HEADER);
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
