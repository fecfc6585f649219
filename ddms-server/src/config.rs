//! Server configuration from the environment (and an optional `.env` file).
//!
//! Every setting has a default fit for development; a value that does not parse is a
//! startup error naming the variable. In production (`DDMS_ENV=production` or
//! `NODE_ENV=production`) mock auth and the default JWT secret are refused.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use ddms_core::{Role, TenantId};
use uuid::Uuid;

/// The JWT secret used when `JWT_SECRET` is not set (refused in production).
pub const DEFAULT_JWT_SECRET: &str = "a-very-secret-key-that-should-be-in-env";
/// The mock tenant's id when `MOCK_TENANT_ID` is not set.
pub const DEFAULT_MOCK_TENANT_ID: &str = "11111111-1111-1111-1111-111111111111";
/// The mock user's id when `MOCK_USER_ID` is not set.
pub const DEFAULT_MOCK_USER_ID: &str = "22222222-2222-2222-2222-222222222222";

/// A configuration value that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {var}: {message}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub var: &'static str,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    fn new(var: &'static str, message: impl Into<String>) -> Self {
        ConfigError {
            var,
            message: message.into(),
        }
    }
}

/// Everything the server and the CLI read from the environment.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `DATABASE_URL`: PostgreSQL to use; `None` starts the embedded cluster.
    pub database_url: Option<String>,
    /// `HOST` (default `0.0.0.0`).
    pub host: String,
    /// `PORT` (default 3001).
    pub port: u16,
    /// True when `DDMS_ENV` (or else `NODE_ENV`) is `production`.
    pub production: bool,
    /// `JWT_SECRET` (HS256).
    pub jwt_secret: String,
    /// `MOCK_AUTH` (default true unless production).
    pub mock_auth: bool,
    /// `MOCK_TENANT_ID`.
    pub mock_tenant_id: TenantId,
    /// `MOCK_TENANT_NAME` (default `Mock Tenant`).
    pub mock_tenant_name: String,
    /// `MOCK_USER_ID`: the actor of mock requests.
    pub mock_user_id: String,
    /// `MOCK_ROLES` (comma-separated, default `admin`): the strongest one is used.
    pub mock_role: Role,
    /// `FIELD_INDEXER_INTERVAL_MS` (default 30000; 0 disables the background indexer).
    pub field_indexer_interval: Duration,
    /// `EVENT_RETENTION_HOURS` (default 0: keep every event): events older than this
    /// are pruned hourly; older cursors get `cursor_expired`.
    pub event_retention: Duration,
    /// `DDMS_DATA_DIR`: data directory of the embedded cluster (default `.ddms/pgdata`).
    pub data_dir: PathBuf,
    /// `BODY_LIMIT_BYTES` (default 1 MiB).
    pub body_limit: usize,
    /// `DB_POOL_SIZE` (default 16).
    pub db_pool_size: u32,
    /// `STATEMENT_TIMEOUT_MS` (default 30000).
    pub statement_timeout_ms: u64,
    /// `DB_PARALLEL_WORKERS` (default 0): PostgreSQL parallel workers per query of a
    /// pooled session (`max_parallel_workers_per_gather`).
    pub db_parallel_workers: u32,
    /// `DB_CONNECT_TIMEOUT_MS` (default 5000).
    pub db_connect_timeout_ms: u64,
    /// `REQUEST_TIMEOUT_MS` (default 60000): longest a request may take to answer.
    pub request_timeout: Duration,
    /// `SHUTDOWN_TIMEOUT_MS` (default 30000): how long in-flight requests may take to
    /// finish after SIGINT/SIGTERM.
    pub shutdown_timeout: Duration,
    /// `CURSOR_SECRET`: signs query cursors (default derived from `JWT_SECRET`).
    pub cursor_secret: String,
    /// `SSE_KEEP_ALIVE_MS` (default 15000): keep-alive comment interval of event streams.
    pub sse_keep_alive: Duration,
}

impl Default for Config {
    /// The development defaults (as with an empty environment).
    fn default() -> Self {
        match Config::from_lookup(|_| None) {
            Ok(c) => c,
            // The defaults always parse; this arm is unreachable in practice.
            Err(e) => panic!("default configuration is invalid: {e}"),
        }
    }
}

fn parse_bool(var: &'static str, v: &str) -> Result<bool, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::new(
            var,
            format!("expected true or false, got {v:?}"),
        )),
    }
}

fn parse_num<T>(var: &'static str, v: &str, min: T, what: &str) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    let n: T = v
        .trim()
        .parse()
        .map_err(|_| ConfigError::new(var, format!("expected {what}, got {v:?}")))?;
    if n < min {
        return Err(ConfigError::new(
            var,
            format!("must be at least {min}, got {n}"),
        ));
    }
    Ok(n)
}

/// Parses a comma-separated role list and returns the strongest role; unknown roles are
/// errors here (a typo in the server's own configuration should not pass silently).
fn parse_roles(var: &'static str, v: &str) -> Result<Role, ConfigError> {
    let mut best = None;
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let role = Role::parse(part).ok_or_else(|| {
            ConfigError::new(
                var,
                format!("unknown role {part:?}: expected admin, editor or viewer"),
            )
        })?;
        best = best.max(Some(role));
    }
    best.ok_or_else(|| ConfigError::new(var, "must name at least one role"))
}

impl Config {
    /// Reads the process environment, after loading `.env` from the current directory
    /// (if present; variables already set win).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first variable that does not parse, or a refused
    /// production setting.
    pub fn load() -> Result<Config, ConfigError> {
        match dotenvy::dotenv() {
            Ok(_) => {}
            Err(e) if e.not_found() => {}
            Err(e) => return Err(ConfigError::new("DOTENV", format!(".env: {e}"))),
        }
        Config::from_env()
    }

    /// Reads the process environment only.
    ///
    /// # Errors
    ///
    /// As for [`Config::load`].
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|k| std::env::var(k).ok())
    }

    /// Builds a configuration from explicit variables (for tests and embedders).
    ///
    /// # Errors
    ///
    /// As for [`Config::load`].
    pub fn from_vars<'a>(
        vars: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    /// Builds a configuration from a lookup function (empty values count as unset).
    ///
    /// # Errors
    ///
    /// As for [`Config::load`].
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());

        let env_name = get("DDMS_ENV").or_else(|| get("NODE_ENV"));
        let production = env_name
            .as_deref()
            .is_some_and(|e| e.trim().eq_ignore_ascii_case("production"));

        let port = match get("PORT") {
            Some(v) => parse_num::<u16>("PORT", &v, 0, "a TCP port (0-65535)")?,
            None => 3001,
        };
        let host = get("HOST").unwrap_or_else(|| "0.0.0.0".into());
        if host.contains(char::is_whitespace) {
            return Err(ConfigError::new(
                "HOST",
                format!("expected an address or host name, got {host:?}"),
            ));
        }

        let jwt_secret_set = get("JWT_SECRET");
        let jwt_secret = jwt_secret_set
            .clone()
            .unwrap_or_else(|| DEFAULT_JWT_SECRET.into());
        let mock_auth = match get("MOCK_AUTH") {
            Some(v) => parse_bool("MOCK_AUTH", &v)?,
            None => !production,
        };
        let mock_tenant_id = {
            let v = get("MOCK_TENANT_ID").unwrap_or_else(|| DEFAULT_MOCK_TENANT_ID.into());
            TenantId(Uuid::parse_str(v.trim()).map_err(|_| {
                ConfigError::new("MOCK_TENANT_ID", format!("expected a uuid, got {v:?}"))
            })?)
        };
        let mock_tenant_name = get("MOCK_TENANT_NAME").unwrap_or_else(|| "Mock Tenant".into());
        if mock_tenant_name.chars().count() > 200 || mock_tenant_name.contains('\0') {
            return Err(ConfigError::new(
                "MOCK_TENANT_NAME",
                "must be 1 to 200 characters without NUL",
            ));
        }
        let mock_user_id = get("MOCK_USER_ID").unwrap_or_else(|| DEFAULT_MOCK_USER_ID.into());
        let mock_role = parse_roles("MOCK_ROLES", &get("MOCK_ROLES").unwrap_or("admin".into()))?;

        let ms = |var: &'static str, default: u64, min: u64| -> Result<u64, ConfigError> {
            match get(var) {
                Some(v) => parse_num::<u64>(var, &v, min, "a number of milliseconds"),
                None => Ok(default),
            }
        };
        let field_indexer_interval =
            Duration::from_millis(ms("FIELD_INDEXER_INTERVAL_MS", 30_000, 0)?);
        let event_retention = match get("EVENT_RETENTION_HOURS") {
            Some(v) => Duration::from_secs(
                3600 * parse_num::<u64>("EVENT_RETENTION_HOURS", &v, 0, "a number of hours")?,
            ),
            None => Duration::ZERO,
        };
        let statement_timeout_ms = ms("STATEMENT_TIMEOUT_MS", 30_000, 0)?;
        let db_connect_timeout_ms = ms("DB_CONNECT_TIMEOUT_MS", 5_000, 1)?;
        let request_timeout = Duration::from_millis(ms("REQUEST_TIMEOUT_MS", 60_000, 1)?);
        let shutdown_timeout = Duration::from_millis(ms("SHUTDOWN_TIMEOUT_MS", 30_000, 0)?);
        let sse_keep_alive = Duration::from_millis(ms("SSE_KEEP_ALIVE_MS", 15_000, 10)?);

        let body_limit = match get("BODY_LIMIT_BYTES") {
            Some(v) => parse_num::<usize>("BODY_LIMIT_BYTES", &v, 1, "a number of bytes")?,
            None => 1 << 20,
        };
        let db_parallel_workers = match get("DB_PARALLEL_WORKERS") {
            Some(v) => parse_num::<u32>("DB_PARALLEL_WORKERS", &v, 0, "a number of workers")?,
            None => 0,
        };
        let db_pool_size = match get("DB_POOL_SIZE") {
            Some(v) => parse_num::<u32>("DB_POOL_SIZE", &v, 1, "a pool size")?,
            None => 16,
        };
        let data_dir = get("DDMS_DATA_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(".ddms/pgdata"));
        let cursor_secret = get("CURSOR_SECRET").unwrap_or_else(|| jwt_secret.clone());

        if production {
            if mock_auth {
                return Err(ConfigError::new(
                    "MOCK_AUTH",
                    "mock auth is refused in production: set MOCK_AUTH=false and JWT_SECRET",
                ));
            }
            if jwt_secret == DEFAULT_JWT_SECRET {
                return Err(ConfigError::new(
                    "JWT_SECRET",
                    "the default JWT secret is refused in production: set JWT_SECRET",
                ));
            }
            if jwt_secret.len() < 16 {
                return Err(ConfigError::new(
                    "JWT_SECRET",
                    "must be at least 16 bytes in production",
                ));
            }
            if cursor_secret == DEFAULT_JWT_SECRET {
                return Err(ConfigError::new(
                    "CURSOR_SECRET",
                    "the default secret is refused in production",
                ));
            }
        }

        Ok(Config {
            database_url: get("DATABASE_URL"),
            host,
            port,
            production,
            jwt_secret,
            mock_auth,
            mock_tenant_id,
            mock_tenant_name: mock_tenant_name.trim().to_string(),
            mock_user_id,
            mock_role,
            field_indexer_interval,
            event_retention,
            data_dir,
            body_limit,
            db_pool_size,
            db_parallel_workers,
            statement_timeout_ms,
            db_connect_timeout_ms,
            request_timeout,
            shutdown_timeout,
            cursor_secret,
            sse_keep_alive,
        })
    }

    /// True when JWT auth runs with the well-known default secret (a development setup
    /// worth a warning).
    pub fn uses_default_jwt_secret(&self) -> bool {
        self.jwt_secret == DEFAULT_JWT_SECRET
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_vars(vars.iter().copied())
    }

    #[test]
    fn defaults() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.port, 3001);
        assert_eq!(c.host, "0.0.0.0");
        assert!(c.mock_auth);
        assert!(!c.production);
        assert_eq!(c.mock_tenant_id.to_string(), DEFAULT_MOCK_TENANT_ID);
        assert_eq!(c.mock_user_id, DEFAULT_MOCK_USER_ID);
        assert_eq!(c.mock_tenant_name, "Mock Tenant");
        assert_eq!(c.mock_role, Role::Admin);
        assert_eq!(c.field_indexer_interval, Duration::from_secs(30));
        assert_eq!(c.event_retention, Duration::ZERO);
        assert_eq!(c.body_limit, 1 << 20);
        assert_eq!(c.data_dir, PathBuf::from(".ddms/pgdata"));
        assert_eq!(c.database_url, None);
        assert_eq!(c.jwt_secret, DEFAULT_JWT_SECRET);
        assert_eq!(c.cursor_secret, DEFAULT_JWT_SECRET);
        assert_eq!(c, Config::default());
    }

    #[test]
    fn values_parse() {
        let c = cfg(&[
            ("PORT", "8080"),
            ("HOST", "127.0.0.1"),
            ("MOCK_AUTH", "false"),
            ("MOCK_ROLES", "viewer, editor"),
            ("DATABASE_URL", "postgres://x@h/db"),
            ("BODY_LIMIT_BYTES", "2048"),
            ("JWT_SECRET", "s3cr3t"),
        ])
        .unwrap();
        assert_eq!(c.port, 8080);
        assert!(!c.mock_auth);
        assert_eq!(c.mock_role, Role::Editor);
        assert_eq!(c.database_url.as_deref(), Some("postgres://x@h/db"));
        assert_eq!(c.body_limit, 2048);
        assert_eq!(c.cursor_secret, "s3cr3t");
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, val) in [
            ("PORT", "http"),
            ("PORT", "70000"),
            ("EVENT_RETENTION_HOURS", "a week"),
            ("MOCK_AUTH", "maybe"),
            ("MOCK_TENANT_ID", "not-a-uuid"),
            ("MOCK_ROLES", "root"),
            ("MOCK_ROLES", ","),
            ("FIELD_INDEXER_INTERVAL_MS", "-1"),
            ("BODY_LIMIT_BYTES", "0"),
            ("DB_POOL_SIZE", "0"),
            ("DB_PARALLEL_WORKERS", "two"),
            ("REQUEST_TIMEOUT_MS", "soon"),
            ("STATEMENT_TIMEOUT_MS", "1.5"),
            ("HOST", "a b"),
        ] {
            let e = cfg(&[(var, val)]).unwrap_err();
            assert_eq!(e.var, var, "{var}={val}: {e}");
            assert!(e.to_string().contains(var));
        }
    }

    #[test]
    fn production_refuses_mock_auth_and_default_secret() {
        let e = cfg(&[("NODE_ENV", "production"), ("MOCK_AUTH", "true")]).unwrap_err();
        assert_eq!(e.var, "MOCK_AUTH");
        let e = cfg(&[("DDMS_ENV", "production")]).unwrap_err();
        assert_eq!(e.var, "JWT_SECRET");
        let c = cfg(&[
            ("DDMS_ENV", "production"),
            ("JWT_SECRET", "a-long-enough-production-secret"),
        ])
        .unwrap();
        assert!(!c.mock_auth && c.production);
        // DDMS_ENV wins over NODE_ENV.
        let c = cfg(&[("DDMS_ENV", "development"), ("NODE_ENV", "production")]).unwrap();
        assert!(!c.production && c.mock_auth);
    }
}
