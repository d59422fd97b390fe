//! Shared by the `nbpipe serve` end-to-end test binaries (`serve.rs` on SQLite,
//! `serve_postgres.rs` on PostgreSQL): a [`Server`] process on a free `127.0.0.1` port with
//! its JSON API, a one-notebook project, and reading what a run's notebook printed.
//! Included as `mod serve_support;` after `mod common;` (it uses the sandbox harness).
#![allow(dead_code)] // each test binary uses a part

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;

/// The API token every test server requires.
pub const TOKEN: &str = "test-token-123";

/// A free TCP port on `127.0.0.1`.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `nbpipe serve`, killed (SIGKILL) on drop.
pub struct Server {
    pub child: Child,
    pub port: u16,
}

impl Server {
    /// `nbpipe serve project` on a free loopback port with the test token and a 3 s lease,
    /// plus `extra` arguments; returns once `/api/health` answers.
    pub fn start(sb: &Sandbox, project: &Path, extra: &[&str]) -> Server {
        let args: Vec<&str> = ["--lease", "3"].iter().chain(extra).copied().collect();
        Server::start_with(sb, project, &args, std::iter::empty::<(&str, &str)>())
    }

    /// `nbpipe serve project` on a free loopback port with the test token, exactly these
    /// `args` and extra environment variables; returns once `/api/health` answers.
    pub fn start_with<K, V>(
        sb: &Sandbox,
        project: &Path,
        args: &[&str],
        envs: impl IntoIterator<Item = (K, V)>,
    ) -> Server
    where
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let port = free_port();
        // The server's log, for a failing test's reader: `<sandbox>/serve-<port>.log`.
        let log = std::fs::File::create(sb.path(&format!("serve-{port}.log"))).unwrap();
        let mut cmd = sb.nbpipe();
        cmd.env("NBPIPE_HOME", shared_home())
            .env("NBPIPE_TOKEN", TOKEN)
            .envs(envs)
            .arg("serve")
            .arg(project)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .stdout(Stdio::null())
            .stderr(log);
        let child = cmd.spawn().unwrap();
        let s = Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while s.get("/api/health").is_none() {
            assert!(Instant::now() < deadline, "server did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        s
    }

    pub fn get(&self, path: &str) -> Option<Value> {
        let out = Command::new("curl")
            .args([
                "-sf",
                "--max-time",
                "5",
                &format!("http://127.0.0.1:{}{path}", self.port),
            ])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    /// POST with or without the token; returns the HTTP status.
    pub fn post(&self, path: &str, body: &str, token: bool) -> u16 {
        let mut c = Command::new("curl");
        c.args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
            "-X",
            "POST",
        ])
        .args([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
        ]);
        if token {
            c.args(["-H", &format!("Authorization: Bearer {TOKEN}")]);
        }
        let out = c
            .arg(format!("http://127.0.0.1:{}{path}", self.port))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }

    /// POST with the token; returns the HTTP status and the JSON body.
    pub fn post_json(&self, path: &str, body: &str) -> (u16, Value) {
        let auth = format!("Authorization: Bearer {TOKEN}");
        self.request("POST", path, &[&auth], Some(body))
    }

    /// Any request with these extra headers (and a JSON body); returns the status and the
    /// body as JSON (`Null` when it is not JSON).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[&str],
        body: Option<&str>,
    ) -> (u16, Value) {
        let mut c = Command::new("curl");
        c.args([
            "-s",
            "-w",
            "\n%{http_code}",
            "--max-time",
            "10",
            "-X",
            method,
        ]);
        for h in headers {
            c.args(["-H", h]);
        }
        if let Some(body) = body {
            c.args([
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                body,
            ]);
        }
        let out = c
            .arg(format!("http://127.0.0.1:{}{path}", self.port))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let (json, code) = text.trim_end().rsplit_once('\n').unwrap_or(("", &text));
        (
            code.trim().parse().unwrap_or(0),
            serde_json::from_str(json).unwrap_or(Value::Null),
        )
    }

    /// The Prometheus text of `/metrics`.
    pub fn metrics(&self) -> String {
        let out = Command::new("curl")
            .args(["-sf", "--max-time", "5"])
            .arg(format!("http://127.0.0.1:{}/metrics", self.port))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn runs(&self) -> Vec<Value> {
        self.get("/api/runs?limit=1000")
            .and_then(|v| v["runs"].as_array().cloned())
            .unwrap_or_default()
    }

    /// Wait until `pred` holds for the run list.
    pub fn wait_runs(&self, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let runs = self.runs();
            if pred(&runs) {
                return runs;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {runs:#?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run `id` once its status satisfies `pred` (at most `secs` seconds).
pub fn wait_status(server: &Server, id: &str, pred: impl Fn(&str) -> bool, secs: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(r) = server.get(&format!("/api/runs/{id}")) {
            if pred(r["status"].as_str().unwrap_or_default()) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "run {id} stayed {}: {r:#}",
                r["status"]
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Run `id` once its first step is running (at most `secs` seconds).
pub fn wait_first_step_running(server: &Server, id: &str, secs: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let r = server.get(&format!("/api/runs/{id}")).unwrap_or_default();
        if r["steps"][0]["status"] == "running" {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "run {id}'s first step never ran: {r:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A project folder `proj` in the sandbox: `nbpipe.yaml` from `yaml` and `nb.ipynb`, whose
/// parameters cell declares `trigger_key` and `trigger_uri`, followed by `cells`.
pub fn project(sb: &Sandbox, yaml: &str, cells: &[&str]) -> PathBuf {
    let dir = sb.path("proj");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("nbpipe.yaml"), yaml).unwrap();
    let mut all = vec![tagged(
        "trigger_key = None\ntrigger_uri = None\ntrigger_bucket = None\ntrigger_region = None\ntrigger_path = None",
        "parameters",
    )];
    all.extend(cells.iter().map(|s| code(s)));
    let nb = json!({
        "cells": all,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5
    });
    std::fs::write(dir.join("nb.ipynb"), nb.to_string()).unwrap();
    dir
}

/// A project triggered by objects under `s3://incoming-bucket/data/`.
pub const SEED: &str =
    "notebooks:\n  - nb.ipynb\nS3TriggerBucket: incoming-bucket\nS3TriggerKeyPrefix: data/\n";

/// All `n` runs exist and have finished (succeeded or failed).
pub fn done(runs: &[Value], n: usize) -> bool {
    runs.len() == n
        && runs
            .iter()
            .all(|r| r["status"] == "succeeded" || r["status"] == "failed")
}

/// Everything run `id`'s notebook (`<project>/runs/<id>/nb.ipynb`) printed on stdout.
pub fn printed(project: &Path, id: &str) -> String {
    let path = project.join("runs").join(id).join("nb.ipynb");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("run notebook {}: {e}", path.display()));
    let nb: Value = serde_json::from_str(&text).unwrap();
    nb["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| stream(c, "stdout"))
        .collect()
}
