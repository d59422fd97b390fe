//! Per-project run policies in the queue (`serve:` in nbpipe.yaml, stored in the database):
//! concurrency limits that hold for many claimers on separate connections, retries of failed
//! and interrupted runs with the project's backoff, and cancel ending the retries. Each case
//! runs on a SQLite file and again on a throwaway PostgreSQL cluster (see `queue_support`).

#[macro_use]
mod queue_support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nbpipe_server::queue::{
    Backoff, CancelResult, Enqueued, ProjectPolicy, Queue, RunFilter, Status, INTERRUPTED,
};
use queue_support::*;

fn concurrency(n: usize) -> ProjectPolicy {
    ProjectPolicy {
        concurrency: Some(n),
        backoff: None,
        interrupted_retries: None,
    }
}

fn backoff(base_ms: u64, max_ms: u64) -> ProjectPolicy {
    ProjectPolicy {
        concurrency: None,
        backoff: Some(Backoff {
            base: Duration::from_millis(base_ms),
            max: Duration::from_millis(max_ms),
        }),
        interrupted_retries: None,
    }
}

fn interrupted_retries(n: u32) -> ProjectPolicy {
    ProjectPolicy {
        concurrency: None,
        backoff: Some(Backoff {
            base: Duration::from_millis(50),
            max: Duration::from_millis(50),
        }),
        interrupted_retries: Some(n),
    }
}

async fn enqueue_with(q: &Queue, project: &str, key: &str, max_attempts: u32) -> String {
    match q
        .enqueue(&plain_req(project, Some(key)), max_attempts)
        .await
        .unwrap()
    {
        Enqueued::New(id) => id,
        d => panic!("{d:?}"),
    }
}

/// The delay the queue put before the run's next attempt (both times are written together).
async fn backoff_ms(q: &Queue, id: &str) -> i64 {
    let run = q.get(id).await.unwrap().unwrap();
    assert_eq!(run.status, Status::Queued);
    (run.not_before - run.updated_at).num_milliseconds()
}

async fn running_of(q: &Queue, project: &str) -> usize {
    let filter = RunFilter {
        project: Some(project.into()),
        status: vec![Status::Running],
        ..RunFilter::default()
    };
    q.list(&filter).await.unwrap().len()
}

// ---------------------------------------------------------------------------------------
// behaviour cases

async fn stored_project_limits_hold_for_many_concurrent_claimers(url: String) {
    let q = open(&url).await;
    q.set_project_policy("a", &concurrency(2)).await.unwrap();
    q.set_project_policy("b", &concurrency(1)).await.unwrap();
    for p in ["a", "b", "c"] {
        for i in 0..6 {
            new_id(&q, &plain_req(p, Some(&format!("{p}{i}")))).await;
        }
    }
    // A claimer whose own default is larger still gets only the stored limits.
    let wide = limits(100, 10, &[]);
    let mut first = Vec::new();
    while let Some(c) = q.claim("w", &wide, LEASE).await.unwrap() {
        first.push(c.run);
    }
    let per = |p: &str| first.iter().filter(|r| r.project == p).count();
    assert_eq!((per("a"), per("b"), per("c")), (2, 1, 6), "{first:#?}");
    // The caller's explicit per-project limit still wins (e.g. 0 pauses a project).
    for r in &first {
        q.finish(&r.id, "w", succeeded()).await.unwrap();
    }
    let paused = limits(100, 10, &[("a", 0)]);
    let c = q.claim("w", &paused, LEASE).await.unwrap().unwrap().run;
    assert_eq!(c.project, "b");
    q.finish(&c.id, "w", succeeded()).await.unwrap();

    // Eight claimers on their own connections (as servers sharing the database are), each
    // holding its run a moment: the running count of a project never exceeds its limit.
    let stored: HashMap<&str, usize> = [("a", 2), ("b", 1)].into();
    let live: Arc<Mutex<HashMap<String, (usize, usize)>>> = Arc::default();
    let mut tasks = Vec::new();
    for w in 0..8 {
        let (url, live) = (url.clone(), live.clone());
        let stored = stored.clone();
        tasks.push(tokio::spawn(async move {
            let q = open(&url).await;
            let worker = format!("w{w}");
            let mut idle = 0;
            while idle < 10 {
                let Some(c) = q.claim(&worker, &limits(100, 3, &[]), LEASE).await.unwrap() else {
                    idle += 1;
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    continue;
                };
                idle = 0;
                let p = c.run.project.clone();
                if let Some(&limit) = stored.get(p.as_str()) {
                    let n = running_of(&q, &p).await;
                    assert!(n <= limit, "{p}: {n} running, limit {limit}");
                }
                {
                    let mut live = live.lock().unwrap();
                    let e = live.entry(p.clone()).or_default();
                    e.0 += 1;
                    e.1 = e.1.max(e.0);
                }
                tokio::time::sleep(Duration::from_millis(40)).await;
                live.lock().unwrap().get_mut(&p).unwrap().0 -= 1;
                q.finish(&c.run.id, &worker, succeeded()).await.unwrap();
            }
            q.close().await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let most = |p: &str| live.lock().unwrap()[p].1;
    assert!(most("a") <= 2, "a ran {} at once", most("a"));
    assert!(most("b") <= 1, "b ran {} at once", most("b"));
    let counts = q.counts().await.unwrap();
    assert_eq!(
        (counts.succeeded, counts.queued, counts.running),
        (18, 0, 0)
    );
}

async fn failed_runs_retry_with_the_projects_backoff_until_they_succeed(url: String) {
    // The queue's own backoff (300 ms) applies to projects without a stored one.
    let q = open(&url).await;
    q.set_project_policy("a", &backoff(200, 500)).await.unwrap();
    assert_eq!(
        q.project_policies().await.unwrap()["a"].backoff,
        backoff(200, 500).backoff
    );
    let id = enqueue_with(&q, "a", "k", 5).await;
    // Three failures: 200 ms, 400 ms, then capped at 500 ms (not 800).
    for (attempt, expected) in [(1, 200), (2, 400), (3, 500)] {
        let run = q.claim("w", &roomy(), LEASE).await.unwrap().unwrap().run;
        assert_eq!((run.id.as_str(), run.attempts), (id.as_str(), attempt));
        assert_eq!(
            q.finish(&id, "w", failed(true)).await.unwrap(),
            Status::Queued
        );
        assert_eq!(
            backoff_ms(&q, &id).await,
            expected,
            "after attempt {attempt}"
        );
        assert_eq!(
            claim_id(&q, "w", &roomy()).await,
            None,
            "claimed during backoff"
        );
        tokio::time::sleep(Duration::from_millis(expected as u64 + 50)).await;
    }
    claim_id(&q, "w", &roomy()).await.unwrap();
    assert_eq!(
        q.finish(&id, "w", succeeded()).await.unwrap(),
        Status::Succeeded
    );
    let run = q.get(&id).await.unwrap().unwrap();
    assert_eq!(
        (run.status, run.attempts, run.max_attempts),
        (Status::Succeeded, 4, 5)
    );
    let history = q.attempts(&id).await.unwrap();
    let outcomes: Vec<_> = history
        .iter()
        .map(|a| (a.attempt, a.outcome.as_deref(), a.error.as_deref()))
        .collect();
    let err = Some("cell 3 raised ValueError");
    assert_eq!(
        outcomes,
        vec![
            (1, Some("retry"), err),
            (2, Some("retry"), err),
            (3, Some("retry"), err),
            (4, Some("succeeded"), None)
        ]
    );

    // Attempts exhausted: failed for good, each attempt recorded.
    let last = enqueue_with(&q, "a", "last", 2).await;
    claim_id(&q, "w", &roomy()).await.unwrap();
    q.finish(&last, "w", failed(true)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    claim_id(&q, "w", &roomy()).await.unwrap();
    assert_eq!(
        q.finish(&last, "w", failed(true)).await.unwrap(),
        Status::Failed
    );
    let outcomes: Vec<_> = q
        .attempts(&last)
        .await
        .unwrap()
        .iter()
        .map(|a| a.outcome.clone().unwrap())
        .collect();
    assert_eq!(outcomes, ["retry", "failed"]);

    // No stored backoff: the queue's. A new policy replaces the stored one.
    let other = enqueue_with(&q, "b", "k", 3).await;
    claim_id(&q, "w", &roomy()).await.unwrap();
    q.finish(&other, "w", failed(true)).await.unwrap();
    assert_eq!(backoff_ms(&q, &other).await, 300);
    q.set_project_policy("b", &backoff(50, 50)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(350)).await;
    claim_id(&q, "w", &roomy()).await.unwrap();
    q.finish(&other, "w", failed(true)).await.unwrap();
    assert_eq!(backoff_ms(&q, &other).await, 50);
    q.set_project_policy("b", &ProjectPolicy::default())
        .await
        .unwrap();
    assert_eq!(
        q.project_policies().await.unwrap()["b"],
        ProjectPolicy::default()
    );
}

async fn cancel_ends_the_retries_of_a_run_waiting_for_its_backoff(url: String) {
    let q = open(&url).await;
    q.set_project_policy("a", &backoff(200, 200)).await.unwrap();
    let id = enqueue_with(&q, "a", "k", 5).await;
    claim_id(&q, "w", &roomy()).await.unwrap();
    q.finish(&id, "w", failed(true)).await.unwrap();
    assert_eq!(q.cancel(&id).await.unwrap(), CancelResult::Cancelled);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(claim_id(&q, "w", &roomy()).await, None);
    let run = q.get(&id).await.unwrap().unwrap();
    assert_eq!((run.status, run.attempts), (Status::Cancelled, 1));

    // Cancelled while running: a retryable failure ends cancelled, not queued.
    let id = enqueue_with(&q, "a", "k2", 5).await;
    claim_id(&q, "w", &roomy()).await.unwrap();
    assert_eq!(q.cancel(&id).await.unwrap(), CancelResult::Requested);
    assert_eq!(
        q.finish(&id, "w", failed(true)).await.unwrap(),
        Status::Cancelled
    );
}

/// Claims the next run once its backoff has passed (waiting up to 5 s).
async fn claim_when_due(q: &Queue, worker: &str, lease: Duration) -> String {
    for _ in 0..100 {
        if let Some(c) = q.claim(worker, &roomy(), lease).await.unwrap() {
            return c.run.id;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no run became due");
}

/// Claims the run with a short lease, lets it expire and recovers it (a server killed mid-run).
async fn interrupt(q: &Queue, id: &str) -> Status {
    let short = Duration::from_millis(200);
    assert_eq!(claim_when_due(q, "dead", short).await, id);
    tokio::time::sleep(short + Duration::from_millis(100)).await;
    q.recover("me").await.unwrap();
    q.get(id).await.unwrap().unwrap().status
}

async fn interrupted_runs_get_their_own_retries_apart_from_max_attempts(url: String) {
    let q = open(&url).await;
    // Default (no policy stored): one retry of an interruption, even with one attempt.
    let id = enqueue_with(&q, "d", "k", 1).await;
    assert_eq!(interrupt(&q, &id).await, Status::Queued);
    let run = q.get(&id).await.unwrap().unwrap();
    assert_eq!((run.attempts, run.max_attempts), (1, 2));
    assert_eq!(interrupt(&q, &id).await, Status::Failed);
    let run = q.get(&id).await.unwrap().unwrap();
    assert_eq!((run.attempts, run.error.as_deref()), (2, Some(INTERRUPTED)));

    // Two allowed, on top of a notebook retry (`serve.retries: 1`, max_attempts 2): two
    // interruptions then a notebook failure still leave that failure its retry.
    q.set_project_policy("t", &interrupted_retries(2))
        .await
        .unwrap();
    let id = enqueue_with(&q, "t", "k", 2).await;
    assert_eq!(interrupt(&q, &id).await, Status::Queued);
    assert_eq!(interrupt(&q, &id).await, Status::Queued);
    claim_when_due(&q, "w", LEASE).await;
    assert_eq!(
        q.finish(&id, "w", failed(true)).await.unwrap(),
        Status::Queued
    );
    claim_when_due(&q, "w", LEASE).await;
    assert_eq!(
        q.finish(&id, "w", failed(true)).await.unwrap(),
        Status::Failed
    );
    let run = q.get(&id).await.unwrap().unwrap();
    assert_eq!((run.attempts, run.max_attempts), (4, 4));

    // Zero: an interruption uses up the run's own attempts, as before.
    q.set_project_policy("z", &interrupted_retries(0))
        .await
        .unwrap();
    let id = enqueue_with(&q, "z", "k", 1).await;
    assert_eq!(interrupt(&q, &id).await, Status::Failed);
    // The stored allowance reads back.
    let stored = q.project_policies().await.unwrap();
    assert_eq!(stored["t"].interrupted_retries, Some(2));
    assert_eq!(stored["z"].interrupted_retries, Some(0));
}

async fn interrupted_runs_are_recovered_with_the_projects_backoff(url: String) {
    let q = open(&url).await;
    // No interrupted retries here: the run's own attempts decide.
    let policy = ProjectPolicy {
        interrupted_retries: Some(0),
        ..backoff(250, 1000)
    };
    q.set_project_policy("a", &policy).await.unwrap();
    let id = enqueue_with(&q, "a", "k", 2).await;
    let short = Duration::from_millis(300);
    q.claim("dead", &roomy(), short).await.unwrap().unwrap();
    tokio::time::sleep(short + Duration::from_millis(100)).await;
    assert_eq!(q.recover("me").await.unwrap().requeued, vec![id.clone()]);
    assert_eq!(backoff_ms(&q, &id).await, 250);
    tokio::time::sleep(Duration::from_millis(300)).await;
    q.claim("dead-again", &roomy(), short)
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(short + Duration::from_millis(100)).await;
    assert_eq!(q.recover("me").await.unwrap().failed, vec![id.clone()]);
    let run = q.get(&id).await.unwrap().unwrap();
    assert_eq!(
        (run.status, run.attempts, run.error.as_deref()),
        (Status::Failed, 2, Some(INTERRUPTED))
    );
    let outcomes: Vec<_> = q
        .attempts(&id)
        .await
        .unwrap()
        .iter()
        .map(|a| (a.worker.clone(), a.outcome.clone().unwrap()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("dead".to_string(), "interrupted".to_string()),
            ("dead-again".to_string(), "interrupted".to_string())
        ]
    );
}

backend_cases!(
    stored_project_limits_hold_for_many_concurrent_claimers,
    failed_runs_retry_with_the_projects_backoff_until_they_succeed,
    cancel_ends_the_retries_of_a_run_waiting_for_its_backoff,
    interrupted_runs_are_recovered_with_the_projects_backoff,
    interrupted_runs_get_their_own_retries_apart_from_max_attempts,
);
