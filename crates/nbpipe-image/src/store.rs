//! The local image store: content-addressed blobs (layers, configs, manifests) under
//! `$NBPIPE_HOME/images/blobs/sha256/`, laid out like an OCI image layout, plus small cache
//! records (`cache/*.json`) that map a layer's inputs to the blob made from them, so a
//! rebuild with unchanged inputs reuses the blob without recomputing it. Blobs are written to
//! a temporary file and renamed into place, so a crash never leaves a blob under a wrong name.

use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::error::ImageError;

/// A blob in the store: an OCI descriptor's fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blob {
    /// `sha256:…`.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its media type.
    #[serde(rename = "mediaType")]
    pub media_type: String,
}

/// The store at one root.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Open (creating) the store at `root`.
    pub fn open(root: &Path) -> Result<Store, ImageError> {
        for sub in ["blobs/sha256", "tmp", "cache"] {
            let d = root.join(sub);
            std::fs::create_dir_all(&d).map_err(|e| ImageError::io("creating", d, e))?;
        }
        let layout = root.join("oci-layout");
        if !layout.exists() {
            std::fs::write(&layout, "{\"imageLayoutVersion\":\"1.0.0\"}")
                .map_err(|e| ImageError::io("writing", layout, e))?;
        }
        Ok(Store {
            root: root.to_path_buf(),
        })
    }

    /// The store under nbpipe's cache: `$NBPIPE_HOME/images`.
    pub fn default_location() -> Result<Store, ImageError> {
        let home = nbpipe_env::nbpipe_home().map_err(|e| ImageError::Unsupported(e.to_string()))?;
        Store::open(&home.join("images"))
    }

    /// Where the blob `digest` lives.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.root.join("blobs/sha256").join(hex)
    }

    /// Whether the blob is present.
    pub fn has(&self, digest: &str) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Read a (small) blob.
    pub fn read(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        let p = self.blob_path(digest);
        std::fs::read(&p).map_err(|e| ImageError::io("reading blob", p, e))
    }

    /// A new temporary file inside the store (same file system as the blobs).
    pub fn temp_file(&self) -> Result<(std::fs::File, PathBuf), ImageError> {
        let dir = self.root.join("tmp");
        let f = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(&dir)
            .map_err(|e| ImageError::io("creating a file in", &dir, e))?;
        let (file, path) = f
            .keep()
            .map_err(|e| ImageError::io("creating a file in", &dir, e.error))?;
        Ok((file, path))
    }

    /// Move the finished temporary file `tmp` into place as blob `digest`.
    pub fn publish(
        &self,
        tmp: &Path,
        digest: &str,
        size: u64,
        media_type: &str,
    ) -> Result<Blob, ImageError> {
        let dest = self.blob_path(digest);
        std::fs::rename(tmp, &dest).map_err(|e| ImageError::io("storing blob", &dest, e))?;
        Ok(Blob {
            digest: digest.to_string(),
            size,
            media_type: media_type.to_string(),
        })
    }

    /// Store `data` as a blob.
    pub fn put(&self, data: &[u8], media_type: &str) -> Result<Blob, ImageError> {
        use sha2::Digest;
        let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)));
        if !self.has(&digest) {
            let (mut f, tmp) = self.temp_file()?;
            std::io::Write::write_all(&mut f, data)
                .and_then(|_| f.sync_all())
                .map_err(|e| ImageError::io("writing blob", &tmp, e))?;
            self.publish(&tmp, &digest, data.len() as u64, media_type)?;
        }
        Ok(Blob {
            digest,
            size: data.len() as u64,
            media_type: media_type.to_string(),
        })
    }

    /// A cache record `name` whose blobs are all still present.
    pub fn cached<T: DeserializeOwned>(
        &self,
        name: &str,
        blobs: impl Fn(&T) -> Vec<String>,
    ) -> Option<T> {
        let text = std::fs::read_to_string(self.root.join("cache").join(name)).ok()?;
        let value: T = serde_json::from_str(&text).ok()?;
        blobs(&value).iter().all(|d| self.has(d)).then_some(value)
    }

    /// Record cache entry `name`.
    pub fn remember<T: Serialize>(&self, name: &str, value: &T) -> Result<(), ImageError> {
        let path = self.root.join("cache").join(name);
        let text = serde_json::to_string_pretty(value).unwrap_or_default();
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|e| ImageError::io("writing", path, e))
    }
}
