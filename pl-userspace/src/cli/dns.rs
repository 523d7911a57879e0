//! `pl dns`: the endpoint DNS names a config gives each consumer network and what they
//! answer; `--zone-file` prints one network's as an RFC 1035 zone file, for people who
//! serve the names from their own DNS. Read from the config, as `pl check` reads it: no
//! kernel, no root.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use pl_userspace::{
    config::{ConfigErrors, Source},
    dns::{self, Name},
    model::{HostChecks, LiveInterfaces, Model},
    output::{self, Col},
};
use serde::Serialize;

use super::output::OutputArgs;

#[derive(Args)]
pub struct DnsArgs {
    /// The config whose names to list.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,
    /// Only this consumer network's names.
    #[arg(long, value_name = "NETWORK")]
    pub network: Option<String>,
    /// Print the network's names as an RFC 1035 zone file (needs --network).
    #[arg(long, requires = "network", conflicts_with_all = ["output", "json"])]
    pub zone_file: bool,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// `pl dns -o json`: a network's names.
#[derive(Serialize)]
struct NetworkNames {
    network: String,
    /// Where pl answers them; empty: nowhere yet (list or serve them yourself).
    dns_addresses: Vec<std::net::IpAddr>,
    names: Vec<Name>,
}

pub fn run(args: &DnsArgs) -> anyhow::Result<()> {
    let src = Source::read(&args.config)?;
    let check = Model::check(&src, &LiveInterfaces, HostChecks::Warnings);
    let model = match check.model {
        Some(m) if check.errors.is_empty() => m,
        _ => return Err(ConfigErrors(check.errors).into()),
    };
    let networks: Vec<u16> = match &args.network {
        Some(name) => {
            let id = model
                .networks
                .iter()
                .position(|n| &n.name == name)
                .with_context(|| {
                    format!(
                        "--network: {}: no network named {name:?}",
                        args.config.display()
                    )
                })?;
            vec![id as u16]
        }
        None => (0..model.networks.len() as u16).collect(),
    };
    if args.zone_file {
        print!("{}", dns::zone_file(&model, networks[0]));
        return Ok(());
    }
    let all: Vec<NetworkNames> = networks
        .iter()
        .map(|&id| {
            let network = model.networks[usize::from(id)].name.clone();
            NetworkNames {
                dns_addresses: model
                    .dns
                    .addresses
                    .get(&network)
                    .cloned()
                    .unwrap_or_default(),
                names: dns::names(&model, id),
                network,
            }
        })
        .filter(|n| args.network.is_some() || !n.names.is_empty())
        .collect();
    let format = args.out.format();
    if format.is_json() {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    let mut t = output::table(
        format,
        &[
            ("NETWORK", Col::Text),
            ("NAME", Col::Text),
            ("KIND", Col::Text),
            ("ADDRESSES", Col::Text),
        ],
    );
    for n in &all {
        for name in &n.names {
            let addrs: Vec<String> = name.addresses.iter().map(ToString::to_string).collect();
            t.add_row(vec![
                n.network.clone(),
                name.name.clone(),
                format!("{:?}", name.kind).to_lowercase(),
                addrs.join(" "),
            ]);
        }
    }
    print!("{}", output::render(&t));
    Ok(())
}
