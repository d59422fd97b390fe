//! One step: parameters, cache lookup, attempts with backoff and a time limit, outputs.
//!
//! A step is marked succeeded only after its output notebook is stored. Its HTML report is
//! rendered and stored while the steps after it run ([`report_later`]): rendering (syntax
//! highlighting above all) was the largest part of the time between two steps. The run ends
//! only once every report is stored or its failure recorded ([`super::RunState::reports`]).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use nbpipe_exec::{ExecOptions, Observer, Outcome, Stop};
use nbpipe_notebook::Notebook;
use nbpipe_params::Parameters;
use nbpipe_store::Location;
use tokio::sync::watch;

use super::cache::{self, Entry, Index, KeyParts};
use super::manifest::{status, CachedFrom};
use super::{context, secs, stamp, RunState};

/// Run step `i` to completion; returns its final status.
pub(crate) async fn run_step(
    state: &Arc<RunState>,
    i: usize,
    stop: watch::Receiver<Option<Stop>>,
) -> &'static str {
    match try_run_step(state, i, stop).await {
        Ok(st) => st,
        Err(msg) => {
            state.finish_step(i, status::FAILED, Some(msg)).await;
            status::FAILED
        }
    }
}

async fn try_run_step(
    state: &Arc<RunState>,
    i: usize,
    stop: watch::Receiver<Option<Stop>>,
) -> Result<&'static str, String> {
    let step = &state.project.steps[i];
    let nb_path = state.project.dir.join(&step.path);
    // A missing or broken notebook stays so: such a failure is permanent.
    let read = std::fs::read(&nb_path)
        .map_err(|e| format!("cannot read `{}`: {e}", nb_path.display()))
        .and_then(|bytes| {
            let nb = nbpipe_notebook::read(&bytes)
                .map_err(|e| format!("`{}` is not a valid notebook: {e}", step.path.display()))?;
            Ok((bytes, nb))
        });
    let (bytes, source_nb) = match read {
        Ok(read) => read,
        Err(msg) => {
            state.manifest.lock().await.steps[i].permanent = true;
            return Err(msg);
        }
    };

    // Effective parameters: project defaults < step defaults < command line < run context.
    let mut params = state.project.parameters.clone();
    params.update(step.parameters.clone());
    params.update(state.opts.parameters.clone());
    let declared = declared_parameters(&source_nb);
    context::inject(
        &mut params,
        &declared,
        context::values(
            &state.run_id,
            &step.id,
            &state.prefix.to_string(),
            state.opts.trigger.as_ref(),
        ),
    );

    let output = state.prefix.join(&format!("{}.ipynb", step.id));
    let html = state.prefix.join(&format!("{}.html", step.id));
    {
        let mut m = state.manifest.lock().await;
        let rec = &mut m.steps[i];
        rec.parameters = params.to_json();
        rec.output = Some(output.to_string());
        rec.notebook_sha256 = Some(cache::sha256_hex(&bytes));
    }

    // The cache: a hit copies the earlier output instead of executing.
    let key = if state.opts.cache {
        let key = cache_key(state, i, &source_nb, &params).await?;
        state.cache_keys.lock().await.insert(i, key.clone());
        state.manifest.lock().await.steps[i].cache_key = Some(key.clone());
        if let Some(hit) = try_cache(state, i, &key, &output, &html).await {
            return Ok(hit);
        }
        Some(key)
    } else {
        None
    };

    let started = Utc::now();
    {
        let mut m = state.manifest.lock().await;
        m.steps[i].status = status::RUNNING.into();
        m.steps[i].started = Some(stamp(started));
    }
    state.observer.step(&step.id, status::RUNNING, "");
    let _ = state.write_manifest().await;
    let mut prewarm = next_kernel(state, i).await;

    let kernel_spec = match (&step.kernel, &state.env) {
        (None, Some(env)) => Some(env.kernelspec()),
        _ => None,
    };
    let cwd = Some(launch_cwd(&state.project, i));
    let attempts = step.retries + 1;
    let mut last_error = String::new();
    for attempt in 1..=attempts {
        state.manifest.lock().await.steps[i].attempts = attempt;
        if attempt > 1 {
            let wait = Duration::from_secs(1 << (attempt - 2).min(5));
            state
                .observer
                .message(&state.secrets.masker().mask(&format!(
                    "{}: attempt {attempt}/{attempts} in {} s ({last_error})",
                    step.id,
                    wait.as_secs()
                )));
            tokio::time::sleep(wait).await;
        }
        let opts = ExecOptions {
            input: nb_path.display().to_string(),
            output: Some(output.to_string()),
            parameters: params.clone(),
            kernel_name: step.kernel.clone(),
            language: None,
            kernel_spec: None,
            python_env: kernel_spec.clone(),
            cwd: cwd.clone(),
            execution_timeout: step.cell_timeout,
            pool: state.opts.pool.clone(),
            fork: state.opts.fork.clone(),
            shutdowns: state.opts.shutdowns.clone(),
            env: state.secrets.env().to_vec(),
            private_pool: state.private_pool,
            masker: state.secrets.masker().clone(),
            ..ExecOptions::default()
        };
        let step_stop = with_deadline(stop.clone(), step.timeout);
        let mut obs = StepObserver {
            prewarm: prewarm.take(),
        };
        match nbpipe_exec::execute(&opts, &mut obs, step_stop).await {
            Ok((nb, Outcome::Completed)) => {
                let ended = Utc::now();
                {
                    let mut m = state.manifest.lock().await;
                    let rec = &mut m.steps[i];
                    rec.ended = Some(stamp(ended));
                    rec.duration = Some(secs(ended - started));
                    rec.error = None;
                    rec.cell = None;
                }
                let entry = key.map(|key| Entry {
                    key,
                    run_id: state.run_id.clone(),
                    step: step.id.clone(),
                    output: output.to_string(),
                    html: None, // set once the report is stored
                    created: stamp(ended),
                });
                report_later(state, i, nb, html, entry);
                state.finish_step(i, status::SUCCEEDED, None).await;
                return Ok(status::SUCCEEDED);
            }
            Ok((nb, outcome)) => {
                // The notebook is the record of the failure: keep its HTML too.
                let summary = render_html(nb, &html, &step.id).await.unwrap_or_default();
                {
                    let mut m = state.manifest.lock().await;
                    m.steps[i].html = Some(html.to_string());
                    m.steps[i].summary = summary;
                    m.steps[i].cell = failed_cell(&outcome);
                }
                let run_stop = *stop.borrow();
                let (msg, retry, cancelled) = describe(&outcome, step.timeout, run_stop);
                last_error = msg;
                if cancelled {
                    end_times(state, i, started).await;
                    state
                        .finish_step(i, status::CANCELLED, Some(last_error.clone()))
                        .await;
                    return Ok(status::CANCELLED);
                }
                if !retry {
                    break;
                }
            }
            Err(e) => {
                last_error = e.to_string();
                // Bad notebooks or parameters will not get better by retrying (the step's
                // nor the service's retries: the manifest says so).
                if matches!(
                    e,
                    nbpipe_exec::ExecError::Notebook { .. }
                        | nbpipe_exec::ExecError::Params(_)
                        | nbpipe_exec::ExecError::Path(_)
                        | nbpipe_exec::ExecError::KernelSpec(_)
                ) {
                    state.manifest.lock().await.steps[i].permanent = true;
                    break;
                }
            }
        }
        if stop.borrow().is_some() {
            break;
        }
    }
    end_times(state, i, started).await;
    state.finish_step(i, status::FAILED, Some(last_error)).await;
    Ok(status::FAILED)
}

async fn end_times(state: &RunState, i: usize, started: chrono::DateTime<Utc>) {
    let ended = Utc::now();
    let mut m = state.manifest.lock().await;
    m.steps[i].ended = Some(stamp(ended));
    m.steps[i].duration = Some(secs(ended - started));
}

/// Failure summary, whether another attempt makes sense, whether it was a cancellation.
/// `run_stop` is what the run's own stop channel carries: a [`Stop::Deadline`] there is the
/// caller's time limit for the whole run (e.g. `serve.timeout`), not this step's `timeout`.
fn describe(
    outcome: &Outcome,
    timeout: Option<Duration>,
    run_stop: Option<Stop>,
) -> (String, bool, bool) {
    match outcome {
        Outcome::Stopped(Stop::Deadline) if run_stop == Some(Stop::Deadline) => (
            "the run reached its time limit and was stopped; the running cell was interrupted"
                .to_string(),
            false,
            true,
        ),
        Outcome::CellFailed(f) => (
            format!("cell {} raised {}: {}", f.cell_index, f.ename, f.evalue),
            true,
            false,
        ),
        Outcome::TimedOut(f) => (format!("cell {} timed out", f.cell_index), true, false),
        Outcome::KernelDied(f) => (format!("cell {}: {}", f.cell_index, f.evalue), true, false),
        Outcome::Stopped(Stop::Deadline) => (
            format!(
                "the step exceeded its timeout of {} s",
                timeout.map(|t| t.as_secs()).unwrap_or(0)
            ),
            true,
            false,
        ),
        Outcome::Stopped(why) => (why.to_string(), false, true),
        Outcome::Completed | Outcome::Prepared => (String::new(), false, false),
    }
}

/// The cell an outcome names, for [`super::manifest::StepRecord::cell`].
fn failed_cell(outcome: &Outcome) -> Option<super::manifest::FailedCell> {
    match outcome {
        Outcome::CellFailed(f) | Outcome::TimedOut(f) | Outcome::KernelDied(f) => {
            Some(super::manifest::FailedCell {
                index: f.cell_index,
                execution_count: f.execution_count,
                ename: f.ename.clone(),
                evalue: f.evalue.clone(),
            })
        }
        _ => None,
    }
}

/// A stop channel that also fires `Stop::Deadline` after `timeout`.
fn with_deadline(
    mut outer: watch::Receiver<Option<Stop>>,
    timeout: Option<Duration>,
) -> watch::Receiver<Option<Stop>> {
    let (tx, rx) = watch::channel(*outer.borrow());
    tokio::spawn(async move {
        let deadline = async {
            match timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = deadline => { let _ = tx.send(Some(Stop::Deadline)); }
            r = outer.wait_for(Option::is_some) => {
                if let Ok(v) = r { let _ = tx.send(*v); }
            }
            _ = tx.closed() => {}
        }
    });
    rx
}

/// Store the executed notebook's HTML report; returns its stdout summary
/// ([`super::manifest::stdout_summary`]).
async fn render_html(
    executed: nbpipe_exec::Executed,
    html: &Location,
    title: &str,
) -> Result<Vec<String>, String> {
    let title = title.to_string();
    // CPU-bound (the report embeds every output, so spilled ones come back into memory, and
    // code is highlighted): off the async workers, which drive the running kernels.
    let (summary, page) = tokio::task::spawn_blocking(move || {
        let nb = executed
            .into_notebook()
            .map_err(|e| format!("could not read the run's large outputs back: {e}"))?;
        let summary = super::manifest::stdout_summary(&nb);
        let page = nbpipe_render::render(
            &nb,
            &nbpipe_render::RenderOptions {
                title: Some(title),
                ..Default::default()
            },
        );
        Ok::<_, String>((summary, page))
    })
    .await
    .map_err(|e| format!("rendering failed: {e}"))??;
    html.put(page.into_bytes())
        .await
        .map_err(|e| format!("could not store the HTML report: {e}"))?;
    Ok(summary)
}

/// Render and store a succeeded step's HTML report in the background, then record it (and
/// the step's stdout summary) in the manifest, and the step's cache `entry` when it has
/// one. A report that cannot be stored leaves the step succeeded (its notebook, the record,
/// is stored) with no `html` and a warning: the report is derived from the notebook.
fn report_later(
    state: &Arc<RunState>,
    i: usize,
    executed: nbpipe_exec::Executed,
    html: Location,
    entry: Option<Entry>,
) {
    let st = state.clone();
    let task = async move {
        let id = st.project.steps[i].id.clone();
        let stored = match render_html(executed, &html, &id).await {
            Ok(summary) => {
                let mut m = st.manifest.lock().await;
                m.steps[i].summary = summary;
                m.steps[i].html = Some(html.to_string());
                true
            }
            Err(msg) => {
                st.observer
                    .message(&format!("warning: {id}: no HTML report: {msg}"));
                false
            }
        };
        if let Some(mut entry) = entry {
            entry.html = stored.then(|| html.to_string());
            if let Err(e) = Index::for_project(&st.project.dir).put(&entry) {
                st.observer
                    .message(&format!("warning: could not record the cache entry: {e}"));
            }
        }
    };
    state
        .reports
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .spawn(task);
}

/// Names the notebook's parameters cell declares (empty if none or not inspectable).
fn declared_parameters(nb: &Notebook) -> Vec<String> {
    let Some(cell) = nb.cells.iter().find(|c| c.has_tag("parameters")) else {
        return Vec::new();
    };
    let lang = nbpipe_params::Language::from_kernel(
        nb.kernel_name().unwrap_or(""),
        nb.language().unwrap_or(""),
    );
    lang.and_then(|l| nbpipe_params::inspect_parameters_cell(l, &cell.source).ok())
        .map(|ps| ps.into_iter().map(|p| p.name).collect())
        .unwrap_or_default()
}

async fn cache_key(
    state: &RunState,
    i: usize,
    nb: &Notebook,
    params: &Parameters,
) -> Result<String, String> {
    let step = &state.project.steps[i];
    let mut inputs = Vec::new();
    for uri in &step.inputs {
        let version = cache::input_version(uri, &state.project.dir)
            .await
            .map_err(|e| format!("input `{uri}`: {e}"))?;
        inputs.push((uri.clone(), version));
    }
    let upstream: Vec<String> = {
        let keys = state.cache_keys.lock().await;
        state
            .project
            .dependencies(i)
            .iter()
            .map(|d| keys.get(d).cloned().unwrap_or_default())
            .collect()
    };
    let env_hash = state.env.as_ref().map(|e| e.hash.as_str()).unwrap_or("");
    Ok(cache::key(&KeyParts {
        notebook: nb,
        parameters: params,
        kernel: step.kernel.as_deref(),
        env_hash,
        inputs: &inputs,
        upstream: &upstream,
    }))
}

/// Serve the step from the cache if an earlier successful run has the same key.
async fn try_cache(
    state: &RunState,
    i: usize,
    key: &str,
    output: &Location,
    html: &Location,
) -> Option<&'static str> {
    let entry = Index::for_project(&state.project.dir).get(key)?;
    let src = cache::resolve(&entry.output, &state.project.dir).ok()?;
    let bytes = src.get().await.ok()?;
    output.put(bytes).await.ok()?;
    if let Some(h) = entry
        .html
        .as_deref()
        .and_then(|h| cache::resolve(h, &state.project.dir).ok())
    {
        if let Ok(b) = h.get().await {
            let _ = html.put(b).await;
        }
    }
    {
        let mut m = state.manifest.lock().await;
        let rec = &mut m.steps[i];
        rec.cached_from = Some(CachedFrom {
            run_id: entry.run_id.clone(),
            output: entry.output.clone(),
        });
        rec.html = Some(html.to_string());
        rec.attempts = 0;
    }
    state.finish_step(i, status::SUCCEEDED, None).await;
    state.observer.message(&format!(
        "{}: cached (from run {})",
        state.project.steps[i].id, entry.run_id
    ));
    Some(status::SUCCEEDED)
}

/// What to pre-start while step `i` executes: the kernel the next pending step will want, if
/// the run has a pool and that step uses the project environment's kernel. Started once step
/// `i` has its own kernel (not before, or step `i` would take it), so a pipeline waits for a
/// kernel start once instead of once per step. A wrong guess (the next step is cached,
/// skipped, or not Python) costs one idle kernel, killed when the run ends.
async fn next_kernel(state: &RunState, i: usize) -> Option<Prewarm> {
    let (Some(pool), Some(env)) = (&state.opts.pool, &state.env) else {
        return None;
    };
    if !state.secrets.is_empty() && !state.private_pool {
        // Kernels with secrets never wait in a caller's pool (see `ExecOptions::env`); the
        // run's own pool holds this run's next kernel only, with this run's secrets.
        return None;
    }
    let next = {
        let m = state.manifest.lock().await;
        let n = m.steps.len();
        (1..n).map(|d| (i + d) % n).find(|&j| {
            m.steps[j].status == status::PENDING
                && state.project.dependencies(j).iter().all(|&d| {
                    matches!(
                        m.steps[d].status.as_str(),
                        status::PENDING | status::RUNNING | status::SUCCEEDED
                    )
                })
        })
    };
    let j = next.filter(|&j| state.project.steps[j].kernel.is_none())?;
    Some(Prewarm {
        pool: pool.clone(),
        spec: env.kernelspec(),
        launch: nbpipe_kernel::LaunchOptions {
            fork: state.opts.fork.clone(),
            env: state.secrets.env().to_vec(),
            ..pool_launch(&state.project, j)
        },
    })
}

/// A kernel to start in the background once the current step's kernel is ready.
struct Prewarm {
    pool: nbpipe_kernel::pool::KernelPool,
    spec: nbpipe_kernel::spec::KernelSpec,
    launch: nbpipe_kernel::LaunchOptions,
}

/// The working directory a step's kernel starts in: its notebook's folder (so relative paths
/// in the notebook work, and so a warm pool can pre-start kernels in the right place).
pub fn launch_cwd(project: &crate::config::Project, step: usize) -> std::path::PathBuf {
    let nb_path = project.dir.join(&project.steps[step].path);
    nb_path
        .parent()
        .map(|p| p.to_path_buf())
        .unwrap_or_else(|| project.dir.clone())
}

/// The launch of step `i`'s kernel as a pool keys it (its folder; no extra environment), so
/// a kernel pre-started with it is the one the step's run takes.
pub fn pool_launch(project: &crate::config::Project, i: usize) -> nbpipe_kernel::LaunchOptions {
    nbpipe_kernel::LaunchOptions {
        cwd: Some(launch_cwd(project, i)),
        ..Default::default()
    }
}

/// Steps run quietly (the run observer reports their status); once a step's kernel is
/// ready, the next step's kernel starts.
struct StepObserver {
    prewarm: Option<Prewarm>,
}

impl Observer for StepObserver {
    fn kernel_ready(&mut self) {
        if let Some(p) = self.prewarm.take() {
            p.pool.warm(&p.spec, &p.launch);
        }
    }
}
