//! Where notebooks are read from and written to.
//!
//! One seam for every location nbpipe accepts: a local path, `-` for stdin/stdout, or an object
//! store URL — `s3://bucket/key` (AWS or any S3-compatible store), `gs://bucket/key`,
//! `az://container/key` (also `azure://`, `adl://`, `abfs(s)://container@account…/key`) and
//! `http(s)://host/path` (GET to read; PUT to write where the server allows it) — all behind
//! [`Location`]. Remote stores go through [`object_store`], configured the standard way from the
//! environment ([`StoreConfig`] lists the variables: `AWS_*` including `AWS_ENDPOINT_URL` with
//! plain `http://` allowed and path-style requests, `AWS_PROFILE`, container and instance
//! credentials; `GOOGLE_*`; `AZURE_*`), and built once per bucket and configuration per process.
//!
//! Guarantees:
//! * a local write is atomic (temp file in the target directory, then rename), so a reader never
//!   sees half a notebook and a crash never truncates the last good one; a remote write replaces
//!   the object atomically (a single PUT, or a multipart upload above 32 MiB that becomes visible
//!   only when complete), and [`Location::put`] returns only once the store has acknowledged it;
//! * transient store failures (connection errors, timeouts, 5xx, 429) are retried with
//!   exponential backoff and jitter, bounded by `NBPIPE_STORE_MAX_RETRIES` (10) and
//!   `NBPIPE_STORE_RETRY_TIMEOUT_SECS` (60 s); a store that stays down is a
//!   [`StoreError::Unreachable`] naming the URL, the endpoint, the attempts and the time spent —
//!   [`StoreError::kind`] tells a caller when to fall back to a local copy;
//! * no credential appears in an error message or a `Debug` output.
//!
//! Not owned here: deciding what to do when a store is down (the caller keeps a local copy),
//! templating of paths, or notebook contents.
//!
//! The async API ([`Location::get`], [`Location::put`], [`Location::head`], [`Location::list`])
//! works for every location; the sync [`Location::read`] / [`Location::write`] only for local
//! paths and stdio.
//!
//! ```no_run
//! # async fn demo() -> Result<(), nbpipe_store::StoreError> {
//! use nbpipe_store::{Location, StoreConfig};
//!
//! // From the process environment (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, …):
//! let out = Location::parse("s3://reports/runs/42/")?.join("daily.ipynb");
//! out.put(b"{}".to_vec()).await?;
//! assert_eq!(out.get().await?, b"{}");
//!
//! // Or with an explicit configuration, leaving the environment alone:
//! let config = StoreConfig::new()
//!     .with("AWS_ENDPOINT_URL", "http://127.0.0.1:8333")
//!     .with("AWS_ACCESS_KEY_ID", "any")
//!     .with("AWS_SECRET_ACCESS_KEY", "any");
//! let input = Location::parse_with("s3://notebooks/daily.ipynb", &config)?;
//! if let Some(info) = input.head().await? {
//!     println!("{} bytes, etag {:?}", info.size, info.etag);
//! }
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod config;
mod error;
mod local;
mod remote;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use config::{
    StoreConfig, DEFAULT_MAX_RETRIES, DEFAULT_MULTIPART_THRESHOLD, DEFAULT_RETRY_TIMEOUT,
};
pub use error::{ErrorKind, StoreError};
pub use object_store;
pub use remote::{Backend, RemoteStore};

/// A place a notebook can be read from or written to.
///
/// Equality and `Debug` of a remote location go by its URL alone.
#[derive(Clone)]
pub enum Location {
    /// `-`: stdin when reading, stdout when writing.
    Stdio,
    /// A file (or, for [`Location::list`], a directory) on the local disk.
    Local(PathBuf),
    /// An object (or, for [`Location::list`] and [`Location::join`], a prefix) in an object
    /// store or on an HTTP server.
    Remote {
        /// The URL as given (for prefixes, a trailing `/` is kept).
        url: String,
        /// The store of its bucket, shared with every other location in it.
        store: Arc<RemoteStore>,
        /// The key within the store.
        path: object_store::path::Path,
    },
}

/// Metadata of a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Size in bytes.
    pub size: u64,
    /// Last modification time (a local file's mtime); `None` when the store does not say (an
    /// HTTP server without `Last-Modified`).
    pub last_modified: Option<chrono::DateTime<chrono::Utc>>,
    /// The store's entity tag, if it gives one (never for local files).
    pub etag: Option<String>,
    /// The object version, on versioned buckets.
    pub version: Option<String>,
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Stdio => f.write_str("Stdio"),
            Location::Local(p) => f.debug_tuple("Local").field(p).finish(),
            Location::Remote { url, .. } => f.debug_struct("Remote").field("url", url).finish(),
        }
    }
}

impl PartialEq for Location {
    fn eq(&self, other: &Location) -> bool {
        match (self, other) {
            (Location::Stdio, Location::Stdio) => true,
            (Location::Local(a), Location::Local(b)) => a == b,
            (Location::Remote { url: a, .. }, Location::Remote { url: b, .. }) => a == b,
            _ => false,
        }
    }
}

impl Eq for Location {}

impl Location {
    /// Parse a location as given on the command line; remote stores are configured from the
    /// process environment ([`StoreConfig::from_env`]).
    pub fn parse(s: &str) -> Result<Location, StoreError> {
        Location::parse_with(s, &StoreConfig::from_env())
    }

    /// Parse a location, configuring remote stores from `config` only.
    pub fn parse_with(s: &str, config: &StoreConfig) -> Result<Location, StoreError> {
        if s == "-" {
            return Ok(Location::Stdio);
        }
        if let Some(path) = s.strip_prefix("file://") {
            return Ok(Location::Local(PathBuf::from(path)));
        }
        if remote::scheme_of(s).is_some() {
            let opened = remote::open(s, config)?;
            return Ok(Location::Remote {
                url: s.to_string(),
                store: opened.store,
                path: opened.path,
            });
        }
        Ok(Location::Local(PathBuf::from(s)))
    }

    /// The local path, if this is one.
    pub fn local_path(&self) -> Option<&Path> {
        match self {
            Location::Local(p) => Some(p),
            _ => None,
        }
    }

    /// Whether this is an object store or HTTP location.
    pub fn is_remote(&self) -> bool {
        matches!(self, Location::Remote { .. })
    }

    /// The store behind a remote location.
    pub fn remote_store(&self) -> Option<&Arc<RemoteStore>> {
        match self {
            Location::Remote { store, .. } => Some(store),
            _ => None,
        }
    }

    /// The last component (`daily.ipynb` for `s3://b/runs/daily.ipynb`), e.g. to name a local
    /// fallback copy.
    pub fn file_name(&self) -> Option<String> {
        match self {
            Location::Stdio => None,
            Location::Local(p) => p.file_name().map(|n| n.to_string_lossy().into_owned()),
            Location::Remote { path, .. } => path.filename().map(str::to_string),
        }
    }

    /// Whether writes can happen many times during a run (stdout gets the notebook once).
    pub fn supports_incremental_writes(&self) -> bool {
        !matches!(self, Location::Stdio)
    }

    /// The location `name` inside this directory or prefix: `s3://b/runs/1/` joined with
    /// `a.ipynb` is `s3://b/runs/1/a.ipynb`. `name` may contain `/`. Stdio stays stdio.
    pub fn join(&self, name: &str) -> Location {
        match self {
            Location::Stdio => Location::Stdio,
            Location::Local(p) => Location::Local(p.join(name)),
            Location::Remote { url, store, path } => {
                let mut child = path.clone();
                for part in name.split('/').filter(|p| !p.is_empty()) {
                    child = child.clone().join(part);
                }
                Location::Remote {
                    url: format!("{}/{}", url.trim_end_matches('/'), name),
                    store: Arc::clone(store),
                    path: child,
                }
            }
        }
    }

    /// Read the whole object (stdin, a file, or a remote object).
    pub async fn get(&self) -> Result<Vec<u8>, StoreError> {
        match self {
            Location::Stdio | Location::Local(_) => {
                let me = self.clone();
                blocking(move || me.read(), || self.read_error()).await
            }
            Location::Remote { url, store, path } => store.get(url, path).await,
        }
    }

    /// Replace the object with `bytes`: atomically for local files and object stores; stdout
    /// gets the bytes written once. Returns only when the bytes are stored.
    pub async fn put(&self, bytes: Vec<u8>) -> Result<(), StoreError> {
        match self {
            Location::Stdio | Location::Local(_) => {
                let me = self.clone();
                blocking(move || me.write(&bytes), || self.write_error()).await
            }
            Location::Remote { url, store, path } => store.put(url, path, bytes).await,
        }
    }

    /// Replace the object with what `render` writes, never holding all of it in memory: a
    /// local file gets a temp file renamed into place, stdout the bytes as they come, an
    /// object store a temporary file uploaded one part at a time. `render` runs on the
    /// calling task (in `block_in_place` on a multi-threaded runtime); an error it returns
    /// leaves the old object in place.
    pub async fn put_streamed<F>(&self, render: F) -> Result<(), StoreError>
    where
        F: FnOnce(&mut dyn Write) -> std::io::Result<()> + Send,
    {
        let write_error = |source| StoreError::Write {
            path: self.to_string(),
            source,
        };
        match self {
            Location::Stdio => blocking_here(|| {
                let mut out = std::io::stdout().lock();
                render(&mut out).and_then(|_| out.flush())
            })
            .map_err(write_error),
            Location::Local(p) => {
                blocking_here(|| local::write_atomic_with(p, render)).map_err(write_error)
            }
            Location::Remote { url, store, path } => {
                let (file, len) = blocking_here(|| {
                    let mut file = tempfile::tempfile()?;
                    let mut w = std::io::BufWriter::new(&mut file);
                    render(&mut w)?;
                    w.flush()?;
                    drop(w);
                    let len = file.metadata()?.len();
                    Ok((file, len))
                })
                .map_err(write_error)?;
                store.put_file(url, path, file, len).await
            }
        }
    }

    /// Size, modification time, etag and version of the object; `None` if it does not exist
    /// (and for stdio, which has no metadata).
    pub async fn head(&self) -> Result<Option<ObjectInfo>, StoreError> {
        match self {
            Location::Stdio => Ok(None),
            Location::Local(p) => {
                let path = p.clone();
                blocking(
                    move || {
                        local::head(&path).map_err(|source| StoreError::Read {
                            path: path.display().to_string(),
                            source,
                        })
                    },
                    || self.read_error(),
                )
                .await
            }
            Location::Remote { url, store, path } => store.head(url, path).await,
        }
    }

    /// The entries directly inside this directory or prefix, sorted (sub-prefixes end in `/`).
    /// A directory or prefix that does not exist has none.
    pub async fn list(&self) -> Result<Vec<Location>, StoreError> {
        match self {
            Location::Stdio => Err(StoreError::InvalidUrl {
                url: "-".into(),
                reason: "stdin/stdout cannot be listed".into(),
            }),
            Location::Local(p) => {
                let path = p.clone();
                let entries = blocking(
                    move || {
                        local::list(&path).map_err(|source| StoreError::Read {
                            path: path.display().to_string(),
                            source,
                        })
                    },
                    || self.read_error(),
                )
                .await?;
                Ok(entries.into_iter().map(Location::Local).collect())
            }
            Location::Remote { url, store, path } => Ok(store
                .list(url, path)
                .await?
                .iter()
                .map(|name| self.join(name))
                .collect()),
        }
    }

    /// Read the whole object, blocking (stdin and local files only).
    pub fn read(&self) -> Result<Vec<u8>, StoreError> {
        match self {
            Location::Stdio => {
                let mut buf = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut buf)
                    .map_err(|source| StoreError::Read {
                        path: "-".into(),
                        source,
                    })?;
                Ok(buf)
            }
            Location::Local(p) => std::fs::read(p).map_err(|source| StoreError::Read {
                path: p.display().to_string(),
                source,
            }),
            Location::Remote { url, .. } => Err(StoreError::RemoteNeedsAsync { url: url.clone() }),
        }
    }

    /// Replace the object with `bytes`, blocking (atomically for local files; stdout and local
    /// files only).
    pub fn write(&self, bytes: &[u8]) -> Result<(), StoreError> {
        match self {
            Location::Stdio => {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes)
                    .and_then(|_| out.flush())
                    .map_err(|source| StoreError::Write {
                        path: "-".into(),
                        source,
                    })
            }
            Location::Local(p) => {
                local::write_atomic(p, bytes).map_err(|source| StoreError::Write {
                    path: p.display().to_string(),
                    source,
                })
            }
            Location::Remote { url, .. } => Err(StoreError::RemoteNeedsAsync { url: url.clone() }),
        }
    }

    fn read_error(&self) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
        move |source| StoreError::Read {
            path: self.to_string(),
            source,
        }
    }

    fn write_error(&self) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
        move |source| StoreError::Write {
            path: self.to_string(),
            source,
        }
    }
}

/// Run blocking file or stdio work on the blocking pool; a panicked task becomes an I/O error.
/// Run blocking work on this thread, telling a multi-threaded runtime to move its other
/// tasks elsewhere meanwhile (for work that borrows from the caller, unlike [`blocking`]).
fn blocking_here<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

async fn blocking<T: Send + 'static, F>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
    on_join_error: impl FnOnce() -> F,
) -> Result<T, StoreError>
where
    F: FnOnce(std::io::Error) -> StoreError,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) => Err(on_join_error()(std::io::Error::other(e.to_string()))),
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Stdio => f.write_str("-"),
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::Remote { url, .. } => f.write_str(url),
        }
    }
}

#[cfg(test)]
mod tests;
