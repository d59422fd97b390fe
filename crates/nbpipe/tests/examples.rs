//! The README's examples, run as a newcomer runs them: the first command exactly as the README
//! writes it (read from README.md, so the two cannot drift) on a clean `HOME` with an empty
//! environment cache, and the `nbpipe serve` example reacting to a file dropped in its inbox.

mod common;
mod serve_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serve_support::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The README's first command: the first `sh` block under "The two commands".
fn readme_first_command() -> String {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = readme
        .split("## The two commands")
        .nth(1)
        .expect("README has a `## The two commands` section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a sh block in that section");
    let lines: Vec<&str> = block.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one command: {block}");
    lines[0].trim().to_string()
}

/// Copy `examples/` into `to`, without what earlier runs left there.
fn copy_examples(to: &Path) {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name();
            if name == "runs" || name == ".nbpipe" {
                continue;
            }
            let target = to.join(&name);
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }
    copy(&repo().join("examples"), &to.join("examples"));
}

#[test]
fn readme_first_command_runs_the_example_project_from_a_clean_home() {
    let command = readme_first_command();
    // `cargo run -p nbpipe -- ARGS` builds the binary this test already has; run ARGS with it.
    let args = command
        .strip_prefix("cargo run -p nbpipe -- ")
        .unwrap_or_else(|| {
            panic!("README's first command is not `cargo run -p nbpipe -- …`: {command}")
        });
    assert!(
        !args.contains(['\'', '"', '\\', '$', '&', '|', ';']),
        "keep the first command free of shell syntax: {args}"
    );
    let sb = Sandbox::new();
    let work = sb.path("work");
    copy_examples(&work);
    let home = sb.path("home");
    std::fs::create_dir_all(&home).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_nbpipe"))
        .args(args.split_whitespace())
        .current_dir(&work)
        .env("HOME", &home)
        .env_remove("NBPIPE_HOME")
        .env_remove("XDG_CACHE_HOME")
        .env_remove("VIRTUAL_ENV")
        .env_remove("JUPYTER_PATH")
        .env("NBPIPE_TEST_TAG", &sb.tag)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{command}\n{err}");
    // The environment was built from nothing, under the clean HOME.
    assert!(
        home.join(".cache/nbpipe/envs").read_dir().unwrap().count() > 0,
        "{err}"
    );
    assert!(
        !err.to_lowercase().contains("warning"),
        "no warnings for normal input: {err}"
    );
    // The closing table: each step, its duration, what it printed, its report; a verdict.
    let row = |step: &str| {
        err.lines()
            .find(|l| l.trim_start().starts_with(step) && l.contains("succeeded"))
            .unwrap_or_else(|| panic!("no row for {step}: {err}"))
            .to_string()
    };
    for step in ["extract", "report"] {
        let row = row(step);
        assert!(row.contains(" s "), "a duration: {row}");
        let report = row.split_whitespace().last().unwrap();
        assert!(report.ends_with(&format!("{step}.html")), "{row}");
        assert!(
            work.join(report).is_file(),
            "the report path is relative to where the command ran: {report}"
        );
    }
    assert!(
        err.contains("│ extracted 28 eu rows from 7 days of sample data"),
        "{err}"
    );
    assert!(err.contains("│ best seller: "), "{err}");
    let verdict = err.lines().last().unwrap();
    assert!(verdict.contains("succeeded: 2 steps in "), "{verdict}");
    assert!(verdict.contains("run.json"), "{verdict}");
    sb.assert_no_processes_left();
}

#[test]
fn what_the_examples_leave_behind_is_ignored_by_git() {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo())
        .args([
            "check-ignore",
            "examples/sales/runs/20261203T101112Z-3f9a/report.html",
            "examples/sales/.nbpipe/env.json",
            "examples/sales/.nbpipe/inbox/incoming/sales/monday.csv",
            "examples/hello/.nbpipe/env.json",
            "hello-out.ipynb",
        ])
        .output()
        .unwrap();
    if !repo().join(".git").exists() {
        return; // a source archive: nothing to ignore for
    }
    let ignored = String::from_utf8_lossy(&out.stdout);
    assert_eq!(ignored.lines().count(), 5, "{ignored}");
}

#[test]
fn serve_example_runs_the_project_for_a_file_dropped_in_its_inbox() {
    let sb = Sandbox::new();
    let work = sb.path("work");
    copy_examples(&work);
    let project = work.join("examples/sales");
    let server = Server::start(&sb, &project, &[]);
    // As the README shows: copy the sample file into the inbox folder of the trigger's bucket.
    let inbox = project.join(".nbpipe/inbox/incoming/sales");
    std::fs::create_dir_all(&inbox).unwrap();
    std::fs::copy(project.join("data/monday.csv"), inbox.join("monday.csv")).unwrap();
    let runs = server.wait_runs("the run of the dropped file", |r| done(r, 1));
    let run = &runs[0];
    assert_eq!(run["status"], "succeeded", "{run:#?}");
    assert_eq!(run["trigger"]["bucket"], "incoming");
    assert_eq!(run["trigger"]["key"], "sales/monday.csv");
    let id = run["id"].as_str().unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(project.join(format!("runs/{id}/run.json"))).unwrap(),
    )
    .unwrap();
    let summary = |step: usize| manifest["steps"][step]["summary"].to_string();
    assert!(
        summary(0).contains("extracted 3 eu rows from s3://incoming/sales/monday.csv"),
        "{manifest:#}"
    );
    // latte 31 × 3.4 + espresso 12 × 2.2 + croissant 25 × 1.8 (the us row is not eu).
    assert!(
        summary(1).contains("eu: revenue 176.80 EUR from 68 units"),
        "{manifest:#}"
    );
    assert!(
        summary(1).contains("best seller: latte (31 units)"),
        "{manifest:#}"
    );
    let mut server = server;
    server.signal("-TERM");
    assert!(server.child.wait().unwrap().success());
    sb.assert_no_processes_left();
}
