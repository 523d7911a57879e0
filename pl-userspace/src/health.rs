//! Active health checks. pl owns no address on the provider network, so a check is a TCP
//! SYN sent from the NLB address of the target's zone (the address the provider already
//! sees) out of the provider interface, over a raw socket. Its answer comes back through
//! the XDP program: an entry in `PL_PROBES` (`PL_PROBES6` for an IPv6 target), keyed like a
//! reply, records the answer's TCP bits and drops it. The probe's port is one no flow holds (checked before each probe),
//! and probes take no room in the flow table. A SYN-ACK passes and is reset at once (no
//! connection reaches the application); a RST or silence past the timeout fails.
//!
//! Policy is NLB's: the first answer decides a new target's state (until then it takes
//! flows); then `unhealthy_threshold` failures in a row take it out of new flows and
//! `healthy_threshold` passes bring it back. Flows already established are left alone.

use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant},
};

use aya::maps::{HashMap as BpfHashMap, MapData};
use pl_common::{
    flow::{FlowKey, probe_outcome},
    flow6::FlowKey6,
    proto::{ETH_P_IP, ETH_P_IPV6, IPPROTO_TCP},
    settings::Settings,
};

use crate::{
    flows::{FlowTable, FlowTable6, now_ns},
    frame::{self, Ipv4, Ipv6},
    model::{HealthCheck, Model, Service},
    neigh::Resolver,
    plan::{Unhealthy, be},
};

const TCP_RST: u8 = 0x04;
/// `bpf_map_update_elem` flag: fail if the key exists.
const BPF_NOEXIST: u64 = 1;

/// A target's health as checks found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Not answered yet: takes flows until the first answer decides.
    Initial,
    Healthy,
    Unhealthy,
    /// The service has `health_check.enabled = false`.
    Unchecked,
}

impl Health {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Initial => "initial",
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
            Self::Unchecked => "unchecked",
        }
    }
}

/// One checked target.
#[derive(Clone, Debug)]
struct Checked {
    service: u16,
    ip: IpAddr,
    /// Probes go from this zone's NLB address.
    zone: u8,
    health: Health,
    /// Consecutive passes or failures.
    passes: u32,
    fails: u32,
    next: Instant,
    /// The probe's reservation in the flow table, once one was made.
    key: Option<ProbeKey>,
    /// Sent at, with its initial sequence number.
    inflight: Option<(Instant, u32)>,
    last: &'static str,
}

/// What the checks found about one target, for stats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TargetHealth {
    pub health: Health,
    /// `syn-ack`, `rst`, `timeout`, or `none` before the first answer.
    pub last: &'static str,
}

/// The checks of every target of a model, by target id.
#[derive(Debug, Default)]
pub struct Checker {
    targets: HashMap<u32, Checked>,
    /// Services failing open (every target unhealthy), to log each change once.
    failing_open: Vec<u16>,
}

/// `PL_PROBES`: probe key -> state bits of what came back.
pub type Probes<'a> = BpfHashMap<&'a mut MapData, FlowKey, u32>;
/// `PL_PROBES6`, the same for IPv6 targets.
pub type Probes6<'a> = BpfHashMap<&'a mut MapData, FlowKey6, u32>;

/// What the checker works with: the flow tables (read to keep probes off ports that flows
/// hold) and the probe maps, of both families.
pub struct HealthMaps<'a> {
    pub flows: FlowTable,
    pub flows6: FlowTable6,
    pub probes: Probes<'a>,
    pub probes6: Probes6<'a>,
}

/// A probe's key in its family's probe map: the answer's tuple (target -> NLB address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ProbeKey {
    V4(FlowKey),
    V6(FlowKey6),
}

impl ProbeKey {
    /// The probe's port (the NLB side's).
    fn port_be(&self) -> u16 {
        match self {
            Self::V4(k) => k.dport_be,
            Self::V6(k) => k.dport_be,
        }
    }

    /// Whether this key still names a probe from `nlb` to port `port`.
    fn still(&self, nlb: IpAddr, port: u16) -> bool {
        match (self, nlb) {
            (Self::V4(k), IpAddr::V4(a)) => k.sport_be == port.to_be() && k.dst_be == be(a),
            (Self::V6(k), IpAddr::V6(a)) => k.sport_be == port.to_be() && k.dst == a.octets(),
            _ => false,
        }
    }

    /// Whether no flow holds this tuple (its SNAT reservation).
    fn free(&self, m: &HealthMaps<'_>) -> bool {
        match self {
            // A translated flow's reply entry holds an IPv4 port in the IPv6 table.
            Self::V4(k) => {
                let v4 = |be: u32| std::net::Ipv4Addr::from(be.to_ne_bytes());
                let k6 = FlowKey6 {
                    src: v4(k.src_be).to_ipv6_mapped().octets(),
                    dst: v4(k.dst_be).to_ipv6_mapped().octets(),
                    sport_be: k.sport_be,
                    dport_be: k.dport_be,
                    network: k.network,
                    proto: k.proto,
                    _pad: 0,
                };
                m.flows.get(k).is_none() && m.flows6.get(&k6).is_none()
            }
            Self::V6(k) => m.flows6.get(k).is_none(),
        }
    }

    /// Sets the probe's entry to state 0 (`flags`: the map update's).
    fn insert(&self, m: &mut HealthMaps<'_>, flags: u64) -> bool {
        match self {
            Self::V4(k) => m.probes.insert(k, 0, flags).is_ok(),
            Self::V6(k) => m.probes6.insert(k, 0, flags).is_ok(),
        }
    }

    fn remove(&self, m: &mut HealthMaps<'_>) {
        let _ = match self {
            Self::V4(k) => m.probes.remove(k),
            Self::V6(k) => m.probes6.remove(k),
        };
    }

    /// The state bits the answer set.
    fn state(&self, m: &HealthMaps<'_>) -> u8 {
        match self {
            Self::V4(k) => m.probes.get(k, 0).unwrap_or(0) as u8,
            Self::V6(k) => m.probes6.get(k, 0).unwrap_or(0) as u8,
        }
    }
}

impl Checker {
    /// Follows a (re)loaded model: new targets start `Initial` with a check due at once,
    /// staying ones keep their state (unless their check changed), removed ones lose their
    /// probe entry.
    pub fn sync(&mut self, model: &Model, probes: &mut HealthMaps<'_>) {
        let start = Instant::now();
        let mut keep = HashMap::new();
        for (sid, s) in model.services.iter().enumerate() {
            if s.removed {
                continue;
            }
            for (i, t) in s.targets.iter().enumerate() {
                let fresh = Checked {
                    service: sid as u16,
                    ip: t.ip,
                    zone: t.zone,
                    health: first_health(s.health.enabled),
                    passes: 0,
                    fails: 0,
                    // The first checks go out 10 ms apart.
                    next: start + Duration::from_millis(10 * i as u64),
                    key: None,
                    inflight: None,
                    last: "none",
                };
                let c = match self.targets.remove(&t.id) {
                    Some(old)
                        if old.service == fresh.service && old.ip == t.ip && old.zone == t.zone =>
                    {
                        if (old.health == Health::Unchecked) == s.health.enabled {
                            drop_probe(probes, &old);
                            fresh
                        } else {
                            old
                        }
                    }
                    Some(old) => {
                        drop_probe(probes, &old);
                        fresh
                    }
                    None => fresh,
                };
                keep.insert(t.id, c);
            }
        }
        for old in self.targets.values() {
            drop_probe(probes, old);
        }
        self.targets = keep;
    }

    /// Targets that take no new flows.
    pub fn unhealthy(&self) -> Unhealthy {
        self.targets
            .iter()
            .filter(|(_, c)| c.health == Health::Unhealthy)
            .map(|(id, _)| *id)
            .collect()
    }

    pub fn target(&self, id: u32) -> Option<TargetHealth> {
        self.targets.get(&id).map(|c| TargetHealth {
            health: c.health,
            last: c.last,
        })
    }

    /// True if every target of service `sid` is unhealthy, so it fails open.
    pub fn failing_open(&self, sid: u16) -> bool {
        self.failing_open.contains(&sid)
    }

    /// Reads answers, applies thresholds and sends the checks that are due. Returns what
    /// changed, as log lines; the caller re-plans if [`Checker::unhealthy`] changed.
    pub fn tick(
        &mut self,
        model: &Model,
        settings: &Settings,
        macs: &HashMap<u32, [u8; 6]>,
        resolver: &Resolver,
        maps: &mut HealthMaps<'_>,
    ) -> Vec<String> {
        let now = Instant::now();
        let mut log = Vec::new();
        for (id, c) in &mut self.targets {
            let Some(check) = Check::of(*id, c, model, macs, resolver) else {
                continue;
            };
            log.extend(c.read_answer(&check, now, maps));
            if c.inflight.is_some() || now < c.next {
                continue;
            }
            c.next = now + Duration::from_millis(check.service.health.interval_ms);
            log.extend(c.send_check(&check, now, settings, maps));
        }
        self.note_fail_open(model, &mut log);
        log
    }

    fn note_fail_open(&mut self, model: &Model, log: &mut Vec<String>) {
        let mut now_open = Vec::new();
        for (sid, s) in model.services.iter().enumerate() {
            let sid = sid as u16;
            let all_down = !s.removed
                && !s.targets.is_empty()
                && s.targets.iter().all(|t| {
                    self.targets
                        .get(&t.id)
                        .is_some_and(|c| c.health == Health::Unhealthy)
                });
            if all_down {
                now_open.push(sid);
            }
            match (all_down, self.failing_open.contains(&sid)) {
                (true, false) => log.push(format!(
                    "service {}: every target is unhealthy: failing open, new flows go to all of them",
                    s.name
                )),
                (false, true) => log.push(format!(
                    "service {}: a target is healthy again: no longer failing open",
                    s.name
                )),
                _ => {}
            }
        }
        self.failing_open = now_open;
    }
}

impl Checked {
    /// Counts a result; returns the transition, if any, in words.
    fn record(&mut self, pass: bool, hc: &HealthCheck) -> Option<&'static str> {
        if pass {
            self.passes += 1;
            self.fails = 0;
        } else {
            self.fails += 1;
            self.passes = 0;
        }
        let next = match (self.health, pass) {
            (Health::Initial, true) => Health::Healthy,
            (Health::Initial, false) => Health::Unhealthy,
            (Health::Healthy, false) if self.fails >= hc.unhealthy_threshold => Health::Unhealthy,
            (Health::Unhealthy, true) if self.passes >= hc.healthy_threshold => Health::Healthy,
            (h, _) => h,
        };
        let changed = next != self.health;
        self.health = next;
        changed.then_some(match next {
            Health::Healthy => "healthy: takes new flows",
            _ => "unhealthy: takes no new flows",
        })
    }

    /// Reads what came back for the probe in flight, if anything did or it timed out, and
    /// counts it; returns the transition that made, for the log.
    fn read_answer(
        &mut self,
        check: &Check<'_>,
        now: Instant,
        maps: &HealthMaps<'_>,
    ) -> Option<String> {
        let (sent, isn) = self.inflight?;
        let hc = &check.service.health;
        let key = self.key.expect("an inflight probe has its entry");
        let state = key.state(maps);
        let (pass, what) = match probe_outcome(state) {
            Some(true) => {
                // Reset the half-open connection on the target.
                if let Some(m) = check.mac {
                    let _ = check
                        .send
                        .segment(m, key.port_be(), isn.wrapping_add(1), TCP_RST);
                }
                (true, "syn-ack")
            }
            Some(false) => (false, "rst"),
            None if now.duration_since(sent) >= Duration::from_millis(hc.timeout_ms) => {
                (false, "timeout")
            }
            None => return None,
        };
        self.inflight = None;
        self.last = what;
        let line = self.record(pass, hc)?;
        Some(check.say(format_args!("{line} ({what})")))
    }

    /// Sends the check that is due: a port to probe from, the probe's entry cleared, a SYN.
    /// Returns what went wrong, for the log.
    fn send_check(
        &mut self,
        check: &Check<'_>,
        now: Instant,
        settings: &Settings,
        maps: &mut HealthMaps<'_>,
    ) -> Option<String> {
        // An unresolved target takes no flows anyway; ARP (or NDP) brings it in.
        let m = check.mac?;
        let (s, id) = (check.service, check.id);
        let Some(key) = self.reserve(maps, s.network, check.send.nlb, &s.health, settings, id)
        else {
            return Some(check.say("no free port to probe from"));
        };
        // State 0, so only this probe's answer is read.
        if !key.insert(maps, 0) {
            return None;
        }
        let isn = (now_ns() as u32) ^ id.rotate_left(16);
        match check.send.segment(m, key.port_be(), isn, frame::TCP_SYN) {
            Ok(()) => {
                self.inflight = Some((now, isn));
                None
            }
            Err(e) => Some(check.say(format_args!("sending a check: {e}"))),
        }
    }

    /// The probe's key, reserved in `PL_PROBES` and kept from check to check. New flows
    /// skip a port a probe holds; a flow that held it before the probe did is seen here.
    fn reserve(
        &mut self,
        maps: &mut HealthMaps<'_>,
        network: u16,
        nlb: IpAddr,
        hc: &HealthCheck,
        s: &Settings,
        id: u32,
    ) -> Option<ProbeKey> {
        if let Some(k) = self.key.filter(|k| k.still(nlb, hc.port) && k.free(maps)) {
            return Some(k);
        }
        let span = u32::from(s.snat_port_max - s.snat_port_min) + 1;
        for i in 0..64u32 {
            let port = s.snat_port_min + ((id.wrapping_mul(2_654_435_761) ^ i) % span) as u16;
            let key = match (self.ip, nlb) {
                (IpAddr::V4(ip), IpAddr::V4(nlb)) => ProbeKey::V4(FlowKey {
                    src_be: be(ip),
                    dst_be: be(nlb),
                    sport_be: hc.port.to_be(),
                    dport_be: port.to_be(),
                    network,
                    proto: IPPROTO_TCP,
                    _pad: 0,
                }),
                (IpAddr::V6(ip), IpAddr::V6(nlb)) => ProbeKey::V6(FlowKey6 {
                    src: ip.octets(),
                    dst: nlb.octets(),
                    sport_be: hc.port.to_be(),
                    dport_be: port.to_be(),
                    network,
                    proto: IPPROTO_TCP,
                    _pad: 0,
                }),
                // The model gives a target an NLB address of its own family.
                _ => return None,
            };
            // Probe first, then look for a flow: the data path reserves a flow's port and
            // then looks for a probe, so one of the two always sees the other.
            if !key.insert(maps, BPF_NOEXIST) {
                continue;
            }
            if !key.free(maps) {
                key.remove(maps);
                continue;
            }
            if let Some(old) = self.key.replace(key) {
                old.remove(maps);
            }
            return Some(key);
        }
        None
    }
}

/// A new target's state: `Initial` (its check due) where checks are on, else `Unchecked`.
fn first_health(enabled: bool) -> Health {
    if enabled {
        Health::Initial
    } else {
        Health::Unchecked
    }
}

fn drop_probe(maps: &mut HealthMaps<'_>, c: &Checked) {
    if let Some(k) = c.key {
        k.remove(maps);
    }
}

/// One checked target as a tick sees it: its service, where its probes go from and to.
struct Check<'a> {
    id: u32,
    service: &'a Service,
    /// The target's MAC, once resolved.
    mac: Option<[u8; 6]>,
    send: Sender<'a>,
}

impl<'a> Check<'a> {
    /// `None` if `c` is not checked or its zone has no NLB address to probe from.
    fn of(
        id: u32,
        c: &Checked,
        model: &'a Model,
        macs: &HashMap<u32, [u8; 6]>,
        resolver: &'a Resolver,
    ) -> Option<Self> {
        let s = &model.services[usize::from(c.service)];
        if c.health == Health::Unchecked {
            return None;
        }
        let nlb = model.probe_from(s, c.zone, c.ip)?;
        Some(Self {
            id,
            service: s,
            mac: macs.get(&id).copied().filter(|m| *m != [0; 6]),
            send: Sender {
                resolver,
                network: s.network,
                src_mac: model.networks[usize::from(s.network)].mac,
                nlb,
                target: c.ip,
                port: s.health.port,
            },
        })
    }

    /// A log line about this target.
    fn say(&self, what: impl std::fmt::Display) -> String {
        format!(
            "service {}: target {}: {what}",
            self.service.name, self.send.target
        )
    }
}

/// Builds and sends a check's segments for one target.
struct Sender<'a> {
    resolver: &'a Resolver,
    network: u16,
    src_mac: [u8; 6],
    nlb: IpAddr,
    target: IpAddr,
    port: u16,
}

impl Sender<'_> {
    fn segment(&self, dst_mac: [u8; 6], sport_be: u16, seq: u32, flags: u8) -> std::io::Result<()> {
        let sender = self.resolver.sender(self.network).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no raw socket on the provider network",
            )
        })?;
        let sport = u16::from_be(sport_be);
        match (self.nlb, self.target) {
            (IpAddr::V4(nlb), IpAddr::V4(target)) => {
                let packet = Ipv4::new(nlb.octets(), target.octets()).tcp(
                    sport,
                    self.port,
                    seq,
                    0,
                    flags,
                    &[],
                );
                sender.send(&frame::ipv4_frame(dst_mac, self.src_mac, &packet), ETH_P_IP)
            }
            (IpAddr::V6(nlb), IpAddr::V6(target)) => {
                let packet = Ipv6::new(nlb.octets(), target.octets()).tcp(
                    sport,
                    self.port,
                    seq,
                    0,
                    flags,
                    &[],
                );
                sender.send(
                    &frame::ipv6_frame(dst_mac, self.src_mac, &packet),
                    ETH_P_IPV6,
                )
            }
            _ => Err(std::io::Error::other("an NLB address of another family")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(health: Health) -> Checked {
        Checked {
            service: 0,
            ip: std::net::Ipv4Addr::new(10, 9, 0, 11).into(),
            zone: 0,
            health,
            passes: 0,
            fails: 0,
            next: Instant::now(),
            key: None,
            inflight: None,
            last: "none",
        }
    }

    #[test]
    fn an_ipv6_target_is_probed_from_its_zones_ipv6_nlb_address() {
        assert_eq!(first_health(true), Health::Initial);
        assert_eq!(first_health(false), Health::Unchecked);
        let m = crate::model::testing::build(crate::model::testing::EXAMPLE6)
            .unwrap_or_else(|e| panic!("{e}"));
        let (sid, t) = m
            .services
            .iter()
            .enumerate()
            .find_map(|(i, s)| s.targets.iter().find(|t| t.ip.is_ipv6()).map(|t| (i, t)))
            .expect("EXAMPLE6 has an IPv6 target");
        let resolver = Resolver::empty();
        let mut c = checked(Health::Initial);
        (c.service, c.ip, c.zone) = (sid as u16, t.ip, t.zone);
        let check = Check::of(t.id, &c, &m, &HashMap::new(), &resolver).expect("checked");
        assert!(check.send.nlb.is_ipv6(), "probes from {}", check.send.nlb);
        assert_eq!(check.send.target, t.ip);
    }

    #[test]
    fn probe_keys_name_their_family_and_port() {
        let nlb4: IpAddr = "10.9.0.250".parse().expect("addr");
        let nlb6: IpAddr = "fd00:9::250".parse().expect("addr");
        let k6 = ProbeKey::V6(FlowKey6 {
            src: [0xfd; 16],
            dst: [0xfd, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0x50],
            sport_be: 8443u16.to_be(),
            dport_be: 40001u16.to_be(),
            network: 2,
            proto: IPPROTO_TCP,
            _pad: 0,
        });
        assert_eq!(u16::from_be(k6.port_be()), 40001);
        assert!(k6.still(nlb6, 8443));
        assert!(!k6.still(nlb6, 443), "another check port");
        assert!(!k6.still(nlb4, 8443), "another family");
    }

    #[test]
    fn thresholds_move_targets_as_an_nlb_does() {
        let hc = HealthCheck {
            healthy_threshold: 3,
            unhealthy_threshold: 2,
            ..HealthCheck::default()
        };
        // The first answer decides.
        let mut c = checked(Health::Initial);
        assert!(c.record(false, &hc).is_some());
        assert_eq!(c.health, Health::Unhealthy);
        let mut c = checked(Health::Initial);
        c.record(true, &hc);
        assert_eq!(c.health, Health::Healthy);
        // Healthy: one failure is not enough, a pass resets the count, two in a row are.
        assert_eq!(c.record(false, &hc), None);
        c.record(true, &hc);
        assert_eq!(c.record(false, &hc), None);
        assert!(c.record(false, &hc).is_some());
        assert_eq!(c.health, Health::Unhealthy);
        // Back after three passes in a row, not two.
        c.record(true, &hc);
        c.record(true, &hc);
        assert_eq!(c.health, Health::Unhealthy);
        c.record(false, &hc);
        c.record(true, &hc);
        c.record(true, &hc);
        assert_eq!(c.health, Health::Unhealthy);
        assert!(c.record(true, &hc).is_some());
        assert_eq!(c.health, Health::Healthy);
    }
}
