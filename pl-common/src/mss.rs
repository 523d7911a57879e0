//! TCP MSS clamping: where endpoint flows join networks of different MTUs, the MSS option
//! of a SYN or SYN-ACK is lowered to what the smaller side carries (MTU - 40), never
//! raised, with the checksum updated, as AWS and `iptables TCPMSS --clamp-mss-to-pmtu` do.

use crate::checksum;

/// Bytes of TCP options at most (data offset 15 words, less the 20-byte header).
pub const MAX_OPTIONS: usize = 40;
const EOL: u8 = 0;
const NOP: u8 = 1;
const KIND_MSS: u8 = 2;

/// The largest MSS a path of `mtu` carries: IPv4 and TCP headers without options.
pub const fn mss_for_mtu(mtu: u32) -> u16 {
    if mtu <= 40 {
        0
    } else if mtu - 40 > u16::MAX as u32 {
        u16::MAX
    } else {
        (mtu - 40) as u16
    }
}

/// Offset, from the first option byte, of the MSS option's 2-byte value in options
/// `opt_len` bytes long; `read(i)` gives option byte `i` (None past the packet). A walk of
/// at most [`MAX_OPTIONS`] steps: malformed options (a length below 2, or running past the
/// options) end it with None, as Linux stops parsing them.
#[inline(always)]
pub fn find_mss(opt_len: usize, read: impl Fn(usize) -> Option<u8>) -> Option<usize> {
    let mut i = 0;
    for _ in 0..MAX_OPTIONS {
        if i >= opt_len || i >= MAX_OPTIONS {
            return None;
        }
        match read(i)? {
            EOL => return None,
            NOP => i += 1,
            kind => {
                let len = usize::from(read(i + 1)?);
                if len < 2 || i + len > opt_len {
                    return None;
                }
                if kind == KIND_MSS {
                    return (len == 4).then_some(i + 2);
                }
                i += len;
            }
        }
    }
    None
}

/// The clamped MSS and the TCP checksum that goes with it, if `old` is above `max`.
/// `at_odd`: the value starts at an odd offset from the TCP header's start, so its bytes
/// straddle two checksum words.
#[inline(always)]
pub fn clamp(old: [u8; 2], max: u16, check: u16, at_odd: bool) -> Option<([u8; 2], u16)> {
    if u16::from_be_bytes(old) <= max {
        return None;
    }
    let new = max.to_be_bytes();
    // Summed as the checksum sees them: at an odd offset each byte is the other half of
    // a word, which is the same as the bytes swapped.
    let (o, n) = if at_odd {
        (u16::from_le_bytes(old), u16::from_le_bytes(new))
    } else {
        (u16::from_be_bytes(old), u16::from_be_bytes(new))
    };
    Some((new, checksum::update16(check, o, n)))
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;

    /// A TCP header (20 bytes, checksum over a fixed pseudo header) with `opts`.
    fn segment(opts: &[u8]) -> Vec<u8> {
        let mut s = std::vec![0u8; 20];
        s[12] = (((20 + opts.len()) / 4) as u8) << 4;
        s[13] = 0x02;
        s.extend_from_slice(opts);
        let c = checksum::l4_checksum([10, 0, 0, 1], [10, 0, 0, 2], 6, &s);
        s[16..18].copy_from_slice(&c.to_be_bytes());
        s
    }

    fn clamp_segment(s: &mut [u8], max: u16) -> bool {
        let opt_len = s.len() - 20;
        let Some(at) = find_mss(opt_len, |i| s.get(20 + i).copied()) else {
            return false;
        };
        let pos = 20 + at;
        let check = u16::from_be_bytes([s[16], s[17]]);
        match clamp([s[pos], s[pos + 1]], max, check, pos % 2 == 1) {
            Some((v, c)) => {
                s[pos..pos + 2].copy_from_slice(&v);
                s[16..18].copy_from_slice(&c.to_be_bytes());
                true
            }
            None => false,
        }
    }

    fn verifies(s: &[u8]) -> bool {
        let mut z = s.to_vec();
        z[16] = 0;
        z[17] = 0;
        checksum::l4_checksum([10, 0, 0, 1], [10, 0, 0, 2], 6, &z)
            == u16::from_be_bytes([s[16], s[17]])
    }

    #[test]
    fn the_mss_is_found_and_lowered_at_every_position() {
        let mss = [2, 4, 0x23, 0x28]; // 9000
        let cases: &[(&str, Vec<u8>)] = &[
            ("first", [&mss[..], &[1, 1, 1, 1]].concat()),
            (
                "after one NOP (odd offset)",
                [&[1][..], &mss, &[1, 1, 1]].concat(),
            ),
            (
                "after SACK-permitted and timestamps",
                [
                    &[4, 2, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8][..],
                    &mss,
                    &[1, 1, 1, 1],
                ]
                .concat(),
            ),
            (
                "after NOP, window scale (odd)",
                [&[1, 3, 3, 7][..], &[1], &mss, &[1, 1, 1]].concat(),
            ),
            ("last", [&[1, 1, 1, 1][..], &mss].concat()),
        ];
        for (what, opts) in cases {
            let mut s = segment(opts);
            assert!(clamp_segment(&mut s, 1460), "{what}: not clamped");
            let at = 20 + find_mss(opts.len(), |i| s.get(20 + i).copied()).expect("still there");
            assert_eq!(u16::from_be_bytes([s[at], s[at + 1]]), 1460, "{what}");
            assert!(verifies(&s), "{what}: checksum does not verify");
        }
    }

    #[test]
    fn a_small_mss_or_none_is_left_alone() {
        let mut small = segment(&[2, 4, 0x05, 0x00]); // 1280
        let before = small.clone();
        assert!(!clamp_segment(&mut small, 1460), "never raised");
        assert_eq!(small, before);
        for opts in [
            &[1u8, 1, 1, 1][..],                 // no MSS option
            &[0, 2, 4, 0x23, 0x28, 0, 0, 0][..], // after end-of-options
            &[3, 0, 2, 4][..],                   // a zero-length option ends the walk
            &[8, 10, 1, 2][..],                  // an option running past the options
            &[2, 3, 0x23, 0x28][..],             // an MSS option of the wrong length
        ] {
            let mut s = segment(opts);
            assert!(!clamp_segment(&mut s, 1460), "{opts:?}");
        }
        assert_eq!(mss_for_mtu(1500), 1460);
        assert_eq!(mss_for_mtu(9000), 8960);
        assert_eq!(mss_for_mtu(20), 0);
    }
}
