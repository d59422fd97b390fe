//! Durable run notifications: the `notify_outbox`, `notify_deliveries`, `notify_streaks`
//! and `notify_limits` tables (migration 6).
//!
//! A run ending `succeeded` or `failed` (no retry left) leaves an outbox row in the very
//! transaction that ends it ([`OUTBOX_INSERT`], from `finish` and `recover`), so a crash
//! cannot lose it. [`Queue::plan_notifications`] turns one outbox row into deliveries, in
//! finish order and in one transaction: it decides the event from the project's streak
//! (a success after a failure is a *recovery*), applies each target's rate limit (a failure
//! inside the window is only counted; [`Queue::plan_digests`] announces the count once the
//! window ends; a success clears the windows so the next failure is told at once), and
//! queues one delivery per subscribed target. Deliveries are claimed with a lease
//! ([`Queue::claim_deliveries`], so servers sharing the database never send one twice at
//! once), retried with exponential back-off and given up after [`GIVE_UP_AFTER`]
//! ([`Queue::record_delivery`]). Sending is the notifier's (`crate::notifier`), never a
//! worker's: nothing here can change a run's outcome.

use chrono::SecondsFormat;
use nbpipe_notify::{Event, HeldBack, Message, Target};
use nbpipe_project::NotifyTarget;
use serde::Serialize;

use super::db::{esc, now_ms, to_time, unesc, with_pool, write_tx};
use super::types::Status;
use super::{Queue, QueueError};

/// Inserted with a run's final update (binds: run id, now): one outbox row per announced
/// outcome.
pub(super) const OUTBOX_INSERT: &str = "INSERT INTO notify_outbox (run_id, project, status, \
     created_at) SELECT id, project, status, $2 FROM runs WHERE id = $1";

/// The final statuses that are announced. A cancelled run is not: someone chose to stop it.
pub(super) fn announced(status: Status) -> bool {
    matches!(status, Status::Succeeded | Status::Failed)
}

/// A failed delivery is retried after 1 s, 2 s, 4 s, … at most this long apart.
pub const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(5 * 60);
/// A delivery still failing this long after it was queued is given up (and says so).
pub const GIVE_UP_AFTER: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// How long a claimed delivery is left to its sender before another may try it.
const CLAIM_LEASE_MS: i64 = 60_000;

/// One finished run waiting to be turned into deliveries.
#[derive(Debug, Clone)]
pub struct OutboxItem {
    /// Its position (finish order).
    pub seq: i64,
    /// The run.
    pub run_id: String,
    /// Its project.
    pub project: String,
    /// `succeeded` or `failed`.
    pub status: String,
}

/// A delivery claimed for sending.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    /// Its id (also the `X-Nbpipe-Delivery` header).
    pub id: String,
    /// Where to.
    pub target: Target,
    /// What.
    pub message: Message,
    /// Attempts already made.
    pub attempts: u32,
}

/// A delivery as the API and UI show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryRow {
    /// Its id.
    pub id: String,
    /// The `notify:` item it is for (`notify[0]`).
    pub target: String,
    /// `slack`, `webhook` or `email`.
    pub kind: String,
    /// Where it goes (a webhook's scheme and host, or the email recipients).
    pub destination: String,
    /// `failure`, `success`, `recovery` or `digest`.
    pub event: String,
    /// `pending` (being retried), `delivered` or `failed` (given up).
    pub status: String,
    /// Attempts made.
    pub attempts: u32,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// When the next attempt is due (pending only).
    pub next_at: Option<String>,
    /// When it was delivered.
    pub delivered_at: Option<String>,
    /// When it was given up.
    pub gave_up_at: Option<String>,
    /// When it was queued.
    pub created_at: String,
}

fn stamp(ms: i64) -> String {
    to_time(ms).to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The delay before retry number `attempts` (1-based): 1 s doubling, capped at [`RETRY_MAX`].
pub fn retry_delay_ms(attempts: u32) -> i64 {
    let max = i64::try_from(RETRY_MAX.as_millis()).unwrap_or(i64::MAX);
    1000i64
        .checked_shl(attempts.saturating_sub(1).min(40))
        .unwrap_or(max)
        .min(max)
}

/// Inserts one delivery of `$msg` to `$t` (a `NotifyTarget`) inside transaction `$tx`, due
/// at once.
macro_rules! insert_delivery {
    ($tx:ident, $run_id:expr, $env:expr, $t:expr, $msg:expr, $now:expr) => {{
        let target = serde_json::to_string(&Target::from(&$t.kind))?;
        let message = serde_json::to_string($msg)?;
        sqlx::query(
            "INSERT INTO notify_deliveries (id, run_id, project, environment, target_key, \
             target, event, message, attempts, next_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $9, $9)",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind($run_id)
        .bind(&$msg.project)
        .bind($env)
        .bind(&$t.key)
        .bind(esc(&target))
        .bind($msg.event.as_str())
        .bind(esc(&message))
        .bind($now)
        .execute(&mut *$tx)
        .await?;
    }};
}

impl Queue {
    /// Finished runs of `projects` not yet turned into deliveries, oldest first.
    pub async fn notify_outbox(
        &self,
        projects: &[String],
        limit: usize,
    ) -> Result<Vec<OutboxItem>, QueueError> {
        if projects.is_empty() {
            return Ok(Vec::new());
        }
        let list: Vec<String> = (0..projects.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "SELECT seq, run_id, project, status FROM notify_outbox WHERE project IN ({}) \
             ORDER BY seq LIMIT $1",
            list.join(", ")
        );
        with_pool!(&self.db, p => {
            let mut q = sqlx::query_as::<_, (i64, String, String, String)>(&sql)
                .bind(i64::try_from(limit).unwrap_or(i64::MAX));
            for name in projects {
                q = q.bind(name);
            }
            let rows = q.fetch_all(p).await?;
            Ok(rows
                .into_iter()
                .map(|(seq, run_id, project, status)| OutboxItem { seq, run_id, project, status })
                .collect())
        })
    }

    /// Turns `item` into deliveries to the `targets` subscribed to its event, in one
    /// transaction: the project's streak decides failure / success / recovery, rate limits
    /// hold back repeated failures, the outbox row is removed. `base` is the run's message
    /// ([`Message::for_run`], report link filled in); `environment` names the settings the
    /// project runs with (`""` for none). Returns how many deliveries were queued (0 when
    /// another server planned it first).
    pub async fn plan_notifications(
        &self,
        item: &OutboxItem,
        environment: &str,
        targets: &[NotifyTarget],
        base: &Message,
    ) -> Result<usize, QueueError> {
        write_tx!(&self.db, |tx, pg| {
            let now = now_ms();
            let gone = sqlx::query("DELETE FROM notify_outbox WHERE seq = $1")
                .bind(item.seq)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 0;
            if gone {
                return Ok(0);
            }
            let streak: Option<(String, i64, Option<i64>)> = sqlx::query_as(&format!(
                "SELECT last_status, failures, failing_since FROM notify_streaks \
                 WHERE project = $1 AND environment = $2{}",
                if pg { " FOR UPDATE" } else { "" }
            ))
            .bind(&item.project)
            .bind(environment)
            .fetch_optional(&mut *tx)
            .await?;
            let failed = item.status == "failed";
            let was_failing = streak.as_ref().is_some_and(|(s, _, _)| s == "failed");
            let failures = streak.as_ref().map_or(0, |(_, f, _)| *f);
            let (new_failures, since) = if failed {
                if was_failing {
                    (failures + 1, streak.as_ref().and_then(|(_, _, s)| *s))
                } else {
                    (1, Some(now))
                }
            } else {
                (0, None)
            };
            sqlx::query(
                "INSERT INTO notify_streaks (project, environment, last_status, failures, \
                 failing_since, updated_at) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (project, environment) DO UPDATE SET last_status = $3, \
                 failures = $4, failing_since = $5, updated_at = $6",
            )
            .bind(&item.project)
            .bind(environment)
            .bind(&item.status)
            .bind(new_failures)
            .bind(since)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let mut msg = base.clone();
            msg.event = match (failed, was_failing) {
                (true, _) => Event::Failure,
                (false, true) => Event::Recovery,
                (false, false) => Event::Success,
            };
            if msg.event == Event::Recovery {
                msg.failures_before = Some(u64::try_from(failures).unwrap_or(0));
            }
            let mut queued = 0;
            for t in targets {
                let wants = |e| t.on.contains(&e);
                let subscribed = match msg.event {
                    Event::Failure => wants(nbpipe_project::NotifyEvent::Failure),
                    Event::Recovery => {
                        wants(nbpipe_project::NotifyEvent::Recovery)
                            || wants(nbpipe_project::NotifyEvent::Success)
                    }
                    _ => wants(nbpipe_project::NotifyEvent::Success),
                };
                // The target's window: (window end, held back, first held back).
                let limit: Option<(i64, i64, Option<i64>)> = sqlx::query_as(
                    "SELECT window_until, held_back, held_since FROM notify_limits \
                     WHERE project = $1 AND environment = $2 AND target_key = $3",
                )
                .bind(&item.project)
                .bind(environment)
                .bind(&t.key)
                .fetch_optional(&mut *tx)
                .await?;
                let held = limit
                    .filter(|(_, n, _)| *n > 0)
                    .map(|(_, n, since)| HeldBack {
                        count: u64::try_from(n).unwrap_or(0),
                        since: stamp(since.unwrap_or(now)),
                    });
                let mut this = msg.clone();
                if failed {
                    if !subscribed {
                        continue;
                    }
                    let inside = limit.is_some_and(|(until, _, _)| now < until);
                    if inside {
                        sqlx::query(
                            "UPDATE notify_limits SET held_back = held_back + 1, \
                             held_since = COALESCE(held_since, $4), last_run_id = $5 \
                             WHERE project = $1 AND environment = $2 AND target_key = $3",
                        )
                        .bind(&item.project)
                        .bind(environment)
                        .bind(&t.key)
                        .bind(now)
                        .bind(&item.run_id)
                        .execute(&mut *tx)
                        .await?;
                        continue;
                    }
                    this.held_back = held;
                    if let Some(window) = t.rate_limit {
                        let window = super::db::duration_ms(window);
                        sqlx::query(
                            "INSERT INTO notify_limits (project, environment, target_key, \
                             window_ms, window_until, held_back, held_since, last_run_id) \
                             VALUES ($1, $2, $3, $4, $5, 0, NULL, $6) \
                             ON CONFLICT (project, environment, target_key) DO UPDATE SET \
                             window_ms = $4, window_until = $5, held_back = 0, \
                             held_since = NULL, last_run_id = $6",
                        )
                        .bind(&item.project)
                        .bind(environment)
                        .bind(&t.key)
                        .bind(window)
                        .bind(now.saturating_add(window))
                        .bind(&item.run_id)
                        .execute(&mut *tx)
                        .await?;
                    }
                } else {
                    // A success ends the window: the next failure is told at once, and what
                    // was held back is told now — by this message when the target hears
                    // successes, else by the window's digest (the window is kept for it).
                    if !subscribed && held.is_some() {
                        continue;
                    }
                    sqlx::query(
                        "DELETE FROM notify_limits WHERE project = $1 AND environment = $2 \
                         AND target_key = $3",
                    )
                    .bind(&item.project)
                    .bind(environment)
                    .bind(&t.key)
                    .execute(&mut *tx)
                    .await?;
                    if !subscribed {
                        continue;
                    }
                    this.held_back = held;
                }
                insert_delivery!(tx, &item.run_id, environment, t, &this, now);
                queued += 1;
            }
            Ok(queued)
        })
    }

    /// Queues a digest for every rate-limit window of `projects` that ended with failures
    /// held back ("N more failed runs since …"), starting a new window. `base` gives the
    /// message of the last held-back run (`project`, `run id` → message with its report
    /// link) and `target` the target of a `notify:` key (`None`: no longer configured, the
    /// count is dropped). Returns how many digests were queued.
    pub async fn plan_digests(
        &self,
        projects: &[String],
        environment_of: &(dyn Fn(&str) -> String + Send + Sync),
        target: &(dyn Fn(&str, &str) -> Option<NotifyTarget> + Send + Sync),
        base: &(dyn Fn(&str, &str) -> Message + Send + Sync),
    ) -> Result<usize, QueueError> {
        write_tx!(&self.db, |tx, _pg| {
            let now = now_ms();
            type Row = (
                String,
                String,
                String,
                i64,
                i64,
                Option<i64>,
                Option<String>,
            );
            let rows: Vec<Row> = sqlx::query_as(
                "SELECT project, environment, target_key, window_ms, held_back, held_since, \
                 last_run_id FROM notify_limits WHERE held_back > 0 AND window_until <= $1",
            )
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
            let mut queued = 0;
            for (project, environment, key, window, held, since, last_run) in rows {
                if !projects.contains(&project) || environment_of(&project) != environment {
                    continue;
                }
                let t = target(&project, &key);
                sqlx::query(
                    "UPDATE notify_limits SET held_back = 0, held_since = NULL, \
                     window_until = $4 WHERE project = $1 AND environment = $2 \
                     AND target_key = $3",
                )
                .bind(&project)
                .bind(&environment)
                .bind(&key)
                .bind(now.saturating_add(window))
                .execute(&mut *tx)
                .await?;
                let (Some(t), Some(run_id)) = (t, last_run) else {
                    continue;
                };
                let mut msg = base(&project, &run_id);
                msg.event = Event::Digest;
                msg.held_back = Some(HeldBack {
                    count: u64::try_from(held).unwrap_or(0),
                    since: stamp(since.unwrap_or(now)),
                });
                insert_delivery!(tx, &run_id, &environment, &t, &msg, now);
                queued += 1;
            }
            Ok(queued)
        })
    }

    /// The (project, last held-back run) of every rate-limit window that ended with
    /// failures held back: the runs [`Queue::plan_digests`] will announce.
    pub async fn held_back_runs(&self) -> Result<Vec<(String, String)>, QueueError> {
        const SQL: &str = "SELECT project, last_run_id FROM notify_limits \
             WHERE held_back > 0 AND window_until <= $1 AND last_run_id IS NOT NULL";
        with_pool!(&self.db, p => {
            Ok(sqlx::query_as(SQL).bind(now_ms()).fetch_all(p).await?)
        })
    }

    /// How many deliveries are (pending, delivered, failed), across the database.
    pub async fn delivery_counts(&self) -> Result<(i64, i64, i64), QueueError> {
        const SQL: &str = "SELECT \
             COALESCE(SUM(CASE WHEN delivered_at IS NULL AND gave_up_at IS NULL THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN delivered_at IS NOT NULL THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN gave_up_at IS NOT NULL THEN 1 ELSE 0 END), 0) \
             FROM notify_deliveries";
        with_pool!(&self.db, p => {
            Ok(sqlx::query_as(SQL).fetch_one(p).await?)
        })
    }

    /// Whether any delivery is due (a read: no write lock taken).
    pub async fn has_due_deliveries(&self) -> Result<bool, QueueError> {
        const SQL: &str = "SELECT id FROM notify_deliveries WHERE delivered_at IS NULL \
             AND gave_up_at IS NULL AND next_at <= $1 LIMIT 1";
        with_pool!(&self.db, p => {
            let row: Option<(String,)> = sqlx::query_as(SQL).bind(now_ms()).fetch_optional(p).await?;
            Ok(row.is_some())
        })
    }

    /// Claims up to `limit` deliveries that are due, for [`CLAIM_LEASE_MS`]: another
    /// claimer skips them meanwhile; if this process dies they are due again after it.
    pub async fn claim_deliveries(&self, limit: usize) -> Result<Vec<DueDelivery>, QueueError> {
        write_tx!(&self.db, |tx, _pg| {
            let now = now_ms();
            let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
                "SELECT id, target, message, attempts FROM notify_deliveries \
                 WHERE delivered_at IS NULL AND gave_up_at IS NULL AND next_at <= $1 \
                 ORDER BY next_at LIMIT $2",
            )
            .bind(now)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await?;
            let mut out = Vec::new();
            for (id, target, message, attempts) in rows {
                sqlx::query("UPDATE notify_deliveries SET next_at = $2 WHERE id = $1")
                    .bind(&id)
                    .bind(now.saturating_add(CLAIM_LEASE_MS))
                    .execute(&mut *tx)
                    .await?;
                let target = serde_json::from_str(&unesc(&target))
                    .map_err(|e| QueueError::Corrupt(format!("delivery `{id}`: target: {e}")))?;
                let message = serde_json::from_str(&unesc(&message))
                    .map_err(|e| QueueError::Corrupt(format!("delivery `{id}`: message: {e}")))?;
                out.push(DueDelivery {
                    id,
                    target,
                    message,
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                });
            }
            Ok(out)
        })
    }

    /// Records an attempt of delivery `id`: delivered (`error` `None`), or failed — retried
    /// after [`retry_delay_ms`] unless `permanent` or [`GIVE_UP_AFTER`] has passed since it
    /// was queued, then given up.
    pub async fn record_delivery(
        &self,
        id: &str,
        error: Option<&str>,
        permanent: bool,
    ) -> Result<(), QueueError> {
        write_tx!(&self.db, |tx, _pg| {
            let now = now_ms();
            let row: Option<(i64, i64)> =
                sqlx::query_as("SELECT attempts, created_at FROM notify_deliveries WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some((attempts, created)) = row else {
                return Ok(());
            };
            let attempts = attempts + 1;
            let (delivered, gave_up, next) = match error {
                None => (Some(now), None, now),
                Some(_) => {
                    let next = now.saturating_add(retry_delay_ms(
                        u32::try_from(attempts).unwrap_or(u32::MAX),
                    ));
                    let horizon = created.saturating_add(super::db::duration_ms(GIVE_UP_AFTER));
                    if permanent || next > horizon {
                        (None, Some(now), now)
                    } else {
                        (None, None, next)
                    }
                }
            };
            sqlx::query(
                "UPDATE notify_deliveries SET attempts = $2, last_error = $3, \
                 delivered_at = $4, gave_up_at = $5, next_at = $6, updated_at = $7 \
                 WHERE id = $1",
            )
            .bind(id)
            .bind(attempts)
            .bind(error.map(esc))
            .bind(delivered)
            .bind(gave_up)
            .bind(next)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            Ok(())
        })
    }

    /// The notifications of a run, oldest first.
    pub async fn deliveries(&self, run_id: &str) -> Result<Vec<DeliveryRow>, QueueError> {
        type Row = (
            String,
            String,
            String,
            String,
            i64,
            i64,
            Option<String>,
            Option<i64>,
            Option<i64>,
            i64,
        );
        const SQL: &str = "SELECT id, target_key, target, event, attempts, next_at, \
             last_error, delivered_at, gave_up_at, created_at FROM notify_deliveries \
             WHERE run_id = $1 ORDER BY created_at, id";
        let rows: Vec<Row> = with_pool!(&self.db, p => {
            sqlx::query_as(SQL).bind(run_id).fetch_all(p).await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(id, key, target, event, attempts, next, err, delivered, gave_up, created)| {
                    let target: Option<Target> = serde_json::from_str(&unesc(&target)).ok();
                    let status = if delivered.is_some() {
                        "delivered"
                    } else if gave_up.is_some() {
                        "failed"
                    } else {
                        "pending"
                    };
                    DeliveryRow {
                        id,
                        target: key,
                        kind: target.as_ref().map_or("", |t| t.kind()).to_string(),
                        destination: target.map(|t| t.destination()).unwrap_or_default(),
                        event,
                        status: status.to_string(),
                        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                        last_error: err.map(|e| unesc(&e)),
                        next_at: (status == "pending").then(|| stamp(next)),
                        delivered_at: delivered.map(stamp),
                        gave_up_at: gave_up.map(stamp),
                        created_at: stamp(created),
                    }
                },
            )
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_the_cap() {
        assert_eq!(retry_delay_ms(1), 1000);
        assert_eq!(retry_delay_ms(2), 2000);
        assert_eq!(retry_delay_ms(4), 8000);
        assert_eq!(retry_delay_ms(30), 300_000);
        assert_eq!(retry_delay_ms(u32::MAX), 300_000);
    }
}
