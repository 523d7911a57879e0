//! Flow events the XDP program writes to `PL_EVENTS` (a ring buffer) while `pl flows
//! --watch` is connected: a flow opened, or a new flow refused and why. Closes come from
//! userspace's sweep. Only the new-flow path writes one, and only when `PL_WATCH[0]` is set.

use bytemuck::{Pod, Zeroable};

/// A flow was created.
pub const EVENT_OPEN: u8 = 1;
/// A new flow was refused; `reason` is the `EndpointCounter` it was counted under.
pub const EVENT_REFUSED: u8 = 2;

/// One event. Tuples in network byte order, as on the wire.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct FlowEvent {
    pub kind: u8,
    pub reason: u8,
    pub proto: u8,
    pub _pad: u8,
    pub endpoint: u16,
    /// The consumer network.
    pub network: u16,
    /// Consumer side: client -> endpoint address.
    pub src_be: u32,
    pub dst_be: u32,
    pub sport_be: u16,
    pub dport_be: u16,
    /// Provider side (opens only): NLB address and SNAT port -> target.
    pub nlb_be: u32,
    pub target_be: u32,
    pub snat_port_be: u16,
    pub target_port_be: u16,
}

#[cfg(test)]
mod tests {
    #[test]
    fn event_is_32_bytes() {
        assert_eq!(size_of::<super::FlowEvent>(), 32);
    }
}
