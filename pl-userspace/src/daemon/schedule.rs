//! What the 1 s tick does: when to ask ARP again and when to sweep the flow table.

/// Seconds between ARP rounds while every target is resolved (unresolved: every second).
pub const PROBE_EVERY: u64 = 10;
/// Seconds between sweeps of the flow table.
pub const SWEEP_EVERY: u64 = 5;

/// Counts the loop's 1 s ticks.
#[derive(Debug, Default)]
pub struct Schedule {
    ticks: u64,
}

/// What one tick is due to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Due {
    /// ARP every target (or next hop) again.
    pub probe: bool,
    /// Sweep idle flows (if no sweep is still running).
    pub sweep: bool,
}

impl Schedule {
    /// Advances one second. ARP runs every second while a target is unresolved, so a new
    /// target is found fast, and every `PROBE_EVERY` s otherwise to stay fresh.
    pub fn tick(&mut self, unresolved: bool) -> Due {
        self.ticks += 1;
        Due {
            probe: unresolved || self.ticks.is_multiple_of(PROBE_EVERY),
            sweep: self.ticks.is_multiple_of(SWEEP_EVERY),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_every_ten_seconds_or_every_second_while_unresolved() {
        let mut s = Schedule::default();
        let due: Vec<Due> = (0..20).map(|_| s.tick(false)).collect();
        let probes: Vec<usize> = (0..20).filter(|&i| due[i].probe).map(|i| i + 1).collect();
        let sweeps: Vec<usize> = (0..20).filter(|&i| due[i].sweep).map(|i| i + 1).collect();
        assert_eq!(probes, [10, 20]);
        assert_eq!(sweeps, [5, 10, 15, 20]);
        assert!((0..3).all(|_| s.tick(true).probe));
    }
}
