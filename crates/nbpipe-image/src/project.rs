//! The project's own layers: the nbpipe binary (with a smoke-check notebook) at
//! `/opt/nbpipe/bin/nbpipe`, and the project's files at `/project` — the files git tracks
//! (as they are in the work tree), else every file but `.nbpipe/`, `runs/` and `.git/`;
//! never the files `secrets:` reads values from (`{file: PATH}`).
//! Also the project's git facts that label the image.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::error::ImageError;
use crate::layer::{self, Entries, Layer, Source};
use crate::store::Store;

/// Where the project lives in the image.
pub const PROJECT_ROOT: &str = "/project";
/// Where the binary lives in the image.
pub const BINARY: &str = "/opt/nbpipe/bin/nbpipe";
/// A notebook the smoke check runs in the image: it starts the image's kernel.
pub const SMOKE_NOTEBOOK: &str = "/opt/nbpipe/smoke.ipynb";

const EXCLUDED: [&str; 3] = [".nbpipe", "runs", ".git"];

/// The project's git facts.
#[derive(Debug, Clone, Default)]
pub struct Git {
    /// `HEAD`'s commit.
    pub commit: Option<String>,
    /// `HEAD`'s commit time (seconds since the epoch).
    pub time: Option<u64>,
    /// `origin`'s URL.
    pub source: Option<String>,
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .trim_end_matches('\n')
            .to_string()
    })
}

/// The git facts of `dir` (all `None` outside a repository).
pub fn git_info(dir: &Path) -> Git {
    Git {
        commit: git(dir, &["rev-parse", "HEAD"]),
        time: git(dir, &["log", "-1", "--format=%ct"]).and_then(|t| t.parse().ok()),
        source: git(dir, &["remote", "get-url", "origin"]).filter(|s| !s.is_empty()),
    }
}

/// The project files, as relative paths, sorted.
pub fn files(dir: &Path) -> Result<Vec<PathBuf>, ImageError> {
    let excluded = |rel: &Path| {
        rel.components()
            .next()
            .is_some_and(|c| EXCLUDED.iter().any(|x| c.as_os_str() == *x))
    };
    let mut out: Vec<PathBuf> = match git(dir, &["ls-files", "-z", "--cached"]) {
        Some(list) => list
            .split('\0')
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .filter(|p| std::fs::symlink_metadata(dir.join(p)).is_ok())
            .collect(),
        None => walkdir::WalkDir::new(dir)
            .follow_links(false)
            .into_iter()
            .filter_entry(|e| !excluded(e.path().strip_prefix(dir).unwrap_or(e.path())))
            .filter_map(Result::ok)
            .filter(|e| !e.file_type().is_dir())
            .map(|e| e.path().strip_prefix(dir).unwrap_or(e.path()).to_path_buf())
            .collect(),
    };
    out.retain(|p| !excluded(p));
    out.sort();
    Ok(out)
}

/// The project layer: `files` of `dir` under `/project` but those in `secret_files`
/// (relative paths), every mtime `mtime`.
pub fn project_layer(
    store: &Store,
    dir: &Path,
    mtime: u64,
    secret_files: &[PathBuf],
) -> Result<Layer, ImageError> {
    let mut e = Entries::default();
    e.add(PROJECT_ROOT, Source::Dir);
    for rel in files(dir)? {
        if secret_files.contains(&rel) {
            continue;
        }
        let dest = format!("{PROJECT_ROOT}/{}", rel.to_string_lossy());
        e.add(&dest, layer::source_of(&dir.join(&rel))?);
    }
    layer::write(store, &e, mtime)
}

#[derive(Serialize, Deserialize)]
struct BinaryCache {
    layer: Layer,
}

/// The binary layer: `binary` as `/opt/nbpipe/bin/nbpipe` and the smoke notebook. Cached by
/// the binary's path, size and modification time.
pub fn binary_layer(store: &Store, binary: &Path) -> Result<Layer, ImageError> {
    let meta = std::fs::metadata(binary).map_err(|e| ImageError::io("reading", binary, e))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let key = {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(format!(
            "1\0{}\0{}\0{mtime}\0{SMOKE}",
            binary.display(),
            meta.len()
        ));
        hex::encode(&h.finalize()[..12])
    };
    let name = format!("binary-{key}.json");
    if let Some(hit) = store.cached::<BinaryCache>(&name, |c| vec![c.layer.blob.digest.clone()]) {
        return Ok(hit.layer);
    }
    let mut e = Entries::default();
    e.add(BINARY, Source::File(binary.to_path_buf()));
    e.add(
        SMOKE_NOTEBOOK,
        Source::Bytes(SMOKE.as_bytes().to_vec(), 0o644),
    );
    let layer = layer::write(store, &e, 0)?;
    store.remember(
        &name,
        &BinaryCache {
            layer: layer.clone(),
        },
    )?;
    Ok(layer)
}

const SMOKE: &str = r#"{
 "cells": [
  {"cell_type": "code", "execution_count": null, "id": "smoke", "metadata": {}, "outputs": [],
   "source": ["import sys, ipykernel\n", "print('nbpipe smoke check: kernel', sys.version.split()[0], 'ipykernel', ipykernel.__version__)"]}
 ],
 "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
 "nbformat": 4,
 "nbformat_minor": 5
}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_outside_git_skip_nbpipe_runs_and_git() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        for f in [
            "a.ipynb",
            "sub/b.py",
            ".nbpipe/env.json",
            "runs/r1/run.json",
            "runsheet.txt",
        ] {
            std::fs::create_dir_all(d.join(f).parent().unwrap()).unwrap();
            std::fs::write(d.join(f), "x").unwrap();
        }
        let got = files(d).unwrap();
        let got: Vec<String> = got.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(got, ["a.ipynb", "runsheet.txt", "sub/b.py"]);
    }

    #[test]
    fn files_in_git_are_the_tracked_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let sh = |args: &[&str]| {
            assert!(Command::new("git")
                .arg("-C")
                .arg(d)
                .args(args)
                .output()
                .unwrap()
                .status
                .success())
        };
        sh(&["init", "-q"]);
        std::fs::write(d.join("a.ipynb"), "x").unwrap();
        std::fs::write(d.join("untracked.txt"), "x").unwrap();
        sh(&["add", "a.ipynb"]);
        let got = files(d).unwrap();
        assert_eq!(got, [PathBuf::from("a.ipynb")]);
    }
}
