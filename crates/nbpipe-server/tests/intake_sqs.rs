//! SQS intake against a real SQS API (moto's server, one per test): S3 → SQS notifications
//! with URL-encoded keys and the leading `s3:TestEvent`, EventBridge events on the queue,
//! "delete only after queued", and `AWS_ENDPOINT_URL`.
//!
//! Needs the `sqs` feature and `moto_server` in the test environment:
//! `uv pip install --python $NBPIPE_TEST_ENV/bin/python 'moto[server]'`.
#![cfg(feature = "sqs")]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sqs::Client;
use nbpipe_server::event::{ObjectEvent, Source};
use nbpipe_server::intake::sqs::{SqsIntake, SqsOptions};
use nbpipe_server::intake::MemorySink;

fn test_env_bin(name: &str) -> PathBuf {
    let env = std::env::var("NBPIPE_TEST_ENV")
        .expect("NBPIPE_TEST_ENV is not set (export NBPIPE_TEST_ENV=$HOME/.cache/nbpipe/test-env)");
    let bin = PathBuf::from(env).join("bin").join(name);
    assert!(
        bin.is_file(),
        "{} is missing: uv pip install --python $NBPIPE_TEST_ENV/bin/python 'moto[server]'",
        bin.display()
    );
    bin
}

/// A running `moto_server`, killed on drop.
struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    fn start() -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = Command::new(test_env_bin("moto_server"));
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        {
            use std::os::unix::process::CommandExt;
            // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                        .map_err(std::io::Error::from)
                });
            }
        }
        let child = cmd.spawn().expect("start moto_server");
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto { child, port }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Run boto3 against the server: `setup` (queue `intake`, bucket `incoming`, notifications
    /// of `s3:ObjectCreated:*` to the queue; prints the queue URL) or `put KEY BODY`.
    fn boto(&self, args: &[&str]) -> String {
        const SCRIPT: &str = r#"
import sys, boto3
ep, cmd = sys.argv[1], sys.argv[2]
kw = dict(endpoint_url=ep, region_name="us-east-1", aws_access_key_id="test",
          aws_secret_access_key="test")
s3, sqs = boto3.client("s3", **kw), boto3.client("sqs", **kw)
if cmd == "setup":
    q = sqs.create_queue(QueueName="intake")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.create_bucket(Bucket="incoming")
    s3.put_bucket_notification_configuration(Bucket="incoming", NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]})
    print(q)
elif cmd == "put":
    s3.put_object(Bucket="incoming", Key=sys.argv[3], Body=sys.argv[4].encode())
"#;
        let out = Command::new(test_env_bin("python"))
            .arg("-c")
            .arg(SCRIPT)
            .arg(self.endpoint())
            .args(args)
            .env("NO_PROXY", "127.0.0.1")
            .output()
            .expect("run python");
        assert!(
            out.status.success(),
            "boto3 {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    fn client(&self) -> Client {
        let config = aws_sdk_sqs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(self.endpoint())
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .build();
        Client::from_conf(config)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn options(queue_url: &str) -> SqsOptions {
    SqsOptions {
        wait: Duration::from_secs(1),
        visibility_timeout: Some(Duration::from_secs(1)),
        ..SqsOptions::new(queue_url)
    }
}

/// Receive until `n` events were submitted (or 30 s passed).
async fn receive_events(intake: &SqsIntake, sink: &MemorySink, n: usize) -> Vec<ObjectEvent> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        intake.receive_once(sink).await.unwrap();
        got.extend(sink.take());
    }
    got
}

async fn queue_len(client: &Client, queue_url: &str) -> usize {
    let attrs = client
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let a = attrs.attributes.unwrap_or_default();
    let count = |name: aws_sdk_sqs::types::QueueAttributeName| -> usize {
        a.get(&name).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        + count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
}

#[tokio::test]
async fn s3_notifications_are_decoded_queued_and_deleted() {
    let moto = Moto::start();
    let queue = moto.boto(&["setup"]);
    moto.boto(&["put", "in/a b.csv", "1"]);
    moto.boto(&["put", "in/x+y:z.csv", "2"]);
    let intake = SqsIntake::with_client(moto.client(), options(&queue));
    let sink = MemorySink::new();
    let events = receive_events(&intake, &sink, 2).await;
    let mut keys: Vec<&str> = events.iter().map(|e| e.key.as_str()).collect();
    keys.sort();
    assert_eq!(keys, ["in/a b.csv", "in/x+y:z.csv"]);
    assert!(events.iter().all(|e| e.bucket == "incoming"
        && e.source == Source::Sqs
        && e.etag.as_deref().is_some_and(|t| !t.contains('"'))
        && e.event_name.starts_with("ObjectCreated:")));
    // Everything handled (the test event too) was deleted.
    assert_eq!(queue_len(&moto.client(), &queue).await, 0);
}

#[tokio::test]
async fn refused_events_stay_on_the_queue_until_queued() {
    let moto = Moto::start();
    let queue = moto.boto(&["setup"]);
    // Drain the test event first.
    let intake = SqsIntake::with_client(moto.client(), options(&queue));
    let sink = MemorySink::new();
    while intake.receive_once(&sink).await.unwrap().received > 0 {}
    moto.boto(&["put", "in/a.csv", "1"]);

    sink.fail_next(1);
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        let b = intake.receive_once(&sink).await.unwrap();
        if b.received > 0 || Instant::now() > deadline {
            break b;
        }
    };
    assert_eq!(
        (first.received, first.kept, first.deleted),
        (1, 1, 0),
        "{first:?}"
    );
    assert!(sink.take().is_empty());
    assert_eq!(queue_len(&moto.client(), &queue).await, 1);

    // After the visibility timeout it comes back and is queued, then deleted.
    let events = receive_events(&intake, &sink, 1).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].key, "in/a.csv");
    assert_eq!(queue_len(&moto.client(), &queue).await, 0);
}

#[tokio::test]
async fn eventbridge_events_and_bad_bodies_on_the_queue() {
    let moto = Moto::start();
    let client = moto.client();
    let queue = client
        .create_queue()
        .queue_name("bridge")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let event = serde_json::json!({
        "version": "0", "id": "1", "detail-type": "Object Created", "source": "aws.s3",
        "account": "123456789012", "time": "2024-05-02T10:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:s3:::incoming"],
        "detail": {"version": "0", "bucket": {"name": "incoming"},
            "object": {"key": "in/a+b%2F.csv", "size": 3, "etag": "abc", "sequencer": "01"},
            "reason": "PutObject"}
    });
    for body in [event.to_string(), "not json".to_string()] {
        client
            .send_message()
            .queue_url(&queue)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    let intake = SqsIntake::with_client(client.clone(), options(&queue));
    let sink = MemorySink::new();
    let mut kept = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut events = Vec::new();
    while (events.is_empty() || kept.is_empty()) && Instant::now() < deadline {
        let b = intake.receive_once(&sink).await.unwrap();
        kept.extend(b.errors);
        events.extend(sink.take());
    }
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].key, "in/a+b%2F.csv",
        "EventBridge keys are verbatim"
    );
    assert!(kept[0].contains("not valid JSON"), "{kept:?}");
    // The bad body stays for the dead-letter queue; the event's message is gone.
    assert_eq!(queue_len(&client, &queue).await, 1);
}

#[tokio::test]
async fn from_env_honours_aws_endpoint_url() {
    let moto = Moto::start();
    let queue = moto.boto(&["setup"]);
    moto.boto(&["put", "in/env.csv", "1"]);
    // The only test in this binary that configures through the environment.
    std::env::set_var("AWS_ENDPOINT_URL", moto.endpoint());
    std::env::set_var("AWS_ACCESS_KEY_ID", "test");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    std::env::set_var("AWS_REGION", "us-east-1");
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    let intake = SqsIntake::from_env(options(&queue)).await;
    let sink = MemorySink::new();
    let events = receive_events(&intake, &sink, 1).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].key, "in/env.csv");
}
