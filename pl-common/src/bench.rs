//! Types shared by the benchmark's XDP programs and `pl bench`.

use bytemuck::{Pod, Zeroable};

use crate::checksum;

pub const GEN_PROGRAM: &str = "pl_gen";
pub const SINK_PROGRAM: &str = "pl_sink";
pub const BARE_PROGRAM: &str = "pl_bare";
/// `ARRAY<GenConfig>` of one element.
pub const GEN_CONFIG_MAP: &str = "GEN_CONFIG";
/// `PERCPU_ARRAY<u64>`: [0] frames sent, [1] per-CPU sequence.
pub const GEN_COUNT_MAP: &str = "GEN_COUNT";
/// `PERCPU_ARRAY<u64>`: indexed by `SINK_*`.
pub const SINK_COUNT_MAP: &str = "SINK_COUNT";
/// `ARRAY<SinkConfig>` of one element: what the sink expects of what it counts.
pub const SINK_CONFIG_MAP: &str = "SINK_CONFIG";
/// `ARRAY<u32>`: flow indices sampled from a skewed distribution, one table per flow
/// count; the generator walks `[zipf_base, zipf_base + zipf_len)` of it.
pub const GEN_SKEW_MAP: &str = "GEN_SKEW";
/// Sink counters: frames that arrived as expected (the rate), their bytes, frames whose
/// addresses or ports were not what the flow says, frames with a bad IPv4 or L4 checksum.
pub const SINK_OK: u32 = 0;
pub const SINK_BYTES: u32 = 1;
pub const SINK_WRONG_HEADER: u32 = 2;
pub const SINK_BAD_CHECKSUM: u32 = 3;
/// `DEVMAP`: [0] the interface the bare redirect sends to.
pub const BARE_EGRESS_MAP: &str = "BARE_EGRESS";

/// IPv4 frames: Ethernet, IPv4 and 30 bytes of UDP or TCP (header and payload).
pub const GEN_FRAME4: usize = 64;
/// IPv6 frames: the same 30 bytes of L4 behind a 40-byte IPv6 header, so the two
/// families differ only in what IPv6 costs (a 64-byte IPv6 frame cannot hold a TCP SYN).
pub const GEN_FRAME6: usize = GEN_FRAME4 + 20;
/// Room for either family's template in the generator's config (bytemuck's Pod arrays
/// come in a few sizes; 96 is the first to hold `GEN_FRAME6`).
pub const GEN_HEADER: usize = 96;

/// How the generator varies its frames.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct GenConfig {
    /// The whole frame (Ethernet, IPv4 or IPv6, L4), rewritten in full on every frame
    /// (pages come back from the data path rewritten): the first `GEN_FRAME4` bytes for
    /// IPv4, all `GEN_FRAME6` for IPv6. `header_len` says which, for userspace.
    pub header: [u8; GEN_HEADER],
    pub header_len: u32,
    /// Distinct flows to cycle through; 0: every frame a new flow.
    pub flows: u32,
    /// Generator CPUs, so each CPU's sequence covers its own share of the flows.
    pub cpus: u32,
    /// 1: UDP, 0: TCP. Either way the generator updates the template's L4 checksum for
    /// the source it writes.
    pub udp: u32,
    /// With `skew_len` > 0, frame `n` uses flow `GEN_SKEW[skew_base + n % skew_len]`
    /// instead of `n % flows`.
    pub skew_base: u32,
    pub skew_len: u32,
    /// 1: the template is IPv6 (`GEN_FRAME6` bytes), 0: IPv4 (`GEN_FRAME4`).
    pub ipv6: u32,
    /// With `dns_every` > 0 (IPv4 only), frame `n` is `dns` as it is when `n %
    /// dns_every == 0`: a DNS query mixed into the data frames (the flood variant).
    pub dns_every: u32,
    pub dns: [u8; GEN_FRAME4],
}

impl Default for GenConfig {
    fn default() -> Self {
        Self::zeroed()
    }
}

/// Source ports per source address; flow `i` uses port `1024 + i % PORTS_PER_ADDR` and
/// source address `base + i / PORTS_PER_ADDR`.
pub const PORTS_PER_ADDR: u32 = 60_000;

/// The (source address offset, source port) of flow `i`.
#[inline(always)]
pub const fn flow_source(i: u32) -> (u32, u16) {
    (i / PORTS_PER_ADDR, (1024 + i % PORTS_PER_ADDR) as u16)
}

#[cfg(feature = "user")]
// SAFETY: repr(C), explicit padding, every bit pattern valid (bytemuck-checked).
unsafe impl aya::Pod for GenConfig {}

/// Rewrites a template frame (Ethernet, IPv4, UDP or TCP) for flow `i`: source address
/// and port from `flow_source`, IPv4 checksum afresh, L4 checksum updated.
#[inline(always)]
pub fn gen_rewrite(frame: &mut [u8; GEN_FRAME4], i: u32, udp: bool) {
    let (addr_off, sport) = flow_source(i);
    let old_src = [frame[26], frame[27], frame[28], frame[29]];
    let old_port = u16::from_be_bytes([frame[34], frame[35]]);
    let src = u32::from_be_bytes(old_src)
        .wrapping_add(addr_off)
        .to_be_bytes();
    frame[26..30].copy_from_slice(&src);
    frame[24] = 0;
    frame[25] = 0;
    let c = checksum::checksum(&frame[14..34]);
    frame[24..26].copy_from_slice(&c.to_be_bytes());
    frame[34..36].copy_from_slice(&sport.to_be_bytes());
    // The template's L4 checksum is for its own source; update it for this one.
    let at = if udp { 40 } else { 50 };
    let old = u16::from_be_bytes([frame[at], frame[at + 1]]);
    let new = gen_l4_check(old, old_src, src, old_port, sport, udp);
    frame[at..at + 2].copy_from_slice(&new.to_be_bytes());
}

/// Rewrites an IPv6 template frame (Ethernet, IPv6, UDP or TCP) for flow `i`: the
/// source address's last 32 bits advance by `flow_source`'s offset, the source port is
/// the flow's, the L4 checksum is updated (IPv6 has no header checksum).
#[inline(always)]
pub fn gen_rewrite6(frame: &mut [u8; GEN_FRAME6], i: u32, udp: bool) {
    let (addr_off, sport) = flow_source(i);
    let old_low = [frame[34], frame[35], frame[36], frame[37]];
    let old_port = u16::from_be_bytes([frame[54], frame[55]]);
    let low = u32::from_be_bytes(old_low)
        .wrapping_add(addr_off)
        .to_be_bytes();
    frame[34..38].copy_from_slice(&low);
    frame[54..56].copy_from_slice(&sport.to_be_bytes());
    let at = if udp { 60 } else { 70 };
    let old = u16::from_be_bytes([frame[at], frame[at + 1]]);
    let new = gen_l4_check(old, old_low, low, old_port, sport, udp);
    frame[at..at + 2].copy_from_slice(&new.to_be_bytes());
}

/// The generator's L4 checksum for a frame whose source address went from `old_src` to
/// `new_src` and source port from `old_port` to `new_port` (RFC 1624). A UDP result of 0
/// is sent as 0xffff, since 0 means "no checksum".
#[inline(always)]
pub const fn gen_l4_check(
    check: u16,
    old_src: [u8; 4],
    new_src: [u8; 4],
    old_port: u16,
    new_port: u16,
    udp: bool,
) -> u16 {
    let c = checksum::update32(check, old_src, new_src);
    let c = checksum::update16(c, old_port, new_port);
    if udp && c == 0 { 0xffff } else { c }
}

/// What the sink expects of every frame it counts: IPv4 without options (or, with
/// `ipv6`, IPv6 without extension headers), addresses in these ranges (inclusive, host
/// order; for IPv6 the last 32 bits, behind the 96-bit prefix given), the destination
/// port of its protocol, and (with `verify_checksums`) IPv4 and L4 checksums that verify.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct SinkConfig {
    pub src_lo: u32,
    pub src_hi: u32,
    pub dst_lo: u32,
    pub dst_hi: u32,
    pub udp_port: u16,
    pub tcp_port: u16,
    /// 1: verify checksums; 0: only addresses and ports (the bare count, to show what
    /// verifying costs the sink).
    pub verify_checksums: u32,
    /// 1: frames are IPv6, `SINK_FRAME6` bytes; 0: IPv4, `SINK_FRAME` bytes.
    pub ipv6: u32,
    /// IPv6: the first 96 bits every source and every destination must have.
    pub src6_prefix: [u8; 12],
    pub dst6_prefix: [u8; 12],
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self::zeroed()
    }
}

#[cfg(feature = "user")]
// SAFETY: repr(C), no padding (u32 x 4, u16 x 2, u32 x 2, u8 x 24), every bit pattern
// valid.
unsafe impl aya::Pod for SinkConfig {}

/// Bytes of every frame the sink inspects: the generator's frames are this long, and
/// nothing on the way changes their length.
pub const SINK_FRAME: usize = GEN_FRAME4;
/// The same for IPv6 frames.
pub const SINK_FRAME6: usize = GEN_FRAME6;

/// The sink's verdict on one frame: the `SINK_*` counter it goes to.
#[inline(always)]
pub fn sink_verdict(f: &[u8; SINK_FRAME], cfg: &SinkConfig) -> u32 {
    // Ethernet IPv4, IHL 5, total length = the rest of the frame, not a fragment.
    let total = u16::from_be_bytes([f[16], f[17]]) as usize;
    if f[12] != 0x08 || f[13] != 0x00 || f[14] != 0x45 || total != SINK_FRAME - 14 {
        return SINK_WRONG_HEADER;
    }
    let (proto, port) = (f[23], u16::from_be_bytes([f[36], f[37]]));
    let want_port = match proto {
        6 => cfg.tcp_port,
        17 => cfg.udp_port,
        _ => return SINK_WRONG_HEADER,
    };
    let src = u32::from_be_bytes([f[26], f[27], f[28], f[29]]);
    let dst = u32::from_be_bytes([f[30], f[31], f[32], f[33]]);
    if port != want_port
        || src < cfg.src_lo
        || src > cfg.src_hi
        || dst < cfg.dst_lo
        || dst > cfg.dst_hi
    {
        return SINK_WRONG_HEADER;
    }
    if cfg.verify_checksums != 0 {
        let mut ip = [0u8; 20];
        ip.copy_from_slice(&f[14..34]);
        if !checksum::ipv4_header_ok(&ip) {
            return SINK_BAD_CHECKSUM;
        }
        // UDP without a checksum (0) is wrong here: the generator always sends one. (A TCP
        // checksum may well be 0.)
        let l4_check = if proto == 17 {
            [f[40], f[41]]
        } else {
            [f[50], f[51]]
        };
        let l4_len = (SINK_FRAME - 34) as u16;
        let acc = checksum::pseudo_header_sum(
            [f[26], f[27], f[28], f[29]],
            [f[30], f[31], f[32], f[33]],
            proto,
            l4_len,
        );
        if (proto == 17 && l4_check == [0, 0])
            || checksum::fold(checksum::sum(&f[34..], acc)) != 0xffff
        {
            return SINK_BAD_CHECKSUM;
        }
    }
    SINK_OK
}

/// The sink's verdict on one IPv6 frame, as [`sink_verdict`] for IPv4: the L4 checksum
/// is verified over the IPv6 pseudo-header.
#[inline(always)]
pub fn sink_verdict6(f: &[u8; SINK_FRAME6], cfg: &SinkConfig) -> u32 {
    // Ethernet IPv6, payload length = the rest of the frame, no extension header.
    let payload = u16::from_be_bytes([f[18], f[19]]) as usize;
    if f[12] != 0x86 || f[13] != 0xdd || f[14] >> 4 != 6 || payload != SINK_FRAME6 - 54 {
        return SINK_WRONG_HEADER;
    }
    let (proto, port) = (f[20], u16::from_be_bytes([f[56], f[57]]));
    let want_port = match proto {
        6 => cfg.tcp_port,
        17 => cfg.udp_port,
        _ => return SINK_WRONG_HEADER,
    };
    let src_low = u32::from_be_bytes([f[34], f[35], f[36], f[37]]);
    let dst_low = u32::from_be_bytes([f[50], f[51], f[52], f[53]]);
    if port != want_port
        || f[22..34] != cfg.src6_prefix
        || f[38..50] != cfg.dst6_prefix
        || src_low < cfg.src_lo
        || src_low > cfg.src_hi
        || dst_low < cfg.dst_lo
        || dst_low > cfg.dst_hi
    {
        return SINK_WRONG_HEADER;
    }
    if cfg.verify_checksums != 0 {
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src.copy_from_slice(&f[22..38]);
        dst.copy_from_slice(&f[38..54]);
        let l4_check = if proto == 17 {
            [f[60], f[61]]
        } else {
            [f[70], f[71]]
        };
        // UDP over IPv6 must carry a checksum (RFC 8200 8.1), and the generator's does.
        let acc = crate::xlat::pseudo_header_sum_v6(src, dst, proto, (SINK_FRAME6 - 54) as u32);
        if (proto == 17 && l4_check == [0, 0])
            || checksum::fold(checksum::sum(&f[54..], acc)) != 0xffff
        {
            return SINK_BAD_CHECKSUM;
        }
    }
    SINK_OK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_are_distinct_and_each_path_starts_at_entry() {
        for stages in [&ESTABLISHED_STAGES[..], &NEW_FLOW_STAGES[..]] {
            assert_eq!(stages[0].0, STAGE_ENTERED);
            for (i, (a, _)) in stages.iter().enumerate() {
                assert_ne!(*a, STAGE_NONE, "a stage that is the product's");
                assert!(
                    stages[i + 1..].iter().all(|(b, _)| b != a),
                    "stage {a} twice"
                );
            }
        }
    }

    const SRC6: [u8; 16] = [0xfd, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    const DST6: [u8; 16] = [0xfd, 0, 0, 0xa, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];

    /// An IPv6 bench frame built from scratch: `src` with its last 32 bits advanced by
    /// `off`, source port `sport`, L4 checksum computed in full.
    fn frame6(udp: bool, off: u32, sport: u16) -> [u8; GEN_FRAME6] {
        let mut f = [0u8; GEN_FRAME6];
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        f[14] = 0x60;
        f[18..20].copy_from_slice(&30u16.to_be_bytes());
        f[20] = if udp { 17 } else { 6 };
        f[21] = 64;
        let mut src = SRC6;
        src[12..].copy_from_slice(&off.to_be_bytes());
        f[22..38].copy_from_slice(&src);
        f[38..54].copy_from_slice(&DST6);
        f[54..56].copy_from_slice(&sport.to_be_bytes());
        f[56..58].copy_from_slice(&(if udp { 53u16 } else { 443 }).to_be_bytes());
        let at = if udp {
            f[58..60].copy_from_slice(&30u16.to_be_bytes());
            60
        } else {
            f[66] = 0x50; // data offset 5
            f[67] = 0x02; // SYN
            70
        };
        let c = crate::xlat::l4_checksum_v6(src, DST6, f[20], &f[54..]);
        let c = if udp && c == 0 { 0xffff } else { c };
        f[at..at + 2].copy_from_slice(&c.to_be_bytes());
        f
    }

    fn expect6(verify: bool) -> SinkConfig {
        let mut src6_prefix = [0u8; 12];
        let mut dst6_prefix = [0u8; 12];
        src6_prefix.copy_from_slice(&SRC6[..12]);
        dst6_prefix.copy_from_slice(&DST6[..12]);
        SinkConfig {
            src_lo: 0,
            src_hi: 0xff_ffff,
            dst_lo: 0x100,
            dst_hi: 0x100,
            udp_port: 53,
            tcp_port: 443,
            verify_checksums: u32::from(verify),
            ipv6: 1,
            src6_prefix,
            dst6_prefix,
        }
    }

    #[test]
    fn ipv6_frames_rewritten_per_flow_match_frames_built_from_scratch() {
        for udp in [true, false] {
            let template = frame6(udp, 0, 1024);
            for i in [0, 1, 59_999, 60_000, 999_999, 3_000_000] {
                let mut f = template;
                gen_rewrite6(&mut f, i, udp);
                let (off, port) = flow_source(i);
                assert_eq!(f, frame6(udp, off, port), "flow {i}, udp {udp}");
                assert_eq!(sink_verdict6(&f, &expect6(true)), SINK_OK);
            }
            // Every flow's frame verifies, including those whose checksum folds to 0.
            for i in 0..200_000 {
                let mut f = template;
                gen_rewrite6(&mut f, i, udp);
                assert_eq!(sink_verdict6(&f, &expect6(true)), SINK_OK, "flow {i}");
            }
        }
    }

    #[test]
    fn the_ipv6_sink_counts_only_what_its_config_says() {
        let expect = expect6(true);
        for udp in [true, false] {
            let ok = frame6(udp, 7, 2000);
            assert_eq!(sink_verdict6(&ok, &expect), SINK_OK);
            // Prefix, address range, port, protocol, next header, length.
            for (at, bit) in [(22, 1), (45, 1), (53, 1), (57, 1), (20, 0x80), (19, 1)] {
                let mut f = ok;
                f[at] ^= bit;
                assert_eq!(sink_verdict6(&f, &expect), SINK_WRONG_HEADER, "byte {at}");
            }
            // A payload byte changed: the L4 checksum no longer verifies, unless not asked.
            let mut f = ok;
            f[80] ^= 0x40;
            assert_eq!(sink_verdict6(&f, &expect), SINK_BAD_CHECKSUM);
            assert_eq!(sink_verdict6(&f, &expect6(false)), SINK_OK);
            // An IPv4 verdict for an IPv6 frame is never OK.
            let mut v4 = [0u8; SINK_FRAME];
            v4.copy_from_slice(&ok[..SINK_FRAME]);
            assert_eq!(sink_verdict(&v4, &expect), SINK_WRONG_HEADER);
        }
        let mut f = frame6(true, 0, 1024);
        f[60..62].fill(0);
        assert_eq!(
            sink_verdict6(&f, &expect),
            SINK_BAD_CHECKSUM,
            "UDP without checksum"
        );
    }

    #[test]
    fn flow_sources_are_distinct_and_ports_unprivileged() {
        let a = flow_source(0);
        let b = flow_source(PORTS_PER_ADDR - 1);
        let c = flow_source(PORTS_PER_ADDR);
        assert_eq!(a, (0, 1024));
        assert_eq!(b, (0, 1024 + PORTS_PER_ADDR as u16 - 1));
        assert_eq!(c, (1, 1024));
        assert!(b.1 < u16::MAX);
    }
}

/// The flow-table lookup bench (`pl_table`, run under BPF_PROG_TEST_RUN with `repeat`):
/// each run looks up one flow's forward key in one table design.
pub const TABLE_PROGRAM: &str = "pl_table";
/// `ARRAY<TableConfig>` of one element.
pub const TABLE_CONFIG_MAP: &str = "TABLE_CONFIG";
/// `HASH<FlowKey, [u32; 16]>`: the kernel hash map with 64-byte values, as `PL_FLOWS` was
/// before the slot table; word 0 holds the flow's index.
pub const TABLE_HASH_MAP: &str = "TABLE_HASHMAP";
/// `ARRAY<flowtable::Slot>`, mmapable: the open-addressing table, as `PL_FLOWS` is.
pub const TABLE_SLOTS_MAP: &str = "TABLE_ARRAY";
/// `PERCPU_ARRAY<u64>`: [0] runs (the sequence), [1] lookups that found the right entry.
pub const TABLE_COUNT_MAP: &str = "TABLE_COUNT";

/// No lookup: the run's own cost (sequence, key, hash), taken out of the others.
pub const TABLE_NONE: u32 = 0;
pub const TABLE_HASH: u32 = 1;
pub const TABLE_SLOTS: u32 = 2;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct TableConfig {
    /// `TABLE_NONE`, `TABLE_HASH` or `TABLE_SLOTS`.
    pub design: u32,
    pub flows: u32,
    /// With `skew_len` > 0, run `n` uses flow `GEN_SKEW[skew_base + n % skew_len]`.
    pub skew_base: u32,
    pub skew_len: u32,
    /// Slots in `TABLE_SLOTS`.
    pub slots: u32,
    /// 1: count the packet in the entry found (as `PL_FLOWS` does today), dirtying its
    /// line; 0: only read it.
    pub write: u32,
}

/// The consumer-side key of bench flow `i` (what the forward lookup asks for).
#[inline(always)]
pub const fn table_forward_key(i: u32) -> crate::flow::FlowKey {
    let (addr_off, sport) = flow_source(i);
    crate::flow::FlowKey {
        src_be: (0x0a01_0000u32 + addr_off).to_be(),
        dst_be: 0x0a00_0064u32.to_be(),
        sport_be: sport.to_be(),
        dport_be: 443u16.to_be(),
        network: 1,
        proto: crate::proto::IPPROTO_TCP,
        _pad: 0,
    }
}

/// The provider-side key of bench flow `i`'s replies (its table room, never looked up).
#[inline(always)]
pub const fn table_reply_key(i: u32) -> crate::flow::FlowKey {
    crate::flow::FlowKey {
        src_be: (0x0a09_0014u32 + i % 40).to_be(),
        dst_be: 0x0a09_00fau32.to_be(),
        sport_be: 8443u16.to_be(),
        dport_be: ((i / 40) as u16).to_be(),
        network: 2 + (i / (40 * 65536)) as u16,
        proto: crate::proto::IPPROTO_TCP,
        _pad: 0,
    }
}

#[cfg(feature = "user")]
// SAFETY: as above.
unsafe impl aya::Pod for TableConfig {}

/// The data path's copy with the stage knob, for `pl bench`'s itemization: in the same
/// object as `pl_xdp` (same maps), never attached. The product's copy compiles the knob
/// away.
pub const STAGED_PROGRAM: &str = "pl_xdp_staged";
/// The stage knob: loaded with this global set to a stage below, [`STAGED_PROGRAM`] ends
/// every packet there with XDP_DROP, so consecutive stages' timings subtract into what
/// each stage costs.
pub const STOP_AT_GLOBAL: &str = "PL_STOP_AT";

/// Stop nowhere: the product.
pub const STAGE_NONE: u32 = 0;

/// The program a load for `stage` runs: the product's for [`STAGE_NONE`], else the staged
/// copy.
pub const fn program_for(stage: u32) -> &'static str {
    if stage == STAGE_NONE {
        crate::maps::PROGRAM_NAME
    } else {
        STAGED_PROGRAM
    }
}
/// Right at entry: what the frame cost before the program did anything.
pub const STAGE_ENTERED: u32 = 13;
/// After the ingress interface's lookup.
pub const STAGE_CLASSIFIED: u32 = 1;
/// After the interface counters, the parse and the destination-MAC check.
pub const STAGE_PARSED: u32 = 2;
/// After the flow key, the clock, the TCP flags and the martian check.
pub const STAGE_KEYED: u32 = 3;
/// A SYN: after its early admission (policy, spoof check, allowed sources, Maglev).
pub const STAGE_ADMITTED: u32 = 4;
/// A SYN: after its two home slots are touched (`early::warm`).
pub const STAGE_WARMED: u32 = 14;
/// After the flow hash.
pub const STAGE_HASHED: u32 = 5;
/// After the flow lookup: found live (established) or absent (new flow).
pub const STAGE_LOOKED_UP: u32 = 6;
/// A new flow: after both entries are in the table (SNAT port chosen, probes checked).
pub const STAGE_CREATED: u32 = 7;
/// A new flow: after its counters and its event.
pub const STAGE_OPENED: u32 = 8;
/// After the entry's state and counters are written.
pub const STAGE_COUNTED: u32 = 9;
/// After the TTL and MTU checks.
pub const STAGE_CHECKED: u32 = 10;
/// After the rewrite: MACs, addresses, ports, TTL and both checksums (and a SYN's MSS).
pub const STAGE_TRANSLATED: u32 = 11;
/// After the endpoint's forwarded counters, right before the redirect.
pub const STAGE_COUNTED_ENDPOINT: u32 = 12;

/// An established packet's stages in the order it passes them, with what each adds.
pub const ESTABLISHED_STAGES: [(u32, &str); 10] = [
    (
        STAGE_ENTERED,
        "entered: the generator, the veth, XDP's entry",
    ),
    (STAGE_CLASSIFIED, "ingress interface lookup"),
    (STAGE_PARSED, "interface counters, parse, MAC check"),
    (STAGE_KEYED, "flow key, clock, TCP flags, martian check"),
    (STAGE_HASHED, "flow hash (murmur3, seeded)"),
    (STAGE_LOOKED_UP, "flow-table lookup (found, stamp fresh)"),
    (STAGE_COUNTED, "entry state and counters written"),
    (STAGE_CHECKED, "TTL and MTU checks"),
    (
        STAGE_TRANSLATED,
        "rewrite: MACs, addresses, ports, checksums",
    ),
    (STAGE_COUNTED_ENDPOINT, "endpoint counters"),
];

/// A new flow's (a TCP SYN to a fresh tuple) stages in the order it passes them.
pub const NEW_FLOW_STAGES: [(u32, &str); 14] = [
    (
        STAGE_ENTERED,
        "entered: the generator, the veth, XDP's entry",
    ),
    (STAGE_CLASSIFIED, "ingress interface lookup"),
    (STAGE_PARSED, "interface counters, parse, MAC check"),
    (STAGE_KEYED, "flow key, clock, TCP flags, martian check"),
    (STAGE_HASHED, "flow hash (murmur3, seeded)"),
    (
        STAGE_ADMITTED,
        "admission: policy, spoof check, sources, Maglev",
    ),
    (
        STAGE_WARMED,
        "both home slots touched (two cold misses, overlapped)",
    ),
    (
        STAGE_LOOKED_UP,
        "flow-table lookup (absent, its line coming)",
    ),
    (
        STAGE_CREATED,
        "both entries inserted (SNAT port, probe check)",
    ),
    (STAGE_OPENED, "new-flow counters and event"),
    (STAGE_COUNTED, "entry state and counters written"),
    (STAGE_CHECKED, "TTL and MTU checks"),
    (STAGE_TRANSLATED, "rewrite, checksums, MSS clamp"),
    (STAGE_COUNTED_ENDPOINT, "endpoint counters"),
];
