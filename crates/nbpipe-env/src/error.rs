//! Errors of environment management.

use std::path::PathBuf;

/// Everything that can go wrong making, finding or reading a managed environment.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// The requested interpreter was not found or does not run.
    #[error(
        "no usable Python interpreter {requested:?}: {reason}. Install Python 3 or choose \
         one with --python"
    )]
    NoPython {
        /// What was asked for (a name looked up on `PATH`, or a path).
        requested: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The requirements file (or one it includes) could not be read.
    #[error("cannot read requirements file {}: {source}", .path.display())]
    Requirements {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The folder to make an environment for is not a directory.
    #[error("{} is not a directory", .path.display())]
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },
    /// Neither `$NBPIPE_HOME`, `$XDG_CACHE_HOME` nor a home directory is known.
    #[error("cannot find a cache directory for environments: set NBPIPE_HOME")]
    NoHome,
    /// An installer step (`uv venv`, `uv pip install`, `python -m venv`, pip) failed.
    #[error(
        "{step} failed ({status})\n  command: {command}\n{}",
        tail_block(.output_tail)
    )]
    InstallFailed {
        /// What was being done, e.g. `installing packages`.
        step: String,
        /// The command line, shell-quoted for display.
        command: String,
        /// Exit status, or why it could not be started.
        status: String,
        /// The last lines (at most 20) the command printed.
        output_tail: Vec<String>,
    },
    /// A `.nbpipe/env.json` marker exists but cannot be used.
    #[error("invalid environment marker {}: {reason}", .path.display())]
    BadMarker {
        /// The marker file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A prebuilt environment (`NBPIPE_KERNEL_ENV`, e.g. the one baked into an image)
    /// cannot be used.
    #[error("prebuilt environment {}: {reason}", .root.display())]
    BadPrebuilt {
        /// The environment's root.
        root: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A marker points at an environment that no longer exists (e.g. the cache was cleared).
    #[error(
        "the environment of {} (recorded in {}) is gone: {} does not exist. Run `nbpipe env {}` \
         to rebuild it",
        .folder.display(), .marker.display(), .env_path.display(), .folder.display()
    )]
    MissingEnv {
        /// The folder that has the marker.
        folder: PathBuf,
        /// The marker file.
        marker: PathBuf,
        /// Where the environment was.
        env_path: PathBuf,
    },
    /// A file-system operation failed.
    #[error("{action} {}: {source}", .path.display())]
    Io {
        /// What was being done, e.g. `creating directory`.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

fn tail_block(lines: &[String]) -> String {
    if lines.is_empty() {
        return "  (no output)".to_string();
    }
    let mut out = String::from("  last output:");
    for line in lines {
        out.push_str("\n    ");
        out.push_str(line);
    }
    out
}

impl EnvError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        EnvError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
