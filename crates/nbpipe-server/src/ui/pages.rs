//! The three pages: runs list, run detail, projects (with each project's run policy). Plain `format!` with [`esc`] on every
//! value; the markup carries `data-*` attributes that `app.js` reads (run id, status, the
//! selected step) and that tests assert on.

use std::fmt::Write;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{esc, fmt_duration, page_response, url_part};
use crate::api::runs::{ListQuery, RunDetail, RunView, StepView};
use crate::api::Shared;
use crate::policy::{EffectivePolicy, Source};
use crate::queue::Status;

/// The page skeleton: header with navigation and the token form, then `body`.
pub(crate) fn layout(title: &str, current: &str, token_required: bool, body: &str) -> String {
    let nav = |href: &str, name: &str, key: &str| {
        let cur = if key == current {
            " aria-current=\"page\""
        } else {
            ""
        };
        format!("<a href=\"{href}\"{cur}>{name}</a>")
    };
    let token_form = if token_required {
        "<form id=\"token-form\" class=\"token\" autocomplete=\"off\">\
         <label for=\"token\">API token</label> \
         <input id=\"token\" type=\"password\" placeholder=\"needed to change runs\"> \
         <button type=\"submit\">Save</button> <span id=\"token-state\" role=\"status\"></span>\
         </form>"
    } else {
        ""
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · nbpipe</title><link rel=\"stylesheet\" href=\"/ui/app.css\">\
         <script src=\"/ui/app.js\" defer></script></head>\
         <body data-auth=\"{auth}\"><header><span class=\"brand\">nbpipe</span><nav>{runs}{projects}\
         <a href=\"/api/openapi.json\">API</a></nav>{token_form}</header>\
         <p id=\"flash\" role=\"alert\" hidden></p><main>{body}</main></body></html>\n",
        title = esc(title),
        auth = if token_required { "token" } else { "open" },
        runs = nav("/", "Runs", "runs"),
        projects = nav("/projects", "Projects", "projects"),
    )
}

/// A status badge: the word is always shown, colour only repeats it.
pub(crate) fn badge(status: &str) -> String {
    let symbol = match status {
        "succeeded" => "✓",
        "failed" => "✗",
        "running" => "▶",
        "queued" | "pending" => "…",
        "cancelled" => "■",
        "skipped" => "↷",
        _ => "",
    };
    format!(
        "<span class=\"badge st-{s}\" data-status=\"{s}\"><span aria-hidden=\"true\">{symbol}</span> {s}</span>",
        s = esc(status)
    )
}

fn opt_duration(d: Option<f64>) -> String {
    d.map(fmt_duration).unwrap_or_else(|| "—".into())
}

fn trigger_cell(r: &RunView) -> String {
    match &r.trigger_uri {
        Some(uri) => format!("<code>{}</code>", esc(uri)),
        None => esc(&r.reason),
    }
}

fn time(t: &chrono::DateTime<chrono::Utc>) -> String {
    format!(
        "<time datetime=\"{}\">{}</time>",
        t.to_rfc3339(),
        t.format("%Y-%m-%d %H:%M:%S UTC")
    )
}

pub(crate) async fn runs_page(
    State(state): State<Shared>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let query = match query {
        // The filter form sends `status=` for "any".
        Ok(Query(mut q)) => {
            q.status = q.status.filter(|s| !s.is_empty());
            q
        }
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                page_response(super::error_page(StatusCode::BAD_REQUEST, &e.body_text())),
            )
                .into_response()
        }
    };
    let filter = match query.filter() {
        Ok(f) => f,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                page_response(super::error_page(StatusCode::BAD_REQUEST, &e.message)),
            )
                .into_response()
        }
    };
    let rows = match state.queue.list(&filter).await {
        Ok(rows) => rows,
        Err(e) => {
            let body = format!(
                "<h1>Runs</h1><p class=\"error\">The queue is unavailable: {}</p>",
                esc(&e.to_string())
            );
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                page_response(layout("Runs", "runs", state.token.is_some(), &body)),
            )
                .into_response();
        }
    };
    let mut b = String::from("<h1>Runs</h1>");
    // Filters.
    let sel_project = query.project.clone().unwrap_or_default();
    let sel_status = query.status.clone().unwrap_or_default();
    b += "<form class=\"filters\" method=\"get\" action=\"/\"><label>Project <select name=\"project\"><option value=\"\">any</option>";
    for p in &state.projects.all() {
        let sel = if p.name == sel_project {
            " selected"
        } else {
            ""
        };
        let _ = write!(
            b,
            "<option value=\"{n}\"{sel}>{n}</option>",
            n = esc(&p.name)
        );
    }
    b += "</select></label> <label>Status <select name=\"status\"><option value=\"\">any</option>";
    for s in Status::ALL {
        let sel = if s.as_str() == sel_status {
            " selected"
        } else {
            ""
        };
        let _ = write!(b, "<option value=\"{s}\"{sel}>{s}</option>", s = s.as_str());
    }
    // Environments, when any project is served with one.
    let mut envs: Vec<String> = state
        .projects
        .all()
        .into_iter()
        .filter_map(|p| p.environment)
        .collect();
    envs.sort();
    envs.dedup();
    let sel_env = query.environment.clone().unwrap_or_default();
    if !envs.is_empty() || !sel_env.is_empty() {
        b += "</select></label> <label>Environment <select name=\"environment\"><option value=\"\">any</option>";
        for e in &envs {
            let sel = if *e == sel_env { " selected" } else { "" };
            let _ = write!(b, "<option value=\"{e}\"{sel}>{e}</option>", e = esc(e));
        }
    }
    let _ = write!(
        b,
        "</select></label> <label>Trigger contains <input name=\"q\" value=\"{}\"></label> \
         <button type=\"submit\">Filter</button> <a href=\"/\">clear</a></form>",
        esc(query.q.as_deref().unwrap_or(""))
    );
    if rows.is_empty() {
        b += "<p class=\"empty\" id=\"no-runs\">No runs match.</p>";
    } else {
        b += "<table class=\"runs\" id=\"runs\"><thead><tr><th>Run</th><th>Project</th><th>Status</th>\
              <th>Trigger</th><th>Created</th><th>Duration</th><th>Attempts</th></tr></thead><tbody>";
        for row in &rows {
            let r = RunView::from_row(row);
            let _ = write!(
                b,
                "<tr data-run-id=\"{id}\" data-status=\"{st}\"><td><a href=\"/runs/{idu}\"><code>{id}</code></a></td>\
                 <td><a href=\"/?project={pu}\">{p}</a></td><td>{badge}</td><td>{trigger}</td><td>{created}</td>\
                 <td>{dur}</td><td>{a}/{m}</td></tr>",
                id = esc(&r.id),
                idu = url_part(&r.id),
                st = r.status,
                p = esc(&r.project),
                pu = url_part(&r.project),
                badge = badge(r.status.as_str()),
                trigger = trigger_cell(&r),
                created = time(&r.created_at),
                dur = opt_duration(r.duration_seconds),
                a = r.attempts,
                m = r.max_attempts,
            );
        }
        b += "</tbody></table>";
    }
    let live = rows.iter().any(|r| !r.status.is_finished());
    let body = format!("<div id=\"runs-page\" data-live=\"{live}\">{b}</div>");
    page_response(layout("Runs", "runs", state.token.is_some(), &body))
}

/// Query of the run page.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RunQuery {
    step: Option<String>,
}

/// The step whose report is shown: the one asked for, else the running one, else the last
/// one with a report.
fn selected_step<'a>(steps: &'a [StepView], asked: Option<&str>) -> Option<&'a StepView> {
    if let Some(s) = asked.and_then(|a| steps.iter().find(|s| s.id == a)) {
        return Some(s);
    }
    steps
        .iter()
        .find(|s| s.status == "running" && s.report_url.is_some())
        .or_else(|| steps.iter().rev().find(|s| s.report_url.is_some()))
}

fn progress_text(s: &StepView) -> String {
    match &s.progress {
        Some(p) => match p.running {
            Some(n) => format!("cell {n} of {}", p.total),
            None => format!("{} of {} cells", p.done, p.total),
        },
        None => String::new(),
    }
}

pub(crate) async fn run_page(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Query(query): Query<RunQuery>,
) -> Response {
    let token = state.token.is_some();
    let detail = match RunDetail::load(&state, &id).await {
        Ok(Some(d)) => d,
        Ok(None) => {
            return (
                StatusCode::NOT_FOUND,
                page_response(super::error_page(
                    StatusCode::NOT_FOUND,
                    &format!("No run `{id}`."),
                )),
            )
                .into_response()
        }
        Err(e) => {
            return (
                e.status,
                page_response(super::error_page(e.status, &e.message)),
            )
                .into_response();
        }
    };
    let r = &detail.run;
    let idu = url_part(&r.id);
    let mut b = String::new();
    let _ = write!(
        b,
        "<section id=\"run\" data-run-id=\"{id}\" data-status=\"{st}\"><h1>Run <code>{id}</code> \
         <span id=\"run-status\">{badge}</span></h1>",
        id = esc(&r.id),
        st = r.status,
        badge = badge(r.status.as_str()),
    );
    b += "<div class=\"actions\">";
    if !r.status.is_finished() {
        let _ = write!(
            b,
            "<button type=\"button\" id=\"cancel\" data-action=\"/api/runs/{idu}/cancel\" \
             data-confirm=\"Cancel this run?\">Cancel</button> "
        );
    }
    let _ = write!(
        b,
        "<button type=\"button\" id=\"rerun\" data-action=\"/api/runs/{idu}/rerun\" \
         data-then=\"open-run\">Re-run</button></div>"
    );
    b += "<dl class=\"facts\">";
    let mut fact = |k: &str, v: String| {
        let _ = write!(b, "<dt>{k}</dt><dd>{v}</dd>");
    };
    fact(
        "Project",
        format!(
            "<a href=\"/?project={}\">{}</a>",
            url_part(&r.project),
            esc(&r.project)
        ),
    );
    if let Some(env) = &r.environment {
        fact(
            "Environment",
            format!(
                "<a href=\"/?environment={}\">{}</a>",
                url_part(env),
                esc(env)
            ),
        );
    }
    if let Some(commit) = &r.commit {
        let short: String = commit.chars().take(12).collect();
        let branch = r
            .branch
            .as_deref()
            .filter(|b| *b != "HEAD")
            .map(|b| format!(" on <code>{}</code>", esc(b)))
            .unwrap_or_default();
        fact(
            "Revision",
            format!(
                "<code title=\"{}\">{}</code>{branch}",
                esc(commit),
                esc(&short)
            ),
        );
    }
    fact("Trigger", trigger_cell(r));
    fact("Reason", esc(&r.reason));
    fact("Created", time(&r.created_at));
    if let Some(t) = &r.started_at {
        fact("Started", time(t));
    }
    if let Some(t) = &r.finished_at {
        fact("Finished", time(t));
    }
    fact("Duration", opt_duration(r.duration_seconds));
    fact("Attempts", format!("{} of {}", r.attempts, r.max_attempts));
    if let Some(of) = &r.rerun_of {
        fact(
            "Re-run of",
            format!(
                "<a href=\"/runs/{}\"><code>{}</code></a>",
                url_part(of),
                esc(of)
            ),
        );
    }
    if let Some(h) = detail
        .attempts_history
        .last()
        .and_then(|a| a.handle.as_ref())
        .filter(|h| h["executor"] != "local")
    {
        let text = |k: &str| h[k].as_str().unwrap_or_default().to_string();
        fact(
            "Executor",
            format!(
                "{} <code>{}</code>",
                esc(&text("executor")),
                esc(&text("id"))
            ),
        );
        if !text("image").is_empty() {
            fact("Image", format!("<code>{}</code>", esc(&text("image"))));
        }
    }
    if r.cancel_requested && !r.status.is_finished() {
        fact("Cancel", "requested".into());
    }
    let params = serde_json::to_string_pretty(&r.parameters).unwrap_or_default();
    fact("Parameters", format!("<pre>{}</pre>", esc(&params)));
    b += "</dl>";
    if let Some(err) = &r.error {
        let _ = write!(
            b,
            "<pre class=\"error\" id=\"run-error\">{}</pre>",
            esc(err)
        );
    }

    // Steps.
    let selected = selected_step(&detail.steps, query.step.as_deref());
    b += "<h2>Steps</h2>";
    if detail.steps.is_empty() {
        b += "<p class=\"empty\" id=\"no-steps\">No steps reported yet.</p>";
    } else {
        b += "<table class=\"steps\" id=\"steps\"><thead><tr><th>Step</th><th>Notebook</th><th>Status</th>\
              <th>Progress</th><th>Duration</th><th>Attempts</th><th>Report</th></tr></thead><tbody>";
        for s in &detail.steps {
            let is_sel = selected.is_some_and(|x| x.id == s.id);
            let report = match &s.report_url {
                Some(u) => format!(
                    "<a href=\"{}\" target=\"_blank\" rel=\"noopener\">open</a>",
                    esc(u)
                ),
                None => "—".into(),
            };
            let _ = write!(
                b,
                "<tr data-step=\"{id}\" data-status=\"{st}\"{sel}><td><a href=\"/runs/{idu}?step={su}\">{id}</a></td>\
                 <td><code>{nb}</code></td><td class=\"step-status\">{badge}</td><td class=\"step-progress\">{prog}</td>\
                 <td>{dur}</td><td>{a}</td><td>{report}</td></tr>",
                id = esc(&s.id),
                su = url_part(&s.id),
                st = esc(&s.status),
                sel = if is_sel { " aria-selected=\"true\" class=\"selected\"" } else { "" },
                nb = esc(&s.notebook),
                badge = badge(&s.status),
                prog = esc(&progress_text(s)),
                dur = opt_duration(s.duration),
                a = s.attempts,
            );
            if let Some(err) = &s.error {
                let _ = write!(
                    b,
                    "<tr class=\"step-error\"><td colspan=\"7\"><pre class=\"error\">{}</pre></td></tr>",
                    esc(err)
                );
            }
        }
        b += "</tbody></table>";
    }
    match selected.and_then(|s| s.report_url.as_ref().map(|u| (s, u))) {
        Some((s, url)) => {
            let _ = write!(
                b,
                "<h2>Report: {id}</h2><iframe id=\"report\" sandbox=\"allow-scripts\" src=\"{url}\" \
                 data-step=\"{id}\" title=\"Report of step {id}\" referrerpolicy=\"no-referrer\"></iframe>",
                id = esc(&s.id),
                url = esc(url),
            );
        }
        None => b += "<p class=\"empty\" id=\"no-report\">No report to show yet.</p>",
    }
    // A container run's log: what the container printed (the engine's while it runs, the
    // kept `container.log` after), refreshed by app.js while the run runs.
    if let Ok(log) = crate::api::logs::load(&state, &r.id, 200).await {
        if log.executor.as_deref().is_some_and(|e| e != "local") {
            let _ = write!(
                b,
                "<h2>Container log</h2><pre class=\"log\" id=\"container-log\" \
                 data-log-url=\"/api/runs/{idu}/log?lines=200\">{}</pre>",
                if log.lines.is_empty() {
                    "(nothing printed yet)".to_string()
                } else {
                    esc(&log.lines.join("\n"))
                }
            );
        }
    }
    notifications_section(&mut b, &detail.notifications);
    b += "</section>";
    page_response(layout(&format!("Run {}", r.id), "runs", token, &b))
}

/// The run's notifications (`notify:`): one row per delivery.
fn notifications_section(b: &mut String, rows: &[crate::queue::DeliveryRow]) {
    if rows.is_empty() {
        return;
    }
    *b += "<h2>Notifications</h2><table class=\"notifications\" id=\"notifications\"><thead><tr>\
           <th>Event</th><th>Target</th><th>To</th><th>Status</th><th>Attempts</th><th>When</th>\
           <th>Last error</th></tr></thead><tbody>";
    for n in rows {
        let when = n
            .delivered_at
            .as_deref()
            .or(n.gave_up_at.as_deref())
            .map(esc)
            .or_else(|| n.next_at.as_deref().map(|t| format!("next try {}", esc(t))))
            .unwrap_or_default();
        let _ = write!(
            b,
            "<tr data-status=\"{st}\"><td>{ev}</td><td><code>{key}</code> {kind}</td><td>{to}</td>\
             <td>{st}</td><td>{a}</td><td>{when}</td><td>{err}</td></tr>",
            ev = esc(&n.event),
            key = esc(&n.target),
            kind = esc(&n.kind),
            to = esc(&n.destination),
            st = esc(&n.status),
            a = n.attempts,
            err = n.last_error.as_deref().map(esc).unwrap_or_default(),
        );
    }
    *b += "</tbody></table>";
}

pub(crate) async fn projects_page(State(state): State<Shared>) -> Response {
    let mut b = String::from("<h1>Projects</h1>");
    let projects = state.projects.all();
    if projects.is_empty() {
        b += "<p class=\"empty\">No projects configured.</p>";
    } else {
        b += "<table class=\"projects\" id=\"projects\"><thead><tr><th>Project</th><th>Source</th>\
              <th>Triggers</th><th>Run policy</th><th></th></tr></thead><tbody>";
        for p in &projects {
            let triggers = if p.triggers.is_empty() {
                "<span class=\"muted\">none (API and UI only)</span>".to_string()
            } else {
                let items: String = p
                    .triggers
                    .iter()
                    .map(|t| format!("<li><code>{}</code></li>", esc(t)))
                    .collect();
                format!("<ul>{items}</ul>")
            };
            let body = serde_json::json!({"project": p.name}).to_string();
            // A folder, or the repository, branch and commit it is served from.
            let source = match &p.source {
                Some(s) => format!(
                    "<code class=\"repository\">{}</code> <code>{}</code> @ <code title=\"{}\">{}</code>",
                    esc(&s.repository),
                    esc(&s.branch),
                    esc(&s.commit),
                    esc(&s.commit.chars().take(12).collect::<String>()),
                ),
                None => format!("<code>{}</code>", esc(&p.dir.display().to_string())),
            };
            let _ = write!(
                b,
                "<tr data-project=\"{n}\"><td><a href=\"/?project={nu}\">{n}</a></td><td>{source}</td>\
                 <td>{triggers}</td><td>{policy}</td><td><button type=\"button\" class=\"run-now\" \
                 data-action=\"/api/runs\" data-body=\"{body}\" data-then=\"open-run\">Run now</button></td></tr>",
                n = esc(&p.name),
                nu = url_part(&p.name),
                body = esc(&body),
                policy = policy_list(&p.policy),
            );
        }
        b += "</tbody></table>";
    }
    // Projects served from git: each environment's revision history.
    if let Ok(revs) = state.queue.revisions(None, 200).await {
        if !revs.is_empty() {
            b += "<h2>Revisions</h2><table class=\"revisions\" id=\"revisions\"><thead><tr>\
                  <th>Project</th><th>Commit</th><th>Branch</th><th>Status</th><th>Since</th>\
                  <th></th></tr></thead><tbody>";
            for r in &revs {
                let short: String = r.commit.chars().take(12).collect();
                let why = r
                    .error
                    .as_deref()
                    .map(|e| format!("<pre class=\"error\">{}</pre>", esc(e)))
                    .unwrap_or_default();
                let _ = write!(
                    b,
                    "<tr data-project=\"{p}\" data-commit=\"{c}\" data-status=\"{st}\"><td>{p}</td>\
                     <td><code title=\"{c}\">{short}</code></td><td><code>{br}</code></td>\
                     <td><span class=\"badge st-{class}\">{st}</span></td><td>{since}</td>\
                     <td>{why}</td></tr>",
                    p = esc(&r.project),
                    c = esc(&r.commit),
                    short = esc(&short),
                    br = esc(&r.branch),
                    st = esc(&r.status),
                    class = match r.status.as_str() {
                        "serving" => "succeeded",
                        "refused" => "failed",
                        _ => "cancelled",
                    },
                    since = time(&r.updated_at),
                );
            }
            b += "</tbody></table>";
        }
    }
    page_response(layout("Projects", "projects", state.token.is_some(), &b))
}

/// A project's effective run policy as a definition list: each value, then where it comes
/// from when the project does not set it (`serve:` keys are named as written in nbpipe.yaml).
fn policy_list(p: &EffectivePolicy) -> String {
    let secs = |v: f64| {
        Duration::try_from_secs_f64(v)
            .map(|d| humantime::format_duration(d).to_string())
            .unwrap_or_else(|_| format!("{v} s"))
    };
    let note = |source: Source| match source {
        Source::Project => String::new(),
        Source::Server => {
            " <span class=\"muted\">(server default, <code>--per-project</code>)</span>".into()
        }
        Source::Steps => " <span class=\"muted\">(inherited from the steps' <code>retries</code>; \
                           only interrupted runs are retried)</span>"
            .into(),
        Source::Default => " <span class=\"muted\">(default)</span>".into(),
    };
    let timeout = match p.timeout_seconds.value {
        Some(t) => secs(t),
        None => "none".into(),
    };
    let rows = [
        (
            "concurrency",
            "Concurrency",
            format!("{}{}", p.concurrency.value, note(p.concurrency.source)),
        ),
        (
            "retries",
            "Retries",
            format!("{}{}", p.retries.value, note(p.retries.source)),
        ),
        (
            "retry_backoff",
            "Retry backoff",
            format!(
                "{}{}",
                secs(p.retry_backoff_seconds.value),
                note(p.retry_backoff_seconds.source)
            ),
        ),
        (
            "retry_backoff_max",
            "Backoff cap",
            format!(
                "{}{}",
                secs(p.retry_backoff_max_seconds.value),
                note(p.retry_backoff_max_seconds.source)
            ),
        ),
        (
            "timeout",
            "Timeout",
            format!("{timeout}{}", note(p.timeout_seconds.source)),
        ),
        (
            "interrupted_retries",
            "Interrupted retries",
            format!(
                "{}{}",
                p.interrupted_retries.value,
                note(p.interrupted_retries.source)
            ),
        ),
    ];
    let items: String = rows
        .iter()
        .map(|(key, label, value)| {
            format!("<dt>{label}</dt><dd data-policy=\"{key}\">{value}</dd>")
        })
        .collect();
    format!("<dl class=\"policy\">{items}</dl>")
}
