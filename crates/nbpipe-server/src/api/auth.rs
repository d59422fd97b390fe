//! Who may talk to the server, and who may change state: one middleware in front of every
//! route.
//!
//! Every request first must name this server in `Host`: an IP address (v4, or v6 in
//! brackets), `localhost`, or one of the `--allowed-host` names, with any port; anything else is
//! `421 misdirected_request`. That is what defeats DNS rebinding: a page whose own name was
//! pointed at 127.0.0.1 sends its own name as `Host`. (A request without `Host`, which no
//! browser sends, passes.) Then a request whose `Origin` header is not this server's own
//! (another site's page in the user's browser, or `null` from a sandboxed report) is refused
//! with `403 cross_origin`, reads included.
//!
//! `GET` and `HEAD` then pass. Anything else changes state (submit, cancel, re-run, hooks)
//! and needs, when a token is configured, `Authorization: Bearer <token>` — on `/hooks/` the
//! bare token is also taken, as MinIO sends its `auth_token` verbatim. Tokens are compared
//! through their SHA-256 digests in constant time, so neither content nor length leaks by
//! timing.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::{ApiError, Shared};

pub(crate) async fn require_token(
    State(state): State<Shared>,
    req: Request,
    next: Next,
) -> Response {
    if let Err(e) = check_host(req.headers(), &state.allowed_hosts) {
        return e.into_response();
    }
    if let Err(e) = check_origin(req.headers()) {
        return e.into_response();
    }
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return next.run(req).await;
    }
    // Git providers sign their pushes (`/hooks/git` verifies that) and send no token.
    let git_push = req.method() == Method::POST && req.uri().path() == "/hooks/git";
    if let Some(token) = state.token.as_deref().filter(|_| !git_push) {
        let hook = req.uri().path().starts_with("/hooks/");
        if let Err(e) = check_token(req.headers(), token, hook) {
            return e.into_response();
        }
    }
    next.run(req).await
}

/// The token presented in `Authorization`, if any.
fn presented(headers: &HeaderMap, allow_bare: bool) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    if let Some((scheme, rest)) = value.split_once(' ') {
        if scheme.eq_ignore_ascii_case("bearer") {
            return Some(rest.trim());
        }
        return None;
    }
    allow_bare.then_some(value)
}

fn check_token(headers: &HeaderMap, token: &str, allow_bare: bool) -> Result<(), ApiError> {
    match presented(headers, allow_bare) {
        None => Err(ApiError::unauthorized(
            "this request changes state and needs `Authorization: Bearer <token>`",
        )),
        Some(given) if tokens_equal(given, token) => Ok(()),
        Some(_) => Err(ApiError::unauthorized("the token is not valid")),
    }
}

/// Constant-time comparison (of digests, so lengths do not leak either).
pub(crate) fn tokens_equal(a: &str, b: &str) -> bool {
    let da = Sha256::digest(a.as_bytes());
    let db = Sha256::digest(b.as_bytes());
    da.iter()
        .zip(db.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// The host name of a `Host` header value (`name`, `name:port`, `[v6]:port`), lowercased.
fn host_name(host: &str) -> String {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(name, _port)| name)
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Refuses a request that names another host than this server (see the module docs).
fn check_host(headers: &HeaderMap, allowed: &[String]) -> Result<(), ApiError> {
    let Some(host) = headers.get(header::HOST) else {
        return Ok(());
    };
    let raw = host.to_str().unwrap_or("");
    let name = host_name(raw);
    let ok = !name.is_empty()
        && (name.parse::<std::net::IpAddr>().is_ok()
            || name == "localhost"
            || allowed
                .iter()
                .any(|a| host_name(a) == name || a.eq_ignore_ascii_case(&name)));
    if ok {
        return Ok(());
    }
    let mut shown: String = raw.chars().take(100).collect();
    if shown.len() < raw.len() {
        shown.push('…');
    }
    Err(ApiError::new(
        StatusCode::MISDIRECTED_REQUEST,
        "misdirected_request",
        format!(
            "this server does not answer to host `{shown}`\n\nhint: reach it by IP address or \
             `localhost`, or start it with `--allowed-host {name}`"
        ),
    ))
}

/// Refuses a cross-origin request: an `Origin` whose host (and port) is not the request's
/// `Host`.
fn check_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("null");
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or("");
    if !origin_host.is_empty() && origin_host.eq_ignore_ascii_case(host) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "cross_origin",
        format!("requests from another origin (`{origin}`) are refused"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn tokens_compare_by_content() {
        assert!(tokens_equal("abc", "abc"));
        assert!(!tokens_equal("abc", "abd"));
        assert!(!tokens_equal("abc", "abcd"));
        assert!(!tokens_equal("", "abc"));
    }

    #[test]
    fn bearer_and_bare_tokens() {
        let h = headers(&[(header::AUTHORIZATION, "Bearer s3cret")]);
        assert!(check_token(&h, "s3cret", false).is_ok());
        let h = headers(&[(header::AUTHORIZATION, "bearer s3cret")]);
        assert!(check_token(&h, "s3cret", false).is_ok());
        let bare = headers(&[(header::AUTHORIZATION, "s3cret")]);
        assert!(check_token(&bare, "s3cret", false).is_err());
        assert!(check_token(&bare, "s3cret", true).is_ok());
        let basic = headers(&[(header::AUTHORIZATION, "Basic s3cret")]);
        assert!(check_token(&basic, "s3cret", true).is_err());
        assert!(check_token(&HeaderMap::new(), "s3cret", true).is_err());
    }

    #[test]
    fn host_must_be_an_address_localhost_or_allowed() {
        let with = |host: &str| headers(&[(header::HOST, host)]);
        let none: Vec<String> = vec![];
        for ok in [
            "127.0.0.1:8787",
            "127.0.0.1",
            "[::1]:8787",
            "localhost:8787",
            "LOCALHOST",
            "10.1.2.3:80",
        ] {
            assert!(check_host(&with(ok), &none).is_ok(), "{ok}");
        }
        for bad in [
            "evil.example:8787",
            "evil.example",
            "localhost.evil.example",
            "127.0.0.1.nip.io:8787",
            "",
        ] {
            let err = check_host(&with(bad), &none).unwrap_err();
            assert_eq!(err.status, StatusCode::MISDIRECTED_REQUEST, "{bad}");
        }
        let allowed = vec!["nbpipe.internal".to_string()];
        assert!(check_host(&with("nbpipe.internal:443"), &allowed).is_ok());
        assert!(check_host(&with("NBPIPE.internal"), &allowed).is_ok());
        assert!(check_host(&with("other.internal"), &allowed).is_err());
        assert!(check_host(&HeaderMap::new(), &none).is_ok());
    }

    #[test]
    fn cross_origin_state_changes_are_refused() {
        let same = headers(&[
            (header::ORIGIN, "http://127.0.0.1:8787"),
            (header::HOST, "127.0.0.1:8787"),
        ]);
        assert!(check_origin(&same).is_ok());
        let other = headers(&[
            (header::ORIGIN, "https://evil.example"),
            (header::HOST, "127.0.0.1:8787"),
        ]);
        assert!(check_origin(&other).is_err());
        let null = headers(&[(header::ORIGIN, "null"), (header::HOST, "127.0.0.1:8787")]);
        assert!(check_origin(&null).is_err());
        assert!(check_origin(&headers(&[(header::HOST, "x")])).is_ok());
    }
}
