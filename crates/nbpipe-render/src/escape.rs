//! HTML escaping. Every string that comes from a notebook passes through here (or through the
//! markdown sanitizer) before it reaches the page; nothing else in this crate writes notebook
//! text into HTML.

/// Append `text` to `out` with `&`, `<`, `>`, `"` and `'` escaped, so the result is safe both
/// as element content and inside a double- or single-quoted attribute value.
pub(crate) fn push_escaped(out: &mut String, text: &str) {
    let mut last = 0;
    for (i, b) in text.bytes().enumerate() {
        let rep = match b {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&#39;",
            _ => continue,
        };
        out.push_str(&text[last..i]);
        out.push_str(rep);
        last = i + 1;
    }
    out.push_str(&text[last..]);
}

/// `text` escaped for HTML content or a quoted attribute value.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    push_escaped(&mut out, text);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape(r#"<script>alert("x&y")</script> 'q'"#),
            "&lt;script&gt;alert(&quot;x&amp;y&quot;)&lt;/script&gt; &#39;q&#39;"
        );
    }

    #[test]
    fn keeps_plain_and_non_ascii_text() {
        assert_eq!(escape("naïve café ✓"), "naïve café ✓");
        assert_eq!(escape(""), "");
    }
}
