//! `pl`: parses the command line and dispatches; each command lives in `cli/`.

mod cli;

use clap::Parser as _;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    // Logs (pl run's, and the XDP program's through aya-log) go to stderr; RUST_LOG filters.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli::dispatch(cli.command).await {
        Ok(()) => cli::exit::Exit::Ok.into(),
        Err(e) => {
            cli::exit::report(&e);
            cli::exit::classify(&e).into()
        }
    }
}
