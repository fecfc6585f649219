//! Bulk loading into one tenant: binary `COPY` into session-private staging tables, then
//! `INSERT ... SELECT` into the row-level-secured tables, all in **one transaction**.
//!
//! # Why staging tables
//!
//! PostgreSQL refuses `COPY FROM` into a table with row-level security for a role that RLS
//! applies to ("COPY FROM not supported with row-level security"), and every DDMS table
//! has FORCEd RLS. A loader must therefore not COPY into `records` directly, and it must
//! never switch to a role that bypasses RLS for tenant data. [`BulkLoad`] COPYs (binary
//! format, Diesel's [`diesel::copy_from`]) into `TEMP` staging tables that it creates as
//! `ddms_app` on its own connection — invisible to every other session, never WAL-logged,
//! dropped at commit — and then moves the rows with `INSERT INTO records ... SELECT ...
//! FROM staging` as `ddms_app` with the tenant set, so the RLS `WITH CHECK` policy checks
//! every row and the usual triggers write the field-value index rows and the change-feed
//! events, exactly as for single inserts.
//!
//! # Why one transaction
//!
//! Everything — removing the tenant's previous data, its schema, the records, the
//! relations, and (on the exclusive path) the index rebuild — commits at once or not at
//! all: an interrupted load (Ctrl-C, a crash, a lost connection) leaves no half-loaded
//! tenant behind, and running it again starts from the same state. One transaction means
//! one connection; parallelism comes from encoding rows on other threads while
//! PostgreSQL consumes the COPY stream. More connections would not help the writes: the
//! change-feed triggers serialise a tenant's writers on its `tenant_feeds` row lock.
//!
//! # Two index paths
//!
//! * **Maintained** (always safe): the shared indexes of `records`, `relations`, `events`
//!   and the `fv_*` tables are updated row by row, as for any write.
//! * **Rebuilt** (only when no *other* tenant has a row in those tables, checked under
//!   RLS tenant by tenant, and only when the connecting role owns the tables): the loader
//!   locks those tables (`ACCESS EXCLUSIVE`, with a lock timeout), re-checks, drops their
//!   indexes and constraints (definitions saved from the catalog; [`BulkLoad::reset_tenant`]
//!   then empties them with `TRUNCATE`, since they hold only this tenant's old rows),
//!   loads, and re-creates every index and
//!   constraint exactly as it was before committing — unique and cardinality indexes
//!   included, so a violation still aborts the whole load. Building an index by sorting is
//!   several times cheaper than inserting into it row by row. The DDL runs as the session
//!   user (the tables' owner); every row of tenant data is still written as `ddms_app`.
//!
//! [`BulkLoad::index_path`] says which path ran and why.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ddms_core::{
    Cardinality, EntityType, EntityTypeDef, Error, Name, OnDelete, RelationType, RelationTypeDef,
    Result,
};
use diesel::connection::{SimpleConnection, TransactionManager};
use diesel::pg::CopyFormat;
use diesel::prelude::ExecuteCopyFromDsl;
use diesel::sql_types::{BigInt, Bool, Text, Timestamptz, Uuid as SqlUuid};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use serde_json::Value;
use uuid::Uuid;

use crate::backend::{PgBackend, TxError};
use crate::error::map_db;
use crate::schema::{cardinality_str, PURGE_ORDER};
use crate::sql::{Bind, Sql};

/// The staging tables (TEMP, per session) as Diesel tables, for `copy_from`.
mod stage {
    diesel::table! {
        /// Staging table for records (TEMP, per session).
        ddms_stage_records (id) {
            id -> Uuid,
            data -> Jsonb,
        }
    }

    diesel::table! {
        /// Staging table for relations (TEMP, per session).
        ddms_stage_relations (id) {
            id -> Uuid,
            source_id -> Uuid,
            target_id -> Uuid,
        }
    }
}
use stage::{ddms_stage_records, ddms_stage_relations};

/// The high-volume tables whose indexes the exclusive path rebuilds.
pub const BULK_TABLES: [&str; 10] = [
    "records",
    "relations",
    "events",
    "fv_text",
    "fv_int",
    "fv_float",
    "fv_bool",
    "fv_date",
    "fv_ts",
    "fv_uuid",
];

const COPY_HEADER: [u8; 19] = [
    b'P', b'G', b'C', b'O', b'P', b'Y', b'\n', 0xFF, b'\r', b'\n', 0, // signature
    0, 0, 0, 0, // flags
    0, 0, 0, 0, // header extension length
];
const COPY_TRAILER: [u8; 2] = [0xFF, 0xFF];

/// How the change feed records a bulk load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BulkEvents {
    /// One event per record and per relation, written by the usual triggers (default).
    #[default]
    PerRow,
    /// One `bulk.loaded` event per statement and entity type (or relation type) instead
    /// of one per row: the transaction-local setting `ddms.bulk_events = 'summary'`, read
    /// by the insert triggers (migration `..._bulk_summary_events`). The feed stays
    /// ordered and gap-free and still records every statement; consumers that mirror
    /// records re-read the type named in the event.
    Summary,
}

/// Options of a [`BulkLoad`].
#[derive(Debug, Clone)]
pub struct BulkOptions {
    /// Allow the exclusive path (truncate + drop and rebuild the shared indexes) when no
    /// other tenant has data in the bulk tables. Default true.
    pub rebuild_indexes: bool,
    /// How events are written. Default [`BulkEvents::PerRow`].
    pub events: BulkEvents,
    /// `work_mem` for the load's statements (the triggers sort the transition tables).
    pub work_mem: String,
    /// `maintenance_work_mem` for index rebuilds.
    pub maintenance_work_mem: String,
    /// `temp_buffers` of the loader's session (staging tables live there).
    pub temp_buffers: String,
    /// How long to wait for the exclusive table locks before falling back to the
    /// maintained path (milliseconds).
    pub lock_timeout_ms: u64,
    /// Most other tenants whose data is checked before choosing the exclusive path.
    pub max_tenants_checked: usize,
}

impl Default for BulkOptions {
    fn default() -> Self {
        BulkOptions {
            rebuild_indexes: true,
            events: BulkEvents::PerRow,
            work_mem: "256MB".into(),
            maintenance_work_mem: "1GB".into(),
            temp_buffers: "512MB".into(),
            lock_timeout_ms: 5_000,
            max_tenants_checked: 1_000,
        }
    }
}

/// Which index path a load takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexPath {
    /// Indexes are maintained row by row; the reason the exclusive path was not taken.
    Maintained(String),
    /// The bulk tables were truncated, their indexes dropped and rebuilt after loading.
    Rebuilt,
}

impl fmt::Display for IndexPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IndexPath::Maintained(why) => write!(f, "indexes maintained row by row ({why})"),
            IndexPath::Rebuilt => f.write_str(
                "exclusive: no other tenant has data, indexes dropped and rebuilt after loading",
            ),
        }
    }
}

/// Progress notifications of a load.
#[derive(Debug, Clone)]
pub enum BulkProgress {
    /// Rows were streamed into a COPY (`what` names the entity or relation type).
    Copied {
        /// Entity type or relation type name.
        what: String,
        /// Rows in this step.
        rows: u64,
    },
    /// A phase started.
    Phase(String),
    /// A phase finished.
    PhaseDone(String, Duration),
}

/// Timing of one phase of a load.
#[derive(Debug, Clone)]
pub struct PhaseTiming {
    /// What ran.
    pub name: String,
    /// Rows concerned (0 when not applicable).
    pub rows: u64,
    /// Wall time.
    pub elapsed: Duration,
}

/// What a committed load did.
#[derive(Debug, Clone)]
pub struct BulkReport {
    /// Records inserted.
    pub records: u64,
    /// Relations inserted.
    pub relations: u64,
    /// The index path taken.
    pub index_path: IndexPath,
    /// Phases in order, with timings.
    pub phases: Vec<PhaseTiming>,
    /// Total time from `begin` to commit.
    pub elapsed: Duration,
}

// ---------------------------------------------------------------------------------------
// Encoding (runs on any thread)
// ---------------------------------------------------------------------------------------

/// Rows encoded in PostgreSQL's binary COPY format, ready for [`BulkLoad::copy_records`]
/// or [`BulkLoad::copy_relations`]. Built only by [`RecordEncoder`] (which validates every
/// record) and [`RelationEncoder`].
#[derive(Debug, Default)]
pub struct Chunk {
    owner: Uuid,
    bytes: Vec<u8>,
    rows: u64,
    /// Record ids (records) or source/target pairs (relations), for the endpoint check.
    ids: Vec<Uuid>,
}

impl Chunk {
    /// Rows in the chunk.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Encoded size in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True when the chunk holds no row.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }
}

fn put_field(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
    buf.extend_from_slice(bytes);
}

/// Validates records of one entity type and encodes them for COPY.
#[derive(Debug)]
pub struct RecordEncoder {
    ty: EntityType,
    chunk: Chunk,
    json: Vec<u8>,
}

impl RecordEncoder {
    /// An encoder for records of `ty` (the type returned by
    /// [`BulkLoad::create_entity_type`] or [`BulkLoad::entity_type`]).
    pub fn new(ty: &EntityType) -> Self {
        RecordEncoder {
            ty: ty.clone(),
            chunk: Chunk {
                owner: ty.id,
                ..Chunk::default()
            },
            json: Vec::with_capacity(1024),
        }
    }

    /// Validates `data` against the entity type (defaults applied, unknown fields
    /// rejected, exactly as for single creates) and appends the record.
    pub fn push(&mut self, id: Uuid, data: &Value) -> Result<()> {
        let data = ddms_core::record::validate(&self.ty, data)?;
        self.json.clear();
        self.json.push(1); // jsonb binary format version
        serde_json::to_writer(&mut self.json, &data)
            .map_err(|e| Error::Internal(format!("cannot encode record {id}: {e}")))?;
        let b = &mut self.chunk.bytes;
        b.extend_from_slice(&2i16.to_be_bytes());
        put_field(b, id.as_bytes());
        put_field(b, &self.json);
        self.chunk.rows += 1;
        self.chunk.ids.push(id);
        Ok(())
    }

    /// Rows pushed since the last [`RecordEncoder::take`].
    pub fn rows(&self) -> u64 {
        self.chunk.rows
    }

    /// Bytes encoded since the last [`RecordEncoder::take`].
    pub fn bytes(&self) -> usize {
        self.chunk.bytes.len()
    }

    /// The rows pushed so far, as a chunk; the encoder starts a new one.
    pub fn take(&mut self) -> Chunk {
        let fresh = Chunk {
            owner: self.chunk.owner,
            bytes: Vec::with_capacity(self.chunk.bytes.len()),
            ids: Vec::with_capacity(self.chunk.ids.len()),
            rows: 0,
        };
        std::mem::replace(&mut self.chunk, fresh)
    }
}

/// Encodes relations of one relation type for COPY.
#[derive(Debug)]
pub struct RelationEncoder {
    chunk: Chunk,
}

impl RelationEncoder {
    /// An encoder for relations of `rt`.
    pub fn new(rt: &RelationType) -> Self {
        RelationEncoder {
            chunk: Chunk {
                owner: rt.id,
                ..Chunk::default()
            },
        }
    }

    /// Appends the edge `source -> target` with id `id`.
    pub fn push(&mut self, id: Uuid, source: Uuid, target: Uuid) {
        let b = &mut self.chunk.bytes;
        b.extend_from_slice(&3i16.to_be_bytes());
        put_field(b, id.as_bytes());
        put_field(b, source.as_bytes());
        put_field(b, target.as_bytes());
        self.chunk.rows += 1;
        self.chunk.ids.push(source);
        self.chunk.ids.push(target);
    }

    /// Rows pushed since the last [`RelationEncoder::take`].
    pub fn rows(&self) -> u64 {
        self.chunk.rows
    }

    /// The rows pushed so far, as a chunk; the encoder starts a new one.
    pub fn take(&mut self) -> Chunk {
        let fresh = Chunk {
            owner: self.chunk.owner,
            bytes: Vec::with_capacity(self.chunk.bytes.len()),
            ids: Vec::with_capacity(self.chunk.ids.len()),
            rows: 0,
        };
        std::mem::replace(&mut self.chunk, fresh)
    }
}

/// A time-ordered (version 7) UUID: `millis` since the Unix epoch and 80 bits of
/// `random`. Ids that grow with insertion order keep B-tree inserts and index builds on
/// the right-hand edge; bulk loaders should prefer them.
pub fn ordered_uuid(millis: u64, random: u128) -> Uuid {
    let bytes = random.to_be_bytes();
    let mut r = [0u8; 10];
    r.copy_from_slice(&bytes[6..16]);
    uuid::Builder::from_unix_timestamp_millis(millis, &r).into_uuid()
}

// ---------------------------------------------------------------------------------------
// The load
// ---------------------------------------------------------------------------------------

#[derive(QueryableByName)]
struct BoolRow {
    #[diesel(sql_type = Bool)]
    b: bool,
}

#[derive(QueryableByName)]
struct UuidRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

#[derive(QueryableByName)]
struct CreatedRow {
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    updated_at: DateTime<Utc>,
    #[diesel(sql_type = BigInt)]
    version: i64,
}

#[derive(QueryableByName, Debug, Clone)]
struct DdlRow {
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    drop_sql: String,
    #[diesel(sql_type = Text)]
    create_sql: String,
}

/// The catalog query behind the exclusive path: every foreign key touching the bulk
/// tables, their primary/unique/exclusion constraints and their other indexes, with the
/// statements that drop and re-create them — all text generated by PostgreSQL from the
/// catalog (`pg_get_constraintdef`, `pg_get_indexdef`, `%I`-quoted names).
const SAVED_DDL: &str = "WITH t AS (SELECT to_regclass(n)::oid AS oid FROM unnest($1::text[]) n WHERE to_regclass(n) IS NOT NULL) \
    SELECT kind, name, drop_sql, create_sql FROM ( \
      SELECT 1 AS ord, 'foreign key' AS kind, conname::text AS name, \
             format('ALTER TABLE %s DROP CONSTRAINT %I', conrelid::regclass, conname) AS drop_sql, \
             format('ALTER TABLE %s ADD CONSTRAINT %I %s', conrelid::regclass, conname, pg_get_constraintdef(oid)) AS create_sql \
        FROM pg_constraint WHERE contype = 'f' AND (conrelid IN (SELECT oid FROM t) OR confrelid IN (SELECT oid FROM t)) \
      UNION ALL \
      SELECT 2, 'constraint', conname::text, \
             format('ALTER TABLE %s DROP CONSTRAINT %I', conrelid::regclass, conname), \
             format('ALTER TABLE %s ADD CONSTRAINT %I %s', conrelid::regclass, conname, pg_get_constraintdef(oid)) \
        FROM pg_constraint WHERE contype IN ('p', 'u', 'x') AND conrelid IN (SELECT oid FROM t) \
      UNION ALL \
      SELECT 3, 'index', c.relname::text, \
             format('DROP INDEX %s', i.indexrelid::regclass), pg_get_indexdef(i.indexrelid) \
        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
        WHERE i.indrelid IN (SELECT oid FROM t) \
          AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.contype IN ('p', 'u', 'x'))) x \
    ORDER BY ord, name";

/// Receives [`BulkProgress`] notifications.
type Observer = Box<dyn FnMut(&BulkProgress) + Send>;

/// A bulk load into one tenant: one dedicated connection, one transaction.
///
/// ```no_run
/// # fn demo(url: &str, def: ddms_core::EntityTypeDef) -> ddms_core::Result<()> {
/// use ddms_diesel::bulk::{BulkLoad, BulkOptions, RecordEncoder};
/// let tenant = uuid::Uuid::new_v4();
/// let mut load = BulkLoad::begin(url, tenant, "loader", &BulkOptions::default())?;
/// load.reset_tenant("Acme")?;
/// let ty = load.create_entity_type(&def)?;
/// let mut enc = RecordEncoder::new(&ty);
/// enc.push(ddms_diesel::bulk::ordered_uuid(1_700_000_000_000, 42), &serde_json::json!({"title": "Apollo"}))?;
/// load.copy_records(&ty, std::iter::once(Ok(enc.take())))?;
/// let report = load.commit()?;
/// println!("{} records, {}", report.records, report.index_path);
/// # Ok(()) }
/// ```
pub struct BulkLoad {
    conn: PgConnection,
    tenant: Uuid,
    actor: String,
    opts: BulkOptions,
    path: IndexPath,
    saved: Vec<DdlRow>,
    /// Entity types known to this load: name -> (id, type).
    types: HashMap<String, EntityType>,
    /// Record ids loaded in this transaction, per entity type (sorted lazily).
    loaded: HashMap<Uuid, (Vec<Uuid>, bool)>,
    staged_records: bool,
    staged_relations: bool,
    records: u64,
    relations: u64,
    phases: Vec<PhaseTiming>,
    started: Instant,
    observer: Option<Observer>,
}

impl fmt::Debug for BulkLoad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkLoad")
            .field("tenant", &self.tenant)
            .field("path", &self.path)
            .field("records", &self.records)
            .field("relations", &self.relations)
            .finish_non_exhaustive()
    }
}

fn db(context: &str) -> impl Fn(diesel::result::Error) -> Error + '_ {
    move |e| match map_db(e) {
        Error::Internal(m) => Error::Internal(format!("{context}: {m}")),
        Error::Unavailable(m) => Error::Unavailable(format!("{context}: {m}")),
        other => other,
    }
}

/// Only our own constants and numbers go into this.
fn simple(c: &mut PgConnection, sql: &str) -> Result<()> {
    c.batch_execute(sql).map_err(db(sql))
}

fn quote_setting(v: &str) -> Result<String> {
    if v.is_empty()
        || !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
    {
        return Err(Error::Internal(format!("invalid setting value `{v}`")));
    }
    Ok(format!("'{v}'"))
}

/// Error channel out of the COPY callback (Diesel reports only the database's view of
/// an aborted COPY; the cause is kept here).
#[derive(Debug)]
enum CopyErr {
    Db(diesel::result::Error),
    Core(Error),
}

impl fmt::Display for CopyErr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CopyErr::Db(e) => write!(f, "{e}"),
            CopyErr::Core(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for CopyErr {}

impl From<diesel::result::Error> for CopyErr {
    fn from(e: diesel::result::Error) -> Self {
        CopyErr::Db(e)
    }
}

impl BulkLoad {
    /// Connects to `url`, starts the transaction bound to `tenant` (acting as `actor`)
    /// and chooses the index path (see the module documentation). Nothing is visible to
    /// other sessions until [`BulkLoad::commit`]; dropping the load rolls it back.
    pub fn begin(url: &str, tenant: Uuid, actor: &str, opts: &BulkOptions) -> Result<BulkLoad> {
        let started = Instant::now();
        let mut conn = PgConnection::establish(url)
            .map_err(|e| Error::Unavailable(format!("cannot connect for the bulk load: {e}")))?;
        // Session settings: temp_buffers must be set before the first temp table use.
        simple(
            &mut conn,
            &format!(
                "SET temp_buffers = {}; SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0",
                quote_setting(&opts.temp_buffers)?
            ),
        )?;
        // PostgreSQL 14+: notice a vanished client (Ctrl-C) within a second, even in the
        // middle of a long statement, and roll back.
        let _ = conn.batch_execute("SET client_connection_check_interval = 1000");
        <PgConnection as Connection>::TransactionManager::begin_transaction(&mut conn)
            .map_err(db("BEGIN"))?;
        let mut load = BulkLoad {
            conn,
            tenant,
            actor: actor.to_string(),
            opts: opts.clone(),
            path: IndexPath::Maintained("not decided".into()),
            saved: Vec::new(),
            types: HashMap::new(),
            loaded: HashMap::new(),
            staged_records: false,
            staged_relations: false,
            records: 0,
            relations: 0,
            phases: Vec::new(),
            started,
            observer: None,
        };
        simple(
            &mut load.conn,
            &format!(
                "SET LOCAL work_mem = {}; SET LOCAL maintenance_work_mem = {}",
                quote_setting(&opts.work_mem)?,
                quote_setting(&opts.maintenance_work_mem)?
            ),
        )?;
        if opts.events == BulkEvents::Summary {
            simple(
                &mut load.conn,
                "SELECT set_config('ddms.bulk_events', 'summary', true)",
            )?;
        }
        load.as_app()?;
        load.path = load.choose_path()?;
        tracing::info!(tenant = %tenant, path = %load.path, "bulk load started");
        Ok(load)
    }

    /// Receives progress notifications (called on the loading thread).
    pub fn set_observer(&mut self, f: impl FnMut(&BulkProgress) + Send + 'static) {
        self.observer = Some(Box::new(f));
    }

    /// The index path this load takes, and why.
    pub fn index_path(&self) -> &IndexPath {
        &self.path
    }

    /// The tenant.
    pub fn tenant(&self) -> Uuid {
        self.tenant
    }

    fn notify(&mut self, p: BulkProgress) {
        if let Some(o) = self.observer.as_mut() {
            o(&p);
        }
    }

    fn phase<T>(
        &mut self,
        name: &str,
        rows: u64,
        f: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<T> {
        self.notify(BulkProgress::Phase(name.to_string()));
        let t = Instant::now();
        let out = f(self)?;
        let elapsed = t.elapsed();
        tracing::debug!(phase = name, ?elapsed, "bulk phase done");
        self.phases.push(PhaseTiming {
            name: name.to_string(),
            rows,
            elapsed,
        });
        self.notify(BulkProgress::PhaseDone(name.to_string(), elapsed));
        Ok(out)
    }

    /// Acts as `ddms_app` bound to the tenant (for the rest of the transaction).
    fn as_app(&mut self) -> Result<()> {
        simple(&mut self.conn, "SET LOCAL ROLE ddms_app")?;
        self.scope(self.tenant)
    }

    fn scope(&mut self, tenant: Uuid) -> Result<()> {
        let mut s = Sql::new();
        s.push("SELECT set_config('ddms.tenant_id', ")
            .bind(Bind::Text(tenant.to_string()))
            .push(", true), set_config('ddms.actor', ")
            .bind(Bind::Text(self.actor.clone()))
            .push(", true)");
        s.query()
            .execute(&mut self.conn)
            .map_err(db("set tenant"))?;
        Ok(())
    }

    /// Acts as the session user (the tables' owner) for DDL only.
    fn as_owner(&mut self) -> Result<()> {
        simple(&mut self.conn, "SET LOCAL ROLE NONE")
    }

    fn owns_tables(&mut self) -> Result<bool> {
        let mut s = Sql::new();
        s.push("SELECT coalesce(bool_and(pg_has_role(session_user, c.relowner, 'USAGE')), false) AS b \
                FROM unnest(")
            .bind(Bind::TextArr(BULK_TABLES.iter().map(|t| t.to_string()).collect()))
            .push("::text[]) n JOIN pg_class c ON c.oid = to_regclass(n)");
        let rows: Vec<BoolRow> = s
            .query()
            .load(&mut self.conn)
            .map_err(db("ownership check"))?;
        Ok(rows.first().is_some_and(|r| r.b))
    }

    /// Other tenants that have a row in a bulk table: checked tenant by tenant under
    /// RLS (as `ddms_app`). `None` when there are too many tenants to check.
    fn other_tenants_with_data(&mut self) -> Result<Option<usize>> {
        let mut s = Sql::new();
        s.push("SELECT tenant_id AS id FROM tenant_directory WHERE tenant_id <> ")
            .bind(Bind::Uuid(self.tenant))
            .push(" ORDER BY tenant_id LIMIT ")
            .bind(Bind::Int(self.opts.max_tenants_checked as i64 + 1));
        let others: Vec<UuidRow> = s.query().load(&mut self.conn).map_err(db("tenant list"))?;
        if others.len() > self.opts.max_tenants_checked {
            return Ok(None);
        }
        let probe = BULK_TABLES
            .iter()
            .map(|t| format!("EXISTS (SELECT 1 FROM {t})"))
            .collect::<Vec<_>>()
            .join(" OR ");
        let mut with_data = 0;
        for t in &others {
            self.scope(t.id)?;
            let rows: Vec<BoolRow> = diesel::sql_query(format!("SELECT ({probe}) AS b"))
                .load(&mut self.conn)
                .map_err(db("tenant data check"))?;
            if rows.first().is_some_and(|r| r.b) {
                with_data += 1;
            }
        }
        self.scope(self.tenant)?;
        Ok(Some(with_data))
    }

    fn choose_path(&mut self) -> Result<IndexPath> {
        if !self.opts.rebuild_indexes {
            return Ok(IndexPath::Maintained("index rebuild disabled".into()));
        }
        if !self.owns_tables()? {
            return Ok(IndexPath::Maintained(
                "the connecting role does not own the tables, so it cannot rebuild their indexes"
                    .into(),
            ));
        }
        match self.other_tenants_with_data()? {
            None => {
                return Ok(IndexPath::Maintained(format!(
                    "more than {} other tenants: not checked",
                    self.opts.max_tenants_checked
                )))
            }
            Some(n) if n > 0 => {
                return Ok(IndexPath::Maintained(format!(
                    "{n} other tenant(s) have data in the shared tables"
                )))
            }
            Some(_) => {}
        }
        // Lock, then check again: nobody can add rows while we hold the locks.
        simple(&mut self.conn, "SAVEPOINT ddms_bulk_exclusive")?;
        self.as_owner()?;
        let tables = BULK_TABLES.join(", ");
        let locked = self.conn.batch_execute(&format!(
            "SET LOCAL lock_timeout = {}; LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE; SET LOCAL lock_timeout = 0",
            self.opts.lock_timeout_ms
        ));
        if let Err(e) = locked {
            simple(&mut self.conn, "ROLLBACK TO SAVEPOINT ddms_bulk_exclusive")?;
            self.as_app()?;
            return Ok(IndexPath::Maintained(format!(
                "could not lock the shared tables: {e}"
            )));
        }
        self.as_app()?;
        if self.other_tenants_with_data()? != Some(0) {
            simple(&mut self.conn, "ROLLBACK TO SAVEPOINT ddms_bulk_exclusive")?;
            self.as_app()?;
            return Ok(IndexPath::Maintained(
                "another tenant wrote data meanwhile".into(),
            ));
        }
        // Only this tenant's rows are in the bulk tables: save and drop their indexes and
        // constraints (`reset_tenant` may then truncate them).
        self.as_owner()?;
        let mut s = Sql::new();
        // `$1` is spelled out in SAVED_DDL.
        let _ = s.param(Bind::TextArr(
            BULK_TABLES.iter().map(|t| t.to_string()).collect(),
        ));
        s.push(SAVED_DDL);
        let saved: Vec<DdlRow> = s
            .query()
            .load(&mut self.conn)
            .map_err(db("saving index definitions"))?;
        for d in &saved {
            tracing::debug!(kind = %d.kind, name = %d.name, "dropping for the bulk load");
            simple(&mut self.conn, &d.drop_sql)?;
        }
        self.saved = saved;
        simple(&mut self.conn, "RELEASE SAVEPOINT ddms_bulk_exclusive")?;
        self.as_app()?;
        Ok(IndexPath::Rebuilt)
    }

    /// Deletes the tenant and everything it owns (if it exists), then creates it anew
    /// with `name` and an empty change feed. Returns whether it existed.
    pub fn reset_tenant(&mut self, name: &str) -> Result<bool> {
        let name = name.trim().to_string();
        if name.is_empty() || name.chars().count() > 200 || name.contains('\0') {
            return Err(Error::invalid(
                "name",
                "invalid_name",
                "tenant name must be 1 to 200 characters without NUL",
            ));
        }
        let existed = self.phase("remove the previous tenant", 0, |me| {
            if me.path == IndexPath::Rebuilt {
                // Exclusive path: the bulk tables hold no other tenant's rows (checked
                // under lock), so emptying them removes exactly this tenant's old rows,
                // without dead tuples.
                me.as_owner()?;
                simple(
                    &mut me.conn,
                    &format!("TRUNCATE {}", BULK_TABLES.join(", ")),
                )?;
                me.as_app()?;
            }
            // Purge mode: no events for what goes away with the tenant's feed.
            simple(&mut me.conn, "SELECT set_config('ddms.purge', 'on', true)")?;
            for table in PURGE_ORDER {
                let mut s = Sql::new();
                s.push(&format!("DELETE FROM {table} WHERE tenant_id = "))
                    .bind(Bind::Uuid(me.tenant));
                s.query().execute(&mut me.conn).map_err(db(table))?;
            }
            let mut s = Sql::new();
            s.push("DELETE FROM tenants WHERE id = ")
                .bind(Bind::Uuid(me.tenant));
            let n = s.query().execute(&mut me.conn).map_err(db("tenants"))?;
            simple(&mut me.conn, "SELECT set_config('ddms.purge', '', true)")?;
            Ok(n > 0)
        })?;
        let mut s = Sql::new();
        s.push("INSERT INTO tenants (id, name) VALUES (")
            .bind(Bind::Uuid(self.tenant))
            .push(", ")
            .bind(Bind::Text(name))
            .push(")");
        s.query()
            .execute(&mut self.conn)
            .map_err(db("create tenant"))?;
        let mut s = Sql::new();
        s.push("INSERT INTO tenant_feeds (tenant_id) VALUES (")
            .bind(Bind::Uuid(self.tenant))
            .push(")");
        s.query()
            .execute(&mut self.conn)
            .map_err(db("create feed"))?;
        self.types.clear();
        self.loaded.clear();
        Ok(existed)
    }

    /// Creates an entity type in this transaction (its indexes start `ready`: it has no
    /// records yet) and returns it.
    pub fn create_entity_type(&mut self, def: &EntityTypeDef) -> Result<EntityType> {
        let id = Uuid::new_v4();
        let definition = serde_json::to_value(&def.fields)
            .map_err(|e| Error::Internal(format!("cannot encode the definition: {e}")))?;
        let mut s = Sql::new();
        s.push("INSERT INTO entity_types (tenant_id, id, name, label, definition) VALUES (")
            .bind(Bind::Uuid(self.tenant))
            .push(", ")
            .bind(Bind::Uuid(id))
            .push(", ")
            .bind(Bind::Text(def.name.to_string()))
            .push(", ")
            .bind(Bind::Text(def.label.clone()))
            .push(", ")
            .bind(Bind::Json(definition))
            .push(") ON CONFLICT (tenant_id, name) DO NOTHING RETURNING created_at, updated_at, version");
        let rows: Vec<CreatedRow> = s
            .query()
            .load(&mut self.conn)
            .map_err(db("create entity type"))?;
        let Some(row) = rows.into_iter().next() else {
            return Err(Error::conflict(
                ddms_core::ConflictKind::AlreadyExists,
                format!("entity type {} already exists", def.name),
            ));
        };
        for f in &def.fields {
            // A new type has no records: declared indexes start ready.
            PgBackend::insert_field(&mut self.conn, self.tenant, id, f, false).map_err(
                |e| match e {
                    TxError::Db(e) => db("create field")(e),
                    TxError::Core(e) => e,
                },
            )?;
        }
        let ty = EntityType {
            id,
            name: def.name.clone(),
            label: def.label.clone(),
            fields: def.fields.clone(),
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        };
        self.types.insert(def.name.to_string(), ty.clone());
        Ok(ty)
    }

    /// Creates a relation type between two entity types of this tenant.
    pub fn create_relation_type(&mut self, def: &RelationTypeDef) -> Result<RelationType> {
        let source = self.entity_type(def.source.as_str())?.id;
        let target = self.entity_type(def.target.as_str())?.id;
        let id = Uuid::new_v4();
        let mut s = Sql::new();
        s.push("INSERT INTO relation_types (tenant_id, id, name, source_type_id, target_type_id, cardinality, on_delete) VALUES (")
            .bind(Bind::Uuid(self.tenant))
            .push(", ")
            .bind(Bind::Uuid(id))
            .push(", ")
            .bind(Bind::Text(def.name.to_string()))
            .push(", ")
            .bind(Bind::Uuid(source))
            .push(", ")
            .bind(Bind::Uuid(target))
            .push(", ")
            .bind(Bind::Text(cardinality_str(def.cardinality).into()))
            .push(", ")
            .bind(Bind::Text(
                if def.on_delete == OnDelete::Restrict { "restrict" } else { "cascade" }.into(),
            ))
            .push(") ON CONFLICT (tenant_id, name) DO NOTHING RETURNING created_at, created_at AS updated_at, 1::bigint AS version");
        let rows: Vec<CreatedRow> = s
            .query()
            .load(&mut self.conn)
            .map_err(db("create relation type"))?;
        let Some(row) = rows.into_iter().next() else {
            return Err(Error::conflict(
                ddms_core::ConflictKind::AlreadyExists,
                format!("relation type {} already exists", def.name),
            ));
        };
        Ok(RelationType {
            id,
            name: def.name.clone(),
            source: def.source.clone(),
            target: def.target.clone(),
            cardinality: def.cardinality,
            on_delete: def.on_delete,
            created_at: row.created_at,
        })
    }

    /// An entity type of this tenant: one created by this load, or an existing one.
    pub fn entity_type(&mut self, name: &str) -> Result<EntityType> {
        if let Some(t) = self.types.get(name) {
            return Ok(t.clone());
        }
        #[derive(QueryableByName)]
        struct TypeRow {
            #[diesel(sql_type = SqlUuid)]
            id: Uuid,
            #[diesel(sql_type = Text)]
            label: String,
            #[diesel(sql_type = diesel::sql_types::Jsonb)]
            definition: Value,
            #[diesel(sql_type = BigInt)]
            version: i64,
            #[diesel(sql_type = Timestamptz)]
            created_at: DateTime<Utc>,
            #[diesel(sql_type = Timestamptz)]
            updated_at: DateTime<Utc>,
        }
        let mut s = Sql::new();
        s.push("SELECT id, label, definition, version, created_at, updated_at FROM entity_types WHERE tenant_id = ")
            .bind(Bind::Uuid(self.tenant))
            .push(" AND name = ")
            .bind(Bind::Text(name.to_string()))
            // Writers of the type take FOR UPDATE: its shape cannot change under the load.
            .push(" FOR SHARE");
        let rows: Vec<TypeRow> = s.query().load(&mut self.conn).map_err(db("entity type"))?;
        let r = rows
            .into_iter()
            .next()
            .ok_or_else(|| Error::not_found("entity type", name))?;
        let fields = serde_json::from_value(r.definition)
            .map_err(|e| Error::Internal(format!("stored definition of {name} is invalid: {e}")))?;
        let ty = EntityType {
            id: r.id,
            name: Name::parse(name)
                .map_err(|m| Error::Internal(format!("stored name {name}: {m}")))?,
            label: r.label,
            fields,
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
        };
        self.types.insert(name.to_string(), ty.clone());
        Ok(ty)
    }

    /// Streams `chunks` (from [`RecordEncoder`]s of `ty`, possibly produced on other
    /// threads) into the staging table with one binary COPY, then inserts them into
    /// `records` (RLS-checked; field-value rows and events by trigger). Returns the
    /// number of records.
    pub fn copy_records(
        &mut self,
        ty: &EntityType,
        chunks: impl IntoIterator<Item = Result<Chunk>>,
    ) -> Result<u64> {
        if !self.types.contains_key(ty.name.as_str()) || self.types[ty.name.as_str()].id != ty.id {
            return Err(Error::Internal(format!(
                "entity type {} was not created or loaded by this bulk load",
                ty.name
            )));
        }
        if !self.staged_records {
            simple(
                &mut self.conn,
                "CREATE TEMP TABLE ddms_stage_records (id uuid NOT NULL, data jsonb NOT NULL) ON COMMIT DROP",
            )?;
            self.staged_records = true;
        }
        let what = ty.name.to_string();
        let mut ids = Vec::new();
        let n = self.copy_phase(
            &format!("copy {what}"),
            &what,
            ty.id,
            chunks,
            |c| ids.extend_from_slice(&c.ids),
            CopyTable::Records,
        )?;
        let entry = self
            .loaded
            .entry(ty.id)
            .or_insert_with(|| (Vec::new(), true));
        let continues = match (entry.0.last(), ids.first()) {
            (Some(l), Some(f)) => l < f,
            _ => true,
        };
        entry.1 = entry.1 && continues && ids.windows(2).all(|w| w[0] < w[1]);
        entry.0.extend_from_slice(&ids);
        drop(ids);
        let tenant = self.tenant;
        let actor = self.actor.clone();
        let inserted = self.phase(&format!("insert {what}"), n, |me| {
            let mut s = Sql::new();
            let t = s.param(Bind::Uuid(tenant));
            let ty_id = s.param(Bind::Uuid(ty.id));
            let a = s.param(Bind::Text(actor));
            s.push(&format!(
                "INSERT INTO records (tenant_id, id, entity_type_id, data, created_by, updated_by) \
                 SELECT {t}, s.id, {ty_id}, s.data, {a}, {a} FROM ddms_stage_records s"
            ));
            let n = s
                .query()
                .execute(&mut me.conn)
                .map_err(db(&format!("insert {what}")))?;
            simple(&mut me.conn, "TRUNCATE ddms_stage_records")?;
            Ok(n as u64)
        })?;
        self.records += inserted;
        Ok(inserted)
    }

    /// Streams `chunks` (from [`RelationEncoder`]s of `rt`) into staging with one binary
    /// COPY and inserts them into `relations`. Every end must be a record of the right
    /// entity type (records loaded by this transaction are checked in memory, others in
    /// the database and locked like single creates); duplicates and cardinality
    /// violations abort the load. Returns the number of relations.
    pub fn copy_relations(
        &mut self,
        rt: &RelationType,
        chunks: impl IntoIterator<Item = Result<Chunk>>,
    ) -> Result<u64> {
        let source = self.entity_type(rt.source.as_str())?.id;
        let target = self.entity_type(rt.target.as_str())?.id;
        if !self.staged_relations {
            simple(
                &mut self.conn,
                "CREATE TEMP TABLE ddms_stage_relations (id uuid NOT NULL, source_id uuid NOT NULL, target_id uuid NOT NULL) ON COMMIT DROP",
            )?;
            self.staged_relations = true;
        }
        for ty in [source, target] {
            if let Some((ids, sorted)) = self.loaded.get_mut(&ty) {
                if !*sorted {
                    ids.sort_unstable();
                    *sorted = true;
                }
            }
        }
        // Borrowed out of `self` for the duration of the COPY.
        let loaded = std::mem::take(&mut self.loaded);
        let empty: Vec<Uuid> = Vec::new();
        let src_ids = loaded.get(&source).map(|e| &e.0).unwrap_or(&empty);
        let tgt_ids = loaded.get(&target).map(|e| &e.0).unwrap_or(&empty);
        let mut unknown: Vec<(Uuid, Uuid)> = Vec::new(); // (entity type, record)
        let what = rt.name.to_string();
        let n = self.copy_phase(
            &format!("copy {what}"),
            &what,
            rt.id,
            chunks,
            |c| {
                for pair in c.ids.chunks_exact(2) {
                    if src_ids.binary_search(&pair[0]).is_err() {
                        unknown.push((source, pair[0]));
                    }
                    if tgt_ids.binary_search(&pair[1]).is_err() {
                        unknown.push((target, pair[1]));
                    }
                }
            },
            CopyTable::Relations,
        );
        self.loaded = loaded;
        let n = n?;
        if !unknown.is_empty() {
            self.check_existing_ends(&rt.name, unknown)?;
        }
        let tenant = self.tenant;
        let actor = self.actor.clone();
        let inserted = self.phase(&format!("insert {what}"), n, |me| {
            let mut s = Sql::new();
            let t = s.param(Bind::Uuid(tenant));
            let r = s.param(Bind::Uuid(rt.id));
            let us = s.param(Bind::Bool(rt.cardinality == Cardinality::OneToOne));
            let ut = s.param(Bind::Bool(rt.cardinality != Cardinality::ManyToMany));
            let a = s.param(Bind::Text(actor));
            s.push(&format!(
                "INSERT INTO relations (tenant_id, id, relation_type_id, source_id, target_id, uniq_source, uniq_target, created_by) \
                 SELECT {t}, s.id, {r}, s.source_id, s.target_id, {us}, {ut}, {a} FROM ddms_stage_relations s"
            ));
            let n = s
                .query()
                .execute(&mut me.conn)
                .map_err(|e| relation_error(&what, e))?;
            simple(&mut me.conn, "TRUNCATE ddms_stage_relations")?;
            Ok(n as u64)
        })?;
        self.relations += inserted;
        Ok(inserted)
    }

    /// Ends that were not loaded by this transaction must exist (with the right type);
    /// they are locked against concurrent deletes like single creates do.
    fn check_existing_ends(&mut self, rt: &Name, mut ends: Vec<(Uuid, Uuid)>) -> Result<()> {
        ends.sort_unstable();
        ends.dedup();
        for batch in ends.chunks(10_000) {
            let mut by_type: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
            for (t, id) in batch {
                by_type.entry(*t).or_default().push(*id);
            }
            for (ty, ids) in by_type {
                let mut s = Sql::new();
                s.push("SELECT id FROM records WHERE tenant_id = ")
                    .bind(Bind::Uuid(self.tenant))
                    .push(" AND entity_type_id = ")
                    .bind(Bind::Uuid(ty))
                    .push(" AND id = ANY(")
                    .bind(Bind::UuidArr(ids.clone()))
                    .push(") FOR KEY SHARE");
                let found: Vec<UuidRow> = s
                    .query()
                    .load(&mut self.conn)
                    .map_err(db("relation ends"))?;
                if found.len() != ids.len() {
                    let have: std::collections::HashSet<Uuid> =
                        found.into_iter().map(|r| r.id).collect();
                    let missing = ids.iter().find(|i| !have.contains(i)).copied();
                    return Err(Error::invalid(
                        "relations",
                        "unknown_end",
                        format!(
                            "relation type {rt}: record {} does not exist or has the wrong entity type",
                            missing.map(|m| m.to_string()).unwrap_or_default()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn copy_phase(
        &mut self,
        phase: &str,
        what: &str,
        owner: Uuid,
        chunks: impl IntoIterator<Item = Result<Chunk>>,
        mut on_chunk: impl FnMut(&Chunk),
        table: CopyTable,
    ) -> Result<u64> {
        let started = Instant::now();
        self.notify(BulkProgress::Phase(phase.to_string()));
        let source = RefCell::new(chunks.into_iter());
        let failure: RefCell<Option<Error>> = RefCell::new(None);
        let rows = Cell::new(0u64);
        let observer = RefCell::new(self.observer.take());
        let on_chunk = RefCell::new(&mut on_chunk);
        let callback = |w: &mut dyn Write| -> std::result::Result<(), CopyErr> {
            let io = |e: std::io::Error| {
                CopyErr::Db(diesel::result::Error::SerializationError(Box::new(e)))
            };
            w.write_all(&COPY_HEADER).map_err(io)?;
            let mut src = source.borrow_mut();
            for chunk in src.by_ref() {
                let chunk = match chunk {
                    Ok(c) => c,
                    Err(e) => {
                        let msg = e.to_string();
                        *failure.borrow_mut() = Some(e);
                        return Err(CopyErr::Core(Error::Internal(msg)));
                    }
                };
                if chunk.owner != owner {
                    let msg = format!(
                        "a chunk encoded for another type was passed to the copy of {what}"
                    );
                    *failure.borrow_mut() = Some(Error::Internal(msg.clone()));
                    return Err(CopyErr::Core(Error::Internal(msg)));
                }
                if chunk.rows == 0 {
                    continue;
                }
                w.write_all(&chunk.bytes).map_err(io)?;
                rows.set(rows.get() + chunk.rows);
                (on_chunk.borrow_mut())(&chunk);
                if let Some(o) = observer.borrow_mut().as_mut() {
                    o(&BulkProgress::Copied {
                        what: what.to_string(),
                        rows: chunk.rows,
                    });
                }
            }
            w.write_all(&COPY_TRAILER).map_err(io)?;
            Ok(())
        };
        let result = match table {
            CopyTable::Records => diesel::copy_from(ddms_stage_records::table)
                .from_raw_data(ddms_stage_records::table, callback)
                .with_format(CopyFormat::Binary)
                .execute(&mut self.conn),
            CopyTable::Relations => diesel::copy_from(ddms_stage_relations::table)
                .from_raw_data(ddms_stage_relations::table, callback)
                .with_format(CopyFormat::Binary)
                .execute(&mut self.conn),
        };
        self.observer = observer.into_inner();
        if let Some(e) = failure.into_inner() {
            return Err(e);
        }
        match result {
            Ok(_) => {}
            Err(CopyErr::Core(e)) => return Err(e),
            Err(CopyErr::Db(e)) => return Err(db(phase)(e)),
        }
        let elapsed = started.elapsed();
        self.phases.push(PhaseTiming {
            name: phase.to_string(),
            rows: rows.get(),
            elapsed,
        });
        self.notify(BulkProgress::PhaseDone(phase.to_string(), elapsed));
        Ok(rows.get())
    }

    /// Re-creates what the exclusive path dropped (indexes and unique constraints first,
    /// foreign keys last) and commits. On error everything is rolled back.
    pub fn commit(mut self) -> Result<BulkReport> {
        if !self.saved.is_empty() {
            let saved = std::mem::take(&mut self.saved);
            let rows = self.records + self.relations;
            self.phase("rebuild indexes", rows, |me| {
                me.as_owner()?;
                let (fks, rest): (Vec<&DdlRow>, Vec<&DdlRow>) =
                    saved.iter().partition(|d| d.kind == "foreign key");
                for d in rest.into_iter().chain(fks) {
                    let t = Instant::now();
                    me.conn
                        .batch_execute(&d.create_sql)
                        .map_err(|e| rebuild_error(&d.name, e))?;
                    tracing::debug!(name = %d.name, elapsed = ?t.elapsed(), "rebuilt");
                }
                me.as_app()
            })?;
        }
        self.phase("commit", 0, |me| {
            <PgConnection as Connection>::TransactionManager::commit_transaction(&mut me.conn)
                .map_err(db("COMMIT"))
        })?;
        let report = BulkReport {
            records: self.records,
            relations: self.relations,
            index_path: self.path.clone(),
            phases: std::mem::take(&mut self.phases),
            elapsed: self.started.elapsed(),
        };
        tracing::info!(records = report.records, relations = report.relations, elapsed = ?report.elapsed, "bulk load committed");
        Ok(report)
    }
}

#[derive(Clone, Copy)]
enum CopyTable {
    Records,
    Relations,
}

fn relation_error(rt: &str, e: diesel::result::Error) -> Error {
    if let diesel::result::Error::DatabaseError(
        diesel::result::DatabaseErrorKind::UniqueViolation,
        info,
    ) = &e
    {
        let c = info.constraint_name().unwrap_or("");
        if c.starts_with("relations_one_") {
            return Error::conflict(
                ddms_core::ConflictKind::Cardinality,
                format!("relations of type {rt} violate its cardinality"),
            );
        }
        if c.contains("source_id_target_id") {
            return Error::conflict(
                ddms_core::ConflictKind::AlreadyExists,
                format!("the same {rt} relation is listed twice"),
            );
        }
    }
    db(rt)(e)
}

/// A failed index rebuild means the loaded data violates a unique or cardinality rule.
fn rebuild_error(name: &str, e: diesel::result::Error) -> Error {
    let msg = e.to_string();
    if msg.contains("could not create unique index") || msg.contains("is duplicated") {
        let (kind, what) = if name.starts_with("relations_one_") {
            (
                ddms_core::ConflictKind::Cardinality,
                "loaded relations violate a relation type's cardinality".to_string(),
            )
        } else if name.starts_with("fv_") {
            (
                ddms_core::ConflictKind::Unique,
                "loaded records repeat a value of a unique field".to_string(),
            )
        } else {
            (
                ddms_core::ConflictKind::AlreadyExists,
                format!("loaded rows repeat a key of {name}"),
            )
        };
        return Error::conflict(kind, format!("{what} ({msg})"));
    }
    db(&format!("rebuilding {name}"))(e)
}

/// Runs `ANALYZE` on the bulk tables (and the small schema tables) over up to
/// `connections` connections at once. Needs the tables' owner (the connecting role);
/// returns the tables skipped for lack of privilege.
pub fn analyze(url: &str, connections: usize) -> Result<Vec<String>> {
    let tables: Vec<&str> = BULK_TABLES
        .iter()
        .copied()
        .chain([
            "entity_types",
            "fields",
            "relation_types",
            "tenant_feeds",
            "tenants",
        ])
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let skipped = parking_lot::Mutex::new(Vec::new());
    let first_err = parking_lot::Mutex::new(None);
    let workers = connections.clamp(1, tables.len());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                let mut conn = match PgConnection::establish(url) {
                    Ok(c) => c,
                    Err(e) => {
                        first_err
                            .lock()
                            .get_or_insert(Error::Unavailable(format!("cannot connect: {e}")));
                        return;
                    }
                };
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(t) = tables.get(i) else { break };
                    let mut s = Sql::new();
                    s.push("SELECT pg_has_role(session_user, c.relowner, 'USAGE') AS b FROM pg_class c WHERE c.oid = to_regclass(")
                        .bind(Bind::Text(t.to_string()))
                        .push(")");
                    let own: Vec<BoolRow> = match s.query().load(&mut conn) {
                        Ok(r) => r,
                        Err(e) => {
                            first_err.lock().get_or_insert(db("analyze")(e));
                            return;
                        }
                    };
                    if !own.first().is_some_and(|r| r.b) {
                        skipped.lock().push(t.to_string());
                        continue;
                    }
                    // A table name from our fixed list.
                    if let Err(e) = conn.batch_execute(&format!("ANALYZE {t}")) {
                        first_err.lock().get_or_insert(db("analyze")(e));
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = first_err.into_inner() {
        return Err(e);
    }
    Ok(skipped.into_inner())
}
