//! Zygotes shared with other nbpipe processes of the same user: adverts.
//!
//! A [`super::ForkServers`] made with [`super::ForkServers::advertised`] (`nbpipe run`,
//! `nbpipe serve`) writes one small JSON file per running zygote into a registry folder
//! (`$NBPIPE_HOME/zygotes/`, mode 0700), named after the interpreter it serves. A set made
//! with [`super::ForkServers::discovering`] (`nbpipe exec`) starts no zygote of its own: it
//! forks from the zygote advertised for the kernel's interpreter, but only when a kernel
//! forked there would be the kernel it would start cold — see [`Advert::usable`]. Anything
//! else (no advert, a stale one, another user's or another container's zygote, a different
//! zygote script) means a cold start, as before.
//!
//! Owns: the advert format, writing and retracting adverts, and the checks before a
//! discovered zygote is used. Must not: start, stop or signal another process's zygote.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Bumped when the advert's meaning changes; older or newer adverts are ignored.
pub(crate) const VERSION: u32 = 1;

/// What a running zygote tells other processes about itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Advert {
    pub version: u32,
    /// SHA-256 of the zygote script: only a zygote running this binary's script is used.
    pub script: String,
    /// The interpreter it serves (`ENV/bin/python`).
    pub python: PathBuf,
    /// Its Unix socket.
    pub socket: PathBuf,
    /// The zygote process.
    pub pid: i32,
    /// The nbpipe process that owns it (for people reading the folder).
    pub owner: u32,
    /// The environment's id (its hash) and preloaded modules.
    pub id: String,
    pub preload: Vec<String>,
    /// The zygote's `PYTHON*` environment variables (they shape the interpreter's start).
    pub python_env: Vec<(String, String)>,
}

/// SHA-256 of the zygote script, hex.
pub(crate) fn script_digest(script: &str) -> String {
    hex::encode(Sha256::digest(script.as_bytes()))
}

/// The advert file for `python` in `dir`.
pub(crate) fn path_for(dir: &Path, python: &Path) -> PathBuf {
    let digest = Sha256::digest(python.as_os_str().as_encoded_bytes());
    dir.join(format!("{}.json", &hex::encode(digest)[..32]))
}

/// `dir` is a folder of ours that nobody else may write or read: created (0700) when
/// `create`, else it must already exist.
fn private_dir(dir: &Path, create: bool) -> bool {
    if create && !dir.exists() {
        if std::fs::create_dir_all(dir).is_err() {
            return false;
        }
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    match std::fs::symlink_metadata(dir) {
        Ok(m) => m.is_dir() && m.uid() == nix::unistd::geteuid().as_raw() && m.mode() & 0o077 == 0,
        Err(_) => false,
    }
}

impl Advert {
    /// Publish this advert in `dir` (atomically; replaces another for the same
    /// interpreter). Returns the file written, or `None` when `dir` is not private to us.
    pub(crate) fn publish(&self, dir: &Path) -> Option<PathBuf> {
        if !private_dir(dir, true) {
            return None;
        }
        let path = path_for(dir, &self.python);
        let body = serde_json::to_vec_pretty(self).ok()?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir).ok()?;
        std::io::Write::write_all(&mut tmp, &body).ok()?;
        tmp.persist(&path).ok()?;
        Some(path)
    }

    /// Remove the advert at `path` if it still names `socket` (another process may have
    /// replaced it with its own zygote's since).
    pub(crate) fn retract(path: &Path, socket: &Path) {
        if let Some(a) = Self::read(path) {
            if a.socket == socket {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    fn read(path: &Path) -> Option<Advert> {
        let meta = std::fs::symlink_metadata(path).ok()?;
        if !meta.is_file() || meta.uid() != nix::unistd::geteuid().as_raw() {
            return None;
        }
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }

    /// The advert for `python` in `dir`, if there is one this process may use (see
    /// [`Advert::usable`]); `Err` says why not, for `NBPIPE_DEBUG_FORK`.
    pub(crate) fn find(dir: &Path, python: &Path, script: &str) -> Result<Advert, String> {
        if !private_dir(dir, false) {
            return Err(format!("{}: no private registry folder", dir.display()));
        }
        let path = path_for(dir, python);
        let advert = Self::read(&path).ok_or_else(|| format!("no advert {}", path.display()))?;
        if advert.version != VERSION || advert.script != script_digest(script) {
            return Err("advertised by another nbpipe version".into());
        }
        if advert.python != python {
            return Err("advert names another interpreter".into());
        }
        advert.usable(std::process::id() as i32)?;
        Ok(advert)
    }

    /// A kernel forked by this zygote for process `me` is what `me` would start cold:
    ///
    /// - the zygote runs (its command line names this advert's socket, so a reused pid is
    ///   not taken for it) as the same user, groups, umask and seccomp/no-new-privileges
    ///   state as `me`;
    /// - in the same namespaces (mount, pid, network, ipc, uts, user, cgroup) and cgroup,
    ///   so the kernel sees the same files, is limited and accounted as `me` is, and is not
    ///   stopped with the zygote owner's service;
    /// - with the same resource limits, scheduling priority, CPU and memory-node masks and
    ///   OOM score adjustment, all of which a kernel inherits from its parent.
    pub(crate) fn usable(&self, me: i32) -> Result<(), String> {
        let them = format!("/proc/{}", self.pid);
        let meta = std::fs::metadata(&them).map_err(|_| "the zygote is gone".to_string())?;
        if meta.uid() != nix::unistd::geteuid().as_raw() {
            return Err("the zygote runs as another user".into());
        }
        let cmdline = std::fs::read(format!("{them}/cmdline"))
            .map_err(|_| "the zygote is gone".to_string())?;
        let socket = self.socket.as_os_str().as_encoded_bytes();
        if !cmdline.split(|b| *b == 0).any(|arg| arg == socket) {
            return Err("the advertised pid is not that zygote".into());
        }
        if !self.socket.exists() {
            return Err("the zygote's socket is gone".into());
        }
        let mine = format!("/proc/{me}");
        for ns in ["mnt", "pid", "net", "ipc", "uts", "user", "cgroup"] {
            let a = std::fs::read_link(format!("{mine}/ns/{ns}")).ok();
            let b = std::fs::read_link(format!("{them}/ns/{ns}")).ok();
            if a != b {
                return Err(format!("the zygote is in another {ns} namespace"));
            }
        }
        for file in ["cgroup", "limits", "oom_score_adj"] {
            let a = std::fs::read(format!("{mine}/{file}")).ok();
            let b = std::fs::read(format!("{them}/{file}")).ok();
            if a.is_none() || a != b {
                return Err(format!("the zygote's {file} differ"));
            }
        }
        let status = |pid: &str| -> Option<Vec<String>> {
            let text = std::fs::read_to_string(format!("{pid}/status")).ok()?;
            const SAME: [&str; 8] = [
                "Umask:",
                "Uid:",
                "Gid:",
                "Groups:",
                "NoNewPrivs:",
                "Seccomp:",
                "Cpus_allowed_list:",
                "Mems_allowed_list:",
            ];
            Some(
                text.lines()
                    .filter(|l| SAME.iter().any(|k| l.starts_with(k)))
                    .map(String::from)
                    .collect(),
            )
        };
        let own = status(&mine);
        if own.is_none() || own != status(&them) {
            return Err("the zygote's credentials, umask or CPU set differ".into());
        }
        // Field 19 of /proc/PID/stat, after the parenthesised command name: the nice value.
        let nice = |pid: &str| -> Option<String> {
            let stat = std::fs::read_to_string(format!("{pid}/stat")).ok()?;
            stat.rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(16)
                .map(String::from)
        };
        let own = nice(&mine);
        if own.is_none() || own != nice(&them) {
            return Err("the zygote runs at another priority".into());
        }
        Ok(())
    }
}
