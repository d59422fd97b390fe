//! String literal rendering per language.
//!
//! papermill renders strings for every language except bash with Python's
//! `str.encode('unicode_escape')` plus a language-specific quote escape. That
//! is exact for Python, but several target languages read those escapes
//! differently (or not at all), so a string would silently change or even
//! execute. For each language we keep papermill's bytes for "ordinary"
//! strings (printable ASCII; plus `\t`/`\n`/`\r` and backslashes where the
//! language understands them) and switch to an escape that the language
//! really decodes to the same characters otherwise. Each deviation is
//! documented on its function.

use crate::{Language, ParamError};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Push `prefix` followed by `width` lowercase hex digits of `v`.
fn push_hex(out: &mut String, prefix: &str, v: u32, width: u32) {
    out.push_str(prefix);
    for i in (0..width).rev() {
        out.push(HEX[((v >> (i * 4)) & 0xf) as usize] as char);
    }
}

/// Python's `unicode_escape` for one character that is not printable ASCII
/// and not a backslash: `\t`, `\n`, `\r`, `\xNN` below U+0100, `\uNNNN` in the
/// BMP and `\UNNNNNNNN` above.
fn push_unicode_escape(out: &mut String, c: char) {
    let cp = c as u32;
    match c {
        '\t' => out.push_str("\\t"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        _ if cp < 0x100 => push_hex(out, "\\x", cp, 2),
        _ if cp < 0x10000 => push_hex(out, "\\u", cp, 4),
        _ => push_hex(out, "\\U", cp, 8),
    }
}

fn is_printable_ascii(c: char) -> bool {
    (' '..='~').contains(&c)
}

/// papermill's `Translator.translate_escaped_str`, byte for byte:
/// `"` + unicode_escape(s) with `"` → `\"` + `"`. Used for Python and F#
/// (F# decodes `\\`, `\"`, `\t`, `\n`, `\r`, two-digit `\xNN`, `\uNNNN` and
/// `\UNNNNNNNN` exactly like Python).
pub(crate) fn python(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            _ if is_printable_ascii(c) => out.push(c),
            _ => push_unicode_escape(out, c),
        }
    }
    out.push('"');
}

/// R: papermill's format, except that non-ASCII characters use `\uNNNN` /
/// `\UNNNNNNNN` (R's `\xNN` is a raw byte, so papermill's `\xe9` would not be
/// `é`), and when such escapes are present, control characters use `\u00NN`
/// too (R rejects strings mixing `\x` and `\u` escapes). R strings cannot hold
/// NUL at all, which is an error.
pub(crate) fn r(out: &mut String, s: &str) -> Result<(), ParamError> {
    if s.contains('\0') {
        return Err(ParamError::Unrepresentable {
            language: Language::R,
            message: format!("R strings cannot contain NUL characters: {s:?}"),
        });
    }
    let has_non_ascii = !s.is_ascii();
    out.push('"');
    for c in s.chars() {
        let cp = c as u32;
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\t' | '\n' | '\r' => push_unicode_escape(out, c),
            _ if is_printable_ascii(c) => out.push(c),
            _ if cp < 0x80 && !has_non_ascii => push_hex(out, "\\x", cp, 2),
            _ if cp < 0x10000 => push_hex(out, "\\u", cp, 4),
            _ => push_hex(out, "\\U", cp, 8),
        }
    }
    out.push('"');
    Ok(())
}

/// Julia: papermill's format, except `$` is escaped as `\$` (it would start
/// string interpolation, i.e. run code) and U+0080–U+00FF use `\u00NN`
/// (Julia's `\xNN` is a raw byte there).
pub(crate) fn julia(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        let cp = c as u32;
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '$' => out.push_str("\\$"),
            _ if is_printable_ascii(c) => out.push(c),
            _ if (0x80..0x100).contains(&cp) => push_hex(out, "\\u", cp, 4),
            _ => push_unicode_escape(out, c),
        }
    }
    out.push('"');
}

/// Scala: papermill's format for printable ASCII, `\\`, `\"`, `\t`, `\n`, `\r`;
/// everything else as `\uNNNN` UTF-16 code units (Scala has no `\x` or `\U`
/// escapes, so papermill's output would not compile).
pub(crate) fn scala(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\t' | '\n' | '\r' => push_unicode_escape(out, c),
            _ if is_printable_ascii(c) => out.push(c),
            _ => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    push_hex(out, "\\u", *unit as u32, 4);
                }
            }
        }
    }
    out.push('"');
}

/// C#: papermill's format for printable ASCII, `\\`, `\"`, `\t`, `\n`, `\r`;
/// everything else as `\uNNNN` / `\UNNNNNNNN` (C#'s `\x` takes up to four hex
/// digits, so papermill's `\x01` followed by `a` would be U+001A).
pub(crate) fn csharp(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        let cp = c as u32;
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\t' | '\n' | '\r' => push_unicode_escape(out, c),
            _ if is_printable_ascii(c) => out.push(c),
            _ if cp < 0x10000 => push_hex(out, "\\u", cp, 4),
            _ => push_hex(out, "\\U", cp, 8),
        }
    }
    out.push('"');
}

/// MATLAB string (`"..."`, quotes doubled) or char array (`'...'`, quotes
/// doubled). MATLAB literals have no backslash escapes, so papermill's
/// unicode_escape output is wrong for any string with a backslash, control or
/// non-ASCII character. We write backslashes literally and every character
/// outside printable ASCII with `char(N)` (UTF-16 code units), joined to the
/// literal pieces: `("a" + char(10) + "b")` for strings, `['a' char(10) 'b']`
/// for char arrays. Printable-ASCII strings without backslashes are rendered
/// exactly as papermill does.
pub(crate) fn matlab(out: &mut String, s: &str, char_array: bool) {
    let q = if char_array { '\'' } else { '"' };
    if s.chars().all(is_printable_ascii) {
        out.push(q);
        for c in s.chars() {
            if c == q {
                out.push(q);
            }
            out.push(c);
        }
        out.push(q);
        return;
    }
    let sep = if char_array { " " } else { " + " };
    out.push(if char_array { '[' } else { '(' });
    let mut first = true;
    let mut chars = s.chars().peekable();
    if !char_array && !chars.peek().copied().is_some_and(is_printable_ascii) {
        // Start with a string so `+` concatenates into a string.
        out.push_str("\"\"");
        first = false;
    }
    while let Some(&c) = chars.peek() {
        if !first {
            out.push_str(sep);
        }
        first = false;
        if is_printable_ascii(c) {
            out.push(q);
            while let Some(&c) = chars.peek() {
                if !is_printable_ascii(c) {
                    break;
                }
                if c == q {
                    out.push(q);
                }
                out.push(c);
                chars.next();
            }
            out.push(q);
        } else {
            let mut units = Vec::new();
            while let Some(&c) = chars.peek() {
                if is_printable_ascii(c) {
                    break;
                }
                let mut buf = [0u16; 2];
                units.extend_from_slice(c.encode_utf16(&mut buf));
                chars.next();
            }
            out.push_str("char(");
            if units.len() > 1 {
                out.push('[');
            }
            for (i, u) in units.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(&u.to_string());
            }
            if units.len() > 1 {
                out.push(']');
            }
            out.push(')');
        }
    }
    out.push(if char_array { ']' } else { ')' });
}

/// PowerShell double-quoted string. papermill escapes only `"` (as `` `" ``)
/// after Python's unicode_escape, but PowerShell's escape character is the
/// backtick and it expands `$name` and `$(...)` inside double quotes, so
/// papermill's output can run code. We keep the double quotes and `` `" ``
/// and escape `` ` ``, `$` and the typographic double quotes (which PowerShell
/// also treats as quotes) with a backtick; backslashes and other characters
/// are written literally; control characters use PowerShell's escapes
/// (`` `0 `` `` `a `` `` `b `` `` `f `` `` `n `` `` `r `` `` `t `` `` `v ``) or
/// `$([char]0xNN)` for the rest (and for C1 controls, U+2028 and U+2029).
pub(crate) fn powershell(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        let cp = c as u32;
        match c {
            '`' | '"' | '$' | '\u{201c}' | '\u{201d}' | '\u{201e}' => {
                out.push('`');
                out.push(c);
            }
            '\0' => out.push_str("`0"),
            '\x07' => out.push_str("`a"),
            '\x08' => out.push_str("`b"),
            '\x0c' => out.push_str("`f"),
            '\n' => out.push_str("`n"),
            '\r' => out.push_str("`r"),
            '\t' => out.push_str("`t"),
            '\x0b' => out.push_str("`v"),
            _ if cp < 0x20 || (0x7f..0xa0).contains(&cp) || cp == 0x2028 || cp == 0x2029 => {
                push_hex(out, "$([char]0x", cp, if cp < 0x100 { 2 } else { 4 });
                out.push(')');
            }
            _ => out.push(c),
        }
    }
    out.push('"');
}

/// Python's `shlex.quote` (papermill's bash translator): unchanged when
/// non-empty and made only of ASCII letters, digits and `_@%+=:,./-`;
/// otherwise single-quoted with `'` written as `'"'"'`. Bash variables cannot
/// hold NUL, which is an error.
///
/// One deliberate difference from papermill: bash_kernel types the cell into an
/// interactive bash through a terminal, where line-editing keys act even inside
/// quotes (`^U` erases the line so the rest of the value runs as a command, `^S`
/// freezes the kernel, a tab completes) and it splits the cell at every line break
/// Python's `splitlines` knows. A value containing any such character is written
/// in ANSI-C quoting instead, `$'...'`, with those characters as `\xNN` bytes, so
/// the terminal only ever sees printable characters.
pub(crate) fn bash(out: &mut String, s: &str) -> Result<(), ParamError> {
    if s.contains('\0') {
        return Err(ParamError::Unrepresentable {
            language: Language::Bash,
            message: format!("bash values cannot contain NUL characters: {s:?}"),
        });
    }
    let safe = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        out.push_str(s);
        return Ok(());
    }
    if s.chars().any(terminal_unsafe) {
        out.push_str("$'");
        for c in s.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\'' => out.push_str("\\'"),
                '\n' => out.push_str("\\n"),
                c if terminal_unsafe(c) => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("\\x{b:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('\'');
        return Ok(());
    }
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\"'\"'");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    Ok(())
}

/// Characters an interactive terminal or bash_kernel's line splitting would act on:
/// C0 controls but `\n`, DEL, C1 controls, and the Unicode line/paragraph separators.
fn terminal_unsafe(c: char) -> bool {
    let cp = c as u32;
    (cp < 0x20 && c != '\n') || (0x7f..0xa0).contains(&cp) || cp == 0x2028 || cp == 0x2029
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(f: fn(&mut String, &str), s: &str) -> String {
        let mut out = String::new();
        f(&mut out, s);
        out
    }

    /// Expected values from papermill's `PythonTranslator.translate_str`.
    #[test]
    fn python_matches_papermill() {
        let cases = [
            ("hello", r#""hello""#),
            ("say \"hi\"", r#""say \"hi\"""#),
            ("back\\slash", r#""back\\slash""#),
            ("\\\"", r#""\\\"""#),
            ("it's", r#""it's""#),
            ("t\tn\nr\r", r#""t\tn\nr\r""#),
            ("\0\x01\x1f\x7f", r#""\x00\x01\x1f\x7f""#),
            ("\u{80}é\u{ff}", r#""\x80\xe9\xff""#),
            ("\u{100}\u{2028}\u{fffd}", r#""\u0100\u2028\ufffd""#),
            ("😀\u{10ffff}", r#""\U0001f600\U0010ffff""#),
            ("", r#""""#),
            ("{x} $y `z` %s", r#""{x} $y `z` %s""#),
        ];
        for (input, want) in cases {
            assert_eq!(run(python, input), want, "{input:?}");
        }
    }

    #[test]
    fn other_languages() {
        assert_eq!(
            run(julia, "a$b é \x01 😀"),
            r#""a\$b \u00e9 \x01 \U0001f600""#
        );
        assert_eq!(
            run(scala, "é\x01😀\n\"\\"),
            r#""\u00e9\u0001\ud83d\ude00\n\"\\""#
        );
        assert_eq!(
            run(csharp, "\x01a é😀\t"),
            r#""\u0001a \u00e9\U0001f600\t""#
        );
        assert_eq!(run(powershell, "say \"hi\""), "\"say `\"hi`\"\"");
        assert_eq!(
            run(powershell, "$(rm x) `n \\ é\n\0\x1b\u{201c}"),
            "\"`$(rm x) ``n \\ é`n`0$([char]0x1b)`\u{201c}\""
        );
        let mut out = String::new();
        r(&mut out, "a\x01\"\\").unwrap();
        assert_eq!(out, r#""a\x01\"\\""#);
        out.clear();
        r(&mut out, "é\x01😀").unwrap();
        assert_eq!(out, r#""\u00e9\u0001\U0001f600""#);
        assert!(r(&mut out, "a\0").is_err());
    }

    #[test]
    fn matlab_forms() {
        let m = |s: &str, ca: bool| {
            let mut out = String::new();
            matlab(&mut out, s, ca);
            out
        };
        assert_eq!(m("say \"hi\" it's", false), "\"say \"\"hi\"\" it's\"");
        assert_eq!(m("it's", true), "'it''s'");
        assert_eq!(m("C:\\dir", false), "\"C:\\dir\"");
        assert_eq!(m("a\nb", false), "(\"a\" + char(10) + \"b\")");
        assert_eq!(m("\né😀", false), "(\"\" + char([10 233 55357 56832]))");
        assert_eq!(m("a\nb'", true), "['a' char(10) 'b''']");
        assert_eq!(m("\t", true), "[char(9)]");
    }

    /// Expected values from Python's `shlex.quote`.
    #[test]
    fn bash_matches_shlex() {
        let q = |s: &str| {
            let mut out = String::new();
            bash(&mut out, s).unwrap();
            out
        };
        assert_eq!(q(""), "''");
        assert_eq!(q("abc_@%+=:,./-1"), "abc_@%+=:,./-1");
        assert_eq!(q("hello world"), "'hello world'");
        assert_eq!(q("it's"), "'it'\"'\"'s'");
        assert_eq!(q("é"), "'é'");
        assert_eq!(q("$(x)\n"), "'$(x)\n'");
        // Terminal control characters switch to ANSI-C quoting with byte escapes.
        assert_eq!(q("x\u{15} touch PWNED #"), "$'x\\x15 touch PWNED #'");
        assert_eq!(
            q("a\tb'c\\\n\u{2028}é"),
            "$'a\\x09b\\'c\\\\\\n\\xe2\\x80\\xa8é'"
        );
        let mut out = String::new();
        assert!(bash(&mut out, "\0").is_err());
    }
}
