//! Loading the XDP object, attaching it, and reading its counters.
//!
//! Every attachment is a bpf_link pinned in the instance's [`State`], beside the flow table:
//! stopping `pl run` leaves the data plane forwarding, and the next start swaps its program
//! into the same links (`bpf_link_update`, so no packet meets an interface without one) and
//! reuses the flow table. Attaching is all-or-nothing: interfaces are resolved before
//! anything is loaded, and if one refuses the program, the links this start made are
//! unpinned again before any existing link is touched. [`down`] removes it all.

use std::{collections::HashSet, net::Ipv4Addr};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, MapError, PerCpuArray, RingBuf},
    programs::{
        ProgramError, Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        xdp::XdpLink,
    },
};
use pl_common::{
    event::{EVENT_OPEN, FlowEvent},
    iface::{IFACE_ACTIVE, IfaceConfig},
    maps::{
        DEFAULT_FLOW_ENTRIES, ENDPOINT_STATS_MAP, EVENTS_MAP, FLOWS_MAP, IFACE_STATS_MAP,
        IFACES_MAP, MAX_IFACES, MAX_IFINDEX, PROBES_MAP, PROGRAM_NAME, TARGET_STATS_MAP, WATCH_MAP,
    },
    stats::{EndpointCounter, EndpointStats, IfaceStats},
};

use crate::{
    apply::{ApplyError, apply},
    errno, flows,
    health::{Checker, Flows, Probes},
    model::Model,
    neigh::{self, Resolver},
    plan::{Plan, Unhealthy},
    state::{KEPT_MAPS, Saved, State, StateError},
    stats::{EndpointReport, IfaceReport, StatsReport, TargetReport},
    xdpfeat,
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

/// One interface the program is attached to.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Attached {
    pub name: String,
    pub ifindex: u32,
    pub slot: u32,
}

/// The loaded program and its pinned links: dropping it leaves the data plane running.
pub struct Dataplane {
    ebpf: Ebpf,
    mode: Mode,
    ifaces: Vec<Attached>,
    state: State,
    data: Option<DataPath>,
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
    load_with(flow_entries, None)
}

/// As [`load_sized`]; with `kept`, the maps that outlive a run are taken from its pins
/// (and pinned there if missing).
fn load_with(flow_entries: Option<u32>, kept: Option<&State>) -> Result<Ebpf, DataplaneError> {
    let mut ebpf = open_maps(flow_entries, kept)?;
    program(&mut ebpf)
        .load()
        .map_err(|e| classify(Box::new(e)))?;
    Ok(ebpf)
}

/// A load error, told apart by whether it is a missing privilege.
fn classify(e: Box<dyn std::error::Error + Send + Sync>) -> DataplaneError {
    if errno::find(e.as_ref()) == Some(libc::EPERM) {
        DataplaneError::Permission { source: e }
    } else {
        DataplaneError::Load { source: e }
    }
}

/// The object's maps (the kept ones from `kept`'s pins), its program not loaded.
fn open_maps(flow_entries: Option<u32>, kept: Option<&State>) -> Result<Ebpf, DataplaneError> {
    let mut loader = EbpfLoader::new();
    if let Some(n) = flow_entries {
        loader.map_max_entries(FLOWS_MAP, n);
    }
    if let Some(state) = kept {
        for map in KEPT_MAPS {
            loader.map_pin_path(map, state.map_pin(map));
        }
    }
    loader
        .load(crate::EBPF_OBJECT)
        .map_err(|e| classify(Box::new(e)))
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
                "another XDP program is already attached (if another pl instance left it, `pl down --instance NAME` in this namespace removes it; if ip attached it, `ip link set dev {name} xdp off`)"
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

/// Attaches the loaded program to every interface, each by a link pinned in `state`: a
/// pinned link has its program swapped atomically, other interfaces get a new link. New
/// links come first, so a refusal unpins them and leaves every existing link as it was.
/// `forwards`: the program redirects between them (a config), not only counts.
fn attach_all(
    ebpf: &mut Ebpf,
    ifaces: &[Attached],
    mode: Mode,
    forwards: bool,
    state: &State,
) -> Result<(), DataplaneError> {
    for iface in ifaces {
        suited(iface, mode, forwards)?;
    }
    let prog = program(ebpf);
    let (existing, new): (Vec<&Attached>, Vec<&Attached>) = ifaces
        .iter()
        .partition(|i| state.link_pin(i.ifindex).exists());
    let mut made = Vec::new();
    let undo = |made: &[std::path::PathBuf]| {
        for p in made {
            let _ = std::fs::remove_file(p);
        }
    };
    for iface in &new {
        match attach_pinned(prog, iface, mode, state) {
            Ok(path) => made.push(path),
            Err(e) => {
                undo(&made);
                return Err(e);
            }
        }
    }
    for iface in &existing {
        let path = state.link_pin(iface.ifindex);
        type BoxError = Box<dyn std::error::Error + Send + Sync>;
        let swapped = PinnedLink::from_pin(&path)
            .map_err(BoxError::from)
            .and_then(|pinned| Ok(XdpLink::try_from(FdLink::from(pinned))?))
            .and_then(|link| Ok(prog.attach_to_link(link)?))
            // Our fd closes; the pin holds the link.
            .and_then(|id| Ok(prog.take_link(id).map(drop)?));
        match swapped {
            Ok(()) => {}
            // The interface went away and came back under the same ifindex: its old
            // link is defunct.
            Err(e) if errno::find(e.as_ref()) == Some(libc::ENOLINK) => {
                let _ = std::fs::remove_file(&path);
                match attach_pinned(prog, iface, mode, state) {
                    Ok(path) => made.push(path),
                    Err(e) => {
                        undo(&made);
                        return Err(e);
                    }
                }
            }
            Err(source) => {
                undo(&made);
                return Err(DataplaneError::Swap {
                    name: iface.name.clone(),
                    path,
                    source,
                });
            }
        }
    }
    Ok(())
}

/// Attaches a new link to `iface` and pins it; on error nothing stays attached.
fn attach_pinned(
    prog: &mut Xdp,
    iface: &Attached,
    mode: Mode,
    state: &State,
) -> Result<std::path::PathBuf, DataplaneError> {
    let path = state.link_pin(iface.ifindex);
    let pin_err = |cause: String| DataplaneError::Pin {
        what: format!("interface {}'s link", iface.name),
        path: path.clone(),
        cause,
    };
    let id = prog
        .attach_to_if_index(iface.ifindex, mode.xdp())
        .map_err(|source| DataplaneError::Attach {
            name: iface.name.clone(),
            mode,
            cause: attach_cause(&iface.name, &source, mode),
            source: Box::new(source),
        })?;
    // Dropped on error from here: the link closes and detaches.
    let link = prog.take_link(id).map_err(|e| pin_err(e.to_string()))?;
    let link =
        FdLink::try_from(link).map_err(|e| pin_err(format!("the kernel gave no bpf_link: {e}")))?;
    link.pin(&path).map_err(|e| pin_err(e.to_string()))?;
    Ok(path)
}

/// Refuses an interface whose driver (native mode) or offloads (generic mode) would make
/// pl drop or corrupt what it forwards, before anything is attached.
fn suited(iface: &Attached, mode: Mode, forwards: bool) -> Result<(), DataplaneError> {
    let unsuited = |why: String| DataplaneError::Unsuited {
        name: iface.name.clone(),
        why,
    };
    match mode {
        Mode::Native => {
            let mtu = crate::model::mtu_of(&iface.name).unwrap_or(0);
            let need = xdpfeat::Need {
                redirect: forwards,
                frags: mtu > xdpfeat::SINGLE_BUFFER_MTU,
            };
            match xdpfeat::check(&iface.name, iface.ifindex, need) {
                Ok(xdpfeat::Checked::Supported(_)) => Ok(()),
                Ok(xdpfeat::Checked::Unknown) => {
                    tracing::warn!(
                        "interface {}: this kernel cannot say which XDP features its driver has (no netdev netlink family); attaching anyway",
                        iface.name
                    );
                    Ok(())
                }
                Err(xdpfeat::XdpFeatureError::Unsupported {
                    features, missing, ..
                }) => Err(unsuited(format!(
                    "its driver lacks {} for native XDP (it advertises: {features}); `--skb` (generic mode) needs no driver support but is slower (every packet becomes an skb)",
                    missing.join(", ")
                ))),
                Err(e) => Err(unsuited(format!("asking its XDP features: {e}"))),
            }
        }
        Mode::Skb if forwards => match xdpfeat::generic_mode_problem(&iface.name) {
            Ok(None) => Ok(()),
            Ok(Some(why)) => Err(unsuited(why)),
            Err(e) => Err(unsuited(format!("reading its offloads (ethtool): {e}"))),
        },
        Mode::Skb => Ok(()),
    }
}

/// Detaches an interface by unpinning its link.
fn unpin_link(state: &State, ifindex: u32) {
    let _ = std::fs::remove_file(state.link_pin(ifindex));
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

/// The flow map (read) and the probe map, for the health checker.
fn health_maps(ebpf: &mut Ebpf) -> Result<(Flows<'_>, Probes<'_>), DataplaneError> {
    let [flows, probes] = ebpf.maps_disjoint_mut([FLOWS_MAP, PROBES_MAP]);
    let err = |map| {
        move |source| DataplaneError::Map {
            map,
            source: Box::new(source),
        }
    };
    let flows = flows.unwrap_or_else(|| panic!("the embedded object has no map {FLOWS_MAP}"));
    let probes = probes.unwrap_or_else(|| panic!("the embedded object has no map {PROBES_MAP}"));
    Ok((
        HashMap::try_from(&*flows).map_err(err(FLOWS_MAP))?,
        HashMap::try_from(probes).map_err(err(PROBES_MAP))?,
    ))
}

impl Dataplane {
    /// Resolves `names`, loads the program and attaches it to every interface, or to none.
    /// Observe mode: frames are counted and passed on.
    pub fn start(names: &[String], opts: StartOptions<'_>) -> Result<Self, DataplaneError> {
        let ifaces = resolve(names)?
            .into_iter()
            .zip(0u32..)
            .map(|((name, ifindex), slot)| Attached {
                name,
                ifindex,
                slot,
            })
            .collect();
        Self::boot(opts, None, ifaces)
    }

    /// Loads the program with the maps `model` implies and attaches it to every network's
    /// interface, or to none. Targets take flows once ARP has resolved them.
    pub fn start_model(model: Model, opts: StartOptions<'_>) -> Result<Self, DataplaneError> {
        Self::boot(opts, Some(model), Vec::new())
    }

    /// Takes over what the last run of the instance left (unless `opts.fresh`): its ids,
    /// flow table, learned MACs and counters, and its links, which get the new program.
    fn boot(
        opts: StartOptions<'_>,
        model: Option<Model>,
        observe: Vec<Attached>,
    ) -> Result<Self, DataplaneError> {
        let (state, warning) = State::open(opts.instance)?;
        if let Some(w) = warning {
            tracing::warn!("{w}");
        }
        let prior = state.saved()?;
        let flow_entries = model.as_ref().map_or(DEFAULT_FLOW_ENTRIES, |m| {
            m.flow_table_size.saturating_mul(2)
        });
        // Observe mode keeps nothing worth carrying into a config run, or back.
        let keep = !opts.fresh
            && prior
                .as_ref()
                .is_some_and(|p| p.model.is_some() == model.is_some());
        let restore = |why: String| DataplaneError::Restore { why };
        if let Some(p) = prior.as_ref() {
            if p.mode != opts.mode.name() && !opts.fresh {
                return Err(restore(format!(
                    "its links are in {} mode and a link keeps its mode; this run asks for {}",
                    p.mode,
                    opts.mode.name()
                )));
            }
            if keep && p.flow_entries != flow_entries {
                return Err(restore(format!(
                    "[limits] flow_table_size changed ({} -> {}) and a pinned flow table cannot be resized",
                    p.flow_entries / 2,
                    flow_entries / 2
                )));
            }
        }
        let model = match (model, prior.as_ref().and_then(|p| p.model.as_ref())) {
            (Some(m), Some(prev)) if keep => {
                Some(m.align(prev).map_err(|e| restore(e.to_string()))?)
            }
            (m, _) => m,
        };
        if keep {
            state.check_maps(flow_entries)?;
            if let Some(p) = prior
                .as_ref()
                .filter(|p| p.pl_version != env!("CARGO_PKG_VERSION"))
            {
                tracing::info!(
                    "taking over the data plane of pl {} (this is pl {}): its maps have the shapes this version uses",
                    p.pl_version,
                    env!("CARGO_PKG_VERSION")
                );
            }
        }
        let mut ebpf = load_with(Some(flow_entries), keep.then_some(&state))?;
        let (ifaces, data) = match model {
            Some(model) => {
                // Kept MACs count at once: new flows need not wait for ARP.
                let plan = Plan::build(&model, &neigh::learned(&ebpf, &model), &Unhealthy::new());
                apply(&mut ebpf, &plan, None).map_err(|source| DataplaneError::Apply { source })?;
                let mut health = Checker::default();
                health.sync(&model, &mut health_maps(&mut ebpf)?.1);
                let ifaces = model
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
                let resolver =
                    Resolver::new(&model).map_err(|source| DataplaneError::Arp { source })?;
                let revoked = prior
                    .as_ref()
                    .filter(|_| keep)
                    .map(|p| p.revoked.clone())
                    .unwrap_or_default();
                let data = DataPath {
                    model,
                    plan,
                    resolver,
                    health,
                    revoked,
                };
                (ifaces, Some(data))
            }
            None => {
                let names: Vec<(String, u32)> = observe
                    .iter()
                    .map(|a| (a.name.clone(), a.ifindex))
                    .collect();
                (register(&mut ebpf, &names)?, None)
            }
        };
        if let Some(p) = prior.as_ref().filter(|p| p.mode != opts.mode.name()) {
            // --fresh in another mode: the old links cannot take this program.
            p.interfaces
                .iter()
                .for_each(|i| unpin_link(&state, i.ifindex));
        }
        attach_all(&mut ebpf, &ifaces, opts.mode, data.is_some(), &state)?;
        for gone in prior.iter().flat_map(|p| &p.interfaces) {
            if !ifaces.iter().any(|i| i.ifindex == gone.ifindex) {
                unpin_link(&state, gone.ifindex);
            }
        }
        if !keep {
            state.unpin_maps()?;
            for map in KEPT_MAPS {
                let path = state.map_pin(map);
                ebpf.map(map)
                    .unwrap_or_else(|| panic!("the embedded object has no map {map}"))
                    .pin(&path)
                    .map_err(|e| DataplaneError::Pin {
                        what: format!("map {map}"),
                        path,
                        cause: e.to_string(),
                    })?;
            }
        }
        let dp = Self {
            ebpf,
            mode: opts.mode,
            ifaces,
            state,
            data,
        };
        dp.save(flow_entries)?;
        Ok(dp)
    }

    /// A read-only view of the data plane a stopped `pl run` of `instance` left in this
    /// network namespace: its pinned counters and flows, named by the saved model (target
    /// health is unknown). Loads no program and attaches nothing; None if nothing was left.
    pub fn left_behind(instance: &str) -> Result<Option<Self>, DataplaneError> {
        let state = State::locate(instance)?;
        let Some(saved) = state.saved()? else {
            return Ok(None);
        };
        state.check_maps(saved.flow_entries)?;
        let ebpf = open_maps(Some(saved.flow_entries), Some(&state))?;
        let mode = if saved.mode == Mode::Skb.name() {
            Mode::Skb
        } else {
            Mode::Native
        };
        let data = match saved.model {
            None => None,
            Some(model) => {
                let plan = Plan::build(&model, &neigh::learned(&ebpf, &model), &Unhealthy::new());
                let resolver =
                    Resolver::new(&model).map_err(|source| DataplaneError::Arp { source })?;
                Some(DataPath {
                    model,
                    plan,
                    resolver,
                    health: Checker::default(),
                    revoked: saved.revoked,
                })
            }
        };
        Ok(Some(Self {
            ebpf,
            mode,
            ifaces: saved.interfaces,
            state,
            data,
        }))
    }

    /// Records what runs now, for the next start to take over.
    fn save(&self, flow_entries: u32) -> Result<(), DataplaneError> {
        self.state.save(&Saved {
            pl_version: env!("CARGO_PKG_VERSION").to_owned(),
            mode: self.mode.name().to_owned(),
            interfaces: self.ifaces.clone(),
            flow_entries,
            model: self.data.as_ref().map(|d| d.model.clone()),
            revoked: self
                .data
                .as_ref()
                .map(|d| d.revoked.clone())
                .unwrap_or_default(),
        })?;
        Ok(())
    }

    /// Where the pinned maps and links live.
    pub fn state_dir(&self) -> &std::path::Path {
        self.state.dir()
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
            state,
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
            .map_err(|e| DataplaneError::Reload { why: e.to_string() })?;
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
        let plan = Plan::build(&model, &neigh::learned(ebpf, &model), &d.health.unhealthy());
        if let Err(source) = apply(ebpf, &plan, Some(&d.plan)) {
            // Put back what was written before the failure: the maps match the shadow again.
            let _ = apply(ebpf, &d.plan, Some(&plan));
            return Err(DataplaneError::Apply { source });
        }
        if let Err(e) = attach_all(ebpf, &added, *mode, true, state) {
            let _ = apply(ebpf, &d.plan, Some(&plan));
            return Err(e);
        }
        // Established flows the new config refuses go, as AWS cuts a rejected endpoint's
        // connections; the rest are untouched.
        let revoked = ebpf.map_mut(FLOWS_MAP).map_or_else(Vec::new, |m| {
            flows::revoke(m, |k, v| {
                !model.allows(
                    v.endpoint,
                    k.network,
                    Ipv4Addr::from(k.src_be.to_ne_bytes()),
                )
            })
        });
        for f in &revoked {
            let id = usize::from(f.forward.endpoint);
            if d.revoked.len() <= id {
                d.revoked.resize(id + 1, 0);
            }
            d.revoked[id] += 1;
        }
        for ifindex in &gone {
            unpin_link(state, *ifindex);
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
            "reloaded: {} networks (+{} -{}), services {svcs_before} -> {svcs}, endpoints {eps_before} -> {eps}, targets {tgts_before} -> {tgts}, {} flows revoked",
            ifaces.len(),
            added.len(),
            gone.len(),
            revoked.len()
        );
        d.health.sync(&model, &mut health_maps(ebpf)?.1);
        d.model = model;
        d.plan = plan;
        d.resolver = resolver;
        let flow_entries = d.model.flow_table_size.saturating_mul(2);
        self.save(flow_entries)?;
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
        let targets = target_reports(d, |_, _| Ok((0, 0))).unwrap_or_default();
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
            for t in targets.iter().filter(|t| t.service == s.name) {
                let _ = writeln!(
                    out,
                    "    target {} ({}){} {}",
                    t.ip,
                    t.zone,
                    t.via.map_or_else(String::new, |v| format!(" via {v}")),
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

    /// Runs the health checks that are due and reads answers; re-plans if a target went
    /// in or out of rotation. Returns what changed, as log lines.
    pub fn check_health(&mut self) -> Result<Vec<String>, DataplaneError> {
        let Some(d) = self.data.as_mut() else {
            return Ok(Vec::new());
        };
        let before = d.health.unhealthy();
        let macs = d.plan.targets.iter().map(|(id, t)| (*id, t.mac)).collect();
        let (flows, mut probes) = health_maps(&mut self.ebpf)?;
        let log = d.health.tick(
            &d.model,
            &d.model.settings,
            &macs,
            &d.resolver,
            &flows,
            &mut probes,
        );
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
            let ip = Ipv4Addr::from(n.addr_be.to_ne_bytes());
            if o.mac == [0; 6] {
                news.push(format!("{ip} at {}", mac_str(n.mac)));
            } else if let Some(network) = network_of(*id) {
                // It moved: its established flows follow, as new flows already do.
                moves.push((network, n.addr_be, n.mac, o.mac));
            }
        }
        if !moves.is_empty() {
            let m: Vec<(u16, u32, [u8; 6])> =
                moves.iter().map(|(n, a, m, _)| (*n, *a, *m)).collect();
            let followed = self
                .ebpf
                .map_mut(FLOWS_MAP)
                .map_or(0, |fm| flows::follow_mac(fm, &m));
            for (_, addr, new, old) in &moves {
                news.push(format!(
                    "{} moved from {} to {}",
                    Ipv4Addr::from(addr.to_ne_bytes()),
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

    /// Removes idle flows (freeing their SNAT ports); their close events.
    /// A sweep of the flow table to run off the control loop (it walks the whole table),
    /// through the table's pin; None in observe mode.
    pub fn sweep_job(
        &self,
    ) -> Option<impl FnOnce() -> Result<flows::Sweep, MapError> + Send + 'static> {
        let d = self.data.as_ref()?;
        let (pin, settings) = (self.state.map_pin(FLOWS_MAP), d.model.settings);
        Some(move || flows::sweep_pinned(&pin, &settings))
    }

    /// Close events for flows a sweep removed.
    pub fn close_events(&self, closed: &[flows::Flow]) -> Vec<flows::WatchEvent> {
        let Some(d) = self.data.as_ref() else {
            return Vec::new();
        };
        closed
            .iter()
            .filter_map(|f| {
                let mut e = watch_event(
                    &d.model,
                    "close",
                    f.key.proto,
                    f.forward.endpoint,
                    f.key.network,
                    (f.key.src_be, f.key.sport_be),
                    (f.key.dst_be, f.key.dport_be),
                )?;
                e.nlb = Some(f.nlb());
                e.target = Some(f.target());
                e.state = Some(f.state().to_owned());
                Some(e)
            })
            .collect()
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
        let err = |source: MapError| DataplaneError::Map {
            map: WATCH_MAP,
            source: Box::new(source),
        };
        let mut map: Array<_, u32> = Array::try_from(
            self.ebpf
                .map_mut(WATCH_MAP)
                .unwrap_or_else(|| panic!("the embedded object has no map {WATCH_MAP}")),
        )
        .map_err(err)?;
        map.set(0, u32::from(on), 0).map_err(err)
    }

    /// An event from the program, with names.
    pub fn event(&self, e: &FlowEvent) -> Option<flows::WatchEvent> {
        let d = self.data.as_ref()?;
        let kind = if e.kind == EVENT_OPEN {
            "open"
        } else {
            "refused"
        };
        let mut w = watch_event(
            &d.model,
            kind,
            e.proto,
            e.endpoint,
            e.network,
            (e.src_be, e.sport_be),
            (e.dst_be, e.dport_be),
        )?;
        if e.kind == EVENT_OPEN {
            w.nlb = Some(flows::addr(e.nlb_be, e.snat_port_be));
            w.target = Some(flows::addr(e.target_be, e.target_port_be));
        } else {
            let reason = EndpointCounter::ALL.get(usize::from(e.reason))?.name();
            w.reason = Some(reason.trim_start_matches("refused_").to_owned());
        }
        Some(w)
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
        // Live flows counted now, not at the last sweep, so a new flow shows at once.
        let live = if flows {
            flows::count(&self.ebpf)
        } else {
            flows::Counts::default()
        };
        self.stats_with(&live)
    }

    /// As [`Dataplane::stats`], with live flows as counted elsewhere (the last sweep's).
    pub fn stats_with(&self, live: &flows::Counts) -> Result<StatsReport, DataplaneError> {
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
            Some(d) => {
                let targets = target_reports(d, |id, key| {
                    Ok((
                        sum_per_cpu(&self.ebpf, TARGET_STATS_MAP, id, |a, b| *a += b)?,
                        live.by_target.get(&key).copied().unwrap_or(0),
                    ))
                })?;
                (self.endpoint_reports(d, live)?, targets)
            }
        };
        Ok(StatsReport {
            interfaces,
            endpoints,
            targets,
        })
    }

    /// The live flows that pass `filter`, with names.
    pub fn flows(
        &self,
        filter: &crate::control::FlowFilter,
    ) -> Result<Vec<flows::FlowReport>, DataplaneError> {
        let Some(d) = self.data.as_ref() else {
            return Ok(Vec::new());
        };
        let m = &d.model;
        let unknown = |what, name: &String| DataplaneError::Unknown {
            what,
            name: name.clone(),
        };
        if let Some(e) = &filter.endpoint
            && !m.endpoints.iter().any(|x| !x.removed && x.name == *e)
        {
            return Err(unknown("endpoint", e));
        }
        if let Some(s) = &filter.service
            && !m.services.iter().any(|x| !x.removed && x.name == *s)
        {
            return Err(unknown("service", s));
        }
        let now = flows::now_ns();
        let mut out: Vec<flows::FlowReport> = flows::list(&self.ebpf)
            .into_iter()
            .filter_map(|f| {
                let e = m.endpoints.get(usize::from(f.forward.endpoint))?;
                let last = f.reply.map_or(f.forward.last_seen_ns, |r| {
                    r.last_seen_ns.max(f.forward.last_seen_ns)
                });
                let r = f.reply.unwrap_or_default();
                Some(flows::FlowReport {
                    proto: if f.key.proto == pl_common::proto::IPPROTO_TCP {
                        "tcp"
                    } else {
                        "udp"
                    }
                    .to_owned(),
                    network: m.networks[usize::from(f.key.network)].name.clone(),
                    endpoint: e.name.clone(),
                    service: m.services[usize::from(e.service)].name.clone(),
                    consumer: flows::addr(f.key.src_be, f.key.sport_be),
                    endpoint_addr: flows::addr(f.key.dst_be, f.key.dport_be),
                    nlb: f.nlb(),
                    target: f.target(),
                    state: f.state().to_owned(),
                    age_s: (now / 1_000_000_000).saturating_sub(u64::from(f.forward.created_s)),
                    idle_s: now.saturating_sub(last) / 1_000_000_000,
                    to_provider_packets: u64::from(f.forward.packets),
                    to_provider_bytes: f.forward.bytes,
                    to_consumer_packets: u64::from(r.packets),
                    to_consumer_bytes: r.bytes,
                })
            })
            .filter(|f| filter.matches(f))
            .collect();
        out.sort_by(|a, b| (&a.endpoint, a.consumer).cmp(&(&b.endpoint, b.consumer)));
        Ok(out)
    }

    fn endpoint_reports(
        &self,
        d: &DataPath,
        active: &flows::Counts,
    ) -> Result<Vec<EndpointReport>, DataplaneError> {
        d.model
            .endpoints
            .iter()
            .zip(0u16..)
            .filter(|(e, _)| !e.removed)
            .map(|(e, id)| {
                let mut stats = endpoint_stats(&self.ebpf, id)?;
                stats.counters[EndpointCounter::Revoked as usize] +=
                    d.revoked.get(usize::from(id)).copied().unwrap_or(0);
                Ok(EndpointReport::new(
                    &e.name,
                    &d.model.services[usize::from(e.service)].name,
                    &d.model.networks[usize::from(e.network)].name,
                    &stats,
                    active.by_endpoint.get(&id).copied().unwrap_or(0),
                ))
            })
            .collect()
    }
}

/// A watch event with the names of `endpoint` and `network`, or None if the model has no
/// such endpoint.
fn watch_event(
    m: &Model,
    event: &str,
    proto: u8,
    endpoint: u16,
    network: u16,
    consumer: (u32, u16),
    endpoint_addr: (u32, u16),
) -> Option<flows::WatchEvent> {
    let e = m.endpoints.get(usize::from(endpoint))?;
    Some(flows::WatchEvent {
        event: event.to_owned(),
        proto: proto_name(proto).to_owned(),
        endpoint: e.name.clone(),
        service: m.services.get(usize::from(e.service))?.name.clone(),
        network: m.networks.get(usize::from(network))?.name.clone(),
        consumer: flows::addr(consumer.0, consumer.1),
        endpoint_addr: flows::addr(endpoint_addr.0, endpoint_addr.1),
        nlb: None,
        target: None,
        reason: None,
        state: None,
    })
}

fn proto_name(proto: u8) -> &'static str {
    if proto == pl_common::proto::IPPROTO_TCP {
        "tcp"
    } else {
        "udp"
    }
}

/// Every target with its MAC and health; `flows` gives its (new, live) flow counts from
/// its id, provider network and address.
/// A report per (service, target); `flows` gives a target's new and live flows from its
/// id and its [`flows::TargetKey`] (a target several services share has one per service).
fn target_reports(
    d: &DataPath,
    flows: impl Fn(u32, flows::TargetKey) -> Result<(u64, u64), DataplaneError>,
) -> Result<Vec<TargetReport>, DataplaneError> {
    d.model
        .services
        .iter()
        .zip(0u16..)
        .filter(|(s, _)| !s.removed)
        .flat_map(|(s, sid)| s.targets.iter().map(move |t| (s, sid, t)))
        .map(|(s, sid, t)| {
            let mac = d
                .plan
                .targets
                .iter()
                .find(|(id, _)| *id == t.id)
                .map(|(_, i)| i.mac)
                .unwrap_or_default();
            let h = d.health.target(t.id);
            // Its flows come from the NLB address of its zone, one per service.
            let nlb = s
                .nlbs
                .iter()
                .find(|(_, z)| *z == t.zone)
                .map_or(Ipv4Addr::UNSPECIFIED, |(a, _)| *a);
            let key = (s.network, crate::plan::be(nlb), crate::plan::be(t.ip));
            let (new_flows, active_flows) = flows(t.id, key)?;
            Ok(TargetReport {
                service: s.name.clone(),
                ip: t.ip,
                zone: d.model.zones[usize::from(t.zone)].clone(),
                via: t.via,
                mac: (mac != [0; 6]).then(|| mac_str(mac)),
                health: h.map_or("unknown", |h| h.health.name()).to_owned(),
                last_check: h.map_or("none", |h| h.last).to_owned(),
                service_failing_open: d.health.failing_open(sid),
                new_flows,
                active_flows,
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
