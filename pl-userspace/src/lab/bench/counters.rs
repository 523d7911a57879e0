//! Hardware counters on the forwarder's CPU: `perf stat -C` around each measurement, where
//! the machine exposes them (many VMs do not; the report then says so). The generator, the
//! data path (in the generator's softirq) and the sink share that CPU, so a count per
//! packet is the whole pipeline's; differences between variants are the data path's.

use std::process::{Child, Command, Stdio};

use anyhow::Context as _;

use super::results::HwCount;

/// The events counted: `PL_BENCH_PERF_EVENTS` (a perf event list) replaces them, e.g. with
/// software events to try the plumbing on a machine without hardware counters.
pub(super) fn events() -> String {
    std::env::var("PL_BENCH_PERF_EVENTS")
        .unwrap_or_else(|_| "cycles,instructions,cache-misses".to_owned())
}

/// Whether `perf stat` counts `events` here: Ok, or the sentence the report shows.
pub(super) fn available(events: &str) -> Result<(), String> {
    let out = Command::new("perf")
        .args(["stat", "-x,", "-e", events, "true"])
        .output()
        .map_err(|_| "perf not installed: hardware counters not read".to_owned())?;
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || err.contains("<not supported>") || err.contains("<not counted>") {
        return Err("hardware counters not exposed by this VM".to_owned());
    }
    Ok(())
}

/// A `perf stat` counting on one CPU until stopped.
pub(super) struct Perf(Child);

impl Perf {
    pub(super) fn start(cpu: usize, events: &str) -> anyhow::Result<Self> {
        let child = Command::new("perf")
            .args(["stat", "-x,", "-C", &cpu.to_string(), "-e", events])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting perf stat")?;
        Ok(Self(child))
    }

    /// Stops counting (SIGINT, as perf expects) and returns the counts.
    pub(super) fn stop(self) -> anyhow::Result<Vec<HwCount>> {
        let pid = nix::unistd::Pid::from_raw(
            i32::try_from(self.0.id()).context("perf stat's pid does not fit a pid_t")?,
        );
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT)
            .context("stopping perf stat")?;
        let out = self.0.wait_with_output().context("waiting for perf stat")?;
        Ok(parse(&String::from_utf8_lossy(&out.stderr)))
    }
}

/// The counts in `perf stat -x,` output (value, unit, event, ...); lines without a
/// number (`<not supported>`, notes) are left out.
pub(super) fn parse(csv: &str) -> Vec<HwCount> {
    csv.lines()
        .filter_map(|l| {
            let mut f = l.split(',');
            let count = f.next()?.trim().parse::<f64>().ok()?;
            let event = f.nth(1)?.trim();
            (!event.is_empty()).then(|| HwCount {
                event: event.to_owned(),
                count,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counts_and_skips_what_perf_could_not_count() {
        let csv = "\
# started on Wed Dec  2 05:40:00 2026\n\
\n\
1234567,,cycles,400123456,100.00,,\n\
2345678,,instructions,400123456,100.00,1.90,insn per cycle\n\
<not supported>,,cache-misses,0,100.00,,\n\
400.12,msec,task-clock,400120000,100.00,1.000,CPUs utilized\n";
        let c = parse(csv);
        let got: Vec<(&str, f64)> = c.iter().map(|h| (h.event.as_str(), h.count)).collect();
        assert_eq!(
            got,
            [
                ("cycles", 1_234_567.0),
                ("instructions", 2_345_678.0),
                ("task-clock", 400.12)
            ]
        );
    }
}
