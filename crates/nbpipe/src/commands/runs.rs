//! `nbpipe runs list PREFIX`: the runs recorded under an output prefix, from their
//! `run.json` files (direct mode's history). Exit codes: 0 listed, 1 the store failed, 2 bad
//! prefix.

use crate::cli::{RunsArgs, RunsCommand, RunsListArgs};
use crate::exit;

/// Run the command; returns the exit code.
pub fn run(args: RunsArgs) -> u8 {
    match args.command {
        RunsCommand::List(a) => list(a),
    }
}

fn list(args: RunsListArgs) -> u8 {
    let runtime = match super::runtime(Some(2)) {
        Ok(r) => r,
        Err(code) => return code,
    };
    match runtime.block_on(nbpipe_deploy::history::list_runs(&args.prefix)) {
        Ok(runs) => {
            if args.json {
                for r in &runs {
                    println!(
                        "{}",
                        serde_json::json!({
                            "id": r.id, "project": r.project, "status": r.status,
                            "started": r.started, "duration": r.duration, "manifest": r.manifest,
                        })
                    );
                }
                return exit::OK;
            }
            if runs.is_empty() {
                eprintln!("no runs under `{}`", args.prefix);
                return exit::OK;
            }
            let w = runs.iter().map(|r| r.id.len()).max().unwrap_or(2).max(2);
            let pw = runs
                .iter()
                .map(|r| r.project.len())
                .max()
                .unwrap_or(7)
                .max(7);
            println!(
                "{:<w$}  {:<pw$}  {:<10} {:<25} {:>10}",
                "id", "project", "status", "started", "duration"
            );
            for r in &runs {
                let d = r
                    .duration
                    .map(|d| format!("{d:.1} s"))
                    .unwrap_or_else(|| "-".into());
                println!(
                    "{:<w$}  {:<pw$}  {:<10} {:<25} {:>10}",
                    r.id, r.project, r.status, r.started, d
                );
            }
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            if matches!(e, nbpipe_deploy::DeployError::Store(ref s) if s.kind() == nbpipe_store::ErrorKind::InvalidLocation)
            {
                exit::USAGE
            } else {
                exit::CELL_ERROR
            }
        }
    }
}
