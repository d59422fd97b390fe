//! A notebook as one standalone HTML page — the run's report.
//!
//! This crate owns turning a [`Notebook`] into HTML: it reads nothing from disk or network and
//! never changes the notebook. [`render`] returns one self-contained document with an inline
//! stylesheet that shows, like Jupyter does:
//!
//! * a header with the title, kernel, and the run papermill (or nbpipe) recorded in
//!   `metadata.papermill`: status, failed cell and its exception, start, end, duration, paths
//!   and parameters;
//! * markdown cells (CommonMark, tables, `attachment:` images, `$…$`/`$$…$$` math left as TeX for
//!   MathJax), code cells highlighted in the notebook's `language_info` language with
//!   `In [n]:` / `Out[n]:` prompts, raw cells as text;
//! * per-cell papermill status and duration, the failed cell outlined, papermill's error
//!   banner cells (`papermill-error-cell-tag`) as banners whose link jumps to the failure;
//! * streams (with `\r` progress-bar overwrites applied), ANSI-coloured tracebacks, PNG, JPEG,
//!   GIF, WebP and SVG images, `text/markdown`, `text/latex`, pretty-printed
//!   `application/json`, and a visible note for any output or mime type it cannot show;
//! * report mode: inputs with `metadata.jupyter.source_hidden` are left out (or, with
//!   [`RenderOptions::show_hidden_inputs`], collapsed); `outputs_hidden` outputs are collapsed.
//!
//! # Safety of other people's notebooks
//!
//! Opening a report must never run the notebook author's script in the page:
//!
//! * Every string from the notebook is HTML-escaped, or, for markdown and its raw HTML,
//!   sanitized by `ammonia` with an allow-list (no script, event handlers, `style` beyond table
//!   alignment, forms, frames or `javascript:`/`data:` links; `data:` only as an image source).
//! * `text/html` outputs are put in `<iframe sandbox="allow-scripts" srcdoc="…">`, without
//!   `allow-same-origin`. Sanitizing them instead would strip the `<style>` and `<script>` that
//!   pandas Styler tables, plotly and bokeh outputs need to look and work as they did in Jupyter;
//!   the sandbox lets them run in an opaque origin where they cannot reach the page (its DOM,
//!   cookies or storage), navigate it, open windows, submit forms or show dialogs. The frame
//!   only reports its height to the page, which accepts a number from that frame alone.
//! * SVG images are shown through `<img src="data:image/svg+xml;base64,…">`, where their
//!   scripts never run.
//!
//! # External resources
//!
//! None, with one exception: when the page contains math, a `<script>` tag loads MathJax 3 from
//! a CDN (turn it off with [`RenderOptions::no_mathjax`], or point
//! [`RenderOptions::mathjax_url`] at a self-hosted copy). Offline, math stays readable as the
//! raw TeX the author wrote. Images the author linked by URL in markdown load as in Jupyter, and
//! HTML outputs may load what they reference inside their sandboxed frame.
//!
//! # Example
//!
//! ```
//! let nb = nbpipe_notebook::read(br##"{
//!  "cells": [
//!   {"cell_type": "markdown", "metadata": {}, "source": "# Sales <script>alert(1)</script>"},
//!   {"cell_type": "code", "execution_count": 1, "metadata": {}, "source": "print('hi')",
//!    "outputs": [{"output_type": "stream", "name": "stdout", "text": "hi\n"}]}
//!  ],
//!  "metadata": {"language_info": {"name": "python"}},
//!  "nbformat": 4, "nbformat_minor": 4
//! }"##)?;
//! let html = nbpipe_render::render(&nb, &nbpipe_render::RenderOptions::default());
//! assert!(html.starts_with("<!DOCTYPE html>"));
//! assert!(html.contains("<title>Sales &lt;script&gt;alert(1)&lt;/script&gt;</title>"));
//! assert!(html.contains("In [1]:"));
//! assert!(!html.contains("<script>alert(1)"));
//! # Ok::<(), nbpipe_notebook::NotebookError>(())
//! ```
#![deny(missing_docs)]

mod ansi;
mod cells;
mod escape;
mod highlight;
mod markdown;
mod outputs;
mod page;
mod summary;
mod text;

pub use nbpipe_notebook::Notebook;

/// How to render a notebook. `RenderOptions::default()` gives the normal report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderOptions {
    /// The page title. Default: `metadata.title`, else the notebook's first `# ` heading, else
    /// `Notebook`.
    pub title: Option<String>,
    /// Leave out the input of every code cell, not only those hidden by report mode
    /// (`metadata.jupyter.source_hidden`).
    pub hide_all_inputs: bool,
    /// Show hidden inputs collapsed in a `<details>` element instead of leaving them out.
    pub show_hidden_inputs: bool,
    /// Never load MathJax: the page has no external resource at all and math shows as TeX.
    pub no_mathjax: bool,
    /// Load MathJax 3 from this URL instead of [`MATHJAX_URL`] (a self-hosted copy of
    /// `es5/tex-chtml.js` for sites without internet access).
    pub mathjax_url: Option<String>,
}

/// Render a notebook as one standalone HTML document (see the [crate docs](crate)).
pub fn render(nb: &Notebook, opts: &RenderOptions) -> String {
    page::Page::new(nb, opts).render()
}

/// The URL of the MathJax script the page loads when it contains math (and
/// [`RenderOptions::no_mathjax`] is off).
pub const MATHJAX_URL: &str = page::MATHJAX_URL;

#[cfg(test)]
mod tests;
