//! Services (NLBs) and their targets, as the data path picks and rewrites to them.

use bytemuck::{Pod, Zeroable};

use crate::maglev::MAGLEV_SIZE;

/// Zones a service can span.
pub const MAX_ZONES: usize = 4;

/// The Maglev table of service `service` for endpoint-address zone `zone`, or its
/// cross-zone table when `zone` is `None`.
pub const fn maglev_table(service: u16, zone: Option<u8>) -> u32 {
    let z = match zone {
        Some(z) => z as u32,
        None => MAX_ZONES as u32,
    };
    service as u32 * (MAX_ZONES as u32 + 1) + z
}

/// Index of slot `hash % M` of a Maglev table in the flat `PL_MAGLEV` array.
pub const fn maglev_slot(table: u32, hash: u32) -> u32 {
    table * MAGLEV_SIZE as u32 + hash % MAGLEV_SIZE as u32
}

/// Value of `PL_TARGETS`, indexed by target id.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct TargetInfo {
    pub addr_be: u32,
    /// Resolved by ARP from an NLB address; only resolved targets enter Maglev tables.
    pub mac: [u8; 6],
    pub zone: u8,
    pub _pad: u8,
}

#[cfg(feature = "user")]
mod user {
    use super::*;
    // SAFETY: repr(C) with explicit padding, every bit pattern valid (bytemuck-checked).
    unsafe impl aya::Pod for TargetInfo {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_do_not_overlap() {
        assert_eq!(maglev_table(0, Some(0)), 0);
        assert_eq!(maglev_table(0, None), MAX_ZONES as u32);
        assert_eq!(maglev_table(1, Some(0)), MAX_ZONES as u32 + 1);
        assert_eq!(
            maglev_slot(1, MAGLEV_SIZE as u32 + 3),
            MAGLEV_SIZE as u32 + 3
        );
    }
}
