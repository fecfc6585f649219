//! DDMS PostgreSQL backend: Diesel + r2d2, forced row-level security, field-value
//! indexes, change feed, and an ephemeral/embedded PostgreSQL harness
//! ([`harness`]) so that tests and the server's embedded default need nothing but an
//! installed PostgreSQL.
#![warn(missing_docs)]

pub mod error;
pub mod harness;

pub use error::{Error, Result};
