//! `ddms`: the DDMS server and its maintenance commands.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ddms_server::{serve, shutdown_signal, App, Config, Database, StartupError};
use tokio::net::TcpListener;

mod seed;

/// mimalloc instead of glibc's malloc: a list response allocates per JSON value, and
/// glibc's allocator was ~20 % of the server's CPU under load (perf, 50-record pages).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// DDMS: multi-tenant data whose shape is defined at run time.
///
/// Configuration comes from the environment and an optional `.env` file (DATABASE_URL,
/// HOST, PORT, MOCK_AUTH, JWT_SECRET, ...; see the README). Without DATABASE_URL, a
/// private PostgreSQL is started from the machine's binaries with its data in
/// DDMS_DATA_DIR (default .ddms/pgdata). Logs go to stderr; set RUST_LOG (e.g.
/// RUST_LOG=debug) for more.
#[derive(Debug, Parser)]
#[command(name = "ddms", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP API (the default): migrates the database, creates the mock tenant
    /// in mock-auth mode, and serves until SIGINT/SIGTERM, letting in-flight requests
    /// finish.
    Serve {
        /// Listen address (overrides HOST).
        #[arg(long)]
        host: Option<String>,
        /// Listen port (overrides PORT).
        #[arg(long)]
        port: Option<u16>,
    },
    /// Apply pending database migrations and exit (idempotent).
    Migrate,
    /// Load the demo workload (1M records, 1.2M relations) into the demo tenant,
    /// replacing it; one transaction (Ctrl-C rolls back), then ANALYZE.
    Seed(seed::SeedArgs),
    /// Run the field indexer once: backfill every field index declared on a type that
    /// already had records (the server also does this every FIELD_INDEXER_INTERVAL_MS).
    Index,
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let config = match Config::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ddms: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command.unwrap_or(Command::Serve {
        host: None,
        port: None,
    }) {
        Command::Serve { host, port } => {
            let mut config = config;
            if let Some(h) = host {
                config.host = h;
            }
            if let Some(p) = port {
                config.port = p;
            }
            run_serve(config)
        }
        Command::Seed(args) => seed::run_cli(&config, &args),
        Command::Migrate => Database::migrate(&config)
            .map(|()| tracing::info!("migrations are up to date"))
            .map_err(|e| startup_message(&e)),
        Command::Index => run_index(&config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("ddms: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn startup_message(e: &StartupError) -> String {
    e.to_string()
}

fn run_index(config: &Config) -> Result<(), String> {
    let db = Database::open(config).map_err(|e| startup_message(&e))?;
    let result = db.run_indexer_once();
    db.close();
    let report = result.map_err(|e| format!("indexer: {e}"))?;
    for f in &report.fields {
        println!(
            "{} {}.{}: {:?} ({} records scanned, {} rows written)",
            f.tenant,
            f.entity_type.as_deref().unwrap_or("?"),
            f.field.as_deref().unwrap_or("?"),
            f.outcome,
            f.records_scanned,
            f.rows_written
        );
    }
    println!(
        "{} field index(es): {} ready, {} failed, {} busy",
        report.fields.len(),
        report.ready(),
        report.failed(),
        report.busy()
    );
    Ok(())
}

fn run_serve(config: Config) -> Result<(), String> {
    // One worker per pooled connection (at least one per core): handlers run library
    // calls in place on their worker (`handlers::blocking`), so a worker waiting on the
    // database is a worker holding a connection, and no thread hand-off is paid.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads((config.db_pool_size as usize).max(cores))
        .on_thread_start(ddms_server::mark_inline_worker)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    // The database is opened before the runtime serves anything: starting the
    // embedded cluster and migrating are blocking work.
    let db = Database::open(&config).map_err(|e| startup_message(&e))?;
    let indexer = (!config.field_indexer_interval.is_zero()).then(|| {
        tracing::info!(interval = ?config.field_indexer_interval, "field indexer running");
        ddms_diesel::spawn_indexer(db.backend().clone(), config.field_indexer_interval)
    });
    let retention = (!config.event_retention.is_zero()).then(|| {
        tracing::info!(keep = ?config.event_retention, "event retention running");
        let every = config
            .event_retention
            .min(std::time::Duration::from_secs(3600));
        ddms_diesel::retention::spawn_retention(db.backend().clone(), config.event_retention, every)
    });
    let result = runtime.block_on(serve_db(&config, &db));
    if let Some(i) = indexer {
        i.stop();
    }
    if let Some(r) = retention {
        r.stop();
    }
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    db.close();
    result
}

async fn serve_db(config: &Config, db: &Database) -> Result<(), String> {
    if config.mock_auth {
        tracing::warn!(
            "mock auth is on: requests act for x-tenant-id (default MOCK_TENANT_ID) with MOCK_ROLES; \
             set MOCK_AUTH=false for JWT auth"
        );
        if !matches!(config.host.as_str(), "127.0.0.1" | "::1" | "localhost") {
            tracing::warn!(
                host = %config.host,
                "mock auth on a non-loopback address: anyone who reaches this port acts with MOCK_ROLES; \
                 set HOST=127.0.0.1 for local development"
            );
        }
    } else if config.uses_default_jwt_secret() {
        tracing::warn!("JWT_SECRET is the well-known default: set your own");
    }
    let app = App::new(db.store(), config);
    let backend = db.backend().clone();
    app.set_health_check(move || backend.health());
    let backend = db.backend().clone();
    app.set_feed(move |scope, after| backend.subscribe(scope, after));
    {
        let app = app.clone();
        match tokio::task::spawn_blocking(move || app.ensure_mock_tenant()).await {
            Ok(Ok(Some(t))) => tracing::info!(tenant = %t.id, name = %t.name, "mock tenant ready"),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => return Err(format!("cannot create the mock tenant: {e}")),
            Err(e) => return Err(format!("cannot create the mock tenant: {e}")),
        }
    }
    let listener = TcpListener::bind((config.host.as_str(), config.port))
        .await
        .map_err(|e| {
            format!(
                "cannot listen on HOST={} PORT={}: {e}",
                config.host, config.port
            )
        })?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listen address: {e}"))?;
    tracing::info!(%addr, embedded = db.is_embedded(), "DDMS is listening (GET /health, /openapi.json)");
    serve(listener, app, shutdown_signal())
        .await
        .map_err(|e| format!("server error: {e}"))?;
    tracing::info!("stopped");
    Ok(())
}
