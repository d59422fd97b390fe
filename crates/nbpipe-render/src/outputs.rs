//! Code cell outputs: streams, rich display data, execution results and errors.
//!
//! Each display bundle shows one representation, chosen like JupyterLab does (HTML, markdown,
//! LaTeX, images, JSON, plain text). `text/html` goes into a sandboxed iframe (see the crate
//! docs for why); images become `<img>` with `data:` URLs, SVG included, so an SVG's scripts
//! never run. Anything that cannot be shown leaves a visible note instead of vanishing.

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::escape::{escape, push_escaped};
use crate::page::Page;
use crate::text::{apply_carriage_returns, multiline};
use crate::{ansi, markdown};

/// Representations in the order they are preferred.
const PRIORITY: [&str; 11] = [
    "text/html",
    "text/markdown",
    "text/latex",
    "image/svg+xml",
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/bmp",
    "application/json",
    "text/plain",
];

/// Inside every HTML output frame: base styles (tables like Jupyter's DataFrame view) and a
/// script that reports the document height to the page so the frame fits its content.
const FRAME_HEAD: &str = concat!(
    "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><style>",
    "html{overflow-x:auto}",
    "body{margin:0;padding:2px 0;font:14px/1.45 -apple-system,BlinkMacSystemFont,\"Segoe UI\",Helvetica,Arial,sans-serif;color:#1f2328}",
    "table{border-collapse:collapse;border:none;font-size:12px;font-variant-numeric:tabular-nums}",
    "th,td{padding:4px 8px;text-align:right;vertical-align:middle;border:none}",
    "thead{border-bottom:1px solid #999}th{font-weight:600}",
    "tbody tr:nth-child(odd){background:#f5f5f5}tbody tr:hover{background:#e1effd}",
    "</style><script>(function(){var last=0;function post(){var b=document.body;if(!b)return;",
    "var h=Math.ceil(Math.max(b.scrollHeight,b.getBoundingClientRect().bottom));",
    "var d=document.documentElement;if(d.scrollWidth>d.clientWidth)h+=18;",
    "if(h!==last){last=h;parent.postMessage({nbpipeHeight:h},'*');}}",
    "addEventListener('DOMContentLoaded',post);addEventListener('load',post);",
    "if(window.ResizeObserver)new ResizeObserver(post).observe(document.documentElement);",
    "setTimeout(post,300);})();</script></head><body>"
);

/// One output after consecutive streams of the same name are merged (as Jupyter shows them).
enum Item<'a> {
    Stream { name: String, text: String },
    Other(&'a Value),
}

fn merge_streams(outputs: &[Value]) -> Vec<Item<'_>> {
    let mut items: Vec<Item> = Vec::new();
    for output in outputs {
        let stream = (output.get("output_type").and_then(Value::as_str) == Some("stream"))
            .then(|| {
                let name = output.get("name").and_then(Value::as_str)?;
                let text = multiline(output.get("text")?)?;
                Some((name, text))
            })
            .flatten();
        match (stream, items.last_mut()) {
            (Some((name, more)), Some(Item::Stream { name: last, text })) if last == name => {
                text.push_str(&more);
            }
            (Some((name, text)), _) => items.push(Item::Stream {
                name: name.to_owned(),
                text,
            }),
            (None, _) => items.push(Item::Other(output)),
        }
    }
    items
}

impl Page<'_> {
    /// Render a code cell's outputs. `count` is the cell's execution count (prompt fallback).
    pub(crate) fn outputs(&mut self, outputs: &[Value], count: Option<i64>, out: &mut String) {
        for item in merge_streams(outputs) {
            match item {
                Item::Stream { name, text } => {
                    let class = match name.as_str() {
                        "stdout" => "stream stdout",
                        "stderr" => "stream stderr",
                        _ => "stream",
                    };
                    let text = apply_carriage_returns(&text);
                    let body = format!("<pre class=\"{class}\">{}</pre>", ansi::to_html(&text));
                    push_output(out, "", &body);
                }
                Item::Other(output) => self.output(output, count, out),
            }
        }
    }

    fn output(&mut self, output: &Value, count: Option<i64>, out: &mut String) {
        let Some(obj) = output.as_object() else {
            push_output(
                out,
                "",
                &note("An output that is not a JSON object was not shown."),
            );
            return;
        };
        let kind = obj.get("output_type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "error" => push_output(out, "", &error(obj)),
            "execute_result" | "display_data" => {
                let prompt = if kind == "execute_result" {
                    let n = obj.get("execution_count").and_then(Value::as_i64).or(count);
                    match n {
                        Some(n) => format!("Out[{n}]:"),
                        None => "Out[ ]:".to_owned(),
                    }
                } else {
                    String::new()
                };
                let body = self.bundle(obj);
                push_output(out, &prompt, &body);
            }
            "stream" => push_output(
                out,
                "",
                &note("A stream output without a `name` or `text` was not shown."),
            ),
            "" => push_output(
                out,
                "",
                &note("An output without an `output_type` was not shown."),
            ),
            other => push_output(
                out,
                "",
                &note(&format!(
                    "An output of unknown type `{other}` was not shown."
                )),
            ),
        }
    }

    /// The best representation of a mime bundle (`data` + `metadata`).
    fn bundle(&mut self, obj: &Map<String, Value>) -> String {
        let empty = Map::new();
        let data = obj.get("data").and_then(Value::as_object).unwrap_or(&empty);
        let metadata = obj
            .get("metadata")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let mut shown = None;
        let mut html = String::new();
        for mime in PRIORITY {
            let Some(value) = data.get(mime) else {
                continue;
            };
            if let Some(rendered) = self.mime(mime, value, metadata.get(mime)) {
                shown = Some(mime);
                html = rendered;
                break;
            }
        }
        let unknown: Vec<&str> = data
            .keys()
            .map(String::as_str)
            .filter(|m| !PRIORITY.contains(m))
            .collect();
        match shown {
            None if data.is_empty() => note("An output with no data was not shown."),
            None => note(&format!(
                "An output of type {} was not shown: nbpipe cannot render it.",
                code_list(&data.keys().map(String::as_str).collect::<Vec<_>>())
            )),
            Some("text/plain") if !unknown.is_empty() => {
                html.push_str(&note(&format!(
                    "This output also has {}, which nbpipe cannot render; its text form is shown.",
                    code_list(&unknown)
                )));
                html
            }
            Some(_) => html,
        }
    }

    /// Render one representation, or `None` when its value is malformed.
    fn mime(&mut self, mime: &str, value: &Value, meta: Option<&Value>) -> Option<String> {
        match mime {
            "text/html" => {
                self.has_frames = true;
                let doc = format!("{FRAME_HEAD}{}</body></html>", multiline(value)?);
                let mut s = String::from(
                    "<iframe class=\"html-output\" sandbox=\"allow-scripts\" \
                     referrerpolicy=\"no-referrer\" title=\"HTML output\" srcdoc=\"",
                );
                push_escaped(&mut s, &doc);
                s.push_str("\"></iframe>");
                Some(s)
            }
            "text/markdown" => {
                let md = markdown::render(&multiline(value)?, None);
                self.has_math |= md.has_math;
                Some(format!(
                    "<div class=\"markdown tex2jax_process\">{}</div>",
                    md.html
                ))
            }
            "text/latex" => {
                self.has_math = true;
                Some(format!(
                    "<div class=\"latex tex2jax_process\">{}</div>",
                    escape(&multiline(value)?)
                ))
            }
            "image/svg+xml" => {
                let svg = multiline(value)?;
                let b64 = base64::engine::general_purpose::STANDARD.encode(svg.as_bytes());
                Some(image(mime, &b64, meta))
            }
            "application/json" => {
                let parsed = match value {
                    Value::String(s) => serde_json::from_str(s).unwrap_or(value.clone()),
                    other => other.clone(),
                };
                let pretty = serde_json::to_string_pretty(&parsed).ok()?;
                Some(format!("<pre class=\"json\">{}</pre>", escape(&pretty)))
            }
            "text/plain" => Some(format!(
                "<pre class=\"text\">{}</pre>",
                ansi::to_html(&multiline(value)?)
            )),
            _ => {
                // Binary images: base64 text, possibly split into lines.
                let b64: String = multiline(value)?
                    .chars()
                    .filter(|c| !c.is_ascii_whitespace())
                    .collect();
                let valid = !b64.is_empty()
                    && b64
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
                if valid {
                    Some(image(mime, &b64, meta))
                } else {
                    Some(note(&format!(
                        "An `{mime}` image was not shown: its data is not base64."
                    )))
                }
            }
        }
    }
}

/// `<img>` for base64 data, sized by the output's `width`/`height` metadata when given.
fn image(mime: &str, b64: &str, meta: Option<&Value>) -> String {
    let mut s = format!("<img class=\"image\" alt=\"{mime} output\" src=\"data:{mime};base64,");
    push_escaped(&mut s, b64);
    s.push('"');
    for dim in ["width", "height"] {
        if let Some(n) = meta.and_then(|m| m.get(dim)).and_then(Value::as_f64) {
            if n.is_finite() && n > 0.0 {
                s.push_str(&format!(" {dim}=\"{}\"", n.round() as u64));
            }
        }
    }
    if meta
        .and_then(|m| m.get("unconfined"))
        .and_then(Value::as_bool)
        == Some(true)
    {
        s.push_str(" style=\"max-width:none\"");
    }
    s.push('>');
    s
}

/// An `error` output: the ANSI traceback, or `ename: evalue` when there is none.
fn error(obj: &Map<String, Value>) -> String {
    let field = |k: &str| obj.get(k).and_then(Value::as_str).unwrap_or("");
    let traceback: Vec<&str> = obj
        .get("traceback")
        .and_then(Value::as_array)
        .map(|t| t.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let text = if traceback.is_empty() {
        format!("{}: {}", field("ename"), field("evalue"))
    } else {
        traceback.join("\n")
    };
    format!("<pre class=\"error\">{}</pre>", ansi::to_html(&text))
}

/// A small visible note (escaped; text between backticks is shown as code).
pub(crate) fn note(text: &str) -> String {
    let mut s = String::from("<div class=\"note\">");
    for (i, part) in text.split('`').enumerate() {
        if i % 2 == 1 {
            s.push_str("<code>");
            push_escaped(&mut s, part);
            s.push_str("</code>");
        } else {
            push_escaped(&mut s, part);
        }
    }
    s.push_str("</div>");
    s
}

/// `a`, `a` and `b`, `a`, `b` and `c` — names in backticks for [`note`].
fn code_list(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

fn push_output(out: &mut String, prompt: &str, body: &str) {
    out.push_str("<div class=\"output\"><div class=\"prompt out\">");
    push_escaped(out, prompt);
    out.push_str("</div><div class=\"output-area\">");
    out.push_str(body);
    out.push_str("</div></div>\n");
}

#[cfg(test)]
#[path = "outputs_tests.rs"]
mod tests;
