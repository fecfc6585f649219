//! The ddms-core conformance suite, unchanged, against PostgreSQL.

ddms_core::conformance_tests!(crate::common::store());
