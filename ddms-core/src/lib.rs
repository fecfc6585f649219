//! # ddms-core
//!
//! The domain of DDMS: tenants, entity types with typed fields, records validated
//! against them, relations, the change feed and field indexes; the checked filter
//! language; the storage traits every backend implements; an in-memory backend
//! (feature `memory`) and the conformance suite every backend passes (feature
//! `conformance`).
//!
//! ```
//! # #[cfg(feature = "memory")] {
//! use ddms_core::{memory::MemoryBackend, Query, Role, Scope, Store, TenantId};
//! use serde_json::json;
//!
//! let store = Store::new(MemoryBackend::new());
//! let tenant = store.create_tenant(None, "Acme").unwrap();
//! let acme = store.tenant(Scope::new(tenant.id, "alice", Role::Admin));
//! acme.create_entity_type(&serde_json::from_value(json!({
//!     "name": "project",
//!     "fields": [{"name": "title", "kind": "text", "required": true},
//!                {"name": "budget", "kind": "integer", "min": 0}]
//! })).unwrap()).unwrap();
//! let projects = acme.records("project").unwrap();
//! projects.create(&json!({"title": "Apollo", "budget": 100})).unwrap();
//! let err = projects.create(&json!({"budget": -1})).unwrap_err();
//! assert_eq!(err.details().len(), 2); // title missing, budget out of range
//! let q: Query = serde_json::from_value(json!({
//!     "filter": {"field": "budget", "op": "gte", "value": 50}
//! })).unwrap();
//! assert_eq!(projects.query(&q).unwrap().items.len(), 1);
//! # }
//! ```
#![warn(missing_docs)]

pub mod entity_type;
pub mod error;
pub mod event;
pub mod field;
pub mod filter;
pub mod index;
pub mod name;
pub mod query;
pub mod record;
pub mod relation;
pub mod store;
pub mod tenant;

#[cfg(feature = "memory")]
pub mod memory;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use entity_type::{EntityType, EntityTypeDef, EntityTypePatch, FieldChange, NewEntityType};
pub use error::{ConflictKind, Error, FieldError, Result};
pub use event::{Event, EventKind, EventPage};
pub use field::{Field, FieldKind, FieldSpec, ScalarKind, ValueClass};
pub use filter::{CheckedFilter, Filter, Op};
pub use index::{IndexInfo, IndexState};
pub use name::Name;
pub use query::{CheckedQuery, CheckedSort, CursorKey, Page, Query, SortKey};
pub use record::{Data, RawRecord, Record};
pub use relation::{
    Cardinality, Direction, NeighbourQuery, NewRelation, NewRelationType, OnDelete, Relation,
    RelationType, RelationTypeDef,
};
pub use store::{
    Backend, EventStore, IndexStore, RecordStore, Records, RelationStore, SchemaStore, Store,
    TenantScope, TenantStore,
};
pub use tenant::{Role, Scope, Tenant, TenantId};
