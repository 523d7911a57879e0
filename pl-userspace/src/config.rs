//! The TOML config, as written: the schema other tools are written against. Nothing here
//! is validated beyond types; `model` does that, with errors that point back here.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub network: Vec<Spanned<NetworkCfg>>,
    #[serde(default)]
    pub service: Vec<Spanned<ServiceCfg>>,
    #[serde(default)]
    pub endpoint: Vec<Spanned<EndpointCfg>>,
    pub limits: Option<Spanned<LimitsCfg>>,
}

/// One L2 segment behind one forwarder interface; its name is also its principal.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkCfg {
    pub name: Spanned<String>,
    pub interface: Spanned<String>,
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
    #[serde(default)]
    pub cross_zone: bool,
    pub listeners: Spanned<Vec<Spanned<ListenerCfg>>>,
    pub targets: Spanned<Vec<Spanned<ZonedIp>>>,
    /// Active checks of the targets; on, with NLB's defaults, when absent.
    pub health_check: Option<Spanned<HealthCheckCfg>>,
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
    /// TCP after a FIN or RST either way.
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
            tcp_closing_timeout_s: 10,
            udp_idle_timeout_s: 120,
            udp_oneway_timeout_s: 30,
        }
    }
}

/// A config error: where (file, line, section, field) and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {section}: {}{message}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default(), if field.is_empty() { String::new() } else { format!("{field}: ") })]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    /// `[[endpoint]] "acme-billing"`, `[[service]] #2`, `[limits]`, or `file`.
    pub section: String,
    pub field: String,
    pub message: String,
}

/// The text of a config file, for turning byte spans into line numbers.
pub struct Source {
    pub path: PathBuf,
    pub text: String,
}

impl Source {
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            line: None,
            section: "file".to_owned(),
            field: String::new(),
            message: format!("cannot read: {e}"),
        })?;
        Ok(Self {
            path: path.to_owned(),
            text,
        })
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

    /// Parses the text (types only).
    pub fn parse(&self) -> Result<Config, ConfigError> {
        toml::from_str(&self.text).map_err(|e| {
            let at = e.span().map(|s| s.start);
            // toml's message carries its own excerpt; keep the first line, which names the problem.
            let msg = e
                .message()
                .lines()
                .next()
                .unwrap_or("invalid TOML")
                .to_owned();
            self.error(at, "file", "", msg)
        })
    }
}
