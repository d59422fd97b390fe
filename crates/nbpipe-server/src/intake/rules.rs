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
//! their rules; the tests deliver events through moto's EventBridge with them. They live in
//! `nbpipe-eventbridge`, shared with `nbpipe deploy aws`; this module applies them to a route.
//!
//! Must not: talk to AWS.

use serde_json::Value;

pub use nbpipe_eventbridge::{RuleSource, CREATING_CALLS};

use super::routing::Route;

/// The event pattern of a rule that matches `route`'s new objects in events of `source`.
pub fn event_pattern(route: &Route, source: RuleSource) -> Value {
    nbpipe_eventbridge::event_pattern(&route.bucket, &route.prefix, source)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
