//! Making environments: finding Python, running uv or venv+pip, locking and
//! publishing the result atomically.
//!
//! Layout under `$NBPIPE_HOME/envs/`:
//!
//! ```text
//! <hash>            symlink -> <hash>-<nonce>   (the published environment)
//! <hash>-<nonce>/   a virtualenv, built in place, with nbpipe-env.json and nbpipe-freeze.txt
//! <hash>.lock       advisory lock held while checking / building <hash>
//! ```
//!
//! Virtualenvs are not relocatable (scripts carry absolute paths), so instead
//! of renaming a finished directory, each build happens in its own
//! `<hash>-<nonce>` directory and is published by atomically renaming a
//! symlink onto `<hash>`. A build that fails or is interrupted is never
//! pointed at; its directory is removed by the next builder of that hash.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::error::EnvError;
use crate::hash::ENV_FORMAT_VERSION;

/// Lines of installer output kept for error messages.
const TAIL_LINES: usize = 20;
/// Manifest written into every environment before it is published.
pub const MANIFEST_FILE: &str = "nbpipe-env.json";
/// `pip freeze` of the environment, written after the install.
pub const FREEZE_FILE: &str = "nbpipe-freeze.txt";
/// Copy of the requirements the environment was built from.
const REQUIREMENTS_COPY: &str = "nbpipe-requirements.txt";

/// An interpreter to build environments from.
#[derive(Debug, Clone)]
pub(crate) struct PythonInfo {
    /// `sys.executable` (shims like pyenv's resolved to the real interpreter).
    pub executable: PathBuf,
    /// e.g. `cpython-3.11.7-x86_64`.
    pub version: String,
}

const PROBE: &str = "import sys, platform; print(sys.executable); \
print('%s-%s%s-%s' % (sys.implementation.name, platform.python_version(), \
getattr(sys, 'abiflags', ''), platform.machine()))";

/// The file of the interpreter `requested` (a name on `PATH`, or a path).
pub(crate) fn resolve_python(requested: &str) -> Result<PathBuf, EnvError> {
    let no_python = |reason: &str| EnvError::NoPython {
        requested: requested.to_string(),
        reason: reason.to_string(),
    };
    if requested.contains(std::path::MAIN_SEPARATOR) || requested.contains('/') {
        let p = PathBuf::from(requested);
        if !p.is_file() {
            return Err(no_python("no such file"));
        }
        Ok(p)
    } else {
        which(requested).ok_or_else(|| no_python("not found on PATH"))
    }
}

/// Find and query the interpreter `requested` (a name on `PATH`, or a path).
pub(crate) fn probe_python(requested: &str) -> Result<PythonInfo, EnvError> {
    let no_python = |reason: String| EnvError::NoPython {
        requested: requested.to_string(),
        reason,
    };
    let path = resolve_python(requested)?;
    // "Text file busy": the interpreter was written a moment ago and a process forked
    // meanwhile (by any thread) still holds it open until it execs. That passes; retry.
    let mut attempts = 0;
    let output = loop {
        match Command::new(&path)
            .args(["-c", PROBE])
            .stdin(Stdio::null())
            .output()
        {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && attempts < 20 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => {
                break other
                    .map_err(|e| no_python(format!("cannot run {}: {e}", path.display())))?
            }
        }
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().last().unwrap_or("").trim().to_string();
        return Err(no_python(format!(
            "{} exited with {}: {last}",
            path.display(),
            output.status
        )));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut lines = stdout.lines().map(str::trim).filter(|l| !l.is_empty());
    match (lines.next(), lines.next()) {
        (Some(exe), Some(version)) => Ok(PythonInfo {
            executable: if exe.is_empty() || exe == "None" {
                path
            } else {
                PathBuf::from(exe)
            },
            version: version.to_string(),
        }),
        _ => Err(no_python(format!(
            "{} did not report its version (is it Python 3?)",
            path.display()
        ))),
    }
}

/// First executable `name` on `PATH`.
pub(crate) fn which(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The interpreter inside environment `root`.
pub(crate) fn env_python(root: &Path) -> PathBuf {
    root.join("bin").join("python")
}

/// How environments are made.
pub(crate) trait Installer: Sync {
    /// Short name for messages and the manifest (`uv`, `venv+pip`).
    fn name(&self) -> &'static str;
    /// Make a virtualenv at `target` from `base` and install `requirements`
    /// (if any) plus ipykernel into it, running in `cwd`.
    fn build(
        &self,
        base: &Path,
        target: &Path,
        requirements: Option<&Path>,
        cwd: &Path,
        quiet: bool,
    ) -> Result<(), EnvError>;
    /// `pip freeze` of the environment whose interpreter is `python`.
    fn freeze(&self, python: &Path) -> Option<String>;
}

/// `uv venv` + `uv pip install`.
pub(crate) struct Uv {
    pub uv: PathBuf,
}

/// `python -m venv` + `pip install`.
pub(crate) struct VenvPip;

fn uv_command(uv: &Path) -> Command {
    let mut cmd = Command::new(uv);
    // We always hand uv an exact interpreter; never let it fetch another one.
    if std::env::var_os("UV_PYTHON_DOWNLOADS").is_none() {
        cmd.env("UV_PYTHON_DOWNLOADS", "never");
    }
    cmd
}

/// `-r FILE ipykernel`; a requirements file that lists nothing (empty, or comments and blank
/// lines only) is left out, so installers do not warn about a normal, empty project.
fn requirement_args(requirements: Option<&Path>) -> Vec<std::ffi::OsString> {
    let mut args = Vec::new();
    if let Some(req) = requirements.filter(|r| lists_something(r)) {
        args.push("-r".into());
        args.push(req.as_os_str().to_owned());
    }
    args.push("ipykernel".into());
    args
}

/// Whether a requirements file has a line that is neither blank nor a comment (an unreadable
/// file counts as listing something: the installer then reports the real error).
fn lists_something(requirements: &Path) -> bool {
    std::fs::read_to_string(requirements).map_or(true, |text| {
        text.lines()
            .map(str::trim)
            .any(|l| !l.is_empty() && !l.starts_with('#'))
    })
}

impl Installer for Uv {
    fn name(&self) -> &'static str {
        "uv"
    }

    fn build(
        &self,
        base: &Path,
        target: &Path,
        requirements: Option<&Path>,
        cwd: &Path,
        quiet: bool,
    ) -> Result<(), EnvError> {
        let mut venv = uv_command(&self.uv);
        venv.arg("venv")
            .arg("--no-project")
            .arg("--python")
            .arg(base)
            .arg(target)
            .current_dir(cwd);
        run_step("creating the virtualenv", venv, quiet)?;
        let mut install = uv_command(&self.uv);
        install
            .args(["pip", "install", "--compile-bytecode", "--python"])
            .arg(env_python(target))
            .args(requirement_args(requirements))
            .current_dir(cwd);
        run_step("installing packages", install, quiet)
    }

    fn freeze(&self, python: &Path) -> Option<String> {
        let mut cmd = uv_command(&self.uv);
        cmd.args(["pip", "freeze", "--python"]).arg(python);
        capture(cmd)
    }
}

impl Installer for VenvPip {
    fn name(&self) -> &'static str {
        "venv+pip"
    }

    fn build(
        &self,
        base: &Path,
        target: &Path,
        requirements: Option<&Path>,
        cwd: &Path,
        quiet: bool,
    ) -> Result<(), EnvError> {
        let mut venv = Command::new(base);
        venv.args(["-m", "venv"]).arg(target).current_dir(cwd);
        run_step("creating the virtualenv", venv, quiet)?;
        let mut install = Command::new(env_python(target));
        install
            .args([
                "-m",
                "pip",
                "install",
                "--compile",
                "--disable-pip-version-check",
            ])
            .args(requirement_args(requirements))
            .current_dir(cwd);
        run_step("installing packages", install, quiet)
    }

    fn freeze(&self, python: &Path) -> Option<String> {
        let mut cmd = Command::new(python);
        cmd.args(["-m", "pip", "freeze", "--disable-pip-version-check"]);
        capture(cmd)
    }
}

/// The installer to use: `$NBPIPE_ENV_INSTALLER` (`uv` or `pip`) if set,
/// else uv when it is on `PATH` and runs, else venv+pip.
pub(crate) fn default_installer() -> Box<dyn Installer> {
    let choice = std::env::var("NBPIPE_ENV_INSTALLER").unwrap_or_default();
    if choice.eq_ignore_ascii_case("pip") {
        return Box::new(VenvPip);
    }
    if let Some(uv) = which("uv") {
        let works = Command::new(&uv)
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if works {
            return Box::new(Uv { uv });
        }
    }
    Box::new(VenvPip)
}

/// Whether uv or `python3 -m venv` is usable (for callers deciding to skip).
pub fn installer_available() -> bool {
    which("uv").is_some()
        || Command::new("python3")
            .args(["-c", "import venv, ensurepip"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// Render a command for error messages.
fn display_command(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| {
            let s = a.to_string_lossy();
            if !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
            {
                s.into_owned()
            } else {
                format!("'{}'", s.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Run one installer step, echoing its output to stderr unless `quiet` and
/// keeping the last lines for the error. stdout and stderr share one pipe so
/// the kept lines are in the order the tool printed them.
pub(crate) fn run_step(step: &str, mut cmd: Command, quiet: bool) -> Result<(), EnvError> {
    let command = display_command(&cmd);
    let failed = |status: String, output_tail: Vec<String>| EnvError::InstallFailed {
        step: step.to_string(),
        command: command.clone(),
        status,
        output_tail,
    };
    let (reader, writer) =
        nix::unistd::pipe().map_err(|e| failed(format!("could not start: {e}"), Vec::new()))?;
    let writer2 = writer
        .try_clone()
        .map_err(|e| failed(format!("could not start: {e}"), Vec::new()))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::from(writer2));
    let spawned = cmd.spawn();
    // Drop our copies of the write end so the reader sees EOF when the child exits.
    drop(cmd);
    let mut child = spawned.map_err(|e| failed(format!("could not start: {e}"), Vec::new()))?;
    let mut tail = VecDeque::with_capacity(TAIL_LINES);
    pump(File::from(reader), &mut tail, quiet);
    let status: std::io::Result<ExitStatus> = child.wait();
    let tail = Vec::from(tail);
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(failed(s.to_string(), tail)),
        Err(e) => Err(failed(format!("could not wait: {e}"), tail)),
    }
}

fn pump(stream: File, tail: &mut VecDeque<String>, quiet: bool) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end_matches(['\n', '\r']);
        if !quiet {
            eprintln!("{line}");
        }
        // Progress bars redraw with \r: keep what was shown last.
        let shown = line
            .rsplit('\r')
            .next()
            .unwrap_or("")
            .trim_end()
            .to_string();
        if shown.is_empty() {
            continue;
        }
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(shown);
    }
}

/// Run `cmd` and return its stdout if it succeeds.
fn capture(mut cmd: Command) -> Option<String> {
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Written into each environment before it is published.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub format: u32,
    pub hash: String,
    pub python_version: String,
    pub base_python: PathBuf,
    pub installer: String,
    pub created: String,
}

/// The manifest of an environment built outside `ensure` (an image's), in the format
/// [`ensure`](crate::ensure) and [`open_prebuilt`](crate::open_prebuilt) read.
pub fn manifest_json(
    hash: &str,
    python_version: &str,
    base_python: &Path,
    installer: &str,
    created: &str,
) -> String {
    let m = Manifest {
        format: ENV_FORMAT_VERSION,
        hash: hash.to_string(),
        python_version: python_version.to_string(),
        base_python: base_python.to_path_buf(),
        installer: installer.to_string(),
        created: created.to_string(),
    };
    serde_json::to_string_pretty(&m).unwrap_or_default() + "\n"
}

/// Whether `root` holds the manifest of a finished environment for `hash`.
pub(crate) fn manifest_matches(root: &Path, hash: &str) -> bool {
    let Ok(text) = std::fs::read_to_string(root.join(MANIFEST_FILE)) else {
        return false;
    };
    serde_json::from_str::<Manifest>(&text)
        .is_ok_and(|m| m.hash == hash && m.format == ENV_FORMAT_VERSION)
}

/// Whether `root` is a finished environment for `hash` whose Python has ipykernel.
pub(crate) fn env_is_usable(root: &Path, hash: &str) -> bool {
    if !manifest_matches(root, hash) {
        return false;
    }
    let python = env_python(root);
    python.is_file()
        && Command::new(&python)
            .args([
                "-c",
                "import importlib.util, sys; \
                 sys.exit(0 if importlib.util.find_spec('ipykernel') else 1)",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// Exclusive advisory lock on `path`, waiting (with a note) if someone else holds it.
pub(crate) fn lock(path: &Path, quiet: bool) -> Result<Flock<File>, EnvError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| EnvError::io("opening lock file", path, e))?;
    let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => return Ok(lock),
        Err((file, Errno::EWOULDBLOCK)) => {
            if !quiet {
                eprintln!(
                    "nbpipe: waiting for another nbpipe building this environment ({})",
                    path.display()
                );
            }
            file
        }
        Err((_, errno)) => return Err(EnvError::io("locking", path, errno.into())),
    };
    loop {
        match Flock::lock(file, FlockArg::LockExclusive) {
            Ok(lock) => return Ok(lock),
            Err((f, Errno::EINTR)) => file = f,
            Err((_, errno)) => return Err(EnvError::io("locking", path, errno.into())),
        }
    }
}

/// A name unique to this process and call: `<pid><time><counter>` in hex.
pub(crate) fn nonce() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
        .unwrap_or(0);
    format!(
        "{:x}{:08x}{:x}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Point `envs/<hash>` at `envs/<built>` atomically.
pub(crate) fn publish(envs: &Path, hash: &str, built: &str) -> Result<(), EnvError> {
    let link = envs.join(hash);
    let tmp = envs.join(format!(".{hash}.link-{}", nonce()));
    std::os::unix::fs::symlink(built, &tmp)
        .map_err(|e| EnvError::io("creating symlink", &tmp, e))?;
    let mut result = std::fs::rename(&tmp, &link);
    if result.is_err() && link.is_dir() && !link.is_symlink() {
        // Someone left a real directory there: it is not one of ours, replace it.
        let _ = std::fs::remove_dir_all(&link);
        result = std::fs::rename(&tmp, &link);
    }
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        EnvError::io("publishing environment", &link, e)
    })
}

/// Remove builds of `hash` that `envs/<hash>` does not point to (failed,
/// interrupted or replaced ones), and stray temporary links. Call with the
/// hash's lock held.
pub(crate) fn remove_orphans(envs: &Path, hash: &str) {
    let current = std::fs::read_link(envs.join(hash))
        .ok()
        .and_then(|t| t.file_name().map(|n| n.to_os_string()));
    let Ok(entries) = std::fs::read_dir(envs) else {
        return;
    };
    let build_prefix = format!("{hash}-");
    let link_prefix = format!(".{hash}.link-");
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let name_str = name.to_string_lossy();
        if name_str.starts_with(&build_prefix) && Some(&name) != current.as_ref() {
            let _ = std::fs::remove_dir_all(entry.path());
        } else if name_str.starts_with(&link_prefix) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// What to build, and where.
pub(crate) struct BuildRequest<'a> {
    pub envs: &'a Path,
    pub hash: &'a str,
    pub python: &'a PythonInfo,
    pub requirements: Option<&'a Path>,
    pub cwd: &'a Path,
    pub quiet: bool,
}

/// Build a new environment for `hash` in `envs/<hash>-<nonce>` and publish it.
/// Call with the hash's lock held.
pub(crate) fn build_and_publish(
    req: &BuildRequest<'_>,
    installer: &dyn Installer,
) -> Result<(), EnvError> {
    remove_orphans(req.envs, req.hash);
    let built = format!("{}-{}", req.hash, nonce());
    let target = req.envs.join(&built);
    let result = (|| {
        installer.build(
            &req.python.executable,
            &target,
            req.requirements,
            req.cwd,
            req.quiet,
        )?;
        let freeze = installer.freeze(&env_python(&target)).unwrap_or_default();
        let freeze_path = target.join(FREEZE_FILE);
        std::fs::write(&freeze_path, freeze)
            .map_err(|e| EnvError::io("writing", &freeze_path, e))?;
        if let Some(req_path) = req.requirements {
            let copy = target.join(REQUIREMENTS_COPY);
            let _ = std::fs::copy(req_path, copy);
        }
        let manifest = Manifest {
            format: ENV_FORMAT_VERSION,
            hash: req.hash.to_string(),
            python_version: req.python.version.clone(),
            base_python: req.python.executable.clone(),
            installer: installer.name().to_string(),
            created: crate::now_rfc3339(),
        };
        let manifest_path = target.join(MANIFEST_FILE);
        let text = serde_json::to_string_pretty(&manifest).expect("manifest serializes");
        std::fs::write(&manifest_path, text + "\n")
            .map_err(|e| EnvError::io("writing", &manifest_path, e))?;
        publish(req.envs, req.hash, &built)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&target);
    }
    result?;
    remove_orphans(req.envs, req.hash);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_display_quotes() {
        let mut cmd = Command::new("uv");
        cmd.args(["pip", "install", "-r", "/a b/req.txt", "it's"]);
        assert_eq!(
            display_command(&cmd),
            r"uv pip install -r '/a b/req.txt' 'it'\''s'"
        );
    }

    #[test]
    fn requirements_listing_nothing_are_left_out_of_the_install() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.txt");
        std::fs::write(&empty, "# stdlib only\n\n   # still nothing\n").unwrap();
        assert_eq!(requirement_args(Some(&empty)), ["ipykernel"]);
        let some = dir.path().join("some.txt");
        std::fs::write(&some, "# data\npandas==2.*  # frames\n").unwrap();
        let args = requirement_args(Some(&some));
        assert_eq!(args.len(), 3);
        assert_eq!(args[0], "-r");
        let missing = dir.path().join("missing.txt");
        assert_eq!(
            requirement_args(Some(&missing)).len(),
            3,
            "the installer reports it"
        );
    }

    #[test]
    fn failed_step_keeps_last_lines() {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "for i in $(seq 1 30); do echo out$i; done; echo err >&2; exit 3",
        ]);
        let err = run_step("installing packages", cmd, true).unwrap_err();
        match &err {
            EnvError::InstallFailed {
                step,
                command,
                status,
                output_tail,
            } => {
                assert_eq!(step, "installing packages");
                assert!(command.starts_with("sh -c"), "{command}");
                assert!(status.contains('3'), "{status}");
                assert_eq!(output_tail.len(), TAIL_LINES);
                assert!(output_tail.contains(&"err".to_string()));
                assert!(output_tail.contains(&"out30".to_string()));
                assert!(!output_tail.contains(&"out5".to_string()));
            }
            other => panic!("unexpected {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains("installing packages failed"), "{msg}");
        assert!(msg.contains("out30"), "{msg}");

        let missing = run_step("x", Command::new("/nonexistent/tool"), true).unwrap_err();
        assert!(missing.to_string().contains("could not start"));
        let ok = Command::new("true");
        run_step("x", ok, true).unwrap();
    }

    #[test]
    fn probe_rejects_missing_interpreters() {
        assert!(matches!(
            probe_python("/nonexistent/python3"),
            Err(EnvError::NoPython { .. })
        ));
        assert!(matches!(
            probe_python("no-such-python-anywhere"),
            Err(EnvError::NoPython { .. })
        ));
        let err = probe_python("false").unwrap_err();
        assert!(err.to_string().contains("exited"), "{err}");
    }

    #[test]
    fn publish_replaces_atomically_and_orphans_go() {
        let tmp = tempfile::tempdir().unwrap();
        let envs = tmp.path();
        for name in ["h-1", "h-2", "h-3", "other-1"] {
            std::fs::create_dir_all(envs.join(name)).unwrap();
        }
        publish(envs, "h", "h-1").unwrap();
        assert_eq!(
            std::fs::read_link(envs.join("h")).unwrap(),
            PathBuf::from("h-1")
        );
        publish(envs, "h", "h-2").unwrap();
        assert_eq!(
            std::fs::read_link(envs.join("h")).unwrap(),
            PathBuf::from("h-2")
        );
        remove_orphans(envs, "h");
        assert!(!envs.join("h-1").exists());
        assert!(envs.join("h-2").is_dir());
        assert!(!envs.join("h-3").exists());
        assert!(envs.join("other-1").is_dir());
        // A real directory in the way is replaced.
        std::fs::create_dir_all(envs.join("g/inner")).unwrap();
        std::fs::create_dir_all(envs.join("g-1")).unwrap();
        publish(envs, "g", "g-1").unwrap();
        assert!(envs.join("g").is_symlink());
        let leftovers: Vec<_> = std::fs::read_dir(envs)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty());
    }
}
