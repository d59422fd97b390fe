//! A project's run policy (`serve:` in its nbpipe.yaml) turned into what the service
//! applies: the attempts a run gets, the limits and backoff stored in the queue for every
//! server, whether a failed attempt is worth another one, and the effective policy with
//! where each value comes from, as the API and the UI show it ([`effective`]).
//!
//! Pure decisions on loaded projects and run results: no I/O here (the queue stores and
//! applies them, the worker reports outcomes through them).

use std::time::Duration;

use nbpipe_project::run::manifest::{status, RunManifest};
use nbpipe_project::run::RunError;
use nbpipe_project::Project;

use crate::queue::{Backoff, ProjectPolicy};

/// How many attempts a run of `project` gets: `serve.retries` + 1. Without `serve.retries`,
/// the project's largest step `retries` + 1, so a run interrupted by a server crash is
/// retried as its steps would be (a *failed* run is then not retried: see
/// [`retry_failure`]). Interruptions also get `serve.interrupted_retries` (default 1) extra
/// attempts, which the queue adds when it recovers the run.
pub fn max_attempts(project: &Project) -> u32 {
    let retries = project
        .serve
        .retries
        .unwrap_or_else(|| project.steps.iter().map(|s| s.retries).max().unwrap_or(0));
    retries.saturating_add(1)
}

/// The part of the policy the queue applies for every server sharing the database: the
/// project's concurrency limit and its retry backoff. An unset first delay is the queue's
/// default (or the cap, when that is shorter); an unset cap is the default cap, or the first
/// delay when that is longer.
pub fn stored_policy(project: &Project) -> ProjectPolicy {
    let s = &project.serve;
    let backoff = match (s.retry_backoff, s.retry_backoff_max) {
        (None, None) => None,
        (base, max) => {
            let default = Backoff::default();
            let base = base.unwrap_or_else(|| max.map_or(default.base, |m| default.base.min(m)));
            Some(Backoff {
                base,
                max: max.unwrap_or_else(|| default.max.max(base)),
            })
        }
    };
    ProjectPolicy {
        concurrency: s.concurrency,
        backoff,
        interrupted_retries: s.interrupted_retries,
    }
}

/// Where a value of the [`EffectivePolicy`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Set in the project's `serve:` section.
    Project,
    /// The server's option (`--per-project` for the concurrency).
    Server,
    /// Inherited from the project's steps (their largest `retries`).
    Steps,
    /// nbpipe's default.
    Default,
}

/// One effective value and where it comes from.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Setting<T> {
    /// The value applied.
    pub value: T,
    /// Where it comes from.
    pub source: Source,
}

/// The run policy applied to a project's runs, every value filled in (`GET /api/projects`,
/// the projects page).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EffectivePolicy {
    /// Runs of the project running at once: `serve.concurrency`, else `--per-project`.
    pub concurrency: Setting<usize>,
    /// Extra attempts a run gets: `serve.retries`, else the steps' largest `retries` (then
    /// only an interrupted run is retried, not a failed one).
    pub retries: Setting<u32>,
    /// First delay before a retry, in seconds (doubling after each attempt).
    pub retry_backoff_seconds: Setting<f64>,
    /// Longest delay before a retry, in seconds.
    pub retry_backoff_max_seconds: Setting<f64>,
    /// Time limit of one attempt, in seconds (`None`: no limit).
    pub timeout_seconds: Setting<Option<f64>>,
    /// Extra attempts a run interrupted by the infrastructure gets, apart from `retries`.
    pub interrupted_retries: Setting<u32>,
}

/// The policy `project`'s runs get on a server whose `--per-project` is `per_project`.
pub fn effective(project: &Project, per_project: usize) -> EffectivePolicy {
    let s = &project.serve;
    let from = |set: bool| {
        if set {
            Source::Project
        } else {
            Source::Default
        }
    };
    let backoff = stored_policy(project).backoff.unwrap_or_default();
    EffectivePolicy {
        concurrency: match s.concurrency {
            Some(n) => Setting {
                value: n,
                source: Source::Project,
            },
            None => Setting {
                value: per_project.max(1),
                source: Source::Server,
            },
        },
        retries: Setting {
            value: max_attempts(project) - 1,
            source: if s.retries.is_some() {
                Source::Project
            } else {
                Source::Steps
            },
        },
        retry_backoff_seconds: Setting {
            value: backoff.base.as_secs_f64(),
            source: from(s.retry_backoff.is_some()),
        },
        retry_backoff_max_seconds: Setting {
            value: backoff.max.as_secs_f64(),
            source: from(s.retry_backoff_max.is_some()),
        },
        timeout_seconds: Setting {
            value: s.timeout.map(|t| t.as_secs_f64()),
            source: from(s.timeout.is_some()),
        },
        interrupted_retries: Setting {
            value: s
                .interrupted_retries
                .unwrap_or(crate::queue::DEFAULT_INTERRUPTED_RETRIES),
            source: from(s.interrupted_retries.is_some()),
        },
    }
}

/// How one attempt of a run failed, for [`retry_failure`].
#[derive(Debug, Clone, Copy)]
pub enum Failure<'a> {
    /// The run ran and some steps failed (they had their own retries already).
    Steps(&'a RunManifest),
    /// The run could not start.
    Error(&'a RunError),
    /// The attempt exceeded `serve.timeout` and was stopped.
    TimedOut,
    /// This server does not have the run's project.
    UnknownProject,
    /// The executor could not run it (its image did not build) or its container ended
    /// without recording the run's end (out of memory, a crash).
    Executor,
}

/// Whether a failed attempt goes back to the queue (while attempts remain). Only when the
/// project sets `serve.retries`: without it, the steps' own `retries` are the whole policy.
/// Never for failures another attempt cannot fix:
/// - every failed step failed permanently (notebook missing or invalid, bad parameters,
///   unknown kernel: [`StepRecord::permanent`](nbpipe_project::run::manifest::StepRecord));
/// - the output template is wrong ([`RunError::Output`]);
/// - the project is not on this server.
///
/// Retried: failed cells, step timeouts, dead kernels, the run's own timeout, and an
/// environment that could not be built, a store that could not be written or a secret that
/// could not be read (a package index, an object store or AWS can be down for a while).
pub fn retry_failure(project: &Project, failure: Failure<'_>) -> bool {
    if project.serve.retries.is_none() {
        return false;
    }
    match failure {
        Failure::Steps(m) => {
            let mut failed = m.steps.iter().filter(|s| s.status == status::FAILED);
            // `all` of nothing is true: a failed run without a failed step is retried.
            !failed.all(|s| s.permanent) || m.steps.iter().all(|s| s.status != status::FAILED)
        }
        Failure::Error(RunError::Output { .. }) => false,
        Failure::Error(RunError::Env(_) | RunError::Store(_) | RunError::Secret(_)) => true,
        Failure::TimedOut | Failure::Executor => true,
        Failure::UnknownProject => false,
    }
}

/// The error recorded on an attempt stopped by `serve.timeout`.
pub fn timeout_error(timeout: Duration) -> String {
    format!(
        "the run exceeded its time limit (`serve.timeout`: {}) and was stopped; running cells \
         were interrupted and their notebooks saved",
        humantime::format_duration(timeout)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(yaml: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.ipynb"), "{}").unwrap();
        nbpipe_project::parse(dir.path(), "nbpipe.yaml", yaml).unwrap()
    }

    #[test]
    fn attempts_come_from_serve_retries_else_the_largest_step_retries() {
        let steps = "notebooks:\n  - path: a.ipynb\n    retries: 2\n";
        assert_eq!(max_attempts(&project(steps)), 3);
        let both = format!("{steps}serve: {{retries: 0}}\n");
        assert_eq!(max_attempts(&project(&both)), 1);
        assert_eq!(
            max_attempts(&project("notebooks: [a.ipynb]\nserve: {retries: 4}\n")),
            5
        );
        assert_eq!(max_attempts(&project("notebooks: [a.ipynb]\n")), 1);
    }

    #[test]
    fn stored_policy_fills_the_unwritten_delay() {
        let p = |serve: &str| stored_policy(&project(&format!("notebooks: [a.ipynb]\n{serve}")));
        assert_eq!(p(""), ProjectPolicy::default());
        let s = Duration::from_secs;
        let only_base = p("serve: {retry_backoff: 30m, concurrency: 2}\n");
        assert_eq!(only_base.concurrency, Some(2));
        assert_eq!(
            only_base.backoff,
            Some(Backoff {
                base: s(1800),
                max: s(1800)
            })
        );
        assert_eq!(
            p("serve: {retry_backoff: 1s}\n").backoff,
            Some(Backoff {
                base: s(1),
                max: Backoff::default().max
            })
        );
        assert_eq!(
            p("serve: {retry_backoff_max: 2s}\n").backoff,
            Some(Backoff {
                base: s(2),
                max: s(2)
            })
        );
    }

    #[test]
    fn effective_policy_fills_unset_values_and_says_where_they_come_from() {
        let unset = effective(
            &project("notebooks:\n  - path: a.ipynb\n    retries: 2\n"),
            3,
        );
        let default = Backoff::default();
        assert_eq!(
            unset,
            EffectivePolicy {
                concurrency: Setting {
                    value: 3,
                    source: Source::Server
                },
                retries: Setting {
                    value: 2,
                    source: Source::Steps
                },
                retry_backoff_seconds: Setting {
                    value: default.base.as_secs_f64(),
                    source: Source::Default
                },
                retry_backoff_max_seconds: Setting {
                    value: default.max.as_secs_f64(),
                    source: Source::Default
                },
                timeout_seconds: Setting {
                    value: None,
                    source: Source::Default
                },
                interrupted_retries: Setting {
                    value: 1,
                    source: Source::Default
                },
            }
        );
        let set = effective(
            &project(
                "notebooks: [a.ipynb]\nserve: {concurrency: 2, retries: 4, retry_backoff: 1s, \
                 timeout: 90s, interrupted_retries: 0}\n",
            ),
            1,
        );
        assert_eq!(
            (set.concurrency.value, set.concurrency.source),
            (2, Source::Project)
        );
        assert_eq!(
            (set.retries.value, set.retries.source),
            (4, Source::Project)
        );
        assert_eq!(
            (
                set.interrupted_retries.value,
                set.interrupted_retries.source
            ),
            (0, Source::Project)
        );
        assert_eq!(
            stored_policy(&project(
                "notebooks: [a.ipynb]\nserve: {interrupted_retries: 3}\n"
            ))
            .interrupted_retries,
            Some(3)
        );
        assert_eq!(
            (
                set.retry_backoff_seconds.value,
                set.retry_backoff_seconds.source
            ),
            (1.0, Source::Project)
        );
        // The cap is unset: the default cap applies.
        assert_eq!(
            set.retry_backoff_max_seconds,
            Setting {
                value: default.max.as_secs_f64(),
                source: Source::Default
            }
        );
        assert_eq!(
            set.timeout_seconds,
            Setting {
                value: Some(90.0),
                source: Source::Project
            }
        );
    }

    #[test]
    fn only_fixable_failures_are_retried_and_only_with_serve_retries() {
        let with = project("notebooks: [a.ipynb]\nserve: {retries: 1}\n");
        let without = project("notebooks:\n  - path: a.ipynb\n    retries: 3\n");
        let output = RunError::Output {
            template: "{x".into(),
            reason: "bad".into(),
        };
        assert!(retry_failure(&with, Failure::TimedOut));
        assert!(!retry_failure(&without, Failure::TimedOut));
        assert!(!retry_failure(&with, Failure::Error(&output)));
        assert!(!retry_failure(&with, Failure::UnknownProject));

        let manifest = |steps: &[(&str, bool)]| {
            let steps: Vec<serde_json::Value> = steps
                .iter()
                .enumerate()
                .map(|(i, (st, permanent))| {
                    serde_json::json!({"id": format!("s{i}"), "notebook": "a.ipynb",
                        "status": st, "needs": [], "started": null, "ended": null,
                        "duration": null, "attempts": 1, "parameters": null, "output": null,
                        "html": null, "notebook_sha256": null, "cache_key": null,
                        "cached_from": null, "error": "x", "permanent": permanent})
                })
                .collect();
            serde_json::from_value::<RunManifest>(serde_json::json!({
                "format": 1, "run_id": "r", "project": "p", "status": "failed",
                "started": "t", "ended": null, "duration": null, "output": "o",
                "parameters": {}, "trigger": null, "environment": null, "git": null,
                "steps": steps, "nbpipe_version": "0"
            }))
            .unwrap()
        };
        let cell_failed = manifest(&[("failed", false), ("skipped", false)]);
        assert!(retry_failure(&with, Failure::Steps(&cell_failed)));
        assert!(!retry_failure(&without, Failure::Steps(&cell_failed)));
        let missing = manifest(&[("failed", true), ("succeeded", false)]);
        assert!(!retry_failure(&with, Failure::Steps(&missing)));
        let mixed = manifest(&[("failed", true), ("failed", false)]);
        assert!(retry_failure(&with, Failure::Steps(&mixed)));
    }
}
