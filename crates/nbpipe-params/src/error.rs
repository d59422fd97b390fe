//! The crate's error type.

use crate::Language;

/// Everything that can go wrong while reading, resolving, rendering or
/// inspecting parameters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// The YAML text could not be parsed, or used a construct that PyYAML's
    /// `SafeLoader` rejects too (unknown tag, several documents, unhashable key...).
    #[error("invalid YAML parameters: {0}")]
    Yaml(String),
    /// The YAML document is valid but its top level cannot be used as a set
    /// of parameters (papermill calls `dict.update()` with it).
    #[error("YAML parameters must be a mapping of names to values: {0}")]
    NotAMapping(String),
    /// The YAML document uses a type papermill would pass through as a Python
    /// object that nbpipe cannot represent (`!!binary`, `!!timestamp`, `!!set`...).
    #[error("unsupported YAML value: {0}")]
    UnsupportedYaml(String),
    /// The `--parameters-json` text is not JSON as Python's `json.loads` reads it, or its
    /// top level is not an object.
    #[error("invalid JSON parameters: {0}")]
    Json(String),
    /// The `-b` argument is not valid base64 (papermill's `base64.b64decode` rules).
    #[error("invalid base64 parameters: {0}")]
    Base64(String),
    /// A value cannot be written in the target language (papermill raises
    /// `NotImplementedError` for these, e.g. `None` in C# or a dict in bash).
    #[error("{language} parameters: {message}")]
    Unsupported {
        /// The target language.
        language: Language,
        /// What cannot be rendered.
        message: String,
    },
    /// A string value contains a character the target language's strings cannot
    /// hold at all (NUL in R and bash).
    #[error("{language} parameters: {message}")]
    Unrepresentable {
        /// The target language.
        language: Language,
        /// Which value and why.
        message: String,
    },
    /// A parameter name is not a plain identifier of the target language, so
    /// injecting it could change the meaning of the generated code.
    #[error("invalid {language} parameter name {name:?}: {reason}")]
    InvalidName {
        /// The target language.
        language: Language,
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: String,
    },
    /// Parameter inspection (`--help-notebook`) is only implemented for
    /// Python, like papermill.
    #[error("Translator for '{0}' language does not support parameter introspection.")]
    InspectUnsupported(Language),
}
