//! A cluster node's lease on the zones it serves. Its `pl run` renews it several times a
//! second; if `pl run` dies (and keepalived with it), the program stays attached but stops
//! answering ARP and opening flows when the lease lapses, before a backup takes the zones
//! over, so no zone is ever answered by two nodes. Flows already open go on: their frames
//! follow the new owner's gratuitous ARP. A lone forwarder has no lease (0).

use crate::maps::PL_LEASE;

/// Whether this node may answer for its addresses at `now` (coarse monotonic ns).
#[inline(always)]
pub fn held(now: u64) -> bool {
    PL_LEASE
        .get(0)
        .is_none_or(|until| *until == 0 || now < *until)
}
