//! Parsing notebook JSON into the model (`nbformat.reads(s, as_version=4)`).

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::error::{kind, NotebookError};
use crate::{upgrade, Cell, CellType, Notebook};

/// Parse a notebook from its JSON bytes.
///
/// nbformat 4.x is read as-is (including minors newer than 4.5), nbformat 3
/// is upgraded to 4.5; any other version is
/// [`NotebookError::UnsupportedVersion`]. A leading UTF-8 byte order mark is
/// ignored. Malformed input is an error, never a panic.
pub fn read(bytes: &[u8]) -> Result<Notebook, NotebookError> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let depth = nesting_depth(bytes);
    if depth > MAX_DEPTH {
        return Err(NotebookError::TooDeep { depth });
    }
    let value: Value = parse_deep(bytes).map_err(|e| {
        let full = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        let message = full.strip_suffix(&suffix).unwrap_or(&full).to_owned();
        NotebookError::InvalidJson {
            line: e.line(),
            column: e.column(),
            message,
        }
    })?;
    from_value(value)
}

/// JSON nested deeper than this is refused. serde_json stops at 128 levels by default, but
/// Python's json (and so papermill) reads far deeper; beyond ~1000 Python's own recursion
/// limit stops papermill too.
pub const MAX_DEPTH: usize = 1000;

/// Parse without serde_json's 128-level limit, growing the stack as needed (`serde_stacker`),
/// so deep but valid notebooks are read like Python reads them.
fn parse_deep(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    use serde::Deserialize;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    de.disable_recursion_limit();
    let value = Value::deserialize(serde_stacker::Deserializer::new(&mut de))?;
    de.end()?;
    Ok(value)
}

/// The deepest nesting of arrays/objects in `bytes` (strings skipped), in one pass.
fn nesting_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Build a notebook from an already parsed JSON value (same rules as [`read`]).
pub fn from_value(value: Value) -> Result<Notebook, NotebookError> {
    let Value::Object(obj) = value else {
        return Err(NotebookError::NotAnObject {
            found: kind(&value),
        });
    };
    let major = match obj.get("nbformat") {
        None => return Err(NotebookError::MissingVersion),
        Some(v) => v.as_u64().ok_or_else(|| {
            NotebookError::wrong_type("the notebook", "nbformat", "an integer", v)
        })?,
    };
    let minor = match obj.get("nbformat_minor") {
        None => 0,
        Some(v) => v.as_u64().ok_or_else(|| {
            NotebookError::wrong_type("the notebook", "nbformat_minor", "an integer", v)
        })?,
    };
    match major {
        4 => from_v4(obj, 4, minor, true),
        3 => upgrade::upgrade_v3(obj),
        _ => Err(NotebookError::UnsupportedVersion { major, minor }),
    }
}

/// Python truthiness of a JSON value.
pub(crate) fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Is a key a JSON mime type that is never joined/split (nbformat `_is_json_mime`)?
pub(crate) fn is_json_mime(mime: &str) -> bool {
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// `"".join(list)` if every element is a string.
fn join_strings(items: &[Value]) -> Option<String> {
    let mut len = 0;
    for item in items {
        len += item.as_str()?.len();
    }
    let mut s = String::with_capacity(len);
    for item in items {
        s.push_str(item.as_str().unwrap_or_default());
    }
    Some(s)
}

/// nbformat `_rejoin_mimebundle`.
fn rejoin_mimebundle(data: &mut Map<String, Value>) {
    for (key, value) in data.iter_mut() {
        if is_json_mime(key) {
            continue;
        }
        if let Value::Array(items) = value {
            if let Some(joined) = join_strings(items) {
                *value = Value::String(joined);
            }
        }
    }
}

/// The output part of nbformat v4 `rejoin_lines`.
fn rejoin_output(output: &mut Value) {
    let Value::Object(obj) = output else { return };
    let output_type = obj.get("output_type").cloned().unwrap_or(Value::Null);
    match output_type.as_str() {
        Some("execute_result" | "display_data") => {
            if let Some(Value::Object(data)) = obj.get_mut("data") {
                rejoin_mimebundle(data);
            }
        }
        _ if truthy(&output_type) => {
            if let Some(Value::Array(items)) = obj.get("text") {
                if let Some(joined) = join_strings(items) {
                    obj.insert("text".to_owned(), Value::String(joined));
                }
            }
        }
        _ => {}
    }
}

fn take_object(
    obj: &mut Map<String, Value>,
    location: &str,
    key: &'static str,
) -> Result<Map<String, Value>, NotebookError> {
    match obj.remove(key) {
        None => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m),
        Some(other) => Err(NotebookError::wrong_type(
            location,
            key,
            "an object",
            &other,
        )),
    }
}

/// Build the model from a v4-shaped top-level object.
///
/// `v4_read` applies what nbformat's v4 JSON reader does on top of the
/// structure (`rejoin_lines`, `strip_transient`); the v3 upgrade path has
/// already done its own equivalent and passes `false`.
pub(crate) fn from_v4(
    mut obj: Map<String, Value>,
    major: u64,
    minor: u64,
    v4_read: bool,
) -> Result<Notebook, NotebookError> {
    obj.remove("nbformat");
    obj.remove("nbformat_minor");
    let mut metadata = take_object(&mut obj, "the notebook", "metadata")?;
    if v4_read {
        for key in ["orig_nbformat", "orig_nbformat_minor", "signature"] {
            metadata.remove(key);
        }
    }
    let raw_cells = match obj.remove("cells") {
        None => return Err(NotebookError::missing("the notebook", "cells")),
        Some(Value::Array(cells)) => cells,
        Some(other) => {
            return Err(NotebookError::wrong_type(
                "the notebook",
                "cells",
                "an array",
                &other,
            ))
        }
    };
    let mut cells = Vec::with_capacity(raw_cells.len());
    for (index, raw) in raw_cells.into_iter().enumerate() {
        cells.push(cell_from_value(index, raw, v4_read)?);
    }
    let mut nb = Notebook {
        nbformat: major,
        nbformat_minor: minor,
        metadata,
        cells,
        extra: obj,
    };
    if nb.supports_cell_ids() {
        repair_cell_ids(&mut nb);
    }
    Ok(nb)
}

/// nbformat's `_normalize`: give id-less cells a fresh id, then replace the
/// id of every cell that repeats an earlier cell's id.
fn repair_cell_ids(nb: &mut Notebook) {
    let mut used: HashSet<String> = nb.cells.iter().filter_map(|c| c.id.clone()).collect();
    let fresh = |used: &mut HashSet<String>| loop {
        let id = crate::random_cell_id();
        if used.insert(id.clone()) {
            return id;
        }
    };
    for cell in &mut nb.cells {
        if cell.id.is_none() {
            cell.id = Some(fresh(&mut used));
        }
    }
    let mut seen: HashSet<String> = HashSet::new();
    for cell in &mut nb.cells {
        let id = cell.id.clone().unwrap_or_default();
        if !seen.insert(id) {
            let new_id = fresh(&mut used);
            seen.insert(new_id.clone());
            cell.id = Some(new_id);
        }
    }
}

fn cell_from_value(index: usize, raw: Value, v4_read: bool) -> Result<Cell, NotebookError> {
    let location = format!("cell {index}");
    let Value::Object(mut obj) = raw else {
        return Err(NotebookError::Invalid {
            location,
            message: format!("a cell must be a JSON object, found {}", kind(&raw)),
        });
    };
    let cell_type = match obj.remove("cell_type") {
        None => return Err(NotebookError::missing(location, "cell_type")),
        Some(Value::String(s)) => CellType::parse(&s),
        Some(other) => {
            return Err(NotebookError::wrong_type(
                location,
                "cell_type",
                "a string",
                &other,
            ))
        }
    };
    let id = match obj.remove("id") {
        None => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => {
            return Err(NotebookError::wrong_type(
                location, "id", "a string", &other,
            ))
        }
    };
    let source = match obj.remove("source") {
        None => String::new(),
        Some(Value::String(s)) => s,
        Some(Value::Array(lines)) => join_strings(&lines).ok_or_else(|| {
            NotebookError::wrong_type(
                &location,
                "source",
                "a string or a list of strings",
                lines
                    .iter()
                    .find(|l| !l.is_string())
                    .unwrap_or(&Value::Null),
            )
        })?,
        Some(other) => {
            return Err(NotebookError::wrong_type(
                location,
                "source",
                "a string or a list of strings",
                &other,
            ))
        }
    };
    let mut metadata = take_object(&mut obj, &location, "metadata")?;
    if v4_read {
        metadata.remove("trusted");
    }
    let (mut outputs, mut execution_count) = (Vec::new(), None);
    if cell_type == CellType::Code {
        outputs = match obj.remove("outputs") {
            None => Vec::new(),
            Some(Value::Array(outputs)) => outputs,
            Some(other) => {
                return Err(NotebookError::wrong_type(
                    location, "outputs", "an array", &other,
                ))
            }
        };
        execution_count = match obj.remove("execution_count") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_i64().ok_or_else(|| {
                NotebookError::wrong_type(&location, "execution_count", "an integer or null", &v)
            })?),
        };
        if v4_read {
            outputs.iter_mut().for_each(rejoin_output);
        }
    }
    if v4_read {
        if let Some(Value::Object(attachments)) = obj.get_mut("attachments") {
            for bundle in attachments.values_mut() {
                if let Value::Object(bundle) = bundle {
                    rejoin_mimebundle(bundle);
                }
            }
        }
    }
    Ok(Cell {
        cell_type,
        id,
        source,
        metadata,
        outputs,
        execution_count,
        extra: obj,
    })
}
