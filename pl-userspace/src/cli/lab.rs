//! `pl lab` and `pl demo`: the built-in veth lab.

use std::{path::PathBuf, time::Duration};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use pl_userspace::lab::{
    LAB_CONFIG, Lab,
    cluster::{self, ClusterLab},
    demo::{self, DEFAULT_PREFIX, DemoOptions},
    serve::{TARGETS, TARGETS6},
};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Subcommand)]
pub enum LabCommand {
    /// Create the lab (replacing one with the same prefix) and print its topology.
    Up {
        #[arg(long)]
        prefix: String,
        /// Print the topology as JSON.
        #[arg(long)]
        json: bool,
        /// Every link's MTU (both veth ends); 9000 for jumbo frames.
        #[arg(long, default_value_t = pl_userspace::lab::DEFAULT_MTU, value_parser = clap::value_parser!(u32).range(68..=65535))]
        mtu: u32,
        /// Forwarders: 1 is the single lab; 2 or 3 make a cluster lab (forwarders
        /// PREFIXfw1.. on a switch namespace PREFIXsw, mgmt0 at 192.168.100.N).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=3))]
        nodes: u64,
        /// Also write the lab's pl config to FILE (mode 0600), ready for `pl run --config`
        /// (with `[cluster]` and a `[[node]]` per forwarder for a cluster lab).
        #[arg(long, value_name = "FILE")]
        config_out: Option<PathBuf>,
        /// Also start the provider's servers on the lab's targets (TCP 8443, UDP 5353;
        /// they answer with the address they saw, also to an HTTP GET); `pl lab down`
        /// stops them.
        #[arg(long)]
        serve: bool,
    },
    /// Remove everything the lab made (servers included), single or cluster. Idempotent.
    Down {
        #[arg(long)]
        prefix: String,
    },
    /// Run the lab's servers in the foreground (what `pl lab up --serve` starts).
    #[command(hide = true)]
    Serve {
        #[arg(long)]
        prefix: String,
    },
}

#[derive(Args)]
pub struct DemoArgs {
    #[arg(long, default_value = DEFAULT_PREFIX)]
    pub prefix: String,
    /// UDP requests from each consumer network.
    #[arg(long, default_value_t = 10)]
    pub packets: usize,
    /// 2: the cluster demo instead (two forwarders, a zone taken over when one dies, and
    /// given back when it returns).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub nodes: u8,
}

pub fn lab(command: LabCommand) -> anyhow::Result<()> {
    match command {
        LabCommand::Up {
            prefix,
            json,
            mtu,
            nodes,
            config_out,
            serve,
        } => {
            let nodes = usize::try_from(nodes).context("--nodes")?;
            let lab = Lab::new(&prefix)?.with_mtu(mtu);
            // The topology as text and as JSON, and the lab's config.
            let (text, json_text, config) = if nodes > 1 {
                let cluster = ClusterLab::new(&prefix, nodes)?.with_mtu(mtu);
                let topo = cluster.up()?;
                let json_text = serde_json::to_string_pretty(&topo)?;
                (topo.to_string(), json_text, cluster.config())
            } else {
                // A cluster lab of the same prefix goes too, as `up` replaces a lab.
                cluster::down_any(&lab)?;
                let topo = lab.up()?;
                let json_text = serde_json::to_string_pretty(&topo)?;
                (topo.to_string(), json_text, LAB_CONFIG.to_owned())
            };
            let extras = || -> anyhow::Result<()> {
                if let Some(path) = &config_out {
                    write_private(path, &config)?;
                }
                if serve {
                    let exe = std::env::current_exe().context("locating the pl binary")?;
                    lab.serve_detached(&exe)?;
                }
                Ok(())
            };
            // Nothing half-made: a lab whose config or servers failed comes down again.
            if let Err(e) = extras() {
                let _ = cluster::down_any(&lab);
                return Err(e);
            }
            if json {
                println!("{json_text}");
            } else {
                print!("{text}");
                if let Some(path) = &config_out {
                    println!("config: {} (pl run --config {0})", path.display());
                }
                if serve {
                    println!(
                        "servers: {} and {}, {} and {} (tcp 8443, udp 5353) in {prefix}prov",
                        TARGETS[0], TARGETS[1], TARGETS6[0], TARGETS6[1]
                    );
                }
            }
        }
        LabCommand::Serve { prefix } => Lab::new(&prefix)?.serve_forever()?,
        LabCommand::Down { prefix } => {
            cluster::down_any(&Lab::new(&prefix)?)?;
            println!("lab {prefix}: down");
        }
    }
    Ok(())
}

pub async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let opts = DemoOptions {
        prefix: args.prefix,
        packets: args.packets,
    };
    let lab = Lab::new(&opts.prefix)?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let cluster = args.nodes > 1;
    let mut steps = tokio::task::spawn_blocking(move || {
        if cluster {
            pl_userspace::lab::cluster_demo::run(&opts.prefix)
        } else {
            demo::run(&opts)
        }
    });
    let (signal, mut code) = tokio::select! {
        done = &mut steps => return done.context("pl demo panicked")?.context("pl demo"),
        _ = term.recv() => ("SIGTERM", 143),
        _ = int.recv() => ("SIGINT", 130),
    };
    // The steps run on a blocking thread that cannot be cancelled: tear the lab down from
    // here, which stops `pl run` inside it (it detaches) and makes the steps fail fast,
    // then let the steps' own teardown finish before exiting.
    let prefix = lab.prefix();
    eprintln!("pl demo: interrupted ({signal}); tearing down lab {prefix}");
    if let Err(e) = cluster::down_any(&lab) {
        eprintln!(
            "pl demo: teardown failed: {:#}; run `pl lab down --prefix {prefix}`",
            anyhow::Error::from(e)
        );
        code = 1;
    }
    if tokio::time::timeout(Duration::from_secs(30), steps)
        .await
        .is_err()
    {
        eprintln!(
            "pl demo: its steps did not stop within 30 s; run `pl lab down --prefix {prefix}`"
        );
        code = 1;
    }
    std::process::exit(code);
}

/// The lab's config to `--config-out FILE`, never through a planted link or into another
/// user's file (see `lab::write_private`).
fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    pl_userspace::lab::write_private(path, text)
        .with_context(|| format!("--config-out {}: cannot write", path.display()))
}
