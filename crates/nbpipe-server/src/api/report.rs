//! `GET /runs/{id}/steps/{step}.html`: a step's HTML report, isolated from the UI origin.
//!
//! The step must match `[A-Za-z0-9_.-]+` and be a step of the run's manifest; what is read is
//! the URI the runner recorded there, never a path from the request. A finished step serves
//! its `{step}.html`; a running one (the runner writes HTML only at the end) renders its
//! partly written `{step}.ipynb` on the fly, so the same URL shows live progress.
//!
//! Every report goes out with [`REPORT_CSP`], whose `sandbox allow-scripts` gives the page an
//! opaque origin even when opened directly, so a hostile notebook's script cannot read or
//! script the UI, its storage or its cookies.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use nbpipe_notebook::CellType;
use nbpipe_project::run::manifest::status;
use nbpipe_store::{Location, ObjectInfo};

use super::runs::{manifest_steps, CellProgress};
use super::{ApiError, Shared};

/// The Content-Security-Policy of a report.
///
/// - `sandbox allow-scripts`: an opaque origin; scripts run (interactive outputs, MathJax,
///   the frames' height messages) but cannot reach the UI origin, submit forms, open popups
///   or navigate the top page.
/// - inline CSS and scripts (the report is one self-contained file), `data:` images and
///   fonts, https images (markdown links to images load as in Jupyter), MathJax from its CDN;
///   the `srcdoc` frames of HTML outputs inherit this policy.
/// - `connect-src 'none'`, `form-action 'none'`, `base-uri 'none'`: a report cannot talk to
///   the API or anywhere else; `frame-ancestors 'self'`: only the UI may frame it.
pub const REPORT_CSP: &str = "sandbox allow-scripts; default-src 'none'; \
     script-src 'unsafe-inline' https://cdn.jsdelivr.net; \
     style-src 'unsafe-inline'; img-src data: https:; font-src data: https://cdn.jsdelivr.net; \
     frame-src 'self' data:; connect-src 'none'; form-action 'none'; base-uri 'none'; \
     frame-ancestors 'self'";

/// Whether `id` is a step id this route serves: `[A-Za-z0-9_.-]+`, not `.` or `..`, at most
/// 200 bytes.
pub fn valid_step_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

pub(crate) async fn step_report(
    State(state): State<Shared>,
    Path((id, file)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let step_id = file
        .strip_suffix(".html")
        .filter(|s| valid_step_id(s))
        .ok_or_else(|| ApiError::not_found("a report is `/runs/{id}/steps/{step}.html`"))?;
    let row = state
        .queue
        .get(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no run `{id}`")))?;
    let steps = manifest_steps(row.manifest.as_ref());
    let step = steps
        .iter()
        .find(|s| s.id == step_id)
        .ok_or_else(|| ApiError::not_found(format!("run `{id}` has no step `{step_id}`")))?;

    let live = step.status == status::RUNNING || step.html.is_none();
    let html = match (&step.html, &step.output) {
        (_, Some(output)) if live => render_live(output, step_id).await?,
        (Some(html), _) => {
            let bytes = read(html).await?;
            String::from_utf8_lossy(&bytes).into_owned()
        }
        // A step that never started (skipped, cancelled or failed before its notebook was
        // written, or still pending) has nothing to show: say so in a page, which is what the
        // UI's report frame displays, never a raw JSON error.
        _ => {
            let mut resp =
                report_response(no_report_page(step_id, &step.status, step.error.as_deref()));
            *resp.status_mut() = StatusCode::NOT_FOUND;
            return Ok(resp);
        }
    };
    Ok(report_response(html))
}

/// The page for a step without a report: why there is none.
fn no_report_page(step_id: &str, step_status: &str, error: Option<&str>) -> String {
    let esc = crate::ui::esc;
    let why = match (step_status, error) {
        (status::PENDING, _) => "has not started yet".to_string(),
        (_, Some(e)) if !e.is_empty() => format!("never started: {e}"),
        (s, _) => format!("never started: it is {s}"),
    };
    format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>No report: {step}</title>\
         <style>body{{font:15px/1.5 system-ui,sans-serif;margin:2rem;color:#333}}\
         code{{background:#f2f2f2;padding:0 .2em}}</style></head><body>\
         <h1>No report</h1><p>Step <code>{step}</code> {why}.</p></body></html>",
        step = esc(step_id),
        why = esc(why.trim_end_matches('.')),
    )
}

/// A report page with its isolating headers.
pub(crate) fn report_response(html: String) -> Response {
    let mut resp = (StatusCode::OK, html).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(REPORT_CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Reads a URI recorded by the runner (never stdin).
async fn read(uri: &str) -> Result<Vec<u8>, ApiError> {
    let loc = location(uri)
        .ok_or_else(|| ApiError::not_found("the report's location is not readable"))?;
    loc.get().await.map_err(|e| {
        if e.is_not_found() {
            ApiError::not_found("the report is not there (yet)")
        } else {
            ApiError::new(StatusCode::BAD_GATEWAY, "store", e.to_string())
        }
    })
}

fn location(uri: &str) -> Option<Location> {
    match Location::parse(uri).ok()? {
        Location::Stdio => None,
        loc => Some(loc),
    }
}

async fn render_live(output: &str, step_id: &str) -> Result<String, ApiError> {
    let bytes = read(output).await?;
    let title = format!("{step_id} (running)");
    tokio::task::spawn_blocking(move || {
        let nb = nbpipe_notebook::read(&bytes)
            .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, "notebook", e.to_string()))?;
        let opts = nbpipe_render::RenderOptions {
            title: Some(title),
            ..Default::default()
        };
        Ok(nbpipe_render::render(&nb, &opts))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
}

/// Cell progress of the notebook at `uri` (`None` when it cannot be read yet).
pub(crate) async fn cell_progress(uri: &str) -> Option<CellProgress> {
    let bytes = location(uri)?.get().await.ok()?;
    progress_of(&bytes)
}

/// Like [`cell_progress`], re-reading the notebook only when its size or time changed.
pub(crate) async fn cell_progress_cached(
    uri: &str,
    cache: &mut HashMap<String, (ObjectInfo, Option<CellProgress>)>,
) -> Option<CellProgress> {
    let loc = location(uri)?;
    let info = loc.head().await.ok()??;
    if let Some((seen, p)) = cache.get(uri) {
        if *seen == info {
            return p.clone();
        }
    }
    let p = progress_of(&loc.get().await.ok()?);
    cache.insert(uri.to_string(), (info, p.clone()));
    p
}

fn progress_of(bytes: &[u8]) -> Option<CellProgress> {
    let nb = nbpipe_notebook::read(bytes).ok()?;
    let mut p = CellProgress {
        total: 0,
        done: 0,
        running: None,
    };
    for cell in nb.cells.iter().filter(|c| c.cell_type == CellType::Code) {
        p.total += 1;
        let st = cell
            .metadata
            .get("papermill")
            .and_then(|m| m.get("status"))
            .and_then(|s| s.as_str());
        match st {
            Some("completed") | Some("failed") => p.done += 1,
            Some("running") if p.running.is_none() => p.running = Some(p.total),
            _ => {}
        }
    }
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_ids_are_names_not_paths() {
        for ok in ["clean", "step_1", "a.b-c", "..a"] {
            assert!(valid_step_id(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "../x",
            "a\\b",
            "a b",
            "é",
            "a%2Fb",
            &"x".repeat(201),
        ] {
            assert!(!valid_step_id(bad), "{bad}");
        }
    }

    #[test]
    fn progress_counts_papermill_cell_statuses() {
        let nb = br##"{"cells":[
          {"cell_type":"markdown","metadata":{},"source":"# t"},
          {"cell_type":"code","metadata":{"papermill":{"status":"completed"}},"source":"1","outputs":[],"execution_count":1},
          {"cell_type":"code","metadata":{"papermill":{"status":"running"}},"source":"2","outputs":[],"execution_count":null},
          {"cell_type":"code","metadata":{"papermill":{"status":"pending"}},"source":"3","outputs":[],"execution_count":null}
        ],"metadata":{},"nbformat":4,"nbformat_minor":5}"##;
        let p = progress_of(nb).unwrap();
        assert_eq!(
            p,
            CellProgress {
                total: 3,
                done: 1,
                running: Some(2)
            }
        );
    }
}
