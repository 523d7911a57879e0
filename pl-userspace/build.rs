//! Builds the XDP object with aya-build (nightly, bpfel-unknown-none, -Z build-std=core)
//! so `src/lib.rs` can embed it. Needs `bpf-linker` on PATH: `cargo xtask setup` builds it.

use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR not set")?;
    let root_dir = std::path::Path::new(&manifest_dir)
        .parent()
        .ok_or_else(|| anyhow!("{manifest_dir} has no parent"))?
        .join("pl-ebpf");
    let root_dir = root_dir
        .to_str()
        .ok_or_else(|| anyhow!("{} is not UTF-8", root_dir.display()))?;
    aya_build::build_ebpf(
        [aya_build::Package { name: "pl-ebpf", root_dir, ..Default::default() }],
        aya_build::Toolchain::default(),
    )
    .context("building the XDP object failed: run `cargo xtask setup` (needs nightly with rust-src and bpf-linker on PATH)")
}
