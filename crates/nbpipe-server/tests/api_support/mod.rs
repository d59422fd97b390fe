//! Shared by the API test binaries (`api.rs`: runs, projects, events and reports;
//! `api_access.rs`: tokens, origins, hooks and listening): a router over a real queue on a
//! temporary SQLite file with two projects, and request helpers (`tower::ServiceExt::oneshot`,
//! no sockets).
#![allow(dead_code)] // each test binary uses a part

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use nbpipe_server::api::{self, AppState, HookSink, ProjectInfo};
use nbpipe_server::event::{ObjectEvent, RunRequest};
use nbpipe_server::intake::Submitted;
use nbpipe_server::policy::EffectivePolicy;
use nbpipe_server::queue::Queue;
use serde_json::{json, Value};
use tower::ServiceExt;

pub const TOKEN: &str = "t0ken-for-tests";

pub struct Fixture {
    pub app: Router,
    pub queue: Queue,
    pub hooked: Arc<Mutex<Vec<ObjectEvent>>>,
    pub _dir: tempfile::TempDir,
}

impl Fixture {
    /// A queued run of project `daily` (one attempt allowed); its id.
    pub async fn queued_run(&self) -> String {
        let req = RunRequest {
            project: "daily".into(),
            trigger: None,
            parameters: json!({}),
            dedup_key: None,
            reason: "api".into(),
        };
        let queued = self.queue.enqueue(&req, 1).await.unwrap();
        queued.run_id().to_string()
    }
}

pub async fn fixture(token: Option<&str>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::open(dir.path().join("queue.sqlite").to_str().unwrap())
        .await
        .unwrap();
    let hooked = Arc::new(Mutex::new(Vec::new()));
    let sink = hooked.clone();
    let q = queue.clone();
    // Like the server's intake: every event starts a run of `churn`, deduplicated.
    let hooks: HookSink = Arc::new(move |events: Vec<ObjectEvent>| {
        let sink = sink.clone();
        let q = q.clone();
        Box::pin(async move {
            let mut done = Submitted::default();
            for ev in events {
                let req = RunRequest {
                    project: "churn".into(),
                    trigger: Some(ev.clone()),
                    parameters: json!({}),
                    dedup_key: Some(ev.dedup_key()),
                    reason: format!("s3 {}", ev.key),
                };
                if let nbpipe_server::queue::Enqueued::New(_) =
                    q.enqueue(&req, 1).await.map_err(|e| e.to_string())?
                {
                    done.queued += 1;
                } else {
                    done.duplicates += 1;
                }
                sink.lock().unwrap().push(ev);
            }
            Ok(done)
        })
    });
    let projects = vec![
        ProjectInfo {
            name: "daily".into(),
            environment: None,
            dir: dir.path().join("daily"),
            triggers: vec!["schedule 0 6 * * * (UTC)".into()],
            max_attempts: 2,
            policy: policy_of(
                "notebooks: [a.ipynb]\nserve: {concurrency: 2, retries: 1, retry_backoff: 30s, timeout: 1h}\n",
            ),
            steps: vec![],
            source: None,
        },
        ProjectInfo {
            name: "churn".into(),
            environment: None,
            dir: dir.path().join("churn"),
            triggers: vec!["s3 incoming/sales/*.csv".into()],
            max_attempts: 1,
            policy: policy_of("notebooks: [a.ipynb]\n"),
            steps: vec![],
            source: None,
        },
    ];
    let app = api::router(AppState {
        queue: queue.clone(),
        projects: projects.into(),
        git: None,
        token: token.map(str::to_string),
        hooks,
        intake: Default::default(),
        allowed_hosts: vec![],
    });
    Fixture {
        app,
        queue,
        hooked,
        _dir: dir,
    }
}

/// The effective run policy of a project whose nbpipe.yaml is `yaml` (one notebook,
/// `a.ipynb`), on a server whose `--per-project` is 1.
pub fn policy_of(yaml: &str) -> EffectivePolicy {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.ipynb"), "{}").unwrap();
    let project = nbpipe_project::parse(dir.path(), "nbpipe.yaml", yaml).unwrap();
    nbpipe_server::policy::effective(&project, 1)
}

pub fn req(method: Method, uri: &str, token: Option<&str>, body: Option<Value>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    match body {
        Some(v) => b
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(v.to_string()))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    }
}

pub async fn send(app: &Router, r: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let resp = app.clone().oneshot(r).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, headers, body.to_vec())
}

pub async fn json_of(app: &Router, r: Request<Body>) -> (StatusCode, Value) {
    let (s, _, b) = send(app, r).await;
    let v =
        serde_json::from_slice(&b).unwrap_or_else(|_| json!({"raw": String::from_utf8_lossy(&b)}));
    (s, v)
}

pub fn s3_body(raw_key: &str) -> Value {
    json!({"Records": [{
        "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "incoming"},
               "object": {"key": raw_key, "eTag": "\"e1\"", "size": 3}}}]})
}
