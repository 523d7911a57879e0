//! The TOML config, as written: the schema other tools are written against. Nothing here
//! is validated beyond types; `model` does that, with errors that point back here.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

mod parse;

pub use self::parse::{Parsed, Unparsed};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub network: Vec<Spanned<NetworkCfg>>,
    #[serde(default)]
    pub service: Vec<Spanned<ServiceCfg>>,
    #[serde(default)]
    pub endpoint: Vec<Spanned<EndpointCfg>>,
    pub limits: Option<Spanned<LimitsCfg>>,
    /// Several forwarders: where they elect zone owners and sync flows.
    pub cluster: Option<Spanned<ClusterCfg>>,
    #[serde(default)]
    pub node: Vec<Spanned<NodeCfg>>,
    /// Endpoint DNS names: the domain regional and zonal names live under, their TTL.
    pub dns: Option<Spanned<DnsCfg>>,
}

/// `[dns]`: where endpoints' regional and zonal names live, and how long answers are kept.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsCfg {
    pub domain: Spanned<String>,
    pub ttl_s: Spanned<u32>,
    /// Queries per second a network's DNS address takes on each receiving CPU; the XDP
    /// program drops the rest before the stack sees them.
    pub max_qps: Spanned<u32>,
}

impl Default for DnsCfg {
    fn default() -> Self {
        Self {
            domain: Spanned::new(0..0, "vpce.internal".to_owned()),
            ttl_s: Spanned::new(0..0, 60),
            max_qps: Spanned::new(0..0, 10_000),
        }
    }
}

/// `[cluster]`: the management network every node shares.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterCfg {
    /// The management interface (it carries the node's address): VRRP and flow sync.
    pub interface: Spanned<String>,
    /// A dead node's zones move within this many seconds (default 3).
    pub takeover_s: Option<Spanned<u32>>,
    /// A recovered primary takes its zones back after this many seconds (default 10).
    pub failback_s: Option<Spanned<u32>>,
    /// UDP port of flow sync on the management network (default 7946).
    pub sync_port: Option<Spanned<u16>>,
    /// How often a node sends what changed in its flows, ms (default 200).
    pub sync_interval_ms: Option<Spanned<u32>>,
    /// The key every node shares (an absolute path, a file only root can read): flow
    /// sync datagrams carry a tag under it. Required.
    pub secret_file: Option<Spanned<String>>,
}

/// `[[node]]`: one forwarder of the cluster.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeCfg {
    pub name: Spanned<String>,
    /// Its address on the management interface.
    pub address: Spanned<String>,
    /// Zones it serves while it is up.
    #[serde(default)]
    pub zones: Vec<Spanned<String>>,
    /// Zones it takes over when their primary is down.
    #[serde(default)]
    pub backup_zones: Vec<Spanned<String>>,
}

/// One L2 segment behind one forwarder interface; its name is also its principal.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkCfg {
    pub name: Spanned<String>,
    pub interface: Spanned<String>,
    /// Static routes to targets behind routers; an address no route matches is on-link.
    #[serde(default)]
    pub routes: Vec<Spanned<RouteCfg>>,
    /// Where pl answers DNS for this network's endpoint names: at most one IPv4 and one
    /// IPv6 address. None: the names are only listed (`pl dns`).
    #[serde(default)]
    pub dns_addresses: Vec<Spanned<String>>,
}

/// `{ to = "10.60.0.0/24", via = "10.9.0.1" }`: `to` is reached through the router `via`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteCfg {
    pub to: Spanned<String>,
    pub via: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZonedIp {
    pub ip: Spanned<String>,
    pub zone: Spanned<String>,
}

const fn yes() -> bool {
    true
}

/// An endpoint service fronted by a network load balancer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceCfg {
    pub name: Spanned<String>,
    pub network: Spanned<String>,
    pub nlb_addresses: Spanned<Vec<Spanned<ZonedIp>>>,
    #[serde(default = "yes")]
    pub acceptance_required: bool,
    /// Networks allowed to have endpoints of this service; `"*"` for any. None by default,
    /// as in AWS.
    #[serde(default)]
    pub allowed_principals: Vec<Spanned<String>>,
    #[serde(default)]
    pub accepted_endpoints: Vec<Spanned<String>>,
    /// Endpoints refused even where acceptance is not required; never in both lists.
    #[serde(default)]
    pub rejected_endpoints: Vec<Spanned<String>>,
    #[serde(default)]
    pub cross_zone: bool,
    pub listeners: Spanned<Vec<Spanned<ListenerCfg>>>,
    pub targets: Spanned<Vec<Spanned<ZonedIp>>>,
    /// Active checks of the targets; on, with NLB's defaults, when absent.
    pub health_check: Option<Spanned<HealthCheckCfg>>,
    /// The provider's own name for the service (`billing.example.com`), answered inside
    /// the networks of endpoints that turn `private_dns` on; unique across services.
    pub private_dns_name: Option<Spanned<String>>,
}

/// `health_check = { ... }`: TCP SYN probes from the NLB address of the target's zone.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckCfg {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Only `"tcp"`.
    pub protocol: Option<Spanned<String>>,
    /// Defaults to the first listener's target port (NLB's "traffic port").
    pub port: Option<Spanned<u16>>,
    pub interval_s: Option<Spanned<u32>>,
    pub timeout_ms: Option<Spanned<u32>>,
    pub healthy_threshold: Option<Spanned<u32>>,
    pub unhealthy_threshold: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerCfg {
    pub protocol: Spanned<String>,
    pub port: Spanned<u16>,
    /// Defaults to `port`.
    pub target_port: Option<Spanned<u16>>,
}

/// An interface endpoint inside a consumer network.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointCfg {
    pub name: Spanned<String>,
    pub service: Spanned<String>,
    pub network: Spanned<String>,
    pub addresses: Spanned<Vec<Spanned<ZonedIp>>>,
    /// The endpoint's security group; any source when absent.
    pub allowed_sources: Option<Vec<Spanned<String>>>,
    /// Answer the service's private name in this endpoint's network; on by default when
    /// the service has one.
    pub private_dns: Option<Spanned<bool>>,
}

/// Optional limits and timeouts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsCfg {
    /// Concurrent flows (each takes two entries in the flow map).
    pub flow_table_size: u32,
    pub snat_port_min: u16,
    pub snat_port_max: u16,
    /// TCP established (past SYN both ways, no FIN/RST).
    pub tcp_idle_timeout_s: u64,
    /// TCP half-open (SYN seen, not yet established).
    pub tcp_transient_timeout_s: u64,
    /// TCP after a FIN one way only (the other side may still send: FIN_WAIT/CLOSE_WAIT).
    pub tcp_half_closed_timeout_s: u64,
    /// TCP after FIN both ways, or an RST either way.
    pub tcp_closing_timeout_s: u64,
    /// UDP once the target has replied.
    pub udp_idle_timeout_s: u64,
    /// UDP with no reply yet.
    pub udp_oneway_timeout_s: u64,
}

impl Default for LimitsCfg {
    fn default() -> Self {
        Self {
            flow_table_size: 65_536,
            snat_port_min: 1024,
            snat_port_max: 65535,
            tcp_idle_timeout_s: 350,
            tcp_transient_timeout_s: 60,
            tcp_half_closed_timeout_s: 120,
            tcp_closing_timeout_s: 10,
            udp_idle_timeout_s: 120,
            udp_oneway_timeout_s: 30,
        }
    }
}

/// A config error: where (file, line, section, field) and what. Also a warning, where
/// `pl check` reports one (an interface this host does not have).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, thiserror::Error)]
#[error("{}{}: {section}: {}{message}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default(), if field.is_empty() { String::new() } else { format!("{field}: ") })]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    /// `[[endpoint]] "acme-billing"`, `[[service]] #2`, `[limits]`, or `file`.
    pub section: String,
    pub field: String,
    pub message: String,
}

/// Every error a config has, in file order; shown one a line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        Self(vec![e])
    }
}

/// How errors name the `index`th `[[kind]]` section: by its name, or its number (from 1)
/// while it has none.
pub(crate) fn section_label(kind: &str, index: usize, name: &str) -> String {
    if name.is_empty() {
        format!("[[{kind}]] #{}", index + 1)
    } else {
        format!("[[{kind}]] \"{name}\"")
    }
}

fn file_error(path: &Path, message: String) -> ConfigError {
    ConfigError {
        file: path.to_owned(),
        line: None,
        section: "file".to_owned(),
        field: String::new(),
        message,
    }
}

/// Why `what` (described by `meta`) could have been written by someone other than root or
/// this process's user, if it could.
fn untrusted(what: &str, meta: &std::fs::Metadata) -> Option<String> {
    use std::os::unix::fs::MetadataExt as _;
    let me = nix::unistd::geteuid().as_raw();
    let mode = meta.mode() & 0o7777;
    if meta.uid() != 0 && meta.uid() != me {
        return Some(format!("{what} is owned by uid {}, not root", meta.uid()));
    }
    let sticky_dir = meta.is_dir() && mode & 0o1000 != 0;
    (mode & 0o022 != 0 && !sticky_dir)
        .then(|| format!("{what} is writable by group or others (mode {mode:04o})"))
}

/// The text of a config file, for turning byte spans into line numbers.
#[derive(Debug)]
pub struct Source {
    pub path: PathBuf,
    pub text: String,
}

impl Source {
    /// Reads `path` without asking who could have written it (tools, tests).
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| file_error(path, format!("cannot read: {e}")))?;
        Ok(Self {
            path: path.to_owned(),
            text,
        })
    }

    /// Reads `path` for `pl run`, which applies whatever it says as root: refuses a file
    /// another user could have written, as sshd's StrictModes does. The file and every
    /// directory above it must be owned by root (or this process's user) and not writable
    /// by group or others; a directory with the sticky bit (`/tmp`) may be, since no one
    /// else can replace a file in it. With `insecure` the refusal becomes the returned
    /// warning.
    pub fn read_trusted(
        path: &Path,
        insecure: bool,
    ) -> Result<(Self, Option<String>), ConfigError> {
        use std::io::Read as _;
        let cannot = |e: std::io::Error| file_error(path, format!("cannot read: {e}"));
        let mut file = std::fs::File::open(path).map_err(cannot)?;
        // The checks look at the file that was opened, and the text comes from it.
        let meta = file.metadata().map_err(cannot)?;
        if !meta.is_file() {
            return Err(file_error(path, "not a regular file".to_owned()));
        }
        // What cannot be checked counts as untrusted.
        let problem = untrusted("the file", &meta).or_else(|| {
            let (real, given) = match (std::fs::canonicalize(path), std::path::absolute(path)) {
                (Ok(r), Ok(g)) => (r, g),
                (Err(e), _) | (_, Err(e)) => {
                    return Some(format!("its directories cannot be checked ({e})"));
                }
            };
            real.ancestors()
                .skip(1)
                .chain(given.ancestors().skip(1))
                .find_map(|dir| match std::fs::metadata(dir) {
                    Ok(m) => untrusted(&format!("directory {}", dir.display()), &m),
                    Err(e) => Some(format!(
                        "directory {} cannot be checked ({e})",
                        dir.display()
                    )),
                })
        });
        let warning = match problem {
            Some(p) if !insecure => {
                return Err(file_error(
                    path,
                    format!(
                        "{p}: any local user who can change it would command the data plane; fix the ownership or mode, or pass --insecure-config"
                    ),
                ));
            }
            Some(p) => Some(format!(
                "{}: {p}; used anyway (--insecure-config)",
                path.display()
            )),
            None => None,
        };
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(cannot)?;
        Ok((
            Self {
                path: path.to_owned(),
                text,
            },
            warning,
        ))
    }

    /// A config that arrived as text (a client's `pl reload --config`); `name` is what
    /// errors quote.
    pub fn from_text(name: &str, text: String) -> Self {
        Self {
            path: PathBuf::from(name),
            text,
        }
    }

    /// 1-based line of byte offset `at`.
    pub fn line(&self, at: usize) -> usize {
        self.text
            .get(..at)
            .map_or(1, |t| t.matches('\n').count() + 1)
    }

    pub fn error(
        &self,
        at: Option<usize>,
        section: &str,
        field: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.path.clone(),
            line: at.map(|a| self.line(a)),
            section: section.to_owned(),
            field: field.to_owned(),
            message: message.into(),
        }
    }

    /// Parses the text (types only): every type error, each naming its section and key.
    pub fn parse(&self) -> Result<Config, ConfigErrors> {
        let parsed = self.parse_entries();
        if parsed.errors.is_empty() {
            Ok(parsed.config)
        } else {
            Err(ConfigErrors(parsed.errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn a_config_others_could_write_is_refused_unless_insecure() {
        let dir = std::env::temp_dir().join(format!("pl-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let path = dir.join("pl.toml");
        std::fs::write(&path, "[limits]\n").expect("write");
        let mode = |m| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(m));

        mode(0o600).expect("chmod");
        let (src, warning) = Source::read_trusted(&path, false).expect("a private file is read");
        assert_eq!((src.text.as_str(), warning), ("[limits]\n", None));

        mode(0o620).expect("chmod");
        let e = Source::read_trusted(&path, false).expect_err("group-writable");
        assert_eq!(e.file, path);
        assert!(
            e.message
                .contains("writable by group or others (mode 0620)"),
            "{e}"
        );
        assert!(e.message.contains("--insecure-config"), "{e}");
        let (_, warning) = Source::read_trusted(&path, true).expect("insecure reads it");
        assert!(warning.is_some_and(|w| w.contains("--insecure-config")));

        // The file is private, its directory is not.
        mode(0o600).expect("chmod");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let e = Source::read_trusted(&path, false).expect_err("world-writable directory");
        assert!(
            e.message.contains(&format!("directory {}", dir.display())),
            "{e}"
        );
        // A sticky one (/tmp) is fine: no one else can replace the file in it.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
        Source::read_trusted(&path, false).expect("a sticky directory");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
