//! Shared by the queue test binaries (`queue.rs`, `queue_crash.rs`): request builders, a
//! throwaway PostgreSQL cluster (`common/postgres.rs`), and `backend_cases!`, which runs each behaviour case (an
//! `async fn(url: String)` given a fresh, empty database) as its own SQLite test and all of
//! them again on PostgreSQL, one database each.
#![allow(dead_code)] // each test binary uses a part

use std::path::Path;
use std::time::{Duration, Instant};

use nbpipe_server::event::{ObjectEvent, RunRequest, Source};
use nbpipe_server::queue::{Backoff, Enqueued, Finish, Limits, Queue};
use serde_json::json;

#[path = "../common/postgres.rs"]
mod postgres;
use postgres::Postgres;

// ---------------------------------------------------------------------------------------
// helpers

pub fn event(key: &str, etag: &str) -> ObjectEvent {
    ObjectEvent {
        bucket: "data".into(),
        key: key.into(),
        etag: Some(etag.into()),
        version_id: None,
        size: Some(3),
        sequencer: None,
        event_time: None,
        event_name: "ObjectCreated:Put".into(),
        source: Source::Sqs,
        region: None,
        report_id: None,
        path: None,
    }
}

pub fn object_req(project: &str, key: &str) -> RunRequest {
    let ev = event(key, "e1");
    RunRequest {
        project: project.into(),
        dedup_key: Some(ev.dedup_key()),
        reason: format!("s3 {key}"),
        parameters: json!({"input": ev.uri()}),
        trigger: Some(ev),
    }
}

/// A request for object `key` version `etag` whose event carries S3 sequencer `seq`, routed
/// like the server routes it (dedup key = project + the event's identity).
pub fn seq_req(project: &str, key: &str, etag: &str, seq: Option<&str>) -> RunRequest {
    let ev = ObjectEvent {
        sequencer: seq.map(Into::into),
        ..event(key, etag)
    };
    RunRequest {
        project: project.into(),
        dedup_key: Some(format!("{project}\0{}", ev.dedup_key())),
        reason: format!("s3 {key}"),
        parameters: json!({}),
        trigger: Some(ev),
    }
}

pub fn plain_req(project: &str, dedup: Option<&str>) -> RunRequest {
    RunRequest {
        project: project.into(),
        trigger: None,
        parameters: json!({}),
        dedup_key: dedup.map(Into::into),
        reason: "api".into(),
    }
}

pub fn limits(global: usize, default_per_project: usize, per: &[(&str, usize)]) -> Limits {
    Limits {
        global,
        per_project: per.iter().map(|(p, n)| (p.to_string(), *n)).collect(),
        default_per_project,
    }
}

pub const LEASE: Duration = Duration::from_secs(60);
pub const BACKOFF: Backoff = Backoff {
    base: Duration::from_millis(300),
    max: Duration::from_secs(1),
};

pub async fn open(url: &str) -> Queue {
    Queue::open(url)
        .await
        .expect("open queue")
        .with_backoff(BACKOFF)
}

pub fn roomy() -> Limits {
    limits(100, 100, &[])
}

pub async fn new_id(q: &Queue, req: &RunRequest) -> String {
    match q.enqueue(req, 3).await.unwrap() {
        Enqueued::New(id) => id,
        other => panic!("expected a new run, got {other:?}"),
    }
}

pub async fn claim_id(q: &Queue, worker: &str, l: &Limits) -> Option<String> {
    q.claim(worker, l, LEASE).await.unwrap().map(|c| c.run.id)
}

/// `project` gets no retry of runs interrupted by the infrastructure (only its own attempts).
pub async fn no_interrupted_retries(q: &Queue, project: &str) {
    let policy = nbpipe_server::queue::ProjectPolicy {
        concurrency: None,
        backoff: None,
        interrupted_retries: Some(0),
    };
    q.set_project_policy(project, &policy).await.unwrap();
}

pub fn ok_manifest() -> serde_json::Value {
    json!({"steps": [{"name": "clean", "status": "succeeded"}]})
}

pub fn failed(retry: bool) -> Finish {
    Finish::Failed {
        error: "cell 3 raised ValueError".into(),
        output: vec!["file:///out/a.ipynb".into()],
        manifest: ok_manifest(),
        retry,
    }
}

pub fn succeeded() -> Finish {
    Finish::Succeeded {
        output: vec!["s3://out/run/a.ipynb".into(), "s3://out/run/a.html".into()],
        manifest: ok_manifest(),
    }
}

// ---------------------------------------------------------------------------------------
// backends

/// A SQLite URL in `dir`, in nested folders that do not exist yet (`open` creates them).
pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("p/.nbpipe/queue.sqlite").display())
}

/// A behaviour case: runs against the (empty) database at the URL.
pub type Case = fn(String) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// One `#[tokio::test]` per case on SQLite (module `sqlite`), and `postgres_backend` running
/// every case on a throwaway PostgreSQL cluster.
macro_rules! backend_cases {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let dir = tempfile::tempdir().unwrap();
                    super::$case($crate::queue_support::sqlite_url(dir.path())).await;
                }
            )*
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn postgres_backend() {
            let cases: Vec<(&str, $crate::queue_support::Case)> =
                vec![$((stringify!($case), |url| Box::pin($case(url)))),*];
            $crate::queue_support::run_on_postgres(&cases).await;
        }
    };
}

/// Runs `cases` on a throwaway cluster, each in a new database. Without PostgreSQL installed
/// this prints why and passes, unless `NBPIPE_TEST_POSTGRES=1` makes it fail.
pub async fn run_on_postgres(cases: &[(&str, Case)]) {
    let Some(pg) = Postgres::start_or_skip("PostgreSQL queue tests") else {
        return;
    };
    let admin = sqlx::PgPool::connect(&pg.url("postgres")).await.unwrap();
    for (i, (name, case)) in cases.iter().enumerate() {
        let db = format!("case{i}");
        sqlx::query(&format!("CREATE DATABASE {db}"))
            .execute(&admin)
            .await
            .unwrap();
        let t = Instant::now();
        eprintln!("postgres: {name} …");
        case(pg.url(&db)).await;
        eprintln!("postgres: {name} ok in {:?}", t.elapsed());
    }
    admin.close().await;
}
