//! Lossless model of Jupyter notebooks (nbformat v4), read and written
//! byte-for-byte like Python's `nbformat`.
//!
//! This crate owns the on-disk notebook format for nbpipe:
//!
//! * [`read`] parses nbformat 4.x documents as they are, upgrades nbformat 3
//!   documents to 4.5 (the same transformation as
//!   `nbformat.v4.convert.upgrade`), and rejects everything else with a typed
//!   [`NotebookError`] that says what is wrong and where.
//! * [`to_bytes`] serializes exactly like `nbformat.writes(nb)`: JSON with
//!   `indent=1`, sorted keys, non-ASCII left unescaped, multi-line text split
//!   into lists of lines, and a trailing newline.
//! * Nothing is dropped: unknown top-level keys, unknown cell keys (such as
//!   `attachments`), unknown cell types and unknown output types are all kept
//!   verbatim. Outputs are stored as raw JSON values.
//! * [`write_to`] streams the same bytes to any writer in small chunks, and a [`Spill`]
//!   keeps large output strings in a temporary file, so a running notebook's memory does
//!   not grow with the size of its outputs.
//!
//! Reading follows `nbformat.reads(s, as_version=4)`: list-of-lines strings
//! are joined, transient keys (`metadata.orig_nbformat`, `metadata.signature`,
//! cell `metadata.trusted`) are dropped, and for nbformat >= 4.5 missing or
//! duplicate cell ids are replaced by fresh random ids.
//!
//! ```
//! let input = br##"{
//!  "cells": [
//!   {"cell_type": "code", "id": "a1", "metadata": {"tags": ["parameters"]},
//!    "source": ["x = 1\n", "y = 2"], "outputs": [], "execution_count": null}
//!  ],
//!  "metadata": {"kernelspec": {"name": "python3", "language": "python"}},
//!  "nbformat": 4, "nbformat_minor": 5
//! }"##;
//! let mut nb = nbpipe_notebook::read(input)?;
//! assert_eq!(nb.kernel_name(), Some("python3"));
//! assert!(nb.cells[0].has_tag("parameters"));
//! assert_eq!(nb.cells[0].source, "x = 1\ny = 2");
//!
//! let cell = nb.new_code_cell("x = 42");
//! nb.cells.insert(1, cell);
//! nb.validate()?;
//! let bytes = nbpipe_notebook::to_bytes(&nb);
//! assert!(bytes.ends_with(b"}\n"));
//! # Ok::<(), nbpipe_notebook::NotebookError>(())
//! ```
#![deny(missing_docs)]

mod error;
mod pyjson;
mod read;
pub mod spill;
mod upgrade;
mod write;

use std::collections::HashMap;

pub use error::NotebookError;
pub use read::{from_value, read, MAX_DEPTH};
pub use serde_json::{Map, Value};
pub use spill::Spill;
pub use write::{to_bytes, to_string, write_to};

/// The newest nbformat minor version this crate knows (4.5).
pub const CURRENT_NBFORMAT_MINOR: u64 = 5;

/// A notebook document (nbformat 4).
#[derive(Debug, Clone, PartialEq)]
pub struct Notebook {
    /// Major format version; always 4 for notebooks returned by [`read`].
    pub nbformat: u64,
    /// Minor format version. Cell ids exist from 4.5 on.
    pub nbformat_minor: u64,
    /// Notebook metadata (`kernelspec`, `language_info`, anything else).
    pub metadata: Map<String, Value>,
    /// The cells, in order.
    pub cells: Vec<Cell>,
    /// Unknown top-level keys, kept verbatim.
    pub extra: Map<String, Value>,
}

/// One notebook cell.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// `code`, `markdown`, `raw` or anything else.
    pub cell_type: CellType,
    /// The cell id (nbformat >= 4.5; kept if present in older notebooks).
    pub id: Option<String>,
    /// The source text; a list of lines in the file is joined on read.
    pub source: String,
    /// Cell metadata (`tags`, `papermill`, ...).
    pub metadata: Map<String, Value>,
    /// Outputs of a code cell as raw JSON (unknown output types included).
    /// Ignored for other cell types; an `outputs` key on those lives in `extra`.
    pub outputs: Vec<Value>,
    /// Execution count of a code cell. Ignored for other cell types.
    pub execution_count: Option<i64>,
    /// Every other key (`attachments`, unknown keys), kept verbatim.
    pub extra: Map<String, Value>,
}

/// The `cell_type` of a [`Cell`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CellType {
    /// `"code"`
    Code,
    /// `"markdown"`
    Markdown,
    /// `"raw"`
    Raw,
    /// Any other cell type, kept verbatim.
    Other(String),
}

impl CellType {
    /// The JSON spelling of this cell type.
    pub fn as_str(&self) -> &str {
        match self {
            CellType::Code => "code",
            CellType::Markdown => "markdown",
            CellType::Raw => "raw",
            CellType::Other(s) => s,
        }
    }

    /// Parse the JSON spelling of a cell type.
    pub fn parse(s: &str) -> CellType {
        match s {
            "code" => CellType::Code,
            "markdown" => CellType::Markdown,
            "raw" => CellType::Raw,
            other => CellType::Other(other.to_owned()),
        }
    }
}

impl std::fmt::Display for CellType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Default for Notebook {
    fn default() -> Self {
        Notebook::new()
    }
}

impl Notebook {
    /// An empty nbformat 4.5 notebook with empty metadata.
    pub fn new() -> Notebook {
        Notebook {
            nbformat: 4,
            nbformat_minor: CURRENT_NBFORMAT_MINOR,
            metadata: Map::new(),
            cells: Vec::new(),
            extra: Map::new(),
        }
    }

    /// `metadata.kernelspec.name`.
    pub fn kernel_name(&self) -> Option<&str> {
        self.metadata.get("kernelspec")?.get("name")?.as_str()
    }

    /// `metadata.kernelspec.language`, falling back to `metadata.language_info.name`.
    pub fn language(&self) -> Option<&str> {
        let from_spec = self
            .metadata
            .get("kernelspec")
            .and_then(|k| k.get("language"))
            .and_then(Value::as_str);
        from_spec.or_else(|| self.metadata.get("language_info")?.get("name")?.as_str())
    }

    /// Whether this notebook's format has cell ids (nbformat >= 4.5).
    pub fn supports_cell_ids(&self) -> bool {
        (self.nbformat, self.nbformat_minor) >= (4, 5)
    }

    /// A new empty cell of the given type (like `nbformat.v4.new_*_cell`),
    /// with a fresh id unique in this notebook when it supports ids.
    /// The cell is not inserted.
    pub fn new_cell(&self, cell_type: CellType, source: &str) -> Cell {
        Cell {
            cell_type,
            id: self.supports_cell_ids().then(|| self.fresh_cell_id()),
            source: source.to_owned(),
            metadata: Map::new(),
            outputs: Vec::new(),
            execution_count: None,
            extra: Map::new(),
        }
    }

    /// A new code cell (no outputs, no execution count, empty metadata),
    /// with an id when nbformat >= 4.5. The cell is not inserted.
    pub fn new_code_cell(&self, source: &str) -> Cell {
        self.new_cell(CellType::Code, source)
    }

    /// A random cell id (8 hex digits, like nbformat) not used by any cell.
    pub fn fresh_cell_id(&self) -> String {
        loop {
            let id = random_cell_id();
            if !self.cells.iter().any(|c| c.id.as_deref() == Some(&id)) {
                return id;
            }
        }
    }

    /// Structural checks the engine relies on:
    ///
    /// * `nbformat` is 4;
    /// * for nbformat >= 4.5 every cell has an id and ids are unique;
    /// * every output of a code cell is an object with a string `output_type`.
    ///
    /// The id *syntax* is not enforced (files in the wild break it and
    /// nbformat only warns); see [`is_valid_cell_id`].
    pub fn validate(&self) -> Result<(), NotebookError> {
        if self.nbformat != 4 {
            return Err(NotebookError::UnsupportedVersion {
                major: self.nbformat,
                minor: self.nbformat_minor,
            });
        }
        let check_ids = self.supports_cell_ids();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (index, cell) in self.cells.iter().enumerate() {
            if check_ids {
                let Some(id) = cell.id.as_deref() else {
                    return Err(NotebookError::missing(format!("cell {index}"), "id"));
                };
                if let Some(&first) = seen.get(id) {
                    return Err(NotebookError::DuplicateCellId {
                        id: id.to_owned(),
                        first,
                        index,
                    });
                }
                seen.insert(id, index);
            }
            if cell.is_code() {
                for (o, output) in cell.outputs.iter().enumerate() {
                    let location = format!("cell {index} output {o}");
                    let Some(obj) = output.as_object() else {
                        return Err(NotebookError::Invalid {
                            location,
                            message: format!(
                                "an output must be an object, found {}",
                                error::kind(output)
                            ),
                        });
                    };
                    match obj.get("output_type") {
                        None => return Err(NotebookError::missing(location, "output_type")),
                        Some(Value::String(_)) => {}
                        Some(other) => {
                            return Err(NotebookError::wrong_type(
                                location,
                                "output_type",
                                "a string",
                                other,
                            ))
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

impl Cell {
    /// The string entries of `metadata.tags` (non-strings are skipped).
    pub fn tags(&self) -> Vec<&str> {
        match self.metadata.get("tags") {
            Some(Value::Array(tags)) => tags.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }

    /// Whether `metadata.tags` contains `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        match self.metadata.get("tags") {
            Some(Value::Array(tags)) => tags.iter().any(|t| t.as_str() == Some(tag)),
            _ => false,
        }
    }

    /// Whether this is a code cell.
    pub fn is_code(&self) -> bool {
        self.cell_type == CellType::Code
    }
}

/// Whether `id` matches the nbformat 4.5 cell id pattern `^[a-zA-Z0-9-_]{1,64}$`.
pub fn is_valid_cell_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A random cell id in nbformat's style: the first 8 hex digits of a UUID4.
pub fn random_cell_id() -> String {
    let mut s = uuid::Uuid::new_v4().simple().to_string();
    s.truncate(8);
    s
}
