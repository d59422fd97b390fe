//! CloudTrail data events for S3 as EventBridge delivers them (`detail-type` "AWS API Call via
//! CloudTrail", `source` "aws.s3"): the way accounts wired S3 triggers before S3 could send its
//! own EventBridge events, and still do where those are not switched on per bucket.
//!
//! Only calls that create an object start runs: `PutObject`, `CompleteMultipartUpload`,
//! `CopyObject` and `PostObject` (a browser form upload). Parts (`UploadPart`), reads, deletes,
//! every other call and any call that failed (`detail.errorCode`) give no event. Bucket and key
//! come from `detail.requestParameters` and are taken as written (CloudTrail does not
//! URL-encode keys); the version id and ETag from `detail.responseElements` where the call's
//! response had them; the size from `additionalEventData.bytesTransferredIn` for a single
//! `PutObject` only; region and time from `detail.awsRegion` and `detail.eventTime`.
//! `detail.eventID` becomes the event's report id (see [`ObjectEvent::dedup_key`]).
//!
//! Must not: decide routing, or guess an object's identity from anything but the response.

use serde_json::{Map, Value};

use super::{clean_etag, shape, string};
use crate::event::{ObjectEvent, Source};
use crate::intake::rules::CREATING_CALLS;
use crate::intake::IntakeError;

/// EventBridge's `detail-type` for CloudTrail-recorded API calls.
pub(super) const DETAIL_TYPE: &str = "AWS API Call via CloudTrail";

/// The object-creation event this CloudTrail record reports, if it reports one.
pub(super) fn event(
    obj: &Map<String, Value>,
    source: Source,
) -> Result<Option<ObjectEvent>, IntakeError> {
    let at = |what: &str| shape(format!("CloudTrail event: {what}"));
    let detail = obj.get("detail").ok_or_else(|| at("no `detail`"))?;
    let name = detail
        .get("eventName")
        .and_then(Value::as_str)
        .ok_or_else(|| at("no `detail.eventName`"))?;
    if !CREATING_CALLS.contains(&name) {
        return Ok(None);
    }
    // A failed call (AccessDenied, NoSuchUpload, …) created nothing.
    if detail
        .get("errorCode")
        .is_some_and(|c| !c.is_null() && c.as_str() != Some(""))
    {
        return Ok(None);
    }
    let request = detail
        .get("requestParameters")
        .filter(|r| r.is_object())
        .ok_or_else(|| at("no `detail.requestParameters`"))?;
    let bucket = request
        .get("bucketName")
        .and_then(Value::as_str)
        .filter(|b| !b.is_empty())
        .ok_or_else(|| at("no `detail.requestParameters.bucketName`"))?;
    let key = request
        .get("key")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| at("no `detail.requestParameters.key`"))?;
    let response = detail.get("responseElements").filter(|r| r.is_object());
    let version_id = response.and_then(|r| string(r.get("x-amz-version-id")));
    let etag = response.and_then(etag_of).map(|e| clean_etag(&e));
    let size = match name {
        "PutObject" => detail
            .pointer("/additionalEventData/bytesTransferredIn")
            .and_then(Value::as_f64)
            .filter(|n| *n >= 0.0 && n.fract() == 0.0)
            .map(|n| n as u64),
        _ => None,
    };
    Ok(Some(ObjectEvent {
        bucket: bucket.to_string(),
        key: key.to_string(),
        etag,
        version_id,
        size,
        sequencer: None,
        event_time: string(detail.get("eventTime")).or_else(|| string(obj.get("time"))),
        event_name: name.to_string(),
        source,
        region: string(detail.get("awsRegion")).or_else(|| string(obj.get("region"))),
        report_id: string(detail.get("eventID")),
        path: None,
    }))
}

/// The ETag a creating call's response carries: at the top (`ETag`), or inside the result
/// element of a copy or a multipart completion.
fn etag_of(response: &Value) -> Option<String> {
    [
        "/ETag",
        "/CopyObjectResult/ETag",
        "/CompleteMultipartUploadResult/ETag",
    ]
    .iter()
    .find_map(|p| string(response.pointer(p)))
}
