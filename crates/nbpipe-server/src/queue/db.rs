//! The database underneath the queue: connecting (SQLite file or PostgreSQL URL), connection
//! settings that make SQLite durable across `kill -9`, versioned migrations, write
//! transactions, and decoding rows. Owns every backend difference; the operations in
//! `ops`/`history` write one SQL text for both.
//!
//! Shared SQL rules: `$N` placeholders (SQLite accepts `$NNN`), times as `BIGINT` Unix
//! milliseconds (UTC), JSON as `TEXT`, booleans as `BOOLEAN`. Free text that may hold NUL
//! (dedup keys join their parts with NUL; PostgreSQL `TEXT` refuses it) goes through
//! [`esc`]/[`unesc`] on both backends, so both store the same bytes.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ColumnIndex, Decode, Row, Type};

use super::types::{AttemptRow, RunRow, Status};
use super::QueueError;

/// The key of the PostgreSQL advisory lock that serializes the queue's multi-statement
/// writes (claims must see a stable count of running runs to honour limits).
pub(crate) const PG_LOCK_KEY: i64 = 0x6e62_7069_7065; // "nbpipe"

/// How long a SQLite writer waits for another writer before failing.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// A pool of one of the two supported databases.
#[derive(Clone, Debug)]
pub(crate) enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to whichever pool `$db` holds (same text, two types).
macro_rules! with_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::queue::db::Db::Sqlite($pool) => $body,
            $crate::queue::db::Db::Postgres($pool) => $body,
        }
    };
}

/// Runs `$body` inside a serialized write transaction bound to `$tx`, committing when it
/// returns `Ok`. SQLite: `BEGIN IMMEDIATE` (takes the write lock up front, so a read-then-write
/// never fails with a stale snapshot). PostgreSQL: `BEGIN` plus a transaction-scoped advisory
/// lock, so every queue writer on every server sharing the database takes turns.
/// `$pg` is bound to `true` on PostgreSQL for the few dialect differences. `$body` runs in an
/// async block: `?` and `return` leave the block (an `Err` rolls back).
macro_rules! write_tx {
    ($db:expr, |$tx:ident, $pg:ident| $body:expr) => {
        match $db {
            $crate::queue::db::Db::Sqlite(pool) => {
                let mut $tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                #[allow(unused_variables)]
                let $pg = false;
                let out: Result<_, $crate::queue::QueueError> = async { $body }.await;
                if out.is_ok() {
                    $tx.commit().await?;
                }
                out
            }
            $crate::queue::db::Db::Postgres(pool) => {
                let mut $tx = pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind($crate::queue::db::PG_LOCK_KEY)
                    .execute(&mut *$tx)
                    .await?;
                #[allow(unused_variables)]
                let $pg = true;
                let out: Result<_, $crate::queue::QueueError> = async { $body }.await;
                if out.is_ok() {
                    $tx.commit().await?;
                }
                out
            }
        }
    };
}

pub(crate) use {with_pool, write_tx};

/// Where a queue URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    Sqlite(PathBuf),
    Postgres(String),
}

/// `postgres://…`/`postgresql://…` → PostgreSQL; `sqlite://PATH`, `sqlite:PATH` or a bare path
/// → a SQLite file (`sqlite:///abs/path` is `/abs/path`).
pub(crate) fn parse_target(url: &str) -> Result<Target, QueueError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Target::Postgres(url.to_string()));
    }
    let path = if let Some(rest) = url.strip_prefix("sqlite://") {
        rest
    } else if let Some(rest) = url.strip_prefix("sqlite:") {
        rest
    } else if url.contains("://") {
        return Err(QueueError::BadUrl(url.to_string()));
    } else {
        url
    };
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Err(QueueError::BadUrl(url.to_string()));
    }
    Ok(Target::Sqlite(PathBuf::from(path)))
}

pub(crate) async fn connect(url: &str) -> Result<Db, QueueError> {
    let open_err = |source| QueueError::Open {
        url: url.to_string(),
        source,
    };
    match parse_target(url)? {
        Target::Sqlite(path) => {
            create_parent(&path).map_err(|e| QueueError::Open {
                url: url.to_string(),
                source: sqlx::Error::Io(e),
            })?;
            let options = SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                .foreign_keys(true);
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .acquire_timeout(SQLITE_BUSY_TIMEOUT)
                .connect_with(options)
                .await
                .map_err(open_err)?;
            Ok(Db::Sqlite(pool))
        }
        Target::Postgres(url_s) => {
            let pool = PgPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(30))
                .connect(&url_s)
                .await
                .map_err(open_err)?;
            Ok(Db::Postgres(pool))
        }
    }
}

fn create_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir),
        _ => Ok(()),
    }
}

/// Versioned schema changes, applied in order, each once. Never edit a released entry: add
/// one. Statements are split on `;` (so none may contain one in a literal). `{SEQ}` is the backend's auto-incrementing primary key (FIFO order).
const MIGRATIONS: &[(i64, &str)] = &[
    (1, RUNS_AND_CURSORS),
    (2, PROJECT_POLICIES),
    (3, OBJECT_SEQUENCERS),
    (4, INTERRUPTED_RETRIES),
    (5, ATTEMPT_HANDLES),
    (6, RUN_ENVIRONMENTS),
    (7, REVISIONS),
    (8, NOTIFICATIONS),
];

/// Version 1: runs, their attempts, trigger cursors.
const RUNS_AND_CURSORS: &str = r#"
CREATE TABLE runs (
    seq {SEQ},
    id TEXT NOT NULL UNIQUE,
    project TEXT NOT NULL,
    status TEXT NOT NULL
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    attempts BIGINT NOT NULL DEFAULT 0,
    max_attempts BIGINT NOT NULL,
    reason TEXT NOT NULL,
    trigger_json TEXT,
    trigger_uri TEXT,
    parameters TEXT NOT NULL,
    dedup_key TEXT,
    rerun_of TEXT REFERENCES runs (id),
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    not_before BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until BIGINT,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    output TEXT NOT NULL DEFAULT '[]',
    error TEXT,
    manifest TEXT,
    updated_at BIGINT NOT NULL,
    UNIQUE (project, dedup_key)
);
CREATE INDEX runs_by_status ON runs (status, seq);
CREATE INDEX runs_by_project ON runs (project, seq);
CREATE INDEX runs_by_created ON runs (created_at);
CREATE INDEX runs_by_rerun_of ON runs (rerun_of);
CREATE TABLE run_attempts (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    attempt BIGINT NOT NULL,
    worker TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    outcome TEXT,
    error TEXT,
    PRIMARY KEY (run_id, attempt)
);
CREATE TABLE cursors (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
"#;

/// Version 2: each project's run policy (`serve:` in its nbpipe.yaml), written by every
/// server at start (`Queue::set_project_policy`) so that claims, retries and recovery on
/// every server sharing the database read the same limits and backoff. NULL: the
/// claimer's / queue's default. Self-contained: touches no other table.
const PROJECT_POLICIES: &str = r#"
CREATE TABLE project_policies (
    project TEXT PRIMARY KEY,
    concurrency BIGINT CHECK (concurrency IS NULL OR concurrency >= 0),
    retry_backoff_ms BIGINT CHECK (retry_backoff_ms IS NULL OR retry_backoff_ms > 0),
    retry_backoff_max_ms BIGINT CHECK (retry_backoff_max_ms IS NULL OR retry_backoff_max_ms > 0),
    updated_at BIGINT NOT NULL
);
"#;

/// Version 3: per-key ordering of object events (see `queue::ordering`). The newest S3
/// `sequencer` admitted per (project, bucket, key), normalized (uppercase hex, no leading
/// zeros), and the run that event started. Self-contained: touches no other table.
const OBJECT_SEQUENCERS: &str = r#"
CREATE TABLE object_sequencers (
    project TEXT NOT NULL,
    bucket TEXT NOT NULL,
    object_key TEXT NOT NULL,
    sequencer TEXT NOT NULL,
    run_id TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (project, bucket, object_key)
);
"#;

/// Version 4: retries of runs interrupted by the infrastructure, apart from `max_attempts`.
/// `runs.interruptions` counts the run's attempts recovered after their lease expired;
/// `project_policies.interrupted_retries` is the project's allowance (NULL: the default, 1).
const INTERRUPTED_RETRIES: &str = r#"
ALTER TABLE runs ADD COLUMN interruptions BIGINT NOT NULL DEFAULT 0;
ALTER TABLE project_policies ADD COLUMN interrupted_retries BIGINT
    CHECK (interrupted_retries IS NULL OR interrupted_retries >= 0)
"#;

/// Version 5: the executor's handle of each attempt (JSON, `nbpipe_executor::Handle`), so
/// an attempt can be found again after its server restarts. NULL: not launched yet.
const ATTEMPT_HANDLES: &str = r#"
ALTER TABLE run_attempts ADD COLUMN handle TEXT
"#;

/// Version 6: the project environment (`environments:` entry) each run belongs to, for
/// filtering runs by environment. NULL: the project's top-level settings.
const RUN_ENVIRONMENTS: &str = r#"
ALTER TABLE runs ADD COLUMN environment TEXT;
CREATE INDEX runs_by_environment ON runs (environment, seq)
"#;

/// Version 7: the revision history of projects served from git (see `queue::revisions`).
/// Self-contained: touches no other table.
const REVISIONS: &str = r#"
CREATE TABLE revisions (
    project TEXT NOT NULL,
    environment TEXT,
    commit_sha TEXT NOT NULL,
    branch TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('serving', 'refused', 'superseded')),
    error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (project, commit_sha)
)
"#;

/// Version 8: run notifications (see `queue::notify`). `notify_outbox` gets a row in the
/// same transaction that ends a run `succeeded` or `failed`, so no finished run is missed
/// across a crash; the notifier turns it into one `notify_deliveries` row per subscribed
/// target (retried with back-off until delivered or given up). `notify_streaks` remembers
/// each project's (and environment's) last outcome, for recoveries; `notify_limits` each
/// target's rate-limit window and the failures it held back. Touches no existing table.
const NOTIFICATIONS: &str = r#"
CREATE TABLE notify_outbox (
    seq {SEQ},
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    project TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX notify_outbox_by_project ON notify_outbox (project, seq);
CREATE TABLE notify_deliveries (
    id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    project TEXT NOT NULL,
    environment TEXT NOT NULL,
    target_key TEXT NOT NULL,
    target TEXT NOT NULL,
    event TEXT NOT NULL,
    message TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_at BIGINT NOT NULL,
    last_error TEXT,
    delivered_at BIGINT,
    gave_up_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX notify_deliveries_due ON notify_deliveries (next_at);
CREATE INDEX notify_deliveries_by_run ON notify_deliveries (run_id);
CREATE TABLE notify_streaks (
    project TEXT NOT NULL,
    environment TEXT NOT NULL,
    last_status TEXT NOT NULL,
    failures BIGINT NOT NULL,
    failing_since BIGINT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (project, environment)
);
CREATE TABLE notify_limits (
    project TEXT NOT NULL,
    environment TEXT NOT NULL,
    target_key TEXT NOT NULL,
    window_ms BIGINT NOT NULL,
    window_until BIGINT NOT NULL,
    held_back BIGINT NOT NULL DEFAULT 0,
    held_since BIGINT,
    last_run_id TEXT,
    PRIMARY KEY (project, environment, target_key)
)
"#;

/// The newest schema version this build knows.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Applies pending migrations in one serialized transaction (safe when several servers start
/// at once). Refuses a database written by a newer nbpipe.
pub(crate) async fn migrate(db: &Db) -> Result<(), QueueError> {
    write_tx!(db, |tx, pg| {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS nbpipe_schema \
             (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .execute(&mut *tx)
        .await?;
        let current: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM nbpipe_schema")
            .fetch_one(&mut *tx)
            .await?;
        let current = current.unwrap_or(0);
        if current > SCHEMA_VERSION {
            return Err(QueueError::SchemaTooNew {
                found: current,
                supported: SCHEMA_VERSION,
            });
        }
        let seq = if pg {
            "BIGSERIAL PRIMARY KEY"
        } else {
            "INTEGER PRIMARY KEY AUTOINCREMENT"
        };
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
            // One statement at a time: `raw_sql`'s generic executor makes the future
            // impossible to prove `Send` (rustc's higher-ranked lifetime limitation).
            let sql = sql.replace("{SEQ}", seq);
            for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                sqlx::query(statement)
                    .execute(&mut *tx)
                    .await
                    .map_err(|source| QueueError::Migrate {
                        version: *version,
                        source,
                    })?;
            }
            sqlx::query("INSERT INTO nbpipe_schema (version, applied_at) VALUES ($1, $2)")
                .bind(*version)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
        }
        Ok::<(), QueueError>(())
    })
}

/// Stored form of free text: `\` → `\\`, NUL → `\0` (reversed by [`unesc`]).
pub(crate) fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\0', "\\0")
}

/// Inverse of [`esc`].
pub(crate) fn unesc(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('\\', Some('\\')) => {
                out.push('\\');
                chars.next();
            }
            ('\\', Some('0')) => {
                out.push('\0');
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
}

/// Now, as stored: Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

pub(crate) fn to_time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

/// The columns [`run_from_row`] reads, for `SELECT {RUN_COLUMNS} FROM runs`.
pub(crate) const RUN_COLUMNS: &str = "id, project, status, attempts, max_attempts, reason, \
     trigger_json, parameters, dedup_key, rerun_of, created_at, started_at, finished_at, \
     not_before, lease_owner, lease_until, cancel_requested, output, error, manifest, updated_at, \
     environment";

fn corrupt(id: &str, what: &str, err: impl std::fmt::Display) -> QueueError {
    QueueError::Corrupt(format!("run `{id}`: {what}: {err}"))
}

/// Decodes a row selected with [`RUN_COLUMNS`] from either backend.
pub(crate) fn run_from_row<'r, R>(row: &'r R) -> Result<RunRow, QueueError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    bool: Decode<'r, R::Database> + Type<R::Database>,
{
    let id: String = row.try_get("id")?;
    let status: String = row.try_get("status")?;
    let status = Status::from_str(&status).map_err(|e| corrupt(&id, "status", e))?;
    let trigger = match row.try_get::<Option<String>, _>("trigger_json")? {
        Some(t) => Some(serde_json::from_str(&t).map_err(|e| corrupt(&id, "trigger", e))?),
        None => None,
    };
    let parameters: String = row.try_get("parameters")?;
    let parameters =
        serde_json::from_str(&parameters).map_err(|e| corrupt(&id, "parameters", e))?;
    let output: String = row.try_get("output")?;
    let output = serde_json::from_str(&output).map_err(|e| corrupt(&id, "output", e))?;
    let manifest = match row.try_get::<Option<String>, _>("manifest")? {
        Some(m) => Some(serde_json::from_str(&m).map_err(|e| corrupt(&id, "manifest", e))?),
        None => None,
    };
    let opt_time = |col: &'static str| -> Result<_, QueueError> {
        Ok(row.try_get::<Option<i64>, _>(col)?.map(to_time))
    };
    let count = |col: &'static str| -> Result<u32, QueueError> {
        let n: i64 = row.try_get(col)?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    };
    Ok(RunRow {
        project: row.try_get("project")?,
        environment: row.try_get("environment")?,
        status,
        attempts: count("attempts")?,
        max_attempts: count("max_attempts")?,
        reason: unesc(&row.try_get::<String, _>("reason")?),
        trigger,
        parameters,
        dedup_key: row
            .try_get::<Option<String>, _>("dedup_key")?
            .map(|k| unesc(&k)),
        rerun_of: row.try_get("rerun_of")?,
        created_at: to_time(row.try_get("created_at")?),
        started_at: opt_time("started_at")?,
        finished_at: opt_time("finished_at")?,
        not_before: to_time(row.try_get("not_before")?),
        lease_owner: row.try_get("lease_owner")?,
        lease_until: opt_time("lease_until")?,
        output,
        error: row
            .try_get::<Option<String>, _>("error")?
            .map(|e| unesc(&e)),
        manifest,
        cancel_requested: row.try_get("cancel_requested")?,
        updated_at: to_time(row.try_get("updated_at")?),
        id,
    })
}

/// Decodes a `run_attempts` row (`attempt, worker, started_at, finished_at, outcome, error`).
pub(crate) fn attempt_from_row<'r, R>(row: &'r R) -> Result<AttemptRow, QueueError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    let attempt: i64 = row.try_get("attempt")?;
    Ok(AttemptRow {
        attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
        worker: row.try_get("worker")?,
        started_at: to_time(row.try_get("started_at")?),
        finished_at: row.try_get::<Option<i64>, _>("finished_at")?.map(to_time),
        outcome: row.try_get("outcome")?,
        error: row
            .try_get::<Option<String>, _>("error")?
            .map(|e| unesc(&e)),
        handle: row
            .try_get::<Option<String>, _>("handle")?
            .and_then(|h| serde_json::from_str(&h).ok()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_text_round_trips_without_nul() {
        for s in ["plain", "b\0k\0v:1", "back\\slash\\0", "\\", "\0\\\0", ""] {
            assert!(!esc(s).contains('\0'));
            assert_eq!(unesc(&esc(s)), s, "{s:?}");
        }
    }

    #[test]
    fn urls_pick_the_backend() {
        assert_eq!(
            parse_target("sqlite:///var/db/q.sqlite").unwrap(),
            Target::Sqlite("/var/db/q.sqlite".into())
        );
        assert_eq!(
            parse_target("sqlite:rel/q.sqlite?mode=rwc").unwrap(),
            Target::Sqlite("rel/q.sqlite".into())
        );
        assert_eq!(
            parse_target("/p/.nbpipe/queue.sqlite").unwrap(),
            Target::Sqlite("/p/.nbpipe/queue.sqlite".into())
        );
        assert!(matches!(
            parse_target("postgres://u@h/db").unwrap(),
            Target::Postgres(_)
        ));
        assert!(parse_target("mysql://h/db").is_err());
        assert!(parse_target("sqlite::memory:").is_err());
    }
}
