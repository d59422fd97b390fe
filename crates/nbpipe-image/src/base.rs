//! The base image: pulled from its registry into the store (its layers are reused as they
//! are), and its Python found by listing its layers: the image's interpreter path and
//! `3.N` version decide how the kernel environment is installed on the host. The listing is
//! cached per base manifest digest.

use std::io::Read;

use serde::{Deserialize, Serialize};

use crate::error::ImageError;
use crate::registry::{self, Registry};
use crate::store::{Blob, Store};

/// Python inside the base image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BasePython {
    /// Absolute path of the interpreter in the image (`/usr/bin/python3.11`).
    pub path: String,
    /// `3.N`.
    pub version: String,
}

/// A base image ready to be built on.
#[derive(Debug, Clone)]
pub struct BaseImage {
    /// The reference as written.
    pub reference: String,
    /// Its manifest's digest (pins the base in the labels).
    pub digest: String,
    /// Its config (env, history, diff ids).
    pub config: serde_json::Value,
    /// Its layers, in order.
    pub layers: Vec<Blob>,
    /// Its Python.
    pub python: BasePython,
}

/// Pull `reference` into `store` and find its Python.
pub async fn resolve(reference: &str, store: &Store) -> Result<BaseImage, ImageError> {
    let parsed = registry::parse(reference)?;
    let reg = Registry::for_reference(&parsed);
    let (digest, config_blob, layers) = reg.pull(&parsed, store).await?;
    let config: serde_json::Value = serde_json::from_slice(&store.read(&config_blob.digest)?)
        .map_err(|e| ImageError::BadBase {
            base: reference.to_string(),
            reason: format!("its config is not JSON: {e}"),
        })?;
    let os = config["os"].as_str().unwrap_or("linux");
    let arch = config["architecture"].as_str().unwrap_or("amd64");
    if os != "linux" || arch != "amd64" {
        return Err(ImageError::BadBase {
            base: reference.to_string(),
            reason: format!("it is a {os}/{arch} image; nbpipe builds linux/amd64 images"),
        });
    }
    let diff_ids = config["rootfs"]["diff_ids"].as_array().map_or(0, Vec::len);
    if diff_ids != layers.len() {
        return Err(ImageError::BadBase {
            base: reference.to_string(),
            reason: format!(
                "its manifest lists {} layers but its config {diff_ids}",
                layers.len()
            ),
        });
    }
    let cache_name = format!("base-python-{}.json", digest.trim_start_matches("sha256:"));
    let python = match store.cached::<BasePython>(&cache_name, |_| Vec::new()) {
        Some(p) => p,
        None => {
            let store2 = store.clone();
            let blobs = layers.clone();
            let found = tokio::task::spawn_blocking(move || find_python(&store2, &blobs))
                .await
                .map_err(|e| ImageError::Unsupported(e.to_string()))??;
            let python = found.ok_or_else(|| ImageError::NoPython {
                base: reference.to_string(),
            })?;
            store.remember(&cache_name, &python)?;
            python
        }
    };
    Ok(BaseImage {
        reference: reference.to_string(),
        digest,
        config,
        layers,
        python,
    })
}

/// The interpreter the layers leave in place: `usr/local/bin/python3.N` (official Python
/// images) before `usr/bin/python3.N` (distribution Python), highest N first.
fn find_python(store: &Store, layers: &[Blob]) -> Result<Option<BasePython>, ImageError> {
    let mut present = std::collections::BTreeSet::new();
    for blob in layers {
        let path = store.blob_path(&blob.digest);
        let file = std::fs::File::open(&path).map_err(|e| ImageError::io("reading", &path, e))?;
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)));
        let entries = ar
            .entries()
            .map_err(|e| ImageError::io("reading layer", &path, e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| ImageError::io("reading layer", &path, e))?;
            let name = entry
                .path()
                .map(|p| p.to_string_lossy().trim_start_matches("./").to_string())
                .unwrap_or_default();
            let (dir, file) = name.rsplit_once('/').unwrap_or(("", &name));
            if let Some(removed) = file.strip_prefix(".wh.") {
                present.remove(&format!("{dir}/{removed}"));
            } else if (dir == "usr/bin" || dir == "usr/local/bin") && python_minor(file).is_some() {
                present.insert(name.clone());
            }
            // Drain the entry so the next header can be read.
            std::io::copy(&mut entry.by_ref(), &mut std::io::sink())
                .map_err(|e| ImageError::io("reading layer", &path, e))?;
        }
    }
    let best = ["usr/local/bin", "usr/bin"].iter().find_map(|dir| {
        present
            .iter()
            .filter_map(|p| {
                let (d, f) = p.rsplit_once('/')?;
                if d == *dir {
                    Some((python_minor(f)?, p.clone()))
                } else {
                    None
                }
            })
            .max()
    });
    Ok(best.map(|(minor, path)| BasePython {
        path: format!("/{path}"),
        version: format!("3.{minor}"),
    }))
}

/// `N` of `python3.N` (not `python3.N-config` nor `python3.Nm`).
fn python_minor(file: &str) -> Option<u32> {
    file.strip_prefix("python3.")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_names() {
        assert_eq!(python_minor("python3.11"), Some(11));
        assert_eq!(python_minor("python3.11-config"), None);
        assert_eq!(python_minor("python3"), None);
    }

    #[test]
    fn finds_the_interpreter_a_base_leaves_in_place() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let mut one = crate::layer::Entries::default();
        one.add(
            "usr/bin/python3.11",
            crate::layer::Source::Bytes(vec![], 0o755),
        );
        one.add(
            "usr/local/bin/python3.12",
            crate::layer::Source::Bytes(vec![], 0o755),
        );
        let one = crate::layer::write(&store, &one, 0).unwrap();
        assert_eq!(
            find_python(&store, std::slice::from_ref(&one.blob)).unwrap(),
            Some(BasePython {
                path: "/usr/local/bin/python3.12".into(),
                version: "3.12".into()
            })
        );
        let mut two = crate::layer::Entries::default();
        two.add(
            "usr/local/bin/.wh.python3.12",
            crate::layer::Source::Bytes(vec![], 0o644),
        );
        let two = crate::layer::write(&store, &two, 0).unwrap();
        assert_eq!(
            find_python(&store, &[one.blob.clone(), two.blob]).unwrap(),
            Some(BasePython {
                path: "/usr/bin/python3.11".into(),
                version: "3.11".into()
            })
        );
        let empty = crate::layer::write(&store, &crate::layer::Entries::default(), 0).unwrap();
        assert_eq!(find_python(&store, &[empty.blob]).unwrap(), None);
    }
}
