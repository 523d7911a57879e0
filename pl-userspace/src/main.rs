//! `pl`: parses the command line and dispatches; each command lives in `cli/`.

mod cli;

use clap::Parser as _;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    cli::logging::init(cli.log_format);
    match cli::dispatch(cli.command).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pl: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
