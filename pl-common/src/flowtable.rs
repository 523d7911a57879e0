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

use crate::flow::{CREATED_MASK, FlowKey, FlowValue};

/// Slots a key may sit from its home slot (inclusive of home). Bounds every lookup's work
/// and a new flow's: past it the table counts as full for that key. Linear probing
/// clusters, so the bound has a tail to cover: with 2M keys at load 0.5, 8 slots refuse
/// 0.5% of inserts, 16 refuse 0.03%, 32 refuse 0.001% (`pl bench` reports the rate).
pub const PROBE_SLOTS: u32 = 32;

pub const EMPTY: u8 = 0;
pub const BUSY: u8 = 1;
pub const LIVE: u8 = 2;
pub const TOMB: u8 = 3;

/// What the table's algorithms need of a slot type: where its control word, key and entry
/// are. The IPv4 table's [`Slot`] is one cache line; IPv6's (`crate::flow6::Slot6`) two.
pub trait TableSlot {
    type Key: PartialEq + Copy;
    type Entry: Copy;
    /// The slot's control word; `s` points into a table.
    fn ctl_ptr(s: *mut Self) -> *mut u64;
    /// The slot's key.
    fn key_ptr(s: *mut Self) -> *mut Self::Key;
    /// The slot's entry.
    fn entry_ptr(s: *mut Self) -> *mut Self::Entry;
}

/// One slot: a cache line.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Slot {
    /// State (low byte), the flow's creation time (next 24 bits, [`crate::flow::age_s`])
    /// and the key's hash (high 32 bits); see the module docs.
    pub ctl: u64,
    pub key: FlowKey,
    pub entry: FlowValue,
}

const _: () = assert!(size_of::<Slot>() == 64);

/// Implements [`TableSlot`] for a struct with `ctl`, `key` and `entry` fields.
#[macro_export]
macro_rules! table_slot {
    ($slot:ty, $key:ty, $entry:ty) => {
        impl $crate::flowtable::TableSlot for $slot {
            type Key = $key;
            type Entry = $entry;
            #[inline(always)]
            fn ctl_ptr(s: *mut Self) -> *mut u64 {
                s.cast::<u8>()
                    .wrapping_add(core::mem::offset_of!(Self, ctl))
                    .cast()
            }
            #[inline(always)]
            fn key_ptr(s: *mut Self) -> *mut $key {
                s.cast::<u8>()
                    .wrapping_add(core::mem::offset_of!(Self, key))
                    .cast()
            }
            #[inline(always)]
            fn entry_ptr(s: *mut Self) -> *mut $entry {
                s.cast::<u8>()
                    .wrapping_add(core::mem::offset_of!(Self, entry))
                    .cast()
            }
        }
    };
}

table_slot!(Slot, FlowKey, FlowValue);

#[inline(always)]
pub const fn ctl(state: u8, created: u32, hash: u32) -> u64 {
    ((hash as u64) << 32) | (((created & CREATED_MASK) as u64) << 8) | state as u64
}

/// The same control word in another state.
#[inline(always)]
pub const fn with_state(ctl: u64, state: u8) -> u64 {
    (ctl & !0xff) | state as u64
}

#[inline(always)]
pub const fn created_of(ctl: u64) -> u32 {
    (ctl >> 8) as u32 & CREATED_MASK
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
    /// The slot type (and so the key and entry types) of this table.
    type Slot: TableSlot;
    /// Number of slots, not zero.
    fn slots(&self) -> u32;
    /// Slot `i`, for `i < slots()`; None only where the bound cannot be proved.
    fn slot(&self, i: u32) -> Option<*mut Self::Slot>;
    /// The count of entries held (LIVE, or claimed and being written) and the most it may
    /// reach: the configured capacity, below the slots, so the table stays at the load it
    /// was sized for. None: no bound (tests).
    fn bound(&self) -> Option<(*mut u64, u64)> {
        None
    }
}

/// Adds `d` to the entry count at `p`, atomically. (The BPF target's cpu v1 has atomic add
/// but not its fetching form, so the count is read apart.)
#[inline(always)]
fn count_add(p: *mut u64, d: u64) {
    #[cfg(target_arch = "bpf")]
    // SAFETY: an aligned u64 of a live map value, only ever changed atomically.
    unsafe {
        use core::intrinsics::{AtomicOrdering::SeqCst, atomic_xadd};
        atomic_xadd::<u64, u64, { SeqCst }>(p, d);
    }
    #[cfg(not(target_arch = "bpf"))]
    // SAFETY: as above.
    unsafe { AtomicU64::from_ptr(p) }.fetch_add(d, Ordering::SeqCst);
}

/// Takes room for one entry under the table's bound; false if it is full. Added, then
/// read: whoever reads the count at or under the bound after its own add has room (at
/// most the bound's worth of adds came before that read); near the bound, CPUs adding at
/// once may all give back, a refusal that a retransmission mends.
#[inline(always)]
fn reserve<T: Slots>(t: &T) -> bool {
    let Some((p, max)) = t.bound() else {
        return true;
    };
    count_add(p, 1);
    if Ctl(p).load() <= max {
        return true;
    }
    count_add(p, u64::MAX);
    false
}

/// Gives back the room of one entry.
#[inline(always)]
fn release<T: Slots>(t: &T) {
    if let Some((p, _)) = t.bound() {
        count_add(p, u64::MAX);
    }
}

/// A slot's control word. `s` is a live slot from [`Slots::slot`], 64-byte aligned.
#[derive(Clone, Copy)]
struct Ctl(*mut u64);

/// The key type of table `T`.
pub type KeyOf<T> = <<T as Slots>::Slot as TableSlot>::Key;
/// The entry type of table `T`.
pub type EntryOf<T> = <<T as Slots>::Slot as TableSlot>::Entry;

/// Whether the LIVE slot `s` holds `key`.
#[inline(always)]
fn holds<S: TableSlot>(s: *mut S, key: &S::Key) -> bool {
    // SAFETY: a LIVE slot's key is written before it is published.
    unsafe { *S::key_ptr(s) == *key }
}

impl Ctl {
    #[inline(always)]
    fn of<S: TableSlot>(s: *mut S) -> Self {
        Self(S::ctl_ptr(s))
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
pub fn find<T: Slots>(t: &T, key: &KeyOf<T>, hash: u32) -> Option<*mut T::Slot> {
    find_index(t, key, hash).and_then(|i| t.slot(i))
}

/// The index of the LIVE slot holding `key`, if any.
#[inline(always)]
pub fn find_index<T: Slots>(t: &T, key: &KeyOf<T>, hash: u32) -> Option<u32> {
    let len = t.slots();
    let h = home(hash, len);
    for i in 0..PROBE_SLOTS {
        let j = probe(h, i, len);
        let s = t.slot(j)?;
        let c = Ctl::of(s).load();
        match state_of(c) {
            EMPTY => return None,
            LIVE if hash_of(c) == hash && holds(s, key) => return Some(j),
            _ => {}
        }
    }
    None
}

/// Reads the home slot of `hash`, so its cache miss is under way before it is needed.
#[inline(always)]
pub fn touch<T: Slots>(t: &T, hash: u32) {
    if let Some(s) = t.slot(home(hash, t.slots())) {
        let _ = Ctl::of(s).load();
    }
}

/// Why [`insert`] did not add the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The key is there already (the index of the slot holding it).
    Exists(u32),
    /// Another CPU is inserting a key with the same hash, or won a race for the slot:
    /// take another SNAT port, or look the key up again.
    Contended,
    /// No free slot within [`PROBE_SLOTS`] of the key's home.
    Full,
}

/// Inserts `key` with `entry` (created at `created`, seconds) unless it is there; the slot
/// it went into.
#[inline(always)]
pub fn insert<T: Slots>(
    t: &T,
    key: &KeyOf<T>,
    hash: u32,
    created: u32,
    entry: &EntryOf<T>,
) -> Result<*mut T::Slot, Refused> {
    let j = insert_index(t, key, hash, created, entry)?;
    t.slot(j).ok_or(Refused::Full)
}

/// As [`insert`]; the index of the slot it went into.
#[inline(always)]
pub fn insert_index<T: Slots>(
    t: &T,
    key: &KeyOf<T>,
    hash: u32,
    created: u32,
    entry: &EntryOf<T>,
) -> Result<u32, Refused> {
    let len = t.slots();
    let h = home(hash, len);
    let mut free: Option<(u32, *mut T::Slot, u64)> = None;
    for i in 0..PROBE_SLOTS {
        let j = probe(h, i, len);
        let Some(s) = t.slot(j) else {
            return Err(Refused::Full);
        };
        let c = Ctl::of(s).load();
        match state_of(c) {
            LIVE if hash_of(c) == hash && holds(s, key) => {
                return Err(Refused::Exists(j));
            }
            BUSY if hash_of(c) == hash => return Err(Refused::Contended),
            EMPTY | TOMB if free.is_none() => {
                free = Some((j, s, c));
                if state_of(c) == EMPTY {
                    break;
                }
            }
            EMPTY => break,
            _ => {}
        }
    }
    let Some((j, s, old)) = free else {
        return Err(Refused::Full);
    };
    if !reserve(t) {
        return Err(Refused::Full);
    }
    let w = Ctl::of(s);
    let busy = ctl(BUSY, created, hash);
    if !w.swap(old, busy) {
        release(t);
        return Err(Refused::Contended);
    }
    // SAFETY: the slot is ours while BUSY; readers skip it.
    unsafe {
        *T::Slot::key_ptr(s) = *key;
        *T::Slot::entry_ptr(s) = *entry;
    }
    // Cannot fail: nobody else moves a BUSY slot. The exchange orders the writes above
    // before the slot is seen LIVE.
    let live = with_state(busy, LIVE);
    w.swap(busy, live);
    if duplicated(t, s, key, hash) {
        // Whoever turns it TOMB gives its room back: the remover, if it got there first.
        if w.swap(live, with_state(live, TOMB)) {
            release(t);
        }
        return Err(Refused::Contended);
    }
    Ok(j)
}

/// True if a slot other than `ours` holds `key`, or is being claimed for a key of the same
/// hash (which may be `key`). The scan ends at an EMPTY slot: the other inserter took the
/// first free slot it saw, and a slot only turns EMPTY again through the sweep's two-pass
/// rule, long after any insert that passed it has published.
#[inline(always)]
fn duplicated<T: Slots>(t: &T, ours: *mut T::Slot, key: &KeyOf<T>, hash: u32) -> bool {
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
        match state_of(c) {
            EMPTY => return false,
            BUSY if hash_of(c) == hash => return true,
            LIVE if hash_of(c) == hash && holds(s, key) => return true,
            _ => {}
        }
    }
    false
}

/// Removes the key in `s` (a slot of `t` found LIVE with `hash`); false if someone else
/// removed it first.
#[inline(always)]
pub fn remove<T: Slots>(t: &T, s: *mut T::Slot, hash: u32) -> bool {
    let w = Ctl::of(s);
    let c = w.load();
    let removed = state_of(c) == LIVE && hash_of(c) == hash && w.swap(c, with_state(c, TOMB));
    if removed {
        release(t);
    }
    removed
}

/// Removes the key in `s` if its control word is still `ctl` (read with the entry a
/// caller copied): the caller takes out exactly what it read.
#[inline(always)]
pub fn remove_exact<T: Slots>(t: &T, s: *mut T::Slot, ctl: u64) -> bool {
    let removed = state_of(ctl) == LIVE && Ctl::of(s).swap(ctl, with_state(ctl, TOMB));
    if removed {
        release(t);
    }
    removed
}

/// The control word of `s`, read once (userspace: a slot's state and creation time).
#[inline(always)]
pub fn ctl_of<S: TableSlot>(s: *mut S) -> u64 {
    Ctl::of(s).load()
}

/// Empties the TOMB at `s` if its control word is still `seen` (the sweep's second pass,
/// once [`sweepable`] said so): a slot reused and removed again since is another TOMB.
#[inline(always)]
pub fn empty<S: TableSlot>(s: *mut S, seen: u64) -> bool {
    state_of(seen) == TOMB && Ctl::of(s).swap(seen, 0)
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
        type Slot = Slot;
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

    fn entry(i: u32) -> FlowValue {
        FlowValue {
            new_dst_be: i,
            ..FlowValue::default()
        }
    }

    #[test]
    fn inserted_keys_are_found_and_removed_ones_are_not() {
        let t = Table(vec![Slot::default(); 1000]);
        for i in 0..500 {
            insert(&t, &key(i), key(i).hash(), 0, &entry(i)).expect("room");
        }
        for i in 0..500 {
            let s = find(&t, &key(i), key(i).hash()).expect("found");
            assert_eq!(unsafe { (*s).entry.new_dst_be }, i);
        }
        assert!(find(&t, &key(500), key(500).hash()).is_none());
        for i in (0..500).step_by(2) {
            let s = find(&t, &key(i), key(i).hash()).unwrap();
            assert!(remove(&t, s, key(i).hash()));
            assert!(!remove(&t, s, key(i).hash()), "removed twice");
        }
        for i in 0..500 {
            assert_eq!(
                find(&t, &key(i), key(i).hash()).is_some(),
                i % 2 == 1,
                "key {i}"
            );
        }
    }

    /// A table with a bound on its entries.
    struct Bounded(Table, core::cell::UnsafeCell<u64>, u64);

    impl Slots for Bounded {
        type Slot = Slot;
        fn slots(&self) -> u32 {
            self.0.slots()
        }
        fn slot(&self, i: u32) -> Option<*mut Slot> {
            self.0.slot(i)
        }
        fn bound(&self) -> Option<(*mut u64, u64)> {
            Some((self.1.get(), self.2))
        }
    }

    #[test]
    fn the_bound_refuses_past_capacity_and_removals_give_room_back() {
        let t = Bounded(Table(vec![Slot::default(); 64]), 0.into(), 3);
        for i in 0..3 {
            insert(&t, &key(i), key(i).hash(), 0, &entry(i)).expect("room");
        }
        assert_eq!(
            insert(&t, &key(3), key(3).hash(), 0, &entry(3)),
            Err(Refused::Full)
        );
        assert_eq!(
            unsafe { *t.1.get() },
            3,
            "a refusal gives its reservation back"
        );
        let s = find(&t, &key(0), key(0).hash()).unwrap();
        assert!(remove(&t, s, key(0).hash()));
        assert_eq!(unsafe { *t.1.get() }, 2);
        insert(&t, &key(3), key(3).hash(), 0, &entry(3)).expect("room again");
        // A duplicate is refused without taking room.
        assert!(matches!(
            insert(&t, &key(3), key(3).hash(), 0, &entry(3)),
            Err(Refused::Exists(_))
        ));
        assert_eq!(unsafe { *t.1.get() }, 3);
    }

    #[test]
    fn a_second_insert_of_a_key_finds_the_first() {
        let t = Table(vec![Slot::default(); 64]);
        let s = insert_index(&t, &key(1), key(1).hash(), 0, &entry(1)).unwrap();
        assert_eq!(
            insert(&t, &key(1), key(1).hash(), 0, &entry(2)),
            Err(Refused::Exists(s))
        );
    }

    #[test]
    fn a_key_past_a_tombstone_is_still_found_and_the_tombstone_is_reused() {
        // One hash for every key: they share a probe sequence.
        let t = Table(vec![Slot::default(); 16]);
        let h = 0x8000_0000;
        let a = insert(&t, &key(1), h, 0, &entry(1)).unwrap();
        let b = insert(&t, &key(2), h, 0, &entry(2)).unwrap();
        assert!(remove(&t, a, h));
        assert_eq!(find(&t, &key(2), h), Some(b), "found past the tombstone");
        assert_eq!(
            insert(&t, &key(3), h, 0, &entry(3)),
            Ok(a),
            "tombstone reused"
        );
    }

    #[test]
    fn a_key_gets_no_further_than_the_probe_bound_and_sequences_wrap() {
        let t = Table(vec![Slot::default(); 64]);
        // Home is the last slot: the sequence wraps to slot 0.
        let h = u32::MAX;
        assert_eq!(home(h, 64), 63);
        for i in 0..PROBE_SLOTS {
            insert(&t, &key(i), h, 0, &entry(i)).expect("within the bound");
        }
        assert_eq!(insert(&t, &key(99), h, 0, &entry(99)), Err(Refused::Full));
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
            ctl: ctl(BUSY, 0, h),
            ..Slot::default()
        });
        assert_eq!(
            insert(&t, &key(1), h, 0, &entry(1)),
            Err(Refused::Contended)
        );
        assert!(find(&t, &key(1), h).is_none(), "a BUSY slot is not a match");
    }

    #[test]
    fn the_sweep_empties_a_tombstone_only_when_no_key_probes_past_it() {
        let t = Table(vec![Slot::default(); 16]);
        let h = 0x8000_0000;
        let a = insert(&t, &key(1), h, 0, &entry(1)).unwrap();
        let i = home(h, 16);
        let b = insert(&t, &key(2), h, 0, &entry(2)).unwrap();
        assert!(remove(&t, a, h));
        assert!(!sweepable(&t, i), "key 2 probes through slot {i}");
        assert!(remove(&t, b, h));
        assert!(sweepable(&t, i));
        // A key whose home is after the tombstone does not hold it.
        let later = u32::MAX / 16 * (i + 1) + 16;
        assert_eq!(home(later, 16), i + 1);
        let c = insert(&t, &key(3), h, 0, &entry(3)).unwrap();
        assert_eq!(c, a);
        assert!(remove(&t, c, h));
        insert(&t, &key(4), later, 0, &entry(4)).unwrap();
        assert!(sweepable(&t, i));
    }

    #[test]
    fn a_tombstone_reused_and_removed_again_is_not_emptied_on_the_old_sighting() {
        let t = Table(vec![Slot::default(); 16]);
        let h = 0x8000_0000;
        let a = insert(&t, &key(1), h, 1, &entry(1)).unwrap();
        assert!(remove(&t, a, h));
        let seen = t.0[home(h, 16) as usize].ctl;
        // Taken again and removed again (another second): another TOMB.
        assert_eq!(insert(&t, &key(2), h, 2, &entry(2)), Ok(a));
        assert!(remove(&t, a, h));
        assert!(!empty(a, seen), "the first sighting is stale");
        let now = t.0[home(h, 16) as usize].ctl;
        assert!(empty(a, now));
        assert_eq!(state_of(t.0[home(h, 16) as usize].ctl), EMPTY);
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
        type Slot = Slot;
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
        let x = insert(&t, &key(1), h, 0, &entry(1)).unwrap();
        let a = Interleaved {
            t: &t,
            // A's second access: after it saw X, before it reads the free slot.
            at: 2,
            calls: core::cell::Cell::new(0),
            then: |t: &Table| {
                assert!(remove(t, x, h));
                assert_eq!(
                    insert(t, &key(2), h, 0, &entry(2)),
                    Ok(x),
                    "B reuses X's slot"
                );
            },
        };
        assert_eq!(
            insert(&a, &key(2), h, 0, &entry(3)),
            Err(Refused::Contended)
        );
        let held =
            t.0.iter()
                .filter(|s| state_of(s.ctl) == LIVE && s.key == key(2))
                .count();
        assert_eq!(held, 1);
        assert_eq!(find(&t, &key(2), h), Some(x));
    }
}
