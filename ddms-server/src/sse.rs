//! `GET /api/v1/events/stream`: the change feed as Server-Sent Events.
//!
//! Each event is written as `id: <seq>`, `event: <kind>`, `data: <event json>`. A client
//! resumes after the last id it saw with the `Last-Event-ID` header (browsers send it on
//! reconnect) or `?after=<seq>`; without either the stream starts at the beginning of
//! the retained feed. A comment line is sent every [`KEEP_ALIVE`] so that proxies keep
//! the connection open (`SSE_KEEP_ALIVE_MS`). The feed is polled every [`POLL_INTERVAL`]; streams end when the
//! server shuts down or the client goes away.

use std::time::Duration;

use bytes::Bytes;
use ddms_core::{Event, TenantScope};
use http_body_util::BodyExt;
use hyper::Response;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::ApiError;
use crate::handlers::blocking;
use crate::request::Ctx;
use crate::response::{stream_response, Body};

/// How often the feed is polled for new events.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How often a keep-alive comment is sent on an idle stream (default of
/// `SSE_KEEP_ALIVE_MS`).
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Events read per poll.
const PAGE: usize = 500;
/// The reconnection delay suggested to clients (`retry:`), in milliseconds.
const RETRY_MS: u64 = 2000;

/// Formats one event as an SSE message.
pub fn format_event(e: &Event) -> String {
    let data = serde_json::to_string(e).unwrap_or_else(|_| "{}".into());
    format!(
        "id: {}\nevent: {}\ndata: {}\n\n",
        e.seq,
        e.kind.as_str(),
        data
    )
}

pub(crate) async fn stream(ctx: Ctx) -> Result<Response<Body>, ApiError> {
    let after = match ctx.last_event_id()? {
        Some(id) => id,
        None => ctx.query_i64("after")?.unwrap_or(0),
    };
    let tenant = ctx.tenant()?;
    // The first page is read before answering, so that a bad cursor or an unavailable
    // database is an ordinary error response rather than a broken stream.
    let t = tenant.clone();
    let first = blocking(move || t.events(after, Some(PAGE))).await?;

    let (tx, body) = http_body_util::channel::Channel::<Bytes>::new(8);
    let shutdown = ctx.app.shutdown_receiver();
    let keep_alive = ctx.app.sse_keep_alive();
    tokio::spawn(pump(
        tenant,
        first.events,
        first.next,
        tx,
        shutdown,
        keep_alive,
    ));
    let mut resp = stream_response("text/event-stream", body.boxed());
    resp.headers_mut().insert(
        hyper::header::HeaderName::from_static("x-accel-buffering"),
        hyper::header::HeaderValue::from_static("no"),
    );
    Ok(resp)
}

type Sender = http_body_util::channel::Sender<Bytes>;

async fn send(tx: &mut Sender, text: String) -> bool {
    tx.send_data(Bytes::from(text)).await.is_ok()
}

/// Writes events to the client until it goes away, the server shuts down, or the feed
/// can no longer be followed (cursor expired, tenant gone).
async fn pump(
    tenant: TenantScope,
    first: Vec<Event>,
    mut after: i64,
    mut tx: Sender,
    mut shutdown: watch::Receiver<bool>,
    keep_alive: Duration,
) {
    if !send(&mut tx, format!("retry: {RETRY_MS}\n: connected\n\n")).await {
        return;
    }
    let mut full_page = first.len() >= PAGE;
    for e in &first {
        if !send(&mut tx, format_event(e)).await {
            return;
        }
    }
    let mut last_write = Instant::now();
    loop {
        if *shutdown.borrow() {
            return;
        }
        if !full_page {
            tokio::select! {
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
                _ = shutdown.changed() => return,
            }
        }
        let t = tenant.clone();
        match blocking(move || t.events(after, Some(PAGE))).await {
            Ok(page) => {
                full_page = page.events.len() >= PAGE;
                for e in &page.events {
                    if !send(&mut tx, format_event(e)).await {
                        return;
                    }
                    last_write = Instant::now();
                }
                after = page.next.max(after);
            }
            Err(e) if e.status.as_u16() == 503 => {
                // The database is away: keep the stream and try again.
                full_page = false;
            }
            Err(e) => {
                let body = e.body();
                let _ = send(&mut tx, format!("event: error\ndata: {body}\n\n")).await;
                return;
            }
        }
        if last_write.elapsed() >= keep_alive {
            if !send(&mut tx, ": keep-alive\n\n".into()).await {
                return;
            }
            last_write = Instant::now();
        }
    }
}
