//! papermill's `-p NAME VALUE` type resolution (`papermill.cli._resolve_type`).

use crate::pynum::{parse_py_float, parse_py_int};
use crate::Value;

/// Resolve a `-p` value the way papermill does: exactly `True`, `False` or
/// `None` first; then anything Python's `int()` accepts (surrounding
/// whitespace, a sign, digits with single underscores between them, any
/// Unicode decimal digits; no `0x` prefixes); then anything `float()`
/// accepts (`1e3`, `.5`, `1.`, `inf`, `-Infinity`, `nan`, ...; overflow gives
/// infinity); otherwise the text unchanged as a string.
///
/// ```
/// use nbpipe_params::{resolve_cli_value, Value};
/// assert_eq!(resolve_cli_value("1_000"), Value::Int("1000".into()));
/// assert_eq!(resolve_cli_value("0x10"), Value::Str("0x10".into()));
/// assert_eq!(resolve_cli_value("1e3"), Value::Float(1000.0));
/// assert_eq!(resolve_cli_value("true"), Value::Str("true".into()));
/// ```
pub fn resolve_cli_value(s: &str) -> Value {
    match s {
        "True" => return Value::Bool(true),
        "False" => return Value::Bool(false),
        "None" => return Value::None,
        _ => {}
    }
    if let Some(i) = parse_py_int(s) {
        return Value::Int(i);
    }
    if let Some(f) = parse_py_float(s) {
        return Value::Float(f);
    }
    Value::Str(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(s: &str) -> Value {
        Value::Int(s.to_owned())
    }

    /// Expectations produced by running papermill 2.7.0's `_resolve_type`
    /// under CPython 3.11.
    #[test]
    fn resolution_table_matches_papermill() {
        let s = |x: &str| Value::Str(x.to_owned());
        let cases: Vec<(&str, Value)> = vec![
            ("True", Value::Bool(true)),
            ("False", Value::Bool(false)),
            ("None", Value::None),
            ("true", s("true")),
            ("false", s("false")),
            ("none", s("none")),
            ("True ", s("True ")),
            ("1", int("1")),
            ("-1", int("-1")),
            ("+1", int("1")),
            (" 12 ", int("12")),
            ("1_000", int("1000")),
            ("1__000", s("1__000")),
            ("_1", s("_1")),
            ("1_", s("1_")),
            ("0x10", s("0x10")),
            ("0o7", s("0o7")),
            ("0b1", s("0b1")),
            ("007", int("7")),
            ("00", int("0")),
            ("-0", int("0")),
            ("0_0", int("0")),
            ("-000123", int("-123")),
            (
                "12345678901234567890123456789",
                int("12345678901234567890123456789"),
            ),
            ("1e3", Value::Float(1000.0)),
            ("1E3", Value::Float(1000.0)),
            ("1.5", Value::Float(1.5)),
            ("1.", Value::Float(1.0)),
            (".5", Value::Float(0.5)),
            (".", s(".")),
            ("1_0.5", Value::Float(10.5)),
            ("1._5", s("1._5")),
            ("1_.5", s("1_.5")),
            ("1.0_1", Value::Float(1.01)),
            ("1e1_0", Value::Float(1e10)),
            ("1e_10", s("1e_10")),
            ("1.e5", Value::Float(1e5)),
            ("inf", Value::Float(f64::INFINITY)),
            ("-inf", Value::Float(f64::NEG_INFINITY)),
            ("Infinity", Value::Float(f64::INFINITY)),
            ("-infinity", Value::Float(f64::NEG_INFINITY)),
            ("iNfInItY", Value::Float(f64::INFINITY)),
            ("infinit", s("infinit")),
            ("1e400", Value::Float(f64::INFINITY)),
            ("-1e400", Value::Float(f64::NEG_INFINITY)),
            ("", s("")),
            ("  ", s("  ")),
            ("abc", s("abc")),
            ("1 2", s("1 2")),
            ("- 1", s("- 1")),
            ("1e", s("1e")),
            ("e1", s("e1")),
            ("1.5j", s("1.5j")),
            ("\u{661}\u{662}", int("12")),
            ("\u{ff11}\u{ff12}", int("12")),
            ("\u{1d7d9}\u{1d7da}", int("12")),
            ("\u{661}_\u{662}", int("12")),
            ("\u{661}.5", Value::Float(1.5)),
            ("\u{663}\u{66b}\u{665}", s("\u{663}\u{66b}\u{665}")),
            (" \t\n12\n", int("12")),
            ("\u{2003}12\u{3000}", int("12")),
            ("\u{a0}12", int("12")),
            ("\u{85} 12", int("12")),
            ("\x1c12\x1f", s("\x1c12\x1f")),
            ("\u{180e}1", s("\u{180e}1")),
            ("1\0", s("1\0")),
            ("0.1", Value::Float(0.1)),
            ("1e16", Value::Float(1e16)),
            ("1e-5", Value::Float(1e-5)),
            ("5e-324", Value::Float(5e-324)),
            (
                "1.7976931348623157e308",
                Value::Float(1.797_693_134_862_315_7e308),
            ),
            ("1.5e+3", Value::Float(1500.0)),
            ("1.5e-3", Value::Float(0.0015)),
            ("+.5e1", Value::Float(5.0)),
        ];
        for (input, want) in cases {
            assert_eq!(resolve_cli_value(input), want, "input {input:?}");
        }
    }

    #[test]
    fn nan_variants() {
        for x in ["nan", "NaN", "-nan", "+nan", " nan "] {
            match resolve_cli_value(x) {
                Value::Float(f) => assert!(f.is_nan(), "{x:?}"),
                other => panic!("{x:?} -> {other:?}"),
            }
        }
    }
}
