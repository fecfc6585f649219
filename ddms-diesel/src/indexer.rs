//! The field indexer: backfills the typed field-value tables (`fv_*`) for fields
//! declared `indexed` or `unique` on an entity type that already held records.
//!
//! # Life of a field index
//!
//! Declaring an index on a type with records sets the field's `index_state` to
//! `pending` (see `schema.rs`); from then on the record triggers maintain its
//! field-value rows for every write, and a trigger queues the field in `index_jobs` (a
//! table of ids without RLS, so that the app role can find the work of every tenant).
//! [`run_indexer_once`] then takes each queued field:
//!
//! 1. `pg_try_advisory_lock` on the field (session-level, on a dedicated connection, held
//!    while the field is processed): another indexer (another server process) working on
//!    it makes this one skip it ([`FieldOutcome::Busy`]), so a field is never backfilled
//!    twice and indexers never fail each other.
//! 2. `pending` → `building`, in a transaction that first locks the entity type row
//!    `FOR UPDATE`: that waits for every transaction still inserting records of the type
//!    (they hold `FOR KEY SHARE` on it through the foreign key), i.e. for every insert
//!    whose trigger may have run before the index was declared and so wrote no
//!    field-value row.
//! 3. Batches (default 5 000 records, by id): `INSERT INTO fv_x ... SELECT` from the
//!    records after `fields.backfill_after`, `ON CONFLICT (tenant_id, field_id,
//!    record_id) DO NOTHING` (rows written by the triggers meanwhile win), reading the
//!    records `FOR SHARE` (so an update in flight, whose trigger may predate the
//!    declaration, is waited for and its new value read). Each batch is its own short
//!    transaction that records its progress in `fields.backfill_after`: writers are not
//!    blocked beyond the batch's rows, and a crash resumes from the last batch instead
//!    of restarting.
//! 4. An empty batch means done: `ready` (the SQL compiler uses ready indexes only; until
//!    then filters take the JSONB path and stay correct). A unique violation means
//!    duplicate values: `failed` with a reason naming a few of them, and the field's
//!    rows are deleted (the triggers only maintain pending, building and ready indexes).
//!
//! Each step runs as the RLS-bound app role inside a transaction scoped to the job's
//! tenant. Un-declaring an index deletes its rows (`schema.rs`); deleting the entity
//! type deletes its records and fields, and their rows with them (foreign keys).
//!
//! The server calls [`run_indexer_once`] every `FIELD_INDEXER_INTERVAL_MS` on a
//! blocking thread (or uses [`spawn_indexer`]); the CLI calls it once.

use std::time::Duration;

use ddms_core::{ConflictKind, Error as CoreError, TenantId};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::{BigInt, Bool, Nullable, Text, Uuid as SqlUuid};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use uuid::Uuid;

use crate::backend::{PgBackend, TxError, TxResult};
use crate::error::{map_db, map_pool};
use crate::sql::{Bind, Sql};

/// The actor recorded for indexer work.
const ACTOR: &str = "system:indexer";

/// How the indexer runs.
#[derive(Debug, Clone)]
pub struct IndexerOptions {
    /// Records per batch (default 5 000).
    pub batch_size: usize,
    /// Only this tenant's fields (default: every tenant).
    pub tenant: Option<TenantId>,
    /// Stop a field after this many batches, leaving it `building` to be resumed by the
    /// next run (default: no limit). A way to bound one run's work.
    pub max_batches: Option<u64>,
}

impl Default for IndexerOptions {
    fn default() -> Self {
        IndexerOptions {
            batch_size: 5_000,
            tenant: None,
            max_batches: None,
        }
    }
}

/// What happened to one queued field index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldOutcome {
    /// Backfilled: the index is `ready`.
    Ready,
    /// The backfill failed (e.g. duplicate values for a unique field): `failed`.
    Failed {
        /// The reason, as stored in the index state.
        reason: String,
    },
    /// Another indexer holds the field: skipped.
    Busy,
    /// Stopped after `max_batches`; still `building`, resumed by the next run.
    Interrupted,
    /// Nothing to do any more (undeclared, deleted, or finished by another indexer).
    Skipped,
    /// A transient error (database unavailable, lock conflict): retried next run.
    Retry {
        /// The error.
        error: String,
    },
}

/// One queued field index and what the run did with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldReport {
    /// The tenant.
    pub tenant: TenantId,
    /// The field's id (keys its field-value rows).
    pub field_id: Uuid,
    /// The entity type's name (when known).
    pub entity_type: Option<String>,
    /// The field's name (when known).
    pub field: Option<String>,
    /// The outcome.
    pub outcome: FieldOutcome,
    /// Records read by this run's batches.
    pub records_scanned: u64,
    /// Field-value rows this run inserted (the rest were written by triggers).
    pub rows_written: u64,
    /// Batches run (the last, empty one included).
    pub batches: u64,
    /// True when the run continued a backfill that an earlier run had started.
    pub resumed: bool,
}

/// What one indexer run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexerReport {
    /// One entry per queued field index looked at.
    pub fields: Vec<FieldReport>,
}

impl IndexerReport {
    /// Fields that became ready.
    pub fn ready(&self) -> usize {
        self.count(|o| matches!(o, FieldOutcome::Ready))
    }

    /// Fields that failed.
    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, FieldOutcome::Failed { .. }))
    }

    /// Fields skipped because another indexer held them.
    pub fn busy(&self) -> usize {
        self.count(|o| matches!(o, FieldOutcome::Busy))
    }

    /// Records read in total.
    pub fn records_scanned(&self) -> u64 {
        self.fields.iter().map(|f| f.records_scanned).sum()
    }

    fn count(&self, f: impl Fn(&FieldOutcome) -> bool) -> usize {
        self.fields.iter().filter(|r| f(&r.outcome)).count()
    }
}

/// Runs the indexer once over every queued field index, with default options.
pub fn run_indexer_once(backend: &PgBackend) -> ddms_core::Result<IndexerReport> {
    run_indexer(backend, &IndexerOptions::default())
}

/// Runs the indexer once over the queued field indexes (of `opts.tenant`, or all).
/// Per-field problems are reported in the [`IndexerReport`]; an `Err` means the job
/// list could not be read (e.g. the database is unavailable).
pub fn run_indexer(backend: &PgBackend, opts: &IndexerOptions) -> ddms_core::Result<IndexerReport> {
    let mut pooled = backend.pool.get().map_err(map_pool)?;
    // Jobs bind their tenant per transaction (`scoped`); the session binds none.
    let conn = pooled.unbound().map_err(map_db)?;
    let mut s = Sql::new();
    s.push("SELECT tenant_id, field_id FROM index_jobs");
    if let Some(t) = opts.tenant {
        s.push(" WHERE tenant_id = ").bind(Bind::Uuid(t.0));
    }
    s.push(" ORDER BY queued_at, tenant_id, field_id");
    let jobs: Vec<JobRow> = s.query().load(conn).map_err(map_db)?;
    let mut report = IndexerReport::default();
    for job in jobs {
        let tenant = job.tenant_id;
        let field = run_job(conn, job, opts);
        if matches!(
            field.outcome,
            FieldOutcome::Ready | FieldOutcome::Failed { .. }
        ) {
            // This process sees the new state at once (others within the schema cache TTL).
            backend.types.forget_tenant(tenant);
        }
        report.fields.push(field);
    }
    Ok(report)
}

/// The background indexer thread (see [`spawn_indexer`]).
pub type IndexerHandle = crate::periodic::Periodic;

/// Runs [`run_indexer_once`] on a background thread every `interval` until the handle
/// is stopped or dropped. Errors are logged (`tracing`), never fatal.
pub fn spawn_indexer(backend: PgBackend, interval: Duration) -> IndexerHandle {
    crate::periodic::Periodic::spawn("ddms-indexer", interval, move || {
        match run_indexer_once(&backend) {
            Ok(r) => {
                for f in &r.fields {
                    tracing::info!(
                        tenant = %f.tenant, entity_type = ?f.entity_type, field = ?f.field,
                        outcome = ?f.outcome, records = f.records_scanned, "field indexer"
                    );
                }
            }
            Err(e) => tracing::warn!("field indexer: {e}"),
        }
    })
}

#[derive(QueryableByName, Debug, Clone, Copy)]
struct JobRow {
    #[diesel(sql_type = SqlUuid)]
    tenant_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    field_id: Uuid,
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

#[derive(QueryableByName)]
struct FieldRow {
    #[diesel(sql_type = SqlUuid)]
    entity_type_id: Uuid,
    #[diesel(sql_type = Text)]
    entity_type: String,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Nullable<Text>)]
    value_class: Option<String>,
    #[diesel(sql_type = Bool)]
    is_unique: bool,
    #[diesel(sql_type = Nullable<Text>)]
    index_state: Option<String>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    backfill_after: Option<Uuid>,
}

#[derive(QueryableByName)]
struct TypeIdRow {
    #[diesel(sql_type = SqlUuid)]
    entity_type_id: Uuid,
}

#[derive(QueryableByName)]
struct BatchRow {
    #[diesel(sql_type = BigInt)]
    scanned: i64,
    #[diesel(sql_type = BigInt)]
    written: i64,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    last: Option<Uuid>,
}

#[derive(QueryableByName)]
struct DupRow {
    #[diesel(sql_type = Text)]
    v: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// The field-value table and the cast from `data->>name` for a `fields.value_class`
/// tag (the same expressions as the triggers of the first migration).
fn class_sql(tag: &str) -> Option<(&'static str, &'static str)> {
    Some(match tag {
        "text" => ("fv_text", ""),
        "int" => ("fv_int", "::bigint"),
        "float" => ("fv_float", "::float8"),
        "bool" => ("fv_bool", "::boolean"),
        "date" => ("fv_date", "::date"),
        "ts" => ("fv_ts", "::timestamptz"),
        "uuid" => ("fv_uuid", "::uuid"),
        _ => return None,
    })
}

/// The advisory-lock key of a field: its id's first 8 bytes.
fn lock_key(field: Uuid) -> i64 {
    let b = field.as_bytes();
    i64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// Runs `f` in a transaction on `c`, bound to `tenant` (as [`PgBackend::tx_as`] does on
/// a pooled connection).
fn scoped<T>(
    c: &mut PgConnection,
    tenant: Uuid,
    f: impl FnOnce(&mut PgConnection) -> TxResult<T>,
) -> Result<T, TxError> {
    c.transaction::<T, TxError, _>(|c| {
        crate::pool::set_scope(c, Some(tenant), ACTOR, true)?;
        f(c)
    })
}

fn is_transient(e: &CoreError) -> bool {
    matches!(
        e,
        CoreError::Unavailable(_)
            | CoreError::Conflict {
                kind: ConflictKind::Concurrent,
                ..
            }
    )
}

fn to_core(e: TxError) -> CoreError {
    match e {
        TxError::Core(e) => e,
        TxError::Db(e) => map_db(e),
    }
}

/// A unique violation on a field-value table: duplicate values.
fn is_unique_violation(e: &TxError) -> bool {
    matches!(e, TxError::Db(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info))
        if info.constraint_name().is_some_and(|c| c.starts_with("fv_")))
}

/// A foreign-key violation: a record (or the field) vanished under the batch.
fn is_fk_violation(e: &TxError) -> bool {
    matches!(
        e,
        TxError::Db(DieselError::DatabaseError(
            DatabaseErrorKind::ForeignKeyViolation,
            _
        ))
    )
}

fn run_job(conn: &mut PgConnection, job: JobRow, opts: &IndexerOptions) -> FieldReport {
    let mut report = FieldReport {
        tenant: TenantId(job.tenant_id),
        field_id: job.field_id,
        entity_type: None,
        field: None,
        outcome: FieldOutcome::Skipped,
        records_scanned: 0,
        rows_written: 0,
        batches: 0,
        resumed: false,
    };
    let key = lock_key(job.field_id);
    let locked: Result<Vec<Locked>, _> =
        diesel::sql_query("SELECT pg_try_advisory_lock($1) AS locked")
            .bind::<BigInt, _>(key)
            .load(conn);
    match locked {
        Ok(rows) if rows.first().is_some_and(|r| r.locked) => {}
        Ok(_) => {
            report.outcome = FieldOutcome::Busy;
            return report;
        }
        Err(e) => {
            report.outcome = FieldOutcome::Retry {
                error: map_db(e).to_string(),
            };
            return report;
        }
    }
    report.outcome = match backfill(conn, job, opts, &mut report) {
        Ok(o) => o,
        Err(e) if is_transient(&e) => FieldOutcome::Retry {
            error: e.to_string(),
        },
        Err(e) => {
            // Not transient and not a duplicate (handled inside): a stored value the
            // field's type cannot hold, say. Fail the index with the reason.
            let reason = format!("backfill failed: {e}");
            match mark_failed(conn, job, &reason) {
                Ok(true) => FieldOutcome::Failed { reason },
                Ok(false) => FieldOutcome::Skipped,
                Err(e2) => FieldOutcome::Retry {
                    error: format!("{e}; then {e2}"),
                },
            }
        }
    };
    // A failed unlock means a broken connection, whose session (and lock) is gone.
    let _ = diesel::sql_query("SELECT pg_advisory_unlock($1)")
        .bind::<BigInt, _>(key)
        .execute(conn);
    report
}

/// Locks the entity type row (`FOR UPDATE` at the pending → building step, `FOR SHARE`
/// otherwise; always before the field row, the order schema changes use too) and then
/// the field row, and reads the field. `None` when the field is gone.
fn lock_field(c: &mut PgConnection, job: JobRow, type_lock: &str) -> TxResult<Option<FieldRow>> {
    let mut s = Sql::new();
    s.push("SELECT entity_type_id FROM fields WHERE tenant_id = ")
        .bind(Bind::Uuid(job.tenant_id))
        .push(" AND id = ")
        .bind(Bind::Uuid(job.field_id));
    let Some(ty) = s.query().load::<TypeIdRow>(c)?.into_iter().next() else {
        return Ok(None);
    };
    let mut s = Sql::new();
    s.push("SELECT id AS entity_type_id FROM entity_types WHERE tenant_id = ")
        .bind(Bind::Uuid(job.tenant_id))
        .push(" AND id = ")
        .bind(Bind::Uuid(ty.entity_type_id))
        .push(type_lock);
    if s.query().load::<TypeIdRow>(c)?.is_empty() {
        return Ok(None);
    }
    let mut s = Sql::new();
    s.push(
        "SELECT f.entity_type_id, et.name AS entity_type, f.name, f.value_class, f.is_unique, f.index_state, f.backfill_after \
         FROM fields f JOIN entity_types et ON et.tenant_id = f.tenant_id AND et.id = f.entity_type_id \
         WHERE f.tenant_id = ",
    )
    .bind(Bind::Uuid(job.tenant_id))
    .push(" AND f.id = ")
    .bind(Bind::Uuid(job.field_id))
    .push(" FOR UPDATE OF f");
    Ok(s.query().load::<FieldRow>(c)?.into_iter().next())
}

enum Step {
    /// Stop with this outcome.
    Done(FieldOutcome),
    /// A batch ran: (records read, rows written).
    Batch(u64, u64),
}

fn backfill(
    conn: &mut PgConnection,
    job: JobRow,
    opts: &IndexerOptions,
    report: &mut FieldReport,
) -> Result<FieldOutcome, CoreError> {
    // pending -> building, after waiting for inserts that may predate the declaration.
    let started = scoped(conn, job.tenant_id, |c| {
        let Some(f) = lock_field(c, job, " FOR UPDATE")? else {
            return Ok(None);
        };
        if f.index_state.as_deref() == Some("pending") {
            set_state(c, job, "building")?;
        }
        Ok(Some(f))
    })
    .map_err(to_core)?;
    let Some(f) = started else {
        return Ok(FieldOutcome::Skipped);
    };
    report.entity_type = Some(f.entity_type.clone());
    report.field = Some(f.name.clone());
    report.resumed = f.index_state.as_deref() == Some("building") && f.backfill_after.is_some();
    if !matches!(f.index_state.as_deref(), Some("pending" | "building")) {
        return Ok(FieldOutcome::Skipped);
    }
    let batch = opts.batch_size.max(1) as i64;
    // Retries of one batch after a foreign-key violation or a transient error
    // (deadlock with a writer, serialization failure).
    let mut retries = 0;
    loop {
        if opts.max_batches.is_some_and(|m| report.batches >= m) {
            return Ok(FieldOutcome::Interrupted);
        }
        let step = scoped(conn, job.tenant_id, |c| batch_step(c, job, batch));
        match step {
            Ok(Step::Done(o)) => {
                if o == FieldOutcome::Ready {
                    report.batches += 1;
                }
                return Ok(o);
            }
            Ok(Step::Batch(scanned, written)) => {
                report.batches += 1;
                report.records_scanned += scanned;
                report.rows_written += written;
                retries = 0;
            }
            Err(e) if is_unique_violation(&e) => {
                return duplicates(conn, job);
            }
            // A record deleted (or the field undeclared) while the batch ran: the next
            // attempt reads the new state.
            Err(e) if is_fk_violation(&e) && retries < 5 => retries += 1,
            Err(e) => {
                let e = to_core(e);
                if !is_transient(&e) || retries >= 3 {
                    return Err(e);
                }
                retries += 1;
                std::thread::sleep(Duration::from_millis(50 << retries));
            }
        }
    }
}

fn set_state(c: &mut PgConnection, job: JobRow, state: &str) -> TxResult<()> {
    let mut s = Sql::new();
    s.push("UPDATE fields SET index_state = ")
        .bind(Bind::Text(state.to_string()))
        .push(", index_error = NULL, index_updated_at = now()");
    if state == "ready" {
        s.push(", backfill_after = NULL");
    }
    s.push(" WHERE tenant_id = ")
        .bind(Bind::Uuid(job.tenant_id))
        .push(" AND id = ")
        .bind(Bind::Uuid(job.field_id));
    s.query().execute(c)?;
    Ok(())
}

/// One batch in one transaction: re-checks the state, copies the next records' values,
/// records the progress; or, when no record is left, marks the index ready.
fn batch_step(c: &mut PgConnection, job: JobRow, batch: i64) -> TxResult<Step> {
    let Some(f) = lock_field(c, job, " FOR SHARE")? else {
        return Ok(Step::Done(FieldOutcome::Skipped));
    };
    match f.index_state.as_deref() {
        Some("building") => {}
        // Re-declared meanwhile (its rows were reset): start over.
        Some("pending") => set_state(c, job, "building")?,
        _ => return Ok(Step::Done(FieldOutcome::Skipped)),
    }
    let Some((table, cast)) = f.value_class.as_deref().and_then(class_sql) else {
        let reason = format!("field {} has a kind that cannot be indexed", f.name);
        fail_in_tx(c, job, f.value_class.as_deref(), &reason)?;
        return Ok(Step::Done(FieldOutcome::Failed { reason }));
    };
    let mut s = Sql::new();
    let t = s.param(Bind::Uuid(job.tenant_id));
    let ty = s.param(Bind::Uuid(f.entity_type_id));
    let after = s.param(Bind::Uuid(f.backfill_after.unwrap_or(Uuid::nil())));
    let n = s.param(Bind::Int(batch));
    let fid = s.param(Bind::Uuid(job.field_id));
    let name = s.param(Bind::Text(f.name.clone()));
    let uniq = s.param(Bind::Bool(f.is_unique));
    // `table` and `cast` come from a fixed list; every value is a bind.
    s.push(&format!(
        "WITH b AS (SELECT id, data FROM records WHERE tenant_id = {t} AND entity_type_id = {ty} AND id > {after} \
                    ORDER BY id LIMIT {n} FOR SHARE), \
              ins AS (INSERT INTO {table} (tenant_id, field_id, record_id, v, uniq) \
                      SELECT {t}, {fid}, b.id, (b.data->>{name}){cast}, {uniq} FROM b \
                      ON CONFLICT (tenant_id, field_id, record_id) DO NOTHING RETURNING 1) \
         SELECT (SELECT count(*) FROM b) AS scanned, (SELECT count(*) FROM ins) AS written, \
                (SELECT id FROM b ORDER BY id DESC LIMIT 1) AS last"
    ));
    let r = s
        .query()
        .load::<BatchRow>(c)?
        .into_iter()
        .next()
        .ok_or_else(|| CoreError::Internal("backfill batch returned no row".into()))?;
    match r.last {
        None => {
            set_state(c, job, "ready")?;
            Ok(Step::Done(FieldOutcome::Ready))
        }
        Some(last) => {
            let mut s = Sql::new();
            s.push("UPDATE fields SET backfill_after = ")
                .bind(Bind::Uuid(last))
                .push(", index_updated_at = now() WHERE tenant_id = ")
                .bind(Bind::Uuid(job.tenant_id))
                .push(" AND id = ")
                .bind(Bind::Uuid(job.field_id));
            s.query().execute(c)?;
            Ok(Step::Batch(r.scanned as u64, r.written as u64))
        }
    }
}

/// Marks the field failed with `reason` and deletes its rows, inside a transaction.
fn fail_in_tx(
    c: &mut PgConnection,
    job: JobRow,
    value_class: Option<&str>,
    reason: &str,
) -> TxResult<()> {
    let mut s = Sql::new();
    s.push("UPDATE fields SET index_state = 'failed', index_error = ")
        .bind(Bind::Text(reason.to_string()))
        .push(", backfill_after = NULL, index_updated_at = now() WHERE tenant_id = ")
        .bind(Bind::Uuid(job.tenant_id))
        .push(" AND id = ")
        .bind(Bind::Uuid(job.field_id));
    s.query().execute(c)?;
    if let Some((table, _)) = value_class.and_then(class_sql) {
        let mut s = Sql::new();
        s.push(&format!("DELETE FROM {table} WHERE tenant_id = "))
            .bind(Bind::Uuid(job.tenant_id))
            .push(" AND field_id = ")
            .bind(Bind::Uuid(job.field_id));
        s.query().execute(c)?;
    }
    Ok(())
}

/// Marks the field failed (if it is still being built); false if it no longer is.
fn mark_failed(conn: &mut PgConnection, job: JobRow, reason: &str) -> Result<bool, CoreError> {
    scoped(conn, job.tenant_id, |c| {
        let Some(f) = lock_field(c, job, " FOR SHARE")? else {
            return Ok(false);
        };
        if !matches!(f.index_state.as_deref(), Some("pending" | "building")) {
            return Ok(false);
        }
        fail_in_tx(c, job, f.value_class.as_deref(), reason)?;
        Ok(true)
    })
    .map_err(to_core)
}

/// After a unique violation: names a few duplicate values and fails the index; if no
/// duplicate is found (a concurrent change caused the violation), retries next run.
fn duplicates(conn: &mut PgConnection, job: JobRow) -> Result<FieldOutcome, CoreError> {
    scoped(conn, job.tenant_id, |c| {
        let Some(f) = lock_field(c, job, " FOR SHARE")? else {
            return Ok(FieldOutcome::Skipped);
        };
        if !matches!(f.index_state.as_deref(), Some("pending" | "building")) {
            return Ok(FieldOutcome::Skipped);
        }
        let Some((_, cast)) = f.value_class.as_deref().and_then(class_sql) else {
            return Ok(FieldOutcome::Skipped);
        };
        let mut s = Sql::new();
        let t = s.param(Bind::Uuid(job.tenant_id));
        let ty = s.param(Bind::Uuid(f.entity_type_id));
        let name = s.param(Bind::Text(f.name.clone()));
        s.push(&format!(
            "SELECT to_jsonb(v)::text AS v, count(*) AS n FROM \
               (SELECT (data->>{name}){cast} AS v FROM records WHERE tenant_id = {t} AND entity_type_id = {ty}) x \
             WHERE v IS NOT NULL GROUP BY v HAVING count(*) > 1 ORDER BY count(*) DESC, v LIMIT 5"
        ));
        let dups: Vec<DupRow> = s.query().load(c)?;
        if dups.is_empty() {
            return Ok(FieldOutcome::Retry {
                error: "unique violation without duplicates (concurrent change); retrying".into(),
            });
        }
        let list: Vec<String> = dups
            .iter()
            .map(|d| format!("{} ({} records)", d.v, d.n))
            .collect();
        let reason = format!(
            "duplicate values for unique field {}: {}",
            f.name,
            list.join(", ")
        );
        fail_in_tx(c, job, f.value_class.as_deref(), &reason)?;
        Ok(FieldOutcome::Failed { reason })
    })
    .map_err(to_core)
}
