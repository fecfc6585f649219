//! Mounting the DDMS HTTP API inside another hyper service: the host answers its own
//! routes (here `/hello`) and hands every other request to
//! [`ddms_server::App::handle`], which serves `/health`, `/openapi.json` and `/api/v1/*`.
//!
//! Runs against `DATABASE_URL`, or without it against the embedded default (a private
//! PostgreSQL in `.ddms/example-pgdata`, started from the machine's binaries). Auth and
//! limits come from the same environment variables as `ddms serve` (mock auth by
//! default in development).
//!
//! ```sh
//! cargo run --example hosting                          # http://127.0.0.1:3002 until Ctrl-C
//! DDMS_EXAMPLE_ONESHOT=1 cargo run --example hosting   # calls itself once, then exits
//! ```

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use ddms::postgres::{embedded, migrate, PgBackend, PgConfig};
use ddms::Store;
use ddms_server::hyper::body::Incoming;
use ddms_server::hyper::server::conn::http1;
use ddms_server::hyper::service::service_fn;
use ddms_server::hyper::{Request, Response, StatusCode};
use ddms_server::hyper_util::rt::TokioIo;
use ddms_server::hyper_util::server::graceful::GracefulShutdown;
use ddms_server::tokio;
use ddms_server::{full, App, Body, Config};

/// The host's own router: its routes first, DDMS for everything else.
async fn route(app: App, req: Request<Incoming>) -> Response<Body> {
    match req.uri().path() {
        "/hello" => {
            let mut resp = Response::new(full("hello from the host service\n"));
            *resp.status_mut() = StatusCode::OK;
            resp
        }
        _ => app.handle(req).await,
    }
}

/// Serves `app` behind the host router until `shutdown` completes.
async fn run(
    listener: tokio::net::TcpListener,
    app: App,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let app = app.clone();
                let service = service_fn(move |req| {
                    let app = app.clone();
                    async move { Ok::<_, Infallible>(route(app, req).await) }
                });
                let conn = graceful.watch(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            _ = &mut shutdown => break,
        }
    }
    // End DDMS's event streams, then let in-flight requests finish.
    app.shutdown_streams();
    let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
}

/// A minimal blocking HTTP/1.0 GET, enough for the one-shot self-test.
fn get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(s, "GET {path} HTTP/1.0\r\nhost: {addr}\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    Ok(text)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL").ok();
    let db = embedded::locate(url.as_deref(), Path::new(".ddms/example-pgdata"))?;
    migrate(&db.url)?;
    let backend = PgBackend::connect(&PgConfig::new(&db.url))?;

    let config = Config::from_env()?;
    let app = App::new(Store::new(backend.clone()), &config);
    app.set_health_check(move || backend.health());
    app.ensure_mock_tenant()?;

    let oneshot = std::env::var("DDMS_EXAMPLE_ONESHOT").is_ok_and(|v| !v.is_empty() && v != "0");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let bind = if oneshot {
            "127.0.0.1:0"
        } else {
            "127.0.0.1:3002"
        };
        let listener = tokio::net::TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        if !oneshot {
            println!("host service on http://{addr}: try /hello, /health, /api/v1/entity-types");
            run(listener, app, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await;
            return Ok::<_, Box<dyn std::error::Error>>(());
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(run(listener, app, async {
            let _ = stopped.await;
        }));
        let (hello, health, types) = tokio::task::spawn_blocking(move || {
            Ok::<_, std::io::Error>((
                get(addr, "/hello")?,
                get(addr, "/health")?,
                get(addr, "/api/v1/entity-types")?,
            ))
        })
        .await??;
        for (path, text) in [
            ("/hello", &hello),
            ("/health", &health),
            ("/api/v1/entity-types", &types),
        ] {
            let status = text.lines().next().unwrap_or("");
            let body = text.split("\r\n\r\n").nth(1).unwrap_or("").trim();
            println!("GET {path} -> {status}\n{body}\n");
        }
        let _ = stop.send(());
        server.await?;
        if !(hello.contains(" 200 ") && health.contains(" 200 ") && types.contains(" 200 ")) {
            return Err("the one-shot requests did not all succeed".into());
        }
        Ok(())
    })?;
    // Dropping `db` stops the embedded cluster, if one was started.
    drop(db);
    Ok(())
}
