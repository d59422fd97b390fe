//! Notifications (`notify:`) end to end: real `nbpipe serve` and `nbpipe run` processes with
//! real kernels, an HTTP receiver on 127.0.0.1 recording what it gets (Slack and the signed
//! webhook), and a real SMTP server (aiosmtpd from the test environment) requiring STARTTLS
//! with a certificate signed by a CA made here, and AUTH. The PostgreSQL test is skipped
//! (and says so) without PostgreSQL unless `NBPIPE_TEST_POSTGRES=1`.

mod common;
#[path = "../../nbpipe-server/tests/common/postgres.rs"]
mod postgres;
mod serve_support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use serve_support::*;

const HOOK_KEY: &str = "whsec-test-4f9a";
const SMTP_LOGIN: &str = "nbpipe";
const SMTP_PASSWORD: &str = "s3cret-pw";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Req {
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Req {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// An HTTP receiver on `127.0.0.1:port` answering `200` to every POST, recording them.
struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<Req>>>,
}

impl Receiver {
    fn start(port: u16) -> Receiver {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let sink = sink.clone();
                std::thread::spawn(move || {
                    let _ = serve_one(stream, &sink);
                });
            }
        });
        Receiver { port, got }
    }

    fn requests(&self) -> Vec<Req> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `n` requests arrived (at most `secs`).
    fn wait_for(&self, n: usize, secs: u64) -> Vec<Req> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let got = self.requests();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} requests, got {}: {got:#?}",
                got.len()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

fn serve_one(stream: std::net::TcpStream, sink: &Mutex<Vec<Req>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut stream = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let path = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        sink.lock().unwrap().push(Req {
            path,
            headers,
            body,
        });
        stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")?;
    }
}

/// A CA and a certificate for 127.0.0.1 signed by it, made with the `openssl` CLI.
fn certificates(sb: &Sandbox) -> (PathBuf, PathBuf, PathBuf) {
    let d = sb.path("tls");
    std::fs::create_dir_all(&d).unwrap();
    let sh = |args: &str| {
        let out = Command::new("sh")
            .arg("-c")
            .arg(args)
            .current_dir(&d)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args}: {}", stderr(&out));
    };
    sh(
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 \
        -subj /CN=nbpipe-test-ca -addext basicConstraints=critical,CA:TRUE \
        -addext keyUsage=critical,keyCertSign,cRLSign",
    );
    sh("openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1");
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         extendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    sh(
        "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
        -out server.pem -days 2 -extfile ext.cnf",
    );
    (d.join("ca.pem"), d.join("server.pem"), d.join("server.key"))
}

/// aiosmtpd on a free port, STARTTLS and AUTH required; killed on drop.
struct Smtp {
    child: Child,
    port: u16,
    maildir: PathBuf,
}

impl Smtp {
    fn start(sb: &Sandbox, cert: &Path, key: &Path) -> Smtp {
        let port = free_port();
        let maildir = sb.path("mail");
        std::fs::create_dir_all(&maildir).unwrap();
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/notify_support/smtp_server.py");
        let mut child = Command::new(sb.python())
            .arg(script)
            .arg(port.to_string())
            .arg(cert)
            .arg(key)
            .arg(&maildir)
            .args([SMTP_LOGIN, SMTP_PASSWORD])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(sb.path("smtp.log")).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line.trim(),
            "ready",
            "smtp server: {}",
            std::fs::read_to_string(sb.path("smtp.log")).unwrap_or_default()
        );
        Smtp {
            child,
            port,
            maildir,
        }
    }

    fn mails(&self) -> Vec<Value> {
        let mut names: Vec<u32> = std::fs::read_dir(&self.maildir)
            .unwrap()
            .filter_map(|e| {
                e.ok()?
                    .file_name()
                    .to_str()?
                    .strip_suffix(".json")?
                    .parse()
                    .ok()
            })
            .collect();
        names.sort();
        names
            .iter()
            .map(|n| {
                let text = std::fs::read_to_string(self.maildir.join(format!("{n}.json"))).unwrap();
                serde_json::from_str(&text).unwrap()
            })
            .collect()
    }

    fn wait_for(&self, n: usize, secs: u64) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let got = self.mails();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} mails, got {got:#?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A project `proj` whose one notebook raises `ValueError: bad row` when `fail` is true.
fn failing_project(sb: &Sandbox, notify: &str) -> PathBuf {
    let dir = sb.path("proj");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("nbpipe.yaml"),
        format!("notebooks:\n  - path: nb.ipynb\n    id: clean\nnotify:\n{notify}"),
    )
    .unwrap();
    let nb = json!({
        "cells": [
            tagged("fail = False", "parameters"),
            code("print('checking rows')"),
            code("if fail:\n    raise ValueError('bad row')"),
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5
    });
    std::fs::write(dir.join("nb.ipynb"), nb.to_string()).unwrap();
    dir
}

/// Queues a run with `fail` and returns its id once it finished.
fn run_once(server: &Server, fail: bool) -> Value {
    let (code, body) = server.post_json(
        "/api/runs",
        &json!({"project": "proj", "parameters": {"fail": fail}}).to_string(),
    );
    assert_eq!(code, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    wait_status(server, &id, |s| s == "succeeded" || s == "failed", 120)
}

/// The run's notifications once `pred` holds for them (at most `secs`).
fn wait_notifications(
    server: &Server,
    id: &str,
    secs: u64,
    pred: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let detail = server.get(&format!("/api/runs/{id}")).unwrap_or_default();
        let n = detail["notifications"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if pred(&n) {
            return n;
        }
        assert!(Instant::now() < deadline, "notifications of {id}: {n:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `sha256=` HMAC-SHA256 of `"{timestamp}.{body}"`, computed by `openssl`.
fn openssl_signature(key: &str, timestamp: &str, body: &[u8]) -> String {
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", key, "-r"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(timestamp.as_bytes()).unwrap();
        stdin.write_all(b".").unwrap();
        stdin.write_all(body).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    format!("sha256={}", &String::from_utf8(out.stdout).unwrap()[..64])
}

#[test]
fn a_failure_then_a_recovery_reach_slack_the_signed_webhook_and_email() {
    let sb = Sandbox::new();
    let (ca, cert, key) = certificates(&sb);
    let smtp = Smtp::start(&sb, &cert, &key);
    let http = Receiver::start(free_port());
    let notify = format!(
        "  - slack: {slack}\n\
         \x20 - webhook: {{url: '{hook}', secret_env: NBPIPE_TEST_HOOK_KEY}}\n\
         \x20 - email:\n      to: [ops@example.org]\n      from: nbpipe@example.org\n\
         \x20     smtp: {{host: 127.0.0.1, port: {port}, username: {SMTP_LOGIN}, \
         password_env: NBPIPE_TEST_SMTP_PASSWORD, ca_file: '{ca}'}}\n",
        slack = http.url("/slack"),
        hook = http.url("/hook"),
        port = smtp.port,
        ca = ca.display(),
    );
    let dir = failing_project(&sb, &notify);
    let server = Server::start_with(
        &sb,
        &dir,
        &[
            "--lease",
            "3",
            "--public-url",
            "https://nbpipe.example.test/",
        ],
        [
            ("NBPIPE_TEST_HOOK_KEY", HOOK_KEY),
            ("NBPIPE_TEST_SMTP_PASSWORD", SMTP_PASSWORD),
        ],
    );

    // A failing run: one message per target naming project, run, step, cell, error, link.
    let run = run_once(&server, true);
    assert_eq!(run["status"], "failed");
    let id = run["id"].as_str().unwrap().to_string();
    let report = format!("https://nbpipe.example.test/runs/{id}");
    let got = http.wait_for(2, 30);
    let slack = got
        .iter()
        .find(|r| r.path == "/slack")
        .expect("slack message");
    let text = slack.json()["text"].as_str().unwrap().to_string();
    for needle in [
        &format!("proj: run {id} failed"),
        "Step: clean (nb.ipynb)",
        // In the output notebook, after the injected-parameters cell.
        "Cell: 3 (execution count 4)",
        "Error: ValueError: bad row",
        &format!("Report: {report}"),
    ] {
        assert!(text.contains(needle), "{needle:?} not in Slack text {text}");
    }
    let blocks = slack.json()["blocks"].as_array().unwrap().clone();
    assert!(
        blocks
            .iter()
            .any(|b| b.to_string().contains(&format!("<{report}|"))),
        "{blocks:#?}"
    );

    let hook = got
        .iter()
        .find(|r| r.path == "/hook")
        .expect("webhook message");
    let ts = &hook.headers["x-nbpipe-timestamp"];
    let now = chrono::Utc::now().timestamp();
    assert!(
        (now - ts.parse::<i64>().unwrap()).abs() < 120,
        "timestamp {ts}"
    );
    assert_eq!(
        hook.headers["x-nbpipe-signature"],
        openssl_signature(HOOK_KEY, ts, &hook.body),
        "the signature covers the timestamp and the raw body"
    );
    assert_ne!(
        hook.headers["x-nbpipe-signature"],
        openssl_signature("another key", ts, &hook.body)
    );
    let body = hook.json();
    assert_eq!(body["event"], "failure");
    assert_eq!(body["project"], "proj");
    assert_eq!(body["run_id"], id.as_str());
    assert_eq!(body["status"], "failed");
    assert_eq!(body["step"], "clean");
    assert_eq!(body["cell"], json!({"index": 3, "execution_count": 4}));
    assert_eq!(body["error"]["ename"], "ValueError");
    assert_eq!(body["error"]["evalue"], "bad row");
    assert_eq!(body["report_url"], report.as_str());
    assert_eq!(body["attempt"], 1);
    assert!(body["duration"].as_f64().is_some() && body["started"].is_string());

    let mails = smtp.wait_for(1, 30);
    let mail = &mails[0];
    assert_eq!(mail["tls"], true, "STARTTLS before the message");
    assert_eq!(mail["authenticated"], true);
    assert_eq!(
        mail["login"], SMTP_LOGIN,
        "AUTH with the password from the environment"
    );
    assert_eq!(mail["rcpt_tos"], json!(["ops@example.org"]));
    let subject = mail["subject"].as_str().unwrap();
    assert!(
        subject.contains(&format!("proj: run {id} failed"))
            && subject.contains("ValueError in clean"),
        "{subject}"
    );
    let text = mail["text"].as_str().unwrap();
    for needle in [
        "Step: clean",
        "Cell: 3",
        "Error: ValueError: bad row",
        &report,
    ] {
        assert!(text.contains(needle), "{needle:?} not in email {text}");
    }
    assert!(mail["html"]
        .as_str()
        .unwrap()
        .contains(&format!("href=\"{report}\"")));

    // The run shows its deliveries.
    let n = wait_notifications(&server, &id, 30, |n| {
        n.len() == 3 && n.iter().all(|d| d["status"] == "delivered")
    });
    let kinds: Vec<&str> = n.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    for k in ["slack", "webhook", "email"] {
        assert!(kinds.contains(&k), "{n:#?}");
    }
    assert!(n
        .iter()
        .all(|d| d["event"] == "failure" && d["attempts"] == 1));
    let page = Command::new("curl")
        .args([
            "-sf",
            &format!("http://127.0.0.1:{}/runs/{id}", server.port),
        ])
        .output()
        .unwrap();
    let page = String::from_utf8_lossy(&page.stdout);
    assert!(
        page.contains("id=\"notifications\"") && page.contains("delivered"),
        "{page}"
    );

    // The next success is a recovery, told to every target.
    let ok = run_once(&server, false);
    assert_eq!(ok["status"], "succeeded");
    let ok_id = ok["id"].as_str().unwrap().to_string();
    let got = http.wait_for(4, 30);
    let recovery: Vec<&Req> = got[2..].iter().collect();
    assert!(recovery.iter().any(|r| r.path == "/hook"
        && r.json()["event"] == "recovery"
        && r.json()["run_id"] == ok_id.as_str()
        && r.json()["failures_before"] == 1));
    assert!(recovery.iter().any(|r| r.path == "/slack"
        && r.json()["text"]
            .as_str()
            .unwrap()
            .contains(&format!("proj: recovered, run {ok_id} succeeded"))));
    let mails = smtp.wait_for(2, 30);
    assert!(
        mails[1]["subject"].as_str().unwrap().contains("recovered"),
        "{:#}",
        mails[1]
    );

    // A success after a success says nothing to `on: [failure, recovery]` targets.
    let again = run_once(&server, false);
    assert_eq!(again["status"], "succeeded");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(http.requests().len(), 4);
    assert_eq!(smtp.mails().len(), 2);
    let detail = server
        .get(&format!("/api/runs/{}", again["id"].as_str().unwrap()))
        .unwrap();
    assert_eq!(detail["notifications"], json!([]));
}

#[test]
fn a_receiver_that_is_down_gets_the_message_once_it_is_back_and_the_run_is_unaffected() {
    let sb = Sandbox::new();
    let port = free_port(); // nothing listens here yet
    let notify = format!(
        "  - webhook: {{url: 'http://127.0.0.1:{port}/hook', secret_env: NBPIPE_TEST_HOOK_KEY}}\n"
    );
    let dir = failing_project(&sb, &notify);
    let server = Server::start_with(
        &sb,
        &dir,
        &["--lease", "3"],
        [("NBPIPE_TEST_HOOK_KEY", HOOK_KEY)],
    );
    let started = Instant::now();
    let run = run_once(&server, true);
    let took = started.elapsed();
    assert_eq!(run["status"], "failed", "the run's outcome is its own");
    assert!(took < Duration::from_secs(60), "the run took {took:?}");
    let id = run["id"].as_str().unwrap().to_string();
    // Refused, recorded, retried later.
    let n = wait_notifications(&server, &id, 30, |n| {
        n.len() == 1 && n[0]["attempts"].as_u64() >= Some(2)
    });
    assert_eq!(n[0]["status"], "pending", "{n:#?}");
    assert!(
        n[0]["last_error"].as_str().unwrap_or_default().len() > 3,
        "{n:#?}"
    );
    assert!(n[0]["next_at"].is_string(), "{n:#?}");
    assert!(
        server
            .metrics()
            .contains("nbpipe_notifications{status=\"pending\"} 1\n"),
        "{}",
        server.metrics()
    );

    // The receiver comes up: the message arrives, once, and the delivery says so.
    let receiver = Receiver::start(port);
    let got = receiver.wait_for(1, 60);
    assert_eq!(got[0].json()["run_id"], id.as_str());
    let n = wait_notifications(&server, &id, 30, |n| n[0]["status"] == "delivered");
    assert!(n[0]["attempts"].as_u64().unwrap() >= 3, "{n:#?}");
    assert!(n[0]["delivered_at"].is_string());
    let detail = server.get(&format!("/api/runs/{id}")).unwrap();
    assert_eq!(detail["status"], "failed");
    let metrics = server.metrics();
    assert!(
        metrics.contains("nbpipe_notifications{status=\"delivered\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("nbpipe_notifications{status=\"pending\"} 0\n"),
        "{metrics}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(receiver.requests().len(), 1, "delivered once");
}

#[test]
fn repeated_failures_are_rate_limited_and_summed_up_in_a_digest() {
    let sb = Sandbox::new();
    let http = Receiver::start(free_port());
    let notify = format!(
        "  - webhook: '{}'\n    rate_limit: 25s\n",
        http.url("/hook")
    );
    let dir = failing_project(&sb, &notify);
    let server = Server::start(&sb, &dir, &[]);
    let first_done = Instant::now();
    let mut ids = Vec::new();
    for _ in 0..5 {
        let (code, body) = server.post_json(
            "/api/runs",
            &json!({"project": "proj", "parameters": {"fail": true}}).to_string(),
        );
        assert_eq!(code, 201, "{body}");
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    server.wait_runs("5 failed runs", |runs| done(runs, 5));
    let all_failed = first_done.elapsed();
    assert!(
        all_failed < Duration::from_secs(25),
        "the 5 runs took {all_failed:?}, longer than the rate-limit window"
    );
    std::thread::sleep(Duration::from_secs(2));
    let got = http.requests();
    assert_eq!(got.len(), 1, "one message for 5 quick failures: {got:#?}");
    assert_eq!(got[0].json()["event"], "failure");
    // Once the window ends, a digest counts the 4 held back, naming the last of them.
    let got = http.wait_for(2, 40);
    let digest = got[1].json();
    assert_eq!(digest["event"], "digest", "{digest:#}");
    assert_eq!(digest["held_back"]["count"], 4, "{digest:#}");
    assert!(digest["text"]
        .as_str()
        .unwrap()
        .contains("4 more failed run(s) since"));
    assert_eq!(got[1].headers["x-nbpipe-event"], "digest");
    // The message is recorded on the run it names.
    let named = digest["run_id"].as_str().unwrap();
    assert!(ids.contains(&named.to_string()));
    let n = wait_notifications(&server, named, 10, |n| {
        n.iter()
            .any(|d| d["event"] == "digest" && d["status"] == "delivered")
    });
    assert!(!n.is_empty());
}

#[test]
fn nbpipe_run_notifies_directly_and_never_changes_its_exit_code() {
    let sb = Sandbox::new();
    let http = Receiver::start(free_port());
    let down = free_port();
    let notify = format!(
        "  - on: [failure, success]\n    webhook: {{url: '{}', secret_env: NBPIPE_TEST_HOOK_KEY}}\n\
         \x20 - webhook: 'http://127.0.0.1:{down}/never'\n",
        http.url("/hook"),
    );
    let dir = failing_project(&sb, &notify);
    let started = Instant::now();
    let out = run(sb
        .nbpipe()
        .env("NBPIPE_TEST_HOOK_KEY", HOOK_KEY)
        .env("NBPIPE_NOTIFY_TIMEOUT", "4")
        .args(["run"])
        .arg(&dir)
        .args(["-p", "fail", "True"]));
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(took < Duration::from_secs(60), "{took:?}");
    let err = stderr(&out);
    assert!(
        err.contains("warning: notification `notify[1]` to http://127.0.0.1:")
            && err.contains("not delivered"),
        "{err}"
    );
    let got = http.wait_for(1, 5);
    let body = got[0].json();
    assert_eq!(body["event"], "failure");
    assert_eq!(body["step"], "clean");
    assert_eq!(body["error"]["ename"], "ValueError");
    let ts = &got[0].headers["x-nbpipe-timestamp"];
    assert_eq!(
        got[0].headers["x-nbpipe-signature"],
        openssl_signature(HOOK_KEY, ts, &got[0].body)
    );

    // A success reaches the target that asked for successes; exit code 0 all the same.
    let out = run(sb
        .nbpipe()
        .env("NBPIPE_TEST_HOOK_KEY", HOOK_KEY)
        .env("NBPIPE_NOTIFY_TIMEOUT", "4")
        .args(["run"])
        .arg(&dir));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let got = http.wait_for(2, 5);
    assert_eq!(got[1].json()["event"], "success");

    // `NBPIPE_NOTIFY=serve` (containers of `nbpipe serve`) keeps it quiet.
    let out = run(sb
        .nbpipe()
        .env("NBPIPE_NOTIFY", "serve")
        .args(["run"])
        .arg(&dir));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(http.requests().len(), 2);
}

/// Two servers sharing a PostgreSQL queue each plan and send notifications: every message
/// goes out exactly once, and a success after failures is one recovery.
#[test]
fn two_servers_on_one_postgres_queue_send_each_notification_once() {
    let Some(pg) = postgres::Postgres::start_or_skip("notifications on PostgreSQL") else {
        return;
    };
    let sb = Sandbox::new();
    let http = Receiver::start(free_port());
    let notify = format!(
        "  - on: [failure, recovery]\n    webhook: '{}'\n    rate_limit: off\n",
        http.url("/hook")
    );
    let dir = failing_project(&sb, &notify);
    let url = pg.url("postgres");
    let start = || {
        Server::start_with(
            &sb,
            &dir,
            &["--database", &url, "--no-inbox", "--lease", "3"],
            std::iter::empty::<(&str, &str)>(),
        )
    };
    let a = start();
    let b = start();
    for fail in [true, true, true] {
        let (code, body) = a.post_json(
            "/api/runs",
            &json!({"project": "proj", "parameters": {"fail": fail}}).to_string(),
        );
        assert_eq!(code, 201, "{body}");
    }
    a.wait_runs("3 failed runs", |runs| done(runs, 3));
    let ok = run_once(&b, false);
    assert_eq!(ok["status"], "succeeded");
    let got = http.wait_for(4, 60);
    std::thread::sleep(Duration::from_secs(3));
    let got_now = http.requests();
    assert_eq!(got_now.len(), 4, "each message once: {got:#?}");
    let events: Vec<String> = got_now
        .iter()
        .map(|r| r.json()["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        events.iter().filter(|e| *e == "failure").count(),
        3,
        "{events:?}"
    );
    let recovery = got_now
        .iter()
        .find(|r| r.json()["event"] == "recovery")
        .unwrap();
    assert_eq!(recovery.json()["run_id"], ok["id"]);
    assert_eq!(recovery.json()["failures_before"], 3);
    let ids: std::collections::BTreeSet<String> = got_now
        .iter()
        .map(|r| r.headers["x-nbpipe-delivery"].clone())
        .collect();
    assert_eq!(ids.len(), 4, "distinct deliveries");
    // Counted once across the shared database (decoded on PostgreSQL too).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !b
        .metrics()
        .contains("nbpipe_notifications{status=\"delivered\"} 4\n")
    {
        assert!(Instant::now() < deadline, "{}", b.metrics());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A delivery still pending when the server is killed (`kill -9`) is sent by the next
/// server on the same database once the receiver is up.
#[test]
fn a_pending_notification_survives_a_server_kill_and_restart() {
    let sb = Sandbox::new();
    let port = free_port(); // down for now
    let notify = format!("  - webhook: 'http://127.0.0.1:{port}/hook'\n");
    let dir = failing_project(&sb, &notify);
    let server = Server::start(&sb, &dir, &["--no-inbox"]);
    let run = run_once(&server, true);
    let id = run["id"].as_str().unwrap().to_string();
    wait_notifications(&server, &id, 30, |n| {
        n.len() == 1 && n[0]["attempts"].as_u64() >= Some(1)
    });
    drop(server); // SIGKILL
    let receiver = Receiver::start(port);
    let server = Server::start(&sb, &dir, &["--no-inbox"]);
    let got = receiver.wait_for(1, 60);
    assert_eq!(got[0].json()["run_id"], id.as_str());
    assert_eq!(got[0].json()["event"], "failure");
    wait_notifications(&server, &id, 30, |n| n[0]["status"] == "delivered");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(receiver.requests().len(), 1, "sent once");
}

/// An SMTP server that refuses the password: the delivery records why and keeps being
/// retried (the password may be fixed); the run is failed by its notebook, nothing else.
#[test]
fn an_smtp_server_refusing_the_password_is_recorded_and_retried() {
    let sb = Sandbox::new();
    let (ca, cert, key) = certificates(&sb);
    let smtp = Smtp::start(&sb, &cert, &key);
    let notify = format!(
        "  - email:\n      to: ops@example.org\n      from: nbpipe@example.org\n\
         \x20     smtp: {{host: 127.0.0.1, port: {port}, username: {SMTP_LOGIN}, \
         password_env: NBPIPE_TEST_SMTP_PASSWORD, ca_file: '{ca}'}}\n",
        port = smtp.port,
        ca = ca.display(),
    );
    let dir = failing_project(&sb, &notify);
    let server = Server::start_with(
        &sb,
        &dir,
        &["--no-inbox"],
        [("NBPIPE_TEST_SMTP_PASSWORD", "wrong")],
    );
    let run = run_once(&server, true);
    assert_eq!(run["status"], "failed");
    let id = run["id"].as_str().unwrap();
    let n = wait_notifications(&server, id, 30, |n| {
        n.len() == 1 && n[0]["attempts"].as_u64() >= Some(2)
    });
    assert_eq!(n[0]["status"], "pending", "{n:#?}");
    assert_eq!(n[0]["destination"], "ops@example.org");
    let err = n[0]["last_error"].as_str().unwrap();
    assert!(err.starts_with("SMTP:") && err.contains("535"), "{err}");
    assert!(smtp.mails().is_empty());
}

/// An `environments:` entry overrides `notify:` like any top-level key, and its messages
/// name the project and the environment apart.
#[test]
fn an_environment_has_its_own_targets_and_its_messages_name_it() {
    let sb = Sandbox::new();
    let http = Receiver::start(free_port());
    let notify = format!(
        "  - webhook: '{top}'\nenvironments:\n  prod:\n    branch: main\n    notify:\n\
         \x20     - webhook: '{prod}'\n",
        top = http.url("/top"),
        prod = http.url("/prod"),
    );
    let dir = failing_project(&sb, &notify);
    let server = Server::start(&sb, &dir, &["--no-inbox", "--env", "prod"]);
    let (code, body) = server.post_json(
        "/api/runs",
        &json!({"project": "proj@prod", "parameters": {"fail": true}}).to_string(),
    );
    assert_eq!(code, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    wait_status(&server, &id, |s| s == "failed", 120);
    let got = http.wait_for(1, 30);
    assert_eq!(got[0].path, "/prod");
    let body = got[0].json();
    assert_eq!(
        (body["project"].as_str(), body["environment"].as_str()),
        (Some("proj"), Some("prod"))
    );
    assert!(body["text"]
        .as_str()
        .unwrap()
        .contains(&format!("proj (prod): run {id} failed")));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        http.requests().len(),
        1,
        "the top-level target is not the environment's"
    );
}
