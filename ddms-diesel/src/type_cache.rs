//! A short-lived cache of entity types, so a request does not spend a transaction
//! re-reading its type. Staleness is bounded and guarded: every write checks the type
//! version in its own statement, and a query that finds no rows re-checks it, answering
//! `Conflict::Concurrent` on a mismatch (the core handle then reloads and retries once).
//! Index readiness (which does not bump versions) reaches a process within the TTL; a
//! stale "not ready" only means the correct, unindexed path.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ddms_core::EntityType;
use parking_lot::RwLock;
use uuid::Uuid;

/// (tenant, type name) → (type, when it was read).
type Entries = HashMap<(Uuid, String), (Arc<EntityType>, Instant)>;

#[derive(Debug, Default)]
pub(crate) struct TypeCache {
    ttl: Duration,
    entries: RwLock<Entries>,
}

impl TypeCache {
    pub fn new(ttl: Duration) -> Self {
        TypeCache {
            ttl,
            entries: RwLock::new(HashMap::new()),
        }
    }

    pub fn get(&self, tenant: Uuid, name: &str) -> Option<Arc<EntityType>> {
        if self.ttl.is_zero() {
            return None;
        }
        let g = self.entries.read();
        let (t, at) = g.get(&(tenant, name.to_string()))?;
        (at.elapsed() < self.ttl).then(|| t.clone())
    }

    pub fn put(&self, tenant: Uuid, t: Arc<EntityType>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut g = self.entries.write();
        if g.len() > 50_000 {
            g.retain(|_, (_, at)| at.elapsed() < self.ttl);
        }
        g.insert((tenant, t.name.to_string()), (t, Instant::now()));
    }

    pub fn forget_tenant(&self, tenant: Uuid) {
        self.entries.write().retain(|(t, _), _| *t != tenant);
    }

    pub fn forget(&self, tenant: Uuid, name: &str) {
        self.entries.write().remove(&(tenant, name.to_string()));
    }
}
