//! The two seams between triggers and the rest of the server: where a trigger keeps its
//! progress ([`CursorStore`]) and where it hands events ([`EventSink`]).
//!
//! The queue implements both against its database (one transaction can then queue the runs
//! and move the cursor). This module also ships small implementations: [`MemoryCursorStore`]
//! and [`MemorySink`] for tests and one-shot use, and [`FileCursorStore`] (one atomically
//! replaced file per cursor) for the embedded mode without a database.
//!
//! Must not: interpret cursor values (they belong to the trigger that wrote them).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use crate::event::ObjectEvent;

/// A cursor store failed (I/O, database).
#[derive(Debug, thiserror::Error)]
#[error("cursor store: {message}")]
pub struct CursorError {
    message: String,
}

impl CursorError {
    /// An error with this message.
    pub fn new(message: impl std::fmt::Display) -> CursorError {
        CursorError {
            message: message.to_string(),
        }
    }
}

/// The sink refused events (e.g. the queue's database is unavailable).
#[derive(Debug, thiserror::Error)]
#[error("could not queue events: {message}")]
pub struct SinkError {
    message: String,
}

impl SinkError {
    /// An error with this message.
    pub fn new(message: impl std::fmt::Display) -> SinkError {
        SinkError {
            message: message.to_string(),
        }
    }
}

/// Durable named strings: a trigger's progress survives a restart.
///
/// `set` returns only once the value is durable. Names are chosen by the triggers
/// (`local:<folder>`, `poll:<url>`); values are opaque to the store.
#[async_trait]
pub trait CursorStore: Send + Sync {
    /// The value last set under `name`, if any.
    async fn get(&self, name: &str) -> Result<Option<String>, CursorError>;
    /// Replace the value under `name`.
    async fn set(&self, name: &str, value: &str) -> Result<(), CursorError>;
}

/// Where triggers deliver events: the queue.
///
/// `submit` returns `Ok` only once every event is durably queued (turned into run requests
/// for the projects it matches, or recorded as matching none). Until then the trigger keeps
/// its progress where it was, so a failure or a crash means the same events come again; the
/// sink deduplicates them by [`ObjectEvent::dedup_key`].
#[async_trait]
pub trait EventSink: Send + Sync {
    /// Queue `events` (in order).
    async fn submit(&self, events: Vec<ObjectEvent>) -> Result<(), SinkError>;
}

/// Cursors in memory (lost on exit): for tests and one-shot runs.
#[derive(Debug, Default)]
pub struct MemoryCursorStore {
    values: Mutex<HashMap<String, String>>,
}

impl MemoryCursorStore {
    /// An empty store.
    pub fn new() -> MemoryCursorStore {
        MemoryCursorStore::default()
    }
}

#[async_trait]
impl CursorStore for MemoryCursorStore {
    async fn get(&self, name: &str) -> Result<Option<String>, CursorError> {
        Ok(lock(&self.values).get(name).cloned())
    }

    async fn set(&self, name: &str, value: &str) -> Result<(), CursorError> {
        lock(&self.values).insert(name.to_string(), value.to_string());
        Ok(())
    }
}

/// Cursors as files in a directory, one per name (the file name is a hash of the cursor
/// name), each replaced atomically (temp file, then rename) so a crash leaves the old or the
/// new value, never half of one.
#[derive(Debug, Clone)]
pub struct FileCursorStore {
    dir: PathBuf,
}

impl FileCursorStore {
    /// Cursors under `dir` (created on the first `set`).
    pub fn new(dir: impl Into<PathBuf>) -> FileCursorStore {
        FileCursorStore { dir: dir.into() }
    }

    fn path(&self, name: &str) -> PathBuf {
        let digest = Sha256::digest(name.as_bytes());
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{hex}.cursor"))
    }
}

#[async_trait]
impl CursorStore for FileCursorStore {
    async fn get(&self, name: &str) -> Result<Option<String>, CursorError> {
        let path = self.path(name);
        match tokio::fs::read_to_string(&path).await {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CursorError::new(format!("{}: {e}", path.display()))),
        }
    }

    async fn set(&self, name: &str, value: &str) -> Result<(), CursorError> {
        let path = self.path(name);
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| CursorError::new(format!("{}: {e}", self.dir.display())))?;
        nbpipe_store::Location::Local(path)
            .put(value.as_bytes().to_vec())
            .await
            .map_err(CursorError::new)
    }
}

/// A sink that keeps events in memory: for tests and for callers that drain it themselves.
/// [`MemorySink::fail_next`] makes the next submissions fail, to exercise the
/// "not recorded until queued" path.
#[derive(Debug, Default)]
pub struct MemorySink {
    events: Mutex<Vec<ObjectEvent>>,
    failures: Mutex<u32>,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> MemorySink {
        MemorySink::default()
    }

    /// Take the events received so far.
    pub fn take(&self) -> Vec<ObjectEvent> {
        std::mem::take(&mut *lock(&self.events))
    }

    /// Make the next `n` calls to `submit` fail.
    pub fn fail_next(&self, n: u32) {
        *lock(&self.failures) = n;
    }
}

#[async_trait]
impl EventSink for MemorySink {
    async fn submit(&self, events: Vec<ObjectEvent>) -> Result<(), SinkError> {
        {
            let mut failures = lock(&self.failures);
            if *failures > 0 {
                *failures -= 1;
                return Err(SinkError::new("refused (MemorySink::fail_next)"));
            }
        }
        lock(&self.events).extend(events);
        Ok(())
    }
}

/// Lock a mutex, recovering from poisoning (the data is plain values).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_cursor_store_survives_a_new_instance() {
        let dir = tempfile::tempdir().unwrap();
        let a = FileCursorStore::new(dir.path().join("cursors"));
        assert_eq!(a.get("poll:s3://b/p/").await.unwrap(), None);
        a.set("poll:s3://b/p/", "one").await.unwrap();
        a.set("poll:s3://b/p/", "two").await.unwrap();
        a.set("local:/x", "other").await.unwrap();
        let b = FileCursorStore::new(dir.path().join("cursors"));
        assert_eq!(
            b.get("poll:s3://b/p/").await.unwrap().as_deref(),
            Some("two")
        );
        assert_eq!(b.get("local:/x").await.unwrap().as_deref(), Some("other"));
    }

    #[tokio::test]
    async fn memory_sink_fails_when_told() {
        let sink = MemorySink::new();
        sink.fail_next(1);
        assert!(sink.submit(vec![]).await.is_err());
        assert!(sink.submit(vec![]).await.is_ok());
    }
}
