//! Flow sync on the wire: a header, then whole flows (both entries, 128 bytes each), then
//! a tag under the cluster's key, in UDP datagrams that fit the management network's MTU.
//! Native byte order: the magic, read the other way round, refuses a node of the other
//! endianness.

use bytemuck::{Pod, Zeroable};
use pl_common::flow::{FlowKey, FlowValue};

use super::secret::{Secret, TAG_LEN};

pub const MAGIC: u32 = 0x706c_7331; // "pls1"
/// 2: the receiver, the send time, the datagram counter and the tag.
pub const VERSION: u16 = 2;

/// Only the header: "I am here, serving these zones".
pub const KIND_HELLO: u8 = 1;
/// The header and flow records.
pub const KIND_FLOWS: u8 = 2;

/// The flow is open or changed: insert it, or merge into the copy held.
pub const OP_UPSERT: u8 = 1;
/// The flow ended at its owner.
pub const OP_REMOVE: u8 = 2;

/// Records per datagram: header + records + tag stay under 1472 bytes (a 1500-byte MTU).
pub const RECORDS_PER_DATAGRAM: usize = 11;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Header {
    pub magic: u32,
    pub version: u16,
    /// The sender's index in the config's `[[node]]` list.
    pub node: u8,
    pub kind: u8,
    /// Of the sender's config ids (networks, services, endpoints, zones by name): flows
    /// carry ids, so both ends must number them alike.
    pub fingerprint: u32,
    /// Zones the sender serves, a bit per zone index.
    pub serving: u32,
    /// Random per run of `pl run`: a new value means a new peer that needs every flow.
    pub boot: u64,
    /// Counts the run's datagrams: a datagram seen before is a replay.
    pub seq: u64,
    /// The sender's wall clock, ms since the epoch: an old datagram is a replay.
    pub sent_ms: u64,
    pub count: u32,
    /// The receiver's index: a datagram sent to one node is refused by another.
    pub to: u8,
    pub _pad: [u8; 3],
}

/// One flow: both entries as the owner holds them, their idle times and age in the
/// owner's clock (each node has its own clock: times travel as durations).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Record {
    pub forward_key: FlowKey,
    pub forward: FlowValue,
    pub reply_key: FlowKey,
    pub reply: FlowValue,
    pub forward_idle_ms: u32,
    pub reply_idle_ms: u32,
    pub age_s: u32,
    pub op: u8,
    pub _pad: [u8; 3],
}

/// A datagram: `header` (its count set here), `records` and their tag under `key`.
pub fn encode(mut header: Header, records: &[Record], key: &Secret) -> Vec<u8> {
    header.count = records.len() as u32;
    let mut out = Vec::with_capacity(size_of::<Header>() + size_of_val(records) + TAG_LEN);
    out.extend_from_slice(bytemuck::bytes_of(&header));
    out.extend_from_slice(bytemuck::cast_slice(records));
    let tag = key.tag(&out);
    out.extend_from_slice(&tag);
    out
}

/// Why a datagram was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("{len} bytes: shorter than a header")]
    Short { len: usize },
    #[error("not pl flow sync (magic {magic:#x}, version {version})")]
    Foreign { magic: u32, version: u16 },
    #[error("the header says {count} records, the datagram holds {held}")]
    Count { count: u32, held: usize },
    #[error("its tag is not under this node's key (is secret_file the same on every node?)")]
    Tag,
}

/// The header and records of `buf`, whose tag must be under `key`.
pub fn decode(buf: &[u8], key: &Secret) -> Result<(Header, Vec<Record>), WireError> {
    let h = size_of::<Header>();
    if buf.len() < h + TAG_LEN {
        return Err(WireError::Short { len: buf.len() });
    }
    let header: Header = bytemuck::pod_read_unaligned(&buf[..h]);
    if header.magic != MAGIC || header.version != VERSION {
        return Err(WireError::Foreign {
            magic: header.magic,
            version: header.version,
        });
    }
    let (signed, tag) = buf.split_at(buf.len() - TAG_LEN);
    if !key.verify(signed, tag) {
        return Err(WireError::Tag);
    }
    let body = &signed[h..];
    let r = size_of::<Record>();
    if !body.len().is_multiple_of(r) || body.len() / r != header.count as usize {
        return Err(WireError::Count {
            count: header.count,
            held: body.len() / r,
        });
    }
    let records = body
        .chunks_exact(r)
        .map(bytemuck::pod_read_unaligned)
        .collect();
    Ok((header, records))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_fit_a_1500_byte_mtu() {
        assert_eq!(size_of::<Header>(), 48);
        assert_eq!(size_of::<Record>(), 128);
        assert!(size_of::<Header>() + RECORDS_PER_DATAGRAM * size_of::<Record>() + TAG_LEN <= 1472);
    }

    #[test]
    fn a_datagram_round_trips_and_bad_ones_are_refused() {
        let header = Header {
            magic: MAGIC,
            version: VERSION,
            node: 1,
            kind: KIND_FLOWS,
            boot: 7,
            ..Header::default()
        };
        let rec = Record {
            age_s: 3,
            op: OP_UPSERT,
            ..Record::default()
        };
        let key = Secret::new(vec![9; 32]).expect("key");
        let buf = encode(header, &[rec, rec], &key);
        let (h, r) = decode(&buf, &key).expect("decodes");
        assert_eq!((h.count, h.boot, r.len(), r[1].age_s), (2, 7, 2, 3));
        assert!(matches!(
            decode(&buf[..50], &key),
            Err(WireError::Short { .. })
        ));
        assert!(matches!(
            decode(&buf[..buf.len() - 1], &key),
            Err(WireError::Tag)
        ));
        let mut foreign = buf.clone();
        foreign[0] ^= 0xff;
        assert!(matches!(
            decode(&foreign, &key),
            Err(WireError::Foreign { .. })
        ));
        // A record changed on the way, or a datagram under another key.
        let mut changed = buf.clone();
        changed[size_of::<Header>() + 5] ^= 1;
        assert!(matches!(decode(&changed, &key), Err(WireError::Tag)));
        let other = Secret::new(vec![1; 32]).expect("key");
        assert!(matches!(decode(&buf, &other), Err(WireError::Tag)));
        // A well-tagged datagram whose count lies.
        let mut lying = header;
        lying.count = 5;
        let mut forged = bytemuck::bytes_of(&lying).to_vec();
        forged.extend_from_slice(bytemuck::cast_slice(&[rec]));
        let tag = key.tag(&forged);
        forged.extend_from_slice(&tag);
        assert!(matches!(
            decode(&forged, &key),
            Err(WireError::Count { .. })
        ));
    }
}
