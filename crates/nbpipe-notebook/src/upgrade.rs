//! nbformat 3 → 4 upgrade, following `nbformat.v3` reading (`rejoin_lines`)
//! followed by `nbformat.v4.convert.upgrade`.

use serde_json::{Map, Value};

use crate::error::{kind, NotebookError};
use crate::pyjson::splitlines_no_ends;
use crate::read::{from_v4, truthy};
use crate::Notebook;

/// v3 output keys whose values may be stored as lists of lines.
const MULTILINE_OUTPUT_KEYS: [&str; 6] = ["text", "html", "svg", "latex", "javascript", "json"];

/// v3 short output keys and their mime types, in nbformat's `_mime_map` order.
const MIME_MAP: [(&str, &str); 8] = [
    ("text", "text/plain"),
    ("html", "text/html"),
    ("svg", "image/svg+xml"),
    ("png", "image/png"),
    ("jpeg", "image/jpeg"),
    ("latex", "text/latex"),
    ("json", "application/json"),
    ("javascript", "application/javascript"),
];

/// Upgrade a parsed nbformat 3 document to an nbformat 4.5 [`Notebook`].
pub(crate) fn upgrade_v3(mut nb: Map<String, Value>) -> Result<Notebook, NotebookError> {
    let worksheets = match nb.remove("worksheets") {
        None => return Err(NotebookError::missing("the v3 notebook", "worksheets")),
        Some(Value::Array(ws)) => ws,
        Some(other) => {
            return Err(NotebookError::wrong_type(
                "the v3 notebook",
                "worksheets",
                "an array",
                &other,
            ))
        }
    };
    let orig_nbformat = nb.remove("orig_nbformat").filter(truthy);
    let orig_minor = nb.remove("orig_nbformat_minor").filter(truthy);
    let metadata = match nb.get_mut("metadata") {
        None => return Err(NotebookError::missing("the v3 notebook", "metadata")),
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(NotebookError::wrong_type(
                "the v3 notebook",
                "metadata",
                "an object",
                other,
            ))
        }
    };
    metadata.insert(
        "orig_nbformat".to_owned(),
        orig_nbformat.unwrap_or(Value::from(3)),
    );
    metadata.insert(
        "orig_nbformat_minor".to_owned(),
        orig_minor.unwrap_or(Value::from(0)),
    );
    metadata.remove("name");
    metadata.remove("signature");

    let mut cells = Vec::new();
    for (w, ws) in worksheets.into_iter().enumerate() {
        let ws_location = format!("worksheet {w}");
        let Value::Object(mut ws) = ws else {
            return Err(NotebookError::Invalid {
                location: ws_location,
                message: format!("a worksheet must be an object, found {}", kind(&ws)),
            });
        };
        let ws_cells = match ws.remove("cells") {
            None => return Err(NotebookError::missing(ws_location, "cells")),
            Some(Value::Array(c)) => c,
            Some(other) => {
                return Err(NotebookError::wrong_type(
                    ws_location,
                    "cells",
                    "an array",
                    &other,
                ))
            }
        };
        for (c, cell) in ws_cells.into_iter().enumerate() {
            let location = format!("worksheet {w} cell {c}");
            cells.push(upgrade_cell(&location, cell)?);
        }
    }
    nb.insert("cells".to_owned(), Value::Array(cells));
    from_v4(nb, 4, 5, false)
}

/// v3 `_join_lines`: lists written by `splitlines(True)` are concatenated,
/// lists written by `splitlines()` are joined with `\n`.
fn join_lines(location: &str, key: &str, value: &mut Value) -> Result<(), NotebookError> {
    let Value::Array(items) = value else {
        return Ok(());
    };
    let mut lines = Vec::with_capacity(items.len());
    for item in items.iter() {
        match item.as_str() {
            Some(s) => lines.push(s),
            None => {
                return Err(NotebookError::wrong_type(
                    location,
                    key,
                    "a string or a list of strings",
                    item,
                ))
            }
        }
    }
    let sep = match lines.first() {
        Some(first) if first.ends_with('\n') || first.ends_with('\r') => "",
        _ => "\n",
    };
    *value = Value::String(lines.join(sep));
    Ok(())
}

fn upgrade_cell(location: &str, cell: Value) -> Result<Value, NotebookError> {
    let Value::Object(mut cell) = cell else {
        return Err(NotebookError::Invalid {
            location: location.to_owned(),
            message: format!("a cell must be a JSON object, found {}", kind(&cell)),
        });
    };
    let cell_type = match cell.get("cell_type") {
        None => return Err(NotebookError::missing(location, "cell_type")),
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(NotebookError::wrong_type(
                location,
                "cell_type",
                "a string",
                other,
            ))
        }
    };
    // v3 rejoin_lines
    if cell_type == "code" {
        if let Some(input) = cell.get_mut("input") {
            join_lines(location, "input", input)?;
        }
    } else {
        for key in ["source", "rendered"] {
            if let Some(v) = cell.get_mut(key) {
                join_lines(location, key, v)?;
            }
        }
    }
    // v4 upgrade_cell
    let metadata = cell
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !metadata.is_object() {
        return Err(NotebookError::wrong_type(
            location,
            "metadata",
            "an object",
            metadata,
        ));
    }
    cell.insert("id".to_owned(), Value::String(crate::random_cell_id()));
    match cell_type.as_str() {
        "code" => {
            cell.remove("language");
            if let Some(collapsed) = cell.remove("collapsed") {
                if let Some(Value::Object(m)) = cell.get_mut("metadata") {
                    m.insert("collapsed".to_owned(), collapsed);
                }
            }
            let source = cell.remove("input").unwrap_or(Value::from(""));
            cell.insert("source".to_owned(), source);
            // nbpipe keeps execution counts as integers: a non-integer prompt
            // number (never valid in v3 either) becomes null.
            let count = cell
                .remove("prompt_number")
                .filter(|v| v.as_i64().is_some())
                .unwrap_or(Value::Null);
            cell.insert("execution_count".to_owned(), count);
            let outputs = match cell.get_mut("outputs") {
                None => return Err(NotebookError::missing(location, "outputs")),
                Some(Value::Array(outputs)) => outputs,
                Some(other) => {
                    return Err(NotebookError::wrong_type(
                        location, "outputs", "an array", other,
                    ))
                }
            };
            for (o, output) in outputs.iter_mut().enumerate() {
                upgrade_output(&format!("{location} output {o}"), output)?;
            }
        }
        "heading" => {
            let level = match cell.remove("level") {
                None => 1,
                Some(v) => v.as_i64().ok_or_else(|| {
                    NotebookError::wrong_type(location, "level", "an integer", &v)
                })?,
            };
            let text = match cell.get("source") {
                None => String::new(),
                Some(Value::String(s)) => splitlines_no_ends(s).join(" "),
                Some(other) => {
                    return Err(NotebookError::wrong_type(
                        location, "source", "a string", other,
                    ))
                }
            };
            let hashes = "#".repeat(level.clamp(0, 1 << 16) as usize);
            cell.insert("cell_type".to_owned(), Value::from("markdown"));
            cell.insert(
                "source".to_owned(),
                Value::String(format!("{hashes} {text}")),
            );
        }
        "html" => {
            cell.insert("cell_type".to_owned(), Value::from("markdown"));
        }
        _ => {}
    }
    Ok(Value::Object(cell))
}

/// v3 `to_mime_key`: rename short aliases to mime types.
fn to_mime_key(d: &mut Map<String, Value>) {
    for (alias, mime) in MIME_MAP {
        if let Some(v) = d.remove(alias) {
            d.insert(mime.to_owned(), v);
        }
    }
}

fn upgrade_output(location: &str, output: &mut Value) -> Result<(), NotebookError> {
    let Value::Object(out) = output else {
        return Err(NotebookError::Invalid {
            location: location.to_owned(),
            message: format!("an output must be an object, found {}", kind(output)),
        });
    };
    // v3 rejoin_lines
    for key in MULTILINE_OUTPUT_KEYS {
        if let Some(v) = out.get_mut(key) {
            join_lines(location, key, v)?;
        }
    }
    let output_type = match out.get("output_type") {
        None => return Err(NotebookError::missing(location, "output_type")),
        Some(v) => v.as_str().unwrap_or_default().to_owned(),
    };
    match output_type.as_str() {
        "pyout" | "display_data" => {
            out.entry("metadata")
                .or_insert_with(|| Value::Object(Map::new()));
            if output_type == "pyout" {
                out.insert("output_type".to_owned(), Value::from("execute_result"));
                let count = out.remove("prompt_number").unwrap_or(Value::Null);
                out.insert("execution_count".to_owned(), count);
            }
            let keys: Vec<String> = out
                .keys()
                .filter(|k| !matches!(k.as_str(), "output_type" | "execution_count" | "metadata"))
                .cloned()
                .collect();
            let mut data = Map::new();
            for key in keys {
                if let Some(v) = out.remove(&key) {
                    data.insert(key, v);
                }
            }
            to_mime_key(&mut data);
            if let Some(Value::String(s)) = data.get("application/json") {
                let parsed: Value =
                    serde_json::from_str(s).map_err(|e| NotebookError::Invalid {
                        location: location.to_owned(),
                        message: format!("the `json` output is not valid JSON: {e}"),
                    })?;
                data.insert("application/json".to_owned(), parsed);
            }
            out.insert("data".to_owned(), Value::Object(data));
            if let Some(Value::Object(m)) = out.get_mut("metadata") {
                to_mime_key(m);
            }
        }
        "pyerr" => {
            out.insert("output_type".to_owned(), Value::from("error"));
        }
        "stream" => {
            let name = out.remove("stream").unwrap_or(Value::from("stdout"));
            out.insert("name".to_owned(), name);
        }
        _ => {}
    }
    Ok(())
}
