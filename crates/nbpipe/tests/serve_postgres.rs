//! `nbpipe serve` end to end on PostgreSQL: two server processes (each with its own port and
//! `--workers`) on the same project folder share one queue database on a throwaway cluster
//! (`nbpipe-server/tests/common/postgres.rs`). Duplicated S3 events sent to both servers
//! become one run each, executed by both; a server killed with `kill -9` mid-run has that run
//! recovered and finished by the other once its lease runs out.
//!
//! Without PostgreSQL each test prints why and passes, unless `NBPIPE_TEST_POSTGRES=1` makes
//! that a failure (as the queue tests do).

mod common;
#[path = "../../nbpipe-server/tests/common/postgres.rs"]
mod postgres;
mod serve_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use postgres::Postgres;
use serde_json::{json, Value};
use serve_support::*;

/// Two servers `a` and `b` on `dir` sharing the cluster's `postgres` database, started one
/// after the other (the first creates the schema). `SERVER_NAME` is set per process so a
/// notebook can say which server ran it.
fn two_servers(sb: &Sandbox, dir: &Path, pg: &Postgres, workers: (&str, &str)) -> (Server, Server) {
    let url = pg.url("postgres");
    let start = |name: &str, workers: &str| {
        Server::start_with(
            sb,
            dir,
            &[
                "--database",
                &url,
                "--no-inbox",
                "--lease",
                "3",
                "--workers",
                workers,
            ],
            [("SERVER_NAME", name)],
        )
    };
    let a = start("a", workers.0);
    let b = start("b", workers.1);
    (a, b)
}

/// The server (`"a"` or `"b"`) whose process id is in a worker id (`host-PID-rand-i`).
fn server_of<'a>(worker: &str, servers: &[(&'a str, &Server)]) -> &'a str {
    servers
        .iter()
        .find(|(_, s)| worker.contains(&format!("-{}-", s.child.id())))
        .map(|(name, _)| *name)
        .unwrap_or_else(|| panic!("worker {worker} is not one of the test's servers"))
}

/// The run's attempts (`attempts_history`) from the API.
fn attempts(server: &Server, id: &str) -> Vec<Value> {
    server
        .get(&format!("/api/runs/{id}"))
        .and_then(|d| d["attempts_history"].as_array().cloned())
        .unwrap_or_else(|| panic!("no detail for run {id}"))
}

/// 40 distinct objects, each event delivered to both servers (concurrently, in opposite
/// orders), become exactly 40 runs on the shared database; all succeed, each once, and both
/// servers executed some of them (by the attempts' worker ids and by what the notebooks
/// printed).
#[test]
fn two_servers_on_one_postgres_queue_run_each_duplicated_event_once() {
    let Some(pg) = Postgres::start_or_skip("serve on PostgreSQL") else {
        return;
    };
    let sb = Sandbox::new();
    let dir = project(
        &sb,
        &format!("{SEED}serve: {{concurrency: 4}}\n"),
        // Each run takes a moment, so b always has runs in flight while the queue is full.
        &["import os, time\ntime.sleep(0.5)\nprint(os.environ['SERVER_NAME'], trigger_key)"],
    );
    // `--workers` is each server's own capacity: a, with one worker, must not be starved
    // while b runs three (it was, when `--workers` also capped the whole database's runs).
    let (a, b) = two_servers(&sb, &dir, &pg, ("1", "3"));
    let event = |i: usize| {
        json!({"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "incoming-bucket"},
            "object": {"key": format!("data/obj-{i:02}.csv"), "eTag": format!("etag{i}"), "size": 1}}}]})
        .to_string()
    };
    std::thread::scope(|s| {
        let (a, b) = (&a, &b);
        s.spawn(move || {
            for i in 0..40 {
                assert_eq!(a.post("/hooks/s3", &event(i), true), 202, "event {i} to a");
            }
        });
        s.spawn(move || {
            for i in (0..40).rev() {
                assert_eq!(b.post("/hooks/s3", &event(i), true), 202, "event {i} to b");
            }
        });
    });
    let runs = a.wait_runs("40 finished runs", |r| done(r, 40));
    assert_eq!(b.runs().len(), 40, "both servers see the one queue");
    let keys: BTreeSet<&str> = runs
        .iter()
        .map(|r| r["trigger"]["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), 40, "one run per object");
    let servers = [("a", &a), ("b", &b)];
    let mut ran_by: BTreeMap<&str, usize> = BTreeMap::new();
    for run in &runs {
        let id = run["id"].as_str().unwrap();
        assert_eq!(run["status"], "succeeded", "{run:#?}");
        assert_eq!(run["attempts"], 1, "{run:#?}");
        let history = attempts(&a, id);
        assert_eq!(history.len(), 1, "{history:#?}");
        let by = server_of(history[0]["worker"].as_str().unwrap(), &servers);
        let key = run["trigger"]["key"].as_str().unwrap();
        assert_eq!(
            printed(&dir, id),
            format!("{by} {key}\n"),
            "the notebook ran on the server that leased the run"
        );
        *ran_by.entry(by).or_default() += 1;
    }
    assert_eq!(ran_by.len(), 2, "one server ran everything: {ran_by:?}");
    // a's one worker was busy through the whole burst (~10 runs of 40 expected); when
    // `--workers` capped the whole database, a only got runs while b had none running.
    assert!(ran_by["a"] >= 5, "a was starved by b: {ran_by:?}");
    assert_eq!(ran_by.values().sum::<usize>(), 40);
    for mut s in [a, b] {
        s.signal("-TERM");
        assert!(s.child.wait().unwrap().success());
    }
    sb.assert_no_processes_left();
}

/// `kill -9` of the server running a run's long cell: its kernel dies with it; the other
/// server recovers the run when the lease (3 s) runs out and finishes it as a second
/// attempt (the step allows a retry). One run, two attempts, one per server, the notebook
/// executed exactly twice, and no process left behind.
#[test]
fn kill_9_of_one_server_mid_run_and_the_other_finishes_the_run() {
    let Some(pg) = Postgres::start_or_skip("serve on PostgreSQL") else {
        return;
    };
    let sb = Sandbox::new();
    let dir = project(
        &sb,
        "notebooks:\n  - path: nb.ipynb\n    retries: 1\nS3TriggerBucket: incoming-bucket\nS3TriggerKeyPrefix: data/\n",
        &["import os, time\nn = len(os.listdir('attempts')) if os.path.exists('attempts') else 0\nos.makedirs('attempts', exist_ok=True)\nopen(f'attempts/{n}', 'w').write(os.environ['SERVER_NAME'])\nif n == 0:\n    time.sleep(120)\nprint('attempt', n, os.environ['SERVER_NAME'])"],
    );
    let (a, b) = two_servers(&sb, &dir, &pg, ("1", "2"));
    let record = json!({"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "incoming-bucket"},
        "object": {"key": "data/long.csv", "eTag": "e1", "size": 1}}}]})
    .to_string();
    assert_eq!(a.post("/hooks/s3", &record, true), 202);
    assert_eq!(b.post("/hooks/s3", &record, true), 202);
    // Wait until the first attempt is inside its long cell, and find who holds it.
    let deadline = Instant::now() + Duration::from_secs(90);
    while !dir.join("attempts/0").exists() {
        assert!(Instant::now() < deadline, "the run never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    let first = std::fs::read_to_string(dir.join("attempts/0")).unwrap();
    let runs = a.runs();
    assert_eq!(runs.len(), 1, "{runs:#?}");
    let id = runs[0]["id"].as_str().unwrap().to_string();
    let running = attempts(&a, &id);
    assert_eq!(running.len(), 1, "{running:#?}");
    let owner = running[0]["worker"].as_str().unwrap().to_string();
    let (victim, survivor, survivor_name) = if first == "a" {
        (a, b, "b")
    } else {
        (b, a, "a")
    };
    assert!(
        owner.contains(&format!("-{}-", victim.child.id())),
        "the running attempt's worker {owner} is not server {first}"
    );
    victim.signal("-KILL");
    let victim_pid = victim.child.id();
    drop(victim);
    // Its kernel dies with it: only the survivor and what it starts may be left — its
    // kernels, its zygote, and the kernels that zygote forks for it.
    let deadline = Instant::now() + Duration::from_secs(5);
    let survivors = survivor.child.id();
    loop {
        let strays: Vec<i32> = sb
            .processes_left()
            .into_iter()
            .filter(|pid| {
                *pid as u32 != survivors
                    && parent(*pid) != survivors
                    && parent(parent(*pid) as i32) != survivors
            })
            .collect();
        if strays.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "processes of the killed server {victim_pid} left: {strays:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let runs = survivor.wait_runs("the recovered run to finish", |r| done(r, 1));
    let run = &runs[0];
    assert_eq!(run["id"], id.as_str());
    assert_eq!(run["status"], "succeeded", "{run:#?}");
    assert_eq!(run["attempts"], 2, "{run:#?}");
    assert_eq!(printed(&dir, &id), format!("attempt 1 {survivor_name}\n"));
    let history = attempts(&survivor, &id);
    assert_eq!(history.len(), 2, "{history:#?}");
    assert!(
        history[0]["worker"]
            .as_str()
            .unwrap()
            .contains(&format!("-{victim_pid}-")),
        "{history:#?}"
    );
    assert!(
        history[1]["worker"]
            .as_str()
            .unwrap()
            .contains(&format!("-{}-", survivor.child.id())),
        "{history:#?}"
    );
    assert_eq!(history[1]["outcome"], "succeeded");
    assert!(!dir.join("attempts/2").exists(), "run more than twice");
    // Nothing else is queued or run later.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(survivor.runs().len(), 1);
    assert!(!dir.join("attempts/2").exists(), "run a third time");
    let mut survivor = survivor;
    survivor.signal("-TERM");
    assert!(survivor.child.wait().unwrap().success());
    sb.assert_no_processes_left();
}

/// The parent process id of `pid` (0 when it is gone).
fn parent(pid: i32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // `pid (comm) state ppid …`: comm may contain spaces, so read after the last `)`.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}
