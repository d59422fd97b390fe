//! Parameters-cell inspection (papermill's `inspect_notebook` /
//! `--help-notebook`), a port of `PythonTranslator.inspect`.

use crate::pynum::{py_isspace, py_strip};
use crate::{Language, ParamError};

/// One parameter found in a `parameters` cell (papermill's `Parameter`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamInfo {
    /// Variable name.
    pub name: String,
    /// The annotation (`x: int = 1`) or type comment (`# type: int`), else
    /// `"None"` (papermill's convention for "unknown").
    pub inferred_type_name: String,
    /// The default value's source text.
    pub default: String,
    /// The trailing comment (help text), or empty.
    pub help: String,
}

/// Inspect a parameters cell's source like papermill.
///
/// Python only: one parameter per `name = value` / `name: type = value`
/// definition, values may continue over following lines (brackets), comment
/// and blank lines are skipped, lines with several `=` are ignored, the
/// trailing `# comment` of a definition is its help (`# type: T help` also
/// gives the type), and definitions papermill's pattern does not match are
/// skipped. Other languages return [`ParamError::InspectUnsupported`], where
/// papermill logs "does not support parameter introspection" and reports no
/// parameters.
///
/// Known difference: papermill's regular expression uses Python's `\w`
/// (letters, digits, `_`); here `\w` is Rust's `char::is_alphanumeric()` or
/// `_`, which also accepts combining vowel signs of some scripts.
pub fn inspect_parameters_cell(lang: Language, source: &str) -> Result<Vec<ParamInfo>, ParamError> {
    if lang != Language::Python {
        return Err(ParamError::InspectUnsupported(lang));
    }
    let mut grouped = Vec::new();
    let mut acc: Vec<&str> = Vec::new();
    for line in py_splitlines(source) {
        let stripped = py_strip(line);
        if stripped.is_empty() || stripped.starts_with('#') {
            continue;
        }
        let nequal = line.matches('=').count();
        if nequal > 0 {
            grouped.push(flatten(&acc));
            acc.clear();
            if nequal > 1 {
                continue;
            }
        }
        acc.push(line);
    }
    grouped.push(flatten(&acc));
    Ok(grouped
        .iter()
        .filter(|d| !d.is_empty())
        .filter_map(|d| match_definition(d))
        .collect())
}

/// papermill's help line for one parameter in `--help-notebook` output.
pub fn format_help_line(p: &ParamInfo) -> String {
    let type_repr = if p.inferred_type_name == "None" {
        "Unknown type"
    } else {
        &p.inferred_type_name
    };
    let definition = format!("  {}: {} (default {})", p.name, type_repr, p.default);
    let len = definition.chars().count();
    if len > 30 {
        if p.help.is_empty() {
            definition
        } else {
            format!("{definition}\n{}{}", " ".repeat(34), p.help)
        }
    } else {
        format!("{definition}{}{}", " ".repeat(34 - len), p.help)
    }
}

/// Python's `str.splitlines()`.
fn py_splitlines(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut it = s.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        let is_break = matches!(
            c,
            '\n' | '\r'
                | '\x0b'
                | '\x0c'
                | '\x1c'
                | '\x1d'
                | '\x1e'
                | '\u{85}'
                | '\u{2028}'
                | '\u{2029}'
        );
        if is_break {
            out.push(&s[start..i]);
            let mut end = i + c.len_utf8();
            if c == '\r' {
                if let Some(&(j, '\n')) = it.peek() {
                    it.next();
                    end = j + 1;
                }
            }
            start = end;
        }
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

/// Join a multi-line definition, dropping comments of all but the last line.
fn flatten(acc: &[&str]) -> String {
    let mut flat = String::new();
    if let Some((last, init)) = acc.split_last() {
        for line in init {
            let code = match line.find('#') {
                Some(pos) => &line[..pos],
                None => line,
            };
            flat.push_str(py_strip(code));
        }
        flat.push_str(py_strip(last));
    }
    flat
}

/// Python's `\w` (approximately; see [`inspect_parameters_cell`]).
fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn skip_while(s: &str, f: impl Fn(char) -> bool) -> &str {
    s.trim_start_matches(f)
}

/// papermill's `PARAMETER_PATTERN`:
/// `^(?P<target>\w[\w_]*)\s*(:\s*["']?(?P<annotation>\w[\w_\[\],\s]*)["']?\s*)?=\s*(?P<value>.*?)(\s*#\s*(type:\s*(?P<type_comment>[^\s]*)\s*)?(?P<help>.*))?$`
fn match_definition(def: &str) -> Option<ParamInfo> {
    // target
    if !def.starts_with(is_word) {
        return None;
    }
    let rest = skip_while(def, is_word);
    let target = &def[..def.len() - rest.len()];
    let mut rest = skip_while(rest, py_isspace);
    // optional annotation group
    let mut annotation = None;
    if let Some(r) = rest.strip_prefix(':') {
        let r = skip_while(r, py_isspace);
        let r = r.strip_prefix(['"', '\'']).unwrap_or(r);
        if !r.starts_with(is_word) {
            return None;
        }
        let after = skip_while(r, |c| {
            is_word(c) || matches!(c, '[' | ']' | ',') || py_isspace(c)
        });
        annotation = Some(&r[..r.len() - after.len()]);
        let after = after.strip_prefix(['"', '\'']).unwrap_or(after);
        rest = skip_while(after, py_isspace);
    }
    let rest = skip_while(rest.strip_prefix('=')?, py_isspace);
    // lazy value, optional comment group
    let (value, comment) = match rest.find('#') {
        Some(h) => {
            let before = rest[..h].trim_end_matches(py_isspace);
            (before, Some(&rest[h + 1..]))
        }
        None => (rest, None),
    };
    let mut type_comment = "";
    let mut help = "";
    if let Some(c) = comment {
        let c = skip_while(c, py_isspace);
        help = c;
        if let Some(t) = c.strip_prefix("type:") {
            let t = skip_while(t, py_isspace);
            let after = skip_while(t, |c| !py_isspace(c));
            type_comment = &t[..t.len() - after.len()];
            help = skip_while(after, py_isspace);
        }
    }
    let type_name = match annotation {
        Some(a) => a,
        None if !type_comment.is_empty() => type_comment,
        None => "None",
    };
    Some(ParamInfo {
        name: py_strip(target).to_owned(),
        inferred_type_name: py_strip(type_name).to_owned(),
        default: py_strip(value).to_owned(),
        help: py_strip(help).to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, ty: &str, default: &str, help: &str) -> ParamInfo {
        ParamInfo {
            name: name.into(),
            inferred_type_name: ty.into(),
            default: default.into(),
            help: help.into(),
        }
    }

    /// Expectations from papermill 2.7.0's `PythonTranslator.inspect`.
    #[test]
    fn matches_papermill() {
        let src = "# Parameters\na = 1  # the a\nb: int = 2\nc: \"List[str]\" = ['x', 'y']  # list help\nd = {\n    'k': 1,  # inner comment\n    'j': 2\n}  # dict help\ne = 3.5  # type: float  help for e\nf = None\nx == 1\nif True:\n    pass\ng: Optional[str] = None\nh = \"a#b\"\ni = a = 3\nj: dict[str, int] = {}\nk=5#tight\nl: a.b = 3\n   # indented comment\nm = \"\"\"\ntext\n\"\"\"\n";
        let got = inspect_parameters_cell(Language::Python, src).unwrap();
        let want = vec![
            info("a", "None", "1", "the a"),
            info("b", "int", "2", ""),
            info("c", "List[str]", "['x', 'y']", "list help"),
            info("d", "None", "{'k': 1,'j': 2}", "dict help"),
            info("e", "float", "3.5", "help for e"),
            info("f", "None", "None", ""),
            info("g", "Optional[str]", "None", ""),
            info("h", "None", "\"a", "b\""),
            info("j", "dict[str, int]", "{}", ""),
            info("k", "None", "5", "tight"),
            info("m", "None", "\"\"\"text\"\"\"", ""),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn edge_cases() {
        let p = |s: &str| inspect_parameters_cell(Language::Python, s).unwrap();
        assert!(p("").is_empty());
        assert!(p("# only comments\n\n").is_empty());
        assert_eq!(
            p("x = # just help"),
            vec![info("x", "None", "", "just help")]
        );
        assert_eq!(p("x = 1 # type:"), vec![info("x", "None", "1", "")]);
        assert_eq!(p("x = 1 # type: int"), vec![info("x", "int", "1", "")]);
        assert_eq!(p("x: 'int' = 1"), vec![info("x", "int", "1", "")]);
        assert!(p("x\r\n= 1\r").is_empty());
        assert_eq!(p("été = 'ü'"), vec![info("été", "None", "'ü'", "")]);
        assert!(matches!(
            inspect_parameters_cell(Language::R, "a = 1"),
            Err(ParamError::InspectUnsupported(Language::R))
        ));
    }

    #[test]
    fn help_lines() {
        assert_eq!(
            format_help_line(&info("a", "None", "1", "the a")),
            "  a: Unknown type (default 1)     the a"
        );
        assert_eq!(
            format_help_line(&info("a", "int", "1", "")),
            "  a: int (default 1)              "
        );
        assert_eq!(
            format_help_line(&info("long_name", "Optional[str]", "None", "help")),
            format!(
                "  long_name: Optional[str] (default None)\n{}help",
                " ".repeat(34)
            )
        );
        assert_eq!(
            format_help_line(&info("long_name", "Optional[str]", "None", "")),
            "  long_name: Optional[str] (default None)"
        );
    }
}
