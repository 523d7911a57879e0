//! Exit statuses: one per kind of failure a script may act on, found by looking down the
//! error's chain. README "Exit codes" is the table users read; keep the two the same.

use pl_userspace::{
    config::{ConfigError, ConfigErrors},
    control::ControlError,
    dataplane::DataplaneError,
    state::StateError,
};

/// What `pl` exits with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Ok,
    /// The operation failed (anything not below).
    Failed,
    /// Bad command line: clap's own status for usage errors, and a bad `--instance` name.
    Usage,
    /// No `pl run` of the instance is active in this network namespace.
    NoDaemon,
    /// The config is invalid or unreadable: `pl check`, and `pl run`/`pl reload` refusing it.
    Config,
    /// Permission denied: not allowed by `pl run`, or EPERM/EACCES from the kernel
    /// (loading BPF, pins, state) as a user without the privileges.
    Denied,
    /// `pl status`'s own answers, as `cilium status` gives them: degraded (1) and no
    /// daemon (2).
    Status(u8),
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::Failed => 1,
            Self::Usage => 2,
            Self::NoDaemon => 3,
            Self::Config => 4,
            Self::Denied => 5,
            Self::Status(c) => c,
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        Self::from(e.code())
    }
}

/// An error already printed by its command (`pl check`): main only exits with its status.
#[derive(Debug, thiserror::Error)]
#[error("exit status {}", .0.code())]
pub struct Reported(pub Exit);

/// The status for `e`: the first link of its chain that says which kind it is.
pub fn classify(e: &anyhow::Error) -> Exit {
    e.chain().find_map(kind_of).unwrap_or(Exit::Failed)
}

fn kind_of(e: &(dyn std::error::Error + 'static)) -> Option<Exit> {
    if let Some(Reported(exit)) = e.downcast_ref() {
        return Some(*exit);
    }
    if e.is::<ConfigErrors>() || e.is::<ConfigError>() {
        return Some(Exit::Config);
    }
    if let Some(c) = e.downcast_ref::<ControlError>() {
        return match c {
            ControlError::NotRunning { .. } => Some(Exit::NoDaemon),
            ControlError::InvalidConfig { .. } => Some(Exit::Config),
            ControlError::Denied { .. } => Some(Exit::Denied),
            ControlError::BadInstance(_) => Some(Exit::Usage),
            // Io: a denied connect is found by its errno below.
            _ => None,
        };
    }
    // A StateError inside a DataplaneError is transparent: not a link of its own.
    if let Some(
        DataplaneError::Permission { .. } | DataplaneError::State(StateError::Permission { .. }),
    ) = e.downcast_ref()
    {
        return Some(Exit::Denied);
    }
    if let Some(StateError::Permission { .. }) = e.downcast_ref() {
        return Some(Exit::Denied);
    }
    if let Some(io) = e.downcast_ref::<std::io::Error>()
        && matches!(io.raw_os_error(), Some(libc::EPERM | libc::EACCES))
    {
        return Some(Exit::Denied);
    }
    if let Some(errno) = e.downcast_ref::<nix::errno::Errno>()
        && matches!(errno, nix::errno::Errno::EPERM | nix::errno::Errno::EACCES)
    {
        return Some(Exit::Denied);
    }
    None
}

/// Prints `e` to stderr: each error of an invalid config on a line of its own.
pub fn report(e: &anyhow::Error, json: bool) {
    if e.is::<Reported>() {
        return;
    }
    // A log collector reading JSON lines gets the failure as one more JSON line.
    let say = |line: &str| {
        if json {
            tracing::error!("{line}");
        } else {
            eprintln!("pl: error: {line}");
        }
    };
    let text = format!("{e:#}");
    let per_line = e.chain().any(|c| {
        c.is::<ConfigErrors>()
            || matches!(c.downcast_ref(), Some(ControlError::InvalidConfig { .. }))
    });
    if per_line {
        text.lines().for_each(say);
    } else {
        say(&text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_failure_has_its_status() {
        let config = ConfigErrors(vec![]);
        let cases: Vec<(anyhow::Error, Exit)> = vec![
            (anyhow::Error::new(config).context("reading"), Exit::Config),
            (
                ControlError::NotRunning {
                    instance: "x".into(),
                    name: "pl.x".into(),
                }
                .into(),
                Exit::NoDaemon,
            ),
            (
                ControlError::InvalidConfig {
                    message: "m".into(),
                }
                .into(),
                Exit::Config,
            ),
            (
                ControlError::Denied {
                    request: "reload",
                    uid: 1000,
                    message: "m".into(),
                }
                .into(),
                Exit::Denied,
            ),
            (
                ControlError::Remote {
                    message: "m".into(),
                }
                .into(),
                Exit::Failed,
            ),
            (
                anyhow::Error::new(std::io::Error::from_raw_os_error(libc::EACCES))
                    .context("opening /run/pl"),
                Exit::Denied,
            ),
            (
                anyhow::Error::new(std::io::Error::from_raw_os_error(libc::ENOENT)),
                Exit::Failed,
            ),
            (anyhow::anyhow!("anything else"), Exit::Failed),
        ];
        for (e, want) in cases {
            assert_eq!(classify(&e), want, "{e:#}");
        }
    }
}
