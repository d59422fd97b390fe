//! A JSON writer that reproduces Python's
//! `json.dumps(obj, indent=1, sort_keys=True, separators=(",", ": "), ensure_ascii=False)`
//! byte for byte, plus the Python string helpers (`str.splitlines`) nbformat relies on.
//!
//! Output goes through [`Out`]: a buffer that is either the whole result ([`crate::to_bytes`])
//! or flushed to a sink every [`Out::CHUNK`] bytes ([`crate::write_to`]), so writing a
//! notebook never needs its whole serialized form in memory. Strings that were moved to a
//! [`Spill`] file are streamed from it in chunks.

use std::io::{self, Read, Write};

use serde_json::{Map, Number, Value};

use crate::spill::{Spill, SpillReader};

/// Where serialized JSON goes.
pub(crate) struct Out<'a> {
    buf: Vec<u8>,
    sink: Option<&'a mut dyn Write>,
    spill: Option<&'a Spill>,
    error: Option<io::Error>,
}

impl<'a> Out<'a> {
    /// Buffered bytes that trigger a flush to the sink.
    pub(crate) const CHUNK: usize = 64 * 1024;

    /// Collect everything in memory.
    pub(crate) fn buffer(capacity: usize, spill: Option<&'a Spill>) -> Out<'a> {
        Out {
            buf: Vec::with_capacity(capacity),
            sink: None,
            spill,
            error: None,
        }
    }

    /// Stream to `sink` in chunks.
    pub(crate) fn stream(sink: &'a mut dyn Write, spill: Option<&'a Spill>) -> Out<'a> {
        Out {
            buf: Vec::with_capacity(Self::CHUNK + 1024),
            sink: Some(sink),
            spill,
            error: None,
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, b: u8) {
        self.buf.push(b);
    }

    #[inline]
    pub(crate) fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= Self::CHUNK && self.sink.is_some() {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if let Some(sink) = self.sink.as_mut() {
            if self.error.is_none() {
                if let Err(e) = sink.write_all(&self.buf) {
                    self.error = Some(e);
                }
            }
            self.buf.clear();
        }
    }

    fn fail(&mut self, e: io::Error) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    /// The bytes, when collecting in memory.
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Flush what is left and report the first error.
    pub(crate) fn finish(mut self) -> io::Result<()> {
        self.flush();
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        match self.sink {
            Some(sink) => sink.flush(),
            None => Ok(()),
        }
    }

    /// The spilled string `s` stands for, as a reader, if it is a spill marker.
    fn spilled(&self, s: &str) -> Option<io::Result<SpillReader<'a>>> {
        let spill = self.spill?;
        spill.open(s)
    }
}

/// Append `depth` spaces of indentation (nbformat uses `indent=1`).
#[inline]
pub(crate) fn newline_indent(out: &mut Out<'_>, depth: usize) {
    out.buf.push(b'\n');
    out.buf.resize(out.buf.len() + depth, b' ');
}

/// Write `s` as a JSON string the way Python's encoder does with
/// `ensure_ascii=False`: only `"`, `\` and C0 control characters are escaped.
pub(crate) fn write_str(out: &mut Out<'_>, s: &str) {
    if let Some(reader) = out.spilled(s) {
        return write_str_from(out, reader);
    }
    out.push(b'"');
    escape_into(out, s.as_bytes());
    out.push(b'"');
}

/// [`write_str`] for a string read in chunks (a spilled value).
fn write_str_from(out: &mut Out<'_>, reader: io::Result<impl Read>) {
    out.push(b'"');
    let result = reader.and_then(|mut r| {
        let mut chunk = vec![0u8; Out::CHUNK];
        loop {
            let n = r.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            escape_into(out, &chunk[..n]);
        }
    });
    if let Err(e) = result {
        out.fail(e);
    }
    out.push(b'"');
}

/// The body of a JSON string (no quotes). Works on any split of UTF-8 text: only ASCII
/// bytes are ever escaped.
fn escape_into(out: &mut Out<'_>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b >= 0x20 && b != b'"' && b != b'\\' {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 0xf) as usize],
            ]),
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Python's `repr(float)`: shortest round-trip digits, fixed notation for
/// decimal exponents in `-4..16`, otherwise `1.5e+16` / `1e-05` style.
pub(crate) fn py_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    let mut out = String::new();
    if f.is_sign_negative() {
        out.push('-');
    }
    // Rust's `{:e}` gives the shortest round-trip digits, e.g. "1.2345e-5".
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let digits = if digits.is_empty() {
        "0".to_owned()
    } else {
        digits
    };
    // Value is 0.DIGITS * 10^decpt.
    let decpt = exp + 1;
    let nd = digits.len() as i32;
    if f == 0.0 {
        out.push_str("0.0");
    } else if (-4 < decpt) && (decpt <= 16) {
        if decpt <= 0 {
            out.push_str("0.");
            for _ in 0..(-decpt) {
                out.push('0');
            }
            out.push_str(&digits);
        } else if decpt < nd {
            out.push_str(&digits[..decpt as usize]);
            out.push('.');
            out.push_str(&digits[decpt as usize..]);
        } else {
            out.push_str(&digits);
            for _ in 0..(decpt - nd) {
                out.push('0');
            }
            out.push_str(".0");
        }
    } else {
        out.push_str(&digits[..1]);
        if nd > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let e = decpt - 1;
        out.push('e');
        out.push(if e < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", e.unsigned_abs()));
    }
    out
}

fn write_number(out: &mut Out<'_>, n: &Number) {
    if n.is_u64() || n.is_i64() {
        out.extend_from_slice(n.to_string().as_bytes());
    } else if let Some(f) = n.as_f64() {
        out.extend_from_slice(py_float_repr(f).as_bytes());
    } else {
        out.extend_from_slice(n.to_string().as_bytes());
    }
}

/// Iterate a map's entries in Python `sort_keys` order (code point order,
/// which equals UTF-8 byte order). `serde_json::Map` is already sorted unless
/// some crate in the build enables `preserve_order`; only then do we sort.
pub(crate) fn sorted_entries(map: &Map<String, Value>) -> Vec<(&str, &Value)> {
    let mut v: Vec<(&str, &Value)> = map.iter().map(|(k, v)| (k.as_str(), v)).collect();
    if !v.windows(2).all(|w| w[0].0 <= w[1].0) {
        v.sort_by(|a, b| a.0.cmp(b.0));
    }
    v
}

/// Write an arbitrary JSON value at nesting `depth`.
pub(crate) fn write_value(out: &mut Out<'_>, v: &Value, depth: usize) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            let mut arr = ArrayWriter::new(out, depth);
            for item in items {
                write_value(arr.item(), item, depth + 1);
            }
            arr.end();
        }
        Value::Object(map) => {
            let mut obj = ObjectWriter::new(out, depth);
            for (k, item) in sorted_entries(map) {
                write_value(obj.key(k), item, depth + 1);
            }
            obj.end();
        }
    }
}

/// Write `s` as the list `s.splitlines(keepends=True)` (nbformat's `split_lines`).
pub(crate) fn write_lines(out: &mut Out<'_>, s: &str, depth: usize) {
    if let Some(reader) = out.spilled(s) {
        return write_lines_from(out, reader, depth);
    }
    let mut arr = ArrayWriter::new(out, depth);
    for line in SplitLines::new(s) {
        write_str(arr.item(), line);
    }
    arr.end();
}

/// [`write_lines`] for text read in chunks (a spilled value). Line breaks of up to three
/// bytes may straddle two chunks, so the last two bytes of a chunk wait for the next one.
fn write_lines_from(out: &mut Out<'_>, reader: io::Result<impl Read>, depth: usize) {
    let mut arr = ArrayWriter::new(out, depth);
    let result = reader.and_then(|mut r| {
        let mut data: Vec<u8> = Vec::with_capacity(Out::CHUNK + 2);
        let mut chunk = vec![0u8; Out::CHUNK];
        let mut in_line = false;
        loop {
            let n = r.read(&mut chunk)?;
            let eof = n == 0;
            data.extend_from_slice(&chunk[..n]);
            let limit = if eof {
                data.len()
            } else {
                data.len().saturating_sub(2)
            };
            let (mut i, mut start) = (0, 0);
            while i < limit {
                let Some(len) = line_break_len(&data, i) else {
                    i += 1;
                    continue;
                };
                if !in_line {
                    arr.item().push(b'"');
                }
                escape_into(arr.out, &data[start..i + len]);
                arr.out.push(b'"');
                in_line = false;
                i += len;
                start = i;
            }
            let i = i.min(data.len());
            if i > start {
                if !in_line {
                    arr.item().push(b'"');
                    in_line = true;
                }
                escape_into(arr.out, &data[start..i]);
            }
            data.drain(..i);
            if eof {
                if in_line {
                    arr.out.push(b'"');
                }
                return Ok(());
            }
        }
    });
    if let Err(e) = result {
        arr.out.fail(e);
    }
    arr.end();
}

/// Streaming writer for a JSON object in Python's indent=1 layout.
/// Keys must be supplied in sorted order by the caller.
pub(crate) struct ObjectWriter<'a, 'o> {
    out: &'a mut Out<'o>,
    depth: usize,
    empty: bool,
}

impl<'a, 'o> ObjectWriter<'a, 'o> {
    pub(crate) fn new(out: &'a mut Out<'o>, depth: usize) -> Self {
        out.push(b'{');
        ObjectWriter {
            out,
            depth,
            empty: true,
        }
    }

    /// Start an entry; the caller then writes the value at `depth + 1`.
    pub(crate) fn key(&mut self, k: &str) -> &mut Out<'o> {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        newline_indent(self.out, self.depth + 1);
        write_str(self.out, k);
        self.out.extend_from_slice(b": ");
        self.out
    }

    pub(crate) fn end(self) {
        if !self.empty {
            newline_indent(self.out, self.depth);
        }
        self.out.push(b'}');
    }
}

/// Streaming writer for a JSON array in Python's indent=1 layout.
pub(crate) struct ArrayWriter<'a, 'o> {
    out: &'a mut Out<'o>,
    depth: usize,
    empty: bool,
}

impl<'a, 'o> ArrayWriter<'a, 'o> {
    pub(crate) fn new(out: &'a mut Out<'o>, depth: usize) -> Self {
        out.push(b'[');
        ArrayWriter {
            out,
            depth,
            empty: true,
        }
    }

    /// Start an item; the caller then writes the value at `depth + 1`.
    pub(crate) fn item(&mut self) -> &mut Out<'o> {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        newline_indent(self.out, self.depth + 1);
        self.out
    }

    pub(crate) fn end(self) {
        if !self.empty {
            newline_indent(self.out, self.depth);
        }
        self.out.push(b']');
    }
}

/// Python's `str.splitlines(keepends=True)`.
///
/// Line boundaries are `\n`, `\r`, `\r\n`, `\x0b`, `\x0c`, `\x1c`, `\x1d`,
/// `\x1e`, `\x85`, `\u2028` and `\u2029`. The empty string yields no lines.
pub(crate) struct SplitLines<'a> {
    rest: &'a str,
}

impl<'a> SplitLines<'a> {
    pub(crate) fn new(s: &'a str) -> Self {
        SplitLines { rest: s }
    }
}

/// Byte length of the line break starting at `bytes[i]`, if any.
#[inline]
fn line_break_len(bytes: &[u8], i: usize) -> Option<usize> {
    match bytes[i] {
        b'\n' | 0x0b | 0x0c | 0x1c | 0x1d | 0x1e => Some(1),
        b'\r' => Some(if bytes.get(i + 1) == Some(&b'\n') {
            2
        } else {
            1
        }),
        // U+0085 is C2 85 in UTF-8.
        0xc2 if bytes.get(i + 1) == Some(&0x85) => Some(2),
        // U+2028 / U+2029 are E2 80 A8 / E2 80 A9.
        0xe2 if bytes.get(i + 1) == Some(&0x80)
            && matches!(bytes.get(i + 2), Some(0xa8 | 0xa9)) =>
        {
            Some(3)
        }
        _ => None,
    }
}

impl<'a> Iterator for SplitLines<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.rest.is_empty() {
            return None;
        }
        let bytes = self.rest.as_bytes();
        let mut end = bytes.len();
        for i in 0..bytes.len() {
            if let Some(n) = line_break_len(bytes, i) {
                end = i + n;
                break;
            }
        }
        // `end` always falls on a char boundary: breaks are whole characters.
        let (line, rest) = self.rest.split_at(end);
        self.rest = rest;
        Some(line)
    }
}

/// Python's `str.splitlines()` (without line ends).
pub(crate) fn splitlines_no_ends(s: &str) -> Vec<&str> {
    SplitLines::new(s)
        .map(|line| {
            let b = line.as_bytes();
            let mut cut = b.len();
            for i in 0..b.len() {
                if line_break_len(b, i).is_some() {
                    cut = i;
                    break;
                }
            }
            &line[..cut]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dumps(v: &Value) -> String {
        let mut out = Out::buffer(0, None);
        write_value(&mut out, v, 0);
        String::from_utf8(out.into_bytes()).unwrap()
    }

    #[test]
    fn float_repr_matches_python() {
        let cases = [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (1.5e16, "1.5e+16"),
            (123456789012345680.0, "1.2345678901234568e+17"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (2.5, "2.5"),
            (-3.75, "-3.75"),
            (1e100, "1e+100"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (123.456, "123.456"),
            (0.30000000000000004, "0.30000000000000004"),
            (9999999999999998.0, "9999999999999998.0"),
        ];
        for (f, want) in cases {
            assert_eq!(py_float_repr(f), want, "{f:?}");
        }
    }

    #[test]
    fn layout_matches_python_indent_1() {
        let v: Value = serde_json::json!({"b": [1, {"x": []}, {}], "a": "é\"\\\n\u{1}\u{7f}"});
        assert_eq!(
            dumps(&v),
            "{\n \"a\": \"é\\\"\\\\\\n\\u0001\u{7f}\",\n \"b\": [\n  1,\n  {\n   \"x\": []\n  },\n  {}\n ]\n}"
        );
    }

    #[test]
    fn splitlines_like_python() {
        let s = "a\nb\r\nc\rd\x0be\x0cf\x1cg\u{85}h\u{2028}i\u{2029}j\n";
        let got: Vec<&str> = SplitLines::new(s).collect();
        assert_eq!(
            got,
            [
                "a\n",
                "b\r\n",
                "c\r",
                "d\x0b",
                "e\x0c",
                "f\x1c",
                "g\u{85}",
                "h\u{2028}",
                "i\u{2029}",
                "j\n"
            ]
        );
        assert_eq!(SplitLines::new("").count(), 0);
        assert_eq!(SplitLines::new("x").collect::<Vec<_>>(), ["x"]);
        assert_eq!(SplitLines::new("\n\n").collect::<Vec<_>>(), ["\n", "\n"]);
        assert_eq!(splitlines_no_ends("a\r\nb\n\nc"), ["a", "b", "", "c"]);
        assert!(splitlines_no_ends("").is_empty());
    }
}
