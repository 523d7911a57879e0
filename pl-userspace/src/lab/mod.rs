//! The lab wing: tooling that drives pl as a user would, never used by the product.
//!
//! [`spec`] lays out the built-in lab and [`topology`] builds network-namespace labs (re-exported
//! here as `lab::Lab`), [`cluster`] builds its cluster shape (N forwarders on one switch,
//! `pl lab up --nodes N`), [`netns`] and [`cmd`] run things inside them, [`traffic`]
//! is their servers and clients ([`serve`] runs the servers as a process of their own for
//! `pl lab up --serve`), [`runner`] starts `pl run` as a separate process, and
//! [`demo`] and [`bench`](mod@bench) are the `pl demo` and `pl bench` commands built on all
//! of it. Product modules (config to control) never import from here.

pub mod bench;
pub mod cluster;
pub mod cluster_demo;
pub mod cmd;
pub mod demo;
pub mod netns;
pub mod runner;
pub mod serve;
pub mod spec;
pub mod topology;
pub mod traffic;

pub use spec::*;
pub use topology::*;
