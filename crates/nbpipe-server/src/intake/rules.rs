//! EventBridge rule patterns that send a route's new objects on to nbpipe (an SQS queue that
//! `nbpipe serve --sqs-queue` reads, or any other target), in either of the two shapes S3
//! activity reaches EventBridge:
//! - [`RuleSource::ObjectCreated`]: S3's own EventBridge notifications (`Object Created`,
//!   switched on per bucket), matched on `detail.bucket.name` and `detail.object.key`;
//! - [`RuleSource::CloudTrail`]: CloudTrail data events (`AWS API Call via CloudTrail`) of the
//!   object-creating calls that succeeded, matched on `detail.requestParameters.bucketName` and
//!   `.key`.
//!
//! Both match on bucket and key prefix only: a route's suffix is applied by the intake, as are
//! the key safety checks ([`super::routing`]). The patterns are what deployments write into
//! their rules; the tests deliver events through moto's EventBridge with them.
//!
//! Must not: talk to AWS.

use serde_json::{json, Value};

use super::routing::Route;

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

/// The event pattern of a rule that matches `route`'s new objects in events of `source`.
pub fn event_pattern(route: &Route, source: RuleSource) -> Value {
    let key = (!route.prefix.is_empty()).then(|| json!([{ "prefix": route.prefix }]));
    match source {
        RuleSource::ObjectCreated => {
            let mut object = json!({});
            if let Some(key) = key {
                object["key"] = key;
            }
            let mut detail = json!({ "bucket": { "name": [route.bucket] } });
            if object.as_object().is_some_and(|o| !o.is_empty()) {
                detail["object"] = object;
            }
            json!({
                "source": ["aws.s3"],
                "detail-type": ["Object Created"],
                "detail": detail,
            })
        }
        RuleSource::CloudTrail => {
            let mut request = json!({ "bucketName": [route.bucket] });
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
        let route = Route::new("p", "incoming", "sales/", Some(".csv"));
        let created = event_pattern(&route, RuleSource::ObjectCreated);
        assert_eq!(created["detail"]["bucket"]["name"], json!(["incoming"]));
        assert_eq!(
            created["detail"]["object"]["key"],
            json!([{"prefix": "sales/"}])
        );
        let trail = event_pattern(&route, RuleSource::CloudTrail);
        assert_eq!(trail["detail-type"], json!(["AWS API Call via CloudTrail"]));
        let request = &trail["detail"]["requestParameters"];
        assert_eq!(request["bucketName"], json!(["incoming"]));
        assert_eq!(request["key"], json!([{"prefix": "sales/"}]));
        assert_eq!(trail["detail"]["eventName"].as_array().unwrap().len(), 4);
    }

    #[test]
    fn an_empty_prefix_matches_the_whole_bucket() {
        let route = Route::new("p", "incoming", "", None);
        let created = event_pattern(&route, RuleSource::ObjectCreated);
        assert!(created["detail"].get("object").is_none(), "{created}");
        let trail = event_pattern(&route, RuleSource::CloudTrail);
        assert!(trail["detail"]["requestParameters"].get("key").is_none());
    }
}
