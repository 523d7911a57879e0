//! The run loop's cluster arms: keepalived's state lines, its exit, sync datagrams and the
//! sync tick. Each asks `cluster::Member` and the data plane; no logic of its own beyond
//! the order of steps (release before stopping keepalived, announce after serving).

use std::time::{Duration, Instant};

use super::Daemon;
use crate::{
    cluster::{Event, Member, sync::Tables, zone_names},
    flows,
};

/// At most one warning about bad sync datagrams per this long.
const WARN_EVERY: Duration = Duration::from_secs(10);

impl Daemon {
    pub(super) fn on_cluster(&mut self, event: Event, buf: &[u8]) {
        let Some(m) = self.cluster.as_mut() else {
            return;
        };
        match event {
            Event::Line(line) => {
                if let Some(model) = self.dp.model()
                    && let Some((zone, state)) = m.on_line(model, &line)
                {
                    tracing::info!("zone {zone}: keepalived says {state:?}");
                }
                self.apply_serving();
            }
            Event::Exited(why) => {
                tracing::warn!(
                    "keepalived exited ({why}); this node serves no zone until it is back"
                );
                m.lost_keepalived();
                self.apply_serving();
            }
            Event::Datagram(n, from) => {
                let Some(model) = self.dp.model() else {
                    return;
                };
                let dp = &self.dp;
                let got = m.sync.receive(
                    from,
                    &buf[..n],
                    tables(&self.flows),
                    model,
                    flows::now_ns(),
                    &|addr| dp.target_mac(addr),
                );
                match got {
                    Ok(Some(peer)) => tracing::info!(
                        "node {peer} joined: it hears every flow of the zones it may serve"
                    ),
                    Ok(None) => {}
                    Err(e) if self.sync_warned.is_none_or(|t| t.elapsed() >= WARN_EVERY) => {
                        tracing::warn!("{e}");
                        self.sync_warned = Some(Instant::now());
                    }
                    Err(_) => {}
                }
            }
            Event::RecvError(e) => tracing::warn!("flow sync: {e}"),
        }
    }

    /// Serves what keepalived says this node is master of: maps, then gratuitous ARP for
    /// the zones gained (again on the next tick, for caches that ignored the first).
    pub(super) fn apply_serving(&mut self) {
        let (Some(m), Some(model)) = (self.cluster.as_mut(), self.dp.model()) else {
            return;
        };
        let Some(c) = model.cluster.as_ref() else {
            return;
        };
        // A zone another node still claims waits (see `Member::servable`); the lease
        // tick asks again.
        let (mask, waiting) = m.servable(lease_of(c));
        if waiting && !self.waiting {
            tracing::info!(
                "keepalived gave this node a zone another node may still answer for: waiting until it lets go or its lease lapses"
            );
        }
        self.waiting = waiting;
        let before = model.serving.unwrap_or(0);
        if mask == before {
            return;
        }
        let (gained, lost) = (mask & !before, before & !mask);
        let (gained_names, lost_names) = (zone_names(model, gained), zone_names(model, lost));
        // Letting go: the zone's last changes go out first, while it is still served.
        if lost != 0 {
            m.sync.round(tables(&self.flows), model, flows::now_ns());
        }
        match self.dp.set_serving(mask) {
            Ok(log) => log.iter().for_each(|l| tracing::info!("{l}")),
            Err(e) => {
                tracing::warn!("serving zones {mask:#x}: {:#}", anyhow::Error::from(e));
                return;
            }
        }
        m.sync.hello(mask);
        if lost != 0 {
            tracing::info!("released zone(s) {}", lost_names.join(", "));
        }
        if gained != 0 {
            let (n, errors) = self.dp.announce(gained);
            errors.iter().for_each(|e| tracing::warn!("{e}"));
            tracing::info!(
                "serving zone(s) {}: announced {n} addresses by gratuitous ARP",
                gained_names.join(", ")
            );
            self.announce_again = gained;
            // Targets answer the ARP just sent from the zone's NLB address: take them into
            // the tables as soon as they do, not at the next 1 s tick.
            self.resolving = Some(Instant::now() + Duration::from_secs(3));
            // The zone's other candidates hear its flows from their new owner.
            m.sync.resend_all();
        }
    }

    /// The health tick's cluster part: after a takeover, targets resolved at once.
    pub(super) fn resolve_soon(&mut self) {
        let Some(until) = self.resolving else {
            return;
        };
        if Instant::now() >= until || self.dp.unresolved_targets().is_empty() {
            self.resolving = None;
            return;
        }
        match self.dp.refresh_targets() {
            Ok(news) => news.iter().for_each(|t| tracing::info!("target {t}")),
            Err(e) => tracing::warn!("{:#}", anyhow::Error::from(e)),
        }
    }

    /// The 1 s tick's cluster part: the second announcement, keepalived's restart.
    pub(super) fn cluster_tick(&mut self) {
        if self.announce_again != 0 {
            let _ = self.dp.announce(std::mem::take(&mut self.announce_again));
        }
        let Some(m) = self.cluster.as_mut() else {
            return;
        };
        if m.died
            .is_some_and(|t| t.elapsed() >= Duration::from_secs(1))
            && let Some(model) = self.dp.model()
        {
            match m.restart(model) {
                Ok(()) => tracing::info!("keepalived restarted"),
                Err(e) => {
                    tracing::warn!("{:#}", anyhow::Error::from(e));
                    m.died = Some(Instant::now());
                }
            }
        }
    }

    /// Renews the lease on the zones this node serves (see `pl-ebpf/src/lease.rs`).
    pub(super) fn renew_lease(&mut self) {
        if self.waiting {
            self.apply_serving();
        }
        let Some(lease) = self
            .dp
            .model()
            .and_then(|m| m.cluster.as_ref())
            .map(lease_of)
        else {
            return;
        };
        if let Err(e) = self
            .dp
            .renew_lease(flows::now_ns() + lease.as_nanos() as u64)
        {
            tracing::warn!("renewing the lease: {:#}", anyhow::Error::from(e));
        }
        // Right after the renewal: see `Member::servable`.
        if let (Some(m), Some(model)) = (self.cluster.as_ref(), self.dp.model()) {
            m.sync.hello(model.serving.unwrap_or(0));
        }
    }

    /// One sync round: what changed in the flows of the zones served goes to the peers.
    pub(super) fn on_sync_tick(&mut self) {
        let (Some(m), Some(model)) = (self.cluster.as_mut(), self.dp.model()) else {
            return;
        };
        m.sync.round(tables(&self.flows), model, flows::now_ns());
    }

    /// Leaves the cluster: the zones are released (the maps answer for nothing), then
    /// keepalived stops and its last adverts hand them over at once.
    pub(super) async fn leave(&mut self) {
        let Some(mut m) = self.cluster.take() else {
            return;
        };
        // The lease first: whatever fails below, the program answers for nothing now.
        if let Err(e) = self.dp.renew_lease(1) {
            tracing::warn!("ending the lease: {:#}", anyhow::Error::from(e));
        }
        // The zones' last changes, then let go.
        if let Some(model) = self.dp.model() {
            m.sync.round(tables(&self.flows), model, flows::now_ns());
        }
        if let Err(e) = self.dp.set_serving(0) {
            tracing::warn!("releasing zones: {:#}", anyhow::Error::from(e));
        }
        // The peers hear it let go before keepalived hands the zones over.
        m.sync.hello(0);
        Member::stop(m).await;
        tracing::info!("left the cluster: zones released, keepalived stopped");
    }
}

/// Both flow tables, as sync takes them.
fn tables(t: &super::FlowTables) -> Tables<'_> {
    Tables {
        v4: t.0.as_ref(),
        v6: t.1.as_ref(),
    }
}

/// How long the lease reaches past a renewal: half of `takeover_s`, so it lapses before a
/// backup's keepalived (about 3/4 of `takeover_s`) takes a dead node's zones over. It is
/// renewed four times as often.
pub(super) fn lease_of(c: &crate::model::Cluster) -> Duration {
    Duration::from_millis(u64::from(c.takeover_s) * 500)
}

/// The next cluster event, or never without a cluster.
pub(super) async fn next_event(m: &mut Option<Member>, buf: &mut [u8]) -> Event {
    match m.as_mut() {
        Some(m) => m.next_event(buf).await,
        None => std::future::pending().await,
    }
}
