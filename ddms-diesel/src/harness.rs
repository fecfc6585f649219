//! Private PostgreSQL clusters started from the machine's own PostgreSQL binaries.
//!
//! This is what makes `cargo test` need nothing but an installed PostgreSQL, and what
//! backs the embedded default of the server when no `DATABASE_URL` is given:
//!
//! - [`PgCluster::start_temp`] creates a throwaway cluster in a fresh temporary directory
//!   (with durability switched off for speed); dropping it stops the server and removes
//!   the directory.
//! - [`PgCluster::start_persistent`] runs a cluster on a data directory that is kept
//!   across restarts (`initdb` only the first time); dropping it stops the server.
//! - [`test_database_url`] and [`fresh_database`] serve tests: they use `DATABASE_URL`
//!   when it is set, otherwise one process-wide temporary cluster.
//!
//! The binaries (`initdb`, `pg_ctl`) are found by [`find_pg_bin_dir`]. `initdb` refuses
//! to run as root, so when this process runs as root the PostgreSQL commands are run as
//! the `postgres` OS user (`runuser -u postgres -- ...`) and the directories involved
//! are handed to that user.
//!
//! A cluster listens on `127.0.0.1` on a free TCP port and on a Unix socket in a private
//! directory. Clients are trusted without a password (`initdb -A trust`), as the
//! superuser `postgres`; note that any local user can therefore reach the server on its
//! TCP port while it runs. Use a real server (`DATABASE_URL`) for anything shared.
//!
//! Unix only.

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};

use crate::error::{Error, Result};

/// Prefix of the temporary directories of [`PgCluster::start_temp`] clusters, directly
/// under [`std::env::temp_dir`].
const TEMP_PREFIX: &str = "ddms-pg-";
/// Prefix of the socket directories of persistent clusters.
const SOCKET_PREFIX: &str = "ddms-pgsock-";
/// File in a temporary cluster directory naming the process that owns the cluster.
const OWNER_FILE: &str = "owner.pid";
/// How many times a start is retried when the chosen TCP port was taken meanwhile.
const START_ATTEMPTS: usize = 5;
/// The OS user that runs PostgreSQL when this process runs as root.
const PG_OS_USER: &str = "postgres";
/// The superuser created by `initdb`.
const PG_SUPERUSER: &str = "postgres";

/// Settings passed to every cluster.
const COMMON_SETTINGS: &[&str] = &["max_connections=200", "shared_buffers=256MB"];
/// Environment of the PostgreSQL programs the harness runs (unless the caller's
/// environment already sets the variable): glibc's `malloc` asks for transparent huge
/// pages (`madvise`) for the server's private memory. Sorts and index builds touch
/// hundreds of MB that glibc hands back to the kernel after each statement; with 4 kB
/// pages every build faults it in again (~31k faults for one 1M-row index) and misses
/// the TLB while sorting: with huge pages the seed's index builds take ~15 % less CPU
/// (BENCHMARKS.md). Ignored where glibc < 2.35 or THP is `never`; harmless elsewhere.
pub const SERVER_ENV: [(&str, &str); 1] = [("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1")];
/// Settings trading durability for speed, for throwaway clusters only.
const UNSAFE_FAST_SETTINGS: &[&str] = &[
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
];

// ---------------------------------------------------------------------------------------
// Finding the binaries
// ---------------------------------------------------------------------------------------

/// Finds the directory holding the PostgreSQL server binaries `initdb` and `pg_ctl`.
///
/// Looked for, in order:
/// 1. `PG_BIN_DIR` if set (and then only there: a wrong `PG_BIN_DIR` is an error);
/// 2. `PATH` (a symlinked `initdb`, e.g. `/usr/local/bin/initdb`, is resolved to the
///    directory of its target, so the other PostgreSQL binaries are found beside it);
/// 3. the highest version under `/usr/lib/postgresql/*/bin` (Debian/Ubuntu) or
///    `/usr/pgsql-*/bin` (RHEL/Fedora PGDG packages).
///
/// # Errors
///
/// [`Error::NoPostgres`] when none of these holds both binaries.
pub fn find_pg_bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BIN_DIR").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        if has_server_binaries(&dir) {
            return Ok(dir);
        }
        return Err(Error::NoPostgres {
            searched: format!("PG_BIN_DIR={}", dir.display()),
        });
    }

    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let initdb = dir.join("initdb");
            if !is_executable(&initdb) {
                continue;
            }
            if let Some(real_dir) = fs::canonicalize(&initdb)
                .ok()
                .and_then(|p| p.parent().map(Path::to_path_buf))
            {
                if has_server_binaries(&real_dir) {
                    return Ok(real_dir);
                }
            }
            if has_server_binaries(&dir) {
                return Ok(dir);
            }
        }
    }

    let mut best: Option<(Vec<u64>, PathBuf)> = None;
    for (parent, prefix, suffix) in [
        ("/usr/lib/postgresql", "", "bin"),
        ("/usr", "pgsql-", "bin"),
    ] {
        let Ok(entries) = fs::read_dir(parent) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(version) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
                continue;
            };
            let Some(version) = parse_version(version) else {
                continue;
            };
            let dir = entry.path().join(suffix);
            if has_server_binaries(&dir) && !matches!(&best, Some((v, _)) if *v >= version) {
                best = Some((version, dir));
            }
        }
    }
    if let Some((_, dir)) = best {
        return Ok(dir);
    }

    Err(Error::NoPostgres {
        searched: "PG_BIN_DIR, PATH, /usr/lib/postgresql/*/bin, /usr/pgsql-*/bin".into(),
    })
}

fn has_server_binaries(dir: &Path) -> bool {
    is_executable(&dir.join("initdb")) && is_executable(&dir.join("pg_ctl"))
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `"15"` -> `[15]`, `"9.6"` -> `[9, 6]`.
fn parse_version(s: &str) -> Option<Vec<u64>> {
    s.split('.').map(|p| p.parse().ok()).collect()
}

// ---------------------------------------------------------------------------------------
// Running the PostgreSQL commands (as `postgres` when we are root)
// ---------------------------------------------------------------------------------------

/// Runs the PostgreSQL tools of one bin dir, as the `postgres` OS user when this process
/// runs as root.
#[derive(Debug, Clone)]
struct Runner {
    bin_dir: PathBuf,
    as_postgres: bool,
}

impl Runner {
    fn new() -> Result<Runner> {
        let bin_dir = find_pg_bin_dir()?;
        let as_postgres = running_as_root();
        if as_postgres {
            // Fail early, with a clear message, when the OS user or `runuser` is missing.
            postgres_os_uid()?;
        }
        Ok(Runner {
            bin_dir,
            as_postgres,
        })
    }

    /// The command running `tool` from the bin dir, with `args`, in directory `cwd`.
    fn command(&self, tool: &str, args: &[&OsStr], cwd: &Path) -> Command {
        let program = self.bin_dir.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", PG_OS_USER, "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        cmd.args(args).current_dir(cwd).stdin(Stdio::null());
        for (key, value) in SERVER_ENV {
            if std::env::var_os(key).is_none() {
                cmd.env(key, value);
            }
        }
        cmd
    }

    /// Runs `tool` and fails with [`Error::Harness`] (command line and stderr) unless it
    /// exits successfully.
    fn run(&self, tool: &str, args: &[&OsStr], cwd: &Path) -> Result<Output> {
        let mut cmd = self.command(tool, args, cwd);
        let line = command_line(&cmd);
        tracing::debug!(command = %line, "running");
        let output = cmd
            .output()
            .map_err(|e| Error::Harness(format!("could not run `{line}`: {e}")))?;
        if output.status.success() {
            Ok(output)
        } else {
            Err(Error::Harness(format!(
                "`{line}` failed ({}): {}",
                output.status,
                output_text(&output)
            )))
        }
    }

    /// Runs `tool`, returning its output whatever its exit status.
    fn run_unchecked(&self, tool: &str, args: &[&OsStr], cwd: &Path) -> Result<Output> {
        let mut cmd = self.command(tool, args, cwd);
        let line = command_line(&cmd);
        tracing::debug!(command = %line, "running");
        cmd.output()
            .map_err(|e| Error::Harness(format!("could not run `{line}`: {e}")))
    }

    /// When we run as root: hands `path` (recursively) to the `postgres` OS user unless
    /// `chown` is false, then checks that this user can write it (every parent must be
    /// traversable). Does nothing otherwise.
    fn give_to_postgres(&self, path: &Path, chown: bool) -> Result<()> {
        if !self.as_postgres {
            return Ok(());
        }
        if chown {
            run_plain(
                Command::new("chown")
                    .arg("-R")
                    .arg(format!("{PG_OS_USER}:"))
                    .arg(path),
            )?;
        }
        let ok = Command::new("runuser")
            .args(["-u", PG_OS_USER, "--", "test", "-w"])
            .arg(path)
            .stdin(Stdio::null())
            .status()
            .map_err(|e| Error::Harness(format!("could not run runuser: {e}")))?;
        if ok.success() {
            Ok(())
        } else {
            Err(Error::Harness(format!(
                "directory {} is not writable by the `{PG_OS_USER}` OS user, which runs \
                 PostgreSQL because this process runs as root: make every parent directory \
                 traversable by it (e.g. chmod o+x), choose another directory, or run as a \
                 non-root user",
                path.display()
            )))
        }
    }
}

/// Runs a non-PostgreSQL helper command (chown, ...), failing on a non-zero exit.
fn run_plain(cmd: &mut Command) -> Result<Output> {
    let line = command_line(cmd);
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Harness(format!("could not run `{line}`: {e}")))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(Error::Harness(format!(
            "`{line}` failed ({}): {}",
            output.status,
            output_text(&output)
        )))
    }
}

fn command_line(cmd: &Command) -> String {
    let mut line = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

fn output_text(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stderr = stderr.trim();
    if stderr.is_empty() {
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    } else {
        stderr.to_owned()
    }
}

/// Whether this process runs with effective uid 0.
fn running_as_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| {
        if let Ok(status) = fs::read_to_string("/proc/self/status") {
            if let Some(line) = status.lines().find(|l| l.starts_with("Uid:")) {
                // Uid: real effective saved fs
                if let Some(euid) = line.split_whitespace().nth(2) {
                    return euid == "0";
                }
            }
        }
        Command::new("id")
            .arg("-u")
            .stdin(Stdio::null())
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
    })
}

/// The uid of the `postgres` OS user (checked once, together with `runuser`).
fn postgres_os_uid() -> Result<u32> {
    static UID: OnceLock<std::result::Result<u32, String>> = OnceLock::new();
    UID.get_or_init(|| {
        let out = Command::new("id")
            .args(["-u", PG_OS_USER])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("could not run `id -u {PG_OS_USER}`: {e}"))?;
        let uid = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|_| out.status.success())
            .ok_or_else(|| {
                format!(
                    "this process runs as root and initdb refuses to run as root, but there \
                     is no `{PG_OS_USER}` OS user to run PostgreSQL as: create one (e.g. \
                     `useradd --system --user-group {PG_OS_USER}`; installing the postgresql \
                     package does this) or run as a non-root user"
                )
            })?;
        Command::new("runuser")
            .arg("--help")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| {
                format!(
                    "this process runs as root and initdb refuses to run as root, but \
                     `runuser` (util-linux), needed to run PostgreSQL as `{PG_OS_USER}`, \
                     could not be run: {e}"
                )
            })?;
        Ok(uid)
    })
    .clone()
    .map_err(Error::Harness)
}

// ---------------------------------------------------------------------------------------
// Clusters
// ---------------------------------------------------------------------------------------

/// A running private PostgreSQL cluster (see the [module documentation](self)).
///
/// Dropping it stops the server (errors ignored); a temporary cluster's directory is
/// then removed.
#[derive(Debug)]
pub struct PgCluster {
    runner: Runner,
    /// Temporary cluster: its directory (removed on drop). Persistent cluster: the data
    /// directory.
    base_dir: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_file: PathBuf,
    port: u16,
    url: String,
    temporary: bool,
    running: bool,
    /// Removes the temporary cluster directory (or a persistent cluster's socket
    /// directory) when dropped, after the server has been stopped.
    _dir_guard: tempfile::TempDir,
}

impl PgCluster {
    /// Starts a throwaway cluster in a fresh directory `ddms-pg-*` under
    /// [`std::env::temp_dir`], with durability switched off (`fsync=off`, ...).
    ///
    /// The directory is removed when the cluster is dropped. Before starting, leftovers
    /// of earlier processes that died without dropping their cluster (each cluster
    /// directory records its owner's PID) are stopped and removed.
    ///
    /// # Errors
    ///
    /// [`Error::NoPostgres`] when PostgreSQL is not installed, [`Error::Harness`] when
    /// `initdb` or `pg_ctl` fails (the message carries the tail of the server log),
    /// [`Error::Io`] on file system errors.
    pub fn start_temp() -> Result<PgCluster> {
        let runner = Runner::new()?;
        cleanup_stale_clusters(&runner);

        let dir = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempdir_in(std::env::temp_dir())?;
        let base_dir = dir.path().to_path_buf();
        fs::write(base_dir.join(OWNER_FILE), owner_record())?;
        let socket_dir = base_dir.join("sock");
        fs::create_dir(&socket_dir)?;
        fs::set_permissions(&socket_dir, fs::Permissions::from_mode(0o700))?;
        runner.give_to_postgres(&base_dir, true)?;

        let data_dir = base_dir.join("data");
        initdb(&runner, &data_dir, &base_dir, true)?;

        let mut cluster = PgCluster {
            runner,
            log_file: base_dir.join("server.log"),
            base_dir,
            data_dir,
            socket_dir,
            port: 0,
            url: String::new(),
            temporary: true,
            running: false,
            _dir_guard: dir,
        };
        cluster.start()?;
        Ok(cluster)
    }

    /// Starts a cluster on `data_dir`, kept across restarts: `initdb` runs only when the
    /// directory holds no cluster yet (no `PG_VERSION`), and dropping the cluster stops
    /// the server but keeps the data. The directory is created if needed; the server log
    /// is `server.log` inside it.
    ///
    /// A `postmaster.pid` left behind by a crash is harmless (PostgreSQL replaces a stale
    /// one), but if a server is still running on this data directory this fails rather
    /// than start a second one.
    ///
    /// When this process runs as root the directory is handed to the `postgres` OS user,
    /// which must be able to reach it (every parent directory traversable).
    ///
    /// # Errors
    ///
    /// As for [`PgCluster::start_temp`], plus [`Error::Harness`] when a server is
    /// already running on `data_dir`.
    pub fn start_persistent(data_dir: &Path) -> Result<PgCluster> {
        let runner = Runner::new()?;
        fs::create_dir_all(data_dir)?;
        let data_dir = fs::canonicalize(data_dir)?;

        if runner.as_postgres {
            // chown -R only when needed: the data may be large.
            let owned = fs::metadata(&data_dir)?.uid() == postgres_os_uid()?;
            runner.give_to_postgres(&data_dir, !owned)?;
        }

        if !data_dir.join("PG_VERSION").exists() {
            initdb(&runner, &data_dir, &data_dir, false)?;
        } else if data_dir.join("postmaster.pid").exists() {
            let status = runner.run_unchecked(
                "pg_ctl",
                &[OsStr::new("status"), OsStr::new("-D"), data_dir.as_os_str()],
                &data_dir,
            )?;
            // pg_ctl status: 0 = running, 3 = not running, 4 = no accessible data dir.
            if status.status.success() {
                return Err(Error::Harness(format!(
                    "a PostgreSQL server is already running on data directory {} ({}); \
                     stop it first (`pg_ctl stop -D {}`), or if no such server runs, \
                     remove {}",
                    data_dir.display(),
                    String::from_utf8_lossy(&status.stdout)
                        .lines()
                        .next()
                        .unwrap_or("")
                        .trim(),
                    data_dir.display(),
                    data_dir.join("postmaster.pid").display(),
                )));
            }
            tracing::info!(
                data_dir = %data_dir.display(),
                "stale postmaster.pid found (server not running); PostgreSQL will replace it"
            );
        }

        let sock = tempfile::Builder::new()
            .prefix(SOCKET_PREFIX)
            .tempdir_in(std::env::temp_dir())?;
        runner.give_to_postgres(sock.path(), true)?;

        let mut cluster = PgCluster {
            runner,
            log_file: data_dir.join("server.log"),
            base_dir: data_dir.clone(),
            socket_dir: sock.path().to_path_buf(),
            data_dir,
            port: 0,
            url: String::new(),
            temporary: false,
            running: false,
            _dir_guard: sock,
        };
        cluster.start()?;
        Ok(cluster)
    }

    /// Starts the server (`pg_ctl start`). The first start picks a free port, retrying
    /// when it got taken meanwhile; starting a stopped cluster again reuses its port, so
    /// its URLs stay valid. Starting a running cluster does nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Harness`] when `pg_ctl start` fails (e.g. the old port is taken now).
    pub fn start(&mut self) -> Result<()> {
        if self.running {
            return Ok(());
        }
        let restart = self.port != 0;
        let mut last_err = None;
        for _ in 0..START_ATTEMPTS {
            let port = if restart { self.port } else { free_port()? };
            let log_offset = fs::metadata(&self.log_file).map(|m| m.len()).unwrap_or(0);
            let options = self.server_options(port);
            let result = self.runner.run(
                "pg_ctl",
                &[
                    OsStr::new("-w"),
                    OsStr::new("-t"),
                    OsStr::new("60"),
                    OsStr::new("-D"),
                    self.data_dir.as_os_str(),
                    OsStr::new("-l"),
                    self.log_file.as_os_str(),
                    OsStr::new("-o"),
                    OsStr::new(&options),
                    OsStr::new("start"),
                ],
                &self.base_dir,
            );
            match result {
                Ok(_) => {
                    self.port = port;
                    self.url = pg_url(port, "postgres");
                    self.running = true;
                    tracing::info!(
                        data_dir = %self.data_dir.display(),
                        port,
                        temporary = self.temporary,
                        "PostgreSQL cluster started"
                    );
                    return Ok(());
                }
                Err(e) => {
                    // pg_ctl may have given up waiting while the server still starts.
                    let _ = self.pg_ctl_stop("immediate");
                    let log = log_tail(&self.log_file, log_offset, 40);
                    let port_taken =
                        log.contains("could not bind") || log.contains("Address already in use");
                    let err = Error::Harness(format!("{e}\nserver log (tail):\n{log}"));
                    if !port_taken || restart {
                        return Err(err);
                    }
                    tracing::debug!(port, "port taken, retrying with another one");
                    last_err = Some(err);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| Error::Harness("could not start PostgreSQL".into())))
    }

    fn server_options(&self, port: u16) -> String {
        let mut opts = format!(
            "-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={}",
            shell_quote(&self.socket_dir.to_string_lossy())
        );
        let extra = if self.temporary {
            UNSAFE_FAST_SETTINGS
        } else {
            &[][..]
        };
        for setting in COMMON_SETTINGS.iter().chain(extra) {
            let _ = write!(opts, " -c {setting}");
        }
        opts
    }

    fn pg_ctl_stop(&self, mode: &str) -> Result<Output> {
        self.runner.run(
            "pg_ctl",
            &[
                OsStr::new("-w"),
                OsStr::new("-t"),
                OsStr::new("60"),
                OsStr::new("-D"),
                self.data_dir.as_os_str(),
                OsStr::new("-m"),
                OsStr::new(mode),
                OsStr::new("stop"),
            ],
            &self.base_dir,
        )
    }

    /// Stops the server (`pg_ctl stop -m fast`). Stopping a stopped cluster does
    /// nothing. A temporary cluster's directory is only removed on drop.
    ///
    /// # Errors
    ///
    /// [`Error::Harness`] when `pg_ctl stop` fails and the server still runs.
    pub fn stop(&mut self) -> Result<()> {
        if !self.running {
            return Ok(());
        }
        match self.pg_ctl_stop("fast") {
            Ok(_) => {}
            Err(e) => {
                let status = self.runner.run_unchecked(
                    "pg_ctl",
                    &[
                        OsStr::new("status"),
                        OsStr::new("-D"),
                        self.data_dir.as_os_str(),
                    ],
                    &self.base_dir,
                )?;
                if status.status.success() {
                    return Err(e);
                }
            }
        }
        self.running = false;
        tracing::info!(data_dir = %self.data_dir.display(), "PostgreSQL cluster stopped");
        Ok(())
    }

    /// libpq URL of database `postgres` as the superuser `postgres`, over TCP on
    /// `127.0.0.1`, e.g. `postgres://postgres@127.0.0.1:54321/postgres`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// libpq URL of database `db` on this cluster (as the superuser `postgres`).
    pub fn url_for_db(&self, db: &str) -> String {
        pg_url(self.port, db)
    }

    /// TCP port the server listens on (on `127.0.0.1`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Directory of the server's Unix socket (usable as libpq `host`).
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The server log file.
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// The directory of the PostgreSQL binaries in use.
    pub fn bin_dir(&self) -> &Path {
        &self.runner.bin_dir
    }

    /// Whether this is a throwaway cluster (removed on drop).
    pub fn is_temporary(&self) -> bool {
        self.temporary
    }

    /// Whether the server has been started and not stopped since.
    pub fn is_running(&self) -> bool {
        self.running
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::warn!(error = %e, "stopping PostgreSQL cluster failed; stopping immediately");
            let _ = self.pg_ctl_stop("immediate");
        }
        // `_dir_guard` now removes the temporary directory.
    }
}

fn initdb(runner: &Runner, data_dir: &Path, cwd: &Path, temporary: bool) -> Result<()> {
    let mut args: Vec<&OsStr> = vec![
        OsStr::new("-D"),
        data_dir.as_os_str(),
        OsStr::new("-U"),
        OsStr::new(PG_SUPERUSER),
        OsStr::new("-A"),
        OsStr::new("trust"),
        OsStr::new("--encoding=UTF8"),
        OsStr::new("--locale=C"),
    ];
    if temporary {
        // No fsync of the fresh files: the cluster is thrown away anyway.
        args.push(OsStr::new("--no-sync"));
    }
    runner.run("initdb", &args, cwd)?;
    Ok(())
}

/// A free TCP port on 127.0.0.1 (bound, then released; a start retries on a race).
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

fn pg_url(port: u16, db: &str) -> String {
    format!(
        "postgres://{PG_SUPERUSER}@127.0.0.1:{port}/{}",
        percent_encode(db)
    )
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Quotes `s` for `/bin/sh` (pg_ctl hands `-o` options to the shell).
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The last `lines` lines of `path` written after byte `offset`.
fn log_tail(path: &Path, offset: u64, lines: usize) -> String {
    let mut text = String::new();
    let read = fs::File::open(path).and_then(|mut f| {
        f.seek(SeekFrom::Start(offset))?;
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes)?;
        text = String::from_utf8_lossy(&bytes).into_owned();
        Ok(())
    });
    if let Err(e) = read {
        return format!("(could not read {}: {e})", path.display());
    }
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---------------------------------------------------------------------------------------
// Leftovers of dead processes
// ---------------------------------------------------------------------------------------

/// What [`OWNER_FILE`] records: our PID and, where known, our start time (so a reused
/// PID is not mistaken for the owner).
fn owner_record() -> String {
    let pid = std::process::id();
    match process_start_time(pid) {
        Some(start) => format!("{pid}\n{start}\n"),
        None => format!("{pid}\n"),
    }
}

/// Start time (field 22 of `/proc/<pid>/stat`), Linux only.
fn process_start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: skip past it.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process recorded in an owner file still runs.
fn owner_alive(record: &str) -> bool {
    let mut lines = record.lines();
    let Some(pid) = lines.next().and_then(|l| l.trim().parse::<u32>().ok()) else {
        // Unreadable record: not ours to judge.
        return true;
    };
    if Path::new("/proc/self").exists() {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return false;
        }
        match (
            lines.next().and_then(|l| l.trim().parse::<u64>().ok()),
            process_start_time(pid),
        ) {
            (Some(recorded), Some(actual)) => recorded == actual,
            _ => true,
        }
    } else {
        Command::new("ps")
            .args(["-p", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_or(true, |s| s.success())
    }
}

/// Stops and removes temporary clusters whose owning process is gone. Best effort.
fn cleanup_stale_clusters(runner: &Runner) {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let is_cluster_dir = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(TEMP_PREFIX))
            && entry.file_type().is_ok_and(|t| t.is_dir());
        if !is_cluster_dir {
            continue;
        }
        let dir = entry.path();
        let Ok(record) = fs::read_to_string(dir.join(OWNER_FILE)) else {
            continue;
        };
        if owner_alive(&record) {
            continue;
        }
        tracing::info!(dir = %dir.display(), "removing PostgreSQL cluster of a dead process");
        let data = dir.join("data");
        if data.join("postmaster.pid").exists() {
            let _ = runner.run(
                "pg_ctl",
                &[
                    OsStr::new("-D"),
                    data.as_os_str(),
                    OsStr::new("-m"),
                    OsStr::new("immediate"),
                    OsStr::new("-w"),
                    OsStr::new("-t"),
                    OsStr::new("30"),
                    OsStr::new("stop"),
                ],
                &std::env::temp_dir(),
            );
        }
        let _ = fs::remove_dir_all(&dir);
    }
}

/// Spawns a detached shell that, once `owner` has exited, stops the cluster and removes
/// its directory (unless the directory is gone already, i.e. the cluster was dropped).
/// Used for the process-wide test cluster, which lives in a static and is never dropped.
fn spawn_reaper(cluster: &PgCluster) {
    const SCRIPT: &str = r#"
owner=$1; dir=$2; pgctl=$3; data=$4; asroot=$5
while kill -0 "$owner" 2>/dev/null && [ -d "$dir" ]; do sleep 1; done
if [ -d "$dir" ]; then
  if [ "$asroot" = 1 ]; then
    runuser -u postgres -- "$pgctl" -D "$data" -m immediate -w -t 30 stop
  else
    "$pgctl" -D "$data" -m immediate -w -t 30 stop
  fi
  rm -rf "$dir"
fi
"#;
    let args: [OsString; 6] = [
        "ddms-pg-reaper".into(),
        std::process::id().to_string().into(),
        cluster.base_dir.clone().into(),
        cluster.runner.bin_dir.join("pg_ctl").into(),
        cluster.data_dir.clone().into(),
        if cluster.runner.as_postgres { "1" } else { "0" }.into(),
    ];
    let spawned = Command::new("sh")
        .arg("-c")
        .arg(SCRIPT)
        .args(&args)
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Own process group: a Ctrl-C of the test run must not kill the reaper.
        .process_group(0)
        .spawn();
    if let Err(e) = spawned {
        tracing::debug!(error = %e, "could not spawn the cluster reaper; the next start_temp cleans up");
    }
}

// ---------------------------------------------------------------------------------------
// Test databases
// ---------------------------------------------------------------------------------------

/// The database that tests of this process use (see [`shared_test_database`]).
#[derive(Debug)]
pub struct TestDatabase {
    /// libpq URL of the database.
    pub url: String,
    cluster: Option<PgCluster>,
}

impl TestDatabase {
    /// The private cluster behind [`TestDatabase::url`], if one was started (`None`
    /// when `DATABASE_URL` was used).
    pub fn cluster(&self) -> Option<&PgCluster> {
        self.cluster.as_ref()
    }
}

static SHARED: OnceLock<TestDatabase> = OnceLock::new();
static SHARED_INIT: Mutex<()> = Mutex::new(());

fn database_url_env() -> Option<String> {
    std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty())
}

/// The process-wide test database: `DATABASE_URL` if set (read on the first call),
/// otherwise one temporary cluster started on the first call and shared by every later
/// call.
///
/// The cluster lives in a static, which is never dropped: a small detached reaper
/// process stops it and removes its directory once this process has exited (and
/// [`PgCluster::start_temp`] cleans up what a killed reaper left).
///
/// # Errors
///
/// Whatever [`PgCluster::start_temp`] returns; a failed start is retried by the next
/// call.
pub fn shared_test_database() -> Result<&'static TestDatabase> {
    if let Some(db) = SHARED.get() {
        return Ok(db);
    }
    let _guard = SHARED_INIT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(db) = SHARED.get() {
        return Ok(db);
    }
    let db = match database_url_env() {
        Some(url) => TestDatabase { url, cluster: None },
        None => {
            let cluster = PgCluster::start_temp()?;
            spawn_reaper(&cluster);
            TestDatabase {
                url: cluster.url().to_owned(),
                cluster: Some(cluster),
            }
        }
    };
    Ok(SHARED.get_or_init(|| db))
}

/// URL of the server tests should use: `DATABASE_URL` unchanged if set, otherwise the
/// URL of the process-wide temporary cluster (started on first use).
///
/// # Errors
///
/// See [`shared_test_database`].
pub fn test_database_url() -> Result<String> {
    match database_url_env() {
        Some(url) => Ok(url),
        None => Ok(shared_test_database()?.url.clone()),
    }
}

/// Creates a brand-new, empty database on the test server (see [`test_database_url`])
/// and returns its URL. The name is `prefix` (lower-cased, reduced to `[a-z0-9_]`,
/// prefixed with `db_` unless it starts with a letter or `_`, cut to 30 characters)
/// followed by `_` and 32 random hex digits: 63 characters at most, PostgreSQL's limit.
///
/// With `DATABASE_URL` set, the database is created on that server (its role needs
/// `CREATEDB`) and is not dropped afterwards.
///
/// # Errors
///
/// [`Error::Database`] when connecting or `CREATE DATABASE` fails, [`Error::Config`]
/// when `DATABASE_URL` is not a URL, and the errors of [`test_database_url`].
pub fn fresh_database(prefix: &str) -> Result<String> {
    use diesel::{Connection, RunQueryDsl};

    let base = test_database_url()?;
    let name = database_name(prefix);
    let url = url_with_database(&base, &name)?;
    let mut conn = diesel::PgConnection::establish(&base)?;
    // `name` is generated here and only holds [a-z0-9_]: safe to splice.
    diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .map_err(|e| Error::Database(format!("CREATE DATABASE {name}: {e}")))?;
    Ok(url)
}

/// `prefix` reduced to `[a-z0-9_]`, plus `_` and 32 random hex digits.
fn database_name(prefix: &str) -> String {
    let mut name: String = prefix
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_') {
        name.insert_str(0, "db_");
    }
    // 30 + 1 + 32 = 63, PostgreSQL's identifier limit.
    name.truncate(30);
    name.push('_');
    name.push_str(&uuid::Uuid::new_v4().simple().to_string());
    name
}

/// `url` with its database replaced by `db`.
///
/// Handles URLs (`postgres://user@host:port/olddb?params`: the path is replaced, the
/// query kept) and libpq keyword/value strings (`host=... dbname=...`: `dbname` is
/// replaced or added).
///
/// # Errors
///
/// [`Error::Config`] when a URL has no `://` and is not a keyword/value string either.
pub fn url_with_database(url: &str, db: &str) -> Result<String> {
    if let Some(scheme_end) = url.find("://") {
        let authority_start = scheme_end + 3;
        let rest = &url[authority_start..];
        let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority_end = authority_start + authority_len;
        let after = &url[authority_end..];
        let tail_start = after.find(['?', '#']).unwrap_or(after.len());
        return Ok(format!(
            "{}/{}{}",
            &url[..authority_end],
            percent_encode(db),
            &after[tail_start..]
        ));
    }
    if url.contains('=') {
        // Keyword/value: values with spaces are quoted; good enough for ours.
        let mut parts: Vec<String> = url
            .split_whitespace()
            .filter(|p| !p.starts_with("dbname="))
            .map(str::to_owned)
            .collect();
        parts.push(format!(
            "dbname='{}'",
            db.replace('\\', r"\\").replace('\'', r"\'")
        ));
        return Ok(parts.join(" "));
    }
    Err(Error::Config(format!(
        "not a PostgreSQL connection URL: {url:?}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::connection::SimpleConnection;
    use diesel::sql_types::BigInt;
    use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};

    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }

    fn count(conn: &mut PgConnection, sql: &str) -> i64 {
        diesel::sql_query(sql).get_result::<N>(conn).unwrap().n
    }

    #[test]
    fn finds_binaries() {
        let dir = find_pg_bin_dir().unwrap();
        assert!(dir.join("initdb").exists());
        assert!(dir.join("pg_ctl").exists());
    }

    #[test]
    fn temp_cluster_runs_and_is_removed_on_drop() {
        let mut cluster = PgCluster::start_temp().unwrap();
        assert!(cluster.is_running());
        assert!(cluster.url().starts_with("postgres://postgres@127.0.0.1:"));
        let dir = cluster.base_dir.clone();
        assert!(dir.join("data").join("PG_VERSION").exists());

        let mut conn = PgConnection::establish(cluster.url()).unwrap();
        diesel::sql_query("select 1").execute(&mut conn).unwrap();
        assert_eq!(
            count(
                &mut conn,
                "select count(*) as n from pg_database where datname = 'postgres'"
            ),
            1
        );
        drop(conn);

        // The Unix socket works too.
        let socket_url = format!(
            "host={} port={} user=postgres dbname=postgres",
            cluster.socket_dir().display(),
            cluster.port()
        );
        let mut conn = PgConnection::establish(&socket_url).unwrap();
        diesel::sql_query("select 1").execute(&mut conn).unwrap();
        drop(conn);

        // The server runs with SERVER_ENV (unless this process chose its own value).
        let pid = fs::read_to_string(dir.join("data").join("postmaster.pid")).unwrap();
        let pid = pid.lines().next().unwrap().trim().to_string();
        let environ = fs::read(format!("/proc/{pid}/environ")).unwrap();
        let wanted = match std::env::var("GLIBC_TUNABLES") {
            Ok(v) => format!("GLIBC_TUNABLES={v}"),
            Err(_) => "GLIBC_TUNABLES=glibc.malloc.hugetlb=1".to_string(),
        };
        assert!(
            environ.split(|b| *b == 0).any(|e| e == wanted.as_bytes()),
            "{wanted} not in the postmaster's environment"
        );

        cluster.stop().unwrap();
        cluster.stop().unwrap(); // idempotent
        assert!(!cluster.is_running());
        assert!(dir.exists(), "stop keeps the directory");

        let url = cluster.url().to_owned();
        drop(cluster);
        assert!(!dir.exists(), "drop removes the directory");
        assert!(PgConnection::establish(&url).is_err(), "server is gone");
    }

    #[test]
    fn drop_stops_a_running_cluster() {
        let cluster = PgCluster::start_temp().unwrap();
        let url = cluster.url().to_owned();
        let dir = cluster.base_dir.clone();
        PgConnection::establish(&url).unwrap();
        drop(cluster);
        assert!(!dir.exists());
        assert!(PgConnection::establish(&url).is_err());
    }

    #[test]
    fn fresh_databases_are_distinct_and_usable() {
        let a = fresh_database("Harness-Test").unwrap();
        let b = fresh_database("harness_test").unwrap();
        assert_ne!(a, b);
        let name_a = a.rsplit('/').next().unwrap();
        assert!(name_a.starts_with("harness_test_"), "{name_a}");
        assert!(name_a
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));

        let mut ca = PgConnection::establish(&a).unwrap();
        let mut cb = PgConnection::establish(&b).unwrap();
        diesel::sql_query("create table t (x int)")
            .execute(&mut ca)
            .unwrap();
        diesel::sql_query("insert into t values (1), (2)")
            .execute(&mut ca)
            .unwrap();
        assert_eq!(count(&mut ca, "select count(*) as n from t"), 2);
        assert_eq!(
            count(
                &mut cb,
                "select count(*) as n from pg_class where relname = 't' and relkind = 'r'"
            ),
            0
        );
        assert_eq!(test_database_url().unwrap(), test_database_url().unwrap());
    }

    #[test]
    fn persistent_cluster_keeps_data_across_restarts() {
        let tmp = tempfile::tempdir().unwrap();
        // As root, the `postgres` OS user must be able to traverse the parent.
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let data = tmp.path().join("pgdata");

        let mut cluster = PgCluster::start_persistent(&data).unwrap();
        assert!(!cluster.is_temporary());
        let mut conn = PgConnection::establish(cluster.url()).unwrap();
        diesel::sql_query("create table kept (x int)")
            .execute(&mut conn)
            .unwrap();
        diesel::sql_query("insert into kept values (1), (2), (3)")
            .execute(&mut conn)
            .unwrap();
        drop(conn);

        // A second server on the same directory is refused while the first runs.
        let err = PgCluster::start_persistent(&data).unwrap_err();
        assert!(err.to_string().contains("already running"), "{err}");

        cluster.stop().unwrap();
        assert!(data.join("PG_VERSION").exists());
        assert!(!data.join("postmaster.pid").exists());
        drop(cluster);
        assert!(data.join("PG_VERSION").exists(), "drop keeps the data");

        let cluster = PgCluster::start_persistent(&data).unwrap();
        let mut conn = PgConnection::establish(cluster.url()).unwrap();
        assert_eq!(count(&mut conn, "select count(*) as n from kept"), 3);
        drop(conn);
        let url = cluster.url().to_owned();
        drop(cluster);
        assert!(PgConnection::establish(&url).is_err());
        assert!(data.join("PG_VERSION").exists());
    }

    #[test]
    fn persistent_cluster_recovers_from_a_crash() {
        let tmp = tempfile::tempdir().unwrap();
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let data = tmp.path().join("pgdata");

        let mut cluster = PgCluster::start_persistent(&data).unwrap();
        let mut conn = PgConnection::establish(cluster.url()).unwrap();
        conn.batch_execute("create table kept (x int); insert into kept values (1)")
            .unwrap();
        drop(conn);

        // Kill the postmaster: its postmaster.pid stays behind.
        let pid_file = fs::read_to_string(data.join("postmaster.pid")).unwrap();
        let pid = pid_file.lines().next().unwrap().trim().to_owned();
        let killed = Command::new("kill").args(["-9", &pid]).status().unwrap();
        assert!(killed.success());
        while Path::new(&format!("/proc/{pid}")).exists() {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(data.join("postmaster.pid").exists());
        cluster.stop().unwrap(); // the server is gone: nothing to do
        drop(cluster);

        let cluster = PgCluster::start_persistent(&data).unwrap();
        let mut conn = PgConnection::establish(cluster.url()).unwrap();
        assert_eq!(count(&mut conn, "select count(*) as n from kept"), 1);
    }

    #[test]
    fn stale_clusters_of_dead_owners_are_reaped() {
        // A cluster directory whose owner PID does not exist.
        let dir = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempdir_in(std::env::temp_dir())
            .unwrap()
            .keep();
        fs::write(dir.join(OWNER_FILE), format!("{}\n", u32::MAX - 1)).unwrap();
        let runner = Runner::new().unwrap();
        cleanup_stale_clusters(&runner);
        assert!(!dir.exists());
    }

    #[test]
    fn owner_record_of_self_is_alive() {
        assert!(owner_alive(&owner_record()));
        assert!(!owner_alive(&format!("{}\n", u32::MAX - 1)));
    }

    #[test]
    fn replaces_database_in_urls() {
        assert_eq!(
            url_with_database("postgres://u:p@h:5432/old?sslmode=disable", "new").unwrap(),
            "postgres://u:p@h:5432/new?sslmode=disable"
        );
        assert_eq!(
            url_with_database("postgresql://h", "new").unwrap(),
            "postgresql://h/new"
        );
        assert_eq!(
            url_with_database("postgres://h/?x=1", "new").unwrap(),
            "postgres://h/new?x=1"
        );
        assert_eq!(
            url_with_database("host=h dbname=old user=u", "new").unwrap(),
            "host=h user=u dbname='new'"
        );
        assert!(url_with_database("nonsense", "x").is_err());
    }

    #[test]
    fn database_names_are_safe_identifiers() {
        let n = database_name("9 Weird-Prefix!");
        assert!(n.starts_with("db_9_weird_prefix__"), "{n}");
        assert!(n.len() <= 63);
        assert!(n
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
    }

    #[test]
    fn server_programs_get_huge_page_malloc_unless_the_caller_chose() {
        let runner = Runner {
            bin_dir: PathBuf::from("/nonexistent"),
            as_postgres: false,
        };
        let cmd = runner.command("pg_ctl", &[], Path::new("/"));
        let env: Vec<_> = cmd.get_envs().collect();
        match std::env::var_os("GLIBC_TUNABLES") {
            None => assert_eq!(
                env,
                [(
                    OsStr::new("GLIBC_TUNABLES"),
                    Some(OsStr::new("glibc.malloc.hugetlb=1"))
                )]
            ),
            Some(_) => assert!(env.is_empty(), "{env:?}"),
        }
    }

    #[test]
    fn server_options_quote_the_socket_dir() {
        assert_eq!(shell_quote("/tmp/a'b"), r"'/tmp/a'\''b'");
        assert_eq!(percent_encode("a b/c_d"), "a%20b%2Fc_d");
    }
}
