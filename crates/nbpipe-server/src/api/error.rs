//! The API's one error shape: `{"error": {"code": "...", "message": "..."}}` with the HTTP
//! status that fits, the fallback for unknown routes (JSON under `/api/` and `/hooks/`, a small
//! HTML page elsewhere), and [`error_shape`], the outermost layer that gives every other error
//! response that same shape — axum's own answers (an empty `405`, a `text/plain` `413` from
//! the body limit, a plain-text extractor rejection) included — and sends
//! `X-Content-Type-Options: nosniff` on every response.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::queue::QueueError;

/// An error answered to an API client.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code, e.g. `unauthorized`, `not_found`.
    pub code: &'static str,
    /// One sentence for people.
    pub message: String,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// `404 not_found`.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// `400 bad_request`.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// `401 unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// `500 internal`.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": {"code": self.code, "message": self.message}}));
        let mut resp = (self.status, body).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"nbpipe\""),
            );
        }
        resp
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> ApiError {
        match e {
            QueueError::NotFound(id) => ApiError::not_found(format!("no run `{id}`")),
            other => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "queue_unavailable",
                other.to_string(),
            ),
        }
    }
}

/// A JSON body that cannot be read is the client's mistake: `413` when it is too large, `415`
/// when it is not `application/json`, else `400 bad_request` — malformed JSON and JSON of the
/// wrong shape alike (axum would answer `422` for the latter).
impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> ApiError {
        match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => too_large(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                r.body_text(),
            ),
            _ => ApiError::bad_request(r.body_text()),
        }
    }
}

/// `413 too_large`: the body is over [`super::MAX_BODY_BYTES`].
fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!(
            "the request body is larger than {} bytes",
            super::MAX_BODY_BYTES
        ),
    )
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> ApiError {
        ApiError::bad_request(r.body_text())
    }
}

/// Whether `path` belongs to API clients (errors as JSON) rather than browsers (HTML pages).
fn is_api_path(path: &str) -> bool {
    path.starts_with("/api/") || path.starts_with("/hooks/") || path == "/metrics"
}

/// Unknown route: JSON for API clients, a page for browsers.
pub(crate) async fn fallback(uri: Uri) -> Response {
    let path = uri.path();
    if is_api_path(path) {
        ApiError::not_found(format!("no route `{path}`")).into_response()
    } else {
        (
            StatusCode::NOT_FOUND,
            Html(crate::ui::error_page(
                StatusCode::NOT_FOUND,
                "No such page.",
            )),
        )
            .into_response()
    }
}

/// The stable code of an error status that no handler chose itself.
fn code_of(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        s if s.is_server_error() => "internal",
        _ => "error",
    }
}

/// Outermost layer: every `4xx`/`5xx` that is not already a JSON error or an HTML page gets
/// the API's error shape (an HTML page outside the API's paths), and every response gets
/// `X-Content-Type-Options: nosniff`.
pub(crate) async fn error_shape(req: Request, next: Next) -> Response {
    let api = is_api_path(req.uri().path());
    let method = req.method().clone();
    let mut resp = next.run(req).await;
    let status = resp.status();
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let shaped = content_type.starts_with("application/json")
        || (!api && content_type.starts_with("text/html"));
    if (status.is_client_error() || status.is_server_error()) && !shaped {
        let message = match status {
            StatusCode::METHOD_NOT_ALLOWED => {
                let allow = resp
                    .headers()
                    .get(header::ALLOW)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                format!("`{method}` is not allowed here; allowed: {allow}")
            }
            StatusCode::PAYLOAD_TOO_LARGE => too_large().message,
            _ => {
                let body = std::mem::take(resp.body_mut());
                let bytes = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
                let text = String::from_utf8_lossy(&bytes).trim().to_string();
                if text.is_empty() {
                    status.canonical_reason().unwrap_or("error").to_string()
                } else {
                    text
                }
            }
        };
        let mut shaped = if api {
            ApiError::new(status, code_of(status), message).into_response()
        } else {
            crate::ui::page_response(crate::ui::error_page(status, &message))
        };
        *shaped.status_mut() = status;
        // Keep what the original answer said about the request (`Allow`, `WWW-Authenticate`).
        for name in [header::ALLOW, header::WWW_AUTHENTICATE] {
            if let Some(v) = resp.headers().get(&name) {
                shaped.headers_mut().insert(name, v.clone());
            }
        }
        resp = shaped;
    }
    resp.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}
