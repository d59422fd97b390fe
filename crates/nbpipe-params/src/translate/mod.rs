//! papermill's translators: rendering the injected-parameters cell.

mod names;
mod strings;

use std::fmt;

pub use names::validate_name;

use crate::pynum::{py_float_repr, py_strip};
use crate::{ParamError, Parameters, Value};

/// A target language of papermill's parameter translators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Language {
    /// `PythonTranslator` (kernels `python`, `pysparkkernel`).
    Python,
    /// `RTranslator` (`R`, `sparkrkernel`).
    R,
    /// `JuliaTranslator` (`julia`).
    Julia,
    /// `ScalaTranslator` (`scala`, `sparkkernel`).
    Scala,
    /// `MatlabTranslator` (`matlab`).
    Matlab,
    /// `BashTranslator` (`bash`).
    Bash,
    /// `PowershellTranslator` (`.net-powershell`).
    PowerShell,
    /// `CSharpTranslator` (`.net-csharp`).
    CSharp,
    /// `FSharpTranslator` (`.net-fsharp`).
    FSharp,
}

/// papermill's translator registry, in registration order.
const REGISTRY: &[(&str, Language)] = &[
    ("python", Language::Python),
    ("R", Language::R),
    ("scala", Language::Scala),
    ("julia", Language::Julia),
    ("matlab", Language::Matlab),
    (".net-csharp", Language::CSharp),
    (".net-fsharp", Language::FSharp),
    (".net-powershell", Language::PowerShell),
    ("pysparkkernel", Language::Python),
    ("sparkkernel", Language::Scala),
    ("sparkrkernel", Language::R),
    ("bash", Language::Bash),
];

impl Language {
    /// Every language.
    pub const ALL: [Language; 9] = [
        Language::Python,
        Language::R,
        Language::Julia,
        Language::Scala,
        Language::Matlab,
        Language::Bash,
        Language::PowerShell,
        Language::CSharp,
        Language::FSharp,
    ];

    /// papermill's `find_translator(kernel_name, language)`: the translator
    /// registered under the kernel name, else under the language name (exact,
    /// case-sensitive matches of `python`, `R`, `scala`, `julia`, `matlab`,
    /// `.net-csharp`, `.net-fsharp`, `.net-powershell`, `pysparkkernel`,
    /// `sparkkernel`, `sparkrkernel`, `bash`). `None` is papermill's
    /// "No parameter translator functions specified for kernel ... or
    /// language ..." error.
    pub fn from_kernel(kernel_name: &str, language: &str) -> Option<Language> {
        let find = |n: &str| REGISTRY.iter().find(|(k, _)| *k == n).map(|&(_, l)| l);
        find(kernel_name).or_else(|| find(language))
    }

    /// The registry name papermill uses for this translator's language.
    pub fn name(self) -> &'static str {
        match self {
            Language::Python => "python",
            Language::R => "R",
            Language::Julia => "julia",
            Language::Scala => "scala",
            Language::Matlab => "matlab",
            Language::Bash => "bash",
            Language::PowerShell => ".net-powershell",
            Language::CSharp => ".net-csharp",
            Language::FSharp => ".net-fsharp",
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Render one value as a literal of `lang`, like papermill's
/// `Translator.translate`.
///
/// Errors where papermill raises `NotImplementedError` (`None` in C#, dicts
/// in bash) and for strings a language cannot hold (NUL in R and bash).
/// String literals follow papermill's format but always decode to exactly the
/// original string; see the crate documentation for where that differs.
pub fn translate_value(lang: Language, v: &Value) -> Result<String, ParamError> {
    let mut out = String::new();
    translate_into(lang, v, &mut out)?;
    Ok(out)
}

fn translate_str(lang: Language, s: &str, out: &mut String) -> Result<(), ParamError> {
    match lang {
        Language::Python | Language::FSharp => strings::python(out, s),
        Language::R => strings::r(out, s)?,
        Language::Julia => strings::julia(out, s),
        Language::Scala => strings::scala(out, s),
        Language::Matlab => strings::matlab(out, s, false),
        Language::CSharp => strings::csharp(out, s),
        Language::PowerShell => strings::powershell(out, s),
        Language::Bash => strings::bash(out, s)?,
    }
    Ok(())
}

/// Scala, C# and F# append `L` to ints outside the 32-bit range.
fn outside_i32(digits: &str) -> bool {
    digits
        .parse::<i64>()
        .map_or(true, |i| i32::try_from(i).is_err())
}

fn join<T>(
    out: &mut String,
    items: &[T],
    sep: &str,
    mut each: impl FnMut(&mut String, &T) -> Result<(), ParamError>,
) -> Result<(), ParamError> {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(sep);
        }
        each(out, item)?;
    }
    Ok(())
}

fn translate_into(lang: Language, v: &Value, out: &mut String) -> Result<(), ParamError> {
    use Language::*;
    match v {
        Value::Str(s) => translate_str(lang, s, out)?,
        Value::None => out.push_str(match lang {
            Python | Scala | FSharp => "None",
            R => "NULL",
            Julia => "nothing",
            Matlab => "NaN",
            PowerShell => "$Null",
            Bash => "",
            CSharp => {
                return Err(ParamError::Unsupported {
                    language: lang,
                    message: "Option type not implemented for C# (None values cannot be injected)"
                        .into(),
                })
            }
        }),
        Value::Bool(b) => out.push_str(match (lang, b) {
            (Python, true) => "True",
            (Python, false) => "False",
            (R, true) => "TRUE",
            (R, false) => "FALSE",
            (PowerShell, true) => "$True",
            (PowerShell, false) => "$False",
            (_, true) => "true",
            (_, false) => "false",
        }),
        Value::Int(digits) => {
            out.push_str(digits);
            if matches!(lang, Scala | CSharp | FSharp) && outside_i32(digits) {
                out.push('L');
            }
        }
        Value::Float(f) => {
            if f.is_finite() {
                out.push_str(&py_float_repr(*f));
            } else {
                out.push_str(match (lang, f.is_nan(), *f > 0.0) {
                    (Python, true, _) => "float('nan')",
                    (Python, _, true) => "float('inf')",
                    (Python, _, false) => "float('-inf')",
                    (PowerShell, true, _) => "[double]::NaN",
                    (PowerShell, _, true) => "[double]::PositiveInfinity",
                    (PowerShell, _, false) => "[double]::NegativeInfinity",
                    (_, true, _) => "nan",
                    (_, _, true) => "inf",
                    (_, _, false) => "-inf",
                });
            }
        }
        Value::List(items) => {
            let each = |o: &mut String, x: &Value| translate_into(lang, x, o);
            match lang {
                Python | Julia => {
                    out.push('[');
                    join(out, items, ", ", each)?;
                    out.push(']');
                }
                R => {
                    out.push_str("list(");
                    join(out, items, ", ", each)?;
                    out.push(')');
                }
                Scala => {
                    out.push_str("Seq(");
                    join(out, items, ", ", each)?;
                    out.push(')');
                }
                Matlab => {
                    out.push('{');
                    join(out, items, ", ", each)?;
                    out.push('}');
                }
                CSharp => {
                    out.push_str("new [] { ");
                    join(out, items, ", ", each)?;
                    out.push_str(" }");
                }
                FSharp => {
                    out.push_str("[ ");
                    join(out, items, "; ", each)?;
                    out.push_str(" ]");
                }
                PowerShell => {
                    out.push_str("@(");
                    join(out, items, ", ", each)?;
                    out.push(')');
                }
                Bash => {
                    out.push('(');
                    join(out, items, " ", each)?;
                    out.push(')');
                }
            }
        }
        Value::Dict(entries) => translate_dict(lang, entries, out)?,
    }
    Ok(())
}

fn translate_dict(
    lang: Language,
    entries: &[(String, Value)],
    out: &mut String,
) -> Result<(), ParamError> {
    use Language::*;
    // `key<mid>value` pairs between `open` and `close`, joined with `sep`.
    let pairs = |out: &mut String, open: &str, mid: &str, sep: &str, close: &str| {
        out.push_str(open);
        join(out, entries, sep, |o, (k, v)| {
            translate_str(lang, k, o)?;
            o.push_str(mid);
            translate_into(lang, v, o)
        })?;
        out.push_str(close);
        Ok::<(), ParamError>(())
    };
    match lang {
        Python => pairs(out, "{", ": ", ", ", "}")?,
        R => pairs(out, "list(", " = ", ", ", ")")?,
        Julia => pairs(out, "Dict(", " => ", ", ", ")")?,
        Scala => pairs(out, "Map(", " -> ", ", ", ")")?,
        PowerShell => pairs(out, "@{", " = ", "\n ", "}")?,
        CSharp => {
            out.push_str("new Dictionary<string,Object>{ ");
            join(out, entries, ", ", |o, (k, v)| {
                o.push_str("{ ");
                translate_str(lang, k, o)?;
                o.push_str(" , ");
                translate_into(lang, v, o)?;
                o.push_str(" }");
                Ok(())
            })?;
            out.push_str(" }");
        }
        FSharp => {
            out.push_str("[ ");
            join(out, entries, "; ", |o, (k, v)| {
                o.push('(');
                translate_str(lang, k, o)?;
                o.push_str(", ");
                translate_into(lang, v, o)?;
                o.push_str(" :> IComparable)");
                Ok(())
            })?;
            out.push_str(" ] |> Map.ofList");
        }
        Matlab => {
            out.push_str("containers.Map({");
            join(out, entries, ", ", |o, (k, _)| {
                strings::matlab(o, k, true);
                Ok(())
            })?;
            out.push_str("}, {");
            join(out, entries, ", ", |o, (_, v)| translate_into(lang, v, o))?;
            out.push_str("})");
        }
        Bash => {
            return Err(ParamError::Unsupported {
                language: lang,
                message: "dict type translation not implemented for bash".into(),
            })
        }
    }
    Ok(())
}

/// The comment line: papermill's `comment()` with line breaks in the text
/// replaced by spaces (so the comment cannot spill into code) and, for F#,
/// `(*`/`*)` defused.
pub fn render_comment(lang: Language, comment: &str) -> String {
    let mut text: String = comment
        .chars()
        .map(|c| match c {
            '\n'
            | '\r'
            | '\x0b'
            | '\x0c'
            | '\x1c'..='\x1e'
            | '\u{85}'
            | '\u{2028}'
            | '\u{2029}' => ' ',
            c => c,
        })
        .collect();
    let line = match lang {
        Language::Python
        | Language::R
        | Language::Julia
        | Language::PowerShell
        | Language::Bash => {
            format!("# {text}")
        }
        Language::Scala | Language::CSharp => format!("// {text}"),
        Language::Matlab => format!("% {text}"),
        Language::FSharp => {
            while text.contains("(*") || text.contains("*)") {
                text = text.replace("(*", "( *").replace("*)", "* )");
            }
            format!("(* {text} *)")
        }
    };
    py_strip(&line).to_owned()
}

/// Render the injected-parameters cell source exactly like papermill's
/// `translate_parameters(...)`/`codify()`: the comment line, then one
/// assignment per parameter (`name = value`, `val name = value`,
/// `var name = value;`, `let name = value`, `$name = value`, `name=value`,
/// MATLAB's trailing `;`, R's leading-underscore stripping), each followed by
/// a newline.
///
/// Every name is checked with [`validate_name`] first. The Python output is
/// papermill's when `black` is not installed (papermill reformats with
/// `black` if it is importable; it is not a papermill dependency).
pub fn render_parameters(
    lang: Language,
    params: &Parameters,
    comment: &str,
) -> Result<String, ParamError> {
    let mut out = render_comment(lang, comment);
    out.push('\n');
    for (name, value) in params.iter() {
        validate_name(lang, name)?;
        let name = names::effective_name(lang, name);
        match lang {
            Language::Scala => out.push_str("val "),
            Language::CSharp => out.push_str("var "),
            Language::FSharp => out.push_str("let "),
            Language::PowerShell => out.push('$'),
            _ => {}
        }
        out.push_str(name);
        out.push_str(if lang == Language::Bash { "=" } else { " = " });
        translate_into(lang, value, &mut out)?;
        match lang {
            Language::CSharp | Language::Matlab => out.push(';'),
            _ => {}
        }
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod roundtrip;
#[cfg(test)]
mod tests;
