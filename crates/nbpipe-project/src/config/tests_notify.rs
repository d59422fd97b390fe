//! Tests of `notify:`, the project's notification targets.

use std::time::Duration;

use super::*;

fn dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.ipynb"), "{}").unwrap();
    std::fs::write(dir.path().join("ca.pem"), "x").unwrap();
    dir
}

fn targets(notify: &str) -> Result<Vec<NotifyTarget>, ConfigError> {
    let dir = dir();
    let text = format!("notebooks: [a.ipynb]\nnotify:\n{notify}");
    parse(dir.path(), "nbpipe.yaml", &text).map(|p| p.notify)
}

/// The error for `notify` (under `notify:` on line 2), checking line, column and key.
fn err(notify: &str, at: (usize, usize), key: &str) -> String {
    let e = match targets(notify) {
        Ok(t) => panic!("expected an error for {notify:?}, got {t:?}"),
        Err(e) => e,
    };
    let shown = e.to_string();
    let inv = e.invalid().unwrap_or_else(|| panic!("{shown}")).clone();
    assert_eq!(
        (inv.line, inv.column, inv.key.as_str()),
        (at.0, at.1, key),
        "{shown}"
    );
    shown
}

#[test]
fn notify_reads_every_kind_of_target() {
    let t = targets(
        "  - on: [failure, recovery]\n    slack: https://hooks.slack.com/services/T/B/x\n\
         \x20 - on: failure\n    webhook: {url: 'https://ops.example.org/h', secret_env: NBPIPE_HOOK_KEY}\n\
         \x20   rate_limit: 5m\n\
         \x20 - email:\n      to: [a@x.org, 'Ops <ops@x.org>']\n      from: nbpipe@x.org\n\
         \x20     smtp: {host: smtp.x.org, username: nb, password_env: SMTP_PASSWORD, ca_file: ca.pem}\n\
         \x20   rate_limit: off\n",
    )
    .unwrap();
    assert_eq!(t.len(), 3);
    assert_eq!(t[0].on, vec![NotifyEvent::Failure, NotifyEvent::Recovery]);
    assert_eq!(t[0].rate_limit, Some(DEFAULT_RATE_LIMIT));
    assert_eq!(t[0].key, "notify[0]");
    assert_eq!(
        t[1].kind,
        NotifyKind::Webhook {
            url: "https://ops.example.org/h".into(),
            secret_env: Some("NBPIPE_HOOK_KEY".into())
        }
    );
    assert_eq!(t[1].rate_limit, Some(Duration::from_secs(300)));
    let NotifyKind::Email(e) = &t[2].kind else {
        panic!("{:?}", t[2].kind)
    };
    assert_eq!(e.to, vec!["a@x.org", "Ops <ops@x.org>"]);
    // STARTTLS on port 587 unless told otherwise.
    assert_eq!(
        (e.smtp.port, e.smtp.starttls, e.smtp.tls),
        (587, true, false)
    );
    assert!(e.smtp.ca_file.as_ref().unwrap().ends_with("ca.pem"));
    assert_eq!(t[2].on, vec![NotifyEvent::Failure, NotifyEvent::Recovery]);
    assert_eq!(t[2].rate_limit, None);
}

#[test]
fn notify_errors_are_located() {
    let s = err(
        "  - slack: https://h/x\n    onn: [failure]\n",
        (4, 5),
        "notify[0].onn",
    );
    assert!(s.contains("did you mean `on`"), "{s}");
    let s = err(
        "  - on: [failure, boom]\n    slack: https://h/x\n",
        (3, 19),
        "notify[0].on",
    );
    assert!(s.contains("unknown event `boom`"), "{s}");
    let s = err("  - on: [failure]\n", (3, 5), "notify[0]");
    assert!(
        s.contains("needs one of `slack`, `webhook` or `email`"),
        "{s}"
    );
    let s = err("  - slack: ftp://h/x\n", (3, 12), "notify[0].slack");
    assert!(s.contains("http://"), "{s}");
    let s = err(
        "  - webhook: {url: 'https://h/x', secret_env: 'hunter2 is the key'}\n",
        (3, 47),
        "notify[0].webhook.secret_env",
    );
    assert!(s.contains("never write the secret itself"), "{s}");
    let s = err(
        "  - email: {to: a@x.org, from: b@x.org, smtp: {host: h, password: x}}\n",
        (3, 57),
        "notify[0].email.smtp.password",
    );
    assert!(s.contains("unknown key `password`"), "{s}");
    let s = err(
        "  - email: {to: nobody, from: b@x.org, smtp: {host: h}}\n",
        (3, 17),
        "notify[0].email.to",
    );
    assert!(s.contains("not an email address"), "{s}");
    err("  slack: https://h/x\n", (3, 3), "notify");
}
