//! `pl completions SHELL` and `pl man`: shell completions and man pages, both generated
//! from the clap definitions so they never drift from the real flags.

use std::{io::Write as _, path::PathBuf};

use anyhow::Context as _;
use clap::{Args, CommandFactory as _};

use super::Cli;

#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Args)]
pub struct ManArgs {
    /// Write pl.1 and a pl-<command>.1 page per command into DIR; default: print pl.1.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// The completion script for `args.shell`, on stdout.
pub fn completions(args: &CompletionsArgs) {
    clap_complete::generate(
        args.shell,
        &mut Cli::command(),
        "pl",
        &mut std::io::stdout(),
    );
}

pub fn man(args: &ManArgs) -> anyhow::Result<()> {
    let pages = pages();
    let Some(dir) = &args.out else {
        let (_, page) = &pages[0];
        return std::io::stdout()
            .write_all(page)
            .context("writing the man page to stdout");
    };
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    for (name, page) in &pages {
        let path = dir.join(name);
        std::fs::write(&path, page).with_context(|| format!("{}: cannot write", path.display()))?;
        println!("{}", path.display());
    }
    Ok(())
}

/// (file name, roff) for `pl` and every visible command under it, `pl-lab-up.1` style.
pub fn pages() -> Vec<(String, Vec<u8>)> {
    let mut cmd = Cli::command();
    cmd.build();
    let mut pages = Vec::new();
    page("pl", &cmd, &mut pages);
    pages
}

fn page(name: &str, cmd: &clap::Command, pages: &mut Vec<(String, Vec<u8>)>) {
    let mut roff = Vec::new();
    // Rendering into a Vec cannot fail.
    let _ = clap_mangen::Man::new(cmd.clone())
        .title(name)
        .source(concat!("pl ", env!("CARGO_PKG_VERSION")))
        .manual("pl manual")
        .render(&mut roff);
    pages.push((format!("{name}.1"), roff));
    // clap's generated `help` commands repeat the pages they point to.
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        page(&format!("{name}-{}", sub.get_name()), sub, pages);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_per_visible_command() {
        let pages = pages();
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        for want in [
            "pl.1",
            "pl-run.1",
            "pl-reload.1",
            "pl-lab-up.1",
            "pl-completions.1",
        ] {
            assert!(names.contains(&want), "no {want} in {names:?}");
        }
        assert!(
            !names.contains(&"pl-man.1"),
            "the hidden command got a page"
        );
        assert!(
            !names.contains(&"pl-help.1"),
            "clap's help command got a page"
        );
        let (_, main) = &pages[0];
        let main = String::from_utf8_lossy(main);
        assert!(main.contains(".TH pl 1"), "{main}");
        for sub in ["run", "reload", "stats", "flows", "down"] {
            assert!(main.contains(sub), "pl.1 does not mention {sub}");
        }
    }
}
