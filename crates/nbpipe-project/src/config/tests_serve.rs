//! Tests of `serve:`, the project's run policy in the service.

use std::time::Duration;

use super::*;

fn dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.ipynb"), "{}").unwrap();
    dir
}

fn policy(serve: &str) -> Result<ServePolicy, ConfigError> {
    let dir = dir();
    let text = format!("notebooks: [a.ipynb]\nserve:\n{serve}");
    parse(dir.path(), "nbpipe.yaml", &text).map(|p| p.serve)
}

/// The error for `serve` (under `serve:` on line 2), checking line and key.
fn err(serve: &str, line: usize, key: &str) -> Invalid {
    let e = match policy(serve) {
        Ok(p) => panic!("expected an error for {serve:?}, got {p:?}"),
        Err(e) => e,
    };
    let shown = e.to_string();
    let inv = e.invalid().unwrap_or_else(|| panic!("{shown}")).clone();
    assert_eq!((inv.line, inv.key.as_str()), (line, key), "{shown}");
    assert!(shown.contains(&format!("nbpipe.yaml:{line}:")), "{shown}");
    inv
}

#[test]
fn serve_policy_reads_every_key() {
    let p = policy(
        "  concurrency: 3\n  retries: 2\n  retry_backoff: 30s\n  retry_backoff_max: 5m\n  \
         timeout: 1h30m\n",
    )
    .unwrap();
    assert_eq!(
        p,
        ServePolicy {
            concurrency: Some(3),
            retries: Some(2),
            retry_backoff: Some(Duration::from_secs(30)),
            retry_backoff_max: Some(Duration::from_secs(300)),
            timeout: Some(Duration::from_secs(5400)),
            interrupted_retries: None,
        }
    );
    // Seconds work as for step timeouts; zero retries is allowed.
    let p = policy("  retries: 0\n  retry_backoff: 1.5\n").unwrap();
    assert_eq!(p.retries, Some(0));
    assert_eq!(p.retry_backoff, Some(Duration::from_millis(1500)));
}

#[test]
fn serve_policy_is_empty_when_absent_or_null() {
    let dir = dir();
    let p = parse(dir.path(), "nbpipe.yaml", "notebooks: [a.ipynb]\n").unwrap();
    assert_eq!(p.serve, ServePolicy::default());
    let p = parse(dir.path(), "nbpipe.yaml", "notebooks: [a.ipynb]\nserve:\n").unwrap();
    assert_eq!(p.serve, ServePolicy::default());
    assert_eq!(policy("  retries: ~\n").unwrap(), ServePolicy::default());
}

#[test]
fn serve_counts_must_be_non_negative_and_concurrency_positive() {
    let e = err("  concurrency: 0\n", 3, "serve.concurrency");
    assert!(e.message.contains("must be at least 1"), "{}", e.message);
    assert_eq!(e.kind, ErrorKind::Value);
    let e = err("  retries: -1\n", 3, "serve.retries");
    assert!(
        e.message
            .contains("`serve.retries` must be a non-negative integer, found `-1`"),
        "{}",
        e.message
    );
    let e = err("  concurrency: two\n", 3, "serve.concurrency");
    assert!(e.message.contains("found `two`"), "{}", e.message);
    err("  retries: 1.5\n", 3, "serve.retries");
    let e = err("  retries: 99999999999\n", 3, "serve.retries");
    assert!(e.message.contains("too large"), "{}", e.message);
    let e = err("  concurrency: [1]\n", 3, "serve.concurrency");
    assert_eq!(e.kind, ErrorKind::Type);
}

#[test]
fn serve_durations_are_checked_like_step_timeouts() {
    for (bad, why) in [
        ("0", "greater than zero"),
        ("-5s", "cannot be negative"),
        ("soon", "invalid duration `soon`"),
        ("10 parsecs", "invalid duration"),
    ] {
        let e = err(
            &format!("  retry_backoff: {bad}\n"),
            3,
            "serve.retry_backoff",
        );
        assert_eq!(e.kind, ErrorKind::Duration);
        assert!(e.message.contains(why), "{bad}: {}", e.message);
        assert!(e.message.contains("`serve.retry_backoff`"), "{}", e.message);
    }
    err("  timeout: 0s\n", 3, "serve.timeout");
    err(
        "  retries: 1\n  retry_backoff_max: nope\n",
        4,
        "serve.retry_backoff_max",
    );
    // The cap cannot be shorter than the first delay.
    let e = err(
        "  retry_backoff: 1m\n  retry_backoff_max: 30s\n",
        4,
        "serve.retry_backoff_max",
    );
    assert!(e.message.contains("shorter than"), "{}", e.message);
    assert!(policy("  retry_backoff: 1m\n  retry_backoff_max: 60s\n").is_ok());
}

#[test]
fn serve_rejects_unknown_keys_and_bad_shapes() {
    let e = err("  concurency: 2\n", 3, "serve.concurency");
    assert_eq!(e.kind, ErrorKind::UnknownKey);
    assert!(
        e.message
            .contains("unknown key `concurency` in `serve` (did you mean `concurrency`?)"),
        "{}",
        e.message
    );
    let e = err("  cell_timeout: 1m\n", 3, "serve.cell_timeout");
    assert!(e.message.contains("expected one of"), "{}", e.message);
    let dir = dir();
    let e = parse(
        dir.path(),
        "nbpipe.yaml",
        "notebooks: [a.ipynb]\nserve: 3\n",
    )
    .unwrap_err();
    let inv = e.invalid().unwrap();
    assert_eq!((inv.line, inv.kind), (2, ErrorKind::Type));
    assert!(inv.message.contains("`serve` must be a mapping"), "{e}");
}

#[test]
fn run_policy_keys_at_the_top_level_say_where_they_belong() {
    let dir = dir();
    let e = parse(
        dir.path(),
        "nbpipe.yaml",
        "notebooks: [a.ipynb]\nconcurrency: 2\n",
    )
    .unwrap_err();
    let inv = e.invalid().unwrap();
    assert_eq!(inv.line, 2);
    assert!(inv.message.contains("move it under `serve:`"), "{e}");
    // `retries` and `timeout` exist at both levels: the hint names both.
    let e = parse(
        dir.path(),
        "nbpipe.yaml",
        "notebooks: [a.ipynb]\nretries: 2\n",
    )
    .unwrap_err();
    assert!(e.to_string().contains("set per notebook"), "{e}");
    assert!(e.to_string().contains("under `serve:`"), "{e}");
}

#[test]
fn serve_interrupted_retries_is_read_and_checked() {
    assert_eq!(
        policy("  interrupted_retries: 3\n")
            .unwrap()
            .interrupted_retries,
        Some(3)
    );
    assert_eq!(
        policy("  interrupted_retries: 0\n")
            .unwrap()
            .interrupted_retries,
        Some(0)
    );
    let inv = err(
        "  interrupted_retries: -1\n",
        3,
        "serve.interrupted_retries",
    );
    assert!(
        inv.message.contains("non-negative integer"),
        "{}",
        inv.message
    );
    err(
        "  interrupted_retries: 99999999999\n",
        3,
        "serve.interrupted_retries",
    );
}
