//! Where in the file a section is, so each error names file, line, section and field; and
//! the checks every section shares (names, addresses).

use std::{collections::HashSet, net::IpAddr};

use toml::Spanned;

use crate::config::{ConfigError, Source};

/// Where in the file a section is, for errors.
pub(super) struct Section<'a> {
    pub src: &'a Source,
    pub label: String,
    pub at: usize,
}

impl<'a> Section<'a> {
    /// The `index`th `[[kind]]` section, starting at `at`, named `name` (maybe not yet).
    pub fn new(src: &'a Source, kind: &str, index: usize, name: &str, at: usize) -> Self {
        Self {
            src,
            label: crate::config::section_label(kind, index, name),
            at,
        }
    }

    pub fn err<T>(
        &self,
        field: &str,
        at: Option<usize>,
        msg: impl Into<String>,
    ) -> Result<T, ConfigError> {
        Err(self.error(field, at, msg))
    }

    /// The error `err` returns, as a value.
    pub fn error(&self, field: &str, at: Option<usize>, msg: impl Into<String>) -> ConfigError {
        self.src
            .error(Some(at.unwrap_or(self.at)), &self.label, field, msg)
    }
}

/// An address of either family. An IPv6 one must be one a host can have: not `::`, not a
/// group, and not an IPv4-mapped address (write that one as IPv4).
pub(super) fn parse_ip(
    sec: &Section<'_>,
    field: &str,
    s: &Spanned<String>,
) -> Result<IpAddr, ConfigError> {
    let at = Some(s.span().start);
    match s.get_ref().parse::<IpAddr>() {
        Err(_) => sec.err(
            field,
            at,
            format!("{:?} is not an IPv4 or IPv6 address", s.get_ref()),
        ),
        Ok(IpAddr::V6(v6)) if v6.is_unspecified() || v6.is_multicast() => {
            sec.err(field, at, format!("{v6} is not a unicast IPv6 address"))
        }
        Ok(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_some() => sec.err(
            field,
            at,
            format!("{v6} is an IPv4-mapped IPv6 address: write it as IPv4"),
        ),
        Ok(ip) => Ok(ip),
    }
}

/// An IPv4 address, for the fields that take no other (a node's address).
pub(super) fn parse_ip4(
    sec: &Section<'_>,
    field: &str,
    s: &Spanned<String>,
) -> Result<std::net::Ipv4Addr, ConfigError> {
    match s.get_ref().parse() {
        Ok(ip) => Ok(ip),
        Err(_) => sec.err(
            field,
            Some(s.span().start),
            format!("{:?} is not an IPv4 address", s.get_ref()),
        ),
    }
}

/// "IPv4" or "IPv6", for errors.
pub(super) fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() { "IPv4" } else { "IPv6" }
}

/// Checks a name is usable and not taken; returns it.
pub(super) fn name_of(
    sec: &Section<'_>,
    n: &Spanned<String>,
    taken: &mut HashSet<String>,
) -> Result<String, ConfigError> {
    let name = n.get_ref();
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !ok {
        return sec.err(
            "name",
            Some(n.span().start),
            format!("{name:?}: use 1-64 characters from A-Z, a-z, 0-9, '-', '_', '.'"),
        );
    }
    if !taken.insert(name.clone()) {
        return sec.err(
            "name",
            Some(n.span().start),
            format!("{name:?} is used twice"),
        );
    }
    Ok(name.clone())
}
