//! Apply: write a plan into the maps, only what differs from the plan last applied (the
//! shadow), so a neighbour change rewrites one Maglev table, not everything.

use aya::{
    Ebpf,
    maps::{Array, HashMap, LpmTrie, MapData, MapError, lpm_trie::Key, xdp::DevMap},
};
use pl_common::{
    endpoint::{AddrInfo, AddrKey, AddrKey6, SourceKey, SourceKey6},
    iface::{IfaceConfig, NetInfo},
    maglev::MAGLEV_SIZE,
    maps::{
        ADDRS_MAP, ADDRS6_MAP, EGRESS_MAP, IFACES_MAP, MAGLEV_MAP, NET_INFO_MAP, POLICY_MAP,
        POLICY6_MAP, SETTINGS_MAP, SOURCES_MAP, SOURCES6_MAP, TARGETS_MAP, TARGETS6_MAP,
    },
    policy::{Policy, Policy6, PolicyKey, PolicyKey6},
    service::TargetInfo,
    settings::Settings,
};

use crate::plan::Plan;

#[derive(Debug, thiserror::Error)]
#[error("writing map {map}: {source}")]
pub struct ApplyError {
    pub map: &'static str,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

fn map<'a, T: TryFrom<&'a mut aya::maps::Map, Error = MapError>>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<T, ApplyError> {
    let m = ebpf
        .map_mut(name)
        .unwrap_or_else(|| panic!("the embedded object has no map {name}"));
    T::try_from(m).map_err(|e| ApplyError {
        map: name,
        source: Box::new(e),
    })
}

/// Every IPv6 map `plan` has entries for is in the object: checked before anything is
/// written, so a config with IPv6 addresses meeting an object built before IPv6 is refused
/// naming the map, with nothing half-written. (An IPv4-only config runs on such an object.)
fn require_v6(ebpf: &Ebpf, plan: &Plan) -> Result<(), ApplyError> {
    let needed = [
        (ADDRS6_MAP, plan.addrs6.is_empty()),
        (POLICY6_MAP, plan.policies6.is_empty()),
        (SOURCES6_MAP, plan.sources6.is_empty()),
        (TARGETS6_MAP, plan.targets6.is_empty()),
    ];
    for (name, empty) in needed {
        if !empty && ebpf.map(name).is_none() {
            return Err(ApplyError {
                map: name,
                source: "the eBPF object has no such map, and the config has IPv6 addresses".into(),
            });
        }
    }
    Ok(())
}

/// An IPv6 map; None when the object lacks it (then `require_v6` saw that the plan needs
/// nothing there, and nothing was ever written to it).
fn map6<'a, T: TryFrom<&'a mut aya::maps::Map, Error = MapError>>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<Option<T>, ApplyError> {
    if ebpf.map(name).is_none() {
        return Ok(None);
    }
    map(ebpf, name).map(Some)
}

fn err<E: std::error::Error + Send + Sync + 'static>(
    map: &'static str,
) -> impl Fn(E) -> ApplyError {
    move |e| ApplyError {
        map,
        source: Box::new(e),
    }
}

/// Entries of `new` that are not in `old` (by key and value).
fn changed<'a, K: PartialEq, V: PartialEq>(
    new: &'a [(K, V)],
    old: Option<&'a [(K, V)]>,
) -> impl Iterator<Item = &'a (K, V)> {
    new.iter()
        .filter(move |e| old.is_none_or(|o| !o.contains(e)))
}

/// Keys of `old` that `new` no longer has.
fn removed<'a, K: PartialEq, V>(
    new: &'a [(K, V)],
    old: Option<&'a [(K, V)]>,
) -> impl Iterator<Item = &'a K> {
    old.unwrap_or_default()
        .iter()
        .map(|(k, _)| k)
        .filter(move |k| !new.iter().any(|(n, _)| n == *k))
}

/// Writes `plan`, given that `old` (if any) is what the maps hold now.
pub fn apply(ebpf: &mut Ebpf, plan: &Plan, old: Option<&Plan>) -> Result<(), ApplyError> {
    require_v6(ebpf, plan)?;
    write_settings(ebpf, plan, old)?;
    write_interfaces(ebpf, plan, old)?;
    write_egress(ebpf, plan, old)?;
    // Targets and tables before the policies that lead new flows to them.
    write_targets(ebpf, plan, old)?;
    write_maglev(ebpf, plan, old)?;
    write_endpoints(ebpf, plan, old)
}

fn write_settings(ebpf: &mut Ebpf, plan: &Plan, old: Option<&Plan>) -> Result<(), ApplyError> {
    let mut settings: Array<&mut MapData, Settings> = map(ebpf, SETTINGS_MAP)?;
    if old.is_none_or(|o| o.settings != plan.settings) {
        settings
            .set(0, plan.settings, 0)
            .map_err(err(SETTINGS_MAP))?;
    }
    Ok(())
}

/// Networks' MTUs and MACs, then the interfaces.
fn write_interfaces(ebpf: &mut Ebpf, plan: &Plan, old: Option<&Plan>) -> Result<(), ApplyError> {
    // Before the interfaces whose MTU floor points at them.
    let mut m: Array<&mut MapData, NetInfo> = map(ebpf, NET_INFO_MAP)?;
    for (k, v) in changed(&plan.nets, old.map(|o| &o.nets[..])) {
        m.set(*k, *v, 0).map_err(err(NET_INFO_MAP))?;
    }
    for k in removed(&plan.nets, old.map(|o| &o.nets[..])) {
        m.set(*k, NetInfo::default(), 0)
            .map_err(err(NET_INFO_MAP))?;
    }

    let mut m: Array<&mut MapData, IfaceConfig> = map(ebpf, IFACES_MAP)?;
    for (k, v) in changed(&plan.ifaces, old.map(|o| &o.ifaces[..])) {
        m.set(*k, v, 0).map_err(err(IFACES_MAP))?;
    }
    for k in removed(&plan.ifaces, old.map(|o| &o.ifaces[..])) {
        m.set(*k, IfaceConfig::default(), 0)
            .map_err(err(IFACES_MAP))?;
    }
    Ok(())
}

fn write_egress(ebpf: &mut Ebpf, plan: &Plan, old: Option<&Plan>) -> Result<(), ApplyError> {
    let mut m: DevMap<&mut MapData> = map(ebpf, EGRESS_MAP)?;
    for (k, v) in changed(&plan.egress, old.map(|o| &o.egress[..])) {
        m.set(*k, *v, None, 0).map_err(err(EGRESS_MAP))?;
    }
    // A removed network's slot sends nowhere.
    let data = ebpf.map(EGRESS_MAP).and_then(|m| match m {
        aya::maps::Map::DevMap(d) => Some(d),
        _ => None,
    });
    if let Some(d) = data {
        for k in removed(&plan.egress, old.map(|o| &o.egress[..])) {
            crate::batch::delete(d, k).map_err(err(EGRESS_MAP))?;
        }
    }
    Ok(())
}

/// Addresses, allowed sources, then the policies (a new source list is in place before
/// a policy says to look at it); each IPv4's map, then IPv6's.
fn write_endpoints(ebpf: &mut Ebpf, plan: &Plan, old: Option<&Plan>) -> Result<(), ApplyError> {
    let mut m: HashMap<&mut MapData, AddrKey, AddrInfo> = map(ebpf, ADDRS_MAP)?;
    for (k, v) in changed(&plan.addrs, old.map(|o| &o.addrs[..])) {
        m.insert(k, v, 0).map_err(err(ADDRS_MAP))?;
    }
    for k in removed(&plan.addrs, old.map(|o| &o.addrs[..])) {
        m.remove(k).map_err(err(ADDRS_MAP))?;
    }
    if let Some(mut m) = map6::<HashMap<&mut MapData, AddrKey6, AddrInfo>>(ebpf, ADDRS6_MAP)? {
        for (k, v) in changed(&plan.addrs6, old.map(|o| &o.addrs6[..])) {
            m.insert(k, v, 0).map_err(err(ADDRS6_MAP))?;
        }
        for k in removed(&plan.addrs6, old.map(|o| &o.addrs6[..])) {
            m.remove(k).map_err(err(ADDRS6_MAP))?;
        }
    }

    let mut m: LpmTrie<&mut MapData, SourceKey, u8> = map(ebpf, SOURCES_MAP)?;
    for (len, data) in changed(&plan.sources, old.map(|o| &o.sources[..])) {
        m.insert(&Key::new(*len, *data), 1, 0)
            .map_err(err(SOURCES_MAP))?;
    }
    for (len, data) in old
        .map(|o| &o.sources[..])
        .unwrap_or_default()
        .iter()
        .filter(|e| !plan.sources.contains(e))
    {
        m.remove(&Key::new(*len, *data)).map_err(err(SOURCES_MAP))?;
    }
    if let Some(mut m) = map6::<LpmTrie<&mut MapData, SourceKey6, u8>>(ebpf, SOURCES6_MAP)? {
        for (len, data) in changed(&plan.sources6, old.map(|o| &o.sources6[..])) {
            m.insert(&Key::new(*len, *data), 1, 0)
                .map_err(err(SOURCES6_MAP))?;
        }
        for (len, data) in old
            .map(|o| &o.sources6[..])
            .unwrap_or_default()
            .iter()
            .filter(|e| !plan.sources6.contains(e))
        {
            m.remove(&Key::new(*len, *data))
                .map_err(err(SOURCES6_MAP))?;
        }
    }

    let mut m: HashMap<&mut MapData, PolicyKey, Policy> = map(ebpf, POLICY_MAP)?;
    for (k, v) in changed(&plan.policies, old.map(|o| &o.policies[..])) {
        m.insert(k, v, 0).map_err(err(POLICY_MAP))?;
    }
    for k in removed(&plan.policies, old.map(|o| &o.policies[..])) {
        m.remove(k).map_err(err(POLICY_MAP))?;
    }
    if let Some(mut m) = map6::<HashMap<&mut MapData, PolicyKey6, Policy6>>(ebpf, POLICY6_MAP)? {
        for (k, v) in changed(&plan.policies6, old.map(|o| &o.policies6[..])) {
            m.insert(k, v, 0).map_err(err(POLICY6_MAP))?;
        }
        for k in removed(&plan.policies6, old.map(|o| &o.policies6[..])) {
            m.remove(k).map_err(err(POLICY6_MAP))?;
        }
    }
    Ok(())
}

/// IPv6 targets' addresses before the `PL_TARGETS` entries whose MAC makes them usable.
fn write_targets(ebpf: &mut Ebpf, plan: &Plan, old: Option<&Plan>) -> Result<(), ApplyError> {
    if let Some(mut m) = map6::<Array<&mut MapData, [u8; 16]>>(ebpf, TARGETS6_MAP)? {
        for (k, v) in changed(&plan.targets6, old.map(|o| &o.targets6[..])) {
            m.set(*k, v, 0).map_err(err(TARGETS6_MAP))?;
        }
    }
    let mut m: Array<&mut MapData, TargetInfo> = map(ebpf, TARGETS_MAP)?;
    for (k, v) in changed(&plan.targets, old.map(|o| &o.targets[..])) {
        m.set(*k, v, 0).map_err(err(TARGETS_MAP))?;
    }
    Ok(())
}

fn write_maglev(ebpf: &Ebpf, plan: &Plan, old: Option<&Plan>) -> Result<(), ApplyError> {
    // Only the slots that differ, in batches: a table has 65537 of them, and a target that
    // comes or goes moves about 1/n.
    let Some(aya::maps::Map::Array(data)) = ebpf.map(MAGLEV_MAP) else {
        return Err(err(MAGLEV_MAP)(std::io::Error::other(
            "missing, or not an array",
        )));
    };
    for (table, slots) in changed(&plan.maglev, old.map(|o| &o.maglev[..])) {
        let base = table * MAGLEV_SIZE as u32;
        let before = old.and_then(|o| o.maglev.iter().find(|(t, _)| t == table).map(|(_, s)| s));
        let (keys, values): (Vec<u32>, Vec<u32>) = slots
            .iter()
            .zip(0u32..)
            .filter(|(v, i)| before.is_none_or(|b| b[*i as usize] != **v))
            .map(|(v, i)| (base + i, *v))
            .unzip();
        crate::batch::update(data, &keys, &values).map_err(err(MAGLEV_MAP))?;
    }
    Ok(())
}
