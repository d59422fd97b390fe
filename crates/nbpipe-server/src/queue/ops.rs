//! State changes of a run: enqueue, claim, heartbeat, finish, release, cancel, re-run and
//! lease recovery. Each is one statement or one serialized write transaction (see
//! `db::write_tx!`), so a `kill -9` between any two of them leaves a consistent queue.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use super::db::{duration_ms, esc, now_ms, run_from_row, with_pool, write_tx, RUN_COLUMNS};
use super::types::{CancelResult, Claimed, Enqueued, Finish, Limits, Recovered, Status};
use super::{Queue, QueueError, INTERRUPTED};
use crate::event::RunRequest;

/// Everything inserted for a new run (owned: see `insert_run`).
pub(super) struct NewRun {
    pub(super) project: String,
    pub(super) environment: Option<String>,
    pub(super) trigger_json: Option<String>,
    pub(super) trigger_uri: Option<String>,
    pub(super) parameters: String,
    pub(super) dedup_key: Option<String>,
    pub(super) reason: String,
    pub(super) rerun_of: Option<String>,
    pub(super) max_attempts: i64,
}

/// Inserts a queued run unless `(project, dedup_key)` exists; returns the new id or nothing.
pub(super) const INSERT_RUN: &str =
    "INSERT INTO runs (id, project, status, attempts, max_attempts, reason, \
     trigger_json, trigger_uri, parameters, dedup_key, rerun_of, created_at, not_before, \
     updated_at, environment) \
     VALUES ($1, $2, 'queued', 0, $3, $4, $5, $6, $7, $8, $9, $10, $10, $10, $11) \
     ON CONFLICT (project, dedup_key) DO NOTHING RETURNING id";

/// The `INSERT_RUN` query for run `$id` from `$new` (a `NewRun`) at `$now`, ready to run on a
/// pool or inside a transaction.
macro_rules! insert_run_query {
    ($id:expr, $new:expr, $now:expr) => {
        sqlx::query_scalar::<_, String>(INSERT_RUN)
            .bind($id)
            .bind(&$new.project)
            .bind($new.max_attempts)
            .bind(&$new.reason)
            .bind(&$new.trigger_json)
            .bind(&$new.trigger_uri)
            .bind(&$new.parameters)
            .bind(&$new.dedup_key)
            .bind(&$new.rerun_of)
            .bind($now)
            .bind(&$new.environment)
    };
}
pub(super) use insert_run_query;

impl NewRun {
    fn new(req: &RunRequest, max_attempts: u32) -> Result<NewRun, QueueError> {
        Ok(NewRun {
            project: req.project.clone(),
            // A project served with an environment's settings is `name@environment`.
            environment: req.project.split_once('@').map(|(_, e)| e.to_owned()),
            trigger_json: req
                .trigger
                .as_ref()
                .map(serde_json::to_string)
                .transpose()?,
            trigger_uri: req.trigger.as_ref().map(|t| t.uri()),
            parameters: serde_json::to_string(&req.parameters)?,
            dedup_key: req.dedup_key.as_deref().map(esc),
            reason: esc(&req.reason),
            rerun_of: None,
            max_attempts: i64::from(max_attempts.max(1)),
        })
    }
}

impl Queue {
    /// Queues a run for `req`, unless the project already has one with the same
    /// `dedup_key` (then nothing changes and the existing run's id is returned, whatever
    /// its status). `max_attempts` is the project's retry policy (at least 1).
    ///
    /// A request whose trigger event carries an S3 `sequencer` is also ordered per
    /// (project, bucket, key): if an event with a higher sequencer was already admitted for
    /// that key, nothing is queued and [`Enqueued::Superseded`] is returned. The check and the
    /// update of the newest sequencer happen in the enqueue's transaction (see
    /// `queue::ordering`).
    pub async fn enqueue(
        &self,
        req: &RunRequest,
        max_attempts: u32,
    ) -> Result<Enqueued, QueueError> {
        let new = NewRun::new(req, max_attempts)?;
        if let Some(trigger) = &req.trigger {
            if let Some(seq) = trigger.sequence() {
                return self
                    .enqueue_ordered(new, trigger.bucket.clone(), trigger.key.clone(), seq)
                    .await;
            }
        }
        if let Some(id) = self.insert_run(new).await? {
            return Ok(Enqueued::New(id));
        }
        let key = esc(req.dedup_key.as_deref().unwrap_or_default());
        let existing: Option<String> = with_pool!(&self.db, p => {
            sqlx::query_scalar("SELECT id FROM runs WHERE project = $1 AND dedup_key = $2")
                .bind(&req.project)
                .bind(&key)
                .fetch_optional(p)
                .await?
        });
        // Runs are never deleted, so the conflicting row is there.
        existing
            .map(Enqueued::Duplicate)
            .ok_or_else(|| QueueError::Corrupt(format!("dedup conflict without a run for `{key}`")))
    }

    /// Inserts a queued run; `None` when `(project, dedup_key)` exists already. One statement:
    /// the uniqueness check and the insert cannot be separated by a concurrent enqueue.
    /// (`new` is owned: borrowed fields nested in a borrowed struct make rustc unable to
    /// prove the future `Send` for `tokio::spawn`.)
    async fn insert_run(&self, new: NewRun) -> Result<Option<String>, QueueError> {
        let id = super::new_run_id();
        let inserted: Option<String> = with_pool!(&self.db, p => {
            insert_run_query!(&id, new, now_ms()).fetch_optional(p).await?
        });
        Ok(inserted)
    }

    /// Leases the oldest runnable queued run to `worker` for `lease`: status `queued`,
    /// `not_before` passed, its project under its limit and fewer than `limits.global` runs
    /// running. Marks it `running`, counts the attempt and records it in the run's history.
    pub async fn claim(
        &self,
        worker: &str,
        limits: &Limits,
        lease: Duration,
    ) -> Result<Option<Claimed>, QueueError> {
        if limits.global == 0 {
            return Ok(None);
        }
        let lease_ms = duration_ms(lease);
        write_tx!(&self.db, |tx, pg| {
            let now = now_ms();
            let running: Vec<(String, i64)> = sqlx::query_as(
                "SELECT project, COUNT(*) FROM runs WHERE status = 'running' GROUP BY project",
            )
            .fetch_all(&mut *tx)
            .await?;
            let total: i64 = running.iter().map(|(_, n)| n).sum();
            if total >= limit_i64(limits.global) {
                return Ok(None);
            }
            // The projects' own limits, as stored by whichever server started last: read
            // in this serialized transaction, so every claimer applies the same ones.
            let stored: Vec<(String, i64)> = sqlx::query_as(
                "SELECT project, concurrency FROM project_policies WHERE concurrency IS NOT NULL",
            )
            .fetch_all(&mut *tx)
            .await?;
            let limits = with_stored_limits(limits, stored);
            let Some((clause, projects)) = project_clause(&limits, &running) else {
                return Ok(None);
            };
            let sql = format!(
                "SELECT id FROM runs WHERE status = 'queued' AND not_before <= $1{clause} \
                 ORDER BY seq LIMIT 1{}",
                if pg { " FOR UPDATE SKIP LOCKED" } else { "" }
            );
            let mut pick = sqlx::query_scalar::<_, String>(&sql).bind(now);
            for p in &projects {
                pick = pick.bind(p.as_str());
            }
            let Some(id) = pick.fetch_optional(&mut *tx).await? else {
                return Ok(None);
            };
            let sql = format!(
                "UPDATE runs SET status = 'running', attempts = attempts + 1, started_at = $2, \
                 finished_at = NULL, lease_owner = $3, lease_until = $4, updated_at = $2 \
                 WHERE id = $1 RETURNING {RUN_COLUMNS}"
            );
            let row = sqlx::query(&sql)
                .bind(&id)
                .bind(now)
                .bind(worker)
                .bind(now.saturating_add(lease_ms))
                .fetch_one(&mut *tx)
                .await?;
            let run = run_from_row(&row)?;
            sqlx::query(
                "INSERT INTO run_attempts (run_id, attempt, worker, started_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(&id)
            .bind(i64::from(run.attempts))
            .bind(worker)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            Ok(Some(Claimed { run }))
        })
    }

    /// Extends `worker`'s lease on a running run to now + `lease`. `false`: the run is no
    /// longer ours (recovered after an expired lease, or finished) — stop working on it.
    pub async fn heartbeat(
        &self,
        run_id: &str,
        worker: &str,
        lease: Duration,
    ) -> Result<bool, QueueError> {
        let until = now_ms().saturating_add(duration_ms(lease));
        let done = with_pool!(&self.db, p => {
            sqlx::query(
                "UPDATE runs SET lease_until = $3 \
                 WHERE id = $1 AND status = 'running' AND lease_owner = $2",
            )
            .bind(run_id)
            .bind(worker)
            .bind(until)
            .execute(p)
            .await?
            .rows_affected()
        });
        Ok(done == 1)
    }

    /// Records where attempt `attempt` of `run_id` executes (the executor's handle, JSON).
    /// `false` if there is no such attempt.
    pub async fn set_attempt_handle(
        &self,
        run_id: &str,
        attempt: u32,
        handle: &serde_json::Value,
    ) -> Result<bool, QueueError> {
        let text = handle.to_string();
        let done = with_pool!(&self.db, p => {
            sqlx::query("UPDATE run_attempts SET handle = $3 WHERE run_id = $1 AND attempt = $2")
                .bind(run_id)
                .bind(i64::from(attempt))
                .bind(&text)
                .execute(p)
                .await?
                .rows_affected()
        });
        Ok(done == 1)
    }

    /// Ends `worker`'s attempt and returns the run's new status. A retryable failure goes
    /// back to `queued` (not before now + backoff) while attempts remain; a failure after a
    /// cancel request ends `cancelled`. [`QueueError::LeaseLost`] if the run is not running
    /// under `worker` any more (its results must then be dropped).
    pub async fn finish(
        &self,
        run_id: &str,
        worker: &str,
        outcome: Finish,
    ) -> Result<Status, QueueError> {
        let (output, manifest, error, retry, wanted) = match &outcome {
            Finish::Succeeded { output, manifest } => {
                (output, manifest, None, false, Status::Succeeded)
            }
            Finish::Failed {
                error,
                output,
                manifest,
                retry,
            } => (output, manifest, Some(esc(error)), *retry, Status::Failed),
            Finish::Interrupted {
                error,
                output,
                manifest,
            } => (output, manifest, Some(esc(error)), true, Status::Failed),
            Finish::Cancelled { output, manifest } => {
                (output, manifest, None, false, Status::Cancelled)
            }
        };
        let interrupted = matches!(outcome, Finish::Interrupted { .. });
        let output = serde_json::to_string(output)?;
        let manifest = serde_json::to_string(manifest)?;
        let status = write_tx!(&self.db, |tx, pg| {
            let sql = format!(
                "SELECT attempts, max_attempts, cancel_requested, {BACKOFF_COLUMNS}, \
                 interruptions, (SELECT interrupted_retries FROM project_policies pp \
                 WHERE pp.project = runs.project) FROM runs \
                 WHERE id = $1 AND status = 'running' AND lease_owner = $2{}",
                if pg { " FOR UPDATE" } else { "" }
            );
            // attempts, max_attempts, cancel_requested, the project's backoff (ms),
            // interruptions so far and the project's allowance
            type Running = (i64, i64, bool, Option<i64>, Option<i64>, i64, Option<i64>);
            let row: Option<Running> = sqlx::query_as(&sql)
                .bind(run_id)
                .bind(worker)
                .fetch_optional(&mut *tx)
                .await?;
            let Some((
                attempts,
                mut max_attempts,
                cancel_requested,
                base,
                max,
                interruptions,
                allowed,
            )) = row
            else {
                return Ok(None);
            };
            let now = now_ms();
            // An interruption within the allowance gives the run one more attempt, as a
            // recovered run gets (see `recover`).
            let allowed = allowed.unwrap_or(i64::from(super::DEFAULT_INTERRUPTED_RETRIES));
            if interrupted && !cancel_requested && interruptions < allowed {
                sqlx::query(
                    "UPDATE runs SET interruptions = interruptions + 1, \
                     max_attempts = max_attempts + 1 WHERE id = $1",
                )
                .bind(run_id)
                .execute(&mut *tx)
                .await?;
                max_attempts += 1;
            }
            // A cancel accepted while the run was running wins, whatever the attempt's
            // outcome: the API said the run would be cancelled.
            let status = match wanted {
                _ if cancel_requested => Status::Cancelled,
                Status::Failed if retry && attempts < max_attempts => Status::Queued,
                other => other,
            };
            let (finished_at, not_before) = if status == Status::Queued {
                let delay = self
                    .backoff_for(base, max)
                    .delay(u32::try_from(attempts).unwrap_or(u32::MAX));
                (None, Some(now.saturating_add(duration_ms(delay))))
            } else {
                (Some(now), None)
            };
            sqlx::query(
                "UPDATE runs SET status = $2, finished_at = $3, \
                 not_before = COALESCE($4, not_before), lease_owner = NULL, lease_until = NULL, \
                 output = $5, error = $6, manifest = $7, updated_at = $8 WHERE id = $1",
            )
            .bind(run_id)
            .bind(status.as_str())
            .bind(finished_at)
            .bind(not_before)
            .bind(&output)
            .bind(&error)
            .bind(&manifest)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let attempt_outcome = if interrupted && !cancel_requested {
                "interrupted"
            } else if status == Status::Queued {
                "retry"
            } else {
                status.as_str()
            };
            sqlx::query(
                "UPDATE run_attempts SET finished_at = $3, outcome = $4, error = $5 \
                 WHERE run_id = $1 AND attempt = $2",
            )
            .bind(run_id)
            .bind(attempts)
            .bind(now)
            .bind(attempt_outcome)
            .bind(&error)
            .execute(&mut *tx)
            .await?;
            if super::notify::announced(status) {
                sqlx::query(super::notify::OUTBOX_INSERT)
                    .bind(run_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            Ok(Some(status))
        })?;
        match status {
            Some(status) => Ok(status),
            None => Err(self.lease_lost(run_id, worker).await),
        }
    }

    /// Hands a running run back to the queue without counting the attempt (graceful drain:
    /// the server stops before the run could finish). `false` if it was not ours.
    pub async fn release(&self, run_id: &str, worker: &str) -> Result<bool, QueueError> {
        write_tx!(&self.db, |tx, _pg| {
            let now = now_ms();
            let attempts: Option<i64> = sqlx::query_scalar(
                "UPDATE runs SET status = 'queued', attempts = attempts - 1, not_before = $3, \
                 started_at = NULL, lease_owner = NULL, lease_until = NULL, updated_at = $3 \
                 WHERE id = $1 AND status = 'running' AND lease_owner = $2 \
                 RETURNING attempts",
            )
            .bind(run_id)
            .bind(worker)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(attempts) = attempts else {
                return Ok(false);
            };
            sqlx::query("DELETE FROM run_attempts WHERE run_id = $1 AND attempt = $2")
                .bind(run_id)
                .bind(attempts + 1)
                .execute(&mut *tx)
                .await?;
            Ok(true)
        })
    }

    pub(crate) async fn lease_lost(&self, run_id: &str, worker: &str) -> QueueError {
        match self.get(run_id).await {
            Ok(Some(_)) => QueueError::LeaseLost {
                run_id: run_id.to_string(),
                worker: worker.to_string(),
            },
            Ok(None) => QueueError::NotFound(run_id.to_string()),
            Err(e) => e,
        }
    }

    /// Cancels a run: a queued one at once; a running one by setting `cancel_requested`,
    /// which its worker sees through [`Queue::is_cancel_requested`].
    pub async fn cancel(&self, run_id: &str) -> Result<CancelResult, QueueError> {
        // One statement: the CASEs read the row as it is when the update takes its lock.
        const SQL: &str = "UPDATE runs SET \
             status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END, \
             finished_at = CASE WHEN status = 'queued' THEN $2 ELSE finished_at END, \
             cancel_requested = CASE WHEN status = 'running' THEN TRUE ELSE cancel_requested END, \
             updated_at = $2 \
             WHERE id = $1 AND status IN ('queued', 'running') RETURNING status";
        let now = now_ms();
        let changed: Option<String> = with_pool!(&self.db, p => {
            sqlx::query_scalar(SQL).bind(run_id).bind(now).fetch_optional(p).await?
        });
        Ok(match changed.as_deref() {
            Some("cancelled") => CancelResult::Cancelled,
            Some(_) => {
                // Workers of this process act at once; others see the flag when they poll.
                let _ = self.cancels.send(run_id.to_string());
                CancelResult::Requested
            }
            None => match self.get(run_id).await? {
                Some(run) => CancelResult::AlreadyFinished(run.status),
                None => CancelResult::NotFound,
            },
        })
    }

    /// Whether a cancel was requested for this run (workers poll this while running).
    pub async fn is_cancel_requested(&self, run_id: &str) -> Result<bool, QueueError> {
        let flag: Option<bool> = with_pool!(&self.db, p => {
            sqlx::query_scalar("SELECT cancel_requested FROM runs WHERE id = $1")
                .bind(run_id)
                .fetch_optional(p)
                .await?
        });
        flag.ok_or_else(|| QueueError::NotFound(run_id.to_string()))
    }

    /// Queues a new run with the same project, trigger, parameters and retry policy as
    /// `run_id`, under a new identity `rerun of <run_id> #<n>`. Returns the new run's id.
    pub async fn rerun(&self, run_id: &str) -> Result<String, QueueError> {
        let orig = self
            .get(run_id)
            .await?
            .ok_or_else(|| QueueError::NotFound(run_id.to_string()))?;
        let previous: i64 = with_pool!(&self.db, p => {
            sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE rerun_of = $1")
                .bind(run_id)
                .fetch_one(p)
                .await?
        });
        let req = orig.request();
        // A concurrent re-run may take number n: try the next one.
        for n in previous + 1..previous + 100 {
            let key = format!("rerun of {run_id} #{n}");
            let mut new = NewRun::new(&req, orig.max_attempts)?;
            new.dedup_key = Some(esc(&key));
            new.reason = esc(&key);
            new.rerun_of = Some(run_id.to_string());
            if let Some(id) = self.insert_run(new).await? {
                return Ok(id);
            }
        }
        Err(QueueError::Corrupt(format!(
            "could not number a re-run of `{run_id}`"
        )))
    }

    /// Running runs whose lease expired and whose latest attempt has an executor handle:
    /// `(run id, attempt, handle)`, for a server to ask its executors whether the attempt
    /// still runs (a container outlives the server that started it) before [`Queue::recover`]
    /// gives the run another attempt.
    pub async fn expired_attempts(
        &self,
    ) -> Result<Vec<(String, u32, serde_json::Value)>, QueueError> {
        let now = now_ms();
        let rows: Vec<(String, i64, Option<String>)> = with_pool!(&self.db, p => {
            sqlx::query_as(
                "SELECT r.id, r.attempts, a.handle FROM runs r JOIN run_attempts a \
                 ON a.run_id = r.id AND a.attempt = r.attempts \
                 WHERE r.status = 'running' AND r.lease_until < $1 AND a.handle IS NOT NULL \
                 ORDER BY r.seq",
            )
            .bind(now)
            .fetch_all(p)
            .await?
        });
        Ok(rows
            .into_iter()
            .filter_map(|(id, attempt, handle)| {
                let handle = serde_json::from_str(handle.as_deref()?).ok()?;
                Some((id, u32::try_from(attempt).ok()?, handle))
            })
            .collect())
    }

    /// Takes over attempt `attempt` of a running run whose lease expired and whose attempt
    /// still runs (its container outlived its server): the lease becomes `worker`'s, the
    /// attempt's history names it. `false` when the run is not in that state any more
    /// (finished, recovered, taken over by another server, or its lease is alive).
    pub async fn take_over(
        &self,
        run_id: &str,
        attempt: u32,
        worker: &str,
        lease: Duration,
    ) -> Result<bool, QueueError> {
        let now = now_ms();
        let done = write_tx!(&self.db, |tx, _pg| {
            let n = sqlx::query(
                "UPDATE runs SET lease_owner = $3, lease_until = $4, updated_at = $5 \
                 WHERE id = $1 AND attempts = $2 AND status = 'running' AND lease_until < $5",
            )
            .bind(run_id)
            .bind(i64::from(attempt))
            .bind(worker)
            .bind(now.saturating_add(duration_ms(lease)))
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 1 {
                sqlx::query(
                    "UPDATE run_attempts SET worker = $3 WHERE run_id = $1 AND attempt = $2",
                )
                .bind(run_id)
                .bind(i64::from(attempt))
                .bind(worker)
                .execute(&mut *tx)
                .await?;
            }
            Ok(n == 1)
        })?;
        Ok(done)
    }

    /// Recovers runs whose lease expired (their server was killed or hung): back to
    /// `queued` (not before now + backoff) while the project's interrupted retries remain
    /// (such an attempt is not counted against `max_attempts`: it was not the notebook's
    /// fault) or attempts remain, else `failed` with [`INTERRUPTED`]; `cancelled` if a
    /// cancel was requested. Call at startup and
    /// periodically; `worker` (the caller) is recorded in the attempt history. Each run is
    /// recovered once: the change and the check happen in one serialized transaction.
    pub async fn recover(&self, worker: &str) -> Result<Recovered, QueueError> {
        self.recover_except(worker, &[]).await
    }

    /// [`Queue::recover`], leaving alone the runs in `keep` (their attempt may still run:
    /// see `executors::take_over`).
    pub async fn recover_except(
        &self,
        worker: &str,
        keep: &[String],
    ) -> Result<Recovered, QueueError> {
        write_tx!(&self.db, |tx, pg| {
            let now = now_ms();
            let sql = format!(
                "SELECT id, attempts, max_attempts, cancel_requested, {BACKOFF_COLUMNS}, \
                 interruptions, (SELECT interrupted_retries FROM project_policies pp \
                 WHERE pp.project = runs.project) \
                 FROM runs WHERE status = 'running' AND lease_until < $1 ORDER BY seq{}",
                if pg { " FOR UPDATE SKIP LOCKED" } else { "" }
            );
            type Expired = (
                String,
                i64,
                i64,
                bool,
                Option<i64>,
                Option<i64>,
                i64,
                Option<i64>,
            );
            let expired: Vec<Expired> = sqlx::query_as(&sql).bind(now).fetch_all(&mut *tx).await?;
            let mut done = Recovered::default();
            for (id, attempts, max_attempts, cancel_requested, base, max, interruptions, allowed) in
                expired
            {
                if keep.contains(&id) {
                    continue;
                }
                let allowed = allowed.unwrap_or(i64::from(super::DEFAULT_INTERRUPTED_RETRIES));
                // An interruption within the allowance gives the run one more attempt.
                let forgiven = !cancel_requested && interruptions < allowed;
                if forgiven {
                    sqlx::query(
                        "UPDATE runs SET interruptions = interruptions + 1, \
                         max_attempts = max_attempts + 1 WHERE id = $1",
                    )
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
                }
                // The same policy as a failed attempt: the run's attempts, its project's backoff.
                let (status, finished_at, not_before) = if cancel_requested {
                    (Status::Cancelled, Some(now), None)
                } else if forgiven || attempts < max_attempts {
                    let delay = self
                        .backoff_for(base, max)
                        .delay(u32::try_from(attempts).unwrap_or(u32::MAX));
                    (
                        Status::Queued,
                        None,
                        Some(now.saturating_add(duration_ms(delay))),
                    )
                } else {
                    (Status::Failed, Some(now), None)
                };
                sqlx::query(
                    "UPDATE runs SET status = $2, finished_at = $3, \
                     not_before = COALESCE($4, not_before), lease_owner = NULL, \
                     lease_until = NULL, error = $5, updated_at = $6 \
                     WHERE id = $1 AND status = 'running'",
                )
                .bind(&id)
                .bind(status.as_str())
                .bind(finished_at)
                .bind(not_before)
                .bind(INTERRUPTED)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE run_attempts SET finished_at = $3, outcome = 'interrupted', \
                     error = $4 WHERE run_id = $1 AND attempt = $2",
                )
                .bind(&id)
                .bind(attempts)
                .bind(now)
                .bind(esc(&format!(
                    "{INTERRUPTED} (lease expired; recovered by `{worker}`)"
                )))
                .execute(&mut *tx)
                .await?;
                if super::notify::announced(status) {
                    sqlx::query(super::notify::OUTBOX_INSERT)
                        .bind(&id)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                match status {
                    Status::Queued => done.requeued.push(id),
                    Status::Cancelled => done.cancelled.push(id),
                    _ => done.failed.push(id),
                }
            }
            Ok(done)
        })
    }
}

/// The project's stored backoff (milliseconds; NULL when it has none), for `SELECT … FROM
/// runs`: scalar subqueries, so `FOR UPDATE` still locks only the run.
const BACKOFF_COLUMNS: &str = "\
    (SELECT retry_backoff_ms FROM project_policies pp WHERE pp.project = runs.project), \
    (SELECT retry_backoff_max_ms FROM project_policies pp WHERE pp.project = runs.project)";

/// `limits` with the projects' stored limits filled in below the caller's own `per_project`
/// entries (which win), above `default_per_project`.
fn with_stored_limits(limits: &Limits, stored: Vec<(String, i64)>) -> Limits {
    let mut merged = limits.clone();
    for (project, n) in stored {
        let n = usize::try_from(n).unwrap_or(0);
        merged.per_project.entry(project).or_insert(n);
    }
    merged
}

fn limit_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The `AND project …` clause (placeholders from `$2`) that keeps full projects out of a
/// claim, with the names to bind; `None` when no project may start a run.
fn project_clause(limits: &Limits, running: &[(String, i64)]) -> Option<(String, Vec<String>)> {
    let running: HashMap<&str, i64> = running.iter().map(|(p, n)| (p.as_str(), *n)).collect();
    let has_room =
        |p: &str| running.get(p).copied().unwrap_or(0) < limit_i64(limits.for_project(p));
    let (op, names): (&str, BTreeSet<String>) = if limits.default_per_project == 0 {
        // Only projects with an explicit, non-full limit may run.
        let allowed: BTreeSet<String> = limits
            .per_project
            .keys()
            .filter(|p| has_room(p))
            .cloned()
            .collect();
        if allowed.is_empty() {
            return None;
        }
        ("IN", allowed)
    } else {
        let blocked = running
            .keys()
            .map(|p| p.to_string())
            .chain(limits.per_project.keys().cloned())
            .filter(|p| !has_room(p))
            .collect();
        ("NOT IN", blocked)
    };
    if names.is_empty() {
        return Some((String::new(), Vec::new()));
    }
    let placeholders: Vec<String> = (0..names.len()).map(|i| format!("${}", i + 2)).collect();
    let clause = format!(" AND project {op} ({})", placeholders.join(", "));
    Some((clause, names.into_iter().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_limits_override_the_default_but_not_the_callers_own() {
        let limits = Limits {
            global: 10,
            per_project: [("mine".to_string(), 5)].into(),
            default_per_project: 1,
        };
        let stored = vec![("mine".to_string(), 2), ("wide".to_string(), 3)];
        let merged = with_stored_limits(&limits, stored);
        assert_eq!(merged.for_project("mine"), 5);
        assert_eq!(merged.for_project("wide"), 3);
        assert_eq!(merged.for_project("other"), 1);
    }

    #[test]
    fn full_and_paused_projects_are_excluded_from_claims() {
        let limits = Limits {
            global: 10,
            per_project: [("paused".to_string(), 0), ("wide".to_string(), 3)].into(),
            default_per_project: 1,
        };
        let running = vec![("a".to_string(), 1), ("wide".to_string(), 2)];
        let (clause, names) = project_clause(&limits, &running).unwrap();
        assert_eq!(clause, " AND project NOT IN ($2, $3)");
        assert_eq!(names, vec!["a".to_string(), "paused".to_string()]);

        let only_listed = Limits {
            default_per_project: 0,
            ..limits.clone()
        };
        let (clause, names) = project_clause(&only_listed, &running).unwrap();
        assert_eq!(clause, " AND project IN ($2)");
        assert_eq!(names, vec!["wide".to_string()]);
        let full = vec![("wide".to_string(), 3)];
        assert!(project_clause(&only_listed, &full).is_none());
    }
}
