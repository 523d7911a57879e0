//! Conntrack: find the packet's flow, or create one (SNAT port reservation first, then
//! the forward entry, rolled back if another CPU created the same flow meanwhile).

use aya_ebpf::{bindings::BPF_NOEXIST, helpers::generated::bpf_ktime_get_coarse_ns};
use pl_common::{
    flow::CT_CLOSING,
    flow::{FlowKey, FlowPlan, FlowValue},
    iface::IfaceConfig,
    proto::IPPROTO_TCP,
    settings::{SNAT_PROBES, Settings, snat_port},
    stats::EndpointCounter,
};

use crate::{
    endpoint::Admitted,
    maps::{PL_FLOWS, PL_SCRATCH, PL_SETTINGS},
};

const EEXIST: i32 = 17;
/// Refresh `last_seen_ns` at most this often, so established traffic rarely writes.
const REFRESH_NS: u64 = 1_000_000_000;

/// CLOCK_MONOTONIC at tick resolution: plenty for idle timeouts of seconds, and cheaper
/// than the precise clock on every packet.
#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: no preconditions.
    unsafe { bpf_ktime_get_coarse_ns() }
}

#[inline(always)]
pub fn settings() -> Settings {
    PL_SETTINGS.get(0).copied().unwrap_or_default()
}

#[inline(always)]
fn idle_limit(iface: &IfaceConfig, proto: u8, state: u8) -> u64 {
    let s = if state & CT_CLOSING != 0 {
        iface.tcp_closing_s
    } else if proto == IPPROTO_TCP {
        iface.tcp_idle_s
    } else {
        iface.udp_idle_s
    };
    u64::from(s) * 1_000_000_000
}

/// The live flow entry for `key`, refreshed. An entry idle past its timeout counts as
/// gone even before userspace sweeps it; `expired` says one was found. The idle limits
/// come from the ingress interface's entry, so this path reads no settings map.
#[inline(always)]
pub fn lookup(key: &FlowKey, now: u64, iface: &IfaceConfig) -> (Option<*mut FlowValue>, bool) {
    let Some(v) = PL_FLOWS.get_ptr_mut(key) else {
        return (None, false);
    };
    // SAFETY: a live map value; concurrent writers only store whole fields.
    let (last, state) = unsafe { ((*v).last_seen_ns, (*v).state) };
    let idle = now.saturating_sub(last);
    if idle > idle_limit(iface, key.proto, state) {
        return (None, true);
    }
    if idle > REFRESH_NS {
        // SAFETY: as above.
        unsafe { (*v).last_seen_ns = now };
    }
    (Some(v), false)
}

/// Removes an expired forward entry and its reply entry so the tuple can start afresh.
#[inline(always)]
pub fn remove_expired(key: &FlowKey) {
    // SAFETY: copied out at once.
    if let Some(v) = unsafe { PL_FLOWS.get(key) }.copied() {
        let _ = PL_FLOWS.remove(v.reply_key(key.proto));
        let _ = PL_FLOWS.remove(key);
    }
}

/// Where a new flow comes from: its endpoint, the consumer's MAC, our interface's MAC on
/// that network, and the state bits of its first packet.
pub struct Origin {
    pub endpoint: u16,
    pub mac: [u8; 6],
    pub iface_mac: [u8; 6],
    pub state: u8,
    /// The opening frame's length (counted in the new entry).
    pub len: u16,
}

/// Creates both entries of a new flow; the forward value to translate with (in this
/// CPU's scratch space, valid until the next packet on this CPU).
#[inline(always)]
#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "borrowing passes map-value pointers to the helpers; by value they would be copied onto the 512-byte BPF stack"
)]
pub fn create(
    key: &FlowKey,
    a: &Admitted,
    from: &Origin,
    s: &Settings,
    now: u64,
) -> Result<*mut FlowValue, EndpointCounter> {
    let nf = PL_SCRATCH
        .get_ptr_mut(0)
        .ok_or(EndpointCounter::RefusedFlowTableFull)?;
    // SAFETY: this CPU's scratch element; nothing else on this CPU runs meanwhile.
    let nf = unsafe { &mut *nf };
    nf.plan = FlowPlan {
        now_ns: now,
        nlb_be: a.nlb_be,
        target_be: a.target_be,
        snat_port_be: 0,
        target_port_be: a.target_port_be,
        provider_network: a.provider_network,
        endpoint: from.endpoint,
        target_mac: a.target_mac,
        provider_mac: a.provider_mac,
        consumer_mac: from.mac,
        consumer_iface_mac: from.iface_mac,
        first_state: from.state,
        _pad: 0,
        first_len: from.len,
        _pad2: [0; 4],
    };
    let h = key.hash();
    let orig = u16::from_be(key.sport_be);
    for i in 0..SNAT_PROBES {
        nf.plan.snat_port_be = snat_port(s, orig, h, i).to_be();
        nf.pair.fill(key, &nf.plan);
        match PL_FLOWS.insert(&nf.pair.reply_key, &nf.pair.reply, u64::from(BPF_NOEXIST)) {
            Ok(()) => {}
            // That port is held for this (NLB, target, port, protocol): next probe.
            Err(e) if e == -EEXIST => continue,
            Err(_) => return Err(EndpointCounter::RefusedFlowTableFull),
        }
        return match PL_FLOWS.insert(key, &nf.pair.forward, u64::from(BPF_NOEXIST)) {
            Ok(()) => Ok(&mut nf.pair.forward),
            Err(e) => {
                let _ = PL_FLOWS.remove(&nf.pair.reply_key);
                if e != -EEXIST {
                    return Err(EndpointCounter::RefusedFlowTableFull);
                }
                // Another CPU created this flow between our lookup and insert: use theirs.
                PL_FLOWS
                    .get_ptr_mut(key)
                    .ok_or(EndpointCounter::RefusedFlowTableFull)
            }
        };
    }
    Err(EndpointCounter::RefusedSnatExhausted)
}
