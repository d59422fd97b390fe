//! `nbpipe serve` against what a fuzzer and a hostile page found (issue "serve hardening"):
//! each finding has a regression test here, against the real server with real kernels.

mod common;
mod serve_support;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use serve_support::*;

/// A request with extra headers; a POST carries a run submission.
fn request(server: &Server, method: &str, path: &str, headers: &[&str]) -> (u16, Value) {
    let body = (method == "POST").then_some(r#"{"project":"proj"}"#);
    server.request(method, path, headers, body)
}

/// DNS rebinding: a page whose own name resolves to 127.0.0.1 sends that name as `Host`. With
/// no token (allowed on loopback) it could start runs; with one it could still read them.
#[test]
fn dns_rebinding_pages_can_neither_read_nor_change_anything() {
    let sb = Sandbox::new();
    let dir = project(&sb, SEED, &["print('ok')"]);
    let server = Server::start_with(
        &sb,
        &dir,
        &["--no-inbox", "--allowed-host", "nbpipe.internal"],
        [("NBPIPE_TOKEN", "")],
    );
    let port = server.port;
    let rebound = format!("Host: evil.example:{port}");
    for (method, path) in [
        ("GET", "/api/runs"),
        ("GET", "/api/projects"),
        ("GET", "/"),
        ("POST", "/api/runs"),
        ("POST", "/hooks/s3"),
    ] {
        let (code, body) = request(&server, method, path, &[&rebound]);
        assert_eq!(code, 421, "{method} {path}: {body}");
        assert_eq!(
            body["error"]["code"], "misdirected_request",
            "{method} {path}"
        );
    }
    // A rebinding page fetching its own origin also sends `Origin`; another site's page
    // reaching 127.0.0.1 directly sends its own `Origin`: refused, reads included.
    let foreign = "Origin: http://evil.example";
    for (method, path) in [("GET", "/api/runs"), ("POST", "/api/runs")] {
        let (code, body) = request(&server, method, path, &[foreign]);
        assert_eq!(code, 403, "{method} {path}: {body}");
        assert_eq!(body["error"]["code"], "cross_origin");
    }
    // The server's own names still work: its address, localhost, an allowed name.
    for host in [
        format!("Host: 127.0.0.1:{port}"),
        format!("Host: localhost:{port}"),
        format!("Host: nbpipe.internal:{port}"),
    ] {
        let (code, _) = request(&server, "GET", "/api/runs", &[&host]);
        assert_eq!(code, 200, "{host}");
    }
    let same = format!("Origin: http://127.0.0.1:{port}");
    let (code, body) = request(&server, "POST", "/api/runs", &[&same]);
    assert_eq!(code, 201, "the UI's own requests: {body}");
    assert!(server.runs().len() == 1, "only the UI's run was queued");
}

/// Runs that fail within milliseconds left their API steps `running`/`pending` while
/// `run.json` said failed/skipped: a late progress write landed after the final state.
#[test]
fn fast_failing_runs_api_state_always_equals_run_json() {
    let sb = Sandbox::new();
    let yaml = "notebooks:\n  - {path: nb.ipynb, id: first, kernel: no-such-kernel}\n  - {path: nb.ipynb, id: second}\n\
                S3TriggerBucket: incoming-bucket\nS3TriggerKeyPrefix: data/\n";
    let dir = project(&sb, yaml, &["print('never')"]);
    let server = Server::start(&sb, &dir, &["--no-inbox", "--workers", "2"]);
    const N: usize = 200;
    let records: Vec<Value> = (0..N)
        .map(|i| {
            json!({"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                   "s3": {"bucket": {"name": "incoming-bucket"},
                          "object": {"key": format!("data/{i}.csv"), "eTag": format!("e{i}")}}})
        })
        .collect();
    let (code, v) = server.post_json("/hooks/s3", &json!({"Records": records}).to_string());
    assert_eq!((code, &v["queued"]), (202, &json!(N)), "{v}");
    let runs = server.wait_runs("every run to end", |r| done(r, N));
    let mut compared = 0;
    for run in &runs {
        let id = run["id"].as_str().unwrap();
        let detail = server.get(&format!("/api/runs/{id}")).unwrap();
        assert_eq!(detail["status"], "failed", "{detail:#}");
        let on_disk: Value = serde_json::from_slice(
            &std::fs::read(dir.join(format!("runs/{id}/run.json"))).unwrap(),
        )
        .unwrap();
        let statuses = |steps: &Value| -> Vec<String> {
            steps
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["status"].as_str().unwrap_or("?").to_string())
                .collect()
        };
        assert_eq!(
            statuses(&on_disk["steps"]),
            ["failed", "skipped"],
            "{on_disk:#}"
        );
        assert_eq!(
            statuses(&detail["steps"]),
            statuses(&on_disk["steps"]),
            "API and run.json disagree for {id}: {detail:#}"
        );
        assert_eq!(detail["manifest"]["status"], on_disk["status"], "{id}");
        compared += 1;
    }
    assert_eq!(compared, N);
}

/// Cancel took ~8 s to act, the next step started meanwhile, and a run could end
/// `succeeded` after its cancel was accepted.
#[test]
fn cancel_interrupts_the_cell_at_once_and_no_step_starts_after_it() {
    let sb = Sandbox::new();
    let yaml = "notebooks:\n  - {path: nb.ipynb, id: slow}\n  - {path: nb.ipynb, id: after}\n";
    let dir = project(
        &sb,
        yaml,
        &["import time\nif step_id == 'slow':\n    print('sleeping', flush=True)\n    time.sleep(120)\nprint('step ran', step_id)"],
    );
    // The notebook learns its step id from the run context.
    let nb_path = dir.join("nb.ipynb");
    let mut nb: Value = serde_json::from_slice(&std::fs::read(&nb_path).unwrap()).unwrap();
    let params = nb["cells"][0]["source"].as_str().unwrap().to_string();
    nb["cells"][0]["source"] = json!(format!("{params}\nstep_id = None"));
    std::fs::write(&nb_path, nb.to_string()).unwrap();

    let server = Server::start(&sb, &dir, &["--no-inbox"]);
    let (code, v) = server.post_json("/api/runs", &json!({"project": "proj"}).to_string());
    assert_eq!(code, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    // Wait until the slow cell is running (its output has reached the notebook).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let detail = server.get(&format!("/api/runs/{id}")).unwrap();
        if detail["steps"][0]["status"] == "running" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slow step never started: {detail:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Time for its kernel to start and the cell to begin sleeping.
    std::thread::sleep(Duration::from_secs(5));
    let asked = Instant::now();
    let (code, v) = server.post_json(&format!("/api/runs/{id}/cancel"), "{}");
    assert_eq!(code, 200, "{v}");
    let detail = loop {
        let detail = server.get(&format!("/api/runs/{id}")).unwrap();
        if detail["status"] != "running" {
            break detail;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(60),
            "the cancel never acted"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!("cancel acted after {:?}", asked.elapsed());
    assert_eq!(detail["status"], "cancelled", "{detail:#}");
    assert_eq!(detail["steps"][0]["status"], "cancelled", "{detail:#}");
    assert_eq!(detail["steps"][1]["status"], "cancelled", "{detail:#}");
    assert!(
        !dir.join(format!("runs/{id}/after.ipynb")).exists(),
        "a step started after the cancel"
    );
    // The interrupted notebook was saved, with what the cell printed before the cancel.
    let slow: Value =
        serde_json::from_slice(&std::fs::read(dir.join(format!("runs/{id}/slow.ipynb"))).unwrap())
            .unwrap();
    let printed: String = slow["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| stream(c, "stdout"))
        .collect();
    assert!(printed.contains("sleeping"), "{slow:#}");
    assert!(!printed.contains("step ran"), "{slow:#}");
    let saved = std::fs::metadata(dir.join(format!("runs/{id}/slow.ipynb")))
        .and_then(|m| m.modified())
        .unwrap();
    eprintln!(
        "interrupted notebook saved {:?} after the cancel request",
        saved.duration_since(std::time::SystemTime::now() - asked.elapsed())
    );
    let run_json: Value =
        serde_json::from_slice(&std::fs::read(dir.join(format!("runs/{id}/run.json"))).unwrap())
            .unwrap();
    assert_eq!(run_json["status"], "cancelled");
    let mut server = server;
    server.signal("-TERM");
    assert!(server.child.wait().unwrap().success());
    sb.assert_no_processes_left();
}

/// `POST /api/runs` queued runs whose parameters no step could take; now it answers 400
/// naming the parameter, the step and why, and queues nothing. A re-run is checked against
/// the notebooks as they are now.
#[test]
fn parameters_no_step_can_take_are_refused_before_queuing() {
    let sb = Sandbox::new();
    let yaml = "notebooks:\n  - nb.ipynb\n  - {path: sh.ipynb, id: shell}\n";
    let dir = project(&sb, yaml, &["print('ok')"]);
    let notebook = |kernel: &str| {
        json!({
            "cells": [{"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": "x=1",
                       "outputs": [], "execution_count": null}],
            "metadata": {"kernelspec": {"name": kernel, "display_name": kernel, "language": kernel}},
            "nbformat": 4, "nbformat_minor": 4
        })
        .to_string()
    };
    std::fs::write(dir.join("sh.ipynb"), notebook("python3")).unwrap();
    let server = Server::start(&sb, &dir, &["--no-inbox"]);
    let refused = |params: Value, name: &str, step: &str| {
        let body = json!({"project": "proj", "parameters": params}).to_string();
        let (code, v) = server.post_json("/api/runs", &body);
        assert_eq!(code, 400, "{params}: {v}");
        assert_eq!(v["error"]["code"], "bad_parameters", "{v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(&format!("`{name}`")), "{message}");
        assert!(message.contains(&format!("step `{step}`")), "{message}");
    };
    refused(json!({"1bad": 1}), "1bad", "nb");
    refused(json!({"class": 1}), "class", "nb");
    refused(json!({"a b": 1}), "a b", "nb");
    assert!(server.runs().is_empty(), "nothing was queued");
    let ok = json!({"project": "proj", "parameters": {"façade": 2, "label": "a 'quoted' value"}});
    let (code, v) = server.post_json("/api/runs", &ok.to_string());
    assert_eq!(code, 201, "{v}");
    let first = v["id"].as_str().unwrap().to_string();

    // The second step becomes a bash notebook.
    std::fs::write(dir.join("sh.ipynb"), notebook("bash")).unwrap();
    // A Python identifier, not a bash one; a value bash cannot hold.
    refused(json!({"façade": 1}), "façade", "shell");
    refused(json!({"config": {"a": 1}}), "config", "shell");
    let (code, v) = server.post_json(&format!("/api/runs/{first}/rerun"), "{}");
    assert_eq!(code, 400, "a re-run the notebooks can no longer take: {v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("`façade`"),
        "{v}"
    );
    assert_eq!(server.runs().len(), 1, "only the first run was queued");
}

/// Warm kernels vanished while the server sat idle: a kernel's parent-death signal fires when
/// the *thread* that forked it exits, and the runtime retires threads (a notebook save runs
/// in `block_in_place`; idle blocking threads exit after 10 s). Kernels now fork from a
/// thread that lives as long as the server, and a pooled kernel that dies is replaced.
#[test]
fn idle_warm_kernels_survive_and_a_killed_one_is_replaced() {
    let sb = Sandbox::new();
    let dir = project(
        &sb,
        SEED,
        &["import os\nprint(os.environ.get('NBPIPE_POOLED_KERNEL'), os.getpid())"],
    );
    // Cold pooled kernels: nbpipe forks them itself (forked-from-zygote kernels are the
    // zygote's children, watched by pidfd, and their /proc environ is the zygote's).
    let server = Server::start(
        &sb,
        &dir,
        &["--no-inbox", "--warm-kernels", "1", "--no-fork-server"],
    );
    let pooled = || -> Vec<i32> {
        sb.processes_left()
            .into_iter()
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/environ"))
                    .map(|env| {
                        env.split(|b| *b == 0)
                            .any(|kv| kv == b"NBPIPE_POOLED_KERNEL=1")
                    })
                    .unwrap_or(false)
            })
            .collect()
    };
    let wait_pooled = |what: &str, pred: &dyn Fn(&[i32]) -> bool| -> Vec<i32> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let now = pooled();
            if pred(&now) {
                return now;
            }
            assert!(Instant::now() < deadline, "{what}: {now:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_pooled("a pooled kernel", &|p| p.len() == 1);
    // A run takes it (its notebook saves run on retired-able threads) and a new one is warmed.
    let record = json!({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "incoming-bucket"}, "object": {"key": "data/1.csv", "eTag": "a"}}}]});
    server.post_json("/hooks/s3", &record.to_string());
    let runs = server.wait_runs("the run", |r| done(r, 1));
    assert_eq!(runs[0]["status"], "succeeded", "{runs:#?}");
    let idle = wait_pooled("a replacement", &|p| p.len() == 1);
    // Idle past the runtime's 10 s thread keep-alive: the pooled kernel must still be there.
    std::thread::sleep(Duration::from_secs(13));
    assert_eq!(pooled(), idle, "the idle warm kernel vanished");
    // Killed while idle: noticed and replaced, without any run asking for a kernel.
    let _ = Command::new("kill")
        .arg("-9")
        .arg(idle[0].to_string())
        .status();
    let replaced = wait_pooled("a replacement for the killed kernel", &|p| {
        p.len() == 1 && p[0] != idle[0]
    });
    // And a run gets it.
    let record = json!({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "incoming-bucket"}, "object": {"key": "data/2.csv", "eTag": "b"}}}]});
    server.post_json("/hooks/s3", &record.to_string());
    let runs = server.wait_runs("the second run", |r| done(r, 2));
    let second = runs
        .iter()
        .find(|r| r["trigger"]["key"] == "data/2.csv")
        .unwrap();
    assert_eq!(second["status"], "succeeded", "{second:#}");
    let line = printed(&dir, second["id"].as_str().unwrap());
    assert_eq!(
        line.trim(),
        format!("1 {}", replaced[0]),
        "served by the replacement"
    );
    let mut server = server;
    server.signal("-TERM");
    assert!(server.child.wait().unwrap().success());
    sb.assert_no_processes_left();
}
