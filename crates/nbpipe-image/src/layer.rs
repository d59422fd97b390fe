//! Deterministic layers: a set of entries (directories, files, symlinks) written as a
//! `tar.gz` whose bytes depend only on the entries: sorted paths, one fixed mtime, uid/gid 0,
//! no user or group names, no extended attributes, gzip header without a time or name. The
//! layer is streamed into the blob store while its two digests are computed: the compressed
//! blob's (the manifest's) and the uncompressed tar's (the config's `diff_id`).

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};
use sha2::{Digest, Sha256};

use crate::error::ImageError;
use crate::store::{Blob, Store};

/// What one path in a layer is.
#[derive(Debug, Clone)]
pub enum Source {
    /// A directory (mode 0755).
    Dir,
    /// A file copied from the host; executable (0755) when the host file is, else 0644.
    File(PathBuf),
    /// A file with these bytes and mode.
    Bytes(Vec<u8>, u32),
    /// A symbolic link to this target.
    Symlink(String),
}

/// The entries of a layer, keyed by their path in the image (relative: `opt/nbpipe/bin`).
#[derive(Debug, Default, Clone)]
pub struct Entries {
    map: BTreeMap<String, Source>,
}

impl Entries {
    /// Add `path` (parents are added as directories).
    pub fn add(&mut self, path: &str, source: Source) {
        let path = path
            .trim_start_matches('/')
            .trim_end_matches('/')
            .to_string();
        let mut parent = Path::new(&path).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            self.map
                .entry(p.to_string_lossy().into_owned())
                .or_insert(Source::Dir);
            parent = p.parent();
        }
        self.map.insert(path, source);
    }

    /// Add the tree under host directory `from` at `to` (symlinks kept as links).
    pub fn add_tree(&mut self, from: &Path, to: &str) -> Result<(), ImageError> {
        for entry in walkdir::WalkDir::new(from).follow_links(false) {
            let entry = entry.map_err(|e| {
                let path = e.path().unwrap_or(from).to_path_buf();
                ImageError::io("reading", path, io::Error::other(e.to_string()))
            })?;
            let rel = entry.path().strip_prefix(from).unwrap_or(entry.path());
            let dest = if rel.as_os_str().is_empty() {
                to.to_string()
            } else {
                format!("{}/{}", to.trim_end_matches('/'), rel.to_string_lossy())
            };
            self.add(&dest, source_of(entry.path())?);
        }
        Ok(())
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// What a host path is, as a layer entry.
pub fn source_of(path: &Path) -> Result<Source, ImageError> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| ImageError::io("reading", path, e))?;
    Ok(if meta.file_type().is_symlink() {
        let target = std::fs::read_link(path).map_err(|e| ImageError::io("reading", path, e))?;
        Source::Symlink(target.to_string_lossy().into_owned())
    } else if meta.is_dir() {
        Source::Dir
    } else {
        Source::File(path.to_path_buf())
    })
}

/// Counts and hashes what passes through.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A written layer: its blob and the digest of its uncompressed tar.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Layer {
    /// The compressed blob.
    pub blob: Blob,
    /// `sha256:…` of the uncompressed tar.
    pub diff_id: String,
}

/// Write `entries` as a gzipped tar into `store`, every entry's mtime `mtime`.
pub fn write(store: &Store, entries: &Entries, mtime: u64) -> Result<Layer, ImageError> {
    let (file, tmp_path) = store.temp_file()?;
    let out = Hashing {
        inner: io::BufWriter::new(file),
        hasher: Sha256::new(),
        bytes: 0,
    };
    // Fixed header: no name, mtime 0, OS "unknown"; a fixed level, so the bytes are stable.
    let gz: GzEncoder<Hashing<_>> = GzBuilder::new()
        .operating_system(255)
        .write(out, Compression::new(6));
    let tar_out = Hashing {
        inner: gz,
        hasher: Sha256::new(),
        bytes: 0,
    };
    let mut tar = tar::Builder::new(tar_out);
    tar.mode(tar::HeaderMode::Deterministic);
    let io_err = |path: &str, e: io::Error| ImageError::io("writing layer entry", path, e);
    for (path, source) in &entries.map {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(mtime);
        match source {
            Source::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                tar.append_data(&mut h, format!("{path}/"), io::empty())
                    .map_err(|e| io_err(path, e))?;
            }
            Source::File(host) => {
                let f =
                    std::fs::File::open(host).map_err(|e| ImageError::io("reading", host, e))?;
                let meta = f
                    .metadata()
                    .map_err(|e| ImageError::io("reading", host, e))?;
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(if meta.permissions().mode() & 0o111 != 0 {
                    0o755
                } else {
                    0o644
                });
                h.set_size(meta.len());
                tar.append_data(&mut h, path, io::BufReader::new(f))
                    .map_err(|e| io_err(path, e))?;
            }
            Source::Bytes(data, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                tar.append_data(&mut h, path, data.as_slice())
                    .map_err(|e| io_err(path, e))?;
            }
            Source::Symlink(target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                tar.append_link(&mut h, path, target)
                    .map_err(|e| io_err(path, e))?;
            }
        }
    }
    let tar_out = tar.into_inner().map_err(|e| io_err("(end)", e))?;
    let diff_id = format!("sha256:{}", hex::encode(tar_out.hasher.finalize()));
    let out = tar_out.inner.finish().map_err(|e| io_err("(gzip)", e))?;
    let digest = format!("sha256:{}", hex::encode(out.hasher.finalize()));
    let size = out.bytes;
    out.inner
        .into_inner()
        .map_err(|e| io_err("(flush)", e.into_error()))?
        .sync_all()
        .map_err(|e| io_err("(sync)", e))?;
    let blob = store.publish(&tmp_path, &digest, size, crate::media::LAYER)?;
    Ok(Layer { blob, diff_id })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_entries_give_the_same_bytes_whatever_the_host_times() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("store")).unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("sub/b.txt"), "b").unwrap();
        std::fs::write(src.join("a.txt"), "a").unwrap();
        let mut e = Entries::default();
        e.add_tree(&src, "project").unwrap();
        e.add("opt/x/run", Source::Bytes(b"#!/bin/sh\n".to_vec(), 0o755));
        e.add("opt/x/link", Source::Symlink("run".into()));
        let one = write(&store, &e, 1_700_000_000).unwrap();
        // Touch the files (new mtimes) and rebuild the entries in another order.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        std::fs::write(src.join("a.txt"), "a").unwrap();
        let mut e2 = Entries::default();
        e2.add("opt/x/link", Source::Symlink("run".into()));
        e2.add("opt/x/run", Source::Bytes(b"#!/bin/sh\n".to_vec(), 0o755));
        e2.add_tree(&src, "project").unwrap();
        let two = write(&store, &e2, 1_700_000_000).unwrap();
        assert_eq!(one, two);
        // Content changes the digests; so does the fixed time.
        std::fs::write(src.join("a.txt"), "A").unwrap();
        let mut e3 = Entries::default();
        e3.add_tree(&src, "project").unwrap();
        e3.add("opt/x/run", Source::Bytes(b"#!/bin/sh\n".to_vec(), 0o755));
        e3.add("opt/x/link", Source::Symlink("run".into()));
        assert_ne!(write(&store, &e3, 1_700_000_000).unwrap(), one);
        assert_ne!(write(&store, &e, 1).unwrap(), one);

        // The tar lists parents first, sorted, owned by root, with the fixed mtime.
        let data = std::fs::read(store.blob_path(&one.blob.digest)).unwrap();
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(data.as_slice()));
        let names: Vec<(String, u64, u64, u64)> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                    h.mtime().unwrap(),
                )
            })
            .collect();
        let paths: Vec<&str> = names.iter().map(|n| n.0.as_str()).collect();
        assert_eq!(
            paths,
            [
                "opt/",
                "opt/x/",
                "opt/x/link",
                "opt/x/run",
                "project/",
                "project/a.txt",
                "project/sub/",
                "project/sub/b.txt"
            ]
        );
        assert!(names
            .iter()
            .all(|n| n.1 == 0 && n.2 == 0 && n.3 == 1_700_000_000));
    }
}
