//! Cross-tenant attempts see nothing and change nothing.

use ddms_core::Role;
use serde_json::{json, Value};

use crate::support::*;

fn ids(v: &Value) -> Vec<String> {
    v["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| r["id"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

async fn attack(a_tenant: ddms_core::TenantId, b: &Client) {
    let t = admin(a_tenant);
    let p = t
        .records("project")
        .unwrap()
        .query(&Default::default())
        .unwrap()
        .items[0]
        .id
        .to_string();
    let u = t
        .records("user")
        .unwrap()
        .query(&Default::default())
        .unwrap()
        .items[0]
        .id
        .to_string();
    let rel = t
        .neighbours(
            u.parse().unwrap(),
            None,
            ddms_core::Direction::Out,
            None,
            None,
        )
        .unwrap()
        .items[0]
        .id
        .to_string();
    let a_events = all_events(a_tenant);

    let rec = format!("/api/v1/entity-types/project/records/{p}");
    b.get(&rec).await.expect_err(404, "not_found");
    let r = b
        .get("/api/v1/entity-types/project/records")
        .await
        .expect(200);
    assert!(!ids(&r.json).contains(&p));
    let r = b
        .post(
            "/api/v1/entity-types/project/records/query",
            json!({"filter": {"field": "id", "op": "eq", "value": p}}),
        )
        .await
        .expect(200);
    assert!(ids(&r.json).is_empty());
    let f = enc(&json!({"field": "title", "op": "eq", "value": "secret"}).to_string());
    let r = b
        .get(&format!("/api/v1/entity-types/project/records?filter={f}"))
        .await
        .expect(200);
    assert!(ids(&r.json).is_empty());
    b.patch(&rec, json!({"data": {"title": "pwned"}}))
        .await
        .expect_err(404, "not_found");
    b.put(&rec, json!({"data": {"title": "pwned"}}))
        .await
        .expect_err(404, "not_found");
    b.delete(&rec).await.expect_err(404, "not_found");
    b.get(&format!("/api/v1/relations/{rel}"))
        .await
        .expect_err(404, "not_found");
    b.delete(&format!("/api/v1/relations/{rel}"))
        .await
        .expect_err(404, "not_found");
    b.get(&format!("/api/v1/records/{u}/relations"))
        .await
        .expect_err(404, "not_found");
    b.post(
        "/api/v1/relations",
        json!({"type": "owns", "source_id": u, "target_id": p}),
    )
    .await
    .expect_err(404, "not_found");
    // A's cursor does not work for B.
    let cursor = t
        .records("project")
        .unwrap()
        .query(&ddms_core::Query {
            limit: Some(1),
            ..Default::default()
        })
        .unwrap()
        .next_cursor
        .expect("A has two projects");
    b.get(&format!(
        "/api/v1/entity-types/project/records?limit=1&cursor={}",
        enc(&cursor)
    ))
    .await
    .expect_err(422, "invalid_cursor");
    // B's feed mentions none of A's objects.
    let r = b.get("/api/v1/events?limit=1000").await.expect(200);
    let text = r.json.to_string();
    for id in [&p, &u, &rel] {
        assert!(!text.contains(id.as_str()), "B's feed leaks {id}");
    }
    assert!(!text.contains("secret"));

    // A is untouched.
    let after = all_events(a_tenant);
    assert_eq!(after.len(), a_events.len());
    let rec = t
        .records("project")
        .unwrap()
        .get(p.parse().unwrap())
        .unwrap();
    assert_eq!(rec.version, 1);
    assert!(t.relation(rel.parse().unwrap()).is_ok());
}

fn setup_a(name: &str) -> ddms_core::TenantId {
    let a = new_tenant(name);
    schema(a);
    let t = admin(a);
    let p = project(a, "secret");
    project(a, "secret two");
    let u = t
        .records("user")
        .unwrap()
        .create(&json!({"name": "A's user", "email": "a@example.com"}))
        .unwrap()
        .id;
    t.create_relation(
        &serde_json::from_value(json!({"type": "owns", "source_id": u, "target_id": p})).unwrap(),
    )
    .unwrap();
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_tenants_see_nothing_mock_mode() {
    let server = TestServer::start(mock_config(&[])).await;
    let a = setup_a("tenant-a");
    let b = new_tenant("tenant-b");
    schema(b);
    project(b, "b's own");
    let bc = server.tenant_client(b);
    attack(a, &bc).await;
    // B still sees its own data.
    let r = bc
        .get("/api/v1/entity-types/project/records")
        .await
        .expect(200);
    assert_eq!(r.json["items"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_tenants_see_nothing_jwt_mode() {
    let server = TestServer::start(jwt_config(&[])).await;
    let a = setup_a("tenant-a-jwt");
    let b = new_tenant("tenant-b-jwt");
    schema(b);
    // x-tenant-id is ignored in JWT mode: the token's tenant counts.
    let bc = server
        .jwt_client(b, Role::Admin)
        .header("x-tenant-id", &a.to_string());
    attack(a, &bc).await;
}
