//! Run history without a server: the `run.json` files under an output prefix (what direct
//! mode leaves behind), read into one line per run for `nbpipe runs list`.

use nbpipe_store::Location;
use serde_json::Value;

use crate::DeployError;

/// How deep below the prefix `run.json` files are looked for (`PREFIX/RUN/run.json` is 1).
const MAX_DEPTH: usize = 3;

/// One run found under a prefix.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    /// The run id.
    pub id: String,
    /// The project.
    pub project: String,
    /// `running`, `succeeded`, `failed`, `cancelled`.
    pub status: String,
    /// Start time (RFC 3339).
    pub started: String,
    /// Seconds, when it ended.
    pub duration: Option<f64>,
    /// Where its `run.json` is.
    pub manifest: String,
}

/// The runs under `prefix`, newest first. Files that are not run manifests are skipped.
pub async fn list_runs(prefix: &str) -> Result<Vec<RunSummary>, DeployError> {
    let root = Location::parse(prefix)?;
    let mut runs = Vec::new();
    let mut level = vec![root];
    for _ in 0..MAX_DEPTH {
        let mut next = Vec::new();
        for dir in level {
            for entry in dir.list().await? {
                let name = entry.to_string();
                let trimmed = name.trim_end_matches('/');
                if trimmed.ends_with("/.nbpipe") || trimmed.ends_with("/.git") {
                    continue;
                }
                if trimmed.ends_with("/run.json") {
                    if let Some(r) = read(&entry).await? {
                        runs.push(r);
                    }
                } else if is_dir(&entry, &name) {
                    next.push(entry);
                }
            }
        }
        level = next;
    }
    runs.sort_by(|a, b| b.started.cmp(&a.started).then(a.id.cmp(&b.id)));
    Ok(runs)
}

fn is_dir(entry: &Location, name: &str) -> bool {
    match entry {
        Location::Local(p) => p.is_dir(),
        _ => name.ends_with('/'),
    }
}

async fn read(at: &Location) -> Result<Option<RunSummary>, DeployError> {
    let bytes = at.get().await?;
    let Ok(v) = serde_json::from_slice::<Value>(&bytes) else {
        return Ok(None);
    };
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let Some(id) = s("run_id") else {
        return Ok(None);
    };
    Ok(Some(RunSummary {
        id,
        project: s("project").unwrap_or_default(),
        status: s("status").unwrap_or_default(),
        started: s("started").unwrap_or_default(),
        duration: v.get("duration").and_then(Value::as_f64),
        manifest: at.to_string(),
    }))
}
