//! Trigger intake: everything that turns "something happened" into [`ObjectEvent`]s (or a
//! schedule's fire times) routed to projects.
//!
//! - [`notify`]: parse S3 notifications (AWS and MinIO `Records[]`, SNS-wrapped), EventBridge
//!   `Object Created` events and CloudTrail data events of object-creating calls, from an SQS
//!   message body or a `POST /hooks/s3` body.
//! - [`routing`]: which projects an event starts ([`routing::Route`]) and key safety checks.
//! - [`rules`]: the EventBridge rule patterns that send a route's objects to nbpipe.
//! - [`local`]: a watched local folder (the embedded default), polled, with a durable seen-set.
//! - [`poll`]: a polled prefix on any object store `nbpipe-store` reaches, with a durable cursor.
//! - [`schedule`]: cron expressions with an IANA time zone and a per-slot identity.
//! - `sqs` (feature `sqs`): long-polls an SQS queue of notifications with the AWS SDK and deletes
//!   a message only once its events are queued.
//! - [`outcome`]: what became of delivered events (queued, duplicate, superseded by a newer
//!   event for the same key) and the counters `/metrics` shows.
//! - [`durable`]: the two small traits this module needs from the rest of the server — a
//!   [`CursorStore`] (where pollers keep their state) and an [`EventSink`] (the queue: `Ok` means
//!   the events are durably queued) — plus in-memory and file-backed implementations.
//!
//! Contract shared by every delivering trigger: events are handed to an [`EventSink`] first, and
//! only once it returns `Ok` is progress recorded (a cursor saved, a message deleted). A crash in
//! between delivers the same events again, and the queue's [`ObjectEvent::dedup_key`] makes that
//! harmless. At-least-once in, exactly-once out.
//!
//! Events that carry S3's `sequencer` (SQS, webhook) are also ordered per key by the queue: one
//! older than the newest already taken for its (project, bucket, key) is not run, and the sink
//! still answers `Ok` — it was handled, so its message is deleted like a duplicate's.
//!
//! Not owned here: HTTP (the web layer calls [`notify::parse`] with the request body), the queue
//! itself, and running projects.
//!
//! ```
//! use nbpipe_server::event::Source;
//! use nbpipe_server::intake::{notify, routing::{self, Route}};
//!
//! let body = br#"{"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put",
//!   "s3":{"bucket":{"name":"incoming"},"object":{"key":"sales/q1+report.csv","eTag":"\"abc\""}}}]}"#;
//! let events = notify::parse(body, Source::Webhook).unwrap();
//! assert_eq!(events[0].key, "sales/q1 report.csv");
//! assert_eq!(events[0].etag.as_deref(), Some("abc"));
//!
//! let routes = vec![Route::new("churn", "incoming", "sales/", Some(".csv"))];
//! let matched = routing::match_event(&routes, &events[0]);
//! assert_eq!(matched[0].project, "churn");
//! ```
//!
//! [`ObjectEvent`]: crate::event::ObjectEvent
//! [`ObjectEvent::dedup_key`]: crate::event::ObjectEvent::dedup_key

pub mod durable;
pub mod local;
pub mod notify;
pub mod outcome;
pub mod poll;
pub mod routing;
pub mod rules;
pub mod schedule;
#[cfg(feature = "sqs")]
pub mod sqs;

pub use durable::{
    CursorError, CursorStore, EventSink, FileCursorStore, MemoryCursorStore, MemorySink, SinkError,
};
pub use outcome::{IntakeCounters, Submitted, Superseded};

use std::time::Duration;

/// What can go wrong while taking in triggers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IntakeError {
    /// A notification body is not JSON.
    #[error("notification body is not valid JSON: {reason}")]
    Json {
        /// The parser's message (line and column).
        reason: String,
    },
    /// A notification is JSON but not a shape we know, or misses a required field.
    #[error("unrecognised notification: {reason}")]
    Shape {
        /// What was expected and where.
        reason: String,
    },
    /// An SNS control message (`SubscriptionConfirmation`, `UnsubscribeConfirmation`) instead of
    /// a notification; the HTTP layer decides whether to confirm.
    #[error("SNS `{message_type}` message, not a notification")]
    SnsControl {
        /// The SNS `Type`.
        message_type: String,
    },
    /// An object key that cannot be taken in (see [`routing::KeyError`]).
    #[error("object key `{key}` rejected: {reason}")]
    Key {
        /// The key as received (before decoding), shortened for display.
        key: String,
        /// Why.
        reason: routing::KeyError,
    },
    /// A cron expression or time zone that does not parse.
    #[error("invalid schedule `{cron}`: {reason}")]
    Schedule {
        /// The expression.
        cron: String,
        /// Why.
        reason: String,
    },
    /// A watched local folder could not be read.
    #[error("cannot read watched folder `{path}`: {source}")]
    LocalDir {
        /// The folder or file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A polled store location is not usable or could not be listed.
    #[error("cannot poll `{url}`: {reason}")]
    Store {
        /// The prefix URL.
        url: String,
        /// The store's message (never contains credentials).
        reason: String,
    },
    /// An SQS receive failed.
    #[error("cannot receive from SQS queue `{queue}`: {reason}")]
    Sqs {
        /// The queue URL.
        queue: String,
        /// The SDK's message.
        reason: String,
    },
    /// The cursor store failed.
    #[error(transparent)]
    Cursor(#[from] CursorError),
    /// The sink (queue) refused the events; nothing was recorded and they come again.
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// What a poller does with objects that exist when it first starts (no cursor saved yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Existing {
    /// Emit them like new ones (the default: files dropped while the service was not yet
    /// running still get processed; the queue's dedup keeps this safe).
    #[default]
    Emit,
    /// Record them as seen without emitting: only objects arriving later start runs.
    Skip,
}

/// Back-off after a failed poll: doubles from the interval up to 5 minutes.
pub(crate) fn backoff(interval: Duration, failures: u32) -> Duration {
    let factor = 1u32 << failures.min(10);
    (interval.saturating_mul(factor)).min(Duration::from_secs(300).max(interval))
}

/// A poller's saved state, loaded into `slot` on its first poll; returns whether there was
/// none (the poller's first poll ever). An unreadable cursor (e.g. from a newer version)
/// starts over: the queue's dedup keys make re-emitting harmless.
pub(crate) async fn load_state<T: serde::de::DeserializeOwned + Default>(
    slot: &mut Option<T>,
    cursor: &dyn CursorStore,
    name: &str,
) -> Result<bool, IntakeError> {
    if slot.is_some() {
        return Ok(false);
    }
    let saved = cursor.get(name).await?;
    let fresh = saved.is_none();
    *slot = Some(
        saved
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default(),
    );
    Ok(fresh)
}

/// Save a poller's state under its cursor `name`.
pub(crate) async fn save_state<T: serde::Serialize>(
    cursor: &dyn CursorStore,
    name: &str,
    state: &T,
) -> Result<(), IntakeError> {
    let text = serde_json::to_string(state).expect("poller state serializes");
    cursor.set(name, &text).await?;
    Ok(())
}

/// The wait before a poller's next poll: its interval after a success (which resets
/// `failures`), a growing [`backoff`] after a failure, which goes to `on_error`.
pub(crate) fn next_poll_in(
    result: Result<usize, IntakeError>,
    interval: Duration,
    failures: &mut u32,
    on_error: &impl Fn(&IntakeError),
) -> Duration {
    match result {
        Ok(_) => {
            *failures = 0;
            interval
        }
        Err(e) => {
            on_error(&e);
            *failures += 1;
            backoff(interval, *failures)
        }
    }
}

/// Sleep for `d` unless `shutdown` resolves first; `true` when shutting down.
pub(crate) async fn sleep_or_shutdown(
    d: Duration,
    shutdown: &mut (impl std::future::Future<Output = ()> + Unpin),
) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = shutdown => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let i = Duration::from_secs(1);
        assert_eq!(backoff(i, 0), i);
        assert_eq!(backoff(i, 1), Duration::from_secs(2));
        assert_eq!(backoff(i, 3), Duration::from_secs(8));
        assert_eq!(backoff(i, 30), Duration::from_secs(300));
        // An interval longer than the cap is never shortened.
        let long = Duration::from_secs(600);
        assert_eq!(backoff(long, 4), long);
    }
}
