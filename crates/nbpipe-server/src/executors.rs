//! Which executor runs a project's attempts: the project's `executor:` (local by default),
//! or the one `nbpipe serve --executor` forces on every project; and, after a restart, the
//! executor a stored handle names, to take over attempts a dead server left running
//! ([`take_over`]).
//!
//! Owns the choice only: launching and following are `nbpipe-executor`'s, recording
//! results the worker's.

use std::sync::Arc;

use nbpipe_executor::{
    DockerExecutor, DockerOptions, EcsExecutor, EcsOptions, Executor, Handle, LocalExecutor,
};
use nbpipe_project::{ExecutorConfig, Project};

use crate::queue::Queue;

/// The server's executors.
#[derive(Clone)]
pub struct Executors {
    local: Arc<dyn Executor>,
    docker: Arc<dyn Executor>,
    ecs: Arc<dyn Executor>,
    force: Option<String>,
}

impl Default for Executors {
    fn default() -> Self {
        Executors::new(None, DockerOptions::default())
    }
}

impl Executors {
    /// The local and Docker executors; `force` (`local` or `docker`) overrides every
    /// project's choice.
    pub fn new(force: Option<String>, docker: DockerOptions) -> Executors {
        let ecs = EcsOptions {
            binary: docker.binary.clone(),
            poll: std::env::var("NBPIPE_ECS_POLL_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .map(std::time::Duration::from_millis),
        };
        Executors {
            local: Arc::new(LocalExecutor::new()),
            docker: Arc::new(DockerExecutor::new(docker)),
            ecs: Arc::new(EcsExecutor::new(ecs)),
            force,
        }
    }

    /// Replace the local executor (tests).
    pub fn with_local(mut self, local: Arc<dyn Executor>) -> Executors {
        self.local = local;
        self
    }

    /// The executor of `project`'s attempts, or why there is none.
    pub fn for_project(&self, project: &Project) -> Result<Arc<dyn Executor>, String> {
        let kind = self
            .force
            .as_deref()
            .unwrap_or_else(|| project.executor.kind());
        self.by_kind(kind).ok_or_else(|| {
            format!(
                "unknown executor `{kind}` for project `{}`; expected one of {}",
                project.name,
                nbpipe_project::config::EXECUTORS.join(", ")
            )
        })
    }

    /// The executor named `kind` (as in [`Handle::executor`]).
    pub fn by_kind(&self, kind: &str) -> Option<Arc<dyn Executor>> {
        match kind {
            "local" => Some(self.local.clone()),
            "docker" => Some(self.docker.clone()),
            "ecs" => Some(self.ecs.clone()),
            _ => None,
        }
    }

    /// Whether any of `projects` runs its attempts outside this process (so they can
    /// outlive the server and be taken over after a restart).
    pub fn any_remote<'a>(&self, mut projects: impl Iterator<Item = &'a Project>) -> bool {
        match self.force.as_deref() {
            Some(kind) => kind != "local",
            None => projects.any(|p| !matches!(p.executor, ExecutorConfig::Local)),
        }
    }
}

/// What [`take_over`] found.
#[derive(Debug, Default)]
pub struct TakenOver {
    /// Runs now leased to the caller, with the handle of their running attempt.
    pub taken: Vec<(String, Handle)>,
    /// Runs whose executor could not say whether their attempt still runs (its engine did
    /// not answer): not to be recovered now, or they could run twice.
    pub uncertain: Vec<String>,
}

/// Runs whose lease expired while their attempt still runs elsewhere (a container outlived
/// the server that started it): each is taken over by `worker` (the lease is now
/// `worker`'s) and returned with its handle, to be followed to its end instead of started
/// again. Call before [`Queue::recover_except`], which gives the others another attempt.
pub async fn take_over(
    queue: &Queue,
    executors: &Executors,
    worker: &str,
    lease: std::time::Duration,
) -> TakenOver {
    let mut out = TakenOver::default();
    let expired = match queue.expired_attempts().await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("warning: could not look for runs to take over: {e}");
            return out;
        }
    };
    for (run_id, attempt, value) in expired {
        let Ok(handle) = serde_json::from_value::<Handle>(value) else {
            continue;
        };
        if handle.executor == "local" || handle.attempt != attempt {
            continue;
        }
        let Some(executor) = executors.by_kind(&handle.executor) else {
            continue;
        };
        match executor.reattach(&handle).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                // Unknown: leave it for the next round rather than start it twice.
                out.uncertain.push(run_id.clone());
                eprintln!(
                    "warning: run {run_id}: could not ask the {} executor about `{}`: {e}",
                    handle.executor, handle.id
                );
                continue;
            }
        }
        match queue.take_over(&run_id, attempt, worker, lease).await {
            Ok(true) => out.taken.push((run_id, handle)),
            Ok(false) => {}
            Err(e) => eprintln!("warning: run {run_id}: could not take it over: {e}"),
        }
    }
    out
}
