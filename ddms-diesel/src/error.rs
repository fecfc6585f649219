//! Setup-level errors of the PostgreSQL backend: finding and starting PostgreSQL,
//! connecting, pooling and migrating.

/// A failure to set up or reach the PostgreSQL backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No PostgreSQL server binaries (`initdb`, `pg_ctl`) could be found.
    #[error(
        "no PostgreSQL server binaries found (searched {searched}): install them, e.g. \
         `apt-get install postgresql` on Debian/Ubuntu, or put initdb and pg_ctl on PATH \
         (or set PG_BIN_DIR to the directory holding them)"
    )]
    NoPostgres {
        /// Where the binaries were looked for.
        searched: String,
    },

    /// An external command of the PostgreSQL harness failed; the message names the
    /// command and carries its error output.
    #[error("postgres harness: {0}")]
    Harness(String),

    /// An I/O error (files, directories, spawning processes).
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),

    /// Running the embedded migrations failed.
    #[error("migration failed: {0}")]
    Migration(String),

    /// The connection pool could not be built or could not hand out a connection.
    #[error("connection pool error: {0}")]
    Pool(String),

    /// Connecting to or talking to the database failed.
    #[error("database error: {0}")]
    Database(String),

    /// The configuration (e.g. a database URL) is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// Result type of this crate's setup operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<diesel::ConnectionError> for Error {
    fn from(e: diesel::ConnectionError) -> Self {
        Error::Database(e.to_string())
    }
}

impl From<r2d2::Error> for Error {
    fn from(e: r2d2::Error) -> Self {
        Error::Pool(e.to_string())
    }
}

/// Maps Diesel/PostgreSQL errors to ddms-core error kinds: the one place where database
/// errors are classified (unique, foreign key, serialization, connection, timeout).
pub(crate) fn map_db(e: diesel::result::Error) -> ddms_core::Error {
    use ddms_core::{ConflictKind, Error as E};
    use diesel::result::{DatabaseErrorKind as K, Error as D};
    match e {
        D::NotFound => E::not_found("object", "requested"),
        D::DatabaseError(kind, info) => {
            let msg = info.message().to_string();
            let constraint = info.constraint_name().unwrap_or("").to_string();
            match kind {
                K::UniqueViolation => {
                    if constraint.starts_with("fv_") {
                        E::Conflict {
                            kind: ConflictKind::Unique,
                            message: "a value of a unique field is already taken".into(),
                            details: Vec::new(),
                        }
                    } else if constraint.starts_with("relations_one_") {
                        E::conflict(
                            ConflictKind::Cardinality,
                            "the relation type's cardinality allows no further relation here",
                        )
                    } else {
                        E::conflict(
                            ConflictKind::AlreadyExists,
                            format!("already exists ({constraint})"),
                        )
                    }
                }
                K::ForeignKeyViolation => E::not_found("referenced object", constraint),
                K::SerializationFailure => {
                    E::conflict(ConflictKind::Concurrent, "concurrent update; retry")
                }
                K::ClosedConnection | K::UnableToSendCommand => {
                    E::Unavailable(format!("database connection lost: {msg}"))
                }
                K::ReadOnlyTransaction => E::Unavailable(format!("database is read-only: {msg}")),
                _ if msg.contains("deadlock detected") => E::conflict(
                    ConflictKind::Concurrent,
                    "concurrent update (deadlock); retry",
                ),
                _ if msg.contains("statement timeout") || msg.contains("canceling statement") => {
                    E::Unavailable("the database did not answer in time (statement timeout)".into())
                }
                _ if msg.contains("terminating connection")
                    || msg.contains("server closed the connection") =>
                {
                    E::Unavailable(format!("database connection lost: {msg}"))
                }
                _ => E::Internal(format!("database error: {msg}")),
            }
        }
        D::BrokenTransactionManager => E::Unavailable("database connection is broken".into()),
        other => E::Internal(format!("database error: {other}")),
    }
}

/// Maps a pool checkout failure.
pub(crate) fn map_pool(e: r2d2::Error) -> ddms_core::Error {
    ddms_core::Error::Unavailable(format!("no database connection available: {e}"))
}
