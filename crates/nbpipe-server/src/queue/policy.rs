//! Per-project run policies in the database (`project_policies`): each server writes the
//! policies of its projects at start, so concurrency limits and retry backoff are the same
//! for every server sharing the database; `ops` reads them inside its claim, finish and
//! recovery transactions. Stores values only: deciding what they mean is `ops`' job.

use std::collections::HashMap;
use std::time::Duration;

use super::db::{duration_ms, now_ms, with_pool};
use super::types::{Backoff, ProjectPolicy};
use super::{Queue, QueueError};

impl Queue {
    /// Stores `project`'s policy, replacing the one stored before (by this or another
    /// server). Takes effect at the next claim, retry or recovery of its runs.
    pub async fn set_project_policy(
        &self,
        project: &str,
        policy: &ProjectPolicy,
    ) -> Result<(), QueueError> {
        const SQL: &str = "INSERT INTO project_policies \
             (project, concurrency, retry_backoff_ms, retry_backoff_max_ms, updated_at, \
             interrupted_retries) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (project) DO UPDATE SET concurrency = excluded.concurrency, \
             retry_backoff_ms = excluded.retry_backoff_ms, \
             retry_backoff_max_ms = excluded.retry_backoff_max_ms, \
             interrupted_retries = excluded.interrupted_retries, \
             updated_at = excluded.updated_at";
        let concurrency = policy
            .concurrency
            .map(|c| i64::try_from(c).unwrap_or(i64::MAX));
        // The database refuses a zero delay: store at least 1 ms.
        let ms = |d: Duration| duration_ms(d).max(1);
        let base = policy.backoff.map(|b| ms(b.base));
        let max = policy.backoff.map(|b| ms(b.max.max(b.base)));
        with_pool!(&self.db, p => {
            sqlx::query(SQL)
                .bind(project)
                .bind(concurrency)
                .bind(base)
                .bind(max)
                .bind(now_ms())
                .bind(policy.interrupted_retries.map(i64::from))
                .execute(p)
                .await?;
        });
        Ok(())
    }

    /// Every stored project policy, by project.
    pub async fn project_policies(&self) -> Result<HashMap<String, ProjectPolicy>, QueueError> {
        const SQL: &str = "SELECT project, concurrency, retry_backoff_ms, retry_backoff_max_ms, \
             interrupted_retries FROM project_policies";
        type Row = (String, Option<i64>, Option<i64>, Option<i64>, Option<i64>);
        let rows: Vec<Row> = with_pool!(&self.db, p => sqlx::query_as(SQL).fetch_all(p).await?);
        Ok(rows
            .into_iter()
            .map(|(project, concurrency, base, max, interrupted)| {
                let policy = ProjectPolicy {
                    concurrency: concurrency.map(|c| usize::try_from(c).unwrap_or(0)),
                    backoff: stored_backoff(base, max),
                    interrupted_retries: interrupted.map(|n| u32::try_from(n).unwrap_or(0)),
                };
                (project, policy)
            })
            .collect())
    }

    /// The backoff for a project whose stored delays are `base`/`max` (milliseconds, as
    /// read by a query), else the queue's.
    pub(crate) fn backoff_for(&self, base: Option<i64>, max: Option<i64>) -> Backoff {
        stored_backoff(base, max).unwrap_or(self.backoff)
    }
}

fn stored_backoff(base: Option<i64>, max: Option<i64>) -> Option<Backoff> {
    let ms = |v: i64| Duration::from_millis(u64::try_from(v).unwrap_or(0));
    let base = ms(base?);
    Some(Backoff {
        base,
        max: max.map(ms).unwrap_or(base).max(base),
    })
}
