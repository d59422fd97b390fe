//! Everything about notebook parameter values, with papermill-identical
//! behaviour:
//!
//! * [`Value`] / [`Parameters`]: the values papermill passes around (a JSON/YAML
//!   subset of Python objects, ints of any size) in Python-dict order.
//! * [`resolve_cli_value`]: `-p NAME VALUE` typing (`True`/`False`/`None`, then
//!   Python `int()`, then `float()`, else a string).
//! * [`parse_yaml`] / [`parse_base64_yaml`]: `-y`, `-f` and `-b` sources with
//!   PyYAML `SafeLoader` (YAML 1.1, no timestamps) semantics.
//! * [`parse_json`]: `--parameters-json`, JSON as Python's `json.loads` reads it
//!   (`NaN`/`Infinity`, integers of any size), so typed values arrive intact.
//! * [`Language`], [`render_parameters`], [`translate_value`]: papermill's
//!   translators for the injected-parameters cell, with [`validate_name`] so a
//!   parameter name can never inject code.
//! * [`inspect_parameters_cell`]: `--help-notebook` parameter inspection.
//!
//! # Strings are data, never code
//!
//! Every rendered string literal decodes to exactly the original string.
//! Python output is byte-for-byte papermill's (`unicode_escape` + `\"`). bash
//! uses `shlex.quote`, like papermill. F# keeps papermill's format (it decodes
//! identically). For the other languages papermill's Python-style escapes are
//! wrong or dangerous, so their output equals papermill's for ordinary strings
//! but differs where papermill's would not round-trip:
//!
//! * R: non-ASCII as `\uNNNN`/`\UNNNNNNNN` (not raw-byte `\xNN`); NUL is an error.
//! * Julia: `$` escaped (it would interpolate code); U+0080–U+00FF as `\u00NN`.
//! * Scala, C#: controls and non-ASCII as `\uNNNN` (Scala: UTF-16 units;
//!   C#: `\UNNNNNNNN` above the BMP).
//! * MATLAB: no backslash escapes exist, so backslashes are literal and other
//!   characters are concatenated as `char(N)`: `("a" + char(10) + "b")`.
//! * PowerShell: `` ` ``, `$` and typographic quotes escaped with a backtick,
//!   control characters as backtick escapes or `$([char]0xNN)`, backslashes
//!   literal.
//!
//! Where papermill raises `NotImplementedError` (`None` in C#, dicts in bash)
//! this crate returns [`ParamError::Unsupported`]. Non-finite floats render as
//! papermill does (`nan`, `inf` outside Python and PowerShell).
//!
//! # Example
//!
//! ```
//! use nbpipe_params::{parse_yaml, render_parameters, resolve_cli_value, Language};
//!
//! let mut params = parse_yaml("alpha: 0.5\nwhen: 2024-01-01\nflag: yes\n")?;
//! params.set("ratio", resolve_cli_value("1e3"));
//! params.set("name", resolve_cli_value("O'Brien \"quoted\""));
//! let cell = render_parameters(Language::Python, &params, "Parameters")?;
//! assert_eq!(
//!     cell,
//!     "# Parameters\nalpha = 0.5\nwhen = \"2024-01-01\"\nflag = True\nratio = 1000.0\nname = \"O'Brien \\\"quoted\\\"\"\n"
//! );
//! # Ok::<(), nbpipe_params::ParamError>(())
//! ```

#![deny(missing_docs)]

mod error;
mod inspect;
mod json;
mod pynum;
mod resolve;
mod sources;
mod translate;
mod value;
mod yaml;

pub use error::ParamError;
pub use inspect::{format_help_line, inspect_parameters_cell, ParamInfo};
pub use json::parse_json;
pub use pynum::py_float_repr;
pub use resolve::resolve_cli_value;
pub use sources::{parse_base64_yaml, parse_yaml};
pub use translate::{render_comment, render_parameters, translate_value, validate_name, Language};
pub use value::{Parameters, Value};
