//! Parameter-name validation. papermill pastes names into code unchecked, so
//! a name like `x = 1\nimport os; os.system(...)  #` would run code. We only
//! accept names that are a single plain identifier in the target language.

use unicode_ident::{is_xid_continue, is_xid_start};

use crate::{Language, ParamError};

const PYTHON_KEYWORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield",
];

const R_RESERVED: &[&str] = &[
    "if",
    "else",
    "repeat",
    "while",
    "function",
    "for",
    "next",
    "break",
    "TRUE",
    "FALSE",
    "NULL",
    "Inf",
    "NaN",
    "NA",
    "NA_integer_",
    "NA_real_",
    "NA_character_",
    "NA_complex_",
    "in",
];

const JULIA_KEYWORDS: &[&str] = &[
    "baremodule",
    "begin",
    "break",
    "catch",
    "const",
    "continue",
    "do",
    "else",
    "elseif",
    "end",
    "export",
    "false",
    "finally",
    "for",
    "function",
    "global",
    "if",
    "import",
    "let",
    "local",
    "macro",
    "module",
    "quote",
    "return",
    "struct",
    "true",
    "try",
    "using",
    "while",
    "where",
    "in",
    "isa",
    "public",
    "outer",
];

const SCALA_KEYWORDS: &[&str] = &[
    "abstract",
    "case",
    "catch",
    "class",
    "def",
    "do",
    "else",
    "extends",
    "false",
    "final",
    "finally",
    "for",
    "forSome",
    "if",
    "implicit",
    "import",
    "lazy",
    "macro",
    "match",
    "new",
    "null",
    "object",
    "override",
    "package",
    "private",
    "protected",
    "return",
    "sealed",
    "super",
    "this",
    "throw",
    "trait",
    "try",
    "true",
    "type",
    "val",
    "var",
    "while",
    "with",
    "yield",
    "enum",
    "export",
    "given",
    "then",
    "_",
];

const MATLAB_KEYWORDS: &[&str] = &[
    "break",
    "case",
    "catch",
    "classdef",
    "continue",
    "else",
    "elseif",
    "end",
    "for",
    "function",
    "global",
    "if",
    "otherwise",
    "parfor",
    "persistent",
    "return",
    "spmd",
    "switch",
    "try",
    "while",
];

const CSHARP_KEYWORDS: &[&str] = &[
    "abstract",
    "as",
    "base",
    "bool",
    "break",
    "byte",
    "case",
    "catch",
    "char",
    "checked",
    "class",
    "const",
    "continue",
    "decimal",
    "default",
    "delegate",
    "do",
    "double",
    "else",
    "enum",
    "event",
    "explicit",
    "extern",
    "false",
    "finally",
    "fixed",
    "float",
    "for",
    "foreach",
    "goto",
    "if",
    "implicit",
    "in",
    "int",
    "interface",
    "internal",
    "is",
    "lock",
    "long",
    "namespace",
    "new",
    "null",
    "object",
    "operator",
    "out",
    "override",
    "params",
    "private",
    "protected",
    "public",
    "readonly",
    "ref",
    "return",
    "sbyte",
    "sealed",
    "short",
    "sizeof",
    "stackalloc",
    "static",
    "string",
    "struct",
    "switch",
    "this",
    "throw",
    "true",
    "try",
    "typeof",
    "uint",
    "ulong",
    "unchecked",
    "unsafe",
    "ushort",
    "using",
    "virtual",
    "void",
    "volatile",
    "while",
];

const FSHARP_KEYWORDS: &[&str] = &[
    "abstract",
    "and",
    "as",
    "assert",
    "base",
    "begin",
    "class",
    "default",
    "delegate",
    "do",
    "done",
    "downcast",
    "downto",
    "elif",
    "else",
    "end",
    "exception",
    "extern",
    "false",
    "finally",
    "fixed",
    "for",
    "fun",
    "function",
    "global",
    "if",
    "in",
    "inherit",
    "inline",
    "interface",
    "internal",
    "lazy",
    "let",
    "match",
    "member",
    "module",
    "mutable",
    "namespace",
    "new",
    "not",
    "null",
    "of",
    "open",
    "or",
    "override",
    "private",
    "public",
    "rec",
    "return",
    "select",
    "sig",
    "static",
    "struct",
    "then",
    "to",
    "true",
    "try",
    "type",
    "upcast",
    "use",
    "val",
    "void",
    "when",
    "while",
    "with",
    "yield",
    "const",
    "asr",
    "land",
    "lor",
    "lsl",
    "lsr",
    "lxor",
    "mod",
    "break",
    "checked",
    "component",
    "constraint",
    "continue",
    "event",
    "external",
    "include",
    "mixin",
    "parallel",
    "process",
    "protected",
    "pure",
    "sealed",
    "tailcall",
    "trait",
    "virtual",
    "_",
];

fn invalid(language: Language, name: &str, reason: impl Into<String>) -> ParamError {
    ParamError::InvalidName {
        language,
        name: name.to_owned(),
        reason: reason.into(),
    }
}

/// `XID_Start | _` followed by `XID_Continue*` (plus `extra` characters).
fn is_identifier(s: &str, extra: &[char]) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if is_xid_start(c) || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| is_xid_continue(c) || extra.contains(&c))
}

/// The name as the language's assignment will use it: R drops leading
/// underscores (papermill's `RTranslator.assign`).
pub(crate) fn effective_name(lang: Language, name: &str) -> &str {
    match lang {
        Language::R => name.trim_start_matches('_'),
        _ => name,
    }
}

/// Check that `name` is a plain identifier of `lang` that is not a reserved
/// word, so that injecting `name = value` cannot change the code's meaning.
///
/// * Python: `str.isidentifier()` and not `keyword.iskeyword()`.
/// * R: after papermill drops leading `_`, a syntactic name (letter or `.` not
///   followed by a digit, then letters, digits, `.`, `_`), not reserved.
/// * Julia, Scala, C#, F#: Unicode identifier (`XID_Start` or `_`, then
///   `XID_Continue`; F# also `'`), not a keyword.
/// * MATLAB: `[A-Za-z][A-Za-z0-9_]*`, at most 63 characters, not a keyword.
/// * bash: `[A-Za-z_][A-Za-z0-9_]*`.
/// * PowerShell: `XID_Continue` characters only (the name follows `$`), not
///   `true`/`false`/`null`.
pub fn validate_name(lang: Language, name: &str) -> Result<(), ParamError> {
    let not_ident = || invalid(lang, name, "not a valid identifier");
    let reserved = || invalid(lang, name, "reserved word");
    match lang {
        Language::Python => {
            if !is_identifier(name, &[]) {
                return Err(not_ident());
            }
            if PYTHON_KEYWORDS.contains(&name) {
                return Err(reserved());
            }
        }
        Language::R => {
            let n = effective_name(lang, name);
            let mut chars = n.chars();
            let ok = match chars.next() {
                Some('.') => {
                    !n[1..].starts_with(|c: char| c.is_ascii_digit())
                        && chars.all(|c| is_xid_continue(c) || c == '.')
                }
                Some(c) if is_xid_start(c) => chars.all(|c| is_xid_continue(c) || c == '.'),
                _ => false,
            };
            if !ok {
                return Err(not_ident());
            }
            let dots_n = n
                .strip_prefix("..")
                .is_some_and(|d| d.chars().all(|c| c.is_ascii_digit()));
            if R_RESERVED.contains(&n) || n == "..." || dots_n {
                return Err(reserved());
            }
        }
        Language::Julia | Language::Scala | Language::CSharp | Language::FSharp => {
            let extra: &[char] = if lang == Language::FSharp {
                &['\'']
            } else {
                &[]
            };
            if !is_identifier(name, extra) {
                return Err(not_ident());
            }
            let kw = match lang {
                Language::Julia => JULIA_KEYWORDS,
                Language::Scala => SCALA_KEYWORDS,
                Language::CSharp => CSHARP_KEYWORDS,
                _ => FSHARP_KEYWORDS,
            };
            if kw.contains(&name) {
                return Err(reserved());
            }
        }
        Language::Matlab => {
            let b = name.as_bytes();
            let ok = b.first().is_some_and(u8::is_ascii_alphabetic)
                && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_');
            if !ok {
                return Err(not_ident());
            }
            if b.len() > 63 {
                return Err(invalid(lang, name, "longer than 63 characters"));
            }
            if MATLAB_KEYWORDS.contains(&name) {
                return Err(reserved());
            }
        }
        Language::Bash => {
            let b = name.as_bytes();
            let ok = b
                .first()
                .is_some_and(|&c| c.is_ascii_alphabetic() || c == b'_')
                && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_');
            if !ok {
                return Err(not_ident());
            }
        }
        Language::PowerShell => {
            if name.is_empty() || !name.chars().all(is_xid_continue) {
                return Err(not_ident());
            }
            if ["true", "false", "null"]
                .iter()
                .any(|k| k.eq_ignore_ascii_case(name))
            {
                return Err(reserved());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use Language::*;

    #[test]
    fn accepts_identifiers() {
        for (lang, name) in [
            (Python, "x"),
            (Python, "_private"),
            (Python, "été"),
            (Python, "match"),
            (Python, "PAPERMILL_INPUT_PATH"),
            (R, "_x"),
            (R, ".hidden"),
            (R, "a.b_c"),
            (Julia, "αβ"),
            (Scala, "myVal"),
            (Matlab, "x_1"),
            (Bash, "_X1"),
            (PowerShell, "1x"),
            (CSharp, "var"),
            (FSharp, "x'"),
        ] {
            assert_eq!(validate_name(lang, name), Ok(()), "{lang:?} {name:?}");
        }
    }

    #[test]
    fn rejects_injection_and_keywords() {
        for (lang, name) in [
            (Python, ""),
            (Python, "1x"),
            (Python, "x y"),
            (Python, "x = 1\nimport os\ny"),
            (Python, "a-b"),
            (Python, "class"),
            (Python, "None"),
            (Python, "x;y"),
            (R, "___"),
            (R, ".1x"),
            (R, "if"),
            (R, "..1"),
            (R, "..."),
            (R, "x$y"),
            (Julia, "end"),
            (Julia, "a$b"),
            (Scala, "val"),
            (Scala, "x`"),
            (Matlab, "_x"),
            (Matlab, "end"),
            (Matlab, "été"),
            (Bash, "a-b"),
            (Bash, "x;rm"),
            (Bash, "9x"),
            (PowerShell, "x)"),
            (PowerShell, "NULL"),
            (PowerShell, "a:b"),
            (CSharp, "class"),
            (CSharp, "@class"),
            (FSharp, "let"),
            (FSharp, "``x y``"),
        ] {
            assert!(validate_name(lang, name).is_err(), "{lang:?} {name:?}");
        }
        let long = "a".repeat(64);
        assert!(validate_name(Matlab, &long).is_err());
    }
}
