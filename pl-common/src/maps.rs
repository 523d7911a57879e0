//! Names of the program and its maps, shared so userspace looks up exactly what the
//! object defines (the fixture tests load the real object by these names).

/// The XDP entry point in the object.
pub const PROGRAM_NAME: &str = "pl_xdp";

/// `HASH<u32 ifindex, IfaceConfig>`: the interfaces pl manages, written by userspace before
/// attaching. A frame arriving on any other interface is passed untouched.
pub const IFACES_MAP: &str = "PL_IFACES";

/// `PERCPU_ARRAY<IfaceStats>` indexed by `IfaceConfig::slot`.
pub const IFACE_STATS_MAP: &str = "PL_IFACE_STATS";

/// How many interfaces one program instance can manage (the stats array's size).
pub const MAX_IFACES: u32 = 64;
