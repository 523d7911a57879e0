//! A TCP SYN is admitted before its flow lookup, and the slots its entries will take (the
//! reply key's home at the first SNAT probe, the forward key's home) are touched then: the
//! two cold misses of the flow table overlap instead of following each other. A SYN that
//! finds its flow drops the admission; one that is refused is judged again in order.

use pl_common::{flow::FlowKey, flowtable, settings::snat_port};

use crate::{
    endpoint::{self, Admitted, Dest},
    maps::Flows,
};

/// A SYN's admission, made before its flow lookup.
#[inline(always)]
pub fn admit(key: &FlowKey) -> Option<Admitted> {
    let Dest::Listener(p) = endpoint::dest(key) else {
        return None;
    };
    endpoint::admit(key, p).ok()
}

/// Touches the home slots of the admitted flow's reply entry (first SNAT probe) and of
/// its forward key (`hash`: the key's flow hash), back to back: the two cold misses are
/// under way together, and the lookup and inserts that follow find their lines coming. (With the lookup's own miss
/// after the admission instead, they cost a miss each: `pl bench`'s stage rows show it.)
#[inline(always)]
pub fn warm(key: &FlowKey, hash: u32, a: &Admitted) {
    let p = a.policy;
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
    flowtable::touch(&Flows, hash);
}
