//! Every route's happy path, over HTTP, in mock-auth mode.

use serde_json::{json, Value};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_openapi() {
    let server = TestServer::start(mock_config(&[])).await;
    let c = server.client();
    let r = c.get("/health").await.expect(200);
    assert_eq!(r.json, json!({"status": "ok", "database": "ok"}));

    let r = c.get("/openapi.json").await.expect(200);
    assert_eq!(r.json["openapi"], "3.0.3");
    let paths = r.json["paths"].as_object().unwrap();
    for route in ddms_server::routes::ROUTES {
        assert!(
            paths[route.path].get(route.verb.lower()).is_some(),
            "{} {} missing from /openapi.json",
            route.verb.upper(),
            route.path
        );
    }
    // Mock mode documents the tenant header; JWT mode the bearer scheme.
    let op = &r.json["paths"]["/api/v1/entity-types"]["get"];
    assert!(op["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "x-tenant-id"));
    let jwt = TestServer::start(jwt_config(&[])).await;
    let r = jwt.client().get("/openapi.json").await.expect(200);
    assert_eq!(
        r.json["paths"]["/api/v1/entity-types"]["get"]["security"],
        json!([{"bearerAuth": []}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_tenant_is_created_and_used_by_default() {
    let id = "55555555-5555-5555-5555-5555555555aa";
    let server = TestServer::start(mock_config(&[
        ("MOCK_TENANT_ID", id),
        ("MOCK_TENANT_NAME", "Mocked"),
    ]))
    .await;
    let t = store().get_tenant(id.parse().unwrap()).unwrap();
    assert_eq!(t.name, "Mocked");
    // No x-tenant-id: the mock tenant.
    let r = server
        .client()
        .get("/api/v1/entity-types")
        .await
        .expect(200);
    assert!(r.json["items"].is_array());
    // Idempotent on restart.
    let again = TestServer::start(mock_config(&[("MOCK_TENANT_ID", id)])).await;
    again.client().get("/api/v1/indexes").await.expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants() {
    let server = TestServer::start(mock_config(&[])).await;
    let c = server.client();
    let r = c
        .post("/api/v1/tenants", json!({"name": "Acme"}))
        .await
        .expect(201);
    assert_eq!(r.json["name"], "Acme");
    let id = uuid::Uuid::new_v4().to_string();
    let r = c
        .post("/api/v1/tenants", json!({"id": id, "name": "  Globex  "}))
        .await
        .expect(201);
    assert_eq!(r.json["id"], id);
    assert_eq!(r.json["name"], "Globex");
    c.post("/api/v1/tenants", json!({"id": id, "name": "Again"}))
        .await
        .expect_err(409, "already_exists");
    // The new tenant is usable at once.
    server
        .tenant_client(id.parse().unwrap())
        .get("/api/v1/entity-types")
        .await
        .expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entity_types_records_relations_events_indexes() {
    let server = TestServer::start(mock_config(&[])).await;
    let tenant = new_tenant("happy");
    let c = server.tenant_client(tenant);

    // ---- entity types
    let r = c
        .post(
            "/api/v1/entity-types",
            json!({"name": "project", "label": "Project", "fields": [
                {"name": "title", "kind": "text", "required": true, "indexed": true, "max_length": 200},
                {"name": "status", "kind": "enum", "values": ["active", "done"], "default": "active"},
                {"name": "budget", "kind": "integer", "min": 0}
            ]}),
        )
        .await
        .expect(201);
    assert_eq!(r.json["name"], "project");
    assert_eq!(r.json["version"], 1);
    c.post(
        "/api/v1/entity-types",
        json!({"name": "user", "fields": [
            {"name": "name", "kind": "text", "required": true},
            {"name": "email", "kind": "email", "unique": true}
        ]}),
    )
    .await
    .expect(201);
    let r = c.get("/api/v1/entity-types").await.expect(200);
    let names: Vec<&str> = r.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["project", "user"]);
    assert_eq!(r.json["next_cursor"], Value::Null);
    let r = c.get("/api/v1/entity-types/project").await.expect(200);
    assert_eq!(r.json["fields"].as_array().unwrap().len(), 3);
    let r = c
        .patch(
            "/api/v1/entity-types/project",
            json!({"label": "Projects", "add_fields": [{"name": "priority", "kind": "integer"}]}),
        )
        .await
        .expect(200);
    assert_eq!(r.json["label"], "Projects");
    assert_eq!(r.json["version"], 2);
    assert_eq!(r.json["fields"].as_array().unwrap().len(), 4);

    // ---- records: single and batch create
    let r = c
        .post(
            "/api/v1/entity-types/project/records",
            json!({"data": {"title": "Apollo", "budget": 100}}),
        )
        .await
        .expect(201);
    let apollo = r.json["id"].as_str().unwrap().to_string();
    assert_eq!(r.json["data"]["status"], "active");
    assert_eq!(r.json["version"], 1);
    assert_eq!(r.json["entity_type"], "project");
    assert_eq!(r.json["created_by"], "22222222-2222-2222-2222-222222222222");
    assert_eq!(r.header("etag"), Some("\"1\""));
    let r = c
        .post(
            "/api/v1/entity-types/project/records",
            json!({"records": [
                {"data": {"title": "Gemini", "budget": 50}},
                {"data": {"title": "Mercury", "budget": 10, "status": "done"}},
                {"data": {"title": "Artemis", "budget": 500}}
            ]}),
        )
        .await
        .expect(201);
    assert_eq!(r.json["items"].as_array().unwrap().len(), 3);

    // ---- list: filter, sort, limit, cursor, fields
    let filter = enc(&json!({"field": "budget", "op": "gte", "value": 50}).to_string());
    let r = c
        .get(&format!(
            "/api/v1/entity-types/project/records?filter={filter}&sort=-budget,title&limit=2&fields=title,budget"
        ))
        .await
        .expect(200);
    let titles = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["data"]["title"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(titles(&r.json), ["Artemis", "Apollo"]);
    assert!(
        r.json["items"][0]["data"].get("status").is_none(),
        "fields selects"
    );
    let cursor = r.json["next_cursor"].as_str().unwrap().to_string();
    let r = c
        .get(&format!(
            "/api/v1/entity-types/project/records?filter={filter}&sort=-budget,title&limit=2&fields=title,budget&cursor={}",
            enc(&cursor)
        ))
        .await
        .expect(200);
    assert_eq!(titles(&r.json), ["Gemini"]);
    assert_eq!(r.json["next_cursor"], Value::Null);
    let r = c
        .get("/api/v1/entity-types/project/records")
        .await
        .expect(200);
    assert_eq!(r.json["items"].as_array().unwrap().len(), 4);

    // ---- query by body
    let r = c
        .post(
            "/api/v1/entity-types/project/records/query",
            json!({"filter": {"or": [{"field": "status", "op": "eq", "value": "done"},
                                     {"field": "title", "op": "starts_with", "value": "Ap"}]},
                   "sort": [{"field": "title", "desc": false}], "limit": 10}),
        )
        .await
        .expect(200);
    assert_eq!(titles(&r.json), ["Apollo", "Mercury"]);
    let r = c
        .post("/api/v1/entity-types/project/records/query", json!({}))
        .await
        .expect(200);
    assert_eq!(r.json["items"].as_array().unwrap().len(), 4);

    // ---- get, patch (If-Match and body version), replace
    let rec = format!("/api/v1/entity-types/project/records/{apollo}");
    let r = c.get(&rec).await.expect(200);
    assert_eq!(r.json["data"]["title"], "Apollo");
    let r = c
        .raw(
            "PATCH",
            &rec,
            &[("content-type", "application/json"), ("if-match", "\"1\"")],
            br#"{"data":{"budget":150,"status":null}}"#.to_vec(),
        )
        .await
        .expect(200);
    assert_eq!(r.json["version"], 2);
    assert_eq!(r.json["data"]["budget"], 150);
    assert_eq!(r.json["data"]["status"], "active", "default re-applied");
    let r = c
        .patch(&rec, json!({"data": {"priority": 1}, "version": 2}))
        .await
        .expect(200);
    assert_eq!(r.json["version"], 3);
    assert_eq!(r.header("etag"), Some("\"3\""));
    c.patch(&rec, json!({"data": {"priority": 2}, "version": 2}))
        .await
        .expect_err(409, "version_conflict");
    let r = c
        .raw(
            "PUT",
            &rec,
            &[
                ("content-type", "application/json; charset=utf-8"),
                ("if-match", "3"),
            ],
            br#"{"data":{"title":"Apollo 11"}}"#.to_vec(),
        )
        .await
        .expect(200);
    assert_eq!(r.json["version"], 4);
    assert_eq!(
        r.json["data"],
        json!({"title": "Apollo 11", "status": "active"})
    );
    assert_eq!(r.json["updated_by"], "22222222-2222-2222-2222-222222222222");

    // ---- relation types and relations
    let r = c
        .post(
            "/api/v1/relation-types",
            json!({"name": "owns", "source": "user", "target": "project",
                   "cardinality": "one_to_many", "on_delete": "cascade"}),
        )
        .await
        .expect(201);
    assert_eq!(r.json["cardinality"], "one_to_many");
    let r = c.get("/api/v1/relation-types").await.expect(200);
    assert_eq!(r.json["items"][0]["name"], "owns");
    c.get("/api/v1/relation-types/owns").await.expect(200);
    let r = c
        .post(
            "/api/v1/entity-types/user/records",
            json!({"data": {"name": "Ada", "email": "ada@example.com"}}),
        )
        .await
        .expect(201);
    let ada = r.json["id"].as_str().unwrap().to_string();
    let r = c
        .post(
            "/api/v1/relations",
            json!({"type": "owns", "source_id": ada, "target_id": apollo, "data": {"since": 1969}}),
        )
        .await
        .expect(201);
    let rel = r.json["id"].as_str().unwrap().to_string();
    assert_eq!(r.json["data"]["since"], 1969);
    let r = c.get(&format!("/api/v1/relations/{rel}")).await.expect(200);
    assert_eq!(r.json["source_id"], ada);
    for (who, dir, n) in [
        (&ada, "out", 1),
        (&ada, "in", 0),
        (&apollo, "in", 1),
        (&apollo, "both", 1),
    ] {
        let r = c
            .get(&format!(
                "/api/v1/records/{who}/relations?type=owns&direction={dir}&limit=10"
            ))
            .await
            .expect(200);
        assert_eq!(r.json["items"].as_array().unwrap().len(), n, "{dir}");
    }
    c.get(&format!("/api/v1/records/{ada}/relations"))
        .await
        .expect(200);
    // Related filter.
    let f = enc(&json!({"related": {"type": "owns", "direction": "in",
                        "where": {"field": "name", "op": "eq", "value": "Ada"}}})
    .to_string());
    let r = c
        .get(&format!("/api/v1/entity-types/project/records?filter={f}"))
        .await
        .expect(200);
    assert_eq!(titles(&r.json), ["Apollo 11"]);
    c.delete(&format!("/api/v1/relations/{rel}"))
        .await
        .expect(204);
    c.get(&format!("/api/v1/relations/{rel}"))
        .await
        .expect_err(404, "not_found");

    // ---- events: paging with after/next
    let r = c.get("/api/v1/events?limit=3").await.expect(200);
    assert_eq!(r.json["events"].as_array().unwrap().len(), 3);
    assert_eq!(r.json["events"][0]["kind"], "entity_type.created");
    let next = r.json["next"].as_i64().unwrap();
    let r = c
        .get(&format!("/api/v1/events?after={next}&limit=1000"))
        .await
        .expect(200);
    let kinds: Vec<&str> = r.json["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for k in [
        "record.created",
        "record.updated",
        "relation.created",
        "relation.deleted",
    ] {
        assert!(kinds.contains(&k), "{k} in {kinds:?}");
    }
    let last = r.json["next"].as_i64().unwrap();
    let r = c
        .get(&format!("/api/v1/events?after={last}"))
        .await
        .expect(200);
    assert_eq!(r.json, json!({"events": [], "next": last}));

    // ---- indexes
    let r = c.get("/api/v1/indexes").await.expect(200);
    let idx: Vec<(String, String)> = r.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["entity_type"].as_str().unwrap().to_string(),
                i["field"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(idx.contains(&("project".into(), "title".into())), "{idx:?}");
    assert!(idx.contains(&("user".into(), "email".into())), "{idx:?}");

    // ---- deletes
    c.raw("DELETE", &rec, &[("if-match", "\"4\"")], Vec::new())
        .await
        .expect(204);
    c.get(&rec).await.expect_err(404, "not_found");
    c.delete("/api/v1/relation-types/owns").await.expect(204);
    c.get("/api/v1/relation-types/owns")
        .await
        .expect_err(404, "not_found");
    c.delete("/api/v1/entity-types/project").await.expect(204);
    c.get("/api/v1/entity-types/project")
        .await
        .expect_err(404, "not_found");
    c.get("/api/v1/entity-types/project/records")
        .await
        .expect_err(404, "not_found");
}
