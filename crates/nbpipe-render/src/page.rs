//! The page: document head (inline stylesheet, optional MathJax, the frame-sizing script),
//! the notebook summary and the cells, in one self-contained HTML string.

use nbpipe_notebook::{Cell, CellType, Notebook};
use serde_json::Value;

use crate::escape::push_escaped;
use crate::highlight::Highlighter;
use crate::RenderOptions;

/// The tag papermill (and nbpipe) put on the error banner cells it inserts.
pub(crate) const ERROR_CELL_TAG: &str = "papermill-error-cell-tag";
/// The anchor papermill's top banner links to.
pub(crate) const ERROR_ANCHOR: &str = "papermill-error-cell";

/// Where MathJax comes from when the page has math. Offline, the TeX stays readable as is.
pub(crate) const MATHJAX_URL: &str = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js";

const STYLE: &str = include_str!("style.css");

/// MathJax configuration: typeset only inside `tex2jax_process` regions (markdown and LaTeX
/// outputs), never in code, streams or tracebacks.
const MATHJAX_CONFIG: &str = concat!(
    "window.MathJax={tex:{inlineMath:[['$','$'],['\\\\(','\\\\)']],",
    "displayMath:[['$$','$$'],['\\\\[','\\\\]']],processEscapes:true,processEnvironments:true},",
    "options:{ignoreHtmlClass:'tex2jax_ignore',processHtmlClass:'tex2jax_process'}};"
);

/// Resizes HTML output frames to the height their content reports. Only numbers are accepted,
/// and only from the frame's own window.
const FRAME_SIZER: &str = concat!(
    "addEventListener('message',function(e){var d=e.data;",
    "if(!d||typeof d.nbpipeHeight!=='number'||!isFinite(d.nbpipeHeight))return;",
    "var f=document.getElementsByClassName('html-output');",
    "for(var i=0;i<f.length;i++){if(f[i].contentWindow===e.source){",
    "f[i].style.height=Math.max(16,Math.min(Math.ceil(d.nbpipeHeight),20000))+'px';}}});"
);

/// Rendering state for one notebook.
pub(crate) struct Page<'a> {
    pub(crate) nb: &'a Notebook,
    pub(crate) opts: &'a RenderOptions,
    pub(crate) highlighter: Highlighter,
    /// Some markdown, LaTeX or output needs MathJax.
    pub(crate) has_math: bool,
    /// Some output is an HTML frame (the page needs the frame sizer).
    pub(crate) has_frames: bool,
    /// Index of the cell that carries the `papermill-error-cell` anchor, if any.
    pub(crate) anchor_cell: Option<usize>,
}

impl<'a> Page<'a> {
    pub(crate) fn new(nb: &'a Notebook, opts: &'a RenderOptions) -> Page<'a> {
        // papermill's banner before the failed cell carries the anchor; without one, the first
        // failed cell does, so the summary can link to it.
        let anchor_cell = nb
            .cells
            .iter()
            .position(|c| {
                c.cell_type == CellType::Markdown
                    && c.has_tag(ERROR_CELL_TAG)
                    && c.source.contains(&format!("id=\"{ERROR_ANCHOR}\""))
            })
            .or_else(|| nb.cells.iter().position(is_failed));
        Page {
            nb,
            opts,
            highlighter: Highlighter::for_notebook(&nb.metadata),
            has_math: false,
            has_frames: false,
            anchor_cell,
        }
    }

    /// The whole document.
    pub(crate) fn render(mut self) -> String {
        let mut body = String::with_capacity(64 * 1024);
        self.summary(&mut body);
        for (index, cell) in self.nb.cells.iter().enumerate() {
            self.cell(index, cell, &mut body);
        }

        let mut html = String::with_capacity(body.len() + STYLE.len() + 2048);
        html.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
        html.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
        html.push_str(concat!(
            "<meta name=\"generator\" content=\"nbpipe-render ",
            env!("CARGO_PKG_VERSION"),
            "\">\n"
        ));
        html.push_str(
            "<meta http-equiv=\"Content-Security-Policy\" \
             content=\"object-src 'none'; base-uri 'none'; form-action 'none'\">\n",
        );
        html.push_str("<title>");
        push_escaped(&mut html, &self.title());
        html.push_str("</title>\n<style>\n");
        html.push_str(STYLE);
        html.push_str("</style>\n");
        if self.has_math && !self.opts.no_mathjax {
            html.push_str("<script>");
            html.push_str(MATHJAX_CONFIG);
            html.push_str("</script>\n<script defer src=\"");
            push_escaped(
                &mut html,
                self.opts.mathjax_url.as_deref().unwrap_or(MATHJAX_URL),
            );
            html.push_str("\"></script>\n");
        }
        if self.has_frames {
            html.push_str("<script>");
            html.push_str(FRAME_SIZER);
            html.push_str("</script>\n");
        }
        html.push_str("</head>\n<body class=\"tex2jax_ignore\">\n<main class=\"notebook\">\n");
        html.push_str(&body);
        html.push_str("</main>\n</body>\n</html>\n");
        html
    }

    /// The page title: the option, `metadata.title`, the first markdown heading, or `Notebook`.
    pub(crate) fn title(&self) -> String {
        if let Some(title) = &self.opts.title {
            return title.clone();
        }
        if let Some(title) = self.nb.metadata.get("title").and_then(Value::as_str) {
            if !title.trim().is_empty() {
                return title.trim().to_owned();
            }
        }
        let heading = self
            .nb
            .cells
            .iter()
            .filter(|c| c.cell_type == CellType::Markdown && !c.has_tag(ERROR_CELL_TAG))
            .flat_map(|c| c.source.lines())
            .find_map(|l| l.strip_prefix("# "))
            .map(|h| {
                h.trim()
                    .trim_end_matches('#')
                    .trim()
                    .replace(['*', '`'], "")
            });
        match heading {
            Some(h) if !h.trim().is_empty() => h.trim().chars().take(200).collect(),
            _ => "Notebook".to_owned(),
        }
    }
}

/// The cell's `metadata.papermill` object, if any.
pub(crate) fn papermill(cell: &Cell) -> Option<&serde_json::Map<String, Value>> {
    cell.metadata.get("papermill").and_then(Value::as_object)
}

/// Whether papermill recorded this cell as the one that failed.
pub(crate) fn is_failed(cell: &Cell) -> bool {
    papermill(cell).is_some_and(|pm| {
        pm.get("status").and_then(Value::as_str) == Some("failed")
            || pm.get("exception").and_then(Value::as_bool) == Some(true)
    })
}
