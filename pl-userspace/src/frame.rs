//! Ethernet/IPv4 frame builders with correct checksums, for fixtures, lab traffic and the
//! bench generator. Addresses are given as on the wire.

use pl_common::{
    checksum,
    proto::{ETH_P_ARP, ETH_P_IP, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP},
};

pub type Mac = [u8; 6];

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// Ethernet header + `payload`.
pub fn ethernet(dst: Mac, src: Mac, ether_type: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ether_type.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A UDP datagram, its checksum field zero (the caller's family fills it).
fn udp_datagram(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(8 + payload.len()).expect("UDP datagram fits 64 KiB");
    let mut s = Vec::with_capacity(usize::from(len));
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&len.to_be_bytes());
    s.extend_from_slice(&[0, 0]);
    s.extend_from_slice(payload);
    s
}

/// A TCP segment with `options` (a multiple of 4 bytes, at most 40), its checksum field
/// zero (the caller's family fills it).
fn tcp_segment(
    [sport, dport]: [u16; 2],
    seq: u32,
    ack: u32,
    flags: u8,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    assert!(
        options.len().is_multiple_of(4) && options.len() <= 40,
        "TCP options"
    );
    let words = (5 + options.len() / 4) as u8;
    let mut s = Vec::with_capacity(20 + options.len() + payload.len());
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&seq.to_be_bytes());
    s.extend_from_slice(&ack.to_be_bytes());
    s.extend_from_slice(&[words << 4, flags, 0xff, 0xff, 0, 0, 0, 0]);
    s.extend_from_slice(options);
    s.extend_from_slice(payload);
    s
}

/// The IPv4 fields a frame varies; the rest are fixed (no options, TOS 0).
#[derive(Clone, Copy, Debug)]
pub struct Ipv4 {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub ttl: u8,
    pub id: u16,
    /// Don't fragment.
    pub df: bool,
}

impl Ipv4 {
    /// TTL 64, DF set, id 0.
    pub const fn new(src: [u8; 4], dst: [u8; 4]) -> Self {
        Self {
            src,
            dst,
            ttl: 64,
            id: 0,
            df: true,
        }
    }

    /// IPv4 header (checksummed) + `payload`.
    pub fn packet(&self, proto: u8, payload: &[u8]) -> Vec<u8> {
        let total = u16::try_from(20 + payload.len()).expect("IPv4 packet fits 64 KiB");
        let mut h = vec![0x45, 0];
        h.extend_from_slice(&total.to_be_bytes());
        h.extend_from_slice(&self.id.to_be_bytes());
        h.extend_from_slice(&[if self.df { 0x40 } else { 0 }, 0, self.ttl, proto, 0, 0]);
        h.extend_from_slice(&self.src);
        h.extend_from_slice(&self.dst);
        let c = checksum::checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h.extend_from_slice(payload);
        h
    }

    /// UDP datagram (checksummed; a computed 0 is sent as 0xffff).
    pub fn udp(&self, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut s = udp_datagram(sport, dport, payload);
        let c = match checksum::l4_checksum(self.src, self.dst, IPPROTO_UDP, &s) {
            0 => 0xffff,
            c => c,
        };
        s[6..8].copy_from_slice(&c.to_be_bytes());
        self.packet(IPPROTO_UDP, &s)
    }

    /// TCP segment with a 20-byte header (checksummed).
    pub fn tcp(
        &self,
        sport: u16,
        dport: u16,
        seq: u32,
        ack: u32,
        flags: u8,
        payload: &[u8],
    ) -> Vec<u8> {
        self.tcp_with_options(sport, dport, seq, ack, flags, &[], payload)
    }

    /// TCP segment with `options` (a multiple of 4 bytes, at most 40) after its header.
    #[expect(
        clippy::too_many_arguments,
        reason = "a segment's fields, in wire order"
    )]
    pub fn tcp_with_options(
        &self,
        sport: u16,
        dport: u16,
        seq: u32,
        ack: u32,
        flags: u8,
        options: &[u8],
        payload: &[u8],
    ) -> Vec<u8> {
        let mut s = tcp_segment([sport, dport], seq, ack, flags, options, payload);
        let c = checksum::l4_checksum(self.src, self.dst, IPPROTO_TCP, &s);
        s[16..18].copy_from_slice(&c.to_be_bytes());
        self.packet(IPPROTO_TCP, &s)
    }

    /// ICMP error `ty`/`code` (`rest`: the header's last 4 bytes, the MTU for
    /// fragmentation-needed) quoting `quoted`.
    pub fn icmp_error(&self, ty: u8, code: u8, rest: [u8; 4], quoted: &[u8]) -> Vec<u8> {
        let mut m = vec![ty, code, 0, 0];
        m.extend_from_slice(&rest);
        m.extend_from_slice(quoted);
        let c = checksum::checksum(&m);
        m[2..4].copy_from_slice(&c.to_be_bytes());
        self.packet(IPPROTO_ICMP, &m)
    }

    /// ICMP echo request.
    pub fn icmp_echo(&self, id: u16, seq: u16) -> Vec<u8> {
        let mut m = vec![8, 0, 0, 0];
        m.extend_from_slice(&id.to_be_bytes());
        m.extend_from_slice(&seq.to_be_bytes());
        let c = checksum::checksum(&m);
        m[2..4].copy_from_slice(&c.to_be_bytes());
        self.packet(IPPROTO_ICMP, &m)
    }
}

/// Ethernet frame carrying an IPv4 packet.
pub fn ipv4_frame(dst: Mac, src: Mac, packet: &[u8]) -> Vec<u8> {
    ethernet(dst, src, ETH_P_IP, packet)
}

/// Broadcast ARP request: who has `target`? tell `sender_ip`.
pub fn arp_request(sender_mac: Mac, sender_ip: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let mut a = vec![0, 1, 0x08, 0x00, 6, 4, 0, 1];
    a.extend_from_slice(&sender_mac);
    a.extend_from_slice(&sender_ip);
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&target);
    ethernet([0xff; 6], sender_mac, ETH_P_ARP, &a)
}

/// IPv6's EtherType.
pub const ETH_P_IPV6: u16 = 0x86dd;

/// The IPv6 fields a frame varies: addresses, hop limit, and extension headers (raw, each
/// naming the next; the first is named by the fixed header) in front of the upper layer.
#[derive(Clone, Debug)]
pub struct Ipv6 {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub hop_limit: u8,
    /// (next-header value naming it, its bytes): the chain in order.
    pub ext: Vec<(u8, Vec<u8>)>,
}

impl Ipv6 {
    pub const fn new(src: [u8; 16], dst: [u8; 16]) -> Self {
        Self {
            src,
            dst,
            hop_limit: 64,
            ext: Vec::new(),
        }
    }

    /// IPv6 header + extension headers + `payload` of protocol `proto`.
    pub fn packet(&self, proto: u8, payload: &[u8]) -> Vec<u8> {
        let ext_len: usize = self.ext.iter().map(|(_, h)| h.len()).sum();
        let len = u16::try_from(ext_len + payload.len()).expect("IPv6 payload fits 64 KiB");
        let first = self.ext.first().map_or(proto, |(nh, _)| *nh);
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&len.to_be_bytes());
        p.extend_from_slice(&[first, self.hop_limit]);
        p.extend_from_slice(&self.src);
        p.extend_from_slice(&self.dst);
        for (i, (_, h)) in self.ext.iter().enumerate() {
            let mut h = h.clone();
            h[0] = self.ext.get(i + 1).map_or(proto, |(nh, _)| *nh);
            p.extend_from_slice(&h);
        }
        p.extend_from_slice(payload);
        p
    }

    /// UDP datagram, checksummed over the IPv6 pseudo-header (a computed 0 sent as 0xffff).
    pub fn udp(&self, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut s = udp_datagram(sport, dport, payload);
        let c = match pl_common::xlat::l4_checksum_v6(self.src, self.dst, IPPROTO_UDP, &s) {
            0 => 0xffff,
            c => c,
        };
        s[6..8].copy_from_slice(&c.to_be_bytes());
        self.packet(IPPROTO_UDP, &s)
    }

    /// TCP segment with a 20-byte header, checksummed over the IPv6 pseudo-header.
    pub fn tcp(
        &self,
        sport: u16,
        dport: u16,
        seq: u32,
        ack: u32,
        flags: u8,
        payload: &[u8],
    ) -> Vec<u8> {
        self.tcp_with_options(sport, dport, seq, ack, flags, &[], payload)
    }

    /// TCP segment with `options` (a multiple of 4 bytes, at most 40) after its header.
    #[expect(
        clippy::too_many_arguments,
        reason = "a segment's fields, in wire order"
    )]
    pub fn tcp_with_options(
        &self,
        sport: u16,
        dport: u16,
        seq: u32,
        ack: u32,
        flags: u8,
        options: &[u8],
        payload: &[u8],
    ) -> Vec<u8> {
        let mut s = tcp_segment([sport, dport], seq, ack, flags, options, payload);
        let c = pl_common::xlat::l4_checksum_v6(self.src, self.dst, IPPROTO_TCP, &s);
        s[16..18].copy_from_slice(&c.to_be_bytes());
        self.packet(IPPROTO_TCP, &s)
    }

    /// ICMPv6 message `msg` (its checksum field zero), checksummed over the pseudo-header.
    pub fn icmp6(&self, msg: &[u8]) -> Vec<u8> {
        let mut m = msg.to_vec();
        let c =
            pl_common::xlat::l4_checksum_v6(self.src, self.dst, pl_common::xlat::PROTO_ICMPV6, &m);
        m[2..4].copy_from_slice(&c.to_be_bytes());
        self.packet(pl_common::xlat::PROTO_ICMPV6, &m)
    }
}

/// Ethernet frame carrying an IPv6 packet.
pub fn ipv6_frame(dst: Mac, src: Mac, packet: &[u8]) -> Vec<u8> {
    ethernet(dst, src, ETH_P_IPV6, packet)
}

/// Neighbour solicitation for `target` from `src` at `mac`: to the target's solicited-node
/// group and its multicast MAC, hop limit 255 (RFC 4861 7.2.2), with the source
/// link-layer option.
pub fn neighbour_solicitation(mac: Mac, src: [u8; 16], target: [u8; 16]) -> Vec<u8> {
    let group = pl_common::ndp::solicited_node(target);
    let msg = pl_common::ndp::solicitation(src, target, mac);
    ndp_frame(mac, src, group, &msg)
}

/// Unsolicited neighbour advertisement of `addr` at `mac` to all nodes (ff02::1), as a
/// takeover announces an address (RFC 4861 7.2.6).
pub fn unsolicited_advertisement(mac: Mac, addr: [u8; 16]) -> Vec<u8> {
    let mut all_nodes = [0u8; 16];
    all_nodes[0] = 0xff;
    all_nodes[1] = 0x02;
    all_nodes[15] = 0x01;
    let msg = pl_common::ndp::advertisement(addr, all_nodes, mac);
    ndp_frame(mac, addr, all_nodes, &msg)
}

/// An NDP message (its checksum set) in an IPv6 header with hop limit 255, to the group
/// `dst`'s multicast MAC.
fn ndp_frame(mac: Mac, src: [u8; 16], dst: [u8; 16], msg: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(40 + msg.len());
    p.extend_from_slice(&[0x60, 0, 0, 0]);
    p.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    p.extend_from_slice(&[pl_common::xlat::PROTO_ICMPV6, 255]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(msg);
    ethernet(pl_common::ndp::multicast_mac(dst), mac, ETH_P_IPV6, &p)
}

/// ARP reply: `sender` (MAC, IP) tells `target` (MAC, IP) that it has the address.
pub fn arp_reply(
    sender_mac: Mac,
    sender_ip: [u8; 4],
    target_mac: Mac,
    target_ip: [u8; 4],
) -> Vec<u8> {
    let mut a = vec![0, 1, 0x08, 0x00, 6, 4, 0, 2];
    a.extend_from_slice(&sender_mac);
    a.extend_from_slice(&sender_ip);
    a.extend_from_slice(&target_mac);
    a.extend_from_slice(&target_ip);
    ethernet(target_mac, sender_mac, ETH_P_ARP, &a)
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<Mac> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_neighbour_solicitation_is_built_byte_by_byte() {
        let mac = [2, 0, 0, 0, 0, 4];
        let nlb: [u8; 16] = "fd00:9::fa"
            .parse::<std::net::Ipv6Addr>()
            .expect("addr")
            .octets();
        let target: [u8; 16] = "fd00:9::1:2b"
            .parse::<std::net::Ipv6Addr>()
            .expect("addr")
            .octets();
        let f = neighbour_solicitation(mac, nlb, target);
        let group = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0x01, 0, 0x2b];
        let mut want = vec![0x33, 0x33, 0xff, 0x01, 0, 0x2b];
        want.extend_from_slice(&mac);
        want.extend_from_slice(&[0x86, 0xdd]);
        want.extend_from_slice(&[0x60, 0, 0, 0, 0, 32, 58, 255]);
        want.extend_from_slice(&nlb);
        want.extend_from_slice(&group);
        want.extend_from_slice(&[135, 0, 0, 0, 0, 0, 0, 0]);
        want.extend_from_slice(&target);
        want.extend_from_slice(&[1, 1]);
        want.extend_from_slice(&mac);
        // The checksum is checked below, by the parser, over the pseudo-header.
        want[14 + 40 + 2..14 + 40 + 4].copy_from_slice(&f[14 + 40 + 2..14 + 40 + 4]);
        assert_eq!(f, want);
        assert_ne!(&f[56..58], &[0, 0], "a checksum is set");
        let m = pl_common::ndp::parse(&f[54..], nlb, group, f[21]).expect("a valid solicitation");
        assert_eq!(m.target, target);
        assert_eq!(m.lladdr, Some(mac));
    }

    #[test]
    fn an_unsolicited_advertisement_goes_to_all_nodes() {
        let mac = [2, 0, 0, 0, 0, 2];
        let addr: [u8; 16] = "fd00::64"
            .parse::<std::net::Ipv6Addr>()
            .expect("addr")
            .octets();
        let f = unsolicited_advertisement(mac, addr);
        let all_nodes = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(&f[..6], &[0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(&f[12..14], &[0x86, 0xdd]);
        assert_eq!(f[21], 255, "hop limit");
        assert_eq!(&f[22..38], &addr);
        assert_eq!(&f[38..54], &all_nodes);
        let m = pl_common::ndp::parse(&f[54..], addr, all_nodes, 255).expect("valid");
        assert_eq!(
            m.flags,
            pl_common::ndp::NA_OVERRIDE,
            "override, not solicited"
        );
        assert_eq!((m.target, m.lladdr), (addr, Some(mac)));
    }

    #[test]
    fn ipv4_header_and_udp_checksums_verify() {
        let ip = Ipv4::new([10, 0, 0, 10], [10, 0, 0, 100]);
        let p = ip.udp(40000, 5353, b"odd");
        assert_eq!(p.len(), 20 + 8 + 3);
        assert_eq!(
            checksum::checksum(&p[..20]),
            0,
            "IPv4 header checksum does not verify"
        );
        let seg = &p[20..];
        assert_eq!(
            checksum::fold(checksum::sum(
                seg,
                checksum::pseudo_header_sum(ip.src, ip.dst, IPPROTO_UDP, seg.len() as u16)
            )),
            0xffff,
            "UDP checksum does not verify"
        );
    }

    #[test]
    fn tcp_checksum_verifies() {
        let ip = Ipv4::new([10, 0, 0, 10], [10, 0, 0, 100]);
        let p = ip.tcp(40000, 443, 1, 0, TCP_SYN, &[]);
        let seg = &p[20..];
        assert_eq!(seg[13], TCP_SYN);
        assert_eq!(
            checksum::fold(checksum::sum(
                seg,
                checksum::pseudo_header_sum(ip.src, ip.dst, IPPROTO_TCP, seg.len() as u16)
            )),
            0xffff
        );
    }

    #[test]
    fn mac_parsing() {
        assert_eq!(
            parse_mac("02:00:0a:ff:00:01"),
            Some([2, 0, 0x0a, 0xff, 0, 1])
        );
        assert_eq!(parse_mac("02:00:0a:ff:00"), None);
        assert_eq!(parse_mac("02:00:0a:ff:00:01:02"), None);
        assert_eq!(parse_mac("zz:00:0a:ff:00:01"), None);
    }

    #[test]
    fn arp_request_layout() {
        let f = arp_request([2, 0, 0, 0, 0, 1], [10, 0, 0, 10], [10, 0, 0, 100]);
        assert_eq!(f.len(), 14 + 28);
        assert_eq!(&f[..6], &[0xff; 6]);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[38..42], &[10, 0, 0, 100]);
    }
}
