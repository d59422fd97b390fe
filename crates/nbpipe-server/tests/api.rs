//! The HTTP API's runs, projects, live events and step reports, against a real queue on a
//! temporary SQLite file, through the router (`tower::ServiceExt::oneshot`, no sockets).
//! Tokens, origins, hooks and listening: `api_access.rs`.

mod api_support;

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use futures::StreamExt;
use nbpipe_server::api;
use nbpipe_server::queue::{Finish, Limits};
use serde_json::{json, Value};
use tower::ServiceExt;

use api_support::*;

#[tokio::test]
async fn health_metrics_and_projects_answer_without_a_token() {
    let f = fixture(Some(TOKEN)).await;
    let (s, v) = json_of(&f.app, req(Method::GET, "/api/health", None, None)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "ok");
    assert_eq!(v["queue"], "sqlite");

    let (s, v) = json_of(
        &f.app,
        req(
            Method::POST,
            "/api/runs",
            Some(TOKEN),
            Some(json!({"project": "daily"})),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, headers, body) = send(&f.app, req(Method::GET, "/metrics", None, None)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains("# TYPE nbpipe_runs gauge"), "{text}");
    assert!(text.contains("nbpipe_runs{status=\"queued\"} 1"), "{text}");
    assert!(text.contains("nbpipe_runs{status=\"failed\"} 0"), "{text}");
    assert!(text.contains("nbpipe_build_info{version=\""), "{text}");
    assert!(text.contains("nbpipe_queue_up 1"), "{text}");

    let (s, v) = json_of(&f.app, req(Method::GET, "/api/projects", None, None)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["projects"][1]["name"], "churn");
    assert_eq!(v["projects"][1]["triggers"][0], "s3 incoming/sales/*.csv");
    // Each project's run policy: the values it sets, and the effective ones it leaves unset
    // with where they come from.
    let daily = &v["projects"][0]["policy"];
    assert_eq!(
        daily["concurrency"],
        json!({"value": 2, "source": "project"})
    );
    assert_eq!(daily["retries"], json!({"value": 1, "source": "project"}));
    assert_eq!(
        daily["retry_backoff_seconds"],
        json!({"value": 30.0, "source": "project"})
    );
    assert_eq!(
        daily["retry_backoff_max_seconds"],
        json!({"value": 600.0, "source": "default"})
    );
    assert_eq!(
        daily["timeout_seconds"],
        json!({"value": 3600.0, "source": "project"})
    );
    let churn = &v["projects"][1]["policy"];
    assert_eq!(
        churn["concurrency"],
        json!({"value": 1, "source": "server"})
    );
    assert_eq!(churn["retries"], json!({"value": 0, "source": "steps"}));
    assert_eq!(
        churn["retry_backoff_seconds"],
        json!({"value": 10.0, "source": "default"})
    );
    assert_eq!(
        churn["timeout_seconds"],
        json!({"value": null, "source": "default"})
    );
}

#[tokio::test]
async fn openapi_document_lists_every_route() {
    let f = fixture(None).await;
    let (s, doc) = json_of(&f.app, req(Method::GET, "/api/openapi.json", None, None)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    let routes = api::routes();
    assert!(routes.len() >= 17, "{routes:?}");
    let full = api::openapi_document();
    for (method, path) in routes {
        assert!(
            full["paths"][path][method].is_object(),
            "`{method} {path}` is not in the OpenAPI document"
        );
        // Served: all but the git hook of a server that follows no repository.
        assert_eq!(
            doc["paths"][path][method].is_object(),
            path != "/hooks/git",
            "`{method} {path}` as served"
        );
        // Every route answers something other than the fallback's "no route".
        let uri = path.replace("{id}", "nope").replace("{file}", "x.html");
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let (_, _, body) = send(&f.app, req(m, &uri, None, None)).await;
        assert!(
            !String::from_utf8_lossy(&body).contains("no route"),
            "{method} {uri}"
        );
    }
}

#[tokio::test]
async fn submit_list_get_cancel_and_rerun() {
    let f = fixture(Some(TOKEN)).await;
    let body = json!({"project": "daily", "parameters": {"day": "2024-01-02"}});
    let (s, headers, b) = send(
        &f.app,
        req(Method::POST, "/api/runs", Some(TOKEN), Some(body)),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let v: Value = serde_json::from_slice(&b).unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(headers[header::LOCATION], format!("/api/runs/{id}"));
    assert_eq!(v["duplicate"], false);

    // Idempotent submit with a dedup key.
    let keyed = json!({"project": "churn", "dedup_key": "k1"});
    let (s1, a) = json_of(
        &f.app,
        req(Method::POST, "/api/runs", Some(TOKEN), Some(keyed.clone())),
    )
    .await;
    let (s2, b) = json_of(
        &f.app,
        req(Method::POST, "/api/runs", Some(TOKEN), Some(keyed)),
    )
    .await;
    assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::OK));
    assert_eq!(a["id"], b["id"]);
    assert_eq!(b["duplicate"], true);

    let (_, all) = json_of(&f.app, req(Method::GET, "/api/runs", None, None)).await;
    assert_eq!(all["runs"].as_array().unwrap().len(), 2);
    let (_, daily) = json_of(
        &f.app,
        req(
            Method::GET,
            "/api/runs?project=daily&status=queued,running",
            None,
            None,
        ),
    )
    .await;
    let runs = daily["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["id"], id.as_str());
    assert_eq!(runs[0]["parameters"]["day"], "2024-01-02");
    assert_eq!(runs[0]["max_attempts"], 2);
    let (_, none) = json_of(
        &f.app,
        req(Method::GET, "/api/runs?status=failed", None, None),
    )
    .await;
    assert!(none["runs"].as_array().unwrap().is_empty());
    let (_, paged) = json_of(
        &f.app,
        req(Method::GET, "/api/runs?limit=1&offset=1", None, None),
    )
    .await;
    assert_eq!(paged["runs"].as_array().unwrap().len(), 1);
    let (s, bad) = json_of(
        &f.app,
        req(Method::GET, "/api/runs?status=done", None, None),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}");

    let (s, detail) = json_of(
        &f.app,
        req(Method::GET, &format!("/api/runs/{id}"), None, None),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(detail["status"], "queued");
    assert_eq!(detail["reason"], "api");
    assert!(detail["steps"].as_array().unwrap().is_empty());

    let (s, v) = json_of(
        &f.app,
        req(
            Method::POST,
            &format!("/api/runs/{id}/cancel"),
            Some(TOKEN),
            None,
        ),
    )
    .await;
    assert_eq!(
        (s, v["result"].as_str()),
        (StatusCode::OK, Some("cancelled"))
    );
    let (s, v) = json_of(
        &f.app,
        req(
            Method::POST,
            &format!("/api/runs/{id}/cancel"),
            Some(TOKEN),
            None,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(v["error"]["code"], "already_finished");

    let (s, v) = json_of(
        &f.app,
        req(
            Method::POST,
            &format!("/api/runs/{id}/rerun"),
            Some(TOKEN),
            None,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(v["rerun_of"], id.as_str());
    let new = f
        .queue
        .get(v["id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(new.rerun_of.as_deref(), Some(id.as_str()));
    assert_eq!(new.parameters["day"], "2024-01-02");
}

#[tokio::test]
async fn bad_submissions_and_unknown_things_are_clear_errors() {
    let f = fixture(None).await;
    let cases = [
        (json!({"project": "nope"}), StatusCode::NOT_FOUND),
        (
            json!({"project": "daily", "parameters": [1, 2]}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"project": "daily", "surprise": 1}),
            StatusCode::BAD_REQUEST,
        ),
        (json!({"parameters": {}}), StatusCode::BAD_REQUEST),
    ];
    for (body, want) in cases {
        let (s, v) = json_of(
            &f.app,
            req(Method::POST, "/api/runs", None, Some(body.clone())),
        )
        .await;
        assert_eq!(s, want, "{body} → {v}");
        assert!(v["error"]["message"].is_string(), "{v}");
    }
    // Not JSON.
    let r = Request::post("/api/runs")
        .body(Body::from("project=daily"))
        .unwrap();
    let (s, v) = json_of(&f.app, r).await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{v}");
    for uri in [
        "/api/runs/nope",
        "/api/runs/nope/events",
        "/api/nothing",
        "/runs/nope/steps/a.html",
    ] {
        let (s, v) = json_of(&f.app, req(Method::GET, uri, None, None)).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(v["error"]["code"], "not_found", "{uri}: {v}");
    }
    for uri in ["/api/runs/nope/cancel", "/api/runs/nope/rerun"] {
        let (s, _) = json_of(&f.app, req(Method::POST, uri, None, None)).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{uri}");
    }
    // An oversized body is refused before it is parsed.
    let big = "x".repeat(api::MAX_BODY_BYTES + 10);
    let r = Request::post("/hooks/s3")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(big))
        .unwrap();
    let (s, _, _) = send(&f.app, r).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
}

/// Reads SSE frames until one `run` event whose data satisfies `pred` (panics after 10 s).
async fn next_event(
    stream: &mut (impl futures::Stream<Item = Result<axum::body::Bytes, axum::Error>> + Unpin),
    buf: &mut String,
) -> (String, String) {
    loop {
        if let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let mut event = String::from("message");
            let mut data = String::new();
            for line in frame.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = e.to_string();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data += d;
                }
            }
            if data.is_empty() && event == "message" {
                continue; // keep-alive comment
            }
            return (event, data);
        }
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("an event within 10 s")
            .expect("the stream is open")
            .unwrap();
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

#[tokio::test]
async fn events_stream_delivers_status_and_step_changes_then_ends() {
    let f = fixture(None).await;
    let id = f.queued_run().await;
    let resp = f
        .app
        .clone()
        .oneshot(req(
            Method::GET,
            &format!("/api/runs/{id}/events"),
            None,
            None,
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut stream = resp.into_body().into_data_stream();
    let mut buf = String::new();

    let (event, data) = next_event(&mut stream, &mut buf).await;
    assert_eq!(event, "run");
    let snap: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(snap["status"], "queued");

    let claimed = f
        .queue
        .claim("w1", &Limits::default(), Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.run.id, id);
    let (_, data) = next_event(&mut stream, &mut buf).await;
    let snap: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(snap["status"], "running");

    let manifest = json!({"steps": [{"id": "clean", "notebook": "clean.ipynb", "status": "running",
        "needs": [], "attempts": 1, "parameters": {}}]});
    f.queue.update_manifest(&id, "w1", &manifest).await.unwrap();
    let (_, data) = next_event(&mut stream, &mut buf).await;
    let snap: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(snap["steps"][0]["id"], "clean");
    assert_eq!(snap["steps"][0]["status"], "running");

    let done = json!({"steps": [{"id": "clean", "notebook": "clean.ipynb", "status": "succeeded",
        "needs": [], "attempts": 1, "parameters": {}, "duration": 1.5}]});
    f.queue
        .finish(
            &id,
            "w1",
            Finish::Succeeded {
                output: vec![],
                manifest: done,
            },
        )
        .await
        .unwrap();
    let (_, data) = next_event(&mut stream, &mut buf).await;
    let snap: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(snap["status"], "succeeded");
    assert_eq!(snap["steps"][0]["status"], "succeeded");
    let (event, data) = next_event(&mut stream, &mut buf).await;
    assert_eq!((event.as_str(), data.as_str()), ("end", "succeeded"));
    let rest = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap();
    assert!(rest.is_none(), "the stream closes after `end`");
}

const NOTEBOOK: &str = r##"{"cells":[
 {"cell_type":"markdown","metadata":{},"source":"# Live report"},
 {"cell_type":"code","execution_count":1,"metadata":{"papermill":{"status":"completed"}},"source":"print('one')",
  "outputs":[{"output_type":"stream","name":"stdout","text":"one\n"}]},
 {"cell_type":"code","execution_count":null,"metadata":{"papermill":{"status":"running"}},"source":"slow()","outputs":[]}
],"metadata":{"language_info":{"name":"python"}},"nbformat":4,"nbformat_minor":5}"##;

#[tokio::test]
async fn step_reports_are_sandboxed_and_only_manifest_steps_are_served() {
    let f = fixture(None).await;
    let out = tempfile::tempdir().unwrap();
    let html = out.path().join("clean.html");
    std::fs::write(&html, "<!DOCTYPE html><p>final report</p>").unwrap();
    let nb = out.path().join("model.ipynb");
    std::fs::write(&nb, NOTEBOOK).unwrap();
    let secret = out.path().join("secret.html");
    std::fs::write(&secret, "TOP-SECRET-CONTENT").unwrap();
    let id = f.queued_run().await;
    let manifest = json!({"steps": [
        {"id": "clean", "notebook": "clean.ipynb", "status": "succeeded", "needs": [], "attempts": 1,
         "parameters": {}, "output": out.path().join("clean.ipynb").to_str(), "html": html.to_str()},
        {"id": "model", "notebook": "model.ipynb", "status": "running", "needs": ["clean"], "attempts": 1,
         "parameters": {}, "output": nb.to_str()},
        {"id": "stdin", "notebook": "x.ipynb", "status": "succeeded", "needs": [], "attempts": 1,
         "parameters": {}, "html": "-"},
        {"id": "later", "notebook": "later.ipynb", "status": "pending", "needs": ["model"], "attempts": 0,
         "parameters": {}}
    ]});
    f.queue
        .claim("w1", &Limits::default(), Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    f.queue.update_manifest(&id, "w1", &manifest).await.unwrap();

    let (s, headers, body) = send(
        &f.app,
        req(
            Method::GET,
            &format!("/runs/{id}/steps/clean.html"),
            None,
            None,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        String::from_utf8(body).unwrap(),
        "<!DOCTYPE html><p>final report</p>"
    );
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.starts_with("sandbox allow-scripts;"), "{csp}");
    assert!(!csp.contains("allow-same-origin"), "{csp}");
    assert!(csp.contains("connect-src 'none'"), "{csp}");
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");

    // A running step is rendered from its partial notebook.
    let (s, headers, body) = send(
        &f.app,
        req(
            Method::GET,
            &format!("/runs/{id}/steps/model.html"),
            None,
            None,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .starts_with("sandbox"));
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.contains("Live report") && text.contains("one"),
        "{text}"
    );

    // The API reports its cell progress.
    let (_, detail) = json_of(
        &f.app,
        req(Method::GET, &format!("/api/runs/{id}"), None, None),
    )
    .await;
    assert_eq!(
        detail["steps"][1]["progress"],
        json!({"total": 2, "done": 1, "running": 2})
    );
    assert_eq!(
        detail["steps"][0]["report_url"],
        format!("/runs/{id}/steps/clean.html")
    );
    assert_eq!(detail["steps"][3]["report_url"], Value::Null);

    // Names that are not manifest steps, or not names at all, are 404s; "-" never reads stdin.
    for file in [
        "secret.html",
        "later.html",
        "stdin.html",
        "clean",
        "..%2Fsecret.html",
        "..%2F..%2F..%2Fetc%2Fpasswd.html",
        "%2Fetc%2Fpasswd.html",
        "clean%00.html",
        "cl%C3%A9an.html",
    ] {
        let (s, _, body) = send(
            &f.app,
            req(Method::GET, &format!("/runs/{id}/steps/{file}"), None, None),
        )
        .await;
        assert_eq!(
            s,
            StatusCode::NOT_FOUND,
            "{file}: {}",
            String::from_utf8_lossy(&body)
        );
        assert!(!String::from_utf8_lossy(&body).contains("TOP-SECRET"));
    }
    // Regression: the UI framed a raw JSON 404 for a step that never started. It gets a
    // page saying why there is no report.
    let (s, headers, body) = send(
        &f.app,
        req(
            Method::GET,
            &format!("/runs/{id}/steps/later.html"),
            None,
            None,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    let page = String::from_utf8(body).unwrap();
    assert!(page.contains("No report"), "{page}");
    assert!(
        page.contains("<code>later</code> has not started yet."),
        "{page}"
    );
    assert!(!page.contains("\"error\""), "{page}");
    let (s, _, _) = send(
        &f.app,
        req(Method::GET, "/runs/nope/steps/clean.html", None, None),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}
