//! The `herald` binary.

use std::process::ExitCode;

use clap::Parser;
use herald::config::{Cli, Command, Config, LogFormat};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// mimalloc rather than glibc's allocator: every delivery allocates its request, headers
/// and record on one thread and frees them on another, where glibc's arenas spent about a
/// fifth of the engine's CPU (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn init_logging(format: LogFormat) {
    // HERALD_LOG, else RUST_LOG (what Rust operators set by habit), else info.
    let directives = herald::config::log_filter(
        std::env::var("HERALD_LOG").ok(),
        std::env::var("RUST_LOG").ok(),
    );
    let filter = EnvFilter::try_new(directives).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Cancels `token` at the first SIGINT or SIGTERM.
fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(term) => term,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        token.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        token.cancel();
    });
}

#[tokio::main]
async fn main() -> ExitCode {
    // First thing, before the daemon's bursts start (see `herald::memory`).
    let huge_pages = herald::memory::no_transparent_huge_pages();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let config = match Config::load(*args) {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("herald: {e}");
                    return ExitCode::from(2);
                }
            };
            init_logging(config.log_format);
            if let Err(e) = huge_pages {
                // Refused (an old kernel): herald runs as before, zeroing huge pages.
                tracing::info!(error = %e, "transparent huge pages left on");
            }
            let shutdown = CancellationToken::new();
            cancel_on_signal(shutdown.clone());
            match herald::serve::run(config, shutdown).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("herald: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Webhooks(args) => herald::cli::finish(herald::cli::webhooks::run(args).await),
        Command::Events(args) => herald::cli::finish(herald::cli::events::run(args).await),
        Command::Deliveries(args) => herald::cli::finish(herald::cli::deliveries::run(args).await),
        Command::Apply(args) => herald::cli::finish(herald::cli::apply::run(args).await),
        Command::Cluster(args) => herald::cli::finish(herald::cli::cluster::run(args).await),
        Command::Keys(args) => herald::cli::finish(herald::cli::keys::run(args).await),
        Command::Audit(args) => herald::cli::finish(herald::cli::audit::run(args).await),
    }
}
