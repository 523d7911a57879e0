//! ICMP errors about translated flows. An error (destination unreachable, fragmentation
//! needed, time exceeded) quotes the packet that caused it; the flow entry that translates
//! the quoted packet reversed is the one this error belongs to. Translating rewrites the
//! outer addresses as that entry says, and the quoted packet to what the receiver sent,
//! with every checksum kept right: outer IPv4, quoted IPv4, quoted UDP/TCP (where quoted),
//! ICMP. So PMTU discovery works through an endpoint, and neither side sees the other's
//! addresses.
//!
//! Everything works on a fixed window from the outer IPv4 header: outer IPv4 (20), ICMP
//! header (8), quoted IPv4 without options (20), the quoted L4 header's first 8 bytes, as
//! RFC 792 requires at the least.

use crate::{
    checksum::update16,
    flow::FlowKey,
    proto::{IPPROTO_TCP, IPPROTO_UDP},
};

pub const ICMP_DEST_UNREACH: u8 = 3;
pub const ICMP_TIME_EXCEEDED: u8 = 11;
pub const ICMP_PARAM_PROBLEM: u8 = 12;
/// Code of destination unreachable: fragmentation needed and DF set.
pub const ICMP_FRAG_NEEDED: u8 = 4;

/// Bytes of the window, from the outer IPv4 header.
pub const WINDOW: usize = 56;
/// Offset of the quoted TCP checksum from the outer IPv4 header, when quoted.
pub const QUOTED_TCP_CHECK: usize = QUOTED_L4 + 16;

const OUT_TTL: usize = 8;
const OUT_CHECK: usize = 10;
const OUT_SRC: usize = 12;
const OUT_DST: usize = 16;
const ICMP_TYPE: usize = 20;
const ICMP_CHECK: usize = 22;
const QUOTED: usize = 28;
const QUOTED_PROTO: usize = QUOTED + 9;
const QUOTED_CHECK: usize = QUOTED + 10;
const QUOTED_SRC: usize = QUOTED + 12;
const QUOTED_DST: usize = QUOTED + 16;
const QUOTED_L4: usize = QUOTED + 20;
const QUOTED_UDP_CHECK: usize = QUOTED_L4 + 6;

#[inline(always)]
fn word(w: &[u8; WINDOW], at: usize) -> u16 {
    u16::from_be_bytes([w[at], w[at + 1]])
}

#[inline(always)]
fn put(w: &mut [u8; WINDOW], at: usize, v: u16) {
    let b = v.to_be_bytes();
    w[at] = b[0];
    w[at + 1] = b[1];
}

/// The flow-table key of the entry an ICMP error in `w` (arrived on `network`) belongs to:
/// the quoted packet reversed. None unless it is an error the data path translates,
/// quoting TCP or UDP in IPv4 without options, with the quoted L4 header's first 8 bytes
/// inside the outer total length.
#[inline(always)]
pub fn error_key(w: &[u8; WINDOW], network: u16) -> Option<FlowKey> {
    if !matches!(
        w[ICMP_TYPE],
        ICMP_DEST_UNREACH | ICMP_TIME_EXCEEDED | ICMP_PARAM_PROBLEM
    ) || w[QUOTED] != 0x45
    {
        return None;
    }
    // The quoted ports must be in the message, not in Ethernet padding after it.
    if usize::from(word(w, 2)) < WINDOW {
        return None;
    }
    let proto = w[QUOTED_PROTO];
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        return None;
    }
    let be32 = |at: usize| u32::from_ne_bytes([w[at], w[at + 1], w[at + 2], w[at + 3]]);
    let be16 = |at: usize| u16::from_ne_bytes([w[at], w[at + 1]]);
    Some(FlowKey {
        src_be: be32(QUOTED_DST),
        dst_be: be32(QUOTED_SRC),
        sport_be: be16(QUOTED_L4 + 2),
        dport_be: be16(QUOTED_L4),
        network,
        proto,
        _pad: 0,
    })
}

/// Where the error goes, from the flow entry: the entry's rewritten tuple, as on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rewrite {
    pub src_be: u32,
    pub dst_be: u32,
    pub sport_be: u16,
    pub dport_be: u16,
}

/// Rewrites the error in `w` (see [`error_key`]) as `r` says: the outer packet goes from
/// `r.src` to `r.dst` with TTL one lower (the caller checked it is above 1); the quoted
/// packet becomes `r.dst:r.dport -> r.src:r.sport`, the packet the receiver sent. Every
/// checksum is updated incrementally: outer and quoted IPv4, the quoted UDP checksum
/// (unless 0), the quoted TCP checksum if `tcp_check` holds it, and ICMP's.
#[inline(always)]
pub fn translate_error(w: &mut [u8; WINDOW], r: &Rewrite, tcp_check: Option<&mut [u8; 2]>) {
    let (src, dst) = (r.src_be.to_ne_bytes(), r.dst_be.to_ne_bytes());
    // The quoted packet's words that change: four address words (src, dst), two ports.
    // Plain indexed loops over fixed arrays: the verifier follows them.
    let at = [
        QUOTED_SRC,
        QUOTED_SRC + 2,
        QUOTED_DST,
        QUOTED_DST + 2,
        QUOTED_L4,
        QUOTED_L4 + 2,
    ];
    let new = [
        u16::from_be_bytes([dst[0], dst[1]]),
        u16::from_be_bytes([dst[2], dst[3]]),
        u16::from_be_bytes([src[0], src[1]]),
        u16::from_be_bytes([src[2], src[3]]),
        u16::from_be(r.dport_be),
        u16::from_be(r.sport_be),
    ];
    let mut old = [0u16; 6];
    let mut icmp = word(w, ICMP_CHECK);
    let mut ip = word(w, QUOTED_CHECK);
    for i in 0..6 {
        old[i] = word(w, at[i]);
        icmp = update16(icmp, old[i], new[i]);
        if i < 4 {
            ip = update16(ip, old[i], new[i]);
        }
        put(w, at[i], new[i]);
    }
    icmp = update16(icmp, word(w, QUOTED_CHECK), ip);
    put(w, QUOTED_CHECK, ip);
    // The quoted L4 checksum covers the pseudo-header addresses and the ports.
    let l4 = |mut c: u16| {
        for i in 0..6 {
            c = update16(c, old[i], new[i]);
        }
        c
    };
    if w[QUOTED_PROTO] == IPPROTO_UDP {
        let old = word(w, QUOTED_UDP_CHECK);
        if old != 0 {
            let new = match l4(old) {
                0 => 0xffff,
                n => n,
            };
            icmp = update16(icmp, old, new);
            put(w, QUOTED_UDP_CHECK, new);
        }
    } else if let Some(c) = tcp_check {
        let old = u16::from_be_bytes(*c);
        let new = l4(old);
        icmp = update16(icmp, old, new);
        *c = new.to_be_bytes();
    }
    put(w, ICMP_CHECK, icmp);
    // The outer header: TTL and addresses.
    let mut out = word(w, OUT_CHECK);
    let ttl_word = word(w, OUT_TTL);
    out = update16(out, ttl_word, ttl_word - 0x0100);
    put(w, OUT_TTL, ttl_word - 0x0100);
    let at = [OUT_SRC, OUT_SRC + 2, OUT_DST, OUT_DST + 2];
    let new = [
        u16::from_be_bytes([src[0], src[1]]),
        u16::from_be_bytes([src[2], src[3]]),
        u16::from_be_bytes([dst[0], dst[1]]),
        u16::from_be_bytes([dst[2], dst[3]]),
    ];
    for i in 0..4 {
        out = update16(out, word(w, at[i]), new[i]);
        put(w, at[i], new[i]);
    }
    put(w, OUT_CHECK, out);
}

/// Bytes of an error message pl sends (time exceeded, fragmentation needed) from the IPv4
/// header on: IPv4 (20), ICMP (8), the quoted IPv4 header and 8 bytes of what followed it
/// (28).
pub const TIME_EXCEEDED_LEN: usize = WINDOW;

/// An ICMP error pl answers a sender with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Time exceeded in transit: the TTL would reach zero here.
    TimeExceeded,
    /// Destination unreachable, fragmentation needed and DF set, with the next hop's MTU.
    FragNeeded { mtu: u16 },
}

/// Writes into `w` the error `reply` about the packet whose first 28 bytes (IPv4 header
/// without options, 8 bytes of L4) `w[28..56]` already holds: from the address that
/// packet was sent to, back to its sender, TTL 64, DF set, id 0.
#[inline(always)]
pub fn error_reply(w: &mut [u8; TIME_EXCEEDED_LEN], reply: Reply) {
    // Byte by byte, no temporaries: this runs in XDP on a stack near its 512-byte limit.
    w[0] = 0x45;
    w[1] = 0;
    w[2] = 0;
    w[3] = TIME_EXCEEDED_LEN as u8;
    w[4] = 0;
    w[5] = 0;
    w[6] = 0x40;
    w[7] = 0;
    w[8] = 64;
    w[9] = crate::proto::IPPROTO_ICMP;
    w[10] = 0;
    w[11] = 0;
    for i in 0..4 {
        w[12 + i] = w[QUOTED_DST + i];
        w[16 + i] = w[QUOTED_SRC + i];
    }
    for b in &mut w[20..28] {
        *b = 0;
    }
    match reply {
        Reply::TimeExceeded => w[20] = ICMP_TIME_EXCEEDED,
        Reply::FragNeeded { mtu } => {
            w[20] = ICMP_DEST_UNREACH;
            w[21] = ICMP_FRAG_NEEDED;
            put(w, 26, mtu);
        }
    }
    let c = crate::checksum::checksum(&w[..20]);
    put(w, OUT_CHECK, c);
    let c = crate::checksum::checksum(&w[20..]);
    put(w, ICMP_CHECK, c);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port unreachable about UDP 10.9.0.250:40000 -> 10.9.0.11:5353, `total` bytes long
    /// by its outer header (the window may run on into padding).
    fn unreachable(total: u16) -> [u8; WINDOW] {
        let mut w = [0u8; WINDOW];
        w[0] = 0x45;
        w[2..4].copy_from_slice(&total.to_be_bytes());
        w[ICMP_TYPE] = ICMP_DEST_UNREACH;
        w[QUOTED] = 0x45;
        w[QUOTED_PROTO] = IPPROTO_UDP;
        w[QUOTED_SRC..QUOTED_SRC + 4].copy_from_slice(&[10, 9, 0, 250]);
        w[QUOTED_DST..QUOTED_DST + 4].copy_from_slice(&[10, 9, 0, 11]);
        w[QUOTED_L4..QUOTED_L4 + 4].copy_from_slice(&[0x9c, 0x40, 0x14, 0xe9]);
        w
    }

    #[test]
    fn the_quoted_ports_must_be_inside_the_message() {
        let key = error_key(&unreachable(56), 2).expect("a whole quote");
        assert_eq!(
            (u16::from_be(key.sport_be), u16::from_be(key.dport_be)),
            (5353, 40000),
            "the quoted packet reversed"
        );
        // A quote cut after 4 bytes of UDP: the rest of the window is padding.
        assert_eq!(error_key(&unreachable(52), 2), None);
    }
}
