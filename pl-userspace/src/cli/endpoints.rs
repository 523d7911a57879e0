//! `pl endpoints`, `pl accept` and `pl reject`: the endpoints and their states, and the
//! service owner's decision on one of them.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use pl_userspace::{
    config_edit::{self, Decision},
    control::{self, ControlError, DEFAULT_INSTANCE, SentConfig},
    status::render_endpoints,
};

use super::output::OutputArgs;

#[derive(Args)]
pub struct EndpointsArgs {
    #[command(flatten)]
    pub out: OutputArgs,
    #[arg(long, default_value = DEFAULT_INSTANCE)]
    pub instance: String,
}

#[derive(Args)]
pub struct DecideArgs {
    /// The endpoint's name (`[[endpoint]] name`).
    pub endpoint: String,
    /// The config file to edit; default: the file `pl run` was started with.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[arg(long, default_value = DEFAULT_INSTANCE)]
    pub instance: String,
}

pub fn endpoints(args: &EndpointsArgs) -> anyhow::Result<()> {
    let list = match control::endpoints(&args.instance) {
        Ok(list) => list,
        Err(e) => {
            let dp = super::left_behind(&args.instance, e)?;
            dp.endpoints(&dp.count_flows())
        }
    };
    let format = args.out.format();
    if format.is_json() {
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        print!("{}", render_endpoints(&list, format));
    }
    Ok(())
}

/// `pl accept` / `pl reject`: edits the config file in place, then has `pl run` reload it;
/// a refused reload puts the old file back.
pub fn decide(args: &DecideArgs, decision: Decision) -> anyhow::Result<()> {
    let verb = if decision == Decision::Accept {
        "accept"
    } else {
        "reject"
    };
    // The daemon would refuse the reload anyway; refuse before touching the file.
    anyhow::ensure!(
        nix::unistd::geteuid().is_root(),
        "pl {verb}: only root may accept or reject endpoints (it edits the config and reloads pl run)"
    );
    let running = match control::status(&args.instance) {
        Ok(s) => Some(s.config_file),
        Err(ControlError::NotRunning { .. }) if args.config.is_some() => None,
        Err(e) => return Err(e.into()),
    };
    let file = match (&args.config, &running) {
        (Some(f), _) => f.clone(),
        (None, Some(Some(f))) => f.clone(),
        (None, _) => anyhow::bail!(
            "pl {verb}: pl run (instance {:?}) was started without --config, so it has no file to edit: pass --config FILE",
            args.instance
        ),
    };
    let old = std::fs::read_to_string(&file)
        .with_context(|| format!("{}: cannot read", file.display()))?;
    let edited = config_edit::decide(&file, &old, &args.endpoint, decision)?;
    if edited.changed {
        config_edit::write_atomic(&file, &edited.text)?;
    }
    let what = format!(
        "endpoint {:?} of service {:?} {} in {}",
        args.endpoint,
        edited.service,
        decision.verb(),
        file.display()
    );
    let Some(daemon_file) = running else {
        println!("{what}; no pl run is active, so it takes effect when one starts");
        return Ok(());
    };
    match reload(&args.instance, &file, daemon_file.as_deref(), &edited.text) {
        Ok(message) => {
            let already = if edited.changed { "" } else { " (already so)" };
            println!("{what}{already}; {message}");
            Ok(())
        }
        Err(e) => {
            if edited.changed {
                config_edit::write_atomic(&file, &old)?;
            }
            // The refusal stays in the chain, so the exit status says why (4: config).
            Err(anyhow::Error::from(e).context(format!(
                "pl {verb}: pl run refused the edited config, so {} is as it was",
                file.display()
            )))
        }
    }
}

/// Has `pl run` reload: its own file if `file` is it, else the edited text.
fn reload(
    instance: &str,
    file: &Path,
    daemon_file: Option<&Path>,
    text: &str,
) -> Result<String, ControlError> {
    let same = |a: &Path, b: &Path| match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    let sent = match daemon_file {
        Some(d) if same(d, file) => None,
        _ => Some(SentConfig {
            name: file.display().to_string(),
            text: text.to_owned(),
        }),
    };
    control::reload(instance, sent)
}
