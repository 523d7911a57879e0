//! The pl XDP program lives in the `pl-ebpf` binary (`src/main.rs`); this empty library
//! lets `pl-userspace` name the crate as a build-dependency so cargo rebuilds the object
//! when it changes.
#![no_std]
