//! pl: the userspace side of the pl XDP data path, as a library so the tests and the bench
//! drive the same code the `pl` binary does.
//!
//! Data path control: [`dataplane`] (load, attach, read counters) -> [`control`] (the socket
//! `pl stats` talks to). Labs and traffic: [`lab`], [`netns`], [`cmd`].

pub mod apply;
pub mod batch;
pub mod bench;
pub mod cmd;
pub mod config;
pub mod control;
pub mod dataplane;
pub mod demo;
pub mod errno;
pub mod flows;
pub mod frame;
pub mod health;
pub mod lab;
pub mod metrics;
pub mod model;
pub mod neigh;
pub mod netns;
pub mod peer;
pub mod plan;
pub mod runner;
pub mod state;
pub mod stats;
pub mod traffic;
pub mod xdpfeat;

/// The compiled XDP object, built by `build.rs`.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/pl-ebpf"));

/// The benchmark's XDP programs (generator, sink, bare redirect).
pub static BENCH_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/pl-bench"));
