//! Per-key ordering of object events, kept in the database: the enqueue of a request whose
//! trigger carries S3's `sequencer`.
//!
//! S3 only orders events for one key, by `sequencer` (hex, compared after zero-padding). The
//! `object_sequencers` table keeps the newest sequencer admitted per (project, bucket, key) and
//! the run it started. In one serialized write transaction (`db::write_tx!`: SQLite
//! `BEGIN IMMEDIATE`, PostgreSQL an advisory lock, so every server sharing the database takes
//! turns) the enqueue reads that row, refuses an older event, inserts the run (deduplicated as
//! usual) and raises the row. A `kill -9` at any point leaves either all of it or none of it.
//!
//! - lower than the newest: not queued — [`Enqueued::Superseded`], or [`Enqueued::Duplicate`]
//!   when this very version already has a run (a late redelivery);
//! - equal: the same event delivered again, or another event S3 numbered alike — left to the
//!   dedup key;
//! - higher, or the first for the key: queued, and it becomes the newest.
//!
//! A key's row is forgotten [`SEQUENCER_RETENTION`] after its last event
//! ([`Queue::prune_sequencers`]), so the table holds the keys of recent events, not every key
//! ever seen: S3 delivers events within minutes, so an event a week late is not expected.
//!
//! Must not: order events without a sequencer (folders, polling, schedules, the API), or
//! compare sequencers across keys (S3 gives them no meaning there).

use std::cmp::Ordering;
use std::time::Duration;

use super::db::{esc, now_ms, write_tx};
use super::ops::{insert_run_query, NewRun, INSERT_RUN};
use super::types::Enqueued;
use super::{Queue, QueueError};
use crate::event::compare_sequencers;

/// How long a key's newest sequencer is kept after its last event (7 days).
pub const SEQUENCER_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

impl Queue {
    /// Forget the newest sequencer of keys whose last event is older than `older_than`;
    /// returns how many keys were forgotten. An event for such a key is then ordered as the
    /// first for it.
    pub async fn prune_sequencers(&self, older_than: Duration) -> Result<u64, QueueError> {
        let cutoff = now_ms() - i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX);
        write_tx!(&self.db, |tx, _pg| {
            let done = sqlx::query("DELETE FROM object_sequencers WHERE updated_at < $1")
                .bind(cutoff)
                .execute(&mut *tx)
                .await?;
            Ok(done.rows_affected())
        })
    }

    /// Enqueues `new`, triggered by an event for `bucket`/`key` with normalized sequencer
    /// `seq` ([`crate::event::ObjectEvent::sequence`]), in key order.
    pub(super) async fn enqueue_ordered(
        &self,
        new: NewRun,
        bucket: String,
        key: String,
        seq: String,
    ) -> Result<Enqueued, QueueError> {
        let (bucket, key) = (esc(&bucket), esc(&key));
        write_tx!(&self.db, |tx, _pg| {
            let newest: Option<(String, String)> = sqlx::query_as(
                "SELECT sequencer, run_id FROM object_sequencers \
                 WHERE project = $1 AND bucket = $2 AND object_key = $3",
            )
            .bind(&new.project)
            .bind(&bucket)
            .bind(&key)
            .fetch_optional(&mut *tx)
            .await?;
            let order = newest
                .as_ref()
                .map(|(newer, _)| compare_sequencers(&seq, newer));
            if order == Some(Ordering::Less) {
                if let Some(dedup_key) = &new.dedup_key {
                    let existing: Option<String> = sqlx::query_scalar(
                        "SELECT id FROM runs WHERE project = $1 AND dedup_key = $2",
                    )
                    .bind(&new.project)
                    .bind(dedup_key)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if let Some(id) = existing {
                        return Ok(Enqueued::Duplicate(id));
                    }
                }
                let (newer_sequencer, newer_run) = newest.unwrap_or_default();
                return Ok(Enqueued::Superseded {
                    newer_run,
                    newer_sequencer,
                });
            }
            let now = now_ms();
            let id = super::new_run_id();
            let inserted: Option<String> = insert_run_query!(&id, new, now)
                .fetch_optional(&mut *tx)
                .await?;
            let outcome = match inserted {
                Some(id) => Enqueued::New(id),
                None => {
                    let existing: Option<String> = sqlx::query_scalar(
                        "SELECT id FROM runs WHERE project = $1 AND dedup_key = $2",
                    )
                    .bind(&new.project)
                    .bind(&new.dedup_key)
                    .fetch_optional(&mut *tx)
                    .await?;
                    Enqueued::Duplicate(existing.ok_or_else(|| {
                        QueueError::Corrupt(format!(
                            "dedup conflict without a run for `{}`",
                            new.dedup_key.as_deref().unwrap_or_default()
                        ))
                    })?)
                }
            };
            if order != Some(Ordering::Equal) {
                sqlx::query(
                    "INSERT INTO object_sequencers \
                     (project, bucket, object_key, sequencer, run_id, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (project, bucket, object_key) DO UPDATE SET \
                     sequencer = excluded.sequencer, run_id = excluded.run_id, \
                     updated_at = excluded.updated_at",
                )
                .bind(&new.project)
                .bind(&bucket)
                .bind(&key)
                .bind(&seq)
                .bind(outcome.run_id())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            Ok(outcome)
        })
    }
}
