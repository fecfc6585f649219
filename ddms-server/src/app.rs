//! [`App`]: the DDMS HTTP API as a value another service can mount.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ddms_core::{ConflictKind, CursorKey, Error, Scope, Store, Tenant, TenantId};
use ddms_diesel::subscribe::Subscription;
use http_body_util::{BodyExt, Limited};
use hyper::body::Body as HttpBody;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{HeaderMap, Request, Response, StatusCode};
use tokio::sync::watch;
use uuid::Uuid;

use crate::auth::Auth;
use crate::config::Config;
use crate::error::ApiError;
use crate::request::{parse_query, Ctx};
use crate::response::{full, Body};
use crate::routes::{Access, Route, ROUTES};

/// How long a tenant known to exist is trusted without asking the database again.
const TENANT_CACHE_TTL: Duration = Duration::from_secs(30);
/// Most tenants remembered.
const TENANT_CACHE_MAX: usize = 10_000;

/// A database health check: `Ok` when the database answers.
pub type HealthCheck = Arc<dyn Fn() -> ddms_core::Result<()> + Send + Sync>;

/// The DDMS HTTP API: routes, auth, limits and error mapping over a
/// [`ddms_core::Store`]. Cheap to clone (all clones share state).
///
/// Serve it with [`crate::serve`], or call [`App::handle`] from your own hyper service
/// to mount DDMS beside your routes.
#[derive(Clone)]
pub struct App {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    auth: Auth,
    body_limit: usize,
    request_timeout: Duration,
    sse_keep_alive: Duration,
    mock_tenant: Option<(TenantId, String)>,
    router: matchit::Router<Vec<&'static Route>>,
    health: RwLock<HealthCheck>,
    tenants: Mutex<HashMap<TenantId, Instant>>,
    shutdown: watch::Sender<bool>,
    openapi: Bytes,
    feed: RwLock<FeedSource>,
}

/// Opens a change-feed subscription for a scope, after a cursor (the event stream
/// route). The PostgreSQL backend's NOTIFY-driven [`ddms_diesel::PgBackend::subscribe`]
/// is installed by `ddms serve`; the default polls the store's backend.
pub type FeedSource = Arc<dyn Fn(&Scope, i64) -> Subscription + Send + Sync>;

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("auth", &self.inner.auth)
            .field("body_limit", &self.inner.body_limit)
            .field("request_timeout", &self.inner.request_timeout)
            .finish_non_exhaustive()
    }
}

fn build_router() -> matchit::Router<Vec<&'static Route>> {
    let mut by_path: Vec<(&'static str, Vec<&'static Route>)> = Vec::new();
    for r in ROUTES {
        match by_path.iter_mut().find(|(p, _)| *p == r.path) {
            Some((_, v)) => v.push(r),
            None => by_path.push((r.path, vec![r])),
        }
    }
    let mut router = matchit::Router::new();
    for (path, routes) in by_path {
        if let Err(e) = router.insert(path, routes) {
            // The table is static and covered by tests; this cannot happen at run time.
            panic!("invalid route {path}: {e}");
        }
    }
    router
}

impl App {
    /// The API over `store`, configured by `config` (auth mode, body limit, request
    /// timeout; cursors are signed with `config.cursor_secret`).
    pub fn new(store: Store, config: &Config) -> App {
        let store = store.with_cursor_key(CursorKey::from_secret(config.cursor_secret.as_bytes()));
        let auth = Auth::from_config(config);
        let openapi = crate::openapi::document(auth.is_mock());
        let openapi = Bytes::from(serde_json::to_vec(&openapi).unwrap_or_default());
        let probe = store.clone();
        let health: HealthCheck = Arc::new(move || match probe.get_tenant(TenantId(Uuid::nil())) {
            Ok(_) | Err(Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        });
        let (shutdown, _) = watch::channel(false);
        let polled = store.backend().clone();
        let feed: FeedSource = Arc::new(move |scope, after| {
            Subscription::polling(polled.clone(), scope, after, crate::sse::POLL_INTERVAL)
        });
        App {
            inner: Arc::new(Inner {
                store,
                mock_tenant: config
                    .mock_auth
                    .then(|| (config.mock_tenant_id, config.mock_tenant_name.clone())),
                auth,
                body_limit: config.body_limit,
                request_timeout: config.request_timeout,
                sse_keep_alive: config.sse_keep_alive,
                router: build_router(),
                health: RwLock::new(health),
                tenants: Mutex::new(HashMap::new()),
                shutdown,
                openapi,
                feed: RwLock::new(feed),
            }),
        }
    }

    /// Replaces the database health check used by `GET /health` (by default a tenant
    /// lookup; the PostgreSQL backend's own check is better).
    pub fn set_health_check(
        &self,
        check: impl Fn() -> ddms_core::Result<()> + Send + Sync + 'static,
    ) {
        let mut h = self
            .inner
            .health
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *h = Arc::new(check);
    }

    /// Replaces how event streams follow the feed (by default: polling the store).
    pub fn set_feed(&self, feed: impl Fn(&Scope, i64) -> Subscription + Send + Sync + 'static) {
        let mut f = self
            .inner
            .feed
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *f = Arc::new(feed);
    }

    /// A subscription to `scope`'s feed after `after`.
    pub(crate) fn subscribe(&self, scope: &Scope, after: i64) -> Subscription {
        let f = self
            .inner
            .feed
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        f(scope, after)
    }

    /// The store (with the configured cursor key).
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Every route.
    pub fn routes() -> &'static [Route] {
        ROUTES
    }

    /// Runs the health check (blocking: call it on the blocking pool).
    pub fn check_health(&self) -> ddms_core::Result<()> {
        let check = self
            .inner
            .health
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        check()
    }

    /// In mock mode, creates the mock tenant (`MOCK_TENANT_ID`, `MOCK_TENANT_NAME`)
    /// unless it exists; returns it. Does nothing (`None`) in JWT mode. Blocking.
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub fn ensure_mock_tenant(&self) -> ddms_core::Result<Option<Tenant>> {
        let Some((id, name)) = &self.inner.mock_tenant else {
            return Ok(None);
        };
        let store = &self.inner.store;
        let tenant = match store.get_tenant(*id) {
            Ok(t) => t,
            Err(Error::NotFound { .. }) => match store.create_tenant(Some(*id), name) {
                Ok(t) => t,
                Err(Error::Conflict {
                    kind: ConflictKind::AlreadyExists,
                    ..
                }) => store.get_tenant(*id)?,
                Err(e) => return Err(e),
            },
            Err(e) => return Err(e),
        };
        self.remember_tenant(tenant.id);
        Ok(Some(tenant))
    }

    /// Ends every open event stream (part of a graceful shutdown; [`crate::serve`]
    /// calls it).
    pub fn shutdown_streams(&self) {
        self.inner.shutdown.send_replace(true);
    }

    pub(crate) fn sse_keep_alive(&self) -> Duration {
        self.inner.sse_keep_alive
    }

    pub(crate) fn shutdown_receiver(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    pub(crate) fn openapi_response(&self) -> Response<Body> {
        let mut resp = Response::new(full(self.inner.openapi.clone()));
        resp.headers_mut().insert(
            CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json"),
        );
        resp
    }

    /// The OpenAPI document served at `/openapi.json`.
    pub fn openapi(&self) -> serde_json::Value {
        serde_json::from_slice(&self.inner.openapi).unwrap_or_default()
    }

    pub(crate) fn remember_tenant(&self, id: TenantId) {
        let mut cache = self
            .inner
            .tenants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() >= TENANT_CACHE_MAX {
            cache.clear();
        }
        cache.insert(id, Instant::now());
    }

    /// 404 unless the tenant exists (remembered for a while once seen).
    async fn check_tenant(&self, id: TenantId) -> Result<(), ApiError> {
        {
            let cache = self
                .inner
                .tenants
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if cache
                .get(&id)
                .is_some_and(|t| t.elapsed() < TENANT_CACHE_TTL)
            {
                return Ok(());
            }
        }
        let store = self.inner.store.clone();
        crate::handlers::blocking(move || store.get_tenant(id)).await?;
        self.remember_tenant(id);
        Ok(())
    }

    /// Answers one request. Never fails: every error is a JSON error response. The
    /// request body may be any hyper body (e.g. [`hyper::body::Incoming`]).
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: HttpBody<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let started = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let app = self.clone();
        // Own task: a panic becomes a 500 instead of a dropped connection, and a client
        // that goes away does not cancel a write half-way.
        let task = tokio::spawn(async move { app.dispatch(req).await });
        let abort = task.abort_handle();
        let resp = match tokio::time::timeout(self.inner.request_timeout, task).await {
            Ok(Ok(Ok(resp))) => resp,
            Ok(Ok(Err(e))) => e.into_response(),
            Ok(Err(join)) => ApiError::internal(format!("handler failed: {join}")).into_response(),
            Err(_) => {
                abort.abort();
                ApiError::timeout().into_response()
            }
        };
        let status = resp.status();
        let ms = started.elapsed().as_millis() as u64;
        if status.is_server_error() {
            tracing::warn!(%method, %path, status = status.as_u16(), ms, "request");
        } else if status.is_client_error() {
            tracing::info!(%method, %path, status = status.as_u16(), ms, "request");
        } else {
            tracing::debug!(%method, %path, status = status.as_u16(), ms, "request");
        }
        resp
    }

    async fn dispatch<B>(self, req: Request<B>) -> Result<Response<Body>, ApiError>
    where
        B: HttpBody<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = req.into_parts();
        let matched = self
            .inner
            .router
            .at(parts.uri.path())
            .map_err(|_| ApiError::route_not_found())?;
        let Some(route) = matched
            .value
            .iter()
            .copied()
            .find(|r| r.verb.method() == parts.method)
        else {
            let allow: Vec<&str> = matched.value.iter().map(|r| r.verb.upper()).collect();
            return Err(ApiError::method_not_allowed(allow.join(", ")));
        };
        let params: Vec<(String, String)> = matched
            .params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();

        let scope = match route.access {
            Access::Public => None,
            Access::System(role) | Access::Tenant(role) => {
                let scope = self.inner.auth.authenticate(&parts.headers)?;
                if scope.role < role {
                    return Err(Error::Forbidden(format!(
                        "{} {} needs the {} role; the caller has {}",
                        route.verb.upper(),
                        route.path,
                        role.as_str(),
                        scope.role.as_str()
                    ))
                    .into());
                }
                if matches!(route.access, Access::Tenant(_)) {
                    self.check_tenant(scope.tenant).await?;
                }
                Some(scope)
            }
        };

        let query = parse_query(route, parts.uri.query())?;
        let body = if route.verb.has_body() {
            check_content_type(&parts.headers)?;
            read_body(body, &parts.headers, self.inner.body_limit).await?
        } else {
            Bytes::new()
        };

        let ctx = Ctx {
            app: self,
            headers: parts.headers,
            params,
            query,
            scope,
            body,
        };
        crate::handlers::call(route.endpoint, ctx).await
    }
}

/// JSON bodies only: `application/json` or `application/*+json` (a missing
/// content-type is taken as JSON).
fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(v) = headers.get(CONTENT_TYPE) else {
        return Ok(());
    };
    let text = v.to_str().unwrap_or("");
    let essence = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
    {
        Ok(())
    } else {
        Err(ApiError::unsupported_media_type(text))
    }
}

/// Reads the body, never more than `limit` bytes whatever `Content-Length` says
/// (chunked bodies included).
async fn read_body<B>(body: B, headers: &HeaderMap, limit: usize) -> Result<Bytes, ApiError>
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if let Some(len) = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        if len > limit as u64 {
            return Err(ApiError::payload_too_large(limit));
        }
    }
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ApiError::payload_too_large(limit))
        }
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("could not read the request body: {e}"),
        )),
    }
}
