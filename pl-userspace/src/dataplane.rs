//! Loading the XDP object, attaching it, and reading its counters.
//!
//! Attaching is all-or-nothing: interface names are resolved before anything is loaded,
//! and if any interface refuses the program, the ones already attached are detached when
//! the half-built [`Dataplane`] drops (aya detaches its links on drop).

use std::collections::HashSet;

use aya::{
    Ebpf,
    maps::{HashMap, MapError, PerCpuArray},
    programs::{ProgramError, Xdp, XdpMode},
};
use pl_common::{
    iface::IfaceConfig,
    maps::{IFACE_STATS_MAP, IFACES_MAP, MAX_IFACES, PROGRAM_NAME},
    stats::IfaceStats,
};

use crate::{
    errno,
    stats::{IfaceReport, StatsReport},
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
    // Field order matters for drop: nothing else holds the links.
    ebpf: Ebpf,
    mode: Mode,
    ifaces: Vec<Attached>,
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
            Ok((name.clone(), ifindex))
        })
        .collect()
}

/// Loads the embedded object and its program, attaching nothing.
pub fn load() -> Result<Ebpf, DataplaneError> {
    let classify = |e: Box<dyn std::error::Error + Send + Sync>| {
        if errno::find(e.as_ref()) == Some(libc::EPERM) {
            DataplaneError::Permission { source: e }
        } else {
            DataplaneError::Load { source: e }
        }
    };
    let mut ebpf = Ebpf::load(crate::EBPF_OBJECT).map_err(|e| classify(Box::new(e)))?;
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

/// Registers interfaces in the program's interface map, slot `i` for the `i`th.
pub fn register(
    ebpf: &mut Ebpf,
    ifaces: &[(String, u32)],
) -> Result<Vec<Attached>, DataplaneError> {
    let mut map: HashMap<_, u32, IfaceConfig> = HashMap::try_from(
        ebpf.map_mut(IFACES_MAP)
            .unwrap_or_else(|| panic!("the embedded object has no map {IFACES_MAP}")),
    )
    .map_err(|source| DataplaneError::Map {
        map: IFACES_MAP,
        source: Box::new(source),
    })?;
    ifaces
        .iter()
        .zip(0u32..)
        .map(|((name, ifindex), slot)| {
            map.insert(
                ifindex,
                IfaceConfig {
                    slot,
                    ..IfaceConfig::default()
                },
                0,
            )
            .map_err(|source| DataplaneError::Map {
                map: IFACES_MAP,
                source: Box::new(source),
            })?;
            Ok(Attached {
                name: name.clone(),
                ifindex: *ifindex,
                slot,
            })
        })
        .collect()
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

impl Dataplane {
    /// Resolves `names`, loads the program and attaches it to every interface, or to none.
    pub fn start(names: &[String], mode: Mode) -> Result<Self, DataplaneError> {
        let resolved = resolve(names)?;
        let mut ebpf = load()?;
        let ifaces = register(&mut ebpf, &resolved)?;
        let prog = program(&mut ebpf);
        for iface in &ifaces {
            // On error `ebpf` drops here, detaching every link made so far.
            prog.attach_to_if_index(iface.ifindex, mode.xdp())
                .map_err(|source| DataplaneError::Attach {
                    name: iface.name.clone(),
                    mode,
                    cause: attach_cause(&iface.name, &source, mode),
                    source: Box::new(source),
                })?;
        }
        Ok(Self { ebpf, mode, ifaces })
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn interfaces(&self) -> &[Attached] {
        &self.ifaces
    }

    /// Every interface's counters, summed over CPUs.
    pub fn stats(&self) -> Result<StatsReport, DataplaneError> {
        let err = |source: MapError| DataplaneError::Map {
            map: IFACE_STATS_MAP,
            source: Box::new(source),
        };
        let map: PerCpuArray<_, IfaceStats> = PerCpuArray::try_from(
            self.ebpf
                .map(IFACE_STATS_MAP)
                .unwrap_or_else(|| panic!("the embedded object has no map {IFACE_STATS_MAP}")),
        )
        .map_err(err)?;
        let interfaces = self
            .ifaces
            .iter()
            .map(|i| {
                let mut total = IfaceStats::default();
                for cpu in map.get(&i.slot, 0).map_err(err)?.iter() {
                    total.accumulate(cpu);
                }
                Ok(IfaceReport::new(
                    &i.name,
                    i.ifindex,
                    self.mode.name(),
                    &total,
                ))
            })
            .collect::<Result<_, DataplaneError>>()?;
        Ok(StatsReport { interfaces })
    }
}
