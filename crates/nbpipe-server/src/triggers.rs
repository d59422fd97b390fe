//! The trigger tasks that follow the served projects: schedules, local inbox folders and
//! polled prefixes.
//!
//! Owns which of these run while the served [`Projects`] change (git-ops replaces a project
//! by a new revision, then says so on a `switched` channel):
//!
//! - [`run_schedules`] reads the projects on every tick and wakes at a switch: a removed
//!   schedule stops firing, an added one fires from the switch on (no backfill, as at a first
//!   start), a changed expression is a new schedule (its cursor is named by the expression).
//! - [`Watchers`] keeps one watcher per inbox folder (`<inbox>/<bucket>`) and one poller per
//!   polled prefix (`s3://bucket/prefix`) that the projects' S3 triggers need.
//!   [`Watchers::reconcile`] stops the watchers no longer needed (after the poll in
//!   progress, so no event is left half-handled) and starts the new ones; a watcher still
//!   needed keeps running with its cursor and in-memory state, so an unchanged trigger neither
//!   loses nor repeats an event across a switch.
//!
//! Which project an event starts is decided by the sink's routes, replaced at the same
//! switch; a watcher only delivers what lands in its folder or prefix.
//!
//! Must not: route events, parse `nbpipe.yaml`, or decide what is served.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::intake::local::{LocalDir, LocalDirOptions};
use crate::intake::poll::{PollOptions, PrefixPoller};
use crate::intake::routing;
use crate::intake::schedule::Schedule;
use crate::intake::{CursorStore, EventSink, IntakeError};
use crate::projects::Projects;
use crate::serve::QueueSink;

/// Waits for the next revision switch; never returns once nothing can switch any more.
async fn next_switch(switched: &mut Option<watch::Receiver<()>>) {
    match switched {
        Some(rx) => {
            if rx.changed().await.is_err() {
                *switched = None;
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

/// Run the schedules of the served projects until `shutdown`; each fire time is queued once,
/// and slots missed while the server was down collapse into one run.
///
/// The projects are read again on every tick, and `switched` (a revision was switched in)
/// wakes the loop at once. A schedule's cursor is named by its project and expression (not
/// its position: a revision that reorders schedules or removes one before another keeps
/// their cursors; two identical schedules fire the same runs anyway, as a fire time is
/// queued once per project): a schedule seen for the first time (at the first start, or
/// added or changed by a revision) fires from now on, without backfill.
pub async fn run_schedules(
    sink: Arc<QueueSink>,
    cursors: Arc<dyn CursorStore>,
    projects: Projects,
    switched: Option<watch::Receiver<()>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut switched = switched;
    // Invalid schedules are reported once, not on every tick.
    let mut reported = HashSet::new();
    loop {
        let now = Utc::now();
        let mut next_wake = now + chrono::Duration::seconds(60);
        for p in projects.values() {
            let project = p.key();
            let schedules = match Schedule::from_project(&p) {
                Ok(s) => s,
                Err(e) => {
                    let message = format!("warning: schedules of `{project}`: {e}");
                    if reported.insert(message.clone()) {
                        eprintln!("{message}");
                    }
                    continue;
                }
            };
            for (i, s) in schedules.iter().enumerate() {
                if let Some(n) = s.next_after(now) {
                    next_wake = next_wake.min(n);
                }
                let name = format!("schedule:{project}:{}", s.expression());
                let mut last = cursor_time(cursors.as_ref(), &name).await;
                if last.is_none() {
                    // A cursor written by nbpipe before 2026-12, named by position too.
                    let old = format!("schedule:{project}:{i}:{}", s.expression());
                    last = cursor_time(cursors.as_ref(), &old).await;
                }
                let Some(last) = last else {
                    // First seen: schedule from now on, no backfill.
                    let _ = cursors.set(&name, &now.to_rfc3339()).await;
                    continue;
                };
                if let Some(fire) = s.due(last, now) {
                    if sink
                        .submit_request(&s.request(&project, fire))
                        .await
                        .is_ok()
                    {
                        let _ = cursors.set(&name, &fire.to_rfc3339()).await;
                    }
                }
            }
        }
        let wait = (next_wake - Utc::now())
            .to_std()
            .unwrap_or(Duration::from_millis(200));
        tokio::select! {
            _ = tokio::time::sleep(wait.max(Duration::from_millis(200))) => {}
            _ = next_switch(&mut switched) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// The time stored under cursor `name`, if it holds one.
async fn cursor_time(cursors: &dyn CursorStore, name: &str) -> Option<DateTime<Utc>> {
    let text = cursors.get(name).await.ok().flatten()?;
    let t = DateTime::parse_from_rfc3339(&text).ok()?;
    Some(t.with_timezone(&Utc))
}

/// What one watcher watches.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Watched {
    /// `<inbox>/<bucket>`, standing for `bucket`.
    Inbox { root: PathBuf, bucket: String },
    /// `s3://bucket/prefix`.
    Prefix { url: String },
}

/// A watcher's task and the switch that stops it.
struct Running {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// The inbox folder watchers and prefix pollers of the served projects' S3 triggers.
pub struct Watchers {
    sink: Arc<dyn EventSink>,
    cursors: Arc<dyn CursorStore>,
    inbox: Option<PathBuf>,
    poll: Option<Duration>,
    inbox_options: LocalDirOptions,
    store: nbpipe_store::StoreConfig,
    shutdown: watch::Receiver<bool>,
    running: BTreeMap<String, Running>,
    /// Watchers told to stop and maybe still finishing their poll: one needed again is
    /// waited for before it starts anew, so that two never share a cursor.
    stopping: BTreeMap<String, tokio::task::JoinHandle<()>>,
    /// Whether the first reconcile (the server's start) is done: later starts and stops are
    /// logged.
    started: bool,
}

impl Watchers {
    /// Watchers delivering to `sink` and keeping their cursors in `cursors`: an inbox folder
    /// per bucket under `inbox` (when given), a poller per prefix every `poll` (when given).
    /// None runs before [`Watchers::reconcile`]; all stop at `shutdown`.
    pub fn new(
        sink: Arc<dyn EventSink>,
        cursors: Arc<dyn CursorStore>,
        inbox: Option<PathBuf>,
        poll: Option<Duration>,
        shutdown: watch::Receiver<bool>,
    ) -> Watchers {
        Watchers {
            sink,
            cursors,
            inbox,
            poll,
            inbox_options: LocalDirOptions::default(),
            store: nbpipe_store::StoreConfig::from_env(),
            shutdown,
            running: BTreeMap::new(),
            stopping: BTreeMap::new(),
            started: false,
        }
    }

    /// Polls inbox folders this often (default 1 s), for tests.
    pub fn with_inbox_interval(mut self, interval: Duration) -> Watchers {
        self.inbox_options.interval = interval;
        self
    }

    /// Reaches polled stores with `store` instead of the standard environment's settings.
    pub fn with_store(mut self, store: nbpipe_store::StoreConfig) -> Watchers {
        self.store = store;
        self
    }

    /// What the projects' S3 triggers need watched, by the watcher's name (its cursor's).
    fn wanted(&self, projects: &Projects) -> BTreeMap<String, Watched> {
        let mut out = BTreeMap::new();
        for route in routing::routes(projects.values().iter()) {
            if let Some(inbox) = &self.inbox {
                let root = inbox.join(&route.bucket);
                let name = LocalDir::new(&root, LocalDirOptions::default()).cursor_name();
                out.insert(
                    name,
                    Watched::Inbox {
                        root,
                        bucket: route.bucket.clone(),
                    },
                );
            }
            if self.poll.is_some() {
                let url = format!("s3://{}/{}", route.bucket, route.prefix);
                out.insert(format!("poll:{url}"), Watched::Prefix { url });
            }
        }
        out
    }

    /// The names of the running watchers (`local:<folder>`, `poll:<url>`: their cursors').
    pub fn running(&self) -> Vec<String> {
        self.running.keys().cloned().collect()
    }

    /// Stops the watchers `projects` no longer need (each finishes its poll in progress
    /// first) and starts those they need and that are not running; the others keep running
    /// untouched. A watcher that cannot start is reported in the error (the first one's) and
    /// tried again at the next reconcile; the others start anyway.
    pub async fn reconcile(&mut self, projects: &Projects) -> Result<(), IntakeError> {
        let wanted = self.wanted(projects);
        let gone: Vec<String> = self
            .running
            .keys()
            .filter(|name| !wanted.contains_key(*name))
            .cloned()
            .collect();
        self.stopping.retain(|_, task| !task.is_finished());
        for name in gone {
            if let Some(r) = self.running.remove(&name) {
                let _ = r.stop.send(true);
                eprintln!("Trigger stopped: {}", describe(&name));
                self.stopping.insert(name, r.task);
            }
        }
        let mut first_error = None;
        for (name, what) in wanted {
            if self.running.contains_key(&name) {
                continue;
            }
            if let Some(task) = self.stopping.remove(&name) {
                let _ = task.await;
            }
            match self.start(&what) {
                Ok(r) => {
                    if self.started {
                        eprintln!("Trigger started: {}", describe(&name));
                    }
                    self.running.insert(name, r);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        self.started = true;
        first_error.map_or(Ok(()), Err)
    }

    /// Reconciles at every revision switch until `shutdown`, then stops every watcher.
    pub async fn follow(mut self, projects: Projects, switched: watch::Receiver<()>) {
        let mut switched = Some(switched);
        let mut shutdown = self.shutdown.clone();
        loop {
            tokio::select! {
                _ = next_switch(&mut switched) => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
            if let Err(e) = self.reconcile(&projects).await {
                eprintln!("warning: trigger: {e}");
            }
        }
        for (_, r) in std::mem::take(&mut self.running) {
            let _ = r.stop.send(true);
            let _ = r.task.await;
        }
        for (_, task) in std::mem::take(&mut self.stopping) {
            let _ = task.await;
        }
    }

    fn start(&self, what: &Watched) -> Result<Running, IntakeError> {
        let (stop, mut stopped) = watch::channel(false);
        let mut shutdown = self.shutdown.clone();
        let until = async move {
            tokio::select! {
                _ = stopped.wait_for(|s| *s) => {}
                _ = shutdown.wait_for(|s| *s) => {}
            }
        };
        let (sink, cursors) = (self.sink.clone(), self.cursors.clone());
        let task = match what {
            Watched::Inbox { root, bucket } => {
                let _ = std::fs::create_dir_all(root);
                let mut dir =
                    LocalDir::new(root.clone(), self.inbox_options.clone()).standing_for(bucket);
                if let Err(e) = dir.watch() {
                    eprintln!(
                        "note: inbox `{}`: no file events ({e}); new files are seen by polling every second",
                        dir.folder()
                    );
                }
                tokio::spawn(async move {
                    dir.run(cursors.as_ref(), sink.as_ref(), until, |e| {
                        eprintln!("warning: inbox: {e}")
                    })
                    .await;
                })
            }
            Watched::Prefix { url } => {
                let poller = PrefixPoller::new(
                    url,
                    &self.store,
                    PollOptions {
                        interval: self.poll.unwrap_or(Duration::from_secs(30)),
                        ..Default::default()
                    },
                )?;
                tokio::spawn(async move {
                    poller
                        .run(cursors.as_ref(), sink.as_ref(), until, |e| {
                            eprintln!("warning: polling: {e}")
                        })
                        .await;
                })
            }
        };
        Ok(Running { stop, task })
    }
}

/// A watcher's name for people: `inbox folder <path>`, `polling s3://…`.
fn describe(name: &str) -> String {
    match (name.strip_prefix("local:"), name.strip_prefix("poll:")) {
        (Some(folder), _) => format!("inbox folder `{}`", Path::new(folder).display()),
        (_, Some(url)) => format!("polling `{url}`"),
        _ => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::{MemoryCursorStore, MemorySink};

    fn project(dir: &Path, yaml: &str) -> nbpipe_project::Project {
        std::fs::write(dir.join("a.ipynb"), "{}").unwrap();
        nbpipe_project::parse(dir, "nbpipe.yaml", yaml).unwrap()
    }

    fn trigger(bucket: &str, prefix: &str) -> String {
        format!(
            "name: sales\nnotebooks: [a.ipynb]\ntrigger: {{s3: {{bucket: {bucket}, prefix: {prefix}}}}}\n"
        )
    }

    /// A schedule's missed slots are caught up whatever its position in the list: a
    /// revision that reorders schedules keeps their cursors (also those named by position,
    /// as earlier servers wrote them), and a schedule seen for the first time does not
    /// backfill.
    #[tokio::test]
    async fn a_schedule_keeps_its_cursor_whatever_its_position() {
        use crate::intake::CursorStore;
        let dir = tempfile::tempdir().unwrap();
        let queue = crate::queue::Queue::open(&dir.path().join("q.sqlite").display().to_string())
            .await
            .unwrap();
        let folder = |name: &str| {
            let d = dir.path().join(name);
            std::fs::create_dir_all(&d).unwrap();
            d
        };
        let yaml = |name: &str, schedules: &[&str]| {
            let list: String = schedules
                .iter()
                .map(|s| format!("  - schedule: '{s}'\n"))
                .collect();
            format!("name: {name}\nnotebooks: [a.ipynb]\ntrigger:\n{list}")
        };
        let every = "* * * * *";
        let yearly = "0 0 1 1 *";
        let projects = Projects::new([
            // `every` was first when its cursor was written; a revision put `yearly` first.
            project(&folder("sales"), &yaml("sales", &[yearly, every])),
            // A cursor an earlier server named by position (0).
            project(&folder("churn"), &yaml("churn", &[every])),
            // No cursor: first seen, no backfill.
            project(&folder("fresh"), &yaml("fresh", &[every])),
        ]);
        let cursors = Arc::new(MemoryCursorStore::new());
        let ago = (Utc::now() - chrono::Duration::minutes(5)).to_rfc3339();
        cursors
            .set(&format!("schedule:sales:{every}"), &ago)
            .await
            .unwrap();
        cursors
            .set(&format!("schedule:churn:0:{every}"), &ago)
            .await
            .unwrap();
        let sink = Arc::new(crate::serve::QueueSink::new(
            queue.clone(),
            Vec::new(),
            projects.clone(),
            Arc::new(tokio::sync::Notify::new()),
        ));
        let (stop_tx, stop) = watch::channel(false);
        let started = Utc::now();
        let task = tokio::spawn(run_schedules(sink, cursors.clone(), projects, None, stop));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::time::Instant::now() < deadline {
            let queued = queue
                .list(&crate::queue::RunFilter::default())
                .await
                .unwrap();
            if queued.len() >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // `fresh` had no cursor: it got one, and fires from now on (at the next minute).
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(cursors
            .get(&format!("schedule:fresh:{every}"))
            .await
            .unwrap()
            .is_some());
        let _ = stop_tx.send(true);
        task.await.unwrap();
        let fired: std::collections::BTreeSet<String> = queue
            .list(&crate::queue::RunFilter::default())
            .await
            .unwrap()
            .into_iter()
            .map(|r| format!("{} {}", r.project, r.reason))
            .collect();
        let mut want = vec![
            format!("churn schedule {every}"),
            format!("sales schedule {every}"),
        ];
        // Unless a minute began while this ran (then `fresh` fired its first slot).
        if Utc::now().timestamp() / 60 != started.timestamp() / 60 {
            want.push(format!("fresh schedule {every}"));
            want.sort();
            want.retain(|w| fired.contains(w) || !w.starts_with("fresh"));
        }
        assert_eq!(fired.into_iter().collect::<Vec<_>>(), want);
    }

    async fn wait_for_events(sink: &MemorySink, n: usize) -> Vec<crate::event::ObjectEvent> {
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while got.len() < n && tokio::time::Instant::now() < deadline {
            got.extend(sink.take());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        got
    }

    #[test]
    fn each_bucket_is_one_inbox_folder_and_each_prefix_one_poller() {
        let dir = tempfile::tempdir().unwrap();
        let (_stop_tx, stop) = watch::channel(false);
        let w = Watchers::new(
            Arc::new(MemorySink::new()),
            Arc::new(MemoryCursorStore::new()),
            Some(PathBuf::from("/in")),
            Some(Duration::from_secs(5)),
            stop,
        );
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let projects = Projects::new([
            project(&a, &trigger("raw", "in/")),
            project(&b, &trigger("raw", "other/").replace("sales", "churn")),
        ]);
        let names: Vec<String> = w.wanted(&projects).into_keys().collect();
        assert_eq!(
            names,
            ["local:/in/raw", "poll:s3://raw/in/", "poll:s3://raw/other/"]
        );
    }

    #[tokio::test]
    async fn a_switch_keeps_unchanged_watchers_and_replaces_changed_ones() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = dir.path().join("inbox");
        let projects = Projects::new([project(dir.path(), &trigger("raw", "in/"))]);
        let sink = Arc::new(MemorySink::new());
        let cursors = Arc::new(MemoryCursorStore::new());
        let (_stop_tx, stop) = watch::channel(false);
        let mut w = Watchers::new(
            sink.clone(),
            cursors.clone(),
            Some(inbox.clone()),
            None,
            stop,
        )
        .with_inbox_interval(Duration::from_millis(50));
        w.reconcile(&projects).await.unwrap();
        let raw = format!("local:{}", inbox.join("raw").display());
        assert_eq!(w.running(), std::slice::from_ref(&raw));
        std::fs::write(inbox.join("raw/a.csv"), "1").unwrap();
        let got = wait_for_events(&sink, 1).await;
        assert_eq!(got.len(), 1, "{got:?}");

        // Another prefix in the same bucket: the same folder's watcher goes on (its task is
        // not replaced: the file seen before the switch is not delivered again).
        let before = w.running.get(&raw).unwrap().task.id();
        projects.replace(crate::projects::Served {
            project: project(dir.path(), &trigger("raw", "new/")),
            git: None,
        });
        w.reconcile(&projects).await.unwrap();
        assert_eq!(w.running.get(&raw).unwrap().task.id(), before);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(sink.take().is_empty());

        // Another bucket: its folder is watched, the old one is not.
        projects.replace(crate::projects::Served {
            project: project(dir.path(), &trigger("fresh", "new/")),
            git: None,
        });
        w.reconcile(&projects).await.unwrap();
        let fresh = format!("local:{}", inbox.join("fresh").display());
        assert_eq!(w.running(), [fresh]);
        std::fs::write(inbox.join("raw/b.csv"), "2").unwrap();
        std::fs::write(inbox.join("fresh/c.csv"), "3").unwrap();
        let got = wait_for_events(&sink, 1).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut keys: Vec<String> = got
            .iter()
            .map(|e| format!("{}/{}", e.bucket, e.key))
            .collect();
        keys.extend(
            sink.take()
                .iter()
                .map(|e| format!("{}/{}", e.bucket, e.key)),
        );
        assert_eq!(keys, ["fresh/c.csv"]);
    }
}
