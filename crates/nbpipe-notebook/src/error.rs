//! The error type returned when a notebook cannot be read or fails validation.

/// Everything that can go wrong reading or validating a notebook.
///
/// Locations in messages use 0-based indices, e.g. `cell 3` is the fourth
/// cell of the notebook (the same numbering as `nb["cells"][3]` in Python).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotebookError {
    /// The JSON is nested deeper than [`crate::MAX_DEPTH`] levels.
    #[error("not a notebook: JSON nested {depth} levels deep (at most 1000 are read)")]
    TooDeep {
        /// The nesting depth found.
        depth: usize,
    },
    /// The input is not valid JSON (or not UTF-8).
    #[error("not a notebook: invalid JSON at line {line} column {column}: {message}")]
    InvalidJson {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What the JSON parser complained about.
        message: String,
    },

    /// The input is JSON, but the top-level value is not an object.
    #[error("not a notebook: the top-level JSON value is {found}, expected an object")]
    NotAnObject {
        /// The kind of value found instead (e.g. `"an array"`).
        found: &'static str,
    },

    /// The top-level object has no `nbformat` key.
    #[error("not a notebook: the top-level object has no `nbformat` version key")]
    MissingVersion,

    /// The notebook uses a format version this crate cannot read.
    #[error(
        "unsupported notebook format version {major}.{minor}: {}",
        unsupported_hint(*.major)
    )]
    UnsupportedVersion {
        /// `nbformat` of the input.
        major: u64,
        /// `nbformat_minor` of the input (0 when absent).
        minor: u64,
    },

    /// A required key is absent.
    #[error("{location} has no `{key}`")]
    MissingKey {
        /// Where, e.g. `cell 3` or `the notebook`.
        location: String,
        /// The missing key.
        key: &'static str,
    },

    /// A key holds a value of the wrong JSON type.
    #[error("{location}: `{key}` must be {expected}, found {found}")]
    WrongType {
        /// Where, e.g. `cell 3` or `the notebook`.
        location: String,
        /// The offending key.
        key: String,
        /// What was expected (e.g. `"an integer"`).
        expected: &'static str,
        /// What was found (e.g. `"a string"`).
        found: &'static str,
    },

    /// Two cells share an id (only checked for nbformat >= 4.5).
    #[error("cell {index} has the id {id:?}, which is already used by cell {first}; cell ids must be unique")]
    DuplicateCellId {
        /// The shared id.
        id: String,
        /// Index of the first cell with that id.
        first: usize,
        /// Index of the later cell with the same id.
        index: usize,
    },

    /// Any other structural problem.
    #[error("{location}: {message}")]
    Invalid {
        /// Where, e.g. `cell 3 output 0`.
        location: String,
        /// What is wrong.
        message: String,
    },
}

fn unsupported_hint(major: u64) -> &'static str {
    if major < 3 {
        "only nbformat 4 (and 3, upgraded on read) is supported; \
         upgrade the file with `jupyter nbconvert --to notebook` first"
    } else {
        "this notebook is newer than the supported nbformat 4; \
         upgrade nbpipe or save the notebook as nbformat 4"
    }
}

/// Human description of a JSON value's type, for error messages.
pub(crate) fn kind(v: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a floating-point number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl NotebookError {
    pub(crate) fn wrong_type(
        location: impl Into<String>,
        key: impl Into<String>,
        expected: &'static str,
        found: &serde_json::Value,
    ) -> Self {
        NotebookError::WrongType {
            location: location.into(),
            key: key.into(),
            expected,
            found: kind(found),
        }
    }

    pub(crate) fn missing(location: impl Into<String>, key: &'static str) -> Self {
        NotebookError::MissingKey {
            location: location.into(),
            key,
        }
    }
}
