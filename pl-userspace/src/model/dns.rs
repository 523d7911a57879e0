//! Endpoint DNS names (`[dns]`, a network's `dns_addresses`, a service's
//! `private_dns_name`, an endpoint's `private_dns`), validated. Kept by name, not by id,
//! so a reload's re-numbering (`align`) leaves them as they are.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use super::{
    Endpoint, Network,
    addresses::Claims,
    found::Found,
    section::{Section, parse_ip},
};
use crate::config::{Config, DnsCfg, Source};

/// The domain regional and zonal names live under when `[dns]` names none.
pub const DEFAULT_DOMAIN: &str = "vpce.internal";
/// The TTL of answers (and of NXDOMAIN's negative caching) when `[dns]` names none.
pub const DEFAULT_TTL_S: u32 = 60;
/// Queries per second per network and receiving CPU when `[dns]` names no `max_qps`.
pub const DEFAULT_MAX_QPS: u32 = 10_000;
/// The most `max_qps` takes.
pub const MAX_MAX_QPS: u32 = 10_000_000;
/// The longest TTL `ttl_s` takes: a day.
pub const MAX_TTL_S: u32 = 86_400;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Dns {
    /// Lower case, no trailing dot.
    pub domain: String,
    pub ttl_s: u32,
    /// Queries per second a DNS address takes per receiving CPU (the XDP program drops
    /// the rest).
    #[serde(default = "default_max_qps")]
    pub max_qps: u32,
    /// Where pl answers for a network, by network name (at most one address per family).
    pub addresses: BTreeMap<String, Vec<IpAddr>>,
    /// Services' private names, lower case, by service name.
    pub private_names: BTreeMap<String, String>,
    /// Endpoints whose network answers their service's private name, by endpoint name.
    pub private_endpoints: BTreeSet<String>,
}

const fn default_max_qps() -> u32 {
    DEFAULT_MAX_QPS
}

impl Default for Dns {
    fn default() -> Self {
        Self {
            domain: DEFAULT_DOMAIN.to_owned(),
            ttl_s: DEFAULT_TTL_S,
            max_qps: DEFAULT_MAX_QPS,
            addresses: BTreeMap::new(),
            private_names: BTreeMap::new(),
            private_endpoints: BTreeSet::new(),
        }
    }
}

/// `name` as a DNS name pl can answer (RFC 1035 2.3.1 with digits anywhere, as RFC 1123
/// allows): lower case, without a trailing dot; labels of 1 to 63 letters, digits and
/// hyphens, not starting or ending with a hyphen; 253 characters at most. `min_labels`:
/// how many labels it needs at least.
pub fn dns_name(name: &str, min_labels: usize) -> Result<String, String> {
    let n = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if n.is_empty() || n.len() > 253 {
        return Err(format!("{name:?}: a DNS name of 1 to 253 characters"));
    }
    let labels: Vec<&str> = n.split('.').collect();
    if labels.len() < min_labels {
        return Err(format!("{name:?}: needs at least {min_labels} labels"));
    }
    if let Some(bad) = labels.iter().find(|l| !is_label(l)) {
        return Err(format!(
            "{name:?}: label {bad:?} is not 1 to 63 letters, digits and hyphens (not first or last)"
        ));
    }
    Ok(n)
}

/// Whether `l` is one label of a host name (lower case already).
pub fn is_label(l: &str) -> bool {
    (1..=63).contains(&l.len())
        && !l.starts_with('-')
        && !l.ends_with('-')
        && l.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Validates the DNS parts of `cfg` against the sections built before it (all of them:
/// an address pl answers DNS on must not be one it already claims in the network). Every
/// problem goes to `found`.
pub(super) fn dns(
    src: &Source,
    cfg: &Config,
    networks: &[Network],
    endpoints: &[Endpoint],
    claims: &mut Claims,
    found: &mut Found<'_>,
) -> Dns {
    let mut out = Dns::default();
    if let Some(d) = &cfg.dns {
        let sec = Section {
            src,
            label: "[dns]".to_owned(),
            at: d.span().start,
        };
        let DnsCfg {
            domain,
            ttl_s,
            max_qps,
        } = d.get_ref();
        let at = |s: std::ops::Range<usize>| (!s.is_empty()).then_some(s.start);
        match dns_name(domain.get_ref(), 1) {
            Ok(n) => out.domain = n,
            Err(why) => found
                .errors
                .push(sec.error("domain", at(domain.span()), why)),
        }
        let ttl = *ttl_s.get_ref();
        if ttl == 0 || ttl > MAX_TTL_S {
            found.errors.push(sec.error(
                "ttl_s",
                at(ttl_s.span()),
                format!("must be 1 to {MAX_TTL_S} seconds"),
            ));
        }
        out.ttl_s = ttl;
        let qps = *max_qps.get_ref();
        if qps == 0 || qps > MAX_MAX_QPS {
            found.errors.push(sec.error(
                "max_qps",
                at(max_qps.span()),
                format!("must be 1 to {MAX_MAX_QPS} queries per second"),
            ));
        }
        out.max_qps = qps;
    }
    for (id, n) in cfg.network.iter().enumerate() {
        let c = n.get_ref();
        let sec = Section::new(src, "network", id, c.name.get_ref(), n.span().start);
        let Some(net) = networks.iter().position(|x| &x.name == c.name.get_ref()) else {
            continue;
        };
        let mut ips: Vec<IpAddr> = Vec::new();
        for a in &c.dns_addresses {
            let at = a.span().start;
            let Some(ip) = found.keep(parse_ip(&sec, "dns_addresses", a)) else {
                continue;
            };
            if ips.iter().any(|x| x.is_ipv4() == ip.is_ipv4()) {
                found.errors.push(sec.error(
                    "dns_addresses",
                    Some(at),
                    format!("{ip}: at most one IPv4 and one IPv6 address"),
                ));
                continue;
            }
            let what = format!("the DNS address of network {:?}", c.name.get_ref());
            if found
                .keep(claims.claim(&sec, "dns_addresses", at, net as u16, ip, what))
                .is_some()
            {
                ips.push(ip);
            }
        }
        if !ips.is_empty() {
            out.addresses.insert(c.name.get_ref().clone(), ips);
        }
    }
    for (i, s) in cfg.service.iter().enumerate() {
        let c = s.get_ref();
        let Some(p) = &c.private_dns_name else {
            continue;
        };
        let sec = Section::new(src, "service", i, c.name.get_ref(), s.span().start);
        let at = Some(p.span().start);
        let name = match dns_name(p.get_ref(), 2) {
            Ok(n) => n,
            Err(why) => {
                found.errors.push(sec.error("private_dns_name", at, why));
                continue;
            }
        };
        if name == out.domain || name.ends_with(&format!(".{}", out.domain)) {
            found.errors.push(sec.error(
                "private_dns_name",
                at,
                format!(
                    "{name} is under [dns] domain {}, where pl's own names live",
                    out.domain
                ),
            ));
        } else if let Some((other, _)) = out.private_names.iter().find(|(_, n)| **n == name) {
            found.errors.push(sec.error(
                "private_dns_name",
                at,
                format!("{name} is already service {other:?}'s private name"),
            ));
        } else {
            out.private_names.insert(c.name.get_ref().clone(), name);
        }
    }
    for (i, e) in cfg.endpoint.iter().enumerate() {
        let c = e.get_ref();
        let has_name = out.private_names.contains_key(c.service.get_ref());
        let service = cfg
            .service
            .iter()
            .find(|s| s.get_ref().name.get_ref() == c.service.get_ref());
        // (A service whose name failed its own checks has its error already.)
        let unnamed = service.is_some_and(|s| s.get_ref().private_dns_name.is_none());
        let on = match &c.private_dns {
            Some(p) if *p.get_ref() && unnamed => {
                let sec = Section::new(src, "endpoint", i, c.name.get_ref(), e.span().start);
                found.errors.push(sec.error(
                    "private_dns",
                    Some(p.span().start),
                    format!("service {:?} has no private_dns_name", c.service.get_ref()),
                ));
                false
            }
            Some(p) => *p.get_ref() && has_name,
            None => has_name,
        };
        let sec = || Section::new(src, "endpoint", i, c.name.get_ref(), e.span().start);
        // Its names are labels: where the network answers them, they must be valid ones.
        let serves = out.addresses.contains_key(c.network.get_ref());
        let label = c.name.get_ref().to_ascii_lowercase();
        if serves && !is_label(&label) {
            found.errors.push(sec().error(
                "name",
                Some(c.name.span().start),
                format!(
                    "{:?} is not a DNS label (1 to 63 letters, digits and hyphens), and network {:?} answers DNS names",
                    c.name.get_ref(),
                    c.network.get_ref()
                ),
            ));
        }
        if !on || !endpoints.iter().any(|x| &x.name == c.name.get_ref()) {
            continue;
        }
        // One endpoint per network answers a private name (as AWS allows one per VPC).
        let other = cfg.endpoint[..i]
            .iter()
            .map(toml::Spanned::get_ref)
            .find(|x| {
                x.network.get_ref() == c.network.get_ref()
                    && x.service.get_ref() == c.service.get_ref()
                    && out.private_endpoints.contains(x.name.get_ref())
            });
        if let Some(other) = other {
            found.errors.push(sec().error(
                "private_dns",
                c.private_dns.as_ref().map(|p| p.span().start),
                format!(
                    "endpoint {:?} already answers service {:?}'s private name in network {:?}",
                    other.name.get_ref(),
                    c.service.get_ref(),
                    c.network.get_ref()
                ),
            ));
            continue;
        }
        out.private_endpoints.insert(c.name.get_ref().clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::testing::{EXAMPLE, build};

    /// The example with `extra` after its `[[network]] "acme"` header line's interface,
    /// `service` fields after billing's name, and `tail` at the end.
    fn with(acme: &str, service: &str, tail: &str) -> String {
        EXAMPLE
            .replacen(
                "interface = \"fw-acme\"\n",
                &format!("interface = \"fw-acme\"\n{acme}\n"),
                1,
            )
            .replacen(
                "name = \"billing\"\n",
                &format!("name = \"billing\"\n{service}\n"),
                1,
            )
            + tail
    }

    fn error_of(text: &str) -> String {
        build(text)
            .map(|_| ())
            .expect_err("an invalid config")
            .to_string()
    }

    #[test]
    fn defaults_and_a_valid_dns_section() {
        let m = build(EXAMPLE).expect("valid");
        assert_eq!((m.dns.domain.as_str(), m.dns.ttl_s), ("vpce.internal", 60));
        assert_eq!((m.dns.max_qps, m.settings.dns_per_window), (10_000, 1000));
        assert!(m.dns.addresses.is_empty() && m.dns.private_names.is_empty());
        let m = build(&with(
            "dns_addresses = [\"10.0.0.2\", \"fd00:a::2\"]",
            "private_dns_name = \"billing.example.com\"",
            "\n[dns]\ndomain = \"endpoints.corp\"\nttl_s = 300\n",
        ))
        .expect("valid");
        assert_eq!(
            (m.dns.domain.as_str(), m.dns.ttl_s),
            ("endpoints.corp", 300)
        );
        assert_eq!(m.dns.addresses["acme"].len(), 2);
        assert_eq!(m.dns.private_names["billing"], "billing.example.com");
        // On by default where the service has a private name.
        assert!(m.dns.private_endpoints.contains("acme-billing"));
        assert!(m.dns.private_endpoints.contains("globex-billing"));
    }

    #[test]
    fn each_bad_dns_setting_is_refused_naming_its_field() {
        // (what, acme's lines, billing's lines, appended, the error names)
        let rows: &[(&str, &str, &str, &str, &[&str])] = &[
            (
                "a bad domain",
                "",
                "",
                "\n[dns]\ndomain = \"under_score.internal\"\n",
                &["[dns]: domain", "under_score"],
            ),
            (
                "a TTL of 0",
                "",
                "",
                "\n[dns]\nttl_s = 0\n",
                &["[dns]: ttl_s"],
            ),
            (
                "no queries allowed",
                "",
                "",
                "\n[dns]\nmax_qps = 0\n",
                &["[dns]: max_qps", "1 to 10000000"],
            ),
            (
                "a DNS address that is an endpoint address",
                "dns_addresses = [\"10.0.0.100\"]",
                "",
                "",
                &["dns_addresses", "10.0.0.100 is already", "acme-billing"],
            ),
            (
                "two IPv4 DNS addresses",
                "dns_addresses = [\"10.0.0.2\", \"10.0.0.3\"]",
                "",
                "",
                &["dns_addresses", "at most one IPv4 and one IPv6"],
            ),
            (
                "a private name of one label",
                "",
                "private_dns_name = \"billing\"",
                "",
                &["private_dns_name", "at least 2 labels"],
            ),
            (
                "a private name under pl's domain",
                "",
                "private_dns_name = \"x.vpce.internal\"",
                "",
                &["private_dns_name", "under [dns] domain"],
            ),
        ];
        for (what, acme, service, tail, want) in rows {
            let e = error_of(&with(acme, service, tail));
            for w in *want {
                assert!(e.contains(w), "{what}: {e:?} lacks {w:?}");
            }
        }
    }

    #[test]
    fn private_names_are_unique_and_need_a_service_that_has_one() {
        let second = r#"
[[service]]
name = "ledger"
network = "billing-prod"
private_dns_name = "Billing.Example.COM."
acceptance_required = false
allowed_principals = ["*"]
nlb_addresses = [{ ip = "10.9.0.252", zone = "z1" }]
listeners = [{ protocol = "tcp", port = 443 }]
targets = [{ ip = "10.9.0.13", zone = "z1" }]
"#;
        let e = error_of(&with(
            "",
            "private_dns_name = \"billing.example.com\"",
            second,
        ));
        assert!(
            e.contains("[[service]] \"ledger\"") && e.contains("already service \"billing\"'s"),
            "{e}"
        );
        let e = error_of(&EXAMPLE.replacen(
            "allowed_sources = [\"10.0.0.0/24\"]",
            "allowed_sources = [\"10.0.0.0/24\"]\nprivate_dns = true",
            1,
        ));
        assert!(
            e.contains("private_dns") && e.contains("has no private_dns_name"),
            "{e}"
        );
        let two = with("", "private_dns_name = \"billing.example.com\"", "")
            + r#"
[[endpoint]]
name = "acme-billing-2"
service = "billing"
network = "acme"
addresses = [{ ip = "10.0.0.110", zone = "z1" }]
"#;
        let e = error_of(&two.replace(
            "accepted_endpoints = [\"acme-billing\", \"globex-billing\"]",
            "accepted_endpoints = [\"acme-billing\", \"globex-billing\", \"acme-billing-2\"]",
        ));
        assert!(
            e.contains("already answers service \"billing\"'s private name"),
            "{e}"
        );
    }
}
