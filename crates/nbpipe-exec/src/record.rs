//! Turning IOPub messages into notebook outputs, the way nbclient does.
//!
//! Owns: output construction from message content (kept verbatim), consecutive stream
//! merging, `clear_output` (immediate and `wait=True`), `update_display_data` through display
//! ids (across cells), `execution_count`, and the `metadata.execution` timestamps.
//! It does not talk to the kernel or decide when a cell is finished beyond reporting `idle`.

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use nbpipe_kernel::Msg;
use nbpipe_notebook::Notebook;
use serde_json::{json, Map, Value};

/// What one IOPub message meant for the cell.
#[derive(Debug, PartialEq, Eq)]
pub enum Recorded {
    /// The kernel went idle: all output for the request has arrived.
    Idle,
    /// An output was appended or extended (its index in the cell's outputs).
    Output(usize),
    /// Outputs changed without a new one (clear, display update).
    Changed,
    /// Nothing visible changed.
    Nothing,
}

/// Per-run recording state.
#[derive(Default)]
pub struct Recorder {
    /// display_id → cell index → output indices showing it.
    display_map: HashMap<String, HashMap<usize, Vec<usize>>>,
    clear_before_next_output: bool,
}

impl Recorder {
    /// Reset per-cell state before a cell executes; its previous outputs are gone.
    pub fn begin_cell(&mut self, cell: usize) {
        self.clear_before_next_output = false;
        self.forget_cell(cell);
    }

    fn forget_cell(&mut self, cell: usize) {
        for cells in self.display_map.values_mut() {
            if let Some(v) = cells.get_mut(&cell) {
                v.clear();
            }
        }
    }

    /// Apply one IOPub message (already known to belong to the cell's request).
    pub fn handle(&mut self, nb: &mut Notebook, cell_idx: usize, msg: &Msg) -> Recorded {
        let content = &msg.content;
        let display_id = content
            .get("transient")
            .and_then(|t| t.get("display_id"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let mut changed = false;
        if let Some(id) = &display_id {
            if matches!(
                msg.msg_type.as_str(),
                "execute_result" | "display_data" | "update_display_data"
            ) {
                changed |= self.update_display(nb, id, content);
            }
        }
        let cell = &mut nb.cells[cell_idx];
        if let Some(count) = content.get("execution_count").and_then(Value::as_i64) {
            cell.execution_count = Some(count);
        }
        let stamp = |key: &str, cell: &mut nbpipe_notebook::Cell| {
            let exec = cell
                .metadata
                .entry("execution")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(m) = exec {
                m.insert(key.to_string(), Value::String(timestamp(&msg.header)));
            }
        };
        match msg.msg_type.as_str() {
            "status" => match msg.str_field("execution_state") {
                "idle" => {
                    stamp("iopub.status.idle", cell);
                    return Recorded::Idle;
                }
                "busy" => stamp("iopub.status.busy", cell),
                _ => {}
            },
            "execute_input" => stamp("iopub.execute_input", cell),
            "clear_output" => {
                if content
                    .get("wait")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
                {
                    self.clear_before_next_output = true;
                } else {
                    cell.outputs.clear();
                    self.forget_cell(cell_idx);
                    return Recorded::Changed;
                }
            }
            "execute_result" | "stream" | "display_data" | "error" => {
                let out = output_from_msg(&msg.msg_type, content);
                if self.clear_before_next_output {
                    nb.cells[cell_idx].outputs.clear();
                    self.forget_cell(cell_idx);
                    self.clear_before_next_output = false;
                }
                let outputs = &mut nb.cells[cell_idx].outputs;
                if let Some(last) = outputs.last_mut() {
                    if merge_stream(last, &out) {
                        return Recorded::Output(outputs.len() - 1);
                    }
                }
                if let Some(id) = display_id {
                    self.display_map
                        .entry(id)
                        .or_default()
                        .entry(cell_idx)
                        .or_default()
                        .push(outputs.len());
                }
                outputs.push(out);
                return Recorded::Output(outputs.len() - 1);
            }
            _ => {}
        }
        if changed {
            Recorded::Changed
        } else {
            Recorded::Nothing
        }
    }

    fn update_display(&self, nb: &mut Notebook, id: &str, content: &Value) -> bool {
        let Some(cells) = self.display_map.get(id) else {
            return false;
        };
        let data = content.get("data").cloned().unwrap_or_else(|| json!({}));
        let metadata = content
            .get("metadata")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let mut changed = false;
        for (&cell, indices) in cells {
            for &i in indices {
                if let Some(Value::Object(out)) =
                    nb.cells.get_mut(cell).and_then(|c| c.outputs.get_mut(i))
                {
                    out.insert("data".into(), data.clone());
                    out.insert("metadata".into(), metadata.clone());
                    changed = true;
                }
            }
        }
        changed
    }
}

/// Build a notebook output from an output message, keeping the kernel's fields verbatim.
pub fn output_from_msg(msg_type: &str, content: &Value) -> Value {
    let get = |k: &str, default: Value| content.get(k).cloned().unwrap_or(default);
    match msg_type {
        "execute_result" => json!({
            "output_type": "execute_result",
            "data": get("data", json!({})),
            "metadata": get("metadata", json!({})),
            "execution_count": get("execution_count", Value::Null),
        }),
        "stream" => json!({
            "output_type": "stream",
            "name": get("name", json!("stdout")),
            "text": get("text", json!("")),
        }),
        "display_data" => json!({
            "output_type": "display_data",
            "data": get("data", json!({})),
            "metadata": get("metadata", json!({})),
        }),
        _ => json!({
            "output_type": "error",
            "ename": get("ename", json!("")),
            "evalue": get("evalue", json!("")),
            "traceback": get("traceback", json!([])),
        }),
    }
}

/// Append `new` to `last` if both are streams of the same name; true if merged.
fn merge_stream(last: &mut Value, new: &Value) -> bool {
    let is_stream = |v: &Value| v.get("output_type").and_then(Value::as_str) == Some("stream");
    if !is_stream(last) || !is_stream(new) || last.get("name") != new.get("name") {
        return false;
    }
    let add = text_of(new.get("text"));
    if let Some(Value::Object(m)) = Some(last) {
        let mut text = text_of(m.get("text"));
        text.push_str(&add);
        m.insert("text".into(), Value::String(text));
    }
    true
}

fn text_of(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts.iter().filter_map(Value::as_str).collect(),
        _ => String::new(),
    }
}

/// The message's `header.date` as nbclient records it (`...Z`, microseconds).
pub fn timestamp(header: &Value) -> String {
    let raw = header.get("date").and_then(Value::as_str).unwrap_or("");
    match DateTime::parse_from_rfc3339(raw) {
        Ok(t) => t
            .with_timezone(&Utc)
            .to_rfc3339_opts(SecondsFormat::Micros, true),
        Err(_) if !raw.is_empty() => raw.to_string(),
        Err(_) => now_z(),
    }
}

/// Now, as `...Z` with microseconds.
pub fn now_z() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Now, as papermill writes it (`...+00:00`, microseconds).
pub fn now_papermill(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, false)
}
