//! Which metric family each counter is exposed under: one family per kind of event, with
//! a label telling its counters apart (drops by `reason`, frames by `class`, XDP verdicts
//! by `action`), so one query sums them or breaks them down.

use pl_common::stats::{EndpointCounter as E, IfaceCounter as I};

/// A counter family: its name (after `pl_`, before `_total`), its help, the label that
/// tells its counters apart (None for a family of one counter), and its counters with
/// their label values.
pub(super) struct Family<C: 'static> {
    pub name: &'static str,
    pub help: &'static str,
    pub label: Option<&'static str>,
    pub members: &'static [(C, &'static str)],
}

macro_rules! family {
    ($name:literal, $help:literal, $c:expr) => {
        Family {
            name: $name,
            help: $help,
            label: None,
            members: &[($c, "")],
        }
    };
    ($name:literal, $help:literal, $label:literal: [$(($c:expr, $v:literal)),+ $(,)?]) => {
        Family {
            name: $name,
            help: $help,
            label: Some($label),
            members: &[$(($c, $v)),+],
        }
    };
}

/// Every per-interface counter, each in one family (a test holds that).
pub(super) const INTERFACE: &[Family<I>] = &[
    family!(
        "interface_rx_packets",
        "Frames seen on the interface",
        I::RxPackets
    ),
    family!(
        "interface_rx_bytes",
        "Bytes of the frames seen on the interface, from the Ethernet header on",
        I::RxBytes
    ),
    family!(
        "interface_frames",
        "Frames seen on the interface, by class (each frame has one)",
        "class": [
            (I::Arp, "arp"),
            (I::Ipv4Tcp, "ipv4_tcp"),
            (I::Ipv4Udp, "ipv4_udp"),
            (I::Ipv4Other, "ipv4_other"),
            (I::Ipv6Tcp, "ipv6_tcp"),
            (I::Ipv6Udp, "ipv6_udp"),
            (I::Ipv6Other, "ipv6_other"),
            (I::NonIpv4, "non_ipv4"),
            (I::Malformed, "malformed"),
        ]
    ),
    family!(
        "interface_arp_replied",
        "ARP requests for one of pl's addresses, answered with the interface's MAC",
        I::ArpReplied
    ),
    family!(
        "interface_arp_learned",
        "ARP replies from a target or its router, whose MAC pl learned",
        I::ArpLearned
    ),
    family!(
        "interface_ndp_replied",
        "Neighbour solicitations for one of pl's IPv6 addresses, answered with the interface's MAC",
        I::NdpReplied
    ),
    family!(
        "interface_ndp_learned",
        "Neighbour advertisements from a target or its router, whose MAC pl learned",
        I::NdpLearned
    ),
    family!(
        "interface_dropped",
        "Frames the data path dropped, by reason (README: Counters; Hostile and broken traffic)",
        "reason": [
            (I::DroppedArp, "arp"),
            (I::DroppedNotOurs, "not_ours"),
            (I::DroppedNoFlow, "no_flow"),
            (I::DroppedMartian, "martian"),
            (I::DroppedTruncated, "truncated"),
            (I::DroppedBadIpv4, "bad_ipv4"),
            (I::DroppedBadL4, "bad_l4"),
            (I::DroppedIpOptions, "ip_options"),
            (I::DroppedFragment, "fragment"),
            (I::DroppedVlan, "vlan"),
            (I::DroppedNonIpv4, "non_ipv4"),
            (I::DroppedNdp, "ndp"),
            (I::DroppedBadIpv6, "bad_ipv6"),
            (I::DroppedExtHeaders, "ext_headers"),
            (I::DroppedProtocol, "protocol"),
            (I::DroppedIcmp, "icmp"),
            (I::DroppedDnsRate, "dns_rate"),
        ]
    ),
    family!(
        "interface_passed_not_our_mac",
        "Frames for another host's MAC, passed to the kernel untouched",
        I::PassedNotOurMac
    ),
    family!(
        "interface_passed_dns",
        "ARP requests and neighbour solicitations for the network's DNS address, passed to pl's DNS server",
        I::PassedDns
    ),
    family!(
        "interface_icmp_translated",
        "ICMP and ICMPv6 errors about a flow, translated and sent on to the flow's other side",
        I::IcmpTranslated
    ),
    family!(
        "interface_icmp_time_exceeded",
        "ICMP or ICMPv6 time exceeded sent back for a packet whose TTL or hop limit expired here",
        I::IcmpTimeExceeded
    ),
    family!(
        "interface_icmp_frag_needed",
        "ICMP fragmentation needed or ICMPv6 packet too big sent back for a packet over the egress MTU",
        I::IcmpFragNeeded
    ),
    family!(
        "interface_xdp_actions",
        "Frames by the XDP action the program returned for them",
        "action": [
            (I::XdpPass, "pass"),
            (I::XdpDrop, "drop"),
            (I::XdpTx, "tx"),
            (I::XdpRedirect, "redirect"),
        ]
    ),
];

/// Every per-endpoint counter, each in one family (a test holds that).
pub(super) const ENDPOINT: &[Family<E>] = &[
    family!(
        "endpoint_to_provider_packets",
        "Consumer to provider packets forwarded",
        E::ToProviderPackets
    ),
    family!(
        "endpoint_to_provider_bytes",
        "Consumer to provider bytes forwarded (whole frames)",
        E::ToProviderBytes
    ),
    family!(
        "endpoint_to_consumer_packets",
        "Provider to consumer packets forwarded",
        E::ToConsumerPackets
    ),
    family!(
        "endpoint_to_consumer_bytes",
        "Provider to consumer bytes forwarded (whole frames)",
        E::ToConsumerBytes
    ),
    family!("endpoint_new_flows", "Flows opened", E::NewFlows),
    family!(
        "endpoint_mss_clamped",
        "SYNs and SYN-ACKs whose MSS option was lowered to fit the smaller network's MTU",
        E::MssClamped
    ),
    family!(
        "endpoint_refused",
        "Packets refused (no flow opened, nothing forwarded), by reason",
        "reason": [
            (E::RefusedNoListener, "no_listener"),
            (E::RefusedNotAccepted, "not_accepted"),
            (E::RefusedSource, "source"),
            (E::RefusedSpoofed, "spoofed"),
            (E::RefusedNoTarget, "no_target"),
            (E::RefusedSnatExhausted, "snat_exhausted"),
            (E::RefusedTtl, "ttl"),
            (E::RefusedTooBig, "too_big"),
            (E::RefusedFlowTableFull, "flow_table_full"),
            (E::RefusedNotSyn, "not_syn"),
        ]
    ),
    family!(
        "endpoint_revoked",
        "Established flows removed by a reload whose config no longer allows them",
        E::Revoked
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Each counter of `all` in exactly one of `families`, so a new counter cannot go
    /// unexported or twice.
    fn each_once<C: Copy + PartialEq + std::fmt::Debug>(all: &[C], families: &[Family<C>]) {
        for c in all {
            let homes: Vec<&str> = families
                .iter()
                .filter(|f| f.members.iter().any(|(m, _)| m == c))
                .map(|f| f.name)
                .collect();
            assert_eq!(homes.len(), 1, "{c:?} is in families {homes:?}");
        }
        for f in families {
            assert_eq!(
                f.label.is_none(),
                f.members.len() == 1,
                "{}: a label exactly when several counters",
                f.name
            );
        }
    }

    #[test]
    fn every_counter_is_in_one_family() {
        each_once(I::ALL, INTERFACE);
        each_once(E::ALL, ENDPOINT);
    }

    #[test]
    fn reasons_are_the_counter_names_unprefixed() {
        // Dashboards, `pl stats` and the README speak of the same reasons.
        let family = |fs: &'static [Family<I>], name| fs.iter().find(|f| f.name == name);
        for (c, v) in family(INTERFACE, "interface_dropped")
            .expect("dropped")
            .members
        {
            assert_eq!(c.name(), format!("dropped_{v}"));
        }
        let refused = ENDPOINT.iter().find(|f| f.name == "endpoint_refused");
        for (c, v) in refused.expect("endpoint_refused").members {
            assert_eq!(c.name(), format!("refused_{v}"));
        }
    }
}
