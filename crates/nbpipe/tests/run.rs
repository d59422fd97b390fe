//! `nbpipe run` end to end: projects with real kernels, a real environment built from
//! requirements.txt, and a real S3 server (SeaweedFS) for object-store outputs.

mod common;
#[path = "../../nbpipe-store/tests/common/seaweed.rs"]
mod seaweed;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::{json, Value};

fn nbpipe_run(sb: &Sandbox, project: &str) -> Command {
    let mut c = sb.nbpipe();
    c.env("NBPIPE_HOME", shared_home())
        .args(["run", project, "--quiet"]);
    c
}

/// A notebook whose first cell is its parameters cell.
fn write_nb(dir: &Path, name: &str, params: &str, cells: &[&str]) {
    let mut all = vec![tagged(params, "parameters")];
    all.extend(cells.iter().map(|s| code(s)));
    let nb = json!({
        "cells": all,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5
    });
    std::fs::write(dir.join(name), nb.to_string()).unwrap();
}

fn project(sb: &Sandbox, name: &str, yaml: &str) -> PathBuf {
    let dir = sb.path(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("nbpipe.yaml"), yaml).unwrap();
    dir
}

/// The only run directory under `<project>/runs`.
fn run_dir(project: &Path) -> PathBuf {
    let runs: Vec<PathBuf> = std::fs::read_dir(project.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs[0].clone()
}

fn manifest(run: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("run.json")).unwrap()).unwrap()
}

fn step<'a>(m: &'a Value, id: &str) -> &'a Value {
    m["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no step {id}"))
}

fn last_stdout(nb_path: &Path) -> String {
    let nb: Value = serde_json::from_str(&std::fs::read_to_string(nb_path).unwrap()).unwrap();
    nb["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| stream(c, "stdout"))
        .collect()
}

#[test]
fn seed_form_runs_unchanged_with_run_context() {
    let sb = Sandbox::new();
    let dir = project(
        &sb,
        "seed",
        "notebooks:\n  - my-notebook.ipynb\n  - my-second-notebook.ipynb\nS3TriggerBucket: notebook-trigger-bucket\nS3TriggerKeyPrefix: path/to/data/\n",
    );
    write_nb(
        &dir,
        "my-notebook.ipynb",
        "run_id = None\ntrigger_key = None\ntrigger_uri = None\nx = 1",
        &["print(run_id, trigger_key, trigger_uri, x)"],
    );
    write_nb(
        &dir,
        "my-second-notebook.ipynb",
        "y = 2",
        &["print('second', y)"],
    );
    let out = run(nbpipe_run(&sb, "seed").args([
        "--trigger",
        "s3://notebook-trigger-bucket/path/to/data/a.csv",
        "-p",
        "x",
        "5",
        "--run-id",
        "r1",
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    let run = run_dir(&dir);
    assert!(run.ends_with("r1"));
    for f in [
        "my-notebook.ipynb",
        "my-notebook.html",
        "my-second-notebook.ipynb",
        "my-second-notebook.html",
        "environment.txt",
    ] {
        assert!(run.join(f).exists(), "{f} missing");
    }
    assert_eq!(
        last_stdout(&run.join("my-notebook.ipynb")),
        "r1 path/to/data/a.csv s3://notebook-trigger-bucket/path/to/data/a.csv 5\n"
    );
    // Context values go only where they are declared.
    let m = manifest(&run);
    assert_eq!(m["status"], "succeeded");
    assert_eq!(
        step(&m, "my-second-notebook")["parameters"],
        json!({"x": 5})
    );
    assert_eq!(
        step(&m, "my-second-notebook")["needs"],
        json!(["my-notebook"])
    );
    assert_eq!(m["trigger"]["key"], "path/to/data/a.csv");
    assert!(m["environment"]["hash"].as_str().unwrap().len() >= 16);
    assert!(std::fs::read_to_string(run.join("environment.txt"))
        .unwrap()
        .contains("ipykernel=="));
    let html = std::fs::read_to_string(run.join("my-second-notebook.html")).unwrap();
    assert!(html.contains("second 2"), "HTML report lacks the output");
    sb.assert_no_processes_left();
}

/// Reports are rendered while the next step runs: every report and summary is in run.json
/// when the run ends, and a report that cannot be stored (a directory in its way) leaves
/// its step succeeded, without `html`, with a warning, and the steps after it run.
#[test]
fn html_reports_are_stored_before_the_run_ends_and_a_failed_one_only_warns() {
    let sb = Sandbox::new();
    let dir = project(
        &sb,
        "reports",
        "output: runs/{run_id}\nnotebooks:\n  - a.ipynb\n  - b.ipynb\n  - c.ipynb\n",
    );
    for (name, word) in [("a", "alpha"), ("b", "beta"), ("c", "gamma")] {
        write_nb(
            &dir,
            &format!("{name}.ipynb"),
            "x = 1",
            &[&format!("print('{word}', x)")],
        );
    }
    std::fs::create_dir_all(dir.join("runs/r1/b.html/in-the-way")).unwrap();
    let out = run(nbpipe_run(&sb, "reports").args(["--run-id", "r1"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("b: no HTML report"),
        "no warning for the report that could not be stored: {}",
        stderr(&out)
    );
    let run = dir.join("runs/r1");
    let m = manifest(&run);
    assert_eq!(m["status"], "succeeded");
    for (id, word) in [("a", "alpha"), ("c", "gamma")] {
        let s = step(&m, id);
        assert_eq!(s["status"], "succeeded");
        assert_eq!(
            s["html"],
            run.join(format!("{id}.html")).display().to_string()
        );
        assert_eq!(s["summary"], json!([format!("{word} 1")]));
        let html = std::fs::read_to_string(run.join(format!("{id}.html"))).unwrap();
        assert!(
            html.contains(&format!("{word} 1")),
            "{id}.html lacks its output"
        );
    }
    let b = step(&m, "b");
    assert_eq!(b["status"], "succeeded");
    assert_eq!(b["html"], Value::Null);
    assert_eq!(last_stdout(&run.join("b.ipynb")), "beta 1\n");
    sb.assert_no_processes_left();
}

#[test]
fn dag_failure_stops_dependents_while_others_finish() {
    let sb = Sandbox::new();
    let dir = project(
        &sb,
        "dag",
        r#"
name: dag
parameters: {n: 3}
notebooks:
  - path: extract.ipynb
  - path: train.ipynb
    needs: extract
  - path: report.ipynb
    needs: [extract]
  - path: publish.ipynb
    needs: [train, report]
"#,
    );
    write_nb(
        &dir,
        "extract.ipynb",
        "n = 1",
        &["open('extracted.txt', 'w').write(str(n))"],
    );
    write_nb(
        &dir,
        "train.ipynb",
        "n = 1",
        &["raise RuntimeError('model diverged')"],
    );
    write_nb(
        &dir,
        "report.ipynb",
        "n = 1",
        &["import time; time.sleep(1)\nprint('report', open('extracted.txt').read())"],
    );
    write_nb(&dir, "publish.ipynb", "n = 1", &["print('published')"]);
    let out = run(nbpipe_run(&sb, "dag").args(["--jobs", "2"]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let run = run_dir(&dir);
    let m = manifest(&run);
    assert_eq!(m["status"], "failed");
    assert_eq!(step(&m, "extract")["status"], "succeeded");
    assert_eq!(step(&m, "train")["status"], "failed");
    assert!(step(&m, "train")["error"]
        .as_str()
        .unwrap()
        .contains("model diverged"));
    assert!(
        step(&m, "train").get("permanent").is_none(),
        "a failed cell may pass on another attempt"
    );
    assert_eq!(step(&m, "report")["status"], "succeeded");
    assert_eq!(step(&m, "publish")["status"], "skipped");
    assert!(!run.join("publish.ipynb").exists());
    // The failed step's notebook and report are there: they are the record of the failure.
    assert!(run.join("train.ipynb").exists() && run.join("train.html").exists());
    // Steps run in the notebook's folder, so relative paths work.
    assert_eq!(last_stdout(&run.join("report.ipynb")), "report 3\n");
    sb.assert_no_processes_left();
}

#[test]
fn retries_then_succeeds_and_counts_attempts() {
    let sb = Sandbox::new();
    let dir = project(
        &sb,
        "retry",
        "notebooks:\n  - path: flaky.ipynb\n    retries: 2\n",
    );
    write_nb(
        &dir,
        "flaky.ipynb",
        "x = 1",
        &["import os\nn = int(open('count').read()) if os.path.exists('count') else 0\nopen('count', 'w').write(str(n + 1))\nassert n >= 1, 'first attempt fails'\nprint('attempt', n + 1)"],
    );
    let out = run(&mut nbpipe_run(&sb, "retry"));
    assert!(out.status.success(), "{}", stderr(&out));
    let m = manifest(&run_dir(&dir));
    assert_eq!(step(&m, "flaky")["attempts"], 2);
    assert_eq!(step(&m, "flaky")["status"], "succeeded");
}

/// A step whose kernel does not exist fails at once, without using its retries, and
/// `run.json` marks it permanent (so the service does not retry the run either).
#[test]
fn a_step_that_cannot_start_fails_permanently_without_retries() {
    let sb = Sandbox::new();
    let dir = project(
        &sb,
        "nokernel",
        "notebooks:\n  - path: a.ipynb\n    kernel: no-such-kernel\n    retries: 2\n",
    );
    write_nb(&dir, "a.ipynb", "n = 1", &["print(n)"]);
    let out = run(&mut nbpipe_run(&sb, "nokernel"));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let m = manifest(&run_dir(&dir));
    let a = step(&m, "a");
    assert_eq!(a["status"], "failed");
    assert_eq!(a["attempts"], 1, "{a:#}");
    assert_eq!(a["permanent"], true, "{a:#}");
    assert!(
        a["error"].as_str().unwrap().contains("no-such-kernel"),
        "{a:#}"
    );
}

#[test]
fn step_and_cell_timeouts_fail_the_step() {
    let sb = Sandbox::new();
    let dir = project(
        &sb,
        "slow",
        "notebooks:\n  - path: slow.ipynb\n    id: whole\n    timeout: 2s\n  - path: slow2.ipynb\n    id: cell\n    cell_timeout: 1s\n    needs: []\n",
    );
    write_nb(
        &dir,
        "slow.ipynb",
        "x = 1",
        &["import time; time.sleep(60)"],
    );
    write_nb(
        &dir,
        "slow2.ipynb",
        "x = 1",
        &["import time; time.sleep(60)"],
    );
    let started = std::time::Instant::now();
    let out = run(nbpipe_run(&sb, "slow").args(["-j", "2"]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        started.elapsed().as_secs() < 45,
        "timeouts did not stop the steps"
    );
    let m = manifest(&run_dir(&dir));
    assert!(
        step(&m, "whole")["error"]
            .as_str()
            .unwrap()
            .contains("timeout"),
        "{}",
        step(&m, "whole")
    );
    assert!(
        step(&m, "cell")["error"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{}",
        step(&m, "cell")
    );
    sb.assert_no_processes_left();
}

/// Every component of the cache key invalidates: notebook source, parameters, declared
/// inputs' content, and upstream steps (the environment hash has its own test below).
#[test]
fn cache_reuses_unchanged_steps_and_each_key_component_invalidates() {
    let sb = Sandbox::new();
    let dir = project(
        &sb,
        "cached",
        "output: runs/{run_id}/\nnotebooks:\n  - path: a.ipynb\n    inputs: [data.csv]\n  - path: b.ipynb\n",
    );
    std::fs::write(dir.join("data.csv"), "1,2\n").unwrap();
    write_nb(
        &dir,
        "a.ipynb",
        "k = 1",
        &["print('a', k, open('data.csv').read().strip())"],
    );
    write_nb(&dir, "b.ipynb", "k = 1", &["print('b', k)"]);
    let go = |id: &str, extra: &[&str]| {
        let out = run(nbpipe_run(&sb, "cached")
            .args(["--cache", "--run-id", id])
            .args(extra));
        assert!(out.status.success(), "{}", stderr(&out));
        let m: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("runs").join(id).join("run.json")).unwrap(),
        )
        .unwrap();
        let cached = |s: &str| !step(&m, s)["cached_from"].is_null();
        (cached("a"), cached("b"))
    };
    assert_eq!(
        go("r1", &[]),
        (false, false),
        "first run executes everything"
    );
    assert_eq!(go("r2", &[]), (true, true), "nothing changed");
    assert_eq!(
        last_stdout(&dir.join("runs/r2/a.ipynb")),
        "a 1 1,2\n",
        "cached output copied"
    );
    assert_eq!(
        go("r3", &["-p", "k", "2"]),
        (false, false),
        "parameters changed"
    );
    std::fs::write(dir.join("data.csv"), "3,4,5\n").unwrap();
    assert_eq!(
        go("r4", &[]),
        (false, false),
        "a's input changed, and with it b's upstream key"
    );
    write_nb(&dir, "b.ipynb", "k = 1", &["print('b changed', k)"]);
    assert_eq!(go("r5", &[]), (true, false), "b's source changed");
    write_nb(
        &dir,
        "a.ipynb",
        "k = 1",
        &["print('a changed', k, open('data.csv').read().strip())"],
    );
    assert_eq!(
        go("r6", &[]),
        (false, false),
        "a's source changed, so b's upstream key changed"
    );
}

#[test]
fn outputs_go_to_s3_and_survive_a_store_outage_as_a_local_copy() {
    let sb = Sandbox::new();
    let weed = seaweed::Seaweed::start();
    let dir = project(&sb, "s3proj", "notebooks:\n  - a.ipynb\n  - b.ipynb\n");
    write_nb(&dir, "a.ipynb", "x = 1", &["print('stored', x)"]);
    write_nb(
        &dir,
        "b.ipynb",
        "x = 1",
        &["import time; time.sleep(4)\nprint('done')"],
    );
    let s3 = |c: &mut Command| {
        c.env("AWS_ENDPOINT_URL", weed.endpoint())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("NBPIPE_STORE_RETRY_TIMEOUT_SECS", "2");
    };
    let prefix = format!("s3://{}/runs/{{run_id}}/", weed.bucket());
    let mut cmd = nbpipe_run(&sb, "s3proj");
    s3(&mut cmd);
    let out = run(cmd.args(["--output", &prefix, "--run-id", "ok1"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let key = |k: &str| format!("s3://{}/runs/ok1/{k}", weed.bucket());
    for k in ["a.ipynb", "a.html", "b.ipynb", "run.json"] {
        let mut get = Command::new(env!("CARGO_BIN_EXE_nbpipe"));
        s3(&mut get);
        // `nbpipe render` reads from the store: proof the object is there and is a notebook.
        if k.ends_with(".ipynb") {
            let o = get.args(["render", &key(k), "-"]).output().unwrap();
            assert!(
                o.status.success(),
                "{k}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }

    // Now the store goes down while `b` runs: the step fails with a clear error and the
    // notebook is kept locally.
    let mut cmd = nbpipe_run(&sb, "s3proj");
    s3(&mut cmd);
    let child = cmd
        .args(["--output", &prefix, "--run-id", "down1"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    drop(weed);
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("kept locally at"), "{err}");
    sb.assert_no_processes_left();
}

#[test]
fn bad_project_files_name_file_line_and_key() {
    let sb = Sandbox::new();
    let dir = project(&sb, "bad", "notebooks:\n  - a.ipynb\nnotebok: 1\n");
    write_nb(&dir, "a.ipynb", "x = 1", &[]);
    let out = run(&mut nbpipe_run(&sb, "bad"));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("nbpipe.yaml:3:1: unknown key `notebok`"),
        "{}",
        stderr(&out)
    );
    std::fs::write(dir.join("nbpipe.yaml"), "notebooks:\n  - missing.ipynb\n").unwrap();
    let out = run(&mut nbpipe_run(&sb, "bad"));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("missing.ipynb"), "{}", stderr(&out));
    let out = run(&mut nbpipe_run(&sb, "nowhere"));
    assert_eq!(out.status.code(), Some(2));
}

/// `nbpipe exec` reads and writes object-store paths directly (papermill's s3:// paths).
#[test]
fn exec_reads_and_writes_s3_paths() {
    let sb = Sandbox::new();
    let weed = seaweed::Seaweed::start();
    sb.notebook(
        "in.ipynb",
        "python3",
        vec![tagged("x = 1", "parameters"), code("print('x is', x)")],
    );
    let s3 = |c: &mut Command| {
        c.env("AWS_ENDPOINT_URL", weed.endpoint())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true");
    };
    let uri = |k: &str| format!("s3://{}/nb/{k}", weed.bucket());
    // Upload by preparing into the store, then run store → store, then read it back.
    let mut c = sb.nbpipe();
    s3(&mut c);
    let out = run(c.args(["exec", "in.ipynb", &uri("in.ipynb"), "--prepare-only"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let mut c = sb.nbpipe();
    s3(&mut c);
    let out = run(c.args(["exec", &uri("in.ipynb"), &uri("out.ipynb"), "-p", "x", "42"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let mut c = sb.nbpipe();
    s3(&mut c);
    let out = run(c.args(["render", &uri("out.ipynb"), "out.html"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let html = std::fs::read_to_string(sb.path("out.html")).unwrap();
    assert!(
        html.contains("x is 42"),
        "the executed notebook in S3 lacks its output"
    );
    sb.assert_no_processes_left();
}

/// The environment's hash is part of the key: new requirements mean a new environment and a
/// re-execution, even with the notebook, parameters and inputs unchanged.
#[test]
fn cache_invalidates_when_the_environment_changes() {
    let sb = Sandbox::new();
    let dir = project(
        &sb,
        "envcache",
        "output: runs/{run_id}/\nnotebooks:\n  - a.ipynb\n",
    );
    write_nb(&dir, "a.ipynb", "k = 1", &["print('a', k)"]);
    let go = |id: &str| {
        let out = run(nbpipe_run(&sb, "envcache").args(["--cache", "--run-id", id]));
        assert!(out.status.success(), "{}", stderr(&out));
        let m: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("runs").join(id).join("run.json")).unwrap(),
        )
        .unwrap();
        (
            !step(&m, "a")["cached_from"].is_null(),
            m["environment"]["hash"].clone(),
        )
    };
    let (cached1, env1) = go("e1");
    let (cached2, env2) = go("e2");
    assert!(
        !cached1 && cached2,
        "second run should be served from the cache"
    );
    assert_eq!(env1, env2);
    std::fs::write(dir.join("requirements.txt"), "six\n").unwrap();
    let (cached3, env3) = go("e3");
    assert_ne!(env1, env3, "new requirements, new environment");
    assert!(!cached3, "a new environment invalidates the cache");
}

/// With secrets, the run's own pool still starts each step's kernel during the step before
/// (with the secrets in its environment, as a step's own kernel has them); nothing waits in
/// a pool after the run, and the value reaches no output.
#[test]
fn pipeline_steps_with_secrets_get_kernels_started_during_the_step_before() {
    let sb = Sandbox::new();
    let dir = project(
        &sb,
        "pipesecret",
        "secrets:\n  TOKEN: {env: NBPIPE_TEST_PIPE_TOKEN}\nnotebooks:\n  - a.ipynb\n  - b.ipynb\n  - c.ipynb\n",
    );
    let probe = "import os, time\ntime.sleep(1.5)\nprint(os.environ.get('NBPIPE_POOLED_KERNEL', 'cold'), os.environ.get('TOKEN', '')[::-1] == 'eul4v-t3rc3s', os.getpid())";
    for name in ["a.ipynb", "b.ipynb", "c.ipynb"] {
        write_nb(&dir, name, "x = 1", &[probe]);
    }
    let out = nbpipe_run(&sb, dir.to_str().unwrap())
        .env("NBPIPE_TEST_PIPE_TOKEN", "s3cr3t-v4lue")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let run = run_dir(&dir);
    let seen: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|s| last_stdout(&run.join(format!("{s}.ipynb"))))
        .collect();
    let how: Vec<(&str, &str)> = seen
        .iter()
        .map(|l| {
            let mut w = l.split_whitespace();
            (w.next().unwrap(), w.next().unwrap())
        })
        .collect();
    assert_eq!(
        how,
        [("cold", "True"), ("1", "True"), ("1", "True")],
        "{seen:?}"
    );
    for f in std::fs::read_dir(&run).unwrap() {
        let text = std::fs::read(f.unwrap().path()).unwrap();
        assert!(!String::from_utf8_lossy(&text).contains("s3cr3t-v4lue"));
    }
    sb.assert_no_processes_left();
}

/// A pipeline starts each step's kernel while the step before it runs: every step after the
/// first gets a pre-started kernel (it says so in `NBPIPE_POOLED_KERNEL`), each kernel serves
/// one step only, and a kernel started for a step that then does not run (its dependency
/// failed) is killed when the run ends — no process is left.
#[test]
fn pipeline_steps_get_kernels_started_during_the_step_before() {
    let sb = Sandbox::new();
    let dir = project(
        &sb,
        "pipe",
        "notebooks:\n  - a.ipynb\n  - b.ipynb\n  - c.ipynb\n",
    );
    let probe = "import os, time\ntime.sleep(1.5)\nprint(os.environ.get('NBPIPE_POOLED_KERNEL', 'cold'), os.getpid())";
    for name in ["a.ipynb", "b.ipynb", "c.ipynb"] {
        write_nb(&dir, name, "x = 1", &[probe]);
    }
    let out = nbpipe_run(&sb, dir.to_str().unwrap()).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let run = run_dir(&dir);
    let seen: Vec<(String, String)> = ["a", "b", "c"]
        .iter()
        .map(|s| {
            let line = last_stdout(&run.join(format!("{s}.ipynb")));
            let (how, pid) = line.trim().split_once(' ').unwrap();
            (how.to_string(), pid.to_string())
        })
        .collect();
    assert_eq!(seen[0].0, "cold", "{seen:?}");
    assert_eq!(
        (seen[1].0.as_str(), seen[2].0.as_str()),
        ("1", "1"),
        "{seen:?}"
    );
    let pids: std::collections::HashSet<_> = seen.iter().map(|s| &s.1).collect();
    assert_eq!(pids.len(), 3, "one kernel per step: {seen:?}");
    sb.assert_no_processes_left();

    // b fails, so c (which needs b) never runs: its pre-started kernel must not outlive the run.
    let dir = project(
        &sb,
        "broken",
        "notebooks:\n  - path: a.ipynb\n  - path: b.ipynb\n    needs: [a]\n  - path: c.ipynb\n    needs: [b]\n",
    );
    write_nb(&dir, "a.ipynb", "x = 1", &[probe]);
    write_nb(
        &dir,
        "b.ipynb",
        "x = 1",
        &["import time\ntime.sleep(1.5)\nraise SystemError('b broke')"],
    );
    write_nb(&dir, "c.ipynb", "x = 1", &[probe]);
    let out = nbpipe_run(&sb, dir.to_str().unwrap()).output().unwrap();
    assert!(!out.status.success());
    let m = manifest(&run_dir(&dir));
    assert_eq!(step(&m, "b")["status"], "failed");
    assert_eq!(step(&m, "c")["status"], "skipped");
    sb.assert_no_processes_left();
}
