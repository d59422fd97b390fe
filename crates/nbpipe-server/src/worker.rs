//! Workers: take runs from the queue and run them through an executor (`nbpipe-executor`;
//! the local one, in this process, unless the server is told otherwise).
//!
//! Owns the life of one claimed run: its lease (renewed by heartbeats; a worker that dies
//! loses it and [`Queue::recover`] gives the run back), cancellation (a cancel request stops
//! the running cell and saves its notebook: at once when the cancel came through this
//! process, within [`CANCEL_POLL`] when another server sharing the database took it, and no
//! step starts once the cancel is in the database), live progress (the runner's manifest is
//! copied into the queue as it changes, by one writer, in order, and never after the run's
//! final state), the project's time limit per run (`serve.timeout`), and the final status,
//! retryable or not by the project's policy ([`crate::policy`]). It does not decide what runs
//! next: [`Queue::claim`] applies order and concurrency limits.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use nbpipe_exec::Stop;
use nbpipe_executor::{Attempt, Executor, Handle, Outcome};
use nbpipe_params::{Parameters, Value as Param};
use nbpipe_project::run::manifest::{status, RunManifest};
use nbpipe_project::run::{RunObserver, RunOptions, TriggerObject};
use nbpipe_project::Project;
use tokio::sync::watch;

use crate::event::ObjectEvent;
use crate::policy::{self, Failure};
use crate::queue::{Finish, Limits, Queue, RunRow};

/// How often a running run's worker checks the database for a cancel request made through
/// another server.
pub const CANCEL_POLL: Duration = Duration::from_millis(500);

/// How workers behave.
#[derive(Clone)]
pub struct WorkerConfig {
    /// How long a claim lasts without a heartbeat.
    pub lease: Duration,
    /// How long an idle worker waits before looking for work again.
    pub idle_poll: Duration,
    /// Concurrency limits.
    pub limits: Limits,
    /// Warm kernels for the runs (see [`nbpipe_kernel::pool`]).
    pub pool: Option<nbpipe_kernel::pool::KernelPool>,
    /// Project environments already ensured, reused while the requirements file is unchanged
    /// (checking a reused environment spawns Python: ~0.1 s per run otherwise).
    pub envs: EnvCache,
    /// Signalled when this process queues a run, so idle workers start it at once instead
    /// of at their next poll (the poll still covers runs queued by other processes).
    pub wake: Arc<tokio::sync::Notify>,
    /// Where attempts execute.
    pub executors: crate::executors::Executors,
    /// Finished runs' kernels shutting down in the background (a worker takes its next run
    /// meanwhile); the server waits for them before it exits.
    pub shutdowns: nbpipe_kernel::pool::Shutdowns,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            lease: Duration::from_secs(30),
            idle_poll: Duration::from_millis(250),
            limits: Limits::default(),
            pool: None,
            envs: EnvCache::default(),
            wake: Arc::new(tokio::sync::Notify::new()),
            executors: Default::default(),
            shutdowns: Default::default(),
        }
    }
}

pub use crate::projects::Projects;

/// Run one worker until `drain` becomes true (then finish the current run and return) or
/// `stop` carries a reason (then stop the current run too).
pub async fn work(
    queue: Queue,
    projects: Projects,
    cfg: WorkerConfig,
    worker_id: String,
    mut drain: watch::Receiver<bool>,
    stop: watch::Receiver<Option<Stop>>,
) {
    loop {
        if *drain.borrow() {
            return;
        }
        match queue.claim(&worker_id, &cfg.limits, cfg.lease).await {
            Ok(Some(claimed)) => {
                run_claimed(
                    &queue,
                    &projects,
                    &cfg,
                    &worker_id,
                    claimed.run,
                    stop.clone(),
                )
                .await
            }
            Ok(None) => {
                tokio::select! {
                    _ = tokio::time::sleep(cfg.idle_poll) => {}
                    _ = cfg.wake.notified() => {}
                    _ = drain.changed() => {}
                }
            }
            Err(e) => {
                tracing_warn(&format!("worker {worker_id}: could not claim a run: {e}"));
                tokio::time::sleep(cfg.idle_poll * 4).await;
            }
        }
    }
}

async fn run_claimed(
    queue: &Queue,
    projects: &Projects,
    cfg: &WorkerConfig,
    worker_id: &str,
    run: RunRow,
    stop: watch::Receiver<Option<Stop>>,
) {
    let Some(project) = projects.get(&run.project) else {
        let _ = queue
            .finish(
                &run.id,
                worker_id,
                Finish::Failed {
                    error: format!("this server has no project named `{}`", run.project),
                    output: vec![],
                    manifest: serde_json::Value::Null,
                    retry: false, // policy::Failure::UnknownProject
                },
            )
            .await;
        return;
    };
    let executor = match cfg.executors.for_project(&project) {
        Ok(e) => e,
        Err(error) => {
            let _ = queue
                .finish(
                    &run.id,
                    worker_id,
                    Finish::Failed {
                        error,
                        output: vec![],
                        manifest: serde_json::Value::Null,
                        retry: false,
                    },
                )
                .await;
            return;
        }
    };
    let local = executor.kind() == "local";
    let parameters = params_from_json(&run.parameters);
    let opts = RunOptions {
        parameters,
        output: None,
        run_id: Some(run.id.clone()),
        jobs: project.jobs.unwrap_or(1),
        cache: false,
        trigger: run.trigger.as_ref().map(trigger_object),
        quiet: true,
        pool: cfg.pool.clone().filter(|_| local),
        // A run elsewhere (a container) has its environment in its image.
        env: match local {
            true => cfg.envs.get_or_ensure(&project).await,
            false => None,
        },
        before_step: Some(cancel_gate(queue, &run.id)),
        fork: cfg.envs.forks().filter(|_| project.env.fork_server),
        // The server decides: its zygotes, or cold starts; a run never makes its own.
        no_fork_server: cfg.envs.forks().is_none(),
        shutdowns: Some(cfg.shutdowns.clone()),
        // The revision the server checked out, else (for a container, whose image has no
        // `.git`) what git says of the project folder; a local run asks git itself.
        git: match projects.served(&run.project).and_then(|s| s.git.clone()) {
            Some(g) => Some(g),
            None if !local => nbpipe_project::run::git_info(&project.dir).await,
            None => None,
        },
        // Resolved by the run itself (local), or by the executor for its container.
        secrets: None,
    };
    let number = run.attempts;
    drive(
        queue,
        cfg,
        worker_id,
        run,
        project.clone(),
        executor,
        Start::Launch(Box::new(move |observer| Attempt {
            project,
            options: opts,
            number,
            observer,
        })),
        stop,
    )
    .await;
}

/// Follow an attempt this server took over from a server that died while its attempt ran
/// elsewhere (a container): [`Queue::take_over`] gave `worker_id` the lease; from here on it
/// is followed, cancelled, timed out and finished as if this server had launched it.
pub async fn follow_taken_over(
    queue: Queue,
    projects: Projects,
    cfg: WorkerConfig,
    worker_id: String,
    run_id: String,
    handle: Handle,
    stop: watch::Receiver<Option<Stop>>,
) {
    let run = match queue.get(&run_id).await {
        Ok(Some(run)) => run,
        _ => return,
    };
    let Some(project) = projects.get(&run.project) else {
        return;
    };
    let Some(executor) = cfg.executors.by_kind(&handle.executor) else {
        return;
    };
    eprintln!(
        "Run {run_id}: following attempt {} again ({} `{}`)",
        handle.attempt, handle.executor, handle.id
    );
    drive(
        &queue,
        &cfg,
        &worker_id,
        run,
        project,
        executor,
        Start::Follow(handle),
        stop,
    )
    .await;
}

/// How [`drive`] gets its attempt: launched now (the attempt is made with the run's live
/// progress observer), or one already running.
enum Start {
    Launch(Box<dyn FnOnce(Arc<dyn RunObserver>) -> Attempt + Send>),
    Follow(Handle),
}

/// Everything between the claim and the final state of one attempt: heartbeats, cancels,
/// the run's time limit, live progress, and the final status by the project's policy.
#[allow(clippy::too_many_arguments)]
async fn drive(
    queue: &Queue,
    cfg: &WorkerConfig,
    worker_id: &str,
    run: RunRow,
    project: Project,
    executor: Arc<dyn Executor>,
    start: Start,
    mut stop: watch::Receiver<Option<Stop>>,
) {
    // The run's own stop channel: server stop, or a cancel request seen by the heartbeat.
    let (run_stop_tx, run_stop_rx) = watch::channel(None);
    let heartbeat = {
        let queue = queue.clone();
        let id = run.id.clone();
        let worker = worker_id.to_string();
        let lease = cfg.lease;
        let tx = run_stop_tx.clone();
        // Subscribed before the first check, so no cancel falls in between.
        let mut cancels = queue.cancel_requests();
        tokio::spawn(async move {
            let mut beat = tokio::time::interval(lease / 3);
            let mut poll = tokio::time::interval(CANCEL_POLL);
            beat.tick().await; // the claim just took the lease
            loop {
                let cancel = tokio::select! {
                    _ = beat.tick() => {
                        // The lease is gone (another worker recovered it): stop.
                        queue.heartbeat(&id, &worker, lease).await.ok() == Some(false)
                    }
                    _ = poll.tick() => queue.is_cancel_requested(&id).await.unwrap_or(false),
                    told = cancels.recv() => match told {
                        Ok(cancelled) => cancelled == id,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            queue.is_cancel_requested(&id).await.unwrap_or(false)
                        }
                        // The queue handle is gone: the poll goes on.
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                            cancels = queue.cancel_requests();
                            false
                        }
                    },
                };
                if cancel {
                    let _ = tx.send(Some(Stop::Cancelled));
                }
            }
        })
    };
    let forward = {
        let tx = run_stop_tx.clone();
        tokio::spawn(async move {
            if let Ok(v) = stop.wait_for(Option::is_some).await.map(|v| *v) {
                let _ = tx.send(v);
            }
        })
    };
    // `serve.timeout`, counted from the run's start (a taken-over attempt keeps its clock):
    // stop the attempt with `Stop::Deadline` (its steps then say the run's time limit was
    // reached, not that it was cancelled), and remember why.
    let timed_out = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let timer = project.serve.timeout.map(|limit| {
        let elapsed = run
            .started_at
            .map(|t| (chrono::Utc::now() - t).to_std().unwrap_or_default())
            .unwrap_or_default();
        let left = limit.saturating_sub(elapsed);
        let (tx, flag) = (run_stop_tx.clone(), timed_out.clone());
        tokio::spawn(async move {
            tokio::time::sleep(left).await;
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            let _ = tx.send(Some(Stop::Deadline));
        })
    });
    let (observer, progress) = LiveProgress::start(queue.clone(), run.id.clone(), worker_id);
    let launched = match start {
        Start::Launch(make) => {
            let attempt = make(observer.clone());
            match executor.launch(attempt).await {
                Ok(handle) => {
                    let stored = serde_json::to_value(&handle).unwrap_or_default();
                    if let Err(e) = queue
                        .set_attempt_handle(&run.id, run.attempts, &stored)
                        .await
                    {
                        tracing_warn(&format!(
                            "run {}: could not record its executor handle: {e}",
                            run.id
                        ));
                    }
                    Ok(handle)
                }
                Err(e) => Err(e),
            }
        }
        Start::Follow(handle) => Ok(handle),
    };
    let result = match launched {
        Ok(handle) => {
            // Stops (server stop, cancel, lost lease, timeout) go to the executor.
            let cancel = {
                let (executor, handle, mut rx) = (executor.clone(), handle.clone(), run_stop_rx);
                tokio::spawn(async move {
                    if let Ok(Some(why)) = rx.wait_for(Option::is_some).await.map(|v| *v) {
                        let _ = executor.cancel(&handle, why).await;
                    }
                })
            };
            let followed = executor.follow(&handle, observer.clone()).await;
            cancel.abort();
            followed
        }
        Err(e) => Err(e),
    };
    // Every progress update is written (or dropped) before the final state, never after.
    progress.finish().await;
    heartbeat.abort();
    forward.abort();
    if let Some(timer) = timer {
        timer.abort();
    }
    let timed_out = timed_out.load(std::sync::atomic::Ordering::SeqCst);
    let finish = match result {
        Ok(Outcome::Ran(outcome)) => finish_of(&project, outcome, timed_out),
        Ok(Outcome::Lost { error, .. }) if timed_out => Finish::Failed {
            error: format!(
                "{}; {error}",
                policy::timeout_error(project.serve.timeout.unwrap_or_default())
            ),
            output: vec![],
            manifest: serde_json::Value::Null,
            retry: policy::retry_failure(&project, Failure::TimedOut),
        },
        Ok(Outcome::Lost {
            error,
            interrupted: true,
        }) => Finish::Interrupted {
            error,
            output: vec![],
            manifest: serde_json::Value::Null,
        },
        Ok(Outcome::Lost { error, .. }) => Finish::Failed {
            error,
            output: vec![],
            manifest: serde_json::Value::Null,
            retry: policy::retry_failure(&project, Failure::Executor),
        },
        Err(e) if e.is_infrastructure() => Finish::Interrupted {
            error: e.to_string(),
            output: vec![],
            manifest: serde_json::Value::Null,
        },
        Err(e) => Finish::Failed {
            error: e.to_string(),
            output: vec![],
            manifest: serde_json::Value::Null,
            retry: policy::retry_failure(&project, Failure::Executor),
        },
    };
    if let Err(e) = queue.finish(&run.id, worker_id, finish).await {
        tracing_warn(&format!("run {}: could not record its end: {e}", run.id));
    }
}

/// How an attempt ends, by the project's policy: a failure is retried (while attempts
/// remain) only when [`policy::retry_failure`] says another attempt can fix it.
fn finish_of(
    project: &Project,
    result: Result<RunManifest, nbpipe_project::run::RunError>,
    timed_out: bool,
) -> Finish {
    let m = match result {
        Ok(m) => m,
        Err(e) => {
            return Finish::Failed {
                error: e.to_string(),
                output: vec![],
                manifest: serde_json::Value::Null,
                retry: policy::retry_failure(project, Failure::Error(&e)),
            }
        }
    };
    let manifest = serde_json::to_value(&m).unwrap_or_default();
    let output = outputs(&m);
    match m.status.as_str() {
        status::SUCCEEDED => Finish::Succeeded { output, manifest },
        _ if timed_out => Finish::Failed {
            error: policy::timeout_error(project.serve.timeout.unwrap_or_default()),
            output,
            manifest,
            retry: policy::retry_failure(project, Failure::TimedOut),
        },
        status::CANCELLED => Finish::Cancelled { output, manifest },
        _ => Finish::Failed {
            error: failure_summary(&m),
            retry: policy::retry_failure(project, Failure::Steps(&m)),
            output,
            manifest,
        },
    }
}

/// Ensured environments by project name, with the requirements file's (size, mtime) then,
/// and the server's fork servers, which get each project's environment as it is ensured (a
/// changed environment replaces the project's zygote).
#[derive(Clone, Default)]
pub struct EnvCache {
    inner: Arc<std::sync::Mutex<HashMap<String, (nbpipe_env::ManagedEnv, FileStamp)>>>,
    forks: Option<nbpipe_kernel::ForkServers>,
}

/// A file's (size, modification time), `None` when it does not exist.
type FileStamp = Option<(u64, std::time::SystemTime)>;

impl EnvCache {
    /// A cache that enables each ensured environment on `forks` (for projects that keep
    /// `env.fork_server` on).
    pub fn with_forks(forks: Option<nbpipe_kernel::ForkServers>) -> EnvCache {
        EnvCache {
            forks,
            ..EnvCache::default()
        }
    }

    /// The fork servers runs fork their kernels from (`None`: cold starts).
    pub fn forks(&self) -> Option<nbpipe_kernel::ForkServers> {
        self.forks.clone()
    }

    /// The project's environment: cached while its requirements file is unchanged, else
    /// ensured now (`None` if that fails: the runner then reports the error itself).
    pub async fn get_or_ensure(&self, project: &Project) -> Option<nbpipe_env::ManagedEnv> {
        self.ensure(project).await.ok()
    }

    /// [`EnvCache::get_or_ensure`], saying why the environment could not be prepared.
    pub async fn ensure(&self, project: &Project) -> Result<nbpipe_env::ManagedEnv, String> {
        let req = project
            .env
            .requirements
            .clone()
            .unwrap_or_else(|| project.dir.join("requirements.txt"));
        let stamp = std::fs::metadata(&req)
            .ok()
            .and_then(|m| Some((m.len(), m.modified().ok()?)));
        if let Ok(map) = self.inner.lock() {
            if let Some((env, seen)) = map.get(&project.key()) {
                if *seen == stamp {
                    return Ok(env.clone());
                }
            }
        }
        let (dir, opts) = (
            project.dir.clone(),
            nbpipe_env::EnvOptions {
                python: project.env.python.clone(),
                requirements: project.env.requirements.clone(),
                force: false,
                quiet: true,
            },
        );
        let env = tokio::task::spawn_blocking(move || nbpipe_env::ensure(&dir, &opts))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        if let Ok(mut map) = self.inner.lock() {
            map.insert(project.key(), (env.clone(), stamp));
        }
        if let Some(forks) = self.forks.as_ref().filter(|_| project.env.fork_server) {
            forks.enable(&project.key(), &env.python, &env.hash, &project.env.preload);
        }
        Ok(env)
    }
}

/// Asks the database before each step whether a cancel was accepted for the run.
fn cancel_gate(queue: &Queue, run_id: &str) -> nbpipe_project::run::StepGate {
    let (queue, id) = (queue.clone(), run_id.to_string());
    Arc::new(move || {
        let (queue, id) = (queue.clone(), id.clone());
        Box::pin(async move {
            match queue.is_cancel_requested(&id).await {
                Ok(true) => Some(Stop::Cancelled),
                _ => None,
            }
        })
    })
}

/// Copies the runner's manifest into the queue as it changes: the observer keeps only the
/// newest manifest, and one task writes it, so updates land in order and a burst of changes
/// costs one write. [`ProgressWriter::finish`] writes the last one and ends the task.
struct LiveProgress {
    latest: watch::Sender<Option<serde_json::Value>>,
}

/// The task writing a run's live progress.
struct ProgressWriter {
    done: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl ProgressWriter {
    /// Write the newest manifest not yet written, then stop: later updates go nowhere.
    async fn finish(self) {
        let _ = self.done.send(());
        let _ = self.task.await;
    }
}

impl LiveProgress {
    fn start(queue: Queue, run_id: String, worker: &str) -> (Arc<LiveProgress>, ProgressWriter) {
        let (latest, mut rx) = watch::channel(None::<serde_json::Value>);
        let (done, mut finished) = tokio::sync::oneshot::channel::<()>();
        let worker = worker.to_string();
        let task = tokio::spawn(async move {
            let mut written = None;
            loop {
                let last = tokio::select! {
                    biased;
                    changed = rx.changed() => changed.is_err(),
                    _ = &mut finished => true,
                };
                let value = rx.borrow_and_update().clone();
                if value.is_some() && value != written {
                    if let Some(v) = &value {
                        let _ = queue.update_manifest(&run_id, &worker, v).await;
                    }
                    written = value;
                }
                if last {
                    return;
                }
            }
        });
        (
            Arc::new(LiveProgress { latest }),
            ProgressWriter { done, task },
        )
    }
}

impl RunObserver for LiveProgress {
    fn manifest(&self, manifest: &RunManifest) {
        let value = serde_json::to_value(manifest).unwrap_or_default();
        self.latest.send_replace(Some(value));
    }
}

fn outputs(m: &RunManifest) -> Vec<String> {
    let mut out = vec![format!("{}/run.json", m.output.trim_end_matches('/'))];
    out.extend(m.steps.iter().filter_map(|s| s.output.clone()));
    out
}

fn failure_summary(m: &RunManifest) -> String {
    let failed: Vec<String> = m
        .steps
        .iter()
        .filter(|s| s.status == status::FAILED)
        .map(|s| format!("{}: {}", s.id, s.error.clone().unwrap_or_default()))
        .collect();
    if failed.is_empty() {
        format!("the run ended {}", m.status)
    } else {
        failed.join("; ")
    }
}

/// The trigger object handed to notebooks (`trigger_key`, `trigger_uri`, ...).
pub fn trigger_object(ev: &ObjectEvent) -> TriggerObject {
    TriggerObject {
        bucket: ev.bucket.clone(),
        key: ev.key.clone(),
        uri: ev.uri(),
        etag: ev.etag.clone(),
        version: ev.version_id.clone(),
        size: ev.size,
        event_time: ev.event_time.clone(),
        region: ev.region.clone(),
        path: ev.path.clone(),
    }
}

fn params_from_json(v: &serde_json::Value) -> Parameters {
    let mut p = Parameters::new();
    if let Some(map) = v.as_object() {
        for (k, v) in map {
            p.set(k, Param::from_json(v));
        }
    }
    p
}

fn tracing_warn(msg: &str) {
    eprintln!("warning: {msg}");
}
