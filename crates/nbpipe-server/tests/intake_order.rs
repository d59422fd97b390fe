//! Per-key ordering of object events through intake, against real databases: webhook bodies
//! through the HTTP router and EventBridge bodies through the queue sink, both carrying S3
//! sequencers, delivered out of order and across a "restart" (the queue closed and opened
//! again, with a new sink and router). Each case runs on SQLite and on PostgreSQL (see
//! `queue_support`).

#[macro_use]
mod queue_support;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use nbpipe_server::api::{self, AppState, HookSink};
use nbpipe_server::event::{ObjectEvent, Source};
use nbpipe_server::intake::notify;
use nbpipe_server::intake::routing::Route;
use nbpipe_server::queue::{Queue, RunFilter, RunRow};
use nbpipe_server::serve::QueueSink;
use serde_json::{json, Value};
use tower::ServiceExt;

/// What `nbpipe serve` wires: a queue sink routing `incoming/in/*` to project `churn`, and the
/// router whose webhook hands events to it and whose `/metrics` shows its counters.
struct Server {
    queue: Queue,
    sink: Arc<QueueSink>,
    app: Router,
}

impl Server {
    async fn start(url: &str) -> Server {
        let queue = queue_support::open(url).await;
        let sink = Arc::new(QueueSink::new(
            queue.clone(),
            vec![Route::new("churn", "incoming", "in/", None)],
            Default::default(),
            Arc::new(tokio::sync::Notify::new()),
        ));
        let hook_sink = sink.clone();
        let hooks: HookSink = Arc::new(move |events: Vec<ObjectEvent>| {
            let sink = hook_sink.clone();
            Box::pin(async move { sink.submit_events(&events).await.map_err(|e| e.to_string()) })
        });
        let app = api::router(AppState {
            queue: queue.clone(),
            projects: vec![].into(),
            git: None,
            token: None,
            hooks,
            intake: sink.counters(),
            allowed_hosts: vec![],
        });
        Server { queue, sink, app }
    }

    /// `POST /hooks/s3` with an S3 `Records[]` body for `key` version `etag`, sequencer `seq`.
    async fn hook(&self, key: &str, etag: &str, seq: &str) -> Value {
        let body = json!({"Records": [{
            "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "incoming"},
                   "object": {"key": key, "eTag": etag, "size": 3, "sequencer": seq}}}]});
        let r = Request::builder()
            .method(Method::POST)
            .uri("/hooks/s3")
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let resp = self.app.clone().oneshot(r).await.unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    /// An EventBridge `Object Created` event, as read from SQS, handed to the sink.
    async fn bridge(&self, key: &str, etag: &str, seq: &str) -> (usize, usize) {
        let body = json!({
            "version": "0", "id": "1", "detail-type": "Object Created", "source": "aws.s3",
            "account": "123456789012", "time": "2024-05-02T10:00:00Z", "region": "us-east-1",
            "resources": ["arn:aws:s3:::incoming"],
            "detail": {"version": "0", "bucket": {"name": "incoming"},
                "object": {"key": key, "size": 3, "etag": etag, "sequencer": seq},
                "reason": "PutObject"}});
        let events = notify::parse(body.to_string().as_bytes(), Source::Sqs).unwrap();
        let done = self.sink.submit_events(&events).await.unwrap();
        (done.queued, done.superseded.len())
    }

    async fn metrics(&self) -> String {
        let r = Request::get("/metrics").body(Body::empty()).unwrap();
        let resp = self.app.clone().oneshot(r).await.unwrap();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    async fn runs(&self, key: &str) -> Vec<RunRow> {
        let all = self.queue.list(&RunFilter::default()).await.unwrap();
        all.into_iter()
            .filter(|r| r.trigger.as_ref().is_some_and(|t| t.key == key))
            .collect()
    }
}

async fn out_of_order_events_run_once_and_in_order_events_all_run(url: String) {
    let s = Server::start(&url).await;

    // Webhook, newer then older: one run; the older is acknowledged as superseded.
    let newer = s.hook("in/1.csv", "b", "0055AED6DCD90281F0").await;
    assert_eq!(
        (newer["queued"].as_u64(), newer["superseded"].as_u64()),
        (Some(1), Some(0))
    );
    let older = s.hook("in/1.csv", "a", "0055AED6DCD90281E5").await;
    assert_eq!(
        (older["queued"].as_u64(), older["superseded"].as_u64()),
        (Some(0), Some(1))
    );
    let runs = s.runs("in/1.csv").await;
    assert_eq!(runs.len(), 1);
    let by = &older["superseded_by"][0];
    assert_eq!(by["key"], "in/1.csv");
    assert_eq!(by["sequencer"], "0055AED6DCD90281E5");
    assert_eq!(by["newer_sequencer"], "55AED6DCD90281F0");
    assert_eq!(by["newer_run"], runs[0].id.as_str());
    assert_eq!(runs[0].trigger.as_ref().unwrap().etag.as_deref(), Some("b"));

    // Webhook, older then newer: both run.
    s.hook("in/2.csv", "a", "01").await;
    let v = s.hook("in/2.csv", "b", "02").await;
    assert_eq!(v["queued"], 1);
    assert_eq!(s.runs("in/2.csv").await.len(), 2);

    // EventBridge (the SQS path's other shape): the sequencer is `detail.object.sequencer`.
    assert_eq!(s.bridge("in/3.csv", "b", "0B").await, (1, 0));
    assert_eq!(s.bridge("in/3.csv", "a", "0A").await, (0, 1));
    assert_eq!(s.bridge("in/3.csv", "b", "0B").await, (0, 0), "redelivery");
    assert_eq!(s.runs("in/3.csv").await.len(), 1);

    let m = s.metrics().await;
    assert!(
        m.contains("nbpipe_events_superseded_total{project=\"churn\",source=\"webhook\"} 1\n"),
        "{m}"
    );
    assert!(
        m.contains("nbpipe_events_superseded_total{project=\"churn\",source=\"sqs\"} 1\n"),
        "{m}"
    );

    // Newer before a restart, older after it: still superseded.
    s.hook("in/4.csv", "b", "20").await;
    s.queue.close().await;
    drop(s);
    let s = Server::start(&url).await;
    let v = s.hook("in/4.csv", "a", "1F").await;
    assert_eq!(
        (v["queued"].as_u64(), v["superseded"].as_u64()),
        (Some(0), Some(1))
    );
    let v = s.hook("in/1.csv", "c", "0055AED6DCD90281E6").await;
    assert_eq!(v["superseded"], 1, "{v}");
    assert_eq!(s.bridge("in/3.csv", "c", "09").await, (0, 1));
    // A newer one after the restart runs.
    assert_eq!(s.bridge("in/3.csv", "d", "0C").await, (1, 0));

    let per_key: Vec<usize> = futures::future::join_all(
        ["in/1.csv", "in/2.csv", "in/3.csv", "in/4.csv"].map(|k| s.runs(k)),
    )
    .await
    .iter()
    .map(Vec::len)
    .collect();
    assert_eq!(per_key, [1, 2, 2, 1]);
    // Counters are per process: the new one counted only its own.
    let m = s.metrics().await;
    assert!(
        m.contains("nbpipe_events_superseded_total{project=\"churn\",source=\"webhook\"} 2\n"),
        "{m}"
    );
}

async fn events_without_a_sequencer_are_not_ordered(url: String) {
    let s = Server::start(&url).await;
    s.hook("in/1.csv", "b", "02").await;
    // The same key from a folder or a poll (no sequencer): always taken, deduplicated only.
    let local = ObjectEvent {
        bucket: "incoming".into(),
        key: "in/1.csv".into(),
        etag: Some("a".into()),
        version_id: None,
        size: Some(3),
        sequencer: None,
        event_time: None,
        event_name: "ObjectCreated:Put".into(),
        source: Source::Poll,
        region: None,
        report_id: None,
        path: None,
    };
    let done = s.sink.submit_events(&[local]).await.unwrap();
    assert_eq!((done.queued, done.superseded.len()), (1, 0));
    assert_eq!(s.runs("in/1.csv").await.len(), 2);
}

backend_cases!(
    out_of_order_events_run_once_and_in_order_events_all_run,
    events_without_a_sequencer_are_not_ordered,
);
