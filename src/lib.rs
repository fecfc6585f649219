//! # ddms
//!
//! Multi-tenant data whose shape is defined at run time: each tenant declares entity
//! types with typed fields, then stores, validates, filters and links records of those
//! types and follows every change on an ordered feed.
//!
//! This facade re-exports [`ddms_core`] (the domain, the checked filter language, the
//! storage traits, and with feature `memory` an in-memory backend) and, behind the
//! default feature `postgres`, the PostgreSQL backend as [`postgres`].
//!
//! ```
//! # #[cfg(feature = "memory")] {
//! use ddms::{memory::MemoryBackend, Role, Scope, Store};
//! let store = Store::new(MemoryBackend::new());
//! let t = store.create_tenant(None, "Acme").unwrap();
//! let acme = store.tenant(Scope::new(t.id, "alice", Role::Admin));
//! assert!(acme.entity_types().unwrap().is_empty());
//! # }
//! ```
#![warn(missing_docs)]

pub use ddms_core::*;

/// The PostgreSQL backend (`ddms-diesel`).
#[cfg(feature = "postgres")]
pub use ddms_diesel as postgres;
