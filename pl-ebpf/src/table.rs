//! The flow table's two loops, as global functions: the verifier checks a global function
//! once, on its own, instead of again at every call site and every SNAT probe (inlined,
//! the probe loops inside the SNAT walk exceed its million-instruction budget). They
//! return slot indices (a global function returns a scalar); the wrappers turn them back
//! into slots.

use pl_common::{
    flow::{FlowKey, FlowValue},
    flow6::{FlowKey6, FlowValue6, Slot6},
    flowtable::{self, Refused, Slot, Slots},
};

use crate::maps::{Flows, Flows6};

const FULL: i64 = -1;
const CONTENDED: i64 = -2;
/// `EXISTS - index`: the key is in slot `index`.
const EXISTS: i64 = -3;

/// The slot index holding `key`, or -1. (Pointers, not references: the verifier checks a
/// global function for any caller, so its pointer arguments may be null.)
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn pl_flow_find(key: *const FlowKey, hash: u32) -> i64 {
    // SAFETY: null-checked; the caller passes a key on its stack.
    let Some(key) = (unsafe { key.as_ref() }) else {
        return -1;
    };
    flowtable::find_index(&Flows, key, hash).map_or(-1, i64::from)
}

/// Inserts `entry` under `key`: the slot index, or why not (see the constants above).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn pl_flow_insert(
    key: *const FlowKey,
    hash: u32,
    created: u32,
    entry: *const FlowValue,
) -> i64 {
    // SAFETY: null-checked; the caller passes its stack or scratch memory.
    let (Some(key), Some(entry)) = (unsafe { key.as_ref() }, unsafe { entry.as_ref() }) else {
        return FULL;
    };
    encode(flowtable::insert_index(&Flows, key, hash, created, entry))
}

/// [`pl_flow_find`] for the IPv6 table.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn pl_flow6_find(key: *const FlowKey6, hash: u32) -> i64 {
    // SAFETY: null-checked; the caller passes a key on its stack.
    let Some(key) = (unsafe { key.as_ref() }) else {
        return -1;
    };
    flowtable::find_index(&Flows6, key, hash).map_or(-1, i64::from)
}

/// [`pl_flow_insert`] for the IPv6 table.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn pl_flow6_insert(
    key: *const FlowKey6,
    hash: u32,
    created: u32,
    entry: *const FlowValue6,
) -> i64 {
    // SAFETY: null-checked; the caller passes its stack or scratch memory.
    let (Some(key), Some(entry)) = (unsafe { key.as_ref() }, unsafe { entry.as_ref() }) else {
        return FULL;
    };
    encode(flowtable::insert_index(&Flows6, key, hash, created, entry))
}

#[inline(always)]
fn encode(r: Result<u32, Refused>) -> i64 {
    match r {
        Ok(i) => i64::from(i),
        Err(Refused::Full) => FULL,
        Err(Refused::Contended) => CONTENDED,
        Err(Refused::Exists(i)) => EXISTS - i64::from(i),
    }
}

#[inline(always)]
fn decode<S>(i: i64, slot: impl Fn(i64) -> Option<*mut S>) -> Result<*mut S, Refused> {
    match i {
        FULL => Err(Refused::Full),
        CONTENDED => Err(Refused::Contended),
        i if i <= EXISTS => Err(Refused::Exists((EXISTS - i) as u32)),
        i => slot(i).ok_or(Refused::Full),
    }
}

#[inline(always)]
fn slot6(i: i64) -> Option<*mut Slot6> {
    u32::try_from(i).ok().and_then(|i| Flows6.slot(i))
}

/// The LIVE IPv6 slot holding `key`, if any.
#[inline(always)]
pub fn find6(key: &FlowKey6, hash: u32) -> Option<*mut Slot6> {
    slot6(pl_flow6_find(key, hash))
}

/// Inserts `entry` under `key` in the IPv6 table unless it is there.
#[inline(always)]
pub fn insert6(
    key: &FlowKey6,
    hash: u32,
    created: u32,
    entry: &FlowValue6,
) -> Result<*mut Slot6, Refused> {
    decode(pl_flow6_insert(key, hash, created, entry), slot6)
}

/// The IPv6 slot at `index` (a [`Refused::Exists`]).
#[inline(always)]
pub fn at6(index: u32) -> Option<*mut Slot6> {
    Flows6.slot(index)
}

#[inline(always)]
fn slot(i: i64) -> Option<*mut Slot> {
    u32::try_from(i).ok().and_then(|i| Flows.slot(i))
}

/// The LIVE slot holding `key`, if any.
#[inline(always)]
pub fn find(key: &FlowKey, hash: u32) -> Option<*mut Slot> {
    slot(pl_flow_find(key, hash))
}

/// Inserts `entry` under `key` unless it is there; the slot it went into.
#[inline(always)]
pub fn insert(
    key: &FlowKey,
    hash: u32,
    created: u32,
    entry: &FlowValue,
) -> Result<*mut Slot, Refused> {
    decode(pl_flow_insert(key, hash, created, entry), slot)
}

/// The slot at `index` (a [`Refused::Exists`]).
#[inline(always)]
pub fn at(index: u32) -> Option<*mut Slot> {
    Flows.slot(index)
}
