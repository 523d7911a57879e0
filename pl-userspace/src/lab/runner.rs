//! A `pl run` child process inside a network namespace, as a user starts it
//! (`ip netns exec NS pl run ...`): used by the demo, the tests and the bench.
//!
//! Dropping a [`PlRun`] stops the process (SIGTERM, then SIGKILL). Like any stop, that
//! leaves the data plane attached: [`PlRun::stop_and_down`] removes it, and so does
//! tearing the lab down.

use std::{
    io::Read,
    path::Path,
    process::{Child, Output, Stdio},
    time::{Duration, Instant},
};

use nix::{sys::signal::Signal, unistd::Pid};

use crate::{
    control::{self, ControlError},
    lab::netns::{self, NetnsError},
    stats::StatsReport,
};

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("starting `pl run` in {ns}: {source}")]
    Spawn { ns: String, source: std::io::Error },
    #[error("`pl run` in {ns} exited ({status}) before it was ready: {stderr}")]
    Exited {
        ns: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("`pl run` in {ns} did not answer on its control socket within {timeout:?}")]
    NotReady { ns: String, timeout: Duration },
    #[error("`pl run` in {ns} did not exit within {timeout:?} of {signal}")]
    Hung {
        ns: String,
        timeout: Duration,
        signal: Signal,
    },
    #[error("`pl run` in {ns}: {source}")]
    Io { ns: String, source: std::io::Error },
    #[error("`pl down` in {ns} failed: {stderr}")]
    Down { ns: String, stderr: String },
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Control(#[from] ControlError),
}

pub struct PlRun {
    child: Option<Child>,
    /// What it wrote to stdout and stderr so far: drained as it comes, so a busy log never
    /// fills the pipe and blocks `pl run`.
    stdout: Drain,
    stderr: Drain,
    pl: std::path::PathBuf,
    ns: String,
    instance: String,
}

/// A pipe read to its end by a thread of its own.
struct Drain(Option<std::thread::JoinHandle<Vec<u8>>>);

impl Drain {
    fn new(pipe: Option<impl Read + Send + 'static>) -> Self {
        Self(pipe.map(|mut p| {
            std::thread::spawn(move || {
                let mut out = Vec::new();
                let _ = p.read_to_end(&mut out);
                out
            })
        }))
    }

    /// Everything written, once the process has exited (its end of the pipe closed).
    fn collect(&mut self) -> Vec<u8> {
        self.0
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl PlRun {
    /// Starts `pl run ARGS` in namespace `ns` and waits until its control socket answers.
    pub fn start(pl: &Path, ns: &str, instance: &str, args: &[&str]) -> Result<Self, RunnerError> {
        let mut child = netns::exec(ns, pl)
            .arg("run")
            .args(["--instance", instance])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| RunnerError::Spawn {
                ns: ns.to_owned(),
                source,
            })?;
        let (stdout, stderr) = (
            Drain::new(child.stdout.take()),
            Drain::new(child.stderr.take()),
        );
        let mut run = Self {
            child: Some(child),
            stdout,
            stderr,
            pl: pl.to_owned(),
            ns: ns.to_owned(),
            instance: instance.to_owned(),
        };
        // The verifier checks three programs (IPv4's and the two IPv6 ones) before pl run
        // answers: 5 s idle on the 2-CPU VM, more when the machine is busy.
        run.wait_ready(Duration::from_secs(30))?;
        Ok(run)
    }

    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("child is present until stop")
    }

    fn exited(&mut self) -> Result<Option<std::process::ExitStatus>, RunnerError> {
        let ns = self.ns.clone();
        self.child()
            .try_wait()
            .map_err(|source| RunnerError::Io { ns, source })
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), RunnerError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited()? {
                let stderr = self.stderr.collect();
                return Err(RunnerError::Exited {
                    ns: self.ns.clone(),
                    status,
                    stderr: String::from_utf8_lossy(&stderr).trim().to_owned(),
                });
            }
            if self.stats().is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(RunnerError::NotReady {
                    ns: self.ns.clone(),
                    timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().map_or(0, |c| c.id() as i32))
    }

    /// The counters, asked over the control socket from inside the namespace.
    pub fn stats(&self) -> Result<StatsReport, RunnerError> {
        Ok(netns::run_in(&self.ns, || control::stats(&self.instance))??)
    }

    /// The counters without live-flow counts: cheap with a large flow table.
    pub fn counters(&self) -> Result<StatsReport, RunnerError> {
        Ok(netns::run_in(&self.ns, || {
            control::stats_with(&self.instance, false)
        })??)
    }

    /// Polls the counters until `done` holds or `timeout` passes; returns the last report.
    pub fn wait_for_stats(
        &self,
        timeout: Duration,
        done: impl Fn(&StatsReport) -> bool,
    ) -> Result<StatsReport, RunnerError> {
        let deadline = Instant::now() + timeout;
        loop {
            let report = self.stats()?;
            if done(&report) || Instant::now() >= deadline {
                return Ok(report);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` unless the process has already exited, then waits up to
    /// `timeout` for it to exit; true if it did.
    fn terminate(&mut self, signal: Signal, timeout: Duration) -> Result<bool, RunnerError> {
        // A reaped child's pid may belong to someone else by now: check before signalling.
        if self.exited()?.is_none() {
            let _ = nix::sys::signal::kill(self.pid(), signal);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if self.exited()?.is_some() {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` and waits for the process to exit; its status and output.
    pub fn stop_with(mut self, signal: Signal) -> Result<Output, RunnerError> {
        let timeout = Duration::from_secs(5);
        if !self.terminate(signal, timeout)? {
            return Err(RunnerError::Hung {
                ns: self.ns.clone(),
                timeout,
                signal,
            });
        }
        let mut child = self.child.take().expect("child is present until stop");
        let status = child.wait().map_err(|source| RunnerError::Io {
            ns: self.ns.clone(),
            source,
        })?;
        Ok(Output {
            status,
            stdout: self.stdout.collect(),
            stderr: self.stderr.collect(),
        })
    }

    /// SIGTERM, as an init system would stop it.
    pub fn stop(self) -> Result<Output, RunnerError> {
        self.stop_with(Signal::SIGTERM)
    }

    /// Stops the process, then removes the data plane it left (`pl down`).
    pub fn stop_and_down(self) -> Result<Output, RunnerError> {
        let (pl, ns, instance) = (self.pl.clone(), self.ns.clone(), self.instance.clone());
        let out = self.stop()?;
        down(&pl, &ns, &instance)?;
        Ok(out)
    }
}

impl Drop for PlRun {
    fn drop(&mut self) {
        if self.child.is_none() {
            return;
        }
        if !matches!(
            self.terminate(Signal::SIGTERM, Duration::from_secs(3)),
            Ok(true)
        ) && let Some(mut child) = self.child.take()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `pl down --instance INSTANCE` in namespace `ns`.
pub fn down(pl: &Path, ns: &str, instance: &str) -> Result<Output, RunnerError> {
    let out = netns::exec(ns, pl)
        .args(["down", "--instance", instance])
        .stdin(Stdio::null())
        .output()
        .map_err(|source| RunnerError::Io {
            ns: ns.to_owned(),
            source,
        })?;
    if !out.status.success() {
        return Err(RunnerError::Down {
            ns: ns.to_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(out)
}
