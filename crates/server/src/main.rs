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
    Serve(Box<Config>),
    /// Load a running server, measure it, and audit it for oversold seats.
    Loadtest(boxoffice_loadgen::Args),
    /// The audit history of a running server.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The ticket stream of a running server.
    Stream {
        #[command(subcommand)]
        command: StreamCommand,
    },
    /// The event search index.
    Search {
        #[command(subcommand)]
        command: SearchCommand,
    },
    /// Brings a PostgreSQL database's schema up to date (what every node also does when it
    /// starts), then exits. Safe to run at any time, from anywhere, more than once.
    Migrate {
        /// The database, `postgres://user:password@host:port/name`.
        #[arg(long, env = "BOXOFFICE_DATABASE_URL", hide_env_values = true)]
        database_url: String,
        /// Seconds to keep retrying an unreachable database.
        #[arg(long, env = "BOXOFFICE_BACKEND_CONNECT_TIMEOUT", default_value_t = 30,
              value_parser = clap::value_parser!(u64).range(1..=3600))]
        backend_connect_timeout: u64,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Replays an event's audit history and checks that it equals the current seat states
    /// and orders; exits 1 when it does not.
    Verify {
        /// The event, e.g. `ev_1`.
        #[arg(long)]
        event: String,
        #[command(flatten)]
        server: boxoffice_server::admin_client::ServerArgs,
    },
}

#[derive(Subcommand)]
enum StreamCommand {
    /// Hands the ticket stream's messages from an offset (stream sequence, from 1) to the
    /// ticket worker's handler again, through the running server's admin API. Each order's
    /// mail is written once: a mail written before stays as it is.
    Replay {
        /// The first offset to replay.
        #[arg(long)]
        from: u64,
        #[command(flatten)]
        server: boxoffice_server::admin_client::ServerArgs,
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
            match runtime.block_on(serve(*config)) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
        Command::Loadtest(args) => boxoffice_loadgen::main(args),
        Command::Search { command: SearchCommand::Reindex { data_dir } } => reindex(&data_dir),
        Command::Stream { command: StreamCommand::Replay { from, server } } => stream_replay(from, &server),
        Command::Audit { command: AuditCommand::Verify { event, server } } => audit_verify(&event, &server),
        Command::Migrate { database_url, backend_connect_timeout } => {
            migrate(&database_url, std::time::Duration::from_secs(backend_connect_timeout))
        }
    }
}

fn migrate(url: &str, connect_retry: std::time::Duration) -> std::process::ExitCode {
    init_tracing("warn");
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let mut config = boxoffice_store::PgConfig::new(url);
    config.connect_retry = connect_retry;
    let shown = config.redacted_url();
    match runtime.block_on(boxoffice_store::PgStore::migrate_with(&config)) {
        Ok(done) if done.applied.is_empty() => {
            println!(
                "database {shown} is up to date: {} migrations applied before, none to apply",
                done.already_applied
            );
            std::process::ExitCode::SUCCESS
        }
        Ok(done) => {
            for (version, description) in &done.applied {
                println!("applied migration {version:04} {description}");
            }
            println!(
                "database {shown} migrated: {} migrations applied now, {} before",
                done.applied.len(),
                done.already_applied
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot migrate database {shown}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn audit_verify(event: &str, server: &boxoffice_server::admin_client::ServerArgs) -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let path = format!("/v1/events/{event}/audit/verify");
    match runtime.block_on(server.request(reqwest::Method::GET, &path, None)) {
        Ok((200, report)) => {
            let mismatches = report["mismatches"].as_array().cloned().unwrap_or_default();
            println!(
                "{event}: {} records replayed; seats available {}, held {}, sold {}",
                report["records"], report["available"], report["held"], report["sold"]
            );
            if mismatches.is_empty() {
                println!("the history equals the current seat states and orders");
                std::process::ExitCode::SUCCESS
            } else {
                for m in &mismatches {
                    println!("MISMATCH {}", m.as_str().unwrap_or_default());
                }
                std::process::ExitCode::FAILURE
            }
        }
        Ok((status, body)) => {
            eprintln!("error: the server answered {status}: {body}");
            std::process::ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

fn stream_replay(from: u64, server: &boxoffice_server::admin_client::ServerArgs) -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let body = serde_json::json!({ "from": from });
    match runtime.block_on(server.request(reqwest::Method::POST, "/v1/admin/stream/replay", Some(body))) {
        Ok((200, done)) => {
            println!(
                "ticket stream replayed from offset {} through {}: {} messages, {} mails written",
                done["from"], done["through"], done["messages"], done["mails_written"]
            );
            std::process::ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            eprintln!("error: the server answered {status}: {body}");
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
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
    // Every live-map viewer and waiting fan is a socket: use all the files the OS allows.
    match boxoffice_loadgen::sys::raise_file_limit() {
        Ok(limit) if limit.soft < 100_000 => tracing::warn!(
            open_files = limit.soft,
            "the open-file limit caps connections well below 100,000; see docs/operations.md"
        ),
        Ok(limit) => tracing::info!(open_files = limit.soft, raised_from = limit.before, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot read or raise the open-file limit"),
    }
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
