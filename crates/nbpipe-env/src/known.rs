//! What nbpipe learned by running interpreters, kept so that checking an environment does
//! not start Python: a base interpreter's identity (`sys.executable`, version) and the fact
//! that an environment's interpreter runs and finds ipykernel.
//!
//! Both cost a Python start each (~30 ms) before every `nbpipe run` could start its
//! kernel. Each fact is kept in `$NBPIPE_HOME/known/` with the fingerprint of the files it
//! depends on — the interpreter binary (symlinks followed) and, for an environment, its
//! ipykernel package — and is used only while those files are unchanged (same device,
//! inode, size, modification and change times). Only real executables (ELF) are
//! fingerprinted: a launcher script such as a pyenv shim picks its interpreter at run time,
//! so what it runs is always asked again. A fact that cannot be read or written is simply
//! asked again: this is a cache, never a source of errors.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::build::PythonInfo;

/// Identity of a file's content as the file system shows it, with symlinks followed.
fn fingerprint(path: &Path) -> Option<String> {
    let real = std::fs::canonicalize(path).ok()?;
    let meta = std::fs::metadata(&real).ok()?;
    Some(format!(
        "{}:{}:{}:{}:{}.{}:{}.{}",
        real.display(),
        meta.dev(),
        meta.ino(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec()
    ))
}

/// The fingerprint of an interpreter that is a real executable, not a launcher script.
fn binary_fingerprint(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .ok()?;
    (magic == *b"\x7fELF").then(|| fingerprint(path))?
}

#[derive(Serialize, Deserialize)]
struct Fact {
    key: String,
    #[serde(default)]
    executable: Option<PathBuf>,
    #[serde(default)]
    version: Option<String>,
}

fn fact_path(home: &Path, kind: &str, key: &str) -> PathBuf {
    let digest = hex(&Sha256::digest(key.as_bytes())[..12]);
    home.join("known").join(format!("{kind}-{digest}.json"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn read(home: &Path, kind: &str, key: &str) -> Option<Fact> {
    let text = std::fs::read_to_string(fact_path(home, kind, key)).ok()?;
    let fact: Fact = serde_json::from_str(&text).ok()?;
    (fact.key == key).then_some(fact)
}

/// Written to a temporary file and renamed, so a reader never sees half a fact; the
/// temporary name is unique per call ([`crate::build::nonce`]), as two threads of one server
/// may learn the same fact at once.
fn write(home: &Path, kind: &str, fact: &Fact) {
    let path = fact_path(home, kind, &fact.key);
    let Some(dir) = path.parent() else { return };
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy(),
        crate::build::nonce()
    ));
    let ok = std::fs::create_dir_all(dir)
        .and_then(|_| std::fs::write(&tmp, serde_json::to_vec(fact).unwrap_or_default()))
        .and_then(|_| std::fs::rename(&tmp, &path));
    if ok.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// [`crate::build::probe_python`], answered from `home` while the interpreter is unchanged.
pub(crate) fn probe_python(
    home: &Path,
    requested: &str,
) -> Result<PythonInfo, crate::error::EnvError> {
    let resolved = crate::build::resolve_python(requested)?;
    let key = binary_fingerprint(&resolved).map(|f| format!("{}|{f}", resolved.display()));
    if let Some(key) = &key {
        if let Some(Fact {
            executable: Some(executable),
            version: Some(version),
            ..
        }) = read(home, "python", key)
        {
            return Ok(PythonInfo {
                executable,
                version,
            });
        }
    }
    let info = crate::build::probe_python(requested)?;
    if let Some(key) = key {
        write(
            home,
            "python",
            &Fact {
                key,
                executable: Some(info.executable.clone()),
                version: Some(info.version.clone()),
            },
        );
    }
    Ok(info)
}

/// The file ipykernel is imported from in environment `root`, if it is where installers
/// put it.
fn ipykernel_file(root: &Path) -> Option<PathBuf> {
    let lib = root.join("lib");
    std::fs::read_dir(&lib)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("python"))
        .map(|e| {
            e.path()
                .join("site-packages")
                .join("ipykernel")
                .join("__init__.py")
        })
        .find(|p| p.is_file())
}

/// [`crate::build::env_is_usable`], answered from `home` while the environment's
/// interpreter and ipykernel are the files that were found usable.
pub(crate) fn env_is_usable(home: &Path, root: &Path, hash: &str) -> bool {
    let key = (|| {
        let python = binary_fingerprint(&crate::build::env_python(root))?;
        let ipykernel = fingerprint(&ipykernel_file(root)?)?;
        Some(format!("{}|{hash}|{python}|{ipykernel}", root.display()))
    })();
    if let Some(key) = &key {
        if read(home, "env", key).is_some() && crate::build::manifest_matches(root, hash) {
            return true;
        }
    }
    let usable = crate::build::env_is_usable(root, hash);
    if let (true, Some(key)) = (usable, key) {
        write(
            home,
            "env",
            &Fact {
                key,
                executable: None,
                version: None,
            },
        );
    }
    usable
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real interpreter is asked once and then answered from its fact, which a changed
    /// binary invalidates; a launcher script is never fingerprinted.
    #[test]
    fn facts_follow_the_files_they_depend_on() {
        let Ok(base) = crate::build::probe_python("python3") else {
            return; // no interpreter on this machine: nothing to fingerprint
        };
        let home = tempfile::tempdir().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        // The real interpreter binary (not a shim), through a symlink of our own.
        let real = std::fs::canonicalize(&base.executable).unwrap();
        let link = tmp.path().join("python3");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let requested = link.display().to_string();
        let first = probe_python(home.path(), &requested).unwrap();
        let facts = || std::fs::read_dir(home.path().join("known")).map_or(0, |d| d.count());
        assert_eq!(facts(), 1, "the probe of a real binary is kept");
        // The fact is what answers: make it say something only the cache could say.
        let key = format!("{}|{}", link.display(), binary_fingerprint(&link).unwrap());
        write(
            home.path(),
            "python",
            &Fact {
                key,
                executable: Some(link.clone()),
                version: Some("cpython-9.9.9-test".into()),
            },
        );
        assert_eq!(
            probe_python(home.path(), &requested).unwrap().version,
            "cpython-9.9.9-test"
        );
        // The same binary under another path is another key (its sys.executable differs).
        let other = tmp.path().join("other");
        std::fs::create_dir(&other).unwrap();
        std::os::unix::fs::symlink(&link, other.join("python3")).unwrap();
        assert_eq!(
            probe_python(home.path(), &other.join("python3").display().to_string())
                .unwrap()
                .version,
            first.version
        );
        // Rewriting a file (new mtime/ctime, same bytes) changes its fingerprint.
        let file = tmp.path().join("bin");
        std::fs::write(&file, b"\x7fELF-not-really").unwrap();
        let before = binary_fingerprint(&file).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&file, b"\x7fELF-not-really").unwrap();
        assert_ne!(binary_fingerprint(&file).unwrap(), before);
        // A script is never fingerprinted.
        let script = tmp.path().join("shim");
        std::fs::write(&script, "#!/bin/sh\nexec python3 \"$@\"\n").unwrap();
        assert_eq!(binary_fingerprint(&script), None);
    }
}
