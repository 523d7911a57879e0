//! A TCP SYN is admitted before its flow lookup, and the slot its reply entry will take
//! (the first SNAT probe's home) is touched then: two cold misses of the flow table, the
//! forward key's and the reply key's, overlap instead of following each other. A SYN that
//! finds its flow drops the admission; one that is refused is judged again in order.

use pl_common::{flow::FlowKey, flowtable, settings::snat_port};

use crate::{
    endpoint::{self, Admitted, Dest},
    maps::Flows,
};

/// A SYN's admission, made before its flow lookup: the slot its reply entry will take
/// (first SNAT probe) is touched now, so that cold miss overlaps the lookup's own.
#[inline(always)]
pub fn admit(key: &FlowKey) -> Option<Admitted> {
    let Dest::Listener(p) = endpoint::dest(key) else {
        return None;
    };
    let a = endpoint::admit(key, p).ok()?;
    let orig = u16::from_be(key.sport_be);
    let port = snat_port(p.snat_port_min, p.snat_port_max, orig, a.hash, 0);
    let reply = FlowKey {
        src_be: a.target_be,
        dst_be: a.nlb_be,
        sport_be: p.target_port_be,
        dport_be: port.to_be(),
        network: p.provider_network,
        proto: key.proto,
        _pad: 0,
    };
    flowtable::touch(&Flows, Flows::hash(&reply));
    Some(a)
}
