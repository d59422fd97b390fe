//! The cache key of an environment.
//!
//! An environment is identified by what went into it: the requirements (the
//! file's text, plus the text of files it pulls in with `-r`/`-c`), the Python
//! it was made from, and [`ENV_FORMAT_VERSION`]. Requirements that point at
//! local paths (`-e .`, `./pkg`, `file:`) also key on the folder they live in,
//! since the same text means different code in different folders.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::EnvError;

/// Version of the managed-environment layout; part of every hash, so bumping it
/// makes every folder build a fresh environment. 2: packages are installed with their
/// bytecode compiled (uv does not by default), so a kernel does not recompile every module
/// it imports at each start when `.pyc` files cannot be written (read-only environment,
/// `PYTHONDONTWRITEBYTECODE`): ~0.4 s of every kernel start.
pub const ENV_FORMAT_VERSION: u32 = 2;

/// How deep `-r` / `-c` includes are followed.
const MAX_INCLUDE_DEPTH: usize = 16;

/// The inputs of an environment's hash that come from the requirements.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct RequirementsInput {
    /// `(label, text)` of the requirements file and every file it includes.
    files: Vec<(String, String)>,
    /// The requirements' folder, if they reference local paths.
    local_dir: Option<PathBuf>,
}

impl RequirementsInput {
    /// Read `path` (`None` or a missing optional file = no requirements).
    pub(crate) fn read(path: Option<&Path>) -> Result<Self, EnvError> {
        let mut input = RequirementsInput::default();
        if let Some(path) = path {
            input.add_file(path, "requirements".to_string(), 0)?;
        }
        Ok(input)
    }

    fn add_file(&mut self, path: &Path, label: String, depth: usize) -> Result<(), EnvError> {
        let text = std::fs::read_to_string(path).map_err(|source| EnvError::Requirements {
            path: path.to_path_buf(),
            source,
        })?;
        let text = text.replace("\r\n", "\n");
        let base = path.parent().unwrap_or(Path::new("."));
        let mut includes = Vec::new();
        for line in text.lines() {
            let line = strip_comment(line);
            if let Some(target) = include_target(line) {
                includes.push(target.to_string());
            } else if is_local_reference(line) && self.local_dir.is_none() {
                self.local_dir = Some(std::fs::canonicalize(base).unwrap_or(base.to_path_buf()));
            }
        }
        self.files.push((label, text));
        if depth < MAX_INCLUDE_DEPTH {
            for target in includes {
                let included = base.join(&target);
                // A missing include is the installer's error to report; it still
                // counts towards the hash so fixing it changes the environment.
                if included.is_file() {
                    self.add_file(&included, target, depth + 1)?;
                } else {
                    self.files.push((target, "<missing>".into()));
                }
            }
        }
        Ok(())
    }

    /// Whether nothing but blank lines and comments was read (only ipykernel).
    pub(crate) fn is_empty(&self) -> bool {
        self.files
            .iter()
            .all(|(_, text)| text.lines().all(|l| strip_comment(l).is_empty()))
    }
}

fn strip_comment(line: &str) -> &str {
    let line = line.trim();
    if line.starts_with('#') {
        return "";
    }
    match line.find(" #") {
        Some(i) => line[..i].trim_end(),
        None => line,
    }
}

/// The file named by `-r FILE`, `-rFILE`, `--requirement[=| ]FILE` (and `-c`).
fn include_target(line: &str) -> Option<&str> {
    for long in ["--requirement", "--constraint"] {
        if let Some(rest) = line.strip_prefix(long) {
            let rest = rest.strip_prefix('=').unwrap_or(rest).trim();
            return (!rest.is_empty()).then_some(rest);
        }
    }
    for short in ["-r", "-c"] {
        if let Some(rest) = line.strip_prefix(short) {
            let rest = rest.trim();
            return (!rest.is_empty()).then_some(rest);
        }
    }
    None
}

fn is_local_reference(line: &str) -> bool {
    line.starts_with("-e")
        || line.starts_with("--editable")
        || line.starts_with('.')
        || line.starts_with('/')
        || line.starts_with('~')
        || line.contains("file:")
        || line.contains(" @ .")
}

/// The 16-hex-digit key of an environment.
pub(crate) fn env_hash(requirements: &RequirementsInput, python_version: &str) -> String {
    let mut hasher = Sha256::new();
    let mut field = |name: &str, value: &str| {
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update((value.len() as u64).to_le_bytes());
        hasher.update(value.as_bytes());
    };
    field("nbpipe-env-format", &ENV_FORMAT_VERSION.to_string());
    field("python", python_version);
    // An empty requirements file installs the same as none at all.
    if !requirements.is_empty() {
        for (label, text) in &requirements.files {
            field("file", label);
            field("text", text);
        }
    }
    if let Some(dir) = &requirements.local_dir {
        field("local-dir", &dir.to_string_lossy());
    }
    let digest = hasher.finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The hash an environment for these requirements and Python would have.
///
/// `requirements` is the file to read (`None`, or a file that does not exist,
/// means "no requirements": only ipykernel); `python_version` is the string
/// nbpipe records for an interpreter (e.g. `cpython-3.11.7-x86_64`).
pub fn compute_hash(requirements: Option<&Path>, python_version: &str) -> Result<String, EnvError> {
    let path = requirements.filter(|p| p.exists());
    Ok(env_hash(&RequirementsInput::read(path)?, python_version))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn hash_of(text: &str, version: &str) -> String {
        let tmp = tempfile::tempdir().unwrap();
        let req = tmp.path().join("requirements.txt");
        fs::write(&req, text).unwrap();
        compute_hash(Some(&req), version).unwrap()
    }

    #[test]
    fn hash_is_stable_and_sensitive() {
        let a = hash_of("six\n", "cpython-3.11.7-x86_64");
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(a, hash_of("six\n", "cpython-3.11.7-x86_64"));
        assert_eq!(a, hash_of("six\r\n", "cpython-3.11.7-x86_64"));
        assert_ne!(a, hash_of("six==1.16.0\n", "cpython-3.11.7-x86_64"));
        assert_ne!(a, hash_of("six\n", "cpython-3.12.1-x86_64"));
        // Same text in two folders: same hash (shared environment).
        let tmp = tempfile::tempdir().unwrap();
        let other = tmp.path().join("sub/requirements.txt");
        fs::create_dir_all(other.parent().unwrap()).unwrap();
        fs::write(&other, "six\n").unwrap();
        assert_eq!(
            a,
            compute_hash(Some(&other), "cpython-3.11.7-x86_64").unwrap()
        );
    }

    #[test]
    fn missing_or_absent_requirements_hash_alike() {
        let tmp = tempfile::tempdir().unwrap();
        let none = compute_hash(None, "v").unwrap();
        let missing = compute_hash(Some(&tmp.path().join("nope.txt")), "v").unwrap();
        assert_eq!(none, missing);
        assert_eq!(none, hash_of("\n# nothing yet\n", "v"));
        assert!(RequirementsInput::read(None).unwrap().is_empty());
    }

    #[test]
    fn includes_are_part_of_the_hash() {
        let tmp = tempfile::tempdir().unwrap();
        let req = tmp.path().join("requirements.txt");
        let base = tmp.path().join("base.txt");
        fs::write(&req, "-r base.txt\nsix\n").unwrap();
        let missing = compute_hash(Some(&req), "v").unwrap();
        fs::write(&base, "attrs\n").unwrap();
        let one = compute_hash(Some(&req), "v").unwrap();
        fs::write(&base, "attrs==23.1\n").unwrap();
        let two = compute_hash(Some(&req), "v").unwrap();
        assert_ne!(missing, one);
        assert_ne!(one, two);
        // Include cycles terminate.
        fs::write(&base, "--requirement=requirements.txt\n").unwrap();
        compute_hash(Some(&req), "v").unwrap();
    }

    #[test]
    fn local_references_key_on_the_folder() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for dir in [a.path(), b.path()] {
            fs::write(dir.join("requirements.txt"), "-e ./mypkg\n").unwrap();
        }
        let ha = compute_hash(Some(&a.path().join("requirements.txt")), "v").unwrap();
        let hb = compute_hash(Some(&b.path().join("requirements.txt")), "v").unwrap();
        assert_ne!(ha, hb);
    }

    #[test]
    fn parsing_helpers() {
        assert_eq!(include_target("-r base.txt"), Some("base.txt"));
        assert_eq!(include_target("-rbase.txt"), Some("base.txt"));
        assert_eq!(include_target("--requirement base.txt"), Some("base.txt"));
        assert_eq!(include_target("--constraint=c.txt"), Some("c.txt"));
        assert_eq!(include_target("requests"), None);
        assert_eq!(strip_comment("six  # pinned later"), "six");
        assert_eq!(strip_comment("# only a comment"), "");
        assert!(is_local_reference("-e ."));
        assert!(is_local_reference("pkg @ file:///x"));
        assert!(!is_local_reference("requests>=2"));
    }
}
