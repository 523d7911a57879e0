//! The provider's servers: a TCP and a UDP server on each target address, speaking the
//! protocol the module above describes.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use sha2::{Digest as _, Sha256};

use super::{
    HOLD_TIMEOUT, IO_TIMEOUT, Seen, Stream, TCP_TARGET_PORT, TrafficError, UDP_TARGET_PORT, hex, io,
};
use crate::lab::netns;

/// The provider's servers; stopped and joined on drop.
pub struct Servers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    pub seen: Seen,
}

impl Servers {
    /// Starts a TCP and a UDP server on each of `targets` (IPv4 or IPv6) inside namespace
    /// `ns`.
    pub fn start<T: Into<IpAddr> + Copy>(ns: &str, targets: &[T]) -> Result<Self, TrafficError> {
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Seen = Arc::default();
        let mut threads = Vec::new();
        for ip in targets {
            let ip: IpAddr = (*ip).into();
            let (tcp, udp) = netns::run_in(ns, || -> std::io::Result<_> {
                let tcp = TcpListener::bind((ip, TCP_TARGET_PORT))?;
                tcp.set_nonblocking(true)?;
                let udp = UdpSocket::bind((ip, UDP_TARGET_PORT))?;
                udp.set_read_timeout(Some(Duration::from_millis(50)))?;
                Ok((tcp, udp))
            })?
            .map_err(io(format!("binding servers on {ip}")))?;
            let (s, seen_t) = (stop.clone(), seen.clone());
            threads.push(std::thread::spawn(move || serve_tcp(&tcp, ip, &s, &seen_t)));
            let (s, seen_u) = (stop.clone(), seen.clone());
            threads.push(std::thread::spawn(move || serve_udp(&udp, ip, &s, &seen_u)));
        }
        Ok(Self {
            stop,
            threads,
            seen,
        })
    }

    pub fn seen(&self) -> Vec<(IpAddr, &'static str, SocketAddr)> {
        self.seen.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn serve_tcp(l: &TcpListener, ip: IpAddr, stop: &AtomicBool, seen: &Seen) {
    let mut conns = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match l.accept() {
            Ok((s, peer)) => {
                if let Ok(mut v) = seen.lock() {
                    v.push((ip, "tcp", peer));
                }
                conns.push(std::thread::spawn(move || {
                    let _ = handle_tcp(s, ip, peer);
                }));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    for c in conns {
        let _ = c.join();
    }
}

fn handle_tcp(s: TcpStream, ip: IpAddr, peer: SocketAddr) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut r = BufReader::new(s.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut w = s;
    match line.trim().split_once(' ') {
        Some(("SINK", n)) => {
            // A held request may wait out a long test step (a flood, a reload, a restart).
            w.set_read_timeout(Some(HOLD_TIMEOUT))?;
            let mut left: u64 = n.parse().unwrap_or(0);
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 64 * 1024];
            while left > 0 {
                let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let got = r.read(&mut buf[..want])?;
                if got == 0 {
                    break;
                }
                h.update(&buf[..got]);
                left -= got as u64;
            }
            writeln!(w, "{}", hex(&h.finalize()))
        }
        Some(("SOURCE", n)) => {
            let mut left: u64 = n.parse().unwrap_or(0);
            let mut stream = Stream::default();
            let mut buf = vec![0u8; 64 * 1024];
            while left > 0 {
                let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                stream.fill(&mut buf[..n]);
                w.write_all(&buf[..n])?;
                left -= n as u64;
            }
            Ok(())
        }
        Some(("LATE", ms)) => {
            // Until the client's FIN, then the answer after a pause.
            std::io::copy(&mut r, &mut std::io::sink())?;
            std::thread::sleep(Duration::from_millis(ms.parse().unwrap_or(0)));
            writeln!(w, "late")
        }
        Some(("GET", _)) => {
            // An HTTP client (`curl` in the quick start): the same answer, as a page.
            let mut header = String::new();
            while r.read_line(&mut header)? > 2 {
                header.clear();
            }
            let body = format!("target={ip} peer={peer}\n");
            write!(
                w,
                "HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
        }
        _ => writeln!(w, "target={ip} peer={peer}"),
    }
}

fn serve_udp(u: &UdpSocket, ip: IpAddr, stop: &AtomicBool, seen: &Seen) {
    let mut buf = [0u8; 2048];
    let mut late = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        if let Ok((n, peer)) = u.recv_from(&mut buf) {
            if let Ok(mut v) = seen.lock() {
                v.push((ip, "udp", peer));
            }
            let text = String::from_utf8_lossy(&buf[..n]);
            if text == "QUIET" {
                continue;
            }
            if let Some(ms) = text.strip_prefix("LATE ").and_then(|m| m.parse().ok())
                && let Ok(u) = u.try_clone()
            {
                late.push(std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(ms));
                    let _ = u.send_to(b"late", peer);
                }));
                continue;
            }
            let _ = u.send_to(format!("target={ip} peer={peer}").as_bytes(), peer);
        }
    }
    for t in late {
        let _ = t.join();
    }
}
