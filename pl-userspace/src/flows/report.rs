//! Flows as `pl flows` shows them: the report type, its table and wide forms, and the
//! events `pl flows --watch` streams.

use std::net::SocketAddr;

use pl_common::{
    flow::{Half, Pair, age_s, since},
    proto::IPPROTO_TCP,
};

use super::{Family, Flow};
use crate::{
    model::Model,
    output::{self, Col, Format},
};

/// One flow as `pl flows` shows it. Addresses as the packets carry them on each side, IPv4
/// or IPv6 (`[fd00::10]:40000`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FlowReport {
    /// `tcp` or `udp`.
    pub proto: String,
    pub network: String,
    pub endpoint: String,
    pub service: String,
    /// Consumer side: the client and the endpoint address it connected to.
    pub consumer: SocketAddr,
    pub endpoint_addr: SocketAddr,
    /// Provider side: the NLB address and SNAT port the target sees, and the target.
    pub nlb: SocketAddr,
    pub target: SocketAddr,
    /// TCP: `syn_sent`, `syn_received`, `established`, `closing`; UDP: `one_way`, `replied`.
    pub state: String,
    pub age_s: u64,
    /// Since the last packet either way (entries refresh at most once a second).
    pub idle_s: u64,
    pub to_provider_packets: u64,
    pub to_provider_bytes: u64,
    pub to_consumer_packets: u64,
    pub to_consumer_bytes: u64,
}

impl FlowReport {
    /// `f` with the names `m` gives its ids, at monotonic time `now_ns`; None if `m` has
    /// no endpoint with its id.
    pub fn new<S: Family>(m: &Model, f: &Flow<S>, now_ns: u64) -> Option<Self> {
        let e = m.endpoints.get(usize::from(S::endpoint(&f.forward)))?;
        let idle_ns = f.reply.map_or(since(now_ns, f.forward.last_seen()), |r| {
            Pair {
                forward: &f.forward,
                reply: &r,
            }
            .idle_ns(now_ns)
        });
        let (forward, reply) = (
            S::carried(&f.forward),
            f.reply.as_ref().map_or((0, 0), S::carried),
        );
        let (consumer, endpoint_addr) = f.consumer_side();
        Some(Self {
            proto: proto_name(S::proto(&f.key)).to_owned(),
            network: m
                .networks
                .get(usize::from(S::network(&f.key)))?
                .name
                .clone(),
            endpoint: e.name.clone(),
            service: m.services[usize::from(e.service)].name.clone(),
            consumer,
            endpoint_addr,
            nlb: f.nlb(),
            target: f.target(),
            state: f.state().to_owned(),
            age_s: u64::from(age_s(now_ns, f.created)),
            idle_s: idle_ns / 1_000_000_000,
            to_provider_packets: u64::from(forward.0),
            to_provider_bytes: forward.1,
            to_consumer_packets: u64::from(reply.0),
            to_consumer_bytes: reply.1,
        })
    }
}

/// `tcp` or `udp` (the only protocols pl forwards).
pub fn proto_name(proto: u8) -> &'static str {
    if proto == IPPROTO_TCP { "tcp" } else { "udp" }
}

/// Which forms of `pl flows` show a column.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shown {
    Both,
    Table,
    Wide,
}

/// A column of the flow table: header, kind, where shown, the cell.
type FlowColumn = (&'static str, Col, Shown, fn(&FlowReport) -> String);

/// The table fits 100 columns: who (endpoint, service, consumer), where to, state, and
/// idle time as `2s`, `4m05s`, `1h02m`. `-o wide` has every field, named and valued as in
/// the JSON.
const FLOW_COLUMNS: &[FlowColumn] = &[
    ("endpoint", Col::Text, Shown::Both, |f| f.endpoint.clone()),
    ("service", Col::Text, Shown::Both, |f| f.service.clone()),
    ("network", Col::Text, Shown::Wide, |f| f.network.clone()),
    ("proto", Col::Text, Shown::Both, |f| f.proto.clone()),
    ("consumer", Col::Text, Shown::Both, |f| {
        f.consumer.to_string()
    }),
    ("endpoint_addr", Col::Text, Shown::Wide, |f| {
        f.endpoint_addr.to_string()
    }),
    ("nlb", Col::Text, Shown::Wide, |f| f.nlb.to_string()),
    ("target", Col::Text, Shown::Both, |f| f.target.to_string()),
    ("state", Col::Text, Shown::Both, |f| f.state.clone()),
    ("idle", Col::Num, Shown::Table, |f| {
        output::duration(f.idle_s)
    }),
    ("age_s", Col::Num, Shown::Wide, |f| f.age_s.to_string()),
    ("idle_s", Col::Num, Shown::Wide, |f| f.idle_s.to_string()),
    ("to_provider_packets", Col::Num, Shown::Wide, |f| {
        f.to_provider_packets.to_string()
    }),
    ("to_provider_bytes", Col::Num, Shown::Wide, |f| {
        f.to_provider_bytes.to_string()
    }),
    ("to_consumer_packets", Col::Num, Shown::Wide, |f| {
        f.to_consumer_packets.to_string()
    }),
    ("to_consumer_bytes", Col::Num, Shown::Wide, |f| {
        f.to_consumer_bytes.to_string()
    }),
];

/// `pl flows` as it prints by default: [`text`] as a table.
pub fn table(flows: &[FlowReport]) -> String {
    text(flows, Format::Table)
}

/// One row per flow: `Table` fits 100 columns; `Wide` has every field (the network, the
/// endpoint address, the NLB side, age and counters too).
pub fn text(flows: &[FlowReport], format: Format) -> String {
    let form = if format == Format::Wide {
        Shown::Wide
    } else {
        Shown::Table
    };
    let columns: Vec<&FlowColumn> = FLOW_COLUMNS
        .iter()
        .filter(|c| c.2 == Shown::Both || c.2 == form)
        .collect();
    let header: Vec<(&str, Col)> = columns.iter().map(|c| (c.0, c.1)).collect();
    let mut t = output::table(format, &header);
    for f in flows {
        t.add_row(columns.iter().map(|c| (c.3)(f)));
    }
    output::render(&t)
}

/// One line of `pl flows --watch`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WatchEvent {
    /// When pl run saw it, RFC 3339 UTC with milliseconds (a client stamps an event from an
    /// older pl run, which sent none, as it reads it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// `open`, `refused` or `close`.
    pub event: String,
    pub proto: String,
    pub endpoint: String,
    pub service: String,
    pub network: String,
    pub consumer: SocketAddr,
    pub endpoint_addr: SocketAddr,
    /// Provider side, for opens and closes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nlb: Option<SocketAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<SocketAddr>,
    /// Why a new flow was refused: the refusal counter's name without `refused_`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The state a flow closed in (it went idle past that state's timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

impl WatchEvent {
    /// An `event` with the names of `endpoint` and `network` and nothing optional set; None
    /// if `m` has no such endpoint.
    pub fn new(
        m: &Model,
        event: &str,
        proto: u8,
        endpoint: u16,
        network: u16,
        consumer: SocketAddr,
        endpoint_addr: SocketAddr,
    ) -> Option<Self> {
        let e = m.endpoints.get(usize::from(endpoint))?;
        Some(Self {
            time: Some(output::now_rfc3339()),
            event: event.to_owned(),
            proto: proto_name(proto).to_owned(),
            endpoint: e.name.clone(),
            service: m.services.get(usize::from(e.service))?.name.clone(),
            network: m.networks.get(usize::from(network))?.name.clone(),
            consumer,
            endpoint_addr,
            nlb: None,
            target: None,
            reason: None,
            state: None,
        })
    }

    /// The event as one line of text, its time first:
    /// `TIME open    tcp ENDPOINT (NETWORK, service S) CONSUMER -> ADDR => NLB -> TARGET`.
    pub fn line(&self) -> String {
        use std::fmt::Write as _;
        let mut l = format!(
            "{} {:<7} {} {} ({}, service {}) {} -> {}",
            self.time.as_deref().unwrap_or("-"),
            self.event,
            self.proto,
            self.endpoint,
            self.network,
            self.service,
            self.consumer,
            self.endpoint_addr
        );
        if let (Some(n), Some(t)) = (self.nlb, self.target) {
            let _ = write!(l, " => {n} -> {t}");
        }
        if let Some(r) = &self.reason {
            let _ = write!(l, " reason={r}");
        }
        if let Some(s) = &self.state {
            let _ = write!(l, " state={s}");
        }
        l
    }
}
