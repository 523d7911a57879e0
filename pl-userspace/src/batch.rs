//! Map operations aya 0.14 lacks. Reading a whole BPF hash map with
//! `BPF_MAP_LOOKUP_BATCH`: thousands of entries a system call instead of two system calls
//! an entry, so the sweep, the live-flow counts and `pl flows` stay cheap with a million
//! flows. Writing many entries at once with `BPF_MAP_UPDATE_BATCH` (a Maglev table is 65537
//! slots). Deleting from a devmap (aya's `DevMap` can only set). Taking an entry out of a
//! hash map atomically (`BPF_MAP_LOOKUP_AND_DELETE_ELEM`), so the sweep judges what it
//! removes.

use std::{
    io,
    os::fd::{AsFd as _, AsRawFd as _, RawFd},
};

use aya::maps::{Map, MapData};

const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_MAP_LOOKUP_AND_DELETE_ELEM: libc::c_long = 21;
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
/// Entries asked for per call.
const CHUNK: usize = 4096;

/// `union bpf_attr`'s member for the batch commands.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// The map data behind a hash map, or None for another kind of map.
pub fn hash_data(map: &Map) -> Option<&MapData> {
    match map {
        Map::HashMap(d) => Some(d),
        _ => None,
    }
}

/// Every entry of the hash map `map`, read in batches. `K` and `V` must be the map's key
/// and value types (plain data).
pub fn entries<K: aya::Pod, V: aya::Pod>(map: &MapData) -> io::Result<Vec<(K, V)>> {
    let fd = map.fd().as_fd().as_raw_fd();
    let mut out = Vec::new();
    let mut keys: Vec<K> = Vec::with_capacity(CHUNK);
    let mut values: Vec<V> = Vec::with_capacity(CHUNK);
    // The kernel's position token for hash maps is a bucket index.
    let (mut token, mut next) = (0u32, 0u32);
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { (&raw const token) as u64 },
            out_batch: (&raw mut next) as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: CHUNK as u32,
            map_fd: fd as u32,
            ..BatchAttr::default()
        };
        // SAFETY: the buffers hold CHUNK keys and values of the map's sizes, the tokens are
        // u32 as the kernel's hash map expects, and `attr` is the batch member of bpf_attr.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &raw mut attr,
                size_of::<BatchAttr>(),
            )
        };
        let err = (rc < 0).then(io::Error::last_os_error);
        let n = (attr.count as usize).min(CHUNK);
        // SAFETY: the kernel wrote `n` whole keys and values.
        unsafe {
            keys.set_len(n);
            values.set_len(n);
        }
        out.extend(keys.drain(..).zip(values.drain(..)));
        match err {
            None => {}
            // The end of the map.
            Some(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(out),
            Some(e) => return Err(e),
        }
        token = next;
        first = false;
    }
}

/// `union bpf_attr`'s member for the element commands.
#[repr(C)]
#[derive(Default)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// Deletes `key` from `map` (any kind that supports deletion, devmaps included); a key
/// that is not there is not an error.
pub fn delete<K: aya::Pod>(map: &MapData, key: &K) -> io::Result<()> {
    let mut attr = ElemAttr {
        map_fd: map.fd().as_fd().as_raw_fd() as u32,
        key: std::ptr::from_ref(key) as u64,
        ..ElemAttr::default()
    };
    // SAFETY: `key` is a whole key of the map's key size; `attr` is the element member.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_DELETE_ELEM,
            &raw mut attr,
            size_of::<ElemAttr>(),
        )
    };
    match (rc < 0).then(io::Error::last_os_error) {
        None => Ok(()),
        Some(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Some(e) => Err(e),
    }
}

/// Removes `key` from the hash map open as `fd` and returns the value removed, in one
/// step: nothing can change it between the read and the delete. None if it was not there.
/// `K` and `V` must be the map's key and value types (plain data).
pub fn take<K: aya::Pod, V: aya::Pod>(fd: RawFd, key: &K) -> io::Result<Option<V>> {
    let mut value = std::mem::MaybeUninit::<V>::uninit();
    let mut attr = ElemAttr {
        map_fd: fd as u32,
        key: std::ptr::from_ref(key) as u64,
        value: value.as_mut_ptr() as u64,
        ..ElemAttr::default()
    };
    // SAFETY: `key` is a whole key and `value` room for a whole value of the map's sizes;
    // `attr` is the element member of bpf_attr.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_LOOKUP_AND_DELETE_ELEM,
            &raw mut attr,
            size_of::<ElemAttr>(),
        )
    };
    match (rc < 0).then(io::Error::last_os_error) {
        // SAFETY: the kernel wrote a whole value.
        None => Ok(Some(unsafe { value.assume_init() })),
        Some(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Some(e) => Err(e),
    }
}

/// The descriptor of `map`, for [`take`] while an aya map type borrows it.
pub fn raw_fd(map: &MapData) -> RawFd {
    map.fd().as_fd().as_raw_fd()
}

/// Writes `values[i]` at `keys[i]` for every i, `CHUNK` entries a system call. `K` and `V`
/// must be the map's key and value types (plain data).
pub fn update<K: aya::Pod, V: aya::Pod>(map: &MapData, keys: &[K], values: &[V]) -> io::Result<()> {
    assert_eq!(keys.len(), values.len(), "a value for every key");
    let fd = map.fd().as_fd().as_raw_fd();
    for (k, v) in keys.chunks(CHUNK).zip(values.chunks(CHUNK)) {
        let mut attr = BatchAttr {
            keys: k.as_ptr() as u64,
            values: v.as_ptr() as u64,
            count: k.len() as u32,
            map_fd: fd as u32,
            ..BatchAttr::default()
        };
        // SAFETY: the buffers hold `count` keys and values of the map's sizes; `attr` is
        // the batch member of bpf_attr. The kernel only reads them.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_UPDATE_BATCH,
                &raw mut attr,
                size_of::<BatchAttr>(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
