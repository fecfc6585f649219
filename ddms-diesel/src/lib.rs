//! # ddms-diesel
//!
//! The PostgreSQL backend of DDMS: Diesel + r2d2, tenant isolation by forced row-level
//! security under a non-bypass role, a binds-only SQL filter compiler, typed
//! field-value index tables that stay usable under RLS, a trigger-written change feed,
//! and an ephemeral/embedded PostgreSQL harness ([`harness`]) so that tests and the
//! server's embedded default need nothing but installed PostgreSQL binaries.
//!
//! ```no_run
//! use ddms_core::{Role, Scope, Store};
//! use ddms_diesel::{migrate, PgBackend, PgConfig};
//!
//! let url = std::env::var("DATABASE_URL").unwrap();
//! migrate(&url).unwrap();
//! let store = Store::new(PgBackend::connect(&PgConfig::new(&url)).unwrap());
//! let tenant = store.create_tenant(None, "Acme").unwrap();
//! let acme = store.tenant(Scope::new(tenant.id, "alice", Role::Admin));
//! println!("{:?}", acme.entity_types().unwrap());
//! ```
#![warn(missing_docs)]

mod backend;
pub mod bulk;
pub mod embedded;
pub mod error;
mod feed;
mod field_rows;
pub mod group_insert;
pub mod harness;
mod index;
pub mod indexer;
pub mod migrate;
pub mod periodic;
pub mod pool;
mod record;
mod relation;
pub mod retention;
mod rows;
mod schema;
pub mod sql;
pub mod statement;
pub mod subscribe;
mod type_cache;

pub use backend::{BoundedWalkStats, PgBackend};
pub use error::{Error, Result};
pub use indexer::{
    run_indexer, run_indexer_once, spawn_indexer, FieldOutcome, FieldReport, IndexerOptions,
    IndexerReport,
};
pub use migrate::migrate;
pub use pool::PgConfig;
pub use retention::FeedBounds;
pub use subscribe::{ListenerStats, SubscribeOptions, Subscription};
