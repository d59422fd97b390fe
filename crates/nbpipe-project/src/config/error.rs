//! The error type of project-file loading.

use std::fmt;
use std::path::PathBuf;

/// Why a project could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The directory has no `nbpipe.yaml` (nor `nbpipe.yml`).
    #[error(
        "no project file in `{}`: expected `nbpipe.yaml` (or `nbpipe.yml`)",
        dir.display()
    )]
    NotFound {
        /// The directory searched.
        dir: PathBuf,
    },
    /// The project file exists but could not be read.
    #[error("cannot read `{}`: {source}", path.display())]
    Read {
        /// The project file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The project file is not valid: its syntax, a key, a value, or the
    /// pipeline the values describe. Displays as
    /// `FILE:LINE:COLUMN: message`.
    #[error("{}:{}:{}: {}", .0.file.display(), .0.line, .0.column, .0.message)]
    Invalid(Box<Invalid>),
    /// `--env NAME` names an environment the project file does not declare.
    #[error(
        "`{}` declares no environment `{name}`{}",
        file.display(),
        if known.is_empty() {
            " (it has no `environments:`)".to_owned()
        } else {
            format!(" (it declares: {})", known.join(", "))
        }
    )]
    UnknownEnvironment {
        /// The project file.
        file: PathBuf,
        /// The name asked for.
        name: String,
        /// The declared environments.
        known: Vec<String>,
    },
}

/// Where and why a project file is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The project file (`DIR/nbpipe.yaml`).
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The key path the error is about, e.g. `notebooks[1].timeout` (empty
    /// for the document itself).
    pub key: String,
    /// What kind of problem it is.
    pub kind: ErrorKind,
    /// The full human-readable message (without the `FILE:LINE:COLUMN: `
    /// prefix), naming the key; literals are in backticks.
    pub message: String,
}

/// The kinds of [`Invalid`] project files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Not valid YAML, or YAML the project schema cannot hold (several
    /// documents, a top level that is not a mapping).
    Syntax,
    /// A key the schema does not know (the message suggests a close one).
    UnknownKey,
    /// A key written twice in the same mapping.
    DuplicateKey,
    /// A required key is absent (`notebooks`, a notebook's `path`).
    MissingKey,
    /// A value of the wrong shape or type (a list where a string is expected...).
    Type,
    /// A value of the right type that is not acceptable (bad id, bad bucket,
    /// bad cron expression, bad timezone, bad output template...).
    Value,
    /// A duration that cannot be parsed or is zero.
    Duration,
    /// A notebook path that does not exist, is not a file, escapes the
    /// project directory or does not end in `.ipynb`; or a missing
    /// requirements file.
    Path,
    /// Two steps with the same id.
    DuplicateId,
    /// `needs` names a step that does not exist.
    UnknownStep,
    /// `needs` makes a cycle.
    Cycle,
    /// The short-form trigger keys conflict with `trigger: s3:` or are incomplete.
    Conflict,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Syntax => "syntax",
            ErrorKind::UnknownKey => "unknown key",
            ErrorKind::DuplicateKey => "duplicate key",
            ErrorKind::MissingKey => "missing key",
            ErrorKind::Type => "wrong type",
            ErrorKind::Value => "invalid value",
            ErrorKind::Duration => "invalid duration",
            ErrorKind::Path => "invalid path",
            ErrorKind::DuplicateId => "duplicate step id",
            ErrorKind::UnknownStep => "unknown step",
            ErrorKind::Cycle => "dependency cycle",
            ErrorKind::Conflict => "conflicting keys",
        })
    }
}

impl ConfigError {
    /// The details when the file is invalid (`None` for a missing or
    /// unreadable file).
    pub fn invalid(&self) -> Option<&Invalid> {
        match self {
            ConfigError::Invalid(i) => Some(i),
            _ => None,
        }
    }
}
