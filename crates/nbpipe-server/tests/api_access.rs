//! Who may do what through the HTTP API: tokens on every state change, cross-origin
//! refusals, webhook bodies that must not reach the queue, listening only where it is safe,
//! and the UI pages' lockdown. Against a real queue on a temporary SQLite file, through the
//! router. Runs, projects, events and reports: `api.rs`.

mod api_support;

use std::path::{Component, Path};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use nbpipe_server::api::{self, AppState};
use nbpipe_server::queue::Queue;
use serde_json::{json, Value};

use api_support::*;

#[tokio::test]
async fn every_state_change_needs_the_token() {
    let f = fixture(Some(TOKEN)).await;
    let id = f.queued_run().await;
    let before = f.queue.counts().await.unwrap();
    let posts: Vec<&str> = api::routes()
        .into_iter()
        .filter(|(m, _)| *m != "get")
        .map(|(_, p)| p)
        .collect();
    assert!(posts.len() >= 4, "{posts:?}");
    for path in posts {
        let uri = path.replace("{id}", &id);
        let body = if path == "/hooks/s3" {
            s3_body("sales/a.csv")
        } else {
            json!({"project": "daily"})
        };
        for token in [None, Some("wrong"), Some("")] {
            if path == "/hooks/git" {
                // Signed by the git provider, not the token: without a followed repository
                // there is nothing to wake.
                let (s, _, b) =
                    send(&f.app, req(Method::POST, &uri, token, Some(body.clone()))).await;
                assert_eq!(s, StatusCode::NOT_FOUND, "POST {uri} with {token:?}");
                let v: Value = serde_json::from_slice(&b).unwrap();
                assert_eq!(v["error"]["code"], "no_repository");
                continue;
            }
            let (s, headers, b) =
                send(&f.app, req(Method::POST, &uri, token, Some(body.clone()))).await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "POST {uri} with {token:?}");
            assert!(headers.contains_key(header::WWW_AUTHENTICATE));
            let v: Value = serde_json::from_slice(&b).unwrap();
            assert_eq!(v["error"]["code"], "unauthorized");
        }
        // Other methods are state changes too.
        let (s, _, _) = send(&f.app, req(Method::DELETE, &uri, None, None)).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "DELETE {uri}");
    }
    assert_eq!(f.queue.counts().await.unwrap(), before, "nothing changed");
    assert!(f.hooked.lock().unwrap().is_empty());

    // The right token works, and hooks also take the bare token (MinIO's auth_token).
    let (s, _) = json_of(
        &f.app,
        req(
            Method::POST,
            &format!("/api/runs/{id}/cancel"),
            Some(TOKEN),
            None,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let r = Request::post("/hooks/s3")
        .header(header::AUTHORIZATION, TOKEN)
        .body(Body::from(s3_body("sales/a.csv").to_string()))
        .unwrap();
    let (s, v) = json_of(&f.app, r).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(
        v,
        json!({"events": 1, "queued": 1, "duplicates": 0, "superseded": 0, "superseded_by": []})
    );
}

#[tokio::test]
async fn cross_origin_state_changes_are_refused_even_without_a_token() {
    let f = fixture(None).await;
    let mut r = req(
        Method::POST,
        "/api/runs",
        None,
        Some(json!({"project": "daily"})),
    );
    r.headers_mut()
        .insert(header::ORIGIN, "https://evil.example".parse().unwrap());
    r.headers_mut()
        .insert(header::HOST, "127.0.0.1:8787".parse().unwrap());
    let (s, v) = json_of(&f.app, r).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(v["error"]["code"], "cross_origin");
    let mut r = req(
        Method::POST,
        "/api/runs",
        None,
        Some(json!({"project": "daily"})),
    );
    r.headers_mut()
        .insert(header::ORIGIN, "http://127.0.0.1:8787".parse().unwrap());
    r.headers_mut()
        .insert(header::HOST, "127.0.0.1:8787".parse().unwrap());
    let (s, _) = json_of(&f.app, r).await;
    assert_eq!(s, StatusCode::CREATED, "same origin, no token configured");
    assert_eq!(f.queue.counts().await.unwrap().queued, 1);
}

#[tokio::test]
async fn hooks_refuse_keys_that_could_leave_the_workspace() {
    let f = fixture(Some(TOKEN)).await;
    let long = "a/".repeat(600) + "x.csv";
    let hostile = [
        "../etc/passwd",
        "sales/../../etc/passwd",
        "%2E%2E%2Fetc%2Fpasswd",
        "..%2F..%2Froot%2F.ssh%2Fid_rsa",
        "%2Fetc%2Fpasswd",
        "sales%5C..%5C..%5Cwindows",
        "sales/a%00.csv",
        long.as_str(),
        "",
    ];
    for key in hostile {
        let (s, v) = json_of(
            &f.app,
            req(Method::POST, "/hooks/s3", Some(TOKEN), Some(s3_body(key))),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "key {key:?}: {v}");
        assert!(
            matches!(
                v["error"]["code"].as_str(),
                Some("bad_key") | Some("bad_notification")
            ),
            "{key:?}: {v}"
        );
        // The message never echoes more than a short prefix of the key.
        assert!(
            v["error"]["message"].as_str().unwrap().len() < 600,
            "{key:?}"
        );
    }
    assert!(
        f.hooked.lock().unwrap().is_empty(),
        "no hostile event was handed on"
    );
    assert_eq!(f.queue.counts().await.unwrap().queued, 0);

    // Odd but harmless Unicode keys are taken verbatim and stay inside a workspace.
    let odd = [
        (
            "donn%C3%A9es/%C3%BC%E2%80%AEgnp.csv",
            "données/ü\u{202e}gnp.csv",
        ),
        ("sales/%F0%9F%93%88+q1.csv", "sales/📈 q1.csv"),
        (
            "sales/%E2%80%8B..%E2%80%8B/x.csv",
            "sales/\u{200b}..\u{200b}/x.csv",
        ),
        ("sales/...csv", "sales/...csv"),
        ("sales/%EF%BC%8E%EF%BC%8E%EF%BC%8Fx", "sales/．．／x"),
    ];
    for (raw, decoded) in odd {
        let (s, v) = json_of(
            &f.app,
            req(Method::POST, "/hooks/s3", Some(TOKEN), Some(s3_body(raw))),
        )
        .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{raw}: {v}");
        let got = f.hooked.lock().unwrap().last().unwrap().key.clone();
        assert_eq!(got, decoded);
        let joined = Path::new("/srv/workspace").join(&got);
        assert!(joined.starts_with("/srv/workspace"));
        assert!(
            Path::new(&got)
                .components()
                .all(|c| matches!(c, Component::Normal(_))),
            "{got:?}"
        );
    }
    assert_eq!(f.queue.counts().await.unwrap().queued, odd.len() as u64);

    // A redelivery is taken (202) but queues nothing new.
    let (s, v) = json_of(
        &f.app,
        req(
            Method::POST,
            "/hooks/s3",
            Some(TOKEN),
            Some(s3_body("sales/...csv")),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(v["queued"], 0);
    // Garbage and S3's test event.
    let r = req(Method::POST, "/hooks/s3", Some(TOKEN), None);
    let (s, v) = json_of(&f.app, r).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let test_event = json!({"Service": "Amazon S3", "Event": "s3:TestEvent"});
    let (s, v) = json_of(
        &f.app,
        req(Method::POST, "/hooks/s3", Some(TOKEN), Some(test_event)),
    )
    .await;
    assert_eq!(
        (s, v),
        (
            StatusCode::ACCEPTED,
            json!({"events": 0, "queued": 0, "duplicates": 0, "superseded": 0, "superseded_by": []})
        )
    );
}

#[tokio::test]
async fn a_failing_sink_answers_503_so_the_sender_retries() {
    let mut f = fixture(None).await;
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path().join("q.sqlite").to_str().unwrap())
        .await
        .unwrap();
    f.app = api::router(AppState {
        queue: q,
        projects: vec![].into(),
        git: None,
        token: None,
        hooks: Arc::new(|_| Box::pin(async { Err("database is locked".to_string()) })),
        intake: Default::default(),
        allowed_hosts: vec![],
    });
    let (s, v) = json_of(
        &f.app,
        req(
            Method::POST,
            "/hooks/s3",
            None,
            Some(s3_body("sales/a.csv")),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(v["error"]["code"], "not_queued");
}

#[test]
fn the_server_refuses_a_public_address_without_a_token() {
    let public = "0.0.0.0:8787".parse().unwrap();
    let err = api::check_listen(&public, None).unwrap_err().to_string();
    assert!(err.contains("without a token"), "{err}");
    assert!(api::check_listen(&public, Some(TOKEN)).is_ok());
    assert!(api::check_listen(&api::DEFAULT_LISTEN.parse().unwrap(), None).is_ok());
}

#[tokio::test]
async fn ui_pages_are_locked_down_and_offer_the_token_form_only_when_needed() {
    let with = fixture(Some(TOKEN)).await;
    let without = fixture(None).await;
    for (f, form) in [(&with, true), (&without, false)] {
        for page in ["/", "/projects", "/?status=running&project=daily"] {
            let (s, h, body) = send(&f.app, req(Method::GET, page, None, None)).await;
            assert_eq!(s, StatusCode::OK, "{page}");
            assert_eq!(
                h[header::CONTENT_SECURITY_POLICY],
                nbpipe_server::ui::UI_CSP
            );
            assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
            let html = String::from_utf8(body).unwrap();
            assert_eq!(html.contains("id=\"token-form\""), form, "{page}");
            assert!(
                !html.contains("<script>"),
                "no inline script under the UI's CSP"
            );
        }
    }
    let (s, h, _) = send(&with.app, req(Method::GET, "/ui/app.js", None, None)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(h[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    let (s, h, body) = send(&with.app, req(Method::GET, "/runs/nope", None, None)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(h[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(String::from_utf8(body).unwrap().contains("No run `nope`."));
    let (s, _, _) = send(&with.app, req(Method::GET, "/no/such/page", None, None)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}
