//! `pl run`: its flags, turned into the daemon's options.

use std::path::PathBuf;

use clap::Args;
use pl_userspace::{control::DEFAULT_INSTANCE, daemon, dataplane::Mode};

#[derive(Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["config", "interfaces"])))]
pub struct RunArgs {
    /// The PrivateLink config (TOML): networks, services, endpoints.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Observe only: attach to these interfaces, count frames and pass them on
    /// (`-i a b` or `-i a -i b`).
    #[arg(
        long = "interface",
        short = 'i',
        value_name = "IF",
        num_args = 1..,
        conflicts_with = "config"
    )]
    pub interfaces: Vec<String>,
    /// Attach in generic (skb) mode instead of native driver mode: needs no driver support,
    /// but every packet becomes an skb first (several times slower than native), and an
    /// interface with GRO or LRO on is refused (merged packets NAT cannot checksum).
    #[arg(long)]
    pub skb: bool,
    /// Start with empty tables instead of taking over the flows (and ids) the last run left;
    /// its links are still replaced atomically.
    #[arg(long)]
    pub fresh: bool,
    /// Name of this instance's control socket, for several pl runs in one namespace.
    #[arg(long, default_value = DEFAULT_INSTANCE)]
    pub instance: String,
    /// Serve Prometheus metrics (OpenMetrics text) at http://ADDR/metrics, e.g. 127.0.0.1:9464
    /// (bound in pl run's network namespace; bind it to a management address).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Members of this group (name or gid) may use `pl stats`, `pl flows` and `pl flows
    /// --watch`; only root may do anything else. Default: nobody but root.
    #[arg(long, value_name = "GROUP")]
    pub read_group: Option<String>,
    /// Use a config file that a user other than root could change (writable by group or
    /// others, or owned by another user), with a warning, instead of refusing it.
    #[arg(long)]
    pub insecure_config: bool,
    /// This forwarder's `[[node]]` in the config's cluster: every node runs the same file.
    #[arg(long, value_name = "NAME", requires = "config")]
    pub node: Option<String>,
}

impl RunArgs {
    pub fn into_options(self) -> daemon::Options {
        daemon::Options {
            config: self.config,
            interfaces: self.interfaces,
            mode: if self.skb { Mode::Skb } else { Mode::Native },
            fresh: self.fresh,
            instance: self.instance,
            metrics: self.metrics,
            read_group: self.read_group,
            insecure_config: self.insecure_config,
            node: self.node,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use crate::cli::{Cli, Command};

    fn interfaces(args: &[&str]) -> Vec<String> {
        let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        match cli.command {
            Command::Run(run) => run.interfaces,
            _ => panic!("{args:?} is not pl run"),
        }
    }

    #[test]
    fn interfaces_come_as_a_list_or_one_flag_each() {
        let want = ["a", "b"];
        assert_eq!(interfaces(&["pl", "run", "-i", "a", "b"]), want);
        assert_eq!(interfaces(&["pl", "run", "-i", "a", "-i", "b"]), want);
        assert_eq!(interfaces(&["pl", "run", "--interface", "a", "b"]), want);
        assert_eq!(
            interfaces(&["pl", "run", "-i", "a", "b", "--skb", "-i", "c"]),
            ["a", "b", "c"]
        );
        assert!(Cli::try_parse_from(["pl", "run", "-i"]).is_err());
        assert!(Cli::try_parse_from(["pl", "run", "-i", "a", "--config", "x"]).is_err());
    }
}
