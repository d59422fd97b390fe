//! Runs and projects as JSON: list with filters, one run with its steps, submit, cancel and
//! re-run. The views here ([`RunView`], [`StepView`], [`RunDetail`]) are also what the web UI
//! renders, so the two never disagree.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use nbpipe_project::run::manifest::{CachedFrom, StepRecord};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{ApiError, Shared};
use crate::event::{ObjectEvent, RunRequest};
use crate::queue::{AttemptRow, CancelResult, Enqueued, RunFilter, RunRow, Status};

/// Most rows one list request returns: a larger `limit` is refused (`400`), as the OpenAPI
/// document says.
pub const MAX_LIST_LIMIT: usize = 1000;

/// Largest `offset` a list request takes (the database's signed 64-bit range).
pub const MAX_LIST_OFFSET: usize = i64::MAX as usize;

/// Longest `dedup_key` of `POST /api/runs`, in characters (JSON Schema's `maxLength`).
pub const MAX_DEDUP_KEY_CHARS: usize = 1024;

/// A run as the API shows it (the manifest is left to [`RunDetail`]).
#[derive(Debug, Clone, Serialize)]
pub struct RunView {
    /// Run id.
    pub id: String,
    /// Project: its name, `name@environment` for an environment's settings.
    pub project: String,
    /// The project environment (`environments:` entry) it runs with, if any.
    pub environment: Option<String>,
    /// The commit its project files were at (from its `run.json`, once it started).
    pub commit: Option<String>,
    /// The branch of that commit (`HEAD`: detached).
    pub branch: Option<String>,
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    pub status: Status,
    /// Attempts started.
    pub attempts: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Human-readable origin (`s3 incoming/a.csv`, `api`, `rerun of … #1`).
    pub reason: String,
    /// The trigger object's URI, if any.
    pub trigger_uri: Option<String>,
    /// The trigger object, if any.
    pub trigger: Option<ObjectEvent>,
    /// Parameters over the project's defaults.
    pub parameters: Value,
    /// The run this one re-runs.
    pub rerun_of: Option<String>,
    /// Enqueued at.
    pub created_at: DateTime<Utc>,
    /// Latest attempt started at.
    pub started_at: Option<DateTime<Utc>>,
    /// Finished at.
    pub finished_at: Option<DateTime<Utc>>,
    /// Seconds from start to end (to now while running).
    pub duration_seconds: Option<f64>,
    /// The error, if it failed.
    pub error: Option<String>,
    /// A cancel was asked for while it ran.
    pub cancel_requested: bool,
    /// Output URIs.
    pub output: Vec<String>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl RunView {
    /// The view of a stored run.
    pub fn from_row(row: &RunRow) -> RunView {
        let duration_seconds = row.started_at.map(|s| {
            let end = row.finished_at.unwrap_or_else(Utc::now);
            ((end - s).num_milliseconds().max(0)) as f64 / 1000.0
        });
        let git = row.manifest.as_ref().and_then(|m| m.get("git"));
        let git_field = |k: &str| {
            git.and_then(|g| g.get(k))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        RunView {
            id: row.id.clone(),
            project: row.project.clone(),
            environment: row.environment.clone(),
            commit: git_field("commit"),
            branch: git_field("branch"),
            status: row.status,
            attempts: row.attempts,
            max_attempts: row.max_attempts,
            reason: row.reason.clone(),
            trigger_uri: row.trigger.as_ref().map(ObjectEvent::uri),
            trigger: row.trigger.clone(),
            parameters: row.parameters.clone(),
            rerun_of: row.rerun_of.clone(),
            created_at: row.created_at,
            started_at: row.started_at,
            finished_at: row.finished_at,
            duration_seconds,
            error: row.error.clone(),
            cancel_requested: row.cancel_requested,
            output: row.output.clone(),
            updated_at: row.updated_at,
        }
    }
}

/// How far a running notebook is, from its partly written output notebook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CellProgress {
    /// Code cells in the notebook.
    pub total: usize,
    /// Code cells finished (completed or failed).
    pub done: usize,
    /// 1-based index (among code cells) of the cell executing now.
    pub running: Option<usize>,
}

/// One step of a run, from its manifest.
#[derive(Debug, Clone, Serialize)]
pub struct StepView {
    /// Step id.
    pub id: String,
    /// Notebook path, relative to the project.
    pub notebook: String,
    /// `pending`, `running`, `succeeded`, `failed`, `skipped` or `cancelled`.
    pub status: String,
    /// Start of the last attempt.
    pub started: Option<String>,
    /// End.
    pub ended: Option<String>,
    /// Seconds, all attempts.
    pub duration: Option<f64>,
    /// Attempts made.
    pub attempts: u32,
    /// Failure summary.
    pub error: Option<String>,
    /// Output notebook URI.
    pub output: Option<String>,
    /// HTML report URI.
    pub html: Option<String>,
    /// Served from the cache: the earlier run.
    pub cached_from: Option<CachedFrom>,
    /// Where this server shows the step's report (`None`: nothing to show yet).
    pub report_url: Option<String>,
    /// Cell progress of a running step (when its notebook can be read).
    pub progress: Option<CellProgress>,
}

impl StepView {
    fn from_record(run_id: &str, s: &StepRecord) -> StepView {
        let has_report = s.html.is_some() || s.output.is_some();
        StepView {
            id: s.id.clone(),
            notebook: s.notebook.clone(),
            status: s.status.clone(),
            started: s.started.clone(),
            ended: s.ended.clone(),
            duration: s.duration,
            attempts: s.attempts,
            error: s.error.clone(),
            output: s.output.clone(),
            html: s.html.clone(),
            cached_from: s.cached_from.clone(),
            report_url: (has_report && super::report::valid_step_id(&s.id))
                .then(|| format!("/runs/{run_id}/steps/{}.html", s.id)),
            progress: None,
        }
    }
}

/// The steps recorded in a run's manifest (entries that do not parse are skipped).
pub fn manifest_steps(manifest: Option<&Value>) -> Vec<StepRecord> {
    manifest
        .and_then(|m| m.get("steps"))
        .and_then(Value::as_array)
        .map(|steps| {
            steps
                .iter()
                .filter_map(|s| serde_json::from_value(s.clone()).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The step views of a run; running steps get their cell progress.
pub(crate) async fn step_views(row: &RunRow) -> Vec<StepView> {
    let records = manifest_steps(row.manifest.as_ref());
    let mut out = Vec::with_capacity(records.len());
    for r in &records {
        let mut v = StepView::from_record(&row.id, r);
        if r.status == nbpipe_project::run::manifest::status::RUNNING {
            if let Some(uri) = &r.output {
                v.progress = super::report::cell_progress(uri).await;
            }
        }
        out.push(v);
    }
    out
}

/// A run with its steps and attempts.
#[derive(Debug, Clone, Serialize)]
pub struct RunDetail {
    /// The run.
    #[serde(flatten)]
    pub run: RunView,
    /// Its steps, in the project's order (empty until the runner reports a manifest).
    pub steps: Vec<StepView>,
    /// Its attempts, oldest first.
    pub attempts_history: Vec<AttemptRow>,
    /// The whole manifest (`run.json`) as last reported.
    pub manifest: Option<Value>,
    /// Its notifications (`notify:`), oldest first: each target's delivery of each event,
    /// with attempts and the last error.
    pub notifications: Vec<crate::queue::DeliveryRow>,
}

impl RunDetail {
    /// Loads run `id` (`None`: no such run).
    pub async fn load(state: &super::AppState, id: &str) -> Result<Option<RunDetail>, ApiError> {
        let Some(row) = state.queue.get(id).await? else {
            return Ok(None);
        };
        let attempts_history = state.queue.attempts(id).await?;
        let notifications = state.queue.deliveries(id).await?;
        Ok(Some(RunDetail {
            run: RunView::from_row(&row),
            steps: step_views(&row).await,
            attempts_history,
            manifest: row.manifest.clone(),
            notifications,
        }))
    }
}

/// Query of `GET /api/runs`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only this project.
    pub project: Option<String>,
    /// Only runs of this project environment.
    pub environment: Option<String>,
    /// Only these statuses, comma-separated.
    pub status: Option<String>,
    /// The trigger URI contains this.
    pub q: Option<String>,
    /// At most this many (default 100, 1 to [`MAX_LIST_LIMIT`]).
    pub limit: Option<usize>,
    /// Skip this many (at most [`MAX_LIST_OFFSET`]).
    pub offset: Option<usize>,
}

impl ListQuery {
    /// The queue filter for this query. `status` is absent (any status) or statuses separated
    /// by commas, each exactly one of [`Status::ALL`] (so `status=` is refused: the UI's "any"
    /// leaves it out); `limit` is 1 to [`MAX_LIST_LIMIT`]; anything else is `400`.
    pub fn filter(&self) -> Result<RunFilter, ApiError> {
        let mut status = Vec::new();
        if let Some(list) = self.status.as_deref() {
            for s in list.split(',') {
                status.push(s.parse::<Status>().map_err(ApiError::bad_request)?);
            }
        }
        let limit = self.limit.unwrap_or(100);
        if !(1..=MAX_LIST_LIMIT).contains(&limit) {
            return Err(ApiError::bad_request(format!(
                "`limit` must be 1 to {MAX_LIST_LIMIT}, not {limit}"
            )));
        }
        let offset = self.offset.unwrap_or(0);
        if offset > MAX_LIST_OFFSET {
            return Err(ApiError::bad_request(format!(
                "`offset` must be at most {MAX_LIST_OFFSET}"
            )));
        }
        let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
        Ok(RunFilter {
            project: nonempty(&self.project),
            environment: nonempty(&self.environment),
            status,
            trigger_contains: nonempty(&self.q),
            limit: Some(limit),
            offset,
            ..RunFilter::default()
        })
    }
}

pub(crate) async fn list(
    State(state): State<Shared>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query?;
    let rows = state.queue.list(&query.filter()?).await?;
    let runs: Vec<RunView> = rows.iter().map(RunView::from_row).collect();
    Ok(Json(json!({"runs": runs})))
}

pub(crate) async fn detail(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<RunDetail>, ApiError> {
    RunDetail::load(&state, &id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no run `{id}`")))
}

/// Body of `POST /api/runs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitBody {
    /// Project to run.
    pub project: String,
    /// Parameters over the project's defaults (a JSON object).
    #[serde(default)]
    pub parameters: Option<Value>,
    /// Idempotency key: a second submit with the same key returns the first run.
    #[serde(default)]
    pub dedup_key: Option<String>,
}

pub(crate) async fn submit(
    State(state): State<Shared>,
    body: Result<Json<SubmitBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    let project = state
        .project(&body.project)
        .ok_or_else(|| ApiError::not_found(format!("no project `{}`", body.project)))?;
    let parameters = match body.parameters {
        None | Some(Value::Null) => json!({}),
        Some(Value::Object(m)) => Value::Object(m),
        Some(_) => return Err(ApiError::bad_request("`parameters` must be a JSON object")),
    };
    if let Value::Object(m) = &parameters {
        super::validate::check(&project.steps, m).await?;
    }
    if let Some(k) = &body.dedup_key {
        if k.is_empty() || k.chars().count() > MAX_DEDUP_KEY_CHARS {
            return Err(ApiError::bad_request(format!(
                "`dedup_key` must be 1 to {MAX_DEDUP_KEY_CHARS} characters"
            )));
        }
    }
    let req = RunRequest {
        project: project.name.clone(),
        trigger: None,
        parameters,
        dedup_key: body.dedup_key.map(|k| format!("api\u{0}{k}")),
        reason: "api".to_string(),
    };
    let (status, id, duplicate) = match state.queue.enqueue(&req, project.max_attempts).await? {
        Enqueued::New(id) => (StatusCode::CREATED, id, false),
        Enqueued::Duplicate(id) => (StatusCode::OK, id, true),
        // Only object events are ordered; an API request has no trigger event.
        Enqueued::Superseded { newer_run, .. } => (StatusCode::OK, newer_run, true),
    };
    let location = format!("/api/runs/{id}");
    Ok((
        status,
        [(header::LOCATION, location)],
        Json(json!({"id": id, "duplicate": duplicate})),
    )
        .into_response())
}

pub(crate) async fn cancel(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    match state.queue.cancel(&id).await? {
        CancelResult::Cancelled => Ok(Json(json!({"id": id, "result": "cancelled"}))),
        CancelResult::Requested => Ok(Json(json!({"id": id, "result": "requested"}))),
        CancelResult::AlreadyFinished(s) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_finished",
            format!("run `{id}` already finished: {s}"),
        )),
        CancelResult::NotFound => Err(ApiError::not_found(format!("no run `{id}`"))),
    }
}

pub(crate) async fn rerun(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    // The notebooks may have changed since: a re-run they can no longer take is refused
    // like a new submission.
    if let Some(run) = state.queue.get(&id).await? {
        if let (Some(project), Value::Object(m)) = (state.project(&run.project), &run.parameters) {
            super::validate::check(&project.steps, m).await?;
        }
    }
    let new = state.queue.rerun(&id).await?;
    let location = format!("/api/runs/{new}");
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(json!({"id": new, "rerun_of": id})),
    )
        .into_response())
}

pub(crate) async fn projects(State(state): State<Shared>) -> Json<Value> {
    Json(json!({"projects": state.projects.all()}))
}

/// Query of `GET /api/revisions`.
#[derive(Debug, Default, Deserialize)]
pub struct RevisionsQuery {
    /// Only this project (its key, `name@environment`).
    pub project: Option<String>,
    /// At most this many (default 100, 1 to [`MAX_LIST_LIMIT`]).
    pub limit: Option<usize>,
}

/// `GET /api/revisions`: the commits the server saw for each project environment it serves
/// from git, newest first — serving, refused (with the error) or superseded.
pub(crate) async fn revisions(
    State(state): State<Shared>,
    query: Result<Query<RevisionsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_LIST_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "`limit` must be 1 to {MAX_LIST_LIMIT}, not {limit}"
        )));
    }
    let project = query.project.as_deref().filter(|p| !p.is_empty());
    let rows = state.queue.revisions(project, limit).await?;
    Ok(Json(json!({"revisions": rows})))
}
