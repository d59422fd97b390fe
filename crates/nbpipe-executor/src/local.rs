//! The local executor: the attempt runs in this process, on a task of the service's runtime,
//! through `nbpipe-project`'s runner (its kernels are this server's children). Its handle
//! names this process; an attempt cannot outlive it, so a handle from another process never
//! reattaches (the queue recovers such a run when its lease expires).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use nbpipe_exec::Stop;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use nbpipe_project::run::manifest::RunManifest;
use nbpipe_project::run::RunError;

use crate::{Attempt, Executor, ExecutorError, Handle, Outcome};

struct Running {
    stop: watch::Sender<Option<Stop>>,
    task: Option<JoinHandle<Result<RunManifest, RunError>>>,
}

/// Runs attempts in this process.
#[derive(Clone, Default)]
pub struct LocalExecutor {
    running: Arc<Mutex<HashMap<(String, u32), Running>>>,
}

impl LocalExecutor {
    /// A local executor.
    pub fn new() -> LocalExecutor {
        LocalExecutor::default()
    }

    fn key(h: &Handle) -> (String, u32) {
        (h.run_id.clone(), h.attempt)
    }

    fn ours(h: &Handle) -> bool {
        h.executor == "local" && h.id == std::process::id().to_string()
    }
}

#[async_trait::async_trait]
impl Executor for LocalExecutor {
    fn kind(&self) -> &'static str {
        "local"
    }

    async fn launch(&self, attempt: Attempt) -> Result<Handle, ExecutorError> {
        let run_id = attempt
            .options
            .run_id
            .clone()
            .ok_or(ExecutorError::NoRunId)?;
        let handle = Handle {
            executor: "local".into(),
            run_id,
            attempt: attempt.number,
            id: std::process::id().to_string(),
            output: None,
            image: None,
            detail: Default::default(),
        };
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        // Idempotent: launching an attempt that runs already returns its handle.
        if running.contains_key(&Self::key(&handle)) {
            return Ok(handle);
        }
        let (stop, stop_rx) = watch::channel(None);
        let task = tokio::spawn(nbpipe_project::run::run(
            attempt.project,
            attempt.options,
            attempt.observer,
            stop_rx,
        ));
        running.insert(
            Self::key(&handle),
            Running {
                stop,
                task: Some(task),
            },
        );
        Ok(handle)
    }

    async fn follow(
        &self,
        handle: &Handle,
        _observer: Arc<dyn nbpipe_project::run::RunObserver>,
    ) -> Result<Outcome, ExecutorError> {
        let task = {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            running
                .get_mut(&Self::key(handle))
                .filter(|_| Self::ours(handle))
                .and_then(|r| r.task.take())
        };
        let Some(task) = task else {
            return Err(ExecutorError::Unknown(Box::new(handle.clone())));
        };
        let result = task.await;
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&Self::key(handle));
        result.map(Outcome::Ran).map_err(|e| ExecutorError::Lost {
            handle: Box::new(handle.clone()),
            reason: e.to_string(),
        })
    }

    async fn logs(&self, handle: &Handle, _lines: usize) -> Result<Vec<String>, ExecutorError> {
        // A local run's log is its notebooks (and the server's own output).
        if !Self::ours(handle) {
            return Err(ExecutorError::Unknown(Box::new(handle.clone())));
        }
        Ok(Vec::new())
    }

    async fn cancel(&self, handle: &Handle, why: Stop) -> Result<(), ExecutorError> {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        match running
            .get(&Self::key(handle))
            .filter(|_| Self::ours(handle))
        {
            Some(r) => {
                // The first reason wins (a timeout stays a timeout if a cancel follows).
                r.stop.send_if_modified(|cur| {
                    if cur.is_none() {
                        *cur = Some(why);
                        true
                    } else {
                        false
                    }
                });
                Ok(())
            }
            None => Err(ExecutorError::Unknown(Box::new(handle.clone()))),
        }
    }

    async fn reattach(&self, handle: &Handle) -> Result<bool, ExecutorError> {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        Ok(Self::ours(handle) && running.contains_key(&Self::key(handle)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nbpipe_project::run::RunOptions;

    struct Quiet;
    impl nbpipe_project::run::RunObserver for Quiet {}

    /// A project whose only notebook does not exist: the runner fails it without a kernel.
    fn attempt(dir: &std::path::Path, run_id: &str) -> Attempt {
        std::fs::write(dir.join("a.ipynb"), "{}").unwrap();
        let project = nbpipe_project::parse(dir, "nbpipe.yaml", "notebooks: [a.ipynb]\n").unwrap();
        std::fs::remove_file(dir.join("a.ipynb")).unwrap();
        Attempt {
            project,
            options: RunOptions {
                run_id: Some(run_id.into()),
                output: Some(dir.join("out/{run_id}/").display().to_string()),
                jobs: 1,
                quiet: true,
                ..Default::default()
            },
            number: 1,
            observer: Arc::new(Quiet),
        }
    }

    #[tokio::test]
    async fn an_attempt_is_launched_once_followed_to_its_end_then_forgotten() {
        let ex = LocalExecutor::new();
        let tmp = tempfile::tempdir().unwrap();
        let mut a = attempt(tmp.path(), "r2");
        // An environment given by the caller (as the service does): nothing is built.
        a.options.env = Some(nbpipe_env::ManagedEnv {
            root: tmp.path().to_path_buf(),
            python: "/usr/bin/python3".into(),
            hash: "0".into(),
            freeze: None,
            stale: false,
        });
        let h = ex.launch(a.clone()).await.unwrap();
        assert_eq!(
            (h.executor.as_str(), h.run_id.as_str(), h.attempt),
            ("local", "r2", 1)
        );
        assert_eq!(h.id, std::process::id().to_string());
        assert_eq!(ex.launch(a).await.unwrap(), h, "launch is idempotent");
        let Outcome::Ran(m) = ex.follow(&h, Arc::new(Quiet)).await.unwrap() else {
            panic!("a local attempt runs")
        };
        let m = m.unwrap();
        // The notebook is missing: the step fails for good, the run ends failed.
        assert_eq!(m.status, "failed");
        assert!(m.steps[0].permanent);
        assert!(tmp.path().join("out/r2/run.json").is_file());
        assert!(
            !ex.reattach(&h).await.unwrap(),
            "a finished attempt is forgotten"
        );
        assert!(matches!(
            ex.follow(&h, Arc::new(Quiet)).await,
            Err(ExecutorError::Unknown(_))
        ));
    }

    #[tokio::test]
    async fn handles_are_durable_values_and_unknown_ones_are_refused() {
        let ex = LocalExecutor::new();
        let tmp = tempfile::tempdir().unwrap();
        let mut a = attempt(tmp.path(), "r1");
        a.options.run_id = None;
        assert!(matches!(ex.launch(a).await, Err(ExecutorError::NoRunId)));
        let other = Handle {
            executor: "local".into(),
            run_id: "r1".into(),
            attempt: 1,
            id: "1".into(),
            output: None,
            image: None,
            detail: Default::default(),
        };
        let text = serde_json::to_string(&other).unwrap();
        assert_eq!(serde_json::from_str::<Handle>(&text).unwrap(), other);
        // Another process's attempt: not reattachable, not followable, not cancellable.
        assert!(!ex.reattach(&other).await.unwrap());
        assert!(matches!(
            ex.follow(&other, Arc::new(Quiet)).await,
            Err(ExecutorError::Unknown(_))
        ));
        assert!(matches!(
            ex.cancel(&other, Stop::Cancelled).await,
            Err(ExecutorError::Unknown(_))
        ));
    }
}
