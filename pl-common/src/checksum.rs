//! Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! Data is summed as big-endian 16-bit words; results are returned in host order, to be
//! stored with `to_be_bytes`. The eBPF side uses the incremental forms when it rewrites
//! addresses and ports; the test frame builders use the full forms.

/// Adds `data` as big-endian 16-bit words into a 32-bit accumulator (odd tail padded with 0).
pub fn sum(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for w in &mut chunks {
        acc = acc.wrapping_add(u32::from(u16::from_be_bytes([w[0], w[1]])));
    }
    if let [last] = chunks.remainder() {
        acc = acc.wrapping_add(u32::from(*last) << 8);
    }
    acc
}

/// Folds a 32-bit accumulator into 16 bits, end-around carry included.
pub const fn fold(mut acc: u32) -> u16 {
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc as u16
}

/// True if a 20-byte IPv4 header (no options) carries a checksum that verifies.
#[inline(always)]
pub fn ipv4_header_ok(h: &[u8; 20]) -> bool {
    fold(sum(h, 0)) == 0xffff
}

/// The checksum field value for `data` (already containing a zero checksum field).
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data, 0))
}

/// Sum of the IPv4 pseudo-header for TCP/UDP: addresses as on the wire.
pub fn pseudo_header_sum(src: [u8; 4], dst: [u8; 4], proto: u8, l4_len: u16) -> u32 {
    let acc = sum(&src, 0);
    let acc = sum(&dst, acc);
    acc.wrapping_add(u32::from(proto))
        .wrapping_add(u32::from(l4_len))
}

/// TCP or UDP checksum over the pseudo-header and `segment` (checksum field zeroed).
/// A UDP result of 0 is sent as 0xffff (RFC 768); callers building UDP apply that.
pub fn l4_checksum(src: [u8; 4], dst: [u8; 4], proto: u8, segment: &[u8]) -> u16 {
    let len = u16::try_from(segment.len()).unwrap_or(u16::MAX);
    !fold(sum(segment, pseudo_header_sum(src, dst, proto, len)))
}

/// RFC 1624 eqn. 3: the new checksum after one 16-bit word changes from `old` to `new`.
pub const fn update16(check: u16, old: u16, new: u16) -> u16 {
    let acc = (!check as u32) + (!old as u32) + (new as u32);
    !fold(acc)
}

/// The new checksum after a 32-bit field (an IPv4 address) changes, both given as the
/// bytes on the wire.
pub const fn update32(check: u16, old: [u8; 4], new: [u8; 4]) -> u16 {
    let c = update16(
        check,
        u16::from_be_bytes([old[0], old[1]]),
        u16::from_be_bytes([new[0], new[1]]),
    );
    update16(
        c,
        u16::from_be_bytes([old[2], old[3]]),
        u16::from_be_bytes([new[2], new[3]]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // A well-known IPv4 header (192.168.0.1 -> 192.168.0.199, UDP, total length 0x73)
    // whose checksum is 0xb861.
    const HDR: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    fn with_check(mut h: [u8; 20]) -> [u8; 20] {
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h
    }

    #[test]
    fn ipv4_header_golden_vector() {
        assert_eq!(checksum(&HDR), 0xb861);
        // A header with its checksum in place sums to 0xffff, i.e. verifies to 0.
        assert_eq!(checksum(&with_check(HDR)), 0);
        assert!(ipv4_header_ok(&with_check(HDR)));
        let mut bad = with_check(HDR);
        bad[8] ^= 1;
        assert!(!ipv4_header_ok(&bad), "a flipped TTL bit must fail");
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum(&[0x01, 0x02, 0x03], 0), 0x0102 + 0x0300);
        assert_eq!(checksum(&[0xff]), !0xff00);
    }

    #[test]
    fn fold_carries_twice() {
        assert_eq!(fold(0x0001_ffff), 0x0001);
        assert_eq!(fold(0xffff_ffff), 0xffff);
    }

    #[test]
    fn incremental_update_matches_recompute() {
        let before = with_check(HDR);
        let old_dst = [before[16], before[17], before[18], before[19]];
        let new_dst = [10, 9, 0, 11];
        let mut after = before;
        after[16..20].copy_from_slice(&new_dst);
        after[10..12].copy_from_slice(&[0, 0]);
        let full = checksum(&after);
        let check = u16::from_be_bytes([before[10], before[11]]);
        assert_eq!(update32(check, old_dst, new_dst), full);
        // TTL decrement: the word holding TTL and protocol changes.
        let old = u16::from_be_bytes([before[8], before[9]]);
        let new = old - 0x0100;
        let mut ttl = before;
        ttl[8] -= 1;
        ttl[10..12].copy_from_slice(&[0, 0]);
        assert_eq!(update16(check, old, new), checksum(&ttl));
    }

    #[test]
    fn udp_checksum_golden_vector() {
        // 10.0.0.10:40000 -> 10.0.0.100:5353, payload "hi": worked out by hand from the
        // pseudo-header (0x0a00+0x000a+0x0a00+0x0064+0x0011+0x000a) and segment words.
        let seg = [0x9c, 0x40, 0x14, 0xe9, 0x00, 0x0a, 0x00, 0x00, b'h', b'i'];
        let expected = !fold(
            0x0a00 + 0x000a + 0x0a00 + 0x0064 + 0x0011 + 0x000a + 0x9c40 + 0x14e9 + 0x000a + 0x6869,
        );
        assert_eq!(
            l4_checksum([10, 0, 0, 10], [10, 0, 0, 100], 17, &seg),
            expected
        );
        assert_eq!(expected, 0xd1d9);
    }
}
