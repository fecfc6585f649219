//! Field indexes and their build state.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::name::Name;

/// Where a field index is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IndexState {
    /// Declared; the backfill has not started. Filters use the unindexed path.
    Pending,
    /// The backfill is running. Filters use the unindexed path.
    Building,
    /// Complete and maintained with every write; filters use it.
    Ready,
    /// The backfill failed (e.g. duplicates for a unique field); see `error`.
    Failed,
}

impl IndexState {
    /// The state's name.
    pub fn as_str(self) -> &'static str {
        match self {
            IndexState::Pending => "pending",
            IndexState::Building => "building",
            IndexState::Ready => "ready",
            IndexState::Failed => "failed",
        }
    }

    /// Parses a stored state.
    pub fn parse(s: &str) -> Option<IndexState> {
        Some(match s {
            "pending" => IndexState::Pending,
            "building" => IndexState::Building,
            "ready" => IndexState::Ready,
            "failed" => IndexState::Failed,
            _ => return None,
        })
    }
}

/// A declared field index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexInfo {
    /// Entity type.
    pub entity_type: Name,
    /// Field.
    pub field: Name,
    /// Field kind name.
    pub kind: String,
    /// Enforces uniqueness.
    pub unique: bool,
    /// State.
    pub state: IndexState,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// Last state change.
    pub updated_at: DateTime<Utc>,
}
