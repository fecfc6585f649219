//! Bulk loading into one tenant: binary `COPY` into session-private staging tables, then
//! `INSERT ... SELECT` into the row-level-secured tables as `ddms_app`; or, when the
//! tenant is replaced, binary `COPY` straight into sealed copies of the tables.
//!
//! # Why staging tables, and sealed tables
//!
//! PostgreSQL refuses `COPY FROM` into a table with row-level security for a role that RLS
//! applies to ("COPY FROM not supported with row-level security"), and every DDMS table
//! has FORCEd RLS. A loader must therefore not COPY into `records` directly, and it must
//! never switch to a role that bypasses RLS for tenant data. Into the live tables,
//! [`BulkLoad`] COPYs (binary format, Diesel's [`diesel::copy_from`]) into `TEMP` staging
//! tables that it creates as `ddms_app` on its own connection — invisible to every other
//! session, never WAL-logged, dropped at commit — and then moves the rows with `INSERT
//! INTO records ... SELECT ... FROM staging` as `ddms_app` with the tenant set, so the RLS
//! `WITH CHECK` policy checks every row. A replacing load (the *swapped* path below)
//! instead COPYs into new, not yet published tables that are *sealed* to the tenant:
//! RLS off, but only the role `ddms_loader` (no `BYPASSRLS`, no other
//! privilege) may use them, and a `CHECK (tenant_id = …)` constraint holds every row to
//! the tenant; they get the live tables' RLS and grants back before they are published
//! (`SEAL` and `UNSEAL` in this module's source).
//! That saves the staging table's write and re-read (~1 s of the 1M-record seed).
//!
//! # Three paths
//!
//! * **Maintained** (always safe; [`BulkLoad::begin`], or [`BulkLoad::replace`] when
//!   another tenant has data): one transaction on one connection; the usual triggers
//!   write the field-value rows and the events, and the shared indexes are updated row by
//!   row. An interrupted load rolls back.
//! * **Rebuilt** ([`BulkLoad::begin`] when no *other* tenant has a row in the bulk tables,
//!   checked under RLS tenant by tenant, and the connecting role owns them): the same one
//!   transaction, but it locks the bulk tables (`ACCESS EXCLUSIVE`, with a lock timeout),
//!   re-checks, drops their indexes and constraints (definitions saved from the catalog;
//!   [`BulkLoad::reset_tenant`] then empties them with `TRUNCATE`), loads, and re-creates
//!   every index and constraint exactly as it was before committing — unique and
//!   cardinality indexes included, so a violation still aborts the whole load. All of it
//!   runs on one PostgreSQL backend, so on one core.
//! * **Swapped** ([`BulkLoad::replace`] under the same conditions; what `ddms seed` uses):
//!   the tenant is *replaced*, so its new data can be built beside the live tables and
//!   published at once. The loader creates empty copies of the bulk tables in the schema
//!   `ddms_bulk` (columns, defaults and policies copied from the catalog; RLS flags and
//!   grants too, but only once loaded: until then they are sealed, see above), COPYs into
//!   them as `ddms_loader` in one committed transaction per step, writes the field-value rows and
//!   events the triggers would (same expressions; the feed is numbered after the schema
//!   events), builds the indexes on several connections (the record tables' already while
//!   the relations load), ANALYZEs, and then one short *publish* transaction locks the
//!   live tables, re-checks that no other tenant has data, drops them (no `CASCADE`),
//!   moves the new ones into their place, re-adds the foreign keys and replaces the
//!   tenant's schema rows and feed counter. Until that commit the library sees the
//!   previous tenant (or none) untouched; an interrupted load leaves only `ddms_bulk`,
//!   which nothing reads and the next replacing load drops (a session advisory lock
//!   keeps two replacing loads apart). The live tables are not locked while loading.
//!
//! DDL always runs as the session user (the tables' owner); every row of tenant data is
//! written as `ddms_app` under RLS, or as `ddms_loader` into tables sealed to the tenant.
//! [`BulkLoad::index_path`] says which path ran and why.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
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
use crate::field_rows::{self, put_field, FieldRows, IndexedField};
use crate::schema::{cardinality_str, insert_feed, PURGE_ORDER};
use crate::sql::{Bind, Sql};

/// The staging tables (TEMP, per session) as Diesel tables, for `copy_from`.
mod stage {
    diesel::table! {
        /// Staging table for records (TEMP, per session).
        ddms_stage_records (id) {
            entity_type_id -> Uuid,
            id -> Uuid,
            data -> Jsonb,
        }
    }

    diesel::table! {
        /// The shadow records (direct COPY).
        ddms_bulk.records (id) {
            entity_type_id -> Uuid,
            id -> Uuid,
            data -> Jsonb,
        }
    }

    diesel::table! {
        /// The shadow relations (direct COPY).
        ddms_bulk.relations (id) {
            relation_type_id -> Uuid,
            id -> Uuid,
            source_id -> Uuid,
            target_id -> Uuid,
            uniq_source -> Bool,
            uniq_target -> Bool,
        }
    }

    diesel::table! {
        /// Staging table for relations (TEMP, per session).
        ddms_stage_relations (id) {
            relation_type_id -> Uuid,
            id -> Uuid,
            source_id -> Uuid,
            target_id -> Uuid,
            uniq_source -> Bool,
            uniq_target -> Bool,
        }
    }
}
use stage::{ddms_stage_records, ddms_stage_relations, records, relations};

/// A binary `COPY … FROM STDIN` on `$conn` into the Diesel table `$t` (all the columns it
/// declares), the rows written by `$write`.
macro_rules! copy_in {
    ($conn:expr, $t:path, $write:expr) => {
        diesel::copy_from($t)
            .from_raw_data($t, $write)
            .with_format(CopyFormat::Binary)
            .execute($conn)
    };
}

/// The shadow field-value tables as Diesel tables, for `copy_from` (`tenant_id` is the
/// sealed tables' default).
mod shadow_fv {
    macro_rules! fv_tables {
        ($($name:ident: $ty:ident),*) => {$(
            diesel::table! {
                use diesel::sql_types::*;
                ddms_bulk.$name (field_id, record_id) {
                    field_id -> Uuid,
                    record_id -> Uuid,
                    v -> Nullable<$ty>,
                    uniq -> Bool,
                }
            }
        )*};
    }
    fv_tables!(fv_text: Text, fv_int: BigInt, fv_float: Double, fv_bool: Bool, fv_date: Date, fv_ts: Timestamptz, fv_uuid: Uuid);
}

/// COPYs `rows` (of fields whose values the shadow `table` holds) in.
fn copy_field_rows(
    c: &mut PgConnection,
    table: &str,
    rows: &[FieldRows],
) -> diesel::QueryResult<usize> {
    let write = |w: &mut dyn Write| -> diesel::QueryResult<()> {
        let io = |e: std::io::Error| diesel::result::Error::SerializationError(Box::new(e));
        w.write_all(&COPY_HEADER).map_err(io)?;
        for field in rows {
            field.write(w).map_err(io)?;
        }
        w.write_all(&COPY_TRAILER).map_err(io)
    };
    macro_rules! copy_into {
        ($($t:ident),*) => {
            match table {
                $(stringify!($t) => copy_in!(c, shadow_fv::$t::table, write),)*
                other => Err(diesel::result::Error::QueryBuilderError(
                    format!("no field-value table {other}").into(),
                )),
            }
        };
    }
    copy_into!(fv_text, fv_int, fv_float, fv_bool, fv_date, fv_ts, fv_uuid)
}

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
    /// Connections a replacing load ([`BulkLoad::replace`]) uses at once on its exclusive
    /// path: index builds and ANALYZE run one statement per connection. Default 2.
    pub connections: usize,
    /// `max_parallel_maintenance_workers` of each index-building connection (PostgreSQL
    /// parallel workers per `CREATE INDEX`, on top of the connections). Default 0: on a
    /// small machine the connections already keep every core busy.
    pub index_workers: u32,
    /// A replacing load on its exclusive path ANALYZEs the new tables before it swaps
    /// them in (on [`BulkOptions::connections`] connections). Default false.
    pub analyze: bool,
    /// Bytes of field-value rows encoded by [`BulkLoad::record_encoder`]s that a replacing
    /// load keeps per copy step to sort them (so that the value indexes build from
    /// presorted input). Beyond it, with a second connection, the rows kept so far go to
    /// it as one sorted run and the step keeps collecting: memory stays bounded, and
    /// PostgreSQL sorts the runs together. Default 128 MiB (the 1M-record seed's largest
    /// step keeps ~40 MiB). With one connection a step's rows are all kept.
    pub field_rows_held: usize,
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
            connections: 2,
            index_workers: 0,
            analyze: false,
            field_rows_held: 128 << 20,
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
    /// A replacing load ([`BulkLoad::replace`]) built the tenant's new tables beside the
    /// live ones (schema `ddms_bulk`), built their indexes on `connections` connections
    /// and swapped them in with one short transaction.
    Swapped {
        /// Connections used for index builds and ANALYZE.
        connections: usize,
    },
}

impl IndexPath {
    /// True when the shared indexes were built after loading (no other tenant had data).
    pub fn is_exclusive(&self) -> bool {
        !matches!(self, IndexPath::Maintained(_))
    }
}

impl fmt::Display for IndexPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IndexPath::Maintained(why) => write!(f, "indexes maintained row by row ({why})"),
            IndexPath::Rebuilt => f.write_str(
                "exclusive: no other tenant has data, indexes dropped and rebuilt after loading",
            ),
            IndexPath::Swapped { connections } => write!(
                f,
                "exclusive: no other tenant has data; new tables built beside the live ones, \
                 indexes built on {connections} connection(s), swapped in at publish"
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
    /// The bulk tables were ANALYZEd before publishing ([`BulkOptions::analyze`]).
    pub analyzed: bool,
}

// ---------------------------------------------------------------------------------------
// Encoding (runs on any thread)
// ---------------------------------------------------------------------------------------

/// Rows encoded in PostgreSQL's binary COPY format, ready for [`BulkLoad::copy_records`]
/// or [`BulkLoad::copy_relations`]. Built only by [`RecordEncoder`] (which validates every
/// record) and [`RelationEncoder`].
#[derive(Debug)]
pub struct Chunk {
    owner: Uuid,
    bytes: Vec<u8>,
    rows: u64,
    /// Record ids (records) or source/target pairs (relations), for the endpoint check.
    ids: Vec<Uuid>,
    /// The least and the greatest row id (for the summary event).
    id_range: Option<(Uuid, Uuid)>,
    /// Field-value rows of the records, one buffer per indexed field (empty unless the
    /// encoder came from [`BulkLoad::record_encoder`]).
    fv: Vec<Vec<u8>>,
    /// Where its buffers go once it is dropped (after its COPY), for the encoder's next
    /// chunks.
    spent: std::sync::Arc<Spent>,
}

/// Buffers of chunks already copied, reused by the encoder that made them: the memory
/// allocator would otherwise hand the pages back to the kernel once a chunk is freed
/// and fault fresh zeroed ones in for the next (a sixth of the seed generator's CPU).
#[derive(Debug, Default)]
struct Spent(parking_lot::Mutex<Vec<(Vec<u8>, Vec<Uuid>)>>);

impl Spent {
    /// Buffer pairs kept at most (the rest are freed).
    const KEEP: usize = 4;
}

impl Drop for Chunk {
    fn drop(&mut self) {
        if self.bytes.capacity() > 0 {
            let mut spent = self.spent.0.lock();
            if spent.len() < Spent::KEEP {
                spent.push((
                    std::mem::take(&mut self.bytes),
                    std::mem::take(&mut self.ids),
                ));
            }
        }
    }
}

impl Chunk {
    /// An empty chunk of rows for `owner` (an entity or relation type).
    fn new(owner: Uuid) -> Chunk {
        Chunk {
            owner,
            bytes: Vec::new(),
            ids: Vec::new(),
            rows: 0,
            id_range: None,
            fv: Vec::new(),
            spent: Default::default(),
        }
    }

    /// Hands this chunk out and starts the next one of the same owner in its place, on
    /// spent buffers when there are some.
    fn hand_out(&mut self) -> Chunk {
        let (mut bytes, mut ids) = self.spent.0.lock().pop().unwrap_or_default();
        bytes.clear();
        ids.clear();
        bytes.reserve(self.bytes.len());
        ids.reserve(self.ids.len());
        let next = Chunk {
            owner: self.owner,
            bytes,
            ids,
            rows: 0,
            id_range: None,
            fv: self
                .fv
                .iter()
                .map(|b| Vec::with_capacity(b.len()))
                .collect(),
            spent: self.spent.clone(),
        };
        std::mem::replace(self, next)
    }

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

    /// Counts a row with id `id`.
    fn counted(&mut self, id: Uuid) {
        self.rows += 1;
        self.id_range = Some(widen(self.id_range, (id, id)));
    }
}

/// The smallest range holding `range` (if any) and `with`.
fn widen(range: Option<(Uuid, Uuid)>, with: (Uuid, Uuid)) -> (Uuid, Uuid) {
    match range {
        Some((lo, hi)) => (lo.min(with.0), hi.max(with.1)),
        None => with,
    }
}

/// Writes `data` as a JSON object with its keys in the order `jsonb` stores them:
/// shorter keys first, keys of the same length bytewise. PostgreSQL's `jsonb` input sorts
/// every object's keys that way; keys that arrive sorted pass its sort's presorted check at
/// once (the sort was 8-9 % of the CPU of a records COPY with the alphabetical order of
/// `serde_json`'s map).
fn write_jsonb_object(out: &mut Vec<u8>, data: &ddms_core::Data) -> serde_json::Result<()> {
    let mut entries: Vec<(&String, &Value)> = data.iter().collect();
    entries.sort_unstable_by(|a, b| {
        a.0.len()
            .cmp(&b.0.len())
            .then_with(|| a.0.as_bytes().cmp(b.0.as_bytes()))
    });
    out.push(b'{');
    for (i, (k, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, k)?;
        out.push(b':');
        serde_json::to_writer(&mut *out, v)?;
    }
    out.push(b'}');
    Ok(())
}

/// Validates records of one entity type and encodes them for COPY.
#[derive(Debug)]
pub struct RecordEncoder {
    ty: EntityType,
    chunk: Chunk,
    json: Vec<u8>,
    /// Indexed fields whose field-value rows are encoded too ([`BulkLoad::record_encoder`]).
    fields: Vec<IndexedField>,
    /// The field-value buffers' lengths before the record being pushed.
    marks: Vec<usize>,
}

impl RecordEncoder {
    /// An encoder for records of `ty` (the type returned by
    /// [`BulkLoad::create_entity_type`] or [`BulkLoad::entity_type`]).
    pub fn new(ty: &EntityType) -> Self {
        RecordEncoder {
            ty: ty.clone(),
            chunk: Chunk::new(ty.id),
            json: Vec::with_capacity(1024),
            fields: Vec::new(),
            marks: Vec::new(),
        }
    }

    /// Validates `data` against the entity type (defaults applied, unknown fields
    /// rejected, exactly as for single creates) and appends the record.
    pub fn push(&mut self, id: Uuid, data: &Value) -> Result<()> {
        let data = ddms_core::record::validate(&self.ty, data)?;
        self.encode(id, data)
    }

    /// [`RecordEncoder::push`] of an owned value: validated in place, without copying
    /// its values.
    pub fn push_owned(&mut self, id: Uuid, data: Value) -> Result<()> {
        let data = ddms_core::record::validate_owned(&self.ty, data)?;
        self.encode(id, data)
    }

    fn encode(&mut self, id: Uuid, data: ddms_core::Data) -> Result<()> {
        self.json.clear();
        self.json.push(1); // jsonb binary format version
        write_jsonb_object(&mut self.json, &data)
            .map_err(|e| Error::Internal(format!("cannot encode record {id}: {e}")))?;
        self.marks.clear();
        self.marks.extend(self.chunk.fv.iter().map(Vec::len));
        for (b, f) in self.chunk.fv.iter_mut().zip(&self.fields) {
            if let Err(e) = field_rows::put_row(b, f, id, data.get(&f.name)) {
                // Not a validated value (cannot happen): the record leaves no row behind.
                for (b, m) in self.chunk.fv.iter_mut().zip(&self.marks) {
                    b.truncate(*m);
                }
                return Err(e);
            }
        }
        let b = &mut self.chunk.bytes;
        b.extend_from_slice(&3i16.to_be_bytes());
        put_field(b, self.ty.id.as_bytes());
        put_field(b, id.as_bytes());
        put_field(b, &self.json);
        self.chunk.counted(id);
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
        self.chunk.hand_out()
    }
}

/// Encodes relations of one relation type for COPY.
#[derive(Debug)]
pub struct RelationEncoder {
    chunk: Chunk,
    uniq: [u8; 2],
}

impl RelationEncoder {
    /// An encoder for relations of `rt`.
    pub fn new(rt: &RelationType) -> Self {
        RelationEncoder {
            chunk: Chunk::new(rt.id),
            uniq: [
                u8::from(rt.cardinality == Cardinality::OneToOne),
                u8::from(rt.cardinality != Cardinality::ManyToMany),
            ],
        }
    }

    /// Appends the edge `source -> target` with id `id`.
    pub fn push(&mut self, id: Uuid, source: Uuid, target: Uuid) {
        let b = &mut self.chunk.bytes;
        b.extend_from_slice(&6i16.to_be_bytes());
        put_field(b, self.chunk.owner.as_bytes());
        put_field(b, id.as_bytes());
        put_field(b, source.as_bytes());
        put_field(b, target.as_bytes());
        put_field(b, &self.uniq[..1]);
        put_field(b, &self.uniq[1..]);
        self.chunk.counted(id);
        self.chunk.ids.push(source);
        self.chunk.ids.push(target);
    }

    /// Rows pushed since the last [`RelationEncoder::take`].
    pub fn rows(&self) -> u64 {
        self.chunk.rows
    }

    /// The rows pushed so far, as a chunk; the encoder starts a new one.
    pub fn take(&mut self) -> Chunk {
        self.chunk.hand_out()
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
    url: String,
    /// The exclusive path of a replacing load (`None`: one transaction on `conn`).
    shadow: Option<Box<Shadow>>,
    tenant: Uuid,
    actor: String,
    opts: BulkOptions,
    path: IndexPath,
    saved: Vec<DdlRow>,
    /// Entity types known to this load: name -> (id, type).
    types: HashMap<String, EntityType>,
    /// Record ids loaded by this load, per entity type (for the relation-end check).
    loaded: HashMap<Uuid, foldhash::HashSet<Uuid>>,
    staged_records: bool,
    staged_relations: bool,
    records: u64,
    relations: u64,
    phases: Vec<PhaseTiming>,
    started: Instant,
    observer: Option<Observer>,
    /// The tenant existed before this load (set by `reset_tenant` / `replace`).
    existed: bool,
    /// A step failed and took what was loaded before it along (the one transaction of
    /// the maintained paths, or the records steps' transaction of a replacing load):
    /// nothing more is loaded, committed or published.
    broken: Option<String>,
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
        let mut load = BulkLoad::open(url, tenant, actor, opts)?;
        load.path = load.choose_path()?;
        tracing::info!(tenant = %tenant, path = %load.path, "bulk load started");
        Ok(load)
    }

    /// Connects and starts the transaction (as `ddms_app`, bound to the tenant); the
    /// path is not chosen yet.
    fn open(url: &str, tenant: Uuid, actor: &str, opts: &BulkOptions) -> Result<BulkLoad> {
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
            url: url.to_string(),
            shadow: None,
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
            existed: false,
            broken: None,
        };
        load.tx_settings()?;
        Ok(load)
    }

    /// Settings of the load transaction (just begun), then acts as `ddms_app`.
    fn tx_settings(&mut self) -> Result<()> {
        simple(
            &mut self.conn,
            &format!(
                "SET LOCAL work_mem = {}; SET LOCAL maintenance_work_mem = {}",
                quote_setting(&self.opts.work_mem)?,
                quote_setting(&self.opts.maintenance_work_mem)?
            ),
        )?;
        if self.opts.events == BulkEvents::Summary {
            simple(
                &mut self.conn,
                "SELECT set_config('ddms.bulk_events', 'summary', true)",
            )?;
        }
        if self.shadow.is_some() {
            as_tenant(&mut self.conn, LOADER_ROLE, self.tenant, &self.actor)
                .map_err(db("set tenant"))
        } else {
            self.as_app()
        }
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
        as_tenant(&mut self.conn, APP_ROLE, self.tenant, &self.actor).map_err(db("set tenant"))
    }

    fn scope(&mut self, tenant: Uuid) -> Result<()> {
        crate::pool::set_scope(&mut self.conn, Some(tenant), &self.actor, true)
            .map_err(db("set tenant"))
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

    /// Why the exclusive path cannot be taken (`None`: it can, pending the lock).
    /// Runs as `ddms_app` inside a transaction.
    fn exclusive_blocker(&mut self) -> Result<Option<String>> {
        if !self.opts.rebuild_indexes {
            return Ok(Some("index rebuild disabled".into()));
        }
        if !self.owns_tables()? {
            return Ok(Some(
                "the connecting role does not own the tables, so it cannot rebuild their indexes"
                    .into(),
            ));
        }
        Ok(match self.other_tenants_with_data()? {
            None => Some(format!(
                "more than {} other tenants: not checked",
                self.opts.max_tenants_checked
            )),
            Some(n) if n > 0 => Some(format!(
                "{n} other tenant(s) have data in the shared tables"
            )),
            Some(_) => None,
        })
    }

    fn choose_path(&mut self) -> Result<IndexPath> {
        if let Some(why) = self.exclusive_blocker()? {
            return Ok(IndexPath::Maintained(why));
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
    /// with `name` and an empty change feed. Returns whether it existed. (A replacing
    /// load on its exclusive path only takes the new name: it resets the tenant when it
    /// publishes.)
    pub fn reset_tenant(&mut self, name: &str) -> Result<bool> {
        let name = name.trim().to_string();
        if name.is_empty() || name.chars().count() > 200 || name.contains('\0') {
            return Err(Error::invalid(
                "name",
                "invalid_name",
                "tenant name must be 1 to 200 characters without NUL",
            ));
        }
        if let Some(sh) = self.shadow.as_deref_mut() {
            // A replacing load resets the tenant when it publishes.
            sh.name = name;
            return Ok(self.existed);
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
        insert_feed(&mut self.conn, self.tenant).map_err(db("create feed"))?;
        self.types.clear();
        self.loaded.clear();
        self.existed = existed;
        Ok(existed)
    }

    /// Creates an entity type in this transaction (its indexes start `ready`: it has no
    /// records yet) and returns it.
    pub fn create_entity_type(&mut self, def: &EntityTypeDef) -> Result<EntityType> {
        if self.shadow.is_some() {
            return self.shadow_entity_type(def);
        }
        self.insert_entity_type(Uuid::new_v4(), def, None)
    }

    /// Inserts an entity type and its fields (with the given field ids, else new ones).
    fn insert_entity_type(
        &mut self,
        id: Uuid,
        def: &EntityTypeDef,
        field_ids: Option<&[Uuid]>,
    ) -> Result<EntityType> {
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
        for (i, f) in def.fields.iter().enumerate() {
            let field_id = field_ids
                .and_then(|ids| ids.get(i).copied())
                .unwrap_or_else(Uuid::new_v4);
            // A new type has no records: declared indexes start ready.
            PgBackend::insert_field_with_id(&mut self.conn, self.tenant, id, field_id, f, false)
                .map_err(|e| match e {
                    TxError::Db(e) => db("create field")(e),
                    TxError::Core(e) => e,
                })?;
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
        if self.shadow.is_some() {
            return self.shadow_relation_type(def);
        }
        self.insert_relation_type(Uuid::new_v4(), def)
    }

    fn insert_relation_type(&mut self, id: Uuid, def: &RelationTypeDef) -> Result<RelationType> {
        let source = self.entity_type(def.source.as_str())?.id;
        let target = self.entity_type(def.target.as_str())?.id;
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
        if self.shadow.is_some() {
            // The tenant is being replaced: only the types of this load exist.
            return Err(Error::not_found("entity type", name));
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
    /// `records` (RLS-checked; field-value rows and events by trigger); on the swapped
    /// path straight into the sealed shadow `records` (field-value rows and events by the
    /// loader). Returns the number of records.
    pub fn copy_records(
        &mut self,
        ty: &EntityType,
        chunks: impl IntoIterator<Item = Result<Chunk>>,
    ) -> Result<u64> {
        self.copy_step(Some(ty.id), |me| me.copy_records_now(ty, chunks))
    }

    /// An encoder for records of `ty` (as [`RecordEncoder::new`]) that, on the swapped path
    /// ([`BulkLoad::replace`]), also encodes the field-value rows of the type's indexed
    /// fields beside each record, so that the loader COPYs them instead of having
    /// PostgreSQL read the records back to derive them (about half the cost). On the other
    /// paths the triggers write them, and this is [`RecordEncoder::new`].
    pub fn record_encoder(&self, ty: &EntityType) -> Result<RecordEncoder> {
        let mut enc = RecordEncoder::new(ty);
        if self.shadow.is_some() {
            enc.fields = self.shadow_indexed(ty)?;
            enc.chunk.fv = vec![Vec::new(); enc.fields.len()];
        }
        Ok(enc)
    }

    /// Runs one copy step: directly, or in a replacing load in its own transaction on
    /// the shadow tables, once [`BulkLoad::build_finished_tables`] has started on those
    /// the types before `loading` complete (`None`: relations).
    fn copy_step<T>(
        &mut self,
        loading: Option<Uuid>,
        f: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<T> {
        self.refuse_if_broken("this load cannot go on", "start it again")?;
        if self.shadow.is_some() {
            if loading.is_none() {
                self.end_records_tx()?;
            }
            self.build_finished_tables(loading)?;
            let out = match loading {
                Some(_) => {
                    let out = self.in_records_tx(f)?;
                    // Per-row events are read back from the rows the step's transaction
                    // wrote (`xmin`): then every step commits on its own.
                    if self.opts.events == BulkEvents::PerRow {
                        self.end_records_tx()?;
                    }
                    out
                }
                None => self.in_shadow_tx(f)?,
            };
            return Ok(out);
        }
        // One transaction: a failed step aborts it, and everything before goes with it.
        let out = f(self);
        if let Err(e) = &out {
            self.broken = Some(format!("a step failed ({e})"));
        }
        out
    }

    fn copy_records_now(
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
        let direct = self.shadow.is_some();
        if !direct && !self.staged_records {
            simple(
                &mut self.conn,
                "CREATE TEMP TABLE ddms_stage_records (entity_type_id uuid NOT NULL, id uuid NOT NULL, data jsonb NOT NULL) ON COMMIT DROP",
            )?;
            self.staged_records = true;
        }
        let what = ty.name.to_string();
        // Borrowed out of `self` for the duration of the COPY.
        let mut loaded = std::mem::take(&mut self.loaded);
        let ids = loaded.entry(ty.id).or_default();
        // Field-value rows that come with the chunks (from `record_encoder`): kept, in
        // their compact form, until the step's records are in (or `field_rows_held` is
        // reached), then sorted and COPYed by the builder connection while this one loads
        // on.
        let fields = if direct {
            self.shadow_indexed(ty)?
        } else {
            Vec::new()
        };
        let mut builder = match direct && self.opts.connections >= 2 {
            true => Some(self.builder()?),
            false => None,
        };
        let mut sink =
            FieldRowSink::new(&what, &fields, builder.as_mut(), self.opts.field_rows_held);
        let copied = self.copy_phase(
            &format!("copy {what}"),
            &what,
            ty.id,
            chunks,
            |c| {
                ids.extend(c.ids.iter().copied());
                sink.add(c);
            },
            if direct {
                CopyTable::ShadowRecords
            } else {
                CopyTable::Records
            },
        );
        let encoded = sink.finish();
        if let (Some(b), Some(sh)) = (builder, self.shadow.as_mut()) {
            sh.builder = Some(b);
        }
        self.loaded = loaded;
        let (n, id_range) = copied?;
        if direct {
            let encoded = encoded?;
            // In the sealed shadow table already: add what the triggers would write.
            self.shadow_record_rows(ty, &fields, n, id_range, encoded)?;
            self.records += n;
            return Ok(n);
        }
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
    /// COPY and inserts them into `relations` (on the swapped path: straight into the
    /// sealed shadow `relations`). Every end must be a record of the right
    /// entity type (records loaded by this transaction are checked in memory, others in
    /// the database and locked like single creates); duplicates and cardinality
    /// violations abort the load. Returns the number of relations.
    pub fn copy_relations(
        &mut self,
        rt: &RelationType,
        chunks: impl IntoIterator<Item = Result<Chunk>>,
    ) -> Result<u64> {
        self.copy_step(None, |me| me.copy_relations_now(rt, chunks))
    }

    fn copy_relations_now(
        &mut self,
        rt: &RelationType,
        chunks: impl IntoIterator<Item = Result<Chunk>>,
    ) -> Result<u64> {
        let source = self.entity_type(rt.source.as_str())?.id;
        let target = self.entity_type(rt.target.as_str())?.id;
        let direct = self.shadow.is_some();
        if !direct && !self.staged_relations {
            simple(
                &mut self.conn,
                "CREATE TEMP TABLE ddms_stage_relations (relation_type_id uuid NOT NULL, id uuid NOT NULL, source_id uuid NOT NULL, target_id uuid NOT NULL, uniq_source boolean NOT NULL, uniq_target boolean NOT NULL) ON COMMIT DROP",
            )?;
            self.staged_relations = true;
        }
        // Borrowed out of `self` for the duration of the COPY.
        let loaded = std::mem::take(&mut self.loaded);
        let empty = foldhash::HashSet::default();
        let src_ids = loaded.get(&source).unwrap_or(&empty);
        let tgt_ids = loaded.get(&target).unwrap_or(&empty);
        let mut unknown: Vec<(Uuid, Uuid)> = Vec::new(); // (entity type, record)
        let (mut srcs, mut tgts) = (Vec::new(), Vec::new());
        let what = rt.name.to_string();
        let n = self.copy_phase(
            &format!("copy {what}"),
            &what,
            rt.id,
            chunks,
            |c| {
                for pair in c.ids.chunks_exact(2) {
                    srcs.push(pair[0]);
                    tgts.push(pair[1]);
                }
                not_loaded(&mut srcs, src_ids, source, &mut unknown);
                not_loaded(&mut tgts, tgt_ids, target, &mut unknown);
            },
            if direct {
                CopyTable::ShadowRelations
            } else {
                CopyTable::Relations
            },
        );
        self.loaded = loaded;
        let (n, id_range) = n?;
        if !unknown.is_empty() {
            self.check_existing_ends(&rt.name, unknown)?;
        }
        if direct {
            // In the sealed shadow table already: add what the triggers would write.
            self.shadow_relation_rows(rt, n, id_range)?;
            self.relations += n;
            return Ok(n);
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
        if self.shadow.is_some() {
            // A replacing load: the tenant's earlier records go away at publish.
            return Err(Error::invalid(
                "relations",
                "unknown_end",
                format!(
                    "relation type {rt}: record {} is not loaded by this load",
                    ends[0].1
                ),
            ));
        }
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
        mut on_chunk: impl FnMut(&mut Chunk),
        table: CopyTable,
    ) -> Result<(u64, Option<(Uuid, Uuid)>)> {
        let started = Instant::now();
        self.notify(BulkProgress::Phase(phase.to_string()));
        let source = RefCell::new(chunks.into_iter());
        let failure: RefCell<Option<Error>> = RefCell::new(None);
        let rows = Cell::new(0u64);
        let id_range = Cell::new(None);
        let observer = RefCell::new(self.observer.take());
        let on_chunk = RefCell::new(&mut on_chunk);
        let callback = |w: &mut dyn Write| -> std::result::Result<(), CopyErr> {
            let io = |e: std::io::Error| {
                CopyErr::Db(diesel::result::Error::SerializationError(Box::new(e)))
            };
            w.write_all(&COPY_HEADER).map_err(io)?;
            let mut src = source.borrow_mut();
            for chunk in src.by_ref() {
                let mut chunk = match chunk {
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
                if let Some(r) = chunk.id_range {
                    id_range.set(Some(widen(id_range.get(), r)));
                }
                (on_chunk.borrow_mut())(&mut chunk);
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
        let c = &mut self.conn;
        let result = match table {
            CopyTable::Records => copy_in!(c, ddms_stage_records::table, callback),
            CopyTable::Relations => copy_in!(c, ddms_stage_relations::table, callback),
            CopyTable::ShadowRecords => copy_in!(c, records::table, callback),
            CopyTable::ShadowRelations => copy_in!(c, relations::table, callback),
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
        Ok((rows.get(), id_range.get()))
    }

    /// Re-creates what the exclusive path dropped (indexes and unique constraints first,
    /// foreign keys last) and commits. On error everything is rolled back.
    pub fn commit(mut self) -> Result<BulkReport> {
        if self.shadow.is_some() {
            return self.publish();
        }
        self.refuse_if_broken("nothing was committed", "start the load again")?;
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
            analyzed: false,
        };
        tracing::info!(records = report.records, relations = report.relations, elapsed = ?report.elapsed, "bulk load committed");
        Ok(report)
    }
}

/// Moves the ids of `batch` that `loaded` lacks into `unknown` as `(ty, id)`, and
/// empties `batch`. A hash probe per end: one or two cache misses, where a search of the
/// sorted ids (binary or galloping: a chunk's targets are scattered over the whole type)
/// missed the cache at each of its last steps and was a quarter of the seed's client CPU.
fn not_loaded(
    batch: &mut Vec<Uuid>,
    loaded: &foldhash::HashSet<Uuid>,
    ty: Uuid,
    unknown: &mut Vec<(Uuid, Uuid)>,
) {
    unknown.extend(
        batch
            .drain(..)
            .filter(|id| !loaded.contains(id))
            .map(|id| (ty, id)),
    );
}

/// Collects the client-encoded field-value rows of one record copy step, per field (the
/// chunks' buffers, moved); with a builder, hands them over as sorted COPY tasks whenever
/// they reach `held` bytes ([`BulkOptions::field_rows_held`]), so memory stays bounded.
/// Chunks must all carry them or none do.
struct FieldRowSink<'a> {
    ty: &'a str,
    fields: &'a [IndexedField],
    builder: Option<&'a mut Builder>,
    held: usize,
    per_field: Vec<Vec<Vec<u8>>>,
    bytes: usize,
    with: u64,
    without: u64,
}

impl<'a> FieldRowSink<'a> {
    fn new(
        ty: &'a str,
        fields: &'a [IndexedField],
        builder: Option<&'a mut Builder>,
        held: usize,
    ) -> Self {
        FieldRowSink {
            ty,
            fields,
            builder,
            held,
            per_field: vec![Vec::new(); fields.len()],
            bytes: 0,
            with: 0,
            without: 0,
        }
    }

    fn add(&mut self, c: &mut Chunk) {
        if c.fv.is_empty() || c.fv.len() != self.fields.len() {
            self.without += 1;
            return;
        }
        self.with += 1;
        for (all, rows) in self.per_field.iter_mut().zip(c.fv.drain(..)) {
            self.bytes += rows.len();
            all.push(rows);
        }
        if self.bytes >= self.held {
            if let Some(b) = self.builder.as_mut() {
                let rows = self.per_field.iter_mut().map(std::mem::take).collect();
                b.add(copy_tasks(self.ty, self.fields, rows), 1);
                self.bytes = 0;
            }
        }
    }

    /// The rows not handed over yet, per field; `None` when the chunks carried none (or
    /// the type has no indexed field).
    fn finish(self) -> Result<Option<Vec<Vec<Vec<u8>>>>> {
        match (self.with, self.without) {
            (0, _) => Ok(None),
            (_, 0) => Ok(Some(self.per_field)),
            _ => Err(Error::Internal(format!(
                "the copy of {} mixes chunks with and without this load's field-value rows",
                self.ty
            ))),
        }
    }
}

/// COPY tasks writing `rows` (per field of `fields`, client-encoded) into the field-value
/// tables: one per table, its fields in the order of their ids (the order of the table's
/// indexes), each field's rows sorted by value ([`FieldRows`]).
fn copy_tasks(ty: &str, fields: &[IndexedField], rows: Vec<Vec<Vec<u8>>>) -> Vec<Task> {
    let mut tables: Vec<(&'static str, Vec<FieldRows>)> = Vec::new();
    for (f, pieces) in fields.iter().zip(rows) {
        if pieces.iter().all(Vec::is_empty) {
            continue;
        }
        let table = crate::sql::class_table(f.class).0;
        let rows = FieldRows {
            field: f.clone(),
            pieces,
        };
        match tables.iter_mut().find(|(t, _)| *t == table) {
            Some((_, b)) => b.push(rows),
            None => tables.push((table, vec![rows])),
        }
    }
    tables
        .into_iter()
        .map(|(table, mut rows)| {
            rows.sort_by_key(|r| r.field.id);
            Task {
                rows: 0,
                tables: vec![table.to_string()],
                name: format!("field values of {ty} into {table}"),
                work: Work::Copy(table, rows),
            }
        })
        .collect()
}

#[derive(Clone, Copy)]
enum CopyTable {
    Records,
    Relations,
    ShadowRecords,
    ShadowRelations,
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

/// The small per-tenant schema tables (ANALYZEd after a load besides [`BULK_TABLES`]).
pub const SCHEMA_TABLES: [&str; 5] = [
    "entity_types",
    "fields",
    "relation_types",
    "tenant_feeds",
    "tenants",
];

/// [`BULK_TABLES`] and [`SCHEMA_TABLES`], in that order (derived, not restated).
pub const ALL_TABLES: [&str; BULK_TABLES.len() + SCHEMA_TABLES.len()] = {
    let mut out = [""; BULK_TABLES.len() + SCHEMA_TABLES.len()];
    let mut i = 0;
    while i < BULK_TABLES.len() {
        out[i] = BULK_TABLES[i];
        i += 1;
    }
    let mut j = 0;
    while j < SCHEMA_TABLES.len() {
        out[BULK_TABLES.len() + j] = SCHEMA_TABLES[j];
        j += 1;
    }
    out
};

/// Runs `ANALYZE` on the bulk tables (and the small schema tables) over up to
/// `connections` connections at once. Needs the tables' owner (the connecting role);
/// returns the tables skipped for lack of privilege.
pub fn analyze(url: &str, connections: usize) -> Result<Vec<String>> {
    analyze_tables(url, &ALL_TABLES, connections)
}

/// [`analyze`] for the given tables (names from [`ALL_TABLES`]).
pub fn analyze_tables(url: &str, tables: &[&str], connections: usize) -> Result<Vec<String>> {
    if let Some(t) = tables.iter().find(|t| !ALL_TABLES.contains(t)) {
        return Err(Error::Internal(format!("{t} is not a DDMS table")));
    }
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

// ---------------------------------------------------------------------------------------
// Replacing a tenant: build beside the live tables, swap in at publish
// ---------------------------------------------------------------------------------------

/// The schema where a replacing load builds the new tables (reserved for it).
const SHADOW_SCHEMA: &str = "ddms_bulk";
/// Session advisory lock held by a replacing load on its exclusive path: one at a time.
const SHADOW_LOCK: i64 = 0x6464_6d73_6275_6c6b;

/// Why the live bulk tables cannot be rebuilt beside themselves and swapped (empty: they
/// can). `$1` the table names, `$2` their schema; run with `search_path = pg_catalog`.
const SHADOW_BLOCKERS: &str = "WITH t AS (SELECT n AS tbl, to_regclass(format('%I.%I', $2::text, n))::oid AS oid FROM unnest($1::text[]) n) \
    SELECT reason AS name FROM ( \
      SELECT format('%s is missing', t.tbl) AS reason FROM t WHERE t.oid IS NULL \
      UNION ALL SELECT format('%s is not a plain permanent table', c.relname) FROM t JOIN pg_class c ON c.oid = t.oid \
        WHERE c.relkind <> 'r' OR c.relpersistence <> 'p' OR c.reloptions IS NOT NULL OR c.relreplident <> 'd' OR c.relispartition \
      UNION ALL SELECT format('%s takes part in inheritance', t.tbl) FROM t WHERE EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = t.oid OR i.inhparent = t.oid) \
      UNION ALL SELECT format('foreign key %s of %s references %s', k.conname, k.conrelid::regclass, t.tbl) FROM t JOIN pg_constraint k ON k.contype = 'f' AND k.confrelid = t.oid \
        WHERE k.conrelid NOT IN (SELECT oid FROM t) \
      UNION ALL SELECT format('constraint %s of %s is deferrable or an exclusion constraint', k.conname, t.tbl) FROM t JOIN pg_constraint k ON k.conrelid = t.oid \
        WHERE k.contype = 'x' OR (k.contype IN ('p', 'u', 'f') AND k.condeferrable) \
      UNION ALL SELECT format('a view or rule depends on %s', t.tbl) FROM t JOIN pg_depend d ON d.refobjid = t.oid AND d.classid = 'pg_rewrite'::regclass \
        JOIN pg_rewrite r ON r.oid = d.objid WHERE r.ev_class <> t.oid \
      UNION ALL SELECT format('trigger %s of %s is not enabled as usual', g.tgname, t.tbl) FROM t JOIN pg_trigger g ON g.tgrelid = t.oid AND NOT g.tgisinternal AND g.tgenabled <> 'O' \
      UNION ALL SELECT format('%s has column privileges or statistics targets', t.tbl) FROM t WHERE EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = t.oid AND a.attnum > 0 \
        AND NOT a.attisdropped AND (a.attacl IS NOT NULL OR a.attstattarget >= 0)) \
      UNION ALL SELECT format('%s is in a publication', t.tbl) FROM t WHERE EXISTS (SELECT 1 FROM pg_publication_rel p WHERE p.prrelid = t.oid) \
      UNION ALL SELECT format('column %s of %s has a default', a.attname, t.tbl) FROM t JOIN pg_attribute a ON a.attrelid = t.oid \
        AND a.attname IN ('tenant_id', 'created_by', 'updated_by') AND a.atthasdef \
      UNION ALL SELECT format('constraint %s of %s has the name the load uses', k.conname, t.tbl) FROM t JOIN pg_constraint k ON k.conrelid = t.oid \
        AND k.conname = 'ddms_bulk_tenant' \
      UNION ALL SELECT 'the connecting role may not act as ddms_loader (migration 7 grants it; see the README)' \
        WHERE NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = 'ddms_loader' AND pg_has_role(session_user, r.oid, 'MEMBER')) \
    ) x";

/// The statements that give the shadow tables everything the live tables have, all text
/// generated by PostgreSQL from the catalog (`%I`-quoted names, `pg_get_indexdef`,
/// `pg_get_triggerdef`, `pg_get_expr`, `pg_get_constraintdef`). `$1` the table names, `$2`
/// their schema; run with `search_path = pg_catalog` so every name comes out qualified.
/// Kinds: `table` (with owner; autovacuum off while loading, so that it never holds a
/// lock the index builds wait for) and `policy` (run when the shadow tables are created),
/// `rls` (the RLS flags) and `grant` (run when the loaded tables are unsealed, see
/// [`SEAL`]), `index` (every index, those behind constraints included, built after
/// loading), `attach` (primary and unique constraints on those indexes), `trigger`,
/// `foreign key` (re-added on the live names after the swap).
const SHADOW_DDL: &str = "WITH t AS (SELECT n AS tbl, to_regclass(format('%I.%I', $2::text, n))::oid AS oid FROM unnest($1::text[]) n) \
    SELECT kind, tbl AS name, obj AS drop_sql, sql AS create_sql FROM ( \
      SELECT 1 AS ord, 'table' AS kind, t.tbl, t.tbl AS obj, \
             format('CREATE TABLE ddms_bulk.%I (LIKE %I.%I INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED INCLUDING IDENTITY INCLUDING STORAGE INCLUDING COMPRESSION INCLUDING STATISTICS INCLUDING COMMENTS); ALTER TABLE ddms_bulk.%I OWNER TO %I', \
                    t.tbl, $2::text, t.tbl, t.tbl, pg_get_userbyid(c.relowner)) \
             || format('; ALTER TABLE ddms_bulk.%I SET (autovacuum_enabled = false)', t.tbl) AS sql \
        FROM t JOIN pg_class c ON c.oid = t.oid \
      UNION ALL \
      SELECT 3, 'rls', t.tbl, t.tbl, \
             concat_ws('; ', CASE WHEN c.relrowsecurity THEN format('ALTER TABLE ddms_bulk.%I ENABLE ROW LEVEL SECURITY', t.tbl) END, \
                       CASE WHEN c.relforcerowsecurity THEN format('ALTER TABLE ddms_bulk.%I FORCE ROW LEVEL SECURITY', t.tbl) END) \
        FROM t JOIN pg_class c ON c.oid = t.oid WHERE c.relrowsecurity OR c.relforcerowsecurity \
      UNION ALL \
      SELECT 2, 'policy', t.tbl, p.polname::text, \
             format('CREATE POLICY %I ON ddms_bulk.%I AS %s FOR %s TO %s', p.polname, t.tbl, \
                    CASE WHEN p.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END, \
                    CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE 'ALL' END, \
                    (SELECT string_agg(CASE WHEN r = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r)) END, ', ') FROM unnest(p.polroles) r)) \
             || coalesce(' USING (' || pg_get_expr(p.polqual, p.polrelid) || ')', '') \
             || coalesce(' WITH CHECK (' || pg_get_expr(p.polwithcheck, p.polrelid) || ')', '') \
        FROM t JOIN pg_policy p ON p.polrelid = t.oid \
      UNION ALL \
      SELECT 3, 'grant', t.tbl, a.privilege_type, \
             format('GRANT %s ON ddms_bulk.%I TO %s', a.privilege_type, t.tbl, \
                    CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END) \
             || CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END \
        FROM t JOIN pg_class c ON c.oid = t.oid CROSS JOIN LATERAL aclexplode(c.relacl) a WHERE a.grantee <> c.relowner \
      UNION ALL \
      SELECT 4, 'index', t.tbl, ic.relname::text, \
             replace(pg_get_indexdef(i.indexrelid), format(' ON %I.%I USING ', $2::text, t.tbl), format(' ON ddms_bulk.%I USING ', t.tbl)) \
        FROM t JOIN pg_index i ON i.indrelid = t.oid JOIN pg_class ic ON ic.oid = i.indexrelid \
      UNION ALL \
      SELECT 5, 'attach', t.tbl, k.conname::text, \
             format('ALTER TABLE ddms_bulk.%I ADD CONSTRAINT %I %s USING INDEX %I', t.tbl, k.conname, \
                    CASE k.contype WHEN 'p' THEN 'PRIMARY KEY' ELSE 'UNIQUE' END, ic.relname) \
        FROM t JOIN pg_constraint k ON k.conrelid = t.oid AND k.contype IN ('p', 'u') JOIN pg_class ic ON ic.oid = k.conindid \
      UNION ALL \
      SELECT 6, 'trigger', t.tbl, g.tgname::text, \
             replace(pg_get_triggerdef(g.oid), format(' ON %I.%I ', $2::text, t.tbl), format(' ON ddms_bulk.%I ', t.tbl)) \
        FROM t JOIN pg_trigger g ON g.tgrelid = t.oid AND NOT g.tgisinternal \
      UNION ALL \
      SELECT 7, 'foreign key', t.tbl, k.conname::text, \
             format('ALTER TABLE %I.%I ADD CONSTRAINT %I %s', $2::text, t.tbl, k.conname, pg_get_constraintdef(k.oid)) \
        FROM t JOIN pg_constraint k ON k.conrelid = t.oid AND k.contype = 'f' \
    ) x ORDER BY ord, tbl, obj";

/// Seals the new shadow tables for loading (`$1` the table names, `$2` the tenant, `$3`
/// the actor; the statements are generated by PostgreSQL with `%L`-quoted values):
/// PostgreSQL refuses `COPY FROM` into a table with row-level security for a role it
/// applies to, so while they load the shadow tables have RLS off and are instead
/// - readable and writable by `ddms_loader` only (no `BYPASSRLS`, no other privilege:
///   not the app role, so no tenant's session can see them, and not the live tables),
/// - held to the tenant by a `CHECK (tenant_id = tenant)` constraint, checked on every
///   row as the policy's `WITH CHECK` would be, with `tenant_id` (and the actor columns)
///   defaulting to the load's values so a COPY need not send them.
///
/// They hold no other tenant's rows (they start empty and only this load writes them),
/// and [`UNSEAL`] restores the live tables' RLS, policies and grants before they are
/// published.
const SEAL: &str = "SELECT string_agg(sql, '; ') AS name FROM ( \
      SELECT 'GRANT USAGE ON SCHEMA ddms_bulk TO ddms_loader' AS sql \
      UNION ALL SELECT format('GRANT SELECT, INSERT ON ddms_bulk.%I TO ddms_loader', n) FROM unnest($1::text[]) n \
      UNION ALL SELECT format('ALTER TABLE ddms_bulk.%I ADD CONSTRAINT ddms_bulk_tenant CHECK (tenant_id = %L::uuid), ALTER COLUMN tenant_id SET DEFAULT %L::uuid', \
                              n, $2::text, $2::text) FROM unnest($1::text[]) n \
      UNION ALL SELECT format('ALTER TABLE ddms_bulk.records ALTER COLUMN created_by SET DEFAULT %L, ALTER COLUMN updated_by SET DEFAULT %L', $3::text, $3::text) \
      UNION ALL SELECT format('ALTER TABLE ddms_bulk.relations ALTER COLUMN created_by SET DEFAULT %L', $3::text) \
    ) x";

/// Undoes [`SEAL`] on one table (`{t}`); the live table's `rls` and `grant` statements
/// follow it.
const UNSEAL: &str = "ALTER TABLE ddms_bulk.{t} DROP CONSTRAINT ddms_bulk_tenant, ALTER COLUMN tenant_id DROP DEFAULT; \
    REVOKE ALL ON ddms_bulk.{t} FROM ddms_loader";

/// Undoes the actor defaults of [`SEAL`].
const UNSEAL_ACTOR: &str = "ALTER TABLE ddms_bulk.records ALTER COLUMN created_by DROP DEFAULT, ALTER COLUMN updated_by DROP DEFAULT; \
    ALTER TABLE ddms_bulk.relations ALTER COLUMN created_by DROP DEFAULT; \
    REVOKE USAGE ON SCHEMA ddms_bulk FROM ddms_loader";

/// What a replacing load keeps while it builds the tenant beside the live tables.
#[derive(Debug, Default)]
struct Shadow {
    /// The tenant's name after publishing.
    name: String,
    /// The schema of the live tables.
    live: String,
    /// `CREATE INDEX` statements on the shadow tables: (table, index name, statement).
    indexes: Vec<(String, String, String)>,
    /// Primary and unique constraints, attached to their indexes after the builds.
    attach: Vec<String>,
    /// What gives the loaded tables the live tables' RLS flags and grants back (see
    /// [`SEAL`]), run after the builds.
    unseal: Vec<String>,
    /// Triggers, created on the shadow tables after loading (the loader writes what they
    /// would: field-value rows and events).
    triggers: Vec<String>,
    /// Foreign keys of the bulk tables, re-added (and validated) after the swap.
    foreign_keys: Vec<(String, String)>,
    /// Entity types in creation order, with their field ids (in field order).
    entity_types: Vec<(EntityTypeDef, Uuid, Vec<Uuid>)>,
    /// Relation types in creation order.
    relation_types: Vec<(RelationTypeDef, Uuid)>,
    /// A copy has run: the schema events are numbered, no more types.
    loading: bool,
    /// The seq of the next event the loader writes.
    next_seq: i64,
    /// Rows loaded per shadow table (orders the index builds, largest first).
    rows: HashMap<String, u64>,
    /// Published (or cleaned up): nothing left to remove.
    done: bool,
    /// Ids handed out (see [`Shadow::next_id`]).
    ids: u64,
    /// The entity type of the last `copy_records`, and the ones loaded before it.
    current: Option<Uuid>,
    finished: Vec<Uuid>,
    /// Tables whose ANALYZE is queued ([`BulkOptions::analyze`]).
    analyzed: Vec<String>,
    /// Index builds running on other connections.
    builder: Option<Builder>,
    /// Types whose field-value rows are derived from the records (chunks without them)
    /// once the records steps' transaction ends: (type, name, indexed fields, rows).
    /// One derivation per type covers every step of it in that transaction.
    derive: Vec<(Uuid, String, Vec<IndexedField>, u64)>,
    /// The records steps' transaction is open on the loader's connection (see
    /// [`BulkLoad::in_records_tx`]).
    records_tx: bool,
}

impl Shadow {
    /// A time-ordered id that also grows within one millisecond.
    fn next_id(&mut self) -> Uuid {
        self.ids += 1;
        let millis = Utc::now().timestamp_millis().max(0) as u64;
        let random = u128::from(Uuid::new_v4().as_u64_pair().1) & ((1u128 << 56) - 1);
        ordered_uuid(millis, (u128::from(self.ids) << 56) | random)
    }
}

#[derive(QueryableByName)]
struct NameRow {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct SeqRow {
    #[diesel(sql_type = BigInt)]
    seq: i64,
}

impl BulkLoad {
    /// Starts a load that **replaces** `tenant` (named `name`) with what it loads: the
    /// tenant's previous schema, records, relations and feed are gone once it commits.
    ///
    /// When no other tenant has data in the shared tables (and the connecting role owns
    /// them), the load takes the exclusive path [`IndexPath::Swapped`]: it creates empty
    /// copies of the bulk tables in the schema `ddms_bulk` (policies included; RLS and
    /// grants restored after loading), COPYs into them sealed to the tenant as
    /// `ddms_loader` (see the module docs) in one committed transaction per step (the loader
    /// writes the field-value rows and events that the triggers would), builds their indexes on [`BulkOptions::connections`] connections, and
    /// [`BulkLoad::commit`] swaps them in with one short transaction that also declares the
    /// tenant's types. Until then the live tables, and so the library, still show the
    /// previous tenant (or none); an interrupted load leaves only `ddms_bulk` behind, which
    /// nothing reads and the next replacing load removes. Entity and relation types must
    /// be created before the first copy (their events come first in the feed).
    ///
    /// Otherwise it is [`BulkLoad::begin`] followed by [`BulkLoad::reset_tenant`]: one
    /// transaction, indexes maintained row by row, the reason in [`BulkLoad::index_path`].
    pub fn replace(
        url: &str,
        tenant: Uuid,
        name: &str,
        actor: &str,
        opts: &BulkOptions,
    ) -> Result<BulkLoad> {
        let name = name.trim().to_string();
        if name.is_empty() || name.chars().count() > 200 || name.contains('\0') {
            return Err(Error::invalid(
                "name",
                "invalid_name",
                "tenant name must be 1 to 200 characters without NUL",
            ));
        }
        let mut load = BulkLoad::open(url, tenant, actor, opts)?;
        let blocker = load.exclusive_blocker()?;
        let why = match blocker {
            Some(why) => why,
            None => {
                let rows: Vec<BoolRow> =
                    diesel::sql_query("SELECT EXISTS (SELECT 1 FROM tenants) AS b")
                        .load(&mut load.conn)
                        .map_err(db("tenant check"))?;
                load.existed = rows.first().is_some_and(|r| r.b);
                <PgConnection as Connection>::TransactionManager::rollback_transaction(
                    &mut load.conn,
                )
                .map_err(db("ROLLBACK"))?;
                match load.create_shadow(&name)? {
                    Ok(shadow) => {
                        load.shadow = Some(Box::new(shadow));
                        load.path = IndexPath::Swapped {
                            connections: opts.connections.max(1),
                        };
                        simple(&mut load.conn, "SET synchronous_commit = off")?;
                        tracing::info!(tenant = %tenant, path = %load.path, "bulk load started");
                        return Ok(load);
                    }
                    Err(why) => {
                        <PgConnection as Connection>::TransactionManager::begin_transaction(
                            &mut load.conn,
                        )
                        .map_err(db("BEGIN"))?;
                        load.tx_settings()?;
                        why
                    }
                }
            }
        };
        load.path = IndexPath::Maintained(why);
        tracing::info!(tenant = %tenant, path = %load.path, "bulk load started");
        load.reset_tenant(&name)?;
        Ok(load)
    }

    /// True when the tenant existed before this load (it is replaced).
    pub fn replaces_existing(&self) -> bool {
        self.existed
    }

    /// Creates the shadow tables (committed, empty) and saves what to build on them.
    /// `Ok(Err(why))`: the exclusive path is not possible, nothing was changed.
    fn create_shadow(&mut self, name: &str) -> Result<std::result::Result<Shadow, String>> {
        let locked: Vec<BoolRow> =
            diesel::sql_query(format!("SELECT pg_try_advisory_lock({SHADOW_LOCK}) AS b"))
                .load(&mut self.conn)
                .map_err(db("advisory lock"))?;
        if !locked.first().is_some_and(|r| r.b) {
            return Err(Error::Unavailable(
                "another replacing bulk load is running on this database".into(),
            ));
        }
        let out = self.create_shadow_locked(name);
        if !matches!(out, Ok(Ok(_))) {
            let _ = self
                .conn
                .batch_execute(&format!("SELECT pg_advisory_unlock({SHADOW_LOCK})"));
        }
        out
    }

    fn create_shadow_locked(&mut self, name: &str) -> Result<std::result::Result<Shadow, String>> {
        let live: Vec<NameRow> = diesel::sql_query(
            "SELECT coalesce(min(n.nspname::text), '') AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.oid = to_regclass('records')",
        )
        .load(&mut self.conn)
        .map_err(db("live schema"))?;
        let live = live.into_iter().next().map(|r| r.name).unwrap_or_default();
        if live.is_empty() {
            return Ok(Err("table records not found".into()));
        }
        let tables: Vec<String> = BULK_TABLES.iter().map(|t| t.to_string()).collect();
        <PgConnection as Connection>::TransactionManager::begin_transaction(&mut self.conn)
            .map_err(db("BEGIN"))?;
        let out = (|| -> Result<std::result::Result<Shadow, String>> {
            simple(&mut self.conn, "SET LOCAL search_path = pg_catalog")?;
            let mut s = Sql::new();
            let _ = s.param(Bind::TextArr(tables.clone()));
            let _ = s.param(Bind::Text(live.clone()));
            s.push(SHADOW_BLOCKERS);
            let blockers: Vec<NameRow> =
                s.query().load(&mut self.conn).map_err(db("shadow check"))?;
            if !blockers.is_empty() {
                let why: Vec<String> = blockers.into_iter().map(|r| r.name).collect();
                return Ok(Err(why.join("; ")));
            }
            let mut s = Sql::new();
            let _ = s.param(Bind::TextArr(tables.clone()));
            let _ = s.param(Bind::Text(live.clone()));
            s.push(SHADOW_DDL);
            let ddl: Vec<DdlRow> = s
                .query()
                .load(&mut self.conn)
                .map_err(db("shadow definitions"))?;
            let mut shadow = Shadow {
                name: name.to_string(),
                live: live.clone(),
                ..Shadow::default()
            };
            let mut setup = vec![
                format!("DROP SCHEMA IF EXISTS {SHADOW_SCHEMA} CASCADE"),
                format!("CREATE SCHEMA {SHADOW_SCHEMA}"),
            ];
            shadow.unseal = BULK_TABLES
                .iter()
                .map(|t| UNSEAL.replace("{t}", t))
                .chain([UNSEAL_ACTOR.to_string()])
                .collect();
            // `drop_sql` carries the object's name, `name` its table (see SHADOW_DDL).
            for d in ddl {
                let retargeted = d.create_sql.contains(&format!(" ON {SHADOW_SCHEMA}."));
                match d.kind.as_str() {
                    "table" | "policy" => setup.push(d.create_sql),
                    "rls" | "grant" => shadow.unseal.push(d.create_sql),
                    "index" if retargeted => {
                        shadow.indexes.push((d.name, d.drop_sql, d.create_sql))
                    }
                    "trigger" if retargeted => shadow.triggers.push(d.create_sql),
                    "attach" => shadow.attach.push(d.create_sql),
                    "foreign key" => shadow.foreign_keys.push((d.drop_sql, d.create_sql)),
                    _ => {
                        return Ok(Err(format!(
                            "cannot re-create {} {} of {} beside it",
                            d.kind, d.drop_sql, d.name
                        )))
                    }
                }
            }
            for sql in &setup {
                if let Err(e) = self.conn.batch_execute(sql) {
                    return Ok(Err(format!("cannot create the shadow tables: {e}")));
                }
            }
            let mut s = Sql::new();
            let _ = s.param(Bind::TextArr(tables.clone()));
            let _ = s.param(Bind::Uuid(self.tenant));
            let _ = s.param(Bind::Text(self.actor.clone()));
            s.push(SEAL);
            let seal: Vec<NameRow> = s.query().load(&mut self.conn).map_err(db("seal"))?;
            let seal = seal.into_iter().next().map(|r| r.name).unwrap_or_default();
            if let Err(e) = self.conn.batch_execute(&seal) {
                return Ok(Err(format!("cannot seal the shadow tables: {e}")));
            }
            Ok(Ok(shadow))
        })();
        match out {
            Ok(Ok(shadow)) => {
                <PgConnection as Connection>::TransactionManager::commit_transaction(
                    &mut self.conn,
                )
                .map_err(db("COMMIT"))?;
                Ok(Ok(shadow))
            }
            other => {
                let _ = <PgConnection as Connection>::TransactionManager::rollback_transaction(
                    &mut self.conn,
                );
                other
            }
        }
    }

    /// Runs `f` in its own transaction as `ddms_loader` bound to the tenant (exclusive
    /// path of a replacing load: every step commits on its own, into the sealed shadow
    /// tables).
    fn in_shadow_tx<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        if let Some(sh) = self.shadow.as_mut() {
            sh.loading = true;
        }
        <PgConnection as Connection>::TransactionManager::begin_transaction(&mut self.conn)
            .map_err(db("BEGIN"))?;
        let out = self.tx_settings().and_then(|()| f(self));
        // The staging tables are ON COMMIT DROP.
        self.staged_records = false;
        self.staged_relations = false;
        match out {
            Ok(v) => {
                <PgConnection as Connection>::TransactionManager::commit_transaction(
                    &mut self.conn,
                )
                .map_err(db("COMMIT"))?;
                Ok(v)
            }
            Err(e) => {
                let _ = <PgConnection as Connection>::TransactionManager::rollback_transaction(
                    &mut self.conn,
                );
                Err(e)
            }
        }
    }

    /// Runs a records step of a replacing load in the records steps' transaction, which
    /// stays open until the load moves on to relations or publishes
    /// ([`BulkLoad::end_records_tx`]). The first one truncates the (empty) shadow
    /// `records` first: a table truncated in the running transaction is written without
    /// the free-space map, page after page in the order of the COPY. Otherwise a record
    /// shorter than the space left on an earlier page goes back there, and the index
    /// builds that follow lose their presorted input (BENCHMARKS.md, "Seed").
    fn in_records_tx<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        let sh = self.shadow_mut()?;
        sh.loading = true;
        if !sh.records_tx {
            let empty = sh.rows.get("records").copied().unwrap_or(0) == 0;
            <PgConnection as Connection>::TransactionManager::begin_transaction(&mut self.conn)
                .map_err(db("BEGIN"))?;
            self.shadow_mut()?.records_tx = true;
            if empty {
                if let Err(e) = self.as_owner().and_then(|()| {
                    simple(&mut self.conn, &format!("TRUNCATE {SHADOW_SCHEMA}.records"))
                }) {
                    self.abort_records_tx(&e);
                    return Err(e);
                }
            }
        }
        match self.tx_settings().and_then(|()| f(self)) {
            Ok(v) => Ok(v),
            Err(e) => {
                self.abort_records_tx(&e);
                Err(e)
            }
        }
    }

    /// Rolls the records steps' transaction back after `e`: the steps before it went
    /// with it, so the load is broken.
    /// `Err("<what>: <why the load broke>; <then>")` once a step has failed.
    fn refuse_if_broken(&self, what: &str, then: &str) -> Result<()> {
        match &self.broken {
            Some(why) => Err(Error::Internal(format!("{what}: {why}; {then}"))),
            None => Ok(()),
        }
    }

    fn abort_records_tx(&mut self, e: &Error) {
        let _ =
            <PgConnection as Connection>::TransactionManager::rollback_transaction(&mut self.conn);
        if let Some(sh) = self.shadow.as_deref_mut() {
            sh.records_tx = false;
        }
        self.broken = Some(format!("a records step failed ({e})"));
    }

    /// Ends the records steps' transaction, if open: the field-value rows to derive from
    /// its records are written in it (one connection) or by the builder once it has
    /// committed (their `xmin` is its id), while this connection loads the relations.
    fn end_records_tx(&mut self) -> Result<()> {
        if !self.shadow.as_deref().is_some_and(|s| s.records_tx) {
            return Ok(());
        }
        let ended = self.derive_field_values().and_then(|later| {
            <PgConnection as Connection>::TransactionManager::commit_transaction(&mut self.conn)
                .map_err(db("COMMIT"))?;
            Ok(later)
        });
        match ended {
            Ok(later) => {
                self.shadow_mut()?.records_tx = false;
                if later.is_empty() {
                    return Ok(());
                }
                self.queue(later, 1)
            }
            Err(e) => {
                self.abort_records_tx(&e);
                Err(e)
            }
        }
    }

    /// The derivations of [`Shadow::derive`] as tasks for the builder (two connections or
    /// more), or run now on this one.
    fn derive_field_values(&mut self) -> Result<Vec<Task>> {
        let derive = std::mem::take(&mut self.shadow_mut()?.derive);
        if derive.is_empty() {
            return Ok(Vec::new());
        }
        let xid: Vec<NameRow> = diesel::sql_query("SELECT pg_current_xact_id()::text AS name")
            .load(&mut self.conn)
            .map_err(db("transaction id"))?;
        let xid = xid
            .into_iter()
            .next()
            .map(|r| r.name)
            .ok_or_else(|| Error::Internal("no transaction id".into()))?;
        let tasks: Vec<Task> = derive
            .into_iter()
            .map(|(ty, name, fields, rows)| {
                let (sql, tables) = self.field_values_sql(ty, &fields, xid.clone());
                Task {
                    rows,
                    tables,
                    name: format!("field values of {name}"),
                    work: Work::Loader(sql),
                }
            })
            .collect();
        self.run_unless_builder(tasks)
    }

    /// Tenant writes for the builder connection: with one (two connections or more)
    /// they are returned for it; without, they run now on this one, in its transaction.
    fn run_unless_builder(&mut self, tasks: Vec<Task>) -> Result<Vec<Task>> {
        if self.opts.connections >= 2 {
            return Ok(tasks);
        }
        for t in tasks {
            t.work.run(&mut self.conn).map_err(db(&t.name))?;
        }
        Ok(Vec::new())
    }

    fn shadow_mut(&mut self) -> Result<&mut Shadow> {
        self.shadow
            .as_deref_mut()
            .ok_or_else(|| Error::Internal("not a replacing load".into()))
    }

    fn shadow_entity_type(&mut self, def: &EntityTypeDef) -> Result<EntityType> {
        let sh = self.shadow_mut()?;
        if sh.loading {
            return Err(Error::Internal(
                "a replacing load creates its types before the first copy".into(),
            ));
        }
        if sh.entity_types.iter().any(|(d, _, _)| d.name == def.name) {
            return Err(Error::conflict(
                ddms_core::ConflictKind::AlreadyExists,
                format!("entity type {} already exists", def.name),
            ));
        }
        // Ids that grow in creation order: records of the first type sort first in every
        // index led by (tenant_id, entity_type_id), and so do field-value rows by
        // field_id, so the builds get presorted input.
        let id = sh.next_id();
        let field_ids = def.fields.iter().map(|_| sh.next_id()).collect();
        sh.entity_types.push((def.clone(), id, field_ids));
        let ty = EntityType::first_version(id, def, Utc::now());
        self.types.insert(def.name.to_string(), ty.clone());
        Ok(ty)
    }

    fn shadow_relation_type(&mut self, def: &RelationTypeDef) -> Result<RelationType> {
        self.entity_type(def.source.as_str())?;
        self.entity_type(def.target.as_str())?;
        let sh = self.shadow_mut()?;
        if sh.loading {
            return Err(Error::Internal(
                "a replacing load creates its types before the first copy".into(),
            ));
        }
        if sh.relation_types.iter().any(|(d, _)| d.name == def.name) {
            return Err(Error::conflict(
                ddms_core::ConflictKind::AlreadyExists,
                format!("relation type {} already exists", def.name),
            ));
        }
        let id = sh.next_id();
        sh.relation_types.push((def.clone(), id));
        Ok(RelationType {
            id,
            name: def.name.clone(),
            source: def.source.clone(),
            target: def.target.clone(),
            cardinality: def.cardinality,
            on_delete: def.on_delete,
            created_at: Utc::now(),
        })
    }

    /// The seq of the first bulk event: after the schema events of this load.
    fn shadow_first_seq(&mut self) -> Result<i64> {
        let sh = self.shadow_mut()?;
        if sh.next_seq == 0 {
            sh.next_seq = (sh.entity_types.len() + sh.relation_types.len()) as i64 + 1;
        }
        Ok(sh.next_seq)
    }

    fn count_rows(&mut self, table: &str, n: u64) -> Result<()> {
        *self
            .shadow_mut()?
            .rows
            .entry(table.to_string())
            .or_default() += n;
        Ok(())
    }

    /// What the insert trigger would write for the `n` records this step copied into the
    /// shadow table: field-value rows of the declared indexes (`indexed`, from
    /// [`BulkLoad::shadow_indexed`]), and the events.
    fn shadow_record_rows(
        &mut self,
        ty: &EntityType,
        indexed: &[IndexedField],
        n: u64,
        id_range: Option<(Uuid, Uuid)>,
        encoded: Option<Vec<Vec<Vec<u8>>>>,
    ) -> Result<()> {
        self.count_rows("records", n)?;
        if !indexed.is_empty() {
            for f in indexed {
                self.count_rows(crate::sql::class_table(f.class).0, n)?;
            }
            match encoded {
                // Encoded by the client beside the records (what the sink kept).
                Some(rows) => {
                    // Sorted and COPYed by the builder while this connection loads on;
                    // without one, written now.
                    let later =
                        self.run_unless_builder(copy_tasks(ty.name.as_str(), indexed, rows))?;
                    if !later.is_empty() {
                        self.queue(later, 1)?;
                    }
                }
                // Derived from the records the records steps' transaction wrote (their
                // `xmin`), when it ends: once per type (see `Shadow::derive`).
                None => {
                    let sh = self.shadow_mut()?;
                    match sh.derive.iter_mut().find(|d| d.0 == ty.id) {
                        Some(d) => d.3 += n,
                        None => sh
                            .derive
                            .push((ty.id, ty.name.to_string(), indexed.to_vec(), n)),
                    }
                }
            }
        }
        self.shadow_events(n, ty.id, ty.name.as_str(), true, id_range)
    }

    /// The indexed fields of `ty` (a type this replacing load created), with their ids.
    fn shadow_indexed(&self, ty: &EntityType) -> Result<Vec<IndexedField>> {
        let field_ids = self
            .shadow
            .as_ref()
            .and_then(|sh| sh.entity_types.iter().find(|(_, id, _)| *id == ty.id))
            .map(|(_, _, f)| f)
            .ok_or_else(|| Error::Internal(format!("entity type {} is unknown", ty.name)))?;
        Ok(ty
            .fields
            .iter()
            .zip(field_ids)
            .filter_map(|(f, id)| {
                Some(IndexedField {
                    name: f.name.to_string(),
                    id: *id,
                    class: f.kind.value_class().filter(|_| f.has_index())?,
                    unique: f.unique,
                })
            })
            .collect())
    }

    /// One statement writing the field-value rows of `indexed` for the records of type
    /// `ty` that transaction `xid` wrote into the shadow table. One scan extracts every
    /// indexed value (the trigger's `data->>name`, cast the same way, as in
    /// `ddms_records_inserted`) and one INSERT per table writes them, field after field.
    /// Returns the statement and the tables it fills.
    fn field_values_sql(
        &self,
        ty: Uuid,
        indexed: &[IndexedField],
        xid: String,
    ) -> (Sql, Vec<String>) {
        let mut s = Sql::new();
        let t = s.param(Bind::Uuid(self.tenant));
        let ty_id = s.param(Bind::Uuid(ty));
        let xid = s.param(Bind::Text(xid));
        let from = format!(
            "{SHADOW_SCHEMA}.records r WHERE r.entity_type_id = {ty_id} AND r.xmin = xid({xid}::xid8)"
        );
        let mut values = String::new();
        let mut inserts: Vec<(&str, Vec<String>)> = Vec::new();
        for (i, f) in indexed.iter().enumerate() {
            let (table, cast) = crate::sql::class_table(f.class);
            let key = s.param(Bind::Text(f.name.clone()));
            let fid = s.param(Bind::Uuid(f.id));
            let uniq = s.param(Bind::Bool(f.unique));
            values.push_str(&format!(", r.data->>{key} AS v{i}"));
            let select = format!("SELECT {t}, {fid}, s.id, s.v{i}::{cast}, {uniq} FROM s");
            match inserts.iter_mut().find(|(tb, _)| *tb == table) {
                Some((_, selects)) => selects.push(select),
                None => inserts.push((table, vec![select])),
            }
        }
        let materialized = if indexed.len() > 1 {
            " MATERIALIZED"
        } else {
            ""
        };
        let mut sql = format!("WITH s AS{materialized} (SELECT r.id{values} FROM {from})");
        let insert = |(table, selects): &(&str, Vec<String>)| {
            format!(
                "INSERT INTO {SHADOW_SCHEMA}.{table} (tenant_id, field_id, record_id, v, uniq) {}",
                selects.join(" UNION ALL ")
            )
        };
        for (i, w) in inserts.iter().enumerate().skip(1) {
            sql.push_str(&format!(", w{i} AS ({})", insert(w)));
        }
        sql.push(' ');
        sql.push_str(&insert(&inserts[0]));
        s.push(&sql);
        (s, inserts.iter().map(|(t, _)| t.to_string()).collect())
    }

    fn shadow_relation_rows(
        &mut self,
        rt: &RelationType,
        n: u64,
        id_range: Option<(Uuid, Uuid)>,
    ) -> Result<()> {
        self.count_rows("relations", n)?;
        self.shadow_events(n, rt.id, rt.name.as_str(), false, id_range)
    }

    /// The events of one bulk statement, as the triggers of the init migration and
    /// `..._bulk_summary_events` write them, numbered after the events before it. The
    /// summary's count and first and last id are the copy's (`n`, `id_range`), bound
    /// instead of aggregated over the copied rows again.
    fn shadow_events(
        &mut self,
        n: u64,
        type_id: Uuid,
        name: &str,
        records: bool,
        id_range: Option<(Uuid, Uuid)>,
    ) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        let base = self.shadow_first_seq()?;
        let summary = self.opts.events == BulkEvents::Summary;
        let mut s = Sql::new();
        let t = s.param(Bind::Uuid(self.tenant));
        let b = s.param(Bind::Int(base));
        let nm = s.param(Bind::Text(name.to_string()));
        let a = s.param(Bind::Text(self.actor.clone()));
        let id = s.param(Bind::Uuid(type_id));
        let into = format!("INSERT INTO {SHADOW_SCHEMA}.events (tenant_id, seq, kind, entity_type, subject_id, payload, actor, at) ");
        // The rows this step's transaction copied into the shadow table.
        let mine = "s.xmin = xid(pg_current_xact_id())";
        let sql = match (records, summary) {
            (true, false) => format!(
                "{into}SELECT {t}, {b} + row_number() OVER (ORDER BY s.id) - 1, 'record.created', {nm}, s.id, \
                 jsonb_build_object('data', s.data, 'version', 1), {a}, now() FROM {SHADOW_SCHEMA}.records s \
                 WHERE s.entity_type_id = {id} AND {mine}"
            ),
            (false, false) => format!(
                "{into}SELECT {t}, {b} + row_number() OVER (ORDER BY s.id) - 1, 'relation.created', NULL, s.id, \
                 jsonb_build_object('type', {nm}, 'source_id', s.source_id, 'target_id', s.target_id, 'data', 'null'::jsonb), \
                 {a}, now() FROM {SHADOW_SCHEMA}.relations s WHERE s.relation_type_id = {id} AND {mine}"
            ),
            (records, true) => {
                let Some((first, last)) = id_range else {
                    return Err(Error::Internal(format!("no ids for the {n} rows of {name}")));
                };
                let count = s.param(Bind::Int(n as i64));
                let first = s.param(Bind::Uuid(first));
                let last = s.param(Bind::Uuid(last));
                let (ty, kind, key) = if records {
                    (nm.as_str(), "records", "entity_type")
                } else {
                    ("NULL", "relations", "relation_type")
                };
                format!(
                    "{into}VALUES ({t}, {b}, 'bulk.loaded', {ty}, {id}, jsonb_build_object('kind', '{kind}', '{key}', {nm}, \
                     'count', {count}, 'first_id', {first}, 'last_id', {last}), {a}, now())"
                )
            }
        };
        s.push(&sql);
        let written = s
            .query()
            .execute(&mut self.conn)
            .map_err(db("bulk events"))? as i64;
        self.count_rows("events", written as u64)?;
        self.shadow_mut()?.next_seq += written;
        Ok(())
    }

    /// Session settings of the builder connections. `synchronize_seqscans = off`: a
    /// table larger than a quarter of `shared_buffers` is otherwise scanned from where
    /// the last scan of it (another build) reported itself, so every build after the
    /// first reads the heap rotated and sorts it in full, although the load wrote it in
    /// key order (PostgreSQL's sort returns at once on presorted input: the relations'
    /// primary-key sort 0.19-0.25 s of CPU with synchronized scans, 0.01 s without).
    fn index_settings(&self) -> Result<String> {
        Ok(format!(
            "SET maintenance_work_mem = {}; SET work_mem = {}; SET max_parallel_maintenance_workers = {}; \
             SET synchronous_commit = off; SET statement_timeout = 0; SET synchronize_seqscans = off",
            quote_setting(&self.opts.maintenance_work_mem)?,
            quote_setting(&self.opts.work_mem)?,
            self.opts.index_workers
        ))
    }

    /// Types are loaded one after another (a replacing load declares them all first):
    /// when the load moves on to `next` (another entity type, or `None`: relations), the
    /// tables that only the types before it fill are complete, and their indexes are
    /// built on a second connection while the load goes on. Should a caller come back to
    /// a finished type, its inserts wait for those builds and then maintain the new
    /// indexes row by row: slower, still correct.
    fn build_finished_tables(&mut self, next: Option<Uuid>) -> Result<()> {
        if self.opts.connections < 2 {
            return Ok(());
        }
        let sh = self.shadow_mut()?;
        if let Some(cur) = sh.current.filter(|c| Some(*c) != next) {
            if !sh.finished.contains(&cur) {
                sh.finished.push(cur);
            }
        }
        sh.current = next;
        let pending: Vec<&(EntityTypeDef, Uuid, Vec<Uuid>)> = sh
            .entity_types
            .iter()
            .filter(|(_, id, _)| !sh.finished.contains(id))
            .collect();
        // Field-value rows still to derive from the records (they wait for the records
        // steps' transaction): their tables are not complete yet.
        let deriving = !sh.derive.is_empty();
        let tables: Vec<&str> = BULK_TABLES
            .iter()
            .copied()
            .filter(|t| match *t {
                "records" => pending.is_empty(),
                "relations" | "events" => false,
                _ if deriving => false,
                fv => !pending.iter().any(|(def, _, _)| {
                    def.fields.iter().any(|f| {
                        f.has_index()
                            && f.kind
                                .value_class()
                                .is_some_and(|c| crate::sql::class_table(c).0 == fv)
                    })
                }),
            })
            .collect();
        self.start_index_builds(&tables, 1)
    }

    /// Queues the index builds of `tables` (those not queued yet) and makes sure up to
    /// `workers` connections build them.
    fn start_index_builds(&mut self, tables: &[&str], workers: usize) -> Result<()> {
        let analyze = self.opts.analyze;
        let sh = self.shadow_mut()?;
        let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut sh.indexes)
            .into_iter()
            .partition(|(t, _, _)| tables.contains(&t.as_str()));
        sh.indexes = later;
        let mut tasks: Vec<Task> = now
            .into_iter()
            .map(|(table, name, sql)| Task {
                rows: sh.rows.get(&table).copied().unwrap_or(0),
                tables: vec![table],
                name,
                work: Work::Owner(sql),
            })
            .collect();
        if analyze {
            // After the index builds queued so far (ANALYZE waits for builds on its table).
            for t in tables {
                if !sh.analyzed.iter().any(|a| a == t) {
                    sh.analyzed.push(t.to_string());
                    tasks.push(Task {
                        rows: 0,
                        tables: vec![t.to_string()],
                        name: format!("analyze {t}"),
                        work: Work::Owner(format!("ANALYZE {SHADOW_SCHEMA}.{t}")),
                    });
                }
            }
        }
        self.queue(tasks, workers)
    }

    /// Queues `tasks` on the builder (started on first use) with up to `workers`
    /// connections.
    fn queue(&mut self, tasks: Vec<Task>, workers: usize) -> Result<()> {
        let mut b = self.builder()?;
        b.add(tasks, workers);
        self.shadow_mut()?.builder = Some(b);
        Ok(())
    }

    /// The builder, taken out of the shadow state (started if there was none).
    fn builder(&mut self) -> Result<Builder> {
        let settings = self.index_settings()?;
        let url = self.url.clone();
        let scope = (self.tenant, self.actor.clone());
        Ok(self
            .shadow_mut()?
            .builder
            .take()
            .unwrap_or_else(|| Builder::new(url, settings, scope)))
    }

    /// The exclusive path's commit: indexes (in parallel), constraints and triggers,
    /// ANALYZE, then the swap in one short transaction.
    fn publish(mut self) -> Result<BulkReport> {
        self.refuse_if_broken("nothing was published", "start the load again")?;
        self.end_records_tx()?;
        let connections = self.opts.connections.max(1);
        let (attach, triggers, unseal) = {
            let sh = self.shadow_mut()?;
            (
                std::mem::take(&mut sh.attach),
                std::mem::take(&mut sh.triggers),
                std::mem::take(&mut sh.unseal),
            )
        };
        let total = self.records + self.relations;
        let analyzed = self.opts.analyze;
        let phase = if analyzed {
            "build indexes, analyze"
        } else {
            "build indexes"
        };
        self.phase(phase, total, |me| {
            me.start_index_builds(&BULK_TABLES, connections)?;
            let builder = me.shadow_mut()?.builder.take();
            builder.map_or(Ok(()), Builder::join)
        })?;
        self.phase("constraints and triggers", 0, |me| {
            let ddl: Vec<String> =
                attach
                    .iter()
                    .chain(&triggers)
                    .chain(&unseal)
                    .cloned()
                    .chain(BULK_TABLES.iter().map(|t| {
                        format!("ALTER TABLE {SHADOW_SCHEMA}.{t} RESET (autovacuum_enabled)")
                    }))
                    .collect();
            me.conn
                .batch_execute(&ddl.join("; "))
                .map_err(db("constraints and triggers"))
        })?;
        self.phase("publish", 0, |me| {
            <PgConnection as Connection>::TransactionManager::begin_transaction(&mut me.conn)
                .map_err(db("BEGIN"))?;
            let out = me.swap();
            match out {
                Ok(()) => {
                    <PgConnection as Connection>::TransactionManager::commit_transaction(
                        &mut me.conn,
                    )
                    .map_err(db("COMMIT"))?;
                    Ok(())
                }
                Err(e) => {
                    let _ = <PgConnection as Connection>::TransactionManager::rollback_transaction(
                        &mut me.conn,
                    );
                    Err(e)
                }
            }
        })?;
        self.shadow_mut()?.done = true;
        let _ = self.conn.batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {SHADOW_SCHEMA}; SELECT pg_advisory_unlock({SHADOW_LOCK})"
        ));
        let report = BulkReport {
            records: self.records,
            relations: self.relations,
            index_path: self.path.clone(),
            phases: std::mem::take(&mut self.phases),
            elapsed: self.started.elapsed(),
            analyzed,
        };
        tracing::info!(records = report.records, relations = report.relations, elapsed = ?report.elapsed, "bulk load published");
        Ok(report)
    }

    /// The publishing transaction: lock the live tables, re-check that no other tenant
    /// has data, swap the tables, re-add their foreign keys, replace the tenant's schema
    /// rows and feed. Readers wait for it only as long as it runs (catalog updates and
    /// the schema rows: milliseconds, plus validating the events foreign key).
    fn swap(&mut self) -> Result<()> {
        let sh = self
            .shadow
            .take()
            .ok_or_else(|| Error::Internal("not a replacing load".into()))?;
        let out = self.swap_with(&sh);
        self.shadow = Some(sh);
        out
    }

    fn swap_with(&mut self, sh: &Shadow) -> Result<()> {
        let live = &sh.live;
        simple(&mut self.conn, "SET LOCAL synchronous_commit = on")?;
        let tables = BULK_TABLES
            .iter()
            .map(|t| format!("{}.{t}", quote_ident(live)))
            .collect::<Vec<_>>()
            .join(", ");
        let locked = self.conn.batch_execute(&format!(
            "SET LOCAL lock_timeout = {}; LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE; SET LOCAL lock_timeout = 0",
            self.opts.lock_timeout_ms
        ));
        if let Err(e) = locked {
            return Err(Error::Unavailable(format!(
                "cannot lock the shared tables to publish the load: {e}"
            )));
        }
        self.as_app()?;
        match self.other_tenants_with_data()? {
            Some(0) => {}
            _ => {
                return Err(Error::conflict(
                    ddms_core::ConflictKind::AlreadyExists,
                    "another tenant wrote data into the shared tables during the load; nothing \
                     was published (run the load again: it will maintain the indexes)",
                ))
            }
        }
        self.as_owner()?;
        let mut ddl = Vec::new();
        for t in BULK_TABLES {
            // No CASCADE: if anything else depended on a live table, this fails and the
            // whole publish rolls back.
            ddl.push(format!("DROP TABLE {}.{t}", quote_ident(live)));
            ddl.push(format!(
                "ALTER TABLE {SHADOW_SCHEMA}.{t} SET SCHEMA {}",
                quote_ident(live)
            ));
        }
        simple(&mut self.conn, &ddl.join("; "))?;
        self.as_app()?;
        // The tenant row stays (the events' foreign key cascades from it); its schema
        // rows and feed are replaced. Purge mode: no events for what goes away.
        let mut s = Sql::new();
        s.push("INSERT INTO tenants (id, name) VALUES (")
            .bind(Bind::Uuid(self.tenant))
            .push(", ")
            .bind(Bind::Text(sh.name.clone()))
            .push(") ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name");
        s.query()
            .execute(&mut self.conn)
            .map_err(db("create tenant"))?;
        self.as_owner()?;
        for (name, sql) in &sh.foreign_keys {
            self.conn
                .batch_execute(sql)
                .map_err(db(&format!("foreign key {name}")))?;
        }
        self.as_app()?;
        simple(
            &mut self.conn,
            "SELECT set_config('ddms.purge', 'on', true)",
        )?;
        for table in ["relation_types", "fields", "entity_types", "tenant_feeds"] {
            let mut s = Sql::new();
            s.push(&format!("DELETE FROM {table} WHERE tenant_id = "))
                .bind(Bind::Uuid(self.tenant));
            s.query().execute(&mut self.conn).map_err(db(table))?;
        }
        simple(&mut self.conn, "SELECT set_config('ddms.purge', '', true)")?;
        insert_feed(&mut self.conn, self.tenant).map_err(db("create feed"))?;
        self.types.clear();
        for (def, id, field_ids) in &sh.entity_types {
            self.insert_entity_type(*id, def, Some(field_ids))?;
        }
        for (def, id) in &sh.relation_types {
            self.insert_relation_type(*id, def)?;
        }
        // The schema events took seqs 1..=S; the loaded events are numbered from S + 1.
        let schema_events = (sh.entity_types.len() + sh.relation_types.len()) as i64;
        let last = if sh.next_seq == 0 {
            schema_events
        } else {
            sh.next_seq - 1
        };
        let mut s = Sql::new();
        s.push("UPDATE tenant_feeds SET seq = ")
            .bind(Bind::Int(last))
            .push(" WHERE tenant_id = ")
            .bind(Bind::Uuid(self.tenant))
            .push(" AND seq = ")
            .bind(Bind::Int(schema_events))
            .push(" RETURNING seq");
        let done: Vec<SeqRow> = s.query().load(&mut self.conn).map_err(db("feed counter"))?;
        if done.first().map(|r| r.seq) != Some(last) {
            return Err(Error::Internal(
                "the feed did not number the schema events as expected".into(),
            ));
        }
        let mut s = Sql::new();
        s.push("SELECT ddms_notify(")
            .bind(Bind::Uuid(self.tenant))
            .push(")");
        s.query().execute(&mut self.conn).map_err(db("notify"))?;
        Ok(())
    }
}

impl Drop for BulkLoad {
    fn drop(&mut self) {
        // An unpublished replacing load: remove its shadow tables (best effort; an
        // interrupted process leaves them to the next replacing load, which drops them).
        if self.shadow.as_ref().is_some_and(|s| !s.done) {
            // First, so that no build waits for a lock of the loader's transaction.
            let _ = <PgConnection as Connection>::TransactionManager::rollback_transaction(
                &mut self.conn,
            );
            if let Some(b) = self.shadow.as_mut().and_then(|s| s.builder.take()) {
                b.stop();
                let _ = b.join();
            }
            let _ = self.conn.batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {SHADOW_SCHEMA} CASCADE; SELECT pg_advisory_unlock({SHADOW_LOCK})"
            ));
        }
    }
}

/// Acts as `ddms_app` bound to `tenant` and `actor` for the rest of the transaction.
/// Acts, for the rest of the transaction, as `role` bound to `tenant`: [`APP_ROLE`]
/// under RLS, or [`LOADER_ROLE`] on the sealed shadow tables of a replacing load (see
/// [`SEAL`]).
fn as_tenant(
    c: &mut PgConnection,
    role: &'static str,
    tenant: Uuid,
    actor: &str,
) -> diesel::QueryResult<()> {
    c.batch_execute(&format!("SET LOCAL ROLE {role}"))?;
    crate::pool::set_scope(c, Some(tenant), actor, true)
}

/// The role every row of tenant data goes through under RLS.
const APP_ROLE: &str = "ddms_app";
/// The role that writes the sealed shadow tables (migration 7).
const LOADER_ROLE: &str = "ddms_loader";

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Index builds on other connections, fed from a queue (largest table first); tasks can
/// be added while it runs. The first error stops every connection after its current
/// statement.
struct Builder {
    url: String,
    settings: String,
    /// The tenant and actor that tenant writes ([`Work::Loader`]) act for.
    scope: (Uuid, String),
    state: std::sync::Arc<BuilderState>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

/// A statement queued for a builder connection.
#[derive(Debug)]
struct Task {
    /// Rows of its table (the larger builds go first).
    rows: u64,
    /// The shadow tables it builds or fills.
    tables: Vec<String>,
    /// For progress and errors.
    name: String,
    work: Work,
}

#[derive(Debug)]
enum Work {
    /// DDL or ANALYZE, as the tables' owner.
    Owner(String),
    /// Tenant rows written as `ddms_loader` into the sealed shadow tables (see [`SEAL`]),
    /// in a transaction of their own (the field-value rows of a type's committed records).
    Loader(Sql),
    /// Field-value rows encoded by the client, COPYed into a sealed shadow table the
    /// same way.
    Copy(&'static str, Vec<FieldRows>),
}

impl Work {
    /// Runs the work on `c`: owner statements as they are, tenant work in the caller's
    /// transaction and role (`ddms_loader`).
    fn run(&self, c: &mut PgConnection) -> diesel::QueryResult<()> {
        match self {
            Work::Loader(sql) => sql.query().execute(c).map(|_| ()),
            Work::Copy(table, rows) => copy_field_rows(c, table, rows).map(|_| ()),
            Work::Owner(sql) => c.batch_execute(sql),
        }
    }
}

/// The builder's work list.
#[derive(Default)]
struct Queue {
    /// Tenant writes: in the order queued, before any owner statement.
    writes: VecDeque<Task>,
    /// Owner statements, taken from the end (sorted: largest last).
    owner: Vec<Task>,
    /// Tables a running tenant write fills: no owner statement (an ANALYZE would sample
    /// half the rows) runs on them meanwhile.
    filling: Vec<String>,
    /// Live workers.
    live: usize,
}

#[derive(Default)]
struct BuilderState {
    queue: parking_lot::Mutex<Queue>,
    failed: std::sync::atomic::AtomicBool,
    first_err: parking_lot::Mutex<Option<Error>>,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("workers", &self.workers.len())
            .finish_non_exhaustive()
    }
}

impl Builder {
    fn new(url: String, settings: String, scope: (Uuid, String)) -> Builder {
        Builder {
            url,
            settings,
            scope,
            state: std::sync::Arc::default(),
            workers: Vec::new(),
        }
    }

    /// Queues `tasks` and starts workers until `workers` are live.
    fn add(&mut self, tasks: Vec<Task>, workers: usize) {
        let live = {
            let mut q = self.state.queue.lock();
            for t in tasks {
                match t.work {
                    Work::Loader(_) | Work::Copy(..) => q.writes.push_back(t),
                    Work::Owner(_) => q.owner.push(t),
                }
            }
            // Taken from the end: largest last.
            q.owner
                .sort_by(|a, b| a.rows.cmp(&b.rows).then_with(|| b.name.cmp(&a.name)));
            let live = q.live;
            q.live = q.live.max(workers);
            live
        };
        for _ in live..workers {
            let state = self.state.clone();
            let url = self.url.clone();
            let settings = self.settings.clone();
            let scope = self.scope.clone();
            self.workers.push(std::thread::spawn(move || {
                build_worker(&url, &settings, &scope, &state)
            }));
        }
    }

    fn stop(&self) {
        self.state
            .failed
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn join(self) -> Result<()> {
        for w in self.workers {
            let _ = w.join();
        }
        match self.state.first_err.lock().take() {
            Some(e) => Err(e),
            None if self.state.failed.load(std::sync::atomic::Ordering::SeqCst) => {
                Err(Error::Internal("index builds were stopped".into()))
            }
            None => Ok(()),
        }
    }
}

fn build_worker(url: &str, settings: &str, scope: &(Uuid, String), state: &BuilderState) {
    let fail = |e: Error| {
        state
            .failed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        state.first_err.lock().get_or_insert(e);
        state.queue.lock().live -= 1;
    };
    let mut conn = match PgConnection::establish(url) {
        Ok(c) => c,
        Err(e) => return fail(Error::Unavailable(format!("cannot connect: {e}"))),
    };
    if let Err(e) = conn.batch_execute(settings) {
        return fail(db("session settings")(e));
    }
    let _ = conn.batch_execute("SET client_connection_check_interval = 1000");
    loop {
        let task = {
            let mut q = state.queue.lock();
            if state.failed.load(std::sync::atomic::Ordering::SeqCst) {
                q.live -= 1;
                return;
            }
            if let Some(t) = q.writes.pop_front() {
                q.filling.extend(t.tables.iter().cloned());
                t
            } else if let Some(i) = q
                .owner
                .iter()
                .rposition(|t| !t.tables.iter().any(|x| q.filling.contains(x)))
            {
                q.owner.remove(i)
            } else if q.owner.is_empty() {
                // Counted out under the lock, so `add` starts a new worker if needed.
                q.live -= 1;
                return;
            } else {
                // Only statements on tables another worker is filling: wait for it.
                drop(q);
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
        };
        let t = Instant::now();
        let done = match &task.work {
            Work::Owner(_) => task
                .work
                .run(&mut conn)
                .map_err(|e| rebuild_error(&task.name, e)),
            Work::Loader(_) | Work::Copy(..) => conn
                .transaction(|c| {
                    as_tenant(c, LOADER_ROLE, scope.0, &scope.1)?;
                    task.work.run(c)
                })
                .map_err(db(&task.name)),
        };
        if !matches!(task.work, Work::Owner(_)) {
            let mut q = state.queue.lock();
            for t in &task.tables {
                if let Some(i) = q.filling.iter().position(|x| x == t) {
                    q.filling.swap_remove(i);
                }
            }
        }
        if let Err(e) = done {
            return fail(e);
        }
        tracing::debug!(name = %task.name, elapsed = ?t.elapsed(), "built");
    }
}

#[cfg(test)]
mod tests {
    use super::{not_loaded, write_jsonb_object};

    #[test]
    fn record_objects_are_written_with_their_keys_in_jsonb_order() {
        let v = serde_json::json!({
            "zz": 1, "a": "x", "bb": [1, {"q": 2, "p": 1}], "ab": null, "é": true,
            "b": 2.5, "quote\"d": "line\nbreak", "aaa": {"k": "v"}
        });
        let data = v.as_object().unwrap().clone();
        let mut out = Vec::new();
        write_jsonb_object(&mut out, &data).unwrap();
        let text = String::from_utf8(out).unwrap();
        // Same object back.
        assert_eq!(serde_json::from_str::<serde_json::Value>(&text).unwrap(), v);
        // Keys by length, then bytewise ("é" is two bytes; `quote"d` is seven).
        let keys: Vec<&str> = [
            "\"a\"",
            "\"b\"",
            "\"ab\"",
            "\"bb\"",
            "\"zz\"",
            "\"é\"",
            "\"aaa\"",
            "\"quote\\\"d\"",
        ]
        .to_vec();
        let mut at = 0;
        for k in keys {
            let i = text[at..]
                .find(&format!("{k}:"))
                .unwrap_or_else(|| panic!("{k} after {at} in {text}"));
            at += i + k.len();
        }
        let mut empty = Vec::new();
        write_jsonb_object(&mut empty, &serde_json::Map::new()).unwrap();
        assert_eq!(empty, b"{}");
    }
    use uuid::Uuid;

    #[test]
    fn relation_ends_not_loaded_are_found_as_by_binary_search() {
        let mut x: u128 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut loaded: Vec<Uuid> = (0..5000)
            .map(|_| Uuid::from_u128(next() % 20_000))
            .collect();
        loaded.sort_unstable();
        loaded.dedup();
        let set: foldhash::HashSet<Uuid> = loaded.iter().copied().collect();
        let ty = Uuid::from_u128(7);
        for size in [0, 1, 2, 17, 1000, 6000] {
            let batch: Vec<Uuid> = (0..size)
                .map(|_| Uuid::from_u128(next() % 21_000))
                .collect();
            let mut want: Vec<(Uuid, Uuid)> = batch
                .iter()
                .filter(|id| loaded.binary_search(id).is_err())
                .map(|id| (ty, *id))
                .collect();
            let mut b = batch.clone();
            let mut got = Vec::new();
            not_loaded(&mut b, &set, ty, &mut got);
            assert!(b.is_empty());
            want.sort_unstable();
            got.sort_unstable();
            assert_eq!(got, want, "batch of {size}");
        }
        let mut all = loaded.clone();
        let mut got = Vec::new();
        not_loaded(&mut all, &set, ty, &mut got);
        assert!(got.is_empty());
        let mut none = vec![Uuid::from_u128(u128::MAX)];
        not_loaded(&mut none, &foldhash::HashSet::default(), ty, &mut got);
        assert_eq!(got, [(ty, Uuid::from_u128(u128::MAX))]);
    }
}
