//! What `pl status` and `pl endpoints` report: the wire types `pl run` answers with, the
//! judgement healthy or degraded, and the human rendering (one screen, 100 columns).

use std::{
    fmt::Write as _,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
};

use serde::{Deserialize, Serialize};

use crate::{
    model::EndpointState,
    output::{Col, Format, duration, render, table},
};

/// This build's version, as `pl version` and the status reply say it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A flow table this full (percent) counts as degraded.
pub const FLOW_TABLE_DEGRADED_PCT: u64 = 90;

/// `pl status`'s exit codes.
pub const EXIT_HEALTHY: u8 = 0;
pub const EXIT_DEGRADED: u8 = 1;
pub const EXIT_NO_DAEMON: u8 = 2;

/// What a running `pl run` says about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The daemon's version.
    pub version: String,
    pub instance: String,
    pub uptime_s: u64,
    /// The file `pl run` was started with (absolute); none when started without
    /// `--config`.
    pub config_file: Option<PathBuf>,
    pub interfaces: Vec<InterfaceStatus>,
    /// None in observe mode (no config, no flow table).
    pub flow_table: Option<FlowTableStatus>,
    pub services: Vec<ServiceStatus>,
    /// Targets (or their routers) with no MAC yet: they take no flows.
    pub unresolved_targets: Vec<IpAddr>,
    /// None until the first reload (control request or SIGHUP).
    pub last_reload: Option<ReloadStatus>,
    /// This node's view of its cluster; None for a lone forwarder.
    #[serde(default)]
    pub cluster: Option<crate::cluster::ClusterStatus>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceStatus {
    pub name: String,
    pub ifindex: u32,
    /// `native` or `skb`.
    pub mode: String,
}

/// Live flows against the flow table's size, as the last sweep (every 5 s) counted them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowTableStatus {
    pub used: u64,
    pub size: u64,
}

impl FlowTableStatus {
    /// Percent used, rounded down.
    pub fn percent(&self) -> u64 {
        (self.used * 100).checked_div(self.size).unwrap_or(0)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    pub network: String,
    /// Targets that take new flows: resolved, and healthy (or not checked, or not judged
    /// yet).
    pub healthy_targets: usize,
    pub targets: usize,
    /// Every target is unhealthy, so all of them take flows.
    pub failing_open: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadStatus {
    /// Seconds since the Unix epoch.
    pub at_unix_s: u64,
    /// Seconds before the reply.
    pub age_s: u64,
    /// `control` (`pl reload`, `pl accept`, `pl reject`) or `SIGHUP`.
    pub by: String,
    pub ok: bool,
    /// What the reload changed, or why it was refused.
    pub message: String,
}

impl StatusReport {
    /// Why this daemon is degraded; empty when healthy.
    pub fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .services
            .iter()
            .filter(|s| s.failing_open)
            .map(|s| {
                format!(
                    "service {} is failing open (every target unhealthy)",
                    s.name
                )
            })
            .collect();
        if !self.unresolved_targets.is_empty() {
            let list: Vec<String> = self
                .unresolved_targets
                .iter()
                .map(ToString::to_string)
                .collect();
            out.push(format!("unresolved targets: {}", list.join(", ")));
        }
        if let Some(t) = &self.flow_table
            && t.used * 100 > t.size * FLOW_TABLE_DEGRADED_PCT
        {
            out.push(format!(
                "flow table {}% full (over {FLOW_TABLE_DEGRADED_PCT}%)",
                t.percent()
            ));
        }
        out
    }

    /// [`EXIT_HEALTHY`] or [`EXIT_DEGRADED`].
    pub fn exit_code(&self) -> u8 {
        if self.problems().is_empty() {
            EXIT_HEALTHY
        } else {
            EXIT_DEGRADED
        }
    }

    /// The human screen: a block of `field  value` lines, then the services.
    /// `client` is the version of the `pl` printing it.
    pub fn render(&self, client: &str, format: Format) -> String {
        let mut block = table(format, &[("", Col::Text), ("", Col::Text)]);
        let problems = self.problems();
        let mut add = |k: &str, v: String| {
            block.add_row(vec![format!("{k}:"), v]);
        };
        add("Status", status_line(&problems));
        add("Client", format!("pl {client}"));
        add(
            "Daemon",
            format!(
                "pl {}, up {}, instance {:?}",
                self.version,
                duration(self.uptime_s),
                self.instance
            ),
        );
        add(
            "Config",
            self.config_file.as_ref().map_or_else(
                || "none (started without --config)".to_owned(),
                |p| p.display().to_string(),
            ),
        );
        let ifaces: Vec<String> = self
            .interfaces
            .iter()
            .map(|i| format!("{} ({})", i.name, i.mode))
            .collect();
        add("Interfaces", ifaces.join(", "));
        add(
            "Flow table",
            self.flow_table.as_ref().map_or_else(
                || "none (observe mode)".to_owned(),
                |t| format!("{}/{} used ({}%)", t.used, t.size, t.percent()),
            ),
        );
        let list: Vec<String> = self
            .unresolved_targets
            .iter()
            .map(ToString::to_string)
            .collect();
        add(
            "Unresolved",
            if list.is_empty() {
                "none".to_owned()
            } else {
                list.join(", ")
            },
        );
        add("Last reload", reload_line(self.last_reload.as_ref()));
        if let Some(c) = &self.cluster {
            add("Node", c.node.clone());
            for z in &c.zones {
                add(
                    &format!("Zone {}", z.zone),
                    format!(
                        "owner {}; here {} ({})",
                        z.owner.as_deref().unwrap_or("none"),
                        z.role,
                        z.state
                            .map_or("no word yet".to_owned(), |s| format!("{s:?}")
                                .to_lowercase())
                    ),
                );
            }
            for p in &c.peers {
                add(
                    &format!("Peer {}", p.name),
                    match p.heard_ms_ago {
                        Some(ms) => format!(
                            "{} heard {ms} ms ago, serving [{}]{}",
                            p.address,
                            p.serving.join(", "),
                            if p.mismatched {
                                "; runs another config: its flows are refused"
                            } else {
                                ""
                            }
                        ),
                        None => format!("{} never heard", p.address),
                    },
                );
            }
            add(
                "Flow sync",
                format!(
                    "{} flows sent, {} received, {} written, {} refused, {} conflicts, {} unauthenticated",
                    c.sync.flows_sent,
                    c.sync.flows_received,
                    c.sync.flows_written,
                    c.sync.refused,
                    c.sync.conflicts,
                    c.sync.unauthenticated
                ),
            );
        }
        // The header row of an all-empty header is a blank line: leave it out.
        let mut out: String = render(&block)
            .lines()
            .skip(1)
            .fold(String::new(), |mut s, l| {
                let _ = writeln!(s, "{l}");
                s
            });
        if !self.services.is_empty() {
            out.push('\n');
            out.push_str(&services_table(&self.services, format));
        }
        out
    }
}

/// One row per service: its targets that take flows, and whether it fails open.
fn services_table(services: &[ServiceStatus], format: Format) -> String {
    let mut t = table(
        format,
        &[
            ("service", Col::Text),
            ("network", Col::Text),
            ("healthy", Col::Num),
            ("targets", Col::Num),
            ("failing open", Col::Text),
        ],
    );
    for s in services {
        t.add_row(vec![
            s.name.clone(),
            s.network.clone(),
            s.healthy_targets.to_string(),
            s.targets.to_string(),
            if s.failing_open { "yes" } else { "no" }.to_owned(),
        ]);
    }
    render(&t)
}

fn status_line(problems: &[String]) -> String {
    if problems.is_empty() {
        "healthy".to_owned()
    } else {
        format!("degraded: {}", problems.join("; "))
    }
}

fn reload_line(r: Option<&ReloadStatus>) -> String {
    match r {
        None => "none since start".to_owned(),
        Some(r) => format!(
            "{} ago ({}): {}",
            duration(r.age_s),
            r.by,
            if r.ok {
                format!("ok, {}", r.message)
            } else {
                format!("refused: {}", r.message)
            }
        ),
    }
}

/// One endpoint, as `pl endpoints` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointStatus {
    pub name: String,
    pub service: String,
    pub network: String,
    /// Every address the endpoint listens on: each of its addresses with each of the
    /// service's listener ports.
    pub addresses: Vec<EndpointAddress>,
    pub state: EndpointState,
    pub active_flows: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointAddress {
    pub addr: SocketAddr,
    /// `tcp` or `udp`.
    pub protocol: String,
    pub zone: String,
}

/// The `pl endpoints` table: one row per endpoint, its addresses in one cell.
pub fn render_endpoints(endpoints: &[EndpointStatus], format: Format) -> String {
    let mut t = table(
        format,
        &[
            ("endpoint", Col::Text),
            ("service", Col::Text),
            ("network", Col::Text),
            ("state", Col::Text),
            ("flows", Col::Num),
            ("addresses", Col::Text),
        ],
    );
    for e in endpoints {
        let addrs: Vec<String> = e
            .addresses
            .iter()
            .map(|a| format!("{}/{}", a.addr, a.protocol))
            .collect();
        t.add_row(vec![
            e.name.clone(),
            e.service.clone(),
            e.network.clone(),
            e.state.name().to_owned(),
            e.active_flows.to_string(),
            addrs.join(" "),
        ]);
    }
    render(&t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> StatusReport {
        StatusReport {
            version: "0.1.0".into(),
            instance: "default".into(),
            uptime_s: 3723,
            config_file: Some("/etc/pl/pl.toml".into()),
            interfaces: ["fw-acme", "fw-globex", "fw-prov"]
                .iter()
                .zip(2..)
                .map(|(n, i)| InterfaceStatus {
                    name: (*n).into(),
                    ifindex: i,
                    mode: "native".into(),
                })
                .collect(),
            flow_table: Some(FlowTableStatus {
                used: 1200,
                size: 65536,
            }),
            services: vec![ServiceStatus {
                name: "billing".into(),
                network: "billing-prod".into(),
                healthy_targets: 2,
                targets: 2,
                failing_open: false,
            }],
            unresolved_targets: vec![],
            cluster: None,
            last_reload: Some(ReloadStatus {
                at_unix_s: 1_700_000_000,
                age_s: 312,
                by: "control".into(),
                ok: true,
                message: "reloaded: 3 networks (+0 -0), services 1 -> 1, endpoints 2 -> 2, targets 2 -> 2, 0 flows revoked".into(),
            }),
        }
    }

    fn fits(text: &str) {
        for l in text.lines() {
            assert!(l.chars().count() <= 100, "over 100 columns: {l:?}\n{text}");
        }
    }

    #[test]
    fn a_healthy_status_renders_as_this() {
        let r = report();
        assert_eq!(r.exit_code(), EXIT_HEALTHY);
        let text = r.render("0.1.0", Format::Table);
        let expected = "\
Status:       healthy
Client:       pl 0.1.0
Daemon:       pl 0.1.0, up 1h02m, instance \"default\"
Config:       /etc/pl/pl.toml
Interfaces:   fw-acme (native), fw-globex (native), fw-prov (native)
Flow table:   1200/65536 used (1%)
Unresolved:   none
Last reload:  5m12s ago (control): ok, reloaded: 3 networks (+0 -0), services 1 -> 1, endpoints 2 ->
              2, targets 2 -> 2, 0 flows revoked

service  network       healthy  targets  failing open
billing  billing-prod        2        2  no
";
        assert_eq!(text, expected, "got:\n{text}");
        fits(&text);
    }

    #[test]
    fn a_degraded_status_says_why_and_exits_1() {
        let mut r = report();
        r.services[0].failing_open = true;
        r.services[0].healthy_targets = 0;
        r.unresolved_targets = vec![std::net::Ipv4Addr::new(10, 9, 0, 99).into()];
        r.flow_table = Some(FlowTableStatus {
            used: 60_000,
            size: 65_536,
        });
        r.last_reload = Some(ReloadStatus {
            ok: false,
            by: "SIGHUP".into(),
            message:
                "pl.toml:12: [[service]] \"billing\": rejected_endpoints: no endpoint named \"x\""
                    .into(),
            ..r.last_reload.clone().expect("set")
        });
        r.config_file = None;
        assert_eq!(r.exit_code(), EXIT_DEGRADED);
        let text = r.render("0.2.0", Format::Table);
        let expected = "\
Status:       degraded: service billing is failing open (every target unhealthy); unresolved
              targets: 10.9.0.99; flow table 91% full (over 90%)
Client:       pl 0.2.0
Daemon:       pl 0.1.0, up 1h02m, instance \"default\"
Config:       none (started without --config)
Interfaces:   fw-acme (native), fw-globex (native), fw-prov (native)
Flow table:   60000/65536 used (91%)
Unresolved:   10.9.0.99
Last reload:  5m12s ago (SIGHUP): refused: pl.toml:12: [[service]] \"billing\": rejected_endpoints: no
              endpoint named \"x\"

service  network       healthy  targets  failing open
billing  billing-prod        0        2  yes
";
        assert_eq!(text, expected, "got:\n{text}");
        fits(&text);
    }

    #[test]
    fn the_flow_table_counts_as_degraded_only_over_90_percent() {
        let mut r = report();
        let at = |used| FlowTableStatus { used, size: 1000 };
        r.flow_table = Some(at(900));
        assert_eq!(r.exit_code(), EXIT_HEALTHY, "90% is not over 90%");
        r.flow_table = Some(at(901));
        assert_eq!(r.exit_code(), EXIT_DEGRADED);
        r.flow_table = None;
        assert_eq!(r.exit_code(), EXIT_HEALTHY, "observe mode has no table");
    }

    #[test]
    fn endpoints_render_as_this() {
        let ep = |name: &str, network: &str, state, flows| EndpointStatus {
            name: name.into(),
            service: "billing".into(),
            network: network.into(),
            addresses: [(100, "z1"), (101, "z2")]
                .iter()
                .flat_map(|(host, zone)| {
                    [(443, "tcp"), (53, "udp")].map(|(port, proto)| EndpointAddress {
                        addr: SocketAddr::new(
                            std::net::Ipv4Addr::new(10, 0, 0, *host).into(),
                            port,
                        ),
                        protocol: proto.into(),
                        zone: (*zone).into(),
                    })
                })
                .collect(),
            state,
            active_flows: flows,
        };
        let text = render_endpoints(
            &[
                ep("acme-billing", "acme", EndpointState::Available, 12),
                ep("globex-billing", "globex", EndpointState::Rejected, 0),
                ep(
                    "initech-billing",
                    "initech",
                    EndpointState::PendingAcceptance,
                    0,
                ),
            ],
            Format::Table,
        );
        let expected = "\
endpoint         service  network  state              flows  addresses
acme-billing     billing  acme     available             12  10.0.0.100:443/tcp 10.0.0.100:53/udp
                                                             10.0.0.101:443/tcp 10.0.0.101:53/udp
globex-billing   billing  globex   rejected               0  10.0.0.100:443/tcp 10.0.0.100:53/udp
                                                             10.0.0.101:443/tcp 10.0.0.101:53/udp
initech-billing  billing  initech  pendingAcceptance      0  10.0.0.100:443/tcp 10.0.0.100:53/udp
                                                             10.0.0.101:443/tcp 10.0.0.101:53/udp
";
        assert_eq!(text, expected, "got:\n{text}");
        fits(&text);
    }
}
