//! The change feed: every change, in per-tenant order.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Kinds of change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum EventKind {
    /// An entity type was created.
    #[serde(rename = "entity_type.created")]
    EntityTypeCreated,
    /// An entity type was changed.
    #[serde(rename = "entity_type.updated")]
    EntityTypeUpdated,
    /// An entity type (and its records) was deleted.
    #[serde(rename = "entity_type.deleted")]
    EntityTypeDeleted,
    /// A record was created.
    #[serde(rename = "record.created")]
    RecordCreated,
    /// A record was changed.
    #[serde(rename = "record.updated")]
    RecordUpdated,
    /// A record was deleted.
    #[serde(rename = "record.deleted")]
    RecordDeleted,
    /// A relation was created.
    #[serde(rename = "relation.created")]
    RelationCreated,
    /// A relation was deleted.
    #[serde(rename = "relation.deleted")]
    RelationDeleted,
    /// A relation type was created.
    #[serde(rename = "relation_type.created")]
    RelationTypeCreated,
    /// A relation type was deleted.
    #[serde(rename = "relation_type.deleted")]
    RelationTypeDeleted,
    /// A bulk load inserted many records of one entity type (or relations of one
    /// relation type) in one statement, recorded as this one event instead of one event
    /// per row (only when the loader asks for summary events). `subject_id` is the
    /// entity or relation type; the payload holds `kind` (`records` or `relations`), the
    /// type name, `count`, `first_id` and `last_id`.
    #[serde(rename = "bulk.loaded")]
    BulkLoaded,
}

impl EventKind {
    /// The kind as written in JSON and stored.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::EntityTypeCreated => "entity_type.created",
            EventKind::EntityTypeUpdated => "entity_type.updated",
            EventKind::EntityTypeDeleted => "entity_type.deleted",
            EventKind::RecordCreated => "record.created",
            EventKind::RecordUpdated => "record.updated",
            EventKind::RecordDeleted => "record.deleted",
            EventKind::RelationCreated => "relation.created",
            EventKind::RelationDeleted => "relation.deleted",
            EventKind::RelationTypeCreated => "relation_type.created",
            EventKind::RelationTypeDeleted => "relation_type.deleted",
            EventKind::BulkLoaded => "bulk.loaded",
        }
    }

    /// Parses a stored kind.
    pub fn parse(s: &str) -> Option<EventKind> {
        serde_json::from_value(Value::String(s.to_string())).ok()
    }
}

/// One change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Per-tenant position: strictly increasing, without gaps a reader could fall into.
    pub seq: i64,
    /// What happened.
    pub kind: EventKind,
    /// The entity type concerned (records, entity types).
    pub entity_type: Option<String>,
    /// The changed object's id.
    pub subject_id: Uuid,
    /// Details: record data (and `changed` fields on updates), relation ends, type definition.
    pub payload: Value,
    /// Who made the change.
    pub actor: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

/// A page of events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventPage {
    /// Events after the cursor, in order.
    pub events: Vec<Event>,
    /// The cursor to read after next time.
    pub next: i64,
}

/// Default page size for event reads.
pub const DEFAULT_EVENT_LIMIT: usize = 100;
/// Largest page size for event reads.
pub const MAX_EVENT_LIMIT: usize = 1000;
