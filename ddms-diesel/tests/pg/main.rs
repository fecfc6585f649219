//! Integration tests of the PostgreSQL backend against a real PostgreSQL (a throwaway
//! cluster started by the harness, or DATABASE_URL). One test binary, several modules.

mod bulk;
mod common;
mod conformance;
mod feed;
mod group_insert;
mod indexer;
mod isolation;
mod outage;
mod plans;
mod sql;
mod walks;
