//! Map operations aya 0.14 lacks: writing many entries at once with
//! `BPF_MAP_UPDATE_BATCH` (a Maglev table is 65537 slots), and deleting from a devmap
//! (aya's `DevMap` can only set). (The flow table needs neither: userspace maps it.)

use std::{
    io,
    os::fd::{AsFd as _, AsRawFd as _},
};

use aya::maps::MapData;

const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
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
