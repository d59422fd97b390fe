//! Parameter sources: YAML text (`-y`, `-f` file contents) and base64-encoded
//! YAML (`-b`).

use crate::{ParamError, Parameters, Value};

/// Parse a YAML document into parameters exactly as papermill's
/// `params.update(yaml.load(text, Loader=NoDatesSafeLoader) or {})` does.
///
/// Scalars follow PyYAML's YAML 1.1 rules minus timestamps: `yes`/`No`/`ON`/
/// `off`/`true`... are booleans, `~`/`null`/empty are `None`, integers accept
/// `0x`, `0b`, leading-zero octal, underscores and sexagesimal (`1:30`),
/// floats need a dot (`1.0e+3`, `.5`, `.inf`, `.NaN`; `1e3` is a string),
/// quoted scalars are strings, dates stay strings. Anchors, aliases and `<<`
/// merge keys work.
///
/// A falsy document (empty, `null`, `false`, `0`, `""`, `[]`, `{}`) gives no
/// parameters; a mapping gives its entries; a list of two-item lists (or
/// two-character strings) gives those pairs, as `dict.update` would; anything
/// else is [`ParamError::NotAMapping`].
///
/// Mapping keys that are not strings (`1: x`, `true: y`, `~: z`) are matched
/// with Python's key equality (`1`, `1.0` and `true` are one key) and then
/// converted with Python's `str()`, which renders them exactly as papermill
/// does. Known differences from papermill, none reachable by ordinary
/// parameter files: top-level keys `1` and `"1"` are one parameter here (two
/// in papermill, which then emits `1 = ...`, invalid code anyway), keys
/// brought in by `<<` merges compare as strings, `!!binary`, `!!timestamp`, `!!set`, `!!omap` and `!!pairs` values
/// are rejected ([`ParamError::UnsupportedYaml`]) instead of becoming Python
/// objects, recursive aliases are rejected, and syntax corner cases follow
/// `granit-parser` rather than PyYAML's scanner (e.g. `b: "y"#x` is an error
/// here but valid for PyYAML; `a:\tb` is the reverse).
pub fn parse_yaml(text: &str) -> Result<Parameters, ParamError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    to_parameters(crate::yaml::load(text)?)
}

/// Decode a `-b` argument with Python's lenient `base64.b64decode` (characters
/// outside the alphabet are skipped; decoding stops once padding completes a
/// quantum) and parse the resulting YAML with [`parse_yaml`]. The bytes are
/// decoded as PyYAML does: UTF-16 when they start with a UTF-16 byte-order
/// mark, UTF-8 otherwise.
pub fn parse_base64_yaml(b64: &str) -> Result<Parameters, ParamError> {
    let bytes = py_b64decode(b64)?;
    let text = decode_yaml_bytes(&bytes)?;
    parse_yaml(&text)
}

/// PyYAML's byte-stream decoding.
fn decode_yaml_bytes(bytes: &[u8]) -> Result<String, ParamError> {
    let utf16 = |be: bool| -> Result<String, ParamError> {
        let body = &bytes[2..];
        let chunks = body.chunks_exact(2);
        if !chunks.remainder().is_empty() {
            return Err(ParamError::Yaml("truncated UTF-16 data".into()));
        }
        let units = chunks.map(|c| {
            if be {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from_le_bytes([c[0], c[1]])
            }
        });
        char::decode_utf16(units)
            .collect::<Result<String, _>>()
            .map_err(|e| ParamError::Yaml(format!("invalid UTF-16 data: {e}")))
    };
    match bytes {
        [0xff, 0xfe, ..] => utf16(false),
        [0xfe, 0xff, ..] => utf16(true),
        _ => String::from_utf8(bytes.to_vec())
            .map_err(|e| ParamError::Yaml(format!("invalid UTF-8 data: {e}"))),
    }
}

/// CPython's non-strict `binascii.a2b_base64`, which `base64.b64decode` uses.
fn py_b64decode(s: &str) -> Result<Vec<u8>, ParamError> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let mut quad_pos = 0u8;
    let mut left: u32 = 0;
    let mut pads = 0u8;
    let mut data_chars = 0usize;
    for c in s.chars() {
        if c == '=' {
            pads += 1;
            if quad_pos >= 2 && quad_pos + pads >= 4 {
                return Ok(out);
            }
            continue;
        }
        let v = match c {
            'A'..='Z' => c as u32 - 'A' as u32,
            'a'..='z' => c as u32 - 'a' as u32 + 26,
            '0'..='9' => c as u32 - '0' as u32 + 52,
            '+' => 62,
            '/' => 63,
            _ => continue,
        };
        pads = 0;
        data_chars += 1;
        match quad_pos {
            0 => {
                quad_pos = 1;
                left = v;
            }
            1 => {
                quad_pos = 2;
                out.push(((left << 2) | (v >> 4)) as u8);
                left = v & 0x0f;
            }
            2 => {
                quad_pos = 3;
                out.push(((left << 4) | (v >> 2)) as u8);
                left = v & 0x03;
            }
            _ => {
                quad_pos = 0;
                out.push(((left << 6) | v) as u8);
                left = 0;
            }
        }
    }
    match quad_pos {
        0 => Ok(out),
        1 => Err(ParamError::Base64(format!(
            "Invalid base64-encoded string: number of data characters ({data_chars}) cannot be 1 more than a multiple of 4"
        ))),
        _ => Err(ParamError::Base64("Incorrect padding".into())),
    }
}

/// `dict.update(loaded or {})`.
fn to_parameters(v: Value) -> Result<Parameters, ParamError> {
    if !v.is_truthy() {
        return Ok(Parameters::new());
    }
    match v {
        Value::Dict(d) => Ok(d.into_iter().collect()),
        Value::List(items) => {
            let mut p = Parameters::new();
            for (i, item) in items.into_iter().enumerate() {
                let pair: Vec<Value> = match item {
                    Value::List(l) => l,
                    Value::Str(s) => s.chars().map(|c| Value::Str(c.to_string())).collect(),
                    Value::Dict(d) => d.into_iter().map(|(k, _)| Value::Str(k)).collect(),
                    other => {
                        return Err(ParamError::NotAMapping(format!(
                            "cannot convert dictionary update sequence element #{i} ({}) to a sequence",
                            other.python_type_name()
                        )))
                    }
                };
                if pair.len() != 2 {
                    return Err(ParamError::NotAMapping(format!(
                        "dictionary update sequence element #{i} has length {}; 2 is required",
                        pair.len()
                    )));
                }
                let mut it = pair.into_iter();
                let (k, val) = (it.next().unwrap_or(Value::None), it.next().unwrap_or(Value::None));
                let Some(k) = k.scalar_py_str() else {
                    return Err(ParamError::NotAMapping(format!(
                        "unhashable type: '{}'",
                        k.python_type_name()
                    )));
                };
                p.set(&k, val);
            }
            Ok(p)
        }
        Value::Str(s) => Err(ParamError::NotAMapping(format!(
            "got the string {s:?} (dictionary update sequence element #0 has length 1; 2 is required)"
        ))),
        other => Err(ParamError::NotAMapping(format!(
            "got a value of type '{}'",
            other.python_type_name()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(s: &str) -> Value {
        Value::Int(s.into())
    }
    fn s(x: &str) -> Value {
        Value::Str(x.into())
    }
    fn p(text: &str) -> Vec<(String, Value)> {
        parse_yaml(text)
            .unwrap_or_else(|e| panic!("{text:?}: {e}"))
            .into_iter()
            .collect()
    }
    fn kv(pairs: &[(&str, Value)]) -> Vec<(String, Value)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    /// Expectations from PyYAML 6.0 with papermill's NoDatesSafeLoader.
    #[test]
    fn scalars_match_pyyaml() {
        assert_eq!(
            p("a: yes\nb: No\nc: ON\nd: off\ne: y\nf: n\ng: TRUE\nh: tRue\ni: Yes"),
            kv(&[
                ("a", Value::Bool(true)),
                ("b", Value::Bool(false)),
                ("c", Value::Bool(true)),
                ("d", Value::Bool(false)),
                ("e", s("y")),
                ("f", s("n")),
                ("g", Value::Bool(true)),
                ("h", s("tRue")),
                ("i", Value::Bool(true)),
            ])
        );
        assert_eq!(
            p("a: ~\nb: null\nc: Null\nd: NULL\ne:\nf: nUll"),
            kv(&[
                ("a", Value::None),
                ("b", Value::None),
                ("c", Value::None),
                ("d", Value::None),
                ("e", Value::None),
                ("f", s("nUll")),
            ])
        );
        assert_eq!(
            p("a: 0x1F\nb: 0o17\nc: 017\nd: 0b101\ne: 1_000\nf: +12\ng: -0x1_0\nh: 190:20:30\ni: 0\nj: 09\nk: 0_\nl: 1:70"),
            kv(&[
                ("a", int("31")),
                ("b", s("0o17")),
                ("c", int("15")),
                ("d", int("5")),
                ("e", int("1000")),
                ("f", int("12")),
                ("g", int("-16")),
                ("h", int("685230")),
                ("i", int("0")),
                ("j", s("09")),
                ("k", int("0")),
                ("l", s("1:70")),
            ])
        );
        let f = p("a: 1.5\nb: 1e3\nc: 1.0e3\nd: 1.0e+3\ne: .5\nf: .inf\ng: -.Inf\nh: .NaN\ni: 190:20:30.15\nj: 1.\nk: 1_0.5\nl: +.inf\nm: .nan\nn: -.nan\no: 6.8523015e+5\np: 685.230_15e+03");
        assert_eq!(f[0].1, Value::Float(1.5));
        assert_eq!(f[1].1, s("1e3"));
        assert_eq!(f[2].1, s("1.0e3"));
        assert_eq!(f[3].1, Value::Float(1000.0));
        assert_eq!(f[4].1, Value::Float(0.5));
        assert_eq!(f[5].1, Value::Float(f64::INFINITY));
        assert_eq!(f[6].1, Value::Float(f64::NEG_INFINITY));
        assert!(matches!(f[7].1, Value::Float(x) if x.is_nan()));
        assert_eq!(f[8].1, Value::Float(685230.15));
        assert_eq!(f[9].1, Value::Float(1.0));
        assert_eq!(f[10].1, Value::Float(10.5));
        assert_eq!(f[11].1, Value::Float(f64::INFINITY));
        assert!(matches!(f[12].1, Value::Float(x) if x.is_nan()));
        assert_eq!(f[13].1, s("-.nan"));
        assert_eq!(f[14].1, Value::Float(685230.15));
        assert_eq!(f[15].1, Value::Float(685230.15));
    }

    #[test]
    fn dates_quotes_and_tags() {
        assert_eq!(
            p("a: 2024-01-01\nb: 2001-12-14t21:59:43.10-05:00\nc: '1'\nd: \"true\"\ne: !!str 12\nf: !!int '12'\ng: !!float '1'\nh: ! 12\ni: !!bool yes\nj: ! '12'\nk: !!null foo"),
            kv(&[
                ("a", s("2024-01-01")),
                ("b", s("2001-12-14t21:59:43.10-05:00")),
                ("c", s("1")),
                ("d", s("true")),
                ("e", s("12")),
                ("f", int("12")),
                ("g", Value::Float(1.0)),
                ("h", int("12")),
                ("i", Value::Bool(true)),
                ("j", int("12")),
                ("k", Value::None),
            ])
        );
        assert_eq!(
            p("a: \"\\u00e9\\x00\\t\"\nb: 1e400\nc: 12345678901234567890123\nd: -0.0\ne: 0777\nf: 1.5E+2\ng: 1.5e2"),
            kv(&[
                ("a", s("é\0\t")),
                ("b", s("1e400")),
                ("c", int("12345678901234567890123")),
                ("d", Value::Float(-0.0)),
                ("e", int("511")),
                ("f", Value::Float(150.0)),
                ("g", s("1.5e2")),
            ])
        );
    }

    #[test]
    fn structure() {
        assert_eq!(
            p("a: [1, {b: c}]\nd: |\n  multi\n  line\ne: >\n  folded\n  text\n"),
            kv(&[
                (
                    "a",
                    Value::List(vec![int("1"), Value::Dict(kv(&[("b", s("c"))]))])
                ),
                ("d", s("multi\nline\n")),
                ("e", s("folded text\n")),
            ])
        );
        // Duplicate keys: last value wins, first position kept.
        assert_eq!(
            p("a: 1\nb: 3\na: 2"),
            kv(&[("a", int("2")), ("b", int("3"))])
        );
        // Anchors, aliases, merge keys.
        let pq = Value::Dict(kv(&[("p", int("1")), ("q", int("2"))]));
        assert_eq!(
            p("a: &x {p: 1, q: 2}\nb: *x\nc:\n  <<: *x\n  q: 3\n  r: 4"),
            kv(&[
                ("a", pq.clone()),
                ("b", pq),
                (
                    "c",
                    Value::Dict(kv(&[("p", int("1")), ("q", int("3")), ("r", int("4"))]))
                ),
            ])
        );
        assert_eq!(
            p("x: &x {a: 1, b: 1}\ny: &y {b: 2, c: 2}\nz: {k: 0, <<: [*x, *y]}")[2].1,
            Value::Dict(kv(&[
                ("b", int("1")),
                ("c", int("2")),
                ("a", int("1")),
                ("k", int("0"))
            ]))
        );
        // Non-string keys become their Python str(), after Python's key
        // equality merged `1` and `true`.
        assert_eq!(
            p("1: a\nyes: b\n~: c\n1.5: d\n=: e\n2.0: f\n2: g\nno: h"),
            kv(&[
                ("1", s("b")),
                ("None", s("c")),
                ("1.5", s("d")),
                ("=", s("e")),
                ("2.0", s("g")),
                ("False", s("h")),
            ])
        );
    }

    #[test]
    fn top_level_forms() {
        for falsy in [
            "",
            "# only a comment",
            "---",
            "~",
            "0",
            "false",
            "[]",
            "{}",
            "''",
            "0.0",
        ] {
            assert!(parse_yaml(falsy).unwrap().is_empty(), "{falsy:?}");
        }
        assert_eq!(
            p("[[a, 1], [b, 2]]"),
            kv(&[("a", int("1")), ("b", int("2"))])
        );
        assert_eq!(p("[ab, cd]"), kv(&[("a", s("b")), ("c", s("d"))]));
        for bad in [
            "abc",
            "5",
            "true",
            "[1]",
            "[[1, 2, 3]]",
            "[abc]",
            "[[[1], 2]]",
        ] {
            assert!(
                matches!(parse_yaml(bad), Err(ParamError::NotAMapping(_))),
                "{bad:?}: {:?}",
                parse_yaml(bad)
            );
        }
    }

    #[test]
    fn errors_like_pyyaml() {
        for bad in [
            "a: =",
            "a: <<",
            "a: !foo bar",
            "a: 1\n---\nb: 2",
            "? [1, 2]\n: x",
            "a: 0b_",
            "a: !!int abc",
            "a: !!bool maybe",
            "a: [1, 2",
            "a: *nope",
            "a: &r [*r]",
        ] {
            assert!(
                parse_yaml(bad).is_err(),
                "{bad:?} should fail: {:?}",
                parse_yaml(bad)
            );
        }
        for unsupported in [
            "a: !!binary aGVsbG8=",
            "a: !!timestamp 2001-01-01",
            "a: !!set {x}",
        ] {
            assert!(
                matches!(parse_yaml(unsupported), Err(ParamError::UnsupportedYaml(_))),
                "{unsupported:?}: {:?}",
                parse_yaml(unsupported)
            );
        }
    }

    #[test]
    fn alias_bomb_is_bounded() {
        let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let prev = format!("*a{}", i - 1);
            doc.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
        }
        assert!(parse_yaml(&doc).is_err());
    }

    #[test]
    fn base64_like_python() {
        let ok = |b: &str| py_b64decode(b).unwrap();
        assert_eq!(ok("YTogMQ=="), b"a: 1");
        assert_eq!(ok("YTog\nMQ=="), b"a: 1");
        assert_eq!(ok("YTogMQ==junk"), b"a: 1");
        assert_eq!(ok("YT-_ogMQ=="), b"a: 1");
        assert_eq!(ok("YTogMQ==="), b"a: 1");
        assert_eq!(ok("YTogMQ==YTogMQ=="), b"a: 1");
        assert_eq!(ok("!!!"), b"");
        assert_eq!(ok(""), b"");
        assert_eq!(ok("YQ=x="), b"a\x0c");
        assert_eq!(ok("YTo gMQ=="), b"a: 1");
        assert!(matches!(py_b64decode("YTogMQ"), Err(ParamError::Base64(_))));
        assert!(matches!(
            py_b64decode("YTogMQ="),
            Err(ParamError::Base64(_))
        ));
        assert!(matches!(py_b64decode("YTogM"), Err(ParamError::Base64(_))));

        let params = parse_base64_yaml("eDogMQp5OiBbYSwgYl0K").unwrap(); // "x: 1\ny: [a, b]\n"
        assert_eq!(params.get("x"), Some(&int("1")));
        assert_eq!(params.get("y"), Some(&Value::List(vec![s("a"), s("b")])));
        // UTF-16LE with BOM: "a: é"
        let utf16 = "//5hADoAIADpAA==";
        assert_eq!(parse_base64_yaml(utf16).unwrap().get("a"), Some(&s("é")));
    }
}
