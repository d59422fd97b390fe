//! Fixtures follow the shapes documented by AWS (S3 notification `Records[]`, EventBridge
//! `Object Created`, SNS envelopes), by MinIO (webhook bodies) and produced by moto (SQS
//! bodies with URL-encoded keys and a leading `s3:TestEvent`); values are made up.

use super::*;

/// An S3 → SQS body as AWS sends it (event version 2.1).
const AWS_PUT: &str = r#"{"Records":[{
  "eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"eu-west-1",
  "eventTime":"2024-05-02T10:11:12.123Z","eventName":"ObjectCreated:Put",
  "userIdentity":{"principalId":"AWS:AIDAEXAMPLE"},
  "requestParameters":{"sourceIPAddress":"192.0.2.10"},
  "responseElements":{"x-amz-request-id":"C3D13FE58DE4C810","x-amz-id-2":"FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD"},
  "s3":{"s3SchemaVersion":"1.0","configurationId":"nbpipe",
    "bucket":{"name":"incoming","ownerIdentity":{"principalId":"A3NL1KOZZKExample"},"arn":"arn:aws:s3:::incoming"},
    "object":{"key":"sales/2024/q1+report%3A+final%2B1.csv","size":1024,
      "eTag":"d41d8cd98f00b204e9800998ecf8427e","versionId":"096fKKXTRTtl3on89fVO.nfljtsv6qko",
      "sequencer":"0055AED6DCD90281E5"}}}]}"#;

/// A MinIO webhook body (its records say `minio:s3` and keep the `s3:` prefix).
const MINIO_PUT: &str = r#"{"EventName":"s3:ObjectCreated:Put","Key":"incoming/in/a%20b.csv",
  "Records":[{"eventVersion":"2.0","eventSource":"minio:s3","awsRegion":"",
  "eventTime":"2024-05-02T10:11:12.456Z","eventName":"s3:ObjectCreated:Put",
  "userIdentity":{"principalId":"minioadmin"},
  "requestParameters":{"principalId":"minioadmin","region":"","sourceIPAddress":"127.0.0.1"},
  "responseElements":{"x-amz-id-2":"dd9025bab4ad464b049177c95eb6ebf374d3b3fd1af9251148b658df7ac2e3e8","x-amz-request-id":"17CB9A1B2C3D4E5F","x-minio-origin-endpoint":"http://127.0.0.1:9000"},
  "s3":{"s3SchemaVersion":"1.0","configurationId":"Config",
    "bucket":{"name":"incoming","ownerIdentity":{"principalId":"minioadmin"},"arn":"arn:aws:s3:::incoming"},
    "object":{"key":"in%2Fa+b.csv","size":12,"eTag":"\"6f5902ac237024bdd0c176cb93063dc4\"",
      "contentType":"text/csv","userMetadata":{"content-type":"text/csv"},
      "sequencer":"17CB9A1B2C3D4E5F"}},
  "source":{"host":"127.0.0.1","port":"","userAgent":"MinIO (linux; amd64) minio-go/v7.0.70"}}]}"#;

/// What S3 (and moto) put on the queue when notifications are configured.
const TEST_EVENT: &str = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2024-05-02T10:00:00.000Z",
  "Bucket":"incoming","RequestId":"5582815E1AEA5ADF","HostId":"8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE"}"#;

/// An EventBridge `Object Created` event (EventBridge rule → SQS, or pushed).
const EVENTBRIDGE: &str = r#"{"version":"0","id":"17793124-05d4-b198-2fde-7ededc63b103",
  "detail-type":"Object Created","source":"aws.s3","account":"111122223333",
  "time":"2024-05-02T10:11:12Z","region":"eu-west-1","resources":["arn:aws:s3:::incoming"],
  "detail":{"version":"0","bucket":{"name":"incoming"},
    "object":{"key":"raw/2024-05-02T10:11:12 a+b%2F.zip","size":198524144,
      "etag":"4af981f98d22a0b9979da24b259e5e42-12","version-id":"uhggCJ2_B6gU2JaXWXebnXFDstO0ID6G",
      "sequencer":"0064D3901D00059242"},
    "request-id":"XRRTKJXSZQCWNQR1","requester":"111122223333","source-ip-address":"192.0.2.10",
    "reason":"CompleteMultipartUpload"}}"#;

fn sns(inner: &str) -> String {
    serde_json::json!({
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": "arn:aws:sns:eu-west-1:111122223333:incoming-events",
        "Subject": "Amazon S3 Notification",
        "Message": inner,
        "Timestamp": "2024-05-02T10:11:13.000Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLE",
        "SigningCertURL": "https://sns.eu-west-1.amazonaws.com/cert.pem",
        "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe"
    })
    .to_string()
}

fn one(body: &str) -> ObjectEvent {
    let mut events = parse(body.as_bytes(), Source::Sqs).unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    events.remove(0)
}

#[test]
fn aws_record_gives_decoded_key_and_metadata() {
    let e = one(AWS_PUT);
    assert_eq!(e.bucket, "incoming");
    assert_eq!(e.key, "sales/2024/q1 report: final+1.csv");
    assert_eq!(e.etag.as_deref(), Some("d41d8cd98f00b204e9800998ecf8427e"));
    assert_eq!(
        e.version_id.as_deref(),
        Some("096fKKXTRTtl3on89fVO.nfljtsv6qko")
    );
    assert_eq!(e.size, Some(1024));
    assert_eq!(e.sequencer.as_deref(), Some("0055AED6DCD90281E5"));
    assert_eq!(e.event_time.as_deref(), Some("2024-05-02T10:11:12.123Z"));
    assert_eq!(e.event_name, "ObjectCreated:Put");
    assert_eq!(e.source, Source::Sqs);
}

#[test]
fn minio_record_strips_s3_prefix_and_etag_quotes() {
    let e = one(MINIO_PUT);
    assert_eq!(e.bucket, "incoming");
    assert_eq!(e.key, "in/a b.csv");
    assert_eq!(e.etag.as_deref(), Some("6f5902ac237024bdd0c176cb93063dc4"));
    assert_eq!(e.version_id, None);
    assert_eq!(e.event_name, "ObjectCreated:Put");
}

#[test]
fn test_event_gives_no_events() {
    assert!(parse(TEST_EVENT.as_bytes(), Source::Sqs)
        .unwrap()
        .is_empty());
    assert!(parse(sns(TEST_EVENT).as_bytes(), Source::Sqs)
        .unwrap()
        .is_empty());
}

#[test]
fn sns_wrapped_records_are_unwrapped() {
    let e = one(&sns(AWS_PUT));
    assert_eq!(e.key, "sales/2024/q1 report: final+1.csv");
}

#[test]
fn sns_control_message_is_a_typed_error() {
    let body = r#"{"Type":"SubscriptionConfirmation","MessageId":"x","Token":"t",
      "TopicArn":"arn:aws:sns:eu-west-1:111122223333:t","Message":"You have chosen to subscribe…",
      "SubscribeURL":"https://sns.example/?Action=ConfirmSubscription"}"#;
    match parse(body.as_bytes(), Source::Webhook) {
        Err(IntakeError::SnsControl { message_type }) => {
            assert_eq!(message_type, "SubscriptionConfirmation")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn eventbridge_key_is_taken_verbatim() {
    let e = one(EVENTBRIDGE);
    assert_eq!(e.bucket, "incoming");
    // Not URL-encoded: `+` and `%2F` are literal characters of the key.
    assert_eq!(e.key, "raw/2024-05-02T10:11:12 a+b%2F.zip");
    assert_eq!(
        e.etag.as_deref(),
        Some("4af981f98d22a0b9979da24b259e5e42-12")
    );
    assert_eq!(
        e.version_id.as_deref(),
        Some("uhggCJ2_B6gU2JaXWXebnXFDstO0ID6G")
    );
    assert_eq!(e.size, Some(198524144));
    assert_eq!(e.sequencer.as_deref(), Some("0064D3901D00059242"));
    assert_eq!(e.event_time.as_deref(), Some("2024-05-02T10:11:12Z"));
    assert_eq!(e.event_name, "Object Created");
}

/// What moto 5 puts on an SQS queue for S3 → EventBridge → SQS (unversioned bucket): `eTag`
/// spelled as in `Records[]`, `version-id` the string `null`, one fixed sequencer.
const MOTO_EVENTBRIDGE: &str = r#"{"version": "0", "id": "17793124-05d4-b198-2fde-7ededc63b103",
  "detail-type": "Object Created", "source": "aws.s3", "account": "123456789012",
  "time": "2026-11-26T07:17:18Z", "region": "us-east-1", "resources": ["arn:aws:s3:::incoming"],
  "detail": {"version": "0", "bucket": {"name": "incoming"}, "object": {"key": "in/a b+c.csv",
    "size": 1, "eTag": "c4ca4238a0b923820dcc509a6f75849b", "version-id": "null",
    "sequencer": "617f08299329d189"}, "request-id": "N4N7GDK58NMKJ12R",
    "requester": "123456789012", "source-ip-address": "1.2.3.4", "reason": "ObjectCreated"}}"#;

#[test]
fn moto_eventbridge_overwrites_are_told_apart_by_etag() {
    let first = one(MOTO_EVENTBRIDGE);
    assert_eq!(first.key, "in/a b+c.csv");
    assert_eq!(
        first.etag.as_deref(),
        Some("c4ca4238a0b923820dcc509a6f75849b")
    );
    assert_eq!(first.sequencer.as_deref(), Some("617f08299329d189"));
    let second = one(&MOTO_EVENTBRIDGE.replace(
        "c4ca4238a0b923820dcc509a6f75849b",
        "b6d767d2f8ed5d21a44b0e5886680cb9",
    ));
    // Same key, same `null` version, same sequencer: only the ETag says it is a new version.
    assert_ne!(first.dedup_key(), second.dedup_key());
}

#[test]
fn other_eventbridge_events_are_skipped() {
    let deleted = EVENTBRIDGE.replace("Object Created", "Object Deleted");
    assert!(parse(deleted.as_bytes(), Source::Sqs).unwrap().is_empty());
    let other_source = EVENTBRIDGE.replace("\"aws.s3\"", "\"aws.ec2\"");
    assert!(parse(other_source.as_bytes(), Source::Sqs)
        .unwrap()
        .is_empty());
}

#[test]
fn removed_records_are_skipped_and_created_kept_in_order() {
    let removed = AWS_PUT
        .replace("ObjectCreated:Put", "ObjectRemoved:Delete")
        .replace("q1", "gone");
    let copy = AWS_PUT
        .replace("ObjectCreated:Put", "ObjectCreated:CompleteMultipartUpload")
        .replace("q1", "q2");
    let body = format!("[{AWS_PUT},{removed},{copy},{TEST_EVENT},{EVENTBRIDGE}]");
    let events = parse(body.as_bytes(), Source::Webhook).unwrap();
    let keys: Vec<&str> = events.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "sales/2024/q1 report: final+1.csv",
            "sales/2024/q2 report: final+1.csv",
            "raw/2024-05-02T10:11:12 a+b%2F.zip"
        ]
    );
    assert!(events.iter().all(|e| e.source == Source::Webhook));
    assert_eq!(
        events[1].event_name,
        "ObjectCreated:CompleteMultipartUpload"
    );
}

#[test]
fn several_records_in_one_body() {
    let v: Value = serde_json::from_str(AWS_PUT).unwrap();
    let rec = v["Records"][0].clone();
    let mut rec2 = rec.clone();
    rec2["s3"]["object"]["key"] = "other%2Fb.csv".into();
    let body = serde_json::json!({ "Records": [rec, rec2] }).to_string();
    let events = parse(body.as_bytes(), Source::Sqs).unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].key, "other/b.csv");
}

#[test]
fn empty_records_and_empty_array_give_no_events() {
    assert!(parse(br#"{"Records":[]}"#, Source::Sqs).unwrap().is_empty());
    assert!(parse(b"[]", Source::Sqs).unwrap().is_empty());
}

#[test]
fn malformed_bodies_are_typed_errors() {
    let cases: &[&[u8]] = &[
        b"",
        b"not json",
        b"{\"Records\":",
        &[0xff, 0xfe, 0x00],
        b"42",
        b"\"Records\"",
        b"{}",
        b"{\"Records\":{}}",
        b"{\"Records\":[42]}",
        b"{\"Records\":[{\"eventName\":\"ObjectCreated:Put\"}]}",
        b"{\"Records\":[{\"eventName\":\"ObjectCreated:Put\",\"s3\":{\"bucket\":{\"name\":\"b\"},\"object\":{}}}]}",
        b"{\"Records\":[{\"eventName\":\"ObjectCreated:Put\",\"s3\":{\"bucket\":{\"name\":\"b\"},\"object\":{\"key\":\"k\",\"size\":-1}}}]}",
        b"{\"Type\":\"Notification\",\"TopicArn\":\"t\",\"Message\":\"{not json\"}",
        b"{\"Type\":\"Notification\",\"TopicArn\":\"t\",\"Message\":7}",
        b"{\"detail-type\":\"Object Created\",\"source\":\"aws.s3\"}",
        b"{\"detail-type\":\"Object Created\",\"source\":\"aws.s3\",\"detail\":{\"bucket\":{\"name\":\"b\"},\"object\":{}}}",
        b"[[[[[[[[{\"Records\":[]}]]]]]]]]",
    ];
    for body in cases {
        let err = parse(body, Source::Sqs).expect_err(&String::from_utf8_lossy(body));
        assert!(
            matches!(err, IntakeError::Json { .. } | IntakeError::Shape { .. }),
            "{err:?}"
        );
    }
}

#[test]
fn key_that_decodes_to_invalid_utf8_is_rejected() {
    let body = AWS_PUT.replace("sales/2024/q1+report%3A+final%2B1.csv", "bad%FF%FE.csv");
    match parse(body.as_bytes(), Source::Sqs) {
        Err(IntakeError::Key { key, reason }) => {
            assert_eq!(key, "bad%FF%FE.csv");
            assert_eq!(reason, KeyError::InvalidUtf8);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn size_as_string_and_missing_optional_fields() {
    let body = r#"{"Records":[{"eventName":"ObjectCreated:Post","s3":{"bucket":{"name":"b"},
      "object":{"key":"k.csv","size":"17"}}}]}"#;
    let e = one(body);
    assert_eq!(e.size, Some(17));
    assert_eq!(e.etag, None);
    assert_eq!(e.sequencer, None);
    assert_eq!(e.event_time, None);
}

#[test]
fn size_written_as_a_whole_float_is_that_integer() {
    let body = |size: &str| {
        format!(
            r#"{{"Records":[{{"eventName":"ObjectCreated:Put","s3":{{"bucket":{{"name":"b"}},
              "object":{{"key":"k.csv","size":{size}}}}}}}]}}"#
        )
    };
    assert_eq!(one(&body("627881783.0")).size, Some(627881783));
    for bad in ["2.5", "-1.0", "1e30"] {
        assert!(
            parse(body(bad).as_bytes(), Source::Webhook).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn etags_lose_quotes_and_weak_marker() {
    assert_eq!(clean_etag("\"abc\""), "abc");
    assert_eq!(clean_etag("W/\"abc-2\""), "abc-2");
    assert_eq!(clean_etag("abc"), "abc");
}

/// A CloudTrail data event for S3 as EventBridge delivers it ("AWS API Call via CloudTrail"),
/// shaped like AWS's documented records; `NAME`, `KEY`, `RESPONSE` and `EXTRA` are filled in.
const CLOUDTRAIL: &str = r#"{"version":"0","id":"3bd4e3a1-7e5c-2b2f-5b67-54c2a94b1a3c",
  "detail-type":"AWS API Call via CloudTrail","source":"aws.s3","account":"111122223333",
  "time":"2024-05-02T10:11:13Z","region":"eu-central-1","resources":[],
  "detail":{"eventVersion":"1.09",
    "userIdentity":{"type":"IAMUser","principalId":"AIDAEXAMPLE","arn":"arn:aws:iam::111122223333:user/loader","accountId":"111122223333","accessKeyId":"AKIAIOSFODNN7EXAMPLE","userName":"loader"},
    "eventTime":"2024-05-02T10:11:12Z","eventSource":"s3.amazonaws.com","eventName":"NAME",
    "awsRegion":"eu-central-1","sourceIPAddress":"192.0.2.10","userAgent":"[aws-cli/2.15.0]",
    "requestParameters":{"bucketName":"incoming","Host":"incoming.s3.eu-central-1.amazonaws.com","key":"KEY"},
    "responseElements":RESPONSE,
    "additionalEventData":{"SignatureVersion":"SigV4","CipherSuite":"TLS_AES_128_GCM_SHA256","bytesTransferredIn":2048.0,"AuthenticationMethod":"AuthHeader","x-amz-id-2":"Yx2bExample","bytesTransferredOut":0.0},
    "requestID":"8YF2WHNZ1A2B3C4D","eventID":"EVENTID","readOnly":false,
    "resources":[{"type":"AWS::S3::Object","ARN":"arn:aws:s3:::incoming/KEY"},{"accountId":"111122223333","type":"AWS::S3::Bucket","ARN":"arn:aws:s3:::incoming"}],
    "eventType":"AwsApiCall","managementEvent":false,"recipientAccountId":"111122223333",
    "eventCategory":"Data"EXTRA}}"#;

fn cloudtrail(name: &str, key: &str, response: &str, extra: &str) -> String {
    CLOUDTRAIL
        .replace("NAME", name)
        .replace("KEY", key)
        .replace("RESPONSE", response)
        .replace("EVENTID", &format!("e-{name}-{}", key.len()))
        .replace("EXTRA", extra)
}

const PUT_RESPONSE: &str = r#"{"x-amz-server-side-encryption":"AES256","x-amz-version-id":"3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"}"#;

#[test]
fn cloudtrail_put_object_gives_verbatim_key_version_region_and_time() {
    let key = "sales/2024 Q1/naïve+fête%2F.csv";
    let e = one(&cloudtrail("PutObject", key, PUT_RESPONSE, ""));
    assert_eq!(e.bucket, "incoming");
    // CloudTrail does not URL-encode keys: `+` and `%2F` are literal.
    assert_eq!(e.key, key);
    assert_eq!(
        e.version_id.as_deref(),
        Some("3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY")
    );
    assert_eq!(e.etag, None);
    assert_eq!(e.size, Some(2048));
    assert_eq!(e.region.as_deref(), Some("eu-central-1"));
    assert_eq!(e.event_time.as_deref(), Some("2024-05-02T10:11:12Z"));
    assert_eq!(e.event_name, "PutObject");
    assert_eq!(
        e.report_id.as_deref(),
        Some(&*format!("e-PutObject-{}", key.len()))
    );
    assert_eq!(e.sequencer, None);
}

#[test]
fn cloudtrail_multipart_completion_and_copy_are_object_creations() {
    let done = one(&cloudtrail(
        "CompleteMultipartUpload",
        "big/part.parquet",
        r#"{"x-amz-version-id":"v2","CompleteMultipartUploadResult":{"Bucket":"incoming","Key":"big/part.parquet","ETag":"\"a1b2c3-12\""}}"#,
        "",
    ));
    assert_eq!(done.key, "big/part.parquet");
    assert_eq!(done.etag.as_deref(), Some("a1b2c3-12"));
    assert_eq!(done.version_id.as_deref(), Some("v2"));
    // bytesTransferredIn of a completion is not the object's size.
    assert_eq!(done.size, None);
    let copy = one(&cloudtrail(
        "CopyObject",
        "copied/a.csv",
        r#"{"CopyObjectResult":{"ETag":"\"ffee\"","LastModified":"2024-05-02T10:11:12.000Z"}}"#,
        "",
    ));
    assert_eq!(copy.key, "copied/a.csv");
    assert_eq!(copy.etag.as_deref(), Some("ffee"));
    assert_eq!(copy.version_id, None);
}

#[test]
fn cloudtrail_parts_reads_deletes_and_failed_calls_give_no_event() {
    for body in [
        cloudtrail("UploadPart", "big/part.parquet", "null", ""),
        cloudtrail("GetObject", "sales/a.csv", "null", ""),
        cloudtrail("DeleteObject", "sales/a.csv", "null", ""),
        cloudtrail("CreateMultipartUpload", "big/part.parquet", "null", ""),
        cloudtrail(
            "PutObject",
            "sales/a.csv",
            "null",
            r#","errorCode":"AccessDenied","errorMessage":"Access Denied""#,
        ),
    ] {
        let events = parse(body.as_bytes(), Source::Sqs).unwrap();
        assert!(events.is_empty(), "{body}: {events:?}");
    }
}

#[test]
fn cloudtrail_redeliveries_share_a_dedup_key_and_distinct_calls_do_not() {
    // No version id, no ETag: the report id is what tells calls apart.
    let a = one(&cloudtrail("PutObject", "sales/a.csv", "null", ""));
    let again = one(&cloudtrail("PutObject", "sales/a.csv", "null", ""));
    assert_eq!(a.dedup_key(), again.dedup_key());
    let other_call = one(&cloudtrail("PutObject", "sales/a.csv", "null", "")
        .replace("e-PutObject-11", "e-second-call"));
    assert_ne!(a.dedup_key(), other_call.dedup_key());
    // A version id identifies the object version whatever the report.
    let v1 = one(&cloudtrail("PutObject", "sales/a.csv", PUT_RESPONSE, ""));
    let v1_other_report =
        one(&cloudtrail("PutObject", "sales/a.csv", PUT_RESPONSE, "")
            .replace("e-PutObject-11", "x"));
    assert_eq!(v1.dedup_key(), v1_other_report.dedup_key());
}

#[test]
fn cloudtrail_events_missing_their_object_are_typed_errors() {
    let no_key = cloudtrail("PutObject", "", PUT_RESPONSE, "");
    let no_bucket = cloudtrail("PutObject", "a.csv", PUT_RESPONSE, "")
        .replace(r#""bucketName":"incoming","#, "");
    for body in [no_key, no_bucket] {
        match parse(body.as_bytes(), Source::Webhook) {
            Err(IntakeError::Shape { reason }) => {
                assert!(reason.contains("CloudTrail"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }
    // From another service: not ours, skipped.
    let ec2 = cloudtrail("PutObject", "a.csv", PUT_RESPONSE, "")
        .replace(r#""source":"aws.s3""#, r#""source":"aws.ec2""#);
    assert!(parse(ec2.as_bytes(), Source::Sqs).unwrap().is_empty());
}

#[test]
fn regions_come_from_records_and_eventbridge_events() {
    assert_eq!(one(AWS_PUT).region.as_deref(), Some("eu-west-1"));
    assert_eq!(one(EVENTBRIDGE).region.as_deref(), Some("eu-west-1"));
    assert_eq!(one(MINIO_PUT).region, None);
}
