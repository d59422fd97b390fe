//! Reading run history (get, list with filters, attempts, counts), live manifest updates
//! from the runner, and the small key/value table where triggers keep their cursors.

use serde_json::Value;

use super::db::{attempt_from_row, esc, now_ms, run_from_row, unesc, with_pool, Db, RUN_COLUMNS};
use super::types::{AttemptRow, Counts, RunFilter, RunRow, Status};
use super::{Queue, QueueError};

/// Rows returned by [`Queue::list`] when the filter sets no limit.
const DEFAULT_LIST_LIMIT: usize = 100;

/// A value bound to a dynamically built query.
enum Bind {
    Int(i64),
    Text(String),
}

impl Queue {
    /// One run, with its manifest (steps) as last reported.
    pub async fn get(&self, run_id: &str) -> Result<Option<RunRow>, QueueError> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1");
        with_pool!(&self.db, p => {
            let row = sqlx::query(&sql).bind(run_id).fetch_optional(p).await?;
            row.as_ref().map(run_from_row).transpose()
        })
    }

    /// The attempts of a run, oldest first (who ran it, when, how it ended).
    pub async fn attempts(&self, run_id: &str) -> Result<Vec<AttemptRow>, QueueError> {
        const SQL: &str = "SELECT attempt, worker, started_at, finished_at, outcome, error, \
             handle FROM run_attempts WHERE run_id = $1 ORDER BY attempt";
        with_pool!(&self.db, p => {
            let rows = sqlx::query(SQL).bind(run_id).fetch_all(p).await?;
            rows.iter().map(attempt_from_row).collect()
        })
    }

    /// Runs matching `filter`, newest first.
    pub async fn list(&self, filter: &RunFilter) -> Result<Vec<RunRow>, QueueError> {
        let mut sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE 1 = 1");
        let mut binds = Vec::new();
        fn arg(binds: &mut Vec<Bind>, b: Bind) -> String {
            binds.push(b);
            format!("${}", binds.len())
        }
        if let Some(project) = &filter.project {
            let a = arg(&mut binds, Bind::Text(project.clone()));
            sql += &format!(" AND project = {a}");
        }
        if let Some(env) = &filter.environment {
            let a = arg(&mut binds, Bind::Text(env.clone()));
            sql += &format!(" AND environment = {a}");
        }
        if !filter.status.is_empty() {
            let list: Vec<String> = filter
                .status
                .iter()
                .map(|s| arg(&mut binds, Bind::Text(s.as_str().to_string())))
                .collect();
            sql += &format!(" AND status IN ({})", list.join(", "));
        }
        if let Some(since) = filter.since {
            let a = arg(&mut binds, Bind::Int(since.timestamp_millis()));
            sql += &format!(" AND created_at >= {a}");
        }
        if let Some(until) = filter.until {
            let a = arg(&mut binds, Bind::Int(until.timestamp_millis()));
            sql += &format!(" AND created_at < {a}");
        }
        if let Some(needle) = &filter.trigger_contains {
            let a = arg(&mut binds, Bind::Text(needle.clone()));
            let find = match self.db {
                Db::Sqlite(_) => "instr",
                Db::Postgres(_) => "strpos",
            };
            sql += &format!(" AND {find}(trigger_uri, {a}) > 0");
        }
        let limit = filter.limit.unwrap_or(DEFAULT_LIST_LIMIT);
        let a = arg(
            &mut binds,
            Bind::Int(i64::try_from(limit).unwrap_or(i64::MAX)),
        );
        let b = arg(
            &mut binds,
            Bind::Int(i64::try_from(filter.offset).unwrap_or(i64::MAX)),
        );
        sql += &format!(" ORDER BY seq DESC LIMIT {a} OFFSET {b}");
        with_pool!(&self.db, p => {
            let mut q = sqlx::query(&sql);
            for b in &binds {
                q = match b {
                    Bind::Int(v) => q.bind(*v),
                    Bind::Text(s) => q.bind(s.as_str()),
                };
            }
            let rows = q.fetch_all(p).await?;
            rows.iter().map(run_from_row).collect()
        })
    }

    /// Stores the runner's current manifest (live step progress) on a run that `worker` is
    /// running. Once the run has finished (its final manifest written by [`Queue::finish`])
    /// or is no longer leased to `worker`, nothing is written ([`QueueError::LeaseLost`]): a
    /// late progress update can never overwrite the final state.
    pub async fn update_manifest(
        &self,
        run_id: &str,
        worker: &str,
        manifest: &Value,
    ) -> Result<(), QueueError> {
        let text = serde_json::to_string(manifest)?;
        let n = with_pool!(&self.db, p => {
            sqlx::query(
                "UPDATE runs SET manifest = $2, updated_at = $3 \
                 WHERE id = $1 AND status = 'running' AND lease_owner = $4",
            )
            .bind(run_id)
            .bind(&text)
            .bind(now_ms())
            .bind(worker)
            .execute(p)
            .await?
            .rows_affected()
        });
        if n == 0 {
            return Err(self.lease_lost(run_id, worker).await);
        }
        Ok(())
    }

    /// Number of runs in each status (for metrics).
    pub async fn counts(&self) -> Result<Counts, QueueError> {
        let rows: Vec<(String, i64)> = with_pool!(&self.db, p => {
            sqlx::query_as("SELECT status, COUNT(*) FROM runs GROUP BY status")
                .fetch_all(p)
                .await?
        });
        let mut counts = Counts::default();
        for (status, n) in rows {
            let status: Status = status.parse().map_err(QueueError::Corrupt)?;
            counts.set(status, u64::try_from(n).unwrap_or_default());
        }
        Ok(counts)
    }

    /// A trigger cursor (e.g. the last key a poller listed), if set.
    pub async fn cursor_get(&self, name: &str) -> Result<Option<String>, QueueError> {
        let name = esc(name);
        let value: Option<String> = with_pool!(&self.db, p => {
            sqlx::query_scalar("SELECT value FROM cursors WHERE name = $1")
                .bind(&name)
                .fetch_optional(p)
                .await?
        });
        Ok(value.map(|v| unesc(&v)))
    }

    /// Sets a trigger cursor (insert or replace, durable when this returns).
    pub async fn cursor_set(&self, name: &str, value: &str) -> Result<(), QueueError> {
        let (name, value) = (esc(name), esc(value));
        with_pool!(&self.db, p => {
            sqlx::query(
                "INSERT INTO cursors (name, value, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value, \
                 updated_at = excluded.updated_at",
            )
            .bind(&name)
            .bind(&value)
            .bind(now_ms())
            .execute(p)
            .await?
            .rows_affected()
        });
        Ok(())
    }
}
