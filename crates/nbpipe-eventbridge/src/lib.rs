//! EventBridge rule patterns that match new objects under a bucket and key prefix, in either
//! of the two shapes S3 activity reaches EventBridge:
//! - [`RuleSource::ObjectCreated`]: S3's own EventBridge notifications (`Object Created`,
//!   switched on per bucket), matched on `detail.bucket.name` and `detail.object.key`;
//! - [`RuleSource::CloudTrail`]: CloudTrail data events (`AWS API Call via CloudTrail`) of the
//!   object-creating calls that succeeded, matched on `detail.requestParameters.bucketName` and
//!   `.key`.
//!
//! Both match on bucket and key prefix only; a suffix is for the reader of the events to
//! apply (`nbpipe serve`'s intake) or for the rule's writer to add (`nbpipe deploy aws` in
//! direct mode). Shared by `nbpipe-server` (its intake documents and tests them through moto's
//! EventBridge) and `nbpipe-deploy` (its templates write them), so both agree on one pattern.
//!
//! Must not: talk to AWS, or depend on any other nbpipe crate.
//!
//! ```
//! use nbpipe_eventbridge::{event_pattern, RuleSource};
//! let p = event_pattern("incoming", "sales/", RuleSource::ObjectCreated);
//! assert_eq!(p["detail"]["bucket"]["name"][0], "incoming");
//! ```
#![deny(missing_docs)]

use serde_json::{json, Value};

/// Which EventBridge events a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleSource {
    /// S3's EventBridge notifications (`detail-type` `Object Created`).
    ObjectCreated,
    /// CloudTrail data events (`detail-type` `AWS API Call via CloudTrail`).
    CloudTrail,
}

/// The S3 API calls whose CloudTrail records report a new object (also what the intake takes).
pub const CREATING_CALLS: [&str; 4] = [
    "PutObject",
    "CompleteMultipartUpload",
    "CopyObject",
    "PostObject",
];

/// The event pattern of a rule that matches new objects in `bucket` under `prefix` (`""`:
/// the whole bucket) in events of `source`.
pub fn event_pattern(bucket: &str, prefix: &str, source: RuleSource) -> Value {
    let key = (!prefix.is_empty()).then(|| json!([{ "prefix": prefix }]));
    match source {
        RuleSource::ObjectCreated => {
            let mut detail = json!({ "bucket": { "name": [bucket] } });
            if let Some(key) = key {
                detail["object"] = json!({ "key": key });
            }
            json!({
                "source": ["aws.s3"],
                "detail-type": ["Object Created"],
                "detail": detail,
            })
        }
        RuleSource::CloudTrail => {
            let mut request = json!({ "bucketName": [bucket] });
            if let Some(key) = key {
                request["key"] = key;
            }
            json!({
                "source": ["aws.s3"],
                "detail-type": ["AWS API Call via CloudTrail"],
                "detail": {
                    "eventSource": ["s3.amazonaws.com"],
                    "eventName": CREATING_CALLS,
                    "requestParameters": request,
                    "errorCode": [{ "exists": false }],
                },
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_name_bucket_and_prefix_where_each_shape_keeps_them() {
        let created = event_pattern("incoming", "sales/", RuleSource::ObjectCreated);
        assert_eq!(created["detail"]["bucket"]["name"], json!(["incoming"]));
        assert_eq!(
            created["detail"]["object"]["key"],
            json!([{"prefix": "sales/"}])
        );
        let trail = event_pattern("incoming", "sales/", RuleSource::CloudTrail);
        assert_eq!(trail["detail-type"], json!(["AWS API Call via CloudTrail"]));
        let request = &trail["detail"]["requestParameters"];
        assert_eq!(request["bucketName"], json!(["incoming"]));
        assert_eq!(request["key"], json!([{"prefix": "sales/"}]));
        assert_eq!(trail["detail"]["eventName"].as_array().unwrap().len(), 4);
    }

    #[test]
    fn an_empty_prefix_matches_the_whole_bucket() {
        let created = event_pattern("incoming", "", RuleSource::ObjectCreated);
        assert!(created["detail"].get("object").is_none(), "{created}");
        let trail = event_pattern("incoming", "", RuleSource::CloudTrail);
        assert!(trail["detail"]["requestParameters"].get("key").is_none());
    }
}
