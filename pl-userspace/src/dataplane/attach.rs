//! Attaching the program: one pinned bpf_link per interface, a new one or the one a
//! previous run left with the program swapped in, and the checks that an interface can
//! carry pl in the mode asked for.

use std::path::PathBuf;

use aya::{
    Ebpf,
    programs::{
        ProgramError, Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        xdp::XdpLink,
    },
};

use super::{Attached, DataplaneError, Mode, load::program};
use crate::{
    errno,
    state::{Saved, State},
    xdpfeat,
};

const fn xdp_mode(mode: Mode) -> XdpMode {
    match mode {
        Mode::Native => XdpMode::Driver,
        Mode::Skb => XdpMode::Skb,
    }
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
pub(super) fn attach_all(
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
    let mut attach = || {
        for iface in &new {
            made.push(attach_pinned(prog, iface, mode, state)?);
        }
        for iface in &existing {
            made.extend(swap(prog, iface, mode, state)?);
        }
        Ok(())
    };
    let result = attach();
    if result.is_err() {
        for p in &made {
            let _ = std::fs::remove_file(p);
        }
    }
    result
}

/// Attaches as [`attach_all`] does, after unpinning the links `prior` left that cannot take
/// this program (`--fresh` in another mode); then unpins the links of interfaces no longer
/// in `ifaces`.
pub(super) fn relink(
    ebpf: &mut Ebpf,
    ifaces: &[Attached],
    mode: Mode,
    forwards: bool,
    state: &State,
    prior: Option<&Saved>,
) -> Result<(), DataplaneError> {
    if let Some(p) = prior.filter(|p| p.mode != mode) {
        p.interfaces
            .iter()
            .for_each(|i| unpin_link(state, i.ifindex));
    }
    attach_all(ebpf, ifaces, mode, forwards, state)?;
    for gone in prior.iter().flat_map(|p| &p.interfaces) {
        if !ifaces.iter().any(|i| i.ifindex == gone.ifindex) {
            unpin_link(state, gone.ifindex);
        }
    }
    Ok(())
}

/// Swaps the program into `iface`'s pinned link. If that link is defunct (the interface
/// went away and came back under the same ifindex), attaches a new one instead and
/// returns its pin.
fn swap(
    prog: &mut Xdp,
    iface: &Attached,
    mode: Mode,
    state: &State,
) -> Result<Option<PathBuf>, DataplaneError> {
    type BoxError = Box<dyn std::error::Error + Send + Sync>;
    let path = state.link_pin(iface.ifindex);
    let swapped = PinnedLink::from_pin(&path)
        .map_err(BoxError::from)
        .and_then(|pinned| Ok(XdpLink::try_from(FdLink::from(pinned))?))
        .and_then(|link| Ok(prog.attach_to_link(link)?))
        // Our fd closes; the pin holds the link.
        .and_then(|id| Ok(prog.take_link(id).map(drop)?));
    match swapped {
        Ok(()) => Ok(None),
        Err(e) if errno::find(e.as_ref()) == Some(libc::ENOLINK) => {
            let _ = std::fs::remove_file(&path);
            attach_pinned(prog, iface, mode, state).map(Some)
        }
        Err(source) => Err(DataplaneError::Swap {
            name: iface.name.clone(),
            path,
            source,
        }),
    }
}

/// Attaches a new link to `iface` and pins it; on error nothing stays attached.
fn attach_pinned(
    prog: &mut Xdp,
    iface: &Attached,
    mode: Mode,
    state: &State,
) -> Result<PathBuf, DataplaneError> {
    let path = state.link_pin(iface.ifindex);
    let pin_err = |cause: String| DataplaneError::Pin {
        what: format!("interface {}'s link", iface.name),
        path: path.clone(),
        cause,
    };
    let id = prog
        .attach_to_if_index(iface.ifindex, xdp_mode(mode))
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
pub(super) fn unpin_link(state: &State, ifindex: u32) {
    let _ = std::fs::remove_file(state.link_pin(ifindex));
}
