//! `run.json`: the record of one pipeline run, rewritten as the run progresses.
//!
//! Owns the manifest's shape (documented in the README) and nothing else: the scheduler
//! fills it in, the service (later) reads it back.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The whole run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunManifest {
    /// Manifest format version.
    pub format: u32,
    /// The run's id.
    pub run_id: String,
    /// Project name.
    pub project: String,
    /// `running`, `succeeded`, `failed` or `cancelled`.
    pub status: String,
    /// When the run started (RFC 3339, UTC).
    pub started: String,
    /// When the run ended.
    pub ended: Option<String>,
    /// Seconds from start to end.
    pub duration: Option<f64>,
    /// Output prefix (URI or path) of this run.
    pub output: String,
    /// Run-level parameters (project defaults overridden by the command line).
    pub parameters: Value,
    /// The object that triggered the run, if any.
    pub trigger: Option<Value>,
    /// Kernel environment.
    pub environment: Option<EnvironmentInfo>,
    /// Git commit and branch of the project, when it is a git repository.
    pub git: Option<GitInfo>,
    /// The project's environment (`environments:` entry) the run used; absent for the
    /// top-level settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_name: Option<String>,
    /// One entry per step, in the project's order.
    pub steps: Vec<StepRecord>,
    /// nbpipe version that ran it.
    pub nbpipe_version: String,
}

/// The kernel environment a run used.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnvironmentInfo {
    /// Hash of requirements + Python version.
    pub hash: String,
    /// Interpreter path.
    pub python: String,
    /// Where the resolved package list (`pip freeze`) of this run was stored.
    pub freeze_uri: Option<String>,
}

/// Git state of the project directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GitInfo {
    /// Commit hash.
    pub commit: String,
    /// Branch name (`HEAD` when detached).
    pub branch: String,
    /// Uncommitted changes present.
    pub dirty: bool,
}

/// One step of the run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRecord {
    /// Step id.
    pub id: String,
    /// Notebook path, relative to the project.
    pub notebook: String,
    /// `pending`, `running`, `succeeded`, `failed`, `skipped` or `cancelled`.
    pub status: String,
    /// Steps it waited for.
    pub needs: Vec<String>,
    /// Start time of the last attempt.
    pub started: Option<String>,
    /// End time.
    pub ended: Option<String>,
    /// Seconds, all attempts included.
    pub duration: Option<f64>,
    /// Attempts made (0 when skipped or cached).
    pub attempts: u32,
    /// Effective parameters injected.
    pub parameters: Value,
    /// Output notebook URI.
    pub output: Option<String>,
    /// HTML report URI.
    pub html: Option<String>,
    /// SHA-256 of the input notebook's content.
    pub notebook_sha256: Option<String>,
    /// Cache key, when `--cache` was on.
    pub cache_key: Option<String>,
    /// Where the output came from when served from the cache.
    pub cached_from: Option<CachedFrom>,
    /// Short description of the failure.
    pub error: Option<String>,
    /// The step failed for a reason another attempt cannot fix (its notebook is missing or
    /// not a notebook, its parameters or kernel are wrong): the service does not retry a
    /// run whose failed steps all say so. Written only when true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub permanent: bool,
    /// The last lines the notebook printed on stdout (at most [`SUMMARY_LINES`]), so what a
    /// step found can be read without opening its report. Written only when there are some.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub summary: Vec<String>,
    /// The cell that failed the step's last attempt (raised, timed out or lost its
    /// kernel), for messages about the failure. Written only when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cell: Option<FailedCell>,
}

/// Where and how a step's notebook failed: [`StepRecord::cell`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FailedCell {
    /// The cell's index in the output notebook (before error banners were added).
    pub index: usize,
    /// Its execution count, if it got one.
    pub execution_count: Option<i64>,
    /// The exception's name (`ValueError`; `CellTimeoutError`, `DeadKernelError`).
    pub ename: String,
    /// The exception's value.
    pub evalue: String,
}

/// How many of a step's last stdout lines [`StepRecord::summary`] keeps.
pub const SUMMARY_LINES: usize = 3;
/// Longest summary line kept, in characters (longer ones are cut with `…`).
pub const SUMMARY_LINE_CHARS: usize = 200;

/// The last `SUMMARY_LINES` non-blank lines `nb` printed on stdout, in order.
pub fn stdout_summary(nb: &nbpipe_notebook::Notebook) -> Vec<String> {
    let mut lines = std::collections::VecDeque::new();
    for output in nb.cells.iter().flat_map(|c| &c.outputs) {
        if output.get("output_type").and_then(Value::as_str) != Some("stream")
            || output.get("name").and_then(Value::as_str) != Some("stdout")
        {
            continue;
        }
        let text = match output.get("text") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(parts)) => parts.iter().filter_map(Value::as_str).collect(),
            _ => continue,
        };
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if lines.len() == SUMMARY_LINES {
                lines.pop_front();
            }
            let mut line: String = line.trim_end().chars().take(SUMMARY_LINE_CHARS).collect();
            if line.chars().count() == SUMMARY_LINE_CHARS {
                line.push('…');
            }
            lines.push_back(line);
        }
    }
    lines.into()
}

/// A cache hit's origin.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CachedFrom {
    /// The run that produced the output.
    pub run_id: String,
    /// The output notebook copied.
    pub output: String,
}

/// Step statuses.
pub mod status {
    /// Not started.
    pub const PENDING: &str = "pending";
    /// Executing.
    pub const RUNNING: &str = "running";
    /// Done without error (possibly from the cache).
    pub const SUCCEEDED: &str = "succeeded";
    /// Failed after all attempts.
    pub const FAILED: &str = "failed";
    /// Not run because a step it needs did not succeed.
    pub const SKIPPED: &str = "skipped";
    /// Stopped by a signal or a cancellation.
    pub const CANCELLED: &str = "cancelled";
}
