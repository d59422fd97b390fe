//! The per-folder marker `.nbpipe/env.json` that points at a shared environment.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::EnvError;

/// Folder (inside a notebook folder) holding nbpipe's per-folder state.
pub const MARKER_DIR: &str = ".nbpipe";
/// Name of the marker file inside [`MARKER_DIR`].
pub const MARKER_FILE: &str = "env.json";

/// Contents of `DIR/.nbpipe/env.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// The environment's hash (see [`crate::compute_hash`]) when it was made.
    pub hash: String,
    /// The environment's root (`$NBPIPE_HOME/envs/<hash>`).
    pub env_path: PathBuf,
    /// The environment's interpreter.
    pub python: PathBuf,
    /// Version string of the interpreter the environment was made from.
    pub python_version: String,
    /// The requirements file the environment follows: relative to the folder
    /// when inside it, else absolute. It need not exist (then: only ipykernel).
    pub requirements: PathBuf,
    /// When the marker was written (RFC 3339, UTC).
    pub created: String,
    /// [`crate::ENV_FORMAT_VERSION`] of the environment.
    pub format: u32,
}

impl Marker {
    /// Path of the marker file for `folder`.
    pub fn path_for(folder: &Path) -> PathBuf {
        folder.join(MARKER_DIR).join(MARKER_FILE)
    }

    /// Read `folder`'s marker; `Ok(None)` when there is none.
    pub fn read(folder: &Path) -> Result<Option<Marker>, EnvError> {
        let path = Marker::path_for(folder);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(EnvError::io("reading", path, e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| EnvError::BadMarker {
                path,
                reason: e.to_string(),
            })
    }

    /// Write this marker into `folder` (atomically: temp file + rename).
    pub fn write(&self, folder: &Path) -> Result<(), EnvError> {
        let dir = folder.join(MARKER_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| EnvError::io("creating directory", &dir, e))?;
        let path = dir.join(MARKER_FILE);
        let tmp = dir.join(format!(".{MARKER_FILE}.{}.tmp", std::process::id()));
        let mut text = serde_json::to_string_pretty(self).expect("marker serializes");
        text.push('\n');
        std::fs::write(&tmp, text).map_err(|e| EnvError::io("writing", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            EnvError::io("writing", &path, e)
        })
    }

    /// The requirements file as an absolute path, given the marker's folder.
    pub fn requirements_path(&self, folder: &Path) -> PathBuf {
        folder.join(&self.requirements)
    }
}

/// `requirements` relative to `folder` when inside it.
pub(crate) fn relative_to(folder: &Path, requirements: &Path) -> PathBuf {
    requirements
        .strip_prefix(folder)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| requirements.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(folder: &Path) -> Marker {
        Marker {
            hash: "0123456789abcdef".into(),
            env_path: PathBuf::from("/cache/envs/0123456789abcdef"),
            python: PathBuf::from("/cache/envs/0123456789abcdef/bin/python"),
            python_version: "cpython-3.11.7-x86_64".into(),
            requirements: relative_to(folder, &folder.join("requirements.txt")),
            created: "2024-01-01T00:00:00Z".into(),
            format: 1,
        }
    }

    #[test]
    fn marker_round_trips() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(Marker::read(tmp.path()).unwrap(), None);
        let marker = sample(tmp.path());
        assert_eq!(marker.requirements, PathBuf::from("requirements.txt"));
        marker.write(tmp.path()).unwrap();
        assert_eq!(Marker::read(tmp.path()).unwrap(), Some(marker.clone()));
        assert_eq!(
            marker.requirements_path(tmp.path()),
            tmp.path().join("requirements.txt")
        );
        let text = std::fs::read_to_string(Marker::path_for(tmp.path())).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        for key in ["hash", "env_path", "python", "requirements", "created"] {
            assert!(value.get(key).is_some(), "{key} missing in {text}");
        }
        // No temp files left behind.
        let names: Vec<_> = std::fs::read_dir(tmp.path().join(MARKER_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(MARKER_FILE)]);
    }

    #[test]
    fn bad_marker_is_a_typed_error() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join(MARKER_DIR)).unwrap();
        std::fs::write(Marker::path_for(tmp.path()), "{\"hash\": 3}").unwrap();
        assert!(matches!(
            Marker::read(tmp.path()),
            Err(EnvError::BadMarker { .. })
        ));
    }

    #[test]
    fn requirements_outside_folder_stay_absolute() {
        let p = relative_to(Path::new("/a/b"), Path::new("/x/req.txt"));
        assert_eq!(p, PathBuf::from("/x/req.txt"));
        assert_eq!(Path::new("/a/b").join(&p), PathBuf::from("/x/req.txt"));
    }
}
