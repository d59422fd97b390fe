//! The `--parameters-json` source: JSON exactly as Python's `json.loads` reads it, so a
//! parameters dict serialized by Python (`json.dumps`) arrives with every value intact.
//!
//! `serde_json` cannot be used for this: it has no `NaN`/`Infinity` tokens and rounds
//! integers beyond 64 bits. Here integers keep every digit ([`Value::Int`]), a number with a
//! fraction or exponent is a float parsed with correct rounding (as Python's `float()`),
//! `NaN`, `Infinity` and `-Infinity` are the floats Python writes them for, and a repeated key
//! keeps its first position and takes the last value (Python's `dict`).

use crate::pynum::canonical_int;
use crate::value::dict_set;
use crate::{ParamError, Parameters, Value};

/// Deepest nesting accepted (Python's recursive decoder fails around 1000).
const MAX_DEPTH: usize = 512;

/// Parse a JSON object of parameters the way `json.loads` would read it (see the module
/// docs). The top level must be an object; anything else is [`ParamError::Json`].
pub fn parse_json(text: &str) -> Result<Parameters, ParamError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut p = JsonParser {
        s: text.as_bytes(),
        text,
        pos: 0,
    };
    p.skip_ws();
    let v = p.value(0)?;
    p.skip_ws();
    if p.pos != p.s.len() {
        return Err(p.err("extra data after the JSON value"));
    }
    match v {
        Value::Dict(d) => Ok(d.into_iter().collect()),
        other => Err(ParamError::Json(format!(
            "parameters must be a JSON object, got a value of type '{}'",
            other.python_type_name()
        ))),
    }
}

struct JsonParser<'a> {
    s: &'a [u8],
    text: &'a str,
    pos: usize,
}

impl JsonParser<'_> {
    fn err(&self, msg: &str) -> ParamError {
        let line = self.s[..self.pos].iter().filter(|&&b| b == b'\n').count() + 1;
        let col = self.pos
            - self.s[..self.pos]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1)
            + 1;
        ParamError::Json(format!("{msg} at line {line} column {col}"))
    }

    fn skip_ws(&mut self) {
        while matches!(self.s.get(self.pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, lit: &str) -> bool {
        if self.s[self.pos..].starts_with(lit.as_bytes()) {
            self.pos += lit.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, ParamError> {
        if depth > MAX_DEPTH {
            return Err(self.err("JSON nested too deeply"));
        }
        match self.s.get(self.pos) {
            None => Err(self.err("expecting a value")),
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => Ok(Value::Str(self.string()?)),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => {
                for (lit, v) in [
                    ("null", Value::None),
                    ("true", Value::Bool(true)),
                    ("false", Value::Bool(false)),
                    ("NaN", Value::Float(f64::NAN)),
                    ("Infinity", Value::Float(f64::INFINITY)),
                ] {
                    if self.eat(lit) {
                        return Ok(v);
                    }
                }
                Err(self.err("expecting a value"))
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, ParamError> {
        self.pos += 1;
        let mut d = Vec::new();
        self.skip_ws();
        if self.eat("}") {
            return Ok(Value::Dict(d));
        }
        loop {
            self.skip_ws();
            if self.s.get(self.pos) != Some(&b'"') {
                return Err(self.err("expecting a property name enclosed in double quotes"));
            }
            let key = self.string()?;
            self.skip_ws();
            if !self.eat(":") {
                return Err(self.err("expecting ':' delimiter"));
            }
            self.skip_ws();
            let v = self.value(depth + 1)?;
            dict_set(&mut d, key, v);
            self.skip_ws();
            if self.eat("}") {
                return Ok(Value::Dict(d));
            }
            if !self.eat(",") {
                return Err(self.err("expecting ',' delimiter"));
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, ParamError> {
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.eat("]") {
            return Ok(Value::List(items));
        }
        loop {
            self.skip_ws();
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            if self.eat("]") {
                return Ok(Value::List(items));
            }
            if !self.eat(",") {
                return Err(self.err("expecting ',' delimiter"));
            }
        }
    }

    fn number(&mut self) -> Result<Value, ParamError> {
        let start = self.pos;
        let negative = self.eat("-");
        if negative && self.eat("Infinity") {
            return Ok(Value::Float(f64::NEG_INFINITY));
        }
        let digits_start = self.pos;
        match self.s.get(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.err("expecting a value")),
        }
        let digits_end = self.pos;
        let mut is_float = false;
        if self.s.get(self.pos) == Some(&b'.')
            && self.s.get(self.pos + 1).is_some_and(u8::is_ascii_digit)
        {
            self.pos += 1;
            self.digits();
            is_float = true;
        }
        if matches!(self.s.get(self.pos), Some(b'e' | b'E')) {
            let save = self.pos;
            self.pos += 1;
            let _ = self.eat("+") || self.eat("-");
            if self.s.get(self.pos).is_some_and(u8::is_ascii_digit) {
                self.digits();
                is_float = true;
            } else {
                // Python's scanner stops before an exponent without digits.
                self.pos = save;
            }
        }
        let text = &self.text[start..self.pos];
        if is_float {
            text.parse::<f64>()
                .map(Value::Float)
                .map_err(|_| self.err("invalid number"))
        } else {
            Ok(Value::Int(canonical_int(
                negative,
                &self.text[digits_start..digits_end],
            )))
        }
    }

    fn digits(&mut self) {
        while self.s.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
    }

    fn hex4(&mut self) -> Result<u32, ParamError> {
        let h = self
            .text
            .get(self.pos..self.pos + 4)
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| self.err("invalid \\uXXXX escape"))?;
        self.pos += 4;
        u32::from_str_radix(h, 16).map_err(|_| self.err("invalid \\uXXXX escape"))
    }

    fn string(&mut self) -> Result<String, ParamError> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let run_start = self.pos;
            while let Some(&b) = self.s.get(self.pos) {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            out.push_str(&self.text[run_start..self.pos]);
            match self.s.get(self.pos) {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let Some(&e) = self.s.get(self.pos) else {
                        return Err(self.err("unterminated string"));
                    };
                    self.pos += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let mut c = self.hex4()?;
                            if (0xd800..0xdc00).contains(&c) && self.eat("\\u") {
                                let lo = self.hex4()?;
                                if (0xdc00..0xe000).contains(&lo) {
                                    c = 0x10000 + ((c - 0xd800) << 10) + (lo - 0xdc00);
                                } else {
                                    return Err(self
                                        .err("lone surrogate in \\u escape (not representable)"));
                                }
                            }
                            out.push(char::from_u32(c).ok_or_else(|| {
                                self.err("lone surrogate in \\u escape (not representable)")
                            })?);
                        }
                        _ => return Err(self.err("invalid \\escape")),
                    }
                }
                Some(_) => return Err(self.err("invalid control character in string")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Value {
        parse_json(&format!("{{\"v\": {text}}}"))
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .get("v")
            .cloned()
            .unwrap()
    }

    #[test]
    fn numbers_like_python_json() {
        assert_eq!(one("0"), Value::int(0));
        assert_eq!(one("-0"), Value::int(0));
        assert_eq!(
            one("-123456789012345678901234567890"),
            Value::Int("-123456789012345678901234567890".into())
        );
        assert_eq!(one("1.5"), Value::Float(1.5));
        assert_eq!(one("1e300"), Value::Float(1e300));
        assert_eq!(one("1E+2"), Value::Float(100.0));
        assert_eq!(one("1e400"), Value::Float(f64::INFINITY));
        assert_eq!(one("-0.0"), Value::Float(-0.0));
        assert!(one("-0.0").scalar_py_str().unwrap().starts_with('-'));
        assert_eq!(one("0.1"), Value::Float(0.1));
        assert_eq!(one("Infinity"), Value::Float(f64::INFINITY));
        assert_eq!(one("-Infinity"), Value::Float(f64::NEG_INFINITY));
        assert!(matches!(one("NaN"), Value::Float(f) if f.is_nan()));
        for bad in ["01", "1.", ".5", "+1", "-", "nan", "inf", "1e", "0x10"] {
            assert!(
                parse_json(&format!("{{\"v\": {bad}}}")).is_err(),
                "{bad} should fail"
            );
        }
    }

    #[test]
    fn strings_and_structure() {
        assert_eq!(
            one(r#""a\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00""#),
            Value::str("a\"\\/\u{8}\u{c}\n\r\té😀")
        );
        assert!(parse_json(r#"{"v": "\ud800"}"#).is_err());
        assert!(parse_json("{\"v\": \"a\nb\"}").is_err());
        assert_eq!(
            one(r#"[null, true, false, {"k": []}]"#),
            Value::List(vec![
                Value::None,
                Value::Bool(true),
                Value::Bool(false),
                Value::Dict(vec![("k".into(), Value::List(vec![]))])
            ])
        );
        let p = parse_json(" {\"b\": 1, \"a\": 2, \"b\": 3} \n").unwrap();
        let got: Vec<_> = p.into_iter().collect();
        assert_eq!(
            got,
            vec![("b".into(), Value::int(3)), ("a".into(), Value::int(2))]
        );
        assert!(parse_json("{}").unwrap().is_empty());
    }

    #[test]
    fn errors_are_typed_and_located() {
        for bad in [
            "",
            "[1]",
            "{\"a\": 1} x",
            "{'a': 1}",
            "{\"a\" 1}",
            "{\"a\": 1,}",
            "{\"a\": [1 2]}",
        ] {
            assert!(
                matches!(parse_json(bad), Err(ParamError::Json(_))),
                "{bad:?}: {:?}",
                parse_json(bad)
            );
        }
        let e = parse_json("{\n  \"a\": tru\n}").unwrap_err().to_string();
        assert!(e.contains("line 2 column 8"), "{e}");
        let deep = format!("{{\"a\": {}{}}}", "[".repeat(600), "]".repeat(600));
        assert!(parse_json(&deep).is_err());
    }
}
