//! A cluster node's own families: which zones it serves, when it last heard each peer,
//! and what flow sync moved. Every family of a node also carries its `node` label (the
//! registry's), so one dashboard tells the nodes apart.

use prometheus_client::{
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{MetricType, counter::ConstCounter},
};

use super::{gauge, labels};
use crate::cluster::ClusterStatus;

pub(super) fn encode(
    enc: &mut DescriptorEncoder<'_>,
    c: &ClusterStatus,
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(
        "cluster_zone_serving",
        "1 if this node serves the zone (answers for its addresses, opens its flows)",
        None,
        MetricType::Gauge,
    )?;
    for z in &c.zones {
        let v = u64::from(z.owner.as_deref() == Some(c.node.as_str()));
        gauge(v).encode(m.encode_family(&labels(&[("zone", &z.zone)]))?)?;
    }
    let mut m = enc.encode_descriptor(
        "cluster_peer_heard_age_ms",
        "Milliseconds since this node last heard the peer on the management network (absent: never)",
        None,
        MetricType::Gauge,
    )?;
    for p in &c.peers {
        if let Some(ms) = p.heard_ms_ago {
            gauge(ms).encode(m.encode_family(&labels(&[("peer", &p.name)]))?)?;
        }
    }
    let s = &c.sync;
    for (name, help, v) in [
        (
            "cluster_sync_flows_sent",
            "Flows sent to peers (new, changed, refreshed or ended)",
            s.flows_sent,
        ),
        (
            "cluster_sync_datagrams_sent",
            "Flow sync datagrams sent",
            s.datagrams_sent,
        ),
        (
            "cluster_sync_send_errors",
            "Flow sync datagrams the socket refused (sent again next round)",
            s.send_errors,
        ),
        (
            "cluster_sync_flows_received",
            "Flows received from peers",
            s.flows_received,
        ),
        (
            "cluster_sync_flows_written",
            "Received flows written into this node's table",
            s.flows_written,
        ),
        (
            "cluster_sync_refused",
            "Received flows or datagrams refused (unknown sender, another config, a flow this config could not open)",
            s.refused,
        ),
        (
            "cluster_sync_conflicts",
            "Received flows whose SNAT reservation another flow here holds",
            s.conflicts,
        ),
        (
            "cluster_sync_unauthenticated",
            "Datagrams from a node's address whose tag is not under the cluster key, for another node, not sent within 30 s of this node's clock, or replayed",
            s.unauthenticated,
        ),
    ] {
        let counter = ConstCounter::new(v);
        let m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
        counter.encode(m)?;
    }
    Ok(())
}
