//! `pl status` from the run loop: the data plane's part, with what only the daemon knows
//! (uptime, config file, the last reload).

use std::time::{Instant, SystemTime};

use super::Daemon;
use crate::status::{ReloadStatus, StatusReport, VERSION};

/// How the last reload went, and when.
#[derive(Debug)]
pub(super) struct LastReload {
    at: SystemTime,
    when: Instant,
    by: &'static str,
    ok: bool,
    message: String,
}

impl LastReload {
    pub(super) fn new(by: &'static str, result: &anyhow::Result<String>) -> Self {
        let (ok, message) = match result {
            Ok(m) => (true, m.clone()),
            Err(e) => (false, format!("{e:#}")),
        };
        Self {
            at: SystemTime::now(),
            when: Instant::now(),
            by,
            ok,
            message,
        }
    }

    fn report(&self) -> ReloadStatus {
        ReloadStatus {
            at_unix_s: self
                .at
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            age_s: self.when.elapsed().as_secs(),
            by: self.by.to_owned(),
            ok: self.ok,
            message: self.message.clone(),
        }
    }
}

impl Daemon {
    /// The status reply. Flows are the last sweep's count, so a status walks nothing.
    pub(super) fn status(&self) -> StatusReport {
        let dp = self.dp.status(&self.live);
        StatusReport {
            version: VERSION.to_owned(),
            instance: self.opts.instance.clone(),
            uptime_s: self.started.elapsed().as_secs(),
            // Absolute, so `pl accept` run from another directory edits the same file.
            config_file: self
                .opts
                .config
                .as_deref()
                .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.to_owned())),
            interfaces: dp.interfaces,
            flow_table: dp.flow_table,
            services: dp.services,
            unresolved_targets: self.dp.unresolved_targets(),
            last_reload: self.last_reload.as_ref().map(LastReload::report),
            cluster: self.cluster_status(),
        }
    }

    /// The cluster part of status and metrics; None for a lone forwarder.
    pub(super) fn cluster_status(&self) -> Option<crate::cluster::ClusterStatus> {
        self.cluster
            .as_ref()
            .zip(self.dp.model())
            .map(|(c, m)| c.status(m))
    }
}
