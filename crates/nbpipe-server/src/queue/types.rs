//! The queue's public value types: statuses, rows, filters, limits and the outcomes of each
//! operation. Plain data only: no SQL here.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::{ObjectEvent, RunRequest};

/// Where a run is in its life: `queued → running → succeeded | failed | cancelled`
/// (a retried run goes `running → queued` again).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting for a worker (possibly not before `not_before`).
    Queued,
    /// Leased by a worker.
    Running,
    /// Finished successfully.
    Succeeded,
    /// Finished with an error and no attempts left (or not retryable).
    Failed,
    /// Cancelled before or while it ran.
    Cancelled,
}

impl Status {
    /// Every status, in lifecycle order.
    pub const ALL: [Status; 5] = [
        Status::Queued,
        Status::Running,
        Status::Succeeded,
        Status::Failed,
        Status::Cancelled,
    ];

    /// The string stored in the database and shown by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }

    /// `true` for `succeeded`, `failed` and `cancelled`.
    pub fn is_finished(self) -> bool {
        !matches!(self, Status::Queued | Status::Running)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown run status `{s}`"))
    }
}

/// One run as stored: its request, its lifecycle and its results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRow {
    /// Sortable unique id, `YYYYMMDDTHHMMSSZ-<8 hex>`.
    pub id: String,
    /// Project: its name, `name@environment` for an environment's settings.
    pub project: String,
    /// The project environment (`environments:` entry) it runs with; `None`: the top-level
    /// settings.
    pub environment: Option<String>,
    /// Current status.
    pub status: Status,
    /// Attempts started so far (a claim counts one).
    pub attempts: u32,
    /// Attempts allowed (the project's retry policy at enqueue time).
    pub max_attempts: u32,
    /// Human-readable origin, e.g. `s3 incoming/a.csv`, `rerun of X #1`.
    pub reason: String,
    /// The object that triggered it, if any.
    pub trigger: Option<ObjectEvent>,
    /// Parameters over the project's defaults (JSON object).
    pub parameters: Value,
    /// Exactly-once identity within the project (`None`: always runs).
    pub dedup_key: Option<String>,
    /// The run this one re-runs, if any.
    pub rerun_of: Option<String>,
    /// When it was enqueued.
    #[serde(with = "time_serde")]
    pub created_at: DateTime<Utc>,
    /// When its latest attempt started.
    #[serde(with = "time_serde::option")]
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached a final status.
    #[serde(with = "time_serde::option")]
    pub finished_at: Option<DateTime<Utc>>,
    /// It is not claimed before this time (retry backoff).
    #[serde(with = "time_serde")]
    pub not_before: DateTime<Utc>,
    /// The worker holding it while `running`.
    pub lease_owner: Option<String>,
    /// The lease ends here unless renewed by a heartbeat.
    #[serde(with = "time_serde::option")]
    pub lease_until: Option<DateTime<Utc>>,
    /// Output URIs written by the latest attempt.
    pub output: Vec<String>,
    /// The latest attempt's error, if it failed.
    pub error: Option<String>,
    /// Run manifest (steps, timings, outputs) as last reported by the runner.
    pub manifest: Option<Value>,
    /// A cancel was asked for while it ran; the worker stops at its next poll.
    pub cancel_requested: bool,
    /// Last change to the row.
    #[serde(with = "time_serde")]
    pub updated_at: DateTime<Utc>,
}

impl RunRow {
    /// The request this run was made from (for a worker, or to build a re-run).
    pub fn request(&self) -> RunRequest {
        RunRequest {
            project: self.project.clone(),
            trigger: self.trigger.clone(),
            parameters: self.parameters.clone(),
            dedup_key: self.dedup_key.clone(),
            reason: self.reason.clone(),
        }
    }
}

/// One attempt of a run (a claim), for the run's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRow {
    /// 1-based attempt number.
    pub attempt: u32,
    /// Worker that claimed it.
    pub worker: String,
    /// When it was claimed.
    #[serde(with = "time_serde")]
    pub started_at: DateTime<Utc>,
    /// When it ended (`None` while running).
    #[serde(with = "time_serde::option")]
    pub finished_at: Option<DateTime<Utc>>,
    /// `succeeded`, `failed`, `retry`, `cancelled` or `interrupted`; `None` while running.
    pub outcome: Option<String>,
    /// Its error, if any.
    pub error: Option<String>,
    /// Where it executes: the executor's handle (`None` until launched).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handle: Option<serde_json::Value>,
}

/// Result of [`Queue::enqueue`](super::Queue::enqueue).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// A new run was queued.
    New(String),
    /// The project already has a run for this dedup key: nothing was queued.
    Duplicate(String),
    /// The trigger event's S3 `sequencer` is lower than the newest one already admitted for
    /// its (project, bucket, key): it describes an older state of the object and nothing was
    /// queued.
    Superseded {
        /// The run the newest admitted event for this key started.
        newer_run: String,
        /// That event's sequencer (uppercase hex, no leading zeros).
        newer_sequencer: String,
    },
}

impl Enqueued {
    /// The run that stands for this request: the new one, the existing duplicate, or the run
    /// of the newer event that superseded it.
    pub fn run_id(&self) -> &str {
        match self {
            Enqueued::New(id) | Enqueued::Duplicate(id) => id,
            Enqueued::Superseded { newer_run, .. } => newer_run,
        }
    }
}

/// Concurrency limits applied by [`Queue::claim`](super::Queue::claim).
///
/// A limit of `0` pauses: nothing is claimed (globally, or for that project). A project's
/// stored policy ([`ProjectPolicy::concurrency`], shared by every server on the database)
/// overrides `default_per_project`; an entry in `per_project` overrides both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Runs running at once across all projects.
    pub global: usize,
    /// Per-project limits overriding `default_per_project`.
    pub per_project: HashMap<String, usize>,
    /// Runs running at once for a project not in `per_project`.
    pub default_per_project: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            global: 4,
            per_project: HashMap::new(),
            default_per_project: 1,
        }
    }
}

impl Limits {
    /// The limit that applies to `project`.
    pub fn for_project(&self, project: &str) -> usize {
        self.per_project
            .get(project)
            .copied()
            .unwrap_or(self.default_per_project)
    }
}

/// A project's run policy as stored in the queue database by
/// [`Queue::set_project_policy`](super::Queue::set_project_policy), so that every server
/// sharing the database applies the same one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProjectPolicy {
    /// Runs of the project running at once (`None`: the claimer's
    /// [`Limits::default_per_project`]).
    pub concurrency: Option<usize>,
    /// Delay before each retry of a failed or interrupted run (`None`: the queue's
    /// [`Backoff`], see [`Queue::with_backoff`](super::Queue::with_backoff)).
    pub backoff: Option<Backoff>,
    /// Extra attempts a run gets when the infrastructure interrupts it (its lease expires
    /// mid-run), not counted against its `max_attempts` (`None`:
    /// [`DEFAULT_INTERRUPTED_RETRIES`](super::DEFAULT_INTERRUPTED_RETRIES)).
    pub interrupted_retries: Option<u32>,
}

/// A run leased to a worker by [`Queue::claim`](super::Queue::claim).
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    /// The run, already marked `running` (its `attempts` counts this attempt).
    pub run: RunRow,
}

/// How a worker ends its attempt ([`Queue::finish`](super::Queue::finish)).
#[derive(Debug, Clone, PartialEq)]
pub enum Finish {
    /// The run succeeded.
    Succeeded {
        /// Output URIs.
        output: Vec<String>,
        /// Final run manifest (steps).
        manifest: Value,
    },
    /// The attempt failed.
    Failed {
        /// What went wrong (one paragraph).
        error: String,
        /// Output URIs written anyway (e.g. the failed notebook).
        output: Vec<String>,
        /// Run manifest (steps).
        manifest: Value,
        /// Retryable: back to `queued` with backoff while attempts remain.
        retry: bool,
    },
    /// The infrastructure interrupted the attempt (its container was killed from outside,
    /// the engine could not be reached): retried as a run whose server died is, within the
    /// project's `serve.interrupted_retries`, not counted against its attempts.
    Interrupted {
        /// What happened.
        error: String,
        /// Output URIs written anyway.
        output: Vec<String>,
        /// Run manifest (steps).
        manifest: Value,
    },
    /// The worker stopped because a cancel was requested.
    Cancelled {
        /// Output URIs written before it stopped.
        output: Vec<String>,
        /// Run manifest (steps).
        manifest: Value,
    },
}

/// Result of [`Queue::cancel`](super::Queue::cancel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelResult {
    /// It was queued and is now cancelled.
    Cancelled,
    /// It is running: `cancel_requested` is set and its worker will stop.
    Requested,
    /// It had already finished with this status; nothing changed.
    AlreadyFinished(Status),
    /// No such run.
    NotFound,
}

/// What [`Queue::recover`](super::Queue::recover) did with runs whose lease expired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Put back in the queue (attempts remained).
    pub requeued: Vec<String>,
    /// Marked failed (no attempts left).
    pub failed: Vec<String>,
    /// Marked cancelled (a cancel had been requested).
    pub cancelled: Vec<String>,
}

impl Recovered {
    /// Number of runs recovered.
    pub fn total(&self) -> usize {
        self.requeued.len() + self.failed.len() + self.cancelled.len()
    }
}

/// Number of runs per status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// `queued` runs.
    pub queued: u64,
    /// `running` runs.
    pub running: u64,
    /// `succeeded` runs.
    pub succeeded: u64,
    /// `failed` runs.
    pub failed: u64,
    /// `cancelled` runs.
    pub cancelled: u64,
}

impl Counts {
    /// The count for one status.
    pub fn get(&self, status: Status) -> u64 {
        match status {
            Status::Queued => self.queued,
            Status::Running => self.running,
            Status::Succeeded => self.succeeded,
            Status::Failed => self.failed,
            Status::Cancelled => self.cancelled,
        }
    }

    pub(crate) fn set(&mut self, status: Status, n: u64) {
        match status {
            Status::Queued => self.queued = n,
            Status::Running => self.running = n,
            Status::Succeeded => self.succeeded = n,
            Status::Failed => self.failed = n,
            Status::Cancelled => self.cancelled = n,
        }
    }
}

/// Which runs [`Queue::list`](super::Queue::list) returns (newest first). Empty: all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunFilter {
    /// Only this project.
    pub project: Option<String>,
    /// Only runs of this project environment.
    pub environment: Option<String>,
    /// Only these statuses (empty: any).
    pub status: Vec<Status>,
    /// Created at or after.
    #[serde(with = "time_serde::option")]
    pub since: Option<DateTime<Utc>>,
    /// Created before.
    #[serde(with = "time_serde::option")]
    pub until: Option<DateTime<Utc>>,
    /// The trigger object's URI contains this (case-sensitive).
    pub trigger_contains: Option<String>,
    /// At most this many rows (`None`: 100).
    pub limit: Option<usize>,
    /// Skip this many rows.
    pub offset: usize,
}

/// Retry backoff: `base · 2^(attempts-1)`, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the second attempt.
    pub base: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(10),
            max: Duration::from_secs(600),
        }
    }
}

impl Backoff {
    /// Delay after `attempts` failed attempts (`attempts ≥ 1`).
    pub fn delay(&self, attempts: u32) -> Duration {
        let exp = attempts.saturating_sub(1).min(30);
        self.base.saturating_mul(1u32 << exp).min(self.max)
    }
}

/// RFC 3339 (UTC, milliseconds) for the API, without needing chrono's `serde` feature.
mod time_serde {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }

    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(
            t: &Option<DateTime<Utc>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => super::serialize(t, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<DateTime<Utc>>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|s| {
                    DateTime::parse_from_rfc3339(&s)
                        .map(|t| t.with_timezone(&Utc))
                        .map_err(serde::de::Error::custom)
                })
                .transpose()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(5),
        };
        assert_eq!(b.delay(1), Duration::from_secs(1));
        assert_eq!(b.delay(2), Duration::from_secs(2));
        assert_eq!(b.delay(3), Duration::from_secs(4));
        assert_eq!(b.delay(4), Duration::from_secs(5));
        assert_eq!(b.delay(100), Duration::from_secs(5));
    }

    #[test]
    fn status_strings_round_trip() {
        for s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>().unwrap(), s);
        }
        assert!("done".parse::<Status>().is_err());
    }
}
