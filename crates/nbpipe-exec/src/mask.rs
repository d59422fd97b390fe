//! Masking secret values in what a run records, as CI systems mask secrets in their logs.
//!
//! Owns the [`Masker`]: built from a run's secret values, it replaces every occurrence of a
//! value with [`MASK`] in a string ([`Masker::mask`]), in every string of a JSON value
//! ([`Masker::mask_value`]), and in a stream that arrives in pieces
//! ([`Masker::mask_stream`], which holds back a tail that could be the start of a value).
//! It does not know where values come from (`nbpipe-project` resolves them) nor when outputs
//! are saved ([`crate::record`] masks each output before it is stored or shown).
//!
//! Besides the value itself, it masks the forms a value takes when a notebook shows it
//! inside something else: Python's `repr` and `ascii` (`'it\'s\n'`), JSON strings (with and
//! without `\uXXXX` escapes, as `json.dumps` writes them), and HTML-escaped text (`&quot;`,
//! `&#x27;`, `&#39;`, `&lt;`). A value of several lines is also masked line by line (each line
//! of at least [`MIN_LEN`] characters), as GitHub Actions does, since a repr or a table may
//! show its lines apart.
//!
//! Limits (documented in `docs/projects.md`): a value shorter than [`MIN_LEN`] characters is
//! not masked at all (it would mask unrelated text everywhere; [`Masker::too_short`] lists
//! such names so the caller can warn); a value transformed in any other way (base64, sliced,
//! reversed, one character per line) is not recognized.

use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};
use serde_json::Value;

/// What a masked value is replaced with.
pub const MASK: &str = "***";

/// Values (and lines of values) shorter than this many characters are not masked.
pub const MIN_LEN: usize = 4;

/// Replaces secret values (and their encoded forms) with [`MASK`]. Cheap to clone; the
/// default masks nothing.
#[derive(Clone, Default)]
pub struct Masker {
    inner: Option<Arc<Inner>>,
    too_short: Vec<String>,
}

struct Inner {
    matcher: AhoCorasick,
    /// Every form searched for, for the stream hold-back.
    needles: Vec<String>,
    /// The longest needle in bytes.
    longest: usize,
}

impl std::fmt::Debug for Masker {
    /// Never shows a value: only how many forms are searched for.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Masker")
            .field("forms", &self.inner.as_ref().map_or(0, |i| i.needles.len()))
            .field("too_short", &self.too_short)
            .finish()
    }
}

impl Masker {
    /// A masker for `(name, value)` pairs.
    pub fn new<'a>(secrets: impl IntoIterator<Item = (&'a str, &'a str)>) -> Masker {
        let mut needles: Vec<String> = Vec::new();
        let mut too_short = Vec::new();
        for (name, value) in secrets {
            if value.chars().count() < MIN_LEN {
                if !value.is_empty() {
                    too_short.push(name.to_string());
                }
                continue;
            }
            let mut parts = vec![value.to_string()];
            if value.contains(['\n', '\r']) {
                parts.extend(
                    value
                        .split(['\n', '\r'])
                        .map(str::trim)
                        .filter(|l| l.chars().count() >= MIN_LEN)
                        .map(str::to_string),
                );
            }
            for p in parts {
                for form in forms(&p) {
                    if !needles.contains(&form) {
                        needles.push(form);
                    }
                }
            }
        }
        if needles.is_empty() {
            return Masker {
                inner: None,
                too_short,
            };
        }
        let matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&needles)
            .expect("the masker's patterns are plain strings");
        let longest = needles.iter().map(String::len).max().unwrap_or(0);
        Masker {
            inner: Some(Arc::new(Inner {
                matcher,
                needles,
                longest,
            })),
            too_short,
        }
    }

    /// Whether this masker masks anything.
    pub fn is_active(&self) -> bool {
        self.inner.is_some()
    }

    /// Names of secrets whose values are too short to be masked ([`MIN_LEN`]).
    pub fn too_short(&self) -> &[String] {
        &self.too_short
    }

    /// `text` with every value (in any of its forms) replaced by [`MASK`].
    pub fn mask(&self, text: &str) -> String {
        match &self.inner {
            Some(i) if i.matcher.is_match(text) => {
                i.matcher.replace_all(text, &vec![MASK; i.needles.len()])
            }
            _ => text.to_string(),
        }
    }

    /// Mask `text` in place; returns whether anything was masked.
    pub fn mask_in_place(&self, text: &mut String) -> bool {
        match &self.inner {
            Some(i) if i.matcher.is_match(text.as_str()) => {
                *text = i.matcher.replace_all(text, &vec![MASK; i.needles.len()]);
                true
            }
            _ => false,
        }
    }

    /// Mask every string inside `value` (object keys included).
    pub fn mask_value(&self, value: &mut Value) {
        if self.inner.is_none() {
            return;
        }
        match value {
            Value::String(s) => {
                self.mask_in_place(s);
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.mask_value(v)),
            Value::Object(map) => {
                let masked_keys = map.keys().any(|k| self.mask(k) != *k);
                if masked_keys {
                    let old = std::mem::take(map);
                    for (k, mut v) in old {
                        self.mask_value(&mut v);
                        map.insert(self.mask(&k), v);
                    }
                } else {
                    map.values_mut().for_each(|v| self.mask_value(v));
                }
            }
            _ => {}
        }
    }

    /// Mask text that may continue later (a stream still being written): returns the masked
    /// text that is safe to record now and the byte offset in `pending` from which the rest
    /// must be held back, because it could be the start of a value that the next piece
    /// completes. At the end of the stream the held part is recorded through [`Masker::mask`].
    pub fn mask_stream(&self, pending: &str) -> (String, usize) {
        let Some(i) = &self.inner else {
            return (pending.to_string(), pending.len());
        };
        let last_end = i.matcher.find_iter(pending).last().map_or(0, |m| m.end());
        // The earliest start after the last match from which the rest is a proper prefix of
        // some form (only the last `longest - 1` bytes can be).
        let from = last_end.max(pending.len().saturating_sub(i.longest.saturating_sub(1)));
        let hold = (from..pending.len())
            .filter(|&p| pending.is_char_boundary(p))
            .find(|&p| {
                let tail = &pending[p..];
                i.needles
                    .iter()
                    .any(|n| n.len() > tail.len() && n.starts_with(tail))
            })
            .unwrap_or(pending.len());
        (self.mask(&pending[..hold]), hold)
    }
}

/// The forms `value` can take in an output: itself, Python repr/ascii bodies, JSON string
/// bodies, HTML-escaped text.
fn forms(value: &str) -> Vec<String> {
    let mut out = vec![value.to_string()];
    for escape_single in [true, false] {
        out.push(python_repr(value, escape_single, false));
        out.push(python_repr(value, escape_single, true));
    }
    out.push(json(value, false));
    out.push(json(value, true));
    let mut htmls = Vec::new();
    for f in &out {
        for (dq, sq) in [
            (Some("&quot;"), Some("&#x27;")),
            (Some("&#34;"), Some("&#39;")),
            (Some("&quot;"), Some("&#39;")),
            (None, None),
        ] {
            htmls.push(html(f, dq, sq));
        }
    }
    out.extend(htmls);
    let mut seen = Vec::new();
    for f in out {
        if !f.is_empty() && !seen.contains(&f) {
            seen.push(f);
        }
    }
    seen
}

/// The inside of Python's `repr(value)` (or `ascii(value)`), with `'` escaped as in a
/// single-quoted repr or not as in a double-quoted one.
fn python_repr(value: &str, escape_single: bool, ascii: bool) -> String {
    let mut s = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            '\'' if escape_single => s.push_str("\\'"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                s.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if ascii && (c as u32) > 0x7f => {
                let n = c as u32;
                if n <= 0xff {
                    s.push_str(&format!("\\x{n:02x}"));
                } else if n <= 0xffff {
                    s.push_str(&format!("\\u{n:04x}"));
                } else {
                    s.push_str(&format!("\\U{n:08x}"));
                }
            }
            c => s.push(c),
        }
    }
    s
}

/// The inside of a JSON string of `value`; `ascii` escapes non-ASCII as `\uXXXX` (Python's
/// `json.dumps` default).
fn json(value: &str, ascii: bool) -> String {
    let quoted = serde_json::to_string(value).unwrap_or_default();
    let body = &quoted[1..quoted.len().saturating_sub(1).max(1)];
    if !ascii {
        return body.to_string();
    }
    let mut s = String::with_capacity(body.len());
    for c in body.chars() {
        if (c as u32) < 0x80 {
            s.push(c);
        } else {
            let mut buf = [0u16; 2];
            for unit in c.encode_utf16(&mut buf) {
                s.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    s
}

/// `value` HTML-escaped: `&`, `<`, `>` always, quotes as given (`None`: kept).
fn html(value: &str, dq: Option<&str>, sq: Option<&str>) -> String {
    let mut s = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => s.push_str("&amp;"),
            '<' => s.push_str("&lt;"),
            '>' => s.push_str("&gt;"),
            '"' if dq.is_some() => s.push_str(dq.unwrap_or_default()),
            '\'' if sq.is_some() => s.push_str(sq.unwrap_or_default()),
            c => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const V: &str = "pa\"ss'w\\\nörd✓<&>";

    fn masker() -> Masker {
        Masker::new([("DB", V), ("TOKEN", "tok-123456")])
    }

    #[test]
    fn masks_the_value_and_its_encoded_forms() {
        let m = masker();
        assert_eq!(m.mask(&format!("x{V}y")), "x***y");
        // Python repr (single- and double-quoted), ascii(), json.dumps (both), html.escape.
        let samples = [
            r#"'pa"ss\'w\\\nörd✓<&>'"#,
            r#"'pa"ss\'w\\\n\xf6rd\u2713<&>'"#,
            r#""pa\"ss'w\\\nörd✓<&>""#,
            r#""pa\"ss'w\\\n\u00f6rd\u2713<&>""#,
            "pa&quot;ss&#x27;w\\\nörd✓&lt;&amp;&gt;",
            "pa&#34;ss&#39;w\\\nörd✓&lt;&amp;&gt;",
        ];
        for s in samples {
            let masked = m.mask(&format!("value: {s}!"));
            assert!(
                !masked.contains("rd✓") && !masked.contains("u2713"),
                "{s} → {masked}"
            );
            assert!(masked.contains("***"), "{s} → {masked}");
        }
        assert_eq!(m.mask("nothing here"), "nothing here");
    }

    #[test]
    fn masks_each_line_of_a_multi_line_value() {
        let m = Masker::new([("K", "first-line\nsecond-line\nab")]);
        assert_eq!(
            m.mask("| first-line |\n| second-line |"),
            "| *** |\n| *** |"
        );
        // Short lines alone are left (they would mask unrelated text).
        assert_eq!(m.mask("ab"), "ab");
    }

    #[test]
    fn short_values_are_not_masked_and_are_reported() {
        let m = Masker::new([("PIN", "123"), ("EMPTY", "")]);
        assert!(!m.is_active());
        assert_eq!(m.too_short(), ["PIN".to_string()]);
        assert_eq!(m.mask("123"), "123");
    }

    #[test]
    fn masks_every_string_of_a_json_value() {
        let m = masker();
        let mut v = json!({"data": {"text/plain": ["a", "tok-123456"], "text/html": "<b>tok-123456</b>"},
                          "tok-123456": 1, "n": 3});
        m.mask_value(&mut v);
        assert_eq!(
            v,
            json!({"data": {"text/plain": ["a", "***"], "text/html": "<b>***</b>"}, "***": 1, "n": 3})
        );
    }

    #[test]
    fn stream_holds_back_a_possible_start_of_a_value() {
        let m = masker();
        let (now, hold) = m.mask_stream("hello tok-1");
        assert_eq!((now.as_str(), hold), ("hello ", 6));
        let (now, hold) = m.mask_stream("tok-123456 and more\n");
        assert_eq!((now.as_str(), hold), ("*** and more\n", 20));
        // A tail that cannot start a value is recorded at once.
        let (now, hold) = m.mask_stream("plain text\n");
        assert_eq!((now.as_str(), hold), ("plain text\n", 11));
        // Multi-byte characters: the hold starts on a character boundary.
        let (now, hold) = m.mask_stream("✓✓tok-12");
        assert_eq!((now.as_str(), hold), ("✓✓", "✓✓".len()));
        // A multi-line value: its first line alone is masked as soon as it is complete.
        let (now, hold) = m.mask_stream("pa\"ss'w\\\nö");
        assert_eq!((now.as_str(), hold), ("***\n", 9));
    }

    #[test]
    fn debug_never_shows_a_value() {
        let shown = format!("{:?}", masker());
        assert!(
            !shown.contains("tok-123456") && !shown.contains("pa"),
            "{shown}"
        );
    }

    #[test]
    fn an_empty_masker_changes_nothing() {
        let m = Masker::default();
        assert_eq!(m.mask("anything"), "anything");
        assert_eq!(m.mask_stream("abc"), ("abc".to_string(), 3));
    }
}
