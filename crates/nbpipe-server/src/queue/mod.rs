//! The durable run queue and run history of `nbpipe serve`.
//!
//! Owns the `runs`, `run_attempts`, `cursors`, `project_policies`, `object_sequencers` and
//! `notify_*` (run notifications, see `notify`) tables and every state
//! change of a run: `queued → running → succeeded | failed | cancelled` (a retried attempt
//! goes back to `queued` with a backoff). It does not run anything, watch triggers or speak HTTP: intake
//! calls [`Queue::enqueue`], workers call [`Queue::claim`] / [`Queue::heartbeat`] /
//! [`Queue::finish`], the API calls the rest.
//!
//! Guarantees, all enforced by the database rather than by this process:
//! - **exactly one run per event**: `(project, dedup_key)` is `UNIQUE` and enqueue is a single
//!   `INSERT … ON CONFLICT DO NOTHING`, so redelivered or concurrent intake cannot double-queue;
//! - **per-key order**: an object event older (by S3's `sequencer`) than one already admitted
//!   for its (project, bucket, key) is not queued ([`Enqueued::Superseded`]); the newest
//!   sequencer is checked and stored in the enqueue's serialized transaction, so the order
//!   holds across restarts and across servers sharing the database;
//! - **nothing lost on `kill -9`**: every acknowledged write is committed (SQLite in WAL mode
//!   with `synchronous=FULL`); a run whose worker died keeps its lease until it expires, then
//!   [`Queue::recover`] requeues it (attempts left) or fails it — each exactly once;
//! - **limits**: claims are serialized (SQLite `BEGIN IMMEDIATE`, PostgreSQL an advisory
//!   transaction lock plus `FOR UPDATE SKIP LOCKED`), so global and per-project concurrency
//!   limits hold across every server sharing the database; a project's own limit and retry
//!   backoff are stored in the database ([`Queue::set_project_policy`]), read by the claim,
//!   the retry and the recovery inside their transactions.
//!
//! ```no_run
//! # async fn demo() -> Result<(), nbpipe_server::queue::QueueError> {
//! use std::time::Duration;
//! use nbpipe_server::event::RunRequest;
//! use nbpipe_server::queue::{Finish, Limits, Queue};
//!
//! let queue = Queue::open("/srv/project/.nbpipe/queue.sqlite").await?;
//! let req = RunRequest {
//!     project: "daily".into(),
//!     trigger: None,
//!     parameters: serde_json::json!({"day": "2024-01-02"}),
//!     dedup_key: Some("2024-01-02".into()),
//!     reason: "api".into(),
//! };
//! queue.enqueue(&req, 3).await?;
//! if let Some(claimed) = queue.claim("worker-1", &Limits::default(), Duration::from_secs(60)).await? {
//!     let done = Finish::Succeeded { output: vec![], manifest: serde_json::json!({}) };
//!     queue.finish(&claimed.run.id, "worker-1", done).await?;
//! }
//! # Ok(()) }
//! ```

mod db;
mod history;
mod notify;
mod ops;
mod ordering;
mod policy;
mod revisions;
mod types;

use std::path::{Path, PathBuf};

pub use notify::{DeliveryRow, DueDelivery, OutboxItem, GIVE_UP_AFTER, RETRY_MAX};
pub use ordering::SEQUENCER_RETENTION;
pub use revisions::RevisionRow;
pub use types::{
    AttemptRow, Backoff, CancelResult, Claimed, Counts, Enqueued, Finish, Limits, ProjectPolicy,
    Recovered, RunFilter, RunRow, Status,
};

/// How many times a run interrupted by the infrastructure is retried when its project does
/// not say (`serve.interrupted_retries`), on top of its `max_attempts`.
pub const DEFAULT_INTERRUPTED_RETRIES: u32 = 1;

/// The error recorded on a run whose worker disappeared while it ran.
pub const INTERRUPTED: &str = "interrupted: the server stopped while it ran";

/// What can go wrong talking to the queue database.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The URL is neither a SQLite path nor a PostgreSQL URL.
    #[error(
        "unsupported queue database `{0}`: expected a file path, `sqlite:///path/queue.sqlite` \
         or `postgres://user@host/db`"
    )]
    BadUrl(String),
    /// Connecting (or creating the SQLite file) failed.
    #[error("cannot open the queue database `{url}`: {source}")]
    Open {
        /// The URL given.
        url: String,
        /// Why.
        #[source]
        source: sqlx::Error,
    },
    /// A schema migration failed (nothing of it was applied).
    #[error("queue schema migration {version} failed: {source}")]
    Migrate {
        /// The migration's version.
        version: i64,
        /// Why.
        #[source]
        source: sqlx::Error,
    },
    /// The database was written by a newer nbpipe.
    #[error(
        "the queue database has schema version {found}, newer than this nbpipe supports \
         ({supported}): upgrade nbpipe"
    )]
    SchemaTooNew {
        /// Version found.
        found: i64,
        /// Newest version known here.
        supported: i64,
    },
    /// No run with this id.
    #[error("no run `{0}`")]
    NotFound(String),
    /// The run is no longer running under this worker (its lease expired and it was
    /// recovered, or it was finished already). The worker must drop its results.
    #[error("run `{run_id}` is no longer leased to worker `{worker}`")]
    LeaseLost {
        /// The run.
        run_id: String,
        /// The worker that tried to act on it.
        worker: String,
    },
    /// A stored value could not be read back.
    #[error("corrupt queue row: {0}")]
    Corrupt(String),
    /// A value could not be encoded as JSON.
    #[error("cannot encode run data as JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Any other database error.
    #[error("queue database error: {0}")]
    Db(#[from] sqlx::Error),
}

/// The durable queue and run history; cheap to clone (a connection pool inside).
#[derive(Clone, Debug)]
pub struct Queue {
    db: db::Db,
    backoff: Backoff,
    /// Run ids whose cancel was requested through this handle (or a clone of it).
    cancels: tokio::sync::broadcast::Sender<String>,
}

impl Queue {
    /// Opens (creating if needed) the queue at `url` and brings its schema up to date.
    ///
    /// `url`: a file path or `sqlite:///abs/path.sqlite` (the file and its parent folders are
    /// created), or `postgres://…` for a database shared by several servers.
    pub async fn open(url: &str) -> Result<Queue, QueueError> {
        // SQLite answers "database is locked" at once, without its busy timeout, when several
        // processes switch a new file to WAL mode together: retry that for a few seconds.
        let mut wait = std::time::Duration::from_millis(20);
        let started = std::time::Instant::now();
        loop {
            let opened = async {
                let db = db::connect(url).await?;
                db::migrate(&db).await?;
                Ok::<_, QueueError>(db)
            }
            .await;
            match opened {
                Err(e)
                    if e.to_string().contains("database is locked")
                        && started.elapsed() < std::time::Duration::from_secs(10) =>
                {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(std::time::Duration::from_millis(500));
                }
                Err(e) => return Err(e),
                Ok(db) => {
                    return Ok(Queue {
                        db,
                        backoff: Backoff::default(),
                        cancels: tokio::sync::broadcast::channel(256).0,
                    })
                }
            }
        }
    }

    /// The embedded default: `<project>/.nbpipe/queue.sqlite` under the first project.
    pub fn default_path(first_project_dir: &Path) -> PathBuf {
        first_project_dir.join(".nbpipe").join("queue.sqlite")
    }

    /// Uses `backoff` for retried and recovered runs.
    pub fn with_backoff(mut self, backoff: Backoff) -> Queue {
        self.backoff = backoff;
        self
    }

    /// Cancel requests made through this queue handle or its clones, as run ids, the moment
    /// they are accepted (workers of other processes sharing the database poll
    /// [`Queue::is_cancel_requested`] instead). A receiver that lags misses ids: it should
    /// then check the database.
    pub fn cancel_requests(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.cancels.subscribe()
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        match self.db {
            db::Db::Sqlite(_) => "sqlite",
            db::Db::Postgres(_) => "postgres",
        }
    }

    /// Closes every connection (waits for checked-out ones to come back).
    pub async fn close(&self) {
        db::with_pool!(&self.db, p => p.close().await)
    }

    /// A worker id unique to this process: `<host>-<pid>-<4 hex>`. Leases are per worker id,
    /// so two processes must never share one.
    pub fn new_worker_id() -> String {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "nbpipe".into());
        let rand = uuid::Uuid::new_v4().simple().to_string();
        format!("{host}-{}-{}", std::process::id(), &rand[..4])
    }
}

/// A new run id: `YYYYMMDDTHHMMSSZ-<8 hex>` (sorts by creation second; random suffix).
pub fn new_run_id() -> String {
    let rand = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "{}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        &rand[..8]
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn run_ids_have_the_documented_shape() {
        let id = super::new_run_id();
        assert_eq!(id.len(), 16 + 1 + 8, "{id}");
        assert_eq!(&id[8..9], "T");
        assert_eq!(&id[15..17], "Z-");
        assert!(id[17..].chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(super::new_run_id(), id);
    }
}
