//! Network namespaces by name (`ip netns`, i.e. `/run/netns/NAME`).

use std::{fs::File, path::PathBuf, process::Command};

use nix::sched::{CloneFlags, setns};

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("network namespace {name}: cannot open {path}: {source}")]
    Open {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("network namespace {name}: setns failed: {source} (needs root)")]
    Enter { name: String, source: nix::Error },
    #[error("network namespace {name}: the thread running in it panicked")]
    Panicked { name: String },
}

pub fn path(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

pub fn exists(name: &str) -> bool {
    path(name).exists()
}

/// Runs `f` on a thread that has entered namespace `name`. Sockets `f` creates stay in
/// that namespace, so traffic can be driven from one process into many namespaces.
pub fn run_in<F, R>(name: &str, f: F) -> Result<R, NetnsError>
where
    F: FnOnce() -> R + Send,
    R: Send,
{
    let p = path(name);
    let ns = File::open(&p).map_err(|source| NetnsError::Open {
        name: name.to_owned(),
        path: p,
        source,
    })?;
    std::thread::scope(|s| {
        s.spawn(|| {
            setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Enter {
                name: name.to_owned(),
                source,
            })?;
            Ok(f())
        })
        .join()
        .map_err(|_| NetnsError::Panicked {
            name: name.to_owned(),
        })?
    })
}

/// `ip netns exec NAME PROGRAM`: a command that runs `program` inside namespace `name`.
pub fn exec(name: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", name]).arg(program);
    cmd
}
