//! Serializing the model exactly like `nbformat.writes(nb)`.
//!
//! Single pass over a borrowed view of the notebook: nothing is cloned, and
//! nbformat's `split_lines` / `strip_transient` are applied on the fly. [`write_to`] streams
//! to any writer in bounded chunks, reading spilled strings back from their [`Spill`].

use std::io::{self, Write};

use serde_json::{Map, Value};

use crate::pyjson::{
    sorted_entries, write_lines, write_str, write_value, ArrayWriter, ObjectWriter, Out,
};
use crate::spill::Spill;
use crate::{Cell, Notebook};

/// Top-level metadata keys nbformat never writes.
const TRANSIENT_NB_METADATA: &[&str] = &["orig_nbformat", "orig_nbformat_minor", "signature"];
/// Cell metadata keys nbformat never writes.
const TRANSIENT_CELL_METADATA: &[&str] = &["trusted"];
/// Non-`text/*` mime types whose string values are split into lines.
const NON_TEXT_SPLIT_MIMES: &[&str] = &["application/javascript", "image/svg+xml"];

/// Serialize a notebook exactly like Python's `nbformat.writes(nb)`:
/// `indent=1`, sorted keys, UTF-8 without `\u` escapes for non-ASCII,
/// multi-line strings split into lists of lines, plus a trailing newline.
pub fn to_bytes(nb: &Notebook) -> Vec<u8> {
    let mut out = Out::buffer(estimate_size(nb), None);
    write_notebook(&mut out, nb);
    out.push(b'\n');
    out.into_bytes()
}

/// Serialize like [`to_bytes`] into `sink`, in chunks of at most ~64 KiB: memory use does
/// not grow with the notebook. Markers of `spill` are written as the strings they stand for.
pub fn write_to(nb: &Notebook, spill: Option<&Spill>, sink: &mut dyn Write) -> io::Result<()> {
    let mut out = Out::stream(sink, spill);
    write_notebook(&mut out, nb);
    out.push(b'\n');
    out.finish()
}

/// [`to_bytes`] as a `String`.
pub fn to_string(nb: &Notebook) -> String {
    // The writer only emits valid UTF-8 (it copies `&str`s and ASCII).
    String::from_utf8(to_bytes(nb))
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// A cheap lower-bound guess of the output size, so big outputs are not
/// copied over and over while the buffer grows.
fn estimate_size(nb: &Notebook) -> usize {
    fn value_size(v: &Value) -> usize {
        match v {
            Value::String(s) => s.len() + 4,
            Value::Array(a) => a.iter().map(value_size).sum::<usize>() + 4,
            Value::Object(o) => {
                o.iter()
                    .map(|(k, v)| k.len() + 8 + value_size(v))
                    .sum::<usize>()
                    + 4
            }
            _ => 8,
        }
    }
    nb.cells
        .iter()
        .map(|c| c.source.len() + 128 + c.outputs.iter().map(value_size).sum::<usize>())
        .sum::<usize>()
        + 1024
}

/// One entry of an object whose keys come from struct fields and an `extra` map.
enum Field<'a> {
    Value(&'a Value),
    Str(&'a str),
    Lines(&'a str),
    U64(u64),
    OptI64(Option<i64>),
    Metadata(&'a Map<String, Value>, &'static [&'static str]),
    Cells(&'a [Cell]),
    Outputs(&'a [Value]),
    Attachments(&'a Value),
}

fn write_field(out: &mut Out<'_>, field: &Field<'_>, depth: usize) {
    match field {
        Field::Value(v) => write_value(out, v, depth),
        Field::Str(s) => write_str(out, s),
        Field::Lines(s) => write_lines(out, s, depth),
        Field::U64(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Field::OptI64(None) => out.extend_from_slice(b"null"),
        Field::OptI64(Some(n)) => out.extend_from_slice(n.to_string().as_bytes()),
        Field::Metadata(map, skip) => {
            let mut obj = ObjectWriter::new(out, depth);
            for (k, v) in sorted_entries(map) {
                if !skip.contains(&k) {
                    write_value(obj.key(k), v, depth + 1);
                }
            }
            obj.end();
        }
        Field::Cells(cells) => {
            let mut arr = ArrayWriter::new(out, depth);
            for cell in cells.iter() {
                write_cell(arr.item(), cell, depth + 1);
            }
            arr.end();
        }
        Field::Outputs(outputs) => {
            let mut arr = ArrayWriter::new(out, depth);
            for output in outputs.iter() {
                write_output(arr.item(), output, depth + 1);
            }
            arr.end();
        }
        Field::Attachments(v) => write_attachments(out, v, depth),
    }
}

/// Write known fields merged with `extra` in sorted key order. Known fields
/// win over `extra` entries with the same key.
fn write_merged<'a>(
    out: &mut Out<'_>,
    mut fields: Vec<(&'a str, Field<'a>)>,
    extra: &'a Map<String, Value>,
    is_cell: bool,
    depth: usize,
) {
    for (k, v) in sorted_entries(extra) {
        if fields.iter().any(|(name, _)| *name == k) {
            continue;
        }
        let field = if is_cell && k == "attachments" {
            Field::Attachments(v)
        } else {
            Field::Value(v)
        };
        fields.push((k, field));
    }
    fields.sort_by(|a, b| a.0.cmp(b.0));
    let mut obj = ObjectWriter::new(out, depth);
    for (k, field) in &fields {
        write_field(obj.key(k), field, depth + 1);
    }
    obj.end();
}

fn write_notebook(out: &mut Out<'_>, nb: &Notebook) {
    let fields = vec![
        ("cells", Field::Cells(&nb.cells)),
        (
            "metadata",
            Field::Metadata(&nb.metadata, TRANSIENT_NB_METADATA),
        ),
        ("nbformat", Field::U64(nb.nbformat)),
        ("nbformat_minor", Field::U64(nb.nbformat_minor)),
    ];
    write_merged(out, fields, &nb.extra, false, 0);
}

fn write_cell(out: &mut Out<'_>, cell: &Cell, depth: usize) {
    let mut fields = Vec::with_capacity(8 + cell.extra.len());
    fields.push(("cell_type", Field::Str(cell.cell_type.as_str())));
    if let Some(id) = &cell.id {
        fields.push(("id", Field::Str(id)));
    }
    fields.push((
        "metadata",
        Field::Metadata(&cell.metadata, TRANSIENT_CELL_METADATA),
    ));
    fields.push(("source", Field::Lines(&cell.source)));
    if cell.is_code() {
        fields.push(("execution_count", Field::OptI64(cell.execution_count)));
        fields.push(("outputs", Field::Outputs(&cell.outputs)));
    }
    write_merged(out, fields, &cell.extra, true, depth);
}

/// nbformat `_split_mimebundle`: `text/*`, JavaScript and SVG strings become line lists.
fn write_mimebundle(out: &mut Out<'_>, data: &Map<String, Value>, depth: usize) {
    let mut obj = ObjectWriter::new(out, depth);
    for (k, v) in sorted_entries(data) {
        let out = obj.key(k);
        match v {
            Value::String(s) if k.starts_with("text/") || NON_TEXT_SPLIT_MIMES.contains(&k) => {
                write_lines(out, s, depth + 1)
            }
            _ => write_value(out, v, depth + 1),
        }
    }
    obj.end();
}

fn write_attachments(out: &mut Out<'_>, attachments: &Value, depth: usize) {
    let Value::Object(map) = attachments else {
        return write_value(out, attachments, depth);
    };
    let mut obj = ObjectWriter::new(out, depth);
    for (name, bundle) in sorted_entries(map) {
        match bundle {
            Value::Object(bundle) => write_mimebundle(obj.key(name), bundle, depth + 1),
            other => write_value(obj.key(name), other, depth + 1),
        }
    }
    obj.end();
}

fn write_output(out: &mut Out<'_>, output: &Value, depth: usize) {
    let Value::Object(map) = output else {
        return write_value(out, output, depth);
    };
    let output_type = map.get("output_type").and_then(Value::as_str).unwrap_or("");
    let has_data = matches!(output_type, "execute_result" | "display_data");
    let is_stream = output_type == "stream";
    let mut obj = ObjectWriter::new(out, depth);
    for (k, v) in sorted_entries(map) {
        let out = obj.key(k);
        match v {
            Value::Object(data) if has_data && k == "data" => {
                write_mimebundle(out, data, depth + 1)
            }
            Value::String(text) if is_stream && k == "text" => write_lines(out, text, depth + 1),
            _ => write_value(out, v, depth + 1),
        }
    }
    obj.end();
}
