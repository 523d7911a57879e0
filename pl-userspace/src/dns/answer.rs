//! Answers: one network's names as an authoritative server gives them (no recursion), for
//! a query's bytes. Pure: hickory-proto parses and builds the messages; what is answered
//! comes from a [`Book`], which the server swaps whole on reload and when health changes.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
};

use hickory_proto::{
    op::{Edns, Message, MessageType, OpCode, ResponseCode},
    rr::{
        DNSClass, Name as DnsName, RData, Record, RecordType,
        rdata::{A, AAAA, NS, SOA},
    },
};

use super::names::{self, Kind};
use crate::model::Model;

/// The largest UDP answer sent to an EDNS client (DNS flag day 2020's 1232 bytes: no
/// fragments on any common path).
pub const EDNS_PAYLOAD: u16 = 1232;
/// The largest UDP answer to a client without EDNS (RFC 1035 4.2.1).
pub const UDP_PAYLOAD: usize = 512;

/// How the query came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// What became of a query, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// NOERROR: records, or none of the type asked (NODATA, with the SOA in authority).
    Answered,
    /// NXDOMAIN, with the SOA in authority.
    NxDomain,
    /// REFUSED (not a name pl holds, not class IN, a zone transfer) or NOTIMP (not a
    /// standard query).
    Refused,
    /// FORMERR, or no answer at all (a response, or too short to echo its id).
    Malformed,
}

/// The (service, zone) pairs with no healthy target: left out of regional and private
/// answers while another of the endpoint's zones is healthy.
pub type DeadZones = HashSet<(u16, u8)>;

struct Entry {
    kind: Kind,
    service: u16,
    groups: Vec<(u8, Vec<IpAddr>)>,
}

/// One network's names and what they answer.
pub struct Book {
    /// Lower case, without the trailing dot.
    domain: String,
    ttl: u32,
    serial: u32,
    names: HashMap<String, Entry>,
    /// Every service's private name, lower case: one not given here is NXDOMAIN.
    private: Vec<String>,
    /// The network's DNS addresses, answered for `ns.<domain>`.
    ns: Vec<IpAddr>,
    dead: DeadZones,
}

impl Book {
    /// Network `network`'s names (an index into `model.networks`), with `dead` zones.
    pub fn new(model: &Model, network: u16, dead: &DeadZones) -> Self {
        let list = names::names(model, network);
        let fingerprint: String = list
            .iter()
            .map(|n| format!("{} {:?}\n", n.name, n.addresses))
            .collect();
        let net = model
            .networks
            .get(usize::from(network))
            .map_or("", |n| n.name.as_str());
        Self {
            domain: model.dns.domain.clone(),
            ttl: model.dns.ttl_s,
            serial: names::serial(&fingerprint),
            names: list
                .into_iter()
                .map(|n| {
                    let entry = Entry {
                        kind: n.kind,
                        service: n.service,
                        groups: n.groups,
                    };
                    (n.name, entry)
                })
                .collect(),
            private: model.dns.private_names.values().cloned().collect(),
            ns: model.dns.addresses.get(net).cloned().unwrap_or_default(),
            dead: dead.clone(),
        }
    }

    /// `name`'s addresses as answered now (health applied, zones in config order), or
    /// None for a name this network does not have.
    pub fn addresses(&self, name: &str) -> Option<Vec<IpAddr>> {
        let e = self.names.get(&name.to_ascii_lowercase())?;
        Some(self.live_groups(e).into_iter().flatten().copied().collect())
    }

    /// The entry's zones as answered: a regional or private name leaves out zones with no
    /// healthy target while another is healthy (all come back when none is); a zonal name
    /// is its zone whatever its health, as NLB's zonal names are.
    fn live_groups<'a>(&self, e: &'a Entry) -> Vec<&'a Vec<IpAddr>> {
        let all = e.groups.iter().map(|(_, a)| a).collect();
        if e.kind == Kind::Zonal {
            return all;
        }
        let live: Vec<&Vec<IpAddr>> = e
            .groups
            .iter()
            .filter(|(z, _)| !self.dead.contains(&(e.service, *z)))
            .map(|(_, a)| a)
            .collect();
        if live.is_empty() { all } else { live }
    }

    /// Where `qname` (lower case, no trailing dot) stands.
    fn find(&self, qname: &str) -> Found<'_> {
        if let Some(e) = self.names.get(qname) {
            return Found::Name(e, qname.to_owned());
        }
        if qname == self.domain {
            return Found::Apex(self.domain.clone());
        }
        if qname.strip_suffix(&self.domain).is_some_and(|p| p == "ns.") {
            return Found::Server;
        }
        if is_under(qname, &self.domain) {
            // `<service>.<domain>` has no records but names below it: NODATA, not
            // NXDOMAIN, or a resolver minimising its queries (RFC 8020) would take every
            // name below for gone.
            if self.names.keys().any(|n| is_under(n, qname)) {
                return Found::Empty(self.domain.clone());
            }
            return Found::Missing(self.domain.clone());
        }
        match self
            .private
            .iter()
            .find(|p| qname == p.as_str() || is_under(qname, p))
        {
            Some(p) => Found::Missing(p.clone()),
            None => Found::Elsewhere,
        }
    }

    fn soa(&self, zone: &str) -> Option<Record> {
        let mname = DnsName::from_ascii(format!("ns.{}.", self.domain)).ok()?;
        let rname = DnsName::from_ascii(format!("hostmaster.{}.", self.domain)).ok()?;
        let ttl = i32::try_from(self.ttl).unwrap_or(i32::MAX);
        let soa = SOA::new(
            mname,
            rname,
            self.serial,
            3600,
            600,
            86_400,
            ttl.unsigned_abs(),
        );
        Some(Record::from_rdata(
            DnsName::from_ascii(format!("{zone}.")).ok()?,
            self.ttl,
            RData::SOA(soa),
        ))
    }

    fn ns_record(&self, zone: &str) -> Option<Record> {
        let ns = DnsName::from_ascii(format!("ns.{}.", self.domain)).ok()?;
        Some(Record::from_rdata(
            DnsName::from_ascii(format!("{zone}.")).ok()?,
            self.ttl,
            RData::NS(NS(ns)),
        ))
    }
}

/// Whether `name` is a proper subdomain of `zone`.
fn is_under(name: &str, zone: &str) -> bool {
    name.strip_suffix(zone)
        .is_some_and(|p| p.len() > 1 && p.ends_with('.'))
}

enum Found<'a> {
    /// One of the network's names (the name as looked up).
    Name(&'a Entry, String),
    /// The domain's apex.
    Apex(String),
    /// `ns.<domain>`: the server itself.
    Server,
    /// Under the domain, or a private name not given here: NXDOMAIN in this zone.
    Missing(String),
    /// A name with none of its own but names below it (an empty non-terminal): NODATA.
    Empty(String),
    /// Not pl's.
    Elsewhere,
}

/// The answer to `query` (a message's bytes) from `book`: the bytes to send back, if any,
/// and what became of it. `rng`: a fresh random number, for the zone order.
pub fn answer(
    book: &Book,
    query: &[u8],
    transport: Transport,
    rng: u64,
) -> (Option<Vec<u8>>, Outcome) {
    // A response (QR set) is never answered, so two servers cannot loop; nor is a message
    // too short to echo.
    if query.len() < 12 || query[2] & 0x80 != 0 {
        return (None, Outcome::Malformed);
    }
    let Ok(q) = Message::from_vec(query) else {
        let id = u16::from_be_bytes([query[0], query[1]]);
        let op = OpCode::from_u8((query[2] >> 3) & 0x0f);
        let msg = Message::error_msg(id, op, ResponseCode::FormErr);
        return (msg.to_vec().ok(), Outcome::Malformed);
    };
    let mut r = Message::response(q.metadata.id, q.metadata.op_code);
    r.metadata.recursion_desired = q.metadata.recursion_desired;
    let limit = match (transport, &q.edns) {
        (Transport::Tcp, _) => usize::from(u16::MAX),
        (Transport::Udp, None) => UDP_PAYLOAD,
        (Transport::Udp, Some(e)) => usize::from(e.max_payload().clamp(512, EDNS_PAYLOAD)),
    };
    if q.edns.is_some() {
        let mut e = Edns::new();
        e.set_max_payload(EDNS_PAYLOAD).set_version(0);
        r.set_edns(e);
    }
    let outcome = if q.edns.as_ref().is_some_and(|e| e.version() > 0) {
        // An EDNS version pl does not speak (RFC 6891 6.1.3).
        r.metadata.response_code = ResponseCode::BADVERS;
        Outcome::Malformed
    } else if q.metadata.op_code != OpCode::Query {
        r.metadata.response_code = ResponseCode::NotImp;
        Outcome::Refused
    } else if q.queries.len() != 1 || q.metadata.message_type != MessageType::Query {
        r.metadata.response_code = ResponseCode::FormErr;
        Outcome::Malformed
    } else {
        let question = q.queries[0].clone();
        r.add_query(question.clone());
        respond(book, &question, &mut r, rng)
    };
    let Ok(bytes) = r.to_vec() else {
        return (None, Outcome::Malformed);
    };
    if bytes.len() <= limit {
        return (Some(bytes), outcome);
    }
    // Too long for UDP: the header and question with TC set; the client asks over TCP.
    (r.truncate().to_vec().ok(), outcome)
}

/// Fills `r` with the answer to `question`.
fn respond(book: &Book, question: &hickory_proto::op::Query, r: &mut Message, rng: u64) -> Outcome {
    let qtype = question.query_type();
    if question.query_class() != DNSClass::IN
        || matches!(qtype, RecordType::AXFR | RecordType::IXFR)
    {
        r.metadata.response_code = ResponseCode::Refused;
        return Outcome::Refused;
    }
    let owner = question.name().clone();
    let lower = owner.to_lowercase().to_ascii();
    let qname = lower.strip_suffix('.').unwrap_or(&lower);
    let ttl = book.ttl;
    let addresses = |addrs: &mut dyn Iterator<Item = &IpAddr>| -> Vec<Record> {
        addrs
            .filter_map(|ip| match (ip, qtype) {
                (IpAddr::V4(v4), RecordType::A | RecordType::ANY) => Some(RData::A(A(*v4))),
                (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => {
                    Some(RData::AAAA(AAAA(*v6)))
                }
                _ => None,
            })
            .map(|d| Record::from_rdata(owner.clone(), ttl, d))
            .collect()
    };
    r.metadata.authoritative = true;
    let (records, zone) = match book.find(qname) {
        Found::Elsewhere => {
            r.metadata.authoritative = false;
            r.metadata.response_code = ResponseCode::Refused;
            return Outcome::Refused;
        }
        Found::Missing(zone) => {
            r.metadata.response_code = ResponseCode::NXDomain;
            r.add_authorities(book.soa(&zone));
            return Outcome::NxDomain;
        }
        Found::Server => (addresses(&mut book.ns.iter()), book.domain.clone()),
        Found::Name(e, name) => {
            let mut groups = book.live_groups(e);
            shuffle(&mut groups, rng);
            let mut records = addresses(&mut groups.into_iter().flatten());
            // A private name is a zone of its own: its apex has SOA and NS.
            if e.kind == Kind::Private {
                records.extend(apex(book, &name, qtype));
            }
            let zone = if e.kind == Kind::Private {
                name
            } else {
                book.domain.clone()
            };
            (records, zone)
        }
        Found::Apex(zone) => (apex(book, &zone, qtype), zone),
        Found::Empty(zone) => (Vec::new(), zone),
    };
    if records.is_empty() {
        // NODATA: the name is there, not with this type.
        r.add_authorities(book.soa(&zone));
    } else {
        r.add_answers(records);
    }
    Outcome::Answered
}

/// A zone apex's own records of type `qtype`.
fn apex(book: &Book, zone: &str, qtype: RecordType) -> Vec<Record> {
    let mut out = Vec::new();
    if matches!(qtype, RecordType::SOA | RecordType::ANY) {
        out.extend(book.soa(zone));
    }
    if matches!(qtype, RecordType::NS | RecordType::ANY) {
        out.extend(book.ns_record(zone));
    }
    out
}

/// Fisher-Yates over `items`, driven by `rng` (a splitmix64 stream).
fn shuffle<T>(items: &mut [T], mut rng: u64) {
    for i in (1..items.len()).rev() {
        rng = rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let j = (z % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::{
        op::{Edns, Message, Query},
        rr::{Name as DnsName, RecordType},
    };

    use super::*;
    use crate::model::testing::build;

    const CONFIG: &str = r#"
[[network]]
name = "acme"
interface = "fw-acme"
dns_addresses = ["10.0.0.2", "fd00:a::2"]

[[network]]
name = "globex"
interface = "fw-globex"
dns_addresses = ["10.0.0.2"]

[[network]]
name = "prov"
interface = "fw-prov"

[[service]]
name = "billing"
network = "prov"
private_dns_name = "billing.example.com"
acceptance_required = false
allowed_principals = ["*"]
nlb_addresses = [{ ip = "10.9.0.250", zone = "z1" }, { ip = "10.9.0.251", zone = "z2" }]
listeners = [{ protocol = "tcp", port = 443 }]
targets = [{ ip = "10.9.0.11", zone = "z1" }, { ip = "10.9.0.12", zone = "z2" }]

[[endpoint]]
name = "acme-billing"
service = "billing"
network = "acme"
addresses = [{ ip = "10.0.0.100", zone = "z1" }, { ip = "10.0.0.101", zone = "z2" }, { ip = "fd00:a::100", zone = "z1" }]

[[endpoint]]
name = "globex-billing"
service = "billing"
network = "globex"
private_dns = false
addresses = [{ ip = "10.0.0.110", zone = "z1" }]
"#;

    const REGIONAL: &str = "acme-billing.billing.vpce.internal.";

    fn book(network: u16, dead: &DeadZones) -> Book {
        let m = build(CONFIG).unwrap_or_else(|e| panic!("{e}"));
        Book::new(&m, network, dead)
    }

    fn query(name: &str, ty: RecordType) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = 4242;
        m.add_query(Query::query(DnsName::from_ascii(name).expect("name"), ty));
        m.to_vec().expect("query")
    }

    /// (response code, answer data, authority types, authoritative).
    fn ask(
        b: &Book,
        q: &[u8],
        t: Transport,
    ) -> (ResponseCode, Vec<String>, Vec<RecordType>, Outcome) {
        let (bytes, outcome) = answer(b, q, t, 7);
        let r = Message::from_vec(&bytes.expect("an answer")).expect("a message");
        assert_eq!(r.metadata.id, u16::from_be_bytes([q[0], q[1]]), "id echoed");
        assert_eq!(r.metadata.message_type, MessageType::Response);
        let data = r.answers.iter().map(|a| a.data.to_string()).collect();
        let auth = r.authorities.iter().map(Record::record_type).collect();
        (r.metadata.response_code, data, auth, outcome)
    }

    #[test]
    fn every_kind_of_name_answers_and_a_network_sees_only_its_own() {
        let b = book(0, &DeadZones::new());
        let (rc, mut a, _, o) = ask(&b, &query(REGIONAL, RecordType::A), Transport::Udp);
        a.sort();
        assert_eq!(
            (rc, a, o),
            (
                ResponseCode::NoError,
                vec!["10.0.0.100".into(), "10.0.0.101".into()],
                Outcome::Answered
            )
        );
        let (_, a, ..) = ask(
            &b,
            &query("ACME-billing-Z2.billing.vpce.internal.", RecordType::A),
            Transport::Udp,
        );
        assert_eq!(a, ["10.0.0.101"], "zonal, case-insensitive");
        let (_, a, ..) = ask(
            &b,
            &query("billing.example.com.", RecordType::AAAA),
            Transport::Tcp,
        );
        assert_eq!(a, ["fd00:a::100"], "private name, AAAA");
        let (_, a, ..) = ask(
            &b,
            &query("ns.vpce.internal.", RecordType::A),
            Transport::Udp,
        );
        assert_eq!(a, ["10.0.0.2"]);
        // globex: its own endpoint only, and the private name is not on there.
        let g = book(1, &DeadZones::new());
        let (rc, a, auth, o) = ask(&g, &query(REGIONAL, RecordType::A), Transport::Udp);
        assert_eq!(
            (rc, a.len(), auth, o),
            (
                ResponseCode::NXDomain,
                0,
                vec![RecordType::SOA],
                Outcome::NxDomain
            )
        );
        let (rc, _, auth, _) = ask(
            &g,
            &query("billing.example.com.", RecordType::A),
            Transport::Udp,
        );
        assert_eq!((rc, auth), (ResponseCode::NXDomain, vec![RecordType::SOA]));
        let (_, a, ..) = ask(
            &g,
            &query("globex-billing.billing.vpce.internal.", RecordType::A),
            Transport::Udp,
        );
        assert_eq!(a, ["10.0.0.110"]);
    }

    #[test]
    fn other_names_are_refused_and_missing_types_are_nodata() {
        let b = book(0, &DeadZones::new());
        let (rc, _, auth, o) = ask(&b, &query("example.org.", RecordType::A), Transport::Udp);
        assert_eq!(
            (rc, auth.len(), o),
            (ResponseCode::Refused, 0, Outcome::Refused)
        );
        let (rc, a, auth, o) = ask(&b, &query(REGIONAL, RecordType::MX), Transport::Udp);
        assert_eq!(
            (rc, a.len(), auth, o),
            (
                ResponseCode::NoError,
                0,
                vec![RecordType::SOA],
                Outcome::Answered
            )
        );
        let (rc, a, ..) = ask(
            &b,
            &query("vpce.internal.", RecordType::SOA),
            Transport::Udp,
        );
        assert_eq!((rc, a.len()), (ResponseCode::NoError, 1));
        // An empty non-terminal: the service's name has names below it.
        let (rc, a, auth, o) = ask(
            &b,
            &query("billing.vpce.internal.", RecordType::A),
            Transport::Udp,
        );
        assert_eq!(
            (rc, a.len(), auth, o),
            (
                ResponseCode::NoError,
                0,
                vec![RecordType::SOA],
                Outcome::Answered
            )
        );
        let (rc, ..) = ask(
            &b,
            &query("vpce.internal.", RecordType::AXFR),
            Transport::Tcp,
        );
        assert_eq!(rc, ResponseCode::Refused, "no zone transfers");
        // ANY: the addresses, no more.
        let (_, a, ..) = ask(&b, &query(REGIONAL, RecordType::ANY), Transport::Udp);
        assert_eq!(a.len(), 3, "{a:?}");
    }

    #[test]
    fn a_zone_without_healthy_targets_leaves_the_regional_answer_until_all_are_down() {
        let z1_down: DeadZones = [(0, 0)].into();
        let b = book(0, &z1_down);
        let (_, a, ..) = ask(&b, &query(REGIONAL, RecordType::A), Transport::Udp);
        assert_eq!(a, ["10.0.0.101"]);
        let (_, a, ..) = ask(
            &b,
            &query("billing.example.com.", RecordType::AAAA),
            Transport::Udp,
        );
        assert!(a.is_empty(), "z1's IPv6 address is gone too: {a:?}");
        let (_, a, ..) = ask(
            &b,
            &query("acme-billing-z1.billing.vpce.internal.", RecordType::A),
            Transport::Udp,
        );
        assert_eq!(a, ["10.0.0.100"], "a zonal name stays");
        let all_down: DeadZones = [(0, 0), (0, 1)].into();
        let (_, mut a, ..) = ask(
            &book(0, &all_down),
            &query(REGIONAL, RecordType::A),
            Transport::Udp,
        );
        a.sort();
        assert_eq!(
            a,
            ["10.0.0.100", "10.0.0.101"],
            "all come back when none is healthy"
        );
    }

    #[test]
    fn the_zone_order_is_shuffled_per_query() {
        let b = book(0, &DeadZones::new());
        let q = query(REGIONAL, RecordType::A);
        let firsts: HashSet<String> = (0..64)
            .map(|rng| {
                let r = Message::from_vec(&answer(&b, &q, Transport::Udp, rng).0.expect("answer"))
                    .expect("message");
                r.answers[0].data.to_string()
            })
            .collect();
        assert_eq!(
            firsts.len(),
            2,
            "both zones come first sometimes: {firsts:?}"
        );
    }

    #[test]
    fn hostile_and_broken_messages_get_formerr_or_nothing() {
        let b = book(0, &DeadZones::new());
        let good = query(REGIONAL, RecordType::A);
        // Shorter than a header, or a response: nothing.
        assert_eq!(
            answer(&b, &good[..11], Transport::Udp, 0),
            (None, Outcome::Malformed)
        );
        let mut response = good.clone();
        response[2] |= 0x80;
        assert_eq!(
            answer(&b, &response, Transport::Udp, 0),
            (None, Outcome::Malformed)
        );
        // Cut inside the question; a compression pointer to itself; 65535 questions
        // announced: FORMERR, id echoed.
        let mut looped = good[..12].to_vec();
        looped[4..6].copy_from_slice(&[0, 1]);
        looped.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        let mut counts = good.clone();
        counts[4..6].copy_from_slice(&[0xff, 0xff]);
        for (what, q) in [
            ("truncated", &good[..good.len() - 3]),
            ("loop", &looped[..]),
            ("counts", &counts[..]),
        ] {
            let (rc, _, _, o) = ask(&b, q, Transport::Udp);
            assert_eq!(
                (rc, o),
                (ResponseCode::FormErr, Outcome::Malformed),
                "{what}"
            );
        }
        // Two questions.
        let mut two = Message::query();
        for n in [REGIONAL, "ns.vpce.internal."] {
            two.add_query(Query::query(
                DnsName::from_ascii(n).expect("name"),
                RecordType::A,
            ));
        }
        let (rc, ..) = ask(&b, &two.to_vec().expect("query"), Transport::Udp);
        assert_eq!(rc, ResponseCode::FormErr);
        // EDNS version 1: BADVERS.
        let mut v1 = Message::query();
        v1.add_query(Query::query(
            DnsName::from_ascii(REGIONAL).expect("name"),
            RecordType::A,
        ));
        let mut e = Edns::new();
        e.set_version(1);
        v1.set_edns(e);
        let (rc, _, _, o) = ask(&b, &v1.to_vec().expect("query"), Transport::Udp);
        // 16 on the wire (hickory reads it back as BADSIG, which shares the code).
        assert_eq!(
            (u16::from(rc), o),
            (u16::from(ResponseCode::BADVERS), Outcome::Malformed)
        );
        // Not a standard query.
        let mut notify = Message::new(9, MessageType::Query, OpCode::Notify);
        notify.add_query(Query::query(
            DnsName::from_ascii(REGIONAL).expect("name"),
            RecordType::SOA,
        ));
        let (rc, _, _, o) = ask(&b, &notify.to_vec().expect("query"), Transport::Udp);
        assert_eq!((rc, o), (ResponseCode::NotImp, Outcome::Refused));
    }

    #[test]
    fn an_answer_over_512_bytes_sets_tc_over_udp_and_not_over_tcp() {
        // A config holds at most 8 addresses per name (4 zones, 2 families), which always
        // fit; 20 IPv6 addresses (28 bytes each) put in by hand do not.
        let mut b = book(0, &DeadZones::new());
        let entry = b
            .names
            .get_mut(REGIONAL.trim_end_matches('.'))
            .expect("regional");
        entry.groups = (0..20u16)
            .map(|i| {
                (
                    0,
                    vec![IpAddr::from(std::net::Ipv6Addr::new(
                        0xfd00,
                        0xa,
                        0,
                        0,
                        0,
                        0,
                        0,
                        0x100 + i,
                    ))],
                )
            })
            .collect();
        let q = query(REGIONAL, RecordType::AAAA);
        let (udp, _) = answer(&b, &q, Transport::Udp, 1);
        let udp = Message::from_vec(&udp.expect("answer")).expect("message");
        assert!(
            udp.metadata.truncation && udp.answers.is_empty(),
            "TC over UDP"
        );
        let (tcp, _) = answer(&b, &q, Transport::Tcp, 1);
        let tcp = tcp.expect("answer");
        assert!(tcp.len() > 512);
        assert_eq!(Message::from_vec(&tcp).expect("message").answers.len(), 20);
        // An EDNS client with room for 1232 bytes gets it all over UDP.
        let mut big = Message::query();
        big.add_query(Query::query(
            DnsName::from_ascii(REGIONAL).expect("name"),
            RecordType::AAAA,
        ));
        let mut e = Edns::new();
        e.set_max_payload(4096);
        big.set_edns(e);
        let (edns, _) = answer(&b, &big.to_vec().expect("query"), Transport::Udp, 1);
        let edns = Message::from_vec(&edns.expect("answer")).expect("message");
        assert!(!edns.metadata.truncation && edns.answers.len() == 20);
        assert_eq!(edns.edns.map(|e| e.max_payload()), Some(EDNS_PAYLOAD));
    }
}
