//! `GET /api/v1/events/stream`: replay, live events, resume, keep-alives, isolation.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

/// The `(id, event, data)` messages in SSE text.
fn messages(text: &str) -> Vec<(i64, String, Value)> {
    text.split("\n\n")
        .filter_map(|block| {
            let mut id = None;
            let mut event = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = v.parse().ok();
                } else if let Some(v) = line.strip_prefix("event: ") {
                    event = Some(v.to_string());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(v).ok();
                }
            }
            Some((id?, event?, data?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_replays_follows_and_resumes() {
    let server = TestServer::start(mock_config(&[("SSE_KEEP_ALIVE_MS", "300")])).await;
    let tenant = new_tenant("sse");
    schema(tenant); // 3 events: 2 entity types, 1 relation type
    project(tenant, "one");
    project(tenant, "two");
    let total = all_events(tenant).len();
    assert_eq!(total, 5);
    let c = server.tenant_client(tenant);

    let resp = c
        .send("GET", "/api/v1/events/stream", &[], Vec::new())
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "text/event-stream"
    );
    let mut body = resp.into_body();
    let mut text = String::new();
    assert!(
        read_sse_until(&mut body, &mut text, Duration::from_secs(5), |t| messages(
            t
        )
        .len()
            >= 5)
        .await,
        "replay: {text}"
    );
    let msgs = messages(&text);
    for (i, (id, event, data)) in msgs.iter().enumerate() {
        assert_eq!(data["seq"], *id);
        assert_eq!(data["kind"], event.as_str());
        if i > 0 {
            assert!(*id > msgs[i - 1].0);
        }
    }
    assert_eq!(msgs[0].1, "entity_type.created");
    assert_eq!(msgs[4].1, "record.created");
    let last_seq = msgs[4].0;

    // A live write arrives on the open stream.
    let id = project(tenant, "live");
    assert!(
        read_sse_until(&mut body, &mut text, Duration::from_secs(5), |t| t
            .contains(&id.to_string()))
        .await,
        "live event: {text}"
    );
    let live = messages(&text).pop().unwrap();
    assert_eq!(live.1, "record.created");
    assert_eq!(live.2["subject_id"], json!(id.to_string()));
    // Keep-alive comments on an idle stream.
    assert!(
        read_sse_until(&mut body, &mut text, Duration::from_secs(5), |t| t
            .contains(": keep-alive"))
        .await
    );
    drop(body);

    // Resume with Last-Event-ID (wins over ?after) and with ?after.
    for (headers, query, first) in [
        (
            vec![("last-event-id", last_seq.to_string())],
            "?after=1".to_string(),
            last_seq + 1,
        ),
        (vec![], "?after=2".to_string(), 3),
    ] {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let resp = c
            .send(
                "GET",
                &format!("/api/v1/events/stream{query}"),
                &h,
                Vec::new(),
            )
            .await;
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let mut text = String::new();
        assert!(
            read_sse_until(&mut body, &mut text, Duration::from_secs(5), |t| !messages(
                t
            )
            .is_empty())
            .await
        );
        assert_eq!(messages(&text)[0].0, first, "{query}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_per_tenant() {
    let server = TestServer::start(mock_config(&[])).await;
    let a = new_tenant("sse-a");
    let b = new_tenant("sse-b");
    schema(a);
    let resp = server
        .tenant_client(b)
        .send("GET", "/api/v1/events/stream", &[], Vec::new())
        .await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut text = String::new();
    let id = project(a, "a's secret");
    let leaked = read_sse_until(&mut body, &mut text, Duration::from_millis(1500), |t| {
        t.contains("id: ")
    })
    .await;
    assert!(!leaked, "B's stream shows A's events: {text}");
    assert!(!text.contains(&id.to_string()));

    // Bad resume points.
    server
        .tenant_client(b)
        .get("/api/v1/events/stream?after=-5")
        .await
        .expect_err(422, "invalid_cursor");
    server
        .tenant_client(b)
        .get("/api/v1/events/stream?after=x")
        .await
        .expect_err(400, "invalid_query_parameter");
}
