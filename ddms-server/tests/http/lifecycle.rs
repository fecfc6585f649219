//! Graceful shutdown, request timeouts, and a database that goes away and comes back.

use std::time::Duration;

use ddms_core::Store;
use ddms_diesel::harness::PgCluster;
use ddms_server::{App, ServeOptions};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// Reads from `s` until EOF (or `limit`), returning the text.
async fn read_all(s: &mut TcpStream, limit: Duration) -> String {
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(limit, s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_lets_in_flight_requests_finish() {
    let server = TestServer::start(mock_config(&[])).await;
    let tenant = new_tenant("graceful");
    schema(tenant);
    let addr = server.addr;
    let body = br#"{"data":{"title":"finished during shutdown"}}"#;

    // A slow client: headers and half the body now, the rest after the shutdown signal.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/v1/entity-types/project/records HTTP/1.1\r\nhost: x\r\nx-tenant-id: {tenant}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut server = server;
    server.signal_shutdown();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // No new connections are accepted any more.
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "listener still open after shutdown"
    );
    s.write_all(&body[10..]).await.unwrap();
    let text = read_all(&mut s, Duration::from_secs(10)).await;
    assert!(text.starts_with("HTTP/1.1 201"), "{text}");
    assert!(text.contains("finished during shutdown"));
    server.shutdown_within(Duration::from_secs(10)).await;
    assert_eq!(record_count(tenant, "project"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_event_streams() {
    let server = TestServer::start(mock_config(&[])).await;
    let tenant = new_tenant("sse-shutdown");
    let resp = server
        .tenant_client(tenant)
        .send("GET", "/api/v1/events/stream", &[], Vec::new())
        .await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let started = std::time::Instant::now();
    server.shutdown_within(Duration::from_secs(5)).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    // The stream ends rather than hanging.
    let mut text = String::new();
    let _ = read_sse_until(&mut body, &mut text, Duration::from_secs(5), |_| false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_requests_time_out_and_write_nothing() {
    let server = TestServer::start(mock_config(&[("REQUEST_TIMEOUT_MS", "300")])).await;
    let tenant = new_tenant("timeout");
    schema(tenant);
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /api/v1/entity-types/project/records HTTP/1.1\r\nhost: x\r\nx-tenant-id: {tenant}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"data\":"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let text = read_all(&mut s, Duration::from_secs(5)).await;
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("\"timeout\""), "{text}");
    assert_eq!(record_count(tenant, "project"), 0);
}

/// The server answers 503 while its database is down and recovers, without a restart,
/// when the database is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_is_503_and_recovers() {
    let mut cluster = PgCluster::start_temp().expect("cluster");
    let url = cluster.url().to_string();
    ddms_diesel::migrate(&url).expect("migrate");
    let mut cfg = ddms_diesel::PgConfig::new(&url);
    cfg.pool_size = 4;
    cfg.connect_timeout_ms = 1000;
    let backend = ddms_diesel::PgBackend::connect(&cfg).expect("connect");
    let app = App::new(Store::new(backend.clone()), &mock_config(&[]));
    app.set_health_check(move || backend.health());
    let server = TestServer::serve_app(app, ServeOptions::default()).await;
    let c = server.client();

    c.get("/health").await.expect(200);
    c.post(
        "/api/v1/entity-types",
        json!({"name": "note", "fields": [{"name": "text", "kind": "text"}]}),
    )
    .await
    .expect(201);
    c.post(
        "/api/v1/entity-types/note/records",
        json!({"data": {"text": "before"}}),
    )
    .await
    .expect(201);

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.stop().expect("stop");
        cluster
    })
    .await
    .unwrap();

    // Down: 503 everywhere, with the documented bodies; nothing crashes.
    let r = c.get("/health").await.expect(503);
    assert_eq!(
        r.json,
        json!({"status": "unavailable", "database": "unavailable"})
    );
    c.get("/api/v1/entity-types")
        .await
        .expect_err(503, "unavailable");
    c.get("/api/v1/entity-types/note/records")
        .await
        .expect_err(503, "unavailable");
    let r = c
        .post(
            "/api/v1/entity-types/note/records",
            json!({"data": {"text": "lost"}}),
        )
        .await
        .expect_err(503, "unavailable");
    assert_eq!(r.header("retry-after"), Some("1"));
    c.get("/api/v1/events/stream")
        .await
        .expect_err(503, "unavailable");
    c.get("/openapi.json").await.expect(200);

    // Back on the same port: the same server recovers.
    let mut cluster = cluster;
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.start().expect("restart");
        cluster
    })
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = c.get("/health").await;
        if r.status == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no recovery: {}",
            r.json
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c.get("/api/v1/entity-types").await.expect(200);
    c.post(
        "/api/v1/entity-types/note/records",
        json!({"data": {"text": "after"}}),
    )
    .await
    .expect(201);
    let r = c.get("/api/v1/entity-types/note/records").await.expect(200);
    let texts: Vec<&str> = r.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["data"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["before", "after"]);
    drop(server);
    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .unwrap();
}
