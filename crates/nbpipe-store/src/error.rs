//! Typed store errors, and the translation of `object_store` failures into them.
//!
//! Owns: deciding whether a failure means "not there", "not allowed", "could not reach the store"
//! (after retries), "bad location or configuration" or "no credentials", and wording each one so
//! a person can act on it. Must not: put a credential in a message (only URLs, endpoints, status
//! codes, service error codes/messages and OS errors are shown).

use std::time::Duration;

/// Errors reading or writing a location.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The location names a scheme nbpipe cannot reach.
    #[error(
        "`{url}`: storage scheme `{scheme}` is not supported (use a local path, `-`, `s3://`, \
         `gs://`, `az://`, `abfs(s)://` or `http(s)://`)"
    )]
    UnsupportedScheme {
        /// The location as given.
        url: String,
        /// The scheme it names.
        scheme: String,
    },
    /// The location is malformed (no bucket, a query string, a password, …).
    #[error("`{url}` is not a usable location: {reason}")]
    InvalidUrl {
        /// The location as given (without any query string or password).
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The store's configuration is incomplete or invalid.
    #[error("cannot use `{url}`: {reason}")]
    Config {
        /// The location.
        url: String,
        /// What is wrong (names variables, never their values).
        reason: String,
    },
    /// No credentials could be obtained for the store.
    #[error("could not get credentials for `{url}`: {cause}\n\n{hint}")]
    Credentials {
        /// The location.
        url: String,
        /// Why (e.g. the instance metadata service did not answer).
        cause: String,
        /// Where credentials can come from.
        hint: String,
    },
    /// The object (or its bucket) does not exist.
    #[error("`{url}` does not exist{}", detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    NotFound {
        /// The location.
        url: String,
        /// The store's explanation, e.g. `NoSuchBucket: The specified bucket does not exist`.
        detail: Option<String>,
    },
    /// The store refused the credentials or the operation.
    #[error("access to `{url}` was denied ({op}): {detail}")]
    PermissionDenied {
        /// The location.
        url: String,
        /// The operation (`get`, `put`, `head`, `list`).
        op: &'static str,
        /// The store's explanation (e.g. `AccessDenied: Access Denied.`).
        detail: String,
    },
    /// The store did not answer, or kept failing, until retries ran out.
    #[error(
        "could not reach `{url}` at {endpoint} after {attempts} attempt{} over {:.1} s: {cause}",
        if *attempts == 1 { "" } else { "s" },
        elapsed.as_secs_f64()
    )]
    Unreachable {
        /// The location.
        url: String,
        /// The endpoint tried (scheme, host and port; no credentials).
        endpoint: String,
        /// How many requests were sent (first try plus retries).
        attempts: usize,
        /// How long nbpipe tried.
        elapsed: Duration,
        /// The last failure (e.g. `Connection refused (os error 111)`, `503 Service Unavailable`).
        cause: String,
    },
    /// Any other failure reported by the store.
    #[error("could not {op} `{url}`: {detail}")]
    Remote {
        /// The location.
        url: String,
        /// The operation (`get`, `put`, `head`, `list`).
        op: &'static str,
        /// What the store said.
        detail: String,
    },
    /// A remote location was used through the synchronous API.
    #[error("`{url}` is remote: it can only be read and written with the async API (`get`/`put`)")]
    RemoteNeedsAsync {
        /// The location.
        url: String,
    },
    /// Reading a local file or stdin failed.
    #[error("could not read `{path}`: {source}")]
    Read {
        /// The location as given.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Writing a local file or stdout failed.
    #[error("could not write `{path}`: {source}")]
    Write {
        /// The location as given.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The broad kind of a [`StoreError`], for callers that decide what to do next (fall back to a
/// local copy, report a usage error, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The object, file or bucket does not exist.
    NotFound,
    /// The credentials were refused, or the file is not accessible.
    PermissionDenied,
    /// The store stayed unreachable (or kept failing) through all retries: a local copy is the
    /// way to not lose the notebook.
    Unreachable,
    /// No credentials could be obtained.
    Credentials,
    /// The location or the configuration is wrong: a usage error.
    InvalidLocation,
    /// Anything else (local I/O, unexpected store answers).
    Other,
}

impl StoreError {
    /// The broad kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::UnsupportedScheme { .. }
            | StoreError::InvalidUrl { .. }
            | StoreError::Config { .. }
            | StoreError::RemoteNeedsAsync { .. } => ErrorKind::InvalidLocation,
            StoreError::Credentials { .. } => ErrorKind::Credentials,
            StoreError::NotFound { .. } => ErrorKind::NotFound,
            StoreError::PermissionDenied { .. } => ErrorKind::PermissionDenied,
            StoreError::Unreachable { .. } => ErrorKind::Unreachable,
            StoreError::Remote { .. } => ErrorKind::Other,
            StoreError::Read { source, .. } | StoreError::Write { source, .. } => {
                match source.kind() {
                    std::io::ErrorKind::NotFound => ErrorKind::NotFound,
                    std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
                    _ => ErrorKind::Other,
                }
            }
        }
    }

    /// Whether the object (or local file) does not exist.
    pub fn is_not_found(&self) -> bool {
        self.kind() == ErrorKind::NotFound
    }
}

/// What a failed remote operation was about, for [`classify`].
pub(crate) struct Context<'a> {
    pub url: &'a str,
    pub endpoint: &'a str,
    pub op: &'static str,
    pub elapsed: Duration,
    /// Addresses of credential services for this store: a failure mentioning one is a
    /// credentials failure, not an unreachable bucket.
    pub credential_hosts: &'a [&'a str],
    pub credential_hint: &'a str,
}

/// Turn an `object_store` error into a [`StoreError`].
pub(crate) fn classify(err: object_store::Error, cx: &Context<'_>) -> StoreError {
    use object_store::Error as E;
    let url = cx.url.to_string();
    match &err {
        E::NotFound { .. } => {
            return StoreError::NotFound {
                url,
                detail: status_detail(&chain_text(&err)).map(|(_, d)| d),
            };
        }
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => {
            let text = chain_text(&err);
            return StoreError::PermissionDenied {
                url,
                op: cx.op,
                detail: status_detail(&text)
                    .map(|(s, d)| format!("{s} {d}"))
                    .unwrap_or_else(|| innermost(&err)),
            };
        }
        E::InvalidPath { .. } => {
            return StoreError::InvalidUrl {
                url,
                reason: innermost(&err),
            }
        }
        E::UnknownConfigurationKey { .. } => {
            return StoreError::Config {
                url,
                reason: err.to_string(),
            }
        }
        _ => {}
    }
    let text = chain_text(&err);
    if cx.credential_hosts.iter().any(|h| text.contains(h)) {
        return StoreError::Credentials {
            url,
            cause: match transport_kind(&err) {
                Some(_) => innermost(&err),
                None => status_detail(&text)
                    .map(|(s, d)| format!("{s} {d}"))
                    .unwrap_or_else(|| innermost(&err)),
            },
            hint: cx.credential_hint.to_string(),
        };
    }
    let attempts = retries_in(&text).unwrap_or(0) + 1;
    if let Some(kind) = transport_kind(&err) {
        use object_store::client::HttpErrorKind as K;
        let retried = matches!(kind, K::Connect | K::Request | K::Timeout | K::Interrupted);
        if retried || attempts > 1 {
            return StoreError::Unreachable {
                url,
                endpoint: cx.endpoint.to_string(),
                attempts,
                elapsed: cx.elapsed,
                cause: innermost(&err),
            };
        }
    }
    if let Some((status, detail)) = status_detail(&text) {
        if status >= 500 || status == 429 || status == 408 {
            return StoreError::Unreachable {
                url,
                endpoint: cx.endpoint.to_string(),
                attempts,
                elapsed: cx.elapsed,
                cause: format!("the store kept answering {status} {detail}"),
            };
        }
        if matches!(status, 301 | 307 | 308) {
            return region_error(url);
        }
        return StoreError::Remote {
            url,
            op: cx.op,
            detail: format!("{status} {detail}"),
        };
    }
    if text.contains("BareRedirect") || text.contains("incorrectly configured region") {
        return region_error(url);
    }
    StoreError::Remote {
        url,
        op: cx.op,
        detail: innermost(&err),
    }
}

fn region_error(url: String) -> StoreError {
    StoreError::Config {
        url,
        reason: "the store redirected the request: the bucket is probably in another region \
                 (set `AWS_REGION`)"
            .into(),
    }
}

/// The `HttpErrorKind` of the transport failure behind `err`, if it is one.
fn transport_kind(err: &object_store::Error) -> Option<object_store::client::HttpErrorKind> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(h) = e.downcast_ref::<object_store::client::HttpError>() {
            return Some(h.kind());
        }
        cur = e.source();
    }
    None
}

/// Every message of the error chain, joined (for pattern checks, never shown whole).
fn chain_text(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        out.push_str(&e.to_string());
        out.push_str(" | ");
        cur = e.source();
    }
    out
}

/// A short description of a builder or configuration error.
pub(crate) fn short(err: &object_store::Error) -> String {
    innermost(err)
}

/// The last error of the chain: usually the OS or protocol error that explains the rest.
fn innermost(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &(dyn std::error::Error + 'static) = err;
    while let Some(next) = cur.source() {
        cur = next;
    }
    let text = cur.to_string();
    // Bodies of failed requests can be long XML or JSON documents: keep the gist.
    if let Some((status, detail)) = status_detail(&text) {
        return format!("{status} {detail}");
    }
    truncate(&text, 300)
}

/// `after N retries` in `object_store`'s retry error text.
fn retries_in(text: &str) -> Option<usize> {
    let rest = &text[text.find("after ")? + "after ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    rest[digits.len()..]
        .starts_with(" retries")
        .then(|| digits.parse().ok())
        .flatten()
}

/// The HTTP status and a short explanation from `object_store`'s
/// `Server returned non-2xx status code: 404 Not Found: <body>` text. The body is reduced to the
/// service's error code and message (S3 and Azure XML, GCS JSON) so nothing else of it (request
/// ids, string-to-sign) reaches a message.
fn status_detail(text: &str) -> Option<(u16, String)> {
    let at = text.find("status code: ")? + "status code: ".len();
    let rest = &text[at..];
    let status: u16 = rest.get(..3)?.parse().ok()?;
    let after = &rest[3..];
    let reason: String = after
        .trim_start()
        .chars()
        .take_while(|c| *c != ':' && *c != '|')
        .collect();
    let body = after.split_once(':').map(|(_, b)| b).unwrap_or("");
    let code = xml_tag(body, "Code");
    let message = xml_tag(body, "Message").or_else(|| json_message(body));
    let detail = match (code, message) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c,
        (None, Some(m)) => m,
        (None, None) => reason.trim().to_string(),
    };
    Some((status, truncate(&detail, 300)))
}

fn xml_tag(body: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&format!("</{tag}>"))? + start;
    Some(body[start..end].trim().to_string()).filter(|s| !s.is_empty())
}

fn json_message(body: &str) -> Option<String> {
    let at = body.find("\"message\"")? + "\"message\"".len();
    let rest = body[at..].trim_start().strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_string())
}

fn truncate(s: &str, max: usize) -> String {
    let s = s.trim();
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_detail_keeps_only_code_and_message() {
        let text = "Error performing GET http://h/b/k in 1ms - Server returned non-2xx status \
                    code: 403 Forbidden: <?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch\
                    </Code><Message>The signature does not match</Message><StringToSign>AWS4 \
                    secretish</StringToSign></Error> | next";
        let (status, detail) = status_detail(text).unwrap();
        assert_eq!(status, 403);
        assert_eq!(
            detail,
            "SignatureDoesNotMatch: The signature does not match"
        );
        let (status, detail) = status_detail("status code: 503 Service Unavailable: ").unwrap();
        assert_eq!((status, detail.as_str()), (503, "Service Unavailable"));
        let (_, detail) = status_detail(
            "status code: 403 Forbidden: {\"error\": {\"code\": 403, \"message\": \"nope\"}}",
        )
        .unwrap();
        assert_eq!(detail, "nope");
    }

    #[test]
    fn retries_are_read_from_the_retry_error_text() {
        assert_eq!(
            retries_in("Error performing PUT x in 3s, after 4 retries, max_retries: 6"),
            Some(4)
        );
        assert_eq!(retries_in("Error performing PUT x in 3s - boom"), None);
    }

    #[test]
    fn unreachable_message_names_url_endpoint_attempts_and_cause() {
        let e = StoreError::Unreachable {
            url: "s3://b/k".into(),
            endpoint: "http://127.0.0.1:8333".into(),
            attempts: 5,
            elapsed: Duration::from_millis(30_040),
            cause: "Connection refused (os error 111)".into(),
        };
        assert_eq!(
            e.to_string(),
            "could not reach `s3://b/k` at http://127.0.0.1:8333 after 5 attempts over 30.0 s: \
             Connection refused (os error 111)"
        );
        assert_eq!(e.kind(), ErrorKind::Unreachable);
    }
}
