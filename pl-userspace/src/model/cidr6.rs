//! IPv6 prefixes for `allowed_sources`: parsed and matched on the host as the XDP program
//! matches them with its LPM trie (`PL_SOURCES6`).

use std::{net::Ipv6Addr, str::FromStr};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Cidr6 {
    pub addr: Ipv6Addr,
    pub len: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Cidr6Error {
    #[error("expected an IPv6 prefix like 2001:db8::/64")]
    Syntax,
    #[error("prefix length must be 0 to 128")]
    Length,
    #[error("address has bits set past the prefix length")]
    HostBits,
}

impl Cidr6 {
    pub const ANY: Self = Self {
        addr: Ipv6Addr::UNSPECIFIED,
        len: 0,
    };

    const fn mask(len: u8) -> u128 {
        if len == 0 {
            0
        } else {
            u128::MAX << (128 - len as u32)
        }
    }

    pub fn contains(&self, ip: Ipv6Addr) -> bool {
        let m = Self::mask(self.len);
        u128::from(ip) & m == u128::from(self.addr) & m
    }
}

impl FromStr for Cidr6 {
    type Err = Cidr6Error;

    fn from_str(s: &str) -> Result<Self, Cidr6Error> {
        let (a, l) = s.split_once('/').unwrap_or((s, "128"));
        let addr: Ipv6Addr = a.parse().map_err(|_| Cidr6Error::Syntax)?;
        let len: u8 = l.parse().map_err(|_| Cidr6Error::Syntax)?;
        if len > 128 {
            return Err(Cidr6Error::Length);
        }
        if u128::from(addr) & !Self::mask(len) != 0 {
            return Err(Cidr6Error::HostBits);
        }
        Ok(Self { addr, len })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_match() {
        let c: Cidr6 = "2001:db8:1::/48".parse().expect("valid");
        assert!(c.contains("2001:db8:1:ffff::1".parse().expect("addr")));
        assert!(!c.contains("2001:db8:2::1".parse().expect("addr")));
        assert!(Cidr6::ANY.contains("fd00::1".parse().expect("addr")));
        let host: Cidr6 = "fd00::7".parse().expect("bare address");
        assert_eq!(host.len, 128);
    }

    #[test]
    fn rejects() {
        assert_eq!("2001:db8::1/64".parse::<Cidr6>(), Err(Cidr6Error::HostBits));
        assert_eq!("2001:db8::/129".parse::<Cidr6>(), Err(Cidr6Error::Length));
        assert_eq!("2001:db8::/x".parse::<Cidr6>(), Err(Cidr6Error::Syntax));
        assert_eq!("10.0.0.0/8".parse::<Cidr6>(), Err(Cidr6Error::Syntax));
    }
}
