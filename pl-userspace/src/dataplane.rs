//! Loading the XDP object, attaching it, and reading its counters.
//!
//! Attaching is all-or-nothing: interface names are resolved before anything is loaded,
//! and if any interface refuses the program, the ones already attached are detached when
//! the half-built [`Dataplane`] drops (aya detaches its links on drop).

use std::{collections::HashSet, net::Ipv4Addr};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapError, PerCpuArray},
    programs::{ProgramError, Xdp, XdpMode, xdp::XdpLinkId},
};
use pl_common::{
    iface::{IFACE_ACTIVE, IfaceConfig},
    maps::{
        ENDPOINT_STATS_MAP, FLOWS_MAP, IFACE_STATS_MAP, IFACES_MAP, MAX_IFACES, MAX_IFINDEX,
        PROGRAM_NAME,
    },
    stats::{EndpointStats, IfaceStats},
};

use crate::{
    apply::{ApplyError, apply},
    errno, flows,
    model::Model,
    neigh::{self, Resolver},
    plan::{Neighbors, Plan},
    stats::{EndpointReport, IfaceReport, StatsReport, TargetReport},
};

/// Where the program runs on an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// In the driver (`XDP_FLAGS_DRV_MODE`): the fast path, and the default.
    Native,
    /// In the generic stack (`XDP_FLAGS_SKB_MODE`): for drivers without native XDP.
    Skb,
}

impl Mode {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Skb => "skb",
        }
    }

    const fn xdp(self) -> XdpMode {
        match self {
            Self::Native => XdpMode::Driver,
            Self::Skb => XdpMode::Skb,
        }
    }
}

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
    #[error("loading the XDP program")]
    Load {
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("interface {name}: cannot attach in {} mode: {cause}", mode.name())]
    Attach {
        name: String,
        mode: Mode,
        cause: String,
        source: Box<ProgramError>,
    },
    #[error("reload refused: {why}")]
    Reload { why: String },
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

/// One interface the program is attached to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attached {
    pub name: String,
    pub ifindex: u32,
    pub slot: u32,
}

/// The loaded program, attached to its interfaces until dropped.
pub struct Dataplane {
    // Nothing else holds the links: dropping `ebpf` detaches.
    ebpf: Ebpf,
    mode: Mode,
    ifaces: Vec<Attached>,
    links: Vec<(u32, XdpLinkId)>,
    data: Option<DataPath>,
}

impl std::fmt::Debug for Dataplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataplane")
            .field("mode", &self.mode)
            .field("ifaces", &self.ifaces)
            .finish_non_exhaustive()
    }
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

/// Loads the embedded object and its program, attaching nothing.
pub fn load() -> Result<Ebpf, DataplaneError> {
    load_sized(None)
}

/// As [`load`], with the flow map sized to `flow_entries` entries if given.
pub fn load_sized(flow_entries: Option<u32>) -> Result<Ebpf, DataplaneError> {
    let classify = |e: Box<dyn std::error::Error + Send + Sync>| {
        if errno::find(e.as_ref()) == Some(libc::EPERM) {
            DataplaneError::Permission { source: e }
        } else {
            DataplaneError::Load { source: e }
        }
    };
    let mut loader = EbpfLoader::new();
    if let Some(n) = flow_entries {
        loader.map_max_entries(FLOWS_MAP, n);
    }
    let mut ebpf = loader
        .load(crate::EBPF_OBJECT)
        .map_err(|e| classify(Box::new(e)))?;
    program(&mut ebpf)
        .load()
        .map_err(|e| classify(Box::new(e)))?;
    Ok(ebpf)
}

fn program(ebpf: &mut Ebpf) -> &mut Xdp {
    ebpf.program_mut(PROGRAM_NAME)
        .and_then(|p| <&mut Xdp>::try_from(p).ok())
        .unwrap_or_else(|| {
            panic!("the embedded object has no XDP program {PROGRAM_NAME}: the build is broken")
        })
}

/// Registers interfaces in the program's interface map (observe mode: count and pass), slot
/// `i` for the `i`th.
pub fn register(
    ebpf: &mut Ebpf,
    ifaces: &[(String, u32)],
) -> Result<Vec<Attached>, DataplaneError> {
    let err = |source: MapError| DataplaneError::Map {
        map: IFACES_MAP,
        source: Box::new(source),
    };
    let mut map: Array<_, IfaceConfig> = Array::try_from(
        ebpf.map_mut(IFACES_MAP)
            .unwrap_or_else(|| panic!("the embedded object has no map {IFACES_MAP}")),
    )
    .map_err(err)?;
    ifaces
        .iter()
        .zip(0u32..)
        .map(|((name, ifindex), slot)| {
            map.set(
                *ifindex,
                IfaceConfig {
                    slot,
                    flags: IFACE_ACTIVE,
                    ..IfaceConfig::default()
                },
                0,
            )
            .map_err(err)?;
            Ok(Attached {
                name: name.clone(),
                ifindex: *ifindex,
                slot,
            })
        })
        .collect()
}

/// One interface slot's counters, summed over CPUs.
pub fn iface_stats(ebpf: &Ebpf, slot: u32) -> Result<IfaceStats, DataplaneError> {
    sum_per_cpu(ebpf, IFACE_STATS_MAP, slot, IfaceStats::accumulate)
}

/// One endpoint's counters, summed over CPUs.
pub fn endpoint_stats(ebpf: &Ebpf, id: u16) -> Result<EndpointStats, DataplaneError> {
    sum_per_cpu(
        ebpf,
        ENDPOINT_STATS_MAP,
        u32::from(id),
        EndpointStats::accumulate,
    )
}

fn sum_per_cpu<T: aya::Pod + Default>(
    ebpf: &Ebpf,
    name: &'static str,
    index: u32,
    add: fn(&mut T, &T),
) -> Result<T, DataplaneError> {
    let err = |source: MapError| DataplaneError::Map {
        map: name,
        source: Box::new(source),
    };
    let map: PerCpuArray<_, T> = PerCpuArray::try_from(
        ebpf.map(name)
            .unwrap_or_else(|| panic!("the embedded object has no map {name}")),
    )
    .map_err(err)?;
    let mut total = T::default();
    for cpu in map.get(&index, 0).map_err(err)?.iter() {
        add(&mut total, cpu);
    }
    Ok(total)
}

/// Why the kernel refused an attach, in words that say what to do.
fn attach_cause(name: &str, err: &ProgramError, mode: Mode) -> String {
    match errno::find(err) {
        Some(libc::EBUSY) | Some(libc::EEXIST) => {
            format!(
                "another XDP program is already attached (stop the pl run or other process that holds it; if it was attached with ip, `ip link set dev {name} xdp off`)"
            )
        }
        Some(libc::EOPNOTSUPP) if mode == Mode::Native => {
            "the driver does not support native XDP (use --skb for generic mode)".to_owned()
        }
        Some(libc::EPERM) => "permission denied (needs root: CAP_NET_ADMIN)".to_owned(),
        Some(libc::ENODEV) => "the interface disappeared".to_owned(),
        Some(code) => std::io::Error::from_raw_os_error(code).to_string(),
        None => err.to_string(),
    }
}

/// Attaches the loaded program to every interface, or (on error, when the caller drops
/// `ebpf`) to none.
fn attach_all(
    ebpf: &mut Ebpf,
    ifaces: &[Attached],
    mode: Mode,
) -> Result<Vec<(u32, XdpLinkId)>, DataplaneError> {
    let prog = program(ebpf);
    let mut links = Vec::new();
    for iface in ifaces {
        match prog.attach_to_if_index(iface.ifindex, mode.xdp()) {
            Ok(link) => links.push((iface.ifindex, link)),
            Err(source) => {
                // Undo this call's attachments (a reload must leave the running set as it was).
                for (_, link) in links {
                    let _ = prog.detach(link);
                }
                return Err(DataplaneError::Attach {
                    name: iface.name.clone(),
                    mode,
                    cause: attach_cause(&iface.name, &source, mode),
                    source: Box::new(source),
                });
            }
        }
    }
    Ok(links)
}

/// The PrivateLink state beside the program: the model, the plan the maps hold, and
/// what resolves target MACs.
struct DataPath {
    model: Model,
    plan: Plan,
    resolver: Resolver,
}

impl Dataplane {
    /// Resolves `names`, loads the program and attaches it to every interface, or to none.
    /// Observe mode: frames are counted and passed on.
    pub fn start(names: &[String], mode: Mode) -> Result<Self, DataplaneError> {
        let resolved = resolve(names)?;
        let mut ebpf = load()?;
        let ifaces = register(&mut ebpf, &resolved)?;
        // On error `ebpf` drops here, detaching every link made so far.
        let links = attach_all(&mut ebpf, &ifaces, mode)?;
        Ok(Self {
            ebpf,
            mode,
            ifaces,
            links,
            data: None,
        })
    }

    /// Loads the program with the maps `model` implies and attaches it to every network's
    /// interface, or to none. Targets take flows once ARP has resolved them.
    pub fn start_model(model: Model, mode: Mode) -> Result<Self, DataplaneError> {
        let mut ebpf = load_sized(Some(model.flow_table_size.saturating_mul(2)))?;
        let plan = Plan::build(&model, &Neighbors::new());
        apply(&mut ebpf, &plan, None).map_err(|source| DataplaneError::Apply { source })?;
        let ifaces: Vec<Attached> = model
            .networks
            .iter()
            .zip(0u32..)
            .filter(|(n, _)| !n.removed)
            .map(|(n, slot)| Attached {
                name: n.interface.clone(),
                ifindex: n.ifindex,
                slot,
            })
            .collect();
        let resolver = Resolver::new(&model).map_err(|source| DataplaneError::Arp { source })?;
        let links = attach_all(&mut ebpf, &ifaces, mode)?;
        let data = DataPath {
            model,
            plan,
            resolver,
        };
        Ok(Self {
            ebpf,
            mode,
            ifaces,
            links,
            data: Some(data),
        })
    }

    /// Applies a new, validated model while running: what stays keeps its ids (and its
    /// flows), what is gone takes no new flows, what is new appears. New interfaces are
    /// attached after the maps know them; if one refuses, the maps are put back and the
    /// running configuration stays as it was. Returns what changed, in words.
    pub fn reload(&mut self, new: Model) -> Result<String, DataplaneError> {
        let Self {
            ebpf,
            mode,
            ifaces,
            links,
            data,
        } = self;
        let Some(d) = data.as_mut() else {
            return Err(DataplaneError::Reload {
                why: "pl run was started without --config".to_owned(),
            });
        };
        if new.flow_table_size != d.model.flow_table_size {
            return Err(DataplaneError::Reload {
                why: format!(
                    "[limits] flow_table_size cannot change while running ({} -> {}): restart pl run",
                    d.model.flow_table_size, new.flow_table_size
                ),
            });
        }
        let model = new
            .align(&d.model)
            .map_err(|why| DataplaneError::Reload { why })?;
        let was_live = |i: usize| d.model.networks.get(i).is_some_and(|n| !n.removed);
        let added: Vec<Attached> = model
            .networks
            .iter()
            .zip(0u32..)
            .filter(|(n, i)| !n.removed && !was_live(*i as usize))
            .map(|(n, slot)| Attached {
                name: n.interface.clone(),
                ifindex: n.ifindex,
                slot,
            })
            .collect();
        let gone: Vec<u32> = model
            .networks
            .iter()
            .zip(&d.model.networks)
            .filter(|(n, p)| n.removed && !p.removed)
            .map(|(_, p)| p.ifindex)
            .collect();
        let resolver = Resolver::new(&model).map_err(|source| DataplaneError::Arp { source })?;
        let plan = Plan::build(&model, &neigh::learned(ebpf, &model));
        apply(ebpf, &plan, Some(&d.plan)).map_err(|source| DataplaneError::Apply { source })?;
        match attach_all(ebpf, &added, *mode) {
            Ok(new_links) => links.extend(new_links),
            Err(e) => {
                let _ = apply(ebpf, &d.plan, Some(&plan));
                return Err(e);
            }
        }
        let prog = program(ebpf);
        for ifindex in &gone {
            if let Some(i) = links.iter().position(|(x, _)| x == ifindex) {
                let (_, link) = links.remove(i);
                let _ = prog.detach(link);
            }
        }
        ifaces.retain(|a| !gone.contains(&a.ifindex));
        ifaces.extend(added.iter().cloned());
        let count = |f: &dyn Fn(&Model) -> usize| (f(&model), f(&d.model));
        let (eps, eps_before) = count(&|m| m.endpoints.iter().filter(|e| !e.removed).count());
        let (svcs, svcs_before) = count(&|m| m.services.iter().filter(|s| !s.removed).count());
        let (tgts, tgts_before) = count(&|m| {
            m.services
                .iter()
                .filter(|s| !s.removed)
                .map(|s| s.targets.len())
                .sum()
        });
        let summary = format!(
            "reloaded: {} networks (+{} -{}), services {svcs_before} -> {svcs}, endpoints {eps_before} -> {eps}, targets {tgts_before} -> {tgts}",
            ifaces.len(),
            added.len(),
            gone.len()
        );
        d.model = model;
        d.plan = plan;
        d.resolver = resolver;
        Ok(summary)
    }

    pub fn has_data_path(&self) -> bool {
        self.data.is_some()
    }

    /// A one-screen summary of what is programmed.
    pub fn summary(&self) -> String {
        use std::fmt::Write as _;
        let Some(d) = self.data.as_ref() else {
            return String::new();
        };
        let m = &d.model;
        let mut out = String::new();
        for n in m.networks.iter().filter(|n| !n.removed) {
            let _ = writeln!(
                out,
                "  network  {:<14} on {} ({})",
                n.name,
                n.interface,
                mac_str(n.mac)
            );
        }
        for s in m.services.iter().filter(|s| !s.removed) {
            let nlbs: Vec<String> = s
                .nlbs
                .iter()
                .map(|(ip, z)| format!("{ip} ({})", m.zones[usize::from(*z)]))
                .collect();
            let listeners: Vec<String> = s
                .listeners
                .iter()
                .map(|l| {
                    format!(
                        "{}/{}->{}",
                        if l.proto == 6 { "tcp" } else { "udp" },
                        l.port,
                        l.target_port
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                "  service  {:<14} in {} NLB {} listeners {}{}",
                s.name,
                m.networks[usize::from(s.network)].name,
                nlbs.join(", "),
                listeners.join(", "),
                if s.cross_zone { " cross-zone" } else { "" }
            );
            for t in target_reports(d).iter().filter(|t| t.service == s.name) {
                let _ = writeln!(
                    out,
                    "    target {} ({}) {}",
                    t.ip,
                    t.zone,
                    t.mac.as_deref().unwrap_or("unresolved")
                );
            }
        }
        for e in m.endpoints.iter().filter(|e| !e.removed) {
            let addrs: Vec<String> = e
                .addrs
                .iter()
                .map(|(ip, z)| format!("{ip} ({})", m.zones[usize::from(*z)]))
                .collect();
            let _ = writeln!(
                out,
                "  endpoint {:<14} in {} -> {} at {}{}",
                e.name,
                m.networks[usize::from(e.network)].name,
                m.services[usize::from(e.service)].name,
                addrs.join(", "),
                if e.accepted {
                    ""
                } else {
                    " (pending acceptance)"
                }
            );
        }
        out
    }

    /// Asks ARP for every target again (to resolve new ones and notice changed MACs).
    /// Problems come back as log lines.
    pub fn probe_targets(&self) -> Vec<String> {
        self.data
            .as_ref()
            .map(|d| d.resolver.probe(&d.model))
            .unwrap_or_default()
    }

    /// Picks up MACs the program learned; re-plans and applies what changed. Returns the
    /// targets that became resolved.
    pub fn refresh_targets(&mut self) -> Result<Vec<String>, DataplaneError> {
        let Some(d) = self.data.as_mut() else {
            return Ok(Vec::new());
        };
        let neigh = neigh::learned(&self.ebpf, &d.model);
        let plan = Plan::build(&d.model, &neigh);
        if plan == d.plan {
            return Ok(Vec::new());
        }
        apply(&mut self.ebpf, &plan, Some(&d.plan))
            .map_err(|source| DataplaneError::Apply { source })?;
        let newly = plan
            .targets
            .iter()
            .zip(&d.plan.targets)
            .filter(|((_, n), (_, o))| n.mac != o.mac)
            .map(|((_, n), _)| {
                format!(
                    "{} at {}",
                    Ipv4Addr::from(n.addr_be.to_ne_bytes()),
                    mac_str(n.mac)
                )
            })
            .collect();
        d.plan = plan;
        Ok(newly)
    }

    /// Targets with no MAC yet, as addresses.
    pub fn unresolved_targets(&self) -> Vec<Ipv4Addr> {
        let Some(d) = self.data.as_ref() else {
            return Vec::new();
        };
        d.plan
            .targets
            .iter()
            .filter(|(_, t)| t.mac == [0; 6])
            .map(|(_, t)| Ipv4Addr::from(t.addr_be.to_ne_bytes()))
            .collect()
    }

    /// Removes idle flows (freeing their SNAT ports); how many.
    pub fn sweep_flows(&mut self) -> u64 {
        let Some(d) = self.data.as_ref() else {
            return 0;
        };
        flows::sweep(&mut self.ebpf, &d.model.settings)
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn interfaces(&self) -> &[Attached] {
        &self.ifaces
    }

    /// Every interface's and endpoint's counters, summed over CPUs; live flows per endpoint
    /// too if `flows` (that walks the flow table).
    pub fn stats(&self, flows: bool) -> Result<StatsReport, DataplaneError> {
        let interfaces = self
            .ifaces
            .iter()
            .map(|i| {
                Ok(IfaceReport::new(
                    &i.name,
                    i.ifindex,
                    self.mode.name(),
                    &iface_stats(&self.ebpf, i.slot)?,
                ))
            })
            .collect::<Result<_, DataplaneError>>()?;
        let (endpoints, targets) = match &self.data {
            None => (Vec::new(), Vec::new()),
            Some(d) => (self.endpoint_reports(d, flows)?, target_reports(d)),
        };
        Ok(StatsReport {
            interfaces,
            endpoints,
            targets,
        })
    }

    fn endpoint_reports(
        &self,
        d: &DataPath,
        count_flows: bool,
    ) -> Result<Vec<EndpointReport>, DataplaneError> {
        // Live flows counted now, not at the last sweep, so a new flow shows at once.
        let active = if count_flows {
            flows::count(&self.ebpf)
        } else {
            Default::default()
        };
        d.model
            .endpoints
            .iter()
            .zip(0u16..)
            .filter(|(e, _)| !e.removed)
            .map(|(e, id)| {
                Ok(EndpointReport::new(
                    &e.name,
                    &d.model.services[usize::from(e.service)].name,
                    &d.model.networks[usize::from(e.network)].name,
                    &endpoint_stats(&self.ebpf, id)?,
                    active.get(&id).copied().unwrap_or(0),
                ))
            })
            .collect()
    }
}

fn target_reports(d: &DataPath) -> Vec<TargetReport> {
    d.model
        .services
        .iter()
        .filter(|s| !s.removed)
        .flat_map(|s| {
            s.targets.iter().map(|t| {
                let mac = d
                    .plan
                    .targets
                    .iter()
                    .find(|(id, _)| *id == t.id)
                    .map(|(_, i)| i.mac)
                    .unwrap_or_default();
                TargetReport {
                    service: s.name.clone(),
                    ip: t.ip,
                    zone: d.model.zones[usize::from(t.zone)].clone(),
                    mac: (mac != [0; 6]).then(|| mac_str(mac)),
                }
            })
        })
        .collect()
}

pub fn mac_str(m: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}
