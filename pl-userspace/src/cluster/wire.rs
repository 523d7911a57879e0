//! Flow sync on the wire: a header, then whole flows (both entries: 128 bytes each for
//! IPv4, 224 for IPv6), then a tag under the cluster's key, in UDP datagrams that fit the
//! management network's MTU. A datagram carries flows of one family. Native byte order:
//! the magic, read the other way round, refuses a node of the other endianness.

use bytemuck::{Pod, Zeroable};
use pl_common::{flow6::Slot6, flowtable::Slot};

use super::secret::{Secret, TAG_LEN};
use crate::flows::Family;

pub const MAGIC: u32 = 0x706c_7331; // "pls1"
/// 2: the receiver, the send time, the datagram counter and the tag. Hellos and IPv4
/// flows still go as version 2, unchanged, so a node of an earlier pl keeps syncing IPv4
/// with this one (it refuses the IPv6 datagrams as foreign).
pub const VERSION: u16 = 2;
/// 3: [`KIND_FLOWS6`], IPv6 flow records.
pub const VERSION6: u16 = 3;

/// Only the header: "I am here, serving these zones".
pub const KIND_HELLO: u8 = 1;
/// The header and IPv4 flow records.
pub const KIND_FLOWS: u8 = 2;
/// The header and IPv6 flow records (version [`VERSION6`]).
pub const KIND_FLOWS6: u8 = 3;

/// The flow is open or changed: insert it, or merge into the copy held.
pub const OP_UPSERT: u8 = 1;
/// The flow ended at its owner.
pub const OP_REMOVE: u8 = 2;

/// IPv4 records per datagram: header + records + tag stay under 1472 bytes (a 1500-byte
/// MTU).
pub const RECORDS_PER_DATAGRAM: usize = 11;
/// The same for IPv6 records.
pub const RECORDS6_PER_DATAGRAM: usize = 6;

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
/// owner's clock (each node has its own clock: times travel as durations). `Record` is
/// IPv4's, [`Record6`] IPv6's.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Record<S: Family = Slot> {
    pub forward_key: S::Key,
    pub forward: S::Entry,
    pub reply_key: S::Key,
    pub reply: S::Entry,
    pub forward_idle_ms: u32,
    pub reply_idle_ms: u32,
    pub age_s: u32,
    pub op: u8,
    pub _pad: [u8; 3],
}

/// An IPv6 flow on the wire.
pub type Record6 = Record<Slot6>;

// Both layouts have no padding (the size is the sum of the fields') and every field is
// Pod, so any bytes are a valid record.
const _: () = assert!(size_of::<Record>() == 2 * (16 + 40) + 16);
const _: () = assert!(size_of::<Record6>() == 2 * (40 + 64) + 16);
// SAFETY: as above: `repr(C)`, Pod fields, no padding.
unsafe impl Zeroable for Record<Slot> {}
// SAFETY: as above.
unsafe impl Pod for Record<Slot> {}
// SAFETY: as above.
unsafe impl Zeroable for Record<Slot6> {}
// SAFETY: as above.
unsafe impl Pod for Record<Slot6> {}

/// What goes on the wire for a family's flows.
pub trait Wire: Family {
    const VERSION: u16;
    const KIND: u8;
    const PER_DATAGRAM: usize;
}

impl Wire for Slot {
    const VERSION: u16 = VERSION;
    const KIND: u8 = KIND_FLOWS;
    const PER_DATAGRAM: usize = RECORDS_PER_DATAGRAM;
}

impl Wire for Slot6 {
    const VERSION: u16 = VERSION6;
    const KIND: u8 = KIND_FLOWS6;
    const PER_DATAGRAM: usize = RECORDS6_PER_DATAGRAM;
}

/// A datagram's records, of one family.
#[derive(Debug, PartialEq, Eq)]
pub enum Records {
    V4(Vec<Record>),
    V6(Vec<Record6>),
}

impl Records {
    pub fn len(&self) -> usize {
        match self {
            Self::V4(r) => r.len(),
            Self::V6(r) => r.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A datagram: `header` (its count set here), `records` and their tag under `key`.
pub fn encode<R: Pod>(mut header: Header, records: &[R], key: &Secret) -> Vec<u8> {
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

/// The header and records of `buf`, whose tag must be under `key`. Version 2 carries
/// hellos and IPv4 flows, version 3 IPv6 flows.
pub fn decode(buf: &[u8], key: &Secret) -> Result<(Header, Records), WireError> {
    let h = size_of::<Header>();
    if buf.len() < h + TAG_LEN {
        return Err(WireError::Short { len: buf.len() });
    }
    let header: Header = bytemuck::pod_read_unaligned(&buf[..h]);
    let v6 = header.version == VERSION6 && header.kind == KIND_FLOWS6;
    if header.magic != MAGIC || !(header.version == VERSION && header.kind != KIND_FLOWS6 || v6) {
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
    let records = if v6 {
        Records::V6(records(body, header.count)?)
    } else {
        Records::V4(records(body, header.count)?)
    };
    Ok((header, records))
}

/// `count` records of type `R` that must fill `body`.
fn records<R: Pod>(body: &[u8], count: u32) -> Result<Vec<R>, WireError> {
    let r = size_of::<R>();
    if !body.len().is_multiple_of(r) || body.len() / r != count as usize {
        return Err(WireError::Count {
            count,
            held: body.len() / r,
        });
    }
    Ok(body
        .chunks_exact(r)
        .map(bytemuck::pod_read_unaligned)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_fit_a_1500_byte_mtu() {
        assert_eq!(size_of::<Header>(), 48);
        assert_eq!(size_of::<Record>(), 128);
        assert_eq!(size_of::<Record6>(), 224);
        assert!(size_of::<Header>() + RECORDS_PER_DATAGRAM * size_of::<Record>() + TAG_LEN <= 1472);
        assert!(
            size_of::<Header>() + RECORDS6_PER_DATAGRAM * size_of::<Record6>() + TAG_LEN <= 1472
        );
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
        let rec: Record = Record {
            age_s: 3,
            op: OP_UPSERT,
            ..Record::default()
        };
        let key = Secret::new(vec![9; 32]).expect("key");
        let buf = encode(header, &[rec, rec], &key);
        let (h, r) = decode(&buf, &key).expect("decodes");
        let Records::V4(r) = r else {
            panic!("IPv6 records in a version 2 datagram");
        };
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

    #[test]
    fn ipv6_records_go_as_version_3_and_ipv4_ones_stay_version_2() {
        let key = Secret::new(vec![9; 32]).expect("key");
        let header = |version, kind| Header {
            magic: MAGIC,
            version,
            kind,
            ..Header::default()
        };
        let mut rec = Record6 {
            age_s: 5,
            op: OP_REMOVE,
            ..Record6::default()
        };
        rec.forward_key.src[0] = 0xfd;
        rec.reply.new_dst[15] = 0x10;
        let buf = encode(header(VERSION6, KIND_FLOWS6), &[rec; 3], &key);
        assert_eq!(
            buf.len(),
            size_of::<Header>() + 3 * size_of::<Record6>() + TAG_LEN
        );
        let (h, r) = decode(&buf, &key).expect("decodes");
        assert_eq!((h.version, h.kind, r.len()), (VERSION6, KIND_FLOWS6, 3));
        assert_eq!(r, Records::V6(vec![rec; 3]));
        // An IPv4 datagram is as before: version 2, 128-byte records.
        let v4 = encode(header(VERSION, KIND_FLOWS), &[<Record>::default()], &key);
        assert_eq!(v4.len(), size_of::<Header>() + 128 + TAG_LEN);
        assert!(matches!(decode(&v4, &key), Ok((_, Records::V4(r))) if r.len() == 1));
        // IPv6 records under version 2, IPv4 ones under version 3, or a later version, are
        // not flow sync.
        for (version, kind) in [
            (VERSION, KIND_FLOWS6),
            (VERSION6, KIND_FLOWS),
            (4, KIND_FLOWS6),
        ] {
            let d = encode(header(version, kind), &[rec], &key);
            assert!(
                matches!(decode(&d, &key), Err(WireError::Foreign { .. })),
                "version {version} kind {kind} taken"
            );
        }
        // Tagged as IPv4 datagrams are.
        let mut changed = buf.clone();
        changed[size_of::<Header>() + 200] ^= 1;
        assert!(matches!(decode(&changed, &key), Err(WireError::Tag)));
    }
}
