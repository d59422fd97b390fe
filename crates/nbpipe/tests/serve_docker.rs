//! `nbpipe serve` with the Docker executor, against real components: Debian's `dockerd`
//! (`--iptables=false --bridge=none`, containers on the host network), Debian's
//! `docker-registry` on 127.0.0.1, a debootstrapped bookworm base image, and SeaweedFS for
//! the trigger's bucket and the runs' outputs. The server builds each project's image,
//! pushes it to the registry, has the engine pull it by digest and runs one container per
//! attempt; these tests check what a run records, the container log, a `kill -9` of the
//! server mid-run (the container is followed again, never started twice), cancel, a memory
//! limit, and that no container is left.

mod common;
mod image_support;
#[path = "../../nbpipe-store/tests/common/seaweed.rs"]
mod seaweed;
mod serve_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use image_support::{binaries, Containers};
use serde_json::{json, Value};
use serve_support::*;

/// A project served in containers: its image goes to the test registry, its outputs to
/// SeaweedFS. Its notebook prints the trigger, the OS it runs on and `six`'s version (from
/// its requirements), sleeps `SLEEP` seconds when the key says `slow`, and allocates
/// `ALLOC_MB` megabytes when asked.
fn container_project(dir: &Path, c: &Containers, bucket: &str, extra: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let nb = json!({
        "cells": [
            tagged(
                "trigger_key = None\ntrigger_bucket = None\ntrigger_region = None\nrun_id = None\nalloc_mb = 0",
                "parameters",
            ),
            code("import six, time\nprint('key', trigger_key, 'bucket', trigger_bucket, 'region', trigger_region)\nprint('os', open('/etc/os-release').read().split('PRETTY_NAME=')[1].splitlines()[0])\nprint('six', six.__version__, 'run', run_id)"),
            code("if trigger_key and 'slow' in trigger_key:\n    for i in range(40):\n        time.sleep(0.5)\nprint('slept')"),
            code("if alloc_mb:\n    hog = b'x' * (alloc_mb * 1024 * 1024)\n    print('allocated', len(hog))"),
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5
    });
    std::fs::write(dir.join("nb.ipynb"), nb.to_string()).unwrap();
    std::fs::write(dir.join("requirements.txt"), "six==1.16.0\n").unwrap();
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    std::fs::write(
        dir.join("nbpipe.yaml"),
        format!(
            "name: {name}\nnotebooks: [nb.ipynb]\nS3TriggerBucket: incoming-bucket\n\
             S3TriggerKeyPrefix: data/\noutput: s3://{bucket}/{name}/{{run_id}}/\n\
             image:\n  name: {reg}/demo/{name}\n  base: {base}\n{extra}",
            reg = c.registry_addr,
            base = c.base,
        ),
    )
    .unwrap();
}

fn s3_env(weed: &seaweed::Seaweed) -> Vec<(String, String)> {
    vec![
        ("AWS_ENDPOINT_URL".into(), weed.endpoint()),
        ("AWS_ACCESS_KEY_ID".into(), "test".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
        ("AWS_REGION".into(), "us-east-1".into()),
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
    ]
}

fn server_env(c: &Containers, weed: &seaweed::Seaweed, slim: &Path) -> Vec<(String, String)> {
    let mut env = s3_env(weed);
    env.push(("DOCKER_HOST".into(), c.docker_host()));
    env.push(("NBPIPE_IMAGE_BINARY".into(), slim.display().to_string()));
    // `uv` installs the image's environment on the host.
    env.push((
        "PATH".into(),
        format!(
            "{}/.local/bin:{}",
            std::env::var("HOME").unwrap_or_default(),
            std::env::var("PATH").unwrap_or_default()
        ),
    ));
    env
}

fn start(sb: &Sandbox, projects: &[&Path], env: &[(String, String)]) -> Server {
    let first = projects[0];
    let mut args: Vec<String> = projects[1..]
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    args.extend(
        [
            "--lease",
            "3",
            "--no-inbox",
            "--warm-kernels",
            "0",
            "--drain-timeout",
            "2",
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start_with(sb, first, &args, env.iter().cloned())
}

/// The S3 notification of `key` landing in `incoming-bucket`.
fn landed(key: &str) -> String {
    let encoded: String = key
        .split('/')
        .map(|part| {
            part.bytes()
                .map(|b| match b {
                    b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_' => {
                        (b as char).to_string()
                    }
                    b' ' => "+".to_string(),
                    _ => format!("%{b:02X}"),
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("/");
    json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "awsRegion": "eu-west-3", "eventTime": "2026-12-03T10:00:00.000Z",
        "s3": {"bucket": {"name": "incoming-bucket"},
               "object": {"key": encoded, "size": 3, "eTag": format!("etag-{key}")}}
    }]})
    .to_string()
}

/// The run the object `key` started.
fn run_of(server: &Server, key: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(r) = server
            .runs()
            .into_iter()
            .find(|r| r["trigger"]["key"] == key)
        {
            return r;
        }
        assert!(Instant::now() < deadline, "no run for `{key}`");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// An object's text, read with `nbpipe cat` from SeaweedFS.
fn cat(weed: &seaweed::Seaweed, url: &str) -> String {
    let out = Command::new(image_support::under_test())
        .envs(s3_env(weed))
        .args(["cat", url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cat {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Everything a run's notebook printed (from the copy in SeaweedFS).
fn printed_s3(weed: &seaweed::Seaweed, project: &str, id: &str) -> String {
    let nb: Value = serde_json::from_str(&cat(
        weed,
        &format!("s3://{}/{project}/{id}/nb.ipynb", weed.bucket()),
    ))
    .unwrap();
    nb["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| stream(c, "stdout"))
        .collect()
}

fn containers_of(c: &Containers, run_id: &str) -> Vec<String> {
    let out = c.docker(&[
        "ps",
        "-a",
        "--format",
        "{{.Names}}",
        "--filter",
        &format!("label=nbpipe.run_id={run_id}"),
    ]);
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn project_dir(sb: &Sandbox, name: &str) -> PathBuf {
    sb.path(name)
}

#[test]
fn served_runs_execute_in_containers_and_survive_a_killed_server() {
    let Some(c) = Containers::start() else { return };
    let sb = Sandbox::new();
    let weed = seaweed::Seaweed::start();
    let (_, slim) = binaries(sb.dir.path());
    let dir = project_dir(&sb, "boxed");
    container_project(
        &dir,
        &c,
        weed.bucket(),
        "executor:\n  docker:\n    network: host\n    env: {TZ: UTC}\n    stop_grace: 20s\n",
    );
    let env = server_env(&c, &weed, &slim);
    let server = start(&sb, &[&dir], &env);

    // 1. An S3 event → a run in a container, from the image built and pushed for it.
    assert_eq!(
        server.post("/hooks/s3", &landed("data/a b+ç.csv"), true),
        202
    );
    let run = run_of(&server, "data/a b+ç.csv");
    let id = run["id"].as_str().unwrap().to_string();
    let done = wait_status(&server, &id, |s| s != "queued" && s != "running", 300);
    assert_eq!(
        done["status"],
        "succeeded",
        "{done:#}\nserver log:\n{}",
        std::fs::read_to_string(sb.path(&format!("serve-{}.log", server.port))).unwrap_or_default()
    );
    let out = printed_s3(&weed, "boxed", &id);
    assert!(
        out.contains("key data/a b+ç.csv bucket incoming-bucket region eu-west-3"),
        "{out}"
    );
    assert!(
        out.contains("os \"Debian GNU/Linux 12 (bookworm)\""),
        "{out}"
    );
    assert!(out.contains(&format!("six 1.16.0 run {id}")), "{out}");
    // The attempt names its container and the exact image it ran, pushed to the registry.
    let handle = &done["attempts_history"][0]["handle"];
    assert_eq!(handle["executor"], "docker", "{done:#}");
    assert_eq!(handle["id"], format!("nbpipe-{id}-1"));
    let image = handle["image"].as_str().unwrap();
    assert!(
        image.starts_with(&format!("{}/demo/boxed@sha256:", c.registry_addr)),
        "{image}"
    );
    let pulled = c.docker(&["image", "inspect", image, "--format", "{{.Id}}"]);
    assert!(pulled.status.success(), "the engine pulled {image}");
    // run.json in the output prefix is the run's record; the container log is kept next to it.
    let manifest: Value = serde_json::from_str(&cat(
        &weed,
        &format!("s3://{}/boxed/{id}/run.json", weed.bucket()),
    ))
    .unwrap();
    assert_eq!(manifest["status"], "succeeded");
    assert_eq!(
        manifest["environment"]["python"],
        "/opt/nbpipe/env/bin/python"
    );
    let log = server.get(&format!("/api/runs/{id}/log")).unwrap();
    assert_eq!(log["source"], "stored", "{log:#}");
    assert_eq!(log["executor"], "docker");
    let lines = log["lines"].as_array().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.as_str().unwrap().contains(&format!("Run {id}"))),
        "{log:#}"
    );
    let (code, _) = server.request("GET", &format!("/api/runs/{id}/log?lines=0"), &[], None);
    assert_eq!(code, 400);
    assert!(
        containers_of(&c, &id).is_empty(),
        "the container is removed"
    );

    // 2. `kill -9` of the server while a container runs: the restarted server follows the same
    //    container to its end; one attempt, one container, never a second.
    assert_eq!(
        server.post("/hooks/s3", &landed("data/slow-1.csv"), true),
        202
    );
    let slow = run_of(&server, "data/slow-1.csv")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    while containers_of(&c, &slow).is_empty() {
        assert!(Instant::now() < deadline, "no container for {slow}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The container is up and its run has started: now kill the server outright.
    wait_status(&server, &slow, |s| s == "running", 60);
    std::thread::sleep(Duration::from_secs(2));
    let mut server = server;
    server.signal("-9");
    let _ = server.child.wait();
    assert_eq!(
        containers_of(&c, &slow).len(),
        1,
        "the container outlives the server"
    );
    let server = start(&sb, &[&dir], &env);
    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let ended = loop {
        seen.extend(containers_of(&c, &slow));
        let r = server.get(&format!("/api/runs/{slow}")).unwrap_or_default();
        if ["succeeded", "failed", "cancelled"].contains(&r["status"].as_str().unwrap_or("")) {
            break r;
        }
        assert!(Instant::now() < deadline, "{slow} never ended: {r:#}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(ended["status"], "succeeded", "{ended:#}");
    assert_eq!(ended["attempts"], 1, "not started again: {ended:#}");
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        vec![format!("nbpipe-{slow}-1")],
        "one container, ever"
    );
    assert!(printed_s3(&weed, "boxed", &slow).contains("slept"));
    assert!(containers_of(&c, &slow).is_empty());

    // 3. Cancel: the container gets SIGTERM, the notebook is saved with the cancel.
    assert_eq!(
        server.post("/hooks/s3", &landed("data/slow-2.csv"), true),
        202
    );
    let cancelled = run_of(&server, "data/slow-2.csv")["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_status(&server, &cancelled, |s| s == "running", 120);
    // Wait until the sleeping cell runs (its notebook is in the bucket).
    wait_first_step_running(&server, &cancelled, 120);
    std::thread::sleep(Duration::from_secs(2));
    let (code, body) = server.post_json(&format!("/api/runs/{cancelled}/cancel"), "{}");
    assert_eq!(code, 200, "{body}");
    let asked = Instant::now();
    let r = wait_status(&server, &cancelled, |s| s != "running", 60);
    assert_eq!(r["status"], "cancelled", "{r:#}");
    assert!(
        asked.elapsed() < Duration::from_secs(20),
        "stopped by SIGTERM, not the 20 s SIGKILL: {:?}",
        asked.elapsed()
    );
    let m: Value = serde_json::from_str(&cat(
        &weed,
        &format!("s3://{}/boxed/{cancelled}/run.json", weed.bucket()),
    ))
    .unwrap();
    assert_eq!(m["status"], "cancelled", "{m:#}");
    assert!(!printed_s3(&weed, "boxed", &cancelled).contains("slept"));
    assert!(containers_of(&c, &cancelled).is_empty());

    // 4. A container killed from outside is the infrastructure's doing: the run is retried
    //    as interrupted (serve.interrupted_retries, default 1) and succeeds.
    assert_eq!(
        server.post("/hooks/s3", &landed("data/slow-3.csv"), true),
        202
    );
    let killed = run_of(&server, "data/slow-3.csv")["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_first_step_running(&server, &killed, 120);
    let out = c.docker(&["kill", &format!("nbpipe-{killed}-1")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = wait_status(&server, &killed, |s| s == "succeeded" || s == "failed", 180);
    assert_eq!(r["status"], "succeeded", "{r:#}");
    assert_eq!(r["attempts"], 2, "{r:#}");
    let history = r["attempts_history"].as_array().unwrap();
    assert_eq!(history[0]["outcome"], "interrupted", "{r:#}");
    assert!(
        history[0]["error"]
            .as_str()
            .unwrap()
            .contains("exit code 137"),
        "{r:#}"
    );
    assert_eq!(history[1]["handle"]["id"], format!("nbpipe-{killed}-2"));
    assert!(containers_of(&c, &killed).is_empty());

    // 5. A server told to stop drains: after --drain-timeout its running container is
    //    stopped like a cancel, and the server exits leaving no container.
    assert_eq!(
        server.post("/hooks/s3", &landed("data/slow-4.csv"), true),
        202
    );
    let drained = run_of(&server, "data/slow-4.csv")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    while containers_of(&c, &drained).is_empty() {
        assert!(Instant::now() < deadline, "no container for {drained}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut server = server;
    server.signal("-TERM");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = server.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not drain and exit"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(status.success(), "{status}");
    assert!(
        containers_of(&c, &drained).is_empty(),
        "drained: no container left"
    );
    assert_eq!(c.leftover_containers(), "", "no container left");
}

#[test]
fn a_container_over_its_memory_limit_fails_the_run_saying_so() {
    let Some(c) = Containers::start() else { return };
    let sb = Sandbox::new();
    let weed = seaweed::Seaweed::start();
    let (_, slim) = binaries(sb.dir.path());
    let dir = project_dir(&sb, "small");
    container_project(
        &dir,
        &c,
        weed.bucket(),
        "executor:\n  docker:\n    network: host\n    memory: 64m\n",
    );
    // A second project, to check the limit is the project's own.
    let plain = project_dir(&sb, "plain");
    container_project(
        &plain,
        &c,
        weed.bucket(),
        "executor:\n  docker:\n    network: host\n",
    );
    let env = server_env(&c, &weed, &slim);
    let server = start(&sb, &[&dir, &plain], &env);
    let (code, body) = server.post_json(
        "/api/runs",
        &json!({"project": "small", "parameters": {"alloc_mb": 500}}).to_string(),
    );
    assert_eq!(code, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let (code, body) = server.post_json("/api/runs", &json!({"project": "plain"}).to_string());
    assert_eq!(code, 201, "{body}");
    let plain_id = body["id"].as_str().unwrap().to_string();

    let r = wait_status(&server, &id, |s| s != "queued" && s != "running", 300);
    assert_eq!(r["status"], "failed", "{r:#}");
    let error = r["error"].as_str().unwrap_or_default();
    assert!(error.contains("out of memory"), "{error}");
    assert!(error.contains("64 MiB"), "{error}");
    assert_eq!(
        r["attempts"], 1,
        "running out of memory is not retried: {r:#}"
    );
    let p = wait_status(&server, &plain_id, |s| s != "queued" && s != "running", 300);
    assert_eq!(p["status"], "succeeded", "{p:#}");
    assert_eq!(p["attempts_history"][0]["handle"]["executor"], "docker");
    assert!(printed_s3(&weed, "plain", &plain_id).contains("bookworm"));
    assert_eq!(c.leftover_containers(), "", "no container left");
}

#[test]
fn serve_executor_local_runs_a_container_project_in_process() {
    // No engine is needed: `--executor local` overrides the project's `executor: docker`.
    let sb = Sandbox::new();
    let dir = project(
        &sb,
        &format!("{SEED}executor:\n  docker:\n    memory: 1g\n"),
        &["print('in process', trigger_key)"],
    );
    let server = Server::start(&sb, &dir, &["--no-inbox", "--executor", "local"]);
    let (code, body) = server.post_json("/api/runs", &json!({"project": "proj"}).to_string());
    assert_eq!(code, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let r = wait_status(&server, &id, |s| s != "queued" && s != "running", 120);
    assert_eq!(r["status"], "succeeded", "{r:#}");
    assert_eq!(r["attempts_history"][0]["handle"]["executor"], "local");
    assert_eq!(printed(&dir, &id), "in process None\n");
    let log = server.get(&format!("/api/runs/{id}/log")).unwrap();
    assert_eq!(log["source"], "none", "{log:#}");
    assert_eq!(log["lines"], json!([]));
    let (code, _) = server.request("GET", "/api/runs/nope/log", &[], None);
    assert_eq!(code, 404);
    // An unknown executor is refused before the server starts.
    let out = sb
        .nbpipe()
        .args(["serve", dir.to_str().unwrap(), "--executor", "ecs"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("possible values: local, docker"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `secrets:` with the Docker executor: the server resolves them (its environment, the
/// project's file) and passes them to the container, whose run masks them; the file holding
/// one is not in the image; the log lines the server keeps (`container.log`) and shows
/// (`/api/runs/{id}/log`) are masked even when the notebook writes a value straight to the
/// container's output.
#[test]
fn secrets_reach_the_container_and_no_record_or_log_shows_them() {
    let Some(c) = Containers::start() else { return };
    let sb = Sandbox::new();
    let weed = seaweed::Seaweed::start();
    let (_, slim) = binaries(sb.dir.path());
    const DB: &str = "dock\"er'pa\nss✓wörd-value";
    const KEY: &str = "key-file<&>'\"ü✓ content";
    let dir = project_dir(&sb, "secretive");
    container_project(
        &dir,
        &c,
        weed.bucket(),
        "executor:\n  docker:\n    network: host\nsecrets:\n  DB_PASSWORD: {env: NBP_DOCKER_DB}\n  \
         KEYFILE: {file: key.txt}\n",
    );
    std::fs::write(dir.join("key.txt"), format!("{KEY}\n")).unwrap();
    let nb = json!({
        "cells": [
            tagged("trigger_key = None", "parameters"),
            code("import os, hashlib\nv, k = os.environ['DB_PASSWORD'], os.environ['KEYFILE']\n\
                  print('hashes', hashlib.sha256(v.encode()).hexdigest(), hashlib.sha256(k.encode()).hexdigest())\n\
                  print('in image', os.path.exists('/project/key.txt'))\n\
                  print('db', v)\nprint('repr', repr(k))\n\
                  os.system('printf \"raw %s\\\\n\" \"$KEYFILE\" > /proc/1/fd/1')"),
            code("raise RuntimeError('failed with ' + k)"),
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5
    });
    std::fs::write(dir.join("nb.ipynb"), nb.to_string()).unwrap();
    let mut env = server_env(&c, &weed, &slim);
    env.push(("NBP_DOCKER_DB".into(), DB.into()));
    let server = start(&sb, &[&dir], &env);
    let (code, body) = server.post_json("/api/runs", &json!({"project": "secretive"}).to_string());
    assert_eq!(code, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let r = wait_status(&server, &id, |s| s != "queued" && s != "running", 300);
    let server_log =
        std::fs::read_to_string(sb.path(&format!("serve-{}.log", server.port))).unwrap_or_default();
    assert_eq!(r["status"], "failed", "{r:#}\n{server_log}");
    assert_eq!(r["attempts_history"][0]["handle"]["executor"], "docker");
    let sha = |v: &str| {
        let out = Command::new(sb.python())
            .args([
                "-c",
                "import sys, hashlib; print(hashlib.sha256(sys.argv[1].encode()).hexdigest())",
                v,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let out = printed_s3(&weed, "secretive", &id);
    assert!(
        out.contains(&format!("hashes {} {}", sha(DB), sha(KEY))),
        "the container's kernel has the values: {out}"
    );
    assert!(out.contains("in image False"), "{out}");
    assert!(
        out.contains("db ***\n") && out.contains("repr '***'"),
        "{out}"
    );
    let log = cat(
        &weed,
        &format!("s3://{}/secretive/{id}/container.log", weed.bucket()),
    );
    assert!(
        log.contains("raw ***"),
        "the value written to the container's output: {log}"
    );
    let api_log = fetch_text(&server, &format!("/api/runs/{id}/log"));
    let detail = fetch_text(&server, &format!("/api/runs/{id}"));
    assert!(detail.contains("failed with ***"), "{detail}");
    let notebook = cat(
        &weed,
        &format!("s3://{}/secretive/{id}/nb.ipynb", weed.bucket()),
    );
    let manifest = cat(
        &weed,
        &format!("s3://{}/secretive/{id}/run.json", weed.bucket()),
    );
    let forms: Vec<String> = [DB, KEY]
        .iter()
        .flat_map(|v| {
            let mut f: Vec<String> = v.lines().map(str::to_string).collect();
            f.push(v.to_string());
            let json: Vec<String> = f
                .iter()
                .map(|x| {
                    serde_json::to_string(x)
                        .unwrap()
                        .trim_matches('"')
                        .to_string()
                })
                .collect();
            f.extend(json);
            f
        })
        .collect();
    for (what, text) in [
        ("container.log", &log),
        ("the log API", &api_log),
        ("the run API", &detail),
        ("the notebook", &notebook),
        ("run.json", &manifest),
        ("the server's log", &server_log),
    ] {
        for f in &forms {
            assert!(!text.contains(f.as_str()), "{what} contains {f:?}:\n{text}");
        }
    }
    assert_eq!(c.leftover_containers(), "", "no container left");
}

/// `GET path` with the token, as text.
fn fetch_text(server: &Server, path: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "-H"])
        .arg(format!("Authorization: Bearer {TOKEN}"))
        .arg(format!("http://127.0.0.1:{}{path}", server.port))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}
