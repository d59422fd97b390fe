//! The notifier of `nbpipe serve`: a background task that turns finished runs into
//! notifications and sends them. Every second it plans the outbox (runs whose final update
//! left a row, see `queue::notify`), queues digests of rate-limited failures whose window
//! ended, and sends the deliveries that are due — each in a task of its own, at most
//! [`PARALLEL`] at once, recording every attempt. It never touches a run: a receiver that
//! is down or slow delays only its own messages.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use nbpipe_notify::Message;
use nbpipe_project::{NotifyTarget, Project};
use tokio::sync::{watch, Semaphore};

use crate::queue::{OutboxItem, Queue, RunRow};
use crate::worker::Projects;

/// Deliveries sent at once.
pub const PARALLEL: usize = 8;
/// How often the outbox and the due deliveries are looked at.
const TICK: Duration = Duration::from_secs(1);

/// What the notifier needs to know besides the queue.
#[derive(Clone)]
pub struct Notifier {
    queue: Queue,
    projects: Projects,
    /// The base of report links: `{public_url}/runs/{id}`.
    public_url: String,
    sending: Arc<Semaphore>,
}

impl Notifier {
    /// A notifier for `projects`, linking reports under `public_url`.
    pub fn new(queue: Queue, projects: Projects, public_url: &str) -> Notifier {
        Notifier {
            queue,
            projects,
            public_url: public_url.trim_end_matches('/').to_string(),
            sending: Arc::new(Semaphore::new(PARALLEL)),
        }
    }

    /// Works until `stop` becomes true, then gives sends in flight up to `grace` to end.
    pub async fn run(self, mut stop: watch::Receiver<bool>, grace: Duration) {
        loop {
            if let Err(e) = self.tick().await {
                eprintln!("warning: notifications: {e}");
            }
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        // One last pass for the runs that ended while draining, then let sends finish.
        let _ = self.tick().await;
        let _ = tokio::time::timeout(
            grace,
            self.sending
                .acquire_many(u32::try_from(PARALLEL).unwrap_or(u32::MAX)),
        )
        .await;
    }

    fn names(&self) -> Vec<String> {
        self.projects.values().iter().map(|p| p.key()).collect()
    }

    /// One pass: plan the outbox, queue digests, send what is due.
    pub async fn tick(&self) -> Result<(), crate::queue::QueueError> {
        let names = self.names();
        loop {
            let items = self.queue.notify_outbox(&names, 100).await?;
            if items.is_empty() {
                break;
            }
            for item in &items {
                self.plan(item).await?;
            }
        }
        let projects = self.projects.clone();
        let projects2 = self.projects.clone();
        let env_of = move |p: &str| environment(projects.get(p).as_ref());
        let target_of = move |p: &str, key: &str| -> Option<NotifyTarget> {
            projects2
                .get(p)?
                .notify
                .iter()
                .find(|t| t.key == key)
                .cloned()
        };
        // The digest's run is the last one held back: its message, from the database.
        let mut bases: HashMap<(String, String), Message> = HashMap::new();
        for (project, run_id) in self.held_back_runs().await? {
            let run = self.queue.get(&run_id).await?;
            let msg = match run {
                Some(run) => self.message(&run),
                None => Message::for_run(&project, None, &run_id, "failed", None, None),
            };
            bases.insert((project, run_id), msg);
        }
        let has_windows = !bases.is_empty();
        let base = move |p: &str, r: &str| {
            bases
                .get(&(p.to_string(), r.to_string()))
                .cloned()
                .unwrap_or_else(|| Message::for_run(p, None, r, "failed", None, None))
        };
        // Cheap reads first: the write transactions below take the queue's write lock.
        if has_windows {
            self.queue
                .plan_digests(&names, &env_of, &target_of, &base)
                .await?;
        }
        if self.queue.has_due_deliveries().await? {
            self.send_due().await?;
        }
        Ok(())
    }

    /// The (project, run) of every window holding failures back (for digest messages).
    async fn held_back_runs(&self) -> Result<Vec<(String, String)>, crate::queue::QueueError> {
        self.queue.held_back_runs().await
    }

    async fn plan(&self, item: &OutboxItem) -> Result<(), crate::queue::QueueError> {
        let Some(project) = self.projects.get(&item.project) else {
            return Ok(());
        };
        let base = match self.queue.get(&item.run_id).await? {
            Some(run) => self.message(&run),
            None => Message::for_run(&item.project, None, &item.run_id, &item.status, None, None),
        };
        self.queue
            .plan_notifications(item, &environment(Some(&project)), &project.notify, &base)
            .await?;
        Ok(())
    }

    /// The message about `run`, with its report link.
    fn message(&self, run: &RunRow) -> Message {
        // `runs.project` is the project's key (`name@environment`): messages name both apart.
        let project = self.projects.get(&run.project);
        let manifest = run
            .manifest
            .as_ref()
            .and_then(|m| serde_json::from_value(m.clone()).ok());
        let mut msg = Message::for_run(
            project
                .as_ref()
                .map_or(run.project.as_str(), |p| p.name.as_str()),
            project
                .as_ref()
                .and_then(|p| p.environment.as_deref())
                .or(run.environment.as_deref()),
            &run.id,
            run.status.as_str(),
            manifest.as_ref(),
            run.error.as_deref(),
        );
        msg.report_url = Some(format!("{}/runs/{}", self.public_url, run.id));
        if let Some(step) = &msg.step {
            msg.step_report_url = Some(format!(
                "{}/runs/{}/steps/{step}.html",
                self.public_url, run.id
            ));
        }
        msg.attempt = run.attempts.max(1);
        if msg.started.is_none() {
            msg.started = run.started_at.map(|t| t.to_rfc3339());
        }
        if msg.finished.is_none() {
            msg.finished = run.finished_at.map(|t| t.to_rfc3339());
        }
        msg
    }

    async fn send_due(&self) -> Result<(), crate::queue::QueueError> {
        let free = self.sending.available_permits();
        if free == 0 {
            return Ok(());
        }
        for d in self.queue.claim_deliveries(free).await? {
            let Ok(permit) = self.sending.clone().acquire_owned().await else {
                break;
            };
            let queue = self.queue.clone();
            tokio::spawn(async move {
                let result = nbpipe_notify::deliver(&d.target, &d.message, &d.id).await;
                let (error, permanent) = match &result {
                    Ok(()) => (None, false),
                    Err(e) => (Some(e.to_string()), e.is_permanent()),
                };
                if let Some(e) = &error {
                    eprintln!(
                        "warning: notification {} of run {} to {} (attempt {}): {e}",
                        d.message.event.as_str(),
                        d.message.run_id,
                        d.target.destination(),
                        d.attempts + 1
                    );
                }
                if let Err(e) = queue
                    .record_delivery(&d.id, error.as_deref(), permanent)
                    .await
                {
                    eprintln!("warning: could not record notification {}: {e}", d.id);
                }
                drop(permit);
            });
        }
        Ok(())
    }
}

/// The environment name stored with a project's notifications (`""`: none).
fn environment(project: Option<&Project>) -> String {
    project
        .and_then(|p| p.environment.clone())
        .unwrap_or_default()
}
