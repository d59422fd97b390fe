//! The content-addressed step cache.
//!
//! A step's key is the SHA-256 of everything its output can depend on: the notebook's code
//! (cell types, sources and tags — not outputs or timings), the effective parameters, the
//! kernel and its environment's hash, the content versions of its declared inputs (ETag or
//! version id from object stores, size + mtime for local files), and the keys of the steps it
//! needs. Change any of them and the key changes; timestamps of unrelated files do not.
//! Entries live in `<project>/.nbpipe/cache/<key>.json` and point at the output notebook of
//! the run that produced it.

use std::path::{Path, PathBuf};

use nbpipe_notebook::Notebook;
use nbpipe_params::Parameters;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// What feeds one step's key.
pub struct KeyParts<'a> {
    /// The input notebook.
    pub notebook: &'a Notebook,
    /// Effective parameters (after defaults, overrides and run context).
    pub parameters: &'a Parameters,
    /// Kernel name override, if any.
    pub kernel: Option<&'a str>,
    /// Hash of the kernel environment.
    pub env_hash: &'a str,
    /// `(uri, version)` of each declared input.
    pub inputs: &'a [(String, String)],
    /// Keys of the steps this one needs, in order.
    pub upstream: &'a [String],
}

/// The step's cache key (64 hex digits).
pub fn key(parts: &KeyParts<'_>) -> String {
    let doc = json!({
        "v": 1,
        "notebook": fingerprint(parts.notebook),
        "parameters": parts.parameters.to_json(),
        "kernel": parts.kernel,
        "env": parts.env_hash,
        "inputs": parts.inputs,
        "upstream": parts.upstream,
    });
    hex(&Sha256::digest(doc.to_string().as_bytes()))
}

/// The parts of a notebook that decide what it computes.
pub fn fingerprint(nb: &Notebook) -> Value {
    let cells: Vec<Value> = nb
        .cells
        .iter()
        .map(|c| json!([c.cell_type.as_str(), c.source, c.tags()]))
        .collect();
    json!({"kernel": nb.kernel_name(), "language": nb.language(), "cells": cells})
}

/// SHA-256 of bytes, as hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The content version of an input: ETag/version id when the store has one, else size and
/// modification time; `missing` when it does not exist.
pub async fn input_version(uri: &str, base: &Path) -> Result<String, nbpipe_store::StoreError> {
    let loc = resolve(uri, base)?;
    Ok(match loc.head().await? {
        None => "missing".to_string(),
        Some(info) => match (&info.version, &info.etag) {
            (Some(v), _) => format!("version:{v}"),
            (None, Some(e)) => format!("etag:{e}"),
            (None, None) => format!(
                "size:{}:mtime:{}",
                info.size,
                info.last_modified
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default()
            ),
        },
    })
}

/// A location string, with relative local paths taken from `base`.
pub fn resolve(uri: &str, base: &Path) -> Result<nbpipe_store::Location, nbpipe_store::StoreError> {
    let loc = nbpipe_store::Location::parse(uri)?;
    Ok(match loc {
        nbpipe_store::Location::Local(p) if p.is_relative() => {
            nbpipe_store::Location::Local(base.join(p))
        }
        other => other,
    })
}

/// One cache entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// The key.
    pub key: String,
    /// Run that produced the output.
    pub run_id: String,
    /// Step id in that run.
    pub step: String,
    /// Output notebook location.
    pub output: String,
    /// HTML report location.
    pub html: Option<String>,
    /// When it was recorded.
    pub created: String,
}

/// The cache index of one project.
pub struct Index {
    dir: PathBuf,
}

impl Index {
    /// The index under `<project>/.nbpipe/cache`.
    pub fn for_project(project_dir: &Path) -> Index {
        Index {
            dir: project_dir.join(".nbpipe").join("cache"),
        }
    }

    /// The entry for `key`, if any (unreadable entries count as misses).
    pub fn get(&self, key: &str) -> Option<Entry> {
        let text = std::fs::read_to_string(self.dir.join(format!("{key}.json"))).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Record a successful step.
    pub fn put(&self, entry: &Entry) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let loc = nbpipe_store::Location::Local(self.dir.join(format!("{}.json", entry.key)));
        let bytes = serde_json::to_vec_pretty(entry).map_err(std::io::Error::other)?;
        loc.write(&bytes).map_err(std::io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nb(src: &str) -> Notebook {
        let text = json!({
            "cells": [{"cell_type": "code", "id": "a", "metadata": {"tags": ["parameters"]}, "source": src, "outputs": [], "execution_count": null}],
            "metadata": {"kernelspec": {"name": "python3", "display_name": "P", "language": "python"}},
            "nbformat": 4, "nbformat_minor": 5
        });
        nbpipe_notebook::read(text.to_string().as_bytes()).unwrap()
    }

    fn key_with(
        src: &str,
        p: &Parameters,
        env: &str,
        inputs: &[(String, String)],
        up: &[String],
    ) -> String {
        key(&KeyParts {
            notebook: &nb(src),
            parameters: p,
            kernel: None,
            env_hash: env,
            inputs,
            upstream: up,
        })
    }

    #[test]
    fn every_component_changes_the_key() {
        let mut p = Parameters::new();
        p.set("a", nbpipe_params::Value::Int("1".into()));
        let inputs = vec![("s3://b/k".to_string(), "etag:1".to_string())];
        let up = vec!["u1".to_string()];
        let base = key_with("x = 1", &p, "env1", &inputs, &up);
        assert_eq!(
            base,
            key_with("x = 1", &p, "env1", &inputs, &up),
            "deterministic"
        );
        assert_ne!(base, key_with("x = 2", &p, "env1", &inputs, &up), "source");
        let mut p2 = p.clone();
        p2.set("a", nbpipe_params::Value::Int("2".into()));
        assert_ne!(
            base,
            key_with("x = 1", &p2, "env1", &inputs, &up),
            "parameters"
        );
        assert_ne!(
            base,
            key_with("x = 1", &p, "env2", &inputs, &up),
            "environment"
        );
        let inputs2 = vec![("s3://b/k".to_string(), "etag:2".to_string())];
        assert_ne!(
            base,
            key_with("x = 1", &p, "env1", &inputs2, &up),
            "input version"
        );
        assert_ne!(
            base,
            key_with("x = 1", &p, "env1", &inputs, &["u2".to_string()]),
            "upstream"
        );
    }

    #[test]
    fn outputs_and_execution_counts_do_not_change_the_key() {
        let mut a = nb("x = 1");
        let b = a.clone();
        a.cells[0]
            .outputs
            .push(json!({"output_type": "stream", "name": "stdout", "text": "hi"}));
        a.cells[0].execution_count = Some(3);
        assert_eq!(fingerprint(&a), fingerprint(&b));
    }
}
