//! The web UI of `nbpipe serve`: server-rendered HTML pages over the same views as the API,
//! plus one small script for live updates and buttons.
//!
//! Pages: `/` (runs, filtered by project, status and trigger), `/runs/{id}` (the run, its
//! steps, and the selected step's report in a sandboxed frame that reloads as the step
//! progresses, cell by cell), `/projects` (projects, their triggers, "Run now").
//!
//! Owns markup, escaping and the UI's own Content-Security-Policy ([`UI_CSP`]: scripts and
//! styles only from this server, no inline script); must not read stores or the queue other
//! than through [`crate::api`]'s views. Every value shown is escaped with [`esc`].
//!
//! Actions (cancel, re-run, run now) are `fetch` POSTs to the API. When the server has a
//! token, the user types it once in the header's form; it is kept in the tab's
//! `sessionStorage` (gone when the tab closes, never in a cookie, so other sites cannot make
//! the browser send it) and sent as `Authorization: Bearer`. Without a token (loopback only)
//! the buttons work as they are.

mod pages;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::api::RouteDef;

/// The UI pages' Content-Security-Policy.
pub const UI_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; frame-src 'self'; form-action 'self'; \
     base-uri 'none'; frame-ancestors 'none'";

const APP_JS: &str = include_str!("app.js");
const APP_CSS: &str = include_str!("app.css");

pub(crate) fn route_defs() -> Vec<RouteDef> {
    vec![
        RouteDef {
            method: "get",
            path: "/",
            handler: get(pages::runs_page),
        },
        RouteDef {
            method: "get",
            path: "/runs/{id}",
            handler: get(pages::run_page),
        },
        RouteDef {
            method: "get",
            path: "/projects",
            handler: get(pages::projects_page),
        },
        RouteDef {
            method: "get",
            path: "/ui/app.js",
            handler: get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        },
        RouteDef {
            method: "get",
            path: "/ui/app.css",
            handler: get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        },
    ]
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// An HTML page with the UI's security headers.
pub(crate) fn page_response(html: String) -> Response {
    let mut resp = Html(html).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(UI_CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// HTML-escapes text for element content and double-quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a value for a URL path segment or query value.
pub fn url_part(s: &str) -> String {
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    const KEEP: &percent_encoding::AsciiSet =
        &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');
    utf8_percent_encode(s, KEEP).to_string()
}

/// Human-readable duration: `850 ms`, `12.3 s`, `4m 05s`, `1h 02m`.
pub fn fmt_duration(secs: f64) -> String {
    if secs < 1.0 {
        format!("{} ms", (secs * 1000.0).round() as u64)
    } else if secs < 60.0 {
        format!("{secs:.1} s")
    } else if secs < 3600.0 {
        let s = secs.round() as u64;
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        let m = (secs / 60.0).round() as u64;
        format!("{}h {:02}m", m / 60, m % 60)
    }
}

/// The page of an error answer: titled by its status (`Bad request`, `Not found`, …), with
/// `message` and a way back.
pub(crate) fn error_page(status: StatusCode, message: &str) -> String {
    let title = match status {
        StatusCode::BAD_REQUEST => "Bad request",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::METHOD_NOT_ALLOWED => "Method not allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "Request too large",
        StatusCode::SERVICE_UNAVAILABLE => "Unavailable",
        s => s.canonical_reason().unwrap_or("Error"),
    };
    pages::layout(
        title,
        "",
        false,
        &format!(
            "<h1>{}</h1><p>{}</p><p><a href=\"/\">All runs</a></p>",
            esc(title),
            esc(message)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            esc(r#"<a href="x" onclick='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(fmt_duration(0.25), "250 ms");
        assert_eq!(fmt_duration(12.34), "12.3 s");
        assert_eq!(fmt_duration(245.0), "4m 05s");
        assert_eq!(fmt_duration(3720.0), "1h 02m");
    }

    #[test]
    fn url_parts_cannot_break_out() {
        assert_eq!(url_part("a b/../c?d#e\"<"), "a%20b%2F..%2Fc%3Fd%23e%22%3C");
    }
}
