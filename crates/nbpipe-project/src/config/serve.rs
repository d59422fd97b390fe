//! `serve:`, the project's run policy in `nbpipe serve`: how many runs of the project may
//! run at once, how often a failed or interrupted run is retried and how long it waits
//! between attempts, and how long a whole run may take. Only reads and checks the values;
//! applying them is the service's job (`nbpipe run` ignores the section).

use std::time::Duration;

use super::ctx::{join, Ctx, Result};
use super::error::ErrorKind;
use super::yaml::{Map, Node};
use super::ServePolicy;

/// Keys of `serve:` (also named in hints about misplaced keys).
pub(super) const SERVE_KEYS: &[&str] = &[
    "concurrency",
    "retries",
    "retry_backoff",
    "retry_backoff_max",
    "timeout",
    "interrupted_retries",
];

pub(super) fn policy(ctx: &Ctx<'_>, top: &Map) -> Result<ServePolicy> {
    let mut policy = ServePolicy::default();
    let Some(node) = top.get("serve").filter(|n| !n.is_null()) else {
        return Ok(policy);
    };
    let m = ctx.map(node, "serve", SERVE_KEYS)?;
    let get = |key: &str| m.get(key).filter(|n| !n.is_null());
    if let Some(n) = get("concurrency") {
        policy.concurrency = Some(match ctx.uint(n, "serve.concurrency")? {
            0 => {
                return Err(ctx.error(
                    n.loc,
                    "serve.concurrency",
                    ErrorKind::Value,
                    "`serve.concurrency` must be at least 1: it is how many runs of the \
                     project may run at once"
                        .into(),
                ))
            }
            c => usize::try_from(c).unwrap_or(usize::MAX),
        });
    }
    if let Some(n) = get("retries") {
        let r = ctx.uint(n, "serve.retries")?;
        policy.retries = Some(u32::try_from(r).map_err(|_| too_large(ctx, n, "retries"))?);
    }
    if let Some(n) = get("interrupted_retries") {
        let r = ctx.uint(n, "serve.interrupted_retries")?;
        policy.interrupted_retries =
            Some(u32::try_from(r).map_err(|_| too_large(ctx, n, "interrupted_retries"))?);
    }
    let duration = |key: &str| -> Result<Option<(Duration, &Node)>> {
        match get(key) {
            Some(n) => Ok(Some((ctx.duration(n, &join("serve", key))?, n))),
            None => Ok(None),
        }
    };
    let backoff = duration("retry_backoff")?;
    let backoff_max = duration("retry_backoff_max")?;
    if let (Some((base, _)), Some((max, n))) = (backoff, backoff_max) {
        if max < base {
            return Err(ctx.error(
                n.loc,
                "serve.retry_backoff_max",
                ErrorKind::Value,
                format!(
                    "`serve.retry_backoff_max` ({}) is shorter than `serve.retry_backoff` ({}): \
                     the cap must be at least the first delay",
                    humantime::format_duration(max),
                    humantime::format_duration(base)
                ),
            ));
        }
    }
    policy.retry_backoff = backoff.map(|(d, _)| d);
    policy.retry_backoff_max = backoff_max.map(|(d, _)| d);
    policy.timeout = duration("timeout")?.map(|(d, _)| d);
    Ok(policy)
}

fn too_large(ctx: &Ctx<'_>, node: &Node, key: &str) -> super::ConfigError {
    ctx.error(
        node.loc,
        &join("serve", key),
        ErrorKind::Value,
        format!("`serve.{key}` is too large"),
    )
}
