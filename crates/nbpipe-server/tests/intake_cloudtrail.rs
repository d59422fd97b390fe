//! CloudTrail data events ("AWS API Call via CloudTrail", the way many accounts route S3
//! activity to EventBridge) through a real SQS API and a real EventBridge rule (moto's server):
//! exactly the successful object-creating calls become events, with the bucket, the key as
//! written (spaces, unicode, `+`, `%2F` kept literally) and the region; and the rule pattern
//! nbpipe documents for CloudTrail delivers those calls and no others.
//!
//! Needs the `sqs` feature and `moto_server` + boto3 in the test environment.
#![cfg(feature = "sqs")]

#[path = "common/moto.rs"]
mod moto;
#[path = "common/sqs.rs"]
mod sqs;

use std::time::{Duration, Instant};

use moto::Moto;
use nbpipe_server::event::ObjectEvent;
use nbpipe_server::intake::routing::Route;
use nbpipe_server::intake::rules::{event_pattern, RuleSource};
use nbpipe_server::intake::sqs::SqsIntake;
use nbpipe_server::intake::MemorySink;
use serde_json::{json, Value};

/// A CloudTrail record of `call` on `bucket`/`key` as EventBridge wraps it, shaped like the
/// records AWS documents. `response` is `responseElements`; `error` adds an `errorCode`.
fn cloudtrail(call: &str, bucket: &str, key: &str, response: Value, error: bool) -> Value {
    let mut detail = json!({
        "eventVersion": "1.09",
        "userIdentity": {"type": "AssumedRole", "principalId": "AROAEXAMPLE:loader",
                         "accountId": "111122223333"},
        "eventTime": "2024-05-02T10:11:12Z", "eventSource": "s3.amazonaws.com",
        "eventName": call, "awsRegion": "eu-central-1", "sourceIPAddress": "192.0.2.10",
        "userAgent": "[aws-cli/2.15.0]",
        "requestParameters": {"bucketName": bucket, "Host": format!("{bucket}.s3.eu-central-1.amazonaws.com"), "key": key},
        "responseElements": response,
        "additionalEventData": {"SignatureVersion": "SigV4", "bytesTransferredIn": 5.0,
                                "AuthenticationMethod": "AuthHeader", "x-amz-id-2": "Yx2b"},
        "requestID": "8YF2WHNZ1A2B3C4D", "eventID": format!("{call}-{key}"), "readOnly": false,
        "resources": [{"type": "AWS::S3::Object", "ARN": format!("arn:aws:s3:::{bucket}/{key}")}],
        "eventType": "AwsApiCall", "managementEvent": false,
        "recipientAccountId": "111122223333", "eventCategory": "Data",
    });
    if error {
        detail["errorCode"] = json!("AccessDenied");
        detail["errorMessage"] = json!("Access Denied");
    }
    json!({
        "version": "0", "id": format!("ev-{call}-{key}"),
        "detail-type": "AWS API Call via CloudTrail", "source": "aws.s3",
        "account": "111122223333", "time": "2024-05-02T10:11:13Z", "region": "eu-central-1",
        "resources": [], "detail": detail,
    })
}

/// The calls of one upload session: three that create objects (keys with a space, unicode,
/// `+` and `%2F`), then a part, a read, a failed put and a delete that must not.
fn calls(bucket: &str) -> Vec<Value> {
    vec![
        cloudtrail(
            "PutObject",
            bucket,
            "in/a b.csv",
            json!({"x-amz-version-id": "v1"}),
            false,
        ),
        cloudtrail(
            "CompleteMultipartUpload",
            bucket,
            "in/naïve fête+1.parquet",
            json!({"x-amz-version-id": "v2", "CompleteMultipartUploadResult":
                   {"Bucket": bucket, "Key": "in/naïve fête+1.parquet", "ETag": "\"c0ffee-3\""}}),
            false,
        ),
        cloudtrail(
            "CopyObject",
            bucket,
            "in/x%2By.csv",
            json!({"CopyObjectResult": {"ETag": "\"beef\"", "LastModified": "2024-05-02T10:11:12.000Z"}}),
            false,
        ),
        cloudtrail(
            "UploadPart",
            bucket,
            "in/naïve fête+1.parquet",
            Value::Null,
            false,
        ),
        cloudtrail("GetObject", bucket, "in/a b.csv", Value::Null, false),
        cloudtrail("PutObject", bucket, "in/denied.csv", Value::Null, true),
        cloudtrail("DeleteObject", bucket, "in/a b.csv", Value::Null, false),
    ]
}

fn assert_object_creations(mut got: Vec<ObjectEvent>) {
    got.sort_by(|a, b| a.key.cmp(&b.key));
    let seen: Vec<(&str, &str, Option<&str>, &str)> = got
        .iter()
        .map(|e| {
            (
                e.bucket.as_str(),
                e.key.as_str(),
                e.region.as_deref(),
                e.event_name.as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("incoming", "in/a b.csv", Some("eu-central-1"), "PutObject"),
            (
                "incoming",
                "in/naïve fête+1.parquet",
                Some("eu-central-1"),
                "CompleteMultipartUpload"
            ),
            (
                "incoming",
                "in/x%2By.csv",
                Some("eu-central-1"),
                "CopyObject"
            ),
        ]
    );
    assert_eq!(got[0].version_id.as_deref(), Some("v1"));
    assert_eq!(got[1].etag.as_deref(), Some("c0ffee-3"));
    assert_eq!(got[2].etag.as_deref(), Some("beef"));
}

fn intake(moto: &Moto, queue_url: &str) -> SqsIntake {
    SqsIntake::with_client(sqs::client(moto), sqs::options(queue_url))
}

/// Receive until the queue is empty twice in a row (or 30 s passed); every message must parse.
async fn drain(
    intake: &SqsIntake,
    sink: &MemorySink,
    moto: &Moto,
    queue_url: &str,
) -> Vec<ObjectEvent> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    let mut empty = 0;
    while empty < 2 && Instant::now() < deadline {
        let batch = intake.receive_once(sink).await.unwrap();
        assert!(batch.errors.is_empty(), "{:?}", batch.errors);
        got.extend(sink.take());
        empty = if moto.queue_len(queue_url) == 0 {
            empty + 1
        } else {
            0
        };
    }
    got
}

#[tokio::test]
async fn cloudtrail_events_on_sqs_give_exactly_the_object_creations() {
    let moto = Moto::start();
    let queue = moto.boto(
        "print(sqs.create_queue(QueueName='trail')['QueueUrl'])",
        &[],
    );
    for call in calls("incoming") {
        moto.send(&queue, &call.to_string());
    }
    let intake = intake(&moto, &queue);
    let sink = MemorySink::new();
    let got = drain(&intake, &sink, &moto, &queue).await;
    assert_object_creations(got);
    assert_eq!(
        moto.queue_len(&queue),
        0,
        "every message was handled and deleted"
    );
}

#[tokio::test]
async fn cloudtrail_rule_pattern_delivers_only_matching_calls_through_eventbridge() {
    let moto = Moto::start();
    let route = Route::new("p", "incoming", "in/", None);
    let pattern = event_pattern(&route, RuleSource::CloudTrail).to_string();
    let queue = moto.boto(
        "q = sqs.create_queue(QueueName='trail')['QueueUrl']\n\
         arn = sqs.get_queue_attributes(QueueUrl=q, AttributeNames=['QueueArn'])['Attributes']['QueueArn']\n\
         events.put_rule(Name='trail', EventPattern=sys.argv[1])\n\
         events.put_targets(Rule='trail', Targets=[{'Id': 'queue', 'Arn': arn}])\n\
         print(q)",
        &[&pattern],
    );
    let mut all = calls("incoming");
    // Outside the prefix, and in another bucket: the rule must not match them.
    all.push(cloudtrail(
        "PutObject",
        "incoming",
        "other/a.csv",
        json!({}),
        false,
    ));
    all.push(cloudtrail(
        "PutObject",
        "elsewhere",
        "in/a.csv",
        json!({}),
        false,
    ));
    let entries: Vec<Value> = all
        .iter()
        .map(|e| {
            json!({"Source": e["source"], "DetailType": e["detail-type"],
                   "Detail": e["detail"].to_string(), "EventBusName": "default"})
        })
        .collect();
    let failed = moto.boto(
        "r = events.put_events(Entries=json.loads(sys.argv[1]))\nprint(r['FailedEntryCount'])",
        &[&Value::Array(entries).to_string()],
    );
    assert_eq!(failed, "0");
    let intake = intake(&moto, &queue);
    let sink = MemorySink::new();
    let got = drain(&intake, &sink, &moto, &queue).await;
    assert_object_creations(got);
}
