//! `pl`: parses the command line and dispatches; each command lives in `cli/`.

mod cli;

use clap::Parser as _;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let json = cli.log_format == cli::logging::LogFormat::Json;
    cli::logging::init(cli.log_format);
    match cli::dispatch(cli.command).await {
        Ok(()) => cli::exit::Exit::Ok.into(),
        Err(e) => {
            cli::exit::report(&e, json);
            cli::exit::classify(&e).into()
        }
    }
}
