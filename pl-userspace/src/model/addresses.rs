//! The addresses a config hands out: zones by index, and who claims which address in a
//! network, so no address is two things at once.

use std::{collections::HashMap, net::IpAddr};

use pl_common::service::MAX_ZONES;
use toml::Spanned;

use super::section::{Section, parse_ip};
use crate::config::{ConfigError, ZonedIp};

/// What the sections so far have handed out: zones and claimed addresses.
#[derive(Default)]
pub(super) struct Addresses {
    pub zones: Zones,
    pub claims: Claims,
}

/// Zone names by index, in the order the config first uses them.
#[derive(Default)]
pub(super) struct Zones(pub Vec<String>);

impl Zones {
    /// The index of zone `z`, added if the config has not used it before.
    pub fn index(
        &mut self,
        sec: &Section<'_>,
        field: &str,
        z: &Spanned<String>,
    ) -> Result<u8, ConfigError> {
        if z.get_ref().is_empty() {
            return sec.err(field, Some(z.span().start), "zone must not be empty");
        }
        if let Some(i) = self.0.iter().position(|n| n == z.get_ref()) {
            return Ok(i as u8);
        }
        if self.0.len() == MAX_ZONES {
            return sec.err(
                field,
                Some(z.span().start),
                format!("more than {MAX_ZONES} zones in the config"),
            );
        }
        self.0.push(z.get_ref().clone());
        Ok((self.0.len() - 1) as u8)
    }

    /// The name of zone index `i`.
    pub fn name(&self, i: u8) -> &String {
        &self.0[usize::from(i)]
    }
}

/// Addresses claimed per network: no address may be two things in one network, except a
/// target shared by services.
#[derive(Default)]
pub(super) struct Claims(HashMap<(u16, IpAddr), String>);

const TARGET_OF: &str = "a target of service ";
const NEXT_HOP: &str = "the next hop of a route";

impl Claims {
    /// Claims `ip` as a target of `service`: fine if it is already another service's target.
    pub fn claim_target(
        &mut self,
        sec: &Section<'_>,
        field: &str,
        at: usize,
        network: u16,
        ip: IpAddr,
        service: &str,
    ) -> Result<(), ConfigError> {
        if self
            .0
            .get(&(network, ip))
            .is_some_and(|prev| prev.starts_with(TARGET_OF) || prev == NEXT_HOP)
        {
            return Ok(());
        }
        self.claim(
            sec,
            field,
            at,
            network,
            ip,
            format!("{TARGET_OF}{service:?}"),
        )
    }

    /// Claims `ip` as a router: several routes may share one, and it may be a target too.
    pub fn claim_hop(
        &mut self,
        sec: &Section<'_>,
        at: usize,
        network: u16,
        ip: IpAddr,
    ) -> Result<(), ConfigError> {
        if self.0.contains_key(&(network, ip)) {
            return Ok(());
        }
        self.claim(sec, "routes.via", at, network, ip, NEXT_HOP.to_owned())
    }

    pub fn claim(
        &mut self,
        sec: &Section<'_>,
        field: &str,
        at: usize,
        network: u16,
        ip: IpAddr,
        what: String,
    ) -> Result<(), ConfigError> {
        if let Some(prev) = self.0.get(&(network, ip)) {
            return sec.err(
                field,
                Some(at),
                format!("{ip} is already {prev} in the same network"),
            );
        }
        self.0.insert((network, ip), what);
        Ok(())
    }
}

impl Addresses {
    /// A list of zoned addresses, parsed: each with its zone index and where it is.
    pub fn zoned(
        &mut self,
        sec: &Section<'_>,
        field: &str,
        list: &Spanned<Vec<Spanned<ZonedIp>>>,
    ) -> Result<Vec<(IpAddr, u8, usize)>, ConfigError> {
        if list.get_ref().is_empty() {
            return sec.err(field, Some(list.span().start), "must not be empty");
        }
        list.get_ref()
            .iter()
            .map(|z| {
                let ip = parse_ip(sec, field, &z.get_ref().ip)?;
                let zone = self.zones.index(sec, field, &z.get_ref().zone)?;
                Ok((ip, zone, z.span().start))
            })
            .collect()
    }
}
