//! Unit tests of parsing, configuration and local semantics (no network: stores are built, never
//! called; the S3 round trips against a real server are in `tests/s3.rs`).

use super::*;

/// A configuration that can never reach a credential service.
fn s3_config() -> StoreConfig {
    StoreConfig::new()
        .with("AWS_ACCESS_KEY_ID", "AKIDUNITTEST")
        .with("AWS_SECRET_ACCESS_KEY", "unit-secret-value")
        .with("AWS_EC2_METADATA_DISABLED", "true")
}

#[test]
fn dash_is_stdio_and_paths_are_local() {
    assert_eq!(Location::parse("-").unwrap(), Location::Stdio);
    assert_eq!(
        Location::parse("a/b.ipynb").unwrap(),
        Location::Local(PathBuf::from("a/b.ipynb"))
    );
    assert_eq!(
        Location::parse("file:///x/y.ipynb").unwrap(),
        Location::Local(PathBuf::from("/x/y.ipynb"))
    );
}

#[test]
fn unknown_schemes_are_a_clear_error() {
    let err = Location::parse_with("ftp://host/key.ipynb", &s3_config()).unwrap_err();
    assert!(err.to_string().contains("`ftp`"), "{err}");
    assert!(err.to_string().contains("s3://"), "{err}");
    assert_eq!(err.kind(), ErrorKind::InvalidLocation);
}

#[test]
fn s3_url_names_bucket_store_and_key() {
    let loc = Location::parse_with("s3://bucket/runs/1/out.ipynb", &s3_config()).unwrap();
    let Location::Remote { url, store, path } = &loc else {
        panic!("{loc:?}")
    };
    assert_eq!(url, "s3://bucket/runs/1/out.ipynb");
    assert_eq!(path.as_ref(), "runs/1/out.ipynb");
    assert_eq!(store.backend(), Backend::S3);
    assert_eq!(store.endpoint(), "https://s3.us-east-1.amazonaws.com");
    assert!(loc.is_remote() && loc.supports_incremental_writes());
    assert_eq!(loc.file_name().as_deref(), Some("out.ipynb"));
    assert_eq!(loc.to_string(), "s3://bucket/runs/1/out.ipynb");
    assert!(loc.local_path().is_none());
}

#[test]
fn keys_are_percent_decoded() {
    let loc = Location::parse_with("s3://bucket/my%20runs/a b.ipynb", &s3_config()).unwrap();
    let Location::Remote { path, .. } = &loc else {
        panic!()
    };
    assert_eq!(path.parts().count(), 2);
    assert_eq!(path.filename(), Some("a b.ipynb"));
}

#[test]
fn join_appends_to_a_prefix() {
    let base = Location::parse_with("s3://bucket/runs/1/", &s3_config()).unwrap();
    let child = base.join("a.ipynb");
    assert_eq!(child.to_string(), "s3://bucket/runs/1/a.ipynb");
    let Location::Remote { path, .. } = &child else {
        panic!()
    };
    assert_eq!(path.as_ref(), "runs/1/a.ipynb");
    let root = Location::parse_with("s3://bucket", &s3_config()).unwrap();
    let nested = root.join("x/y.ipynb");
    assert_eq!(nested.to_string(), "s3://bucket/x/y.ipynb");
    let Location::Remote { path, .. } = &nested else {
        panic!()
    };
    assert_eq!(path.as_ref(), "x/y.ipynb");
    assert_eq!(
        Location::Local("d".into()).join("a.ipynb"),
        Location::Local("d/a.ipynb".into())
    );
    assert_eq!(Location::Stdio.join("a"), Location::Stdio);
}

#[test]
fn remote_locations_compare_and_debug_by_url() {
    let a = Location::parse_with("s3://bucket/k", &s3_config()).unwrap();
    let b = Location::parse_with("s3://bucket/k", &s3_config()).unwrap();
    let c = Location::parse_with("s3://bucket/other", &s3_config()).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    let dbg = format!("{a:?} {:?}", a.remote_store().unwrap());
    assert!(dbg.contains("s3://bucket/k"), "{dbg}");
    assert!(
        !dbg.contains("unit-secret-value") && !dbg.contains("AKIDUNITTEST"),
        "{dbg}"
    );
}

#[test]
fn stores_are_cached_per_bucket_and_configuration() {
    let a = Location::parse_with("s3://cachedbucket/a", &s3_config()).unwrap();
    let b = Location::parse_with("s3://cachedbucket/b", &s3_config()).unwrap();
    let other_bucket = Location::parse_with("s3://otherbucket/a", &s3_config()).unwrap();
    let other_config = Location::parse_with(
        "s3://cachedbucket/a",
        &s3_config().with("AWS_REGION", "eu-west-1"),
    )
    .unwrap();
    let store = |l: &Location| Arc::clone(l.remote_store().unwrap());
    assert!(Arc::ptr_eq(&store(&a), &store(&b)));
    assert!(!Arc::ptr_eq(&store(&a), &store(&other_bucket)));
    assert!(!Arc::ptr_eq(&store(&a), &store(&other_config)));
    assert_eq!(
        other_config.remote_store().unwrap().endpoint(),
        "https://s3.eu-west-1.amazonaws.com"
    );
}

#[test]
fn aws_endpoint_url_is_honoured_with_the_s3_specific_one_first() {
    let config = s3_config().with("AWS_ENDPOINT_URL", "http://127.0.0.1:9/");
    let loc = Location::parse_with("s3://bucket/k", &config).unwrap();
    assert_eq!(loc.remote_store().unwrap().endpoint(), "http://127.0.0.1:9");
    let config = config.with("AWS_ENDPOINT_URL_S3", "http://127.0.0.2:9");
    let loc = Location::parse_with("s3://bucket/k", &config).unwrap();
    assert_eq!(loc.remote_store().unwrap().endpoint(), "http://127.0.0.2:9");
}

#[test]
fn missing_bucket_is_an_invalid_url() {
    for s in ["s3:///key.ipynb", "gs://", "az:///x"] {
        let err = Location::parse_with(s, &s3_config()).unwrap_err();
        assert!(matches!(err, StoreError::InvalidUrl { .. }), "{s}: {err}");
        assert!(err.to_string().contains("name"), "{err}");
    }
}

#[test]
fn query_strings_and_passwords_are_refused_without_echoing_them() {
    let err = Location::parse_with(
        "https://host.example/nb.ipynb?X-Amz-Signature=deadbeef",
        &s3_config(),
    )
    .unwrap_err();
    assert!(matches!(err, StoreError::InvalidUrl { .. }), "{err}");
    assert!(!err.to_string().contains("deadbeef"), "{err}");
    let err = Location::parse_with("https://user:hunter2@host.example/nb.ipynb", &s3_config())
        .unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[test]
fn half_configured_keys_are_a_config_error_that_names_no_value() {
    let config = StoreConfig::new().with("AWS_ACCESS_KEY_ID", "AKIDHALF");
    let err = Location::parse_with("s3://halfbucket/k", &config).unwrap_err();
    assert!(matches!(err, StoreError::Config { .. }), "{err}");
    assert!(err.to_string().contains("SecretAccessKey"), "{err}");
    assert!(!err.to_string().contains("AKIDHALF"), "{err}");
}

#[test]
fn no_credentials_with_metadata_disabled_is_a_credentials_error() {
    let config = StoreConfig::new().with("AWS_EC2_METADATA_DISABLED", "true");
    let err = Location::parse_with("s3://nocreds/k", &config).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Credentials, "{err}");
    assert!(err.to_string().contains("AWS_ACCESS_KEY_ID"), "{err}");
}

#[test]
fn gcs_azure_and_http_locations_parse() {
    let gs = Location::parse_with("gs://bucket/a.ipynb", &StoreConfig::new()).unwrap();
    assert_eq!(gs.remote_store().unwrap().backend(), Backend::Gcs);
    assert_eq!(
        gs.remote_store().unwrap().endpoint(),
        "https://storage.googleapis.com"
    );
    let az = Location::parse_with(
        "az://container/a.ipynb",
        &StoreConfig::new()
            .with("AZURE_STORAGE_ACCOUNT_NAME", "acct")
            .with("AZURE_STORAGE_ACCOUNT_KEY", "a2V5"),
    )
    .unwrap();
    assert_eq!(az.remote_store().unwrap().backend(), Backend::Azure);
    assert_eq!(
        az.remote_store().unwrap().endpoint(),
        "https://acct.blob.core.windows.net"
    );
    let abfs = Location::parse_with(
        "abfss://fs@acct2.dfs.core.windows.net/dir/a.ipynb",
        &StoreConfig::new().with("AZURE_STORAGE_ACCOUNT_KEY", "a2V5"),
    )
    .unwrap();
    let Location::Remote { path, .. } = &abfs else {
        panic!()
    };
    assert_eq!(path.as_ref(), "dir/a.ipynb");
    let http = Location::parse_with("http://127.0.0.1:9/nb/a.ipynb", &StoreConfig::new()).unwrap();
    assert_eq!(
        http.remote_store().unwrap().endpoint(),
        "http://127.0.0.1:9"
    );
    let Location::Remote { path, .. } = &http else {
        panic!()
    };
    assert_eq!(path.as_ref(), "nb/a.ipynb");
}

#[test]
fn azure_without_an_account_says_how_to_name_one() {
    let err = Location::parse_with("az://container/a.ipynb", &StoreConfig::new()).unwrap_err();
    assert!(matches!(err, StoreError::Config { .. }), "{err}");
    assert!(
        err.to_string().contains("AZURE_STORAGE_ACCOUNT_NAME"),
        "{err}"
    );
}

#[test]
fn the_sync_api_refuses_remote_locations_clearly() {
    let loc = Location::parse_with("s3://bucket/k.ipynb", &s3_config()).unwrap();
    let err = loc.read().unwrap_err();
    assert!(err.to_string().contains("async"), "{err}");
    assert!(loc.write(b"x").is_err());
}

#[test]
fn atomic_write_replaces_and_leaves_no_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("out.ipynb");
    let loc = Location::Local(p.clone());
    loc.write(b"one").unwrap();
    loc.write(b"two").unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"two");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
fn write_into_missing_directory_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let loc = Location::Local(dir.path().join("nope/out.ipynb"));
    let err = loc.write(b"x").unwrap_err();
    assert!(err.to_string().contains("could not write"), "{err}");
}

#[tokio::test]
async fn async_local_put_is_atomic_and_head_get_list_agree() {
    let dir = tempfile::tempdir().unwrap();
    let base = Location::Local(dir.path().to_path_buf());
    let loc = base.join("out.ipynb");
    assert_eq!(loc.head().await.unwrap(), None);
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    loc.put(b"first".to_vec()).await.unwrap();
    loc.put(b"second!".to_vec()).await.unwrap();
    assert_eq!(loc.get().await.unwrap(), b"second!");
    let info = loc.head().await.unwrap().unwrap();
    assert_eq!(info.size, 7);
    assert_eq!(info.etag, None);
    assert!(info.last_modified.unwrap() <= chrono::Utc::now());
    base.join("b.ipynb").put(b"b".to_vec()).await.unwrap();
    assert_eq!(
        base.list().await.unwrap(),
        vec![base.join("b.ipynb"), base.join("out.ipynb")]
    );
    assert!(base.join("missing").list().await.unwrap().is_empty());
}

/// Both runtime flavours: `put_streamed` renders in place (`block_in_place` needs a
/// multi-threaded runtime and must not be used on a current-thread one).
async fn streamed_local_put_replaces_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("out.ipynb");
    let loc = Location::Local(p.clone());
    loc.put_streamed(|w| (0..1000).try_for_each(|i| write!(w, "{i},")))
        .await
        .unwrap();
    let first = std::fs::read_to_string(&p).unwrap();
    assert!(
        first.starts_with("0,1,2,") && first.ends_with("999,"),
        "{first}"
    );
    // A render that fails half-way leaves the previous file untouched and no temp file.
    let err = loc
        .put_streamed(|w| {
            w.write_all(b"partial")?;
            Err(std::io::Error::other("disk full"))
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("disk full"), "{err}");
    assert_eq!(std::fs::read_to_string(&p).unwrap(), first);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_local_put_on_a_multi_threaded_runtime() {
    streamed_local_put_replaces_atomically().await;
}

#[tokio::test]
async fn streamed_local_put_on_a_current_thread_runtime() {
    streamed_local_put_replaces_atomically().await;
}

#[tokio::test]
async fn async_local_get_of_a_missing_file_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let err = Location::Local(dir.path().join("missing.ipynb"))
        .get()
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(err.to_string().contains("could not read"), "{err}");
}

#[tokio::test]
async fn async_local_put_into_missing_directory_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = Location::Local(dir.path().join("nope/out.ipynb"))
        .put(b"x".to_vec())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("could not write"), "{err}");
}

#[test]
fn async_operations_can_be_spawned() {
    fn assert_send<T: Send + 'static>(_: T) {}
    let loc = Location::Stdio;
    let l = loc.clone();
    assert_send(async move { l.get().await });
    let l = loc.clone();
    assert_send(async move { l.put(Vec::new()).await });
    let l = loc.clone();
    assert_send(async move { l.head().await });
    assert_send(async move { loc.list().await });
}
