//! The queue's behaviour against real databases: each case runs as its own test on a
//! SQLite file in a temp dir, and all of them again on a throwaway PostgreSQL cluster
//! (`postgres_backend`; see `queue_support`). Crash cases are in `queue_crash.rs`.

#[macro_use]
mod queue_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use nbpipe_server::queue::{
    CancelResult, Enqueued, Finish, Queue, QueueError, RunFilter, Status, INTERRUPTED,
};
use queue_support::*;
use serde_json::json;

// ---------------------------------------------------------------------------------------
// behaviour cases (one URL each: a fresh, empty database)

async fn enqueue_dedups_by_project_and_key(url: String) {
    let q = open(&url).await;
    let req = object_req("a", "incoming/x.csv");
    let id = new_id(&q, &req).await;
    assert_eq!(
        q.enqueue(&req, 3).await.unwrap(),
        Enqueued::Duplicate(id.clone())
    );
    // The same object for another project is another run.
    let other = new_id(&q, &object_req("b", "incoming/x.csv")).await;
    assert_ne!(other, id);
    // No dedup key: always a new run.
    let n1 = new_id(&q, &plain_req("a", None)).await;
    let n2 = new_id(&q, &plain_req("a", None)).await;
    assert_ne!(n1, n2);

    let run = q.get(&id).await.unwrap().unwrap();
    assert_eq!(run.status, Status::Queued);
    assert_eq!((run.attempts, run.max_attempts), (0, 3));
    assert_eq!(run.trigger, req.trigger);
    assert_eq!(run.parameters, req.parameters);
    assert_eq!(run.reason, "s3 incoming/x.csv");
    assert_eq!(run.request(), req);
    assert!(run.started_at.is_none() && run.finished_at.is_none());
    assert!(q.get("nope").await.unwrap().is_none());
    assert_eq!(q.counts().await.unwrap().queued, 4);
}

async fn concurrent_enqueues_of_one_event_make_one_run(url: String) {
    // Eight tasks, each with its own pool (and its own migration attempt), same event.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let q = Queue::open(&url).await.unwrap();
            q.enqueue(&object_req("a", "incoming/same.csv"), 3)
                .await
                .unwrap()
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let new: Vec<_> = results
        .iter()
        .filter(|r| matches!(r, Enqueued::New(_)))
        .collect();
    assert_eq!(new.len(), 1, "{results:?}");
    let id = new[0].run_id().to_string();
    assert!(results.iter().all(|r| r.run_id() == id), "{results:?}");
    let q = open(&url).await;
    assert_eq!(q.list(&RunFilter::default()).await.unwrap().len(), 1);
}

async fn claim_is_fifo_and_honours_not_before(url: String) {
    let q = open(&url).await;
    let ids = [
        new_id(&q, &plain_req("a", Some("1"))).await,
        new_id(&q, &plain_req("b", Some("2"))).await,
        new_id(&q, &plain_req("c", Some("3"))).await,
    ];
    let first = q.claim("w", &roomy(), LEASE).await.unwrap().unwrap().run;
    assert_eq!(first.id, ids[0]);
    assert_eq!(first.status, Status::Running);
    assert_eq!(first.attempts, 1);
    assert_eq!(first.lease_owner.as_deref(), Some("w"));
    assert!(first.started_at.is_some() && first.lease_until.unwrap() > first.started_at.unwrap());
    // A retried run waits for its backoff even though it is the oldest.
    assert_eq!(
        q.finish(&ids[0], "w", failed(true)).await.unwrap(),
        Status::Queued
    );
    let retried = q.get(&ids[0]).await.unwrap().unwrap();
    assert!(retried.not_before > chrono::Utc::now());
    assert_eq!(
        claim_id(&q, "w", &roomy()).await.as_deref(),
        Some(ids[1].as_str())
    );
    assert_eq!(
        claim_id(&q, "w", &roomy()).await.as_deref(),
        Some(ids[2].as_str())
    );
    assert_eq!(claim_id(&q, "w", &roomy()).await, None);
    tokio::time::sleep(BACKOFF.base + Duration::from_millis(100)).await;
    let again = q.claim("w", &roomy(), LEASE).await.unwrap().unwrap().run;
    assert_eq!((again.id.as_str(), again.attempts), (ids[0].as_str(), 2));
}

async fn claim_respects_global_and_per_project_limits(url: String) {
    let q = open(&url).await;
    let mut ids = std::collections::HashMap::new();
    for (p, n) in [("a", 3), ("b", 2), ("c", 1)] {
        for i in 0..n {
            let name = format!("{p}{i}");
            ids.insert(name.clone(), new_id(&q, &plain_req(p, Some(&name))).await);
        }
    }
    let id = |n: &str| Some(ids[n].clone());
    let l = limits(3, 1, &[("b", 2)]);
    assert_eq!(claim_id(&q, "w", &l).await, id("a0"));
    assert_eq!(
        claim_id(&q, "w", &l).await,
        id("b0"),
        "a is at its limit of 1"
    );
    assert_eq!(claim_id(&q, "w", &l).await, id("b1"), "b may run 2");
    assert_eq!(
        claim_id(&q, "w", &l).await,
        None,
        "global limit of 3 reached"
    );
    q.finish(&ids["a0"], "w", succeeded()).await.unwrap();
    assert_eq!(claim_id(&q, "w", &l).await, id("a1"));
    q.finish(&ids["a1"], "w", succeeded()).await.unwrap();
    // A project limited to 0 is paused; global 0 pauses everything.
    let paused = limits(3, 1, &[("a", 0), ("b", 2)]);
    assert_eq!(claim_id(&q, "w", &limits(0, 5, &[])).await, None);
    assert_eq!(claim_id(&q, "w", &paused).await, id("c0"));
    assert_eq!(claim_id(&q, "w", &paused).await, None);
    assert_eq!(q.counts().await.unwrap().running, 3);
    // Default 0: only listed projects run.
    q.finish(&ids["b0"], "w", succeeded()).await.unwrap();
    assert_eq!(claim_id(&q, "w", &limits(9, 0, &[("c", 5)])).await, None);
    assert_eq!(
        claim_id(&q, "w", &limits(9, 0, &[("a", 5)])).await,
        id("a2")
    );
}

async fn concurrent_claims_never_exceed_the_limits(url: String) {
    let q = open(&url).await;
    for i in 0..8 {
        new_id(&q, &plain_req(&format!("p{}", i % 2), Some(&i.to_string()))).await;
    }
    let l = limits(3, 2, &[]);
    let mut tasks = Vec::new();
    for w in 0..8 {
        let q = if w % 2 == 0 {
            q.clone()
        } else {
            open(&url).await
        };
        let l = l.clone();
        tasks.push(tokio::spawn(async move {
            q.claim(&format!("w{w}"), &l, LEASE).await.unwrap()
        }));
    }
    let mut claimed = Vec::new();
    for t in tasks {
        claimed.extend(t.await.unwrap());
    }
    assert_eq!(claimed.len(), 3, "global limit");
    for p in ["p0", "p1"] {
        assert!(claimed.iter().filter(|c| c.run.project == p).count() <= 2);
    }
    assert_eq!(q.counts().await.unwrap().running, 3);
}

async fn finish_retries_with_backoff_until_max_attempts(url: String) {
    let q = open(&url).await;
    let id = match q.enqueue(&plain_req("a", Some("k")), 2).await.unwrap() {
        Enqueued::New(id) => id,
        d => panic!("{d:?}"),
    };
    claim_id(&q, "w", &roomy()).await.unwrap();
    let t0 = chrono::Utc::now();
    assert_eq!(
        q.finish(&id, "w", failed(true)).await.unwrap(),
        Status::Queued
    );
    let run = q.get(&id).await.unwrap().unwrap();
    assert_eq!((run.status, run.attempts), (Status::Queued, 1));
    assert_eq!(run.error.as_deref(), Some("cell 3 raised ValueError"));
    assert!(run.lease_owner.is_none() && run.finished_at.is_none());
    let wait = (run.not_before - t0).num_milliseconds();
    assert!((200..=1000).contains(&wait), "backoff {wait} ms");
    tokio::time::sleep(BACKOFF.base + Duration::from_millis(100)).await;
    claim_id(&q, "w2", &roomy()).await.unwrap();
    // The last attempt fails for good even when retryable.
    assert_eq!(
        q.finish(&id, "w2", failed(true)).await.unwrap(),
        Status::Failed
    );
    let run = q.get(&id).await.unwrap().unwrap();
    assert_eq!((run.status, run.attempts), (Status::Failed, 2));
    assert_eq!(run.output, vec!["file:///out/a.ipynb".to_string()]);
    assert!(run.finished_at.is_some());
    let attempts = q.attempts(&id).await.unwrap();
    let outcomes: Vec<_> = attempts
        .iter()
        .map(|a| (a.attempt, a.worker.as_str(), a.outcome.as_deref()))
        .collect();
    assert_eq!(
        outcomes,
        vec![(1, "w", Some("retry")), (2, "w2", Some("failed"))]
    );
    assert!(matches!(
        q.finish(&id, "w2", succeeded()).await,
        Err(QueueError::LeaseLost { .. })
    ));

    // Not retryable: failed at once. Succeeded: outputs and manifest kept.
    let a = new_id(&q, &plain_req("a", Some("once"))).await;
    claim_id(&q, "w", &roomy()).await.unwrap();
    assert!(matches!(
        q.finish(&a, "other", succeeded()).await,
        Err(QueueError::LeaseLost { .. })
    ));
    assert_eq!(
        q.finish(&a, "w", failed(false)).await.unwrap(),
        Status::Failed
    );
    let b = new_id(&q, &plain_req("a", Some("ok"))).await;
    claim_id(&q, "w", &roomy()).await.unwrap();
    assert_eq!(
        q.finish(&b, "w", succeeded()).await.unwrap(),
        Status::Succeeded
    );
    let run = q.get(&b).await.unwrap().unwrap();
    assert_eq!(run.output.len(), 2);
    assert_eq!(run.manifest, Some(ok_manifest()));
    assert!(run.error.is_none() && run.lease_owner.is_none());
    assert!(matches!(
        q.finish("nope", "w", succeeded()).await,
        Err(QueueError::NotFound(_))
    ));
}

async fn cancel_queued_now_and_running_through_the_worker(url: String) {
    let q = open(&url).await;
    let queued = new_id(&q, &plain_req("a", Some("1"))).await;
    assert_eq!(q.cancel(&queued).await.unwrap(), CancelResult::Cancelled);
    let run = q.get(&queued).await.unwrap().unwrap();
    assert_eq!(run.status, Status::Cancelled);
    assert!(run.finished_at.is_some());
    assert_eq!(claim_id(&q, "w", &roomy()).await, None);

    let running = new_id(&q, &plain_req("a", Some("2"))).await;
    claim_id(&q, "w", &roomy()).await.unwrap();
    assert!(!q.is_cancel_requested(&running).await.unwrap());
    assert_eq!(q.cancel(&running).await.unwrap(), CancelResult::Requested);
    assert!(q.is_cancel_requested(&running).await.unwrap());
    assert_eq!(
        q.get(&running).await.unwrap().unwrap().status,
        Status::Running
    );
    let stopped = Finish::Cancelled {
        output: vec![],
        manifest: json!({}),
    };
    assert_eq!(
        q.finish(&running, "w", stopped).await.unwrap(),
        Status::Cancelled
    );

    // A retryable failure after a cancel request is not retried.
    let third = new_id(&q, &plain_req("a", Some("3"))).await;
    claim_id(&q, "w", &roomy()).await.unwrap();
    q.cancel(&third).await.unwrap();
    assert_eq!(
        q.finish(&third, "w", failed(true)).await.unwrap(),
        Status::Cancelled
    );

    // Regression (a 2 s run ended `succeeded` with `cancel_requested: true`): a cancel
    // accepted while the run was running wins over an attempt that then succeeded.
    let late = new_id(&q, &plain_req("a", Some("late"))).await;
    claim_id(&q, "w", &roomy()).await.unwrap();
    let mut told = q.cancel_requests();
    assert_eq!(q.cancel(&late).await.unwrap(), CancelResult::Requested);
    assert_eq!(told.try_recv().unwrap(), late, "workers hear of it at once");
    assert_eq!(
        q.finish(&late, "w", succeeded()).await.unwrap(),
        Status::Cancelled
    );

    let done = new_id(&q, &plain_req("a", Some("4"))).await;
    claim_id(&q, "w", &roomy()).await.unwrap();
    q.finish(&done, "w", succeeded()).await.unwrap();
    assert_eq!(
        q.cancel(&done).await.unwrap(),
        CancelResult::AlreadyFinished(Status::Succeeded)
    );
    assert_eq!(q.cancel("nope").await.unwrap(), CancelResult::NotFound);
    assert!(matches!(
        q.is_cancel_requested("nope").await,
        Err(QueueError::NotFound(_))
    ));
}

async fn rerun_copies_the_request_under_a_new_identity(url: String) {
    let q = open(&url).await;
    let req = object_req("a", "incoming/x.csv");
    let x = new_id(&q, &req).await;
    claim_id(&q, "w", &roomy()).await.unwrap();
    q.finish(&x, "w", succeeded()).await.unwrap();
    let r1 = q.rerun(&x).await.unwrap();
    let r2 = q.rerun(&x).await.unwrap();
    assert_ne!(r1, r2);
    let run = q.get(&r1).await.unwrap().unwrap();
    assert_eq!(run.status, Status::Queued);
    assert_eq!(
        (run.project.as_str(), &run.trigger, &run.parameters),
        ("a", &req.trigger, &req.parameters)
    );
    assert_eq!(run.reason, format!("rerun of {x} #1"));
    assert_eq!(run.rerun_of.as_deref(), Some(x.as_str()));
    assert_eq!(
        q.get(&r2).await.unwrap().unwrap().reason,
        format!("rerun of {x} #2")
    );
    // The original event is still deduplicated against the original run.
    assert_eq!(q.enqueue(&req, 3).await.unwrap(), Enqueued::Duplicate(x));
    assert!(matches!(
        q.rerun("nope").await,
        Err(QueueError::NotFound(_))
    ));
}

async fn list_filters_and_pages_newest_first(url: String) {
    let q = open(&url).await;
    let a1 = new_id(&q, &object_req("a", "incoming/2024/x.csv")).await;
    let b1 = new_id(&q, &object_req("b", "other/y.csv")).await;
    // Times are stored in milliseconds: keep the boundary clear of both neighbours.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let before_a2 = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let a2 = new_id(&q, &object_req("a", "incoming/2025/z.csv")).await;
    let a3 = new_id(&q, &plain_req("a", Some("api"))).await;
    claim_id(&q, "w", &roomy()).await.unwrap(); // a1
    q.finish(&a1, "w", succeeded()).await.unwrap();

    let ids = |rows: Vec<nbpipe_server::queue::RunRow>| {
        rows.into_iter().map(|r| r.id).collect::<Vec<_>>()
    };
    let all = ids(q.list(&RunFilter::default()).await.unwrap());
    assert_eq!(all, vec![a3.clone(), a2.clone(), b1.clone(), a1.clone()]);
    let f = RunFilter {
        project: Some("a".into()),
        ..Default::default()
    };
    assert_eq!(
        ids(q.list(&f).await.unwrap()),
        vec![a3.clone(), a2.clone(), a1.clone()]
    );
    let f = RunFilter {
        status: vec![Status::Succeeded],
        ..Default::default()
    };
    assert_eq!(ids(q.list(&f).await.unwrap()), vec![a1.clone()]);
    let f = RunFilter {
        status: vec![Status::Queued, Status::Running],
        project: Some("b".into()),
        ..Default::default()
    };
    assert_eq!(ids(q.list(&f).await.unwrap()), vec![b1.clone()]);
    let f = RunFilter {
        trigger_contains: Some("incoming/".into()),
        ..Default::default()
    };
    assert_eq!(ids(q.list(&f).await.unwrap()), vec![a2.clone(), a1.clone()]);
    let f = RunFilter {
        trigger_contains: Some("2025".into()),
        ..Default::default()
    };
    assert_eq!(ids(q.list(&f).await.unwrap()), vec![a2.clone()]);
    let f = RunFilter {
        since: Some(before_a2),
        ..Default::default()
    };
    assert_eq!(ids(q.list(&f).await.unwrap()), vec![a3.clone(), a2.clone()]);
    let f = RunFilter {
        until: Some(before_a2),
        ..Default::default()
    };
    assert_eq!(ids(q.list(&f).await.unwrap()), vec![b1.clone(), a1.clone()]);
    let f = RunFilter {
        limit: Some(2),
        offset: 1,
        ..Default::default()
    };
    assert_eq!(ids(q.list(&f).await.unwrap()), vec![a2, b1]);
    let done = q
        .list(&RunFilter {
            status: vec![Status::Succeeded],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(done[0].manifest, Some(ok_manifest()));
    // The filter is also the API's query shape.
    let parsed: RunFilter = serde_json::from_value(
        json!({"project": "a", "status": ["failed"], "since": "2024-01-01T00:00:00Z"}),
    )
    .unwrap();
    assert_eq!(parsed.status, vec![Status::Failed]);
    assert!(q.list(&parsed).await.unwrap().is_empty());
}

async fn expired_leases_are_recovered_once(url: String) {
    let q = open(&url).await;
    // Project `b` allows no retry of interrupted runs: its last attempt fails.
    no_interrupted_retries(&q, "b").await;
    let short = Duration::from_millis(400);
    let retry = new_id(&q, &plain_req("a", Some("retry"))).await;
    let last = match q.enqueue(&plain_req("b", Some("last")), 1).await.unwrap() {
        Enqueued::New(id) => id,
        d => panic!("{d:?}"),
    };
    let cancelled = new_id(&q, &plain_req("c", Some("cancel"))).await;
    for _ in 0..3 {
        q.claim("dead", &roomy(), short).await.unwrap().unwrap();
    }
    q.cancel(&cancelled).await.unwrap();
    let live = new_id(&q, &plain_req("d", Some("live"))).await;
    q.claim("alive", &roomy(), LEASE).await.unwrap().unwrap();
    assert!(q.heartbeat(&live, "alive", LEASE).await.unwrap());
    assert!(!q.heartbeat(&live, "dead", LEASE).await.unwrap());
    assert_eq!(
        q.recover("me").await.unwrap().total(),
        0,
        "leases still valid"
    );
    tokio::time::sleep(short + Duration::from_millis(100)).await;
    let rec = q.recover("me").await.unwrap();
    assert_eq!(rec.requeued, vec![retry.clone()]);
    assert_eq!(rec.failed, vec![last.clone()]);
    assert_eq!(rec.cancelled, vec![cancelled.clone()]);
    assert_eq!(q.recover("me").await.unwrap().total(), 0, "recovered once");

    let run = q.get(&retry).await.unwrap().unwrap();
    assert_eq!(
        (run.status, run.attempts, run.error.as_deref()),
        (Status::Queued, 1, Some(INTERRUPTED))
    );
    let run = q.get(&last).await.unwrap().unwrap();
    assert_eq!(
        (run.status, run.error.as_deref()),
        (Status::Failed, Some(INTERRUPTED))
    );
    assert_eq!(
        q.get(&cancelled).await.unwrap().unwrap().status,
        Status::Cancelled
    );
    assert_eq!(q.get(&live).await.unwrap().unwrap().status, Status::Running);
    assert_eq!(
        q.attempts(&retry).await.unwrap()[0].outcome.as_deref(),
        Some("interrupted")
    );
    // The dead worker has lost its runs.
    assert!(!q.heartbeat(&retry, "dead", LEASE).await.unwrap());
    assert!(matches!(
        q.finish(&retry, "dead", succeeded()).await,
        Err(QueueError::LeaseLost { .. })
    ));
}

async fn release_hands_a_run_back_without_counting_it(url: String) {
    let q = open(&url).await;
    let id = new_id(&q, &plain_req("a", Some("1"))).await;
    claim_id(&q, "w", &roomy()).await.unwrap();
    assert!(!q.release(&id, "other").await.unwrap());
    assert!(q.release(&id, "w").await.unwrap());
    let run = q.get(&id).await.unwrap().unwrap();
    assert_eq!((run.status, run.attempts), (Status::Queued, 0));
    assert!(q.attempts(&id).await.unwrap().is_empty());
    let again = q.claim("w2", &roomy(), LEASE).await.unwrap().unwrap().run;
    assert_eq!((again.id, again.attempts), (id, 1));
}

async fn manifest_counts_and_cursors_persist_across_reopen(url: String) {
    let q = open(&url).await;
    let id = new_id(&q, &plain_req("a", Some("1"))).await;
    new_id(&q, &plain_req("a", Some("2"))).await;
    claim_id(&q, "w", &roomy()).await.unwrap();
    let progress = json!({"steps": [{"name": "clean", "status": "running"}]});
    q.update_manifest(&id, "w", &progress).await.unwrap();
    assert!(matches!(
        q.update_manifest("nope", "w", &progress).await,
        Err(QueueError::NotFound(_))
    ));
    // Only the worker holding the run writes its live progress.
    assert!(matches!(
        q.update_manifest(&id, "other", &json!({"steps": []})).await,
        Err(QueueError::LeaseLost { .. })
    ));
    assert_eq!(q.cursor_get("poll:a").await.unwrap(), None);
    q.cursor_set("poll:a", "incoming/0001.csv").await.unwrap();
    q.cursor_set("poll:a", "incoming/0002.csv").await.unwrap();
    q.cursor_set("seen\0b", "k\0v\\0").await.unwrap(); // NUL and backslashes survive
    q.close().await;

    let q = open(&url).await; // migrations are idempotent
    assert_eq!(q.get(&id).await.unwrap().unwrap().manifest, Some(progress));
    assert_eq!(
        q.cursor_get("poll:a").await.unwrap().as_deref(),
        Some("incoming/0002.csv")
    );
    assert_eq!(
        q.cursor_get("seen\0b").await.unwrap().as_deref(),
        Some("k\0v\\0")
    );
    let c = q.counts().await.unwrap();
    assert_eq!(
        (c.queued, c.running, c.succeeded, c.failed, c.cancelled),
        (1, 1, 0, 0, 0)
    );
    assert_eq!(c.get(Status::Running), 1);
}

async fn sequencers_order_enqueues_per_key_and_survive_reopen(url: String) {
    let q = open(&url).await;
    let newer = new_id(&q, &seq_req("a", "in/k.csv", "b", Some("0A"))).await;
    let superseded_by = |run: &str, seq: &str| Enqueued::Superseded {
        newer_run: run.to_string(),
        newer_sequencer: seq.to_string(),
    };
    // An older event for the same key, arriving late: not queued.
    assert_eq!(
        q.enqueue(&seq_req("a", "in/k.csv", "a", Some("09")), 3)
            .await
            .unwrap(),
        superseded_by(&newer, "A")
    );
    // The newest delivered again is a duplicate (also when written with leading zeros).
    assert_eq!(
        q.enqueue(&seq_req("a", "in/k.csv", "b", Some("000a")), 3)
            .await
            .unwrap(),
        Enqueued::Duplicate(newer.clone())
    );
    // An equal sequencer on another version is left to the dedup key: a new run.
    let equal = new_id(&q, &seq_req("a", "in/k.csv", "c", Some("0A"))).await;
    // Keys, buckets' keys and projects are ordered independently.
    new_id(&q, &seq_req("a", "in/other.csv", "a", Some("01"))).await;
    new_id(&q, &seq_req("b", "in/k.csv", "a", Some("01"))).await;
    // No sequencer, or one that is not hex: not ordered.
    new_id(&q, &seq_req("a", "in/k.csv", "d", None)).await;
    new_id(&q, &seq_req("a", "in/k.csv", "e", Some("not-hex"))).await;
    // An event admitted before a newer one, delivered again, is a duplicate, not superseded.
    let first = new_id(&q, &seq_req("a", "in/late.csv", "x", Some("01"))).await;
    new_id(&q, &seq_req("a", "in/late.csv", "y", Some("02"))).await;
    assert_eq!(
        q.enqueue(&seq_req("a", "in/late.csv", "x", Some("01")), 3)
            .await
            .unwrap(),
        Enqueued::Duplicate(first)
    );
    q.close().await;

    // The newest sequencer per key is durable.
    let q = open(&url).await;
    assert_eq!(
        q.enqueue(&seq_req("a", "in/k.csv", "f", Some("05")), 3)
            .await
            .unwrap(),
        superseded_by(&newer, "A")
    );
    let newest = new_id(&q, &seq_req("a", "in/k.csv", "g", Some("10"))).await;
    assert_eq!(
        q.enqueue(&seq_req("a", "in/k.csv", "h", Some("0F")), 3)
            .await
            .unwrap(),
        superseded_by(&newest, "10")
    );
    let runs = q.list(&RunFilter::default()).await.unwrap();
    assert_eq!(runs.len(), 9, "{runs:#?}");
    assert!(runs.iter().any(|r| r.id == equal));
    let etags: Vec<&str> = runs
        .iter()
        .filter(|r| r.trigger.as_ref().is_some_and(|t| t.key == "in/k.csv") && r.project == "a")
        .filter_map(|r| r.trigger.as_ref()?.etag.as_deref())
        .collect();
    // Newest first: `a`, `f` and `h` never ran.
    assert_eq!(etags, ["g", "e", "d", "c", "b"]);
}

async fn concurrent_servers_admit_only_increasing_sequencers(url: String) {
    // Eight "servers" (each its own pool) take 48 events for one key, in scrambled orders.
    let q = open(&url).await; // migrate once before the race
    let mut tasks = Vec::new();
    for t in 0..8u32 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let q = Queue::open(&url).await.unwrap();
            let mut outcomes = Vec::new();
            for i in 0..6u32 {
                let n = (i * 8 + t) * 29 % 48 + 1; // a permutation of 1..=48
                let req = seq_req("a", "in/k.csv", &format!("e{n}"), Some(&format!("{n:x}")));
                outcomes.push(q.enqueue(&req, 3).await.unwrap());
            }
            q.close().await;
            outcomes
        }));
    }
    let mut new = 0;
    let mut superseded = 0;
    for t in tasks {
        for o in t.await.unwrap() {
            match o {
                Enqueued::New(_) => new += 1,
                Enqueued::Superseded { .. } => superseded += 1,
                Enqueued::Duplicate(_) => panic!("no event was delivered twice"),
            }
        }
    }
    assert_eq!(new + superseded, 48);
    // In the order they were queued, the admitted events' sequencers strictly increase, and
    // the newest event always runs.
    let mut runs = q.list(&RunFilter::default()).await.unwrap();
    runs.reverse();
    let seqs: Vec<u32> = runs
        .iter()
        .map(|r| {
            let s = r.trigger.as_ref().unwrap().sequencer.as_deref().unwrap();
            u32::from_str_radix(s, 16).unwrap()
        })
        .collect();
    assert_eq!(seqs.len(), new);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(seqs.last(), Some(&48));
}

/// Pruning forgets keys whose last event is older than the cut-off, and only those: an old
/// event for a forgotten key is then taken as the first for it.
async fn pruned_sequencers_are_forgotten_and_recent_ones_kept(url: String) {
    let q = open(&url).await;
    new_id(&q, &seq_req("a", "in/old.csv", "b", Some("0A"))).await;
    assert_eq!(
        q.prune_sequencers(Duration::from_secs(3600)).await.unwrap(),
        0
    );
    // Still ordered: the older event is superseded.
    assert!(matches!(
        q.enqueue(&seq_req("a", "in/old.csv", "a", Some("09")), 3)
            .await
            .unwrap(),
        Enqueued::Superseded { .. }
    ));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    new_id(&q, &seq_req("a", "in/recent.csv", "b", Some("0A"))).await;
    // Forget what is older than 1 s: in/old.csv only.
    assert_eq!(q.prune_sequencers(Duration::from_secs(1)).await.unwrap(), 1);
    new_id(&q, &seq_req("a", "in/old.csv", "a2", Some("09"))).await;
    assert!(matches!(
        q.enqueue(&seq_req("a", "in/recent.csv", "a", Some("09")), 3)
            .await
            .unwrap(),
        Enqueued::Superseded { .. }
    ));
}

async fn attempt_handles_are_stored_with_the_attempt(url: String) {
    let q = open(&url).await;
    let id = new_id(&q, &plain_req("a", Some("h"))).await;
    let handle = json!({"executor": "docker", "run_id": id, "attempt": 1, "id": "nbpipe-x-1"});
    assert!(
        !q.set_attempt_handle(&id, 1, &handle).await.unwrap(),
        "not claimed yet"
    );
    q.claim("w", &roomy(), LEASE).await.unwrap().unwrap();
    assert_eq!(q.attempts(&id).await.unwrap()[0].handle, None);
    assert!(q.set_attempt_handle(&id, 1, &handle).await.unwrap());
    assert_eq!(q.attempts(&id).await.unwrap()[0].handle, Some(handle));
}

backend_cases!(
    attempt_handles_are_stored_with_the_attempt,
    pruned_sequencers_are_forgotten_and_recent_ones_kept,
    sequencers_order_enqueues_per_key_and_survive_reopen,
    concurrent_servers_admit_only_increasing_sequencers,
    enqueue_dedups_by_project_and_key,
    concurrent_enqueues_of_one_event_make_one_run,
    claim_is_fifo_and_honours_not_before,
    claim_respects_global_and_per_project_limits,
    concurrent_claims_never_exceed_the_limits,
    finish_retries_with_backoff_until_max_attempts,
    cancel_queued_now_and_running_through_the_worker,
    rerun_copies_the_request_under_a_new_identity,
    list_filters_and_pages_newest_first,
    expired_leases_are_recovered_once,
    release_hands_a_run_back_without_counting_it,
    manifest_counts_and_cursors_persist_across_reopen,
);

#[test]
fn sqlite_file_is_durable_and_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let q = open(&url).await;
        assert_eq!(q.backend(), "sqlite");
        q.close().await;
        assert!(matches!(
            Queue::open("mysql://h/db").await,
            Err(QueueError::BadUrl(_))
        ));
    });
    let path = dir.path().join("p/.nbpipe/queue.sqlite");
    let header = std::fs::read(&path).unwrap();
    // Bytes 18/19 of the header are 2 in WAL mode.
    assert_eq!((header[18], header[19]), (2, 2), "not in WAL mode");
    assert_eq!(
        Queue::default_path(Path::new("/p")),
        PathBuf::from("/p/.nbpipe/queue.sqlite")
    );
}
