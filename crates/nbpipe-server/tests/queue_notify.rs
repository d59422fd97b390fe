//! Run notifications in the queue database (`queue::notify`), on SQLite and on a throwaway
//! PostgreSQL cluster: which final updates leave an outbox row, how streaks make recoveries
//! and rate limits hold failures back, and how deliveries are claimed, retried and given up.

#[macro_use]
mod queue_support;

use std::time::Duration;

use nbpipe_notify::{Event, Message};
use nbpipe_project::{NotifyEvent, NotifyKind, NotifyTarget};
use nbpipe_server::queue::{Enqueued, Queue};
use queue_support::*;

fn webhook(key: &str, on: &[NotifyEvent], rate_limit: Option<Duration>) -> NotifyTarget {
    NotifyTarget {
        on: on.to_vec(),
        kind: NotifyKind::Webhook {
            url: "http://127.0.0.1:9/hook".into(),
            secret_env: None,
        },
        rate_limit,
        key: key.into(),
    }
}

/// Runs project `p` once to the end: `ok` succeeded, else failed (no retry).
async fn finished_run(q: &Queue, project: &str, ok: bool) -> String {
    let id = match q.enqueue(&plain_req(project, None), 1).await.unwrap() {
        Enqueued::New(id) => id,
        d => panic!("{d:?}"),
    };
    let claimed = q.claim("w", &roomy(), LEASE).await.unwrap().unwrap();
    assert_eq!(claimed.run.id, id);
    q.finish(&id, "w", if ok { succeeded() } else { failed(false) })
        .await
        .unwrap();
    id
}

/// Plans every outbox row of `p` for `targets`; returns the deliveries queued per row.
async fn plan_all(q: &Queue, p: &str, targets: &[NotifyTarget]) -> Vec<usize> {
    let mut out = Vec::new();
    for item in q.notify_outbox(&[p.to_string()], 100).await.unwrap() {
        let base = Message::for_run(p, None, &item.run_id, &item.status, None, None);
        out.push(
            q.plan_notifications(&item, "", targets, &base)
                .await
                .unwrap(),
        );
    }
    out
}

async fn final_outcomes_leave_one_outbox_row_and_retries_and_cancels_none(url: String) {
    let q = open(&url).await;
    no_interrupted_retries(&q, "p").await;
    // A failed attempt that is retried: nothing yet; its final success: one row.
    let retried = new_id(&q, &plain_req("p", Some("retried"))).await;
    q.claim("w", &roomy(), LEASE).await.unwrap().unwrap();
    q.finish(&retried, "w", failed(true)).await.unwrap();
    assert!(q.notify_outbox(&["p".into()], 10).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(1100)).await; // the retry's backoff
    q.claim("w", &roomy(), LEASE).await.unwrap().unwrap();
    q.finish(&retried, "w", succeeded()).await.unwrap();
    // A cancelled run: nothing.
    let cancelled = new_id(&q, &plain_req("p", Some("cancelled"))).await;
    q.cancel(&cancelled).await.unwrap();
    // A run whose worker died with no attempt left is failed by recovery: one row.
    let lost = match q.enqueue(&plain_req("p", Some("lost")), 1).await.unwrap() {
        Enqueued::New(id) => id,
        d => panic!("{d:?}"),
    };
    q.claim("dead", &roomy(), Duration::from_millis(300))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(q.recover("me").await.unwrap().failed, vec![lost.clone()]);
    let rows = q.notify_outbox(&["p".into()], 10).await.unwrap();
    let got: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.run_id.as_str(), r.status.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![(retried.as_str(), "succeeded"), (lost.as_str(), "failed")]
    );
    // Another server's projects are not ours to plan.
    assert!(q
        .notify_outbox(&["other".into()], 10)
        .await
        .unwrap()
        .is_empty());
}

async fn streaks_make_recoveries_and_rate_limits_hold_failures_back(url: String) {
    let q = open(&url).await;
    let targets = [
        webhook(
            "notify[0]",
            &[NotifyEvent::Failure, NotifyEvent::Recovery],
            Some(Duration::from_secs(3600)),
        ),
        webhook("notify[1]", &[NotifyEvent::Success], None),
    ];
    let f1 = finished_run(&q, "p", false).await;
    for _ in 0..2 {
        finished_run(&q, "p", false).await;
    }
    // The first failure goes to the failure target; the next two are held back.
    assert_eq!(plan_all(&q, "p", &targets).await, vec![1, 0, 0]);
    let d = q.deliveries(&f1).await.unwrap();
    assert_eq!(
        (d[0].event.as_str(), d[0].target.as_str()),
        ("failure", "notify[0]")
    );
    assert_eq!(
        (d[0].status.as_str(), d[0].kind.as_str()),
        ("pending", "webhook")
    );
    assert_eq!(d[0].destination, "http://127.0.0.1:9");
    // A success after them is a recovery for both targets, carrying the count.
    let s1 = finished_run(&q, "p", true).await;
    assert_eq!(plan_all(&q, "p", &targets).await, vec![2]);
    let due = q.claim_deliveries(10).await.unwrap();
    let recoveries: Vec<&Message> = due
        .iter()
        .map(|d| &d.message)
        .filter(|m| m.run_id == s1)
        .collect();
    assert_eq!(recoveries.len(), 2);
    for m in recoveries {
        assert_eq!(m.event, Event::Recovery);
        assert_eq!(m.failures_before, Some(3));
    }
    let with_count = due
        .iter()
        .find(|d| d.message.run_id == s1 && d.message.held_back.is_some());
    assert_eq!(
        with_count
            .unwrap()
            .message
            .held_back
            .as_ref()
            .unwrap()
            .count,
        2
    );
    // A success after a success: only the success target hears it.
    let s2 = finished_run(&q, "p", true).await;
    assert_eq!(plan_all(&q, "p", &targets).await, vec![1]);
    let d = q.deliveries(&s2).await.unwrap();
    assert_eq!(
        (d[0].event.as_str(), d[0].target.as_str()),
        ("success", "notify[1]")
    );
    // The success ended the window: the next failure is told at once.
    finished_run(&q, "p", false).await;
    assert_eq!(plan_all(&q, "p", &targets).await, vec![1]);
}

async fn a_window_that_ends_with_failures_held_back_queues_one_digest(url: String) {
    let q = open(&url).await;
    let targets = [webhook(
        "notify[0]",
        &[NotifyEvent::Failure],
        Some(Duration::from_millis(500)),
    )];
    for _ in 0..3 {
        finished_run(&q, "p", false).await;
    }
    assert_eq!(plan_all(&q, "p", &targets).await, vec![1, 0, 0]);
    let projects = vec!["p".to_string()];
    let env_of = |_: &str| String::new();
    let t = targets[0].clone();
    let target_of = move |_: &str, key: &str| (key == t.key).then(|| t.clone());
    let base = |p: &str, r: &str| Message::for_run(p, None, r, "failed", None, None);
    // A success does not drop what a failure-only target still has to be told.
    finished_run(&q, "p", true).await;
    assert_eq!(plan_all(&q, "p", &targets).await, vec![0]);
    // Not before the window ends.
    assert_eq!(
        q.plan_digests(&projects, &env_of, &target_of, &base)
            .await
            .unwrap(),
        0
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(q.held_back_runs().await.unwrap().len(), 1);
    assert_eq!(
        q.plan_digests(&projects, &env_of, &target_of, &base)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        q.plan_digests(&projects, &env_of, &target_of, &base)
            .await
            .unwrap(),
        0,
        "once"
    );
    let digest = q
        .claim_deliveries(10)
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.message.event == Event::Digest)
        .expect("a digest");
    assert_eq!(digest.message.held_back.as_ref().unwrap().count, 2);
}

async fn deliveries_are_leased_backed_off_and_given_up(url: String) {
    let q = open(&url).await;
    let targets = [webhook("notify[0]", &[NotifyEvent::Failure], None)];
    let id = finished_run(&q, "p", false).await;
    assert_eq!(plan_all(&q, "p", &targets).await, vec![1]);
    let due = q.claim_deliveries(10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert!(
        q.claim_deliveries(10).await.unwrap().is_empty(),
        "leased to its sender"
    );
    q.record_delivery(&due[0].id, Some("connection refused"), false)
        .await
        .unwrap();
    let d = &q.deliveries(&id).await.unwrap()[0];
    assert_eq!((d.status.as_str(), d.attempts), ("pending", 1));
    assert_eq!(d.last_error.as_deref(), Some("connection refused"));
    assert!(d.next_at.is_some());
    assert!(
        q.claim_deliveries(10).await.unwrap().is_empty(),
        "backing off 1 s"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = q.claim_deliveries(10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 1);
    q.record_delivery(&again[0].id, Some("HTTP 404: no such hook"), true)
        .await
        .unwrap();
    let d = &q.deliveries(&id).await.unwrap()[0];
    assert_eq!((d.status.as_str(), d.attempts), ("failed", 2));
    assert!(d.gave_up_at.is_some() && d.next_at.is_none());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(q.claim_deliveries(10).await.unwrap().is_empty(), "given up");
}

backend_cases!(
    final_outcomes_leave_one_outbox_row_and_retries_and_cancels_none,
    streaks_make_recoveries_and_rate_limits_hold_failures_back,
    a_window_that_ends_with_failures_held_back_queues_one_digest,
    deliveries_are_leased_backed_off_and_given_up,
);
