//! JWT mode: expired, forged, wrong-secret, wrong-algorithm and claim-less tokens are
//! 401 `unauthorized` and write nothing.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ddms_core::Role;
use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_unauthorized() {
    let server = TestServer::start(jwt_config(&[])).await;
    let tenant = new_tenant("jwt");
    schema(tenant);
    let t = tenant.to_string();
    let now = chrono::Utc::now().timestamp();
    let hs512 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
        &json!({"tenant_id": t, "sub": "u", "roles": ["admin"], "exp": now + 3600}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let none_alg = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(
            json!({"tenant_id": t, "sub": "u", "roles": ["admin"], "exp": now + 3600}).to_string()
        )
    );
    let good = token(tenant, "u", Role::Admin);
    let mut tampered = good.clone();
    // Flip a character of the payload: the signature no longer matches.
    let dot = tampered.find('.').unwrap() + 5;
    let c = tampered.as_bytes()[dot];
    tampered.replace_range(dot..dot + 1, if c == b'A' { "B" } else { "A" });

    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing header", None),
        ("basic scheme", Some("Basic dXNlcjpwYXNz".into())),
        ("empty bearer", Some("Bearer ".into())),
        ("garbage", Some("Bearer not.a.token".into())),
        (
            "expired",
            Some(format!(
                "Bearer {}",
                token_with(
                    json!({"tenant_id": t, "sub": "u", "roles": ["admin"], "exp": now - 3600}),
                    SECRET
                )
            )),
        ),
        (
            "not yet valid",
            Some(format!(
                "Bearer {}",
                token_with(
                    json!({"tenant_id": t, "sub": "u", "roles": ["admin"], "nbf": now + 3600}),
                    SECRET
                )
            )),
        ),
        (
            "wrong secret",
            Some(format!(
                "Bearer {}",
                token_with(
                    json!({"tenant_id": t, "sub": "u", "roles": ["admin"]}),
                    "some-other-secret-entirely"
                )
            )),
        ),
        ("tampered payload", Some(format!("Bearer {tampered}"))),
        ("hs512", Some(format!("Bearer {hs512}"))),
        ("alg none", Some(format!("Bearer {none_alg}"))),
        (
            "no exp",
            Some(format!(
                "Bearer {}",
                jsonwebtoken::encode(
                    &jsonwebtoken::Header::default(),
                    &json!({"tenant_id": t, "sub": "u", "roles": ["admin"]}),
                    &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes())
                )
                .unwrap()
            )),
        ),
        (
            "no tenant",
            Some(format!(
                "Bearer {}",
                token_with(json!({"sub": "u", "roles": ["admin"]}), SECRET)
            )),
        ),
        (
            "tenant not a uuid",
            Some(format!(
                "Bearer {}",
                token_with(
                    json!({"tenant_id": "acme", "sub": "u", "roles": ["admin"]}),
                    SECRET
                )
            )),
        ),
        (
            "no sub",
            Some(format!(
                "Bearer {}",
                token_with(json!({"tenant_id": t, "roles": ["admin"]}), SECRET)
            )),
        ),
        (
            "no roles",
            Some(format!(
                "Bearer {}",
                token_with(json!({"tenant_id": t, "sub": "u"}), SECRET)
            )),
        ),
        (
            "unknown roles only",
            Some(format!(
                "Bearer {}",
                token_with(
                    json!({"tenant_id": t, "sub": "u", "roles": ["root", "superuser"]}),
                    SECRET
                )
            )),
        ),
        (
            "roles of wrong type",
            Some(format!(
                "Bearer {}",
                token_with(
                    json!({"tenant_id": t, "sub": "u", "roles": {"admin": true}}),
                    SECRET
                )
            )),
        ),
    ];
    let feed = all_events(tenant).len();
    for (name, auth) in cases {
        let mut c = server.client();
        if let Some(a) = &auth {
            c = c.header("authorization", a);
        }
        let r = c.get("/api/v1/entity-types").await;
        assert_eq!(
            (r.status, r.code()),
            (401, "unauthorized"),
            "{name}: {}",
            r.json
        );
        assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{name}");
        let r = c
            .post(
                "/api/v1/entity-types/project/records",
                json!({"data": {"title": "x"}}),
            )
            .await;
        assert_eq!(
            (r.status, r.code()),
            (401, "unauthorized"),
            "{name}: {}",
            r.json
        );
        let r = c.post("/api/v1/tenants", json!({"name": "x"})).await;
        assert_eq!(r.status, 401, "{name}");
    }
    assert_eq!(all_events(tenant).len(), feed, "rejected tokens wrote");
    assert_eq!(record_count(tenant, "project"), 0);

    // Public routes need no token.
    server.client().get("/health").await.expect(200);
    server.client().get("/openapi.json").await.expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_tokens_and_claim_variants() {
    let server = TestServer::start(jwt_config(&[])).await;
    let tenant = new_tenant("jwt-ok");
    schema(tenant);
    let t = tenant.to_string();
    // `tenant` alias and comma-separated roles; the strongest role counts.
    let tok = token_with(
        json!({"tenant": t, "sub": "alice", "roles": "viewer, editor"}),
        SECRET,
    );
    let c = server.client().bearer(&tok);
    let r = c
        .post(
            "/api/v1/entity-types/project/records",
            json!({"data": {"title": "by alice"}}),
        )
        .await
        .expect(201);
    assert_eq!(r.json["created_by"], "alice");
    c.post("/api/v1/entity-types", json!({"name": "nope"}))
        .await
        .expect_err(403, "forbidden");
    // Lower-case scheme works too.
    server
        .client()
        .header("authorization", &format!("bearer {tok}"))
        .get("/api/v1/entity-types")
        .await
        .expect(200);
    // A valid token for a tenant that does not exist.
    let ghost = token(ddms_core::TenantId(uuid::Uuid::new_v4()), "u", Role::Admin);
    server
        .client()
        .bearer(&ghost)
        .get("/api/v1/entity-types")
        .await
        .expect_err(404, "not_found");
}
