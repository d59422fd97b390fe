//! The header of the page: title, kernel, and the run papermill (or nbpipe) recorded in
//! `metadata.papermill` — status, start, end, duration, paths and parameters.

use serde_json::Value;

use crate::escape::{escape, push_escaped};
use crate::page::{is_failed, Page, ERROR_ANCHOR};
use crate::text::{format_duration, format_timestamp};

/// Longest parameter value shown in full.
const MAX_PARAMETER_CHARS: usize = 300;

impl Page<'_> {
    pub(crate) fn summary(&self, out: &mut String) {
        let meta = &self.nb.metadata;
        let pm = meta.get("papermill").and_then(Value::as_object);
        let pm_str = |k: &str| pm.and_then(|p| p.get(k)).and_then(Value::as_str);

        out.push_str("<header class=\"summary\">\n<h1 class=\"title\">");
        push_escaped(out, &self.title());
        out.push_str("</h1>\n");

        // Status line.
        let failed_cell = self.nb.cells.iter().position(is_failed);
        let exception = pm.and_then(|p| p.get("exception")).and_then(Value::as_bool) == Some(true);
        let status = if pm.is_none() {
            None
        } else if exception || failed_cell.is_some() {
            Some(("failed", "Failed"))
        } else if pm_str("end_time").is_some() {
            Some(("completed", "Completed"))
        } else if pm_str("start_time").is_some() {
            Some(("unfinished", "Unfinished"))
        } else {
            Some(("pending", "Not run"))
        };
        let run_line = status.is_some() || failed_cell.is_some();
        if run_line {
            out.push_str("<p class=\"run\">");
        }
        if let Some((class, label)) = status {
            out.push_str(&format!("<span class=\"pill {class}\">{label}</span> "));
        }
        if let Some(index) = failed_cell {
            let cell = &self.nb.cells[index];
            let at = match cell.execution_count {
                Some(n) => format!("In [{n}]"),
                None => format!("cell {}", index + 1),
            };
            out.push_str("<span class=\"failure\">at ");
            if self.anchor_cell.is_some() {
                out.push_str(&format!("<a href=\"#{ERROR_ANCHOR}\">{}</a>", escape(&at)));
            } else {
                push_escaped(out, &at);
            }
            if let Some(error) = cell
                .outputs
                .iter()
                .find(|o| o.get("output_type").and_then(Value::as_str) == Some("error"))
            {
                let field = |k: &str| error.get(k).and_then(Value::as_str).unwrap_or("");
                out.push_str(": <code>");
                push_escaped(out, field("ename"));
                if !field("evalue").is_empty() {
                    out.push_str(": ");
                    push_escaped(out, &truncate(field("evalue"), MAX_PARAMETER_CHARS));
                }
                out.push_str("</code>");
            }
            out.push_str("</span> ");
        }
        let kernel = meta
            .get("kernelspec")
            .and_then(|k| k.get("display_name").or_else(|| k.get("name")))
            .and_then(Value::as_str);
        let language = meta.get("language_info").and_then(|l| {
            let name = l.get("name").and_then(Value::as_str)?;
            Some(match l.get("version").and_then(Value::as_str) {
                Some(v) => format!("{name} {v}"),
                None => name.to_owned(),
            })
        });
        let mut facts: Vec<String> = Vec::new();
        if let Some(k) = kernel {
            facts.push(format!("kernel {}", escape(k)));
        }
        if let Some(l) = language {
            facts.push(escape(&l));
        }
        let code_cells = self.nb.cells.iter().filter(|c| c.is_code()).count();
        facts.push(format!("{} cells ({code_cells} code)", self.nb.cells.len()));
        if run_line {
            out.push_str("</p>\n");
        }
        out.push_str(&format!("<p class=\"facts\">{}</p>\n", facts.join(" · ")));

        let Some(pm) = pm else {
            out.push_str("</header>\n");
            return;
        };

        // Timings and paths.
        let mut rows: Vec<(&str, String)> = Vec::new();
        if let Some(s) = pm_str("start_time") {
            rows.push(("Started", format_timestamp(s)));
        }
        if let Some(s) = pm_str("end_time") {
            rows.push(("Ended", format_timestamp(s)));
        }
        if let Some(d) = pm.get("duration").and_then(Value::as_f64) {
            rows.push(("Duration", format_duration(d)));
        }
        if let Some(s) = pm_str("input_path") {
            rows.push(("Input", s.to_owned()));
        }
        if let Some(s) = pm_str("output_path") {
            rows.push(("Output", s.to_owned()));
        }
        if let Some(s) = pm_str("version") {
            rows.push(("papermill version", s.to_owned()));
        }
        if !rows.is_empty() {
            out.push_str("<dl class=\"run-facts\">");
            for (k, v) in rows {
                out.push_str(&format!("<div><dt>{k}</dt><dd>{}</dd></div>", escape(&v)));
            }
            out.push_str("</dl>\n");
        }

        // Parameters.
        if let Some(params) = pm.get("parameters").and_then(Value::as_object) {
            out.push_str("<table class=\"parameters\"><caption>Parameters</caption>");
            if params.is_empty() {
                out.push_str("<tr><td class=\"none\">none</td></tr>");
            }
            for (name, value) in params {
                let shown = match value {
                    Value::String(s) => format!("{s:?}"),
                    other => other.to_string(),
                };
                out.push_str("<tr><th>");
                push_escaped(out, name);
                out.push_str("</th><td><code>");
                push_escaped(out, &truncate(&shown, MAX_PARAMETER_CHARS));
                out.push_str("</code></td></tr>");
            }
            out.push_str("</table>\n");
        }
        out.push_str("</header>\n");
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut s: String = text.chars().take(max).collect();
        s.push('…');
        s
    }
}
