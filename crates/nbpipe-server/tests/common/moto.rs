//! A throwaway moto server (S3, SQS and EventBridge over real HTTP) for tests, and boto3
//! scripts to configure it. Included by path from every test binary that needs it
//! (`#[path = "…/nbpipe-server/tests/common/moto.rs"] mod moto;`), like the SeaweedFS harness.
//!
//! Self-contained (std and `nix` only). Each [`Moto`] listens on `127.0.0.1` only, on its own
//! free port, so tests run in parallel; it is killed on drop, and by the kernel if the test
//! process dies first. `moto_server` and the Python with boto3 come from the test environment
//! (`$NBPIPE_TEST_ENV/bin`, provisioned by `scripts/test-env.sh`); a missing one fails the
//! test saying how to get it.
//!
//! What moto sends (checked with moto 5): S3 → SQS bodies are `Records[]` with URL-encoded keys
//! (`in%2Fa+b.csv`) and no sequencer, preceded by an `s3:TestEvent` when notifications are
//! configured; S3 → EventBridge → SQS bodies are EventBridge `Object Created` events with the
//! key verbatim, `eTag`, `version-id` `null` (unversioned bucket) and one fixed sequencer.
//!
//! ```ignore
//! let moto = Moto::start();
//! let queue_url = moto.s3_to_eventbridge_to_sqs("incoming", "intake");
//! moto.put("incoming", "in/a.csv", "1");
//! // AWS_ENDPOINT_URL = moto.endpoint(); credentials and region: Moto::aws_env
//! ```
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Region, credentials and IMDS setting every client of a [`Moto`] uses (plus
/// `AWS_ENDPOINT_URL`, see [`Moto::aws_env`]).
pub const REGION: &str = "us-east-1";

/// A running `moto_server`, killed on drop.
pub struct Moto {
    child: Child,
    port: u16,
}

/// `$NBPIPE_TEST_ENV/bin/<name>`, which must exist.
pub fn test_env_bin(name: &str) -> PathBuf {
    let env = std::env::var("NBPIPE_TEST_ENV")
        .expect("NBPIPE_TEST_ENV is not set (export NBPIPE_TEST_ENV=$HOME/.cache/nbpipe/test-env)");
    let bin = PathBuf::from(env).join("bin").join(name);
    assert!(
        bin.is_file(),
        "{} is missing: run scripts/test-env.sh (or uv pip install --python \
         $NBPIPE_TEST_ENV/bin/python 'moto[server]' boto3)",
        bin.display()
    );
    bin
}

impl Moto {
    /// Start a server on a free loopback port and wait until it answers (60 s at most).
    pub fn start() -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
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
        let moto = Moto { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment an AWS SDK client (or `nbpipe serve`) needs to talk to this server.
    pub fn aws_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", REGION.into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }

    /// Run a Python script with boto3 clients `s3`, `sqs` and `events` bound to this server
    /// and `args` (strings) as `sys.argv[1:]`; returns its trimmed stdout. Fails the test if
    /// the script fails.
    pub fn boto(&self, script: &str, args: &[&str]) -> String {
        let prelude = format!(
            "import sys, json, boto3\n\
             kw = dict(endpoint_url='{}', region_name='{REGION}', aws_access_key_id='test', \
             aws_secret_access_key='test')\n\
             s3, sqs, events = (boto3.client(n, **kw) for n in ('s3', 'sqs', 'events'))\n",
            self.endpoint()
        );
        let out = Command::new(test_env_bin("python"))
            .arg("-c")
            .arg(format!("{prelude}{script}"))
            .args(args)
            .env("NO_PROXY", "127.0.0.1")
            .output()
            .expect("run python");
        assert!(
            out.status.success(),
            "boto3 script failed: {}\n{script}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Bucket `bucket` notifying queue `queue` of every `s3:ObjectCreated:*` directly
    /// (S3 → SQS). Returns the queue URL. moto sends an `s3:TestEvent` first.
    pub fn s3_to_sqs(&self, bucket: &str, queue: &str) -> String {
        self.boto(
            "b, name = sys.argv[1], sys.argv[2]\n\
             q = sqs.create_queue(QueueName=name)['QueueUrl']\n\
             arn = sqs.get_queue_attributes(QueueUrl=q, AttributeNames=['QueueArn'])['Attributes']['QueueArn']\n\
             s3.create_bucket(Bucket=b)\n\
             s3.put_bucket_notification_configuration(Bucket=b, NotificationConfiguration={\n\
                 'QueueConfigurations': [{'QueueArn': arn, 'Events': ['s3:ObjectCreated:*']}]})\n\
             print(q)",
            &[bucket, queue],
        )
    }

    /// Bucket `bucket` sending its events to EventBridge (`EventBridgeConfiguration`), and an
    /// EventBridge rule on the default bus matching `Object Created` in that bucket, whose
    /// target is queue `queue` (S3 → EventBridge → SQS). Returns the queue URL.
    pub fn s3_to_eventbridge_to_sqs(&self, bucket: &str, queue: &str) -> String {
        self.boto(
            "b, name = sys.argv[1], sys.argv[2]\n\
             q = sqs.create_queue(QueueName=name)['QueueUrl']\n\
             arn = sqs.get_queue_attributes(QueueUrl=q, AttributeNames=['QueueArn'])['Attributes']['QueueArn']\n\
             s3.create_bucket(Bucket=b)\n\
             s3.put_bucket_notification_configuration(Bucket=b,\n\
                 NotificationConfiguration={'EventBridgeConfiguration': {}})\n\
             pattern = {'source': ['aws.s3'], 'detail-type': ['Object Created'],\n\
                        'detail': {'bucket': {'name': [b]}}}\n\
             events.put_rule(Name=name + '-created', EventPattern=json.dumps(pattern))\n\
             events.put_targets(Rule=name + '-created', Targets=[{'Id': 'queue', 'Arn': arn}])\n\
             print(q)",
            &[bucket, queue],
        )
    }

    /// Upload `body` as `bucket`/`key`.
    pub fn put(&self, bucket: &str, key: &str, body: &str) {
        self.boto(
            "s3.put_object(Bucket=sys.argv[1], Key=sys.argv[2], Body=sys.argv[3].encode())",
            &[bucket, key, body],
        );
    }

    /// Send `body` to the queue at `queue_url`.
    pub fn send(&self, queue_url: &str, body: &str) {
        self.boto(
            "sqs.send_message(QueueUrl=sys.argv[1], MessageBody=sys.argv[2])",
            &[queue_url, body],
        );
    }

    /// Messages on the queue, visible or in flight.
    pub fn queue_len(&self, queue_url: &str) -> usize {
        let n = self.boto(
            "a = sqs.get_queue_attributes(QueueUrl=sys.argv[1], AttributeNames=['All'])['Attributes']\n\
             print(int(a['ApproximateNumberOfMessages']) + int(a['ApproximateNumberOfMessagesNotVisible']))",
            &[queue_url],
        );
        n.parse().expect("a message count")
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
