//! Where notebooks are read from and written to.
//!
//! One seam for every location nbpipe accepts: a local path, or `-` for stdin/stdout today;
//! object stores (`s3://`, `gs://`, `az://`, `http(s)://`) plug in behind the same
//! [`Location`] later. Local writes are atomic: a temp file in the target directory, then a
//! rename, so a reader never sees half a notebook and a crash never truncates the last good one.
//!
//! ```no_run
//! let loc = nbpipe_store::Location::parse("out.ipynb").unwrap();
//! loc.write(b"{}").unwrap();
//! ```
#![deny(missing_docs)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Errors reading or writing a location.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The location names a scheme this build cannot reach yet.
    #[error("`{0}`: storage scheme `{1}` is not supported yet (local paths and `-` are)")]
    UnsupportedScheme(String, String),
    /// Reading failed.
    #[error("could not read `{path}`: {source}")]
    Read {
        /// The location as given.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Writing failed.
    #[error("could not write `{path}`: {source}")]
    Write {
        /// The location as given.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A place a notebook can be read from or written to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// `-`: stdin when reading, stdout when writing.
    Stdio,
    /// A file on the local disk.
    Local(PathBuf),
}

impl Location {
    /// Parse a location as given on the command line.
    pub fn parse(s: &str) -> Result<Location, StoreError> {
        if s == "-" {
            return Ok(Location::Stdio);
        }
        if let Some(path) = s.strip_prefix("file://") {
            return Ok(Location::Local(PathBuf::from(path)));
        }
        if let Some((scheme, _)) = s.split_once("://") {
            if !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
            {
                return Err(StoreError::UnsupportedScheme(
                    s.to_string(),
                    scheme.to_string(),
                ));
            }
        }
        Ok(Location::Local(PathBuf::from(s)))
    }

    /// The local path, if this is one.
    pub fn local_path(&self) -> Option<&Path> {
        match self {
            Location::Local(p) => Some(p),
            Location::Stdio => None,
        }
    }

    /// Read the whole object.
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
        }
    }

    /// Replace the object with `bytes` (atomically for local files).
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
            Location::Local(p) => write_atomic(p, bytes).map_err(|source| StoreError::Write {
                path: p.display().to_string(),
                source,
            }),
        }
    }

    /// Whether writes can happen many times during a run (stdout gets the notebook once).
    pub fn supports_incremental_writes(&self) -> bool {
        matches!(self, Location::Local(_))
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Stdio => f.write_str("-"),
            Location::Local(p) => write!(f, "{}", p.display()),
        }
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".nbpipe-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_data()?;
    // Keep the permissions an existing file had, like an in-place write would.
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(tmp.path(), meta.permissions());
    } else {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644));
    }
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dash_is_stdio_and_paths_are_local() {
        assert_eq!(Location::parse("-").unwrap(), Location::Stdio);
        assert_eq!(
            Location::parse("a/b.ipynb").unwrap(),
            Location::Local(PathBuf::from("a/b.ipynb"))
        );
        assert_eq!(
            Location::parse("file:///x/y.ipynb").unwrap(),
            Location::Local(PathBuf::from("/x/y.ipynb"))
        );
    }

    #[test]
    fn remote_schemes_are_a_clear_error_for_now() {
        let err = Location::parse("s3://bucket/key.ipynb").unwrap_err();
        assert!(err.to_string().contains("`s3`"), "{err}");
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.ipynb");
        let loc = Location::Local(p.clone());
        loc.write(b"one").unwrap();
        loc.write(b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn write_into_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let loc = Location::Local(dir.path().join("nope/out.ipynb"));
        let err = loc.write(b"x").unwrap_err();
        assert!(err.to_string().contains("could not write"), "{err}");
    }
}
