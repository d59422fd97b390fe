//! Kernelspec discovery, the way Jupyter does it.
//!
//! This module owns everything between "the notebook wants kernel `X`" and
//! "this is the argv to start": the Jupyter data-path search order
//! ([`kernel_dirs`]), reading and validating `kernel.json` ([`load`]),
//! listing and looking up kernelspecs ([`find_all`], [`find`],
//! [`find_for_language`]), and turning a spec into a command line
//! ([`KernelSpec::command`]), including Jupyter's rule that a bare `python`
//! in a spec's argv means "the Python this spec belongs to".
//!
//! The search order follows `jupyter_core.paths.jupyter_path("kernels")`:
//!
//! 1. every entry of `$JUPYTER_PATH` (split like `$PATH`);
//! 2. the user data dir (`$JUPYTER_DATA_DIR`, else `$XDG_DATA_HOME/jupyter`,
//!    else `~/.local/share/jupyter`; `~/Library/Jupyter` on macOS) plus the
//!    Python user base (`$PYTHONUSERBASE` or `~/.local`) `share/jupyter`;
//! 3. the active environment's `share/jupyter` (`$VIRTUAL_ENV`, the prefix of
//!    the `python3` on `PATH`, `$CONDA_PREFIX`) — placed *before* the user
//!    dirs when `$JUPYTER_PREFER_ENV_PATH` says so, or when it is unset and
//!    the environment is a virtualenv / non-base conda env owned by the user;
//! 4. `/usr/local/share/jupyter` and `/usr/share/jupyter`;
//!
//! each with `kernels` appended, followed by IPython's legacy
//! `$IPYTHONDIR/kernels` (`~/.ipython/kernels`). The first directory holding a
//! name wins; names are compared lowercased.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

/// File name of a kernelspec inside its resource directory.
const KERNEL_JSON: &str = "kernel.json";

/// Name Jupyter gives the IPython kernel it can always provide.
const NATIVE_KERNEL_NAME: &str = "python3";

/// How a kernel wants to be interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InterruptMode {
    /// Send SIGINT to the kernel process (Jupyter's default).
    #[default]
    Signal,
    /// Send an `interrupt_request` on the control channel.
    Message,
}

/// One kernelspec: a parsed `kernel.json` plus where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelSpec {
    /// Kernel name (its directory name, lowercased).
    pub name: String,
    /// Directory holding `kernel.json` and the spec's resources; `None` for
    /// specs made in code ([`KernelSpec::for_python`]).
    pub resource_dir: Option<PathBuf>,
    /// Command template; may contain `{connection_file}`, `{resource_dir}`.
    pub argv: Vec<String>,
    /// Human-readable name.
    pub display_name: String,
    /// Language of the kernel, as written in the spec (e.g. `python`).
    pub language: String,
    /// How to interrupt the kernel.
    pub interrupt_mode: InterruptMode,
    /// Extra environment variables for the kernel process.
    pub env: BTreeMap<String, String>,
    /// Free-form `metadata` object of the spec (`{}` when absent).
    pub metadata: Value,
}

/// Errors from kernelspec discovery and loading.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// No kernelspec with this name exists in any searched directory.
    #[error("{}", not_found_message(.name, .available))]
    NotFound {
        /// The requested name.
        name: String,
        /// Names of the kernelspecs that were found.
        available: Vec<String>,
    },
    /// No kernelspec declares this language.
    #[error("{}", no_language_message(.language, .available))]
    NoKernelForLanguage {
        /// The requested language.
        language: String,
        /// Found kernelspecs, as `name (language)`.
        available: Vec<String>,
    },
    /// A `kernel.json` could not be read or does not describe a kernel.
    #[error("invalid kernelspec {}: {reason}", .path.display())]
    Invalid {
        /// Path of the offending `kernel.json`.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

fn not_found_message(name: &str, available: &[String]) -> String {
    let listed = if available.is_empty() {
        "no kernelspecs are installed".to_string()
    } else {
        format!("available kernels: {}", available.join(", "))
    };
    format!(
        "no such kernel named {name:?} ({listed}). Create a managed environment for the \
         notebook's folder with `nbpipe env`, or register a kernel with \
         `python -m ipykernel install --user --name {name}`"
    )
}

fn no_language_message(language: &str, available: &[String]) -> String {
    let listed = if available.is_empty() {
        "no kernelspecs are installed".to_string()
    } else {
        format!("available kernels: {}", available.join(", "))
    };
    format!(
        "no kernel found for language {language:?} ({listed}). Pass a kernel name with -k, \
         create a managed environment with `nbpipe env`, or register a kernel with \
         `python -m ipykernel install --user`"
    )
}

/// Result of a full discovery: the usable specs and the ones that were skipped.
#[derive(Debug, Default)]
pub struct Discovery {
    /// Usable kernelspecs, in priority order (search-path order, then by name).
    pub specs: Vec<KernelSpec>,
    /// Kernelspecs that were skipped because their `kernel.json` is invalid
    /// (always [`SpecError::Invalid`]).
    pub warnings: Vec<SpecError>,
}

/// Directories searched for kernelspecs, highest priority first.
pub fn kernel_dirs() -> Vec<PathBuf> {
    SearchEnv::from_process().kernel_dirs()
}

/// All usable kernelspecs; invalid ones are skipped (see [`discover`] for them).
pub fn find_all() -> Vec<KernelSpec> {
    discover().specs
}

/// All kernelspecs in Jupyter's search path, plus the invalid ones skipped.
pub fn discover() -> Discovery {
    let search = SearchEnv::from_process();
    let mut found = discover_in(&search.kernel_dirs());
    if !found.specs.iter().any(|s| s.name == NATIVE_KERNEL_NAME)
        && !found
            .warnings
            .iter()
            .any(|w| is_spec_named(w, NATIVE_KERNEL_NAME))
    {
        if let Some(native) = search.native_kernel() {
            found.specs.push(native);
        }
    }
    found
}

/// Kernelspecs found in `dirs` (highest priority first).
///
/// A name is taken from the first directory that has it, even if that copy is
/// invalid (the invalid copy is reported in [`Discovery::warnings`]), as
/// Jupyter does.
pub fn discover_in(dirs: &[PathBuf]) -> Discovery {
    let mut seen = HashSet::new();
    let mut out = Discovery::default();
    for dir in dirs {
        for (key, path) in list_kernels_in(dir) {
            if !seen.insert(key) {
                continue;
            }
            match load(&path) {
                Ok(spec) => out.specs.push(spec),
                Err(err) => out.warnings.push(err),
            }
        }
    }
    out
}

/// Find the kernelspec called `name` (case-insensitive). `python` means `python3`, as in
/// jupyter_client's kernel manager (notebooks written by old tools name their kernel so).
pub fn find(name: &str) -> Result<KernelSpec, SpecError> {
    let name = if name == "python" {
        NATIVE_KERNEL_NAME
    } else {
        name
    };
    let search = SearchEnv::from_process();
    let dirs = search.kernel_dirs();
    match find_in(name, &dirs) {
        Err(SpecError::NotFound { .. }) if name.eq_ignore_ascii_case(NATIVE_KERNEL_NAME) => {
            if let Some(native) = search.native_kernel() {
                return Ok(native);
            }
            Err(SpecError::NotFound {
                name: name.to_string(),
                available: discover().specs.into_iter().map(|s| s.name).collect(),
            })
        }
        other => other,
    }
}

/// Find the kernelspec called `name` (case-insensitive) in `dirs`.
pub fn find_in(name: &str, dirs: &[PathBuf]) -> Result<KernelSpec, SpecError> {
    let key = name.to_lowercase();
    for dir in dirs {
        if let Some((_, path)) = list_kernels_in(dir).into_iter().find(|(k, _)| *k == key) {
            return load(&path);
        }
    }
    Err(SpecError::NotFound {
        name: name.to_string(),
        available: discover_in(dirs)
            .specs
            .into_iter()
            .map(|s| s.name)
            .collect(),
    })
}

/// The first kernelspec (in priority order) whose language is `lang`
/// (case-insensitive), as papermill's `-l/--language` uses it.
pub fn find_for_language(lang: &str) -> Result<KernelSpec, SpecError> {
    pick_language(lang, discover().specs)
}

/// [`find_for_language`] restricted to `dirs`.
pub fn find_for_language_in(lang: &str, dirs: &[PathBuf]) -> Result<KernelSpec, SpecError> {
    pick_language(lang, discover_in(dirs).specs)
}

fn pick_language(lang: &str, specs: Vec<KernelSpec>) -> Result<KernelSpec, SpecError> {
    let wanted = lang.trim();
    let available = specs
        .iter()
        .map(|s| format!("{} ({})", s.name, s.language))
        .collect();
    specs
        .into_iter()
        .find(|s| s.language.trim().eq_ignore_ascii_case(wanted))
        .ok_or(SpecError::NoKernelForLanguage {
            language: lang.to_string(),
            available,
        })
}

fn is_spec_named(err: &SpecError, name: &str) -> bool {
    match err {
        SpecError::Invalid { path, .. } => path
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|n| n.to_string_lossy().eq_ignore_ascii_case(name)),
        _ => false,
    }
}

/// Kernel directories inside `dir`: `(lowercased name, path)`, sorted by name.
fn list_kernels_in(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let path = entry.path();
            if !path.is_dir() || !path.join(KERNEL_JSON).is_file() {
                return None;
            }
            let key = entry.file_name().to_string_lossy().to_lowercase();
            Some((key, path))
        })
        .collect();
    out.sort();
    out.dedup_by(|later, earlier| later.0 == earlier.0);
    out
}

/// Load the kernelspec in resource directory `dir` (the one holding `kernel.json`).
pub fn load(dir: &Path) -> Result<KernelSpec, SpecError> {
    let path = dir.join(KERNEL_JSON);
    let invalid = |reason: String| SpecError::Invalid {
        path: path.clone(),
        reason,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| invalid(e.to_string()))?;
    let value: Value =
        serde_json::from_str(&text).map_err(|e| invalid(format!("not valid JSON: {e}")))?;
    let Value::Object(mut obj) = value else {
        return Err(invalid("top level is not a JSON object".into()));
    };

    let argv = match obj.remove("argv") {
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                other => Err(invalid(format!("argv entry {other} is not a string"))),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(invalid("\"argv\" is not a list of strings".into())),
        None => return Err(invalid("missing \"argv\"".into())),
    };
    if argv.is_empty() {
        return Err(invalid("\"argv\" is empty".into()));
    }

    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let mut string_field = |key: &str| -> Result<Option<String>, SpecError> {
        match obj.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(invalid(format!("\"{key}\" is not a string: {other}"))),
        }
    };
    let display_name = string_field("display_name")?.unwrap_or_else(|| name.clone());
    let language = string_field("language")?.unwrap_or_default();
    let interrupt_mode = match string_field("interrupt_mode")? {
        None => InterruptMode::Signal,
        Some(mode) if mode.eq_ignore_ascii_case("signal") => InterruptMode::Signal,
        Some(mode) if mode.eq_ignore_ascii_case("message") => InterruptMode::Message,
        Some(mode) => {
            return Err(invalid(format!(
                "\"interrupt_mode\" must be \"signal\" or \"message\", not {mode:?}"
            )))
        }
    };

    let env = match obj.remove("env") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(map)) => map
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k, s)),
                other => Err(invalid(format!(
                    "env value for {k:?} is not a string: {other}"
                ))),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(invalid(format!("\"env\" is not an object: {other}"))),
    };
    let metadata = match obj.remove("metadata") {
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(m @ Value::Object(_)) => m,
        Some(other) => return Err(invalid(format!("\"metadata\" is not an object: {other}"))),
    };

    Ok(KernelSpec {
        name,
        resource_dir: Some(dir.to_path_buf()),
        argv,
        display_name,
        language,
        interrupt_mode,
        env,
        metadata,
    })
}

impl KernelSpec {
    /// The command to start this kernel.
    ///
    /// `{connection_file}`, `{resource_dir}` and `{prefix}` (the environment
    /// prefix the spec is installed in) are substituted; unknown `{...}` are
    /// left alone. A leading bare `python`, `python3` or `python3.X` is
    /// resolved to the interpreter of the prefix the spec lives in
    /// (`<prefix>/share/jupyter/kernels/NAME` → `<prefix>/bin/python`), else to
    /// the `python3` on `PATH` — so a venv's spec starts the venv's Python
    /// (the one that has ipykernel), not whatever `python` is first on `PATH`.
    pub fn command(&self, connection_file: &Path) -> Vec<String> {
        let connection_file = std::fs::canonicalize(connection_file)
            .unwrap_or_else(|_| connection_file.to_path_buf());
        let prefix = self.resource_dir.as_deref().and_then(spec_prefix);
        let mut ns: HashMap<&str, String> = HashMap::new();
        ns.insert(
            "connection_file",
            connection_file.to_string_lossy().into_owned(),
        );
        if let Some(dir) = &self.resource_dir {
            ns.insert("resource_dir", dir.to_string_lossy().into_owned());
        }
        if let Some(prefix) = &prefix {
            ns.insert("prefix", prefix.to_string_lossy().into_owned());
        }

        let mut argv: Vec<String> = self.argv.iter().map(|a| substitute(a, &ns)).collect();
        if let Some(first) = argv.first_mut() {
            if is_bare_python(first) {
                *first = resolve_python(first, prefix.as_deref());
            }
        }
        argv
    }

    /// A spec that runs ipykernel with a specific interpreter (a managed env).
    pub fn for_python(python: &Path) -> KernelSpec {
        KernelSpec {
            name: NATIVE_KERNEL_NAME.to_string(),
            resource_dir: None,
            argv: vec![
                python.to_string_lossy().into_owned(),
                "-m".into(),
                "ipykernel_launcher".into(),
                "-f".into(),
                "{connection_file}".into(),
            ],
            display_name: "Python 3 (ipykernel)".into(),
            language: "python".into(),
            interrupt_mode: InterruptMode::Signal,
            env: BTreeMap::new(),
            metadata: Value::Object(Default::default()),
        }
    }
}

/// Replace `{name}` (name = `[A-Za-z0-9_]+`) found in `ns`; leave others as is.
fn substitute(arg: &str, ns: &HashMap<&str, String>) -> String {
    let mut out = String::with_capacity(arg.len());
    let mut rest = arg;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let key_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let key = &after[..key_len];
        if key_len > 0 && after[key_len..].starts_with('}') {
            if let Some(value) = ns.get(key) {
                out.push_str(value);
                rest = &after[key_len + 1..];
                continue;
            }
        }
        out.push('{');
        rest = after;
    }
    out.push_str(rest);
    out
}

/// `python`, `python3`, `python3.X` with no directory part.
fn is_bare_python(arg: &str) -> bool {
    let Some(rest) = arg.strip_prefix("python") else {
        return false;
    };
    match rest {
        "" | "3" => true,
        _ => rest
            .strip_prefix("3.")
            .is_some_and(|minor| !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit())),
    }
}

/// `<prefix>` for a resource dir `<prefix>/share/jupyter/kernels/NAME`.
fn spec_prefix(resource_dir: &Path) -> Option<PathBuf> {
    let kernels = resource_dir.parent()?;
    let jupyter = kernels.parent()?;
    let share = jupyter.parent()?;
    let names_match = kernels.file_name()? == "kernels"
        && jupyter.file_name()?.eq_ignore_ascii_case("jupyter")
        && share.file_name()? == "share";
    names_match.then(|| share.parent().map(Path::to_path_buf))?
}

fn bin_dir(prefix: &Path) -> PathBuf {
    if cfg!(windows) {
        prefix.join("Scripts")
    } else {
        prefix.join("bin")
    }
}

fn resolve_python(name: &str, prefix: Option<&Path>) -> String {
    if let Some(prefix) = prefix {
        let bin = bin_dir(prefix);
        for candidate in [name, "python3", "python"] {
            let path = bin.join(exe_name(candidate));
            if is_executable(&path) {
                return path.to_string_lossy().into_owned();
            }
        }
    }
    let on_path = match name {
        "python" => None,
        other => which(other),
    };
    on_path
        .or_else(|| which("python3"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| name.to_string())
}

fn exe_name(name: &str) -> String {
    if cfg!(windows) {
        format!("{name}.exe")
    } else {
        name.to_string()
    }
}

fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}

/// First `name` on `PATH` that is an executable file.
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let exe = exe_name(name);
    std::env::split_paths(&path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(&exe))
        .find(|candidate| is_executable(candidate))
}

/// Jupyter's `envset`: set and not one of no/n/false/off/0/0.0.
fn truthy(value: &OsStr) -> bool {
    let v = value.to_string_lossy().to_lowercase();
    !matches!(v.as_str(), "no" | "n" | "false" | "off" | "0" | "0.0")
}

/// Everything the search path depends on, captured so it can be tested
/// without touching the process environment.
#[derive(Debug, Clone, Default)]
struct SearchEnv {
    vars: HashMap<String, OsString>,
    home: Option<PathBuf>,
    /// Active Python environment prefixes, primary (`sys.prefix`-like) first.
    prefixes: Vec<PathBuf>,
}

const RELEVANT_VARS: &[&str] = &[
    "JUPYTER_PATH",
    "JUPYTER_DATA_DIR",
    "JUPYTER_PREFER_ENV_PATH",
    "JUPYTER_PLATFORM_DIRS",
    "XDG_DATA_HOME",
    "XDG_DATA_DIRS",
    "APPDATA",
    "PYTHONUSERBASE",
    "PYTHONNOUSERSITE",
    "IPYTHONDIR",
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
    "CONDA_DEFAULT_ENV",
];

impl SearchEnv {
    fn from_process() -> SearchEnv {
        let vars: HashMap<String, OsString> = RELEVANT_VARS
            .iter()
            .filter_map(|k| std::env::var_os(k).map(|v| (k.to_string(), v)))
            .collect();
        let home = dirs::home_dir().map(|h| std::fs::canonicalize(&h).unwrap_or(h));
        let mut prefixes = Vec::new();
        let mut push = |p: PathBuf| {
            if !prefixes.contains(&p) {
                prefixes.push(p);
            }
        };
        if let Some(venv) = vars.get("VIRTUAL_ENV").filter(|v| !v.is_empty()) {
            push(PathBuf::from(venv));
        }
        if let Some(prefix) = python_prefix_on_path() {
            push(prefix);
        }
        if let Some(conda) = vars.get("CONDA_PREFIX").filter(|v| !v.is_empty()) {
            push(PathBuf::from(conda));
        }
        SearchEnv {
            vars,
            home,
            prefixes,
        }
    }

    /// A variable's value, treating empty as unset (as Jupyter mostly does).
    fn var(&self, key: &str) -> Option<&OsStr> {
        self.vars
            .get(key)
            .map(OsString::as_os_str)
            .filter(|v| !v.is_empty())
    }

    fn home(&self) -> PathBuf {
        self.home.clone().unwrap_or_else(|| PathBuf::from("~"))
    }

    fn platform_dirs(&self) -> bool {
        self.vars
            .get("JUPYTER_PLATFORM_DIRS")
            .is_some_and(|v| truthy(v))
    }

    fn data_dir(&self) -> PathBuf {
        if let Some(dir) = self.var("JUPYTER_DATA_DIR") {
            return PathBuf::from(dir);
        }
        let home = self.home();
        if cfg!(target_os = "macos") {
            if self.platform_dirs() {
                return home.join("Library/Application Support/jupyter");
            }
            return home.join("Library").join("Jupyter");
        }
        if cfg!(windows) {
            if let Some(appdata) = self.var("APPDATA") {
                return PathBuf::from(appdata).join("jupyter");
            }
            return home.join(".jupyter").join("data");
        }
        let xdg = self
            .var("XDG_DATA_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".local").join("share"));
        xdg.join("jupyter")
    }

    fn system_dirs(&self) -> Vec<PathBuf> {
        if cfg!(windows) {
            return self
                .prefixes
                .first()
                .map(|p| vec![p.join("share").join("jupyter")])
                .unwrap_or_default();
        }
        if self.platform_dirs() && !cfg!(target_os = "macos") {
            let dirs = self
                .var("XDG_DATA_DIRS")
                .map(|v| std::env::split_paths(v).collect::<Vec<_>>())
                .unwrap_or_default();
            let dirs: Vec<PathBuf> = dirs
                .into_iter()
                .filter(|d| !d.as_os_str().is_empty())
                .map(|d| d.join("jupyter"))
                .collect();
            if !dirs.is_empty() {
                return dirs;
            }
        }
        vec![
            PathBuf::from("/usr/local/share/jupyter"),
            PathBuf::from("/usr/share/jupyter"),
        ]
    }

    /// Whether the primary prefix is a virtualenv (`pyvenv.cfg` present).
    fn in_venv(&self) -> bool {
        self.prefixes
            .first()
            .is_some_and(|p| p.join("pyvenv.cfg").is_file())
    }

    fn enable_user_site(&self) -> bool {
        self.var("PYTHONNOUSERSITE").is_none() && !self.in_venv()
    }

    fn prefer_env(&self) -> bool {
        if let Some(value) = self.vars.get("JUPYTER_PREFER_ENV_PATH") {
            return truthy(value);
        }
        let Some(primary) = self.prefixes.first() else {
            return false;
        };
        if self.in_venv() && owned_by_me(primary) {
            return true;
        }
        if let Some(conda) = self.var("CONDA_PREFIX") {
            let default_env = self
                .var("CONDA_DEFAULT_ENV")
                .map(|v| v.to_string_lossy().into_owned())
                .unwrap_or_else(|| "base".into());
            if primary.starts_with(conda) && default_env != "base" && owned_by_me(primary) {
                return true;
            }
        }
        false
    }

    /// `jupyter_path()`: data directories, highest priority first.
    fn jupyter_path(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = Vec::new();
        if let Some(jp) = self.var("JUPYTER_PATH") {
            paths.extend(
                std::env::split_paths(jp)
                    .filter(|p| !p.as_os_str().is_empty())
                    .map(|p| p.components().collect::<PathBuf>()),
            );
        }

        let mut user = vec![self.data_dir()];
        if self.enable_user_site() && !cfg!(windows) {
            let base = self
                .var("PYTHONUSERBASE")
                .map(PathBuf::from)
                .unwrap_or_else(|| self.home().join(".local"));
            let dir = base.join("share").join("jupyter");
            if !user.contains(&dir) {
                user.push(dir);
            }
        }

        let system = self.system_dirs();
        let env: Vec<PathBuf> = self
            .prefixes
            .iter()
            .map(|p| p.join("share").join("jupyter"))
            .filter(|p| cfg!(windows) || !system.contains(p))
            .collect();

        if self.prefer_env() {
            paths.extend(env);
            paths.extend(user);
        } else {
            paths.extend(user);
            paths.extend(env);
        }
        for dir in system {
            if !paths.contains(&dir) {
                paths.push(dir);
            }
        }
        paths
    }

    fn kernel_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self
            .jupyter_path()
            .into_iter()
            .map(|p| p.join("kernels"))
            .collect();
        let ipython = self
            .var("IPYTHONDIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| self.home().join(".ipython"));
        dirs.push(ipython.join("kernels"));
        let mut seen = HashSet::new();
        dirs.retain(|d| seen.insert(d.clone()));
        dirs
    }

    /// Jupyter's fallback `python3` kernel: the primary environment's Python,
    /// if ipykernel is installed there but no `python3` spec was found.
    fn native_kernel(&self) -> Option<KernelSpec> {
        let prefix = self.prefixes.first()?;
        let python = ["python3", "python"]
            .iter()
            .map(|n| bin_dir(prefix).join(exe_name(n)))
            .find(|p| is_executable(p))?;
        has_ipykernel(prefix).then(|| KernelSpec::for_python(&python))
    }
}

/// Whether `<prefix>/lib/python3.*/site-packages/ipykernel` exists.
fn has_ipykernel(prefix: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(prefix.join("lib")) else {
        return false;
    };
    entries.filter_map(Result::ok).any(|e| {
        e.file_name().to_string_lossy().starts_with("python")
            && e.path()
                .join("site-packages/ipykernel/__init__.py")
                .is_file()
    })
}

fn owned_by_me(path: &Path) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(target), Ok(me)) = (std::fs::metadata(path), std::fs::metadata("/proc/self")) {
            return target.uid() == me.uid();
        }
    }
    std::fs::metadata(path).is_ok_and(|m| !m.permissions().readonly())
}

/// The `sys.prefix` of the `python3` on `PATH` (cached per `PATH` value).
///
/// `<prefix>/bin/python3` with a recognisable prefix (a venv, or one with
/// `lib/python3.*`) is answered from the file system; anything else (pyenv
/// shims and the like) asks the interpreter, with a timeout.
fn python_prefix_on_path() -> Option<PathBuf> {
    static CACHE: OnceLock<Mutex<HashMap<OsString, Option<PathBuf>>>> = OnceLock::new();
    let key = std::env::var_os("PATH").unwrap_or_default();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(hit) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
        return hit;
    }
    let answer = which("python3").and_then(|python| probe_prefix(&python));
    if let Ok(mut c) = cache.lock() {
        c.insert(key, answer.clone());
    }
    answer
}

fn probe_prefix(python: &Path) -> Option<PathBuf> {
    let dir = python.parent()?;
    let is_bin = dir
        .file_name()
        .is_some_and(|n| n == "bin" || n.eq_ignore_ascii_case("Scripts"));
    if is_bin {
        let prefix = dir.parent()?;
        if prefix.join("pyvenv.cfg").is_file() || has_python_lib(prefix) {
            return Some(prefix.to_path_buf());
        }
    }
    ask_prefix(python)
}

fn has_python_lib(prefix: &Path) -> bool {
    std::fs::read_dir(prefix.join("lib")).is_ok_and(|entries| {
        entries
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().starts_with("python3"))
    })
}

fn ask_prefix(python: &Path) -> Option<PathBuf> {
    let mut child = Command::new(python)
        .args(["-c", "import sys; print(sys.prefix)"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    let output = child.wait_with_output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    let prefix = text.trim();
    (!prefix.is_empty()).then(|| PathBuf::from(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write_spec(dir: &Path, name: &str, json: &str) -> PathBuf {
        let d = dir.join(name);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join(KERNEL_JSON), json).unwrap();
        d
    }

    fn spec_json(display: &str, language: &str) -> String {
        format!(
            r#"{{"argv": ["python", "-m", "ipykernel_launcher", "-f", "{{connection_file}}"],
                "display_name": "{display}", "language": "{language}"}}"#
        )
    }

    fn env_with(vars: &[(&str, &str)], home: &Path, prefixes: &[&Path]) -> SearchEnv {
        SearchEnv {
            vars: vars
                .iter()
                .map(|(k, v)| (k.to_string(), OsString::from(v)))
                .collect(),
            home: Some(home.to_path_buf()),
            prefixes: prefixes.iter().map(|p| p.to_path_buf()).collect(),
        }
    }

    #[test]
    fn load_reads_all_fields_and_defaults() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = write_spec(
            tmp.path(),
            "MyKernel",
            r#"{"argv": ["/opt/k", "{connection_file}"], "display_name": "My K",
                "language": "Python", "interrupt_mode": "MESSAGE",
                "env": {"A": "1"}, "metadata": {"debugger": true},
                "kernel_protocol_version": "5.5"}"#,
        );
        let spec = load(&dir).unwrap();
        assert_eq!(spec.name, "mykernel");
        assert_eq!(spec.resource_dir.as_deref(), Some(dir.as_path()));
        assert_eq!(spec.argv, vec!["/opt/k", "{connection_file}"]);
        assert_eq!(spec.display_name, "My K");
        assert_eq!(spec.language, "Python");
        assert_eq!(spec.interrupt_mode, InterruptMode::Message);
        assert_eq!(spec.env.get("A").map(String::as_str), Some("1"));
        assert_eq!(spec.metadata["debugger"], Value::Bool(true));

        let dir = write_spec(tmp.path(), "bare", r#"{"argv": ["k"]}"#);
        let spec = load(&dir).unwrap();
        assert_eq!(spec.display_name, "bare");
        assert_eq!(spec.language, "");
        assert_eq!(spec.interrupt_mode, InterruptMode::Signal);
        assert!(spec.env.is_empty());
        assert_eq!(spec.metadata, serde_json::json!({}));
    }

    #[test]
    fn load_rejects_malformed_specs() {
        let tmp = tempfile::tempdir().unwrap();
        let cases = [
            ("notjson", "{nope", "not valid JSON"),
            ("array", "[]", "not a JSON object"),
            ("noargv", r#"{"display_name": "x"}"#, "missing \"argv\""),
            ("emptyargv", r#"{"argv": []}"#, "empty"),
            ("badargv", r#"{"argv": ["a", 1]}"#, "not a string"),
            (
                "badmode",
                r#"{"argv": ["a"], "interrupt_mode": "poke"}"#,
                "interrupt_mode",
            ),
            ("badenv", r#"{"argv": ["a"], "env": {"A": 1}}"#, "env value"),
            ("badmeta", r#"{"argv": ["a"], "metadata": []}"#, "metadata"),
            ("badlang", r#"{"argv": ["a"], "language": 3}"#, "language"),
        ];
        for (name, json, needle) in cases {
            let dir = write_spec(tmp.path(), name, json);
            match load(&dir) {
                Err(SpecError::Invalid { path, reason }) => {
                    assert_eq!(path, dir.join(KERNEL_JSON));
                    assert!(reason.contains(needle), "{name}: {reason}");
                }
                other => panic!("{name}: expected Invalid, got {other:?}"),
            }
        }
        let missing = tmp.path().join("missing");
        assert!(matches!(load(&missing), Err(SpecError::Invalid { .. })));
    }

    #[test]
    fn discovery_first_dir_wins_and_skips_invalid() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        let b = tmp.path().join("b");
        write_spec(&a, "Python3", &spec_json("A python", "python"));
        write_spec(&a, "broken", "{");
        write_spec(&b, "python3", &spec_json("B python", "python"));
        write_spec(&b, "broken", &spec_json("B broken", "python"));
        write_spec(&b, "ir", &spec_json("R", "R"));
        fs::create_dir_all(b.join("not-a-kernel")).unwrap();
        fs::write(b.join("stray-file"), "x").unwrap();
        let dirs = vec![a.clone(), tmp.path().join("does-not-exist"), b.clone()];

        let found = discover_in(&dirs);
        let names: Vec<_> = found.specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, vec!["python3", "ir"]);
        assert_eq!(found.specs[0].display_name, "A python");
        assert_eq!(found.warnings.len(), 1);
        assert!(is_spec_named(&found.warnings[0], "broken"));
    }

    #[test]
    fn find_in_is_case_insensitive_and_reports_available() {
        let tmp = tempfile::tempdir().unwrap();
        write_spec(tmp.path(), "python3", &spec_json("Py", "python"));
        write_spec(tmp.path(), "julia-1.9", &spec_json("Julia", "julia"));
        write_spec(tmp.path(), "broken", "{");
        let dirs = vec![tmp.path().to_path_buf()];

        assert_eq!(find_in("PYTHON3", &dirs).unwrap().display_name, "Py");
        assert!(matches!(
            find_in("broken", &dirs),
            Err(SpecError::Invalid { .. })
        ));
        let err = find_in("ruby", &dirs).unwrap_err();
        match &err {
            SpecError::NotFound { name, available } => {
                assert_eq!(name, "ruby");
                assert_eq!(available, &vec!["julia-1.9", "python3"]);
            }
            other => panic!("unexpected {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains("julia-1.9, python3"), "{msg}");
        assert!(msg.contains("nbpipe env"), "{msg}");
        assert!(msg.contains("python -m ipykernel install --user"), "{msg}");

        let none = find_in("x", &[tmp.path().join("empty")]).unwrap_err();
        assert!(none.to_string().contains("no kernelspecs are installed"));
    }

    #[test]
    fn find_for_language_takes_first_match() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        let b = tmp.path().join("b");
        write_spec(&b, "aaa-python", &spec_json("later dir", "python"));
        write_spec(&a, "zzz-python", &spec_json("first dir", "Python"));
        write_spec(&a, "ir", &spec_json("R", "R"));
        let dirs = vec![a, b];
        let spec = find_for_language_in("PYTHON", &dirs).unwrap();
        assert_eq!(spec.name, "zzz-python");
        assert_eq!(find_for_language_in("r", &dirs).unwrap().name, "ir");
        let err = find_for_language_in("scala", &dirs).unwrap_err();
        assert!(matches!(err, SpecError::NoKernelForLanguage { .. }));
        assert!(err.to_string().contains("ir (R)"), "{err}");
    }

    #[test]
    fn command_substitutes_and_resolves_prefix_python() {
        let tmp = tempfile::tempdir().unwrap();
        let prefix = tmp.path().join("venv");
        let kernels = prefix.join("share/jupyter/kernels");
        let dir = write_spec(&kernels, "python3", &spec_json("Py", "python"));
        let bin = prefix.join("bin");
        fs::create_dir_all(&bin).unwrap();
        let python = bin.join("python");
        fs::write(&python, "#!/bin/sh\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&python, fs::Permissions::from_mode(0o755)).unwrap();
        }
        let mut spec = load(&dir).unwrap();
        spec.argv.extend(
            [
                "--res={resource_dir}",
                "{prefix}",
                "{unknown}",
                "{",
                "{a b}",
            ]
            .map(String::from),
        );
        let cf = tmp.path().join("kernel-1.json");
        let cmd = spec.command(&cf);
        assert_eq!(cmd[0], python.to_string_lossy());
        assert_eq!(&cmd[1..4], ["-m", "ipykernel_launcher", "-f"]);
        assert_eq!(cmd[4], cf.to_string_lossy());
        assert_eq!(cmd[5], format!("--res={}", dir.display()));
        assert_eq!(cmd[6], prefix.to_string_lossy());
        assert_eq!(&cmd[7..], ["{unknown}", "{", "{a b}"]);

        // Absolute interpreters are left alone.
        let spec = KernelSpec::for_python(Path::new("/env/bin/python"));
        assert_eq!(
            spec.command(Path::new("/nonexistent/cf.json")),
            vec![
                "/env/bin/python",
                "-m",
                "ipykernel_launcher",
                "-f",
                "/nonexistent/cf.json"
            ]
        );
    }

    #[test]
    fn bare_python_names() {
        for yes in ["python", "python3", "python3.11", "python3.9"] {
            assert!(is_bare_python(yes), "{yes}");
        }
        for no in [
            "python2",
            "pythonw",
            "python3.",
            "python3.x",
            "/usr/bin/python",
            "py",
        ] {
            assert!(!is_bare_python(no), "{no}");
        }
        assert_eq!(
            spec_prefix(Path::new("/p/share/jupyter/kernels/k")),
            Some(PathBuf::from("/p"))
        );
        assert_eq!(spec_prefix(Path::new("/home/u/.ipython/kernels/k")), None);
    }

    #[test]
    fn for_python_spec() {
        let spec = KernelSpec::for_python(Path::new("/envs/abc/bin/python"));
        assert_eq!(spec.name, "python3");
        assert_eq!(spec.language, "python");
        assert_eq!(spec.interrupt_mode, InterruptMode::Signal);
        assert_eq!(spec.resource_dir, None);
        assert_eq!(
            spec.argv,
            vec![
                "/envs/abc/bin/python",
                "-m",
                "ipykernel_launcher",
                "-f",
                "{connection_file}"
            ]
        );
    }

    #[cfg(all(unix, not(target_os = "macos")))]
    #[test]
    fn search_order_defaults() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let conda = tmp.path().join("conda");
        fs::create_dir_all(&conda).unwrap();
        let env = env_with(
            &[("JUPYTER_PATH", "/jp/one/::/jp/two")],
            &home,
            &[conda.as_path(), Path::new("/usr")],
        );
        let expected: Vec<PathBuf> = [
            PathBuf::from("/jp/one"),
            PathBuf::from("/jp/two"),
            home.join(".local/share/jupyter"),
            conda.join("share/jupyter"),
            PathBuf::from("/usr/local/share/jupyter"),
            PathBuf::from("/usr/share/jupyter"),
        ]
        .into_iter()
        .map(|p| p.join("kernels"))
        .chain([home.join(".ipython/kernels")])
        .collect();
        assert_eq!(env.kernel_dirs(), expected);
    }

    #[cfg(all(unix, not(target_os = "macos")))]
    #[test]
    fn search_order_respects_data_dirs_and_user_base() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path();
        let env = env_with(
            &[
                ("XDG_DATA_HOME", "/xdg"),
                ("PYTHONUSERBASE", "/ub"),
                ("IPYTHONDIR", "/ipy"),
            ],
            home,
            &[],
        );
        assert_eq!(
            env.kernel_dirs(),
            [
                "/xdg/jupyter/kernels",
                "/ub/share/jupyter/kernels",
                "/usr/local/share/jupyter/kernels",
                "/usr/share/jupyter/kernels",
                "/ipy/kernels",
            ]
            .map(PathBuf::from)
        );
        let env = env_with(
            &[("JUPYTER_DATA_DIR", "/data"), ("PYTHONNOUSERSITE", "1")],
            home,
            &[],
        );
        assert_eq!(env.kernel_dirs()[0], PathBuf::from("/data/kernels"));
        assert_eq!(
            env.kernel_dirs()[1],
            PathBuf::from("/usr/local/share/jupyter/kernels")
        );
    }

    #[cfg(all(unix, not(target_os = "macos")))]
    #[test]
    fn search_order_prefers_env_in_venv_and_on_request() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let venv = tmp.path().join("venv");
        fs::create_dir_all(&venv).unwrap();
        fs::write(venv.join("pyvenv.cfg"), "home = /usr/bin\n").unwrap();
        let user = home.join(".local/share/jupyter/kernels");
        let venv_k = venv.join("share/jupyter/kernels");

        // A venv we own: env first, and no user site.
        let env = env_with(&[], &home, &[venv.as_path()]);
        assert_eq!(env.kernel_dirs()[..2], [venv_k.clone(), user.clone()]);
        assert_eq!(
            env.kernel_dirs()[2],
            PathBuf::from("/usr/local/share/jupyter/kernels")
        );

        // Explicit opt-out wins over venv detection.
        let env = env_with(
            &[("JUPYTER_PREFER_ENV_PATH", "0")],
            &home,
            &[venv.as_path()],
        );
        assert_eq!(env.kernel_dirs()[..2], [user.clone(), venv_k.clone()]);

        // Explicit opt-in for a plain prefix (empty value counts as set).
        let plain = tmp.path().join("plain");
        fs::create_dir_all(&plain).unwrap();
        let plain_k = plain.join("share/jupyter/kernels");
        let env = env_with(
            &[("JUPYTER_PREFER_ENV_PATH", "")],
            &home,
            &[plain.as_path()],
        );
        assert_eq!(env.kernel_dirs()[0], plain_k);
        let env = env_with(&[], &home, &[plain.as_path()]);
        assert_eq!(env.kernel_dirs()[0], user);

        // Non-base conda env containing the primary prefix.
        let conda = plain.to_string_lossy().into_owned();
        let env = env_with(
            &[("CONDA_PREFIX", &conda), ("CONDA_DEFAULT_ENV", "work")],
            &home,
            &[plain.as_path()],
        );
        assert_eq!(env.kernel_dirs()[0], plain_k);
        let env = env_with(
            &[("CONDA_PREFIX", &conda), ("CONDA_DEFAULT_ENV", "base")],
            &home,
            &[plain.as_path()],
        );
        assert_eq!(env.kernel_dirs()[0], user);
    }

    #[test]
    fn native_kernel_needs_ipykernel() {
        let tmp = tempfile::tempdir().unwrap();
        let prefix = tmp.path();
        let bin = bin_dir(prefix);
        fs::create_dir_all(&bin).unwrap();
        let python = bin.join(exe_name("python3"));
        fs::write(&python, "").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&python, fs::Permissions::from_mode(0o755)).unwrap();
        }
        let env = env_with(&[], prefix, &[prefix]);
        assert_eq!(env.native_kernel(), None);
        let pkg = prefix.join("lib/python3.11/site-packages/ipykernel");
        fs::create_dir_all(&pkg).unwrap();
        fs::write(pkg.join("__init__.py"), "").unwrap();
        assert_eq!(env.native_kernel(), Some(KernelSpec::for_python(&python)));
    }

    #[test]
    fn substitute_edge_cases() {
        let ns: HashMap<&str, String> = [("a", "X".to_string())].into_iter().collect();
        assert_eq!(substitute("{a}{a}", &ns), "XX");
        assert_eq!(substitute("{{a}}", &ns), "{X}");
        assert_eq!(substitute("pre{a", &ns), "pre{a");
        assert_eq!(substitute("é{a}é", &ns), "éXé");
        assert_eq!(substitute("", &ns), "");
    }
}
