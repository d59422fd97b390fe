//! Turning IOPub messages into notebook outputs, the way nbclient does.
//!
//! Owns: output construction from message content (kept verbatim), consecutive stream
//! merging, `clear_output` (immediate and `wait=True`), `update_display_data` through display
//! ids (across cells), `execution_count`, and the `metadata.execution` timestamps.
//! Large output strings go to the run's [`Spill`] file as they arrive, so memory does not grow
//! with the outputs. Every output is masked ([`Masker`]) before it is stored or shown; stream
//! text that could be the start of a secret is held back until the next piece of that
//! stream, another kind of output or the end of the cell ([`Recorder::end_cell`]) shows
//! whether it is one. It does not talk to the kernel or decide when a cell is finished
//! beyond reporting `idle`.

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use nbpipe_kernel::Msg;
use nbpipe_notebook::{Notebook, Spill};
use serde_json::{json, Map, Value};

use crate::mask::Masker;

/// Output strings at least this long are kept in the spill file rather than in memory.
pub const SPILL_THRESHOLD: usize = 32 * 1024;

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
    /// Where large output strings go; `None` keeps everything in memory.
    spill: Option<Spill>,
    /// The first spill failure, not yet reported (outputs then stay in memory).
    spill_error: Option<String>,
    /// Secret values to mask in every output.
    masker: Masker,
    /// Stream text not recorded yet because it could be the start of a secret, per stream
    /// name: stdout and stderr interleave, so one may be held while the other is recorded.
    held: Vec<Held>,
}

struct Held {
    cell: usize,
    name: Value,
    text: String,
}

impl Recorder {
    /// A recorder that keeps large output strings in `spill`.
    pub fn with_spill(spill: Option<Spill>) -> Recorder {
        Recorder {
            spill,
            ..Recorder::default()
        }
    }

    /// Mask the values `masker` knows in every output from now on.
    pub fn with_masker(mut self, masker: Masker) -> Recorder {
        self.masker = masker;
        self
    }

    /// The spill holding this run's large output strings, if any.
    pub fn spill(&self) -> Option<&Spill> {
        self.spill.as_ref()
    }

    /// Take the spill (the notebook's markers need it to be written or restored).
    pub fn take_spill(&mut self) -> Option<Spill> {
        self.spill.take()
    }

    /// A spill failure to report once (the run goes on with outputs in memory).
    pub fn take_spill_error(&mut self) -> Option<String> {
        self.spill_error.take()
    }

    /// Between cells: drop spilled strings no output uses any more, once they dominate.
    pub fn compact(&mut self, nb: &mut Notebook) {
        if let Some(spill) = self.spill.as_mut() {
            if let Err(e) = spill.compact(nb) {
                self.spill_error.get_or_insert(e.to_string());
            }
        }
    }

    fn stash(&mut self, output: &mut Value) {
        if let Some(spill) = self.spill.as_mut() {
            if let Err(e) = spill.stash_output(output) {
                self.spill_error.get_or_insert(e.to_string());
            }
        }
    }

    /// Reset per-cell state before a cell executes; its previous outputs are gone.
    pub fn begin_cell(&mut self, cell: usize) {
        self.clear_before_next_output = false;
        self.held.clear();
        self.forget_cell(cell);
    }

    /// The cell is over (or another kind of output comes): record the stream text held
    /// back (it did not complete a secret).
    pub fn end_cell(&mut self, nb: &mut Notebook, on_output: &mut dyn FnMut(&Value)) {
        for Held { cell, name, text } in std::mem::take(&mut self.held) {
            let text = self.masker.mask(&text);
            let out = json!({"output_type": "stream", "name": name, "text": text});
            on_output(&out);
            self.append_stream(nb, cell, out);
        }
    }

    /// Append a stream output to cell `cell`, merged into its last output when that is a
    /// stream of the same name.
    fn append_stream(&mut self, nb: &mut Notebook, cell: usize, mut out: Value) -> usize {
        let Some(c) = nb.cells.get_mut(cell) else {
            return 0;
        };
        if let Some(last) = c.outputs.last_mut() {
            match merge_stream(last, &out, self.spill.as_mut()) {
                Merge::No => {}
                Merge::Done => return c.outputs.len() - 1,
                Merge::Failed(e) => {
                    self.spill_error.get_or_insert(e.to_string());
                    return c.outputs.len() - 1;
                }
            }
        }
        self.stash(&mut out);
        let outputs = &mut nb.cells[cell].outputs;
        outputs.push(out);
        outputs.len() - 1
    }

    /// Mask a stream piece in place to what may be recorded now; `false`: all of it is held
    /// back. Text held for the same stream is put before it; held text of another cell is
    /// recorded first. A value split by output of the other stream is thus masked whole (its
    /// parts are recorded together, after that output).
    fn mask_stream_piece(
        &mut self,
        nb: &mut Notebook,
        cell_idx: usize,
        content: &mut Value,
        on_output: &mut dyn FnMut(&Value),
    ) -> bool {
        let name = content.get("name").cloned().unwrap_or(json!("stdout"));
        if self.clear_before_next_output {
            // The held text belongs to outputs about to be cleared.
            self.held.clear();
        }
        if self.held.iter().any(|h| h.cell != cell_idx) {
            self.end_cell(nb, on_output);
        }
        let mut pending = match self.held.iter().position(|h| h.name == name) {
            Some(i) => self.held.remove(i).text,
            None => String::new(),
        };
        pending.push_str(&text_of(content.get("text")));
        let (now, hold) = self.masker.mask_stream(&pending);
        if hold < pending.len() {
            self.held.push(Held {
                cell: cell_idx,
                name,
                text: pending[hold..].to_string(),
            });
        }
        if let Value::Object(m) = content {
            m.insert("text".into(), Value::String(now));
        }
        hold > 0
    }

    fn forget_cell(&mut self, cell: usize) {
        for cells in self.display_map.values_mut() {
            if let Some(v) = cells.get_mut(&cell) {
                v.clear();
            }
        }
    }

    /// Apply one IOPub message (already known to belong to the cell's request). A new output
    /// is shown to `on_output` before it is stored.
    pub fn handle(
        &mut self,
        nb: &mut Notebook,
        cell_idx: usize,
        msg: Msg,
        on_output: &mut dyn FnMut(&Value),
    ) -> Recorded {
        let Msg {
            msg_type,
            header,
            mut content,
            ..
        } = msg;
        if self.masker.is_active() {
            match msg_type.as_str() {
                "stream" => {
                    let record = self.mask_stream_piece(nb, cell_idx, &mut content, on_output);
                    if !record {
                        return Recorded::Nothing;
                    }
                }
                "execute_result" | "display_data" | "update_display_data" | "error" => {
                    // Another output: a held stream tail can no longer continue.
                    self.end_cell(nb, on_output);
                    self.masker.mask_value(&mut content);
                }
                "clear_output" => {
                    let wait = content.get("wait").and_then(Value::as_bool) == Some(true);
                    if !wait {
                        self.held.clear();
                    }
                }
                _ => {}
            }
        }
        let display_id = content
            .get("transient")
            .and_then(|t| t.get("display_id"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let mut changed = false;
        if let Some(id) = &display_id {
            if matches!(
                msg_type.as_str(),
                "execute_result" | "display_data" | "update_display_data"
            ) {
                changed |= self.update_display(nb, id, &content);
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
                m.insert(key.to_string(), Value::String(timestamp(&header)));
            }
        };
        match msg_type.as_str() {
            "status" => match content.get("execution_state").and_then(Value::as_str) {
                Some("idle") => {
                    stamp("iopub.status.idle", cell);
                    return Recorded::Idle;
                }
                Some("busy") => stamp("iopub.status.busy", cell),
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
                let mut out = output_from_content(&msg_type, content);
                on_output(&out);
                if self.clear_before_next_output {
                    nb.cells[cell_idx].outputs.clear();
                    self.forget_cell(cell_idx);
                    self.clear_before_next_output = false;
                }
                let outputs = &mut nb.cells[cell_idx].outputs;
                if let Some(last) = outputs.last_mut() {
                    match merge_stream(last, &out, self.spill.as_mut()) {
                        Merge::No => {}
                        Merge::Done => return Recorded::Output(outputs.len() - 1),
                        Merge::Failed(e) => {
                            self.spill_error.get_or_insert(e.to_string());
                            return Recorded::Output(outputs.len() - 1);
                        }
                    }
                }
                self.stash(&mut out);
                let outputs = &mut nb.cells[cell_idx].outputs;
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

    fn update_display(&mut self, nb: &mut Notebook, id: &str, content: &Value) -> bool {
        if !self.display_map.contains_key(id) {
            return false;
        }
        // Spilled once; every output showing this display id shares the markers.
        let mut data = content.get("data").cloned().unwrap_or_else(|| json!({}));
        self.stash(&mut data);
        let metadata = content
            .get("metadata")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let Some(cells) = self.display_map.get(id) else {
            return false;
        };
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

/// Build a notebook output from an output message's content, keeping the kernel's fields
/// verbatim (moved out of the content, not copied).
pub fn output_from_content(msg_type: &str, content: Value) -> Value {
    let mut content = match content {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let mut get = |k: &str, default: Value| content.remove(k).unwrap_or(default);
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

/// The result of trying to merge a stream output into the previous one.
enum Merge {
    /// Not two streams of the same name.
    No,
    /// Merged.
    Done,
    /// Merged in memory: the spill file could not take the text.
    Failed(std::io::Error),
}

/// Append `new` to `last` if both are streams of the same name, in place (through the spill
/// once the text is large), so a cell printing n lines costs O(n), not O(n²).
fn merge_stream(last: &mut Value, new: &Value, spill: Option<&mut Spill>) -> Merge {
    let is_stream = |v: &Value| v.get("output_type").and_then(Value::as_str) == Some("stream");
    if !is_stream(last) || !is_stream(new) || last.get("name") != new.get("name") {
        return Merge::No;
    }
    let add = text_of(new.get("text"));
    let Value::Object(m) = last else {
        return Merge::No;
    };
    let text = m
        .entry("text")
        .or_insert_with(|| Value::String(String::new()));
    if !text.is_string() {
        *text = Value::String(text_of(Some(text)));
    }
    let Value::String(text) = text else {
        return Merge::No;
    };
    match spill {
        Some(spill) => match spill.append(text, &add) {
            Ok(()) => Merge::Done,
            Err(e) => {
                if spill.is_marker(text) {
                    // Keep the record whole: bring the text back into memory.
                    if let Some(Ok(back)) = spill.read_string(text) {
                        *text = back;
                    }
                }
                text.push_str(&add);
                Merge::Failed(e)
            }
        },
        None => {
            text.push_str(&add);
            Merge::Done
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use nbpipe_notebook::CellType;

    const SECRET: &str = "ssm ünï\"cøde'✓ parameter-value";

    fn msg(msg_type: &str, content: Value) -> Msg {
        Msg {
            msg_type: msg_type.into(),
            parent_id: "p".into(),
            header: json!({"date": "2026-12-03T00:00:00Z"}),
            metadata: json!({}),
            content,
        }
    }

    fn stream(name: &str, text: &str) -> Msg {
        msg("stream", json!({"name": name, "text": text}))
    }

    fn notebook() -> Notebook {
        let mut nb = nbpipe_notebook::read(
            br#"{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}"#,
        )
        .unwrap();
        let c = nb.new_cell(CellType::Code, "x");
        nb.cells.push(c);
        nb
    }

    fn recorder() -> Recorder {
        Recorder::default().with_masker(Masker::new([("S", SECRET)]))
    }

    #[test]
    fn a_secret_split_across_two_stream_messages_is_never_recorded_nor_shown() {
        let mut nb = notebook();
        let mut r = recorder();
        let mut shown = Vec::new();
        let mut show = |v: &Value| shown.push(v.clone());
        r.begin_cell(0);
        r.handle(&mut nb, 0, stream("stdout", "before ssm"), &mut show);
        // Between the pieces (an autosave would write this): only the safe part.
        assert_eq!(nb.cells[0].outputs[0]["text"], "before ");
        r.handle(
            &mut nb,
            0,
            stream("stdout", &format!("{} after\n", &SECRET[3..])),
            &mut show,
        );
        r.end_cell(&mut nb, &mut show);
        assert_eq!(nb.cells[0].outputs.len(), 1);
        assert_eq!(nb.cells[0].outputs[0]["text"], "before *** after\n");
        let all = serde_json::to_string(&shown).unwrap();
        assert!(!all.contains("ünï") && all.contains("***"), "{all}");
    }

    #[test]
    fn a_held_prefix_that_never_completes_is_recorded_at_the_end_of_the_cell() {
        let mut nb = notebook();
        let mut r = recorder();
        let mut show = |_: &Value| {};
        r.begin_cell(0);
        r.handle(&mut nb, 0, stream("stdout", "ssm"), &mut show);
        assert!(nb.cells[0].outputs.is_empty());
        // Another kind of output: the held text is recorded before it.
        r.handle(
            &mut nb,
            0,
            msg(
                "display_data",
                json!({"data": {"text/plain": "d"}, "metadata": {}}),
            ),
            &mut show,
        );
        r.handle(&mut nb, 0, stream("stdout", "ssm no"), &mut show);
        r.end_cell(&mut nb, &mut show);
        let texts: Vec<&Value> = nb.cells[0].outputs.iter().map(|o| &o["text"]).collect();
        assert_eq!(texts, [&json!("ssm"), &Value::Null, &json!("ssm no")]);
    }

    #[test]
    fn a_secret_split_by_output_of_the_other_stream_is_masked_whole() {
        // ipykernel flushes stdout and stderr apart: `print(s[:3], end='')`, a write to
        // stderr, then `print(s[3:])` arrive as stdout, stderr, stdout.
        let mut nb = notebook();
        let mut r = recorder();
        let mut show = |_: &Value| {};
        r.begin_cell(0);
        r.handle(&mut nb, 0, stream("stdout", "before ssm"), &mut show);
        r.handle(&mut nb, 0, stream("stderr", "ssm ün"), &mut show);
        r.handle(
            &mut nb,
            0,
            stream("stdout", &format!("{} after\n", &SECRET[3..])),
            &mut show,
        );
        r.handle(
            &mut nb,
            0,
            stream("stderr", &format!("{}\n", &SECRET[7..])),
            &mut show,
        );
        r.end_cell(&mut nb, &mut show);
        let texts: Vec<&Value> = nb.cells[0].outputs.iter().map(|o| &o["text"]).collect();
        assert_eq!(texts, [&json!("before *** after\n"), &json!("***\n")]);
    }

    #[test]
    fn errors_and_rich_outputs_are_masked() {
        let mut nb = notebook();
        let mut r = recorder();
        let mut show = |_: &Value| {};
        r.handle(
            &mut nb,
            0,
            msg(
                "display_data",
                json!({"data": {"text/plain": format!("{SECRET:?}"), "text/html": "ssm ünï&quot;cøde&#x27;✓ parameter-value"}, "metadata": {}}),
            ),
            &mut show,
        );
        r.handle(
            &mut nb,
            0,
            msg(
                "error",
                json!({"ename": "E", "evalue": SECRET, "traceback": [format!("\u{1b}[0;31mE\u{1b}[0m: {SECRET}")]}),
            ),
            &mut show,
        );
        // A display updated later (through its display id) is masked too.
        r.handle(
            &mut nb,
            0,
            msg(
                "display_data",
                json!({"data": {"text/plain": "progress"}, "metadata": {}, "transient": {"display_id": "d1"}}),
            ),
            &mut show,
        );
        r.handle(
            &mut nb,
            0,
            msg(
                "update_display_data",
                json!({"data": {"text/markdown": format!("**{SECRET}**")}, "metadata": {}, "transient": {"display_id": "d1"}}),
            ),
            &mut show,
        );
        assert_eq!(nb.cells[0].outputs[2]["data"]["text/markdown"], "*******");
        let all = serde_json::to_string(&nb.cells[0].outputs).unwrap();
        assert!(!all.contains("ünï"), "{all}");
        assert_eq!(nb.cells[0].outputs[1]["evalue"], "***");
    }
}
