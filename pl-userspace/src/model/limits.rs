//! `[limits]`: the flow table's size and the data path's timeouts and SNAT ports.

use pl_common::settings::Settings;

use super::found::Found;
use crate::config::{Config, LimitsCfg, Source};

/// The flow table size and the data path's settings, from `[limits]` or its defaults; None
/// with every error recorded in `found`.
pub(super) fn limits(src: &Source, cfg: &Config, found: &mut Found<'_>) -> Option<(u32, Settings)> {
    let default = LimitsCfg::default();
    let (l, at) = cfg
        .limits
        .as_ref()
        .map_or((&default, None), |s| (s.get_ref(), Some(s.span().start)));
    let before = found.errors.len();
    let mut limit_err = |field: &str, msg: &str| {
        found.errors.push(src.error(at, "[limits]", field, msg));
    };
    if l.flow_table_size == 0 || l.flow_table_size > 8_000_000 {
        limit_err("flow_table_size", "must be 1 to 8000000");
    }
    if l.snat_port_min == 0 || l.snat_port_min > l.snat_port_max {
        limit_err("snat_port_min", "must be 1 to snat_port_max");
    }
    for (field, v) in [
        ("tcp_idle_timeout_s", l.tcp_idle_timeout_s),
        ("tcp_transient_timeout_s", l.tcp_transient_timeout_s),
        ("tcp_half_closed_timeout_s", l.tcp_half_closed_timeout_s),
        ("tcp_closing_timeout_s", l.tcp_closing_timeout_s),
        ("udp_idle_timeout_s", l.udp_idle_timeout_s),
        ("udp_oneway_timeout_s", l.udp_oneway_timeout_s),
    ] {
        if v == 0 || v > u64::from(u32::MAX) {
            limit_err(field, "must be 1 to 4294967295 seconds");
        }
    }
    if found.errors.len() > before {
        return None;
    }
    let ns = |s: u64| s.saturating_mul(1_000_000_000);
    let settings = Settings {
        tcp_idle_ns: ns(l.tcp_idle_timeout_s),
        tcp_transient_ns: ns(l.tcp_transient_timeout_s),
        tcp_half_closed_ns: ns(l.tcp_half_closed_timeout_s),
        tcp_closing_ns: ns(l.tcp_closing_timeout_s),
        udp_idle_ns: ns(l.udp_idle_timeout_s),
        udp_oneway_ns: ns(l.udp_oneway_timeout_s),
        snat_port_min: l.snat_port_min,
        snat_port_max: l.snat_port_max,
        dns_per_window: 0,
    };
    Some((l.flow_table_size, settings))
}
