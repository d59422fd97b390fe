//! The HTTP API does what its OpenAPI document says, and answers every error in one shape:
//! regression tests named after what a fuzzer (schemathesis) and a hostile client found
//! (issue 8, items 5 and 6). Against a real queue on a temporary SQLite file, through the
//! router. The fuzzer itself runs against the real binary in `crates/nbpipe/tests`.

mod api_support;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use nbpipe_server::api;
use serde_json::{json, Value};

use api_support::*;

async fn document(f: &Fixture) -> Value {
    let (s, doc) = json_of(&f.app, req(Method::GET, "/api/openapi.json", None, None)).await;
    assert_eq!(s, StatusCode::OK);
    doc
}

fn list_param<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["paths"]["/api/runs"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no `{name}` parameter"))
}

fn assert_error(v: &Value, code: &str) {
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
}

#[tokio::test]
async fn unknown_status_filter_is_400_and_the_spec_has_its_enum() {
    let f = fixture(None).await;
    let doc = document(&f).await;
    let status = list_param(&doc, "status");
    assert_eq!(status["schema"]["type"], "array");
    assert_eq!(status["explode"], false);
    assert_eq!(
        doc["components"]["schemas"]["Status"]["enum"],
        json!(["queued", "running", "succeeded", "failed", "cancelled"])
    );
    for ok in ["running,queued", "failed"] {
        let (s, v) = json_of(
            &f.app,
            req(Method::GET, &format!("/api/runs?status={ok}"), None, None),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{ok}: {v}");
    }
    // Each part must be a status: an empty part or padding is not one.
    for bad in ["bogus", "", "running,", "running,bogus", "%20running"] {
        let (s, v) = json_of(
            &f.app,
            req(Method::GET, &format!("/api/runs?status={bad}"), None, None),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}");
        assert_error(&v, "bad_request");
    }
}

#[tokio::test]
async fn negative_offset_is_400_and_the_spec_says_minimum_0() {
    let f = fixture(None).await;
    let doc = document(&f).await;
    assert_eq!(list_param(&doc, "offset")["schema"]["minimum"], 0);
    let max = list_param(&doc, "offset")["schema"]["maximum"]
        .as_u64()
        .unwrap();
    for bad in ["-1".to_string(), "x".to_string(), (max + 1).to_string()] {
        let (s, v) = json_of(
            &f.app,
            req(Method::GET, &format!("/api/runs?offset={bad}"), None, None),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}");
        assert_error(&v, "bad_request");
    }
    let (s, _) = json_of(
        &f.app,
        req(Method::GET, &format!("/api/runs?offset={max}"), None, None),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn limit_1001_is_400_as_the_spec_says_at_most_1000() {
    let f = fixture(None).await;
    let doc = document(&f).await;
    let schema = &list_param(&doc, "limit")["schema"];
    assert_eq!(schema["maximum"], api::MAX_LIST_LIMIT);
    assert_eq!(schema["minimum"], 1);
    for (limit, want) in [
        ("1001", StatusCode::BAD_REQUEST),
        ("0", StatusCode::BAD_REQUEST),
        ("-5", StatusCode::BAD_REQUEST),
        ("1000", StatusCode::OK),
        ("1", StatusCode::OK),
    ] {
        let (s, v) = json_of(
            &f.app,
            req(Method::GET, &format!("/api/runs?limit={limit}"), None, None),
        )
        .await;
        assert_eq!(s, want, "limit={limit}: {v}");
    }
    // The UI's list takes the same query: the same limits.
    let (s, _, _) = send(&f.app, req(Method::GET, "/?limit=1001", None, None)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn dedup_key_length_limit_is_declared_and_enforced_in_characters() {
    let f = fixture(None).await;
    let doc = document(&f).await;
    let key = &doc["paths"]["/api/runs"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"]["properties"]["dedup_key"];
    assert_eq!(key["maxLength"], api::MAX_DEDUP_KEY_CHARS);
    assert_eq!(key["minLength"], 1);
    // `maxLength` counts characters: 1024 three-byte characters are within it.
    let at_limit = "€".repeat(1024);
    let over = "a".repeat(1025);
    for (k, want) in [
        (json!(at_limit), StatusCode::CREATED),
        (json!(over), StatusCode::BAD_REQUEST),
        (json!(""), StatusCode::BAD_REQUEST),
        (Value::Null, StatusCode::CREATED),
    ] {
        let body = json!({"project": "daily", "dedup_key": k});
        let (s, v) = json_of(&f.app, req(Method::POST, "/api/runs", None, Some(body))).await;
        assert_eq!(s, want, "{v}");
    }
}

#[tokio::test]
async fn hook_empty_batch_is_refused_like_an_empty_object() {
    let f = fixture(None).await;
    for body in [json!([]), json!({}), json!([[]]), json!([1]), json!([{}])] {
        let (s, v) = json_of(
            &f.app,
            req(Method::POST, "/hooks/s3", None, Some(body.clone())),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_error(&v, "bad_notification");
    }
    // A recognised notification carrying no object creation is taken, with no events.
    for body in [json!({"Records": []}), json!([{"Event": "s3:TestEvent"}])] {
        let (s, v) = json_of(
            &f.app,
            req(Method::POST, "/hooks/s3", None, Some(body.clone())),
        )
        .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{body}: {v}");
        assert_eq!(v["events"], 0);
    }
    let doc = document(&f).await;
    let schema =
        &doc["paths"]["/hooks/s3"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(schema["oneOf"][1]["type"], "array");
    assert_eq!(schema["oneOf"][1]["minItems"], 1);
}

#[tokio::test]
async fn malformed_json_bodies_are_400_not_422() {
    let f = fixture(None).await;
    for raw in [
        "{",
        "[null, null]",
        "{\"project\": 5}",
        "{\"project\": \"daily\", \"surprise\": 1}",
        "{\"parameters\": {}}",
    ] {
        let r = Request::post("/api/runs")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(raw))
            .unwrap();
        let (s, h, b) = send(&f.app, r).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{raw}");
        assert!(h[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/json"));
        assert_error(&serde_json::from_slice(&b).unwrap(), "bad_request");
    }
    let doc = document(&f).await;
    let responses = &doc["paths"]["/api/runs"]["post"]["responses"];
    assert!(responses["400"].is_object());
    assert!(responses["422"].is_null(), "422 is never answered");
}

#[tokio::test]
async fn ui_bad_status_filter_is_a_bad_request_page_not_not_found() {
    let f = fixture(None).await;
    for uri in ["/?status=bogus", "/?surprise=1"] {
        let (s, h, body) = send(&f.app, req(Method::GET, uri, None, None)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{uri}");
        assert!(h[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let html = String::from_utf8(body).unwrap();
        assert!(html.contains("<title>Bad request"), "{html}");
        assert!(!html.contains("Not found"), "{html}");
    }
    // The filter form's "any" sends empty values: that is no filter.
    let (s, _, _) = send(
        &f.app,
        req(Method::GET, "/?project=&status=&q=", None, None),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let doc = document(&f).await;
    let ui = &doc["paths"]["/"]["get"];
    assert!(ui["responses"]["400"].is_object());
    assert!(ui["responses"]["400"]["$ref"]
        .as_str()
        .unwrap()
        .ends_with("HtmlError"));
}

#[tokio::test]
async fn sse_endpoint_is_described_as_an_event_stream_of_typed_events() {
    let f = fixture(None).await;
    let doc = document(&f).await;
    let ok = &doc["paths"]["/api/runs/{id}/events"]["get"]["responses"]["200"]["content"];
    assert_eq!(ok.as_object().unwrap().len(), 1);
    let schema = &ok["text/event-stream"]["schema"];
    assert_eq!(schema["$ref"], "#/components/schemas/RunEvent");
    let events = doc["components"]["schemas"]["RunEvent"]["oneOf"]
        .as_array()
        .unwrap();
    let names: Vec<&Value> = events
        .iter()
        .map(|e| &e["properties"]["event"]["const"])
        .collect();
    assert_eq!(names, [&json!("run"), &json!("end"), &json!("error")]);
    assert_eq!(
        events[0]["properties"]["data"]["contentSchema"]["$ref"],
        "#/components/schemas/RunSnapshot"
    );
}

#[tokio::test]
async fn every_operation_documents_host_and_origin_refusals_and_submit_its_400s() {
    let f = fixture(None).await;
    let doc = document(&f).await;
    let error = json!({"$ref": "#/components/schemas/Error"});
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            for code in ["403", "421"] {
                let r = &op["responses"][code]["$ref"];
                assert!(r.is_string(), "{method} {path} does not document {code}");
            }
        }
    }
    let r = &doc["components"]["responses"];
    assert_eq!(
        r["Misdirected"]["content"]["application/json"]["schema"],
        error
    );
    assert!(r["Misdirected"]["description"]
        .as_str()
        .unwrap()
        .contains("misdirected_request"));
    assert!(r["CrossOrigin"]["description"]
        .as_str()
        .unwrap()
        .contains("cross_origin"));
    let submit = &doc["paths"]["/api/runs"]["post"]["responses"];
    assert!(submit["400"]["description"]
        .as_str()
        .unwrap()
        .contains("bad_parameters"));
    for code in [
        "200", "201", "400", "401", "403", "404", "413", "415", "421", "503",
    ] {
        assert!(submit[code].is_object(), "submit does not document {code}");
    }
    // The server lists its projects as the body's `project` enum.
    let project = &doc["paths"]["/api/runs"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"]["properties"]["project"];
    assert_eq!(project["enum"], json!(["daily", "churn"]));
}

#[tokio::test]
async fn method_not_allowed_has_a_json_body_and_its_allow_header() {
    let f = fixture(None).await;
    for (method, uri) in [
        (Method::DELETE, "/api/runs"),
        (Method::PUT, "/api/runs/nope"),
        (Method::GET, "/hooks/s3"),
        (Method::POST, "/api/health"),
    ] {
        let (s, h, body) = send(&f.app, req(method.clone(), uri, None, None)).await;
        assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
        assert!(h.contains_key(header::ALLOW), "{method} {uri}");
        assert!(h[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/json"));
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_error(&v, "method_not_allowed");
    }
    // A UI page answers with a page.
    let (s, h, body) = send(&f.app, req(Method::DELETE, "/projects", None, None)).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert!(h[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(String::from_utf8(body)
        .unwrap()
        .contains("<title>Method not allowed"));
}

#[tokio::test]
async fn oversized_hook_body_is_a_json_413_not_text_plain() {
    let f = fixture(None).await;
    for (uri, size) in [
        ("/hooks/s3", 20 * 1024 * 1024),
        ("/hooks/s3", api::MAX_BODY_BYTES + 1),
        ("/api/runs", api::MAX_BODY_BYTES + 1),
    ] {
        let r = Request::post(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(vec![b' '; size]))
            .unwrap();
        let (s, h, body) = send(&f.app, r).await;
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{uri} {size}");
        assert!(h[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/json"));
        assert_error(&serde_json::from_slice(&body).unwrap(), "too_large");
    }
}

#[tokio::test]
async fn every_response_says_nosniff() {
    let f = fixture(Some(TOKEN)).await;
    let id = f.queued_run().await;
    let cases = [
        req(Method::GET, "/api/health", None, None),
        req(Method::GET, "/metrics", None, None),
        req(Method::GET, "/api/openapi.json", None, None),
        req(Method::GET, "/api/runs", None, None),
        req(Method::GET, &format!("/api/runs/{id}"), None, None),
        req(Method::GET, "/api/runs?limit=0", None, None),
        req(Method::GET, "/api/nothing", None, None),
        req(
            Method::POST,
            "/api/runs",
            None,
            Some(json!({"project": "daily"})),
        ),
        req(
            Method::POST,
            "/api/runs",
            Some(TOKEN),
            Some(json!({"project": "daily"})),
        ),
        req(Method::DELETE, "/api/runs", Some(TOKEN), None),
        req(Method::GET, "/", None, None),
        req(Method::GET, "/?status=bogus", None, None),
        req(Method::GET, "/runs/nope", None, None),
        req(Method::GET, "/ui/app.css", None, None),
        req(Method::GET, "/no/such/page", None, None),
    ];
    for r in cases {
        let what = format!("{} {}", r.method(), r.uri());
        let (s, h, _) = send(&f.app, r).await;
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{what} ({s})");
        if s.is_client_error() || s.is_server_error() {
            let ct = h[header::CONTENT_TYPE].to_str().unwrap();
            assert!(
                ct.starts_with("application/json") || ct.starts_with("text/html"),
                "{what}: {ct}"
            );
        }
    }
}

#[tokio::test]
async fn host_and_origin_refusals_are_the_documented_json_errors_on_ui_paths_too() {
    let f = fixture(None).await;
    for (uri, host, origin, want, code) in [
        (
            "/api/runs",
            "evil.example",
            None,
            StatusCode::MISDIRECTED_REQUEST,
            "misdirected_request",
        ),
        (
            "/",
            "evil.example:8787",
            None,
            StatusCode::MISDIRECTED_REQUEST,
            "misdirected_request",
        ),
        (
            "/api/runs",
            "127.0.0.1:8787",
            Some("http://evil.example"),
            StatusCode::FORBIDDEN,
            "cross_origin",
        ),
    ] {
        let mut r = Request::get(uri).header(header::HOST, host);
        if let Some(o) = origin {
            r = r.header(header::ORIGIN, o);
        }
        let (s, h, body) = send(&f.app, r.body(Body::empty()).unwrap()).await;
        assert_eq!(s, want, "{uri} {host} {origin:?}");
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_error(&serde_json::from_slice(&body).unwrap(), code);
    }
}
