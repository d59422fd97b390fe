//! Markdown (cells and `text/markdown` outputs) to sanitized HTML.
//!
//! pulldown-cmark parses CommonMark with tables, strikethrough, footnotes and `$`/`$$` math.
//! Math is written back as escaped TeX between its `$` delimiters for MathJax to typeset
//! (and stays readable TeX when MathJax cannot load). `attachment:NAME` image URLs are replaced
//! by `data:` URLs from the cell's `attachments`. Fenced code is highlighted. The resulting HTML,
//! including any raw HTML the author wrote, then goes through ammonia with a strict allow-list:
//! no script, no event handlers, no `style` except table alignment, `data:` URLs only as image
//! sources, and `class` only with the highlighter's `hl-` classes.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::OnceLock;

use base64::Engine as _;
use pulldown_cmark::{CodeBlockKind, CowStr, Event, Options, Parser, Tag, TagEnd};
use serde_json::{Map, Value};

use crate::highlight::Highlighter;
use crate::text::multiline;

/// Rendered markdown.
pub(crate) struct Markdown {
    /// Sanitized HTML.
    pub(crate) html: String,
    /// Whether the text contains math for MathJax.
    pub(crate) has_math: bool,
}

/// Image types that may appear as `data:` URLs (attachments). SVG is safe here because the page
/// shows it through `<img>`, where its scripts never run.
const DATA_IMAGE_TYPES: [&str; 6] = [
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/bmp",
    "image/svg+xml",
];

fn sanitizer() -> &'static ammonia::Builder<'static> {
    static BUILDER: OnceLock<ammonia::Builder<'static>> = OnceLock::new();
    BUILDER.get_or_init(|| {
        let mut b = ammonia::Builder::default();
        b.add_tag_attributes("span", &["class"])
            .add_tag_attributes("code", &["class"])
            .add_tag_attributes("pre", &["class"])
            .add_tag_attributes("th", &["style"])
            .add_tag_attributes("td", &["style"])
            .filter_style_properties(HashSet::from(["text-align"]))
            .add_url_schemes(&["data"])
            .attribute_filter(filter_attribute);
        b
    })
}

/// Second line of the allow-list, after ammonia's own tag/attribute/scheme checks.
fn filter_attribute<'u>(element: &str, attribute: &str, value: &'u str) -> Option<Cow<'u, str>> {
    if attribute == "class" {
        let kept: Vec<&str> = value
            .split_ascii_whitespace()
            .filter(|c| c.starts_with("hl-"))
            .collect();
        return (!kept.is_empty()).then(|| Cow::Owned(kept.join(" ")));
    }
    let trimmed = value.trim_start();
    if trimmed.len() >= 5 && trimmed[..5].eq_ignore_ascii_case("data:") {
        let is_image = element == "img"
            && attribute == "src"
            && DATA_IMAGE_TYPES.iter().any(|t| {
                trimmed[5..]
                    .get(..t.len())
                    .is_some_and(|p| p.eq_ignore_ascii_case(t))
            });
        return is_image.then_some(Cow::Borrowed(value));
    }
    Some(Cow::Borrowed(value))
}

/// Sanitize author-written HTML with the same allow-list as markdown.
pub(crate) fn sanitize(html: &str) -> String {
    sanitizer().clean(html).to_string()
}

/// Render markdown to sanitized HTML. `attachments` is the cell's `attachments` object.
pub(crate) fn render(source: &str, attachments: Option<&Map<String, Value>>) -> Markdown {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_MATH;
    let mut has_math = false;
    let mut events: Vec<Event> = Vec::new();
    let mut fence: Option<(String, String)> = None;
    for event in Parser::new_ext(source, options) {
        if let Some((_, code)) = fence.as_mut() {
            if let Event::Text(text) = &event {
                code.push_str(text);
            } else if let Event::End(TagEnd::CodeBlock) = event {
                let (language, code) = fence.take().unwrap_or_default();
                match Highlighter::fenced(&language, &code) {
                    Some(html) => events.push(Event::Html(
                        format!("<pre><code>{html}</code></pre>\n").into(),
                    )),
                    None => {
                        events.push(Event::Start(Tag::CodeBlock(CodeBlockKind::Indented)));
                        events.push(Event::Text(code.into()));
                        events.push(Event::End(TagEnd::CodeBlock));
                    }
                }
            }
            continue;
        }
        match event {
            Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(language)))
                if !language.is_empty() =>
            {
                fence = Some((language.to_string(), String::new()));
            }
            Event::InlineMath(tex) => {
                has_math = true;
                events.push(Event::Text(format!("${tex}$").into()));
            }
            Event::DisplayMath(tex) => {
                has_math = true;
                events.push(Event::Text(format!("$${tex}$$").into()));
            }
            Event::Text(text) => {
                if !has_math && looks_like_math(&text) {
                    has_math = true;
                }
                events.push(Event::Text(text));
            }
            Event::Start(Tag::Image {
                link_type,
                dest_url,
                title,
                id,
            }) => {
                let dest_url = resolve_attachment(dest_url, attachments);
                events.push(Event::Start(Tag::Image {
                    link_type,
                    dest_url,
                    title,
                    id,
                }));
            }
            other => events.push(other),
        }
    }
    let mut html = String::with_capacity(source.len() * 2);
    pulldown_cmark::html::push_html(&mut html, events.into_iter());
    Markdown {
        html: sanitize(&html),
        has_math,
    }
}

/// TeX that MathJax would still find outside `$...$` (environments, `\[`, `$$` pulled apart).
fn looks_like_math(text: &str) -> bool {
    text.contains("\\begin{") || text.contains("$$") || text.contains("\\[")
}

/// `attachment:NAME` → `data:MIME;base64,...` from the cell's attachments, if present.
fn resolve_attachment<'a>(url: CowStr<'a>, attachments: Option<&Map<String, Value>>) -> CowStr<'a> {
    let Some(name) = url.strip_prefix("attachment:") else {
        return url;
    };
    let decoded = percent_decode(name);
    let Some(bundle) = attachments
        .and_then(|a| a.get(name).or_else(|| a.get(&decoded)))
        .and_then(Value::as_object)
    else {
        return url;
    };
    for mime in DATA_IMAGE_TYPES {
        let Some(data) = bundle.get(mime).and_then(multiline) else {
            continue;
        };
        let trimmed = data.trim_start();
        let base64 = if mime == "image/svg+xml" && trimmed.starts_with('<') {
            base64::engine::general_purpose::STANDARD.encode(data.as_bytes())
        } else {
            data.chars().filter(|c| !c.is_ascii_whitespace()).collect()
        };
        return format!("data:{mime};base64,{base64}").into();
    }
    url
}

/// Decode `%XX` escapes (attachment names with spaces are often written `my%20image.png`).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
        {
            let hex = |b: u8| (b as char).to_digit(16).unwrap_or(0) as u8;
            out.push(hex(bytes[i + 1]) * 16 + hex(bytes[i + 2]));
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn md(source: &str) -> String {
        render(source, None).html
    }

    #[test]
    fn headings_lists_tables_render() {
        let html = md("# Title\n\n* a\n* **b**\n\n| x | y |\n|:-:|--:|\n| 1 | 2 |\n");
        assert!(html.contains("<h1>Title</h1>"), "{html}");
        assert!(html.contains("<li><strong>b</strong></li>"), "{html}");
        assert!(
            html.contains("<th style=\"text-align:center\">x</th>"),
            "{html}"
        );
    }

    #[test]
    fn script_in_markdown_is_removed() {
        let html = md("hi <script>document.body.innerHTML='PWNED'</script>\n\n<script>\nalert(1)\n</script>\n");
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("PWNED"), "{html}");
        assert!(html.contains("hi"), "{html}");
    }

    #[test]
    fn event_handlers_styles_and_javascript_urls_are_removed() {
        let html = md(concat!(
            "<img src=x onerror=\"alert(1)\">\n\n",
            "<a href=\"javascript:alert(1)\" style=\"position:fixed\">x</a>\n\n",
            "[y](javascript:alert(2))\n\n",
            "<iframe src=\"https://e.x\"></iframe><object data=\"x\"></object>\n\n",
            "<a href=\"data:text/html,<script>alert(3)</script>\">d</a>\n\n",
            "<form action=\"https://e.x\"><input name=a></form>\n",
        ));
        for bad in [
            "onerror",
            "javascript:",
            "style=",
            "<iframe",
            "<object",
            "data:text",
            "<form",
            "<input",
        ] {
            assert!(!html.contains(bad), "{bad} in {html}");
        }
    }

    #[test]
    fn math_is_kept_as_tex() {
        let out = render(
            "Euler: $e^{i\\pi} + 1 = 0$ and\n\n$$\\sum_{i=1}^n a_i * b_i$$\n",
            None,
        );
        assert!(out.has_math);
        assert!(out.html.contains("$e^{i\\pi} + 1 = 0$"), "{}", out.html);
        assert!(
            out.html.contains("$$\\sum_{i=1}^n a_i * b_i$$"),
            "{}",
            out.html
        );
        assert!(!render("no math, $5 only", None).has_math);
        let env = render("\\begin{equation}x<y\\end{equation}", None);
        assert!(env.has_math);
        assert!(env.html.contains("x&lt;y"), "{}", env.html);
    }

    #[test]
    fn attachments_become_data_urls() {
        let attachments = json!({
            "dot.png": {"image/png": "iVBORw0K\nGgo="},
            "my pic.svg": {"image/svg+xml": "<svg xmlns=\"http://www.w3.org/2000/svg\"/>"}
        });
        let html = render(
            "![dot](attachment:dot.png) ![pic](attachment:my%20pic.svg) ![gone](attachment:nope.png)",
            attachments.as_object(),
        )
        .html;
        assert!(
            html.contains("src=\"data:image/png;base64,iVBORw0KGgo=\""),
            "{html}"
        );
        assert!(
            html.contains("src=\"data:image/svg+xml;base64,PHN2Zy"),
            "{html}"
        );
        assert!(!html.contains("attachment:"), "{html}");
        assert!(html.contains("alt=\"gone\""), "{html}");
    }

    #[test]
    fn fenced_code_is_highlighted_and_escaped() {
        let html = md("```python\nx = '<b>'  # c\n```\n\n```\n<i>plain</i>\n```\n");
        assert!(html.contains("class=\"hl-"), "{html}");
        assert!(html.contains("&lt;b&gt;"), "{html}");
        assert!(html.contains("&lt;i&gt;plain&lt;/i&gt;"), "{html}");
    }

    #[test]
    fn only_highlighter_classes_survive() {
        let html = md("<span class=\"banner hl-keyword\">x</span><p class=\"error\">y</p>");
        assert!(
            html.contains("<span class=\"hl-keyword\">x</span>"),
            "{html}"
        );
        assert!(html.contains("<p>y</p>"), "{html}");
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b%2"), "a b%2");
        assert_eq!(percent_decode("%zz%é"), "%zz%é");
    }
}
