//! Crash safety: this test binary re-executes itself as a child (`child_process_entry`,
//! selected by `NBPIPE_QUEUE_CHILD`) that works on the queue and is `kill -9`ed mid-work;
//! the parent then checks that nothing acknowledged was lost and nothing runs twice. Each
//! case runs on SQLite and on PostgreSQL (see `queue_support`).

#[macro_use]
mod queue_support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use nbpipe_server::queue::{Enqueued, Queue, RunFilter, Status, INTERRUPTED};
use queue_support::*;

/// A child process killed (SIGKILL) and reaped on drop, so a failing test leaves none.
struct ChildGuard(std::process::Child);

impl ChildGuard {
    fn kill9(&mut self) {
        self.0.kill().unwrap(); // SIGKILL on Unix
        self.0.wait().unwrap();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Re-executes this test binary in a helper mode; returns the child with piped stdout.
fn spawn_child(mode: &str, url: &str) -> ChildGuard {
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("NBPIPE_QUEUE_CHILD", mode)
        .env("NBPIPE_QUEUE_URL", url)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    ChildGuard(child)
}

/// Lines the child printed with `prefix`, read until `enough` of them or end of output.
fn read_lines(out: &mut impl BufRead, prefix: &str, enough: usize) -> Vec<String> {
    let mut found = Vec::new();
    let mut line = String::new();
    while found.len() < enough {
        line.clear();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        // The first line follows libtest's `test child_process_entry ... `.
        if let Some(at) = line.find(prefix) {
            found.push(line[at + prefix.len()..].trim_end().to_string());
        }
    }
    found
}

/// The helper modes, run in the child (`NBPIPE_QUEUE_CHILD`); idle in a normal test run.
#[test]
fn child_process_entry() {
    let Ok(mode) = std::env::var("NBPIPE_QUEUE_CHILD") else {
        return;
    };
    let url = std::env::var("NBPIPE_QUEUE_URL").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        use std::io::Write;
        let q = Queue::open(&url).await.unwrap();
        let mut out = std::io::stdout();
        match mode.as_str() {
            "claim" => {
                while let Some(c) = q
                    .claim("child", &roomy(), Duration::from_secs(2))
                    .await
                    .unwrap()
                {
                    writeln!(out, "CLAIMED {}", c.run.id).unwrap();
                }
                writeln!(out, "DONE").unwrap();
                out.flush().unwrap();
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            "enqueue" => {
                for i in 0..1_000_000 {
                    let e = q
                        .enqueue(&object_req("a", &format!("obj-{i}")), 3)
                        .await
                        .unwrap();
                    writeln!(out, "ACK {i} {}", e.run_id()).unwrap();
                    out.flush().unwrap();
                }
            }
            "ordered" => {
                // Ever newer versions of one key, each with a higher sequencer.
                for i in 0..1_000_000u64 {
                    let req = seq_req(
                        "a",
                        "in/k.csv",
                        &format!("v{i}"),
                        Some(&format!("{:x}", i + 1)),
                    );
                    let e = q.enqueue(&req, 3).await.unwrap();
                    writeln!(out, "ACK {i} {}", e.run_id()).unwrap();
                    out.flush().unwrap();
                }
            }
            "work" => {
                // A whole worker cycle per run, as fast as it goes.
                let lease = Duration::from_millis(500);
                for i in 0..1_000_000 {
                    q.enqueue(&plain_req("a", Some(&format!("w-{i}"))), 3)
                        .await
                        .unwrap();
                    let c = q.claim("child", &roomy(), lease).await.unwrap().unwrap();
                    q.update_manifest(&c.run.id, "child", &ok_manifest())
                        .await
                        .unwrap();
                    q.finish(&c.run.id, "child", succeeded()).await.unwrap();
                    writeln!(out, "FINISHED {i} {}", c.run.id).unwrap();
                    out.flush().unwrap();
                }
            }
            other => panic!("unknown child mode {other}"),
        }
    });
}

async fn killed_worker_runs_are_recovered_exactly_once(url: String) {
    let q = open(&url).await;
    // Project `b` allows no retry of interrupted runs: its last attempt fails.
    no_interrupted_retries(&q, "b").await;
    let retry = new_id(&q, &plain_req("a", Some("r"))).await;
    let last = match q.enqueue(&plain_req("b", Some("l")), 1).await.unwrap() {
        Enqueued::New(id) => id,
        d => panic!("{d:?}"),
    };
    let mut child = spawn_child("claim", &url);
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    let claimed = read_lines(&mut out, "CLAIMED ", 2);
    assert_eq!(claimed, vec![retry.clone(), last.clone()]);
    let run = q.get(&retry).await.unwrap().unwrap();
    assert_eq!(
        (run.status, run.lease_owner.as_deref()),
        (Status::Running, Some("child"))
    );
    child.kill9();
    // The lease (2 s) still holds: nothing is stolen from a maybe-live worker.
    assert_eq!(q.recover("parent").await.unwrap().total(), 0);
    assert_eq!(claim_id(&q, "parent", &roomy()).await, None);
    let until = run.lease_until.unwrap();
    let wait = (until - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(100)).await;
    let rec = q.recover("parent").await.unwrap();
    assert_eq!(
        (rec.requeued, rec.failed),
        (vec![retry.clone()], vec![last.clone()])
    );
    assert_eq!(q.recover("parent").await.unwrap().total(), 0);
    tokio::time::sleep(BACKOFF.base + Duration::from_millis(100)).await;
    let again = q
        .claim("parent", &roomy(), LEASE)
        .await
        .unwrap()
        .unwrap()
        .run;
    assert_eq!((again.id.as_str(), again.attempts), (retry.as_str(), 2));
    assert_eq!(
        claim_id(&q, "parent", &roomy()).await,
        None,
        "the failed run is not retried"
    );
    assert_eq!(
        q.get(&last).await.unwrap().unwrap().error.as_deref(),
        Some(INTERRUPTED)
    );
}

async fn killed_enqueue_loop_loses_no_acknowledged_run(url: String) {
    let (acks_first, extra_ms) = random_moment();
    let mut child = spawn_child("enqueue", &url);
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    let mut acks = read_lines(&mut out, "ACK ", acks_first);
    std::thread::sleep(Duration::from_millis(extra_ms));
    child.kill9();
    acks.extend(read_lines(&mut out, "ACK ", usize::MAX)); // what it printed before dying
    assert!(
        acks.len() >= acks_first,
        "child printed {} acks",
        acks.len()
    );

    let q = open(&url).await;
    let rows = q
        .list(&RunFilter {
            limit: Some(1_000_000),
            ..Default::default()
        })
        .await
        .unwrap();
    let by_id: std::collections::HashMap<_, _> = rows.iter().map(|r| (r.id.as_str(), r)).collect();
    for (n, ack) in acks.iter().enumerate() {
        let (i, id) = ack.split_once(' ').unwrap();
        assert_eq!(i, n.to_string());
        let run = by_id
            .get(id)
            .unwrap_or_else(|| panic!("acknowledged run {id} lost"));
        assert_eq!(run.reason, format!("s3 obj-{i}"));
    }
    // At most the one enqueue in flight at the kill committed without its ack.
    assert!(
        rows.len() == acks.len() || rows.len() == acks.len() + 1,
        "{} rows, {} acks",
        rows.len(),
        acks.len()
    );
    // Redelivery of every event (at-least-once intake) adds nothing.
    for i in 0..rows.len() + 1 {
        let e = q
            .enqueue(&object_req("a", &format!("obj-{i}")), 3)
            .await
            .unwrap();
        assert_eq!(
            matches!(e, Enqueued::New(_)),
            i == rows.len(),
            "obj-{i}: {e:?}"
        );
    }
    assert_eq!(q.counts().await.unwrap().queued as usize, rows.len() + 1);
}

async fn killed_ordered_enqueues_keep_runs_and_newest_sequencer_together(url: String) {
    let (acks_first, extra_ms) = random_moment();
    let mut child = spawn_child("ordered", &url);
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    let mut acks = read_lines(&mut out, "ACK ", acks_first);
    std::thread::sleep(Duration::from_millis(extra_ms));
    child.kill9();
    acks.extend(read_lines(&mut out, "ACK ", usize::MAX));

    let q = open(&url).await;
    let all = RunFilter {
        limit: Some(1_000_000),
        ..Default::default()
    };
    let rows = q.list(&all).await.unwrap();
    assert!(
        rows.len() == acks.len() || rows.len() == acks.len() + 1,
        "{} rows, {} acks",
        rows.len(),
        acks.len()
    );
    for ack in &acks {
        let id = ack.split_once(' ').unwrap().1;
        assert!(
            rows.iter().any(|r| r.id == id),
            "acknowledged run {id} lost"
        );
    }
    let n = rows.len() as u64;
    // Every version delivered again (at-least-once intake) is a duplicate, oldest first or not.
    for i in (0..n).rev() {
        let req = seq_req(
            "a",
            "in/k.csv",
            &format!("v{i}"),
            Some(&format!("{:x}", i + 1)),
        );
        let e = q.enqueue(&req, 3).await.unwrap();
        assert!(matches!(e, Enqueued::Duplicate(_)), "v{i}: {e:?}");
    }
    // The newest sequencer committed with the newest run, not before and not after it: a new
    // version just below it is superseded by exactly that run.
    let late = q
        .enqueue(
            &seq_req("a", "in/k.csv", "late", Some(&format!("{:x}", n - 1))),
            3,
        )
        .await
        .unwrap();
    let newest_run = &rows[0].id;
    assert_eq!(
        late,
        Enqueued::Superseded {
            newer_run: newest_run.clone(),
            newer_sequencer: format!("{n:X}"),
        }
    );
    let next = q
        .enqueue(
            &seq_req(
                "a",
                "in/k.csv",
                &format!("v{n}"),
                Some(&format!("{:x}", n + 1)),
            ),
            3,
        )
        .await
        .unwrap();
    assert!(matches!(next, Enqueued::New(_)), "{next:?}");
    assert_eq!(q.counts().await.unwrap().queued, n + 1);
}

async fn killed_worker_loop_leaves_every_run_consistent(url: String) {
    let (acks_first, extra_ms) = random_moment();
    let mut child = spawn_child("work", &url);
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    let mut done = read_lines(&mut out, "FINISHED ", acks_first);
    std::thread::sleep(Duration::from_millis(extra_ms));
    child.kill9();
    done.extend(read_lines(&mut out, "FINISHED ", usize::MAX));

    let q = open(&url).await;
    let all = RunFilter {
        limit: Some(1_000_000),
        ..Default::default()
    };
    let rows = q.list(&all).await.unwrap();
    assert!(rows.len() == done.len() || rows.len() == done.len() + 1);
    for run in &rows {
        let attempts = q.attempts(&run.id).await.unwrap();
        assert_eq!(attempts.len() as u32, run.attempts, "{run:?}");
        match run.status {
            Status::Succeeded => {
                assert_eq!(attempts[0].outcome.as_deref(), Some("succeeded"));
                assert!(run.finished_at.is_some() && run.lease_owner.is_none());
            }
            Status::Running => {
                assert_eq!(attempts[0].outcome, None);
                assert_eq!(run.lease_owner.as_deref(), Some("child"));
            }
            Status::Queued => assert!(attempts.is_empty()),
            other => panic!("unexpected {other} for {run:?}"),
        }
    }
    for line in &done {
        let id = line.split_once(' ').unwrap().1;
        let run = rows.iter().find(|r| r.id == id).expect("finished run lost");
        assert_eq!(run.status, Status::Succeeded);
    }
    // Whatever the kill interrupted is finished once, by someone else, after recovery.
    tokio::time::sleep(Duration::from_millis(600)).await;
    q.recover("parent").await.unwrap();
    tokio::time::sleep(BACKOFF.max).await;
    while let Some(c) = q.claim("parent", &roomy(), LEASE).await.unwrap() {
        q.finish(&c.run.id, "parent", succeeded()).await.unwrap();
    }
    let counts = q.counts().await.unwrap();
    assert_eq!(counts.succeeded as usize, rows.len(), "{counts:?}");
}

/// A pseudo-random moment to kill a child: after 5..=80 acknowledgements plus 0..=15 ms.
fn random_moment() -> (usize, u64) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    (5 + (nanos % 76) as usize, u64::from(nanos / 7 % 16))
}

backend_cases!(
    killed_worker_runs_are_recovered_exactly_once,
    killed_enqueue_loop_loses_no_acknowledged_run,
    killed_ordered_enqueues_keep_runs_and_newest_sequencer_together,
    killed_worker_loop_leaves_every_run_consistent,
);
