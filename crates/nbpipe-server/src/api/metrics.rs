//! `GET /api/health` and `GET /metrics` (Prometheus text exposition format 0.0.4, written by
//! hand: a few gauges and counters do not need a metrics library).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::Shared;
use crate::queue::Status;

pub(crate) async fn health(State(state): State<Shared>) -> Response {
    match state.queue.counts().await {
        Ok(c) => Json(json!({
            "status": "ok",
            "version": env!("CARGO_PKG_VERSION"),
            "queue": state.queue.backend(),
            "runs": c,
        }))
        .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            // The API's error shape, plus `status` for probes that read only that.
            Json(json!({
                "status": "unavailable",
                "error": {"code": "queue_unavailable", "message": e.to_string()},
            })),
        )
            .into_response(),
    }
}

pub(crate) async fn metrics(State(state): State<Shared>) -> Response {
    let mut out = String::new();
    out += "# HELP nbpipe_build_info nbpipe version and queue backend.\n";
    out += "# TYPE nbpipe_build_info gauge\n";
    out += &format!(
        "nbpipe_build_info{{version=\"{}\",queue=\"{}\"}} 1\n",
        label(env!("CARGO_PKG_VERSION")),
        state.queue.backend()
    );
    out += "# HELP nbpipe_projects Configured projects.\n# TYPE nbpipe_projects gauge\n";
    out += &format!("nbpipe_projects {}\n", state.projects.all().len());
    let up = match state.queue.counts().await {
        Ok(c) => {
            out += "# HELP nbpipe_runs Runs in the queue and history, by status.\n";
            out += "# TYPE nbpipe_runs gauge\n";
            for s in Status::ALL {
                out += &format!("nbpipe_runs{{status=\"{}\"}} {}\n", s.as_str(), c.get(s));
            }
            1
        }
        Err(_) => 0,
    };
    out += "# HELP nbpipe_events_superseded_total Object events not run because a newer event \
            (higher S3 sequencer) for the same key had been taken, since this server started.\n";
    out += "# TYPE nbpipe_events_superseded_total counter\n";
    for (project, source, n) in state.intake.superseded() {
        out += &format!(
            "nbpipe_events_superseded_total{{project=\"{}\",source=\"{source}\"}} {n}\n",
            label(&project)
        );
    }
    if let Ok(c) = state.queue.delivery_counts().await {
        out += "# HELP nbpipe_notifications Run notifications (`notify:`) in the run database, \
                by status: pending (being retried), delivered, failed (given up).\n";
        out += "# TYPE nbpipe_notifications gauge\n";
        for (status, n) in [("pending", c.0), ("delivered", c.1), ("failed", c.2)] {
            out += &format!("nbpipe_notifications{{status=\"{status}\"}} {n}\n");
        }
    }
    out += "# HELP nbpipe_queue_up Whether the queue database answered.\n";
    out += "# TYPE nbpipe_queue_up gauge\n";
    out += &format!("nbpipe_queue_up {up}\n");
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

/// Escapes a label value (`\`, `"`, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
