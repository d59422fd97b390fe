//! Polling a prefix on a real S3 server (SeaweedFS, one per test): new and overwritten objects,
//! string prefixes, the durable cursor across a restart, and a store that goes down.
//!
//! Needs `weed` from the test environment (`NBPIPE_TEST_ENV`, provisioned by
//! `scripts/test.sh`); configuration is explicit, never the process environment.

#[path = "../../nbpipe-store/tests/common/seaweed.rs"]
mod seaweed;

use std::time::Duration;

use nbpipe_server::event::Source;
use nbpipe_server::intake::poll::{PollOptions, PrefixPoller};
use nbpipe_server::intake::{
    CursorStore, Existing, FileCursorStore, IntakeError, MemoryCursorStore, MemorySink,
};
use nbpipe_store::{Location, StoreConfig};
use seaweed::Seaweed;

fn config(weed: &Seaweed) -> StoreConfig {
    StoreConfig::new()
        .with("AWS_ENDPOINT_URL", weed.endpoint())
        .with("AWS_ACCESS_KEY_ID", "nbpipe-test")
        .with("AWS_SECRET_ACCESS_KEY", "nbpipe-test-secret")
        .with("AWS_REGION", "us-east-1")
        .with("AWS_EC2_METADATA_DISABLED", "true")
        .with("NBPIPE_STORE_MAX_RETRIES", "1")
        .with("NBPIPE_STORE_RETRY_TIMEOUT_SECS", "1")
}

async fn put(weed: &Seaweed, cfg: &StoreConfig, key: &str, body: &str) {
    Location::parse_with(&format!("s3://{}/{key}", weed.bucket()), cfg)
        .unwrap()
        .put(body.as_bytes().to_vec())
        .await
        .unwrap();
}

fn poller(weed: &Seaweed, cfg: &StoreConfig, prefix: &str, existing: Existing) -> PrefixPoller {
    PrefixPoller::new(
        &format!("s3://{}/{prefix}", weed.bucket()),
        cfg,
        PollOptions {
            interval: Duration::from_millis(100),
            existing,
        },
    )
    .unwrap()
}

fn keys(sink: &MemorySink) -> Vec<String> {
    let mut k: Vec<String> = sink.take().into_iter().map(|e| e.key).collect();
    k.sort();
    k
}

#[tokio::test]
async fn new_and_overwritten_objects_are_emitted_once_across_a_restart() {
    let weed = Seaweed::start();
    let cfg = config(&weed);
    let tmp = tempfile::tempdir().unwrap();
    let cursors = FileCursorStore::new(tmp.path());
    put(&weed, &cfg, "in/a.csv", "a").await;
    put(&weed, &cfg, "in/sub/b.csv", "b").await;
    put(&weed, &cfg, "in-other/c.csv", "c").await;
    put(&weed, &cfg, "out/d.csv", "d").await;

    let sink = MemorySink::new();
    let mut p = poller(&weed, &cfg, "in/", Existing::Emit);
    assert_eq!(p.poll_once(&cursors, &sink).await.unwrap(), 2);
    let events = sink.take();
    let a = events
        .iter()
        .find(|e| e.key == "in/a.csv")
        .expect("in/a.csv");
    assert_eq!(a.bucket, weed.bucket());
    assert_eq!(a.source, Source::Poll);
    assert_eq!(a.size, Some(1));
    let etag = a.etag.clone().expect("listing gives ETags");
    assert!(!etag.contains('"'), "{etag}");
    assert!(a.event_time.is_some());
    assert!(events.iter().any(|e| e.key == "in/sub/b.csv"));
    assert_eq!(p.poll_once(&cursors, &sink).await.unwrap(), 0);

    // Overwritten with new content: emitted again, with a new ETag.
    put(&weed, &cfg, "in/a.csv", "a, second version").await;
    assert_eq!(p.poll_once(&cursors, &sink).await.unwrap(), 1);
    let again = sink.take().remove(0);
    assert_eq!(again.key, "in/a.csv");
    assert_ne!(again.etag.as_deref(), Some(etag.as_str()));
    assert_ne!(again.dedup_key(), a.dedup_key());

    // Restart: a new poller on the same cursor emits only what arrived meanwhile.
    drop(p);
    put(&weed, &cfg, "in/e.csv", "e").await;
    let mut p = poller(&weed, &cfg, "in/", Existing::Emit);
    assert_eq!(p.poll_once(&cursors, &sink).await.unwrap(), 1);
    assert_eq!(keys(&sink), ["in/e.csv"]);
}

#[tokio::test]
async fn a_string_prefix_need_not_end_at_a_slash() {
    let weed = Seaweed::start();
    let cfg = config(&weed);
    put(&weed, &cfg, "logs/2024-05-01.csv", "1").await;
    put(&weed, &cfg, "logs/2024-06-01.csv", "2").await;
    put(&weed, &cfg, "logs/2023-12-31.csv", "3").await;
    let sink = MemorySink::new();
    let cursor = MemoryCursorStore::new();
    let mut p = poller(&weed, &cfg, "logs/2024-", Existing::Emit);
    p.poll_once(&cursor, &sink).await.unwrap();
    assert_eq!(keys(&sink), ["logs/2024-05-01.csv", "logs/2024-06-01.csv"]);
    // The whole bucket.
    let mut all = poller(&weed, &cfg, "", Existing::Emit);
    all.poll_once(&cursor, &sink).await.unwrap();
    assert_eq!(keys(&sink).len(), 3);
}

#[tokio::test]
async fn refused_events_come_again_and_skip_ignores_existing() {
    let weed = Seaweed::start();
    let cfg = config(&weed);
    put(&weed, &cfg, "in/old.csv", "old").await;
    let cursor = MemoryCursorStore::new();
    let sink = MemorySink::new();

    let mut skip = poller(&weed, &cfg, "in/", Existing::Skip);
    assert_eq!(skip.poll_once(&cursor, &sink).await.unwrap(), 0);
    put(&weed, &cfg, "in/new.csv", "new").await;
    sink.fail_next(1);
    let err = skip.poll_once(&cursor, &sink).await.unwrap_err();
    assert!(matches!(err, IntakeError::Sink(_)), "{err:?}");
    assert_eq!(skip.poll_once(&cursor, &sink).await.unwrap(), 1);
    assert_eq!(keys(&sink), ["in/new.csv"]);
}

#[tokio::test]
async fn a_store_that_goes_down_is_an_error_and_polling_resumes() {
    let mut weed = Seaweed::start();
    let cfg = config(&weed);
    put(&weed, &cfg, "in/a.csv", "a").await;
    let cursor = MemoryCursorStore::new();
    let sink = MemorySink::new();
    let mut p = poller(&weed, &cfg, "in/", Existing::Emit);
    assert_eq!(p.poll_once(&cursor, &sink).await.unwrap(), 1);
    let saved = cursor.get(&p.cursor_name()).await.unwrap();

    weed.kill();
    let err = p.poll_once(&cursor, &sink).await.unwrap_err();
    assert!(matches!(err, IntakeError::Store { .. }), "{err:?}");
    assert!(err.to_string().contains(weed.bucket()), "{err}");
    assert!(!err.to_string().contains("nbpipe-test-secret"), "{err}");
    assert_eq!(cursor.get(&p.cursor_name()).await.unwrap(), saved);

    weed.restart();
    assert_eq!(p.poll_once(&cursor, &sink).await.unwrap(), 0);
    put(&weed, &cfg, "in/b.csv", "b").await;
    assert_eq!(p.poll_once(&cursor, &sink).await.unwrap(), 1);
    assert_eq!(keys(&sink), ["in/a.csv", "in/b.csv"]);
}

#[test]
fn urls_that_cannot_be_polled_are_typed_errors() {
    let cfg = StoreConfig::new();
    for url in ["no-scheme", "s3:///prefix", "/local/folder"] {
        let err = PrefixPoller::new(url, &cfg, PollOptions::default()).unwrap_err();
        assert!(matches!(err, IntakeError::Store { .. }), "{url}: {err:?}");
    }
}

/// A project whose S3 trigger is `prefix` in the test bucket.
fn triggered(dir: &std::path::Path, weed: &Seaweed, prefix: &str) -> nbpipe_project::Project {
    std::fs::write(dir.join("a.ipynb"), "{}").unwrap();
    let yaml = format!(
        "name: sales\nnotebooks: [a.ipynb]\ntrigger: {{s3: {{bucket: {}, prefix: {prefix}}}}}\n",
        weed.bucket()
    );
    nbpipe_project::parse(dir, "nbpipe.yaml", &yaml).unwrap()
}

/// The keys delivered to `sink` within `within`, once `n` arrived or the time is up.
async fn delivered(sink: &MemorySink, n: usize, within: Duration) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < n && tokio::time::Instant::now() < deadline {
        got.extend(keys(sink));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    got.sort();
    got
}

/// A revision that moves a project's trigger prefix (git-ops): from the switch on the new
/// prefix is polled (taken in like at a first start) and the old one no more.
#[tokio::test]
async fn a_switch_moves_the_polled_prefix_with_the_trigger() {
    use nbpipe_server::projects::{Projects, Served};
    use nbpipe_server::triggers::Watchers;
    use std::sync::Arc;

    let weed = Seaweed::start();
    let cfg = config(&weed);
    let dir = tempfile::tempdir().unwrap();
    put(&weed, &cfg, "in/a.csv", "a").await;
    put(&weed, &cfg, "new/b.csv", "b").await;
    let projects = Projects::new([triggered(dir.path(), &weed, "in/")]);
    let sink = Arc::new(MemorySink::new());
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let mut watchers = Watchers::new(
        sink.clone(),
        Arc::new(MemoryCursorStore::new()),
        None,
        Some(Duration::from_millis(100)),
        stop,
    )
    .with_store(cfg.clone());
    watchers.reconcile(&projects).await.unwrap();
    let old = format!("poll:s3://{}/in/", weed.bucket());
    assert_eq!(watchers.running(), [old]);
    assert_eq!(
        delivered(&sink, 1, Duration::from_secs(10)).await,
        ["in/a.csv"]
    );

    projects.replace(Served {
        project: triggered(dir.path(), &weed, "new/"),
        git: None,
    });
    watchers.reconcile(&projects).await.unwrap();
    let new = format!("poll:s3://{}/new/", weed.bucket());
    assert_eq!(watchers.running(), [new]);
    put(&weed, &cfg, "in/c.csv", "c").await;
    put(&weed, &cfg, "new/d.csv", "d").await;
    assert_eq!(
        delivered(&sink, 2, Duration::from_secs(10)).await,
        ["new/b.csv", "new/d.csv"]
    );
    // The old prefix's poller is gone: `in/c.csv` is never delivered.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(keys(&sink), Vec::<String>::new());
}
