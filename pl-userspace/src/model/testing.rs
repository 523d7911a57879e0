//! Shared by the model's tests: the example config, a fixed set of interfaces, a builder.

use std::path::PathBuf;

use super::{Interfaces, Mac, Model};
use crate::config::{ConfigError, Source};

/// The example from the issue that fixed the schema.
pub const EXAMPLE: &str = r#"
[[network]]
name = "acme"
interface = "fw-acme"

[[network]]
name = "globex"
interface = "fw-globex"

[[network]]
name = "billing-prod"
interface = "fw-prov"

[[service]]
name = "billing"
network = "billing-prod"
nlb_addresses = [{ ip = "10.9.0.250", zone = "z1" }, { ip = "10.9.0.251", zone = "z2" }]
acceptance_required = true
allowed_principals = ["acme", "globex"]
accepted_endpoints = ["acme-billing", "globex-billing"]
cross_zone = false
listeners = [{ protocol = "tcp", port = 443, target_port = 8443 }, { protocol = "udp", port = 53 }]
targets = [{ ip = "10.9.0.11", zone = "z1" }, { ip = "10.9.0.12", zone = "z2" }]

[[endpoint]]
name = "acme-billing"
service = "billing"
network = "acme"
addresses = [{ ip = "10.0.0.100", zone = "z1" }, { ip = "10.0.0.101", zone = "z2" }]
allowed_sources = ["10.0.0.0/24"]

[[endpoint]]
name = "globex-billing"
service = "billing"
network = "globex"
addresses = [{ ip = "10.0.0.100", zone = "z1" }, { ip = "10.0.0.101", zone = "z2" }]
"#;

/// A service whose targets are IPv6, with an endpoint reached over IPv6 (same family), and
/// an IPv4 NLB address beside the IPv6 ones (dual-stack NLB).
pub const EXAMPLE6: &str = r#"
[[network]]
name = "acme"
interface = "fw-acme"

[[network]]
name = "billing-prod"
interface = "fw-prov"
routes = [{ to = "fd00:60::/48", via = "fd00:9::1" }]

[[service]]
name = "billing6"
network = "billing-prod"
nlb_addresses = [{ ip = "10.9.0.250", zone = "z1" }, { ip = "fd00:9::fa", zone = "z1" }, { ip = "fd00:9::fb", zone = "z2" }]
acceptance_required = false
allowed_principals = ["*"]
listeners = [{ protocol = "tcp", port = 443, target_port = 8443 }]
targets = [{ ip = "fd00:9::11", zone = "z1" }, { ip = "fd00:60::5", zone = "z2" }]

[[endpoint]]
name = "acme-billing6"
service = "billing6"
network = "acme"
addresses = [{ ip = "fd00::64", zone = "z1" }, { ip = "fd00::65", zone = "z2" }]
allowed_sources = ["10.0.0.0/24", "fd00::/64"]
"#;

pub struct Fixed;
impl Interfaces for Fixed {
    fn resolve(&self, name: &str) -> Result<(u32, Mac, u32), String> {
        match name {
            "fw-acme" => Ok((2, [2, 0, 0, 0, 0, 2], 9000)),
            "fw-globex" => Ok((3, [2, 0, 0, 0, 0, 3], 1500)),
            "fw-prov" => Ok((4, [2, 0, 0, 0, 0, 4], 1500)),
            _ => Err("no such interface in this network namespace".to_owned()),
        }
    }

    fn ipv4_nets(&self, name: &str) -> Result<Vec<pl_common::cidr::Cidr>, String> {
        match name {
            "mgmt0" => Ok(vec!["192.168.100.0/24".parse().expect("cidr")]),
            _ => Err("no such interface in this network namespace".to_owned()),
        }
    }
}

/// The model of `text`, or its first error.
pub fn build(text: &str) -> Result<Model, ConfigError> {
    build_all(text).map_err(|mut e| e.remove(0))
}

/// The model of `text`, or all its errors.
pub fn build_all(text: &str) -> Result<Model, Vec<ConfigError>> {
    Model::from_source(&source(text), &Fixed).map_err(|e| e.0)
}

pub fn source(text: &str) -> Source {
    Source {
        path: PathBuf::from("pl.toml"),
        text: text.to_owned(),
    }
}
