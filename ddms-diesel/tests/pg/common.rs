//! Shared setup: one migrated database per test process, one store over it.

use std::sync::OnceLock;

use ddms_core::Store;
use ddms_diesel::{harness, migrate, PgBackend, PgConfig};

#[allow(dead_code)]
pub struct Db {
    /// Superuser (or owner) URL of the test database.
    pub url: String,
    pub backend: PgBackend,
    pub store: Store,
}

/// The process-wide migrated test database.
pub fn db() -> &'static Db {
    static DB: OnceLock<Db> = OnceLock::new();
    DB.get_or_init(|| {
        let url = harness::fresh_database("ddms_test").expect("test database");
        migrate(&url).expect("migrate");
        let mut cfg = PgConfig::new(&url);
        cfg.pool_size = 12;
        let backend = PgBackend::connect(&cfg).expect("connect");
        Db {
            url,
            store: Store::new(backend.clone()),
            backend,
        }
    })
}

pub fn store() -> Store {
    db().store.clone()
}
