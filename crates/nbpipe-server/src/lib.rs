//! `nbpipe serve`: nobody runs anything by hand.
//!
//! Objects landing under a project's trigger prefix (S3 notifications via SQS or webhook,
//! polling, a local folder) and schedules become run requests; requests go into a durable
//! queue (SQLite by default, PostgreSQL for a shared database) with exactly-once runs per
//! event; workers run projects through `nbpipe-project`; an HTTP API and a web UI show runs,
//! history and rendered notebooks.
//!
//! - [`event`]: the trigger-independent shape of "an object landed" and of a run request.
//! - [`intake`]: the triggers — S3/EventBridge notifications, prefix polling, local folders and
//!   cron schedules — turned into [`event::ObjectEvent`]s routed to projects.
//! - [`queue`]: the durable queue and run history (SQLite file or PostgreSQL): exactly-once
//!   enqueue per event, leases that survive `kill -9`, limits, cancel, retry, re-run.
//! - [`policy`]: a project's `serve:` run policy turned into attempts, the limits and backoff
//!   the queue stores for every server, and which failures are worth a retry.
//! - [`serve`]: the wiring: projects, queue recovery, inbox/poll/SQS/schedule triggers,
//!   workers and graceful drain.
//! - [`triggers`]: the schedules, inbox folders and polled prefixes of the served projects,
//!   kept in step with them when a revision is switched in (git-ops).
//! - [`worker`]: claimed runs executed through an executor: leases renewed, cancels honoured,
//!   live progress copied into the queue.
//! - [`executors`]: which executor (local process or Docker container) runs a project's
//!   attempts, and attempts a dead server left running taken over after a restart.
//! - [`api`]: the HTTP API (JSON, OpenAPI at `/api/openapi.json`, server-sent events, S3 hooks,
//!   Prometheus metrics), token authentication, and sandboxed step reports.
//! - [`ui`]: the web UI — runs, run detail with live step reports, projects.
#![deny(missing_docs)]

pub mod api;
pub mod event;
pub mod executors;
pub mod gitops;
pub mod intake;
pub mod notifier;
pub mod policy;
pub mod projects;
pub mod queue;
pub mod serve;
pub mod triggers;
pub mod ui;
pub mod worker;
