//! Unit tests of output rendering (kept apart so `outputs.rs` stays short).

use serde_json::{json, Value};

use crate::page::Page;
use crate::RenderOptions;

/// Render `outputs` of one code cell, returning the HTML and the page flags.
fn render_outputs(outputs: Value) -> (String, bool, bool) {
    let nb = nbpipe_notebook::Notebook::new();
    let opts = RenderOptions::default();
    let mut page = Page::new(&nb, &opts);
    let mut html = String::new();
    let outputs: Vec<Value> = serde_json::from_value(outputs).unwrap();
    page.outputs(&outputs, Some(7), &mut html);
    (html, page.has_math, page.has_frames)
}

fn html_of(outputs: Value) -> String {
    render_outputs(outputs).0
}

#[test]
fn script_in_a_stream_is_escaped() {
    let html = html_of(json!([
        {"output_type": "stream", "name": "stdout", "text": ["<script>alert(1)</script>\n"]}
    ]));
    assert!(!html.contains("<script"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
}

#[test]
fn consecutive_streams_merge_and_progress_bars_collapse() {
    let html = html_of(json!([
        {"output_type": "stream", "name": "stderr", "text": "  0%|   |\r"},
        {"output_type": "stream", "name": "stderr", "text": " 50%|#  |\r"},
        {"output_type": "stream", "name": "stderr", "text": "100%|###|\n"},
        {"output_type": "stream", "name": "stdout", "text": "done\n"}
    ]));
    assert_eq!(
        html.matches("<pre class=\"stream stderr\">").count(),
        1,
        "{html}"
    );
    assert!(html.contains(">100%|###|\n</pre>"), "{html}");
    assert!(!html.contains("50%"), "{html}");
    assert!(
        html.contains("<pre class=\"stream stdout\">done\n</pre>"),
        "{html}"
    );
}

#[test]
fn error_traceback_is_ansi_colored_and_escaped() {
    let html = html_of(json!([{
        "output_type": "error",
        "ename": "ValueError",
        "evalue": "<script>alert('evalue')</script>",
        "traceback": [
            "\u{1b}[0;31m---------------------------------------------------------------------------\u{1b}[0m",
            "\u{1b}[0;31mValueError\u{1b}[0m: <script>alert('evalue')</script>"
        ]
    }]));
    assert!(html.contains("<pre class=\"error\">"), "{html}");
    assert!(
        html.contains("<span class=\"ansi-fg-1\">ValueError</span>"),
        "{html}"
    );
    assert!(!html.contains("<script"), "{html}");
    assert!(!html.contains('\u{1b}'), "{html}");
}

#[test]
fn error_without_traceback_shows_name_and_value() {
    let html = html_of(json!([{
        "output_type": "error", "ename": "KeyError", "evalue": "'<b>'", "traceback": []
    }]));
    assert!(html.contains("KeyError: &#39;&lt;b&gt;&#39;"), "{html}");
}

#[test]
fn png_and_jpeg_become_data_images_with_metadata_size() {
    let html = html_of(json!([
        {"output_type": "display_data",
         "data": {"image/png": "iVBORw0KGgo=\n", "text/plain": "<Figure>"},
         "metadata": {"image/png": {"width": 64, "height": 32.4}}},
        {"output_type": "display_data", "data": {"image/jpeg": ["/9j/", "4AAQ"]}, "metadata": {}}
    ]));
    assert!(
        html.contains(
            "<img class=\"image\" alt=\"image/png output\" \
             src=\"data:image/png;base64,iVBORw0KGgo=\" width=\"64\" height=\"32\">"
        ),
        "{html}"
    );
    assert!(
        html.contains("src=\"data:image/jpeg;base64,/9j/4AAQ\""),
        "{html}"
    );
    assert!(
        !html.contains("&lt;Figure&gt;"),
        "the image wins over text: {html}"
    );
}

#[test]
fn broken_image_data_is_a_note_not_markup() {
    let html = html_of(json!([{
        "output_type": "display_data",
        "data": {"image/png": "\" onerror=\"alert(1)"},
        "metadata": {}
    }]));
    assert!(!html.contains("onerror=\""), "{html}");
    assert!(html.contains("class=\"note\""), "{html}");
}

#[test]
fn svg_is_an_img_never_inline() {
    let svg = "<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script><circle r=\"4\"/></svg>";
    let html = html_of(json!([{
        "output_type": "display_data", "data": {"image/svg+xml": svg}, "metadata": {}
    }]));
    assert!(!html.contains("<svg"), "{html}");
    assert!(!html.contains("<script"), "{html}");
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, svg);
    assert!(
        html.contains(&format!("src=\"data:image/svg+xml;base64,{b64}\"")),
        "{html}"
    );
}

#[test]
fn html_output_is_isolated_in_a_sandboxed_frame() {
    let (html, _, frames) = render_outputs(json!([{
        "output_type": "execute_result", "execution_count": 3,
        "data": {
            "text/html": ["<b>table</b>", "<script>parent.document.body.innerHTML='PWNED'</script>"],
            "text/plain": "table"
        },
        "metadata": {}
    }]));
    assert!(frames);
    assert!(html.contains("Out[3]:"), "{html}");
    assert!(
        html.contains("<iframe class=\"html-output\" sandbox=\"allow-scripts\" "),
        "{html}"
    );
    assert!(!html.contains("allow-same-origin"), "{html}");
    // The author's markup exists only escaped inside the srcdoc attribute.
    assert!(!html.contains("<script"), "{html}");
    assert!(!html.contains("<b>"), "{html}");
    assert!(
        html.contains(
            "&lt;script&gt;parent.document.body.innerHTML=&#39;PWNED&#39;&lt;/script&gt;"
        ),
        "{html}"
    );
    let srcdoc_start = html.find("srcdoc=\"").unwrap() + 8;
    let srcdoc_len = html[srcdoc_start..].find('"').unwrap();
    assert!(html[srcdoc_start + srcdoc_len..].starts_with("\"></iframe>"));
}

#[test]
fn execute_result_prompt_falls_back_to_the_cell_count() {
    let html = html_of(json!([{
        "output_type": "execute_result", "data": {"text/plain": "42"}, "metadata": {}
    }]));
    assert!(html.contains("Out[7]:"), "{html}");
    assert!(html.contains("<pre class=\"text\">42</pre>"), "{html}");
}

#[test]
fn markdown_latex_and_json_outputs() {
    let (html, math, _) = render_outputs(json!([
        {"output_type": "display_data", "data": {"text/markdown": "**bold** <script>x</script>"}, "metadata": {}},
        {"output_type": "display_data", "data": {"text/latex": "$\\frac{a}{b} < 1$", "text/plain": "a/b"}, "metadata": {}},
        {"output_type": "display_data", "data": {"application/json": {"b": [1, 2], "a": "<x>"}}, "metadata": {}}
    ]));
    assert!(math);
    assert!(html.contains("<strong>bold</strong>"), "{html}");
    assert!(!html.contains("<script"), "{html}");
    assert!(
        html.contains("<div class=\"latex tex2jax_process\">$\\frac{a}{b} &lt; 1$</div>"),
        "{html}"
    );
    assert!(html.contains("<pre class=\"json\">{\n  &quot;"), "{html}");
    assert!(
        html.contains("&quot;b&quot;: [\n    1,\n    2\n  ]"),
        "{html}"
    );
    assert!(html.contains("&quot;&lt;x&gt;&quot;"), "{html}");
}

#[test]
fn unknown_outputs_and_mime_types_leave_a_note() {
    let html = html_of(json!([
        {"output_type": "mystery", "payload": 1},
        {"output_type": "display_data", "data": {"application/x-thing": "..."}, "metadata": {}},
        {"output_type": "display_data",
         "data": {"application/vnd.jupyter.widget-view+json": {"model_id": "m"}, "text/plain": "IntSlider(value=3)"},
         "metadata": {}},
        {"output_type": "display_data", "data": {}, "metadata": {}},
        "not an object",
        {"no_type": true}
    ]));
    assert!(html.contains("unknown type <code>mystery</code>"), "{html}");
    assert!(html.contains("<code>application/x-thing</code>"), "{html}");
    assert!(html.contains("IntSlider(value=3)"), "{html}");
    assert!(
        html.contains("also has <code>application/vnd.jupyter.widget-view+json</code>"),
        "{html}"
    );
    assert!(
        html.contains("An output with no data was not shown."),
        "{html}"
    );
    assert!(html.contains("not a JSON object"), "{html}");
    assert!(
        html.contains("without an <code>output_type</code>"),
        "{html}"
    );
    assert_eq!(html.matches("class=\"output\"").count(), 6, "{html}");
}

#[test]
fn text_plain_keeps_ansi_colors() {
    let html = html_of(json!([{
        "output_type": "execute_result", "execution_count": 1,
        "data": {"text/plain": "\u{1b}[32mgreen\u{1b}[0m"}, "metadata": {}
    }]));
    assert!(
        html.contains("<span class=\"ansi-fg-2\">green</span>"),
        "{html}"
    );
}
