//! Test-only models of each target language's string-literal semantics, used
//! to check that every rendered string decodes back to the original.

use proptest::prelude::*;

use super::*;

type Chars<'a> = std::iter::Peekable<std::str::Chars<'a>>;

fn hex(it: &mut Chars<'_>, min: usize, max: usize) -> Option<u32> {
    let mut v = 0u32;
    let mut n = 0;
    while n < max {
        match it.peek().and_then(|c| c.to_digit(16)) {
            Some(d) => {
                v = v * 16 + d;
                n += 1;
                it.next();
            }
            None => break,
        }
    }
    (n >= min).then_some(v)
}

fn utf16_push(units: &mut Vec<u16>, c: char) {
    let mut b = [0u16; 2];
    units.extend_from_slice(c.encode_utf16(&mut b));
}

/// Python (and F#) `"..."` literals.
pub(super) fn python(lit: &str) -> Option<String> {
    let mut it = lit.strip_prefix('"')?.strip_suffix('"')?.chars().peekable();
    let mut out = String::new();
    while let Some(c) = it.next() {
        match c {
            '"' => return None,
            '\\' => match it.next()? {
                '\\' => out.push('\\'),
                '"' => out.push('"'),
                't' => out.push('\t'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                'x' => out.push(char::from_u32(hex(&mut it, 2, 2)?)?),
                'u' => out.push(char::from_u32(hex(&mut it, 4, 4)?)?),
                'U' => out.push(char::from_u32(hex(&mut it, 8, 8)?)?),
                _ => return None,
            },
            c if (c as u32) < 0x20 => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// R: `\x` is a byte (here: only ASCII is a valid character), `\u`/`\U` take
/// up to 4/8 hex digits, mixing `\x` and `\u` is an error, NUL is an error.
pub(super) fn r(lit: &str) -> Option<String> {
    let mut it = lit.strip_prefix('"')?.strip_suffix('"')?.chars().peekable();
    let mut out = String::new();
    let (mut saw_x, mut saw_u) = (false, false);
    while let Some(c) = it.next() {
        match c {
            '"' => return None,
            '\\' => match it.next()? {
                '\\' => out.push('\\'),
                '"' => out.push('"'),
                't' => out.push('\t'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                'x' => {
                    saw_x = true;
                    let v = hex(&mut it, 1, 2)?;
                    if v == 0 || v >= 0x80 {
                        return None;
                    }
                    out.push(char::from_u32(v)?);
                }
                'u' => {
                    saw_u = true;
                    out.push(char::from_u32(hex(&mut it, 1, 4)?).filter(|&c| c != '\0')?);
                }
                'U' => {
                    saw_u = true;
                    out.push(char::from_u32(hex(&mut it, 1, 8)?).filter(|&c| c != '\0')?);
                }
                _ => return None,
            },
            c => out.push(c),
        }
    }
    (!(saw_x && saw_u)).then_some(out)
}

/// Julia: `$` interpolates, `\x` is a byte (valid only below 0x80).
pub(super) fn julia(lit: &str) -> Option<String> {
    let mut it = lit.strip_prefix('"')?.strip_suffix('"')?.chars().peekable();
    let mut out = String::new();
    while let Some(c) = it.next() {
        match c {
            '"' | '$' => return None,
            '\\' => match it.next()? {
                '\\' => out.push('\\'),
                '"' => out.push('"'),
                '$' => out.push('$'),
                't' => out.push('\t'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                'x' => out.push(char::from_u32(hex(&mut it, 1, 2)?).filter(|c| c.is_ascii())?),
                'u' => out.push(char::from_u32(hex(&mut it, 1, 4)?)?),
                'U' => out.push(char::from_u32(hex(&mut it, 1, 8)?)?),
                _ => return None,
            },
            c => out.push(c),
        }
    }
    Some(out)
}

/// Scala: `\uXXXX` UTF-16 units, no `\x`/`\U`; raw line breaks are errors.
pub(super) fn scala(lit: &str) -> Option<String> {
    let mut it = lit.strip_prefix('"')?.strip_suffix('"')?.chars().peekable();
    let mut units = Vec::new();
    while let Some(c) = it.next() {
        match c {
            '"' | '\n' | '\r' => return None,
            '\\' => match it.next()? {
                '\\' => units.push(b'\\' as u16),
                '"' => units.push(b'"' as u16),
                't' => units.push(b'\t' as u16),
                'n' => units.push(b'\n' as u16),
                'r' => units.push(b'\r' as u16),
                'u' => units.push(hex(&mut it, 4, 4)? as u16),
                _ => return None,
            },
            c => utf16_push(&mut units, c),
        }
    }
    String::from_utf16(&units).ok()
}

/// C#: `\x` takes 1–4 hex digits, `\u` 4, `\U` 8.
pub(super) fn csharp(lit: &str) -> Option<String> {
    let mut it = lit.strip_prefix('"')?.strip_suffix('"')?.chars().peekable();
    let mut units = Vec::new();
    while let Some(c) = it.next() {
        match c {
            '"' | '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}' => return None,
            '\\' => match it.next()? {
                '\\' => units.push(b'\\' as u16),
                '"' => units.push(b'"' as u16),
                't' => units.push(b'\t' as u16),
                'n' => units.push(b'\n' as u16),
                'r' => units.push(b'\r' as u16),
                'x' => units.push(hex(&mut it, 1, 4)? as u16),
                'u' => units.push(hex(&mut it, 4, 4)? as u16),
                'U' => utf16_push(&mut units, char::from_u32(hex(&mut it, 8, 8)?)?),
                _ => return None,
            },
            c => utf16_push(&mut units, c),
        }
    }
    String::from_utf16(&units).ok()
}

/// PowerShell double-quoted strings: backtick escapes, `$` expansion (only
/// our `$([char]0xNN)` form is accepted), typographic quotes end the string.
pub(super) fn powershell(lit: &str) -> Option<String> {
    let mut it = lit.strip_prefix('"')?.strip_suffix('"')?.chars().peekable();
    let mut out = String::new();
    while let Some(c) = it.next() {
        match c {
            '"' | '\u{201c}' | '\u{201d}' | '\u{201e}' => return None,
            '`' => match it.next()? {
                '0' => out.push('\0'),
                'a' => out.push('\x07'),
                'b' => out.push('\x08'),
                'f' => out.push('\x0c'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'v' => out.push('\x0b'),
                'e' | 'u' => return None,
                c => out.push(c),
            },
            '$' => {
                for expect in "([char]0x".chars() {
                    if it.next()? != expect {
                        return None;
                    }
                }
                out.push(char::from_u32(hex(&mut it, 1, 8)?)?);
                if it.next()? != ')' {
                    return None;
                }
            }
            c => out.push(c),
        }
    }
    Some(out)
}

/// MATLAB: `"..."`, `'...'` (quotes doubled, no escapes) and `char(N)` /
/// `char([N M])` pieces concatenated inside `( + )` or `[ ]`.
pub(super) fn matlab(lit: &str) -> Option<String> {
    fn quoted(it: &mut Chars<'_>, q: char, units: &mut Vec<u16>) -> Option<()> {
        loop {
            let c = it.next()?;
            if c == q {
                if it.peek() == Some(&q) {
                    it.next();
                    units.push(q as u16);
                } else {
                    return Some(());
                }
            } else if !(' '..='~').contains(&c) {
                return None;
            } else {
                utf16_push(units, c);
            }
        }
    }
    let mut units = Vec::new();
    let mut it = lit.chars().peekable();
    match it.next()? {
        q @ ('"' | '\'') => {
            quoted(&mut it, q, &mut units)?;
            return it
                .next()
                .is_none()
                .then(|| String::from_utf16(&units).ok())?;
        }
        '(' | '[' => {}
        _ => return None,
    }
    loop {
        while matches!(it.peek(), Some(' ' | '+')) {
            it.next();
        }
        match it.next()? {
            q @ ('"' | '\'') => quoted(&mut it, q, &mut units)?,
            'c' => {
                for expect in "har(".chars() {
                    if it.next()? != expect {
                        return None;
                    }
                }
                let mut body = String::new();
                loop {
                    match it.next()? {
                        ')' => break,
                        c => body.push(c),
                    }
                }
                let body = body.trim_start_matches('[').trim_end_matches(']');
                for n in body.split(' ') {
                    units.push(n.parse().ok()?);
                }
            }
            ')' | ']' => {
                return it
                    .next()
                    .is_none()
                    .then(|| String::from_utf16(&units).ok())?
            }
            _ => return None,
        }
    }
}

/// POSIX shell word (what `shlex.quote` produces), or bash's ANSI-C quoting `$'...'`
/// with the escapes nbpipe emits (`\\`, `\'`, `\n`, `\xHH` bytes).
pub(super) fn bash(lit: &str) -> Option<String> {
    if let Some(body) = lit.strip_prefix("$'").and_then(|b| b.strip_suffix('\'')) {
        let mut bytes = Vec::new();
        let mut it = body.chars();
        while let Some(c) = it.next() {
            match c {
                '\\' => match it.next()? {
                    '\\' => bytes.push(b'\\'),
                    '\'' => bytes.push(b'\''),
                    'n' => bytes.push(b'\n'),
                    'x' => {
                        let hex: String = [it.next()?, it.next()?].iter().collect();
                        bytes.push(u8::from_str_radix(&hex, 16).ok()?);
                    }
                    _ => return None,
                },
                '\'' => return None,
                c => bytes.extend(c.to_string().as_bytes()),
            }
        }
        return String::from_utf8(bytes).ok();
    }
    let mut it = lit.chars().peekable();
    let mut out = String::new();
    while let Some(c) = it.next() {
        match c {
            '\'' => loop {
                match it.next()? {
                    '\'' => break,
                    c => out.push(c),
                }
            },
            '"' => loop {
                match it.next()? {
                    '"' => break,
                    '$' | '`' | '\\' => return None,
                    c => out.push(c),
                }
            },
            c if c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c) => out.push(c),
            _ => return None,
        }
    }
    Some(out)
}

/// Decode a rendered string literal of `lang`.
pub(super) fn decode(lang: Language, lit: &str) -> Option<String> {
    match lang {
        Language::Python | Language::FSharp => python(lit),
        Language::R => r(lit),
        Language::Julia => julia(lit),
        Language::Scala => scala(lit),
        Language::CSharp => csharp(lit),
        Language::PowerShell => powershell(lit),
        Language::Matlab => matlab(lit),
        Language::Bash => bash(lit),
    }
}

/// papermill's rule, written independently: `unicode_escape`, then `"` → `\"`.
fn papermill_python(s: &str) -> String {
    let mut esc = String::new();
    for c in s.chars() {
        let cp = c as u32;
        match c {
            '\\' => esc.push_str("\\\\"),
            '\t' => esc.push_str("\\t"),
            '\n' => esc.push_str("\\n"),
            '\r' => esc.push_str("\\r"),
            _ if cp < 0x20 || (0x7f..0x100).contains(&cp) => esc.push_str(&format!("\\x{cp:02x}")),
            _ if cp < 0x7f => esc.push(c),
            _ if cp < 0x10000 => esc.push_str(&format!("\\u{cp:04x}")),
            _ => esc.push_str(&format!("\\U{cp:08x}")),
        }
    }
    format!("\"{}\"", esc.replace('"', "\\\""))
}

fn tricky_string() -> impl Strategy<Value = String> {
    let special = prop_oneof![
        Just('"'),
        Just('\''),
        Just('\\'),
        Just('$'),
        Just('`'),
        Just('\0'),
        Just('\n'),
        Just('\r'),
        Just('\t'),
        Just('\u{7f}'),
        Just('\u{85}'),
        Just('\u{e9}'),
        Just('\u{2028}'),
        Just('\u{201c}'),
        Just('\u{1f600}'),
        Just('{'),
        Just('('),
        Just('*'),
        Just('a'),
        Just('0'),
        Just('x'),
        Just('u'),
    ];
    let ch = prop_oneof![3 => special, 1 => any::<char>()];
    proptest::collection::vec(ch, 0..24).prop_map(|v| v.into_iter().collect())
}

proptest! {
    #[test]
    fn python_rendering_is_papermills(s in any::<String>()) {
        let got = translate_value(Language::Python, &Value::Str(s.clone())).unwrap();
        prop_assert_eq!(got, papermill_python(&s));
    }

    #[test]
    fn python_rendering_is_papermills_tricky(s in tricky_string()) {
        let got = translate_value(Language::Python, &Value::Str(s.clone())).unwrap();
        prop_assert_eq!(got, papermill_python(&s));
    }

    #[test]
    fn strings_round_trip_in_every_language(s in tricky_string()) {
        for lang in Language::ALL {
            let rendered = match translate_value(lang, &Value::Str(s.clone())) {
                Ok(r) => r,
                Err(_) => {
                    prop_assert!(s.contains('\0') && matches!(lang, Language::R | Language::Bash));
                    continue;
                }
            };
            prop_assert_eq!(decode(lang, &rendered), Some(s.clone()), "{:?} {}", lang, rendered);
            // Dict keys use the same literal (MATLAB: char arrays).
            let d = Value::Dict(vec![(s.clone(), Value::Bool(true))]);
            if let Ok(r) = translate_value(lang, &d) {
                if lang == Language::Matlab {
                    let key = r.strip_prefix("containers.Map({").unwrap().strip_suffix("}, {true})").unwrap();
                    prop_assert_eq!(decode(lang, key), Some(s.clone()), "{}", r);
                }
            }
        }
    }

    #[test]
    fn ordinary_strings_match_papermill(s in "[ -~]{0,20}") {
        // Printable ASCII without backslash/`$`/backtick renders as papermill
        // does in every language except bash (shlex) and MATLAB/PowerShell
        // (their own quote doubling/escaping, checked in the snapshots).
        prop_assume!(!s.contains(['\\', '$', '`']));
        let want = papermill_python(&s);
        for lang in [Language::Python, Language::R, Language::Julia, Language::Scala, Language::CSharp, Language::FSharp] {
            prop_assert_eq!(translate_value(lang, &Value::Str(s.clone())).unwrap(), want.clone());
        }
    }
}
