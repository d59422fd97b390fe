//! `POST /hooks/s3`: object-store notifications pushed over HTTP (MinIO webhook targets, SNS
//! HTTP subscriptions after confirmation, EventBridge API destinations, or any relay).
//!
//! The body is parsed by [`crate::intake::notify::parse`]; every key is checked again with
//! [`crate::intake::routing::check_key`] before anything is handed on, so a key that could name
//! a path outside a workspace (`..`, absolute, NUL, over 1024 bytes) is refused with `400` and
//! nothing of that body is queued. Accepted events go to the server's [`super::HookSink`]
//! (routing and enqueue); the answer is `202 {"events": n, "queued": m, "duplicates": d,
//! "superseded": k, "superseded_by": […]}` — `superseded` counts run requests not queued
//! because an event with a higher S3 `sequencer` for the same key was taken first, and
//! `superseded_by` names each one's key, sequencer and the newer event's sequencer and run.
//! Those were handled (the sender must not retry them), hence `2xx`. A sink failure answers
//! `503` so the sender retries (the queue's dedup keys make a retry harmless). SNS control
//! messages (`SubscriptionConfirmation`) are answered `400`: confirm subscriptions by hand.
//!
//! The body is one notification (a JSON object) or a batch of them (a non-empty JSON array of
//! objects): `[]` carries no notification and is refused like `{}` (`400 bad_notification`).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::{ApiError, Shared};
use crate::event::Source;
use crate::intake::{notify, routing, IntakeError, Submitted};

pub(crate) async fn s3(
    State(state): State<Shared>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    check_batch(&body)?;
    let events = notify::parse(&body, Source::Webhook).map_err(|e| {
        let code = match e {
            IntakeError::Key { .. } => "bad_key",
            IntakeError::SnsControl { .. } => "sns_control",
            _ => "bad_notification",
        };
        ApiError::new(StatusCode::BAD_REQUEST, code, e.to_string())
    })?;
    for ev in &events {
        if let Err(reason) = routing::check_key(&ev.key) {
            let shown: String = ev.key.chars().take(120).collect();
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_key",
                format!("object key `{shown}` rejected: {reason}"),
            ));
        }
    }
    let n = events.len();
    let done = if n == 0 {
        Submitted::default()
    } else {
        (state.hooks)(events)
            .await
            .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_queued", e))?
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "events": n,
            "queued": done.queued,
            "duplicates": done.duplicates,
            "superseded": done.superseded.len(),
            "superseded_by": done.superseded,
        })),
    ))
}

/// Refuses a batch that is empty or holds something other than notification objects (the
/// parser takes nested arrays; the hook's documented body does not).
fn check_batch(body: &[u8]) -> Result<(), ApiError> {
    let refuse = |why: &str| {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_notification",
            why.to_string(),
        ))
    };
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'[') {
        return Ok(());
    }
    match serde_json::from_slice::<Vec<Value>>(body) {
        Ok(items) if items.is_empty() => refuse("an empty batch (`[]`) carries no notification"),
        Ok(items) if items.iter().any(|i| !i.is_object()) => {
            refuse("a batch is an array of notification objects")
        }
        // Well formed, or malformed JSON the parser reports.
        _ => Ok(()),
    }
}

/// `POST /hooks/git`: a push webhook from GitHub, GitLab or Gitea, verified with the
/// server's webhook secret (see [`crate::gitops::webhook`]). A push to a followed branch
/// wakes the follower of that repository, which fetches and deploys what the branch points
/// to: `202 {"branch": …, "followed": true, "repositories": [URL…]}`. The repository is the
/// followed one the body's addresses name; when they name none (a mirror, a local path),
/// every followed repository with that branch is fetched. A push to another branch: `202`
/// with `followed: false`; a `ping`: `200`. No repository followed: `404`; no secret
/// configured: `403`; a missing or wrong signature: `401`; not a push: `400`.
pub(crate) async fn git(
    State(state): State<Shared>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    use crate::gitops::webhook::{verify, Hook, HookError};
    let Some(hook) = &state.git else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_repository",
            "this server follows no git repository (`nbpipe serve --git URL`)",
        ));
    };
    let Some(secret) = hook.secret.as_deref() else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "no_webhook_secret",
            "no webhook secret is configured (`--git-webhook-secret`): the repository is polled only",
        ));
    };
    match verify(&headers, &body, secret) {
        Ok(Hook::Ping) => Ok((StatusCode::OK, Json(json!({"ping": true})))),
        Ok(Hook::Push {
            provider,
            branch,
            repositories,
        }) => {
            let named: Vec<_> = hook
                .ops
                .iter()
                .filter(|o| o.is_repository(&repositories))
                .collect();
            let candidates = if named.is_empty() {
                hook.ops.iter().collect()
            } else {
                named
            };
            let mut woken = Vec::new();
            if let Some(b) = branch.as_deref() {
                for ops in candidates {
                    if ops.follows(b) {
                        ops.notify();
                        woken.push(ops.url());
                    }
                }
            }
            Ok((
                StatusCode::ACCEPTED,
                Json(json!({
                    "provider": provider,
                    "branch": branch,
                    "followed": !woken.is_empty(),
                    "repositories": woken,
                })),
            ))
        }
        Err(e @ (HookError::Unsigned | HookError::BadSignature(_))) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            e.to_string(),
        )),
        Err(e @ HookError::NotPush(_)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "not_a_push",
            e.to_string(),
        )),
    }
}
