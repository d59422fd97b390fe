//! `GET /api/runs/{id}/events`: live progress as server-sent events.
//!
//! The stream polls the queue every [`POLL_INTERVAL`](super::POLL_INTERVAL) and sends a `run`
//! event (a [`Snapshot`] as JSON) whenever the run's status, steps or a running step's cell
//! progress changed; the first one goes out at once. When the run has finished it sends the
//! final `run` event, then `end`, and closes (clients should stop reconnecting on `end`). A
//! queue error is sent as an `error` event and polling goes on; server shutdown ends the
//! stream.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Extension;
use futures::Stream;
use serde::Serialize;
use tokio::sync::watch;

use super::runs::{manifest_steps, CellProgress};
use super::{ApiError, Shared};
use crate::queue::{Queue, RunRow, Status};

/// Set by [`super::serve`] when the server shuts down.
#[derive(Clone)]
pub(crate) struct Shutdown(pub watch::Receiver<bool>);

/// What one `run` event carries.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    /// Run id.
    pub id: String,
    /// Run status.
    pub status: Status,
    /// Attempts started.
    pub attempts: u32,
    /// A cancel was requested.
    pub cancel_requested: bool,
    /// The run's error.
    pub error: Option<String>,
    /// Steps as the manifest has them.
    pub steps: Vec<StepSnapshot>,
}

/// One step in a [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepSnapshot {
    /// Step id.
    pub id: String,
    /// Step status.
    pub status: String,
    /// Seconds, when finished.
    pub duration: Option<f64>,
    /// Attempts made.
    pub attempts: u32,
    /// Failure summary.
    pub error: Option<String>,
    /// Cell progress of a running step.
    pub progress: Option<CellProgress>,
}

struct Poller {
    queue: Queue,
    id: String,
    last: Option<Snapshot>,
    first: bool,
    done: bool,
    notebooks: HashMap<String, (nbpipe_store::ObjectInfo, Option<CellProgress>)>,
    shutdown: Option<watch::Receiver<bool>>,
}

impl Poller {
    async fn snapshot(&mut self, row: &RunRow) -> Snapshot {
        let mut steps = Vec::new();
        for s in manifest_steps(row.manifest.as_ref()) {
            let progress = match (&s.output, s.status.as_str()) {
                (Some(uri), nbpipe_project::run::manifest::status::RUNNING) => {
                    super::report::cell_progress_cached(uri, &mut self.notebooks).await
                }
                _ => None,
            };
            steps.push(StepSnapshot {
                id: s.id,
                status: s.status,
                duration: s.duration,
                attempts: s.attempts,
                error: s.error,
                progress,
            });
        }
        Snapshot {
            id: row.id.clone(),
            status: row.status,
            attempts: row.attempts,
            cancel_requested: row.cancel_requested,
            error: row.error.clone(),
            steps,
        }
    }

    /// Waits one interval (not before the first poll); `false` when shutting down.
    async fn wait(&mut self) -> bool {
        if std::mem::take(&mut self.first) {
            return true;
        }
        let sleep = tokio::time::sleep(super::POLL_INTERVAL);
        match &mut self.shutdown {
            Some(rx) if *rx.borrow() => false,
            Some(rx) => tokio::select! {
                _ = sleep => true,
                _ = rx.changed() => false,
            },
            None => {
                sleep.await;
                true
            }
        }
    }

    /// The next event to send; `None` ends the stream.
    async fn next(&mut self) -> Option<Event> {
        if self.done {
            return None;
        }
        loop {
            if !self.wait().await {
                return None;
            }
            match self.queue.get(&self.id).await {
                Ok(Some(row)) => {
                    let snap = self.snapshot(&row).await;
                    let finished = row.status.is_finished();
                    if self.last.as_ref() != Some(&snap) {
                        let ev = Event::default()
                            .event("run")
                            .json_data(&snap)
                            .unwrap_or_else(|_| Event::default().event("run"));
                        self.last = Some(snap);
                        if finished {
                            // Send this one, then `end`.
                            self.first = true;
                        }
                        return Some(ev);
                    }
                    if finished {
                        self.done = true;
                        return Some(Event::default().event("end").data(row.status.as_str()));
                    }
                }
                Ok(None) => {
                    self.done = true;
                    return Some(Event::default().event("end").data("gone"));
                }
                Err(e) => {
                    // Keep polling: the database may come back.
                    return Some(Event::default().event("error").data(e.to_string()));
                }
            }
        }
    }
}

pub(crate) async fn run_events(
    State(state): State<Shared>,
    Path(id): Path<String>,
    shutdown: Option<Extension<Shutdown>>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    if state.queue.get(&id).await?.is_none() {
        return Err(ApiError::not_found(format!("no run `{id}`")));
    }
    let poller = Poller {
        queue: state.queue.clone(),
        id,
        last: None,
        first: true,
        done: false,
        notebooks: HashMap::new(),
        shutdown: shutdown.map(|Extension(s)| s.0),
    };
    let stream = futures::stream::unfold(poller, |mut p| async move {
        p.next().await.map(|ev| (Ok(ev), p))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
