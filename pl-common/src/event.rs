//! Flow events the XDP program writes to `PL_EVENTS` (a ring buffer) while `pl flows
//! --watch` is connected: a flow opened, or a new flow refused and why. Closes come from
//! userspace's sweep. Only the new-flow path writes one, and only when `PL_WATCH[0]` is set.
//! IPv4 flows' events are [`FlowEvent`]s, IPv6 flows' [`FlowEvent6`]s; both begin with the
//! same eight bytes, whose `family` tells them apart.

use bytemuck::{Pod, Zeroable};

use crate::flow6::Addr6;

/// A flow was created.
pub const EVENT_OPEN: u8 = 1;
/// A new flow was refused; `reason` is the `EndpointCounter` it was counted under.
pub const EVENT_REFUSED: u8 = 2;

/// `family` of an IPv4 flow's event (the byte was padding, always zero).
pub const FAMILY_IPV4: u8 = 0;
/// `family` of an IPv6 flow's event.
pub const FAMILY_IPV6: u8 = 6;

/// One event of an IPv4 flow. Tuples in network byte order, as on the wire.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct FlowEvent {
    pub kind: u8,
    pub reason: u8,
    pub proto: u8,
    /// [`FAMILY_IPV4`].
    pub family: u8,
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

/// One event of an IPv6 flow: [`FlowEvent`]'s fields with 16-byte addresses, the ports
/// before them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct FlowEvent6 {
    pub kind: u8,
    pub reason: u8,
    pub proto: u8,
    /// [`FAMILY_IPV6`].
    pub family: u8,
    pub endpoint: u16,
    pub network: u16,
    pub sport_be: u16,
    pub dport_be: u16,
    /// Opens only, as the addresses after `dst`.
    pub snat_port_be: u16,
    pub target_port_be: u16,
    /// Consumer side: client -> endpoint address.
    pub src: Addr6,
    pub dst: Addr6,
    /// Provider side (opens only): NLB address -> target.
    pub nlb: Addr6,
    pub target: Addr6,
}

/// An event of either family, as read from the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    V4(FlowEvent),
    V6(FlowEvent6),
}

/// What both families' events say besides addresses and ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub kind: u8,
    pub reason: u8,
    pub proto: u8,
    pub endpoint: u16,
    pub network: u16,
}

impl Event {
    /// The event a ring record holds, by its family byte; None for a record too short for
    /// it or of no family (the program writes neither).
    pub fn decode(record: &[u8]) -> Option<Self> {
        match *record.get(3)? {
            FAMILY_IPV4 => record
                .get(..size_of::<FlowEvent>())
                .map(|b| Self::V4(bytemuck::pod_read_unaligned(b))),
            FAMILY_IPV6 => record
                .get(..size_of::<FlowEvent6>())
                .map(|b| Self::V6(bytemuck::pod_read_unaligned(b))),
            _ => None,
        }
    }

    pub fn head(&self) -> Head {
        match self {
            Self::V4(e) => Head {
                kind: e.kind,
                reason: e.reason,
                proto: e.proto,
                endpoint: e.endpoint,
                network: e.network,
            },
            Self::V6(e) => Head {
                kind: e.kind,
                reason: e.reason,
                proto: e.proto,
                endpoint: e.endpoint,
                network: e.network,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_is_32_bytes() {
        assert_eq!(size_of::<FlowEvent>(), 32);
        assert_eq!(size_of::<FlowEvent6>(), 80);
        // The family is read at the same place in both.
        assert_eq!(
            core::mem::offset_of!(FlowEvent, family),
            core::mem::offset_of!(FlowEvent6, family)
        );
    }

    #[test]
    fn a_record_is_read_by_its_family() {
        let v4 = FlowEvent {
            kind: EVENT_OPEN,
            endpoint: 3,
            src_be: 7,
            ..FlowEvent::default()
        };
        let mut v6 = FlowEvent6 {
            kind: EVENT_REFUSED,
            reason: 2,
            family: FAMILY_IPV6,
            network: 1,
            ..FlowEvent6::default()
        };
        v6.src[15] = 0x10;
        let b4 = bytemuck::bytes_of(&v4);
        let b6 = bytemuck::bytes_of(&v6);
        assert_eq!(Event::decode(b4), Some(Event::V4(v4)));
        assert_eq!(Event::decode(b6), Some(Event::V6(v6)));
        assert_eq!(Event::decode(b6).map(|e| e.head().reason), Some(2));
        // Short, or of no family: nothing.
        assert_eq!(Event::decode(&b6[..40]), None);
        assert_eq!(Event::decode(&b4[..3]), None);
        let mut odd = *b4.first_chunk::<32>().expect("32 bytes");
        odd[3] = 4;
        assert_eq!(Event::decode(&odd), None);
    }
}
