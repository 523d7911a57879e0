//! A service's active health check: the config's `health_check`, validated, with NLB's
//! defaults filled in.

use toml::Spanned;

use super::{Listener, section::Section};
use crate::config::{ConfigError, HealthCheckCfg};

/// A service's active health check (TCP SYN to `port` from the NLB address of the target's
/// zone). Defaults are NLB's: every 30 s, 10 s timeout, 5 passes to come back, 2 failures
/// to go.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HealthCheck {
    pub enabled: bool,
    pub port: u16,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            enabled: true,
            port: 0,
            interval_ms: 30_000,
            timeout_ms: 10_000,
            healthy_threshold: 5,
            unhealthy_threshold: 2,
        }
    }
}

/// `health_check`, validated, with defaults filled in.
pub(super) fn health_check(
    sec: &Section<'_>,
    cfg: Option<&Spanned<HealthCheckCfg>>,
    listeners: &[Listener],
) -> Result<HealthCheck, ConfigError> {
    let mut h = HealthCheck {
        port: listeners[0].target_port,
        ..HealthCheck::default()
    };
    let Some(cfg) = cfg else {
        return Ok(h);
    };
    let c = cfg.get_ref();
    h.enabled = c.enabled;
    if let Some(p) = &c.protocol
        && p.get_ref() != "tcp"
    {
        return sec.err(
            "health_check.protocol",
            Some(p.span().start),
            format!("{:?}: only \"tcp\" (SYN probes) is supported", p.get_ref()),
        );
    }
    if let Some(p) = &c.port {
        if *p.get_ref() == 0 {
            return sec.err(
                "health_check.port",
                Some(p.span().start),
                "port 0 is not a port",
            );
        }
        h.port = *p.get_ref();
    }
    h.interval_ms = ranged(sec, "health_check.interval_s", &c.interval_s, 1, 300, 30)? * 1000;
    // NLB's 10 s, or half the interval if that is shorter.
    let timeout = h.timeout_ms.min(h.interval_ms / 2);
    h.timeout_ms = ranged(
        sec,
        "health_check.timeout_ms",
        &c.timeout_ms,
        50,
        120_000,
        timeout,
    )?;
    if h.timeout_ms >= h.interval_ms {
        return sec.err(
            "health_check.timeout_ms",
            c.timeout_ms.as_ref().map(|s| s.span().start),
            format!(
                "{} ms must be shorter than interval_s ({} s)",
                h.timeout_ms,
                h.interval_ms / 1000
            ),
        );
    }
    h.healthy_threshold = ranged(
        sec,
        "health_check.healthy_threshold",
        &c.healthy_threshold,
        1,
        10,
        5,
    )? as u32;
    h.unhealthy_threshold = ranged(
        sec,
        "health_check.unhealthy_threshold",
        &c.unhealthy_threshold,
        1,
        10,
        2,
    )? as u32;
    Ok(h)
}

/// `v` if given and in `lo..=hi`, else `default` if not given.
fn ranged(
    sec: &Section<'_>,
    field: &str,
    v: &Option<Spanned<u32>>,
    lo: u32,
    hi: u32,
    default: u64,
) -> Result<u64, ConfigError> {
    match v {
        None => Ok(default),
        Some(s) if (lo..=hi).contains(s.get_ref()) => Ok(u64::from(*s.get_ref())),
        Some(s) => sec.err(
            field,
            Some(s.span().start),
            format!("{} is out of range {lo}..={hi}", s.get_ref()),
        ),
    }
}
