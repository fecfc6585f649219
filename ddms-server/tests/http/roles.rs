//! Every role against every route family (JWT mode): viewers read, editors also write
//! records and relations, admins also change the schema and create tenants. A refused
//! call is 403 `forbidden` and writes nothing.

use ddms_core::{Role, TenantId};
use serde_json::json;

use crate::support::*;

/// Checks a call made with `role` against the role the route needs: success with
/// `ok_status`, or 403 and an unchanged change feed.
#[track_caller]
fn check(
    role: Role,
    needed: Role,
    resp: Resp,
    ok_status: u16,
    tenant: TenantId,
    feed_before: usize,
) {
    if role >= needed {
        assert_eq!(resp.status, ok_status, "{role:?}: {}", resp.json);
    } else {
        assert_eq!(
            (resp.status, resp.code()),
            (403, "forbidden"),
            "{role:?}: {}",
            resp.json
        );
        assert_eq!(
            all_events(tenant).len(),
            feed_before,
            "a refused call wrote"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_against_every_route_family() {
    let server = TestServer::start(jwt_config(&[])).await;
    let tenant = new_tenant("roles");
    schema(tenant);
    let p0 = project(tenant, "P0");
    let t = admin(tenant);
    let u0 = t
        .records("user")
        .unwrap()
        .create(&json!({"name": "U0"}))
        .unwrap()
        .id;
    let rel0 = t
        .create_relation(
            &serde_json::from_value(json!({"type": "owns", "source_id": u0, "target_id": p0}))
                .unwrap(),
        )
        .unwrap()
        .id;

    for role in [Role::Viewer, Role::Editor, Role::Admin] {
        let c = server.jwt_client(tenant, role);
        let r = role.as_str();

        // Reads: every role.
        for path in [
            "/api/v1/entity-types".to_string(),
            "/api/v1/entity-types/project".into(),
            "/api/v1/entity-types/project/records".into(),
            format!("/api/v1/entity-types/project/records/{p0}"),
            "/api/v1/relation-types".into(),
            "/api/v1/relation-types/owns".into(),
            format!("/api/v1/relations/{rel0}"),
            format!("/api/v1/records/{u0}/relations"),
            "/api/v1/events".into(),
            "/api/v1/indexes".into(),
        ] {
            c.get(&path).await.expect(200);
        }
        c.post(
            "/api/v1/entity-types/project/records/query",
            json!({"limit": 5}),
        )
        .await
        .expect(200);
        let stream = c
            .send("GET", "/api/v1/events/stream", &[], Vec::new())
            .await;
        assert_eq!(stream.status(), 200);
        drop(stream);

        // Records and relations: editor.
        let feed = all_events(tenant).len();
        let resp = c
            .post(
                "/api/v1/entity-types/project/records",
                json!({"data": {"title": r}}),
            )
            .await;
        check(role, Role::Editor, resp, 201, tenant, feed);
        let feed = all_events(tenant).len();
        let resp = c
            .post(
                "/api/v1/entity-types/project/records",
                json!({"records": [{"data": {"title": r}}]}),
            )
            .await;
        check(role, Role::Editor, resp, 201, tenant, feed);
        for (method, status) in [("PATCH", 200), ("PUT", 200), ("DELETE", 204)] {
            let p = project(tenant, "victim");
            let feed = all_events(tenant).len();
            let path = format!("/api/v1/entity-types/project/records/{p}");
            let resp = if method == "DELETE" {
                c.delete(&path).await
            } else {
                c.call(method, &path, Some(json!({"data": {"title": "changed"}})))
                    .await
            };
            check(role, Role::Editor, resp, status, tenant, feed);
        }
        let p = project(tenant, "target");
        let feed = all_events(tenant).len();
        let resp = c
            .post(
                "/api/v1/relations",
                json!({"type": "owns", "source_id": u0, "target_id": p}),
            )
            .await;
        check(role, Role::Editor, resp, 201, tenant, feed);
        let p = project(tenant, "target2");
        let rel = t
            .create_relation(
                &serde_json::from_value(json!({"type": "owns", "source_id": u0, "target_id": p}))
                    .unwrap(),
            )
            .unwrap()
            .id;
        let feed = all_events(tenant).len();
        let resp = c.delete(&format!("/api/v1/relations/{rel}")).await;
        check(role, Role::Editor, resp, 204, tenant, feed);

        // Schema: admin.
        let feed = all_events(tenant).len();
        let resp = c
            .post(
                "/api/v1/entity-types",
                json!({"name": format!("made_by_{r}"), "fields": [{"name": "x", "kind": "text"}]}),
            )
            .await;
        check(role, Role::Admin, resp, 201, tenant, feed);
        let ty = format!("scratch_{r}");
        t.create_entity_type(
            &serde_json::from_value(json!({"name": ty, "fields": [{"name": "x", "kind": "text"}]}))
                .unwrap(),
        )
        .unwrap();
        let feed = all_events(tenant).len();
        let resp = c
            .patch(
                &format!("/api/v1/entity-types/{ty}"),
                json!({"add_fields": [{"name": "y", "kind": "integer"}]}),
            )
            .await;
        check(role, Role::Admin, resp, 200, tenant, feed);
        let feed = all_events(tenant).len();
        let resp = c
            .post(
                "/api/v1/relation-types",
                json!({"name": format!("rel_{r}"), "source": "user", "target": ty,
                       "cardinality": "many_to_many"}),
            )
            .await;
        check(role, Role::Admin, resp, 201, tenant, feed);
        let rt = format!("rt_{r}");
        t.create_relation_type(
            &serde_json::from_value(json!({"name": rt, "source": "user", "target": "user",
                                           "cardinality": "many_to_many"}))
            .unwrap(),
        )
        .unwrap();
        let feed = all_events(tenant).len();
        let resp = c.delete(&format!("/api/v1/relation-types/{rt}")).await;
        check(role, Role::Admin, resp, 204, tenant, feed);
        let gone = format!("gone_{r}");
        t.create_entity_type(&serde_json::from_value(json!({"name": gone})).unwrap())
            .unwrap();
        let feed = all_events(tenant).len();
        let resp = c.delete(&format!("/api/v1/entity-types/{gone}")).await;
        check(role, Role::Admin, resp, 204, tenant, feed);

        // Tenants: admin.
        let id = uuid::Uuid::new_v4();
        let resp = c
            .post("/api/v1/tenants", json!({"id": id, "name": "new"}))
            .await;
        check(
            role,
            Role::Admin,
            resp,
            201,
            tenant,
            all_events(tenant).len(),
        );
        assert_eq!(
            store().get_tenant(TenantId(id)).is_ok(),
            role == Role::Admin,
            "{r}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_roles_apply_in_mock_mode() {
    let server = TestServer::start(mock_config(&[("MOCK_ROLES", "viewer")])).await;
    let tenant = new_tenant("mock-viewer");
    schema(tenant);
    let c = server.tenant_client(tenant);
    c.get("/api/v1/entity-types").await.expect(200);
    c.post(
        "/api/v1/entity-types/project/records",
        json!({"data": {"title": "x"}}),
    )
    .await
    .expect_err(403, "forbidden");
    c.post("/api/v1/tenants", json!({"name": "nope"}))
        .await
        .expect_err(403, "forbidden");
    assert_eq!(record_count(tenant, "project"), 0);
}
