//! `nbpipe run`: load a project, run its pipeline, report per step.

use std::sync::Arc;

use nbpipe_exec::Stop;
use nbpipe_params::Parameters;
use nbpipe_project::run::manifest::{status, GitInfo, RunManifest};
use nbpipe_project::run::{RunObserver, RunOptions, TriggerObject};
use tokio::sync::watch;

use crate::cli::RunArgs;
use crate::exit;

/// Run the command; returns the exit code.
pub fn run(args: RunArgs) -> u8 {
    let dir = match std::fs::canonicalize(&args.dir) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: project folder `{}`: {e}", args.dir.display());
            return exit::USAGE;
        }
    };
    let select = match args.env.as_deref() {
        Some(name) => nbpipe_project::config::Select::Named(name),
        None => nbpipe_project::config::Select::CheckedOut,
    };
    let project = match nbpipe_project::config::load_env(&dir, select) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    // `NBPIPE_PARAMETERS` (the container contract): the lowest-precedence source.
    let base = match args
        .parameters_env
        .as_deref()
        .map(nbpipe_params::parse_json)
    {
        Some(Ok(p)) => p,
        Some(Err(e)) => {
            eprintln!("error: NBPIPE_PARAMETERS (--parameters-json-text): {e}");
            return exit::USAGE;
        }
        None => Parameters::new(),
    };
    let parameters = match super::params::collect(
        base,
        &super::params::Sources {
            base64: &[],
            files: &args.parameters_file,
            yaml: &args.parameters_yaml,
            json: &args.parameters_json,
            pairs: &args.parameters,
            raw: &args.parameters_raw,
        },
    ) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e:#}");
            return exit::USAGE;
        }
    };
    let from_json = args.trigger_json.as_deref().map(|text| {
        serde_json::from_str(text)
            .map_err(|e| e.to_string())
            .and_then(|v| TriggerObject::from_json(&v))
            .map_err(|e| format!("NBPIPE_TRIGGER (--trigger-json): {e}"))
    });
    let trigger = match from_json
        .or_else(|| args.trigger.as_deref().map(trigger_from_uri))
        .transpose()
    {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    if args.claim {
        let Some(t) = &trigger else {
            eprintln!(
                "error: NBPIPE_CLAIM (--claim) needs the trigger to claim (NBPIPE_TRIGGER or \
                 --trigger)"
            );
            return exit::USAGE;
        };
        let output = args
            .output
            .clone()
            .unwrap_or_else(|| project.output.clone());
        match claim(&output, t, args.run_id.as_deref()) {
            Ok(true) => {}
            Ok(false) => return exit::OK,
            Err(code) => return code,
        }
    }
    let opts = RunOptions {
        parameters,
        output: args.output,
        run_id: args.run_id,
        jobs: args.jobs.max(1),
        cache: args.cache,
        trigger,
        quiet: args.quiet,
        pool: None,
        env: None,
        before_step: None,
        fork: None,
        no_fork_server: args.no_fork_server,
        shutdowns: None,
        git: args.git_commit.clone().map(|commit| GitInfo {
            commit,
            branch: args.git_branch.clone().unwrap_or_else(|| "HEAD".into()),
            dirty: false,
        }),
        secrets: None,
    };
    let json = args.json;
    let notify_off = args.no_notify
        || std::env::var("NBPIPE_NOTIFY").is_ok_and(|v| matches!(v.as_str(), "off" | "serve"));
    let notify_project = (!notify_off && !project.notify.is_empty()).then(|| project.clone());
    let runtime = match super::runtime(None) {
        Ok(r) => r,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        let (stop_tx, stop_rx) = watch::channel(None);
        tokio::spawn(super::exec::forward_signals(stop_tx));
        let stopped = stop_rx.clone();
        match nbpipe_project::run::run(project, opts, Arc::new(Reporter), stop_rx).await {
            Ok(m) => {
                if json {
                    match serde_json::to_string_pretty(&m) {
                        Ok(text) => println!("{text}"),
                        Err(e) => eprintln!("error: could not print the manifest: {e}"),
                    }
                } else {
                    eprint!("{}", summary(&m));
                }
                if let Some(p) = &notify_project {
                    notify(p, &m).await;
                }
                match m.status.as_str() {
                    status::SUCCEEDED => exit::OK,
                    status::CANCELLED => match *stopped.borrow() {
                        Some(Stop::Signal(sig)) => exit::signal(sig),
                        _ => exit::signal(15),
                    },
                    _ => exit::CELL_ERROR,
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                exit::USAGE
            }
        }
    })
}

/// Sends the project's notifications about the run; a failed delivery is a warning, never
/// a change of the exit code.
async fn notify(project: &nbpipe_project::Project, m: &RunManifest) {
    // NBPIPE_NOTIFY_TIMEOUT (seconds) shortens or lengthens the time spent on deliveries.
    let budget = std::env::var("NBPIPE_NOTIFY_TIMEOUT")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .and_then(|s| std::time::Duration::try_from_secs_f64(s).ok())
        .unwrap_or(nbpipe_notify::DIRECT_BUDGET);
    for sent in nbpipe_notify::notify_run(project, m, budget).await {
        if let Some(e) = &sent.error {
            eprintln!(
                "warning: notification `{}` to {} not delivered after {} attempt(s): {e}",
                sent.key, sent.destination, sent.attempts
            );
        }
    }
}

/// The closing table of a run: each step's status, duration and report, the last lines it
/// printed, then a one-line verdict.
fn summary(m: &RunManifest) -> String {
    use std::fmt::Write;
    let cwd = std::env::current_dir().ok();
    let report = |uri: &str| match &cwd {
        Some(cwd) => std::path::Path::new(uri)
            .strip_prefix(cwd)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| uri.to_string()),
        None => uri.to_string(),
    };
    let width = m.steps.iter().map(|s| s.id.len()).max().unwrap_or(4).max(4);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n  {:<width$}  {:<10} {:>9}  report",
        "step", "status", "duration"
    );
    for s in &m.steps {
        let duration = s.duration.map(seconds).unwrap_or_else(|| "-".into());
        let html = match (&s.cached_from, &s.html) {
            (Some(c), _) => format!("(cached from run {})", c.run_id),
            (None, Some(h)) if s.status != status::SKIPPED => report(h),
            _ => "-".into(),
        };
        let _ = writeln!(
            out,
            "  {:<width$}  {:<10} {:>9}  {html}",
            s.id, s.status, duration
        );
        for line in &s.summary {
            let _ = writeln!(out, "  {:<width$}  │ {line}", "");
        }
        if let Some(e) = &s.error {
            let _ = writeln!(out, "  {:<width$}  error: {e}", "");
        }
    }
    let count = |st: &str| m.steps.iter().filter(|s| s.status == st).count();
    let took = m.duration.map(seconds).unwrap_or_default();
    let verdict = match m.status.as_str() {
        status::SUCCEEDED => format!("succeeded: {} steps in {took}", m.steps.len()),
        st => {
            let mut parts = Vec::new();
            for (n, what) in [
                (count(status::FAILED), "failed"),
                (count(status::CANCELLED), "cancelled"),
                (count(status::SKIPPED), "skipped"),
                (count(status::SUCCEEDED), "succeeded"),
            ] {
                if n > 0 {
                    parts.push(format!("{n} {what}"));
                }
            }
            format!("{st} after {took}: {}", parts.join(", "))
        }
    };
    let _ = writeln!(
        out,
        "\nRun `{}` {verdict}; record in `{}`",
        m.run_id,
        report(&format!("{}/run.json", m.output.trim_end_matches('/')))
    );
    out
}

/// Seconds for people: `0.84 s`, `12.3 s`, `2 min 05 s`.
fn seconds(s: f64) -> String {
    if s < 10.0 {
        format!("{s:.2} s")
    } else if s < 60.0 {
        format!("{s:.1} s")
    } else {
        let whole = s.round() as u64;
        format!("{} min {:02} s", whole / 60, whole % 60)
    }
}

/// Direct mode's guard: claim `trigger` under `output`. `Ok(true)`: run; `Ok(false)`:
/// another run has it (said on stderr).
fn claim(output: &str, trigger: &TriggerObject, run_id: Option<&str>) -> Result<bool, u8> {
    let runtime = super::runtime(Some(1))?;
    match runtime.block_on(nbpipe_deploy::claim::claim(output, trigger, run_id)) {
        Ok(nbpipe_deploy::claim::Claim::Claimed { .. }) => Ok(true),
        Ok(nbpipe_deploy::claim::Claim::Taken { marker }) => {
            eprintln!(
                "nbpipe: `{}` was already claimed by another run (`{marker}`): nothing to do",
                trigger.uri
            );
            Ok(false)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Err(exit::CELL_ERROR)
        }
    }
}

/// `s3://bucket/key` (or any `scheme://bucket/key`) as a trigger object.
fn trigger_from_uri(uri: &str) -> Result<TriggerObject, String> {
    let (_, rest) = uri
        .split_once("://")
        .ok_or_else(|| format!("--trigger `{uri}`: expected a URI like s3://bucket/key"))?;
    let (bucket, key) = rest
        .split_once('/')
        .ok_or_else(|| format!("--trigger `{uri}`: expected a URI like s3://bucket/key"))?;
    Ok(TriggerObject {
        bucket: bucket.to_string(),
        key: key.to_string(),
        uri: uri.to_string(),
        ..Default::default()
    })
}

/// Prints step transitions as they happen.
struct Reporter;

impl RunObserver for Reporter {
    fn message(&self, msg: &str) {
        eprintln!("{msg}");
    }

    fn step(&self, id: &str, status: &str, detail: &str) {
        if detail.is_empty() {
            eprintln!("[{id}] {status}");
        } else {
            eprintln!("[{id}] {status}: {detail}");
        }
    }
}
