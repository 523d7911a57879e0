//! Which XDP features an interface's driver advertises, asked before a native attach so a
//! driver that cannot redirect is refused with a sentence, not found later as silent drops.
//!
//! The kernel answers over generic netlink: family `netdev` (Linux 6.3+), command `dev-get`,
//! attribute `xdp-features`. The exchange is two requests written by hand. The socket belongs
//! to the caller's network namespace, the one whose ifindex is asked about.
//!
//! The answer is a snapshot, and the kernel reads the same bits at redirect time (a target
//! without `NDO_XMIT` is refused). veth's bits move: an end is a redirect target (`NDO_XMIT`,
//! `NDO_XMIT_SG`) only while its *peer* has a native XDP program or GRO on; XDP on the end
//! itself does not count. So a forwarder-side veth end qualifies through the far end's GRO
//! (the lab turns it on once both ends are up). A GRO change made while the peer is down is
//! not reflected here until this end is brought up again: on 6.18 that left `NDO_XMIT` both
//! missing (GRO on) and stale (GRO off).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::{fmt, io};

// enum netdev_xdp_act in include/uapi/linux/netdev.h.
pub const BASIC: u64 = 1;
pub const REDIRECT: u64 = 2;
pub const NDO_XMIT: u64 = 4;
pub const XSK_ZEROCOPY: u64 = 8;
pub const HW_OFFLOAD: u64 = 16;
pub const RX_SG: u64 = 32;
pub const NDO_XMIT_SG: u64 = 64;

/// The kernel's names for the bits, as `ynl` prints them.
const BIT_NAMES: [&str; 7] = [
    "basic",
    "redirect",
    "ndo-xmit",
    "xsk-zerocopy",
    "hw-offload",
    "rx-sg",
    "ndo-xmit-sg",
];

// The rest of netdev.h and genetlink.h this exchange uses.
const NETDEV_CMD_DEV_GET: u8 = 1;
const NETDEV_A_DEV_IFINDEX: u16 = 1;
const NETDEV_A_DEV_XDP_FEATURES: u16 = 3;
/// (GENL_ID_CTRL, CTRL_CMD_GETFAMILY): the controller's "which id has this family".
const CTRL_GETFAMILY: (u16, u8) = (0x10, 3);
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const NLMSG_HDRLEN: usize = 16;
const GENL_HDRLEN: usize = 4;
const NLA_HDRLEN: usize = 4;

const GETFAMILY: &str = "getfamily netdev";
const DEV_GET: &str = "netdev dev-get";

/// What pl needs from an interface's driver.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Need {
    /// It forwards (XDP_REDIRECT from it) and is a redirect target (frames redirected to it).
    pub redirect: bool,
    /// Its MTU is above one page, so frames arrive and leave as multi-buffer XDP.
    pub frags: bool,
}

/// A driver's advertised `NETDEV_XDP_ACT_*` bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features(pub u64);

impl Features {
    /// Whether every bit of `bits` is advertised.
    pub fn has(self, bits: u64) -> bool {
        self.0 & bits == bits
    }

    /// Human names of what `need` asks for and the driver does not advertise.
    pub fn missing(self, need: Need) -> Vec<&'static str> {
        let (r, f) = (need.redirect, need.frags);
        [
            (true, BASIC, "native XDP (basic)"),
            (r, REDIRECT, "XDP redirect"),
            (r, NDO_XMIT, "redirect target (ndo_xdp_xmit)"),
            (f, RX_SG, "multi-buffer receive (rx-sg)"),
            (
                f && r,
                NDO_XMIT_SG,
                "multi-buffer redirect target (ndo_xdp_xmit sg)",
            ),
        ]
        .into_iter()
        .filter(|&(asked, bit, _)| asked && !self.has(bit))
        .map(|(_, _, name)| name)
        .collect()
    }
}

impl fmt::Display for Features {
    /// The kernel's names of the bits, comma-separated; `none` for none.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = (0..BIT_NAMES.len())
            .filter(|&i| self.has(1 << i))
            .map(|i| BIT_NAMES[i])
            .collect();
        let text = names.join(",");
        f.write_str(if text.is_empty() { "none" } else { &text })
    }
}

/// The outcome of a [`check`] that did not refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// The driver advertises everything asked for.
    Supported(Features),
    /// The kernel cannot say (no `netdev` family: before 6.3); the attach itself will tell.
    Unknown,
}

#[derive(Debug, thiserror::Error)]
pub enum XdpFeatureError {
    #[error("generic netlink {op}: {source}")]
    Socket { op: &'static str, source: io::Error },
    #[error("generic netlink {request}: the kernel answered: {source}")]
    Kernel {
        request: &'static str,
        source: io::Error,
    },
    #[error("generic netlink {request}: malformed reply: {what}")]
    Malformed {
        request: &'static str,
        what: &'static str,
    },
    #[error("the kernel has no `netdev` generic netlink family (it predates Linux 6.3)")]
    NoFamily,
    #[error(
        "{interface}: its driver lacks {} for native XDP (it advertises: {features}); `--skb` \
         (generic mode) works without driver support, but slower: every packet becomes an skb",
        .missing.join(", ")
    )]
    Unsupported {
        interface: String,
        features: Features,
        missing: Vec<&'static str>,
    },
}

/// The XDP features interface `ifindex` of the current network namespace advertises now.
pub fn query(ifindex: u32) -> Result<Features, XdpFeatureError> {
    let mut genl = Genl::open()?;
    let name = (CTRL_ATTR_FAMILY_NAME, &b"netdev\0"[..]);
    let reply = genl.ask(GETFAMILY, CTRL_GETFAMILY, name, CTRL_ATTR_FAMILY_ID);
    let family = match reply {
        Err(XdpFeatureError::Kernel { source, .. })
            if source.raw_os_error() == Some(libc::ENOENT) =>
        {
            return Err(XdpFeatureError::NoFamily);
        }
        r => u16::from_ne_bytes(r?),
    };
    let dev = (NETDEV_A_DEV_IFINDEX, &ifindex.to_ne_bytes()[..]);
    let to = (family, NETDEV_CMD_DEV_GET);
    let bits = genl.ask(DEV_GET, to, dev, NETDEV_A_DEV_XDP_FEATURES)?;
    Ok(Features(u64::from_ne_bytes(bits)))
}

/// Refuses interface `name` (`ifindex`) if its driver lacks what `need` asks for in native
/// mode. A kernel too old to say is not a refusal: the caller logs [`Checked::Unknown`].
pub fn check(name: &str, ifindex: u32, need: Need) -> Result<Checked, XdpFeatureError> {
    let features = match query(ifindex) {
        Err(XdpFeatureError::NoFamily) => return Ok(Checked::Unknown),
        r => r?,
    };
    let missing = features.missing(need);
    if missing.is_empty() {
        return Ok(Checked::Supported(features));
    }
    Err(XdpFeatureError::Unsupported {
        interface: name.to_owned(),
        features,
        missing,
    })
}

/// The largest MTU whose frames fit one 4 KiB page after XDP's headroom and the skb
/// shared info (veth's limit without multi-buffer): above it frames are multi-buffer.
pub const SINGLE_BUFFER_MTU: u32 = 3498;

/// Why an interface cannot carry pl in generic (skb) mode, if it cannot: generic XDP runs
/// after GRO and LRO, so it would see merged packets up to 64 KiB whose checksums are only
/// seeded (CHECKSUM_PARTIAL), and pl's incremental NAT checksums would be wrong on the
/// wire; a merged packet redirected to a 1500-byte link is also dropped. Refused instead.
pub fn generic_mode_problem(name: &str) -> io::Result<Option<String>> {
    const ETHTOOL_GFLAGS: u32 = 0x25;
    const ETHTOOL_GGRO: u32 = 0x2b;
    const ETH_FLAG_LRO: u32 = 1 << 15;
    let gro = ethtool_value(name, ETHTOOL_GGRO)?;
    let lro = ethtool_value(name, ETHTOOL_GFLAGS)? & ETH_FLAG_LRO != 0;
    Ok(match (gro != 0, lro) {
        (false, false) => None,
        (gro, lro) => Some(format!(
            "{} on, and generic (skb) XDP sees the merged packets, whose checksums pl's NAT cannot update: turn it off (`ethtool -K {name} {}`) or run native XDP (without --skb)",
            match (gro, lro) {
                (true, true) => "generic-receive-offload and large-receive-offload are",
                (true, false) => "generic-receive-offload is",
                _ => "large-receive-offload is",
            },
            match (gro, lro) {
                (true, true) => "gro off lro off",
                (true, false) => "gro off",
                _ => "lro off",
            }
        )),
    })
}

/// One `struct ethtool_value` get (SIOCETHTOOL) for interface `name`.
fn ethtool_value(name: &str, cmd: u32) -> io::Result<u32> {
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    // SAFETY: plain socket(2); the fd is owned at once.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: raw is a fresh fd nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut value = EthtoolValue { cmd, data: 0 };
    // SAFETY: ifreq is plain data; zeroed is a valid start.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= req.ifr_name.len() {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    for (d, b) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = b as libc::c_char;
    }
    req.ifr_ifru.ifru_data = (&raw mut value).cast();
    // SAFETY: SIOCETHTOOL reads the command from and writes the answer into `value`,
    // which outlives the call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCETHTOOL, &raw mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value.data)
}

fn malformed(request: &'static str, what: &'static str) -> XdpFeatureError {
    XdpFeatureError::Malformed { request, what }
}

/// The errno a failed socket call just left, for step `op`.
fn os_error(op: &'static str) -> XdpFeatureError {
    XdpFeatureError::Socket {
        op,
        source: io::Error::last_os_error(),
    }
}

/// A generic netlink socket, one request at a time.
struct Genl {
    fd: OwnedFd,
    seq: u32,
}

impl Genl {
    fn open() -> Result<Self, XdpFeatureError> {
        let (domain, ty) = (libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC);
        // SAFETY: plain socket(2); the fd is owned at once. The kernel binds it on first send.
        let raw = unsafe { libc::socket(domain, ty, libc::NETLINK_GENERIC) };
        if raw < 0 {
            return Err(os_error("socket"));
        }
        // SAFETY: raw is a fresh, valid fd nothing else owns.
        Ok(Self {
            fd: unsafe { OwnedFd::from_raw_fd(raw) },
            seq: 0,
        })
    }

    /// Sends command `cmd` to `family` with one attribute; returns the answer's `N`-byte
    /// attribute `want`.
    fn ask<const N: usize>(
        &mut self,
        request: &'static str,
        (family, cmd): (u16, u8),
        (ty, value): (u16, &[u8]),
        want: u16,
    ) -> Result<[u8; N], XdpFeatureError> {
        self.seq += 1;
        let mut msg = header(family, self.seq, cmd);
        push_attr(&mut msg, ty, value);
        seal(&mut msg);
        // SAFETY: sockaddr_nl is plain data; zeroed (port 0) addresses the kernel.
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as u16;
        let fd = self.fd.as_raw_fd();
        let addr_len = size_of::<libc::sockaddr_nl>() as u32;
        // SAFETY: buffer and address are valid for the lengths given.
        let sent = unsafe {
            libc::sendto(
                fd,
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&raw const kernel).cast(),
                addr_len,
            )
        };
        if sent < 0 {
            return Err(os_error("send"));
        }
        // The kernel answers a generic netlink request inside sendto: the reply is queued.
        // A few hundred bytes; a page is what netlink itself suggests.
        let mut buf = vec![0u8; 8192];
        // SAFETY: buf is valid for its length; MSG_TRUNC makes the return the whole size.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_TRUNC) };
        let n = usize::try_from(n).map_err(|_| os_error("recv"))?;
        let reply = buf
            .get(..n)
            .ok_or(malformed(request, "larger than the buffer"))?;
        let attrs = reply_attrs(reply, self.seq, request)?;
        let value = find_attr(attrs, want).ok_or(malformed(request, "attribute missing"))?;
        value
            .try_into()
            .map_err(|_| malformed(request, "attribute size"))
    }
}

fn align4(len: usize) -> usize {
    (len + 3) & !3
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// nlmsghdr (length 0, set once the attributes are in) and genlmsghdr of a single request.
fn header(family: u16, seq: u32, cmd: u8) -> Vec<u8> {
    let mut m = 0u32.to_ne_bytes().to_vec();
    m.extend(family.to_ne_bytes());
    m.extend((libc::NLM_F_REQUEST as u16).to_ne_bytes());
    m.extend(seq.to_ne_bytes());
    m.extend(0u32.to_ne_bytes()); // port id: the kernel fills in ours
    m.extend([cmd, 1, 0, 0]); // version: netdev's is 1; the controller ignores it
    m
}

/// Writes a message's length into its header.
fn seal(m: &mut [u8]) {
    let len = m.len() as u32;
    m[..4].copy_from_slice(&len.to_ne_bytes());
}

/// Appends one attribute, padded to the 4-byte boundary the next one starts on.
fn push_attr(buf: &mut Vec<u8>, ty: u16, value: &[u8]) {
    buf.extend(((NLA_HDRLEN + value.len()) as u16).to_ne_bytes());
    buf.extend(ty.to_ne_bytes());
    buf.extend(value);
    buf.resize(align4(buf.len()), 0);
}

/// The attributes of the answer to `seq` in `buf`, or the errno of its NLMSG_ERROR.
fn reply_attrs<'a>(
    buf: &'a [u8],
    seq: u32,
    request: &'static str,
) -> Result<&'a [u8], XdpFeatureError> {
    let mut rest = buf;
    while let (Some(len), Some(ty)) = (u32_at(rest, 0), u16_at(rest, 4)) {
        let Some(msg) = rest.get(..len as usize).filter(|m| m.len() >= NLMSG_HDRLEN) else {
            return Err(malformed(request, "message length"));
        };
        rest = &rest[align4(msg.len()).min(rest.len())..];
        if u32_at(msg, 8) != Some(seq) {
            continue;
        }
        if i32::from(ty) == libc::NLMSG_ERROR {
            // struct nlmsgerr: a negative errno, then the request; 0 would be a bare ack.
            let error = u32_at(msg, NLMSG_HDRLEN).ok_or(malformed(request, "short error"))? as i32;
            if error >= 0 {
                return Err(malformed(request, "an acknowledgement, not an answer"));
            }
            let source = io::Error::from_raw_os_error(-error);
            return Err(XdpFeatureError::Kernel { request, source });
        }
        let attrs = msg.get(NLMSG_HDRLEN + GENL_HDRLEN..);
        return attrs.ok_or(malformed(request, "no generic netlink header"));
    }
    Err(malformed(request, "no answer to the request"))
}

/// The value of the first attribute of type `want`; `None` also for a truncated list.
fn find_attr(attrs: &[u8], want: u16) -> Option<&[u8]> {
    let mut rest = attrs;
    while rest.len() >= NLA_HDRLEN {
        let len = usize::from(u16_at(rest, 0)?);
        let value = rest.get(NLA_HDRLEN..len)?;
        if u16_at(rest, 2)? & libc::NLA_TYPE_MASK as u16 == want {
            return Some(value);
        }
        rest = &rest[align4(len).min(rest.len())..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message as the kernel lays one out: header with its length, then `body`.
    fn msg(ty: u16, seq: u32, body: &[u8]) -> Vec<u8> {
        let mut m = header(ty, seq, 1);
        // An NLMSG_ERROR carries no generic netlink header.
        m.truncate(if i32::from(ty) == libc::NLMSG_ERROR {
            NLMSG_HDRLEN
        } else {
            m.len()
        });
        m.extend(body);
        seal(&mut m);
        m
    }

    #[test]
    fn finds_the_features_after_padding() {
        let mut attrs = Vec::new();
        push_attr(&mut attrs, 7, b"abc"); // 7 bytes, padded to 8
        push_attr(&mut attrs, 2, &[]); // NETDEV_A_DEV_PAD, aligning the u64
        push_attr(
            &mut attrs,
            NETDEV_A_DEV_XDP_FEATURES,
            &0x27u64.to_ne_bytes(),
        );
        let buf = msg(30, 2, &attrs);
        let got = reply_attrs(&buf, 2, "t").expect("an answer");
        let want = 0x27u64.to_ne_bytes();
        assert_eq!(find_attr(got, NETDEV_A_DEV_XDP_FEATURES), Some(&want[..]));
        assert_eq!(find_attr(got, 7), Some(&b"abc"[..]));
        assert_eq!(find_attr(got, 9), None);
        assert_eq!(
            find_attr(&got[..got.len() - 1], NETDEV_A_DEV_XDP_FEATURES),
            None
        );
    }

    #[test]
    fn skips_other_sequence_numbers_and_reports_errno() {
        let mut err = (-libc::ENODEV).to_ne_bytes().to_vec();
        err.extend([0u8; NLMSG_HDRLEN]); // the echoed request header
        let buf = [msg(30, 1, &[]), msg(libc::NLMSG_ERROR as u16, 2, &err)].concat();
        match reply_attrs(&buf, 2, "t") {
            Err(XdpFeatureError::Kernel { source, .. }) => {
                assert_eq!(source.raw_os_error(), Some(libc::ENODEV));
            }
            other => panic!("expected ENODEV, got {other:?}"),
        }
        assert_eq!(reply_attrs(&buf, 1, "t").expect("seq 1").len(), 0);
        let no_answer = reply_attrs(&buf, 3, "t");
        assert!(matches!(no_answer, Err(XdpFeatureError::Malformed { .. })));
        let cut = reply_attrs(&buf[..30], 2, "t");
        assert!(
            matches!(cut, Err(XdpFeatureError::Malformed { .. })),
            "{cut:?}"
        );
    }

    #[test]
    fn missing_names_only_what_is_needed() {
        let veth_alone = Features(BASIC | REDIRECT | RX_SG);
        let both = Need {
            redirect: true,
            frags: true,
        };
        assert!(veth_alone.missing(Need::default()).is_empty());
        let targets = [
            "redirect target (ndo_xdp_xmit)",
            "multi-buffer redirect target (ndo_xdp_xmit sg)",
        ];
        assert_eq!(veth_alone.missing(both), targets);
        assert_eq!(Features(0).missing(both).len(), 5);
        assert_eq!(Features(0).missing(Need::default()), ["native XDP (basic)"]);
        assert_eq!(Features(0).to_string(), "none");
        assert_eq!(veth_alone.to_string(), "basic,redirect,rx-sg");
        let e = XdpFeatureError::Unsupported {
            interface: "fw-a".into(),
            features: veth_alone,
            missing: veth_alone.missing(both),
        };
        let text = e.to_string();
        assert!(text.starts_with("fw-a: its driver lacks redirect target (ndo_xdp_xmit), "));
        assert!(text.contains("advertises: basic,redirect,rx-sg") && text.contains("`--skb`"));
    }

    #[test]
    fn queries_lo_in_this_namespace() {
        // dev-get needs no privilege; lo is ifindex 1 in every namespace.
        match query(1) {
            Ok(f) => println!("lo: {f}"),
            Err(XdpFeatureError::NoFamily) => return println!("skipped: no netdev family"),
            Err(e) => panic!("querying lo: {e}"),
        }
        match query(u32::MAX) {
            Err(XdpFeatureError::Kernel { source, .. }) => {
                assert_eq!(source.raw_os_error(), Some(libc::ENODEV));
            }
            other => panic!("expected ENODEV for a missing ifindex, got {other:?}"),
        }
    }
}
