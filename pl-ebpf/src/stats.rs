//! Stats: per-CPU counters per interface, so increments need no atomics.

use pl_common::stats::{IfaceCounter, IfaceStats};

use crate::maps::PL_IFACE_STATS;

pub struct Slot(*mut IfaceStats);

impl Slot {
    #[inline(always)]
    pub fn get(slot: u32) -> Option<Self> {
        PL_IFACE_STATS.get_ptr_mut(slot).map(Self)
    }

    #[inline(always)]
    pub fn add(&self, counter: IfaceCounter, n: u64) {
        // SAFETY: the pointer is this CPU's element of a live map; nothing else on this CPU
        // runs while the program does.
        unsafe {
            let c = &mut (*self.0).counters[counter as usize];
            *c = c.wrapping_add(n);
        }
    }

    #[inline(always)]
    pub fn count_action(&self, action: u32) {
        if let Some(c) = IfaceCounter::for_action(action) {
            self.add(c, 1);
        }
    }
}
