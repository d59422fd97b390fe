//! Object-store round trips against a real S3 server (SeaweedFS, one per test so they run in
//! parallel) and the plain HTTP backend pointed at it.
//!
//! Needs `weed` from the test environment (`scripts/test.sh` provisions it); a missing binary
//! fails with a message saying so. Configuration is passed explicitly (`parse_with`), never
//! through the process environment, and always includes credentials so no request ever goes to
//! an instance metadata service.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::seaweed::{Seaweed, SeaweedOptions};
use nbpipe_store::{ErrorKind, Location, StoreConfig, StoreError};

fn config(weed: &Seaweed) -> StoreConfig {
    StoreConfig::new()
        .with("AWS_ENDPOINT_URL", weed.endpoint())
        .with("AWS_ACCESS_KEY_ID", "nbpipe-test")
        .with("AWS_SECRET_ACCESS_KEY", "nbpipe-test-secret")
        .with("AWS_REGION", "us-east-1")
        .with("AWS_EC2_METADATA_DISABLED", "true")
}

fn s3(weed: &Seaweed, key: &str, config: &StoreConfig) -> Location {
    Location::parse_with(&format!("s3://{}/{key}", weed.bucket()), config).unwrap()
}

/// A response header of a plain `HEAD` request.
fn head_header(port: u16, path: &str, name: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        stream,
        "HEAD {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

#[tokio::test]
async fn s3_put_get_head_list_round_trip() {
    let weed = Seaweed::start();
    let cfg = config(&weed);
    let nb = br#"{"cells": [], "nbformat": 4, "nbformat_minor": 5, "metadata": {}}"#.to_vec();

    let a = s3(&weed, "a.ipynb", &cfg);
    assert_eq!(a.head().await.unwrap(), None);
    a.put(nb.clone()).await.unwrap();
    assert_eq!(a.get().await.unwrap(), nb);
    let info = a.head().await.unwrap().expect("object exists after put");
    assert_eq!(info.size, nb.len() as u64);
    assert!(info.etag.is_some(), "{info:?}");
    let age = chrono::Utc::now() - info.last_modified.expect("S3 gives Last-Modified");
    assert!(age < chrono::Duration::minutes(5), "{info:?}");
    assert_eq!(
        head_header(
            weed.s3_port(),
            &format!("/{}/a.ipynb", weed.bucket()),
            "content-type"
        )
        .as_deref(),
        Some("application/x-ipynb+json")
    );

    // Overwriting replaces the object and changes its etag.
    a.put(b"{}".to_vec()).await.unwrap();
    assert_eq!(a.get().await.unwrap(), b"{}");
    let again = a.head().await.unwrap().unwrap();
    assert_eq!(again.size, 2);
    assert_ne!(again.etag, info.etag);

    // A run directory as a prefix: join, then list one level.
    let run = s3(&weed, "runs/1/", &cfg);
    for name in ["c.ipynb", "b.ipynb", "sub/d.ipynb"] {
        run.join(name).put(name.as_bytes().to_vec()).await.unwrap();
    }
    let names: Vec<String> = run
        .list()
        .await
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    let base = format!("s3://{}/runs/1", weed.bucket());
    assert_eq!(
        names,
        [
            format!("{base}/b.ipynb"),
            format!("{base}/c.ipynb"),
            format!("{base}/sub/")
        ]
    );
    let listed = run.list().await.unwrap();
    assert_eq!(listed[0].get().await.unwrap(), b"b.ipynb");
    assert_eq!(
        listed[2].list().await.unwrap(),
        vec![run.join("sub/d.ipynb")]
    );
    let root = Location::parse_with(&format!("s3://{}", weed.bucket()), &cfg).unwrap();
    let top: Vec<String> = root
        .list()
        .await
        .unwrap()
        .iter()
        .map(|l| l.file_name().unwrap())
        .collect();
    assert_eq!(top, ["a.ipynb", "runs"]);
    assert!(s3(&weed, "nothing/here/", &cfg)
        .list()
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn s3_large_objects_round_trip_whole_and_in_parts() {
    let weed = Seaweed::start();
    let big: Vec<u8> = (0..20 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    // Above the multipart threshold: uploaded in 8 MiB parts.
    let parts_cfg = config(&weed).with("NBPIPE_STORE_MULTIPART_THRESHOLD_MB", "8");
    let in_parts = s3(&weed, "big/parts.ipynb", &parts_cfg);
    in_parts.put(big.clone()).await.unwrap();
    // Below the default threshold: one PUT.
    let whole = s3(&weed, "big/whole.ipynb", &config(&weed));
    whole.put(big.clone()).await.unwrap();
    // Streamed (rendered into a temporary file, then uploaded part by part).
    let render = |w: &mut dyn std::io::Write| big.chunks(100_003).try_for_each(|c| w.write_all(c));
    let streamed_parts = s3(&weed, "big/streamed-parts.ipynb", &parts_cfg);
    streamed_parts.put_streamed(render).await.unwrap();
    let streamed_whole = s3(&weed, "big/streamed-whole.ipynb", &config(&weed));
    streamed_whole.put_streamed(render).await.unwrap();
    // A render that fails uploads nothing.
    let failed = s3(&weed, "big/failed.ipynb", &parts_cfg);
    let err = failed
        .put_streamed(|w| {
            w.write_all(&big)?;
            Err(std::io::Error::other("render broke"))
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("render broke"), "{err}");
    assert_eq!(failed.head().await.unwrap(), None);
    for loc in [&in_parts, &whole, &streamed_parts, &streamed_whole] {
        assert_eq!(loc.head().await.unwrap().unwrap().size, big.len() as u64);
        let back = loc.get().await.unwrap();
        assert!(back == big, "{loc}: content differs");
    }
}

#[tokio::test]
async fn s3_missing_object_and_missing_bucket_are_not_found() {
    let weed = Seaweed::start();
    let cfg = config(&weed);
    let missing = s3(&weed, "no/such.ipynb", &cfg);
    let err = missing.get().await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
    assert!(err.is_not_found());
    assert!(
        err.to_string().contains(&format!(
            "`s3://{}/no/such.ipynb` does not exist",
            weed.bucket()
        )),
        "{err}"
    );
    assert_eq!(missing.head().await.unwrap(), None);

    let no_bucket = Location::parse_with("s3://no-such-bucket/a.ipynb", &cfg).unwrap();
    let err = no_bucket.get().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("NoSuchBucket"), "{err}");
}

#[tokio::test]
async fn s3_store_down_is_a_clear_error_within_the_retry_timeout() {
    let mut weed = Seaweed::start();
    let cfg = config(&weed).with("NBPIPE_STORE_RETRY_TIMEOUT_SECS", "2");
    let loc = s3(&weed, "down.ipynb", &cfg);
    loc.put(b"{}".to_vec()).await.unwrap();
    weed.kill();

    for op in ["put", "get"] {
        let start = Instant::now();
        let err = match op {
            "put" => loc.put(b"{\"x\": 1}".to_vec()).await.unwrap_err(),
            _ => loc.get().await.unwrap_err(),
        };
        let took = start.elapsed();
        let msg = err.to_string();
        assert_eq!(err.kind(), ErrorKind::Unreachable, "{op}: {msg}");
        // Retried with backoff until the 2 s retry timeout, then gave up promptly.
        assert!(
            took >= Duration::from_millis(1500),
            "{op}: gave up after {took:?}: {msg}"
        );
        assert!(took < Duration::from_secs(15), "{op}: took {took:?}: {msg}");
        let StoreError::Unreachable { attempts, .. } = &err else {
            unreachable!()
        };
        assert!(*attempts >= 3, "{op}: {msg}");
        let expected = format!(
            "could not reach `s3://{}/down.ipynb` at {} after {attempts} attempts over ",
            weed.bucket(),
            weed.endpoint()
        );
        assert!(msg.starts_with(&expected), "{op}: {msg}");
        assert!(
            msg.to_lowercase().contains("connection refused"),
            "{op}: {msg}"
        );
        assert!(!msg.contains("nbpipe-test-secret"), "{msg}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_get_survives_a_store_restart() {
    let mut weed = Seaweed::start();
    // Bounded by the (default, 60 s) retry timeout rather than a count, so a slow restart on a
    // loaded machine still lands inside the retries.
    let cfg = config(&weed).with("NBPIPE_STORE_MAX_RETRIES", "50");
    let loc = s3(&weed, "restart.ipynb", &cfg);
    loc.put(b"survived".to_vec()).await.unwrap();
    weed.kill();
    let reader = tokio::spawn({
        let loc = loc.clone();
        async move { loc.get().await }
    });
    // The store is down for a couple of seconds; the read keeps retrying with backoff.
    std::thread::sleep(Duration::from_secs(2));
    weed.restart();
    let got = reader.await.unwrap();
    assert_eq!(
        got.unwrap_or_else(|e| panic!("{e}\n{}", weed.log_tail())),
        b"survived"
    );
}

#[tokio::test]
async fn s3_wrong_credentials_are_permission_denied() {
    let weed = Seaweed::start_with(SeaweedOptions {
        credentials: Some(("nbpipe-ak".into(), "nbpipe-right-secret".into())),
        ..Default::default()
    });
    let good = config(&weed)
        .with("AWS_ACCESS_KEY_ID", "nbpipe-ak")
        .with("AWS_SECRET_ACCESS_KEY", "nbpipe-right-secret");
    let loc = s3(&weed, "private.ipynb", &good);
    loc.put(b"{}".to_vec()).await.unwrap();
    assert_eq!(loc.get().await.unwrap(), b"{}");

    let bad = good
        .clone()
        .with("AWS_SECRET_ACCESS_KEY", "nbpipe-wrong-secret");
    let err = s3(&weed, "private.ipynb", &bad).get().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    let msg = err.to_string();
    assert!(msg.contains("access to `s3://"), "{msg}");
    assert!(
        !msg.contains("nbpipe-wrong-secret") && !msg.contains("nbpipe-right-secret"),
        "{msg}"
    );
    let err = s3(&weed, "private2.ipynb", &bad)
        .put(b"x".to_vec())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
}

#[tokio::test]
async fn http_reads_and_writes_through_a_plain_http_endpoint() {
    // SeaweedFS's S3 port without authentication is a plain HTTP server for GET and PUT.
    let weed = Seaweed::start();
    s3(&weed, "pub/in.ipynb", &config(&weed))
        .put(b"{\"from\": \"s3\"}".to_vec())
        .await
        .unwrap();
    let http = |key: &str| {
        Location::parse_with(
            &format!("{}/{}/{key}", weed.endpoint(), weed.bucket()),
            &StoreConfig::new(),
        )
        .unwrap()
    };
    assert_eq!(
        http("pub/in.ipynb").get().await.unwrap(),
        b"{\"from\": \"s3\"}"
    );
    assert_eq!(http("pub/in.ipynb").head().await.unwrap().unwrap().size, 14);
    assert_eq!(http("pub/none.ipynb").head().await.unwrap(), None);
    let err = http("pub/none.ipynb").get().await.unwrap_err();
    assert!(err.is_not_found(), "{err}");

    http("pub/out.ipynb")
        .put(b"{\"from\": \"http\"}".to_vec())
        .await
        .unwrap();
    assert_eq!(
        s3(&weed, "pub/out.ipynb", &config(&weed))
            .get()
            .await
            .unwrap(),
        b"{\"from\": \"http\"}"
    );
}
