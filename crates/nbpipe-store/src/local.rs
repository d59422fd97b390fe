//! Local files: atomic replacement, metadata and directory listing.
//!
//! Owns: the temp-file-then-rename write that keeps the last good notebook on any crash. Must
//! not: block an async runtime (the async API runs these on the blocking pool).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::ObjectInfo;

/// Replace `path` with `bytes`: a temp file in the same directory, synced, then renamed over it.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// [`write_atomic`] with the content written by `render`; on any error the old file stays.
pub(crate) fn write_atomic_with(
    path: &Path,
    render: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".nbpipe-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    render(tmp.as_file_mut())?;
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

/// Size and modification time of a file; `None` if it does not exist.
pub(crate) fn head(path: &Path) -> std::io::Result<Option<ObjectInfo>> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(Some(ObjectInfo {
            size: meta.len(),
            last_modified: Some(chrono::DateTime::from(meta.modified()?)),
            etag: None,
            version: None,
        })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Entries of a directory, sorted by name (none if it does not exist or is not a directory).
pub(crate) fn list(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                || e.kind() == std::io::ErrorKind::NotADirectory =>
        {
            return Ok(Vec::new())
        }
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        // Our own in-flight temp files are not objects.
        let name = entry.file_name();
        let hidden_tmp = name
            .to_str()
            .is_some_and(|n| n.starts_with(".nbpipe-") && n.ends_with(".tmp"));
        if !hidden_tmp {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}
