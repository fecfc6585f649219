//! Shared setup: one migrated PostgreSQL database per test process, servers on
//! 127.0.0.1:0, a small HTTP client that checks every response against the OpenAPI
//! document (documented status, schema-valid body, never a 500), and JWT minting.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use ddms_core::{Event, Query, Role, Scope, Store, TenantId, TenantScope};
use ddms_server::routes::{Route, ROUTES};
use ddms_server::{serve_with, App, Config, ServeOptions};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const SECRET: &str = "integration-test-secret-0123456789";

/// A backend over the migrated test database.
pub struct Db {
    pub backend: ddms_diesel::PgBackend,
}

/// The ONE place the tests construct the backend.
pub fn db() -> &'static Db {
    static DB: OnceLock<Db> = OnceLock::new();
    DB.get_or_init(|| {
        let url = ddms_diesel::harness::fresh_database("ddms_server").expect("test database");
        ddms_diesel::migrate(&url).expect("migrate");
        let mut cfg = ddms_diesel::PgConfig::new(&url);
        cfg.pool_size = 10;
        let backend = ddms_diesel::PgBackend::connect(&cfg).expect("connect");
        Db { backend }
    })
}

pub fn store() -> Store {
    Store::new(db().backend.clone())
}

/// A fresh tenant (created through the library).
pub fn new_tenant(name: &str) -> TenantId {
    store().create_tenant(None, name).expect("tenant").id
}

/// An admin handle on `tenant`, for setting up and inspecting state directly.
pub fn admin(tenant: TenantId) -> TenantScope {
    store().tenant(Scope::new(tenant, "test-setup", Role::Admin))
}

/// Every event of `tenant`.
pub fn all_events(tenant: TenantId) -> Vec<Event> {
    let t = admin(tenant);
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = t.events(after, Some(1000)).expect("events");
        if page.events.is_empty() {
            return out;
        }
        after = page.next;
        out.extend(page.events);
    }
}

/// How many records of `ty` `tenant` has.
pub fn record_count(tenant: TenantId, ty: &str) -> usize {
    let Ok(records) = admin(tenant).records(ty) else {
        return 0;
    };
    let mut n = 0;
    let mut q = Query {
        limit: Some(1000),
        ..Query::default()
    };
    loop {
        let page = records.query(&q).expect("query");
        n += page.items.len();
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => return n,
        }
    }
}

pub fn mock_config(extra: &[(&str, &str)]) -> Config {
    let mut vars = vec![("MOCK_AUTH", "true"), ("JWT_SECRET", SECRET)];
    vars.extend_from_slice(extra);
    Config::from_vars(vars).expect("config")
}

pub fn jwt_config(extra: &[(&str, &str)]) -> Config {
    let mut vars = vec![("MOCK_AUTH", "false"), ("JWT_SECRET", SECRET)];
    vars.extend_from_slice(extra);
    Config::from_vars(vars).expect("config")
}

/// An HS256 token with `claims` (and `exp` one hour ahead unless given).
pub fn token_with(claims: Value, secret: &str) -> String {
    let mut claims = claims;
    if claims.get("exp").is_none() {
        claims["exp"] = json!(chrono::Utc::now().timestamp() + 3600);
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("encode")
}

pub fn token(tenant: TenantId, sub: &str, role: Role) -> String {
    token_with(
        json!({"tenant_id": tenant.to_string(), "sub": sub, "roles": [role.as_str()]}),
        SECRET,
    )
}

/// A server running on its own port.
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// A server over the shared test database, following the feed through the
    /// backend's NOTIFY-driven subscription, as `ddms serve` does.
    pub async fn start(config: Config) -> TestServer {
        let app = App::new(store(), &config);
        let backend = db().backend.clone();
        app.set_feed(move |scope, after| backend.subscribe(scope, after));
        TestServer::serve_app(app, ServeOptions::default()).await
    }

    pub async fn serve_app(app: App, options: ServeOptions) -> TestServer {
        let a = app.clone();
        tokio::task::spawn_blocking(move || a.ensure_mock_tenant())
            .await
            .expect("join")
            .expect("mock tenant");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, rx) = oneshot::channel::<()>();
        let done = tokio::spawn(serve_with(
            listener,
            app.clone(),
            async move {
                let _ = rx.await;
            },
            options,
        ));
        TestServer {
            addr,
            stop: Some(stop),
            done: Some(done),
        }
    }

    /// A client without credentials.
    pub fn client(&self) -> Client {
        Client {
            addr: self.addr,
            headers: Vec::new(),
        }
    }

    /// A mock-mode client acting for `tenant`.
    pub fn tenant_client(&self, tenant: TenantId) -> Client {
        self.client().header("x-tenant-id", &tenant.to_string())
    }

    /// A JWT-mode client for `tenant` with `role`.
    pub fn jwt_client(&self, tenant: TenantId, role: Role) -> Client {
        self.client().bearer(&token(tenant, "tester", role))
    }

    /// Sends the shutdown signal (without waiting).
    pub fn signal_shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }

    /// Shuts down and waits for `serve` to return (panics after `limit`).
    pub async fn shutdown_within(mut self, limit: Duration) {
        self.signal_shutdown();
        let done = self.done.take().expect("running");
        tokio::time::timeout(limit, done)
            .await
            .expect("serve returns in time")
            .expect("join")
            .expect("serve");
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.signal_shutdown();
    }
}

/// A response, read in full.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub json: Value,
}

impl Resp {
    /// The error code of an error body.
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    #[track_caller]
    pub fn expect(self, status: u16) -> Resp {
        assert_eq!(self.status, status, "unexpected response: {}", self.json);
        self
    }

    #[track_caller]
    pub fn expect_err(self, status: u16, code: &str) -> Resp {
        assert_eq!(
            (self.status, self.code()),
            (status, code),
            "unexpected response: {}",
            self.json
        );
        self
    }
}

#[derive(Debug, Clone)]
pub struct Client {
    pub addr: SocketAddr,
    pub headers: Vec<(String, String)>,
}

fn doc(mock: bool) -> &'static Value {
    static MOCK: OnceLock<Value> = OnceLock::new();
    static JWT: OnceLock<Value> = OnceLock::new();
    if mock {
        MOCK.get_or_init(|| ddms_server::openapi::document(true))
    } else {
        JWT.get_or_init(|| ddms_server::openapi::document(false))
    }
}

fn find_route(method: &str, path: &str) -> Option<&'static Route> {
    static ROUTER: OnceLock<matchit::Router<Vec<&'static Route>>> = OnceLock::new();
    let router = ROUTER.get_or_init(|| {
        let mut by_path: Vec<(&'static str, Vec<&'static Route>)> = Vec::new();
        for route in ROUTES {
            match by_path.iter_mut().find(|(p, _)| *p == route.path) {
                Some((_, v)) => v.push(route),
                None => by_path.push((route.path, vec![route])),
            }
        }
        let mut r = matchit::Router::new();
        for (p, routes) in by_path {
            r.insert(p, routes).expect("insert");
        }
        r
    });
    let path = path.split('?').next().unwrap_or(path);
    router
        .at(path)
        .ok()?
        .value
        .iter()
        .copied()
        .find(|r| r.verb.upper() == method)
}

/// Every response must be documented: its status listed for the operation (404 of
/// unknown routes and 405 aside) and its JSON body valid against the documented schema.
/// A 500 is always a failure.
#[track_caller]
pub fn check_conformance(method: &str, path: &str, r: &Resp) {
    assert_ne!(r.status, 500, "{method} {path} answered 500: {}", r.json);
    let Some(route) = find_route(method, path) else {
        assert!(
            matches!(r.status, 404 | 405),
            "{method} {path}: unknown route answered {}",
            r.status
        );
        return;
    };
    for doc in [doc(true), doc(false)] {
        let op = &doc["paths"][route.path][route.verb.lower()];
        let Some(resp) = op["responses"].get(r.status.to_string()) else {
            panic!(
                "{method} {path}: status {} is not documented ({})",
                r.status, r.json
            );
        };
        if let Some(schema) = resp["content"]["application/json"].get("schema") {
            if let Err(e) = ddms_server::openapi::validate(doc, schema, &r.json) {
                panic!(
                    "{method} {path} {}: body does not match the document: {e}\n{}",
                    r.status, r.json
                );
            }
            assert_eq!(
                r.header("content-type"),
                Some("application/json"),
                "{method} {path}"
            );
        }
    }
}

impl Client {
    pub fn header(mut self, k: &str, v: &str) -> Client {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }

    pub fn bearer(self, token: &str) -> Client {
        self.header("authorization", &format!("Bearer {token}"))
    }

    /// Sends a request and returns the raw response (body unread).
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Response<Incoming> {
        let stream = TcpStream::connect(self.addr).await.expect("connect");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string());
        for (k, v) in &self.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body))).expect("request");
        sender.send_request(req).await.expect("send")
    }

    /// Sends a request with raw headers and body; checks conformance.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Resp {
        let resp = self.send(method, path, headers, body).await;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let r = Resp {
            status,
            headers,
            json,
        };
        check_conformance(method, path, &r);
        r
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        match body {
            Some(b) => {
                self.raw(
                    method,
                    path,
                    &[("content-type", "application/json")],
                    serde_json::to_vec(&b).expect("json"),
                )
                .await
            }
            None => self.raw(method, path, &[], Vec::new()).await,
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.call("GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.call("POST", path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Resp {
        self.call("PATCH", path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.call("PUT", path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.call("DELETE", path, None).await
    }
}

/// URL-encodes a query parameter value.
pub fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Sets up `project` (title text required indexed, status enum, budget integer >= 0)
/// and `user` (name text required, email email unique), and `owns` (user -> project).
pub fn schema(tenant: TenantId) {
    let t = admin(tenant);
    t.create_entity_type(
        &serde_json::from_value(json!({
            "name": "project",
            "fields": [
                {"name": "title", "kind": "text", "required": true, "indexed": true, "max_length": 200},
                {"name": "status", "kind": "enum", "values": ["active", "done"], "default": "active"},
                {"name": "budget", "kind": "integer", "min": 0}
            ]
        }))
        .expect("def"),
    )
    .expect("project");
    t.create_entity_type(
        &serde_json::from_value(json!({
            "name": "user",
            "fields": [
                {"name": "name", "kind": "text", "required": true},
                {"name": "email", "kind": "email", "unique": true}
            ]
        }))
        .expect("def"),
    )
    .expect("user");
    t.create_relation_type(
        &serde_json::from_value(json!({
            "name": "owns", "source": "user", "target": "project", "cardinality": "one_to_many"
        }))
        .expect("def"),
    )
    .expect("owns");
}

/// Creates a project through the library; returns its id.
pub fn project(tenant: TenantId, title: &str) -> uuid::Uuid {
    admin(tenant)
        .records("project")
        .expect("type")
        .create(&json!({"title": title}))
        .expect("create")
        .id
}

/// Reads SSE text from a streaming response until `pred` holds on what was read (or
/// `limit` passes); returns the text read.
pub async fn read_sse_until(
    body: &mut Incoming,
    text: &mut String,
    limit: Duration,
    pred: impl Fn(&str) -> bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while !pred(text) {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return false,
            Ok(None) => return pred(text),
            Ok(Some(Err(_))) => return pred(text),
            Ok(Some(Ok(f))) => f,
        };
        if let Some(d) = frame.data_ref() {
            text.push_str(&String::from_utf8_lossy(d));
        }
    }
    true
}
