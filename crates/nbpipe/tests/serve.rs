//! `nbpipe serve` end to end: the real binary, real kernels, a SQLite queue on disk, triggers
//! through the local inbox and the S3 webhook, kill -9 and restart, graceful drain. The same on
//! a shared PostgreSQL queue with two servers: `serve_postgres.rs`.

mod common;
#[path = "../../nbpipe-server/tests/common/moto.rs"]
mod moto;
mod serve_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use moto::Moto;
use serde_json::{json, Value};
use serve_support::*;

#[test]
fn inbox_file_triggers_one_run_with_the_object_as_parameter() {
    let sb = Sandbox::new();
    let dir = project(
        &sb,
        SEED,
        &["print('got', trigger_bucket, trigger_key, trigger_uri, open(trigger_path).read().strip())"],
    );
    let server = Server::start(&sb, &dir, &[]);
    let inbox = dir.join(".nbpipe/inbox/incoming-bucket/data");
    std::fs::create_dir_all(&inbox).unwrap();
    std::fs::write(inbox.join("a b.csv"), "1,2\n").unwrap();
    // Outside the prefix: ignored.
    std::fs::create_dir_all(dir.join(".nbpipe/inbox/incoming-bucket/other")).unwrap();
    std::fs::write(dir.join(".nbpipe/inbox/incoming-bucket/other/x.csv"), "no").unwrap();
    let runs = server.wait_runs("one finished run", |r| done(r, 1));
    assert_eq!(runs[0]["status"], "succeeded", "{:#?}", runs[0]);
    // The file stands for `s3://incoming-bucket/data/a b.csv`, as if it had landed there.
    assert_eq!(runs[0]["trigger"]["bucket"], "incoming-bucket");
    assert_eq!(runs[0]["trigger"]["key"], "data/a b.csv");
    let path = std::fs::canonicalize(inbox.join("a b.csv")).unwrap();
    let recorded = runs[0]["trigger"]["path"].as_str().unwrap();
    assert_eq!(std::fs::canonicalize(recorded).unwrap(), path);
    let id = runs[0]["id"].as_str().unwrap();
    assert_eq!(
        printed(&dir, id),
        "got incoming-bucket data/a b.csv s3://incoming-bucket/data/a b.csv 1,2\n"
    );
    // Rewriting the same content is the same object version: no second run.
    std::fs::write(inbox.join("a b.csv"), "1,2\n").unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(server.runs().len(), 1);
    // New content is a new version: a new run.
    std::fs::write(inbox.join("a b.csv"), "3,4\n").unwrap();
    server.wait_runs("a second run", |r| done(r, 2));
    // SIGTERM drains and exits cleanly.
    let mut server = server;
    server.signal("-TERM");
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    sb.assert_no_processes_left();
}

#[test]
fn s3_webhook_queues_each_object_version_exactly_once_and_needs_the_token() {
    let sb = Sandbox::new();
    let dir = project(&sb, SEED, &["print('ok', trigger_key)"]);
    let server = Server::start(&sb, &dir, &["--no-inbox"]);
    let record = json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "eventTime": "2026-11-26T10:00:00.000Z",
        "s3": {"bucket": {"name": "incoming-bucket"},
               "object": {"key": "data/x+y%2Fz.csv", "size": 3, "eTag": "abc", "sequencer": "0055AED6DCD90281E5"}}
    }]})
    .to_string();
    assert_eq!(
        server.post("/hooks/s3", &record, false),
        401,
        "hooks need the token"
    );
    assert_eq!(server.post("/hooks/s3", &record, true), 202);
    assert_eq!(
        server.post("/hooks/s3", &record, true),
        202,
        "a redelivery is accepted"
    );
    let test_event =
        json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "incoming-bucket"})
            .to_string();
    assert_eq!(server.post("/hooks/s3", &test_event, true), 202);
    let runs = server.wait_runs("one finished run", |r| done(r, 1));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(server.runs().len(), 1, "duplicates were dropped");
    assert_eq!(
        runs[0]["trigger"]["key"], "data/x y/z.csv",
        "keys are URL-decoded"
    );
    // Submitting through the API needs the token too.
    assert_eq!(
        server.post("/api/runs", &json!({"project": "proj"}).to_string(), false),
        401
    );
    assert_eq!(
        server.post("/api/runs", &json!({"project": "proj"}).to_string(), true),
        201
    );
    server.wait_runs("the submitted run", |r| done(r, 2));
}

/// CloudTrail data events posted to the webhook (the "AWS API Call via CloudTrail" shape an
/// EventBridge rule forwards): exactly the object-creating calls start runs, and the notebook
/// gets the bucket, the key as written (space, unicode, `+`) and the region.
#[test]
fn cloudtrail_events_on_the_webhook_run_only_object_creations() {
    let sb = Sandbox::new();
    let dir = project(
        &sb,
        SEED,
        &["print('got', trigger_bucket, repr(trigger_key), trigger_region)"],
    );
    let server = Server::start(&sb, &dir, &["--no-inbox"]);
    let call = |name: &str, key: &str, error: bool| {
        let mut detail = json!({
            "eventVersion": "1.09", "eventTime": "2026-11-26T10:00:00Z",
            "eventSource": "s3.amazonaws.com", "eventName": name, "awsRegion": "ap-southeast-2",
            "requestParameters": {"bucketName": "incoming-bucket", "key": key},
            "responseElements": null, "eventID": format!("{name}:{key}"),
            "readOnly": false, "eventType": "AwsApiCall", "eventCategory": "Data",
        });
        if error {
            detail["errorCode"] = json!("AccessDenied");
        }
        json!({"version": "0", "id": "1", "detail-type": "AWS API Call via CloudTrail",
               "source": "aws.s3", "region": "ap-southeast-2", "detail": detail})
    };
    let body = json!([
        call("PutObject", "data/a b+ç.csv", false),
        call("UploadPart", "data/big.bin", false),
        call("CompleteMultipartUpload", "data/big.bin", false),
        call("GetObject", "data/a b+ç.csv", false),
        call("PutObject", "data/denied.csv", true),
        call("CopyObject", "elsewhere/c.csv", false),
    ])
    .to_string();
    let (code, v) = server.post_json("/hooks/s3", &body);
    assert_eq!((code, &v["queued"]), (202, &json!(2)), "{v}");
    // Delivered again (EventBridge is at-least-once): nothing new.
    let (code, v) = server.post_json("/hooks/s3", &body);
    assert_eq!((code, &v["queued"]), (202, &json!(0)), "{v}");
    let runs = server.wait_runs("two finished runs", |r| done(r, 2));
    let mut printed_lines: Vec<String> = runs
        .iter()
        .map(|r| {
            assert_eq!(r["status"], "succeeded", "{r:#?}");
            assert_eq!(r["trigger"]["region"], "ap-southeast-2");
            printed(&dir, r["id"].as_str().unwrap())
        })
        .collect();
    printed_lines.sort();
    assert_eq!(
        printed_lines,
        [
            "got incoming-bucket 'data/a b+ç.csv' ap-southeast-2\n",
            "got incoming-bucket 'data/big.bin' ap-southeast-2\n",
        ]
    );
}

/// Per-key order survives kill -9: a newer S3 event for a key runs; the server is killed and
/// started again; an older event for the same key, arriving late, is answered `202` as
/// superseded, counted in `/metrics`, and never run.
#[test]
fn an_older_event_after_kill_9_and_restart_is_superseded() {
    let sb = Sandbox::new();
    let dir = project(&sb, SEED, &["print('ok', trigger_key)"]);
    let record = |etag: &str, seq: &str| {
        json!({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "incoming-bucket"},
                   "object": {"key": "data/k.csv", "size": 3, "eTag": etag, "sequencer": seq}}}]})
        .to_string()
    };
    let server = Server::start(&sb, &dir, &["--no-inbox"]);
    let (code, v) = server.post_json("/hooks/s3", &record("new", "0055AED6DCD90281F0"));
    assert_eq!((code, &v["queued"]), (202, &json!(1)), "{v}");
    server.wait_runs("the newer event's run", |r| done(r, 1));
    drop(server); // SIGKILL

    let server = Server::start(&sb, &dir, &["--no-inbox"]);
    let (code, v) = server.post_json("/hooks/s3", &record("old", "0055AED6DCD90281E5"));
    assert_eq!(code, 202, "{v}");
    assert_eq!(
        (&v["queued"], &v["superseded"]),
        (&json!(0), &json!(1)),
        "{v}"
    );
    assert_eq!(v["superseded_by"][0]["newer_sequencer"], "55AED6DCD90281F0");
    assert!(
        server
            .metrics()
            .contains("nbpipe_events_superseded_total{project=\"proj\",source=\"webhook\"} 1"),
        "{}",
        server.metrics()
    );
    std::thread::sleep(Duration::from_secs(1));
    let runs = server.runs();
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(runs[0]["trigger"]["etag"], "new");
}

/// Starts a server on a project whose first attempt sleeps in a long cell, `kill -9`s it
/// there, restarts it and returns the finished runs.
fn kill_9_mid_run_then_restart(yaml: &str) -> (Sandbox, PathBuf, Vec<Value>) {
    let sb = Sandbox::new();
    let dir = project(
        &sb,
        yaml,
        &["import os, time\nn = len(os.listdir('attempts')) if os.path.exists('attempts') else 0\nos.makedirs('attempts', exist_ok=True)\nopen(f'attempts/{n}', 'w').write('x')\nif n == 0:\n    time.sleep(120)\nprint('attempt', n)"],
    );
    let server = Server::start(&sb, &dir, &[]);
    let inbox = dir.join(".nbpipe/inbox/incoming-bucket/data");
    std::fs::create_dir_all(&inbox).unwrap();
    std::fs::write(inbox.join("a.csv"), "1\n").unwrap();
    // Wait until the first attempt is inside its long cell.
    let deadline = Instant::now() + Duration::from_secs(90);
    while !dir.join("attempts/0").exists() {
        assert!(Instant::now() < deadline, "the run never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    server.signal("-KILL");
    drop(server);
    // Its kernel dies with it (parent-death signal): nothing runs on behind our back.
    sb.assert_no_processes_left();

    let server = Server::start(&sb, &dir, &[]);
    let runs = server.wait_runs("the interrupted run to finish", |r| done(r, 1));
    assert_eq!(runs.len(), 1, "the event was not queued twice");
    drop(server);
    (sb, dir, runs)
}

/// kill -9 of the server while a run executes, then a restart: the run is not lost and not
/// run twice — its lease runs out and it is retried once, although the project sets no
/// retries at all: an interruption is not the notebook's fault (`serve.interrupted_retries`,
/// default 1).
#[test]
fn kill_9_mid_run_then_restart_retries_the_run_once() {
    let (_sb, dir, runs) = kill_9_mid_run_then_restart(
        "notebooks: [nb.ipynb]\nS3TriggerBucket: incoming-bucket\nS3TriggerKeyPrefix: data/\n",
    );
    assert_eq!(runs[0]["status"], "succeeded", "{:#?}", runs[0]);
    assert_eq!(runs[0]["attempts"], 2);
    assert!(!dir.join("attempts/2").exists(), "run more than twice");
}

/// The same with `serve: {retries: 0, interrupted_retries: 0}`: the project's run policy,
/// not its step `retries`, decides, and the interrupted run is marked failed instead of
/// being run again.
#[test]
fn kill_9_mid_run_then_restart_fails_the_run_when_its_policy_allows_no_retry() {
    let (_sb, dir, runs) = kill_9_mid_run_then_restart(
        "notebooks:\n  - path: nb.ipynb\n    retries: 1\nS3TriggerBucket: incoming-bucket\nS3TriggerKeyPrefix: data/\nserve: {retries: 0, interrupted_retries: 0}\n",
    );
    assert_eq!(runs[0]["status"], "failed", "{:#?}", runs[0]);
    assert_eq!(runs[0]["attempts"], 1);
    let error = runs[0]["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("interrupted"), "{error}");
    assert!(!dir.join("attempts/1").exists(), "run again");
}

/// `nbpipe serve` on `dir`, long-polling `queue_url` on `moto` (configured through the
/// standard AWS environment), with the inbox off.
fn serve_sqs(sb: &Sandbox, dir: &Path, moto: &Moto, queue_url: &str) -> Server {
    Server::start_with(
        sb,
        dir,
        &["--no-inbox", "--sqs-queue", queue_url],
        moto.aws_env(),
    )
}

/// S3 → SQS notifications on a real SQS API (moto's server): a put object starts exactly one
/// run with the (URL-decoded) key, and moto's leading `s3:TestEvent` starts none.
#[test]
fn sqs_notifications_start_runs() {
    let sb = Sandbox::new();
    let moto = Moto::start();
    let queue_url = moto.s3_to_sqs("incoming-bucket", "intake");
    let dir = project(&sb, SEED, &["print('from sqs', trigger_key)"]);
    let server = serve_sqs(&sb, &dir, &moto, &queue_url);
    moto.put("incoming-bucket", "data/q 1.csv", "x");
    let runs = server.wait_runs("the SQS-triggered run", |r| done(r, 1));
    assert_eq!(runs[0]["status"], "succeeded", "{:#?}", runs[0]);
    assert_eq!(runs[0]["trigger"]["key"], "data/q 1.csv");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        server.runs().len(),
        1,
        "the test event and redeliveries start nothing"
    );
}

/// S3 → EventBridge → SQS on moto: the bucket's `EventBridgeConfiguration`, a rule matching
/// `Object Created` in the bucket with the queue as its target, and `nbpipe serve` reading the
/// queue. The upload starts one run whose trigger is the object (key verbatim, as EventBridge
/// sends it) and the notebook sees the key; nothing else is queued.
#[test]
fn s3_eventbridge_sqs_events_start_runs() {
    let sb = Sandbox::new();
    let moto = Moto::start();
    let queue_url = moto.s3_to_eventbridge_to_sqs("incoming-bucket", "bridge");
    let dir = project(&sb, SEED, &["print('from eventbridge', trigger_key)"]);
    let server = serve_sqs(&sb, &dir, &moto, &queue_url);
    moto.put("incoming-bucket", "data/q 1+x.csv", "x");
    let runs = server.wait_runs("the EventBridge-triggered run", |r| done(r, 1));
    let run = &runs[0];
    assert_eq!(run["status"], "succeeded", "{run:#?}");
    assert_eq!(run["trigger"]["bucket"], "incoming-bucket");
    assert_eq!(run["trigger"]["key"], "data/q 1+x.csv");
    assert_eq!(run["trigger"]["event_name"], "Object Created");
    assert_eq!(run["trigger"]["source"], "sqs");
    assert_eq!(
        printed(&dir, run["id"].as_str().unwrap()),
        "from eventbridge data/q 1+x.csv\n"
    );
    assert_eq!(moto.queue_len(&queue_url), 0, "the message was deleted");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(server.runs().len(), 1);
}

/// Load on loopback: 1,000 distinct objects delivered through the webhook (each delivered
/// twice, in concurrent batches) become exactly 1,000 queued runs — none lost, none doubled.
/// (Executing all of them is the job of the service benchmark, not of a test.)
#[test]
fn a_thousand_objects_become_exactly_a_thousand_runs() {
    let sb = Sandbox::new();
    let dir = project(&sb, SEED, &["pass"]);
    let server = Server::start(
        &sb,
        &dir,
        &["--no-inbox", "--workers", "1", "--drain-timeout", "1"],
    );
    let batch = |from: usize| {
        let records: Vec<Value> = (from..from + 50)
            .map(|i| {
                json!({"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "incoming-bucket"},
                       "object": {"key": format!("data/obj-{i:04}.csv"), "eTag": format!("etag{i}"), "size": 1}}})
            })
            .collect();
        json!({ "Records": records }).to_string()
    };
    std::thread::scope(|s| {
        for round in 0..2 {
            for t in 0..4 {
                let server = &server;
                s.spawn(move || {
                    for b in (t * 250..(t + 1) * 250).step_by(50) {
                        assert_eq!(
                            server.post("/hooks/s3", &batch(b), true),
                            202,
                            "round {round}"
                        );
                    }
                });
            }
        }
    });
    let runs = server.runs();
    assert_eq!(runs.len(), 1000, "every object version queued exactly once");
    let mut keys: Vec<&str> = runs
        .iter()
        .map(|r| r["trigger"]["key"].as_str().unwrap())
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 1000);
    let metrics = Command::new("curl")
        .args(["-sf", &format!("http://127.0.0.1:{}/metrics", server.port)])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&metrics.stdout).contains("nbpipe_runs"));
}

/// The warm pool: triggered runs get kernels started before the object landed (in the
/// project's environment and the notebook's folder), each used once; SIGTERM shuts the idle
/// ones down.
#[test]
fn triggered_runs_take_prestarted_kernels_from_the_warm_pool() {
    let sb = Sandbox::new();
    let dir = project(
        &sb,
        SEED,
        &["import os\nprint(os.environ.get('NBPIPE_POOLED_KERNEL'), os.getpid(), os.path.basename(os.getcwd()))"],
    );
    let mut server = Server::start(&sb, &dir, &["--warm-kernels", "1"]);
    // Give the pool time to start its kernel.
    std::thread::sleep(Duration::from_secs(4));
    let inbox = dir.join(".nbpipe/inbox/incoming-bucket/data");
    std::fs::create_dir_all(&inbox).unwrap();
    let printed = |server: &Server, n: usize| -> Vec<String> {
        let runs = server.wait_runs("runs", |r| done(r, n));
        runs.iter()
            .map(|r| printed(&dir, r["id"].as_str().unwrap()))
            .collect()
    };
    std::fs::write(inbox.join("1.csv"), "1").unwrap();
    let first = printed(&server, 1);
    std::thread::sleep(Duration::from_secs(4));
    std::fs::write(inbox.join("2.csv"), "2").unwrap();
    let both = printed(&server, 2);
    for line in &both {
        let parts: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(parts[0], "1", "not a pooled kernel: {line}");
        assert_eq!(
            parts[2], "proj",
            "pooled kernel started in the wrong folder: {line}"
        );
    }
    // Each run had its own kernel process.
    let pid = |l: &str| l.split_whitespace().nth(1).unwrap().to_string();
    assert_ne!(
        pid(&both[0]),
        pid(&both[1]),
        "a kernel served two runs: {both:?} / {first:?}"
    );
    server.signal("-TERM");
    assert!(server.child.wait().unwrap().success());
    sb.assert_no_processes_left();
}

/// A schedule fires on its slots (here every 2 seconds), each slot once.
#[test]
fn schedules_start_runs_once_per_slot() {
    let sb = Sandbox::new();
    let dir = project(
        &sb,
        "notebooks:\n  - nb.ipynb\ntrigger:\n  schedule: {cron: \"*/2 * * * * *\", timezone: Europe/Paris}\n",
        &["print('scheduled')"],
    );
    let server = Server::start(
        &sb,
        &dir,
        &["--no-inbox", "--workers", "2", "--per-project", "2"],
    );
    let started = Instant::now();
    let runs = server.wait_runs("two scheduled runs", |r| {
        r.iter().filter(|x| x["status"] == "succeeded").count() >= 2
    });
    assert!(
        runs.iter()
            .all(|r| r["reason"].as_str().unwrap().starts_with("schedule */2")),
        "{runs:#?}"
    );
    // Regression: the first slot used to wait for a fixed 60 s wake-up.
    assert!(
        started.elapsed() < Duration::from_secs(45),
        "took {:?}",
        started.elapsed()
    );
    let mut slots: Vec<&str> = runs
        .iter()
        .map(|r| r["created_at"].as_str().unwrap())
        .collect();
    let n = slots.len();
    slots.dedup();
    assert_eq!(slots.len(), n);
}

/// `serve.retries`: a run whose notebook fails on its first attempt (it raises unless a marker
/// left by an earlier attempt exists) is queued again after `serve.retry_backoff` and
/// succeeds; the API shows both attempts, the first with its error.
#[test]
fn a_failed_run_is_retried_by_the_projects_policy_and_succeeds() {
    let sb = Sandbox::new();
    let dir = project(
        &sb,
        "notebooks:\n  - nb.ipynb\nserve:\n  retries: 2\n  retry_backoff: 1s\n",
        &["import os\nfirst = not os.path.exists('marker')\nopen('marker', 'a').write('x')\nif first:\n    raise RuntimeError('no marker yet')\nprint('retried')"],
    );
    let server = Server::start(&sb, &dir, &["--no-inbox"]);
    assert_eq!(
        server.post("/api/runs", &json!({"project": "proj"}).to_string(), true),
        201
    );
    let runs = server.wait_runs("the retried run", |r| done(r, 1));
    let run = &runs[0];
    assert_eq!(run["status"], "succeeded", "{run:#?}");
    assert_eq!(
        (run["attempts"].as_u64(), run["max_attempts"].as_u64()),
        (Some(2), Some(3))
    );
    let id = run["id"].as_str().unwrap();
    let detail = server.get(&format!("/api/runs/{id}")).unwrap();
    let history = detail["attempts_history"].as_array().unwrap();
    // Each attempt records where it executed (the local executor, in this server).
    assert_eq!(history[0]["handle"]["executor"], "local", "{history:#?}");
    assert_eq!(history.len(), 2, "{detail:#?}");
    assert_eq!(history[0]["outcome"], "retry");
    let first_error = history[0]["error"].as_str().unwrap_or_default();
    assert!(
        first_error.contains("RuntimeError: no marker yet"),
        "{first_error}"
    );
    assert_eq!(history[1]["outcome"], "succeeded");
    assert!(history[1]["error"].is_null());
    // The backoff was waited for: the second attempt started at least 1 s after the first.
    let at = |i: usize| {
        chrono::DateTime::parse_from_rfc3339(history[i]["started_at"].as_str().unwrap()).unwrap()
    };
    let first_end =
        chrono::DateTime::parse_from_rfc3339(history[0]["finished_at"].as_str().unwrap()).unwrap();
    assert!(
        at(1) - first_end >= chrono::Duration::milliseconds(1000),
        "{history:#?}"
    );
    assert!(at(1) > at(0));
    assert_eq!(std::fs::read_to_string(dir.join("marker")).unwrap(), "xx");
}

/// `serve.timeout`: a run taking longer is stopped (its notebook saved up to the interrupted
/// cell) and fails with an error naming the limit; without `serve.retries` it is not retried.
#[test]
fn a_run_exceeding_its_serve_timeout_is_stopped_and_failed() {
    let sb = Sandbox::new();
    let dir = project(
        &sb,
        "notebooks:\n  - nb.ipynb\nserve:\n  timeout: 4s\n",
        &["print('started', flush=True)\nimport time\ntime.sleep(120)"],
    );
    let server = Server::start(&sb, &dir, &["--no-inbox"]);
    let started = Instant::now();
    assert_eq!(
        server.post("/api/runs", &json!({"project": "proj"}).to_string(), true),
        201
    );
    let runs = server.wait_runs("the timed-out run", |r| done(r, 1));
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "{:?}",
        started.elapsed()
    );
    let run = &runs[0];
    assert_eq!(run["status"], "failed", "{run:#?}");
    assert_eq!(run["attempts"], 1);
    let error = run["error"].as_str().unwrap_or_default();
    assert!(error.contains("`serve.timeout`: 4s"), "{error}");
    let id = run["id"].as_str().unwrap();
    // The step says why it stopped: the run's time limit, not a cancellation.
    let detail = server.get(&format!("/api/runs/{id}")).unwrap();
    let step = &detail["steps"][0];
    assert_eq!(step["status"], "cancelled", "{detail:#?}");
    let step_error = step["error"].as_str().unwrap_or_default();
    assert!(
        step_error.starts_with("the run reached its time limit"),
        "{step_error}"
    );
    assert!(!step_error.contains("cancelled"), "{step_error}");
    assert_eq!(
        printed(&dir, id),
        "started\n",
        "the interrupted cell's output was saved"
    );
}

/// `serve.concurrency` overrides `--per-project`: two runs of a project allowing 2 run at
/// once (each waits until it sees the other started) although the server's default is 1.
#[test]
fn serve_concurrency_lets_a_project_run_several_runs_at_once() {
    let sb = Sandbox::new();
    let dir = project(
        &sb,
        "notebooks:\n  - nb.ipynb\nserve:\n  concurrency: 2\n",
        &["import os, time, uuid\nos.makedirs('running', exist_ok=True)\nopen(f'running/{uuid.uuid4().hex}', 'w').close()\ndeadline = time.time() + 30\nwhile len(os.listdir('running')) < 2 and time.time() < deadline:\n    time.sleep(0.1)\nprint('together', len(os.listdir('running')))"],
    );
    let server = Server::start(
        &sb,
        &dir,
        &["--no-inbox", "--workers", "3", "--per-project", "1"],
    );
    for _ in 0..2 {
        assert_eq!(
            server.post("/api/runs", &json!({"project": "proj"}).to_string(), true),
            201
        );
    }
    let runs = server.wait_runs("both runs", |r| done(r, 2));
    for run in &runs {
        assert_eq!(run["status"], "succeeded", "{run:#?}");
        let id = run["id"].as_str().unwrap();
        assert_eq!(
            printed(&dir, id),
            "together 2\n",
            "the runs did not overlap"
        );
    }
}

/// A kernel that dies mid-run (here `os._exit`, as a segfault or the OOM killer would) fails
/// that attempt with the kernel's death recorded in the run's notebook and history; the
/// project's policy retries it, the retry succeeds, the server goes on taking runs, and no
/// kernel is left behind.
#[test]
fn a_kernel_that_dies_mid_run_fails_the_attempt_and_the_retry_succeeds() {
    let sb = Sandbox::new();
    let dir = project(
        &sb,
        "notebooks:\n  - nb.ipynb\nserve:\n  retries: 1\n  retry_backoff: 1s\n",
        &["import os\nfirst = not os.path.exists('died-once')\nopen('died-once', 'a').write('x')\nif first:\n    print('about to die', flush=True)\n    os._exit(9)\nprint('alive')"],
    );
    let server = Server::start(&sb, &dir, &["--no-inbox"]);
    assert_eq!(
        server.post("/api/runs", &json!({"project": "proj"}).to_string(), true),
        201
    );
    let runs = server.wait_runs("the run whose kernel died once", |r| done(r, 1));
    let run = &runs[0];
    assert_eq!(run["status"], "succeeded", "{run:#?}");
    assert_eq!(run["attempts"], 2, "{run:#?}");
    let id = run["id"].as_str().unwrap();
    let detail = server.get(&format!("/api/runs/{id}")).unwrap();
    let first_error = detail["attempts_history"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        first_error.contains("DeadKernelError") || first_error.contains("Kernel died"),
        "{detail:#?}"
    );
    assert_eq!(printed(&dir, id), "alive\n");

    // The server still works: another run goes through.
    assert_eq!(
        server.post("/api/runs", &json!({"project": "proj"}).to_string(), true),
        201
    );
    let runs = server.wait_runs("a second run", |r| done(r, 2));
    assert!(runs.iter().all(|r| r["status"] == "succeeded"), "{runs:#?}");
    drop(server);
    sb.assert_no_processes_left();
}
