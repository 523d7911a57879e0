//! Types and pure logic shared by the pl XDP program (`pl-ebpf`) and userspace (`pl`).
//!
//! Everything here is `no_std`, so the eBPF side can use it, and plain logic, so it is
//! unit-tested on the host. Map keys and values are `#[repr(C)]` with explicit padding and
//! derive `bytemuck::Pod`; with the `user` feature they also implement `aya::Pod`.
//!
//! Byte order: fields named `*_be` (and every address or port in a map type) hold network
//! byte order; everything else is host order.
#![no_std]
// The flow table's compare-and-exchange: core has none for the BPF target.
#![cfg_attr(target_arch = "bpf", feature(core_intrinsics))]
#![cfg_attr(
    target_arch = "bpf",
    expect(
        internal_features,
        reason = "atomic_cxchg is the only CAS the BPF target has"
    )
)]

pub mod bench;
pub mod checksum;
pub mod cidr;
pub mod dns;
pub mod endpoint;
pub mod event;
pub mod flow;
pub mod flow6;
pub mod flowtable;
pub mod hash;
pub mod icmp;
pub mod icmp46;
pub mod icmp6;
pub mod iface;
pub mod maglev;
pub mod maps;
pub mod mss;
pub mod ndp;
pub mod policy;
pub mod proto;
pub mod service;
pub mod settings;
pub mod stats;
pub mod xlat;
