//! `GET /api/v1/events/stream`: the change feed as Server-Sent Events.
//!
//! Each event is written as `id: <seq>`, `event: <kind>`, `data: <event json>`. A client
//! resumes after the last id it saw with the `Last-Event-ID` header (browsers send it on
//! reconnect) or `?after=<seq>`; without either the stream starts at the beginning of
//! the retained feed. A comment line is sent every [`KEEP_ALIVE`] so that proxies keep
//! the connection open (`SSE_KEEP_ALIVE_MS`). Events arrive through the app's feed
//! source: with PostgreSQL a NOTIFY-driven subscription (commit → client in a few ms),
//! otherwise polling every [`POLL_INTERVAL`]. Streams end when the server shuts down or
//! the client goes away.

use std::time::Duration;

use bytes::Bytes;
use ddms_core::Event;
use ddms_diesel::subscribe::Subscription;
use http_body_util::BodyExt;
use hyper::Response;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::ApiError;
use crate::handlers::blocking;
use crate::request::Ctx;
use crate::response::{stream_response, Body};

/// How often the feed is polled when no NOTIFY-driven feed is installed (the in-memory
/// backend, embedders that do not call `App::set_feed`).
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How long the blocking side waits for events before checking that the client is
/// still there.
const WAIT: Duration = Duration::from_millis(500);
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
    // Both are checked, even though Last-Event-ID wins: a bad value is always an error.
    let after_param = ctx.query_i64("after")?;
    if after_param.is_some_and(|a| a < 0) {
        return Err(ApiError::from(ddms_core::Error::InvalidCursor(
            "event cursor must be a non-negative integer".into(),
        )));
    }
    let after = match ctx.last_event_id()? {
        Some(id) => id,
        None => after_param.unwrap_or(0),
    };
    let tenant = ctx.tenant()?;
    // The first page is read before answering, so that a bad cursor or an unavailable
    // database is an ordinary error response rather than a broken stream.
    let t = tenant.clone();
    let first = blocking(move || t.events(after, Some(PAGE))).await?;

    let (tx, body) = http_body_util::channel::Channel::<Bytes>::new(8);
    let shutdown = ctx.app.shutdown_receiver();
    let keep_alive = ctx.app.sse_keep_alive();
    let subscription = ctx.app.subscribe(tenant.scope(), first.next);
    tokio::spawn(pump(subscription, first.events, tx, shutdown, keep_alive));
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
/// can no longer be followed (cursor expired, tenant gone). The subscription blocks, so
/// it runs on the blocking pool and hands batches over a channel; it notices a closed
/// client within [`WAIT`].
async fn pump(
    mut subscription: Subscription,
    first: Vec<Event>,
    mut tx: Sender,
    mut shutdown: watch::Receiver<bool>,
    keep_alive: Duration,
) {
    if !send(&mut tx, format!("retry: {RETRY_MS}\n: connected\n\n")).await {
        return;
    }
    for e in &first {
        if !send(&mut tx, format_event(e)).await {
            return;
        }
    }
    let (etx, mut erx) = tokio::sync::mpsc::channel::<Result<Vec<Event>, ApiError>>(4);
    tokio::task::spawn_blocking(move || loop {
        match subscription.next_batch(PAGE, WAIT) {
            Ok(batch) if batch.is_empty() => {
                if etx.is_closed() {
                    return;
                }
            }
            Ok(batch) => {
                if etx.blocking_send(Ok(batch)).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = etx.blocking_send(Err(ApiError::from(e)));
                return;
            }
        }
    });
    let mut last_write = Instant::now();
    loop {
        tokio::select! {
            msg = erx.recv() => match msg {
                Some(Ok(batch)) => {
                    for e in &batch {
                        if !send(&mut tx, format_event(e)).await {
                            return;
                        }
                    }
                    last_write = Instant::now();
                }
                Some(Err(e)) => {
                    let body = e.body();
                    let _ = send(&mut tx, format!("event: error\ndata: {body}\n\n")).await;
                    return;
                }
                None => return,
            },
            _ = tokio::time::sleep_until(last_write + keep_alive) => {
                if !send(&mut tx, ": keep-alive\n\n".into()).await {
                    return;
                }
                last_write = Instant::now();
            }
            _ = shutdown.changed() => return,
        }
    }
}
