//! Executors: where a served run attempt executes. One trait, [`Executor`]:
//!
//! - [`Executor::launch`] starts an [`Attempt`] and returns a [`Handle`] — serializable, so
//!   the service can store it with the attempt and find the attempt again after a restart;
//! - [`Executor::follow`] waits for the attempt's end and returns its [`Outcome`];
//! - [`Executor::logs`] gives the attempt's last log lines;
//! - [`Executor::cancel`] stops it (running cells interrupted, notebooks saved);
//! - [`Executor::reattach`] answers whether a handle from an earlier process still
//!   designates a live attempt that [`follow`](Executor::follow) can wait for.
//!
//! Implementations:
//! - [`LocalExecutor`], the in-process runner (`nbpipe-project`'s pipeline runner on this
//!   server's kernels; its attempts die with the server, so they cannot be reattached: the
//!   queue's lease recovery retries them as interrupted);
//! - [`DockerExecutor`], one container per attempt from the project's image (built and
//!   provided to the engine before the run), named after the attempt and labelled with the
//!   run and project, so a launch is idempotent and a restarted server finds its containers
//!   again; progress comes back through the output prefix (`run.json`);
//! - [`EcsExecutor`], one ECS task per attempt (Fargate by default), its task definition
//!   reused while unchanged, launches idempotent by `startedBy`/`clientToken`, logs from
//!   CloudWatch.
//!
//! This crate does not decide what runs or record results: the service's workers claim runs
//! from the queue, launch them here, and record what [`follow`](Executor::follow) returns.
#![deny(missing_docs)]

mod docker;
mod ecs;
mod images;
mod local;

use std::sync::Arc;

use nbpipe_exec::Stop;
use nbpipe_project::run::manifest::RunManifest;
use nbpipe_project::run::{RunError, RunObserver, RunOptions};
use nbpipe_project::Project;
use serde::{Deserialize, Serialize};

pub use docker::{container_name, DockerExecutor, DockerOptions};
pub use ecs::{attempt_token, EcsExecutor, EcsOptions};
pub use local::LocalExecutor;

/// One attempt of a run, as the service hands it to an executor.
#[derive(Clone)]
pub struct Attempt {
    /// The project to run.
    pub project: Project,
    /// How to run it: run id (required), parameters, trigger, output, warm kernels, the
    /// project's environment.
    pub options: RunOptions,
    /// The attempt's number (1 for the first).
    pub number: u32,
    /// Live progress (the runner's manifest as it changes).
    pub observer: Arc<dyn RunObserver>,
}

/// `s` with every character that is not an ASCII letter or digit, nor in `keep`, replaced
/// by `-` (names and tokens the engines accept).
pub(crate) fn sanitize(s: &str, keep: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || keep.contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

impl Attempt {
    /// The run id the attempt runs under.
    pub fn run_id(&self) -> Result<String, ExecutorError> {
        self.options.run_id.clone().ok_or(ExecutorError::NoRunId)
    }
}

/// What designates a launched attempt, durably: stored by the service with the attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handle {
    /// The executor's kind (`local`, `docker`).
    pub executor: String,
    /// The run.
    pub run_id: String,
    /// The attempt's number.
    pub attempt: u32,
    /// The executor's own id for it (a container name; for `local`, this process's id).
    pub id: String,
    /// Where the attempt writes its outputs and `run.json` (executors that run elsewhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// The image the attempt runs (manifest digest and repository), for container executors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// What else the executor needs to find the attempt again (ECS: region, cluster, log
    /// group and stream).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub detail: std::collections::BTreeMap<String, String>,
}

/// How an attempt ended.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per attempt, moved once
pub enum Outcome {
    /// The runner's result: its final manifest, or why it could not run.
    Ran(Result<RunManifest, RunError>),
    /// The attempt ended without recording its end (its container crashed, was killed or
    /// ran out of memory).
    Lost {
        /// What happened, with the exit code and the last log lines.
        error: String,
        /// The infrastructure interrupted it (killed by the engine, not by its own code or
        /// memory use): the service may retry it as an interrupted run.
        interrupted: bool,
    },
}

/// What an executor can fail at (the attempt's own failures are in its [`Outcome`]).
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// The handle designates no attempt this executor knows (ended and collected, or
    /// launched by a process that is gone).
    #[error("no attempt {} of run `{}` on the {} executor ({})", .0.attempt, .0.run_id, .0.executor, .0.id)]
    Unknown(Box<Handle>),
    /// The attempt has no run id to launch under.
    #[error("an attempt needs a run id")]
    NoRunId,
    /// The attempt's task ended without a result (it panicked or was aborted).
    #[error("attempt {} of run `{}` ended without a result: {reason}", .handle.attempt, .handle.run_id)]
    Lost {
        /// The attempt.
        handle: Box<Handle>,
        /// What happened.
        reason: String,
    },
    /// The container engine or cloud API failed or cannot be reached (worth another
    /// attempt later).
    #[error("{0}")]
    Engine(String),
    /// The project's image could not be built or given to the engine.
    #[error("the project's image: {0}")]
    Image(String),
    /// The project's settings do not allow this attempt (e.g. a trigger in a region the
    /// project does not list); another attempt would fail the same way.
    #[error("{0}")]
    Refused(String),
    /// A secret the container needs could not be read by the server (the message names the
    /// secret and its source, never a value).
    #[error(transparent)]
    Secret(#[from] nbpipe_project::secrets::SecretError),
}

impl ExecutorError {
    /// The infrastructure failed, not the run: another attempt may succeed.
    pub fn is_infrastructure(&self) -> bool {
        matches!(self, ExecutorError::Engine(_) | ExecutorError::Lost { .. })
    }
}

/// Where run attempts execute.
#[async_trait::async_trait]
pub trait Executor: Send + Sync {
    /// The executor's kind, as in [`Handle::executor`].
    fn kind(&self) -> &'static str;
    /// Start `attempt`.
    async fn launch(&self, attempt: Attempt) -> Result<Handle, ExecutorError>;
    /// Wait for the attempt's end; `observer` hears its progress (executors whose attempt
    /// runs elsewhere read it from the output prefix; the local one reports to the
    /// observer given at launch).
    async fn follow(
        &self,
        handle: &Handle,
        observer: Arc<dyn RunObserver>,
    ) -> Result<Outcome, ExecutorError>;
    /// The attempt's last `lines` log lines (empty when the executor keeps none).
    async fn logs(&self, handle: &Handle, lines: usize) -> Result<Vec<String>, ExecutorError>;
    /// Stop the attempt for `why`; [`follow`](Executor::follow) then returns its end.
    async fn cancel(&self, handle: &Handle, why: Stop) -> Result<(), ExecutorError>;
    /// Whether `handle` (from this or an earlier process) designates a live attempt.
    async fn reattach(&self, handle: &Handle) -> Result<bool, ExecutorError>;
    /// Make what `project`'s attempts will need ahead of its first launch (the image, for
    /// executors that run one), so that a new revision that cannot be built is refused
    /// before it is served. Default: nothing to prepare.
    async fn prepare(&self, _project: &Project) -> Result<(), ExecutorError> {
        Ok(())
    }
}

/// The environment variables that carry a run's project environment and revision into a
/// container (`NBPIPE_ENV`, `NBPIPE_GIT_COMMIT`, `NBPIPE_GIT_BRANCH`): the container's own
/// `nbpipe run` then loads the same `environments:` entry and records the same commit, which
/// its image (built without `.git`) cannot tell it.
pub fn revision_env(project: &Project, options: &RunOptions) -> Vec<(&'static str, String)> {
    let mut env = Vec::new();
    if let Some(name) = &project.environment {
        env.push(("NBPIPE_ENV", name.clone()));
    }
    if let Some(git) = &options.git {
        env.push(("NBPIPE_GIT_COMMIT", git.commit.clone()));
        env.push(("NBPIPE_GIT_BRANCH", git.branch.clone()));
    }
    env
}
