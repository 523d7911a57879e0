//! The DNS address's budget: frames to a network's DNS address that one CPU passes to the
//! stack, in fixed 100 ms windows. A flood past it is dropped in XDP (tens of ns a frame)
//! instead of costing the forwarding CPU the stack's way to the server's socket (about a
//! microsecond a query).

use bytemuck::{Pod, Zeroable};

/// How long one window lasts.
pub const WINDOW_NS: u64 = 100_000_000;

/// Value of `PL_DNS_RATE` (per CPU, one per network): the current window and what it
/// passed so far.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct DnsWindow {
    pub start_ns: u64,
    pub passed: u64,
}

/// Whether one more frame fits `w` at `now_ns` with `per_window` frames a window; counts
/// it if so. A window older than [`WINDOW_NS`] (or a clock that went back) starts anew.
#[inline(always)]
pub fn admit(w: &mut DnsWindow, now_ns: u64, per_window: u32) -> bool {
    if now_ns.wrapping_sub(w.start_ns) >= WINDOW_NS {
        w.start_ns = now_ns;
        w.passed = 0;
    }
    if w.passed >= u64::from(per_window) {
        return false;
    }
    w.passed += 1;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_passes_its_budget_then_drops_until_the_next() {
        let mut w = DnsWindow::default();
        let t0 = 5 * WINDOW_NS;
        let passed = (0..10).filter(|i| admit(&mut w, t0 + i, 3)).count();
        assert_eq!(passed, 3);
        assert!(
            !admit(&mut w, t0 + WINDOW_NS - 1, 3),
            "still the same window"
        );
        assert!(admit(&mut w, t0 + WINDOW_NS, 3), "a new window");
        // A clock that went back starts a window too, rather than dropping for ages.
        assert!(admit(&mut w, t0 - 1, 3));
        assert!(admit(&mut w, t0, 3));
    }
}
