//! S3 notifications (or EventBridge events) read from an SQS queue, with the AWS SDK.
//!
//! Behind the `sqs` feature (the AWS SDK adds minutes to a cold build).
//!
//! The contract, per message: receive (long poll, up to [`SqsOptions::wait`]) → parse the body
//! with [`super::notify::parse`] → [`EventSink::submit`] → delete the message. A message is
//! deleted only after the sink returned `Ok` (the runs are durably queued, or were found to be
//! duplicates, or older than an event already taken for their key — the queue decides that
//! from S3's `sequencer`, durably); on a sink error it is left alone and comes back after the
//! queue's visibility timeout. Messages with nothing to run (`s3:TestEvent`, deletions) are
//! deleted at once. A body that does not parse is left on
//! the queue and reported: after the queue's `maxReceiveCount` SQS moves it to the dead-letter
//! queue, where it can be inspected.
//!
//! Configuration comes from the standard AWS environment ([`SqsIntake::from_env`]:
//! `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_SQS`, `AWS_REGION`, credentials, profiles), or from an
//! SDK client built by the caller ([`SqsIntake::with_client`]).
//!
//! Must not: create queues or configure bucket notifications.

use std::time::Duration;

use aws_sdk_sqs::Client;

use super::{notify, EventSink, IntakeError};
use crate::event::Source;

/// How to read the queue.
#[derive(Debug, Clone)]
pub struct SqsOptions {
    /// The queue URL.
    pub queue_url: String,
    /// Long-poll wait per receive (at most 20 s; default 20 s).
    pub wait: Duration,
    /// Messages per receive (1–10; default 10).
    pub max_messages: i32,
    /// Visibility timeout asked for on receive; `None` keeps the queue's own.
    pub visibility_timeout: Option<Duration>,
}

impl SqsOptions {
    /// Defaults for `queue_url`.
    pub fn new(queue_url: impl Into<String>) -> SqsOptions {
        SqsOptions {
            queue_url: queue_url.into(),
            wait: Duration::from_secs(20),
            max_messages: 10,
            visibility_timeout: None,
        }
    }
}

/// What one receive did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Messages received.
    pub received: usize,
    /// Events handed to the sink.
    pub submitted: usize,
    /// Messages deleted (their events queued, or nothing to run).
    pub deleted: usize,
    /// Messages left on the queue: their body did not parse or the sink refused their events.
    pub kept: usize,
    /// Why messages were kept.
    pub errors: Vec<String>,
}

/// An SQS queue of object notifications.
#[derive(Debug)]
pub struct SqsIntake {
    client: Client,
    options: SqsOptions,
}

impl SqsIntake {
    /// A reader configured from the standard AWS environment (including `AWS_ENDPOINT_URL`).
    pub async fn from_env(options: SqsOptions) -> SqsIntake {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        SqsIntake::with_client(Client::new(&config), options)
    }

    /// A reader using `client`.
    pub fn with_client(client: Client, options: SqsOptions) -> SqsIntake {
        SqsIntake { client, options }
    }

    /// Receive once (long poll) and handle what came. An `Err` means the receive itself
    /// failed; per-message problems are counted in [`Batch::kept`] and [`Batch::errors`].
    pub async fn receive_once(&self, sink: &dyn EventSink) -> Result<Batch, IntakeError> {
        let o = &self.options;
        let mut request = self
            .client
            .receive_message()
            .queue_url(&o.queue_url)
            .wait_time_seconds(o.wait.as_secs().min(20) as i32)
            .max_number_of_messages(o.max_messages.clamp(1, 10));
        if let Some(v) = o.visibility_timeout {
            request = request.visibility_timeout(v.as_secs().min(43_200) as i32);
        }
        let output = request.send().await.map_err(|e| IntakeError::Sqs {
            queue: o.queue_url.clone(),
            reason: aws_sdk_sqs::error::DisplayErrorContext(e).to_string(),
        })?;
        let mut batch = Batch::default();
        for message in output.messages.unwrap_or_default() {
            batch.received += 1;
            let body = message.body.as_deref().unwrap_or("");
            let events = match notify::parse(body.as_bytes(), Source::Sqs) {
                Ok(events) => events,
                Err(e) => {
                    batch.kept += 1;
                    batch.errors.push(format!(
                        "message {}: {e}",
                        message.message_id.as_deref().unwrap_or("?")
                    ));
                    continue;
                }
            };
            if !events.is_empty() {
                let n = events.len();
                if let Err(e) = sink.submit(events).await {
                    batch.kept += 1;
                    batch.errors.push(e.to_string());
                    continue;
                }
                batch.submitted += n;
            }
            let Some(handle) = message.receipt_handle else {
                continue;
            };
            match self
                .client
                .delete_message()
                .queue_url(&o.queue_url)
                .receipt_handle(handle)
                .send()
                .await
            {
                Ok(_) => batch.deleted += 1,
                // Queued but not deleted: it comes again and the queue's dedup drops it.
                Err(e) => batch.errors.push(format!(
                    "delete: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(e)
                )),
            }
        }
        Ok(batch)
    }

    /// Receive until `shutdown` resolves; failed receives and kept messages are reported to
    /// `on_error`, and failed receives are retried with back-off.
    pub async fn run(
        &self,
        sink: &dyn EventSink,
        shutdown: impl std::future::Future<Output = ()>,
        on_error: impl Fn(&str),
    ) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut failures = 0;
        loop {
            let received = tokio::select! {
                r = self.receive_once(sink) => r,
                _ = &mut shutdown => return,
            };
            match received {
                Ok(batch) => {
                    failures = 0;
                    for e in &batch.errors {
                        on_error(e);
                    }
                }
                Err(e) => {
                    on_error(&e.to_string());
                    failures += 1;
                    let wait = super::backoff(Duration::from_secs(1), failures);
                    if super::sleep_or_shutdown(wait, &mut shutdown).await {
                        return;
                    }
                }
            }
        }
    }
}
