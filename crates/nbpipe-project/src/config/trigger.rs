//! Triggers: the short form's `S3TriggerBucket` / `S3TriggerKeyPrefix` /
//! `S3TriggerKeySuffix` and the full form's `trigger:` (`s3:`, `schedule:`).
//! Cron expressions are checked with `croner`, timezones with `chrono-tz`.

use std::str::FromStr;

use super::ctx::{join, Ctx, Result};
use super::error::ErrorKind;
use super::yaml::{Kind, Map, Node};
use super::{has_scheme, Trigger};

const TRIGGER_KEYS: &[&str] = &["s3", "schedule"];
const S3_KEYS: &[&str] = &["bucket", "prefix", "suffix"];
const SCHEDULE_KEYS: &[&str] = &["cron", "timezone"];

pub(super) fn triggers(ctx: &Ctx<'_>, top: &Map) -> Result<Vec<Trigger>> {
    let mut out = Vec::new();
    // The short form.
    let short = |key: &str| top.get(key).filter(|n| !n.is_null());
    let bucket = short("S3TriggerBucket");
    match bucket {
        Some(b) => {
            let bucket = s3_bucket(ctx, b, "S3TriggerBucket")?;
            let prefix = match short("S3TriggerKeyPrefix") {
                Some(n) => ctx.string(n, "S3TriggerKeyPrefix")?,
                None => String::new(),
            };
            let suffix = ctx.opt_string(top, "", "S3TriggerKeySuffix")?;
            out.push(Trigger::S3 {
                bucket,
                prefix,
                suffix,
            });
        }
        None => {
            for key in ["S3TriggerKeyPrefix", "S3TriggerKeySuffix"] {
                if let Some((k, _)) = top.entries.iter().find(|(k, _)| k.scalar() == Some(key)) {
                    return Err(ctx.error(
                        k.loc,
                        key,
                        ErrorKind::Conflict,
                        format!("`{key}` needs `S3TriggerBucket`, the bucket to watch"),
                    ));
                }
            }
        }
    }
    let Some(t) = top.get("trigger").filter(|n| !n.is_null()) else {
        return Ok(out);
    };
    let entries: Vec<(String, &Node)> = match &t.kind {
        Kind::Seq(items) => items
            .iter()
            .enumerate()
            .map(|(i, n)| (format!("trigger[{i}]"), n))
            .collect(),
        _ => vec![("trigger".to_owned(), t)],
    };
    for (path, node) in entries {
        let m = ctx.map(node, &path, TRIGGER_KEYS)?;
        if m.entries.is_empty() {
            return Err(ctx.error(
                node.loc,
                &path,
                ErrorKind::MissingKey,
                format!("`{path}` is empty: expected `s3:` or `schedule:`"),
            ));
        }
        for (k, v) in &m.entries {
            let key = join(&path, k.scalar().unwrap_or_default());
            if v.is_null() {
                return Err(ctx.type_error(v, &key, "a mapping or a string"));
            }
            if k.scalar() == Some("s3") {
                if let Some(b) = bucket {
                    return Err(ctx.error(
                        k.loc,
                        &key,
                        ErrorKind::Conflict,
                        format!(
                            "`{key}` and `S3TriggerBucket` (line {}) both define an S3 trigger; \
                             keep one of them",
                            b.loc.line
                        ),
                    ));
                }
                out.push(s3_trigger(ctx, v, &key)?);
            } else {
                out.push(schedule_trigger(ctx, v, &key)?);
            }
        }
    }
    Ok(out)
}

pub(super) fn s3_bucket(ctx: &Ctx<'_>, node: &Node, path: &str) -> Result<String> {
    let bucket = ctx.string(node, path)?;
    let why = if has_scheme(&bucket) {
        Some("write the bucket name alone, without a scheme; put the key path in the prefix")
    } else if bucket.contains('/') {
        Some("a bucket name cannot contain `/`; put the key path in the prefix")
    } else if bucket.chars().any(char::is_whitespace) {
        Some("a bucket name cannot contain spaces")
    } else {
        None
    };
    match why {
        Some(why) => Err(ctx.error(
            node.loc,
            path,
            ErrorKind::Value,
            format!("invalid S3 bucket `{bucket}` in `{path}`: {why}"),
        )),
        None => Ok(bucket),
    }
}

fn s3_trigger(ctx: &Ctx<'_>, node: &Node, path: &str) -> Result<Trigger> {
    let m = ctx.map(node, path, S3_KEYS)?;
    let Some(b) = m.get("bucket").filter(|n| !n.is_null()) else {
        return Err(ctx.error(
            node.loc,
            &join(path, "bucket"),
            ErrorKind::MissingKey,
            format!("`{path}` has no `bucket:`"),
        ));
    };
    Ok(Trigger::S3 {
        bucket: s3_bucket(ctx, b, &join(path, "bucket"))?,
        prefix: ctx.opt_string(m, path, "prefix")?.unwrap_or_default(),
        suffix: ctx.opt_string(m, path, "suffix")?,
    })
}

fn schedule_trigger(ctx: &Ctx<'_>, node: &Node, path: &str) -> Result<Trigger> {
    let (cron_node, cron_path, tz) = match &node.kind {
        Kind::Scalar { .. } => (node, path.to_owned(), None),
        Kind::Map(_) => {
            let m = ctx.map(node, path, SCHEDULE_KEYS)?;
            let Some(c) = m.get("cron").filter(|n| !n.is_null()) else {
                return Err(ctx.error(
                    node.loc,
                    &join(path, "cron"),
                    ErrorKind::MissingKey,
                    format!("`{path}` has no `cron:`"),
                ));
            };
            let tz = match m.get("timezone").filter(|n| !n.is_null()) {
                Some(n) => {
                    let key = join(path, "timezone");
                    let s = ctx.string(n, &key)?;
                    if chrono_tz::Tz::from_str(&s).is_err() {
                        return Err(ctx.error(
                            n.loc,
                            &key,
                            ErrorKind::Value,
                            format!(
                                "unknown timezone `{s}` in `{key}`: use an IANA name such as \
                                 `UTC` or `Europe/Paris`"
                            ),
                        ));
                    }
                    Some(s)
                }
                None => None,
            };
            (c, join(path, "cron"), tz)
        }
        Kind::Seq(_) => return Err(ctx.type_error(node, path, "a cron string or a mapping")),
    };
    let cron = ctx.string(cron_node, &cron_path)?;
    if let Err(e) = croner::Cron::from_str(&cron) {
        return Err(ctx.error(
            cron_node.loc,
            &cron_path,
            ErrorKind::Value,
            format!(
                "invalid cron expression `{cron}` in `{cron_path}`: {e} (expected 5 fields: \
                 minute hour day-of-month month day-of-week, e.g. `0 6 * * *`)"
            ),
        ));
    }
    Ok(Trigger::Schedule { cron, timezone: tz })
}
