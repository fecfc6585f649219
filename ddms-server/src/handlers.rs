//! One thin handler per endpoint: parse the request, call the library on the blocking
//! pool, map the result. No business logic lives here.

use ddms_core::{
    Direction, EntityTypePatch, Filter, NewEntityType, NewRelation, NewRelationType, Page, Query,
    Record, SortKey, TenantId,
};
use hyper::header::{HeaderValue, ETAG};
use hyper::{Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::error::ApiError;
use crate::request::{from_value, Ctx};
use crate::response::{json_response, no_content, Body};
use crate::routes::Endpoint;

type HandlerResult = Result<Response<Body>, ApiError>;

thread_local! {
    static INLINE_WORKER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks the calling thread as a worker of a runtime sized for blocking library calls
/// (`ddms serve` starts one worker per pooled connection and calls this from
/// `on_thread_start`): [`blocking`] then runs calls in place on it.
pub fn mark_inline_worker() {
    INLINE_WORKER.with(|w| w.set(true));
}

/// Runs library work (Diesel is synchronous) and maps its error.
///
/// - On a worker marked by [`mark_inline_worker`] it simply runs: the runtime of
///   `ddms serve` has as many workers as the pool has connections, so a worker blocked
///   on the database costs no hand-off at all. Measured on GET by id: 54 µs of server
///   CPU per request, against 101 µs with `block_in_place` (which wakes a thread to
///   take over the worker's queue on every call) — see BENCHMARKS.md.
/// - On other multi-thread runtimes (an embedder's) in place with `block_in_place`.
/// - Elsewhere (single-thread test runtimes) on the blocking pool.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> ddms_core::Result<T> + Send + 'static,
    T: Send + 'static,
{
    use tokio::runtime::{Handle, RuntimeFlavor};
    if INLINE_WORKER.with(std::cell::Cell::get) {
        return f().map_err(ApiError::from);
    }
    if Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread {
        return tokio::task::block_in_place(f).map_err(ApiError::from);
    }
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) => Err(ApiError::internal(format!("blocking task failed: {e}"))),
    }
}

/// Calls the handler of `endpoint`.
pub(crate) async fn call(endpoint: Endpoint, ctx: Ctx) -> HandlerResult {
    match endpoint {
        Endpoint::Health => health(ctx).await,
        Endpoint::OpenApi => Ok(ctx.app.openapi_response()),
        Endpoint::CreateTenant => create_tenant(ctx).await,
        Endpoint::ListEntityTypes => list_entity_types(ctx).await,
        Endpoint::CreateEntityType => create_entity_type(ctx).await,
        Endpoint::GetEntityType => get_entity_type(ctx).await,
        Endpoint::PatchEntityType => patch_entity_type(ctx).await,
        Endpoint::DeleteEntityType => delete_entity_type(ctx).await,
        Endpoint::ListRecords => list_records(ctx).await,
        Endpoint::CreateRecords => create_records(ctx).await,
        Endpoint::QueryRecords => query_records(ctx).await,
        Endpoint::GetRecord => get_record(ctx).await,
        Endpoint::PatchRecord => write_record(ctx, false).await,
        Endpoint::ReplaceRecord => write_record(ctx, true).await,
        Endpoint::DeleteRecord => delete_record(ctx).await,
        Endpoint::ListRelationTypes => list_relation_types(ctx).await,
        Endpoint::CreateRelationType => create_relation_type(ctx).await,
        Endpoint::GetRelationType => get_relation_type(ctx).await,
        Endpoint::DeleteRelationType => delete_relation_type(ctx).await,
        Endpoint::CreateRelation => create_relation(ctx).await,
        Endpoint::GetRelation => get_relation(ctx).await,
        Endpoint::DeleteRelation => delete_relation(ctx).await,
        Endpoint::ListNeighbours => list_neighbours(ctx).await,
        Endpoint::ListEvents => list_events(ctx).await,
        Endpoint::EventStream => crate::sse::stream(ctx).await,
        Endpoint::ListIndexes => list_indexes(ctx).await,
    }
}

fn ok<T: Serialize + ?Sized>(v: &T) -> HandlerResult {
    Ok(json_response(StatusCode::OK, v))
}

fn created<T: Serialize + ?Sized>(v: &T) -> HandlerResult {
    Ok(json_response(StatusCode::CREATED, v))
}

/// A list without further pages: `{"items":[..],"next_cursor":null}`.
fn all<T>(items: Vec<T>) -> Page<T> {
    Page {
        items,
        next_cursor: None,
    }
}

fn record_response<D: Serialize>(status: StatusCode, r: &Record<D>) -> HandlerResult {
    let mut resp = json_response(status, r);
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", r.version)) {
        resp.headers_mut().insert(ETAG, v);
    }
    Ok(resp)
}

// ---- system ------------------------------------------------------------------------

async fn health(ctx: Ctx) -> HandlerResult {
    let app = ctx.app.clone();
    let healthy = matches!(
        tokio::task::spawn_blocking(move || app.check_health()).await,
        Ok(Ok(()))
    );
    if healthy {
        ok(&json!({"status": "ok", "database": "ok"}))
    } else {
        Ok(json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "unavailable", "database": "unavailable"}),
        ))
    }
}

/// `POST /api/v1/tenants` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTenant {
    #[serde(default)]
    id: Option<Uuid>,
    name: String,
}

async fn create_tenant(ctx: Ctx) -> HandlerResult {
    let body: NewTenant = ctx.json()?;
    let store = ctx.app.store().clone();
    let tenant = blocking(move || store.create_tenant(body.id.map(TenantId), &body.name)).await?;
    ctx.app.remember_tenant(tenant.id);
    created(&tenant)
}

// ---- entity types ------------------------------------------------------------------

async fn list_entity_types(ctx: Ctx) -> HandlerResult {
    let t = ctx.tenant()?;
    ok(&all(blocking(move || t.entity_types()).await?))
}

async fn create_entity_type(ctx: Ctx) -> HandlerResult {
    let body: NewEntityType = ctx.json()?;
    let t = ctx.tenant()?;
    created(&blocking(move || t.create_entity_type(&body)).await?)
}

async fn get_entity_type(ctx: Ctx) -> HandlerResult {
    let (t, name) = (ctx.tenant()?, ctx.param("name").to_string());
    ok(&*blocking(move || t.entity_type(&name)).await?)
}

async fn patch_entity_type(ctx: Ctx) -> HandlerResult {
    let body: EntityTypePatch = ctx.json()?;
    let (t, name) = (ctx.tenant()?, ctx.param("name").to_string());
    ok(&blocking(move || t.update_entity_type(&name, &body)).await?)
}

async fn delete_entity_type(ctx: Ctx) -> HandlerResult {
    let (t, name) = (ctx.tenant()?, ctx.param("name").to_string());
    blocking(move || t.delete_entity_type(&name)).await?;
    Ok(no_content())
}

// ---- records -----------------------------------------------------------------------

/// Builds a [`Query`] from `?filter&sort&limit&cursor&fields`.
fn list_query(ctx: &Ctx) -> Result<Query, ApiError> {
    let filter = match ctx.query("filter") {
        None => None,
        Some(raw) => {
            let v: Value = serde_json::from_str(raw).map_err(|e| {
                ApiError::bad_request("invalid_filter", format!("filter is not valid JSON: {e}"))
            })?;
            Some(Filter::from_json(&v)?)
        }
    };
    let sort = match ctx.query("sort") {
        None => Vec::new(),
        Some(raw) => {
            let keys = SortKey::parse_list(raw);
            if keys.is_empty() || keys.iter().any(|k| k.field.is_empty()) {
                return Err(ApiError::query_param(
                    "sort",
                    "sort must list fields, e.g. -created_at,title",
                ));
            }
            keys
        }
    };
    Ok(Query {
        filter,
        sort,
        limit: ctx.query_usize("limit")?,
        cursor: ctx.query("cursor").map(String::from),
        fields: ctx.query_list("fields")?,
    })
}

async fn list_records(ctx: Ctx) -> HandlerResult {
    let q = list_query(&ctx)?;
    let (t, name) = (ctx.tenant()?, ctx.param("name").to_string());
    ok(&blocking(move || t.records(&name)?.query_raw(&q)).await?)
}

/// `POST .../records` body: one record or a batch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    records: Option<Vec<RecordData>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordData {
    data: Value,
}

async fn create_records(ctx: Ctx) -> HandlerResult {
    let body: CreateBody = ctx.json()?;
    let (t, name) = (ctx.tenant()?, ctx.param("name").to_string());
    match (body.data, body.records) {
        (Some(data), None) => {
            let r = blocking(move || t.records(&name)?.create(&data)).await?;
            record_response(StatusCode::CREATED, &r)
        }
        (None, Some(rows)) => {
            let rows: Vec<Value> = rows.into_iter().map(|r| r.data).collect();
            let items = blocking(move || t.records(&name)?.create_many(&rows)).await?;
            created(&json!({ "items": items }))
        }
        _ => Err(ddms_core::Error::invalid(
            "body",
            "invalid_body",
            "send either {\"data\":{..}} or {\"records\":[{\"data\":{..}},..]}",
        )
        .into()),
    }
}

async fn query_records(ctx: Ctx) -> HandlerResult {
    let v = ctx.json_value()?;
    // Check the filter first, so that its errors keep their kind and path.
    if let Some(f) = v.get("filter").filter(|f| !f.is_null()) {
        Filter::from_json(f)?;
    }
    let q: Query = from_value(v)?;
    let (t, name) = (ctx.tenant()?, ctx.param("name").to_string());
    ok(&blocking(move || t.records(&name)?.query_raw(&q)).await?)
}

async fn get_record(ctx: Ctx) -> HandlerResult {
    let id = ctx.id_param("id")?;
    let (t, name) = (ctx.tenant()?, ctx.param("name").to_string());
    let r = blocking(move || t.records(&name)?.get_raw(id)).await?;
    record_response(StatusCode::OK, &r)
}

/// `PATCH`/`PUT .../records/{id}` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordWrite {
    data: Value,
    #[serde(default)]
    version: Option<i64>,
}

/// The expected version from the body and `If-Match`; both must agree when both are given.
fn expected_version(ctx: &Ctx, body: Option<i64>) -> Result<Option<i64>, ApiError> {
    let header = ctx.if_match()?;
    match (body, header) {
        (Some(b), Some(h)) if b != h => Err(ddms_core::Error::invalid(
            "version",
            "version_mismatch",
            format!("body version {b} and If-Match version {h} differ"),
        )
        .into()),
        (b, h) => Ok(b.or(h)),
    }
}

async fn write_record(ctx: Ctx, replace: bool) -> HandlerResult {
    let id = ctx.id_param("id")?;
    let body: RecordWrite = ctx.json()?;
    let version = expected_version(&ctx, body.version)?;
    let (t, name) = (ctx.tenant()?, ctx.param("name").to_string());
    let r = blocking(move || {
        let records = t.records(&name)?;
        if replace {
            records.replace(id, &body.data, version)
        } else {
            records.patch(id, &body.data, version)
        }
    })
    .await?;
    record_response(StatusCode::OK, &r)
}

async fn delete_record(ctx: Ctx) -> HandlerResult {
    let id = ctx.id_param("id")?;
    let version = ctx.if_match()?;
    let (t, name) = (ctx.tenant()?, ctx.param("name").to_string());
    blocking(move || t.records(&name)?.delete(id, version)).await?;
    Ok(no_content())
}

// ---- relations ---------------------------------------------------------------------

async fn list_relation_types(ctx: Ctx) -> HandlerResult {
    let t = ctx.tenant()?;
    ok(&all(blocking(move || t.relation_types()).await?))
}

async fn create_relation_type(ctx: Ctx) -> HandlerResult {
    let body: NewRelationType = ctx.json()?;
    let t = ctx.tenant()?;
    created(&blocking(move || t.create_relation_type(&body)).await?)
}

async fn get_relation_type(ctx: Ctx) -> HandlerResult {
    let (t, name) = (ctx.tenant()?, ctx.param("name").to_string());
    ok(&blocking(move || t.relation_type(&name)).await?)
}

async fn delete_relation_type(ctx: Ctx) -> HandlerResult {
    let (t, name) = (ctx.tenant()?, ctx.param("name").to_string());
    blocking(move || t.delete_relation_type(&name)).await?;
    Ok(no_content())
}

async fn create_relation(ctx: Ctx) -> HandlerResult {
    let body: NewRelation = ctx.json()?;
    let t = ctx.tenant()?;
    created(&blocking(move || t.create_relation(&body)).await?)
}

async fn get_relation(ctx: Ctx) -> HandlerResult {
    let id = ctx.id_param("id")?;
    let t = ctx.tenant()?;
    ok(&blocking(move || t.relation(id)).await?)
}

async fn delete_relation(ctx: Ctx) -> HandlerResult {
    let id = ctx.id_param("id")?;
    let t = ctx.tenant()?;
    blocking(move || t.delete_relation(id)).await?;
    Ok(no_content())
}

async fn list_neighbours(ctx: Ctx) -> HandlerResult {
    let id = ctx.id_param("id")?;
    let direction = match ctx.query("direction") {
        None | Some("out") => Direction::Out,
        Some("in") => Direction::In,
        Some("both") => Direction::Both,
        Some(_) => {
            return Err(ApiError::query_param(
                "direction",
                "direction must be out, in or both",
            ))
        }
    };
    let limit = ctx.query_usize("limit")?;
    let rel_type = ctx.query("type").map(String::from);
    let cursor = ctx.query("cursor").map(String::from);
    let t = ctx.tenant()?;
    ok(&blocking(move || {
        t.neighbours(id, rel_type.as_deref(), direction, limit, cursor.as_deref())
    })
    .await?)
}

// ---- events and indexes ------------------------------------------------------------

async fn list_events(ctx: Ctx) -> HandlerResult {
    let after = ctx.query_i64("after")?.unwrap_or(0);
    let limit = ctx.query_usize("limit")?;
    let t = ctx.tenant()?;
    ok(&blocking(move || t.events(after, limit)).await?)
}

async fn list_indexes(ctx: Ctx) -> HandlerResult {
    let t = ctx.tenant()?;
    ok(&all(blocking(move || t.indexes()).await?))
}
