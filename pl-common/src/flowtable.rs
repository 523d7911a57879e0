//! An open-addressing flow table over a BPF array: one 64-byte slot per direction of a
//! flow (one cache line, so a lookup that hits its home slot touches one line), linear
//! probing over at most [`PROBE_SLOTS`] slots, slots claimed with compare-and-exchange.
//!
//! Why not the kernel's hash map: a preallocated `BPF_MAP_TYPE_HASH` element is a 48-byte
//! header, the key and the value, reached through a bucket array, so a lookup touches a
//! bucket line and one or two element lines. Here the slot is found by arithmetic and the
//! key sits beside what the packet needs.
//!
//! A slot's `ctl` word is its state (low byte) and the key's hash (high 32 bits). Writers
//! change it only with compare-and-exchange: EMPTY or TOMB -> BUSY (claimed, key and entry
//! being written) -> LIVE (published) -> TOMB (removed). Readers skip anything not LIVE.
//! Two CPUs inserting the same key can each claim a different slot only if a removal
//! happened between their scans; each re-scans after publishing and backs off if it sees
//! the other, so at most one copy stays (perhaps none: the caller retries, or takes
//! another SNAT port).
//!
//! A TOMB ends no probe sequence, so removals never hide a key further on. Turning TOMBs
//! back into EMPTY is the sweep's job, in two passes (see [`sweepable`]).

#[cfg(not(target_arch = "bpf"))]
use core::sync::atomic::{AtomicU64, Ordering};

use bytemuck::{Pod, Zeroable};

use crate::flow::FlowKey;

/// Slots a key may sit from its home slot (inclusive of home). Bounds every lookup's work
/// and a new flow's: past it the table counts as full for that key. Linear probing
/// clusters, so the bound has a tail to cover: with 2M keys at load 0.5, 8 slots refuse
/// 0.5% of inserts, 16 refuse 0.03%, 32 refuse 0.001% (`pl bench` reports the rate).
pub const PROBE_SLOTS: u32 = 32;

pub const EMPTY: u8 = 0;
pub const BUSY: u8 = 1;
pub const LIVE: u8 = 2;
pub const TOMB: u8 = 3;

/// The entry a slot carries besides its key: what to rewrite the packet to. Sized so key
/// and entry fill one cache line with the control word.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct SlotEntry {
    pub new_src_be: u32,
    pub new_dst_be: u32,
    pub new_sport_be: u16,
    pub new_dport_be: u16,
    /// Coarse clock of the last packet (ns >> 20, about a millisecond).
    pub last_seen: u32,
    pub csum_l3: u16,
    pub csum_l4: u16,
    pub dst_mac: [u8; 6],
    pub egress: u8,
    pub dir: u8,
    pub endpoint: u16,
    pub state: u8,
    pub _pad: u8,
    pub created_s: u32,
    pub _spare: [u8; 4],
}

/// One slot: a cache line.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Slot {
    /// State (low byte) and the key's hash (high 32 bits); see the module docs.
    pub ctl: u64,
    pub key: FlowKey,
    pub entry: SlotEntry,
}

const _: () = assert!(size_of::<Slot>() == 64);

#[inline(always)]
pub const fn ctl(state: u8, hash: u32) -> u64 {
    ((hash as u64) << 32) | state as u64
}

#[inline(always)]
pub const fn state_of(ctl: u64) -> u8 {
    ctl as u8
}

#[inline(always)]
pub const fn hash_of(ctl: u64) -> u32 {
    (ctl >> 32) as u32
}

/// The home slot of `hash` in a table of `len` slots: the high bits of a 64-bit product
/// (any `len`, no division), so the table can be sized to the load it should run at.
#[inline(always)]
pub const fn home(hash: u32, len: u32) -> u32 {
    ((hash as u64 * len as u64) >> 32) as u32
}

/// The `i`-th slot of the probe sequence from `home`, wrapping at `len`.
#[inline(always)]
pub const fn probe(home: u32, i: u32, len: u32) -> u32 {
    let j = home + i;
    if j >= len { j - len } else { j }
}

/// A table's slots: a BPF array in the data path, a slice (or an mmap of the array) in
/// userspace and tests.
pub trait Slots {
    /// Number of slots, not zero.
    fn slots(&self) -> u32;
    /// Slot `i`, for `i < slots()`; None only where the bound cannot be proved.
    fn slot(&self, i: u32) -> Option<*mut Slot>;
}

/// A slot's control word. `s` is a live slot from [`Slots::slot`], 64-byte aligned.
#[derive(Clone, Copy)]
struct Ctl(*mut u64);

impl Ctl {
    #[inline(always)]
    fn of(s: *mut Slot) -> Self {
        // SAFETY: `s` points into the table (see `Slots::slot`).
        Self(unsafe { &raw mut (*s).ctl })
    }

    #[inline(always)]
    fn load(self) -> u64 {
        // The BPF target (cpu v1-v3) has no load-acquire; an aligned 8-byte load is single
        // copy atomic, and on x86 loads are not reordered with later loads.
        #[cfg(target_arch = "bpf")]
        // SAFETY: aligned and live.
        unsafe {
            core::ptr::read_volatile(self.0)
        }
        #[cfg(not(target_arch = "bpf"))]
        // SAFETY: aligned and live; `ctl` is only ever accessed atomically.
        unsafe { AtomicU64::from_ptr(self.0) }.load(Ordering::Acquire)
    }

    /// Compare-and-exchange, sequentially consistent (the BPF instruction is a full
    /// barrier: the slot's key and entry are written before it reads LIVE).
    #[inline(always)]
    fn swap(self, old: u64, new: u64) -> bool {
        // The BPF target has atomic loads and stores but no `compare_exchange` in core;
        // the intrinsic compiles to BPF_CMPXCHG.
        #[cfg(target_arch = "bpf")]
        // SAFETY: as in `load`.
        unsafe {
            use core::intrinsics::{AtomicOrdering::SeqCst, atomic_cxchg};
            atomic_cxchg::<u64, { SeqCst }, { SeqCst }>(self.0, old, new).1
        }
        #[cfg(not(target_arch = "bpf"))]
        // SAFETY: as in `load`.
        unsafe { AtomicU64::from_ptr(self.0) }
            .compare_exchange(old, new, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }
}

/// The LIVE slot holding `key`, if any.
#[inline(always)]
pub fn find<T: Slots>(t: &T, key: &FlowKey, hash: u32) -> Option<*mut Slot> {
    let len = t.slots();
    let h = home(hash, len);
    for i in 0..PROBE_SLOTS {
        let s = t.slot(probe(h, i, len))?;
        let c = Ctl::of(s).load();
        match state_of(c) {
            EMPTY => return None,
            // SAFETY: a LIVE slot's key is written before it is published.
            LIVE if hash_of(c) == hash && unsafe { (*s).key == *key } => return Some(s),
            _ => {}
        }
    }
    None
}

/// Why [`insert`] did not add the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The key is there already (the slot holding it).
    Exists(*mut Slot),
    /// Another CPU is inserting a key with the same hash, or won a race for the slot:
    /// take another SNAT port, or look the key up again.
    Contended,
    /// No free slot within [`PROBE_SLOTS`] of the key's home.
    Full,
}

/// Inserts `key` with `entry` unless it is there; the slot it went into.
#[inline(always)]
pub fn insert<T: Slots>(
    t: &T,
    key: &FlowKey,
    hash: u32,
    entry: &SlotEntry,
) -> Result<*mut Slot, Refused> {
    let len = t.slots();
    let h = home(hash, len);
    let mut free: Option<(*mut Slot, u64)> = None;
    for i in 0..PROBE_SLOTS {
        let Some(s) = t.slot(probe(h, i, len)) else {
            return Err(Refused::Full);
        };
        let c = Ctl::of(s).load();
        match state_of(c) {
            // SAFETY: as in `find`.
            LIVE if hash_of(c) == hash && unsafe { (*s).key == *key } => {
                return Err(Refused::Exists(s));
            }
            BUSY if hash_of(c) == hash => return Err(Refused::Contended),
            EMPTY | TOMB if free.is_none() => {
                free = Some((s, c));
                if state_of(c) == EMPTY {
                    break;
                }
            }
            EMPTY => break,
            _ => {}
        }
    }
    let Some((s, old)) = free else {
        return Err(Refused::Full);
    };
    let w = Ctl::of(s);
    if !w.swap(old, ctl(BUSY, hash)) {
        return Err(Refused::Contended);
    }
    // SAFETY: the slot is ours while BUSY; readers skip it.
    unsafe {
        (*s).key = *key;
        (*s).entry = *entry;
    }
    // Cannot fail: nobody else moves a BUSY slot. The exchange orders the writes above
    // before the slot is seen LIVE.
    w.swap(ctl(BUSY, hash), ctl(LIVE, hash));
    if duplicated(t, s, key, hash) {
        w.swap(ctl(LIVE, hash), ctl(TOMB, hash));
        return Err(Refused::Contended);
    }
    Ok(s)
}

/// True if a slot other than `ours` holds `key`, or is being claimed for a key of the same
/// hash (which may be `key`).
#[inline(always)]
fn duplicated<T: Slots>(t: &T, ours: *mut Slot, key: &FlowKey, hash: u32) -> bool {
    let len = t.slots();
    let h = home(hash, len);
    for i in 0..PROBE_SLOTS {
        let Some(s) = t.slot(probe(h, i, len)) else {
            return false;
        };
        if s == ours {
            continue;
        }
        let c = Ctl::of(s).load();
        if hash_of(c) != hash {
            continue;
        }
        match state_of(c) {
            BUSY => return true,
            // SAFETY: as in `find`.
            LIVE if unsafe { (*s).key == *key } => return true,
            _ => {}
        }
    }
    false
}

/// Removes the key in `s` (found LIVE with `hash`); false if someone else removed it
/// first.
#[inline(always)]
pub fn remove(s: *mut Slot, hash: u32) -> bool {
    Ctl::of(s).swap(ctl(LIVE, hash), ctl(TOMB, hash))
}

/// Whether the sweep may turn the TOMB at `i` back into EMPTY: no slot in the
/// [`PROBE_SLOTS`] after it holds (or is claiming) a key whose probe sequence passes
/// through `i`. An insert that passed `i` while it was LIVE could still be claiming a slot
/// further on, so the sweep marks TOMBs in one pass and empties them in a later one (a
/// second or more apart) only if this still holds: by then any such insert has published.
pub fn sweepable<T: Slots>(t: &T, i: u32) -> bool {
    let len = t.slots();
    for d in 1..PROBE_SLOTS {
        let j = probe(i, d, len);
        let Some(s) = t.slot(j) else {
            return false;
        };
        let c = Ctl::of(s).load();
        match state_of(c) {
            EMPTY => return true,
            LIVE | BUSY => {
                // Distance from that key's home to j, wrapping.
                let h = home(hash_of(c), len);
                let dist = if j >= h { j - h } else { j + len - h };
                if dist >= d {
                    return false;
                }
            }
            _ => {}
        }
    }
    true
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::{vec, vec::Vec};

    use super::*;

    struct Table(Vec<Slot>);

    impl Slots for Table {
        fn slots(&self) -> u32 {
            self.0.len() as u32
        }
        fn slot(&self, i: u32) -> Option<*mut Slot> {
            self.0
                .get(i as usize)
                .map(|s| (s as *const Slot).cast_mut())
        }
    }

    fn key(i: u32) -> FlowKey {
        FlowKey {
            src_be: 0x0a00_0000 + i,
            dst_be: 0x0a00_0064,
            sport_be: (i as u16).wrapping_mul(7),
            dport_be: 443,
            network: 1,
            proto: 6,
            _pad: 0,
        }
    }

    fn entry(i: u32) -> SlotEntry {
        SlotEntry {
            new_dst_be: i,
            ..SlotEntry::default()
        }
    }

    #[test]
    fn inserted_keys_are_found_and_removed_ones_are_not() {
        let t = Table(vec![Slot::default(); 1000]);
        for i in 0..500 {
            insert(&t, &key(i), key(i).hash(), &entry(i)).expect("room");
        }
        for i in 0..500 {
            let s = find(&t, &key(i), key(i).hash()).expect("found");
            assert_eq!(unsafe { (*s).entry.new_dst_be }, i);
        }
        assert!(find(&t, &key(500), key(500).hash()).is_none());
        for i in (0..500).step_by(2) {
            let s = find(&t, &key(i), key(i).hash()).unwrap();
            assert!(remove(s, key(i).hash()));
            assert!(!remove(s, key(i).hash()), "removed twice");
        }
        for i in 0..500 {
            assert_eq!(
                find(&t, &key(i), key(i).hash()).is_some(),
                i % 2 == 1,
                "key {i}"
            );
        }
    }

    #[test]
    fn a_second_insert_of_a_key_finds_the_first() {
        let t = Table(vec![Slot::default(); 64]);
        let s = insert(&t, &key(1), key(1).hash(), &entry(1)).unwrap();
        assert_eq!(
            insert(&t, &key(1), key(1).hash(), &entry(2)),
            Err(Refused::Exists(s))
        );
    }

    #[test]
    fn a_key_past_a_tombstone_is_still_found_and_the_tombstone_is_reused() {
        // One hash for every key: they share a probe sequence.
        let t = Table(vec![Slot::default(); 16]);
        let h = 0x8000_0000;
        let a = insert(&t, &key(1), h, &entry(1)).unwrap();
        let b = insert(&t, &key(2), h, &entry(2)).unwrap();
        assert!(remove(a, h));
        assert_eq!(find(&t, &key(2), h), Some(b), "found past the tombstone");
        assert_eq!(insert(&t, &key(3), h, &entry(3)), Ok(a), "tombstone reused");
    }

    #[test]
    fn a_key_gets_no_further_than_the_probe_bound_and_sequences_wrap() {
        let t = Table(vec![Slot::default(); 64]);
        // Home is the last slot: the sequence wraps to slot 0.
        let h = u32::MAX;
        assert_eq!(home(h, 64), 63);
        for i in 0..PROBE_SLOTS {
            insert(&t, &key(i), h, &entry(i)).expect("within the bound");
        }
        assert_eq!(insert(&t, &key(99), h, &entry(99)), Err(Refused::Full));
        assert!(find(&t, &key(PROBE_SLOTS - 1), h).is_some());
        assert_eq!(state_of(t.0[0].ctl), LIVE, "wrapped to slot 0");
        assert_eq!(
            state_of(t.0[PROBE_SLOTS as usize - 1].ctl),
            EMPTY,
            "not past the bound"
        );
    }

    #[test]
    fn a_busy_slot_with_the_same_hash_refuses_as_contended() {
        let mut t = Table(vec![Slot::default(); 16]);
        let h = 0x4000_0000;
        t.0[home(h, 16) as usize].clone_from(&Slot {
            ctl: ctl(BUSY, h),
            ..Slot::default()
        });
        assert_eq!(insert(&t, &key(1), h, &entry(1)), Err(Refused::Contended));
        assert!(find(&t, &key(1), h).is_none(), "a BUSY slot is not a match");
    }

    #[test]
    fn the_sweep_empties_a_tombstone_only_when_no_key_probes_past_it() {
        let t = Table(vec![Slot::default(); 16]);
        let h = 0x8000_0000;
        let a = insert(&t, &key(1), h, &entry(1)).unwrap();
        let i = home(h, 16);
        let b = insert(&t, &key(2), h, &entry(2)).unwrap();
        assert!(remove(a, h));
        assert!(!sweepable(&t, i), "key 2 probes through slot {i}");
        assert!(remove(b, h));
        assert!(sweepable(&t, i));
        // A key whose home is after the tombstone does not hold it.
        let later = u32::MAX / 16 * (i + 1) + 16;
        assert_eq!(home(later, 16), i + 1);
        let c = insert(&t, &key(3), h, &entry(3)).unwrap();
        assert_eq!(c, a);
        assert!(remove(c, h));
        insert(&t, &key(4), later, &entry(4)).unwrap();
        assert!(sweepable(&t, i));
    }

    /// A table that runs `then` once, on the `at`-th slot access: another CPU acting in
    /// the middle of an insert.
    struct Interleaved<'a, F: Fn(&Table)> {
        t: &'a Table,
        at: u32,
        calls: core::cell::Cell<u32>,
        then: F,
    }

    impl<F: Fn(&Table)> Slots for Interleaved<'_, F> {
        fn slots(&self) -> u32 {
            self.t.slots()
        }
        fn slot(&self, i: u32) -> Option<*mut Slot> {
            self.calls.set(self.calls.get() + 1);
            if self.calls.get() == self.at {
                (self.then)(self.t);
            }
            self.t.slot(i)
        }
    }

    /// CPU A scans past X (LIVE) to a free slot; meanwhile X goes, and CPU B inserts the
    /// same key into X's old slot. A must back off, or the key would be held twice.
    #[test]
    fn an_insert_racing_a_removal_and_an_insert_of_the_same_key_backs_off() {
        let t = Table(vec![Slot::default(); 16]);
        let h = 0x8000_0000;
        let x = insert(&t, &key(1), h, &entry(1)).unwrap();
        let a = Interleaved {
            t: &t,
            // A's second access: after it saw X, before it reads the free slot.
            at: 2,
            calls: core::cell::Cell::new(0),
            then: |t: &Table| {
                assert!(remove(x, h));
                assert_eq!(insert(t, &key(2), h, &entry(2)), Ok(x), "B reuses X's slot");
            },
        };
        assert_eq!(insert(&a, &key(2), h, &entry(3)), Err(Refused::Contended));
        let held =
            t.0.iter()
                .filter(|s| state_of(s.ctl) == LIVE && s.key == key(2))
                .count();
        assert_eq!(held, 1);
        assert_eq!(find(&t, &key(2), h), Some(x));
    }
}
