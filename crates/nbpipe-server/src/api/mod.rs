//! The HTTP API of `nbpipe serve`: JSON over HTTP, described by the OpenAPI document it serves
//! at `GET /api/openapi.json`.
//!
//! Owns the routes, authentication, request limits and the JSON shapes of runs; the web UI
//! ([`crate::ui`]) is mounted on the same [`router`]. It does not run anything, parse
//! notifications or store runs: it calls the [`Queue`], [`crate::intake::notify::parse`] and the
//! [`HookSink`] the server hands it.
//!
//! | route | what |
//! |---|---|
//! | `GET /api/health` | liveness plus a queue round trip |
//! | `GET /metrics` | Prometheus text: `nbpipe_runs{status}`, `nbpipe_events_superseded_total{project,source}`, `nbpipe_build_info` |
//! | `GET /api/openapi.json` | this API, as OpenAPI 3.1 |
//! | `GET /api/runs?project=&status=&q=&limit=&offset=` | runs, newest first |
//! | `POST /api/runs` | submit `{project, parameters?, dedup_key?}` → `201 {id}` (`400 bad_parameters` when a step's notebook cannot take them) |
//! | `GET /api/runs/{id}` | a run with its steps and attempts |
//! | `POST /api/runs/{id}/cancel`, `POST /api/runs/{id}/rerun` | state changes |
//! | `GET /api/runs/{id}/events` | server-sent events: the run's status and steps on change |
//! | `GET /api/runs/{id}/log?lines=` | the container log of the run's latest attempt (live, or as kept at its end) |
//! | `POST /hooks/s3` | S3/MinIO/EventBridge notification bodies → `202 {events, queued, duplicates, superseded}` |
//! | `GET /api/projects` | configured projects, their triggers and run policies |
//! | `GET /runs/{id}/steps/{step}.html` | a step's HTML report, sandboxed by its CSP |
//!
//! # Authentication
//!
//! With a token configured ([`AppState::token`]), every request that is not `GET`/`HEAD` —
//! every state change, and the hooks — needs `Authorization: Bearer <token>` (compared in
//! constant time; hooks may also send the bare token, as MinIO's `auth_token` does), else
//! `401` with a JSON error. Reads are open to whoever reaches the listener, which is why the
//! server listens on `127.0.0.1` by default and [`check_listen`] refuses a non-loopback address
//! without a token.
//!
//! Before that, every request — reads too — must name this server: its `Host` must be an IP
//! address, `localhost`, or a name given with `--allowed-host` ([`AppState::allowed_hosts`]),
//! else `421 misdirected_request`. A DNS-rebinding page (its own name pointed at 127.0.0.1)
//! therefore gets nothing, not even reads. A request carrying an `Origin` that is not the
//! server's own (another site's page, or `null` from a sandboxed report) is refused with
//! `403 cross_origin`, whatever its token, so a page in the user's browser can neither drive
//! nor read a token-less local server.
//!
//! # Isolation of reports
//!
//! Reports are other people's HTML. They are served with
//! `Content-Security-Policy: sandbox allow-scripts; …`, which puts them in an opaque origin
//! even when opened directly: their scripts (kept, for interactive outputs) cannot read or
//! script the UI origin, its storage or its cookies. The step name is checked against
//! `[A-Za-z0-9_.-]+` and looked up in the run's manifest; the file read is the URI the runner
//! recorded, never a path taken from the request.

mod auth;
mod error;
mod events;
mod hooks;
pub(crate) mod logs;
mod metrics;
mod openapi;
mod report;
pub(crate) mod runs;
mod validate;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use futures::future::BoxFuture;

use crate::event::ObjectEvent;
use crate::intake::{IntakeCounters, Submitted};
use crate::queue::Queue;

pub(crate) use auth::tokens_equal;
pub use error::ApiError;
pub use openapi::openapi_document;
pub use runs::{RunDetail, StepView, MAX_DEDUP_KEY_CHARS, MAX_LIST_LIMIT, MAX_LIST_OFFSET};

/// Where `nbpipe serve` listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8787";

/// Largest request body accepted (JSON submissions and notification batches).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// How often the live-progress stream polls the queue.
pub const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// Hands webhook events to intake (routing + enqueue). `Ok`: what became of them (runs
/// queued, duplicates of earlier deliveries, events superseded by a newer one for the same
/// key); `Err`: nothing durable happened, the sender should retry (the hook answers `503`).
pub type HookSink =
    Arc<dyn Fn(Vec<ObjectEvent>) -> BoxFuture<'static, Result<Submitted, String>> + Send + Sync>;

/// One configured project, as the API and the UI show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProjectInfo {
    /// Project key (what `POST /api/runs` takes): its name, `name@environment` for an
    /// environment's settings.
    pub name: String,
    /// The project environment (`environments:` entry) served, if any.
    pub environment: Option<String>,
    /// Its directory (a revision folder when the server follows a git repository).
    pub dir: PathBuf,
    /// Its triggers, human readable (`s3 bucket/prefix*.csv`, `schedule 0 6 * * * (UTC)`).
    pub triggers: Vec<String>,
    /// Attempts a submitted run gets (its retry policy).
    pub max_attempts: u32,
    /// Its run policy (`serve:` in nbpipe.yaml) with every unset value filled in.
    pub policy: crate::policy::EffectivePolicy,
    /// Its steps' notebooks, which submitted parameters are checked against.
    #[serde(skip)]
    pub steps: Vec<StepNotebook>,
    /// Where its files come from, when the server follows a git repository for it.
    pub source: Option<ProjectSource>,
}

/// The repository, branch and commit a project is served from (`nbpipe serve --git`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProjectSource {
    /// The repository as given, credentials in its URL shown as `***`.
    pub repository: String,
    /// The branch followed.
    pub branch: String,
    /// The commit served.
    pub commit: String,
}

/// One step's notebook, as far as checking parameters for it goes.
#[derive(Debug, Clone)]
pub struct StepNotebook {
    /// Step id.
    pub id: String,
    /// The notebook file.
    pub notebook: PathBuf,
    /// The step's `kernel`, when it overrides the notebook's.
    pub kernel: Option<String>,
}

impl ProjectInfo {
    /// The info of a loaded project on a server whose `--per-project` is `per_project`.
    pub fn from_project(
        project: &nbpipe_project::config::Project,
        per_project: usize,
    ) -> ProjectInfo {
        use nbpipe_project::config::Trigger;
        let triggers = project
            .triggers
            .iter()
            .map(|t| match t {
                Trigger::S3 {
                    bucket,
                    prefix,
                    suffix,
                } => format!("s3 {bucket}/{prefix}*{}", suffix.as_deref().unwrap_or("")),
                Trigger::Schedule { cron, timezone } => {
                    format!("schedule {cron} ({})", timezone.as_deref().unwrap_or("UTC"))
                }
            })
            .collect();
        ProjectInfo {
            name: project.key(),
            environment: project.environment.clone(),
            dir: project.dir.clone(),
            triggers,
            max_attempts: crate::policy::max_attempts(project),
            policy: crate::policy::effective(project, per_project),
            steps: project
                .steps
                .iter()
                .map(|s| StepNotebook {
                    id: s.id.clone(),
                    notebook: project.dir.join(&s.path),
                    kernel: s.kernel.clone(),
                })
                .collect(),
            source: None,
        }
    }
}

/// Everything the handlers share.
pub struct AppState {
    /// The run queue and history.
    pub queue: Queue,
    /// The configured projects (replaced when a new revision is served).
    pub projects: ProjectList,
    /// The git repositories followed, for `POST /hooks/git` (`None`: none).
    pub git: Option<GitHook>,
    /// Bearer token required for every state change and the hooks (`None`: none required;
    /// only allowed on a loopback listener, see [`check_listen`]).
    pub token: Option<String>,
    /// Where `POST /hooks/s3` hands parsed events.
    pub hooks: HookSink,
    /// Intake's counters, exported by `GET /metrics`.
    pub intake: Arc<IntakeCounters>,
    /// Host names, beyond IP addresses and `localhost`, that requests may name in `Host`
    /// (`--allowed-host`; see [`auth`](self#authentication)).
    pub allowed_hosts: Vec<String>,
}

impl AppState {
    /// The project named `name`.
    pub fn project(&self, name: &str) -> Option<ProjectInfo> {
        self.projects.all().into_iter().find(|p| p.name == name)
    }
}

/// What `POST /hooks/git` needs: the secret pushes are signed with and the followers to wake.
#[derive(Clone)]
pub struct GitHook {
    /// The webhook secret (`None`: the hook is refused; the repositories are polled only).
    pub secret: Option<String>,
    /// The followers, one per repository.
    pub ops: Vec<Arc<crate::gitops::GitOps>>,
}

/// The projects as the API shows them; shared with whatever replaces a project by a newer
/// revision (cheap to clone; clones share the list).
#[derive(Debug, Clone, Default)]
pub struct ProjectList(Arc<std::sync::RwLock<Vec<ProjectInfo>>>);

impl From<Vec<ProjectInfo>> for ProjectList {
    fn from(list: Vec<ProjectInfo>) -> ProjectList {
        ProjectList(Arc::new(std::sync::RwLock::new(list)))
    }
}

impl ProjectList {
    /// The projects now, in their order.
    pub fn all(&self) -> Vec<ProjectInfo> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Shows `info` in place of the project with its name (or after the others).
    pub fn replace(&self, info: ProjectInfo) {
        let mut list = self.0.write().unwrap_or_else(|e| e.into_inner());
        match list.iter_mut().find(|p| p.name == info.name) {
            Some(slot) => *slot = info,
            None => list.push(info),
        }
    }
}

/// The state as handlers see it.
pub(crate) type Shared = Arc<AppState>;

/// Why the server refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// A non-loopback address without a token would let anyone on the network change state.
    #[error(
        "refusing to listen on `{addr}` without a token: anyone who can reach it could submit, \
         cancel and re-run runs\n\nhint: set a token (`--token-file`, or `NBPIPE_TOKEN`), or listen \
         on `127.0.0.1`"
    )]
    NoToken {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// An empty token is no token.
    #[error("the API token is empty")]
    EmptyToken,
}

/// Checks that listening on `addr` with `token` is safe: a non-loopback address needs a
/// non-empty token. Call before binding.
pub fn check_listen(addr: &SocketAddr, token: Option<&str>) -> Result<(), ListenError> {
    match token {
        Some(t) if t.trim().is_empty() => Err(ListenError::EmptyToken),
        Some(_) => Ok(()),
        None if addr.ip().is_loopback() => Ok(()),
        None => Err(ListenError::NoToken { addr: *addr }),
    }
}

/// One route: method (for the OpenAPI check), path and handler.
pub(crate) struct RouteDef {
    pub method: &'static str,
    pub path: &'static str,
    pub handler: MethodRouter<Shared>,
}

fn def(method: &'static str, path: &'static str, handler: MethodRouter<Shared>) -> RouteDef {
    RouteDef {
        method,
        path,
        handler,
    }
}

/// Every route the router serves, API and UI.
pub(crate) fn route_defs() -> Vec<RouteDef> {
    let mut v = vec![
        def("get", "/api/health", get(metrics::health)),
        def("get", "/metrics", get(metrics::metrics)),
        def("get", "/api/openapi.json", get(openapi::serve)),
        def("get", "/api/runs", get(runs::list)),
        def("post", "/api/runs", post(runs::submit)),
        def("get", "/api/runs/{id}", get(runs::detail)),
        def("post", "/api/runs/{id}/cancel", post(runs::cancel)),
        def("post", "/api/runs/{id}/rerun", post(runs::rerun)),
        def("get", "/api/runs/{id}/events", get(events::run_events)),
        def("get", "/api/runs/{id}/log", get(logs::run_log)),
        def("get", "/api/projects", get(runs::projects)),
        def("post", "/hooks/s3", post(hooks::s3)),
        def("post", "/hooks/git", post(hooks::git)),
        def("get", "/api/revisions", get(runs::revisions)),
        def("get", "/runs/{id}/steps/{file}", get(report::step_report)),
    ];
    v.extend(crate::ui::route_defs());
    v
}

/// `(method, path)` of every route, for documentation checks.
pub fn routes() -> Vec<(&'static str, &'static str)> {
    route_defs().iter().map(|r| (r.method, r.path)).collect()
}

/// The whole HTTP surface (API, hooks, metrics and web UI) over `state`.
pub fn router(state: AppState) -> Router {
    let shared: Shared = Arc::new(state);
    let mut r: Router<Shared> = Router::new();
    for d in route_defs() {
        r = r.route(d.path, d.handler);
    }
    r.fallback(error::fallback)
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            auth::require_token,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(shared)
        // Outermost: shapes every error answer, whoever gave it, and adds `nosniff`.
        .layer(axum::middleware::from_fn(error::error_shape))
}

/// Serves `router(state)` on `listener` until `shutdown` resolves (then finishes open
/// requests; live-progress streams end).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let app = router(state).layer(axum::Extension(events::Shutdown(rx)));
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            // Live-progress streams end on this, so open connections can close.
            let _ = tx.send(true);
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_loopback_needs_a_token() {
        let public: SocketAddr = "0.0.0.0:8787".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:8787".parse().unwrap();
        let local6: SocketAddr = "[::1]:8787".parse().unwrap();
        assert!(check_listen(&public, None).is_err());
        assert!(check_listen(&public, Some("  ")).is_err());
        assert!(check_listen(&public, Some("s3cret")).is_ok());
        assert!(check_listen(&local, None).is_ok());
        assert!(check_listen(&local6, None).is_ok());
    }

    #[test]
    fn default_listen_is_loopback() {
        let a: SocketAddr = DEFAULT_LISTEN.parse().unwrap();
        assert!(a.ip().is_loopback());
    }
}
