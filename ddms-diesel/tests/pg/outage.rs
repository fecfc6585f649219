//! The database going away is `Unavailable` (never a panic), and the backend recovers
//! by itself when it comes back.

use ddms_core::{Error, Role, Scope, Store};
use ddms_diesel::harness::PgCluster;
use ddms_diesel::{migrate, PgBackend, PgConfig};
use serde_json::json;

#[test]
fn a_stopped_database_is_unavailable_and_the_pool_recovers() {
    let mut cluster = PgCluster::start_temp().unwrap();
    migrate(cluster.url()).unwrap();
    let mut cfg = PgConfig::new(cluster.url());
    cfg.pool_size = 2;
    cfg.connect_timeout_ms = 500;
    let backend = PgBackend::connect(&cfg).unwrap();
    let store = Store::new(backend.clone());
    let t = store.create_tenant(None, "outage").unwrap();
    let scope = store.tenant(Scope::new(t.id, "x", Role::Admin));
    scope
        .create_entity_type(
            &serde_json::from_value(
                json!({"name": "a", "fields": [{"name": "n", "kind": "integer"}]}),
            )
            .unwrap(),
        )
        .unwrap();
    backend.health().unwrap();

    cluster.stop().unwrap();
    for _ in 0..3 {
        let err = scope.entity_types().unwrap_err();
        assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
        assert!(matches!(backend.health(), Err(Error::Unavailable(_))));
    }

    cluster.start().unwrap();
    let mut ok = false;
    for _ in 0..50 {
        if backend.health().is_ok() && scope.entity_types().is_ok() {
            ok = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        ok,
        "the backend did not recover after the database came back"
    );
    let recs = scope.records("a").unwrap();
    recs.create(&json!({"n": 1})).unwrap();
    assert_eq!(recs.query(&Default::default()).unwrap().items.len(), 1);
}
