//! The one error type of ddms-core, shared by every backend.

use serde::Serialize;

/// Result with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One problem found while validating input, with the field it concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The field (or path, e.g. `fields[2].default`) the problem concerns.
    pub field: String,
    /// A stable machine-readable code, e.g. `required`, `wrong_type`, `too_long`.
    pub code: String,
    /// A human-readable explanation.
    pub message: String,
}

impl FieldError {
    /// Builds a field error.
    pub fn new(field: impl Into<String>, code: &str, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            code: code.to_string(),
            message: message.into(),
        }
    }
}

/// What kind of conflict a write ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ConflictKind {
    /// A value of a `unique` field is already taken.
    Unique,
    /// The caller's expected version is not the current one.
    StaleVersion,
    /// A relation would break its type's cardinality.
    Cardinality,
    /// A delete is refused by an `on_delete: restrict` relation.
    Restricted,
    /// An object with this name or id already exists.
    AlreadyExists,
    /// The object is still referenced (e.g. an entity type used by relation types).
    InUse,
    /// Concurrent transactions collided; retrying may succeed.
    Concurrent,
}

impl ConflictKind {
    /// The machine-readable code of this conflict.
    pub fn code(self) -> &'static str {
        match self {
            ConflictKind::Unique => "unique_violation",
            ConflictKind::StaleVersion => "version_conflict",
            ConflictKind::Cardinality => "cardinality_violation",
            ConflictKind::Restricted => "delete_restricted",
            ConflictKind::AlreadyExists => "already_exists",
            ConflictKind::InUse => "in_use",
            ConflictKind::Concurrent => "concurrent_update",
        }
    }
}

/// Everything that can go wrong in DDMS, by kind a caller can match on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The object does not exist (or belongs to another tenant, which is the same thing).
    #[error("{what} not found: {key}")]
    NotFound {
        /// What was looked for, e.g. `record`, `entity type`.
        what: &'static str,
        /// The name or id that was looked for.
        key: String,
    },
    /// The write conflicts with the current state.
    #[error("{message}")]
    Conflict {
        /// Which kind of conflict.
        kind: ConflictKind,
        /// Explanation for humans.
        message: String,
        /// Per-field details (e.g. which unique field).
        details: Vec<FieldError>,
    },
    /// The input is not valid; every problem found is listed.
    #[error("validation failed: {}", summarize(.0))]
    Validation(Vec<FieldError>),
    /// A filter is malformed or does not fit the entity type.
    #[error("invalid filter at {path}: {message}")]
    InvalidFilter {
        /// Path to the offending node, e.g. `$.and[1].value`.
        path: String,
        /// What is wrong there.
        message: String,
    },
    /// A query (sort, limit, field selection) is not valid.
    #[error("invalid query at {path}: {message}")]
    InvalidQuery {
        /// Which part of the query, e.g. `sort[0]`.
        path: String,
        /// What is wrong there.
        message: String,
    },
    /// A cursor was edited, belongs to another query, or is not a cursor at all.
    #[error("invalid cursor: {0}")]
    InvalidCursor(String),
    /// An event cursor points before the retention horizon: events were pruned.
    #[error("cursor expired: events up to {horizon} were pruned; restart from {horizon}")]
    CursorExpired {
        /// The oldest cursor that is still valid.
        horizon: i64,
    },
    /// The actor's role does not allow this operation.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The storage is unreachable (database down, pool exhausted).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A bug or an unexpected storage failure; the message is for logs, not clients.
    #[error("internal error: {0}")]
    Internal(String),
}

fn summarize(errors: &[FieldError]) -> String {
    let parts: Vec<String> = errors
        .iter()
        .take(5)
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect();
    let mut s = parts.join("; ");
    if errors.len() > 5 {
        s.push_str(&format!("; and {} more", errors.len() - 5));
    }
    s
}

impl Error {
    /// The stable machine-readable code of this error (used in HTTP bodies).
    pub fn code(&self) -> &'static str {
        match self {
            Error::NotFound { .. } => "not_found",
            Error::Conflict { kind, .. } => kind.code(),
            Error::Validation(_) => "validation_failed",
            Error::InvalidFilter { .. } => "invalid_filter",
            Error::InvalidQuery { .. } => "invalid_query",
            Error::InvalidCursor(_) => "invalid_cursor",
            Error::CursorExpired { .. } => "cursor_expired",
            Error::Forbidden(_) => "forbidden",
            Error::Unavailable(_) => "unavailable",
            Error::Internal(_) => "internal",
        }
    }

    /// Shorthand for [`Error::NotFound`].
    pub fn not_found(what: &'static str, key: impl std::fmt::Display) -> Self {
        Error::NotFound {
            what,
            key: key.to_string(),
        }
    }

    /// Shorthand for [`Error::Conflict`] without details.
    pub fn conflict(kind: ConflictKind, message: impl Into<String>) -> Self {
        Error::Conflict {
            kind,
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// A validation error with a single problem.
    pub fn invalid(field: impl Into<String>, code: &str, message: impl Into<String>) -> Self {
        Error::Validation(vec![FieldError::new(field, code, message)])
    }

    /// Shorthand for [`Error::InvalidFilter`].
    pub fn filter(path: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidFilter {
            path: path.into(),
            message: message.into(),
        }
    }

    /// Shorthand for [`Error::InvalidQuery`].
    pub fn query(path: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidQuery {
            path: path.into(),
            message: message.into(),
        }
    }

    /// Per-field details, when the error has any.
    pub fn details(&self) -> &[FieldError] {
        match self {
            Error::Validation(d) => d,
            Error::Conflict { details, .. } => details,
            _ => &[],
        }
    }
}
