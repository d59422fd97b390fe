//! Whole-page tests: escaping everywhere, report mode, papermill banner and status, summary,
//! MathJax and external resources.

use serde_json::{json, Value};

use crate::{render, RenderOptions, MATHJAX_URL};

fn notebook(cells: Value, metadata: Value) -> nbpipe_notebook::Notebook {
    let doc = json!({"cells": cells, "metadata": metadata, "nbformat": 4, "nbformat_minor": 4});
    nbpipe_notebook::read(&serde_json::to_vec(&doc).unwrap()).unwrap()
}

fn page(cells: Value, metadata: Value) -> String {
    render(&notebook(cells, metadata), &RenderOptions::default())
}

fn code(count: Option<i64>, source: &str, outputs: Value, metadata: Value) -> Value {
    json!({"cell_type": "code", "execution_count": count, "metadata": metadata,
           "source": source, "outputs": outputs})
}

fn md(source: &str) -> Value {
    json!({"cell_type": "markdown", "metadata": {}, "source": source})
}

/// The only `<script` tags a page may contain are its own.
fn foreign_scripts(html: &str) -> usize {
    html.matches("<script").count()
        - html.matches("<script>window.MathJax=").count()
        - html.matches("<script defer src=\"https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js\"></script>").count()
        - html.matches("<script>addEventListener('message'").count()
}

/// Every start tag in `html` (`<name ...>`), as the browser would parse it.
fn live_tags(html: &str) -> Vec<&str> {
    let mut tags = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        rest = &rest[start..];
        let end = rest.find('>').map_or(rest.len(), |e| e + 1);
        if rest[1..].starts_with(|c: char| c.is_ascii_alphabetic()) {
            tags.push(&rest[..end]);
        }
        rest = &rest[end..];
    }
    tags
}

#[test]
fn script_never_appears_as_live_markup_anywhere() {
    let payload = "<script>document.title='PWNED'</script><img src=x onerror=alert(1)>";
    let html = page(
        json!([
            md(&format!("# Title {payload}\n\ntext {payload}")),
            code(Some(1), &format!("x = \"{payload}\""), json!([
                {"output_type": "stream", "name": "stdout", "text": payload},
                {"output_type": "error", "ename": payload, "evalue": payload, "traceback": [payload]},
                {"output_type": "execute_result", "execution_count": 1,
                 "data": {"text/plain": payload}, "metadata": {}}
            ]), json!({"papermill": {"status": "failed", "exception": true}})),
            {"cell_type": "raw", "metadata": {"format": payload}, "source": payload},
            {"cell_type": "weird", "metadata": {}, "source": payload}
        ]),
        json!({
            "kernelspec": {"name": "python3", "display_name": payload},
            "language_info": {"name": "python", "version": payload},
            "papermill": {"parameters": {payload: payload}, "input_path": payload,
                          "exception": true, "start_time": payload}
        }),
    );
    assert_eq!(foreign_scripts(&html), 0, "{html}");
    for tag in live_tags(&html) {
        assert!(!tag.contains("onerror"), "{tag} in {html}");
    }
    assert!(
        html.contains("<img src=\"x\">"),
        "sanitized, not escaped, in markdown: {html}"
    );
    assert!(html.contains("&lt;script&gt;document.title=&#39;PWNED&#39;&lt;/script&gt;"));
}

#[test]
fn code_cells_have_prompts_and_highlighting() {
    let html = page(
        json!([
            code(
                Some(4),
                "import math\nprint(math.pi)  # pi",
                json!([]),
                json!({})
            ),
            code(None, "x = 1", json!([]), json!({}))
        ]),
        json!({"language_info": {"name": "python", "file_extension": ".py"}}),
    );
    assert!(
        html.contains("<div class=\"prompt in\">In [4]:</div>"),
        "{html}"
    );
    assert!(
        html.contains("<div class=\"prompt in\">In [ ]:</div>"),
        "{html}"
    );
    assert!(
        html.contains("<span class=\"hl-k\">import</span> math"),
        "{html}"
    );
    assert!(html.contains("<span class=\"hl-c\"># pi</span>"), "{html}");
}

#[test]
fn report_mode_hides_inputs_but_keeps_outputs() {
    let cells = json!([
        code(
            Some(1),
            "secret_source = 1",
            json!([
                {"output_type": "stream", "name": "stdout", "text": "visible output\n"}
            ]),
            json!({"jupyter": {"source_hidden": true}})
        ),
        code(Some(2), "shown_source = 2", json!([]), json!({}))
    ]);
    let nb = notebook(cells, json!({}));
    let html = render(&nb, &RenderOptions::default());
    assert!(!html.contains("secret_source"), "{html}");
    assert!(html.contains("visible output"), "{html}");
    assert!(html.contains("shown_source"), "{html}");

    let all = render(
        &nb,
        &RenderOptions {
            hide_all_inputs: true,
            ..Default::default()
        },
    );
    assert!(
        !all.contains("shown_source") && !all.contains("secret_source"),
        "{all}"
    );
    assert!(all.contains("visible output"), "{all}");

    let shown = render(
        &nb,
        &RenderOptions {
            show_hidden_inputs: true,
            ..Default::default()
        },
    );
    assert!(
        shown.contains("<details><summary>Code hidden in the report</summary>"),
        "{shown}"
    );
    assert!(shown.contains("secret_source"), "{shown}");
}

#[test]
fn collapsed_outputs_are_in_details_not_dropped() {
    let html = page(
        json!([code(
            Some(1),
            "x",
            json!([
                {"output_type": "stream", "name": "stdout", "text": "folded\n"}
            ]),
            json!({"jupyter": {"outputs_hidden": true}})
        )]),
        json!({}),
    );
    assert!(
        html.contains("<details class=\"hidden-outputs\"><summary>1 output collapsed"),
        "{html}"
    );
    assert!(html.contains("folded"), "{html}");
}

/// A notebook as papermill (and nbpipe) leave it after a failure in the second code cell.
fn failed_run() -> nbpipe_notebook::Notebook {
    let style = "style=\"color:red; font-family:Helvetica Neue, Helvetica, Arial, sans-serif; font-size:2em;\"";
    let banner = |text: String| {
        json!({"cell_type": "markdown", "source": text,
        "metadata": {"tags": ["papermill-error-cell-tag"]}})
    };
    notebook(
        json!([
            banner(format!("<span {style}>An Exception was encountered at '<a href=\"#papermill-error-cell\">In [2]</a>'.</span>")),
            code(Some(1), "a = 1", json!([]), json!({"papermill": {
                "status": "completed", "duration": 0.0123, "exception": false,
                "start_time": "2024-05-01T10:00:00.000001", "end_time": "2024-05-01T10:00:00.012401"}})),
            banner(format!("<span id=\"papermill-error-cell\" {style}>Execution using papermill encountered an exception here and stopped:</span>")),
            code(Some(2), "1/0", json!([{"output_type": "error", "ename": "ZeroDivisionError",
                "evalue": "division by zero", "traceback": ["\u{1b}[0;31mZeroDivisionError\u{1b}[0m: division by zero"]}]),
                json!({"papermill": {"status": "failed", "duration": 1.5, "exception": true}})),
            code(None, "after = 3", json!([]), json!({"papermill": {"status": "pending", "duration": null, "exception": null}}))
        ]),
        json!({
            "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
            "language_info": {"name": "python", "version": "3.11.2"},
            "papermill": {
                "parameters": {"alpha": 0.5, "name": "nbpipe", "flags": [1, 2]},
                "input_path": "in.ipynb", "output_path": "out.ipynb",
                "start_time": "2024-05-01T10:00:00.000000", "end_time": "2024-05-01T10:00:02.000000",
                "duration": 2.0, "exception": true, "version": "2.6.0"
            }
        }),
    )
}

#[test]
fn error_banner_cells_become_banners_linking_to_the_failure() {
    let html = render(&failed_run(), &RenderOptions::default());
    assert_eq!(
        html.matches("<div class=\"banner\" role=\"alert\"").count(),
        2,
        "{html}"
    );
    assert_eq!(
        html.matches("id=\"papermill-error-cell\"").count(),
        1,
        "{html}"
    );
    assert!(
        html.contains("<div class=\"banner\" role=\"alert\" id=\"papermill-error-cell\">"),
        "{html}"
    );
    assert!(
        html.contains("<a href=\"#papermill-error-cell\" rel=\"noopener noreferrer\">In [2]</a>"),
        "{html}"
    );
    assert!(
        !html.contains("font-size:2em"),
        "author styles are dropped: {html}"
    );
}

#[test]
fn failed_cell_is_highlighted_with_status_and_timing() {
    let html = render(&failed_run(), &RenderOptions::default());
    assert_eq!(
        html.matches("<section class=\"cell code-cell failed\"")
            .count(),
        1,
        "{html}"
    );
    assert!(
        html.contains("<div class=\"cell-status failed\">✗ failed after 1.50 s</div>"),
        "{html}"
    );
    assert!(
        html.contains("<div class=\"cell-status completed\">✓ completed in 0.012 s</div>"),
        "{html}"
    );
    assert!(
        html.contains("<div class=\"cell-status pending\">not run</div>"),
        "{html}"
    );
}

#[test]
fn summary_shows_the_papermill_run() {
    let html = render(&failed_run(), &RenderOptions::default());
    let header = &html[html.find("<header").unwrap()..html.find("</header>").unwrap()];
    assert!(
        header.contains("<span class=\"pill failed\">Failed</span>"),
        "{header}"
    );
    assert!(header.contains("at <a href=\"#papermill-error-cell\">In [2]</a>: <code>ZeroDivisionError: division by zero</code>"), "{header}");
    assert!(
        header.contains(
            "<p class=\"facts\">kernel Python 3 (ipykernel) · python 3.11.2 · 5 cells (3 code)</p>"
        ),
        "{header}"
    );
    assert!(
        header.contains("<dt>Started</dt><dd>2024-05-01 10:00:00</dd>"),
        "{header}"
    );
    assert!(
        header.contains("<dt>Duration</dt><dd>2.00 s</dd>"),
        "{header}"
    );
    assert!(
        header.contains("<dt>Input</dt><dd>in.ipynb</dd>"),
        "{header}"
    );
    assert!(
        header.contains("<tr><th>alpha</th><td><code>0.5</code></td></tr>"),
        "{header}"
    );
    assert!(
        header.contains("<tr><th>name</th><td><code>&quot;nbpipe&quot;</code></td></tr>"),
        "{header}"
    );
    assert!(
        header.contains("<tr><th>flags</th><td><code>[1,2]</code></td></tr>"),
        "{header}"
    );
}

#[test]
fn successful_run_summary_and_no_papermill_metadata() {
    let ok = page(
        json!([md("# Quarterly report")]),
        json!({"papermill": {
        "parameters": {}, "start_time": "2024-01-01T00:00:00", "end_time": "2024-01-01T00:01:05",
        "duration": 65.0, "exception": null}}),
    );
    assert!(
        ok.contains("<span class=\"pill completed\">Completed</span>"),
        "{ok}"
    );
    assert!(ok.contains("<dd>1 min 5 s</dd>"), "{ok}");
    assert!(ok.contains("<td class=\"none\">none</td>"), "{ok}");
    assert!(ok.contains("<title>Quarterly report</title>"), "{ok}");

    let plain = page(json!([code(Some(1), "x", json!([]), json!({}))]), json!({}));
    assert!(!plain.contains("class=\"pill"), "{plain}");
    assert!(!plain.contains("<p class=\"run\">"), "{plain}");
    assert!(!plain.contains("class=\"cell-status"), "{plain}");
    assert!(plain.contains("<title>Notebook</title>"), "{plain}");
}

#[test]
fn failed_cell_without_banner_carries_the_anchor() {
    let html = page(
        json!([code(
            Some(1),
            "boom()",
            json!([]),
            json!({"papermill": {"status": "failed", "exception": true}})
        )]),
        json!({"papermill": {"exception": true}}),
    );
    assert!(
        html.contains("<section class=\"cell code-cell failed\" id=\"papermill-error-cell\">"),
        "{html}"
    );
    assert!(
        html.contains("at <a href=\"#papermill-error-cell\">In [1]</a>"),
        "{html}"
    );
}

#[test]
fn title_comes_from_the_first_heading_without_emphasis() {
    let html = page(
        json!([md("intro\n\n# The **`sales`** report #\n\n# Second")]),
        json!({}),
    );
    assert!(html.contains("<title>The sales report</title>"), "{html}");
}

#[test]
fn title_option_wins_and_is_escaped() {
    let nb = notebook(json!([md("# Heading")]), json!({"title": "Meta title"}));
    assert!(render(&nb, &RenderOptions::default()).contains("<title>Meta title</title>"));
    let opts = RenderOptions {
        title: Some("<b>Mine</b>".into()),
        ..Default::default()
    };
    let html = render(&nb, &opts);
    assert!(
        html.contains("<title>&lt;b&gt;Mine&lt;/b&gt;</title>"),
        "{html}"
    );
    assert!(
        html.contains("<h1 class=\"title\">&lt;b&gt;Mine&lt;/b&gt;</h1>"),
        "{html}"
    );
}

#[test]
fn mathjax_is_loaded_only_when_there_is_math() {
    let with = page(json!([md("Area: $\\pi r^2$")]), json!({}));
    assert!(with.contains(MATHJAX_URL), "{with}");
    assert!(
        with.contains("<div class=\"markdown tex2jax_process\"><p>Area: $\\pi r^2$</p>"),
        "{with}"
    );
    let without = page(json!([md("Costs $5, not $6 (no math here)")]), json!({}));
    assert!(!without.contains("MathJax"), "{without}");
    let nb = notebook(json!([md("$$x$$")]), json!({}));
    let offline = render(
        &nb,
        &RenderOptions {
            no_mathjax: true,
            ..Default::default()
        },
    );
    assert!(
        !offline.contains("MathJax") && offline.contains("$$x$$"),
        "{offline}"
    );
    let opts = RenderOptions {
        mathjax_url: Some("/static/mj/tex-chtml.js?a=1&b=2".into()),
        ..Default::default()
    };
    let local = render(&nb, &opts);
    assert!(
        local.contains("<script defer src=\"/static/mj/tex-chtml.js?a=1&amp;b=2\"></script>"),
        "{local}"
    );
    assert!(!local.contains(MATHJAX_URL), "{local}");
}

#[test]
fn page_has_no_external_resources_without_math() {
    let html = page(
        json!([
            md("Some *text*"),
            code(
                Some(1),
                "x",
                json!([
                    {"output_type": "display_data", "data": {"image/png": "iVBORw0KGgo="}, "metadata": {}},
                    {"output_type": "display_data", "data": {"text/html": "<p>hi</p>"}, "metadata": {}}
                ]),
                json!({})
            )
        ]),
        json!({}),
    );
    for external in ["src=\"http", "href=\"http", "<link", "@import", "url("] {
        assert!(!html.contains(external), "{external}: {html}");
    }
    assert!(html.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"));
    assert!(html.contains("<style>\n:root{"));
}

#[test]
fn markdown_attachments_render_inline() {
    let html = page(
        json!([{"cell_type": "markdown", "metadata": {}, "source": "![chart](attachment:chart.png)",
                "attachments": {"chart.png": {"image/png": "iVBORw0KGgo="}}}]),
        json!({}),
    );
    assert!(
        html.contains("<img src=\"data:image/png;base64,iVBORw0KGgo=\" alt=\"chart\">"),
        "{html}"
    );
}

#[test]
fn raw_and_unknown_cells_are_shown_as_text() {
    let html = page(
        json!([
            {"cell_type": "raw", "metadata": {"raw_mimetype": "text/x-rst"}, "source": "**rst**"},
            {"cell_type": "sql", "metadata": {}, "source": "select 1"}
        ]),
        json!({}),
    );
    assert!(
        html.contains("<div class=\"raw-format\">text/x-rst</div><pre class=\"raw\">**rst**</pre>"),
        "{html}"
    );
    assert!(
        html.contains("A cell of unknown type <code>sql</code>"),
        "{html}"
    );
    assert!(html.contains("<pre class=\"raw\">select 1</pre>"), "{html}");
}
