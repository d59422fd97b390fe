//! Errors of building, storing and pushing images.

use std::path::PathBuf;

/// Everything that can go wrong making or moving an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The project file is invalid.
    #[error(transparent)]
    Config(#[from] nbpipe_project::config::ConfigError),
    /// A file could not be read or written.
    #[error("{action} {}: {source}", .path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An image reference (`--tag`, `--base`, `image.name`) is malformed.
    #[error("`{reference}` is not an image reference: {reason}")]
    BadReference {
        /// What was given.
        reference: String,
        /// Why it was rejected.
        reason: String,
    },
    /// Only `linux/amd64` images can be built.
    #[error("platform `{0}` is not supported: nbpipe builds `linux/amd64` images")]
    Platform(String),
    /// The registry refused or failed a request.
    #[error("registry {registry}: {action}: {message}")]
    Registry {
        /// `host[:port]`.
        registry: String,
        /// What was being done (`pulling the manifest of python:3.11-slim`).
        action: String,
        /// The registry's or the transport's message.
        message: String,
    },
    /// The base image has no Python interpreter nbpipe can find.
    #[error(
        "base image `{base}` has no Python 3 (looked for /usr/local/bin/python3.N and \
         /usr/bin/python3.N): choose a base with Python (`image.base`)"
    )]
    NoPython {
        /// The base reference.
        base: String,
    },
    /// The base image is not something nbpipe can layer on.
    #[error("base image `{base}`: {reason}")]
    BadBase {
        /// The base reference.
        base: String,
        /// What is wrong.
        reason: String,
    },
    /// Installing the kernel environment with uv failed.
    #[error("{step} failed ({status})\n  command: {command}\n{output}")]
    Install {
        /// What was being done.
        step: &'static str,
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// The last lines it printed.
        output: String,
    },
    /// A tool the build needs is missing.
    #[error("`{tool}` is needed to {purpose}: {hint}")]
    MissingTool {
        /// The program.
        tool: &'static str,
        /// What for.
        purpose: &'static str,
        /// How to get it.
        hint: &'static str,
    },
    /// The image needs a Dockerfile build (e.g. `image.apt`).
    #[error("{0}")]
    Unsupported(String),
    /// The Docker engine (smoke check) failed.
    #[error("docker engine: {0}")]
    Engine(String),
    /// The smoke check ran but the image does not work.
    #[error("smoke check failed: `{command}` exited with {code}\n{output}")]
    Smoke {
        /// What ran in the container.
        command: String,
        /// Its exit code.
        code: i64,
        /// Its last output lines.
        output: String,
    },
}

impl ImageError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        ImageError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
