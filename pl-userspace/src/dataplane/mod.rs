//! Loading the XDP object, attaching it, and reading its counters.
//!
//! Every attachment is a bpf_link pinned in the instance's [`State`], beside the flow table:
//! stopping `pl run` leaves the data plane forwarding, and the next start swaps its program
//! into the same links (`bpf_link_update`, so no packet meets an interface without one) and
//! reuses the flow table. Attaching is all-or-nothing: interfaces are resolved before
//! anything is loaded, and if one refuses the program, the links this start made are
//! unpinned again before any existing link is touched. [`down`] removes it all.
//!
//! `load` loads the object and reaches its maps, `attach` makes, swaps and pins links,
//! `lifecycle` starts, takes over and reloads, `report` renders what the maps hold.

mod attach;
mod lifecycle;
mod load;
mod report;
mod status;
mod zones;

use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr},
};

use aya::{
    Ebpf,
    maps::{Array, MapData, MapError, RingBuf},
    programs::ProgramError,
};
use pl_common::maps::{EVENTS_MAP, FLOWS_MAP, FLOWS6_MAP, MAX_IFACES, MAX_IFINDEX, WATCH_MAP};

pub use self::{
    load::{endpoint_stats, iface_stats, load, load_sized, load_staged, program_named, register},
    report::mac_str,
    status::DataplaneStatus,
};
pub use crate::state::{Attached, Mode};
use crate::{
    apply::{ApplyError, apply},
    flows,
    health::Checker,
    model::Model,
    neigh::{self, Resolver},
    plan::Plan,
    state::{State, StateError},
};

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("no interface given: pass --interface IF at least once")]
    NoInterface,
    #[error(
        "interface {name}: not found in this network namespace (if it lives in another one, run pl there: `ip netns exec NS pl ...`)"
    )]
    UnknownInterface { name: String },
    #[error("interface {name}: ifindex {ifindex} is above the {MAX_IFINDEX} pl supports")]
    IfindexTooLarge { name: String, ifindex: u32 },
    #[error("interface {name}: given twice")]
    DuplicateInterface { name: String },
    #[error("{count} interfaces given; one pl instance manages at most {MAX_IFACES}")]
    TooManyInterfaces { count: usize },
    #[error(
        "loading the XDP program: permission denied; pl needs root (CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON)"
    )]
    Permission {
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("loading the XDP program {program}")]
    Load {
        program: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("interface {name}: cannot attach in {} mode: {cause}", mode.name())]
    Attach {
        name: String,
        mode: Mode,
        cause: String,
        source: Box<ProgramError>,
    },
    /// The interface cannot carry pl as asked; `why` names what is missing.
    #[error("interface {name}: {why}")]
    Unsuited { name: String, why: String },
    #[error("no {what} named {name:?} in the running config")]
    Unknown { what: &'static str, name: String },
    #[error("reload refused: {why}")]
    Reload { why: String },
    #[error(
        "taking over the data plane the last pl run left: {why}; `pl run --fresh` starts over (dropping live flows) and `pl down` removes it"
    )]
    Restore { why: String },
    #[error("pl run (instance {instance:?}) is active in this network namespace: stop it first")]
    Running { instance: String },
    #[error("interface {name}: replacing the program in its link {path}")]
    Swap {
        name: String,
        path: std::path::PathBuf,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("pinning {what} at {path}: {cause}")]
    Pin {
        what: String,
        path: std::path::PathBuf,
        cause: String,
    },
    #[error(transparent)]
    State(#[from] StateError),
    #[error("programming the maps")]
    Apply { source: ApplyError },
    #[error("opening a raw socket for ARP (needs CAP_NET_RAW)")]
    Arp { source: std::io::Error },
    #[error("map {map}")]
    Map {
        map: &'static str,
        source: Box<MapError>,
    },
}

impl DataplaneError {
    /// The error for a failed access to map `map`, for `map_err`.
    pub fn map(map: &'static str) -> impl Fn(MapError) -> Self {
        move |source| Self::Map {
            map,
            source: Box::new(source),
        }
    }
}

/// The loaded program and its pinned links: dropping it leaves the data plane running.
pub struct Dataplane {
    ebpf: Ebpf,
    mode: Mode,
    ifaces: Vec<Attached>,
    state: State,
    data: Option<DataPath>,
    /// Flow-table tombstones the last sweep saw, which the next may empty.
    tombs: std::sync::Arc<std::sync::Mutex<flows::Tombs>>,
}

/// How to start.
#[derive(Clone, Copy, Debug)]
pub struct StartOptions<'a> {
    pub instance: &'a str,
    pub mode: Mode,
    /// Ignore the state a previous run left (its links are still taken over).
    pub fresh: bool,
}

impl std::fmt::Debug for Dataplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataplane")
            .field("mode", &self.mode)
            .field("ifaces", &self.ifaces)
            .finish_non_exhaustive()
    }
}

/// The PrivateLink state beside the program: the model, the plan the maps hold, and
/// what resolves target MACs.
struct DataPath {
    model: Model,
    plan: Plan,
    resolver: Resolver,
    health: Checker,
    /// Flows removed by reloads, by endpoint id (saved with the state).
    revoked: Vec<u64>,
}

/// Resolves names to ifindexes in the caller's network namespace, refusing duplicates.
pub fn resolve(names: &[String]) -> Result<Vec<(String, u32)>, DataplaneError> {
    if names.is_empty() {
        return Err(DataplaneError::NoInterface);
    }
    if names.len() > MAX_IFACES as usize {
        return Err(DataplaneError::TooManyInterfaces { count: names.len() });
    }
    let mut seen = HashSet::new();
    names
        .iter()
        .map(|name| {
            if !seen.insert(name.as_str()) {
                return Err(DataplaneError::DuplicateInterface { name: name.clone() });
            }
            let ifindex = nix::net::if_::if_nametoindex(name.as_str())
                .map_err(|_| DataplaneError::UnknownInterface { name: name.clone() })?;
            if ifindex >= MAX_IFINDEX {
                return Err(DataplaneError::IfindexTooLarge {
                    name: name.clone(),
                    ifindex,
                });
            }
            Ok((name.clone(), ifindex))
        })
        .collect()
}

/// Stops whatever `instance` left in this network namespace: detaches its program from every
/// interface and frees its flow table. Refused while its `pl run` is active. Returns the
/// interfaces it was attached to, or None if there was nothing.
pub fn down(instance: &str) -> Result<Option<Vec<Attached>>, DataplaneError> {
    if crate::control::running(instance) {
        return Err(DataplaneError::Running {
            instance: instance.to_owned(),
        });
    }
    let state = State::locate(instance)?;
    if !state.exists() {
        return Ok(None);
    }
    Ok(Some(state.remove()?))
}

impl Dataplane {
    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn interfaces(&self) -> &[Attached] {
        &self.ifaces
    }

    pub fn has_data_path(&self) -> bool {
        self.data.is_some()
    }

    /// Where the pinned maps and links live.
    pub fn state_dir(&self) -> &std::path::Path {
        self.state.dir()
    }

    /// Asks ARP for every target again (to resolve new ones and notice changed MACs).
    /// Problems come back as log lines.
    pub fn probe_targets(&self) -> Vec<String> {
        self.data
            .as_ref()
            .map(|d| d.resolver.probe(&d.model))
            .unwrap_or_default()
    }

    /// Runs the health checks that are due and reads answers; re-plans if a target went
    /// in or out of rotation. Returns what changed, as log lines.
    pub fn check_health(&mut self) -> Result<Vec<String>, DataplaneError> {
        let Some(d) = self.data.as_mut() else {
            return Ok(Vec::new());
        };
        let before = d.health.unhealthy();
        let macs = d.plan.targets.iter().map(|(id, t)| (*id, t.mac)).collect();
        let mut maps = load::health_maps(&mut self.ebpf)?;
        let log = d
            .health
            .tick(&d.model, &d.model.settings, &macs, &d.resolver, &mut maps);
        if d.health.unhealthy() != before {
            self.refresh_targets()?;
        }
        Ok(log)
    }

    /// Picks up MACs the program learned and target health; re-plans and applies what
    /// changed. A target that moved to a new MAC takes its established flows along.
    /// Returns what happened to targets, a line each (resolved, moved).
    pub fn refresh_targets(&mut self) -> Result<Vec<String>, DataplaneError> {
        let Some(d) = self.data.as_mut() else {
            return Ok(Vec::new());
        };
        let neigh = neigh::learned(&self.ebpf, &d.model);
        let plan = Plan::build(&d.model, &neigh, &d.health.unhealthy());
        if plan == d.plan {
            return Ok(Vec::new());
        }
        apply(&mut self.ebpf, &plan, Some(&d.plan))
            .map_err(|source| DataplaneError::Apply { source })?;
        let network_of = |id: u32| {
            d.model
                .services
                .iter()
                .find(|s| s.targets.iter().any(|t| t.id == id))
                .map(|s| s.network)
        };
        let mut news = Vec::new();
        let mut moves = Vec::new();
        for ((id, n), (_, o)) in plan.targets.iter().zip(&d.plan.targets) {
            if n.mac == o.mac {
                continue;
            }
            let ip = target_ip(&plan, *id, n);
            if o.mac == [0; 6] {
                news.push(format!("{ip} at {}", mac_str(n.mac)));
            } else if let Some(network) = network_of(*id) {
                // It moved: its established flows follow, as new flows already do.
                moves.push((network, ip, n.mac, o.mac));
            }
        }
        if !moves.is_empty() {
            let m: Vec<(u16, IpAddr, [u8; 6])> =
                moves.iter().map(|(n, a, m, _)| (*n, *a, *m)).collect();
            let followed = flows::open(&self.ebpf).map_or(0, |t| flows::follow_mac(&t, &m))
                + flows::open6(&self.ebpf).map_or(0, |t| flows::follow_mac(&t, &m));
            for (_, addr, new, old) in &moves {
                news.push(format!(
                    "{addr} moved from {} to {}",
                    mac_str(*old),
                    mac_str(*new)
                ));
            }
            news.push(format!("{followed} flows follow"));
        }
        d.plan = plan;
        Ok(news)
    }

    /// Targets with no MAC yet, as addresses.
    pub fn unresolved_targets(&self) -> Vec<IpAddr> {
        let Some(d) = self.data.as_ref() else {
            return Vec::new();
        };
        d.plan
            .targets
            .iter()
            .filter(|(_, t)| t.mac == [0; 6])
            .map(|(id, t)| target_ip(&d.plan, *id, t))
            .collect()
    }

    /// A sweep of the flow table to run off the control loop (it walks the whole table),
    /// through the table's pin: it removes idle flows (freeing their SNAT ports) and
    /// returns them. None in observe mode.
    pub fn sweep_job(
        &self,
    ) -> Option<impl FnOnce() -> Result<flows::Sweep, MapError> + Send + 'static> {
        let d = self.data.as_ref()?;
        let (pin, settings) = (self.state.map_pin(FLOWS_MAP), d.model.settings);
        let pin6 = self.state.map_pin(FLOWS6_MAP);
        let tombs = std::sync::Arc::clone(&self.tombs);
        Some(move || flows::sweep_pinned(&pin, &pin6, &settings, &tombs))
    }

    /// The reader of the program's own log lines (aya-log), taken once, to be polled.
    pub fn take_logger(&mut self) -> Option<aya_log::EbpfLogger<&'static dyn log::Log>> {
        match aya_log::EbpfLogger::init(&mut self.ebpf) {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!("the XDP program's log lines will not be shown: {e}");
                None
            }
        }
    }

    /// The ring buffer the program writes flow events to (taken once, to be polled).
    pub fn take_events(&mut self) -> Option<RingBuf<MapData>> {
        self.ebpf
            .take_map(EVENTS_MAP)
            .and_then(|m| RingBuf::try_from(m).ok())
    }

    /// Turns the program's flow events on (someone watches) or off.
    pub fn set_watch(&mut self, on: bool) -> Result<(), DataplaneError> {
        let mut map: Array<_, u32> = load::map_mut(&mut self.ebpf, WATCH_MAP)?;
        map.set(0, u32::from(on), 0)
            .map_err(DataplaneError::map(WATCH_MAP))
    }
}

/// Target `id`'s address as `plan` holds it: `targets6` for an IPv6 one (whose `addr_be`
/// is 0; an IPv4 target reached by family translation has its mapped address there too).
fn target_ip(plan: &Plan, id: u32, t: &pl_common::service::TargetInfo) -> IpAddr {
    if t.addr_be != 0 {
        return Ipv4Addr::from(t.addr_be.to_ne_bytes()).into();
    }
    plan.targets6.iter().find(|(i, _)| *i == id).map_or_else(
        || Ipv4Addr::UNSPECIFIED.into(),
        |(_, a)| std::net::Ipv6Addr::from(*a).into(),
    )
}
