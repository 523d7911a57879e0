//! Flow sync's receiving side: what a received flow must be to be written (a flow this
//! node's own config could have opened, through a zone the sender may serve), and how it
//! is written, for either family's table. [`super::sync`] takes the datagrams in.

use std::net::IpAddr;

use pl_common::flow::{COARSE_SHIFT, CREATED_MASK, FLOW_FORWARD, FLOW_REPLY, Half as _, coarse};

use super::wire::{OP_REMOVE, Record};
use crate::{
    flows::{self, Family, FlowTable, table::Entry},
    model::Model,
};

/// What became of a received record.
pub(super) enum Applied {
    Written,
    Refused,
    Conflict,
    Nothing,
}

/// Writes record `r` from node `sender` into `t`. `target_mac`: the MAC this node has
/// for a target address, which wins over the sender's.
pub(super) fn apply<S: Family>(
    t: &FlowTable<S>,
    model: &Model,
    sender: usize,
    r: &Record<S>,
    now_ns: u64,
    target_mac: &dyn Fn(IpAddr) -> Option<[u8; 6]>,
) -> Applied {
    let Some(zone) = check(model, sender, r) else {
        return Applied::Refused;
    };
    // A zone served here is this node's call: what another node says of it is late news
    // (its last round before letting go arrives before this node serves).
    if model.serves(zone) {
        return Applied::Nothing;
    }
    let local = t.get(&r.forward_key);
    // The same flow: the tuple rewritten the same way (a reopened flow takes a new port).
    let same = |e: &Entry<S>| S::reply_key(&r.forward_key, &e.value) == r.reply_key;
    if r.op == OP_REMOVE {
        return if local.is_some_and(|e| same(&e)) && flows::remove_flow(t, &r.forward_key) {
            Applied::Written
        } else {
            Applied::Nothing
        };
    }
    let now_c = coarse(now_ns);
    let seen = |idle_ms: u32| {
        now_c.wrapping_sub(((u64::from(idle_ms) * 1_000_000) >> COARSE_SHIFT) as u32)
    };
    let (fwd_seen, rep_seen) = (seen(r.forward_idle_ms), seen(r.reply_idle_ms));
    match local {
        Some(e) if same(&e) => {
            t.merge(&r.forward_key, r.forward.state(), fwd_seen);
            t.merge(&r.reply_key, r.reply.state(), rep_seen);
            return Applied::Written;
        }
        // Another flow on the tuple (the consumer reused its port): the old one goes.
        Some(_) => {
            flows::remove_flow(t, &r.forward_key);
        }
        None => {}
    }
    let created = ((now_ns / 1_000_000_000) as u32).wrapping_sub(r.age_s) & CREATED_MASK;
    let mut reply = r.reply;
    S::set_last_seen(&mut reply, rep_seen);
    let mut forward = r.forward;
    S::set_last_seen(&mut forward, fwd_seen);
    let mac = target_mac(S::rewritten(&forward).1.ip()).unwrap_or(S::dst_mac(&forward));
    S::set_dst_mac(&mut forward, mac);
    // The reply entry first: it is the SNAT port's reservation.
    let reserved = match t.insert(&r.reply_key, &reply, created) {
        Ok(()) => true,
        Err(_) => match t.get(&r.reply_key) {
            // Already held for this very flow (its forward entry was lost): keep it.
            Some(e) if same_reply(&e, &reply) => false,
            _ => return Applied::Conflict,
        },
    };
    if t.insert(&r.forward_key, &forward, created).is_err() {
        if reserved {
            t.remove(&r.reply_key);
        }
        return Applied::Conflict;
    }
    Applied::Written
}

fn same_reply<S: Family>(e: &Entry<S>, v: &S::Entry) -> bool {
    S::rewritten(&e.value) == S::rewritten(v) && S::egress(&e.value) == S::egress(v)
}

/// The zone of the flow in `r` if it is one this config could have opened, through a zone
/// the sender may serve; None refuses it (a peer cannot open a path this config would not).
fn check<S: Family>(model: &Model, sender: usize, r: &Record<S>) -> Option<u8> {
    let c = model.cluster.as_ref()?;
    let (k, f) = (&r.forward_key, &r.forward);
    let zone = zone_of::<S>(model, k, f)?;
    if !c.candidates(zone).any(|(i, _)| i == sender) {
        return None;
    }
    if r.op == OP_REMOVE {
        return Some(zone);
    }
    let e = &model.endpoints[usize::from(S::endpoint(f))];
    let s = model.services.get(usize::from(e.service))?;
    let rep = &r.reply;
    let ((consumer, addr), (nlb, target)) = (S::ends(k), S::rewritten(f));
    // A listener of the service on that port, to its target port.
    let listener = s
        .listeners
        .iter()
        .any(|l| l.proto == S::proto(k) && l.port == addr.port() && l.target_port == target.port());
    // A target the endpoint address's zone may reach, from an NLB address of the service.
    let reaches = s
        .targets
        .iter()
        .any(|t| t.ip == target.ip() && (s.cross_zone || t.zone == zone));
    let sound = f.dir() == FLOW_FORWARD
        && rep.dir() == FLOW_REPLY
        && !s.removed
        && listener
        && reaches
        && (model.settings.snat_port_min..=model.settings.snat_port_max).contains(&nlb.port())
        && S::egress(f) == s.network
        && s.nlbs.iter().any(|(ip, _)| *ip == nlb.ip())
        && r.reply_key == S::reply_key(k, f)
        && S::rewritten(rep) == (addr, consumer)
        && S::egress(rep) == S::network(k)
        && match consumer.ip() {
            IpAddr::V4(src) => model.allows(S::endpoint(f), S::network(k), src),
            IpAddr::V6(src) => model.allows6(S::endpoint(f), S::network(k), src),
        };
    sound.then_some(zone)
}

/// The zone of the endpoint address a forward entry's consumer sent to.
pub(super) fn zone_of<S: Family>(model: &Model, key: &S::Key, v: &S::Entry) -> Option<u8> {
    let e = model.endpoints.get(usize::from(S::endpoint(v)))?;
    if e.removed || e.network != S::network(key) {
        return None;
    }
    let dst = S::ends(key).1.ip();
    e.addrs.iter().find(|(ip, _)| *ip == dst).map(|(_, z)| *z)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::cluster::wire::{OP_UPSERT, Record6};
    use crate::model::testing::{EXAMPLE, EXAMPLE6, build};
    use crate::plan::{be, be4};
    use pl_common::{
        flow::{FlowKey, FlowValue},
        flow6::{Addr6, FlowKey6, FlowValue6},
    };
    use std::net::{Ipv4Addr, Ipv6Addr};

    pub(crate) const NODES: &str = "\n[cluster]\ninterface = \"mgmt0\"\nsecret_file = \"/etc/pl/cluster.key\"\n\n[[node]]\nname = \"fw-a\"\naddress = \"192.168.100.1\"\nzones = [\"z1\"]\nbackup_zones = [\"z2\"]\n\n[[node]]\nname = \"fw-b\"\naddress = \"192.168.100.2\"\nzones = [\"z2\"]\nbackup_zones = [\"z1\"]\n";

    /// A flow of acme-billing (endpoint 0, network 0) through 10.0.0.100 (zone z1) to
    /// target 10.9.0.11, as XDP would have written it.
    pub(crate) fn record(model: &Model) -> Record {
        let ip = |s: &str| be(s.parse().expect("ip"));
        let key = FlowKey {
            src_be: ip("10.0.0.10"),
            dst_be: ip("10.0.0.100"),
            sport_be: 40000u16.to_be(),
            dport_be: 443u16.to_be(),
            network: 0,
            proto: 6,
            _pad: 0,
        };
        let s = &model.services[0];
        let forward = FlowValue {
            new_src_be: be4(s.nlbs[0].0).expect("an IPv4 NLB"),
            new_dst_be: be4(s.targets[0].ip).expect("an IPv4 target"),
            new_sport_be: 20000u16.to_be(),
            new_dport_be: 8443u16.to_be(),
            egress: s.network as u8,
            dir: FLOW_FORWARD,
            endpoint: 0,
            ..FlowValue::default()
        };
        let reply = FlowValue {
            new_src_be: key.dst_be,
            new_dst_be: key.src_be,
            new_sport_be: key.dport_be,
            new_dport_be: key.sport_be,
            egress: 0,
            dir: FLOW_REPLY,
            endpoint: 0,
            ..FlowValue::default()
        };
        Record {
            forward_key: key,
            reply_key: forward.reply_key(6),
            forward,
            reply,
            op: OP_UPSERT,
            ..Record::default()
        }
    }

    /// What a record's spoiling makes of it, and how.
    type Spoil = (&'static str, fn(&mut Record));

    #[test]
    fn only_flows_this_config_could_open_from_a_zone_the_sender_may_serve_are_taken() {
        let m = build(&format!("{EXAMPLE}{NODES}")).unwrap_or_else(|e| panic!("{e}"));
        let r = record(&m);
        assert_eq!(check(&m, 0, &r), Some(0), "fw-a is z1's primary");
        assert_eq!(check(&m, 1, &r), Some(0), "fw-b backs z1 up");
        let other_zone = be4(m.services[0].targets[1].ip).expect("IPv4");
        assert_ne!(
            m.services[0].targets[1].zone, 0,
            "the second target is z2's"
        );
        let mut r = record(&m);
        r.forward.new_dst_be = other_zone;
        assert_eq!(
            check(&m, 1, &r),
            None,
            "z2's target through z1 with cross_zone off"
        );
        let bad: [Spoil; 7] = [
            ("a target port no listener has", |r| {
                r.forward.new_dport_be = 22u16.to_be();
            }),
            ("a SNAT port outside the range", |r| {
                r.forward.new_sport_be = 80u16.to_be();
                r.reply_key = r.forward.reply_key(6);
            }),
            ("a target the service lacks", |r| {
                r.forward.new_dst_be = 0x0909_0909;
            }),
            ("a source address not the NLB's", |r| {
                r.forward.new_src_be = 1;
            }),
            ("a reply entry for another tuple", |r| {
                r.reply.new_dst_be = 7;
            }),
            ("an address outside allowed_sources", |r| {
                r.forward_key.src_be = be(Ipv4Addr::new(10, 0, 1, 10));
                r.reply.new_dst_be = r.forward_key.src_be;
            }),
            ("an address that is no endpoint's", |r| {
                r.forward_key.dst_be = 5;
            }),
        ];
        for (what, spoil) in bad {
            let mut r = record(&m);
            spoil(&mut r);
            assert_eq!(check(&m, 1, &r), None, "{what} taken");
        }
        let three = format!(
            "{EXAMPLE}{}",
            NODES.replace("backup_zones = [\"z1\"]", "backup_zones = []")
        );
        let m3 = build(&three).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(check(&m3, 1, &record(&m3)), None, "fw-b may not serve z1");
    }

    /// A flow of acme-billing6 (endpoint 0, network 0) from fd00::10 through fd00::64
    /// (zone z1) to target fd00:9::11 from NLB address fd00:9::fa, as XDP would have
    /// written it.
    pub(crate) fn record6(model: &Model) -> Record6 {
        let ip = |s: &str| -> Addr6 { s.parse::<Ipv6Addr>().expect("ip").octets() };
        let key = FlowKey6 {
            src: ip("fd00::10"),
            dst: ip("fd00::64"),
            sport_be: 40000u16.to_be(),
            dport_be: 443u16.to_be(),
            network: 0,
            proto: 6,
            _pad: 0,
        };
        let forward = FlowValue6 {
            new_src: ip("fd00:9::fa"),
            new_dst: ip("fd00:9::11"),
            new_sport_be: 20000u16.to_be(),
            new_dport_be: 8443u16.to_be(),
            dst_mac: [2, 0, 0, 0, 0, 0x11],
            egress: model.services[0].network as u8,
            dir: FLOW_FORWARD,
            endpoint: 0,
            ..FlowValue6::default()
        };
        let reply = FlowValue6 {
            new_src: key.dst,
            new_dst: key.src,
            new_sport_be: key.dport_be,
            new_dport_be: key.sport_be,
            egress: 0,
            dir: FLOW_REPLY,
            endpoint: 0,
            ..FlowValue6::default()
        };
        Record6 {
            forward_key: key,
            reply_key: forward.reply_key(6),
            forward,
            reply,
            op: OP_UPSERT,
            ..Record6::default()
        }
    }

    /// What an IPv6 record's spoiling makes of it, and how.
    type Spoil6 = (&'static str, fn(&mut Record6));

    #[test]
    fn an_ipv6_flow_is_taken_only_if_this_config_could_open_it() {
        let m = build(&format!("{EXAMPLE6}{NODES}")).unwrap_or_else(|e| panic!("{e}"));
        let r = record6(&m);
        assert_eq!(check(&m, 0, &r), Some(0), "fw-a is z1's primary");
        assert_eq!(check(&m, 1, &r), Some(0), "fw-b backs z1 up");
        let bad: [Spoil6; 6] = [
            ("a target port no listener has", |r| {
                r.forward.new_dport_be = 22u16.to_be();
            }),
            ("a target the service lacks", |r| {
                r.forward.new_dst[15] = 0x99;
            }),
            ("a zone's target it may not reach", |r| {
                r.forward.new_dst = "fd00:60::5".parse::<Ipv6Addr>().expect("ip").octets();
            }),
            ("a source address not the NLB's", |r| {
                r.forward.new_src[15] = 1;
            }),
            ("a reply entry for another tuple", |r| {
                r.reply.new_dst[15] = 7;
            }),
            ("an address outside allowed_sources", |r| {
                r.forward_key.src = "fd00:1::10".parse::<Ipv6Addr>().expect("ip").octets();
                r.reply.new_dst = r.forward_key.src;
            }),
        ];
        for (what, spoil) in bad {
            let mut r = record6(&m);
            spoil(&mut r);
            assert_eq!(check(&m, 1, &r), None, "{what} taken");
        }
    }
}
