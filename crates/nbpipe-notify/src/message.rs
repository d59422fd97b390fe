//! The message about one finished run (or a digest of held-back failures): what every
//! target's payload is rendered from, and what `nbpipe serve` stores with each delivery.
//! Built from a run's manifest (`run.json`): the failing step is the first step whose status
//! is `failed`, its cell and exception come from the step's `cell` record.

use nbpipe_project::run::manifest::RunManifest;
use serde::{Deserialize, Serialize};

/// Why a message is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    /// A run failed.
    Failure,
    /// A run succeeded.
    Success,
    /// A run succeeded after the project's previous run failed.
    Recovery,
    /// Failures held back by a target's rate limit, counted once its window ended.
    Digest,
}

impl Event {
    /// The event's name (`failure`, …), as in `notify.on` and the JSON body.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Failure => "failure",
            Event::Success => "success",
            Event::Recovery => "recovery",
            Event::Digest => "digest",
        }
    }

    /// The event named `s`.
    pub fn parse(s: &str) -> Option<Event> {
        match s {
            "failure" => Some(Event::Failure),
            "success" => Some(Event::Success),
            "recovery" => Some(Event::Recovery),
            "digest" => Some(Event::Digest),
            _ => None,
        }
    }
}

/// The cell a failed step stopped at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    /// Index in the output notebook.
    pub index: usize,
    /// Execution count, when the cell got one.
    pub execution_count: Option<i64>,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunError {
    /// Exception name (`ValueError`), when a cell raised.
    pub ename: Option<String>,
    /// Exception value, when a cell raised.
    pub evalue: Option<String>,
    /// The step's (or the run's) one-line description of the failure.
    pub message: String,
}

/// Failures a rate limit held back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldBack {
    /// How many failed runs were not announced.
    pub count: u64,
    /// When the first of them finished (RFC 3339).
    pub since: String,
}

/// Everything a notification says. Serialized as is, it is the generic webhook's body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Why it is sent.
    pub event: Event,
    /// The project's name.
    pub project: String,
    /// The environment (`environments:` entry) the project ran in, if any.
    pub environment: Option<String>,
    /// The run.
    pub run_id: String,
    /// The run's final status (`failed`, `succeeded`).
    pub status: String,
    /// The failing step's id.
    pub step: Option<String>,
    /// The failing step's notebook.
    pub notebook: Option<String>,
    /// The failing cell.
    pub cell: Option<Cell>,
    /// The error.
    pub error: Option<RunError>,
    /// When the run started (RFC 3339).
    pub started: Option<String>,
    /// When it finished (RFC 3339).
    pub finished: Option<String>,
    /// Seconds it took.
    pub duration: Option<f64>,
    /// The run's page (`nbpipe serve`) or its output folder (`nbpipe run`).
    pub report_url: Option<String>,
    /// The failing step's HTML report, when known.
    pub step_report_url: Option<String>,
    /// The object that triggered the run (`s3://bucket/key`), when one did.
    #[serde(default)]
    pub trigger_uri: Option<String>,
    /// The run's attempt that ended (1 for the first).
    pub attempt: u32,
    /// Failures of the project held back by the target's rate limit before this message.
    pub held_back: Option<HeldBack>,
    /// For a recovery: how many failed runs came before this success.
    pub failures_before: Option<u64>,
}

impl Message {
    /// A message about run `run_id` of `project` that ended with `status` (`failed` or
    /// `succeeded`; the event is [`Event::Failure`] or [`Event::Success`] accordingly —
    /// callers turn a success into a recovery). `manifest` gives the failing step, cell and
    /// exception and the times; `error` is the run's own error when the manifest has none.
    pub fn for_run(
        project: &str,
        environment: Option<&str>,
        run_id: &str,
        status: &str,
        manifest: Option<&RunManifest>,
        error: Option<&str>,
    ) -> Message {
        let failed = status == "failed";
        let mut msg = Message {
            event: if failed {
                Event::Failure
            } else {
                Event::Success
            },
            project: project.to_string(),
            environment: environment.map(str::to_string),
            run_id: run_id.to_string(),
            status: status.to_string(),
            step: None,
            notebook: None,
            cell: None,
            error: None,
            started: manifest.map(|m| m.started.clone()),
            finished: manifest.and_then(|m| m.ended.clone()),
            duration: manifest.and_then(|m| m.duration),
            report_url: None,
            step_report_url: None,
            trigger_uri: manifest
                .and_then(|m| m.trigger.as_ref())
                .and_then(|t| t.get("uri"))
                .and_then(|u| u.as_str())
                .map(str::to_string),
            attempt: 1,
            held_back: None,
            failures_before: None,
        };
        if !failed {
            return msg;
        }
        let step = manifest.and_then(|m| m.steps.iter().find(|s| s.status == "failed"));
        if let Some(s) = step {
            msg.step = Some(s.id.clone());
            msg.notebook = Some(s.notebook.clone());
            msg.step_report_url = s.html.clone();
            msg.cell = s.cell.as_ref().map(|c| Cell {
                index: c.index,
                execution_count: c.execution_count,
            });
        }
        let cell = step.and_then(|s| s.cell.as_ref());
        let message = step
            .and_then(|s| s.error.clone())
            .or_else(|| error.map(str::to_string))
            .unwrap_or_else(|| "the run failed".to_string());
        msg.error = Some(RunError {
            ename: cell.map(|c| c.ename.clone()),
            evalue: cell.map(|c| c.evalue.clone()),
            message,
        });
        msg
    }

    /// The project, with its environment when it has one: `daily (prod)`.
    pub fn project_label(&self) -> String {
        match &self.environment {
            Some(env) => format!("{} ({env})", self.project),
            None => self.project.clone(),
        }
    }

    /// One line saying what happened: `daily (prod): run 2024…-ab12cd34 failed`.
    pub fn headline(&self) -> String {
        let project = self.project_label();
        match self.event {
            Event::Failure => format!("{project}: run {} failed", self.run_id),
            Event::Success => format!("{project}: run {} succeeded", self.run_id),
            Event::Recovery => format!("{project}: recovered, run {} succeeded", self.run_id),
            Event::Digest => format!(
                "{project}: {} more failed run(s) since {}",
                self.held_back.as_ref().map_or(0, |h| h.count),
                self.held_back
                    .as_ref()
                    .map_or("the last message", |h| h.since.as_str())
            ),
        }
    }

    /// The facts under the headline, one per line (`Step: …`, `Cell: …`, `Error: …`,
    /// `Report: …`), as the plain-text email and Slack's fallback `text` show them.
    pub fn detail_lines(&self) -> Vec<(&'static str, String)> {
        let mut lines = Vec::new();
        lines.push(("Project", self.project.clone()));
        if let Some(env) = &self.environment {
            lines.push(("Environment", env.clone()));
        }
        lines.push(("Run", self.run_id.clone()));
        if let Some(step) = &self.step {
            let nb = self
                .notebook
                .as_ref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default();
            lines.push(("Step", format!("{step}{nb}")));
        }
        if let Some(c) = &self.cell {
            let count = c
                .execution_count
                .map(|n| format!(" (execution count {n})"))
                .unwrap_or_default();
            lines.push(("Cell", format!("{}{count}", c.index)));
        }
        if let Some(e) = &self.error {
            let text = match (&e.ename, &e.evalue) {
                (Some(n), Some(v)) if !v.is_empty() => format!("{n}: {v}"),
                (Some(n), _) => n.clone(),
                _ => e.message.clone(),
            };
            lines.push(("Error", text));
        }
        if let Some(t) = &self.trigger_uri {
            lines.push(("Trigger", t.clone()));
        }
        if self.attempt > 1 {
            lines.push(("Attempt", self.attempt.to_string()));
        }
        if let Some(d) = self.duration {
            lines.push(("Duration", format!("{d:.1} s")));
        }
        if let Some(f) = &self.finished {
            lines.push(("Finished", f.clone()));
        }
        if let Some(n) = self.failures_before.filter(|n| *n > 0) {
            lines.push(("After", format!("{n} failed run(s)")));
        }
        if let Some(h) = &self.held_back {
            if self.event != Event::Digest {
                lines.push((
                    "Also",
                    format!(
                        "{} more failed run(s) since {} were not announced (rate limit)",
                        h.count, h.since
                    ),
                ));
            }
        }
        if let Some(u) = &self.report_url {
            lines.push(("Report", u.clone()));
        }
        if let Some(u) = &self.step_report_url {
            if self.report_url.as_deref() != Some(u.as_str()) {
                lines.push(("Notebook", u.clone()));
            }
        }
        lines
    }

    /// The whole message as plain text: the headline, then the detail lines.
    pub fn text(&self) -> String {
        let mut out = self.headline();
        out.push('\n');
        for (k, v) in self.detail_lines() {
            out.push_str(&format!("\n{k}: {v}"));
        }
        out.push('\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> RunManifest {
        serde_json::from_value(serde_json::json!({
            "format": 1, "run_id": "r1", "project": "daily", "status": "failed",
            "started": "2026-01-02T03:04:05Z", "ended": "2026-01-02T03:04:09Z", "duration": 4.0,
            "output": "/out/r1/", "parameters": {}, "nbpipe_version": "0",
            "trigger": {"uri": "s3://in/data/day.csv", "bucket": "in", "key": "data/day.csv"},
            "steps": [
                {"id": "load", "notebook": "load.ipynb", "status": "succeeded", "needs": [],
                 "attempts": 1, "parameters": {}},
                {"id": "clean", "notebook": "clean.ipynb", "status": "failed", "needs": ["load"],
                 "attempts": 1, "parameters": {}, "html": "/out/r1/clean.html",
                 "error": "cell 2 raised ValueError: bad row",
                 "cell": {"index": 2, "execution_count": 3, "ename": "ValueError", "evalue": "bad row"}}
            ]
        }))
        .unwrap()
    }

    #[test]
    fn a_failure_names_the_failing_step_cell_and_error() {
        let m = manifest();
        let mut msg = Message::for_run("daily", Some("prod"), "r1", "failed", Some(&m), None);
        msg.report_url = Some("http://h/runs/r1".into());
        assert_eq!(msg.event, Event::Failure);
        assert_eq!(msg.step.as_deref(), Some("clean"));
        assert_eq!(
            msg.cell,
            Some(Cell {
                index: 2,
                execution_count: Some(3)
            })
        );
        let text = msg.text();
        for needle in [
            "daily (prod): run r1 failed",
            "Step: clean (clean.ipynb)",
            "Cell: 2 (execution count 3)",
            "Error: ValueError: bad row",
            "Trigger: s3://in/data/day.csv",
            "Report: http://h/runs/r1",
        ] {
            assert!(text.contains(needle), "{needle:?} not in {text}");
        }
    }

    #[test]
    fn a_failure_without_a_manifest_keeps_the_runs_error() {
        let msg = Message::for_run("p", None, "r", "failed", None, Some("interrupted"));
        assert_eq!(msg.error.unwrap().message, "interrupted");
        assert!(msg.step.is_none());
    }

    #[test]
    fn a_success_has_no_error() {
        let m = manifest();
        let msg = Message::for_run("p", None, "r", "succeeded", Some(&m), None);
        assert_eq!(msg.event, Event::Success);
        assert!(msg.error.is_none() && msg.step.is_none());
    }
}
