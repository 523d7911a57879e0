//! Maglev consistent hashing (Eisenbud et al., NSDI 2016): a lookup table of prime size
//! in which each backend owns ~1/n of the slots, and adding or removing one backend moves
//! few slots of the others. Built on the host, read by the XDP program.

use crate::hash::murmur3;

/// Slots per table: prime, so every backend's permutation visits every slot.
pub const MAGLEV_SIZE: usize = 1021;

/// Marks an empty slot (a table with no backends).
pub const NO_BACKEND: u32 = u32::MAX;

const OFFSET_SEED: u32 = 0x6d61_676c; // "magl"
const SKIP_SEED: u32 = 0x6576_2121; // "ev!!"

/// Fills `table` with indexes into `backends` (or [`NO_BACKEND`] if there are none).
/// `backends` are stable identities (e.g. a target's address and port as bytes), so the
/// same set gives the same table wherever it is built. `next` is scratch space with one
/// entry per backend. `table.len()` must be prime.
pub fn populate<B: AsRef<[u8]>>(backends: &[B], table: &mut [u32], next: &mut [u32]) {
    let m = table.len();
    table.fill(NO_BACKEND);
    let n = backends.len();
    if n == 0 || m == 0 {
        return;
    }
    let next = &mut next[..n];
    next.fill(0);
    let perm = |i: usize, j: u32| -> usize {
        let key = backends[i].as_ref();
        let offset = murmur3(key, OFFSET_SEED) as usize % m;
        let skip = murmur3(key, SKIP_SEED) as usize % (m - 1) + 1;
        (offset + j as usize * skip) % m
    };
    let mut filled = 0;
    loop {
        for (i, j) in next.iter_mut().enumerate() {
            let mut slot = perm(i, *j);
            while table[slot] != NO_BACKEND {
                *j += 1;
                slot = perm(i, *j);
            }
            table[slot] = i as u32;
            *j += 1;
            filled += 1;
            if filled == m {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::{vec, vec::Vec};

    use super::*;

    fn build(backends: &[&str]) -> Vec<u32> {
        let mut t = vec![0; MAGLEV_SIZE];
        let mut next = vec![0; backends.len()];
        populate(backends, &mut t, &mut next);
        t
    }

    #[test]
    fn empty_set_gives_empty_table() {
        assert!(build(&[]).iter().all(|s| *s == NO_BACKEND));
    }

    #[test]
    fn every_slot_filled_and_shares_are_even() {
        let b = [
            "10.9.0.11:8443",
            "10.9.0.12:8443",
            "10.9.0.13:8443",
            "10.9.0.14:8443",
        ];
        let t = build(&b);
        let mut counts = [0usize; 4];
        for s in &t {
            counts[*s as usize] += 1;
        }
        // Maglev gives each backend floor or ceil of M/n slots.
        for c in counts {
            assert!((255..=256).contains(&c), "uneven shares: {counts:?}");
        }
    }

    #[test]
    fn golden_vector() {
        // Pins the algorithm and its seeds: tables built by another build of pl, or by an
        // older one during a restart, must agree slot for slot. Cross-checked against an
        // independent Python build of the same algorithm on the mmh3 package.
        let t = build(&["10.9.0.11:8443", "10.9.0.12:8443"]);
        assert_eq!(
            &t[..16],
            &[1, 1, 0, 0, 0, 0, 1, 0, 1, 1, 0, 1, 1, 1, 0, 0],
            "first slots changed"
        );
        let ones = t.iter().filter(|s| **s == 1).count();
        assert_eq!(ones, 510);
    }

    #[test]
    fn removing_a_backend_moves_few_other_slots() {
        let all = ["a", "b", "c", "d", "e", "f", "g", "h"];
        let before = build(&all);
        let after = build(&all[..7]); // "h" (index 7) removed; others keep their indexes
        let moved = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| **b != 7 && b != a)
            .count();
        // Only h's slots must move; Maglev moves a few more, far fewer than a rehash would.
        assert!(
            moved < MAGLEV_SIZE / 10,
            "{moved} slots of surviving backends moved"
        );
    }
}
