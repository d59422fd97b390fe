//! The run itself: load, prepare, start the kernel, execute cell by cell, finish.
//!
//! Mirrors papermill's `execute_notebook` + `NotebookExecutionManager` + nbclient's
//! `execute_cell`, with three differences that are the point of nbpipe: saving is throttled
//! (see [`crate::save`]), every wait is raced against kernel death, timeouts and stop
//! signals, and every failure (timeout, dead kernel, stop) is written into the notebook.

use std::time::{Duration, Instant};

use chrono::Utc;
use nbpipe_kernel::spec::{self, KernelSpec};
use nbpipe_kernel::{Event, Kernel, KernelError, LaunchOptions};
use nbpipe_notebook::{CellType, Notebook};
use nbpipe_params::Language;
use nbpipe_store::Location;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::prepare::{self, pm_meta, ERROR_MARKER_TAG};
use crate::record::{now_papermill, timestamp, Recorded, Recorder, SPILL_THRESHOLD};
use crate::save::Saver;
use crate::{CellFailure, ExecError, ExecOptions, Executed, Observer, Outcome, Stop};

const PENDING: &str = "pending";
const RUNNING: &str = "running";
const COMPLETED: &str = "completed";
const FAILED: &str = "failed";

/// How long a cell gets to wind down after an interrupt (timeout or stop signal).
const INTERRUPT_GRACE: Duration = Duration::from_secs(5);
/// How long to wait for the `idle` status once the reply is in (nbclient's `iopub_timeout`).
const IDLE_AFTER_REPLY: Duration = Duration::from_secs(4);

/// Run one notebook. Returns the final notebook and how the run ended; the output location
/// has been written in every case that returns `Ok`, and in every failure after the run began.
pub async fn execute(
    opts: &ExecOptions,
    obs: &mut dyn Observer,
    mut stop: watch::Receiver<Option<Stop>>,
) -> Result<(Executed, Outcome), ExecError> {
    let input = Location::parse(&opts.input)?;
    let output = opts.output.as_deref().map(Location::parse).transpose()?;
    let bytes = input.get().await?;
    let mut nb = nbpipe_notebook::read(&bytes).map_err(|source| ExecError::Notebook {
        path: opts.input.clone(),
        source,
    })?;
    prepare::normalize(&mut nb);

    if !opts.parameters.is_empty() {
        let kname = prepare::kernel_name(&nb, opts.kernel_name.as_deref());
        let lang = prepare::language(&nb, opts.language.as_deref());
        let translator = Language::from_kernel(kname.as_deref().unwrap_or(""), lang.as_deref().unwrap_or(""))
            .ok_or_else(|| {
                ExecError::NoKernel(format!(
                    "no parameter translator for kernel `{}` / language `{}`; pass `--language` (python, R, julia, scala, matlab, bash, powershell, csharp, fsharp)",
                    kname.as_deref().unwrap_or("?"),
                    lang.as_deref().unwrap_or("?")
                ))
            })?;
        for w in prepare::parameterize(&mut nb, &opts.parameters, translator, opts.report_mode)? {
            obs.warn(&w);
        }
    }
    prepare::prepare_metadata(
        &mut nb,
        &opts.input,
        opts.output.as_deref(),
        opts.report_mode,
    );

    let mut saver = Saver::new(output, opts.save_on_cell, opts.autosave_every);
    if opts.prepare_only {
        saver.save_final(&nb, None).await?;
        return Ok((Executed::in_memory(nb), Outcome::Prepared));
    }

    let spec = choose_kernel(&nb, opts);
    if let Ok(spec) = &spec {
        obs.info(&format!("Kernel: {} ({})", spec.name, spec.display_name));
    }

    let started = Utc::now();
    start_notebook(&mut nb, started);
    saver.mark_dirty();
    // papermill has written the parameterized notebook before it looks the kernel up; so do we,
    // with the failure recorded (`metadata.papermill.exception`), and keep the error.
    let spec = match spec {
        Ok(spec) => spec,
        Err(e) => {
            finish_notebook(&mut nb, started);
            pm_meta(&mut nb.metadata).insert("exception".into(), Value::Bool(true));
            let _ = saver.save_final(&nb, None).await;
            return Err(e);
        }
    };
    saver.save(&nb, None).await?;
    obs.notebook_start(nb.cells.len());

    let launch = LaunchOptions {
        cwd: opts.cwd.clone(),
        start_timeout: opts.start_timeout,
        env: opts.env.clone(),
        echo_stderr: opts.echo_kernel_stderr,
        fork: opts.fork.clone(),
    };
    let start = async {
        match &opts.pool {
            Some(pool) if opts.env.is_empty() || opts.private_pool => {
                pool.take_or_launch(&spec, &launch).await
            }
            _ => Kernel::launch(&spec, &launch).await,
        }
    };
    let kernel = tokio::select! {
        k = start => k,
        sig = wait_stop(&mut stop) => {
            finish_notebook(&mut nb, started);
            saver.save_final(&nb, None).await?;
            return Ok((Executed::in_memory(nb), Outcome::Stopped(sig)));
        }
    };
    let mut kernel = match kernel {
        Ok(k) => k,
        Err(e) => {
            finish_notebook(&mut nb, started);
            pm_meta(&mut nb.metadata).insert("exception".into(), Value::Bool(true));
            let _ = saver.save_final(&nb, None).await;
            return Err(ExecError::KernelStart(e));
        }
    };
    if let Some(li) = kernel.kernel_info().get("language_info") {
        nb.metadata.insert("language_info".into(), li.clone());
    }
    obs.kernel_ready();

    // Large outputs live in a temporary file, not in memory (see nbpipe_notebook::spill).
    let spill = match nbpipe_notebook::Spill::new(SPILL_THRESHOLD) {
        Ok(s) => Some(s),
        Err(e) => {
            obs.warn(&format!(
                "could not create a temporary file for large outputs ({e}); keeping them in memory"
            ));
            None
        }
    };
    let mut run = CellRunner {
        recorder: Recorder::with_spill(spill).with_masker(opts.masker.clone()),
        masker: opts.masker.clone(),
        timeout: opts.execution_timeout,
    };
    let mut outcome = Outcome::Completed;
    let total = nb.cells.len();
    for idx in 0..total {
        if let Some(sig) = current_stop(&stop) {
            outcome = Outcome::Stopped(sig);
            break;
        }
        cell_start(&mut nb, idx);
        obs.cell_start(idx, total, description(&nb.cells[idx].source).as_deref());
        saver.mark_dirty();
        checkpoint(saver.at_cell_boundary(&nb, run.recorder.spill()).await, obs);

        let result = if runs(&nb, idx) {
            run.execute_cell(&mut kernel, &mut nb, idx, obs, &mut saver, &mut stop)
                .await
        } else {
            CellResult::Ok
        };
        let ok = matches!(result, CellResult::Ok | CellResult::Exit);
        cell_complete(&mut nb, idx, ok);
        obs.cell_end(idx, ok);
        saver.mark_dirty();
        run.recorder.compact(&mut nb);
        if let Some(e) = run.recorder.take_spill_error() {
            obs.warn(&format!(
                "the temporary file for large outputs failed ({e}); keeping them in memory"
            ));
        }
        match result {
            CellResult::Ok => {
                checkpoint(saver.at_cell_boundary(&nb, run.recorder.spill()).await, obs);
                continue;
            }
            CellResult::Exit => break,
            CellResult::Failed(f) => outcome = Outcome::CellFailed(f),
            CellResult::TimedOut(f) => outcome = Outcome::TimedOut(f),
            CellResult::Died(f) => outcome = Outcome::KernelDied(f),
            CellResult::Stopped(sig) => outcome = Outcome::Stopped(sig),
        }
        break;
    }
    obs.notebook_end();
    finish_notebook(&mut nb, started);
    if let Outcome::CellFailed(f) | Outcome::TimedOut(f) | Outcome::KernelDied(f) = &outcome {
        pm_meta(&mut nb.metadata).insert("exception".into(), Value::Bool(true));
        insert_error_banner(&mut nb, f);
    }
    if let Outcome::Stopped(_) = outcome {
        pm_meta(&mut nb.metadata).insert("exception".into(), Value::Bool(true));
    }
    // Save before the (possibly slow) kernel shutdown: the notebook is the run's record.
    let spill = run.recorder.take_spill();
    let saved = saver.save_final(&nb, spill.as_ref()).await;
    match &opts.shutdowns {
        Some(set) => set.retire(kernel),
        None => kernel.shutdown().await,
    }
    saved?;
    Ok((Executed::new(nb, spill), outcome))
}

/// papermill's notebook_start: reset counts, outputs and per-cell metadata.
fn start_notebook(nb: &mut Notebook, started: chrono::DateTime<Utc>) {
    {
        let pm = pm_meta(&mut nb.metadata);
        pm.insert("start_time".into(), json!(now_papermill(started)));
        pm.insert("end_time".into(), Value::Null);
        pm.insert("duration".into(), Value::Null);
        pm.insert("exception".into(), Value::Null);
    }
    for cell in &mut nb.cells {
        if cell.is_code() {
            cell.execution_count = None;
            cell.outputs.clear();
        }
        cell.metadata.insert(
            "papermill".into(),
            json!({"exception": null, "start_time": null, "end_time": null, "duration": null, "status": PENDING}),
        );
    }
}

fn choose_kernel(nb: &Notebook, opts: &ExecOptions) -> Result<KernelSpec, ExecError> {
    if let Some(spec) = &opts.kernel_spec {
        return Ok(spec.clone());
    }
    if let Some(name) = &opts.kernel_name {
        return Ok(spec::find(name)?);
    }
    if let Some(env) = &opts.python_env {
        let lang = prepare::language(nb, opts.language.as_deref()).unwrap_or_default();
        let name = nb.kernel_name().unwrap_or_default();
        if lang.eq_ignore_ascii_case("python")
            || (lang.is_empty() && (name.is_empty() || name.starts_with("python")))
        {
            return Ok(env.clone());
        }
    }
    if let Some(name) = prepare::kernel_name(nb, None) {
        return Ok(spec::find(&name)?);
    }
    if let Some(lang) = prepare::language(nb, opts.language.as_deref()) {
        return Ok(spec::find_for_language(&lang)?);
    }
    Err(ExecError::NoKernel(
        "no kernel name found in the notebook's metadata and none given; pass `-k NAME` (see `jupyter kernelspec list`)".into(),
    ))
}

/// A save during the run failed: warn and go on; the final save decides.
fn checkpoint(result: Result<(), nbpipe_store::StoreError>, obs: &mut dyn Observer) {
    if let Err(e) = result {
        obs.warn(&format!(
            "could not save the notebook (will retry at the end): {e}"
        ));
    }
}

/// The stop request, if any (copied out: a watch guard must not live across an await).
fn current_stop(stop: &watch::Receiver<Option<Stop>>) -> Option<Stop> {
    *stop.borrow()
}

async fn wait_stop(stop: &mut watch::Receiver<Option<Stop>>) -> Stop {
    let requested = stop.wait_for(Option::is_some).await.map(|v| *v);
    match requested {
        Ok(v) => v.unwrap_or(Stop::Cancelled),
        // The sender is gone: nobody can ask us to stop any more.
        Err(_) => std::future::pending().await,
    }
}

/// Whether nbclient would send this cell to the kernel.
fn runs(nb: &Notebook, idx: usize) -> bool {
    let cell = &nb.cells[idx];
    cell.is_code() && !cell.source.trim().is_empty() && !cell.has_tag("skip-execution")
}

fn description(source: &str) -> Option<String> {
    let rest = source.split("papermill_description=").nth(1)?;
    rest.split_whitespace().next().map(str::to_string)
}

fn cell_pm(nb: &mut Notebook, idx: usize) -> &mut serde_json::Map<String, Value> {
    pm_meta(&mut nb.cells[idx].metadata)
}

fn cell_start(nb: &mut Notebook, idx: usize) {
    let pm = cell_pm(nb, idx);
    pm.insert("start_time".into(), json!(now_papermill(Utc::now())));
    pm.insert("status".into(), json!(RUNNING));
    pm.insert("exception".into(), json!(false));
}

fn cell_complete(nb: &mut Notebook, idx: usize, ok: bool) {
    let end = Utc::now();
    let pm = cell_pm(nb, idx);
    pm.insert("end_time".into(), json!(now_papermill(end)));
    if let Some(start) = pm
        .get("start_time")
        .and_then(Value::as_str)
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
    {
        let secs = (end - start.with_timezone(&Utc))
            .num_microseconds()
            .unwrap_or(0) as f64
            / 1e6;
        pm.insert("duration".into(), json!(secs));
    }
    if ok {
        pm.insert("status".into(), json!(COMPLETED));
    } else {
        pm.insert("status".into(), json!(FAILED));
        pm.insert("exception".into(), json!(true));
    }
}

fn finish_notebook(nb: &mut Notebook, started: chrono::DateTime<Utc>) {
    let end = Utc::now();
    let pm = pm_meta(&mut nb.metadata);
    pm.insert("end_time".into(), json!(now_papermill(end)));
    let secs = (end - started).num_microseconds().unwrap_or(0) as f64 / 1e6;
    pm.insert("duration".into(), json!(secs));
}

/// papermill's two banner cells: one at the top linking to the failure, one just before it.
fn insert_error_banner(nb: &mut Notebook, f: &CellFailure) {
    const STYLE: &str = r#"style="color:red; font-family:Helvetica Neue, Helvetica, Arial, sans-serif; font-size:2em;""#;
    let count = f
        .execution_count
        .map(|c| c.to_string())
        .unwrap_or_else(|| "None".into());
    let message = format!(
        "<span {STYLE}>An Exception was encountered at '<a href=\"#papermill-error-cell\">In [{count}]</a>'.</span>"
    );
    let anchor = format!(
        "<span id=\"papermill-error-cell\" {STYLE}>Execution using papermill encountered an exception here and stopped:</span>"
    );
    for (index, text) in [(f.cell_index.min(nb.cells.len()), anchor), (0, message)] {
        let mut c = nb.new_cell(CellType::Markdown, &text);
        c.metadata.insert("tags".into(), json!([ERROR_MARKER_TAG]));
        nb.cells.insert(index, c);
    }
}

enum CellResult {
    Ok,
    /// `sys.exit(0)` / `SystemExit` without a code: stop cleanly.
    Exit,
    Failed(CellFailure),
    TimedOut(CellFailure),
    Died(CellFailure),
    Stopped(Stop),
}

struct CellRunner {
    recorder: Recorder,
    masker: crate::Masker,
    timeout: Option<Duration>,
}

impl CellRunner {
    async fn execute_cell(
        &mut self,
        kernel: &mut Kernel,
        nb: &mut Notebook,
        idx: usize,
        obs: &mut dyn Observer,
        saver: &mut Saver,
        stop: &mut watch::Receiver<Option<Stop>>,
    ) -> CellResult {
        nb.cells[idx].metadata.insert("execution".into(), json!({}));
        nb.cells[idx].outputs.clear();
        self.recorder.begin_cell(idx);
        let source = nb.cells[idx].source.clone();
        let msg_id = match kernel.execute(&source).await {
            Ok(id) => id,
            Err(e) => return self.died(kernel, nb, idx, &e),
        };
        let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
        let mut deadline = self.timeout.map(|t| Instant::now() + t).unwrap_or(far);
        let mut reply: Option<Value> = None;
        let mut idle = false;
        let mut timed_out = false;
        let mut stopped: Option<Stop> = None;
        let mut stop_open = true;
        let mut idle_deadline = far;
        while reply.is_none() || !idle {
            let until = saver.next_autosave().map_or(deadline, |t| t.min(deadline));
            let until = until.min(idle_deadline);
            let until = tokio::time::Instant::from_std(until);
            let event = tokio::select! {
                ev = kernel.next_event_until(until) => ev,
                changed = stop.changed(), if stop_open && stopped.is_none() => {
                    match changed {
                        Ok(()) => if let Some(sig) = current_stop(stop) {
                            stopped = Some(sig);
                            let _ = kernel.interrupt().await;
                            deadline = Instant::now() + INTERRUPT_GRACE;
                        },
                        Err(_) => stop_open = false,
                    }
                    continue;
                }
            };
            match event {
                Err(e) => return self.died(kernel, nb, idx, &e),
                Ok(None) => {
                    if Instant::now() >= idle_deadline {
                        // The reply came but IOPub went quiet: do not wait forever for `idle`.
                        obs.warn("the kernel replied but never reported idle; moving on");
                        break;
                    }
                    if Instant::now() >= deadline {
                        if timed_out || stopped.is_some() {
                            // The kernel ignored the interrupt: it is wedged.
                            break;
                        }
                        timed_out = true;
                        let _ = kernel.interrupt().await;
                        deadline = Instant::now() + INTERRUPT_GRACE;
                    }
                    checkpoint(saver.during_cell(nb, self.recorder.spill()).await, obs);
                }
                Ok(Some(Event::Shell(m)))
                    if m.parent_id == msg_id && m.msg_type == "execute_reply" =>
                {
                    if let Value::Object(exec) = nb.cells[idx]
                        .metadata
                        .entry("execution")
                        .or_insert_with(|| json!({}))
                    {
                        exec.insert("shell.execute_reply".into(), json!(timestamp(&m.header)));
                    }
                    if let Some(c) = m.content.get("execution_count").and_then(Value::as_i64) {
                        nb.cells[idx].execution_count = Some(c);
                    }
                    let mut content = m.content;
                    self.masker.mask_value(&mut content);
                    reply = Some(content);
                    idle_deadline = Instant::now() + IDLE_AFTER_REPLY;
                }
                Ok(Some(Event::IoPub(m))) if m.parent_id == msg_id => {
                    let mut show = |out: &Value| obs.output(idx, out);
                    match self.recorder.handle(nb, idx, m, &mut show) {
                        Recorded::Idle => idle = true,
                        Recorded::Output(_) | Recorded::Changed => {
                            saver.mark_dirty();
                            checkpoint(saver.during_cell(nb, self.recorder.spill()).await, obs);
                        }
                        Recorded::Nothing => {}
                    }
                }
                Ok(Some(Event::Stdin(m))) if m.msg_type == "input_request" => {
                    // The kernel ignored allow_stdin=false: answer so it cannot wait forever.
                    let _ = kernel.reply_input("").await;
                }
                Ok(Some(Event::Garbled(e))) => {
                    obs.warn(&format!("ignored a malformed kernel message: {e}"))
                }
                Ok(Some(_)) => {}
            }
        }

        self.recorder.end_cell(nb, &mut |out| obs.output(idx, out));
        let reply = reply.unwrap_or_else(|| json!({"status": "error", "ename": "CellTimeoutError", "evalue": "no reply from the kernel"}));
        let cell = &nb.cells[idx];
        let failure = |ename: &str, evalue: &str, traceback: Vec<String>| CellFailure {
            cell_index: idx,
            execution_count: cell.execution_count,
            ename: ename.to_string(),
            evalue: evalue.to_string(),
            traceback,
        };
        if let Some(why) = stopped {
            let f = failure(
                "Interrupted",
                &format!("{why}; the cell was interrupted"),
                vec![],
            );
            push_error(nb, idx, &f);
            return CellResult::Stopped(why);
        }
        if timed_out {
            let secs = self.timeout.map(|t| t.as_secs_f64()).unwrap_or(0.0);
            let f = failure(
                "CellTimeoutError",
                &format!("Cell execution timed out after {secs} seconds (--execution-timeout); the cell was interrupted"),
                vec![],
            );
            push_error(nb, idx, &f);
            return CellResult::TimedOut(f);
        }
        if reply.get("status").and_then(Value::as_str) != Some("error") {
            return CellResult::Ok;
        }
        let ename = reply
            .get("ename")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let evalue = reply
            .get("evalue")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if ename == "SystemExit" && (evalue.is_empty() || evalue == "0") {
            return CellResult::Exit;
        }
        if cell.has_tag("raises-exception") {
            return CellResult::Ok;
        }
        let traceback = reply
            .get("traceback")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        CellResult::Failed(failure(&ename, &evalue, traceback))
    }

    fn died(
        &mut self,
        kernel: &Kernel,
        nb: &mut Notebook,
        idx: usize,
        err: &KernelError,
    ) -> CellResult {
        self.recorder.end_cell(nb, &mut |_| {});
        let status = kernel
            .exited()
            .map(|e| e.status)
            .unwrap_or_else(|| err.to_string());
        let status = self.masker.mask(&status);
        let mut traceback = vec![format!(
            "The kernel process ended ({status}) while this cell was running."
        )];
        let tail = kernel.stderr_tail();
        if !tail.trim().is_empty() {
            traceback.push("Last lines the kernel wrote to stderr:".into());
            traceback.extend(tail.lines().map(|l| self.masker.mask(l)));
        }
        let f = CellFailure {
            cell_index: idx,
            execution_count: nb.cells[idx].execution_count,
            ename: "DeadKernelError".into(),
            evalue: format!("Kernel died ({status})"),
            traceback,
        };
        push_error(nb, idx, &f);
        CellResult::Died(f)
    }
}

/// Record a failure nbpipe detected (not raised by the kernel) as an error output.
fn push_error(nb: &mut Notebook, idx: usize, f: &CellFailure) {
    nb.cells[idx].outputs.push(json!({
        "output_type": "error",
        "ename": f.ename,
        "evalue": f.evalue,
        "traceback": f.traceback,
    }));
}
