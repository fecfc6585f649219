//! [`PgBackend`]: the pool, the tenant-scoped transaction every call runs in, and a
//! small cache of per-type field ids and index states.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use ddms_core::{Error as CoreError, Scope};
use diesel::{Connection, PgConnection, RunQueryDsl};
use parking_lot::RwLock;
use uuid::Uuid;

use crate::error::{map_db, map_pool, Result};
use crate::pool::{build_pool, PgConfig, PgPool};
use crate::sql::IndexLookup;

/// Errors inside a transaction: database errors (mapped at the end, and retried when
/// transient) or domain errors raised by our own checks.
#[derive(Debug)]
pub(crate) enum TxError {
    Db(diesel::result::Error),
    Core(CoreError),
}

impl From<diesel::result::Error> for TxError {
    fn from(e: diesel::result::Error) -> Self {
        TxError::Db(e)
    }
}

impl From<CoreError> for TxError {
    fn from(e: CoreError) -> Self {
        TxError::Core(e)
    }
}

pub(crate) type TxResult<T> = std::result::Result<T, TxError>;

/// Field metadata of one entity type version.
#[derive(Debug, Clone)]
pub(crate) struct FieldMeta {
    pub id: Uuid,
    pub state: Option<String>,
}

#[derive(Debug, Default)]
pub(crate) struct TypeMeta {
    pub fields: foldhash::HashMap<String, FieldMeta>,
}

/// The PostgreSQL backend. Cheap to clone (shares its pool).
#[derive(Clone)]
pub struct PgBackend {
    pub(crate) pool: PgPool,
    /// Field ids and index states per entity type: read on every compile of a filter or
    /// sort on a field (`IndexLookup`), so hashed with foldhash rather than SipHash (the
    /// keys are our type ids and the type's own field names).
    pub(crate) meta: Arc<RwLock<foldhash::HashMap<Uuid, Arc<TypeMeta>>>>,
    pub(crate) types: Arc<crate::type_cache::TypeCache>,
    /// The change-feed listener shared by this backend's subscriptions (it connects
    /// with the pool's URL, lazily, on the first subscription).
    pub(crate) feed: Arc<crate::subscribe::FeedHub>,
    /// Concurrent single creates grouped into one statement.
    pub(crate) group: Arc<crate::group_insert::GroupInsert>,
    /// The list texts this backend's connections keep prepared (bounded).
    pub(crate) stable_texts: Arc<crate::statement::StableTexts>,
    /// The bounded walks' texts they keep prepared (bounded apart, see
    /// [`crate::statement::STABLE_WALK_TEXTS`]).
    pub(crate) walk_texts: Arc<crate::statement::StableTexts>,
    /// How bounded walks went ([`PgBackend::bounded_walk_stats`]).
    pub(crate) walks: Arc<WalkCounters>,
}

/// How lists tried as bounded walks went (see
/// [`crate::sql::Compiler::bounded_walk`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BoundedWalkStats {
    /// Pages the walk answered on its own (it found a full page and the next record).
    pub answered: u64,
    /// Walks that found fewer, after which the full query ran.
    pub fell_back: u64,
    /// First pages run as the full query at once: the same list (tenant, type, filter
    /// with its values, sort, page size) fell back within the last [`WALK_MISS_TTL`],
    /// so its walk would only have come first again.
    pub skipped: u64,
}

/// How long a first page whose walk fell back skips its walk.
pub const WALK_MISS_TTL: std::time::Duration = std::time::Duration::from_secs(10);
/// At most this many such pages are remembered (then all are forgotten).
const WALK_MISSES_MAX: usize = 4096;

/// A list's first page: tenant, query fingerprint, page size.
pub(crate) type WalkKey = (Uuid, [u8; 16], usize);

/// The bounded walks' counters, and the first pages whose walk fell back lately (a
/// small type, a rare value; by tenant, query fingerprint and page size): walking
/// again would find too few matches again and only add a statement before the full
/// query (measured: a 30-record type, filtered, +30–40 % PostgreSQL CPU per list; an
/// equality matching 0.9 % of 400k records, −14 % req/s), so for [`WALK_MISS_TTL`]
/// they skip it. Only a hint for choosing the path: no records are kept.
#[derive(Debug, Default)]
pub(crate) struct WalkCounters {
    answered: AtomicU64,
    fell_back: AtomicU64,
    skipped: AtomicU64,
    misses: parking_lot::Mutex<foldhash::HashMap<WalkKey, std::time::Instant>>,
}

impl WalkCounters {
    /// Whether the first page `key`'s walk fell back lately (then counted as skipped).
    pub fn skip(&self, key: &WalkKey) -> bool {
        let misses = self.misses.lock();
        let hit = misses
            .get(key)
            .is_some_and(|at| at.elapsed() < WALK_MISS_TTL);
        if hit {
            self.skipped.fetch_add(1, Relaxed);
        }
        hit
    }

    /// Counts a walk that answered its page.
    pub fn answered(&self) {
        self.answered.fetch_add(1, Relaxed);
    }

    /// Counts a walk that fell back, and remembers it when it was a first page's.
    pub fn fell_back(&self, first_page: Option<WalkKey>) {
        self.fell_back.fetch_add(1, Relaxed);
        let Some(key) = first_page else { return };
        let mut misses = self.misses.lock();
        if misses.len() >= WALK_MISSES_MAX {
            misses.clear();
        }
        misses.insert(key, std::time::Instant::now());
    }

    fn stats(&self) -> BoundedWalkStats {
        BoundedWalkStats {
            answered: self.answered.load(Relaxed),
            fell_back: self.fell_back.load(Relaxed),
            skipped: self.skipped.load(Relaxed),
        }
    }
}

impl std::fmt::Debug for PgBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgBackend")
            .field("pool_size", &self.pool.max_size())
            .finish_non_exhaustive()
    }
}

impl IndexLookup for PgBackend {
    fn ready_index(&self, type_id: Uuid, field: &str) -> Option<Uuid> {
        let g = self.meta.read();
        let f = g.get(&type_id)?.fields.get(field)?;
        (f.state.as_deref() == Some("ready")).then_some(f.id)
    }
}

impl PgBackend {
    /// Connects (builds the pool). Runs no migrations: call [`crate::migrate`] first.
    pub fn connect(cfg: &PgConfig) -> Result<PgBackend> {
        Ok(PgBackend {
            pool: build_pool(cfg)?,
            meta: Arc::default(),
            types: Arc::new(crate::type_cache::TypeCache::new(
                std::time::Duration::from_millis(cfg.schema_cache_ms),
            )),
            feed: Arc::new(crate::subscribe::FeedHub::new(&cfg.url)),
            group: Arc::default(),
            stable_texts: Arc::default(),
            walk_texts: Arc::new(crate::statement::StableTexts::new(
                crate::statement::STABLE_WALK_TEXTS,
            )),
            walks: Arc::default(),
        })
    }

    /// Checks that the database answers.
    pub fn health(&self) -> ddms_core::Result<()> {
        let mut conn = self.pool.get().map_err(map_pool)?;
        diesel::sql_query("SELECT 1")
            .execute(conn.unbound().map_err(map_db)?)
            .map(|_| ())
            .map_err(map_db)
    }

    /// Runs `f` in a transaction, on a session bound to `scope`'s tenant and actor (see
    /// [`crate::pool`]). Transient failures (serialization, deadlock) are retried a few
    /// times.
    pub(crate) fn tx<T>(
        &self,
        scope: &Scope,
        mut f: impl FnMut(&mut PgConnection) -> TxResult<T>,
    ) -> ddms_core::Result<T> {
        self.tx_as(scope.tenant.0, &scope.actor, &mut f)
    }

    pub(crate) fn tx_as<T>(
        &self,
        tenant: Uuid,
        actor: &str,
        f: &mut dyn FnMut(&mut PgConnection) -> TxResult<T>,
    ) -> ddms_core::Result<T> {
        self.run(tenant, actor, &mut |c| {
            c.transaction::<T, TxError, _>(&mut *f)
        })
    }

    /// Runs `f` without an explicit transaction, on a session bound to `scope`: for work
    /// that is one statement (atomic on its own, as its own transaction) or reads
    /// that need no common snapshot. Saves the `BEGIN` and `COMMIT` round trips.
    pub(crate) fn once<T>(
        &self,
        scope: &Scope,
        mut f: impl FnMut(&mut PgConnection) -> TxResult<T>,
    ) -> ddms_core::Result<T> {
        self.run(scope.tenant.0, &scope.actor, &mut f)
    }

    fn run<T>(
        &self,
        tenant: Uuid,
        actor: &str,
        f: &mut dyn FnMut(&mut PgConnection) -> TxResult<T>,
    ) -> ddms_core::Result<T> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut conn = self.pool.get().map_err(map_pool)?;
            let out = match conn.bind(tenant, actor) {
                Ok(c) => f(c),
                Err(e) => Err(TxError::Db(e)),
            };
            match out {
                Ok(v) => return Ok(v),
                Err(TxError::Core(e)) => return Err(e),
                Err(TxError::Db(e)) => {
                    let mapped = map_db(e);
                    let transient = matches!(
                        &mapped,
                        CoreError::Conflict {
                            kind: ddms_core::ConflictKind::Concurrent,
                            ..
                        }
                    );
                    if transient && attempt < 4 {
                        continue;
                    }
                    return Err(mapped);
                }
            }
        }
    }

    /// How concurrent single creates were grouped into shared statements so far.
    pub fn group_insert_stats(&self) -> crate::group_insert::GroupInsertStats {
        self.group.stats()
    }

    /// How lists tried as bounded walks went so far.
    pub fn bounded_walk_stats(&self) -> BoundedWalkStats {
        self.walks.stats()
    }

    pub(crate) fn remember(&self, type_id: Uuid, meta: TypeMeta) {
        let mut g = self.meta.write();
        if g.len() > 100_000 {
            g.clear();
        }
        g.insert(type_id, Arc::new(meta));
    }
}
