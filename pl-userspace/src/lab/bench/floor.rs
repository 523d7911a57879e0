//! The floor: what one dependent memory load costs on this machine, over a buffer the size
//! of the flow table, so a report can state the cost of more flows in misses rather than
//! only in ns. A random cyclic pointer chase over 64-byte lines (Sattolo's algorithm makes
//! the permutation one cycle through every line), so each load depends on the one before
//! and no prefetcher can guess it. Plain 4 KiB pages (transparent huge pages are
//! `madvise` here and the buffer asks for none), like the kernel's map memory.

use std::time::Instant;

use anyhow::Context as _;

use super::frames::SplitMix;

/// One cache line; the first word holds the index of the next line in the chase.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line([u64; 8]);

/// Nanoseconds per dependent load over a buffer of `bytes`, measured on `cpu` (the
/// forwarder's CPU: the generator runs there and the data path runs in its softirq).
pub(super) fn ns_per_load(bytes: u64, cpu: usize) -> anyhow::Result<f64> {
    std::thread::scope(|s| {
        s.spawn(|| -> anyhow::Result<f64> {
            let mut set = nix::sched::CpuSet::new();
            set.set(cpu)?;
            nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
                .with_context(|| format!("pinning the pointer chase to CPU {cpu}"))?;
            Ok(chase(bytes))
        })
        .join()
        .map_err(|_| anyhow::anyhow!("pointer-chase thread panicked"))?
    })
}

fn chase(bytes: u64) -> f64 {
    let n = usize::try_from(bytes / 64).unwrap_or(usize::MAX).max(2);
    let lines = cycle(n);
    let walk = |steps: usize, mut p: usize| {
        for _ in 0..steps {
            p = lines[p].0[0] as usize;
        }
        std::hint::black_box(p)
    };
    // Warm the TLB and caches as far as they go, then time: long enough to average,
    // short enough for a 1 GiB buffer (a few million loads).
    let p = walk(n.min(1 << 22), 0);
    let steps = (n * 2).clamp(1 << 20, 1 << 21);
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        walk(steps, p);
        best = best.min(t.elapsed().as_secs_f64() * 1e9 / steps as f64);
    }
    best
}

/// `n` lines whose first words form one random cycle through all of them.
fn cycle(n: usize) -> Vec<Line> {
    let mut lines = vec![Line([0; 8]); n];
    for (i, l) in lines.iter_mut().enumerate() {
        l.0[0] = i as u64;
    }
    // Sattolo: swapping only with an earlier slot leaves a single cycle.
    let mut rng = SplitMix(0x5eed_f100);
    for i in (1..n).rev() {
        let j = rng.below(i as u64) as usize;
        let (a, b) = (lines[i].0[0], lines[j].0[0]);
        lines[i].0[0] = b;
        lines[j].0[0] = a;
    }
    lines
}

/// Half the L2 cache of `cpu` (from sysfs; 256 KiB if it does not say): a buffer that
/// fits it, the floor below every miss.
pub(super) fn l2_fit(cpu: usize) -> u64 {
    let path = format!("/sys/devices/system/cpu/cpu{cpu}/cache/index2/size");
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            let s = s.trim();
            let (num, mult) = match s.strip_suffix('K') {
                Some(k) => (k, 1024),
                None => match s.strip_suffix('M') {
                    Some(m) => (m, 1024 * 1024),
                    None => (s, 1),
                },
            };
            num.parse::<u64>().ok().map(|v| v * mult / 2)
        })
        .unwrap_or(256 * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chase_is_one_cycle_through_every_line() {
        for n in [2, 3, 1000, 4096] {
            let lines = cycle(n);
            let mut seen = vec![false; n];
            let mut p = 0;
            for _ in 0..n {
                assert!(!seen[p], "line {p} visited twice in {n}");
                seen[p] = true;
                p = lines[p].0[0] as usize;
            }
            assert_eq!(p, 0, "not back at the start after {n} loads");
        }
    }

    #[test]
    fn a_small_chase_measures_something_plausible() {
        let ns = chase(64 * 1024);
        assert!(ns > 0.0 && ns < 1000.0, "{ns} ns per load in 64 KiB");
    }
}

#[cfg(test)]
mod big {
    /// The floor over a 1M-flow table's size: `cargo test -p pl-userspace --release --lib
    /// floor_over_a_million_flow_table -- --ignored --nocapture` (about 10 s, 552 MiB).
    #[test]
    #[ignore = "552 MiB and seconds of one CPU; run by hand"]
    fn floor_over_a_million_flow_table() {
        let t = std::time::Instant::now();
        let ns = super::chase(578_813_952);
        println!("{ns:.1} ns per load over 552 MiB, {:?} in all", t.elapsed());
        assert!(ns > 10.0, "{ns}: a 552 MiB chase that hits the cache?");
    }
}
