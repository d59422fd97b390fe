//! Managed kernel environments: a virtualenv with a folder's `requirements.txt`
//! plus ipykernel, made with `uv` (or `python -m venv` + pip when uv is absent).
//!
//! - [`ensure`] makes (or reuses) the environment for a folder and writes the
//!   folder's marker `DIR/.nbpipe/env.json` ([`Marker`]).
//! - [`nearest`] finds the marker that applies to a notebook by walking up
//!   from its directory, and says whether the environment is [stale]
//!   (requirements changed since it was made).
//!
//! Environments are shared and cached by a hash of (requirements text, Python
//! version, [`ENV_FORMAT_VERSION`]) under `$NBPIPE_HOME/envs/<hash>`
//! ([`nbpipe_home`]). Each build happens in its own directory and is published
//! by atomically swapping a symlink, under a per-hash lock, so an interrupted
//! or concurrent build never leaves a half-made environment that looks valid.
//!
//! [stale]: ManagedEnv::stale
#![deny(missing_docs)]

mod build;
mod error;
mod hash;
mod known;
mod marker;

use std::path::{Path, PathBuf};

use nbpipe_kernel::spec::KernelSpec;

pub use build::{installer_available, manifest_json, FREEZE_FILE, MANIFEST_FILE};
pub use error::EnvError;
pub use hash::{compute_hash, ENV_FORMAT_VERSION};
pub use marker::{Marker, MARKER_DIR, MARKER_FILE};

use build::{BuildRequest, Installer};
use hash::RequirementsInput;

/// Options for [`ensure`].
#[derive(Debug, Clone, Default)]
pub struct EnvOptions {
    /// Interpreter to build from: a name looked up on `PATH` or a path
    /// (default `python3`).
    pub python: Option<String>,
    /// Requirements file (default `DIR/requirements.txt`; if that is missing the
    /// environment gets only ipykernel). Relative paths are relative to the
    /// current directory. A file given here must exist.
    pub requirements: Option<PathBuf>,
    /// Rebuild even if a usable environment with the same hash exists.
    pub force: bool,
    /// Do not echo installer output and progress notes to stderr.
    pub quiet: bool,
}

/// A usable managed environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedEnv {
    /// The environment's root, `$NBPIPE_HOME/envs/<hash>`.
    pub root: PathBuf,
    /// Its interpreter (`<root>/bin/python`).
    pub python: PathBuf,
    /// Its hash (16 hex digits).
    pub hash: String,
    /// `pip freeze` output recorded when it was built, if any.
    pub freeze: Option<String>,
    /// The folder's requirements no longer match the environment (they changed
    /// since `nbpipe env` ran); the environment still works but is out of date.
    /// Always `false` from [`ensure`].
    pub stale: bool,
}

impl ManagedEnv {
    /// The kernelspec that runs ipykernel in this environment.
    pub fn kernelspec(&self) -> KernelSpec {
        KernelSpec::for_python(&self.python)
    }

    fn at(root: PathBuf, hash: String, stale: bool) -> ManagedEnv {
        let python = build::env_python(&root);
        let freeze = std::fs::read_to_string(root.join(build::FREEZE_FILE)).ok();
        ManagedEnv {
            root,
            python,
            hash,
            freeze,
            stale,
        }
    }
}

/// Where nbpipe keeps its cache: `$NBPIPE_HOME`, else `$XDG_CACHE_HOME/nbpipe`,
/// else `~/.cache/nbpipe`. Environments live in its `envs/` folder.
pub fn nbpipe_home() -> Result<PathBuf, EnvError> {
    let non_empty = |key: &str| std::env::var_os(key).filter(|v| !v.is_empty());
    if let Some(home) = non_empty("NBPIPE_HOME") {
        return Ok(absolute(Path::new(&home)));
    }
    if let Some(xdg) = non_empty("XDG_CACHE_HOME").map(PathBuf::from) {
        if xdg.is_absolute() {
            return Ok(xdg.join("nbpipe"));
        }
    }
    dirs::home_dir()
        .map(|h| h.join(".cache").join("nbpipe"))
        .ok_or(EnvError::NoHome)
}

/// Where running zygotes (fork servers) of managed environments are advertised for other
/// nbpipe processes of this user: `$NBPIPE_ZYGOTES`, else `$NBPIPE_HOME/zygotes` (see
/// `nbpipe_kernel::fork`).
pub fn zygote_registry() -> Result<PathBuf, EnvError> {
    match std::env::var_os("NBPIPE_ZYGOTES").filter(|v| !v.is_empty()) {
        Some(dir) => Ok(absolute(Path::new(&dir))),
        None => Ok(nbpipe_home()?.join("zygotes")),
    }
}

/// Make or reuse the managed environment for folder `dir` and record it in
/// `dir/.nbpipe/env.json`. Environments live under [`nbpipe_home`].
pub fn ensure(dir: &Path, opts: &EnvOptions) -> Result<ManagedEnv, EnvError> {
    ensure_in(&nbpipe_home()?, dir, opts)
}

/// The environment [`ensure`] gave folder `dir` last time (its `.nbpipe/env.json`), as
/// `(interpreter, hash)`, when that interpreter still exists: a guess, never an answer.
///
/// `ensure` may have to run the base interpreter to learn its version — a launcher script
/// such as a pyenv shim is asked every time (~0.1 s) — before it knows the environment. A
/// caller can start slow work on the guess meanwhile (`nbpipe run` starts the zygote) and
/// must drop it when `ensure` answers otherwise. Never starts a process.
pub fn predicted(dir: &Path) -> Option<(PathBuf, String)> {
    let folder = std::fs::canonicalize(dir).ok()?;
    let marker = Marker::read(&folder).ok()??;
    let python = build::env_python(&marker.env_path);
    (marker.format == ENV_FORMAT_VERSION && python.is_file()).then_some((python, marker.hash))
}

/// [`ensure`] with an explicit cache home (environments go to `home/envs/`).
pub fn ensure_in(home: &Path, dir: &Path, opts: &EnvOptions) -> Result<ManagedEnv, EnvError> {
    let installer = build::default_installer();
    ensure_with(home, dir, opts, installer.as_ref())
}

fn ensure_with(
    home: &Path,
    dir: &Path,
    opts: &EnvOptions,
    installer: &dyn Installer,
) -> Result<ManagedEnv, EnvError> {
    if !dir.is_dir() {
        return Err(EnvError::NotADirectory {
            path: dir.to_path_buf(),
        });
    }
    let folder = std::fs::canonicalize(dir).map_err(|e| EnvError::io("resolving", dir, e))?;

    let (req_path, explicit) = match &opts.requirements {
        Some(p) => (absolute(p), true),
        None => (folder.join("requirements.txt"), false),
    };
    let req_exists = req_path.is_file();
    if explicit && !req_exists {
        return Err(EnvError::Requirements {
            path: req_path,
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "file not found"),
        });
    }
    let requirements = req_exists.then_some(req_path.as_path());
    let input = RequirementsInput::read(requirements)?;

    let python = known::probe_python(home, opts.python.as_deref().unwrap_or("python3"))?;
    let hash = hash::env_hash(&input, &python.version);

    let envs = home.join("envs");
    std::fs::create_dir_all(&envs).map_err(|e| EnvError::io("creating directory", &envs, e))?;
    let root = envs.join(&hash);
    let _lock = build::lock(&envs.join(format!("{hash}.lock")), opts.quiet)?;

    if !opts.force && known::env_is_usable(home, &root, &hash) {
        note(
            opts.quiet,
            format_args!("using environment {}", root.display()),
        );
    } else {
        let what = match requirements {
            Some(p) if !input.is_empty() => format!("{} + ipykernel", p.display()),
            _ => "ipykernel".to_string(),
        };
        note(
            opts.quiet,
            format_args!(
                "building environment {} ({what}, {}) with {}",
                root.display(),
                python.version,
                installer.name()
            ),
        );
        let cwd = requirements.and_then(Path::parent).unwrap_or(&folder);
        build::build_and_publish(
            &BuildRequest {
                envs: &envs,
                hash: &hash,
                python: &python,
                requirements,
                cwd,
                quiet: opts.quiet,
            },
            installer,
        )?;
        note(
            opts.quiet,
            format_args!("environment ready: {}", root.display()),
        );
    }

    let env = ManagedEnv::at(root, hash, false);
    Marker {
        hash: env.hash.clone(),
        env_path: env.root.clone(),
        python: env.python.clone(),
        python_version: python.version,
        requirements: marker::relative_to(&folder, &req_path),
        created: now_rfc3339(),
        format: ENV_FORMAT_VERSION,
    }
    .write(&folder)?;
    Ok(env)
}

/// The environment variable naming a prebuilt environment that `nbpipe run` uses instead of
/// building one (set in nbpipe's images, whose environment was installed at build time).
pub const PREBUILT_ENV_VAR: &str = "NBPIPE_KERNEL_ENV";

/// Open an environment built elsewhere (by `nbpipe image build`) at `root`: it must hold
/// `nbpipe-env.json` (its hash) and `bin/python`. Its `pip freeze` is read when recorded.
pub fn open_prebuilt(root: &Path) -> Result<ManagedEnv, EnvError> {
    let bad = |reason: String| EnvError::BadPrebuilt {
        root: root.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(root.join(MANIFEST_FILE))
        .map_err(|e| bad(format!("cannot read {MANIFEST_FILE}: {e}")))?;
    let manifest: build::Manifest = serde_json::from_str(&text).map_err(|e| {
        bad(format!(
            "{MANIFEST_FILE} is not an environment manifest: {e}"
        ))
    })?;
    let env = ManagedEnv::at(root.to_path_buf(), manifest.hash, false);
    if !env.python.exists() {
        return Err(bad(format!("{} does not exist", env.python.display())));
    }
    Ok(env)
}

/// Find the managed environment that applies to `start` (a notebook's
/// directory, or the notebook itself): the nearest `.nbpipe/env.json` in
/// `start` or its ancestors.
///
/// - `Ok(None)`: no marker anywhere up the tree.
/// - `Ok(Some((folder, env)))`: the folder holding the marker and its
///   environment; `env.stale` is true if the folder's requirements changed
///   since the environment was made (suggest `nbpipe env`).
/// - [`EnvError::MissingEnv`]: there is a marker but its environment is gone
///   (e.g. the cache was cleared) — running with some other kernel instead
///   would silently ignore the folder's requirements, so this is an error.
/// - [`EnvError::BadMarker`]: the marker is unreadable JSON.
pub fn nearest(start: &Path) -> Result<Option<(PathBuf, ManagedEnv)>, EnvError> {
    let start = std::fs::canonicalize(start).unwrap_or_else(|_| absolute(start));
    let start = if start.is_file() {
        start.parent().map(Path::to_path_buf).unwrap_or(start)
    } else {
        start
    };
    for folder in start.ancestors() {
        if !Marker::path_for(folder).is_file() {
            continue;
        }
        let Some(marker) = Marker::read(folder)? else {
            continue;
        };
        return resolve(folder, marker).map(|env| Some((folder.to_path_buf(), env)));
    }
    Ok(None)
}

fn resolve(folder: &Path, marker: Marker) -> Result<ManagedEnv, EnvError> {
    if !build::env_python(&marker.env_path).is_file() {
        return Err(EnvError::MissingEnv {
            folder: folder.to_path_buf(),
            marker: Marker::path_for(folder),
            env_path: marker.env_path,
        });
    }
    let req = marker.requirements_path(folder);
    let input = RequirementsInput::read(req.is_file().then_some(req.as_path()))?;
    let current = hash::env_hash(&input, &marker.python_version);
    let stale = current != marker.hash || marker.format != ENV_FORMAT_VERSION;
    Ok(ManagedEnv::at(marker.env_path, marker.hash, stale))
}

fn note(quiet: bool, msg: std::fmt::Arguments<'_>) {
    if !quiet {
        eprintln!("nbpipe: {msg}");
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn script(path: &Path, body: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// A stand-in Python that answers the version probe.
    fn fake_python(dir: &Path, version: &str) -> String {
        let p = dir.join(format!("fake-python-{version}"));
        script(&p, &format!("echo {}\necho {version}", p.display()));
        p.to_string_lossy().into_owned()
    }

    /// Builds "environments" whose python just exits 0, counting builds.
    struct FakeInstaller {
        builds: AtomicUsize,
        fail: bool,
        delay: Duration,
    }

    impl FakeInstaller {
        fn new() -> Self {
            FakeInstaller {
                builds: AtomicUsize::new(0),
                fail: false,
                delay: Duration::ZERO,
            }
        }
    }

    impl Installer for FakeInstaller {
        fn name(&self) -> &'static str {
            "fake"
        }
        fn build(
            &self,
            _base: &Path,
            target: &Path,
            _requirements: Option<&Path>,
            _cwd: &Path,
            _quiet: bool,
        ) -> Result<(), EnvError> {
            self.builds.fetch_add(1, Ordering::SeqCst);
            fs::create_dir_all(target).unwrap();
            fs::write(target.join("pyvenv.cfg"), "").unwrap();
            std::thread::sleep(self.delay);
            if self.fail {
                return Err(EnvError::InstallFailed {
                    step: "installing packages".into(),
                    command: "fake".into(),
                    status: "exit status: 1".into(),
                    output_tail: vec!["boom".into()],
                });
            }
            script(&build::env_python(target), "exit 0");
            Ok(())
        }
        fn freeze(&self, _python: &Path) -> Option<String> {
            Some("six==1.16.0\n".into())
        }
    }

    struct Setup {
        _tmp: tempfile::TempDir,
        home: PathBuf,
        folder: PathBuf,
        opts: EnvOptions,
    }

    fn setup() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let folder = tmp.path().join("project");
        fs::create_dir_all(&folder).unwrap();
        fs::write(folder.join("requirements.txt"), "six\n").unwrap();
        let opts = EnvOptions {
            python: Some(fake_python(tmp.path(), "cpython-3.11.7-x86_64")),
            quiet: true,
            ..Default::default()
        };
        Setup {
            folder: fs::canonicalize(&folder).unwrap(),
            _tmp: tmp,
            home,
            opts,
        }
    }

    #[test]
    fn ensure_builds_once_then_reuses() {
        let s = setup();
        let fake = FakeInstaller::new();
        let env = ensure_with(&s.home, &s.folder, &s.opts, &fake).unwrap();
        assert_eq!(env.root, s.home.join("envs").join(&env.hash));
        assert_eq!(env.python, env.root.join("bin/python"));
        assert_eq!(env.freeze.as_deref(), Some("six==1.16.0\n"));
        assert!(!env.stale);
        assert!(env.root.is_symlink());
        assert_eq!(env.kernelspec(), KernelSpec::for_python(&env.python));
        let again = ensure_with(&s.home, &s.folder, &s.opts, &fake).unwrap();
        assert_eq!(again, env);
        assert_eq!(fake.builds.load(Ordering::SeqCst), 1);

        let marker = Marker::read(&s.folder).unwrap().unwrap();
        assert_eq!(marker.hash, env.hash);
        assert_eq!(marker.env_path, env.root);
        assert_eq!(marker.requirements, PathBuf::from("requirements.txt"));
        assert_eq!(marker.python_version, "cpython-3.11.7-x86_64");

        // force rebuilds into a new directory and drops the old one.
        let target_before = fs::read_link(&env.root).unwrap();
        let forced = EnvOptions {
            force: true,
            ..s.opts.clone()
        };
        let rebuilt = ensure_with(&s.home, &s.folder, &forced, &fake).unwrap();
        assert_eq!(rebuilt.root, env.root);
        assert_eq!(fake.builds.load(Ordering::SeqCst), 2);
        assert_ne!(fs::read_link(&env.root).unwrap(), target_before);
        assert!(!s.home.join("envs").join(target_before).exists());
    }

    #[test]
    fn hash_follows_requirements_and_python() {
        let s = setup();
        let fake = FakeInstaller::new();
        let first = ensure_with(&s.home, &s.folder, &s.opts, &fake).unwrap();
        fs::write(s.folder.join("requirements.txt"), "six==1.16.0\n").unwrap();
        let second = ensure_with(&s.home, &s.folder, &s.opts, &fake).unwrap();
        assert_ne!(first.hash, second.hash);
        let other_python = EnvOptions {
            python: Some(fake_python(
                s.folder.parent().unwrap(),
                "cpython-3.12.1-x86_64",
            )),
            ..s.opts.clone()
        };
        let third = ensure_with(&s.home, &s.folder, &other_python, &fake).unwrap();
        assert_ne!(second.hash, third.hash);
        // Another folder with the same requirements shares the environment.
        let other = s.folder.parent().unwrap().join("other");
        fs::create_dir_all(&other).unwrap();
        fs::write(other.join("requirements.txt"), "six==1.16.0\n").unwrap();
        let shared = ensure_with(&s.home, &other, &s.opts, &fake).unwrap();
        assert_eq!(shared.root, second.root);
        assert_eq!(fake.builds.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn missing_requirements() {
        let s = setup();
        let fake = FakeInstaller::new();
        fs::remove_file(s.folder.join("requirements.txt")).unwrap();
        let env = ensure_with(&s.home, &s.folder, &s.opts, &fake).unwrap();
        assert!(env.python.is_file());
        let explicit = EnvOptions {
            requirements: Some(s.folder.join("nope.txt")),
            ..s.opts.clone()
        };
        let err = ensure_with(&s.home, &s.folder, &explicit, &fake).unwrap_err();
        assert!(matches!(err, EnvError::Requirements { .. }), "{err:?}");
        let err = ensure_with(&s.home, &s.folder.join("nodir"), &s.opts, &fake).unwrap_err();
        assert!(matches!(err, EnvError::NotADirectory { .. }), "{err:?}");
    }

    #[test]
    fn failed_build_leaves_nothing_that_looks_valid() {
        let s = setup();
        let failing = FakeInstaller {
            fail: true,
            ..FakeInstaller::new()
        };
        let err = ensure_with(&s.home, &s.folder, &s.opts, &failing).unwrap_err();
        assert!(err.to_string().contains("boom"), "{err}");
        let envs = s.home.join("envs");
        let dirs: Vec<_> = fs::read_dir(&envs)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".lock"))
            .collect();
        assert!(dirs.is_empty(), "{dirs:?}");
        assert_eq!(Marker::read(&s.folder).unwrap(), None);

        // An interrupted build (directory left, never published) is cleaned up.
        let ok = FakeInstaller::new();
        let env = ensure_with(&s.home, &s.folder, &s.opts, &ok).unwrap();
        let orphan = envs.join(format!("{}-dead", env.hash));
        fs::create_dir_all(&orphan).unwrap();
        let forced = EnvOptions {
            force: true,
            ..s.opts.clone()
        };
        ensure_with(&s.home, &s.folder, &forced, &ok).unwrap();
        assert!(!orphan.exists());
    }

    #[test]
    fn concurrent_builders_build_once() {
        let s = setup();
        let fake = FakeInstaller {
            delay: Duration::from_millis(200),
            ..FakeInstaller::new()
        };
        let envs: Vec<ManagedEnv> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| ensure_with(&s.home, &s.folder, &s.opts, &fake).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(fake.builds.load(Ordering::SeqCst), 1);
        assert!(envs.iter().all(|e| e.root == envs[0].root));
        let builds = fs::read_dir(s.home.join("envs"))
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy()
                    .starts_with(&format!("{}-", envs[0].hash))
            })
            .count();
        assert_eq!(builds, 1);
    }

    #[test]
    fn nearest_walks_up_and_reports_staleness() {
        let s = setup();
        let fake = FakeInstaller::new();
        let nested = s.folder.join("a/b");
        fs::create_dir_all(&nested).unwrap();
        let notebook = nested.join("nb.ipynb");
        fs::write(&notebook, "{}").unwrap();
        assert_eq!(nearest(&nested).unwrap(), None);

        let env = ensure_with(&s.home, &s.folder, &s.opts, &fake).unwrap();
        let (folder, found) = nearest(&nested).unwrap().unwrap();
        assert_eq!(folder, s.folder);
        assert_eq!(found, env);
        assert_eq!(nearest(&notebook).unwrap().unwrap().1, env);

        fs::write(s.folder.join("requirements.txt"), "six\nattrs\n").unwrap();
        assert!(nearest(&nested).unwrap().unwrap().1.stale);
        fs::write(s.folder.join("requirements.txt"), "six\n").unwrap();
        assert!(!nearest(&nested).unwrap().unwrap().1.stale);
        fs::remove_file(s.folder.join("requirements.txt")).unwrap();
        assert!(nearest(&nested).unwrap().unwrap().1.stale);

        // A nearer marker wins.
        fs::write(nested.join("requirements.txt"), "six\n").unwrap();
        let inner = ensure_with(&s.home, &nested, &s.opts, &fake).unwrap();
        let (folder, found) = nearest(&notebook).unwrap().unwrap();
        assert_eq!(folder, nested);
        assert_eq!(found.root, inner.root);

        // The environment vanishing is a typed error naming the fix.
        fs::remove_dir_all(s.home.join("envs")).unwrap();
        let err = nearest(&notebook).unwrap_err();
        assert!(matches!(err, EnvError::MissingEnv { .. }), "{err:?}");
        assert!(err.to_string().contains("nbpipe env"), "{err}");
    }

    #[test]
    fn unusable_env_is_rebuilt() {
        let s = setup();
        let fake = FakeInstaller::new();
        let env = ensure_with(&s.home, &s.folder, &s.opts, &fake).unwrap();
        // The interpreter stops working (e.g. base Python removed).
        script(&env.python, "exit 1");
        let again = ensure_with(&s.home, &s.folder, &s.opts, &fake).unwrap();
        assert_eq!(again.root, env.root);
        assert_eq!(fake.builds.load(Ordering::SeqCst), 2);
    }
}
