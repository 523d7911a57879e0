//! The flow table seen from userspace: the idle sweep that frees SNAT ports, and the
//! count of live flows per endpoint.

use std::collections::HashMap as StdHashMap;

use aya::{
    Ebpf,
    maps::{HashMap, MapData},
};
use pl_common::{
    flow::{FLOW_FORWARD, FLOW_PROBE, FlowKey, FlowValue, idle_limit_ns},
    maps::FLOWS_MAP,
    settings::Settings,
};

/// CLOCK_MONOTONIC in ns: the clock `bpf_ktime_get_ns` reads.
pub fn now_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// Removes both entries of every flow idle past its timeout (freeing its SNAT port), and
/// reply entries whose forward entry is gone; how many flows it removed.
pub fn sweep(ebpf: &mut Ebpf, s: &Settings) -> u64 {
    let mut out = 0;
    let Some(m) = ebpf.map_mut(FLOWS_MAP) else {
        return out;
    };
    let Ok(mut map) = HashMap::<&mut MapData, FlowKey, FlowValue>::try_from(m) else {
        return out;
    };
    let now = now_ns();
    let entries: Vec<(FlowKey, FlowValue)> = map.iter().filter_map(Result::ok).collect();
    let lookup: StdHashMap<FlowKey, FlowValue> = entries.iter().copied().collect();
    for (key, v) in &entries {
        if v.dir == FLOW_PROBE {
            // The health checker's, not a flow.
            continue;
        }
        if v.dir != FLOW_FORWARD {
            // Replies are handled with their forward entry; an orphan goes when idle.
            let fwd = v.reply_key(key.proto);
            if !lookup.contains_key(&fwd)
                && now.saturating_sub(v.last_seen_ns) > idle_limit_ns(key.proto, 0, v.state, s)
            {
                let _ = map.remove(key);
            }
            continue;
        }
        let reply_key = v.reply_key(key.proto);
        let reply = lookup.get(&reply_key);
        let last = reply.map_or(v.last_seen_ns, |r| r.last_seen_ns.max(v.last_seen_ns));
        let limit = idle_limit_ns(key.proto, v.state, reply.map_or(0, |r| r.state), s);
        if now.saturating_sub(last) > limit {
            let _ = map.remove(&reply_key);
            let _ = map.remove(key);
            out += 1;
        }
    }
    out
}
/// Live flows per endpoint, without removing anything.
pub fn count(ebpf: &Ebpf) -> StdHashMap<u16, u64> {
    let mut out = StdHashMap::new();
    let Some(m) = ebpf.map(FLOWS_MAP) else {
        return out;
    };
    let Ok(map) = HashMap::<&MapData, FlowKey, FlowValue>::try_from(m) else {
        return out;
    };
    for (_, v) in map.iter().filter_map(Result::ok) {
        if v.dir == FLOW_FORWARD {
            *out.entry(v.endpoint).or_default() += 1;
        }
    }
    out
}
