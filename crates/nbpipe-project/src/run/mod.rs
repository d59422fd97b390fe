//! Running a project: every step's notebook through the engine, in order or as a DAG.
//!
//! Owns scheduling (independent steps in parallel up to `jobs`; a failed step stops its
//! dependents while the others finish), retries with backoff, per-step time limits, run
//! context parameters, the step cache, and the outputs of a run: `{output}/{id}.ipynb`
//! (written while the step runs), `{output}/{id}.html` and `{output}/run.json`.
//! It does not parse `nbpipe.yaml` ([`crate::config`]) nor execute cells (`nbpipe-exec`).

pub mod cache;
mod context;
pub mod manifest;
mod step;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{SecondsFormat, Utc};
use nbpipe_exec::Stop;
use nbpipe_params::Parameters;
use nbpipe_store::Location;
use serde_json::Value;
use tokio::sync::{watch, Mutex};
use tokio::task::JoinSet;

pub use context::TriggerObject;
use manifest::{status, EnvironmentInfo, GitInfo, RunManifest, StepRecord};
pub use step::{launch_cwd, pool_launch};

use crate::config::Project;

/// How to run a project.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Parameters overriding the project's and steps' defaults (`-p`, `-r`, `-f`).
    pub parameters: Parameters,
    /// Output prefix overriding the project's `output`.
    pub output: Option<String>,
    /// Run id (default: UTC timestamp + random suffix).
    pub run_id: Option<String>,
    /// Steps running at once (at least 1).
    pub jobs: usize,
    /// Serve unchanged steps from the cache.
    pub cache: bool,
    /// The object that triggered this run.
    pub trigger: Option<TriggerObject>,
    /// Do not echo environment-building output.
    pub quiet: bool,
    /// Warm kernels to take instead of cold starts (the service's pool). Without one, a run
    /// of several steps makes its own, to start each step's kernel during the step before.
    pub pool: Option<nbpipe_kernel::pool::KernelPool>,
    /// The project's environment when the caller already ensured it (the service keeps it
    /// between runs); `None` ensures it now.
    pub env: Option<nbpipe_env::ManagedEnv>,
    /// Asked before steps start: `Some(stop)` stops the run as that stop would (no step
    /// starts, running ones are left to the stop channel). The service asks its database, so
    /// no step starts once a cancel has been accepted, however late the stop channel hears.
    pub before_step: Option<StepGate>,
    /// Fork servers to fork the environment's kernels from (the service's, which outlive a
    /// run). Without them, a run makes its own unless `no_fork_server` is set or the project
    /// says `env.fork_server: false`.
    pub fork: Option<nbpipe_kernel::ForkServers>,
    /// Start every kernel cold (`--no-fork-server`).
    pub no_fork_server: bool,
    /// The project's secret values when the caller already resolved them; `None` resolves
    /// `project.secrets` at the start of the run (before any kernel starts).
    pub secrets: Option<crate::secrets::Resolved>,
    /// Where finished steps' kernels shut down in the background (the service's, which it
    /// waits for when it stops). Without one, the run makes its own and waits for it before
    /// it returns, so a step never waits for the previous step's kernel to exit.
    pub shutdowns: Option<nbpipe_kernel::pool::Shutdowns>,
    /// The commit and branch the project's files are at, when the caller knows them (a
    /// revision folder the server checked out has no `.git`). Without it, `git` is asked
    /// about the project folder.
    pub git: Option<GitInfo>,
}

/// See [`RunOptions::before_step`].
pub type StepGate = Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Stop>> + Send>>
        + Send
        + Sync,
>;

/// What a run reports as it goes.
pub trait RunObserver: Send + Sync {
    /// A line for the user.
    fn message(&self, _msg: &str) {}
    /// A step changed status (`running`, `succeeded`, ...).
    fn step(&self, _id: &str, _status: &str, _detail: &str) {}
    /// The manifest was written (live progress for the service).
    fn manifest(&self, _manifest: &RunManifest) {}
}

/// Errors that prevent a run from starting or from recording itself.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The kernel environment could not be built.
    #[error("could not prepare the project's kernel environment: {0}")]
    Env(#[from] nbpipe_env::EnvError),
    /// The output location is unusable.
    #[error("{0}")]
    Store(#[from] nbpipe_store::StoreError),
    /// A secret could not be resolved (the message names it and its source, not a value).
    #[error(transparent)]
    Secret(#[from] crate::secrets::SecretError),
    /// The output template is wrong.
    #[error("output `{template}`: {reason}")]
    Output {
        /// The template.
        template: String,
        /// What is wrong.
        reason: String,
    },
}

/// Shared state of one run.
pub(crate) struct RunState {
    pub project: Project,
    pub opts: RunOptions,
    pub run_id: String,
    pub prefix: Location,
    pub env: Option<nbpipe_env::ManagedEnv>,
    pub manifest: Mutex<RunManifest>,
    pub observer: Arc<dyn RunObserver>,
    pub cache_keys: Mutex<HashMap<usize, String>>,
    /// The secret values, for kernels' environment and masking.
    pub secrets: crate::secrets::Resolved,
    /// `opts.pool` is this run's own, not a caller's: kernels with the run's secrets may be
    /// pre-started in it (see `step::next_kernel`).
    pub private_pool: bool,
    /// Succeeded steps' HTML reports being rendered and stored (see `step::report_later`);
    /// the run waits for them before its final manifest.
    pub reports: std::sync::Mutex<JoinSet<()>>,
}

/// Run `project`; returns the final manifest (also written to `{output}/run.json`).
pub async fn run(
    project: Project,
    mut opts: RunOptions,
    observer: Arc<dyn RunObserver>,
    stop: watch::Receiver<Option<Stop>>,
) -> Result<RunManifest, RunError> {
    // Without a caller's pool, a pipeline of several steps gets its own: each step's kernel
    // starts while the step before it runs (see `step::prewarm_next`).
    let own_pool = (opts.pool.is_none() && project.steps.len() > 1)
        .then(|| nbpipe_kernel::pool::KernelPool::on_demand(1));
    if let Some(pool) = &own_pool {
        opts.pool = Some(pool.clone());
    }
    // The run's own fork servers live as long as the run: dropping them kills the zygote.
    if !fork_wanted(&project, &opts) {
        opts.fork = None;
    } else if opts.fork.is_none() {
        // Advertised, so that `nbpipe exec` may fork from them while the run lasts.
        opts.fork = match nbpipe_env::zygote_registry() {
            Ok(dir) => nbpipe_kernel::ForkServers::advertised(dir).ok(),
            Err(_) => nbpipe_kernel::ForkServers::new().ok(),
        };
    }
    let own_shutdowns = opts
        .shutdowns
        .is_none()
        .then(nbpipe_kernel::pool::Shutdowns::default);
    if let Some(set) = &own_shutdowns {
        opts.shutdowns = Some(set.clone());
    }
    let result = run_with(project, opts, own_pool.is_some(), observer, stop).await;
    if let Some(set) = own_shutdowns {
        set.wait().await;
    }
    if let Some(pool) = own_pool {
        pool.discard();
    }
    result
}

/// Whether this run forks its Python kernels from a zygote.
pub fn fork_wanted(project: &Project, opts: &RunOptions) -> bool {
    project.env.fork_server && !opts.no_fork_server
}

async fn run_with(
    project: Project,
    opts: RunOptions,
    private_pool: bool,
    observer: Arc<dyn RunObserver>,
    stop: watch::Receiver<Option<Stop>>,
) -> Result<RunManifest, RunError> {
    let started = Utc::now();
    let run_id = opts.run_id.clone().unwrap_or_else(|| new_run_id(started));
    let template = opts
        .output
        .clone()
        .unwrap_or_else(|| project.output.clone());
    let prefix = output_prefix(&template, &run_id)?;
    // Secrets first: a run that cannot have them must fail before any kernel starts.
    let secrets = match opts.secrets.clone() {
        Some(s) => s,
        None => crate::secrets::resolve(&project.secrets).await?,
    };
    observer.message(&format!("Run {run_id} of `{}` → {prefix}", project.name));
    if !secrets.masker().too_short().is_empty() {
        observer.message(&format!(
            "warning: secrets shorter than {} characters are not masked in outputs: {}",
            nbpipe_exec::mask::MIN_LEN,
            secrets
                .masker()
                .too_short()
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }

    // The environment: built (or reused) from the project's requirements.
    let prebuilt = std::env::var_os(nbpipe_env::PREBUILT_ENV_VAR).filter(|v| !v.is_empty());
    let env = if let Some(env) = opts.env.clone() {
        env
    } else if let Some(root) = prebuilt {
        // An image's environment, installed when the image was built: never rebuilt here.
        nbpipe_env::open_prebuilt(std::path::Path::new(&root))?
    } else {
        // The zygote imports ipykernel (~0.3 s) while `ensure` checks the environment (a
        // pyenv shim alone costs ~0.1 s); `enable` below keeps it if the guess was right and
        // replaces it otherwise, before any kernel is asked of it.
        let guess = opts
            .fork
            .as_ref()
            .and_then(|forks| Some((forks, nbpipe_env::predicted(&project.dir)?)));
        if let Some((forks, (python, hash))) = guess {
            forks.enable(&project.key(), &python, &hash, &project.env.preload);
        }
        let dir = project.dir.clone();
        let env_opts = nbpipe_env::EnvOptions {
            python: project.env.python.clone(),
            requirements: project.env.requirements.clone(),
            force: false,
            quiet: opts.quiet,
        };
        tokio::task::spawn_blocking(move || nbpipe_env::ensure(&dir, &env_opts))
            .await
            .map_err(|e| nbpipe_env::EnvError::Io {
                action: "build environment",
                path: project.dir.clone(),
                source: std::io::Error::other(e),
            })??
    };
    if let Some(forks) = &opts.fork {
        // Keyed by the environment's hash: changed requirements get a new zygote.
        forks.enable(&project.key(), &env.python, &env.hash, &project.env.preload);
    }
    let freeze_uri = match &env.freeze {
        Some(freeze) => {
            let loc = prefix.join("environment.txt");
            loc.put(freeze.clone().into_bytes()).await?;
            Some(loc.to_string())
        }
        None => None,
    };

    let mut parameters = project.parameters.clone();
    parameters.update(opts.parameters.clone());
    let steps = project
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| StepRecord {
            id: s.id.clone(),
            notebook: s.path.display().to_string(),
            status: status::PENDING.into(),
            needs: project
                .dependencies(i)
                .iter()
                .map(|&d| project.steps[d].id.clone())
                .collect(),
            started: None,
            ended: None,
            duration: None,
            attempts: 0,
            parameters: Value::Null,
            output: None,
            html: None,
            notebook_sha256: None,
            cache_key: None,
            cached_from: None,
            error: None,
            permanent: false,
            summary: Vec::new(),
            cell: None,
        })
        .collect();
    let manifest = RunManifest {
        format: 1,
        run_id: run_id.clone(),
        project: project.name.clone(),
        status: status::RUNNING.into(),
        started: stamp(started),
        ended: None,
        duration: None,
        output: prefix.to_string(),
        parameters: parameters.to_json(),
        trigger: opts.trigger.as_ref().map(TriggerObject::to_json),
        environment: Some(EnvironmentInfo {
            hash: env.hash.clone(),
            python: env.python.display().to_string(),
            freeze_uri,
        }),
        git: match &opts.git {
            Some(g) => Some(g.clone()),
            None => git_info(&project.dir).await,
        },
        environment_name: project.environment.clone(),
        steps,
        nbpipe_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let state = Arc::new(RunState {
        project,
        opts,
        run_id,
        prefix,
        env: Some(env),
        manifest: Mutex::new(manifest),
        observer,
        cache_keys: Mutex::new(HashMap::new()),
        secrets,
        private_pool,
        reports: std::sync::Mutex::new(JoinSet::new()),
    });
    state.write_manifest().await?;

    schedule(&state, stop).await;
    let mut reports = std::mem::take(
        &mut *state
            .reports
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    while let Some(done) = reports.join_next().await {
        if let Err(e) = done {
            state
                .observer
                .message(&format!("warning: an HTML report failed: {e}"));
        }
    }

    let mut m = state.manifest.lock().await;
    let ended = Utc::now();
    m.ended = Some(stamp(ended));
    m.duration = Some(secs(ended - started));
    m.status = if m.steps.iter().all(|s| s.status == status::SUCCEEDED) {
        status::SUCCEEDED
    } else if m.steps.iter().any(|s| s.status == status::CANCELLED) {
        status::CANCELLED
    } else {
        status::FAILED
    }
    .into();
    let final_manifest = m.clone();
    drop(m);
    if let Err(e) = state.write_manifest().await {
        // The run happened: keep its record locally rather than lose it with the store.
        let bytes = serde_json::to_vec_pretty(&final_manifest).unwrap_or_default();
        let path = unsaved_dir().join(format!("{}-run.json", final_manifest.run_id));
        let kept =
            std::fs::create_dir_all(unsaved_dir()).and_then(|_| std::fs::write(&path, bytes));
        state.observer.message(&match kept {
            Ok(()) => format!(
                "warning: could not store run.json ({e}); kept locally at `{}`",
                path.display()
            ),
            Err(io) => {
                format!("warning: could not store run.json ({e}) nor keep it locally ({io})")
            }
        });
    }
    Ok(final_manifest)
}

/// Start every step whose dependencies succeeded, up to `jobs` at once; skip the dependents
/// of failed steps; stop starting new steps once a stop is requested.
async fn schedule(state: &Arc<RunState>, stop: watch::Receiver<Option<Stop>>) {
    let n = state.project.steps.len();
    let deps: Vec<Vec<usize>> = (0..n).map(|i| state.project.dependencies(i)).collect();
    let jobs = state.opts.jobs.max(1);
    let mut done: Vec<Option<&'static str>> = vec![None; n];
    let mut started = vec![false; n];
    let mut running = JoinSet::new();
    loop {
        let mut stopped_by = *stop.borrow();
        let startable = (0..n).any(|i| {
            !started[i]
                && done[i].is_none()
                && deps[i].iter().all(|&d| done[d] == Some(status::SUCCEEDED))
        });
        if let (None, true, Some(gate)) = (stopped_by, startable, &state.opts.before_step) {
            stopped_by = gate().await;
        }
        let stopping = stopped_by.is_some();
        // Skip whatever can no longer run.
        let mut changed = true;
        while changed {
            changed = false;
            for i in 0..n {
                if started[i] || done[i].is_some() {
                    continue;
                }
                let blocked = deps[i]
                    .iter()
                    .any(|&d| matches!(done[d], Some(s) if s != status::SUCCEEDED));
                if blocked || stopping {
                    let why = if stopping {
                        status::CANCELLED
                    } else {
                        status::SKIPPED
                    };
                    done[i] = Some(why);
                    let detail = if stopped_by == Some(Stop::Deadline) {
                        "the run reached its time limit before this step started".to_string()
                    } else if stopping {
                        "the run was stopped before this step started".to_string()
                    } else {
                        "a step it needs did not succeed".to_string()
                    };
                    state.finish_step(i, why, Some(detail)).await;
                    changed = true;
                }
            }
        }
        for i in 0..n {
            if running.len() >= jobs {
                break;
            }
            if started[i] || done[i].is_some() {
                continue;
            }
            if deps[i].iter().all(|&d| done[d] == Some(status::SUCCEEDED)) {
                started[i] = true;
                let state = state.clone();
                let stop = stop.clone();
                running.spawn(async move { (i, step::run_step(&state, i, stop).await) });
            }
        }
        match running.join_next().await {
            Some(Ok((i, result))) => done[i] = Some(result),
            Some(Err(e)) => {
                // A step task panicked: record it instead of losing the run.
                state
                    .observer
                    .message(&format!("internal error in a step: {e}"));
                if let Some(i) = (0..n).find(|&i| started[i] && done[i].is_none()) {
                    done[i] = Some(status::FAILED);
                    state
                        .finish_step(i, status::FAILED, Some(format!("internal error: {e}")))
                        .await;
                }
            }
            None => break,
        }
    }
}

impl RunState {
    /// Write the manifest to `{output}/run.json`.
    pub(crate) async fn write_manifest(&self) -> Result<(), nbpipe_store::StoreError> {
        let bytes = {
            let m = self.manifest.lock().await;
            self.observer.manifest(&m);
            serde_json::to_vec_pretty(&*m).unwrap_or_default()
        };
        self.prefix.join("run.json").put(bytes).await
    }

    /// Record a step's final status (and write the manifest, warning if that fails).
    pub(crate) async fn finish_step(&self, i: usize, st: &str, error: Option<String>) {
        let error = error.map(|e| self.secrets.masker().mask(&e));
        {
            let mut m = self.manifest.lock().await;
            let rec = &mut m.steps[i];
            rec.status = st.to_string();
            if error.is_some() {
                rec.error = error.clone();
            }
        }
        self.observer.step(
            &self.project.steps[i].id,
            st,
            error.as_deref().unwrap_or(""),
        );
        if let Err(e) = self.write_manifest().await {
            self.observer
                .message(&format!("warning: could not update run.json: {e}"));
        }
    }
}

/// Where records that could not be stored are kept (`$NBPIPE_HOME/unsaved`).
fn unsaved_dir() -> PathBuf {
    nbpipe_env::nbpipe_home()
        .unwrap_or_else(|_| std::env::temp_dir())
        .join("unsaved")
}

fn new_run_id(t: chrono::DateTime<Utc>) -> String {
    let suffix: String = uuid::Uuid::new_v4().simple().to_string()[..6].to_string();
    format!("{}-{suffix}", t.format("%Y%m%dT%H%M%SZ"))
}

/// The run's output prefix: `{run_id}` filled in, relative local paths taken from the project.
fn output_prefix(template: &str, run_id: &str) -> Result<Location, RunError> {
    let filled = template.replace("{run_id}", run_id);
    if filled.contains('{') {
        return Err(RunError::Output {
            template: template.into(),
            reason: "only `{run_id}` can be filled in".into(),
        });
    }
    // The project's `output` is already resolved against its folder; an override from the
    // command line is relative to the current directory, as any path argument.
    let loc = Location::parse(&filled)?;
    if matches!(loc, Location::Stdio) {
        return Err(RunError::Output {
            template: template.into(),
            reason: "a run needs a directory or an object-store prefix, not `-`".into(),
        });
    }
    if let Location::Local(p) = &loc {
        std::fs::create_dir_all(p).map_err(|e| RunError::Output {
            template: template.into(),
            reason: format!("cannot create `{}`: {e}", p.display()),
        })?;
    }
    Ok(loc)
}

/// The commit, branch and dirtiness of the git work tree `dir` is in (`None`: not in one).
pub async fn git_info(dir: &std::path::Path) -> Option<GitInfo> {
    let git = |args: &[&str]| {
        let dir = PathBuf::from(dir);
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        async move {
            let out = tokio::process::Command::new("git")
                .arg("-C")
                .arg(&dir)
                .args(&args)
                .output()
                .await
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        }
    };
    let commit = git(&["rev-parse", "HEAD"]).await?;
    let branch = git(&["rev-parse", "--abbrev-ref", "HEAD"])
        .await
        .unwrap_or_default();
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
        .await
        .is_some_and(|s| !s.is_empty());
    Some(GitInfo {
        commit,
        branch,
        dirty,
    })
}

pub(crate) fn stamp(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub(crate) fn secs(d: chrono::Duration) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}
