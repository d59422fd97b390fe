//! Parse object-store notifications into [`ObjectEvent`]s.
//!
//! Accepted bodies (from an SQS message or a `POST /hooks/s3` request):
//! - S3 event notifications, `{"Records":[…]}` — AWS (`eventSource: aws:s3`, `eventName:
//!   ObjectCreated:Put`) and MinIO (`minio:s3`, `s3:ObjectCreated:Put`, optionally with its
//!   top-level `EventName`/`Key`). Keys are URL-encoded with `+` for a space: `+` becomes a
//!   space, then `%XX` is decoded (so `%2B` stays a `+`).
//! - The same wrapped by SNS: `{"Type":"Notification","Message":"<JSON string>"}`.
//! - EventBridge events, `{"source":"aws.s3","detail-type":"Object Created","detail":{…}}`.
//! - CloudTrail data events through EventBridge (`"detail-type":"AWS API Call via
//!   CloudTrail"`): see [`cloudtrail`] for which calls count and where their fields come from.
//!   Their keys are *not* URL-encoded (`a b:c.csv` arrives as is) and are taken verbatim; the
//!   sequencer is `detail.object.sequencer`, as in `Records[]` it is `s3.object.sequencer`.
//! - A JSON array of any of these (batches).
//!
//! Only object creation starts runs: other S3 records (`ObjectRemoved:*`, …) and other
//! EventBridge detail types are skipped, and the `s3:TestEvent` S3 sends when notifications are
//! configured gives no events. Anything else is a typed [`IntakeError`], never a panic; one bad
//! record makes the whole body an error, so an SQS message is redelivered (and eventually
//! dead-lettered) rather than partly lost.
//!
//! Must not: filter by project or prefix ([`super::routing`] does), or touch the network.

use serde_json::Value;

use super::routing::{decode_key, KeyError};
use super::IntakeError;
use crate::event::{ObjectEvent, Source};

/// How deeply SNS envelopes and arrays may nest before the body is refused.
const MAX_NESTING: usize = 4;

/// Parse a notification body into the object-creation events it carries, in order.
pub fn parse(body: &[u8], source: Source) -> Result<Vec<ObjectEvent>, IntakeError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| IntakeError::Json {
        reason: e.to_string(),
    })?;
    let mut out = Vec::new();
    parse_value(&value, source, 0, &mut out)?;
    Ok(out)
}

fn parse_value(
    value: &Value,
    source: Source,
    depth: usize,
    out: &mut Vec<ObjectEvent>,
) -> Result<(), IntakeError> {
    if depth > MAX_NESTING {
        return Err(shape("notifications nested too deeply"));
    }
    let obj = match value {
        Value::Array(items) => {
            for item in items {
                parse_value(item, source, depth + 1, out)?;
            }
            return Ok(());
        }
        Value::Object(obj) => obj,
        _ => return Err(shape("expected a JSON object or array")),
    };
    // s3:TestEvent: {"Service":"Amazon S3","Event":"s3:TestEvent",…}
    if obj.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(());
    }
    if let Some(records) = obj.get("Records") {
        let records = records
            .as_array()
            .ok_or_else(|| shape("`Records` is not an array"))?;
        for (i, record) in records.iter().enumerate() {
            if let Some(event) = s3_record(record, source, i)? {
                out.push(event);
            }
        }
        return Ok(());
    }
    if let Some(kind) = obj.get("Type").and_then(Value::as_str) {
        if obj.contains_key("TopicArn") || obj.contains_key("Message") {
            if kind != "Notification" {
                return Err(IntakeError::SnsControl {
                    message_type: kind.to_string(),
                });
            }
            let message = obj
                .get("Message")
                .and_then(Value::as_str)
                .ok_or_else(|| shape("SNS notification without a string `Message`"))?;
            let inner: Value = serde_json::from_str(message).map_err(|e| IntakeError::Json {
                reason: format!("in the SNS `Message`: {e}"),
            })?;
            return parse_value(&inner, source, depth + 1, out);
        }
    }
    if obj.contains_key("detail-type") {
        if let Some(event) = eventbridge(obj, source)? {
            out.push(event);
        }
        return Ok(());
    }
    Err(shape(
        "expected S3 `Records`, an SNS notification, an EventBridge event (`Object Created` or \
         a CloudTrail API call) or `s3:TestEvent`",
    ))
}

/// One entry of `Records[]`; `None` for records that are not object creations.
fn s3_record(record: &Value, source: Source, i: usize) -> Result<Option<ObjectEvent>, IntakeError> {
    let at = |what: &str| shape(format!("`Records[{i}]`: {what}"));
    let name = record
        .get("eventName")
        .and_then(Value::as_str)
        .ok_or_else(|| at("no `eventName`"))?;
    // MinIO says `s3:ObjectCreated:Put`, AWS `ObjectCreated:Put`.
    let name = name.strip_prefix("s3:").unwrap_or(name);
    if !name.starts_with("ObjectCreated:") {
        return Ok(None);
    }
    let s3 = record.get("s3").ok_or_else(|| at("no `s3`"))?;
    let bucket = s3
        .pointer("/bucket/name")
        .and_then(Value::as_str)
        .filter(|b| !b.is_empty())
        .ok_or_else(|| at("no `s3.bucket.name`"))?;
    let object = s3.get("object").ok_or_else(|| at("no `s3.object`"))?;
    let raw_key = object
        .get("key")
        .and_then(Value::as_str)
        .ok_or_else(|| at("no `s3.object.key`"))?;
    let key = decode_key(raw_key).map_err(|reason| key_error(raw_key, reason))?;
    Ok(Some(ObjectEvent {
        bucket: bucket.to_string(),
        key,
        etag: string(object.get("eTag").or_else(|| object.get("etag"))).map(|e| clean_etag(&e)),
        version_id: string(object.get("versionId")),
        size: size(object.get("size")).map_err(|e| at(&e))?,
        sequencer: string(object.get("sequencer")),
        event_time: string(record.get("eventTime")),
        event_name: name.to_string(),
        source,
        region: string(record.get("awsRegion")),
        report_id: None,
        path: None,
    }))
}

/// An EventBridge event; `None` unless it is an S3 `Object Created` or a CloudTrail record of
/// a call that created an object.
fn eventbridge(
    obj: &serde_json::Map<String, Value>,
    source: Source,
) -> Result<Option<ObjectEvent>, IntakeError> {
    let kind = obj.get("detail-type").and_then(Value::as_str).unwrap_or("");
    let from = obj.get("source").and_then(Value::as_str).unwrap_or("");
    if from != "aws.s3" {
        return Ok(None);
    }
    if kind == cloudtrail::DETAIL_TYPE {
        return cloudtrail::event(obj, source);
    }
    if kind != "Object Created" {
        return Ok(None);
    }
    let detail = obj
        .get("detail")
        .ok_or_else(|| shape("EventBridge event without `detail`"))?;
    let bucket = detail
        .pointer("/bucket/name")
        .and_then(Value::as_str)
        .filter(|b| !b.is_empty())
        .ok_or_else(|| shape("EventBridge event without `detail.bucket.name`"))?;
    let object = detail
        .get("object")
        .ok_or_else(|| shape("EventBridge event without `detail.object`"))?;
    let key = object
        .get("key")
        .and_then(Value::as_str)
        .ok_or_else(|| shape("EventBridge event without `detail.object.key`"))?;
    Ok(Some(ObjectEvent {
        bucket: bucket.to_string(),
        // Not URL-encoded in EventBridge events.
        key: key.to_string(),
        // AWS says `etag`; moto's EventBridge events say `eTag`, as S3's `Records[]` do.
        etag: string(object.get("etag").or_else(|| object.get("eTag"))).map(|e| clean_etag(&e)),
        version_id: string(object.get("version-id")),
        size: size(object.get("size")).map_err(|e| shape(format!("EventBridge event: {e}")))?,
        sequencer: string(object.get("sequencer")),
        event_time: string(obj.get("time")),
        event_name: kind.to_string(),
        source,
        region: string(obj.get("region")),
        report_id: None,
        path: None,
    }))
}

/// A non-empty string field (numbers are accepted and printed, as some stores send them).
fn string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `size` as a number or a string of digits; absent or `null` is `None`.
fn size(v: Option<&Value>) -> Result<Option<u64>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        // JSON has one number type: `3.0` is the integer 3 (as JSON Schema's `integer` says).
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < u64::MAX as f64)
                    .map(|f| f as u64)
            })
            .map(Some)
            .ok_or_else(|| format!("`size` {n} is not a byte count")),
        Some(Value::String(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| format!("`size` `{s}` is not a byte count")),
        Some(other) => Err(format!("`size` is {other}, not a number")),
    }
}

/// An ETag without its quotes (and without a weak `W/` marker).
pub(crate) fn clean_etag(etag: &str) -> String {
    let e = etag.trim();
    let e = e.strip_prefix("W/").unwrap_or(e);
    e.trim_matches('"').to_string()
}

fn shape(reason: impl Into<String>) -> IntakeError {
    IntakeError::Shape {
        reason: reason.into(),
    }
}

fn key_error(raw: &str, reason: KeyError) -> IntakeError {
    let mut key: String = raw.chars().take(120).collect();
    if key.len() < raw.len() {
        key.push('…');
    }
    IntakeError::Key { key, reason }
}

mod cloudtrail;
#[cfg(test)]
mod tests;
