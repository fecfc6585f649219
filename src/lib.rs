//! ddms facade
