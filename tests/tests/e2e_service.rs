//! `pl run` under systemd's notify protocol, with a fake `$NOTIFY_SOCKET` bound here:
//! READY=1 comes only once the control socket answers; a reload (`pl reload`, a refused
//! one, SIGHUP) is RELOADING=1 with the time, then READY=1; SIGTERM is STOPPING=1 and
//! leaves the data plane attached.

use std::{
    os::unix::net::UnixDatagram,
    path::PathBuf,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use nix::{sys::signal::Signal, unistd::Pid};
use pl_tests::{TestLab, chain, pl_bin, require_kernel, stderr};
use pl_userspace::lab::{LAB_CONFIG, netns};

/// The notify socket, a file (an abstract name would not reach another network
/// namespace), removed on drop.
struct FakeSystemd {
    sock: UnixDatagram,
    path: PathBuf,
}

impl FakeSystemd {
    fn bind(tag: &str) -> Self {
        let path = std::env::temp_dir().join(format!("pl-notify-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let sock =
            UnixDatagram::bind(&path).unwrap_or_else(|e| panic!("binding {}: {e}", path.display()));
        sock.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("read timeout");
        Self { sock, path }
    }

    /// The next notification, as its `KEY=VALUE` lines.
    fn next(&self) -> Vec<String> {
        let mut buf = [0u8; 4096];
        let n = self
            .sock
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no notification within 20 s: {e}"));
        String::from_utf8_lossy(&buf[..n])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Nothing more arrives within a short while.
    fn quiet(&self) {
        self.sock.set_nonblocking(true).expect("nonblocking");
        std::thread::sleep(Duration::from_millis(200));
        let mut buf = [0u8; 4096];
        let got = self.sock.recv(&mut buf);
        self.sock.set_nonblocking(false).expect("blocking");
        if let Ok(n) = got {
            panic!(
                "unexpected notification: {:?}",
                String::from_utf8_lossy(&buf[..n])
            );
        }
    }
}

impl Drop for FakeSystemd {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `pl run` as systemd would start it, stopped (SIGKILL) if the test ends early.
struct Service(Option<Child>);

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn monotonic_usec() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("clock");
    t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1_000
}

fn has(msg: &[String], line: &str) -> bool {
    msg.iter().any(|l| l == line)
}

fn status(msg: &[String]) -> &str {
    msg.iter()
        .find_map(|l| l.strip_prefix("STATUS="))
        .unwrap_or_else(|| panic!("no STATUS in {msg:?}"))
}

/// A reload, however asked for, is RELOADING=1 with a MONOTONIC_USEC taken during it,
/// then READY=1; the STATUS of the second is returned.
fn expect_reload(systemd: &FakeSystemd, reload: impl FnOnce()) -> String {
    let before = monotonic_usec();
    reload();
    let msg = systemd.next();
    // Taken after the message came: a SIGHUP's reload runs after kill() returns.
    let after = monotonic_usec();
    assert!(has(&msg, "RELOADING=1"), "not RELOADING first: {msg:?}");
    let usec: u64 = msg
        .iter()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC: {msg:?}"))
        .parse()
        .expect("MONOTONIC_USEC is a number");
    assert!(
        (before..=after).contains(&usec),
        "MONOTONIC_USEC {usec} is not the reload's time ({before}..{after})"
    );
    let msg = systemd.next();
    assert!(
        has(&msg, "READY=1"),
        "a reload did not end in READY: {msg:?}"
    );
    status(&msg).to_owned()
}

#[test]
fn pl_run_tells_systemd_ready_reloading_and_stopping() {
    require_kernel!("pl_run_tells_systemd_ready_reloading_and_stopping");
    let lab = TestLab::up("sd");
    let fw = lab.fw_ns();
    let config = lab
        .lab
        .write_config(&LAB_CONFIG.replace("10.9.0.12", "10.9.0.13"))
        .unwrap_or_else(|e| panic!("{}", chain(e)));
    let systemd = FakeSystemd::bind("sd");
    // Target 10.9.0.13 is no host of the lab: it never answers ARP, so start-up waits its
    // full 3 s for it, and a READY sent early would come seconds before the socket answers.
    let child = netns::exec(&fw, pl_bin())
        .args(["run", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &systemd.path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting pl run: {e}"));
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    let mut service = Service(Some(child));

    let ready = systemd.next();
    assert!(has(&ready, "READY=1"), "first notification: {ready:?}");
    // The control socket is bound before anything is attached, so a request sent during
    // start-up waits for an answer: it must come at once once READY is out.
    let asked = Instant::now();
    let out = lab.pl(&fw, &["stats", "--json"]);
    let took = asked.elapsed();
    assert!(
        out.status.success() && !stderr(&out).contains("no pl run"),
        "READY=1 came before the control socket answered: {}",
        stderr(&out)
    );
    assert!(
        took < Duration::from_millis(1500),
        "pl stats right after READY=1 took {took:?}: READY came before pl run was up"
    );
    for iface in lab.topo.fw_ifaces() {
        assert!(
            lab.xdp_attached(&iface),
            "READY=1 before {iface} was attached"
        );
    }
    let up = status(&ready);
    assert!(
        up.contains("fw-acme") && up.contains("@pl.default"),
        "STATUS does not say where it runs: {up}"
    );

    let s = expect_reload(&systemd, || {
        let out = lab.pl(&fw, &["reload"]);
        assert!(out.status.success(), "pl reload: {}", stderr(&out));
    });
    assert!(s.starts_with("reloaded"), "{s}");
    let bad = std::env::temp_dir().join(format!("pl-notify-bad-{}.toml", std::process::id()));
    std::fs::write(&bad, "not toml\n").expect("write bad config");
    let s = expect_reload(&systemd, || {
        let out = lab.pl(&fw, &["reload", "--config", &bad.to_string_lossy()]);
        assert!(!out.status.success(), "a bad config was reloaded");
    });
    let _ = std::fs::remove_file(&bad);
    assert!(s.contains("refused"), "a refused reload's STATUS: {s}");
    // SIGHUP: the notification is the only sign the reload ran.
    let s = expect_reload(&systemd, || {
        nix::sys::signal::kill(pid, Signal::SIGHUP).expect("SIGHUP");
    });
    assert!(s.starts_with("reloaded"), "{s}");
    systemd.quiet();

    nix::sys::signal::kill(pid, Signal::SIGTERM).expect("SIGTERM");
    let msg = systemd.next();
    assert!(
        has(&msg, "STOPPING=1"),
        "SIGTERM did not say STOPPING: {msg:?}"
    );
    let mut child = service.0.take().expect("child");
    let exited = child.wait().expect("wait for pl run");
    assert!(exited.success(), "pl run exited {exited}");
    for iface in lab.topo.fw_ifaces() {
        assert!(
            lab.xdp_attached(&iface),
            "{iface} lost its program when the service stopped"
        );
    }
    lab.pl_down("default");
}

/// With `WatchdogSec=` (here `WATCHDOG_USEC` = 0.4 s), the run loop says WATCHDOG=1 every
/// half of it after READY; with `WATCHDOG_PID` naming another process, it says nothing.
#[test]
fn pl_run_keeps_systemds_watchdog_fed_from_its_loop() {
    require_kernel!("pl_run_keeps_systemds_watchdog_fed_from_its_loop");
    let lab = TestLab::up("wd");
    let fw = lab.fw_ns();
    let config = lab
        .lab
        .write_config(LAB_CONFIG)
        .unwrap_or_else(|e| panic!("{}", chain(e)));
    for (for_pid, fed) in [(None, true), (Some("1"), false)] {
        let systemd = FakeSystemd::bind("wd");
        let mut cmd = netns::exec(&fw, pl_bin());
        cmd.args(["run", "--config"])
            .arg(&config)
            .env("NOTIFY_SOCKET", &systemd.path)
            .env("WATCHDOG_USEC", "400000")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(p) = for_pid {
            cmd.env("WATCHDOG_PID", p);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting pl run: {e}"));
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid"));
        let mut service = Service(Some(child));
        assert!(has(&systemd.next(), "READY=1"), "no READY first");
        if fed {
            let start = Instant::now();
            for _ in 0..3 {
                let msg = systemd.next();
                assert_eq!(msg, ["WATCHDOG=1"], "between keep-alives");
            }
            assert!(
                start.elapsed() < Duration::from_millis(1500),
                "three keep-alives took {:?} (due every 200 ms)",
                start.elapsed()
            );
        } else {
            std::thread::sleep(Duration::from_millis(500));
            systemd.quiet();
        }
        nix::sys::signal::kill(pid, Signal::SIGTERM).expect("SIGTERM");
        let mut child = service.0.take().expect("child");
        let _ = child.wait();
    }
    lab.pl_down("default");
}
