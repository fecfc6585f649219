//! ddms-core's integration tests, one binary (link time matters on two cores).

mod filter_check;
mod memory;
mod properties;
mod tidy;
mod validation;
