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
//! Implementations: [`LocalExecutor`], the in-process runner (`nbpipe-project`'s pipeline
//! runner on this server's kernels; its attempts die with the server, so they cannot be
//! reattached: the queue's lease recovery retries them as interrupted). A Docker executor
//! (one container per attempt) is the next implementation of the same trait.
//!
//! This crate does not decide what runs or record results: the service's workers claim runs
//! from the queue, launch them here, and record what [`follow`](Executor::follow) returns.
#![deny(missing_docs)]

mod local;

use std::sync::Arc;

use nbpipe_exec::Stop;
use nbpipe_project::run::manifest::RunManifest;
use nbpipe_project::run::{RunError, RunObserver, RunOptions};
use nbpipe_project::Project;
use serde::{Deserialize, Serialize};

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
}

/// How an attempt ended: the runner's result (its final manifest, or why it could not run).
pub type Outcome = Result<RunManifest, RunError>;

/// What an executor can fail at (the attempt's own failures are in its [`Outcome`]).
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// The handle designates no attempt this executor knows (ended and collected, or
    /// launched by a process that is gone).
    #[error("no attempt {} of run `{}` on the {} executor ({})", .0.attempt, .0.run_id, .0.executor, .0.id)]
    Unknown(Handle),
    /// The attempt has no run id to launch under.
    #[error("an attempt needs a run id")]
    NoRunId,
    /// The attempt's task ended without a result (it panicked or was aborted).
    #[error("attempt {} of run `{}` ended without a result: {reason}", .handle.attempt, .handle.run_id)]
    Lost {
        /// The attempt.
        handle: Handle,
        /// What happened.
        reason: String,
    },
}

/// Where run attempts execute.
#[async_trait::async_trait]
pub trait Executor: Send + Sync {
    /// The executor's kind, as in [`Handle::executor`].
    fn kind(&self) -> &'static str;
    /// Start `attempt`.
    async fn launch(&self, attempt: Attempt) -> Result<Handle, ExecutorError>;
    /// Wait for the attempt's end.
    async fn follow(&self, handle: &Handle) -> Result<Outcome, ExecutorError>;
    /// The attempt's last `lines` log lines (empty when the executor keeps none).
    async fn logs(&self, handle: &Handle, lines: usize) -> Result<Vec<String>, ExecutorError>;
    /// Stop the attempt for `why`; [`follow`](Executor::follow) then returns its end.
    async fn cancel(&self, handle: &Handle, why: Stop) -> Result<(), ExecutorError>;
    /// Whether `handle` (from this or an earlier process) designates a live attempt.
    async fn reattach(&self, handle: &Handle) -> Result<bool, ExecutorError>;
}
