//! `nbpipe serve`: wiring the parts together.
//!
//! Loads the projects, opens the queue (recovering runs a killed server left running), starts
//! the triggers (a local inbox folder per S3 trigger's bucket, prefix polling and schedules,
//! which follow revision switches: see [`crate::triggers`]; SQS), the workers and the HTTP
//! API/UI, and drains on shutdown: intake stops, running runs get `drain_timeout` to finish,
//! then they are stopped (cell interrupted, notebook saved).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use nbpipe_exec::Stop;
use tokio::sync::watch;

use crate::event::{ObjectEvent, RunRequest};
use crate::intake::durable::{CursorError, CursorStore, EventSink, SinkError};
use crate::intake::outcome::{IntakeCounters, Submitted, Superseded};
use crate::intake::routing::{self, Route};
use crate::queue::{Enqueued, Limits, Queue};
use crate::worker::{self, Projects, WorkerConfig};

/// Everything `nbpipe serve` is told.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Project folders.
    pub projects: Vec<PathBuf>,
    /// HTTP address (127.0.0.1 unless told otherwise).
    pub listen: SocketAddr,
    /// Host names (beyond IP addresses and `localhost`) requests may name in `Host`.
    pub allowed_hosts: Vec<String>,
    /// Database URL (`sqlite:///path`, a path, or `postgres://…`); default: a SQLite file
    /// under the first project's `.nbpipe/`.
    pub database: Option<String>,
    /// Runs this server executes at once (its worker tasks; each runs one run at a time).
    pub workers: usize,
    /// Runs executing at once across every server sharing the database (`None`: no limit
    /// beyond each server's `workers`).
    pub max_running: Option<usize>,
    /// Runs of one project executing at once (across every server sharing the database).
    pub per_project: usize,
    /// Token required for state-changing requests and hooks.
    pub token: Option<String>,
    /// Local inbox: a file at `<inbox>/<bucket>/<key>` triggers like `s3://bucket/key`.
    pub inbox: Option<PathBuf>,
    /// Poll S3 trigger prefixes this often (off when `None`).
    pub poll: Option<Duration>,
    /// SQS queues receiving the buckets' notifications (S3 or EventBridge shape), long-polled;
    /// a message is deleted only after its runs are durably queued. Needs the `sqs` feature.
    pub sqs_queues: Vec<String>,
    /// How long running runs may take to finish after a shutdown request.
    pub drain_timeout: Duration,
    /// Serve the projects' settings of these environments, each as its own project
    /// (`name@environment`); empty: each folder's checked-out branch decides.
    pub envs: Vec<String>,
    /// Follow these git repositories: serve each one's project, one environment per
    /// branch, deploying each new commit (see [`crate::gitops`]). No two may serve the
    /// same project key (nor a project folder's).
    pub git: Vec<crate::gitops::GitOptions>,
    /// The secret `POST /hooks/git` requests are signed with (`None`: the hook is off and
    /// the repository is polled only).
    pub git_webhook_secret: Option<String>,
    /// How long a worker's claim lasts without a heartbeat; a run whose server died is
    /// retried (or failed, per its retry policy) about this long after the death.
    pub lease: Duration,
    /// Pre-started kernels kept per project step (0: cold starts only).
    pub warm_kernels: usize,
    /// Start every kernel cold instead of forking Python kernels of managed environments
    /// from a zygote per environment (see `nbpipe_kernel::fork`).
    pub no_fork_server: bool,
    /// Run every project's attempts with this executor (`local`, `docker`) whatever its
    /// `executor:` says.
    pub executor: Option<String>,
    /// The nbpipe binary put in projects' images for the Docker executor (default: this
    /// one).
    pub image_binary: Option<PathBuf>,
    /// The server's address as people reach it (`https://nbpipe.example.org`), for the
    /// report links in notifications (`{public_url}/runs/{id}`). Default: the listen address.
    pub public_url: Option<String>,
}

/// Errors that stop the server from starting.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A project could not be loaded.
    #[error(transparent)]
    Project(#[from] nbpipe_project::ConfigError),
    /// Two projects have the same name.
    #[error("two projects are named `{0}`; give one a different `name:` in its nbpipe.yaml")]
    DuplicateName(String),
    /// No project given.
    #[error("no project folder given")]
    NoProjects,
    /// The queue could not be opened.
    #[error("could not open the run database: {0}")]
    Queue(#[from] crate::queue::QueueError),
    /// A trigger is invalid.
    #[error("{0}")]
    Intake(#[from] crate::intake::IntakeError),
    /// The listener could not be bound.
    #[error("could not listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Refused configuration (e.g. a public address without a token).
    #[error("{0}")]
    Config(String),
}

/// Load and index the projects by name.
pub fn load_projects(dirs: &[PathBuf], envs: &[String]) -> Result<Projects, ServeError> {
    use nbpipe_project::config::Select;
    let selects: Vec<Select<'_>> = if envs.is_empty() {
        vec![Select::CheckedOut]
    } else {
        envs.iter().map(|e| Select::Named(e)).collect()
    };
    let mut list: Vec<nbpipe_project::Project> = Vec::new();
    for dir in dirs {
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
        for select in &selects {
            let p = nbpipe_project::config::load_env(&dir, *select)?;
            if list.iter().any(|q| q.key() == p.key()) {
                return Err(ServeError::DuplicateName(p.key()));
            }
            list.push(p);
        }
    }
    Ok(Projects::new(list))
}

/// The default database: `<first project>/.nbpipe/nbpipe.db`.
pub fn default_database(first_project: &std::path::Path) -> String {
    Queue::default_path(first_project).display().to_string()
}

pub use crate::policy::max_attempts;
pub use crate::triggers::run_schedules;

/// Events → durable run requests for every matching project.
///
/// Events older (by S3's `sequencer`) than one already taken for their key are not queued
/// (the queue decides, see [`Enqueued::Superseded`]): they count as handled — so their SQS
/// message is deleted and the webhook answers `2xx` — and are logged on stderr and counted in
/// [`QueueSink::counters`].
pub struct QueueSink {
    queue: Queue,
    routes: std::sync::RwLock<Vec<Route>>,
    projects: Projects,
    wake: Arc<tokio::sync::Notify>,
    counters: Arc<IntakeCounters>,
}

impl QueueSink {
    /// A sink routing events by `routes`, with counters of its own.
    pub fn new(
        queue: Queue,
        routes: Vec<Route>,
        projects: Projects,
        wake: Arc<tokio::sync::Notify>,
    ) -> QueueSink {
        QueueSink {
            wake,
            queue,
            routes: std::sync::RwLock::new(routes),
            projects,
            counters: Arc::new(IntakeCounters::new()),
        }
    }

    /// Counts into `counters` (shared with other sinks and with `/metrics`).
    pub fn with_counters(mut self, counters: Arc<IntakeCounters>) -> QueueSink {
        self.counters = counters;
        self
    }

    /// The counters this sink updates.
    pub fn counters(&self) -> Arc<IntakeCounters> {
        self.counters.clone()
    }

    /// Queue the runs `events` ask for, in order; says what became of each request.
    pub async fn submit_events(&self, events: &[ObjectEvent]) -> Result<Submitted, SinkError> {
        let mut done = Submitted::default();
        for ev in events {
            let routes = self
                .routes
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            for req in routing::requests(&routes, ev) {
                match self.submit_request(&req).await? {
                    Enqueued::New(_) => done.queued += 1,
                    Enqueued::Duplicate(_) => done.duplicates += 1,
                    Enqueued::Superseded {
                        newer_run,
                        newer_sequencer,
                    } => {
                        let s = Superseded {
                            project: req.project.clone(),
                            bucket: ev.bucket.clone(),
                            key: ev.key.clone(),
                            sequencer: ev.sequencer.clone().unwrap_or_default(),
                            newer_sequencer,
                            newer_run,
                        };
                        eprintln!(
                            "superseded: {} (sequencer {}, via {}) not run for project `{}`: \
                             run {} is for a newer event (sequencer {})",
                            ev.uri(),
                            s.sequencer,
                            ev.source.as_str(),
                            s.project,
                            s.newer_run,
                            s.newer_sequencer
                        );
                        self.counters.count_superseded(&s.project, ev.source);
                        done.superseded.push(s);
                    }
                }
            }
        }
        Ok(done)
    }

    /// Routes events by `routes` from now on (a project was replaced by a new revision).
    pub fn set_routes(&self, routes: Vec<Route>) {
        *self.routes.write().unwrap_or_else(|e| e.into_inner()) = routes;
    }

    /// Queue one request.
    pub async fn submit_request(&self, req: &RunRequest) -> Result<Enqueued, SinkError> {
        let attempts = self
            .projects
            .get(&req.project)
            .map(|p| max_attempts(&p))
            .unwrap_or(1);
        let outcome = self
            .queue
            .enqueue(req, attempts)
            .await
            .map_err(SinkError::new)?;
        if matches!(outcome, Enqueued::New(_)) {
            self.wake.notify_waiters();
        }
        Ok(outcome)
    }
}

#[async_trait]
impl EventSink for QueueSink {
    async fn submit(&self, events: Vec<ObjectEvent>) -> Result<(), SinkError> {
        self.submit_events(&events).await.map(|_| ())
    }
}

/// Trigger cursors kept in the run database.
pub struct QueueCursors(pub Queue);

#[async_trait]
impl CursorStore for QueueCursors {
    async fn get(&self, name: &str) -> Result<Option<String>, CursorError> {
        self.0.cursor_get(name).await.map_err(CursorError::new)
    }
    async fn set(&self, name: &str, value: &str) -> Result<(), CursorError> {
        self.0
            .cursor_set(name, value)
            .await
            .map_err(CursorError::new)
    }
}

/// Attempts taken over from a dead server, to be followed by the worker pool.
pub type TakenOverRx =
    tokio::sync::mpsc::UnboundedReceiver<(String, String, nbpipe_executor::Handle)>;

/// The worker pool: `n` workers until drained; after `drain_timeout` running runs are stopped.
/// Attempts taken over from a dead server (`(worker id, run id, handle)` on `taken`) are
/// followed alongside, drained and stopped like the workers' own runs.
#[allow(clippy::too_many_arguments)]
pub async fn run_workers(
    queue: Queue,
    projects: Projects,
    opts: &ServeOptions,
    pool: Option<nbpipe_kernel::pool::KernelPool>,
    envs: worker::EnvCache,
    wake: Arc<tokio::sync::Notify>,
    drain: watch::Receiver<bool>,
    executors: crate::executors::Executors,
    mut taken: Option<TakenOverRx>,
) {
    let (stop_tx, stop_rx) = watch::channel(None::<Stop>);
    let cfg = WorkerConfig {
        executors,
        limits: Limits {
            // This server's own capacity is its worker count (an idle worker claims one run);
            // the database-wide cap is `--max-running`, so a server with few workers is not
            // starved by others that share the database.
            global: opts.max_running.unwrap_or(usize::MAX),
            per_project: HashMap::new(),
            default_per_project: opts.per_project.max(1),
        },
        lease: opts.lease,
        pool,
        envs,
        wake,
        ..WorkerConfig::default()
    };
    let mut set = tokio::task::JoinSet::new();
    for i in 0..opts.workers.max(1) {
        let id = format!("{}-{i}", Queue::new_worker_id());
        set.spawn(worker::work(
            queue.clone(),
            projects.clone(),
            cfg.clone(),
            id,
            drain.clone(),
            stop_rx.clone(),
        ));
    }
    let timeout = opts.drain_timeout;
    let mut drain_seen = drain.clone();
    let stopper = tokio::spawn(async move {
        let _ = drain_seen.wait_for(|d| *d).await;
        tokio::time::sleep(timeout).await;
        let _ = stop_tx.send(Some(Stop::Signal(15)));
    });
    loop {
        tokio::select! {
            next = set.join_next() => if next.is_none() { break },
            t = async { taken.as_mut()?.recv().await }, if taken.is_some() => match t {
                Some((worker_id, run_id, handle)) => {
                    set.spawn(worker::follow_taken_over(
                        queue.clone(),
                        projects.clone(),
                        cfg.clone(),
                        worker_id,
                        run_id,
                        handle,
                        stop_rx.clone(),
                    ));
                }
                None => taken = None,
            },
        }
    }
    stopper.abort();
    // The last runs' kernels are still exiting: no kernel outlives the server.
    cfg.shutdowns.wait().await;
}

/// Run the server until `shutdown` fires (first signal: drain; the caller exits on a second).
pub async fn serve(
    opts: ServeOptions,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ServeError> {
    crate::api::check_listen(&opts.listen, opts.token.as_deref())
        .map_err(|e| ServeError::Config(e.to_string()))?;
    if opts.projects.is_empty() && opts.git.is_empty() {
        return Err(ServeError::NoProjects);
    }
    // A followed repository's environments come from it, not from folders.
    let folder_envs = if !opts.git.is_empty() {
        &[][..]
    } else {
        &opts.envs[..]
    };
    let projects = load_projects(&opts.projects, folder_envs)?;
    // The first project folder's `.nbpipe/`, else (a server following git only) the work
    // folder's.
    let first_dir = match (opts.projects.first(), opts.git.first()) {
        (Some(d), _) => d.clone(),
        (None, Some(g)) => g.workdir.clone(),
        (None, None) => PathBuf::from("."),
    };
    let url = opts.database.clone().unwrap_or_else(|| {
        default_database(&std::fs::canonicalize(&first_dir).unwrap_or(first_dir))
    });
    let queue = Queue::open(&url).await?;
    // One zygote per project environment, living as long as the server, advertised so
    // that `nbpipe exec` may fork from it.
    let forks = if opts.no_fork_server {
        None
    } else {
        match nbpipe_env::zygote_registry() {
            Ok(dir) => nbpipe_kernel::ForkServers::advertised(dir).ok(),
            Err(_) => nbpipe_kernel::ForkServers::new().ok(),
        }
    };
    let envs = worker::EnvCache::with_forks(forks.clone());
    let wake = Arc::new(tokio::sync::Notify::new());
    let sink = Arc::new(QueueSink::new(
        queue.clone(),
        routing::routes(projects.values().iter()),
        projects.clone(),
        wake.clone(),
    ));
    let list: crate::api::ProjectList = projects
        .values()
        .iter()
        .map(|p| crate::api::ProjectInfo::from_project(p, opts.per_project))
        .collect::<Vec<_>>()
        .into();
    let executors = crate::executors::Executors::new(
        opts.executor.clone(),
        nbpipe_executor::DockerOptions {
            binary: opts.image_binary.clone(),
            ..Default::default()
        },
    );
    // Revision switches (git-ops), for the trigger tasks that follow the projects.
    let (switched_tx, mut switched) = watch::channel(());
    let switched_tx = Arc::new(switched_tx);
    // Repositories followed: their environments are served from their branches before
    // anything else starts (a server that cannot serve them all does not start).
    for (i, g) in opts.git.iter().enumerate() {
        if opts.git[..i].iter().any(|o| o.url == g.url) {
            return Err(ServeError::Config(format!(
                "`--git {}` is given twice",
                crate::gitops::redact_url(&g.url)
            )));
        }
        if opts.git[..i].iter().any(|o| o.workdir == g.workdir) {
            return Err(ServeError::Config(format!(
                "two followed repositories would share the work folder `{}`",
                g.workdir.display()
            )));
        }
    }
    let mut gitops = Vec::new();
    for g in &opts.git {
        // At a switch, events are routed by the new revision at once; the trigger tasks
        // follow on `switched` (see `crate::triggers`).
        let (sink, switched) = (sink.clone(), switched_tx.clone());
        let on_switch = Box::new(move |p: &Projects| {
            sink.set_routes(routing::routes(p.values().iter()));
            switched.send_replace(());
        });
        gitops.push(
            crate::gitops::GitOps::start(
                g.clone(),
                projects.clone(),
                list.clone(),
                queue.clone(),
                envs.clone(),
                executors.clone(),
                opts.per_project,
                on_switch,
            )
            .await
            .map_err(|e| ServeError::Config(e.to_string()))?,
        );
    }
    // The trigger tasks start from the projects as served now: the first revisions' switches
    // are not news to them.
    switched.borrow_and_update();
    // Every server sharing the database claims, retries and recovers runs of these projects
    // by the policies in their nbpipe.yaml as of the latest start.
    for p in projects.values() {
        queue
            .set_project_policy(&p.key(), &crate::policy::stored_policy(&p))
            .await?;
    }
    let startup_worker = Queue::new_worker_id();
    // Attempts still running elsewhere (containers a killed server started) are followed
    // again, not started twice; the other runs a dead server left are recovered.
    let remote = executors.any_remote(projects.values().iter());
    let (taken_tx, taken_rx) = tokio::sync::mpsc::unbounded_channel();
    let take_over = {
        let (queue, executors, worker, lease) = (
            queue.clone(),
            executors.clone(),
            startup_worker.clone(),
            opts.lease,
        );
        move || {
            let (queue, executors, worker, tx) = (
                queue.clone(),
                executors.clone(),
                worker.clone(),
                taken_tx.clone(),
            );
            async move {
                if !remote {
                    return Vec::new();
                }
                let found = crate::executors::take_over(&queue, &executors, &worker, lease).await;
                for (run_id, handle) in found.taken {
                    let _ = tx.send((worker.clone(), run_id, handle));
                }
                found.uncertain
            }
        }
    };
    let keep = take_over().await;
    let recovered = queue.recover_except(&startup_worker, &keep).await?;
    if recovered.total() > 0 {
        eprintln!(
            "Recovered {} run(s) a previous server left running",
            recovered.total()
        );
    }

    let cursors = Arc::new(QueueCursors(queue.clone()));
    let (intake_stop_tx, intake_stop) = watch::channel(false);

    let mut tasks = Vec::new();
    // Inbox folders and polled prefixes: started now (one that cannot start stops the
    // server's start), then reconciled at every revision switch.
    let mut watchers = crate::triggers::Watchers::new(
        sink.clone(),
        cursors.clone(),
        opts.inbox.clone(),
        opts.poll,
        intake_stop.clone(),
    );
    watchers.reconcile(&projects).await?;
    if let Some(inbox) = &opts.inbox {
        eprintln!(
            "Inbox: files under {}/<bucket>/<key> trigger like s3://bucket/key",
            inbox.display()
        );
    }
    tasks.push(tokio::spawn(
        watchers.follow(projects.clone(), switched.clone()),
    ));
    tasks.push(tokio::spawn(crate::triggers::run_schedules(
        sink.clone(),
        cursors.clone(),
        projects.clone(),
        Some(switched.clone()),
        intake_stop.clone(),
    )));

    #[cfg(feature = "sqs")]
    for url in &opts.sqs_queues {
        let intake = crate::intake::sqs::SqsIntake::from_env(crate::intake::sqs::SqsOptions::new(
            url.clone(),
        ))
        .await;
        let (sink, mut stop) = (sink.clone(), intake_stop.clone());
        tasks.push(tokio::spawn(async move {
            intake
                .run(
                    sink.as_ref(),
                    async move {
                        let _ = stop.wait_for(|s| *s).await;
                    },
                    |e| eprintln!("warning: sqs: {e}"),
                )
                .await;
        }));
    }
    #[cfg(not(feature = "sqs"))]
    if !opts.sqs_queues.is_empty() {
        return Err(ServeError::Config(
            "this build has no SQS support (feature `sqs`)".into(),
        ));
    }

    // HTTP API and UI.
    let hook_sink = sink.clone();
    let hooks: crate::api::HookSink = Arc::new(move |events: Vec<ObjectEvent>| {
        let sink = hook_sink.clone();
        Box::pin(async move { sink.submit_events(&events).await.map_err(|e| e.to_string()) })
    });
    let counters = sink.counters();
    let state = crate::api::AppState {
        queue: queue.clone(),
        projects: list,
        git: (!gitops.is_empty()).then(|| crate::api::GitHook {
            secret: opts.git_webhook_secret.clone(),
            ops: gitops.clone(),
        }),
        token: opts.token.clone(),
        hooks,
        intake: counters,
        allowed_hosts: opts.allowed_hosts.clone(),
    };
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: opts.listen,
            source,
        })?;
    let addr = listener.local_addr().unwrap_or(opts.listen);
    eprintln!("Listening on http://{addr}");
    let (http_stop_tx, mut http_stop) = watch::channel(false);
    let http = tokio::spawn(async move {
        let _ = crate::api::serve(listener, state, async move {
            let _ = http_stop.wait_for(|s| *s).await;
        })
        .await;
    });

    // Notifications of finished runs (`notify:`), delivered in the background.
    let (notify_stop_tx, notify_stop) = watch::channel(false);
    let notifier = {
        let public_url = opts
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"));
        let notifier = crate::notifier::Notifier::new(queue.clone(), projects.clone(), &public_url);
        tokio::spawn(notifier.run(notify_stop, Duration::from_secs(10)))
    };

    // Runs whose worker died (another server process killed) come back when their lease ends;
    // hourly, per-key sequencers of keys without recent events are forgotten.
    {
        let (queue, lease, mut stop) = (queue.clone(), opts.lease, intake_stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut last_prune: Option<std::time::Instant> = None;
            loop {
                if last_prune.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600)) {
                    last_prune = Some(std::time::Instant::now());
                    if let Err(e) = queue
                        .prune_sequencers(crate::queue::SEQUENCER_RETENTION)
                        .await
                    {
                        eprintln!("warning: could not prune old per-key sequencers: {e}");
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(lease / 2) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                let keep = take_over().await;
                if let Ok(r) = queue.recover_except(&startup_worker, &keep).await {
                    if r.total() > 0 {
                        eprintln!(
                            "Recovered {} run(s) whose worker stopped answering",
                            r.total()
                        );
                    }
                }
            }
        }));
    }
    for ops in gitops {
        tasks.push(tokio::spawn(ops.run(intake_stop.clone())));
    }
    let pool =
        (opts.warm_kernels > 0).then(|| nbpipe_kernel::pool::KernelPool::new(opts.warm_kernels));
    if let Some(pool) = &pool {
        warm_pool(pool, &projects, &envs, forks.as_ref()).await;
    }
    let (drain_tx, drain_rx) = watch::channel(false);
    drop(forks); // the workers hold it through `envs`
    let workers = {
        let (queue, projects, opts, pool, envs, wake) = (
            queue.clone(),
            projects.clone(),
            opts.clone(),
            pool.clone(),
            envs.clone(),
            wake.clone(),
        );
        tokio::spawn(async move {
            run_workers(
                queue,
                projects,
                &opts,
                pool,
                envs,
                wake,
                drain_rx,
                executors,
                Some(taken_rx),
            )
            .await
        })
    };

    let _ = shutdown.wait_for(|s| *s).await;
    eprintln!(
        "Shutting down: no new runs; waiting up to {} s for running ones",
        opts.drain_timeout.as_secs()
    );
    let _ = intake_stop_tx.send(true);
    let _ = drain_tx.send(true);
    let _ = workers.await;
    let _ = notify_stop_tx.send(true);
    let _ = notifier.await;
    let _ = http_stop_tx.send(true);
    let _ = http.await;
    for t in tasks {
        t.abort();
    }
    if let Some(pool) = pool {
        pool.shutdown().await;
    }
    queue.close().await;
    Ok(())
}

/// Pre-start kernels for every step of every project: its environment (built now if needed)
/// and its notebook's folder, exactly as the run will launch them.
async fn warm_pool(
    pool: &nbpipe_kernel::pool::KernelPool,
    projects: &Projects,
    envs: &worker::EnvCache,
    forks: Option<&nbpipe_kernel::ForkServers>,
) {
    for p in projects.values() {
        if !p.secrets.is_empty() {
            // Its kernels get the secrets in their environment: never from the pool.
            continue;
        }
        // Ensured through the workers' cache, so the first run reuses it too.
        let Some(env) = envs.get_or_ensure(&p).await else {
            eprintln!(
                "warning: project `{}`: no warm kernels (its environment could not be prepared; runs will say why)",
                p.name
            );
            continue;
        };
        for (i, step) in p.steps.iter().enumerate() {
            if step.kernel.is_some() {
                continue;
            }
            let launch = nbpipe_kernel::LaunchOptions {
                fork: forks.filter(|_| p.env.fork_server).cloned(),
                ..nbpipe_project::run::pool_launch(&p, i)
            };
            pool.warm(&env.kernelspec(), &launch);
        }
    }
}
