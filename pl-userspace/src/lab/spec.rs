//! The built-in lab as it is laid out: its networks, their addresses, and the config that
//! serves them. [`super::topology`] builds it under a prefix.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// Which side of the forwarder a lab network is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Consumer,
    Provider,
}

impl Role {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Consumer => "consumer",
            Self::Provider => "provider",
        }
    }
}

/// One lab network, as laid out before a prefix is applied.
#[derive(Clone, Copy, Debug)]
pub struct NetSpec {
    /// The network's name (also its namespace suffix).
    pub name: &'static str,
    pub role: Role,
    /// The forwarder's interface on this network.
    pub fw_iface: &'static str,
    /// Addresses on the peer's `eth0`, with prefix length: IPv4 first, then IPv6.
    pub addrs: &'static [&'static str],
    /// Where the network's traffic to the forwarder goes: the endpoint address on a
    /// consumer network, an NLB address on the provider network.
    pub service_ip: Ipv4Addr,
    /// The same in IPv6 (the `ledger` service's addresses).
    pub service_ip6: Ipv6Addr,
}

/// The interface name inside every peer namespace.
pub const PEER_IFACE: &str = "eth0";

pub const NETWORKS: [NetSpec; 3] = [
    NetSpec {
        name: "acme",
        role: Role::Consumer,
        fw_iface: "fw-acme",
        addrs: &[
            "10.0.0.10/24",
            "10.0.0.200/24",
            "fd00:a::10/64",
            "fd00:a::200/64",
        ],
        service_ip: Ipv4Addr::new(10, 0, 0, 100),
        service_ip6: Ipv6Addr::new(0xfd00, 0xa, 0, 0, 0, 0, 0, 0x100),
    },
    NetSpec {
        name: "globex",
        role: Role::Consumer,
        fw_iface: "fw-globex",
        addrs: &[
            "10.0.0.10/24",
            "10.0.0.200/24",
            "fd00:a::10/64",
            "fd00:a::200/64",
        ],
        service_ip: Ipv4Addr::new(10, 0, 0, 100),
        service_ip6: Ipv6Addr::new(0xfd00, 0xa, 0, 0, 0, 0, 0, 0x100),
    },
    NetSpec {
        name: "prov",
        role: Role::Provider,
        fw_iface: "fw-prov",
        addrs: &[
            "10.9.0.11/24",
            "10.9.0.12/24",
            "fd00:9::11/64",
            "fd00:9::12/64",
        ],
        service_ip: Ipv4Addr::new(10, 9, 0, 250),
        service_ip6: Ipv6Addr::new(0xfd00, 0x9, 0, 0, 0, 0, 0, 0x250),
    },
];

/// The PrivateLink config for the lab: two services in the provider network, each with a
/// target and an NLB address in each of two zones and an endpoint in each consumer network
/// at the same addresses. `billing` is IPv4: acme-billing admits 10.0.0.0/25 only
/// (10.0.0.200 is refused); globex-billing admits any source. `ledger` is the same in IPv6:
/// targets fd00:9::11/::12, NLB fd00:9::250/::251, endpoints at fd00:a::100/::101;
/// acme-ledger admits fd00:a::/121 only (fd00:a::200 is refused).
pub const LAB_CONFIG: &str = r#"# Generated for the pl lab.
[[network]]
name = "acme"
interface = "fw-acme"

[[network]]
name = "globex"
interface = "fw-globex"

[[network]]
name = "prov"
interface = "fw-prov"

[[service]]
name = "billing"
network = "prov"
nlb_addresses = [{ ip = "10.9.0.250", zone = "z1" }, { ip = "10.9.0.251", zone = "z2" }]
acceptance_required = true
allowed_principals = ["acme", "globex"]
accepted_endpoints = ["acme-billing", "globex-billing"]
cross_zone = false
listeners = [{ protocol = "tcp", port = 443, target_port = 8443 }, { protocol = "udp", port = 53, target_port = 5353 }]
targets = [{ ip = "10.9.0.11", zone = "z1" }, { ip = "10.9.0.12", zone = "z2" }]

[[endpoint]]
name = "acme-billing"
service = "billing"
network = "acme"
addresses = [{ ip = "10.0.0.100", zone = "z1" }, { ip = "10.0.0.101", zone = "z2" }]
allowed_sources = ["10.0.0.0/25"]

[[endpoint]]
name = "globex-billing"
service = "billing"
network = "globex"
addresses = [{ ip = "10.0.0.100", zone = "z1" }, { ip = "10.0.0.101", zone = "z2" }]

[[service]]
name = "ledger"
network = "prov"
nlb_addresses = [{ ip = "fd00:9::250", zone = "z1" }, { ip = "fd00:9::251", zone = "z2" }]
acceptance_required = true
allowed_principals = ["acme", "globex"]
accepted_endpoints = ["acme-ledger", "globex-ledger"]
cross_zone = false
listeners = [{ protocol = "tcp", port = 443, target_port = 8443 }, { protocol = "udp", port = 53, target_port = 5353 }]
targets = [{ ip = "fd00:9::11", zone = "z1" }, { ip = "fd00:9::12", zone = "z2" }]

[[endpoint]]
name = "acme-ledger"
service = "ledger"
network = "acme"
addresses = [{ ip = "fd00:a::100", zone = "z1" }, { ip = "fd00:a::101", zone = "z2" }]
allowed_sources = ["fd00:a::/121"]

[[endpoint]]
name = "globex-ledger"
service = "ledger"
network = "globex"
addresses = [{ ip = "fd00:a::100", zone = "z1" }, { ip = "fd00:a::101", zone = "z2" }]
"#;

/// Where pl answers DNS in each consumer network of the lab (the same in both: they
/// overlap), IPv4 and IPv6.
pub const DNS_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
pub const DNS_ADDR6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xa, 0, 0, 0, 0, 0, 2);

/// `config` (the lab's, or one shaped like it) with a DNS address in each consumer
/// network.
pub fn with_dns_addresses(config: &str) -> String {
    let dns = format!("dns_addresses = [\"{DNS_ADDR}\", \"{DNS_ADDR6}\"]");
    ["fw-acme", "fw-globex"]
        .iter()
        .fold(config.to_owned(), |c, iface| {
            c.replace(
                &format!("interface = \"{iface}\"\n"),
                &format!("interface = \"{iface}\"\n{dns}\n"),
            )
        })
}

/// [`with_dns_addresses`], and private names for both services (`billing.example.com`,
/// `ledger.example.com`).
pub fn with_dns(config: &str) -> String {
    ["billing", "ledger"]
        .iter()
        .fold(with_dns_addresses(config), |c, service| {
            c.replace(
                &format!("name = \"{service}\"\nnetwork = \"prov\"\n"),
                &format!(
                    "name = \"{service}\"\nnetwork = \"prov\"\nprivate_dns_name = \"{service}.example.com\"\n"
                ),
            )
        })
}

/// A veth's MTU unless the lab is told otherwise.
pub const DEFAULT_MTU: u32 = 1500;

/// Bytes of Ethernet + IPv4 + UDP headers in front of a UDP payload.
pub const UDP_FRAME_OVERHEAD: usize = 14 + 20 + 8;

/// The cluster lab's (`pl lab up --nodes N`) management interface in every forwarder
/// namespace: the link the nodes talk over.
pub const MGMT_IFACE: &str = "mgmt0";

/// The management network's /24: node `i` (from 1) is `{MGMT_SUBNET}{i}`.
pub const MGMT_SUBNET: &str = "192.168.100.";

/// The cluster lab's switch namespace suffix (`{prefix}sw`): one bridge per network.
pub const SWITCH: &str = "sw";

/// How many forwarders a cluster lab may have.
pub const CLUSTER_NODES: std::ops::RangeInclusive<usize> = 2..=3;
