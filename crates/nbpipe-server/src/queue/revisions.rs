//! Each served environment's revision history (git-ops): every commit the server saw for a
//! project environment, whether it serves it, was refused (and why) or was superseded.
//! Stored in the run database so every server sharing it, the API and the UI see one history.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::db::{now_ms, to_time, with_pool};
use super::{Queue, QueueError};

/// One commit of one project environment, as the server dealt with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionRow {
    /// The project's key (`sales@staging`).
    pub project: String,
    /// The environment, if any.
    pub environment: Option<String>,
    /// The commit.
    pub commit: String,
    /// The branch it was the tip of.
    pub branch: String,
    /// `serving`, `refused` or `superseded`.
    pub status: String,
    /// Why it was refused.
    pub error: Option<String>,
    /// When the server first saw it.
    pub created_at: DateTime<Utc>,
    /// Its last change of status.
    pub updated_at: DateTime<Utc>,
}

impl Queue {
    /// Records `commit` of `project` with `status` (`serving` marks the project's previous
    /// serving revision `superseded`).
    pub async fn record_revision(
        &self,
        project: &str,
        environment: Option<&str>,
        commit: &str,
        branch: &str,
        status: &str,
        error: Option<&str>,
    ) -> Result<(), QueueError> {
        let now = now_ms();
        with_pool!(&self.db, p => {
            if status == "serving" {
                sqlx::query(
                    "UPDATE revisions SET status = 'superseded', updated_at = $1 \
                     WHERE project = $2 AND status = 'serving' AND commit_sha <> $3",
                )
                .bind(now)
                .bind(project)
                .bind(commit)
                .execute(p)
                .await?;
            }
            sqlx::query(
                "INSERT INTO revisions (project, environment, commit_sha, branch, status, error, \
                 created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
                 ON CONFLICT (project, commit_sha) DO UPDATE SET status = $5, error = $6, \
                 branch = $4, updated_at = $7",
            )
            .bind(project)
            .bind(environment)
            .bind(commit)
            .bind(branch)
            .bind(status)
            .bind(error)
            .bind(now)
            .execute(p)
            .await?;
        });
        Ok(())
    }

    /// The revisions of `project` (every project when `None`), newest first.
    pub async fn revisions(
        &self,
        project: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RevisionRow>, QueueError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = "SELECT project, environment, commit_sha, branch, status, error, created_at, \
                   updated_at FROM revisions WHERE ($1 IS NULL OR project = $1) \
                   ORDER BY updated_at DESC, created_at DESC LIMIT $2";
        let rows = with_pool!(&self.db, p => {
            let rows = sqlx::query(sql).bind(project).bind(limit).fetch_all(p).await?;
            rows.iter()
                .map(|r| -> Result<RevisionRow, sqlx::Error> {
                    Ok(RevisionRow {
                        project: r.try_get("project")?,
                        environment: r.try_get("environment")?,
                        commit: r.try_get("commit_sha")?,
                        branch: r.try_get("branch")?,
                        status: r.try_get("status")?,
                        error: r.try_get("error")?,
                        created_at: to_time(r.try_get("created_at")?),
                        updated_at: to_time(r.try_get("updated_at")?),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?
        });
        Ok(rows)
    }
}
