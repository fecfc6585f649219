//! The bad-input matrix: careless and hostile requests get the right 4xx status and
//! error code, never a 500, and write nothing.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

struct Case {
    name: &'static str,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
}

fn case(
    name: &'static str,
    method: &'static str,
    path: impl Into<String>,
    body: impl Into<Vec<u8>>,
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        name,
        method,
        path: path.into(),
        headers: vec![("content-type", "application/json".to_string())],
        body: body.into(),
        status,
        code,
    }
}

impl Case {
    fn header(mut self, k: &'static str, v: impl Into<String>) -> Case {
        self.headers.retain(|(n, _)| *n != k);
        self.headers.push((k, v.into()));
        self
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_matrix() {
    let server = TestServer::start(mock_config(&[])).await;
    let tenant = new_tenant("bad-input");
    schema(tenant);
    let p = project(tenant, "Existing");
    let t = admin(tenant);
    let u = t
        .records("user")
        .unwrap()
        .create(&json!({"name": "Ada", "email": "ada@example.com"}))
        .unwrap()
        .id;
    project(tenant, "Second");
    let cursor = t
        .records("project")
        .unwrap()
        .query(&ddms_core::Query {
            limit: Some(1),
            ..Default::default()
        })
        .unwrap()
        .next_cursor
        .unwrap();
    let mut tampered = cursor.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });

    let recs = "/api/v1/entity-types/project/records";
    let rec = format!("{recs}/{p}");
    let list = |q: &str| format!("{recs}?{q}");
    let filter = |f: serde_json::Value| list(&format!("filter={}", enc(&f.to_string())));
    let deep_json = format!("{}{}", "[".repeat(300), "]".repeat(300));
    let deep_filter = {
        let mut f = json!({"field": "title", "op": "eq", "value": "x"});
        for _ in 0..40 {
            f = json!({"not": f});
        }
        f
    };
    let big = {
        let mut s = String::from(r#"{"data":{"title":""#);
        s.push_str(&"x".repeat((1 << 20) + 10));
        s.push_str(r#""}}"#);
        s
    };

    let cases = vec![
        // Malformed JSON and bodies of the wrong shape.
        case(
            "truncated json",
            "POST",
            recs,
            r#"{"data":"#,
            400,
            "malformed_json",
        ),
        case("empty body", "POST", recs, "", 400, "malformed_json"),
        case(
            "trailing garbage",
            "POST",
            recs,
            r#"{"data":{"title":"a"}} x"#,
            400,
            "malformed_json",
        ),
        case(
            "not utf-8",
            "POST",
            recs,
            b"{\"data\":{\"title\":\"\xff\xfe\"}}".to_vec(),
            400,
            "malformed_json",
        ),
        case(
            "nested too deep",
            "POST",
            recs,
            deep_json,
            400,
            "malformed_json",
        ),
        case(
            "number out of range",
            "POST",
            recs,
            r#"{"data":{"budget":1e400}}"#,
            400,
            "malformed_json",
        ),
        case(
            "array body",
            "POST",
            recs,
            r#"[{"data":{"title":"a"}}]"#,
            422,
            "validation_failed",
        ),
        case(
            "data and records",
            "POST",
            recs,
            r#"{"data":{"title":"a"},"records":[]}"#,
            422,
            "validation_failed",
        ),
        case(
            "neither data nor records",
            "POST",
            recs,
            r#"{}"#,
            422,
            "validation_failed",
        ),
        case(
            "unknown top-level member",
            "POST",
            recs,
            r#"{"data":{"title":"a"},"extra":1}"#,
            422,
            "validation_failed",
        ),
        case(
            "data not an object",
            "POST",
            recs,
            r#"{"data":"title"}"#,
            422,
            "validation_failed",
        ),
        case(
            "wrong field type",
            "POST",
            recs,
            r#"{"data":{"title":5}}"#,
            422,
            "validation_failed",
        ),
        case(
            "unknown field",
            "POST",
            recs,
            r#"{"data":{"title":"a","bogus":1}}"#,
            422,
            "validation_failed",
        ),
        case(
            "missing required",
            "POST",
            recs,
            r#"{"data":{"budget":1}}"#,
            422,
            "validation_failed",
        ),
        case(
            "below minimum",
            "POST",
            recs,
            r#"{"data":{"title":"a","budget":-5}}"#,
            422,
            "validation_failed",
        ),
        case(
            "bad enum value",
            "POST",
            recs,
            r#"{"data":{"title":"a","status":"lost"}}"#,
            422,
            "validation_failed",
        ),
        case(
            "NUL in text",
            "POST",
            recs,
            r#"{"data":{"title":"a\u0000b"}}"#,
            422,
            "validation_failed",
        ),
        case(
            "too long",
            "POST",
            recs,
            format!(r#"{{"data":{{"title":"{}"}}}}"#, "x".repeat(201)),
            422,
            "validation_failed",
        ),
        case(
            "empty batch",
            "POST",
            recs,
            r#"{"records":[]}"#,
            422,
            "validation_failed",
        ),
        case(
            "batch with one bad record",
            "POST",
            recs,
            r#"{"records":[{"data":{"title":"ok"}},{"data":{"title":7}}]}"#,
            422,
            "validation_failed",
        ),
        case(
            "batch item with extra member",
            "POST",
            recs,
            r#"{"records":[{"data":{"title":"ok"},"id":"x"}]}"#,
            422,
            "validation_failed",
        ),
        case(
            "duplicate unique value",
            "POST",
            "/api/v1/entity-types/user/records",
            r#"{"data":{"name":"Eve","email":"ada@example.com"}}"#,
            409,
            "unique_violation",
        ),
        case(
            "bad email",
            "POST",
            "/api/v1/entity-types/user/records",
            r#"{"data":{"name":"Eve","email":"not-an-email"}}"#,
            422,
            "validation_failed",
        ),
        // Limits and media types.
        case(
            "oversized body",
            "POST",
            recs,
            big,
            413,
            "payload_too_large",
        ),
        case(
            "text/plain",
            "POST",
            recs,
            r#"{"data":{"title":"a"}}"#,
            415,
            "unsupported_media_type",
        )
        .header("content-type", "text/plain"),
        case(
            "form encoded",
            "POST",
            recs,
            "data=1",
            415,
            "unsupported_media_type",
        )
        .header("content-type", "application/x-www-form-urlencoded"),
        // Filters, sorts, limits, cursors, fields.
        case(
            "filter not json",
            "GET",
            list("filter=%7Bnope"),
            "",
            400,
            "invalid_filter",
        ),
        case(
            "filter unknown field",
            "GET",
            filter(json!({"field": "nope", "op": "eq", "value": 1})),
            "",
            422,
            "invalid_filter",
        ),
        case(
            "filter unknown op",
            "GET",
            filter(json!({"field": "title", "op": "like", "value": "a"})),
            "",
            422,
            "invalid_filter",
        ),
        case(
            "filter op does not fit kind",
            "GET",
            filter(json!({"field": "budget", "op": "starts_with", "value": "1"})),
            "",
            422,
            "invalid_filter",
        ),
        case(
            "filter value of wrong type",
            "GET",
            filter(json!({"field": "budget", "op": "gt", "value": "ten"})),
            "",
            422,
            "invalid_filter",
        ),
        case(
            "filter nested too deep",
            "GET",
            filter(deep_filter),
            "",
            422,
            "invalid_filter",
        ),
        case(
            "filter is a list",
            "GET",
            filter(json!([1, 2])),
            "",
            422,
            "invalid_filter",
        ),
        case(
            "filter unknown relation",
            "GET",
            filter(json!({"related": {"type": "nope"}})),
            "",
            422,
            "invalid_filter",
        ),
        case(
            "query body bad filter",
            "POST",
            format!("{recs}/query"),
            r#"{"filter":{"field":"title","op":"eq"}}"#,
            422,
            "invalid_filter",
        ),
        case(
            "query body unknown member",
            "POST",
            format!("{recs}/query"),
            r#"{"limit":5,"offset":10}"#,
            422,
            "validation_failed",
        ),
        case(
            "query body negative limit",
            "POST",
            format!("{recs}/query"),
            r#"{"limit":-1}"#,
            422,
            "validation_failed",
        ),
        case(
            "query body limit too big",
            "POST",
            format!("{recs}/query"),
            r#"{"limit":100000}"#,
            422,
            "invalid_query",
        ),
        case(
            "sort unknown field",
            "GET",
            list("sort=-nope"),
            "",
            422,
            "invalid_query",
        ),
        case(
            "sort empty",
            "GET",
            list("sort=,"),
            "",
            400,
            "invalid_query_parameter",
        ),
        case(
            "limit zero",
            "GET",
            list("limit=0"),
            "",
            422,
            "invalid_query",
        ),
        case(
            "limit not a number",
            "GET",
            list("limit=ten"),
            "",
            400,
            "invalid_query_parameter",
        ),
        case(
            "limit negative",
            "GET",
            list("limit=-1"),
            "",
            400,
            "invalid_query_parameter",
        ),
        case(
            "limit huge",
            "GET",
            list("limit=99999999999999999999999"),
            "",
            400,
            "invalid_query_parameter",
        ),
        case(
            "unknown query parameter",
            "GET",
            list("offset=10"),
            "",
            400,
            "invalid_query_parameter",
        ),
        case(
            "duplicate query parameter",
            "GET",
            list("limit=1&limit=2"),
            "",
            400,
            "invalid_query_parameter",
        ),
        case(
            "garbage cursor",
            "GET",
            list("cursor=garbage"),
            "",
            422,
            "invalid_cursor",
        ),
        case(
            "tampered cursor",
            "GET",
            list(&format!("limit=1&cursor={}", enc(&tampered))),
            "",
            422,
            "invalid_cursor",
        ),
        case(
            "cursor of another query",
            "GET",
            list(&format!("limit=1&sort=title&cursor={}", enc(&cursor))),
            "",
            422,
            "invalid_cursor",
        ),
        case(
            "unknown selected field",
            "GET",
            list("fields=title,nope"),
            "",
            422,
            "invalid_query",
        ),
        case(
            "empty field selection",
            "GET",
            list("fields="),
            "",
            400,
            "invalid_query_parameter",
        ),
        // Paths and names.
        case(
            "bad record uuid",
            "GET",
            format!("{recs}/not-a-uuid"),
            "",
            400,
            "invalid_id",
        ),
        case(
            "bad relation uuid",
            "DELETE",
            "/api/v1/relations/123",
            "",
            400,
            "invalid_id",
        ),
        case(
            "bad neighbour uuid",
            "GET",
            "/api/v1/records/xyz/relations",
            "",
            400,
            "invalid_id",
        ),
        case(
            "unknown record",
            "GET",
            format!("{recs}/{}", uuid::Uuid::new_v4()),
            "",
            404,
            "not_found",
        ),
        case(
            "unknown entity type",
            "GET",
            "/api/v1/entity-types/nope/records",
            "",
            404,
            "not_found",
        ),
        case(
            "invalid entity type name",
            "POST",
            "/api/v1/entity-types/NOPE%20x/records",
            r#"{"data":{}}"#,
            404,
            "not_found",
        ),
        case(
            "unknown relation type",
            "DELETE",
            "/api/v1/relation-types/nope",
            "",
            404,
            "not_found",
        ),
        case(
            "unknown route",
            "GET",
            "/api/v2/entity-types",
            "",
            404,
            "route_not_found",
        ),
        case(
            "wrong method",
            "PUT",
            "/api/v1/entity-types",
            r#"{}"#,
            405,
            "method_not_allowed",
        ),
        // Versions.
        case(
            "stale version",
            "PATCH",
            rec.clone(),
            r#"{"data":{"title":"x"},"version":99}"#,
            409,
            "version_conflict",
        ),
        case(
            "stale If-Match",
            "PUT",
            rec.clone(),
            r#"{"data":{"title":"x"}}"#,
            409,
            "version_conflict",
        )
        .header("if-match", "\"7\""),
        case(
            "garbage If-Match",
            "PATCH",
            rec.clone(),
            r#"{"data":{"title":"x"}}"#,
            400,
            "invalid_header",
        )
        .header("if-match", "\"abc\""),
        case(
            "If-Match and version disagree",
            "PATCH",
            rec.clone(),
            r#"{"data":{"title":"x"},"version":1}"#,
            422,
            "validation_failed",
        )
        .header("if-match", "2"),
        case(
            "stale delete",
            "DELETE",
            rec.clone(),
            "",
            409,
            "version_conflict",
        )
        .header("if-match", "5"),
        case(
            "version of wrong type",
            "PATCH",
            rec.clone(),
            r#"{"data":{"title":"x"},"version":"1"}"#,
            422,
            "validation_failed",
        ),
        case(
            "patch data not an object",
            "PATCH",
            rec.clone(),
            r#"{"data":[1]}"#,
            422,
            "validation_failed",
        ),
        case(
            "patch without data",
            "PATCH",
            rec.clone(),
            r#"{"version":1}"#,
            422,
            "validation_failed",
        ),
        case(
            "patch unknown field",
            "PATCH",
            rec.clone(),
            r#"{"data":{"nope":1}}"#,
            422,
            "validation_failed",
        ),
        // Schema.
        case(
            "entity type bad kind",
            "POST",
            "/api/v1/entity-types",
            r#"{"name":"thing","fields":[{"name":"a","kind":"blob"}]}"#,
            422,
            "validation_failed",
        ),
        case(
            "entity type reserved field",
            "POST",
            "/api/v1/entity-types",
            r#"{"name":"thing","fields":[{"name":"id","kind":"text"}]}"#,
            422,
            "validation_failed",
        ),
        case(
            "entity type bad name",
            "POST",
            "/api/v1/entity-types",
            r#"{"name":"Bad Name"}"#,
            422,
            "validation_failed",
        ),
        case(
            "entity type unknown member",
            "POST",
            "/api/v1/entity-types",
            r#"{"name":"thing","color":"red"}"#,
            422,
            "validation_failed",
        ),
        case(
            "entity type exists",
            "POST",
            "/api/v1/entity-types",
            r#"{"name":"project"}"#,
            409,
            "already_exists",
        ),
        case(
            "entity type bad pattern",
            "POST",
            "/api/v1/entity-types",
            r#"{"name":"thing","fields":[{"name":"a","kind":"text","pattern":"("}]}"#,
            422,
            "validation_failed",
        ),
        case(
            "patch kind change",
            "PATCH",
            "/api/v1/entity-types/project",
            r#"{"update_fields":[{"name":"title","kind":"integer"}]}"#,
            422,
            "validation_failed",
        ),
        case(
            "patch remove unknown field",
            "PATCH",
            "/api/v1/entity-types/project",
            r#"{"remove_fields":["nope"]}"#,
            422,
            "validation_failed",
        ),
        case(
            "delete type in use",
            "DELETE",
            "/api/v1/entity-types/user",
            "",
            409,
            "in_use",
        ),
        case(
            "relation type bad cardinality",
            "POST",
            "/api/v1/relation-types",
            r#"{"name":"r","source":"user","target":"project","cardinality":"lots"}"#,
            422,
            "validation_failed",
        ),
        case(
            "relation type unknown source",
            "POST",
            "/api/v1/relation-types",
            r#"{"name":"r","source":"nope","target":"project","cardinality":"one_to_one"}"#,
            404,
            "not_found",
        ),
        case(
            "relation type exists",
            "POST",
            "/api/v1/relation-types",
            r#"{"name":"owns","source":"user","target":"project","cardinality":"one_to_one"}"#,
            409,
            "already_exists",
        ),
        case(
            "relation unknown source",
            "POST",
            "/api/v1/relations",
            format!(
                r#"{{"type":"owns","source_id":"{}","target_id":"{p}"}}"#,
                uuid::Uuid::new_v4()
            ),
            404,
            "not_found",
        ),
        case(
            "relation wrong direction",
            "POST",
            "/api/v1/relations",
            format!(r#"{{"type":"owns","source_id":"{p}","target_id":"{u}"}}"#),
            422,
            "validation_failed",
        ),
        case(
            "relation bad uuid",
            "POST",
            "/api/v1/relations",
            r#"{"type":"owns","source_id":"x","target_id":"y"}"#,
            422,
            "validation_failed",
        ),
        case(
            "relation data not object",
            "POST",
            "/api/v1/relations",
            format!(r#"{{"type":"owns","source_id":"{u}","target_id":"{p}","data":5}}"#),
            422,
            "validation_failed",
        ),
        case(
            "tenant empty name",
            "POST",
            "/api/v1/tenants",
            r#"{"name":"  "}"#,
            422,
            "validation_failed",
        ),
        case(
            "tenant bad id",
            "POST",
            "/api/v1/tenants",
            r#"{"id":"nope","name":"x"}"#,
            422,
            "validation_failed",
        ),
        // Neighbours, events, headers.
        case(
            "bad direction",
            "GET",
            format!("/api/v1/records/{u}/relations?direction=sideways"),
            "",
            400,
            "invalid_query_parameter",
        ),
        case(
            "neighbours of unknown relation type",
            "GET",
            format!("/api/v1/records/{u}/relations?type=nope"),
            "",
            404,
            "not_found",
        ),
        case(
            "events after negative",
            "GET",
            "/api/v1/events?after=-1",
            "",
            422,
            "invalid_cursor",
        ),
        case(
            "events after not a number",
            "GET",
            "/api/v1/events?after=abc",
            "",
            400,
            "invalid_query_parameter",
        ),
        case(
            "events limit too big",
            "GET",
            "/api/v1/events?limit=5000",
            "",
            422,
            "invalid_query",
        ),
        case(
            "stream bad Last-Event-ID",
            "GET",
            "/api/v1/events/stream",
            "",
            400,
            "invalid_header",
        )
        .header("last-event-id", "yesterday"),
        case(
            "tenant header not a uuid",
            "GET",
            "/api/v1/entity-types",
            "",
            400,
            "invalid_header",
        )
        .header("x-tenant-id", "acme"),
        case(
            "unknown tenant",
            "POST",
            recs,
            r#"{"data":{"title":"a"}}"#,
            404,
            "not_found",
        )
        .header("x-tenant-id", uuid::Uuid::new_v4().to_string()),
    ];
    assert!(cases.len() >= 30);

    let c = server.tenant_client(tenant);
    let feed = all_events(tenant).len();
    let counts = (
        record_count(tenant, "project"),
        record_count(tenant, "user"),
    );
    for case in &cases {
        let headers: Vec<(&str, &str)> =
            case.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut client = c.clone();
        if let Some((_, v)) = case.headers.iter().find(|(k, _)| *k == "x-tenant-id") {
            client.headers.retain(|(k, _)| k != "x-tenant-id");
            client = client.header("x-tenant-id", v);
        }
        let headers: Vec<(&str, &str)> = headers
            .into_iter()
            .filter(|(k, _)| *k != "x-tenant-id")
            .collect();
        let r = client
            .raw(case.method, &case.path, &headers, case.body.clone())
            .await;
        assert_eq!(
            (r.status, r.code()),
            (case.status, case.code),
            "case `{}`: {}",
            case.name,
            r.json
        );
        assert!(
            r.json["error"]["message"].is_string(),
            "case `{}`",
            case.name
        );
        if r.status == 405 {
            assert_eq!(r.header("allow"), Some("GET, POST"), "case `{}`", case.name);
        }
        assert_eq!(all_events(tenant).len(), feed, "case `{}` wrote", case.name);
    }
    assert_eq!(
        (
            record_count(tenant, "project"),
            record_count(tenant, "user")
        ),
        counts,
        "bad input wrote records"
    );
    let rec = t.records("project").unwrap().get(p).unwrap();
    assert_eq!(
        (rec.version, rec.data["title"].as_str()),
        (1, Some("Existing"))
    );
}

/// Sends raw bytes and returns the status code of the response.
async fn raw_status(addr: std::net::SocketAddr, head: String, body: Vec<u8>) -> u16 {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        for chunk in body.chunks(64 * 1024) {
            if wr.write_all(chunk).await.is_err() {
                break;
            }
        }
        wr
    });
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match rd.read(&mut tmp).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    buf.extend_from_slice(&tmp[..n]);
                    if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no response in time");
    drop(writer);
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_limit_holds_against_chunked_and_lying_bodies() {
    let server = TestServer::start(mock_config(&[("BODY_LIMIT_BYTES", "4096")])).await;
    let tenant = new_tenant("limits");
    schema(tenant);
    let feed = all_events(tenant).len();
    let path = "/api/v1/entity-types/project/records";
    let head = |extra: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\nx-tenant-id: {tenant}\r\ncontent-type: application/json\r\n{extra}\r\n"
        )
    };
    let big_json = format!(r#"{{"data":{{"title":"{}"}}}}"#, "x".repeat(5000));

    // Chunked, no Content-Length: the limit applies while reading.
    let mut chunked = Vec::new();
    for piece in big_json.as_bytes().chunks(1000) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(
        raw_status(server.addr, head("transfer-encoding: chunked\r\n"), chunked).await,
        413
    );
    // Content-Length claims more than the limit (nothing sent): refused up front.
    assert_eq!(
        raw_status(
            server.addr,
            head("content-length: 100000000\r\n"),
            Vec::new()
        )
        .await,
        413
    );
    // Content-Length claims less than is sent: only that much is read, which is not
    // valid JSON.
    assert_eq!(
        raw_status(
            server.addr,
            head("content-length: 10\r\nconnection: close\r\n"),
            big_json.as_bytes()[..200].to_vec()
        )
        .await,
        400
    );
    // Within the limit it works.
    let small = r#"{"data":{"title":"fits"}}"#;
    assert_eq!(
        raw_status(
            server.addr,
            head(&format!("content-length: {}\r\n", small.len())),
            small.as_bytes().to_vec()
        )
        .await,
        201
    );
    assert_eq!(all_events(tenant).len(), feed + 1);
    assert_eq!(record_count(tenant, "project"), 1);
}
