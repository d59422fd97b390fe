//! SQS intake against a real SQS API (moto's server, one per test): S3 → SQS notifications
//! with URL-encoded keys and the leading `s3:TestEvent`, S3 → EventBridge → SQS events,
//! "delete only after queued", events superseded by a newer one for their key (deleted, never
//! run), and `AWS_ENDPOINT_URL`.
//!
//! Needs the `sqs` feature and `moto_server` in the test environment:
//! `uv pip install --python $NBPIPE_TEST_ENV/bin/python 'moto[server]'`.
#![cfg(feature = "sqs")]

#[path = "common/moto.rs"]
mod moto;
#[path = "common/sqs.rs"]
mod sqs;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::Client;
use moto::Moto;
use nbpipe_server::event::{ObjectEvent, Source};
use nbpipe_server::intake::routing::Route;
use nbpipe_server::intake::sqs::SqsIntake;
use nbpipe_server::intake::MemorySink;
use nbpipe_server::queue::{Queue, RunFilter};
use nbpipe_server::serve::QueueSink;
use sqs::{client, options};

/// Receive until `n` events were submitted (or 30 s passed).
async fn receive_events(intake: &SqsIntake, sink: &MemorySink, n: usize) -> Vec<ObjectEvent> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        intake.receive_once(sink).await.unwrap();
        got.extend(sink.take());
    }
    got
}

async fn queue_len(client: &Client, queue_url: &str) -> usize {
    let attrs = client
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let a = attrs.attributes.unwrap_or_default();
    let count = |name: aws_sdk_sqs::types::QueueAttributeName| -> usize {
        a.get(&name).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        + count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
}

#[tokio::test]
async fn s3_notifications_are_decoded_queued_and_deleted() {
    let moto = Moto::start();
    let queue = moto.s3_to_sqs("incoming", "intake");
    moto.put("incoming", "in/a b.csv", "1");
    moto.put("incoming", "in/x+y:z.csv", "2");
    let intake = SqsIntake::with_client(client(&moto), options(&queue));
    let sink = MemorySink::new();
    let events = receive_events(&intake, &sink, 2).await;
    let mut keys: Vec<&str> = events.iter().map(|e| e.key.as_str()).collect();
    keys.sort();
    assert_eq!(keys, ["in/a b.csv", "in/x+y:z.csv"]);
    assert!(events.iter().all(|e| e.bucket == "incoming"
        && e.source == Source::Sqs
        && e.etag.as_deref().is_some_and(|t| !t.contains('"'))
        && e.event_name.starts_with("ObjectCreated:")));
    // Everything handled (the test event too) was deleted.
    assert_eq!(queue_len(&client(&moto), &queue).await, 0);
}

#[tokio::test]
async fn refused_events_stay_on_the_queue_until_queued() {
    let moto = Moto::start();
    let queue = moto.s3_to_sqs("incoming", "intake");
    // Drain the test event first.
    let intake = SqsIntake::with_client(client(&moto), options(&queue));
    let sink = MemorySink::new();
    while intake.receive_once(&sink).await.unwrap().received > 0 {}
    moto.put("incoming", "in/a.csv", "1");

    sink.fail_next(1);
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        let b = intake.receive_once(&sink).await.unwrap();
        if b.received > 0 || Instant::now() > deadline {
            break b;
        }
    };
    assert_eq!(
        (first.received, first.kept, first.deleted),
        (1, 1, 0),
        "{first:?}"
    );
    assert!(sink.take().is_empty());
    assert_eq!(queue_len(&client(&moto), &queue).await, 1);

    // After the visibility timeout it comes back and is queued, then deleted.
    let events = receive_events(&intake, &sink, 1).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].key, "in/a.csv");
    assert_eq!(queue_len(&client(&moto), &queue).await, 0);
}

#[tokio::test]
async fn eventbridge_events_and_bad_bodies_on_the_queue() {
    let moto = Moto::start();
    let client = client(&moto);
    let queue = client
        .create_queue()
        .queue_name("bridge")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let event = serde_json::json!({
        "version": "0", "id": "1", "detail-type": "Object Created", "source": "aws.s3",
        "account": "123456789012", "time": "2024-05-02T10:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:s3:::incoming"],
        "detail": {"version": "0", "bucket": {"name": "incoming"},
            "object": {"key": "in/a+b%2F.csv", "size": 3, "etag": "abc", "sequencer": "01"},
            "reason": "PutObject"}
    });
    for body in [event.to_string(), "not json".to_string()] {
        client
            .send_message()
            .queue_url(&queue)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    let intake = SqsIntake::with_client(client.clone(), options(&queue));
    let sink = MemorySink::new();
    let mut kept = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut events = Vec::new();
    while (events.is_empty() || kept.is_empty()) && Instant::now() < deadline {
        let b = intake.receive_once(&sink).await.unwrap();
        kept.extend(b.errors);
        events.extend(sink.take());
    }
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].key, "in/a+b%2F.csv",
        "EventBridge keys are verbatim"
    );
    assert!(kept[0].contains("not valid JSON"), "{kept:?}");
    // The bad body stays for the dead-letter queue; the event's message is gone.
    assert_eq!(queue_len(&client, &queue).await, 1);
}

#[tokio::test]
async fn from_env_honours_aws_endpoint_url() {
    let moto = Moto::start();
    let queue = moto.s3_to_sqs("incoming", "intake");
    moto.put("incoming", "in/env.csv", "1");
    // The only test in this binary that configures through the environment.
    for (name, value) in moto.aws_env() {
        std::env::set_var(name, value);
    }
    let intake = SqsIntake::from_env(options(&queue)).await;
    let sink = MemorySink::new();
    let events = receive_events(&intake, &sink, 1).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].key, "in/env.csv");
}

/// S3 → EventBridge → SQS, all in moto: the bucket's `EventBridgeConfiguration`, a rule on
/// `Object Created` for the bucket with the queue as target. Keys arrive verbatim, and two
/// uploads of one key are two versions (moto gives both the same sequencer and version `null`:
/// the ETag tells them apart).
#[tokio::test]
async fn s3_eventbridge_sqs_events_reach_the_intake() {
    let moto = Moto::start();
    let queue = moto.s3_to_eventbridge_to_sqs("incoming", "bridge");
    moto.put("incoming", "in/a b+c%2F.csv", "1");
    moto.put("incoming", "in/a b+c%2F.csv", "22");
    // Another bucket sending to EventBridge: the rule (bucket `incoming`) does not match it.
    moto.boto(
        "s3.create_bucket(Bucket='elsewhere')\n\
         s3.put_bucket_notification_configuration(Bucket='elsewhere',\n\
             NotificationConfiguration={'EventBridgeConfiguration': {}})\n\
         s3.put_object(Bucket='elsewhere', Key='in/x.csv', Body=b'1')",
        &[],
    );
    let intake = SqsIntake::with_client(client(&moto), options(&queue));
    let sink = MemorySink::new();
    let events = receive_events(&intake, &sink, 2).await;
    assert_eq!(events.len(), 2, "{events:#?}");
    for e in &events {
        assert_eq!(e.bucket, "incoming");
        assert_eq!(e.key, "in/a b+c%2F.csv", "EventBridge keys are verbatim");
        assert_eq!(e.event_name, "Object Created");
        assert!(e.etag.is_some() && e.sequencer.is_some(), "{e:?}");
    }
    let mut sizes: Vec<Option<u64>> = events.iter().map(|e| e.size).collect();
    sizes.sort();
    assert_eq!(sizes, [Some(1), Some(2)]);
    assert_ne!(events[0].dedup_key(), events[1].dedup_key());
    assert_eq!(queue_len(&client(&moto), &queue).await, 0);
}

/// Receive until the queue is empty (or 30 s passed).
async fn drain(intake: &SqsIntake, sink: &QueueSink, moto: &Moto, queue: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while moto.queue_len(queue) > 0 {
        assert!(Instant::now() < deadline, "the queue was not drained");
        let batch = intake.receive_once(sink).await.unwrap();
        assert!(batch.errors.is_empty(), "{batch:?}");
    }
}

/// An event older (by sequencer) than one already queued for its key is deleted from SQS and
/// never run; in order, both run. The order is kept in the run database, so it also holds
/// for a new intake on a reopened database.
#[tokio::test]
async fn superseded_messages_are_deleted_and_never_run() {
    let moto = Moto::start();
    let queue = moto.boto(
        "print(sqs.create_queue(QueueName='ordered')['QueueUrl'])",
        &[],
    );
    let record = |key: &str, etag: &str, seq: &str| {
        serde_json::json!({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "incoming"},
                   "object": {"key": key, "eTag": etag, "size": 1, "sequencer": seq}}}]})
        .to_string()
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("queue.sqlite").display().to_string();
    let open_sink = |q: Queue| {
        QueueSink::new(
            q,
            vec![Route::new("churn", "incoming", "in/", None)],
            Default::default(),
            Arc::new(tokio::sync::Notify::new()),
        )
    };
    let q = Queue::open(&db).await.unwrap();
    let sink = open_sink(q.clone());
    let intake = SqsIntake::with_client(client(&moto), options(&queue));
    // One message at a time: SQS does not promise delivery order.
    for (key, etag, seq) in [
        ("in/new-then-old.csv", "b", "0055AED6DCD90281F0"),
        ("in/new-then-old.csv", "a", "0055AED6DCD90281E5"),
        ("in/old-then-new.csv", "a", "01"),
        ("in/old-then-new.csv", "b", "02"),
    ] {
        moto.send(&queue, &record(key, etag, seq));
        drain(&intake, &sink, &moto, &queue).await;
    }
    let runs_of = |runs: &[nbpipe_server::queue::RunRow], key: &str| {
        runs.iter()
            .filter(|r| r.trigger.as_ref().is_some_and(|t| t.key == key))
            .count()
    };
    let runs = q.list(&RunFilter::default()).await.unwrap();
    assert_eq!(runs_of(&runs, "in/new-then-old.csv"), 1);
    assert_eq!(runs_of(&runs, "in/old-then-new.csv"), 2);
    assert_eq!(
        sink.counters().superseded(),
        [("churn".to_string(), "sqs", 1)]
    );
    q.close().await;

    // Restarted: an older event for a key is still refused, and still deleted.
    let q = Queue::open(&db).await.unwrap();
    let sink = open_sink(q.clone());
    moto.send(&queue, &record("in/old-then-new.csv", "c", "01"));
    drain(&intake, &sink, &moto, &queue).await;
    let runs = q.list(&RunFilter::default()).await.unwrap();
    assert_eq!(runs.len(), 3);
    assert_eq!(sink.counters().superseded()[0].2, 1);
    assert!(runs
        .iter()
        .all(|r| r.trigger.as_ref().unwrap().source == Source::Sqs));
}
