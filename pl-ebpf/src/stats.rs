//! Stats: per-CPU counters per interface and per endpoint, so increments need no atomics.
//!
//! Indexing goes through `get_mut`: a counter index is always in range, but LLVM cannot
//! always prove it, and a panic path is a program the verifier refuses.

use pl_common::stats::{EndpointCounter, IfaceCounter, IfaceStats};

use crate::maps::{PL_ENDPOINT_STATS, PL_IFACE_STATS, PL_TARGET_STATS};

#[inline(always)]
fn bump(counters: &mut [u64], index: usize, n: u64) {
    if let Some(c) = counters.get_mut(index) {
        *c = c.wrapping_add(n);
    }
}

pub struct Slot(*mut IfaceStats);

impl Slot {
    #[inline(always)]
    pub fn get(slot: u32) -> Option<Self> {
        PL_IFACE_STATS.get_ptr_mut(slot).map(Self)
    }

    #[inline(always)]
    pub fn add(&self, counter: IfaceCounter, n: u64) {
        // SAFETY: this CPU's element of a live map; nothing else on this CPU runs meanwhile.
        bump(unsafe { &mut (*self.0).counters }, counter as usize, n);
    }

    #[inline(always)]
    pub fn count_action(&self, action: u32) {
        if let Some(c) = IfaceCounter::for_action(action) {
            self.add(c, 1);
        }
    }
}

/// Adds `n` to an endpoint's counter (nothing if the id is out of range).
#[inline(always)]
pub fn endpoint_add(endpoint: u16, counter: EndpointCounter, n: u64) {
    if let Some(p) = PL_ENDPOINT_STATS.get_ptr_mut(u32::from(endpoint)) {
        // SAFETY: as above.
        bump(unsafe { &mut (*p).counters }, counter as usize, n);
    }
}

/// Counts a flow opened to target `id`.
#[inline(always)]
pub fn target_new_flow(id: u32) {
    if let Some(p) = PL_TARGET_STATS.get_ptr_mut(id) {
        // SAFETY: this CPU's element.
        unsafe { *p += 1 };
    }
}

/// Counts a packet forwarded for an endpoint, in the direction it went (one lookup for
/// both counters: this runs on every established packet).
#[inline(always)]
pub fn endpoint_forwarded(endpoint: u16, to_provider: bool, bytes: u64) {
    let (packets, octets) = if to_provider {
        (
            EndpointCounter::ToProviderPackets,
            EndpointCounter::ToProviderBytes,
        )
    } else {
        (
            EndpointCounter::ToConsumerPackets,
            EndpointCounter::ToConsumerBytes,
        )
    };
    if let Some(p) = PL_ENDPOINT_STATS.get_ptr_mut(u32::from(endpoint)) {
        // SAFETY: this CPU's element; nothing else on this CPU runs meanwhile.
        let counters = unsafe { &mut (*p).counters };
        bump(counters, packets as usize, 1);
        bump(counters, octets as usize, bytes);
    }
}
