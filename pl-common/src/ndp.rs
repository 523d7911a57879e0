//! Neighbour discovery (RFC 4861), the part pl needs in place of ARP for IPv6: which
//! solicitations to answer, the advertisement that answers one, the solicitation that
//! resolves a target. Pure logic over the ICMPv6 message bytes (after the IPv6 header),
//! so the eBPF side mirrors it on bytes it has bounds-checked and fixtures rebuild it.
//! Addresses are wire bytes.

use crate::{
    checksum::{fold, sum},
    xlat::{PROTO_ICMPV6, pseudo_header_sum_v6},
};

pub const ROUTER_SOLICITATION: u8 = 133;
pub const NEIGHBOUR_SOLICITATION: u8 = 135;
pub const NEIGHBOUR_ADVERTISEMENT: u8 = 136;

/// Option types carrying a link-layer address.
pub const OPT_SOURCE_LLADDR: u8 = 1;
pub const OPT_TARGET_LLADDR: u8 = 2;

/// Advertisement flags (the first byte of the reserved word).
pub const NA_ROUTER: u8 = 0x80;
pub const NA_SOLICITED: u8 = 0x40;
pub const NA_OVERRIDE: u8 = 0x20;

/// An NS or NA message with a link-layer option: 24 bytes + 8.
pub const MESSAGE_LEN: usize = 32;

/// Options the parser looks at before it gives up (a bound for the verifier).
const MAX_OPTIONS: usize = 4;

/// The solicited-node multicast group of `addr` (ff02::1:ffXX:XXXX).
pub fn solicited_node(addr: [u8; 16]) -> [u8; 16] {
    let mut g = [0u8; 16];
    g[0] = 0xff;
    g[1] = 0x02;
    g[11] = 0x01;
    g[12] = 0xff;
    g[13..16].copy_from_slice(&addr[13..16]);
    g
}

/// The Ethernet address an IPv6 multicast group maps to (33:33 and its low 32 bits).
pub fn multicast_mac(group: [u8; 16]) -> [u8; 6] {
    [0x33, 0x33, group[12], group[13], group[14], group[15]]
}

pub fn is_multicast(addr: &[u8; 16]) -> bool {
    addr[0] == 0xff
}

pub fn is_unspecified(addr: &[u8; 16]) -> bool {
    *addr == [0; 16]
}

/// A neighbour solicitation or advertisement as parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message {
    pub ty: u8,
    /// NA flags; 0 for a solicitation.
    pub flags: u8,
    pub target: [u8; 16],
    /// The source (NS) or target (NA) link-layer address option, if present.
    pub lladdr: Option<[u8; 6]>,
}

/// Why a solicitation or advertisement is not taken (RFC 4861 7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// Not NS or NA, or code not 0.
    Kind,
    /// Hop limit not 255: it crossed a router.
    HopLimit,
    /// Shorter than 24 bytes, or an option runs past the end or has length 0.
    Length,
    /// The target is a multicast address.
    Target,
    /// From the unspecified address (duplicate address detection) with a link-layer
    /// option, or not to a solicited-node group.
    Dad,
    /// The ICMPv6 checksum does not verify.
    Checksum,
}

/// Parses and validates the NS or NA `msg` carried from `src` to `dst` with `hop_limit`.
/// Inlined: as a BPF call its arguments would not fit the five registers.
#[inline(always)]
pub fn parse(msg: &[u8], src: [u8; 16], dst: [u8; 16], hop_limit: u8) -> Result<Message, Invalid> {
    if msg.len() < 24 {
        return Err(Invalid::Length);
    }
    let ty = msg[0];
    if !(ty == NEIGHBOUR_SOLICITATION || ty == NEIGHBOUR_ADVERTISEMENT) || msg[1] != 0 {
        return Err(Invalid::Kind);
    }
    if hop_limit != 255 {
        return Err(Invalid::HopLimit);
    }
    let len = u32::try_from(msg.len()).map_err(|_| Invalid::Length)?;
    if fold(sum(msg, pseudo_header_sum_v6(src, dst, PROTO_ICMPV6, len))) != 0xffff {
        return Err(Invalid::Checksum);
    }
    let mut target = [0u8; 16];
    target.copy_from_slice(&msg[8..24]);
    if is_multicast(&target) {
        return Err(Invalid::Target);
    }
    let want = if ty == NEIGHBOUR_SOLICITATION {
        OPT_SOURCE_LLADDR
    } else {
        OPT_TARGET_LLADDR
    };
    let mut lladdr = None;
    let mut at = 24;
    for _ in 0..MAX_OPTIONS {
        if at >= msg.len() {
            break;
        }
        let opt = msg.get(at..at + 2).ok_or(Invalid::Length)?;
        let olen = usize::from(opt[1]) * 8;
        if olen == 0 || msg.len() < at + olen {
            return Err(Invalid::Length);
        }
        if opt[0] == want && olen == 8 {
            let mut mac = [0u8; 6];
            mac.copy_from_slice(&msg[at + 2..at + 8]);
            lladdr = Some(mac);
        }
        at += olen;
    }
    if ty == NEIGHBOUR_SOLICITATION
        && is_unspecified(&src)
        && (lladdr.is_some() || dst != solicited_node(target))
    {
        return Err(Invalid::Dad);
    }
    let flags = if ty == NEIGHBOUR_ADVERTISEMENT {
        msg[4]
    } else {
        0
    };
    Ok(Message {
        ty,
        flags,
        target,
        lladdr,
    })
}

/// Where an answer to a solicitation from `src` goes: back to the asker, or to all nodes
/// when it asked from the unspecified address (RFC 4861 7.2.4).
pub fn answer_to(src: [u8; 16]) -> [u8; 16] {
    if is_unspecified(&src) {
        let mut all = [0u8; 16];
        all[0] = 0xff;
        all[1] = 0x02;
        all[15] = 0x01;
        all
    } else {
        src
    }
}

/// The advertisement for `target` at `mac`, sent from `target` to `dst`: solicited unless
/// `dst` is a multicast group (unsolicited, as after a takeover), override set, with the
/// target link-layer option and its checksum.
pub fn advertisement(target: [u8; 16], dst: [u8; 16], mac: [u8; 6]) -> [u8; MESSAGE_LEN] {
    let mut m = [0u8; MESSAGE_LEN];
    m[0] = NEIGHBOUR_ADVERTISEMENT;
    m[4] = NA_OVERRIDE | if is_multicast(&dst) { 0 } else { NA_SOLICITED };
    m[8..24].copy_from_slice(&target);
    m[24] = OPT_TARGET_LLADDR;
    m[25] = 1;
    m[26..32].copy_from_slice(&mac);
    finish(&mut m, target, dst);
    m
}

/// The solicitation that resolves `target`, sent from `src` (an NLB address) at `mac` to
/// the target's solicited-node group, with the source link-layer option.
pub fn solicitation(src: [u8; 16], target: [u8; 16], mac: [u8; 6]) -> [u8; MESSAGE_LEN] {
    let mut m = [0u8; MESSAGE_LEN];
    m[0] = NEIGHBOUR_SOLICITATION;
    m[8..24].copy_from_slice(&target);
    m[24] = OPT_SOURCE_LLADDR;
    m[25] = 1;
    m[26..32].copy_from_slice(&mac);
    finish(&mut m, src, solicited_node(target));
    m
}

fn finish(m: &mut [u8; MESSAGE_LEN], src: [u8; 16], dst: [u8; 16]) {
    let c = !fold(sum(
        m,
        pseudo_header_sum_v6(src, dst, PROTO_ICMPV6, MESSAGE_LEN as u32),
    ));
    m[2..4].copy_from_slice(&c.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    const EP: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x64];
    const CLIENT: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
    const MAC: [u8; 6] = [2, 0x70, 0x6c, 0, 1, 1];
    const PEER: [u8; 6] = [2, 0, 0, 0, 0, 9];

    #[test]
    fn groups_and_their_macs() {
        let g = solicited_node(EP);
        assert_eq!(g, [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 0x64]);
        assert_eq!(multicast_mac(g), [0x33, 0x33, 0xff, 0, 0, 0x64]);
    }

    #[test]
    fn an_advertisement_is_built_byte_by_byte_and_parses_back() {
        let na = advertisement(EP, CLIENT, MAC);
        let mut want = [0u8; 32];
        want[0] = 136;
        want[4] = NA_SOLICITED | NA_OVERRIDE;
        want[8..24].copy_from_slice(&EP);
        want[24..26].copy_from_slice(&[2, 1]);
        want[26..32].copy_from_slice(&MAC);
        // The checksum from scratch: pseudo-header words, then the message's.
        let mut acc = sum(&EP, 0) + sum(&CLIENT, 0) + 32 + 58;
        acc += sum(&want, 0);
        let c = !fold(acc);
        want[2..4].copy_from_slice(&c.to_be_bytes());
        assert_eq!(na, want);
        let m = parse(&na, EP, CLIENT, 255).expect("valid");
        assert_eq!(
            m,
            Message {
                ty: 136,
                flags: NA_SOLICITED | NA_OVERRIDE,
                target: EP,
                lladdr: Some(MAC),
            }
        );
        // Unsolicited, to all nodes: no S flag.
        let all = answer_to([0; 16]);
        assert_eq!(advertisement(EP, all, MAC)[4], NA_OVERRIDE);
    }

    #[test]
    fn solicitations_are_validated_as_rfc_4861_says() {
        let ns = solicitation(CLIENT, EP, PEER);
        let group = solicited_node(EP);
        let m = parse(&ns, CLIENT, group, 255).expect("valid");
        assert_eq!((m.ty, m.target, m.lladdr), (135, EP, Some(PEER)));
        assert_eq!(answer_to(CLIENT), CLIENT);
        assert_eq!(parse(&ns, CLIENT, group, 64), Err(Invalid::HopLimit));
        assert_eq!(parse(&ns[..20], CLIENT, group, 255), Err(Invalid::Length));
        let mut bad = ns;
        bad[30] ^= 1;
        assert_eq!(parse(&bad, CLIENT, group, 255), Err(Invalid::Checksum));
        let mut code = ns;
        code[1] = 1;
        assert_eq!(parse(&code, CLIENT, group, 255), Err(Invalid::Kind));
        // Another source address: the checksum covers the pseudo-header.
        assert_eq!(parse(&ns, EP, group, 255), Err(Invalid::Checksum));
        // A multicast target.
        let mc = solicitation(CLIENT, group, PEER);
        assert_eq!(
            parse(&mc, CLIENT, solicited_node(group), 255),
            Err(Invalid::Target)
        );
        // Duplicate address detection: from ::, to the group, no option; else refused.
        let mut dad = [0u8; 24];
        dad[0] = 135;
        dad[8..24].copy_from_slice(&EP);
        let c = !fold(sum(&dad, pseudo_header_sum_v6([0; 16], group, 58, 24)));
        dad[2..4].copy_from_slice(&c.to_be_bytes());
        let m = parse(&dad, [0; 16], group, 255).expect("DAD probe");
        assert_eq!(m.lladdr, None);
        let with_opt = solicitation([0; 16], EP, PEER);
        assert_eq!(parse(&with_opt, [0; 16], group, 255), Err(Invalid::Dad));
        // A zero-length option.
        let mut zero = [0u8; 32];
        zero[..24].copy_from_slice(&ns[..24]);
        zero[2..4].copy_from_slice(&[0, 0]);
        zero[24] = 1;
        let c = !fold(sum(&zero, pseudo_header_sum_v6(CLIENT, group, 58, 32)));
        zero[2..4].copy_from_slice(&c.to_be_bytes());
        assert_eq!(parse(&zero, CLIENT, group, 255), Err(Invalid::Length));
        // Router solicitations are not pl's to answer.
        let mut rs = ns;
        rs[0] = ROUTER_SOLICITATION;
        assert_eq!(parse(&rs, CLIENT, group, 255), Err(Invalid::Kind));
    }
}
