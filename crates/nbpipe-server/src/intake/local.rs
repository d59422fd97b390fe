//! A watched local folder: the embedded default trigger (drop a file in, a run starts).
//!
//! Polling is the source of truth: it works the same on network mounts, containers' bind
//! mounts and every OS, and a missed kernel event cannot lose a file. Where the OS reports
//! file events ([`LocalDir::watch`]: inotify on Linux), they only make it faster: an event
//! wakes the poll at once, and a file its writer closed (or renamed into place) counts as
//! complete without waiting for a second poll — a dropped file starts its run in a fraction of a
//! second instead of one to two poll intervals. Every [`LocalDirOptions::interval`]
//! the folder is walked **recursively** (keys are paths relative to it, `/`-separated, so
//! `incoming/2024/a.csv` routes like an S3 key); symbolic links are not followed (a link could
//! point outside the folder), and files or folders whose name starts with `.` and temp files
//! (`*.part`, `*.partial`, `*.tmp`, `*.crdownload`, `*~`) are ignored.
//!
//! A file is emitted once it is new or changed **and** either its writer closed it or moved it
//! into place (when watching) or its size and mtime were the same on two consecutive polls, so
//! a file still being written is not taken half-written (writers that write to a temp name and
//! rename are picked up once the rename is seen).
//!
//! Its identity (the event's `etag`) is a SHA-256 of the content for files up to
//! [`LocalDirOptions::hash_limit`] (8 MiB by default; touching a file without changing it does
//! not start a run) and `m-<size>-<mtime ns>` above that.
//!
//! Durable: the seen-set (key → etag, size, mtime) is saved in the [`CursorStore`] under
//! `local:<folder>` after the events were accepted by the [`EventSink`], so after a restart
//! already-seen files are not emitted again, and files deleted meanwhile are forgotten (a file
//! created again under the same name is new). The set holds one entry per file present.
//!
//! Must not: move, delete or modify anything in the folder.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{CursorStore, EventSink, Existing, IntakeError};
use crate::event::{ObjectEvent, Source};

/// Name suffixes of files that are still being written by common tools.
const TEMP_SUFFIXES: &[&str] = &[".part", ".partial", ".tmp", ".crdownload", "~"];

/// How to watch a folder.
#[derive(Debug, Clone)]
pub struct LocalDirOptions {
    /// Time between polls (default 1 s).
    pub interval: Duration,
    /// Files up to this size are identified by a hash of their content (default 8 MiB).
    pub hash_limit: u64,
    /// What to do with files present before the first poll ever (no saved cursor).
    pub existing: Existing,
}

impl Default for LocalDirOptions {
    fn default() -> LocalDirOptions {
        LocalDirOptions {
            interval: Duration::from_secs(1),
            hash_limit: 8 << 20,
            existing: Existing::Emit,
        }
    }
}

/// What is remembered of a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Seen {
    etag: String,
    size: u64,
    mtime_ns: i64,
}

/// The saved cursor.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    v: u32,
    files: BTreeMap<String, Seen>,
}

/// One regular file found by a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    size: u64,
    mtime_ns: i64,
}

/// A polled local folder.
#[derive(Debug)]
pub struct LocalDir {
    root: PathBuf,
    /// `root` as given, without a trailing `/`: names the cursor.
    folder: String,
    /// What events carry as their bucket: `folder`, or the inbox bucket it stands for.
    bucket: String,
    options: LocalDirOptions,
    /// Files seen changed on the last poll, waiting to be seen unchanged once more.
    pending: HashMap<String, Stat>,
    /// Loaded from the cursor store on the first poll.
    state: Option<State>,
    /// File events from the OS, when [`LocalDir::watch`] succeeded.
    watch: Option<Watch>,
}

/// What the OS file watcher tells the poll loop.
struct Watch {
    /// Keeps the watcher alive (dropping it stops the events).
    _watcher: notify::RecommendedWatcher,
    /// Keys whose writer closed them or that were renamed into place since the last poll.
    completed: Arc<Mutex<HashSet<String>>>,
    /// Signalled on every event under the folder.
    wake: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Watch")
    }
}

/// After an event, wait this long for more before polling (a burst of events, one poll).
const EVENT_DEBOUNCE: Duration = Duration::from_millis(30);

impl LocalDir {
    /// Watch `root`. Events carry `root` (as given, without a trailing `/`) as their bucket,
    /// unless [`LocalDir::standing_for`] names one.
    pub fn new(root: impl Into<PathBuf>, options: LocalDirOptions) -> LocalDir {
        let root = root.into();
        let mut folder = root.display().to_string();
        while folder.len() > 1 && folder.ends_with('/') {
            folder.pop();
        }
        LocalDir {
            root,
            bucket: folder.clone(),
            folder,
            options,
            pending: HashMap::new(),
            state: None,
            watch: None,
        }
    }

    /// Also listen to the OS's file events for the folder (recursively), so a new file is seen
    /// at once instead of at the next poll. Best effort: on an error (no such folder yet, out of
    /// inotify watches, a file system without events) polling alone goes on, and the error is
    /// returned for the caller to report.
    pub fn watch(&mut self) -> Result<(), notify::Error> {
        use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
        use notify::{EventKind, RecursiveMode, Watcher};

        let completed = Arc::new(Mutex::new(HashSet::new()));
        let wake = Arc::new(tokio::sync::Notify::new());
        let root = std::fs::canonicalize(&self.root).unwrap_or_else(|_| self.root.clone());
        let (done, woken, base) = (completed.clone(), wake.clone(), root.clone());
        let mut watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                let Ok(event) = res else {
                    woken.notify_one(); // overflow or error: let a poll find out what changed
                    return;
                };
                let complete = matches!(
                    event.kind,
                    EventKind::Access(AccessKind::Close(AccessMode::Write))
                        | EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both))
                );
                if complete {
                    if let Ok(mut set) = done.lock() {
                        for path in &event.paths {
                            if let Some(key) = key_of(&base, path) {
                                set.insert(key);
                            }
                        }
                    }
                }
                woken.notify_one();
            })?;
        watcher.watch(&root, RecursiveMode::Recursive)?;
        self.watch = Some(Watch {
            _watcher: watcher,
            completed,
            wake,
        });
        Ok(())
    }

    /// Make the folder stand for `bucket` (the inbox's `INBOX/<bucket>/`): its files' events
    /// carry `bucket` and their keys, as if they had landed in that bucket, and the file's
    /// path in [`ObjectEvent::path`].
    pub fn standing_for(mut self, bucket: &str) -> LocalDir {
        self.bucket = bucket.to_string();
        self
    }

    /// The bucket its events carry (routes for this folder use it).
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The folder it watches, as given.
    pub fn folder(&self) -> &str {
        &self.folder
    }

    /// The name of its cursor: `local:<folder>`.
    pub fn cursor_name(&self) -> String {
        format!("local:{}", self.folder)
    }

    /// Time between polls.
    pub fn interval(&self) -> Duration {
        self.options.interval
    }

    /// Scan once: submit the files that are new or changed and stable, then save the cursor.
    /// Returns how many events were submitted. On a sink error nothing is recorded and the
    /// same files are submitted on the next poll.
    pub async fn poll_once(
        &mut self,
        cursor: &dyn CursorStore,
        sink: &dyn EventSink,
    ) -> Result<usize, IntakeError> {
        let name = self.cursor_name();
        let first_ever = super::load_state(&mut self.state, cursor, &name).await?;

        let root = self.root.clone();
        let files =
            blocking(move || scan(&root))
                .await
                .map_err(|source| IntakeError::LocalDir {
                    path: self.root.display().to_string(),
                    source,
                })?;

        // Files finished by their writer since the last poll (when watching).
        let completed: HashSet<String> = match &self.watch {
            Some(w) => w
                .completed
                .lock()
                .map(|mut set| std::mem::take(&mut *set))
                .unwrap_or_default(),
            None => HashSet::new(),
        };
        let state = self.state.as_mut().expect("loaded above");
        let skip_existing = first_ever && self.options.existing == Existing::Skip;
        let mut pending = HashMap::new();
        let mut stable = Vec::new();
        for (key, stat) in &files {
            let known = state
                .files
                .get(key)
                .is_some_and(|s| s.size == stat.size && s.mtime_ns == stat.mtime_ns);
            if known {
                continue;
            }
            if skip_existing || self.pending.get(key) == Some(stat) || completed.contains(key) {
                stable.push((key.clone(), *stat));
            } else {
                pending.insert(key.clone(), *stat);
            }
        }

        // Identify the stable files (hashing reads them: off the runtime).
        let root = self.root.clone();
        let limit = self.options.hash_limit;
        let identified = blocking(move || {
            let mut out = Vec::new();
            for (key, stat) in stable {
                out.push((key.clone(), stat, identify(&root.join(&key), stat, limit)?));
            }
            Ok(out)
        })
        .await
        .map_err(|source| IntakeError::LocalDir {
            path: self.root.display().to_string(),
            source,
        })?;

        let mut events = Vec::new();
        let mut updates = Vec::new();
        let root = std::path::absolute(&self.root).unwrap_or_else(|_| self.root.clone());
        for (key, stat, etag) in identified {
            let Some(etag) = etag else {
                // Changed (or vanished) while being hashed: wait for it to settle.
                pending.insert(key, stat);
                continue;
            };
            let changed = state.files.get(&key).is_none_or(|s| s.etag != etag);
            if changed && !skip_existing {
                let path = root.join(&key).display().to_string();
                events.push(event(&self.bucket, &key, path, stat, &etag));
            }
            updates.push((key, stat, etag));
        }
        events.sort_by(|a, b| {
            (a.event_time.as_deref(), &a.key).cmp(&(b.event_time.as_deref(), &b.key))
        });

        let removed: Vec<String> = state
            .files
            .keys()
            .filter(|k| !files.contains_key(*k))
            .cloned()
            .collect();
        if updates.is_empty() && removed.is_empty() {
            self.pending = pending;
            return Ok(0);
        }

        let n = events.len();
        if !events.is_empty() {
            if let Err(e) = sink.submit(events).await {
                // Not recorded: these files are stable candidates again on the next poll.
                for (key, stat, _) in updates {
                    pending.insert(key, stat);
                }
                self.pending = pending;
                return Err(e.into());
            }
        }
        for key in removed {
            state.files.remove(&key);
        }
        for (key, stat, etag) in updates {
            state.files.insert(
                key,
                Seen {
                    etag,
                    size: stat.size,
                    mtime_ns: stat.mtime_ns,
                },
            );
        }
        self.pending = pending;
        state.v = 1;
        super::save_state(cursor, &name, &*state).await?;
        Ok(n)
    }

    /// Poll every interval (and, when watching, soon after every file event) until `shutdown`
    /// resolves; a failed poll is passed to `on_error` and retried with back-off.
    pub async fn run(
        mut self,
        cursor: &dyn CursorStore,
        sink: &dyn EventSink,
        shutdown: impl std::future::Future<Output = ()>,
        on_error: impl Fn(&IntakeError),
    ) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut failures = 0;
        loop {
            let polled = self.poll_once(cursor, sink).await;
            let wait = super::next_poll_in(polled, self.options.interval, &mut failures, &on_error);
            let woken = async {
                match &self.watch {
                    Some(w) => {
                        w.wake.notified().await;
                        tokio::time::sleep(EVENT_DEBOUNCE).await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                stop = super::sleep_or_shutdown(wait, &mut shutdown) => if stop { return },
                _ = woken => {}
            }
        }
    }
}

/// The key of `path` under `root` (`/`-separated), unless it is outside it or ignored.
fn key_of(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    let parts = parts?;
    if parts.is_empty() || parts.iter().any(|p| ignored(p)) {
        return None;
    }
    Some(parts.join("/"))
}

/// The event for a file.
fn event(bucket: &str, key: &str, path: String, stat: Stat, etag: &str) -> ObjectEvent {
    let time = chrono::DateTime::from_timestamp_nanos(stat.mtime_ns);
    ObjectEvent {
        bucket: bucket.to_string(),
        key: key.to_string(),
        etag: Some(etag.to_string()),
        version_id: None,
        size: Some(stat.size),
        sequencer: None,
        event_time: Some(time.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)),
        event_name: "ObjectCreated:Local".into(),
        source: Source::LocalDir,
        region: None,
        report_id: None,
        path: Some(path),
    }
}

/// Whether a file or folder name is skipped.
fn ignored(name: &str) -> bool {
    name.starts_with('.') || TEMP_SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// Every regular file under `root` (recursively), by `/`-separated relative key.
fn scan(root: &Path) -> std::io::Result<BTreeMap<String, Stat>> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![(root.to_path_buf(), String::new())];
    let mut at_root = true;
    while let Some((dir, prefix)) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            // A sub-folder removed while walking; the root itself must exist.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !at_root => continue,
            Err(e) => return Err(e),
        };
        at_root = false;
        for entry in entries {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue; // not UTF-8: cannot be a key
            };
            if ignored(&name) {
                continue;
            }
            let file_type = match entry.file_type() {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let key = format!("{prefix}{name}");
            if file_type.is_dir() {
                dirs.push((entry.path(), format!("{key}/")));
            } else if file_type.is_file() {
                match entry.metadata() {
                    Ok(meta) => {
                        out.insert(key, stat_of(&meta));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(out)
}

fn stat_of(meta: &std::fs::Metadata) -> Stat {
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    Stat {
        size: meta.len(),
        mtime_ns,
    }
}

/// The identity of a file whose stat is `stat`; `None` if it changed or vanished meanwhile.
fn identify(path: &Path, stat: Stat, hash_limit: u64) -> std::io::Result<Option<String>> {
    let etag = if stat.size <= hash_limit {
        let mut file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let digest = hasher.finalize();
        digest[..16].iter().map(|b| format!("{b:02x}")).collect()
    } else {
        format!("m-{}-{}", stat.size, stat.mtime_ns)
    };
    match std::fs::metadata(path) {
        Ok(meta) if stat_of(&meta) == stat => Ok(Some(etag)),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_and_hidden_names_are_ignored() {
        for name in [
            ".x",
            ".git",
            "a.csv.part",
            "a.tmp",
            "a~",
            "a.crdownload",
            "a.partial",
        ] {
            assert!(ignored(name), "{name}");
        }
        for name in ["a.csv", "part", "a.tmpl", "report.ipynb"] {
            assert!(!ignored(name), "{name}");
        }
    }

    #[test]
    fn identity_is_content_for_small_files_and_stat_for_large() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a");
        std::fs::write(&p, b"hello").unwrap();
        let stat = stat_of(&std::fs::metadata(&p).unwrap());
        let small = identify(&p, stat, 1024).unwrap().unwrap();
        assert_eq!(small.len(), 32);
        let large = identify(&p, stat, 2).unwrap().unwrap();
        assert_eq!(large, format!("m-5-{}", stat.mtime_ns));
        // A stat that no longer matches: not identified.
        let stale = Stat { size: 4, ..stat };
        assert_eq!(identify(&p, stale, 1024).unwrap(), None);
        assert_eq!(
            identify(&dir.path().join("gone"), stat, 1024).unwrap(),
            None
        );
    }
}
