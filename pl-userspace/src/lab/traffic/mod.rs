//! Real traffic through the lab: the provider's servers (one per target address) and the
//! consumers' clients. Used by the demo and the end-to-end tests; every socket lives in a
//! lab namespace and every wait is bounded.
//!
//! TCP on the target port speaks one line: `WHO` answers `target=IP peer=ADDR:PORT`;
//! `SINK N` reads N bytes and answers their sha256 in hex; `SOURCE N` sends N bytes of
//! [`Stream`] and closes; `LATE MS` reads until the client
//! half-closes, waits MS milliseconds and answers `late`; an HTTP `GET` gets the `WHO`
//! answer as a page (for curl). UDP answers every datagram with
//! `target=IP peer=ADDR:PORT`, except `QUIET` (no answer) and `LATE MS` (`late`, MS
//! milliseconds later). Every peer a server sees is recorded.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use sha2::{Digest as _, Sha256};

use crate::lab::netns::{self, NetnsError};

mod servers;
pub use servers::Servers;

pub const TCP_PORT: u16 = 443;
pub const TCP_TARGET_PORT: u16 = 8443;
pub const UDP_PORT: u16 = 53;
pub const UDP_TARGET_PORT: u16 = 5353;
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server waits between the bytes of a `SINK` request.
const HOLD_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum TrafficError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{what}: unexpected answer {answer:?}")]
    Answer { what: String, answer: String },
    /// A DNS answer with an error code (NXDOMAIN, REFUSED...).
    #[error("{what}: {code}")]
    Rcode { what: String, code: String },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> TrafficError {
    let what = what.into();
    move |source| TrafficError::Io { what, source }
}

/// Runs the client `f` in namespace `ns`; its I/O errors say `what` it was doing.
fn in_ns<T: Send>(
    ns: &str,
    what: String,
    f: impl FnOnce() -> std::io::Result<T> + Send,
) -> Result<T, TrafficError> {
    netns::run_in(ns, f)?.map_err(io(what))
}

/// The addresses `server` (port 53, UDP) gives for `name`, asked from namespace `ns`:
/// A records, or AAAA with `v6`. An answer that is no NOERROR is an error naming its code.
pub fn resolve(
    ns: &str,
    server: IpAddr,
    name: &str,
    v6: bool,
    timeout: Duration,
) -> Result<Vec<IpAddr>, TrafficError> {
    use hickory_proto::{
        op::{Message, Query, ResponseCode},
        rr::{Name, RData, RecordType},
    };
    let what = format!("DNS {name} from {server} in {ns}");
    let ty = if v6 { RecordType::AAAA } else { RecordType::A };
    let mut q = Message::query();
    q.metadata.recursion_desired = true;
    let dns_name = Name::from_ascii(format!("{name}.")).map_err(|e| TrafficError::Answer {
        what: what.clone(),
        answer: e.to_string(),
    })?;
    q.add_query(Query::query(dns_name, ty));
    let bytes = q
        .to_vec()
        .map_err(|e| std::io::Error::other(e.to_string()))
        .map_err(io(&what))?;
    let reply = in_ns(ns, what.clone(), || {
        let local: SocketAddr = if server.is_ipv6() {
            "[::]:0".parse().map_err(std::io::Error::other)?
        } else {
            "0.0.0.0:0".parse().map_err(std::io::Error::other)?
        };
        let s = UdpSocket::bind(local)?;
        s.set_read_timeout(Some(timeout))?;
        s.send_to(&bytes, SocketAddr::new(server, UDP_PORT))?;
        let mut buf = [0u8; 1500];
        let n = s.recv(&mut buf)?;
        Ok(buf[..n].to_vec())
    })?;
    let r = Message::from_vec(&reply).map_err(|e| TrafficError::Answer {
        what: what.clone(),
        answer: e.to_string(),
    })?;
    if r.metadata.response_code != ResponseCode::NoError {
        return Err(TrafficError::Rcode {
            what,
            code: format!("{:?}", r.metadata.response_code).to_uppercase(),
        });
    }
    Ok(r.answers
        .iter()
        .filter_map(|a| match &a.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect())
}

/// The server's one-line answer on `s`, trimmed.
fn answer(s: impl std::io::Read) -> std::io::Result<String> {
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    Ok(line.trim().to_owned())
}

/// What a server saw: (target address, protocol, peer).
pub type Seen = Arc<Mutex<Vec<(IpAddr, &'static str, SocketAddr)>>>;

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A TCP connection from `src` (port `sport`, 0 for any) in namespace `ns` to `dst`,
/// asking WHO: the server's answer.
pub fn tcp_who(
    ns: &str,
    src: impl Into<IpAddr>,
    sport: u16,
    dst: impl Into<SocketAddr>,
    timeout: Duration,
) -> Result<String, TrafficError> {
    let (src, dst) = (src.into(), dst.into());
    let what = format!("TCP {src} -> {dst} in {ns}");
    in_ns(ns, what, || {
        let s = connect(src, sport, dst, timeout)?;
        let mut w = s.try_clone()?;
        w.write_all(b"WHO\n")?;
        answer(s)
    })
}

fn connect(
    src: IpAddr,
    sport: u16,
    dst: SocketAddr,
    timeout: Duration,
) -> std::io::Result<TcpStream> {
    use std::os::fd::{FromRawFd as _, IntoRawFd as _};
    let family = match src {
        IpAddr::V4(_) => nix::sys::socket::AddressFamily::Inet,
        IpAddr::V6(_) => nix::sys::socket::AddressFamily::Inet6,
    };
    let sock = nix::sys::socket::socket(
        family,
        nix::sys::socket::SockType::Stream,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::ReuseAddr, &true)?;
    nix::sys::socket::bind(
        std::os::fd::AsRawFd::as_raw_fd(&sock),
        &nix::sys::socket::SockaddrStorage::from(SocketAddr::new(src, sport)),
    )?;
    // SAFETY: a fresh, bound, unconnected TCP socket we own.
    let std_sock = unsafe { TcpStream::from_raw_fd(sock.into_raw_fd()) };
    // std has no connect-with-timeout for a bound socket: connect non-blocking and poll.
    std_sock.set_nonblocking(true)?;
    let addr = nix::sys::socket::SockaddrStorage::from(dst);
    match nix::sys::socket::connect(std::os::fd::AsRawFd::as_raw_fd(&std_sock), &addr) {
        Ok(()) | Err(nix::errno::Errno::EINPROGRESS) => {}
        Err(e) => return Err(e.into()),
    }
    let mut fds = [nix::poll::PollFd::new(
        std::os::fd::AsFd::as_fd(&std_sock),
        nix::poll::PollFlags::POLLOUT,
    )];
    let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
    if nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms))? == 0 {
        return Err(std::io::ErrorKind::TimedOut.into());
    }
    if let Some(e) = std_sock.take_error()? {
        return Err(e);
    }
    std_sock.set_nonblocking(false)?;
    std_sock.set_read_timeout(Some(IO_TIMEOUT))?;
    std_sock.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(std_sock)
}

/// What a held connection's request carries in all, and sends at once.
const HOLD_LEN: usize = 1_000_000;
const HOLD_FIRST: &[u8] = b"hello";

/// An established TCP connection to `dst`, left open: it has sent a `SINK` request and a
/// few bytes, so the server waits for more. Drop it to close.
pub fn tcp_hold(
    ns: &str,
    src: impl Into<IpAddr>,
    dst: impl Into<SocketAddr>,
) -> Result<TcpStream, TrafficError> {
    tcp_hold_from(ns, src, 0, dst)
}

/// As [`tcp_hold`], from source port `sport` (0: any).
pub fn tcp_hold_from(
    ns: &str,
    src: impl Into<IpAddr>,
    sport: u16,
    dst: impl Into<SocketAddr>,
) -> Result<TcpStream, TrafficError> {
    let (src, dst) = (src.into(), dst.into());
    let what = format!("TCP {src}:{sport} -> {dst} in {ns}");
    in_ns(ns, what, || {
        let mut s = connect(src, sport, dst, Duration::from_secs(3))?;
        writeln!(s, "SINK {HOLD_LEN}")?;
        s.write_all(HOLD_FIRST)?;
        Ok(s)
    })
}

/// Finishes the request a [`tcp_hold`] connection started: sends the rest of its bytes and
/// reads the answer (the sha256 the server computed).
pub fn finish_hold(s: &mut TcpStream) -> std::io::Result<String> {
    s.write_all(&vec![b'x'; HOLD_LEN - HOLD_FIRST.len()])?;
    answer(s)
}

/// A TCP request that half-closes: `LATE ms`, then FIN; the server answers `ms` later on
/// the half-closed connection. The answer.
pub fn tcp_half_closed(
    ns: &str,
    src: Ipv4Addr,
    dst: SocketAddrV4,
    ms: u64,
) -> Result<String, TrafficError> {
    let what = format!("TCP {src} -> {dst} in {ns}, half-closed");
    in_ns(ns, what, || {
        let mut s = connect(src.into(), 0, dst.into(), Duration::from_secs(3))?;
        writeln!(s, "LATE {ms}")?;
        s.shutdown(std::net::Shutdown::Write)?;
        answer(s)
    })
}

/// A UDP flow from `src:sport` to `dst` whose target goes quiet: one answered datagram,
/// then `LATE ms`, then a datagram the server leaves unanswered every 200 ms until the
/// late answer comes (or `ms` + 3 s pass). The late answer.
pub fn udp_silent_target(
    ns: &str,
    src: Ipv4Addr,
    sport: u16,
    dst: SocketAddrV4,
    ms: u64,
) -> Result<String, TrafficError> {
    let what = format!("UDP {src}:{sport} -> {dst} in {ns}, target quiet for {ms} ms");
    in_ns(ns, what, || {
        let u = UdpSocket::bind((src, sport))?;
        u.connect(dst)?;
        u.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut buf = [0u8; 512];
        u.send(b"WHO")?;
        u.recv(&mut buf)?;
        u.send(format!("LATE {ms}").as_bytes())?;
        u.set_read_timeout(Some(Duration::from_millis(200)))?;
        let deadline = std::time::Instant::now() + Duration::from_millis(ms + 3000);
        while std::time::Instant::now() < deadline {
            if let Ok(n) = u.recv(&mut buf) {
                return Ok(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
            u.send(b"QUIET")?;
        }
        Err(std::io::ErrorKind::TimedOut.into())
    })
}

/// One UDP datagram from `src:sport` in `ns` to `dst`: the answer.
pub fn udp_who(
    ns: &str,
    src: impl Into<IpAddr>,
    sport: u16,
    dst: impl Into<SocketAddr>,
    timeout: Duration,
) -> Result<String, TrafficError> {
    let (src, dst) = (src.into(), dst.into());
    let what = format!("UDP {src} -> {dst} in {ns}");
    in_ns(ns, what, || {
        let u = UdpSocket::bind((src, sport))?;
        u.set_read_timeout(Some(timeout))?;
        u.send_to(b"WHO", dst)?;
        let mut buf = [0u8; 512];
        let (n, _) = u.recv_from(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    })
}

/// A connection for a long transfer: `request` sent, a minute allowed for each read and
/// write.
fn transfer(src: IpAddr, dst: SocketAddr, request: &str) -> std::io::Result<TcpStream> {
    let mut s = connect(src, 0, dst, Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    s.set_write_timeout(Some(Duration::from_secs(60)))?;
    writeln!(s, "{request}")?;
    Ok(s)
}

/// Streams `len` pseudo-random bytes over TCP to `dst` and returns (sha256 sent, sha256
/// the server computed).
pub fn tcp_sink(
    ns: &str,
    src: impl Into<IpAddr>,
    dst: impl Into<SocketAddr>,
    len: u64,
) -> Result<(String, String), TrafficError> {
    let (src, dst) = (src.into(), dst.into());
    let what = format!("TCP transfer {src} -> {dst} in {ns}");
    in_ns(ns, what, || {
        let mut s = transfer(src, dst, &format!("SINK {len}"))?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut stream = Stream::default();
        let mut left = len;
        while left > 0 {
            let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            stream.fill(&mut buf[..n]);
            s.write_all(&buf[..n])?;
            h.update(&buf[..n]);
            left -= n as u64;
        }
        Ok((hex(&h.finalize()), answer(s)?))
    })
}

/// Asks the target behind `dst` for `len` bytes (`SOURCE`): the sha256 of what the stream
/// should be and of what arrived.
pub fn tcp_source(
    ns: &str,
    src: impl Into<IpAddr>,
    dst: impl Into<SocketAddr>,
    len: u64,
) -> Result<(String, String), TrafficError> {
    let (src, dst) = (src.into(), dst.into());
    let what = format!("TCP transfer {dst} -> {src} in {ns}");
    in_ns(ns, what, || {
        let mut s = transfer(src, dst, &format!("SOURCE {len}"))?;
        let (mut want, mut got) = (Sha256::new(), Sha256::new());
        let mut stream = Stream::default();
        let (mut buf, mut expect) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
        let mut left = len;
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                break;
            }
            got.update(&buf[..n]);
            let m = n.min(usize::try_from(left).unwrap_or(usize::MAX));
            stream.fill(&mut expect[..m]);
            want.update(&expect[..m]);
            left -= m as u64;
        }
        // Short: the rest of the stream still counts toward what was wanted.
        while left > 0 {
            let m = expect
                .len()
                .min(usize::try_from(left).unwrap_or(usize::MAX));
            stream.fill(&mut expect[..m]);
            want.update(&expect[..m]);
            left -= m as u64;
        }
        Ok((hex(&want.finalize()), hex(&got.finalize())))
    })
}

/// Sends a `size`-byte UDP datagram with DF (path MTU discovery on) from `src` to `dst`
/// and waits up to 2 s for the kernel to learn a smaller path MTU from an ICMP
/// fragmentation needed: the socket's `IP_MTU` then.
pub fn udp_pmtu(
    ns: &str,
    src: Ipv4Addr,
    dst: SocketAddrV4,
    size: usize,
) -> Result<u32, TrafficError> {
    use std::os::fd::AsRawFd as _;
    let what = format!("UDP path MTU {src} -> {dst} in {ns}");
    in_ns(ns, what, || {
        let u = UdpSocket::bind((src, 0))?;
        u.connect(dst)?;
        let fd = u.as_raw_fd();
        let opt = |name: libc::c_int, v: libc::c_int| -> std::io::Result<()> {
            // SAFETY: an int option on a socket we own.
            let r = unsafe {
                libc::setsockopt(
                    fd,
                    libc::IPPROTO_IP,
                    name,
                    (&raw const v).cast(),
                    size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if r < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        };
        opt(libc::IP_MTU_DISCOVER, libc::IP_PMTUDISC_DO)?;
        let mtu = || -> std::io::Result<u32> {
            let mut v: libc::c_int = 0;
            let mut len = size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: IP_MTU writes one int into `v`.
            let r = unsafe {
                libc::getsockopt(
                    fd,
                    libc::IPPROTO_IP,
                    libc::IP_MTU,
                    (&raw mut v).cast(),
                    &raw mut len,
                )
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(u32::try_from(v).unwrap_or(0))
        };
        let first = mtu()?;
        // Sent whole: the local link (jumbo) carries it.
        u.send(&vec![0x5a; size])?;
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while std::time::Instant::now() < deadline {
            let now = mtu()?;
            if now < first {
                return Ok(now);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        mtu()
    })
}

/// The bytes bulk transfers carry: xorshift64, so neither side stores them.
pub struct Stream {
    x: u64,
    word: [u8; 8],
    /// Bytes of `word` handed out (a fill may end mid-word).
    pos: usize,
}

impl Default for Stream {
    fn default() -> Self {
        Self {
            x: 0x9e37_79b9_7f4a_7c15,
            word: [0; 8],
            pos: 8,
        }
    }
}

impl Stream {
    fn next(&mut self) {
        self.x ^= self.x << 13;
        self.x ^= self.x >> 7;
        self.x ^= self.x << 17;
        self.word = self.x.to_le_bytes();
        self.pos = 0;
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut at = 0;
        while self.pos < 8 && at < buf.len() {
            buf[at] = self.word[self.pos];
            self.pos += 1;
            at += 1;
        }
        let mut chunks = buf[at..].chunks_exact_mut(8);
        for c in &mut chunks {
            self.next();
            c.copy_from_slice(&self.word);
            self.pos = 8;
        }
        for b in chunks.into_remainder() {
            if self.pos == 8 {
                self.next();
            }
            *b = self.word[self.pos];
            self.pos += 1;
        }
    }
}

/// A TCP flood from namespace `ns` out of `iface` (frames to `dst_mac`): segments with
/// `flags` (SYN, bare ACK, ...) to `dst`, each from a new (source address in 10.0.1.0/24,
/// source port) tuple, until `stop` is set or `limit` frames went out. Returns how many
/// went out.
pub fn tcp_flood(
    ns: &str,
    iface: &str,
    (src_mac, dst_mac): (crate::frame::Mac, crate::frame::Mac),
    dst: SocketAddrV4,
    flags: u8,
    (limit, stop): (u64, &AtomicBool),
) -> Result<u64, TrafficError> {
    use crate::frame::{Ipv4, ipv4_frame};
    let what = format!("TCP flood (flags {flags:#04x}) to {dst} from {ns}");
    in_ns(ns, what, || {
        let ifindex = nix::net::if_::if_nametoindex(iface).map_err(std::io::Error::from)?;
        let sender = crate::neigh::RawSender::open(ifindex)?;
        let mut sent = 0u64;
        while sent < limit && !stop.load(Ordering::Relaxed) {
            let (host, port) = ((sent % 250) as u8 + 1, 1024 + (sent / 250 % 60000) as u16);
            let ip = Ipv4::new([10, 0, 1, host], dst.ip().octets());
            let f = ipv4_frame(
                dst_mac,
                src_mac,
                &ip.tcp(port, dst.port(), 1, 0, flags, &[]),
            );
            // A full queue drops a frame: a flood does not retry.
            let _ = sender.send(&f, pl_common::proto::ETH_P_IP);
            sent += 1;
        }
        Ok(sent)
    })
}

#[cfg(test)]
mod tests {
    use super::Stream;

    #[test]
    fn a_stream_is_the_same_however_it_is_cut() {
        let mut whole = vec![0u8; 1000];
        Stream::default().fill(&mut whole);
        let mut cut = vec![0u8; 1000];
        let mut s = Stream::default();
        for part in cut.chunks_mut(13) {
            s.fill(part);
        }
        assert_eq!(whole, cut);
        assert_ne!(whole[..8], whole[8..16], "the stream moves on");
    }
}
