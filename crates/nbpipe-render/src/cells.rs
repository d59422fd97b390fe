//! One notebook cell: markdown, code (input, papermill status and timing, outputs), raw, the
//! papermill error banner, and cells of unknown types.

use nbpipe_notebook::{Cell, CellType};
use serde_json::Value;

use crate::escape::push_escaped;
use crate::markdown;
use crate::outputs::note;
use crate::page::{is_failed, papermill, Page, ERROR_ANCHOR, ERROR_CELL_TAG};
use crate::text::format_duration;

impl Page<'_> {
    pub(crate) fn cell(&mut self, index: usize, cell: &Cell, out: &mut String) {
        let anchor = if self.anchor_cell == Some(index) {
            format!(" id=\"{ERROR_ANCHOR}\"")
        } else {
            String::new()
        };
        match &cell.cell_type {
            CellType::Markdown if cell.has_tag(ERROR_CELL_TAG) => {
                let md = markdown::render(&cell.source, None);
                out.push_str(&format!(
                    "<div class=\"banner\" role=\"alert\"{anchor}>{}</div>\n",
                    md.html
                ));
            }
            CellType::Markdown => {
                let attachments = cell.extra.get("attachments").and_then(Value::as_object);
                let md = markdown::render(&cell.source, attachments);
                self.has_math |= md.has_math;
                out.push_str(&format!(
                    "<section class=\"cell markdown-cell\"{anchor}><div class=\"row\">\
                     <div class=\"prompt\"></div>\
                     <div class=\"markdown tex2jax_process\">{}</div></div></section>\n",
                    md.html
                ));
            }
            CellType::Code => self.code_cell(cell, &anchor, out),
            CellType::Raw => {
                let format = cell
                    .metadata
                    .get("raw_mimetype")
                    .or_else(|| cell.metadata.get("format"))
                    .and_then(Value::as_str);
                out.push_str(&format!(
                    "<section class=\"cell raw-cell\"{anchor}><div class=\"row\">\
                     <div class=\"prompt\">raw</div><div class=\"input-area\">"
                ));
                if let Some(format) = format {
                    out.push_str("<div class=\"raw-format\">");
                    push_escaped(out, format);
                    out.push_str("</div>");
                }
                out.push_str("<pre class=\"raw\">");
                push_escaped(out, &cell.source);
                out.push_str("</pre></div></div></section>\n");
            }
            CellType::Other(kind) => {
                out.push_str(&format!(
                    "<section class=\"cell other-cell\"{anchor}><div class=\"row\">\
                     <div class=\"prompt\"></div><div class=\"input-area\">"
                ));
                out.push_str(&note(&format!(
                    "A cell of unknown type `{kind}`; its source is shown as text."
                )));
                out.push_str("<pre class=\"raw\">");
                push_escaped(out, &cell.source);
                out.push_str("</pre></div></div></section>\n");
            }
        }
    }

    fn code_cell(&mut self, cell: &Cell, anchor: &str, out: &mut String) {
        let failed = is_failed(cell);
        let jupyter = cell.metadata.get("jupyter");
        let flag =
            |key: &str| jupyter.and_then(|j| j.get(key)).and_then(Value::as_bool) == Some(true);
        let source_hidden = self.opts.hide_all_inputs || flag("source_hidden");
        let outputs_hidden = flag("outputs_hidden");

        out.push_str("<section class=\"cell code-cell");
        if failed {
            out.push_str(" failed");
        }
        out.push('"');
        out.push_str(anchor);
        out.push('>');
        status_line(cell, out);

        let prompt = match cell.execution_count {
            Some(n) => format!("In [{n}]:"),
            None => "In [ ]:".to_owned(),
        };
        if !source_hidden || self.opts.show_hidden_inputs {
            let code = format!(
                "<pre class=\"code\">{}</pre>",
                self.highlighter.cell(&cell.source)
            );
            out.push_str("<div class=\"row input\"><div class=\"prompt in\">");
            push_escaped(out, &prompt);
            out.push_str("</div><div class=\"input-area\">");
            if source_hidden {
                out.push_str("<details><summary>Code hidden in the report</summary>");
                out.push_str(&code);
                out.push_str("</details>");
            } else {
                out.push_str(&code);
            }
            out.push_str("</div></div>");
        }

        if !cell.outputs.is_empty() {
            out.push_str("<div class=\"outputs\">");
            if outputs_hidden {
                let n = cell.outputs.len();
                let s = if n == 1 { "" } else { "s" };
                out.push_str(&format!(
                    "<details class=\"hidden-outputs\"><summary>{n} output{s} collapsed in the notebook</summary>"
                ));
            }
            self.outputs(&cell.outputs, cell.execution_count, out);
            if outputs_hidden {
                out.push_str("</details>");
            }
            out.push_str("</div>");
        }
        out.push_str("</section>\n");
    }
}

/// papermill's per-cell status and duration, spelled out (never colour alone).
fn status_line(cell: &Cell, out: &mut String) {
    let Some(pm) = papermill(cell) else {
        return;
    };
    let status = pm.get("status").and_then(Value::as_str);
    let duration = pm.get("duration").and_then(Value::as_f64);
    let failed = is_failed(cell);
    let (class, label) = match status {
        _ if failed => ("failed", "✗ failed".to_owned()),
        Some("completed") => ("completed", "✓ completed".to_owned()),
        Some("pending") => ("pending", "not run".to_owned()),
        Some("running") => ("running", "running (unfinished)".to_owned()),
        Some(other) => ("other", other.to_owned()),
        None if duration.is_some() => ("completed", "ran".to_owned()),
        None => return,
    };
    out.push_str("<div class=\"cell-status ");
    out.push_str(class);
    out.push_str("\">");
    push_escaped(out, &label);
    if let Some(d) = duration {
        out.push_str(if failed { " after " } else { " in " });
        push_escaped(out, &format_duration(d));
    }
    out.push_str("</div>");
}
