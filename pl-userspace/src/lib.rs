//! pl: the userspace side of the pl XDP data path, as a library so the tests and the bench
//! drive the same code the `pl` binary does.
//!
//! Two wings. The product: a config goes [`config`] (the schema as written) -> [`model`]
//! (validated) -> [`plan`] (exact map contents) -> [`apply`] (writes the difference) into the
//! maps [`dataplane`] loaded and attached; [`control`] is the socket the CLI talks to, with
//! [`peer`] deciding who may ask what; [`health`], [`neigh`] and [`flows`] keep targets,
//! MACs and the flow table current; [`state`] is what outlives a run, per [`instance`]. The
//! [`lab`] wing (namespaces, traffic, demo, bench) drives pl as a user would; the product
//! never imports it.
//! `docs/ARCHITECTURE.md` is the map.

pub mod apply;
pub mod batch;
pub mod cluster;
pub mod config;
pub mod config_edit;
pub mod control;
pub mod daemon;
pub mod dataplane;
pub mod dns;
pub mod errno;
pub mod flows;
pub mod frame;
pub mod health;
pub mod instance;
pub mod lab;
pub mod metrics;
pub mod model;
pub mod neigh;
pub mod notify;
pub mod output;
pub mod peer;
pub mod plan;
pub mod ports;
pub mod state;
pub mod stats;
pub mod status;
pub mod xdpfeat;

/// The compiled XDP object, built by `build.rs`.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/pl-ebpf"));

/// The benchmark's XDP programs (generator, sink, bare redirect).
pub static BENCH_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/pl-bench"));
