//! Syntax highlighting of code cells and fenced code in markdown, with syntect's bundled Sublime
//! grammars and its pure-Rust regex engine.
//!
//! Output is flat, Pygments-style spans (`<span class="hl-k">def</span>`), one per token, for a
//! few categories coloured by the page's stylesheet: the scope stack syntect computes is mapped
//! to a category by a small built-in theme whose "colours" are category numbers. (syntect's own
//! class output nests a span per scope and is ten times larger.) Text is escaped here; anything
//! that cannot be highlighted (unknown language, a grammar error, very large sources) is escaped
//! plain text.

use std::str::FromStr;
use std::sync::OnceLock;

use serde_json::{Map, Value};
use syntect::easy::HighlightLines;
use syntect::highlighting::{Color, ScopeSelectors, StyleModifier, Theme, ThemeItem};
use syntect::parsing::{SyntaxReference, SyntaxSet};
use syntect::util::LinesWithEndings;

use crate::escape::{escape, push_escaped};

/// Sources larger than this are shown without highlighting (speed; they are rarely read).
const MAX_HIGHLIGHT_BYTES: usize = 256 * 1024;
/// Lines longer than this (minified data, embedded blobs) turn highlighting off for the cell.
const MAX_HIGHLIGHT_LINE: usize = 8 * 1024;

/// Token categories: the CSS class (after `hl-`) and the scope selectors that select it. The
/// most specific matching selector wins, as in any Sublime theme.
const CATEGORIES: [(&str, &str); 16] = [
    ("c", "comment"),
    ("s", "string, punctuation.definition.string"),
    ("se", "constant.character.escape, constant.other.placeholder"),
    ("m", "constant.numeric"),
    ("kc", "constant.language"),
    ("k", "keyword, storage.type, storage.modifier"),
    ("o", "keyword.operator"),
    ("ow", "keyword.operator.logical, keyword.operator.word, keyword.operator.in"),
    ("nf", "entity.name.function"),
    ("nc", "entity.name.class, entity.name.type, entity.name.struct, entity.name.enum"),
    ("nd", "meta.annotation, meta.decorator, entity.name.function.decorator, punctuation.definition.annotation"),
    ("nb", "support.function, support.type, support.class, variable.language"),
    ("nt", "entity.name.tag"),
    ("na", "entity.other.attribute-name"),
    ("gh", "markup.heading"),
    ("err", "invalid.illegal"),
];

fn syntax_set() -> &'static SyntaxSet {
    static SET: OnceLock<SyntaxSet> = OnceLock::new();
    SET.get_or_init(SyntaxSet::load_defaults_newlines)
}

/// A theme whose foreground red channel is the index of the category in [`CATEGORIES`] plus
/// one (0: no category).
fn category_theme() -> &'static Theme {
    static THEME: OnceLock<Theme> = OnceLock::new();
    THEME.get_or_init(|| {
        let mut theme = Theme::default();
        theme.settings.foreground = Some(Color::BLACK);
        for (i, (_, selectors)) in CATEGORIES.iter().enumerate() {
            let Ok(scope) = ScopeSelectors::from_str(selectors) else {
                continue;
            };
            theme.scopes.push(ThemeItem {
                scope,
                style: StyleModifier {
                    foreground: Some(Color {
                        r: i as u8 + 1,
                        g: 0,
                        b: 0,
                        a: 255,
                    }),
                    ..StyleModifier::default()
                },
            });
        }
        theme
    })
}
/// Find a grammar for a language token such as `python`, `ipython3`, `.py`, `R`, `sh`.
fn find_syntax(token: &str) -> Option<&'static SyntaxReference> {
    let token = token.trim().trim_start_matches('.').to_ascii_lowercase();
    let token = match token.as_str() {
        "" => return None,
        "ipython" | "ipython2" | "ipython3" | "python2" | "python3" => "python",
        "shell" | "zsh" | "bash_kernel" => "bash",
        "c++" | "xeus-cling" => "cpp",
        "javascript" | "node" | "nodejs" => "js",
        "text" | "plain" | "plaintext" => return None,
        other => other,
    };
    syntax_set().find_syntax_by_token(token)
}

/// Highlights code in the notebook's language.
#[derive(Clone, Copy)]
pub(crate) struct Highlighter {
    syntax: Option<&'static SyntaxReference>,
}

impl Highlighter {
    /// The grammar for a notebook, from `metadata.language_info` (file extension, pygments
    /// lexer, CodeMirror mode, name) and then `metadata.kernelspec.language`.
    pub(crate) fn for_notebook(metadata: &Map<String, Value>) -> Highlighter {
        let info = metadata.get("language_info");
        let field = |key: &str| info.and_then(|i| i.get(key));
        let codemirror = field("codemirror_mode").and_then(|m| match m {
            Value::String(s) => Some(s.as_str()),
            Value::Object(o) => o.get("name").and_then(Value::as_str),
            _ => None,
        });
        let candidates = [
            field("file_extension").and_then(Value::as_str),
            field("pygments_lexer").and_then(Value::as_str),
            codemirror,
            field("name").and_then(Value::as_str),
            metadata
                .get("kernelspec")
                .and_then(|k| k.get("language"))
                .and_then(Value::as_str),
        ];
        let syntax = candidates.into_iter().flatten().find_map(find_syntax);
        Highlighter { syntax }
    }

    /// The name of the grammar in use (`Plain Text` when there is none).
    #[cfg(test)]
    pub(crate) fn language_name(&self) -> &'static str {
        self.syntax.map_or("Plain Text", |s| s.name.as_str())
    }

    /// Highlighted HTML (without the surrounding `<pre>`) for a code cell's source. A leading
    /// IPython cell magic such as `%%bash` or `%%html` switches the grammar for that cell.
    pub(crate) fn cell(&self, source: &str) -> String {
        let magic = source
            .strip_prefix("%%")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|name| match name {
                "bash" | "sh" | "script" => find_syntax("bash"),
                "html" | "HTML" => find_syntax("html"),
                "javascript" | "js" => find_syntax("js"),
                "latex" => find_syntax("tex"),
                "markdown" => find_syntax("md"),
                "sql" => find_syntax("sql"),
                "ruby" => find_syntax("rb"),
                "perl" => find_syntax("pl"),
                "writefile" | "capture" | "time" | "timeit" | "prun" => None,
                _ => None,
            });
        highlight_with(magic.or(self.syntax), source)
    }

    /// Highlighted HTML for code in a named language (fenced markdown code), or `None` when the
    /// language is unknown.
    pub(crate) fn fenced(language: &str, code: &str) -> Option<String> {
        let syntax = find_syntax(language.split([' ', ',', '{']).next().unwrap_or(""))?;
        Some(highlight_with(Some(syntax), code))
    }
}

fn highlight_with(syntax: Option<&SyntaxReference>, source: &str) -> String {
    let Some(syntax) = syntax else {
        return escape(source);
    };
    if source.len() > MAX_HIGHLIGHT_BYTES || source.lines().any(|l| l.len() > MAX_HIGHLIGHT_LINE) {
        return escape(source);
    }
    let set = syntax_set();
    let mut lines = HighlightLines::new(syntax, category_theme());
    let mut out = String::with_capacity(source.len() * 2);
    // Adjacent tokens of one category share a span.
    let mut open: u8 = 0;
    for line in LinesWithEndings::from(source) {
        let Ok(tokens) = lines.highlight_line(line, set) else {
            return escape(source);
        };
        for (style, text) in tokens {
            let category = style.foreground.r;
            if category != open {
                if open != 0 {
                    out.push_str("</span>");
                }
                if let Some((class, _)) = CATEGORIES.get(usize::from(category).wrapping_sub(1)) {
                    out.push_str("<span class=\"hl-");
                    out.push_str(class);
                    out.push_str("\">");
                    open = category;
                } else {
                    open = 0;
                }
            }
            push_escaped(&mut out, text);
        }
    }
    if open != 0 {
        out.push_str("</span>");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn language_comes_from_language_info_then_kernelspec() {
        let py = meta(json!({"language_info": {"name": "python", "file_extension": ".py"}}));
        assert_eq!(Highlighter::for_notebook(&py).language_name(), "Python");
        let r = meta(json!({"kernelspec": {"name": "ir", "language": "R"}}));
        assert_eq!(Highlighter::for_notebook(&r).language_name(), "R");
        let lexer = meta(json!({"language_info": {"pygments_lexer": "ipython3"}}));
        assert_eq!(Highlighter::for_notebook(&lexer).language_name(), "Python");
        let none = meta(json!({}));
        assert_eq!(
            Highlighter::for_notebook(&none).language_name(),
            "Plain Text"
        );
    }

    #[test]
    fn python_keywords_and_strings_get_classes() {
        let hl = Highlighter::for_notebook(&meta(json!({"language_info": {"name": "python"}})));
        let html = hl.cell("def f(x):\n    return 'a' # note\n");
        assert!(
            html.starts_with("<span class=\"hl-k\">def</span> <span class=\"hl-nf\">f</span>(x):"),
            "{html}"
        );
        assert!(
            html.contains(
                "<span class=\"hl-k\">return</span> <span class=\"hl-s\">&#39;a&#39;</span>"
            ),
            "{html}"
        );
        assert!(
            html.contains("<span class=\"hl-c\"># note\n</span>"),
            "{html}"
        );
    }

    #[test]
    fn every_category_selector_parses() {
        for (_, selectors) in CATEGORIES {
            assert!(ScopeSelectors::from_str(selectors).is_ok(), "{selectors}");
        }
        assert_eq!(category_theme().scopes.len(), CATEGORIES.len());
    }

    #[test]
    fn source_markup_is_escaped() {
        let hl = Highlighter::for_notebook(&meta(json!({"language_info": {"name": "python"}})));
        let html = hl.cell("s = '<script>alert(1)</script>'\n<img src=x onerror=alert(1)>");
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        let plain = Highlighter { syntax: None }.cell("<script>x</script>");
        assert_eq!(plain, "&lt;script&gt;x&lt;/script&gt;");
    }

    #[test]
    fn cell_magic_switches_grammar() {
        let hl = Highlighter::for_notebook(&meta(json!({"language_info": {"name": "python"}})));
        let html = hl.cell("%%bash\nif true; then echo \"$HOME\"; fi\n");
        assert!(html.contains("<span class=\"hl-k\">if</span>"), "{html}");
    }

    #[test]
    fn fenced_code_uses_the_named_language() {
        assert!(Highlighter::fenced("rust", "fn main() {}\n")
            .unwrap()
            .contains("<span class=\"hl-nf\">main</span>"));
        assert!(Highlighter::fenced("no-such-language", "x").is_none());
    }
}
