//! Retention of the change feed: deleting old events and advancing the horizon.
//!
//! A tenant's feed keeps `tenant_feeds.horizon`: every event with `seq <= horizon` may
//! have been deleted, so reading after a cursor below it fails with
//! [`ddms_core::Error::CursorExpired`] (carrying the horizon to restart from) instead of
//! silently skipping events.
//!
//! Pruning deletes a *prefix* of the feed: the events before the first one that is not
//! older than the cutoff (by its `at` time). An old event that follows a newer one (a
//! long transaction commits late with its start time) is kept until the prefix reaches
//! it, so no event younger than the cutoff is ever deleted, and the horizon is always
//! the highest deleted seq. Events of transactions still in flight are never touched:
//! their seq is above every committed one (the per-tenant counter row stays locked until
//! they commit), and only committed events are seen.
//!
//! The work runs as the RLS-bound app role, one tenant-scoped transaction per chunk of
//! at most [`PRUNE_CHUNK`] events; tenants are enumerated from `tenant_directory`, a list
//! of tenant ids without RLS and without tenant data (see the second migration).

use std::time::Duration;

use ddms_core::{Result, Scope};
use diesel::sql_types::{BigInt, Nullable, Uuid as SqlUuid};
use diesel::{PgConnection, QueryableByName, RunQueryDsl};
use uuid::Uuid;

use crate::backend::{PgBackend, TxResult};
use crate::error::{map_db, map_pool};
use crate::sql::{Bind, Sql};

/// Most events deleted per transaction.
pub const PRUNE_CHUNK: i64 = 10_000;

/// The actor recorded for retention work.
const ACTOR: &str = "system:retention";

#[derive(QueryableByName)]
struct Bounds {
    #[diesel(sql_type = BigInt)]
    horizon: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    target: Option<i64>,
}

#[derive(QueryableByName)]
struct TenantRow {
    #[diesel(sql_type = SqlUuid)]
    tenant_id: Uuid,
}

#[derive(QueryableByName)]
struct HorizonRow {
    #[diesel(sql_type = BigInt)]
    horizon: i64,
    #[diesel(sql_type = BigInt)]
    seq: i64,
}

/// Where a tenant's feed stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedBounds {
    /// The oldest valid cursor: events up to it may have been pruned.
    pub horizon: i64,
    /// The last seq handed out (its event may still be uncommitted).
    pub last_seq: i64,
}

impl PgBackend {
    /// Deletes, for every tenant, the events older than `older_than` (a prefix of each
    /// feed, see the [module docs](crate::retention)) and advances the horizons. Returns
    /// how many events were deleted. Cursors below a horizon then get `CursorExpired`.
    pub fn prune_events(&self, older_than: Duration) -> Result<u64> {
        let tenants: Vec<TenantRow> = {
            let mut conn = self.pool.get().map_err(map_pool)?;
            diesel::sql_query("SELECT tenant_id FROM tenant_directory ORDER BY tenant_id")
                .load(conn.unbound().map_err(map_db)?)
                .map_err(map_db)?
        };
        let mut total = 0;
        for t in tenants {
            match self.prune_tenant(t.tenant_id, older_than) {
                Ok(n) => total += n,
                // Deleted meanwhile.
                Err(ddms_core::Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(total)
    }

    /// [`PgBackend::prune_events`] for one tenant.
    pub fn prune_tenant_events(&self, scope: &Scope, older_than: Duration) -> Result<u64> {
        self.prune_tenant(scope.tenant.0, older_than)
    }

    /// The horizon and last seq of a tenant's feed.
    pub fn feed_bounds(&self, scope: &Scope) -> Result<FeedBounds> {
        self.tx(scope, |c| {
            let mut s = Sql::new();
            s.push("SELECT horizon, seq FROM tenant_feeds WHERE tenant_id = ")
                .bind(Bind::Uuid(scope.tenant.0));
            let rows: Vec<HorizonRow> = s.query().load(c)?;
            let r = rows
                .into_iter()
                .next()
                .ok_or_else(|| ddms_core::Error::not_found("tenant", scope.tenant))?;
            Ok(FeedBounds {
                horizon: r.horizon,
                last_seq: r.seq,
            })
        })
    }

    fn prune_tenant(&self, tenant: Uuid, older_than: Duration) -> Result<u64> {
        let secs = older_than.as_secs_f64();
        let (mut horizon, target) = self.tx_as(tenant, ACTOR, &mut |c| bounds(c, tenant, secs))?;
        let mut deleted = 0u64;
        while horizon < target {
            let upto = target.min(horizon.saturating_add(PRUNE_CHUNK));
            deleted += self.tx_as(tenant, ACTOR, &mut |c| {
                let mut s = Sql::new();
                let t = s.param(Bind::Uuid(tenant));
                let lo = s.param(Bind::Int(horizon));
                let hi = s.param(Bind::Int(upto));
                s.push(&format!(
                    "DELETE FROM events WHERE tenant_id = {t} AND seq > {lo} AND seq <= {hi}"
                ));
                let n = s.query().execute(c)?;
                // Last, so the feed row (which writers lock) is held only until commit.
                let mut s = Sql::new();
                let t = s.param(Bind::Uuid(tenant));
                let hi = s.param(Bind::Int(upto));
                s.push(&format!(
                    "UPDATE tenant_feeds SET horizon = greatest(horizon, {hi}) WHERE tenant_id = {t}"
                ));
                s.query().execute(c)?;
                Ok(n as u64)
            })?;
            horizon = upto;
        }
        Ok(deleted)
    }
}

/// The current horizon and the highest seq that may be pruned: just below the first
/// committed event that is not older than the cutoff, or the last committed event when
/// all are older.
fn bounds(c: &mut PgConnection, tenant: Uuid, older_than_secs: f64) -> TxResult<(i64, i64)> {
    let mut s = Sql::new();
    let t = s.param(Bind::Uuid(tenant));
    let age = s.param(Bind::Float(older_than_secs));
    s.push(&format!(
        "SELECT f.horizon, COALESCE( \
           (SELECT e.seq - 1 FROM events e WHERE e.tenant_id = {t} AND e.seq > f.horizon \
              AND e.at >= now() - make_interval(secs => {age}) ORDER BY e.seq LIMIT 1), \
           (SELECT max(e.seq) FROM events e WHERE e.tenant_id = {t})) AS target \
         FROM tenant_feeds f WHERE f.tenant_id = {t}"
    ));
    let rows: Vec<Bounds> = s.query().load(c)?;
    let r = rows
        .into_iter()
        .next()
        .ok_or_else(|| ddms_core::Error::not_found("tenant", tenant))?;
    Ok((r.horizon, r.target.unwrap_or(r.horizon).max(r.horizon)))
}

/// Prunes every tenant's events older than `keep` on a background thread, every
/// `every`, until the handle is stopped or dropped. Errors are logged, never fatal.
pub fn spawn_retention(
    backend: PgBackend,
    keep: Duration,
    every: Duration,
) -> crate::periodic::Periodic {
    crate::periodic::Periodic::spawn("ddms-retention", every, move || {
        match backend.prune_events(keep) {
            Ok(0) => {}
            Ok(n) => tracing::info!(pruned = n, older_than = ?keep, "event retention"),
            Err(e) => tracing::warn!("event retention: {e}"),
        }
    })
}
