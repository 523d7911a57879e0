//! The lab with family translation (issue 18): IPv6 addresses on the IPv4 service's acme
//! endpoint and IPv4 addresses on the IPv6 service's, allowed sources of both families.
//! Shared by the end-to-end tests and the fuzz.

use std::net::{Ipv4Addr, Ipv6Addr};

use pl_userspace::lab::LAB_CONFIG;

/// acme's IPv6 addresses of the IPv4 service `billing`, and IPv4 addresses of the IPv6
/// service `ledger`.
pub const BILLING6_Z1: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xa, 0, 0, 0, 0, 0, 0x102);
pub const BILLING6_Z2: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xa, 0, 0, 0, 0, 0, 0x103);
pub const LEDGER4_Z1: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 102);
pub const LEDGER4_Z2: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 103);

/// The lab config with the other family's addresses (and allowed sources) on acme's two
/// endpoints.
pub fn config() -> String {
    let swap = |text: String, from: &str, to: &str| {
        assert!(text.contains(from), "the lab config no longer has {from:?}");
        text.replacen(from, to, 1)
    };
    let c = swap(
        LAB_CONFIG.to_owned(),
        "addresses = [{ ip = \"10.0.0.100\", zone = \"z1\" }, { ip = \"10.0.0.101\", zone = \"z2\" }]\nallowed_sources = [\"10.0.0.0/25\"]",
        "addresses = [{ ip = \"10.0.0.100\", zone = \"z1\" }, { ip = \"10.0.0.101\", zone = \"z2\" }, { ip = \"fd00:a::102\", zone = \"z1\" }, { ip = \"fd00:a::103\", zone = \"z2\" }]\nallowed_sources = [\"10.0.0.0/25\", \"fd00:a::/121\"]",
    );
    swap(
        c,
        "addresses = [{ ip = \"fd00:a::100\", zone = \"z1\" }, { ip = \"fd00:a::101\", zone = \"z2\" }]\nallowed_sources = [\"fd00:a::/121\"]",
        "addresses = [{ ip = \"fd00:a::100\", zone = \"z1\" }, { ip = \"fd00:a::101\", zone = \"z2\" }, { ip = \"10.0.0.102\", zone = \"z1\" }, { ip = \"10.0.0.103\", zone = \"z2\" }]\nallowed_sources = [\"fd00:a::/121\", \"10.0.0.0/25\"]",
    )
}
