//! The control socket: how `pl stats` (a separate process) finds a running `pl run`.
//!
//! Discovery is an abstract unix socket named `pl.<instance>`. Abstract sockets are scoped
//! to the network namespace, so `ip netns exec NS pl stats` reaches exactly the `pl run`
//! started with `ip netns exec NS`, with no file, pin or mount to share (each
//! `ip netns exec` gets a fresh /sys, so bpffs pins would not be seen). One request and one
//! reply per connection, each a line of JSON.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::{linux::net::SocketAddrExt as _, unix::net::SocketAddr},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::stats::StatsReport;

pub const DEFAULT_INSTANCE: &str = "default";

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("instance name {instance:?}: use 1-64 characters from a-z, 0-9, '-', '_'")]
    BadInstance { instance: String },
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
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    Stats {
        /// Count live flows per endpoint (walks the flow table; skip it for cheap polls).
        #[serde(default = "yes")]
        flows: bool,
    },
    /// Validate the config at `config` (absolute; the running one's path if absent) and
    /// apply what changed.
    Reload { config: Option<String> },
    /// The live flows that pass the filter.
    Flows {
        #[serde(default)]
        filter: FlowFilter,
    },
    /// Keep the connection open and stream flow events, one JSON [`WatchEvent`] a line.
    ///
    /// [`WatchEvent`]: crate::flows::WatchEvent
    Watch,
}

/// Which flows `pl flows` asks for; every given field must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowFilter {
    pub endpoint: Option<String>,
    pub service: Option<String>,
    /// The provider-side source: which flow holds this NLB address and SNAT port?
    pub nlb: Option<std::net::SocketAddrV4>,
}

impl FlowFilter {
    pub fn matches(&self, f: &crate::flows::FlowReport) -> bool {
        self.endpoint.as_ref().is_none_or(|e| *e == f.endpoint)
            && self.service.as_ref().is_none_or(|s| *s == f.service)
            && self.nlb.is_none_or(|n| n == f.nlb)
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
    },
}

/// The abstract socket name for `instance`.
pub fn socket_name(instance: &str) -> Result<String, ControlError> {
    let ok = !instance.is_empty()
        && instance.len() <= 64
        && instance
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !ok {
        return Err(ControlError::BadInstance {
            instance: instance.to_owned(),
        });
    }
    Ok(format!("pl.{instance}"))
}

/// The listening side, held by `pl run`.
pub struct Server {
    listener: tokio::net::UnixListener,
    name: String,
}

impl Server {
    /// Binds the instance's socket; fails if another `pl run` in this namespace holds it.
    pub fn bind(instance: &str) -> Result<Self, ControlError> {
        let name = socket_name(instance)?;
        let io = |source| ControlError::Io {
            name: name.clone(),
            source,
        };
        let addr = SocketAddr::from_abstract_name(&name).map_err(io)?;
        let listener = std::os::unix::net::UnixListener::bind_addr(&addr).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                ControlError::InUse {
                    instance: instance.to_owned(),
                }
            } else {
                io(e)
            }
        })?;
        listener.set_nonblocking(true).map_err(io)?;
        let listener = tokio::net::UnixListener::from_std(listener).map_err(io)?;
        Ok(Self { listener, name })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits for a client. Cancel-safe: a `select!` may drop it and call it again.
    pub async fn accept(&self) -> Result<tokio::net::UnixStream, ControlError> {
        let (stream, _) = self
            .listener
            .accept()
            .await
            .map_err(|source| ControlError::Io {
                name: self.name.clone(),
                source,
            })?;
        Ok(stream)
    }

    /// Reads one request from `stream` and answers it with `handle`; a watch request gets
    /// no answer: its stream comes back, to be written events. Await it to the end (not
    /// inside a `select!` branch that can be dropped), or the client sees a broken pipe.
    pub async fn answer(
        &self,
        stream: tokio::net::UnixStream,
        handle: impl FnOnce(Request) -> Reply,
    ) -> Result<Option<tokio::net::unix::OwnedWriteHalf>, ControlError> {
        use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
        let io = |source| ControlError::Io {
            name: self.name.clone(),
            source,
        };
        let (read, mut write) = stream.into_split();
        let mut line = String::new();
        let mut read = tokio::io::BufReader::new(read);
        tokio::time::timeout(Duration::from_secs(2), read.read_line(&mut line))
            .await
            .map_err(|_| io(std::io::ErrorKind::TimedOut.into()))?
            .map_err(io)?;
        if line.is_empty() {
            // A liveness probe (`control::running`): connected and closed.
            return Ok(None);
        }
        let reply = match serde_json::from_str::<Request>(&line) {
            Ok(Request::Watch) => return Ok(Some(write)),
            Ok(req) => handle(req),
            Err(e) => Reply::Error {
                message: format!("bad request: {e}"),
            },
        };
        let mut out = serde_json::to_vec(&reply).map_err(|source| ControlError::Protocol {
            name: self.name.clone(),
            source,
        })?;
        out.push(b'\n');
        write.write_all(&out).await.map_err(io)?;
        Ok(None)
    }
}

/// Asks the `pl run` of `instance` to reload (from `config`, or the file it runs with).
pub fn reload(instance: &str, config: Option<String>) -> Result<String, ControlError> {
    match request(instance, &Request::Reload { config })? {
        Reply::Reloaded { message } => Ok(message),
        Reply::Error { message } => Err(ControlError::Remote { message }),
        _ => Err(ControlError::Remote {
            message: "answered a reload with something else".to_owned(),
        }),
    }
}

/// The live flows of the `pl run` of `instance` that pass `filter`.
pub fn flows(
    instance: &str,
    filter: FlowFilter,
) -> Result<Vec<crate::flows::FlowReport>, ControlError> {
    match request(instance, &Request::Flows { filter })? {
        Reply::Flows { flows } => Ok(flows),
        Reply::Error { message } => Err(ControlError::Remote { message }),
        _ => Err(ControlError::Remote {
            message: "answered flows with something else".to_owned(),
        }),
    }
}

/// Streams the flow events of the `pl run` of `instance` to `each` until it stops or the
/// connection ends.
pub fn watch(
    instance: &str,
    mut each: impl FnMut(crate::flows::WatchEvent),
) -> Result<(), ControlError> {
    let (mut stream, name) = connect(instance)?;
    let io = |source| ControlError::Io {
        name: name.clone(),
        source,
    };
    let mut msg = serde_json::to_vec(&Request::Watch).expect("a request serializes");
    msg.push(b'\n');
    stream.write_all(&msg).map_err(io)?;
    for line in BufReader::new(stream).lines() {
        let line = line.map_err(io)?;
        let event = serde_json::from_str(&line).map_err(|source| ControlError::Protocol {
            name: name.clone(),
            source,
        })?;
        each(event);
    }
    Ok(())
}

/// True if a `pl run` of `instance` answers in this network namespace.
pub fn running(instance: &str) -> bool {
    socket_name(instance)
        .ok()
        .and_then(|name| SocketAddr::from_abstract_name(&name).ok())
        .is_some_and(|addr| std::os::unix::net::UnixStream::connect_addr(&addr).is_ok())
}

/// A connection to the `pl run` of `instance` in this network namespace, and its socket name.
fn connect(instance: &str) -> Result<(std::os::unix::net::UnixStream, String), ControlError> {
    let name = socket_name(instance)?;
    let io = |source| ControlError::Io {
        name: name.clone(),
        source,
    };
    let addr = SocketAddr::from_abstract_name(&name).map_err(io)?;
    let stream =
        std::os::unix::net::UnixStream::connect_addr(&addr).map_err(|e| match e.kind() {
            std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound => {
                ControlError::NotRunning {
                    instance: instance.to_owned(),
                    name: name.clone(),
                }
            }
            _ => io(e),
        })?;
    Ok((stream, name))
}

/// Sends one request to the `pl run` of `instance` in this network namespace.
pub fn request(instance: &str, req: &Request) -> Result<Reply, ControlError> {
    let (mut stream, name) = connect(instance)?;
    let io = |source| ControlError::Io {
        name: name.clone(),
        source,
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(io)?;
    let mut msg = serde_json::to_vec(req).map_err(|source| ControlError::Protocol {
        name: name.clone(),
        source,
    })?;
    msg.push(b'\n');
    stream.write_all(&msg).map_err(io)?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).map_err(io)?;
    serde_json::from_str(&line).map_err(|source| ControlError::Protocol { name, source })
}

/// The counters of the `pl run` of `instance` in this network namespace.
pub fn stats(instance: &str) -> Result<StatsReport, ControlError> {
    stats_with(instance, true)
}

/// As [`stats`]; `flows: false` leaves `active_flows` at 0 and does not walk the flow table.
pub fn stats_with(instance: &str, flows: bool) -> Result<StatsReport, ControlError> {
    match request(instance, &Request::Stats { flows })? {
        Reply::Stats(report) => Ok(report),
        Reply::Error { message } => Err(ControlError::Remote { message }),
        _ => Err(ControlError::Remote {
            message: "answered stats with something else".to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_are_checked() {
        assert_eq!(socket_name("default").expect("valid"), "pl.default");
        for bad in ["", "Upper", "a/b", "sp ace", &"x".repeat(65)] {
            assert!(
                matches!(socket_name(bad), Err(ControlError::BadInstance { .. })),
                "{bad:?} accepted"
            );
        }
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
        assert!(matches!(reply, Reply::Error { message } if message == "boom"));
    }
}
