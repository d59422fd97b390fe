//! `nbpipe run` with the fork server: a project's Python kernels are forked from one zygote
//! per environment, unless `--no-fork-server` or `env.fork_server: false` says otherwise; a
//! kernel killed mid-run fails the run as a cold one does; a preload that cannot be imported
//! falls back to cold starts; no process outlives a run.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::{json, Value};

fn nbpipe_run(sb: &Sandbox, project: &Path) -> Command {
    let mut c = sb.nbpipe();
    c.env("NBPIPE_HOME", shared_home())
        .args(["run", project.to_str().unwrap(), "--quiet"]);
    c
}

fn write_nb(dir: &Path, name: &str, cells: &[&str]) {
    let mut all = vec![tagged("x = 1", "parameters")];
    all.extend(cells.iter().map(|s| code(s)));
    let nb = json!({
        "cells": all,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5
    });
    std::fs::write(dir.join(name), nb.to_string()).unwrap();
}

fn project(sb: &Sandbox, name: &str, yaml: &str, steps: usize, cells: &[&str]) -> PathBuf {
    let dir = sb.path(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("nbpipe.yaml"), yaml).unwrap();
    for i in 0..steps {
        write_nb(&dir, &format!("s{i}.ipynb"), cells);
    }
    dir
}

/// The latest run's folder: the one whose `run.json` was written last (run ids name the
/// second only, so two runs within a second do not sort by id).
fn run_dir(project: &Path) -> PathBuf {
    std::fs::read_dir(project.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|run| {
            std::fs::metadata(run.join("run.json"))
                .and_then(|m| m.modified())
                .unwrap()
        })
        .expect("a run directory")
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

/// Each step prints: forked? (own session), parent pid, pid, a random number.
const PROBE: &str = "import os, random\nprint(os.getsid(0) == os.getpid(), os.getppid(), os.getpid(), random.random())";

fn probes(dir: &Path, steps: usize) -> Vec<Vec<String>> {
    let run = run_dir(dir);
    (0..steps)
        .map(|i| {
            last_stdout(&run.join(format!("s{i}.ipynb")))
                .split_whitespace()
                .map(String::from)
                .collect()
        })
        .collect()
}

#[test]
fn run_forks_every_step_from_one_zygote_and_the_switches_turn_it_off() {
    let sb = Sandbox::new();
    let yaml = "output: runs/{run_id}/\nnotebooks: [s0.ipynb, s1.ipynb, s2.ipynb]\n";
    let dir = project(&sb, "forked", yaml, 3, &[PROBE]);
    let out = nbpipe_run(&sb, &dir).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let seen = probes(&dir, 3);
    for p in &seen {
        assert_eq!(p[0], "True", "not forked: {seen:?}");
    }
    let parents: std::collections::HashSet<&String> = seen.iter().map(|p| &p[1]).collect();
    assert_eq!(parents.len(), 1, "one zygote for the run: {seen:?}");
    for col in [2, 3] {
        let values: std::collections::HashSet<&String> = seen.iter().map(|p| &p[col]).collect();
        assert_eq!(values.len(), 3, "column {col} repeats: {seen:?}");
    }
    let zygote = seen[0][1].clone();
    sb.assert_no_processes_left();
    assert!(
        !Path::new(&format!("/proc/{zygote}/cmdline")).exists() || {
            let cmd = std::fs::read(format!("/proc/{zygote}/cmdline")).unwrap_or_default();
            !String::from_utf8_lossy(&cmd).contains("zygote.py")
        }
    );

    // --no-fork-server: cold kernels, children of nbpipe.
    let out = nbpipe_run(&sb, &dir)
        .arg("--no-fork-server")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    for p in probes(&dir, 3) {
        assert_eq!(p[0], "False", "--no-fork-server forked a kernel: {p:?}");
    }
    sb.assert_no_processes_left();

    // env.fork_server: false in nbpipe.yaml does the same.
    let dir = project(
        &sb,
        "cold",
        "output: runs/{run_id}/\nenv:\n  fork_server: false\nnotebooks: [s0.ipynb]\n",
        1,
        &[PROBE],
    );
    let out = nbpipe_run(&sb, &dir).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(probes(&dir, 1)[0][0], "False");
    sb.assert_no_processes_left();
}

#[test]
fn a_killed_forked_kernel_fails_the_run_as_a_cold_one_does() {
    let sb = Sandbox::new();
    let yaml = "output: runs/{run_id}/\nnotebooks: [s0.ipynb]\n";
    let cells = [
        PROBE,
        "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
        "print('never')",
    ];
    let dir = project(&sb, "killed", yaml, 1, &cells);
    let step_error = |extra: &[&str]| {
        let out = nbpipe_run(&sb, &dir).args(extra).output().unwrap();
        assert!(!out.status.success(), "the run must fail");
        let run = run_dir(&dir);
        let m: Value =
            serde_json::from_str(&std::fs::read_to_string(run.join("run.json")).unwrap()).unwrap();
        let forked = last_stdout(&run.join("s0.ipynb")).starts_with("True");
        (
            m["steps"][0]["status"].as_str().unwrap().to_string(),
            m["steps"][0]["error"].as_str().unwrap_or("").to_string(),
            forked,
        )
    };
    let (status, error, forked) = step_error(&[]);
    assert!(forked);
    std::thread::sleep(std::time::Duration::from_millis(1100)); // a new run id
    let (cold_status, cold_error, cold_forked) = step_error(&["--no-fork-server"]);
    assert!(!cold_forked);
    assert_eq!(status, cold_status);
    assert!(error.contains("signal 9"), "{error}");
    let strip = |s: &str| s.split("; kernel stderr").next().unwrap_or("").to_string();
    assert_eq!(strip(&error), strip(&cold_error));
    sb.assert_no_processes_left();
}

#[test]
fn preloaded_modules_are_imported_and_a_bad_preload_falls_back_to_cold() {
    let sb = Sandbox::new();
    let check = "import sys\nprint('xml.dom.minidom' in sys.modules)";
    let dir = project(
        &sb,
        "preload",
        "output: runs/{run_id}/\nenv:\n  preload: [xml.dom.minidom]\nnotebooks: [s0.ipynb]\n",
        1,
        &[PROBE, check],
    );
    let out = nbpipe_run(&sb, &dir).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let seen = last_stdout(&run_dir(&dir).join("s0.ipynb"));
    assert!(seen.starts_with("True"), "{seen}");
    assert!(seen.trim_end().ends_with("True"), "not preloaded: {seen}");
    sb.assert_no_processes_left();

    let dir = project(
        &sb,
        "badpreload",
        "output: runs/{run_id}/\nenv:\n  preload: [no_such_module_here]\nnotebooks: [s0.ipynb]\n",
        1,
        &[PROBE],
    );
    let out = nbpipe_run(&sb, &dir).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(probes(&dir, 1)[0][0], "False", "expected a cold start");
    sb.assert_no_processes_left();
}

/// `nbpipe exec` forks its kernel from the zygote a running `nbpipe run` advertises for the
/// notebook's environment (the registry folder), and starts cold when that kernel would not
/// be the one it starts itself (here: another umask) or with `--no-fork-server`. The
/// advert goes with the run.
#[test]
fn exec_forks_from_the_zygote_a_running_project_advertises_else_starts_cold() {
    let sb = Sandbox::new();
    let go = sb.path("go");
    let wait = format!(
        "import os, time\nwhile not os.path.exists({:?}): time.sleep(0.02)",
        go.to_str().unwrap()
    );
    let yaml = "output: runs/{run_id}/\nnotebooks: [s0.ipynb]\n";
    let dir = project(&sb, "shared", yaml, 1, &[PROBE, &wait]);
    write_nb(&dir, "probe.ipynb", &[PROBE]);
    let mut run = nbpipe_run(&sb, &dir).spawn().unwrap();
    let registry = sb.path(".zygotes");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let advert: Value = loop {
        let found = std::fs::read_dir(&registry)
            .into_iter()
            .flatten()
            .flatten()
            .find(|e| e.path().extension().is_some_and(|x| x == "json"));
        if let Some(e) = found {
            if let Ok(v) = serde_json::from_slice(&std::fs::read(e.path()).unwrap()) {
                break v;
            }
        }
        assert!(run.try_wait().unwrap().is_none(), "the run ended early");
        assert!(std::time::Instant::now() < deadline, "no zygote advertised");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let zygote = advert["pid"].as_i64().unwrap().to_string();
    let exec = |wrap: &[&str], extra: &[&str]| -> Vec<String> {
        let mut c = sb.nbpipe();
        let out_nb = dir.join("probe.out.ipynb");
        let mut args: Vec<String> = vec![
            "exec".into(),
            dir.join("probe.ipynb").to_str().unwrap().into(),
            out_nb.to_str().unwrap().into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        if !wrap.is_empty() {
            // sh -c 'umask 077; exec "$0" "$@"' NBPIPE ARGS...
            let prog = c.get_program().to_owned();
            let mut w = Command::new("sh");
            sb.isolate(&mut w);
            w.arg("-c").arg(wrap[0]).arg(prog).args(&args);
            c = w;
        } else {
            c.args(&args);
        }
        let child = c.env("NBPIPE_HOME", shared_home()).spawn().unwrap();
        let pid = child.id().to_string();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let mut seen: Vec<String> = last_stdout(&out_nb)
            .split_whitespace()
            .map(String::from)
            .collect();
        seen.push(pid);
        seen
    };
    let seen = exec(&[], &[]);
    assert_eq!(seen[0], "True", "not forked: {seen:?}");
    assert_eq!(seen[1], zygote, "forked elsewhere: {seen:?}");
    let seen = exec(&["umask 077; exec \"$0\" \"$@\""], &[]);
    assert_eq!(seen[0], "False", "another umask must start cold: {seen:?}");
    assert_eq!(seen[1], seen[4], "a cold kernel is exec's child: {seen:?}");
    let seen = exec(&[], &["--no-fork-server"]);
    assert_eq!(seen[0], "False", "--no-fork-server forked: {seen:?}");

    std::fs::write(&go, "").unwrap();
    let status = run.wait().unwrap();
    assert!(status.success());
    let left: Vec<_> = std::fs::read_dir(&registry).unwrap().flatten().collect();
    assert!(left.is_empty(), "adverts left after the run: {left:?}");
    sb.assert_no_processes_left();
}

/// `nbpipe run` starts the zygote on the environment the folder's marker names while it
/// checks the environment; when the check answers otherwise (here the marker names a decoy
/// environment), that zygote is replaced before any kernel is forked: every step runs in
/// the checked environment, forked, and the decoy's zygote does not outlive the run.
#[test]
fn a_wrong_environment_guess_is_replaced_before_any_kernel_forks() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    let yaml = "output: runs/{run_id}/\nnotebooks: [s0.ipynb, s1.ipynb]\n";
    let cells = ["import os, sys\nprint(os.getsid(0) == os.getpid(), sys.prefix)"];
    let dir = project(&sb, "guess", yaml, 2, &cells);
    let out = nbpipe_run(&sb, &dir).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir(&dir).join("run.json")).unwrap())
            .unwrap();
    let env_python = PathBuf::from(manifest["environment"]["python"].as_str().unwrap());
    let env_root = env_python.parent().unwrap().parent().unwrap().to_path_buf();

    // A decoy environment whose interpreter (the test venv's, which has ipykernel) says
    // when it is started.
    let decoy = sb.path("decoy-env");
    std::fs::create_dir_all(decoy.join("bin")).unwrap();
    let started = sb.path("decoy-started");
    let script = format!(
        "#!/bin/sh\necho \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
        started.display(),
        sb.python().display()
    );
    let python = decoy.join("bin/python");
    std::fs::write(&python, script).unwrap();
    std::fs::set_permissions(&python, std::fs::Permissions::from_mode(0o755)).unwrap();
    let marker_path = dir.join(".nbpipe/env.json");
    let mut marker: Value =
        serde_json::from_str(&std::fs::read_to_string(&marker_path).unwrap()).unwrap();
    marker["env_path"] = json!(decoy);
    marker["python"] = json!(python);
    marker["hash"] = json!("decoy00000000000");
    std::fs::write(&marker_path, marker.to_string()).unwrap();

    let out = nbpipe_run(&sb, &dir).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let log = std::fs::read_to_string(&started).unwrap_or_default();
    assert!(
        log.contains("zygote.py"),
        "the guess started no zygote: {log:?}"
    );
    let run = run_dir(&dir);
    let want = std::fs::canonicalize(&env_root).unwrap();
    for i in 0..2 {
        let printed = last_stdout(&run.join(format!("s{i}.ipynb")));
        let mut words = printed.split_whitespace();
        assert_eq!(words.next(), Some("True"), "step {i} not forked: {printed}");
        let prefix = std::fs::canonicalize(words.next().unwrap()).unwrap();
        assert_eq!(
            prefix, want,
            "step {i} ran in another environment: {printed}"
        );
    }
    // The check rewrote the marker to the environment it found.
    let marker: Value =
        serde_json::from_str(&std::fs::read_to_string(&marker_path).unwrap()).unwrap();
    assert_eq!(marker["python"], json!(env_python));
    sb.assert_no_processes_left();
}
