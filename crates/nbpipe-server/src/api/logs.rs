//! `GET /api/runs/{id}/log`: the container log of a run's latest attempt — live from its
//! engine while the container exists, else the `container.log` its executor kept next to
//! `run.json`. Runs of the local executor have no log of their own (their record is their
//! notebooks): an empty answer says so.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{ApiError, Shared};

/// Most lines one request returns.
pub const MAX_LOG_LINES: usize = 10_000;
/// Lines returned when the request does not say.
pub const DEFAULT_LOG_LINES: usize = 200;

/// Query of `GET /api/runs/{id}/log`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    /// The last this many lines (1 to [`MAX_LOG_LINES`]).
    #[serde(default)]
    pub lines: Option<usize>,
}

/// Answer of `GET /api/runs/{id}/log`.
#[derive(Debug, Serialize)]
pub struct LogView {
    /// The run.
    pub run_id: String,
    /// The attempt whose log this is (`null` before the first).
    pub attempt: Option<u32>,
    /// Its executor (`local`, `docker`; `null` before it was launched).
    pub executor: Option<String>,
    /// `live` (from the engine), `stored` (`container.log` in the output prefix), or `none`.
    pub source: &'static str,
    /// The last lines, oldest first.
    pub lines: Vec<String>,
}

pub(crate) async fn run_log(
    State(state): State<Shared>,
    Path(id): Path<String>,
    query: Result<Query<LogQuery>, QueryRejection>,
) -> Result<Json<LogView>, ApiError> {
    let Query(query) = query?;
    let lines = query.lines.unwrap_or(DEFAULT_LOG_LINES);
    if !(1..=MAX_LOG_LINES).contains(&lines) {
        return Err(ApiError::bad_request(format!(
            "`lines` must be between 1 and {MAX_LOG_LINES}"
        )));
    }
    load(&state, &id, lines).await.map(Json)
}

/// The last `lines` lines of run `id`'s container log (see the module's doc).
pub(crate) async fn load(state: &Shared, id: &str, lines: usize) -> Result<LogView, ApiError> {
    let id = id.to_string();
    if state.queue.get(&id).await?.is_none() {
        return Err(ApiError::not_found(format!("no run `{id}`")));
    }
    let attempts = state.queue.attempts(&id).await?;
    let last = attempts.last();
    let handle = last
        .and_then(|a| a.handle.clone())
        .and_then(|h| serde_json::from_value::<nbpipe_executor::Handle>(h).ok());
    let mut view = LogView {
        run_id: id,
        attempt: last.map(|a| a.attempt),
        executor: handle.as_ref().map(|h| h.executor.clone()),
        source: "none",
        lines: Vec::new(),
    };
    let Some(handle) = handle.filter(|h| h.executor != "local") else {
        return Ok(view);
    };
    let executors = crate::executors::Executors::default();
    if let Some(ex) = executors.by_kind(&handle.executor) {
        if let Ok(l) = ex.logs(&handle, lines).await {
            view.source = "live";
            view.lines = l;
            return Ok(view);
        }
    }
    if let Some(output) = &handle.output {
        if let Ok(loc) = nbpipe_store::Location::parse(output) {
            if let Ok(bytes) = loc.join("container.log").get().await {
                let text = String::from_utf8_lossy(&bytes);
                let all: Vec<&str> = text.lines().collect();
                let from = all.len().saturating_sub(lines);
                view.source = "stored";
                view.lines = all[from..].iter().map(|s| s.to_string()).collect();
            }
        }
    }
    Ok(view)
}
