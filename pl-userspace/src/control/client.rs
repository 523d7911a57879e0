//! The CLI's side of the control socket: one request, one reply (or, for `watch`, a
//! stream of events) per connection.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::{linux::net::SocketAddrExt as _, unix::net::SocketAddr},
    time::Duration,
};

use super::{ControlError, FlowFilter, Reply, Request, SentConfig, socket_name};
use crate::{
    stats::StatsReport,
    status::{EndpointStatus, StatusReport},
};

/// Asks the `pl run` of `instance` to reload: `sent`, or the file it was started with.
pub fn reload(instance: &str, sent: Option<SentConfig>) -> Result<String, ControlError> {
    match request(instance, &Request::Reload { sent })? {
        Reply::Reloaded { message } => Ok(message),
        _ => Err(unexpected("reload")),
    }
}

/// The live flows of the `pl run` of `instance` that pass `filter`.
pub fn flows(
    instance: &str,
    filter: FlowFilter,
) -> Result<Vec<crate::flows::FlowReport>, ControlError> {
    match request(instance, &Request::Flows { filter })? {
        Reply::Flows { flows } => Ok(flows),
        _ => Err(unexpected("flows")),
    }
}

fn unexpected(request: &str) -> ControlError {
    ControlError::Remote {
        message: format!("answered {request} with something else"),
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
    let req = Request::Watch;
    let mut msg = serde_json::to_vec(&req).expect("a request serializes");
    msg.push(b'\n');
    // As in `request`: a refusal may be waiting even if the write found the socket closed.
    let _ = stream.write_all(&msg);
    for line in BufReader::new(stream).lines() {
        let line = line.map_err(io)?;
        match serde_json::from_str::<crate::flows::WatchEvent>(&line) {
            Ok(mut event) => {
                event.time.get_or_insert_with(crate::output::now_rfc3339);
                each(event);
            }
            // Not an event: a refusal or an error, the only line before the stream closes.
            Err(source) => {
                return Err(match serde_json::from_str::<Reply>(&line) {
                    Ok(reply) => failure(&req, reply)
                        .err()
                        .unwrap_or(ControlError::Protocol {
                            name: name.clone(),
                            source,
                        }),
                    Err(_) => ControlError::Protocol {
                        name: name.clone(),
                        source,
                    },
                });
            }
        }
    }
    Ok(())
}

/// `reply`, or the error it carries.
fn failure(req: &Request, reply: Reply) -> Result<Reply, ControlError> {
    match reply {
        Reply::Error {
            message,
            kind: Some(super::ErrorKind::Config),
        } => Err(ControlError::InvalidConfig { message }),
        Reply::Error { message, .. } => Err(ControlError::Remote { message }),
        Reply::Denied { message } => Err(ControlError::Denied {
            request: req.name(),
            uid: nix::unistd::geteuid().as_raw(),
            message,
        }),
        other => Ok(other),
    }
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

/// Sends one request to the `pl run` of `instance` in this network namespace; an error or
/// a refusal it answers comes back as an error.
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
    // A peer refused at once gets its answer before the request is even read: a closed
    // socket here still has the refusal to read.
    let written = stream.write_all(&msg);
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).map_err(io)?;
    if line.is_empty() {
        written.map_err(io)?;
    }
    let reply =
        serde_json::from_str(&line).map_err(|source| ControlError::Protocol { name, source })?;
    failure(req, reply)
}

/// The counters of the `pl run` of `instance` in this network namespace.
pub fn stats(instance: &str) -> Result<StatsReport, ControlError> {
    stats_with(instance, true)
}

/// As [`stats`]; `flows: false` leaves `active_flows` at 0 and does not walk the flow table.
pub fn stats_with(instance: &str, flows: bool) -> Result<StatsReport, ControlError> {
    match request(instance, &Request::Stats { flows })? {
        Reply::Stats(report) => Ok(report),
        _ => Err(unexpected("stats")),
    }
}

/// What the `pl run` of `instance` says about itself (`pl status`, `pl version`).
pub fn status(instance: &str) -> Result<StatusReport, ControlError> {
    match request(instance, &Request::Status)? {
        Reply::Status(report) => Ok(*report),
        _ => Err(unexpected("status")),
    }
}

/// Every endpoint of the `pl run` of `instance`, with its state and live flows.
pub fn endpoints(instance: &str) -> Result<Vec<EndpointStatus>, ControlError> {
    match request(instance, &Request::Endpoints)? {
        Reply::Endpoints { endpoints } => Ok(endpoints),
        _ => Err(unexpected("endpoints")),
    }
}

/// The endpoint DNS names the `pl run` of `instance` answers now, and with `zone_file`
/// network `network`'s zone file.
pub fn dns(
    instance: &str,
    network: Option<String>,
    zone_file: bool,
) -> Result<(Vec<crate::dns::NetworkNames>, Option<String>), ControlError> {
    match request(instance, &Request::Dns { network, zone_file })? {
        Reply::Dns {
            networks,
            zone_file,
        } => Ok((networks, zone_file)),
        _ => Err(unexpected("dns")),
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::{BufRead as _, BufReader, Write as _},
        os::{
            linux::net::SocketAddrExt as _,
            unix::net::{SocketAddr, UnixListener},
        },
    };

    use crate::output::now_rfc3339;

    #[test]
    fn an_event_from_an_older_pl_run_is_stamped_as_it_is_read() {
        let instance = format!("test-watch-time-{}", std::process::id());
        let name = super::socket_name(&instance).expect("a valid instance");
        let addr = SocketAddr::from_abstract_name(&name).expect("an abstract name");
        let listener = UnixListener::bind_addr(&addr).expect("bind the control socket");
        let event = r#""proto":"tcp","endpoint":"e","service":"s","network":"n","consumer":"10.0.0.1:1000","endpoint_addr":"10.0.0.2:80""#;
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().expect("accept");
            // Read the request: closing with it unread would reset the connection.
            let mut request = String::new();
            let mut s = BufReader::new(s);
            s.read_line(&mut request).expect("the request");
            let s = s.get_mut();
            writeln!(s, r#"{{"event":"open",{event}}}"#).expect("an older pl run's event");
            writeln!(
                s,
                r#"{{"time":"2026-12-02T05:01:02.123Z","event":"close",{event}}}"#
            )
            .expect("a stamped event");
            request
        });
        let before = now_rfc3339();
        let mut seen = Vec::new();
        super::watch(&instance, |e| seen.push(e)).expect("the watch ends with the stream");
        let after = now_rfc3339();
        assert_eq!(
            server.join().expect("the server"),
            "{\"request\":\"watch\"}\n"
        );
        let times: Vec<Option<&str>> = seen.iter().map(|e| e.time.as_deref()).collect();
        assert!(
            matches!(times[..], [Some(t), Some("2026-12-02T05:01:02.123Z")]
                if before.as_str() <= t && t <= after.as_str()),
            "{times:?} (read between {before} and {after})"
        );
    }
}
