//! `nbpipe run`: load a project, run its pipeline, report per step.

use std::sync::Arc;

use nbpipe_exec::Stop;
use nbpipe_params::Parameters;
use nbpipe_project::run::{manifest::status, RunObserver, RunOptions, TriggerObject};
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
    let project = match nbpipe_project::config::load(&dir) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let parameters = match super::params::collect(
        Parameters::new(),
        &super::params::Sources {
            base64: &[],
            files: &args.parameters_file,
            yaml: &args.parameters_yaml,
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
    let trigger = match args.trigger.as_deref().map(trigger_from_uri).transpose() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
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
        fork: None,
        no_fork_server: args.no_fork_server,
        shutdowns: None,
    };
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
                eprintln!();
                for s in &m.steps {
                    let extra = match (&s.cached_from, &s.error) {
                        (Some(c), _) => format!("cached from run {}", c.run_id),
                        (None, Some(e)) => e.clone(),
                        _ => String::new(),
                    };
                    eprintln!("  {:<24} {:<10} {}", s.id, s.status, extra);
                }
                eprintln!(
                    "\nRun {} {} → {}/run.json",
                    m.run_id,
                    m.status,
                    m.output.trim_end_matches('/')
                );
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
