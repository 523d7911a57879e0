//! `pl down` and `pl reload`: changing what runs.

use std::path::PathBuf;

use clap::Args;
use pl_userspace::{
    config::Source,
    control::{self, DEFAULT_INSTANCE, SentConfig},
    dataplane,
};

#[derive(Args)]
pub struct DownArgs {
    #[arg(long, default_value = DEFAULT_INSTANCE)]
    pub instance: String,
}

#[derive(Args)]
pub struct ReloadArgs {
    /// A new config file, read here and sent to `pl run` (which keeps it as the running
    /// config); default: `pl run` reads again the file it was started with.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[arg(long, default_value = DEFAULT_INSTANCE)]
    pub instance: String,
}

pub fn down(args: &DownArgs) -> anyhow::Result<()> {
    match dataplane::down(&args.instance)? {
        None => println!("pl down: nothing of instance {:?} here", args.instance),
        Some(ifaces) => {
            let names: Vec<&str> = ifaces.iter().map(|i| i.name.as_str()).collect();
            println!(
                "pl down: detached from {} and removed instance {:?}'s flows and state",
                if names.is_empty() {
                    "nothing".to_owned()
                } else {
                    names.join(", ")
                },
                args.instance
            );
        }
    }
    Ok(())
}

pub fn reload(args: &ReloadArgs) -> anyhow::Result<()> {
    // pl run opens no path a client names: the file is read here and its text sent.
    let sent = args
        .config
        .as_deref()
        .map(Source::read)
        .transpose()?
        .map(|src| SentConfig {
            name: src.path.display().to_string(),
            text: src.text,
        });
    println!("{}", control::reload(&args.instance, sent)?);
    Ok(())
}
