//! The `boxoffice` command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use boxoffice_server::{Application, Config, StartError};

// The hold path allocates a little per request; mimalloc does that faster than glibc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "boxoffice", version, about = "Named-seat ticketing: holds, checkout, live seat maps")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(Config),
    /// Load a running server, measure it, and audit it for oversold seats.
    Loadtest(boxoffice_loadgen::Args),
    /// The event search index.
    Search {
        #[command(subcommand)]
        command: SearchCommand,
    },
}

#[derive(Subcommand)]
enum SearchCommand {
    /// Rebuild the search index of a data dir from its store (for recovery; a running
    /// server keeps its index current by itself, so stop it first).
    Reindex {
        /// The server's data dir.
        #[arg(long, env = "BOXOFFICE_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(config) => {
            init_tracing(&config.log);
            let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(e) => {
                    eprintln!("error: cannot start the runtime: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            };
            match runtime.block_on(serve(config)) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
        Command::Loadtest(args) => boxoffice_loadgen::main(args),
        Command::Search { command: SearchCommand::Reindex { data_dir } } => reindex(&data_dir),
    }
}

fn reindex(data_dir: &std::path::Path) -> std::process::ExitCode {
    init_tracing("warn");
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let started = std::time::Instant::now();
    match runtime.block_on(boxoffice_server::search::reindex(data_dir)) {
        Ok(done) => {
            println!(
                "search index of {} rebuilt: {} events, current to catalog change {}, in {} ms",
                data_dir.display(),
                done.events,
                done.position,
                started.elapsed().as_millis()
            );
            std::process::ExitCode::SUCCESS
        }
        Err(StartError::Locked(dir)) => {
            eprintln!(
                "error: a boxoffice server is running on data dir {dir} (it holds {dir}/LOCK); stop it before \
                 reindexing: a running server keeps its search index current by itself"
            );
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_target(false).init();
}

async fn serve(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    tracing::info!(config = %config.redacted(), "starting");
    if config.dev_auth_enabled() {
        tracing::warn!(
            "DEV AUTH IS ON: anyone can mint any token, admin included, at POST /v1/auth/token. Never use this in production."
        );
    }
    let app = Application::build(config).await?;
    let addr = app.local_addr();
    println!("boxoffice listening on http://{addr}");
    app.run(shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
