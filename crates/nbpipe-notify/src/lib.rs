//! Run notifications: what a message about a finished run says and how it reaches people.
//!
//! - [`Message`] — one run's outcome (project, environment, run, failing step and cell,
//!   exception, times, report link), built from its manifest with [`Message::for_run`];
//! - [`render`] — the message as a Slack-compatible payload, the generic JSON body with its
//!   HMAC-SHA256 signature, and an email (subject, plain text, HTML);
//! - [`deliver`] — one attempt to one [`Target`] (HTTP or SMTP), with errors that say
//!   whether retrying can help; [`send_now`] — every target at once with a few quick
//!   retries in a bounded time, for `nbpipe run`.
//!
//! It owns no state: deciding which events a run produces (recovery needs history), rate
//! limits and durable retries belong to `nbpipe serve`'s queue. It must never change a run's
//! outcome; callers only log its errors.
//!
//! ```no_run
//! # async fn demo() {
//! use nbpipe_notify::{deliver, Message, Target};
//! let msg = Message::for_run("daily", None, "20260101T000000Z-ab12cd34", "failed", None,
//!                            Some("cell 3 raised ValueError: bad row"));
//! let target = Target::Webhook { url: "https://ops.example.org/hooks/nbpipe".into(),
//!                                secret_env: Some("NBPIPE_HOOK_KEY".into()) };
//! if let Err(e) = deliver(&target, &msg, "delivery-1").await {
//!     eprintln!("warning: notification not sent: {e}");
//! }
//! # }
//! ```

#![deny(missing_docs)]

mod deliver;
mod message;
pub mod render;

use std::time::{Duration, Instant};

pub use deliver::{deliver, DeliveryError, Target, SEND_TIMEOUT};
pub use message::{Cell, Event, HeldBack, Message, RunError};
use nbpipe_project::run::manifest::RunManifest;
use nbpipe_project::{NotifyEvent, NotifyTarget, Project};

/// How long `nbpipe run` spends at most on its notifications after a run.
pub const DIRECT_BUDGET: Duration = Duration::from_secs(30);

/// The targets of `targets` that subscribe to `event` (a digest goes where failures go).
pub fn subscribed(targets: &[NotifyTarget], event: Event) -> Vec<&NotifyTarget> {
    let wanted = match event {
        Event::Failure | Event::Digest => NotifyEvent::Failure,
        Event::Success => NotifyEvent::Success,
        Event::Recovery => NotifyEvent::Recovery,
    };
    targets.iter().filter(|t| t.on.contains(&wanted)).collect()
}

/// What became of one target in [`send_now`].
#[derive(Debug)]
pub struct Sent {
    /// The target's key (`notify[0]`).
    pub key: String,
    /// Where it went ([`Target::destination`]).
    pub destination: String,
    /// Attempts made.
    pub attempts: u32,
    /// The last error, `None` when delivered.
    pub error: Option<DeliveryError>,
}

/// Sends `msg` to each of `targets` at once, retrying a failed attempt after 1 s, 2 s, 4 s…
/// while `budget` lasts (a permanent error is not retried). Never fails: the result says
/// what was delivered.
pub async fn send_now(targets: &[&NotifyTarget], msg: &Message, budget: Duration) -> Vec<Sent> {
    let deadline = Instant::now() + budget;
    let id = format!("{}-{}", msg.run_id, msg.event.as_str());
    let sends = targets.iter().map(|t| {
        let (id, target) = (id.clone(), Target::from(&t.kind));
        async move {
            let mut attempts = 0;
            let mut wait = Duration::from_secs(1);
            loop {
                attempts += 1;
                let left = deadline.saturating_duration_since(Instant::now());
                let result = match tokio::time::timeout(left, deliver(&target, msg, &id)).await {
                    Ok(r) => r,
                    Err(_) => Err(DeliveryError::Http("out of time".into())),
                };
                let error = result.err();
                let give_up = error.as_ref().is_none_or(|e| e.is_permanent())
                    || Instant::now() + wait >= deadline;
                if give_up {
                    return Sent {
                        key: t.key.clone(),
                        destination: target.destination(),
                        attempts,
                        error,
                    };
                }
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
    });
    futures::future::join_all(sends).await
}

/// Tells `project`'s `notify:` targets about a run that ended as `manifest` says, without a
/// server (`nbpipe run`): a failure to the targets of `failure`, a success to those of
/// `success` (a recovery needs the project's history, which only `nbpipe serve` keeps; a
/// cancelled run is not announced). No rate limit applies. The report link is the run's
/// output folder. Spends at most `budget`; the result says what was delivered.
pub async fn notify_run(project: &Project, manifest: &RunManifest, budget: Duration) -> Vec<Sent> {
    let event = match manifest.status.as_str() {
        "failed" => Event::Failure,
        "succeeded" => Event::Success,
        _ => return Vec::new(),
    };
    let targets = subscribed(&project.notify, event);
    if targets.is_empty() {
        return Vec::new();
    }
    let mut msg = Message::for_run(
        &project.name,
        project.environment.as_deref(),
        &manifest.run_id,
        &manifest.status,
        Some(manifest),
        None,
    );
    msg.report_url = Some(manifest.output.clone());
    send_now(&targets, &msg, budget).await
}
