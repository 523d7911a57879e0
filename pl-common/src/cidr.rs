//! IPv4 prefixes: parsing and matching for allowed sources (the XDP program matches with
//! an LPM trie; this is the same rule on the host, for validation and tests).

use core::{net::Ipv4Addr, str::FromStr};

/// True for a source no router forwards (Linux's martians): 0.0.0.0/8 ("this network"),
/// 127.0.0.0/8 (loopback), 224.0.0.0/4 (multicast), 240.0.0.0/4 (reserved, with the
/// limited broadcast 255.255.255.255). `addr_be` in network byte order.
#[inline(always)]
pub const fn is_martian(addr_be: u32) -> bool {
    let first = addr_be.to_ne_bytes()[0];
    first == 0 || first == 127 || first >= 224
}

/// True for an IPv6 source no router forwards: unspecified `::`, loopback `::1`,
/// multicast `ff00::/8`, and IPv4-mapped `::ffff:0:0/96` (an IPv4 packet in disguise).
#[inline(always)]
pub fn is_martian6(addr: &[u8; 16]) -> bool {
    // u64/u32 words: the BPF target has no 128-bit arithmetic.
    let w = |i: usize| u32::from_be_bytes([addr[i], addr[i + 1], addr[i + 2], addr[i + 3]]);
    let head_zero = w(0) == 0 && w(4) == 0;
    addr[0] == 0xff || (head_zero && (w(8) == 0xffff || (w(8) == 0 && w(12) <= 1)))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "user", derive(serde::Serialize, serde::Deserialize))]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub len: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CidrError {
    /// Not `a.b.c.d/n` or `a.b.c.d`.
    Syntax,
    /// Prefix length above 32.
    Length,
    /// Bits set past the prefix length (`10.0.0.1/24`).
    HostBits,
}

impl core::fmt::Display for CidrError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Syntax => "expected an IPv4 prefix like 10.0.0.0/24",
            Self::Length => "prefix length must be 0 to 32",
            Self::HostBits => "address has bits set past the prefix length",
        })
    }
}

impl Cidr {
    pub const ANY: Self = Self {
        addr: Ipv4Addr::UNSPECIFIED,
        len: 0,
    };

    pub const fn mask(len: u8) -> u32 {
        if len == 0 {
            0
        } else {
            u32::MAX << (32 - len as u32)
        }
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let m = Self::mask(self.len);
        u32::from(ip) & m == u32::from(self.addr) & m
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, CidrError> {
        let (a, l) = s.split_once('/').unwrap_or((s, "32"));
        let addr: Ipv4Addr = a.parse().map_err(|_| CidrError::Syntax)?;
        let len: u8 = l.parse().map_err(|_| CidrError::Syntax)?;
        if len > 32 {
            return Err(CidrError::Length);
        }
        if u32::from(addr) & !Self::mask(len) != 0 {
            return Err(CidrError::HostBits);
        }
        Ok(Self { addr, len })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_martians_are_unspecified_loopback_multicast_and_mapped() {
        let a = |s: &str| s.parse::<core::net::Ipv6Addr>().unwrap().octets();
        for m in ["::", "::1", "ff02::1", "ff05::2", "::ffff:10.0.0.1"] {
            assert!(is_martian6(&a(m)), "{m}");
        }
        for ok in [
            "fd00:a::10",
            "2001:db8::1",
            "fe80::1",
            "::2",
            "::1:0:1",
            "64:ff9b::a00:1",
        ] {
            assert!(!is_martian6(&a(ok)), "{ok}");
        }
    }

    #[test]
    fn martians_are_the_sources_no_router_forwards() {
        let be = |a: [u8; 4]| u32::from_ne_bytes(a);
        for m in [
            [0, 0, 0, 0],
            [0, 1, 2, 3],
            [127, 0, 0, 1],
            [224, 0, 0, 1],
            [239, 255, 255, 250],
            [240, 0, 0, 1],
            [255, 255, 255, 255],
        ] {
            assert!(is_martian(be(m)), "{m:?}");
        }
        for ok in [
            [10, 0, 0, 10],
            [1, 0, 0, 0],
            [126, 255, 255, 255],
            [128, 0, 0, 1],
            [223, 255, 255, 255],
            [192, 168, 1, 1],
        ] {
            assert!(!is_martian(be(ok)), "{ok:?}");
        }
    }

    #[test]
    fn parse_and_match() {
        let c: Cidr = "10.0.0.0/25".parse().expect("valid");
        assert!(c.contains(Ipv4Addr::new(10, 0, 0, 10)));
        assert!(!c.contains(Ipv4Addr::new(10, 0, 0, 200)));
        assert!(Cidr::ANY.contains(Ipv4Addr::new(192, 0, 2, 1)));
        let host: Cidr = "10.0.0.7".parse().expect("bare address");
        assert_eq!(host.len, 32);
        assert!(
            host.contains(Ipv4Addr::new(10, 0, 0, 7)) && !host.contains(Ipv4Addr::new(10, 0, 0, 8))
        );
    }

    #[test]
    fn rejects() {
        assert_eq!("10.0.0.1/24".parse::<Cidr>(), Err(CidrError::HostBits));
        assert_eq!("10.0.0.0/33".parse::<Cidr>(), Err(CidrError::Length));
        assert_eq!("10.0.0/8".parse::<Cidr>(), Err(CidrError::Syntax));
        assert_eq!("x/8".parse::<Cidr>(), Err(CidrError::Syntax));
    }
}
