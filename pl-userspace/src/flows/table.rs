//! `PL_FLOWS` and `PL_FLOWS6` as userspace holds them: the array mmapped, shared with XDP,
//! read and changed in place with the data path's own protocol (`pl_common::flowtable`:
//! slots claimed and removed by compare-and-exchange). No syscall per entry: a walk of two
//! million slots is a memory scan. [`FlowTable`] is generic over the slot type
//! ([`Family`]); the IPv6 table is [`FlowTable6`].

use std::{
    collections::HashMap,
    io,
    os::fd::{AsFd as _, AsRawFd as _},
    path::Path,
};

use aya::maps::{Map, MapData, MapError};
use pl_common::{
    flow::Half as _,
    flow6::Slot6,
    flowtable::{self, LIVE, Refused, Slot, Slots, TOMB, TableSlot, created_of, ctl_of, state_of},
};

use super::family::Family;

/// One entry as read from its slot: the key, the value, and the flow's creation time
/// (seconds since boot, 24 bits: see `pl_common::flow::age_s`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<S: Family = Slot> {
    pub key: S::Key,
    pub value: S::Entry,
    pub created: u32,
}

/// A shared, writable mapping of a whole mmapable BPF array; unmapped on drop.
pub struct Mapping {
    base: *mut libc::c_void,
    len: usize,
}

impl Mapping {
    /// Maps `elements` elements of `T` of the array `data`.
    pub fn new<T>(data: &MapData, elements: u32) -> io::Result<Self> {
        let len = elements as usize * size_of::<T>();
        // SAFETY: a shared mapping of the array, unmapped on drop; the map stays alive
        // while mapped, whatever happens to the descriptor.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                data.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { base, len })
    }

    pub fn ptr<T>(&self) -> *mut T {
        self.base.cast()
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: mapped in `new` with this length; nothing refers to it any more.
        unsafe { libc::munmap(self.base, self.len) };
    }
}

// SAFETY: shared memory that XDP writes concurrently anyway.
unsafe impl Send for Mapping {}

/// The mapped table; unmapped on drop.
pub struct FlowTable<S: Family = Slot> {
    _mapping: Mapping,
    base: *mut S,
    slots: u32,
    /// The table's hash seed, kept in the element past the slots.
    seed: u32,
}

// SAFETY: the mapping is shared memory that XDP writes concurrently anyway; every access
// goes through the slot protocol, from any thread.
unsafe impl<S: Family> Send for FlowTable<S> {}

/// The IPv6 flow table, `PL_FLOWS6`.
pub type FlowTable6 = FlowTable<Slot6>;

impl<S: Family> FlowTable<S> {
    /// Maps the flow map `m` (a loaded program's, or one opened from its pin).
    pub fn map(m: &Map) -> io::Result<Self> {
        let Map::Array(data) = m else {
            return Err(io::Error::other("the flow map is not an array"));
        };
        Self::map_data(data)
    }

    /// Maps the flow map pinned at `pin`.
    pub fn from_pin(pin: &Path) -> Result<Self, MapError> {
        let data = MapData::from_pin(pin)?;
        Self::map_data(&data).map_err(MapError::from)
    }

    fn map_data(data: &MapData) -> io::Result<Self> {
        // The slots, and the element past them that counts the entries.
        let elements = data.info().map_err(io::Error::other)?.max_entries();
        if elements < 2 {
            return Err(io::Error::other("the flow map has no slots"));
        }
        let mapping = Mapping::new::<S>(data, elements)?;
        let base: *mut S = mapping.ptr();
        let slots = elements - 1;
        // SAFETY: the element past the slots is in the mapping; only the loader writes its
        // key, once, before the program runs.
        let seed = unsafe { std::ptr::read_volatile(seed_ptr(base, slots)) };
        Ok(Self {
            base,
            _mapping: mapping,
            slots,
            seed,
        })
    }

    /// A table of `slots` slots in anonymous memory, for unit tests of what walks it.
    #[cfg(test)]
    pub fn anonymous(slots: u32) -> Self {
        let len = (slots as usize + 1) * size_of::<S>();
        // SAFETY: a private anonymous mapping, unmapped on drop.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED, "mmap");
        let mapping = Mapping { base, len };
        Self {
            base: mapping.ptr(),
            _mapping: mapping,
            slots,
            seed: 0,
        }
    }

    /// The table's hash seed (its home slots depend on it).
    pub fn seed(&self) -> u32 {
        self.seed
    }

    /// Keeps `seed` in the table, for whoever maps it later (a new table, before the
    /// program runs).
    pub fn set_seed(&mut self, seed: u32) {
        // SAFETY: as in `map_data`.
        unsafe { std::ptr::write_volatile(seed_ptr(self.base, self.slots), seed) };
        self.seed = seed;
    }

    /// `key`'s hash in this table.
    pub fn hash(&self, key: &S::Key) -> u32 {
        S::hash(key, self.seed)
    }

    /// Entries held, by the table's own count.
    pub fn held(&self) -> u64 {
        self.bound().map_or(0, |(c, _)| {
            // SAFETY: the counting element of the mapping, changed only atomically.
            unsafe { std::sync::atomic::AtomicU64::from_ptr(c) }
                .load(std::sync::atomic::Ordering::Relaxed)
        })
    }

    /// Empties every slot and the count; the seed stays. Only while no data path runs on
    /// the table (`pl bench` between windows): XDP would lose track of its claims.
    pub fn clear(&mut self) {
        // SAFETY: the slots and the counting element are in the mapping; nothing else
        // writes them now (the caller's word).
        unsafe {
            std::ptr::write_bytes(self.base, 0, self.slots as usize);
            std::ptr::write_volatile(S::ctl_ptr(self.base.add(self.slots as usize)), 0);
        }
    }

    /// Slots in the table.
    pub fn capacity(&self) -> u32 {
        self.slots
    }

    /// The entry in slot `s` if it is LIVE and read whole: its control word is the same
    /// before and after the copy (XDP's own writes to a live entry, a refresh or a
    /// counter, may land in between; the slot cannot have changed hands).
    fn read(&self, s: *mut S) -> Option<(Entry<S>, u64)> {
        let c = ctl_of(s);
        if state_of(c) != LIVE {
            return None;
        }
        // SAFETY: a slot of the mapping; volatile, as XDP writes it concurrently.
        let (key, value) = unsafe {
            (
                std::ptr::read_volatile(S::key_ptr(s)),
                std::ptr::read_volatile(S::entry_ptr(s)),
            )
        };
        (ctl_of(s) == c).then_some((
            Entry {
                key,
                value,
                created: created_of(c),
            },
            c,
        ))
    }

    /// Every LIVE entry.
    pub fn entries(&self) -> Vec<Entry<S>> {
        (0..self.slots).filter_map(|i| self.entry_at(i)).collect()
    }

    /// The entry in slot `i`, if it is LIVE.
    pub fn entry_at(&self, i: u32) -> Option<Entry<S>> {
        self.slot(i).and_then(|s| self.read(s)).map(|(e, _)| e)
    }

    /// The entry under `key`.
    pub fn get(&self, key: &S::Key) -> Option<Entry<S>> {
        let s = flowtable::find(self, key, self.hash(key))?;
        self.read(s).map(|(e, _)| e).filter(|e| e.key == *key)
    }

    /// Takes the entry under `key` out of the table: what is removed is what is returned,
    /// unless the slot was emptied and filled again with the same key within the same
    /// second (its control word would read the same), between the read and the take.
    pub fn take(&self, key: &S::Key) -> Option<Entry<S>> {
        let s = flowtable::find(self, key, self.hash(key))?;
        let (e, c) = self.read(s)?;
        (e.key == *key && flowtable::remove_exact(self, s, c)).then_some(e)
    }

    /// Inserts `value` under `key` unless the key is there.
    pub fn insert(&self, key: &S::Key, value: &S::Entry, created: u32) -> Result<(), Refused> {
        flowtable::insert(self, key, self.hash(key), created, value).map(|_| ())
    }

    /// Removes the entry under `key`; false if there was none.
    pub fn remove(&self, key: &S::Key) -> bool {
        let hash = self.hash(key);
        flowtable::find(self, key, hash).is_some_and(|s| flowtable::remove(self, s, hash))
    }

    /// Turns the tombstone at slot `i` back into an empty slot, within a sweep that
    /// collects the tombstones it sees in `next`: only one seen in `marked` last sweep with
    /// the same control word (not reused and removed again since), and
    /// [`flowtable::sweepable`]. True if it emptied the slot.
    pub fn reclaim_at(
        &self,
        i: u32,
        marked: &HashMap<u32, u64>,
        next: &mut HashMap<u32, u64>,
    ) -> bool {
        let Some(s) = self.slot(i) else {
            return false;
        };
        let c = ctl_of(s);
        if state_of(c) != TOMB {
            return false;
        }
        if marked.get(&i) == Some(&c) && flowtable::sweepable(self, i) && flowtable::empty(s, c) {
            return true;
        }
        next.insert(i, c);
        false
    }
}

/// The word of the element past the slots that keeps the table's seed: the first four
/// bytes of its key (its control word counts the entries).
fn seed_ptr<S: TableSlot>(base: *mut S, slots: u32) -> *mut u32 {
    // The key starts 8 bytes into a 64-byte aligned slot: 4-byte aligned.
    S::key_ptr(base.wrapping_add(slots as usize)).cast()
}

/// What userspace writes into live entries: target MAC moves, cluster sync.
impl<S: Family> FlowTable<S> {
    /// Points the entry under `key` at `mac` in place, if it is still `expected`'s flow
    /// (same creation time and SNAT port). Only the MAC's bytes are written: XDP's
    /// concurrent counts and state bits stay.
    pub fn set_dst_mac(&self, key: &S::Key, expected: &Entry<S>, mac: [u8; 6]) -> bool {
        let Some(s) = flowtable::find(self, key, self.hash(key)) else {
            return false;
        };
        let Some((now, c)) = self.read(s) else {
            return false;
        };
        if now.created != expected.created
            || S::rewritten(&now.value).0 != S::rewritten(&expected.value).0
            || S::dst_mac(&now.value) == mac
        {
            return false;
        }
        // Checked again right before the store: the slot must not have changed hands since
        // it was read (a window of a few instructions is left, which this cannot close
        // without a lock XDP would have to take).
        if ctl_of(s) != c {
            return false;
        }
        // SAFETY: a LIVE slot of the mapping; a 6-byte store XDP reads whole or not.
        unsafe { std::ptr::write_volatile(S::fields(S::entry_ptr(s)).dst_mac, mac) };
        true
    }

    /// Brings the entry under `key` up to what another node says of it: `state` bits
    /// added, `last_seen` moved forward (never back). Only those words are written, so
    /// XDP's own counts stay. False if no entry is under `key`.
    pub fn merge(&self, key: &S::Key, state: u8, last_seen: u32) -> bool {
        let Some(s) = flowtable::find(self, key, self.hash(key)) else {
            return false;
        };
        let Some((now, _)) = self.read(s) else {
            return false;
        };
        if now.key != *key {
            return false;
        }
        let (had, seen) = (now.value.state(), now.value.last_seen());
        let f = S::fields(S::entry_ptr(s));
        // SAFETY: a LIVE slot of the mapping; single-word stores XDP reads whole.
        unsafe {
            if had | state != had {
                std::ptr::write_volatile(f.state, had | state);
            }
            if (last_seen.wrapping_sub(seen) as i32) > 0 {
                std::ptr::write_volatile(f.last_seen, last_seen);
            }
        }
        true
    }
}

impl<S: Family> Slots for FlowTable<S> {
    type Slot = S;
    fn slots(&self) -> u32 {
        self.slots
    }

    fn slot(&self, i: u32) -> Option<*mut S> {
        // SAFETY: in bounds of the mapping.
        (i < self.slots).then(|| unsafe { self.base.add(i as usize) })
    }

    fn bound(&self) -> Option<(*mut u64, u64)> {
        // SAFETY: the element past the slots is in the mapping.
        let c = unsafe { self.base.add(self.slots as usize) };
        Some((S::ctl_ptr(c), u64::from(self.slots / 2)))
    }
}
