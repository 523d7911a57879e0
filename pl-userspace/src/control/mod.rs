//! The control socket: how `pl stats` (a separate process) finds a running `pl run`.
//!
//! Discovery is an abstract unix socket named `pl.<instance>`. Abstract sockets are scoped
//! to the network namespace, so `ip netns exec NS pl stats` reaches exactly the `pl run`
//! started with `ip netns exec NS`, with no file, pin or mount to share (each
//! `ip netns exec` gets a fresh /sys, so bpffs pins would not be seen). One request and one
//! reply per connection, each a line of JSON.
//!
//! This module holds the wire types; `server` is `pl run`'s side, `client` the CLI's.

mod client;
mod server;

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

pub use self::{
    client::{dns, endpoints, flows, reload, request, running, stats, stats_with, status, watch},
    server::{
        MAX_CONNECTIONS, MAX_PER_UID, MAX_REQUEST, REPLY_TIMEOUT, REQUEST_TIMEOUT, Server,
        WALK_INTERVAL,
    },
};
use crate::{
    peer::{Access, Peer},
    stats::StatsReport,
    status::{EndpointStatus, StatusReport},
};

pub const DEFAULT_INSTANCE: &str = "default";

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    BadInstance(#[from] crate::instance::BadInstance),
    #[error("another pl run (instance {instance:?}) is already active in this network namespace")]
    InUse { instance: String },
    #[error(
        "no pl run (instance {instance:?}) is active in this network namespace (looked for abstract socket @{name})"
    )]
    NotRunning { instance: String, name: String },
    #[error("control socket @{name}: {source}")]
    Io {
        name: String,
        source: std::io::Error,
    },
    #[error("control socket @{name}: bad reply: {source}")]
    Protocol {
        name: String,
        source: serde_json::Error,
    },
    #[error("pl run answered: {message}")]
    Remote { message: String },
    /// `pl run` found the config of a reload invalid (`Reply::Error` of kind `config`):
    /// nothing changed.
    #[error("pl run refused the config: {message}")]
    InvalidConfig { message: String },
    #[error("pl {request} (as uid {uid}): {message}")]
    Denied {
        request: &'static str,
        uid: u32,
        message: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Stats {
        /// Count live flows per endpoint (walks the flow table; skip it for cheap polls).
        #[serde(default = "yes")]
        flows: bool,
    },
    /// Validate a config and apply what changed. `pl run` never opens a path its peer names:
    /// `sent` carries the text the client read itself; without it, `pl run` reloads the
    /// file it was started with.
    Reload { sent: Option<SentConfig> },
    /// The live flows that pass the filter.
    Flows {
        #[serde(default)]
        filter: FlowFilter,
    },
    /// Keep the connection open and stream flow events, one JSON [`WatchEvent`] a line.
    ///
    /// [`WatchEvent`]: crate::flows::WatchEvent
    Watch,
    /// Version, uptime, config file, interfaces, flow table, service health, last reload.
    Status,
    /// Every endpoint with its state and live flows (walks the flow table).
    Endpoints,
    /// Each network's endpoint DNS names as answered now; `network` only that one's, and
    /// with `zone_file` its RFC 1035 zone file.
    Dns {
        #[serde(default)]
        network: Option<String>,
        #[serde(default)]
        zone_file: bool,
    },
}

impl Request {
    /// The request's name, as the CLI and the log say it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Stats { .. } => "stats",
            Self::Reload { .. } => "reload",
            Self::Flows { .. } => "flows",
            Self::Watch => "watch",
            Self::Status => "status",
            Self::Endpoints => "endpoints",
            Self::Dns { .. } => "dns",
        }
    }

    /// True if answering walks the whole flow table (0.7 s at a million flows).
    pub fn walks_table(&self) -> bool {
        matches!(
            self,
            Self::Stats { flows: true } | Self::Flows { .. } | Self::Endpoints
        )
    }

    /// What a peer needs to be allowed this request.
    pub fn needs(&self) -> Access {
        match self {
            Self::Stats { .. }
            | Self::Flows { .. }
            | Self::Watch
            | Self::Status
            | Self::Endpoints
            | Self::Dns { .. } => Access::Read,
            Self::Reload { .. } => Access::Admin,
        }
    }
}

/// A config as the client read it: its text, and the name to quote in errors.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentConfig {
    pub name: String,
    pub text: String,
}

/// Which flows `pl flows` asks for; every given field must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowFilter {
    pub endpoint: Option<String>,
    pub service: Option<String>,
    /// The provider-side source: which flow holds this NLB address and SNAT port? (IPv4 or
    /// IPv6; an older client's IPv4 `a.b.c.d:port` reads the same.)
    pub nlb: Option<SocketAddr>,
}

impl FlowFilter {
    pub fn matches(&self, f: &crate::flows::FlowReport) -> bool {
        self.matches_parts(&f.endpoint, &f.service, Some(f.nlb))
    }

    /// For `pl flows --watch`: a refusal (no NLB side) never matches `nlb`.
    pub fn matches_event(&self, e: &crate::flows::WatchEvent) -> bool {
        self.matches_parts(&e.endpoint, &e.service, e.nlb)
    }

    fn matches_parts(&self, endpoint: &str, service: &str, nlb: Option<SocketAddr>) -> bool {
        self.endpoint.as_ref().is_none_or(|e| e == endpoint)
            && self.service.as_ref().is_none_or(|s| s == service)
            && self.nlb.is_none_or(|n| nlb == Some(n))
    }
}

const fn yes() -> bool {
    true
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Stats(StatsReport),
    Reloaded {
        message: String,
    },
    Flows {
        flows: Vec<crate::flows::FlowReport>,
    },
    Error {
        message: String,
        /// Absent for most errors, and from older `pl run`s (older clients ignore it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kind: Option<ErrorKind>,
    },
    Status(Box<StatusReport>),
    Endpoints {
        endpoints: Vec<EndpointStatus>,
    },
    Dns {
        networks: Vec<crate::dns::NetworkNames>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        zone_file: Option<String>,
    },
    /// The peer may not make this request; the connection closes after it.
    Denied {
        message: String,
    },
}

/// What a `Reply::Error` is, where the client acts on it (its exit status).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The config to reload is invalid; the running one stays.
    Config,
    /// A kind this client does not know (from a newer `pl run`).
    #[serde(other)]
    Other,
}

/// The abstract socket name for `instance`.
pub fn socket_name(instance: &str) -> Result<String, ControlError> {
    crate::instance::check(instance)?;
    Ok(format!("pl.{instance}"))
}

/// An allowed request, handed to `pl run`'s loop to answer.
pub enum Job {
    /// Answer `request` through `reply`.
    Ask {
        request: Request,
        peer: Peer,
        reply: tokio::sync::oneshot::Sender<Reply>,
    },
    /// Write flow events to the watcher until it stops taking them.
    Watch { peer: Peer, watcher: Watcher },
}

/// A `watch` client's connection. It keeps its place among the open connections while it
/// lives, so watchers count against the same limits.
pub struct Watcher {
    pub stream: tokio::net::unix::OwnedWriteHalf,
    _slot: server::Slot,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_are_checked() {
        assert_eq!(socket_name("default").expect("valid"), "pl.default");
        for bad in ["", "Upper", "a/b", "sp ace", &"x".repeat(65)] {
            assert!(
                matches!(socket_name(bad), Err(ControlError::BadInstance(_))),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn a_watch_event_is_filtered_as_a_flow_is() {
        let event = |endpoint: &str, nlb: Option<&str>| crate::flows::WatchEvent {
            time: None,
            event: "open".to_owned(),
            proto: "tcp".to_owned(),
            endpoint: endpoint.to_owned(),
            service: "svc".to_owned(),
            network: "net".to_owned(),
            consumer: "10.0.0.1:1000".parse().expect("addr"),
            endpoint_addr: "10.0.0.2:80".parse().expect("addr"),
            nlb: nlb.map(|n| n.parse().expect("addr")),
            target: None,
            reason: None,
            state: None,
        };
        let by_nlb = FlowFilter {
            nlb: Some("10.9.0.250:40000".parse().expect("addr")),
            ..FlowFilter::default()
        };
        assert!(by_nlb.matches_event(&event("e", Some("10.9.0.250:40000"))));
        assert!(!by_nlb.matches_event(&event("e", Some("10.9.0.250:40001"))));
        // A refusal has no provider side: it never matches an NLB filter.
        assert!(!by_nlb.matches_event(&event("e", None)));
        // `--nlb [addr]:port` for an IPv6 NLB address: no IPv4 flow holds it.
        let by_nlb6 = FlowFilter {
            nlb: Some(
                "[fd00:9::fa]:40000"
                    .parse()
                    .expect("an IPv6 socket address"),
            ),
            ..FlowFilter::default()
        };
        assert!(!by_nlb6.matches_event(&event("e", Some("10.9.0.250:40000"))));
        let by_endpoint = FlowFilter {
            endpoint: Some("e".to_owned()),
            service: Some("svc".to_owned()),
            nlb: None,
        };
        assert!(by_endpoint.matches_event(&event("e", None)));
        assert!(!by_endpoint.matches_event(&event("f", None)));
    }

    #[test]
    fn wire_format_is_tagged_json() {
        let req = serde_json::to_string(&Request::Stats { flows: false }).expect("serialize");
        assert_eq!(req, r#"{"request":"stats","flows":false}"#);
        // Older clients send no field: flows are counted.
        let old: Request = serde_json::from_str(r#"{"request":"stats"}"#).expect("parse");
        assert!(matches!(old, Request::Stats { flows: true }));
        let reply: Reply =
            serde_json::from_str(r#"{"reply":"error","message":"boom"}"#).expect("parse");
        assert!(matches!(reply, Reply::Error { message, kind: None } if message == "boom"));
        // An invalid config says so; an error of no kind is written as before.
        let refused = Reply::Error {
            message: "pl.toml:3: [[network]] #1: name: ...".to_owned(),
            kind: Some(ErrorKind::Config),
        };
        let wire = serde_json::to_string(&refused).expect("serialize");
        assert!(wire.contains(r#""kind":"config""#), "{wire}");
        let plain = serde_json::to_string(&Reply::Error {
            message: "boom".to_owned(),
            kind: None,
        })
        .expect("serialize");
        assert_eq!(plain, r#"{"reply":"error","message":"boom"}"#);
        let newer: Reply =
            serde_json::from_str(r#"{"reply":"error","message":"m","kind":"quota"}"#)
                .expect("an unknown kind parses");
        assert!(matches!(
            newer,
            Reply::Error {
                kind: Some(ErrorKind::Other),
                ..
            }
        ));
    }

    #[test]
    fn a_reload_naming_a_path_is_not_a_request() {
        // What older clients sent, and what a hostile peer would: pl run must not open it.
        let e = serde_json::from_str::<Request>(r#"{"request":"reload","config":"/etc/shadow"}"#)
            .expect_err("a path to open is no longer part of the protocol");
        assert!(e.to_string().contains("unknown field `config`"), "{e}");
        let sent = Request::Reload {
            sent: Some(SentConfig {
                name: "pl.toml".into(),
                text: "[limits]\n".into(),
            }),
        };
        let wire = serde_json::to_string(&sent).expect("serialize");
        assert_eq!(
            wire,
            r#"{"request":"reload","sent":{"name":"pl.toml","text":"[limits]\n"}}"#
        );
        assert_eq!(sent.needs(), Access::Admin);
        assert_eq!(Request::Watch.needs(), Access::Read);
    }

    #[test]
    fn status_and_endpoints_are_reads() {
        let wire = serde_json::to_string(&Request::Status).expect("serialize");
        assert_eq!(wire, r#"{"request":"status"}"#);
        let parsed: Request = serde_json::from_str(r#"{"request":"endpoints"}"#).expect("parse");
        assert!(matches!(parsed, Request::Endpoints));
        assert_eq!(Request::Status.needs(), Access::Read);
        assert_eq!(Request::Endpoints.needs(), Access::Read);
        assert!(
            !Request::Status.walks_table(),
            "status uses the last sweep's counts"
        );
        assert!(Request::Endpoints.walks_table());
    }
}
