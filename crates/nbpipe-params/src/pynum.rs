//! Python-compatible number grammar and formatting: `int(str)`, `float(str)`,
//! `repr(float)`, `str.isspace()`, plus the little arbitrary-precision
//! arithmetic PyYAML's integer constructor needs.

/// Python's `str.isspace()` (Unicode 14 as shipped with CPython 3.11).
pub(crate) fn py_isspace(c: char) -> bool {
    matches!(
        c,
        '\t'..='\r'
            | '\x1c'..='\x1f'
            | ' '
            | '\u{85}'
            | '\u{a0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200a}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202f}'
            | '\u{205f}'
            | '\u{3000}'
    )
}

/// Python's `str.strip()` with no argument.
pub(crate) fn py_strip(s: &str) -> &str {
    s.trim_matches(py_isspace)
}

/// First code point of every run of ten Unicode decimal digits (general
/// category `Nd`) known to CPython 3.11's `unicodedata` (Unicode 14.0).
/// Every run is exactly `0`..`9` in order.
const DECIMAL_ZEROS: [u32; 66] = [
    0x30, 0x660, 0x6f0, 0x7c0, 0x966, 0x9e6, 0xa66, 0xae6, 0xb66, 0xbe6, 0xc66, 0xce6, 0xd66,
    0xde6, 0xe50, 0xed0, 0xf20, 0x1040, 0x1090, 0x17e0, 0x1810, 0x1946, 0x19d0, 0x1a80, 0x1a90,
    0x1b50, 0x1bb0, 0x1c40, 0x1c50, 0xa620, 0xa8d0, 0xa900, 0xa9d0, 0xa9f0, 0xaa50, 0xabf0, 0xff10,
    0x104a0, 0x10d30, 0x11066, 0x110f0, 0x11136, 0x111d0, 0x112f0, 0x11450, 0x114d0, 0x11650,
    0x116c0, 0x11730, 0x118e0, 0x11950, 0x11c50, 0x11d50, 0x11da0, 0x16a60, 0x16ac0, 0x16b50,
    0x1d7ce, 0x1d7d8, 0x1d7e2, 0x1d7ec, 0x1d7f6, 0x1e140, 0x1e2f0, 0x1e950, 0x1fbf0,
];

/// The decimal value of a Unicode decimal digit (Python's `unicodedata.decimal`).
pub(crate) fn unicode_decimal(c: char) -> Option<u8> {
    let cp = c as u32;
    let idx = DECIMAL_ZEROS.partition_point(|&z| z <= cp);
    if idx == 0 {
        return None;
    }
    let off = cp - DECIMAL_ZEROS[idx - 1];
    (off < 10).then_some(off as u8)
}

/// CPython's `_PyUnicode_TransformDecimalAndSpaceToASCII` followed by the
/// ASCII-whitespace strip `int()`/`float()` perform. ASCII passes through,
/// non-ASCII whitespace becomes a space and non-ASCII decimal digits become
/// ASCII digits; any other non-ASCII character (and DEL) makes the text
/// unparseable (`None`).
fn to_ascii_number_text(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if (c as u32) < 127 {
            out.push(c);
        } else if py_isspace(c) {
            out.push(' ');
        } else if let Some(d) = unicode_decimal(c) {
            out.push((b'0' + d) as char);
        } else {
            return None;
        }
    }
    let trimmed =
        out.trim_matches(|c: char| matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r'));
    Some(trimmed.to_owned())
}

/// Matches `digit (_? digit)*` over ASCII digits.
fn is_underscored_digits(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() || !b[0].is_ascii_digit() || !b[b.len() - 1].is_ascii_digit() {
        return false;
    }
    b.windows(2).all(|w| match w {
        [b'_', n] => n.is_ascii_digit(),
        [p, b'_'] => p.is_ascii_digit(),
        [p, n] => p.is_ascii_digit() && n.is_ascii_digit(),
        _ => true,
    })
}

/// Strip leading zeros from ASCII digits and prefix `-` when negative
/// (never producing `-0`).
pub(crate) fn canonical_int(negative: bool, digits: &str) -> String {
    let d = digits.trim_start_matches('0');
    if d.is_empty() {
        "0".to_owned()
    } else if negative {
        format!("-{d}")
    } else {
        d.to_owned()
    }
}

/// Python's `int(s)` (base 10): returns the canonical decimal text, or `None`
/// where Python raises `ValueError`.
pub(crate) fn parse_py_int(s: &str) -> Option<String> {
    let t = to_ascii_number_text(s)?;
    let (neg, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, &t[..]),
    };
    if !is_underscored_digits(body) {
        return None;
    }
    let digits: String = body.chars().filter(|&c| c != '_').collect();
    Some(canonical_int(neg, &digits))
}

/// Python's `float(s)`: `None` where Python raises `ValueError`.
pub(crate) fn parse_py_float(s: &str) -> Option<f64> {
    let t = to_ascii_number_text(s)?;
    let body = t.strip_prefix(['+', '-']).unwrap_or(&t);
    let lower = body.to_ascii_lowercase();
    if matches!(lower.as_str(), "inf" | "infinity" | "nan") {
        let v: f64 = if lower == "nan" {
            f64::NAN
        } else {
            f64::INFINITY
        };
        return Some(if t.starts_with('-') { -v } else { v });
    }
    // mantissa [eE] exponent, each part underscore-checked separately (an
    // underscore must sit between two digits).
    let (mant, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let (int_part, frac_part) = match mant.find('.') {
        Some(i) => (&mant[..i], Some(&mant[i + 1..])),
        None => (mant, None),
    };
    let int_ok = int_part.is_empty() || is_underscored_digits(int_part);
    let frac_ok = match frac_part {
        None => true,
        Some(f) => f.is_empty() || is_underscored_digits(f),
    };
    let has_digits = !int_part.is_empty() || frac_part.is_some_and(|f| !f.is_empty());
    if !(int_ok && frac_ok && has_digits) {
        return None;
    }
    if let Some(e) = exp {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        if !is_underscored_digits(e) {
            return None;
        }
    }
    let cleaned: String = t.chars().filter(|&c| c != '_').collect();
    cleaned.parse::<f64>().ok()
}

/// Python's `repr(float)` / `str(float)`: shortest round-tripping digits,
/// positional notation for decimal exponents in `-4..16`, otherwise
/// scientific with a signed, at least two-digit exponent; `nan`, `inf`, `-inf`.
pub fn py_float_repr(v: f64) -> String {
    if v.is_nan() {
        return "nan".to_owned();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    // Rust's `{:e}` is the shortest round-trip representation, like Python's.
    let sci = format!("{v:e}");
    let (mant, exp) = sci
        .split_once('e')
        .expect("LowerExp always has an exponent");
    let exp: i32 = exp.parse().expect("LowerExp exponent is an integer");
    let (neg, mant) = match mant.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mant),
    };
    let digits: String = mant.chars().filter(|&c| c != '.').collect();
    let mut out = String::with_capacity(digits.len() + 8);
    if neg {
        out.push('-');
    }
    if (-4..16).contains(&exp) {
        if exp >= 0 {
            let point = exp as usize + 1;
            if digits.len() <= point {
                out.push_str(&digits);
                out.extend(std::iter::repeat_n('0', point - digits.len()));
                out.push_str(".0");
            } else {
                out.push_str(&digits[..point]);
                out.push('.');
                out.push_str(&digits[point..]);
            }
        } else {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
            out.push_str(&digits);
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        let a = exp.unsigned_abs();
        if a < 10 {
            out.push('0');
        }
        out.push_str(&a.to_string());
    }
    out
}

/// A non-negative arbitrary-precision integer in base 10^9, little-endian;
/// just enough for PyYAML's hexadecimal/octal/binary/sexagesimal integers.
#[derive(Debug, Default)]
pub(crate) struct BigUint(Vec<u32>);

const LIMB: u64 = 1_000_000_000;

impl BigUint {
    /// `self = self * m + a`.
    pub(crate) fn mul_add(&mut self, m: u32, a: u32) {
        let mut carry = a as u64;
        for limb in &mut self.0 {
            let v = *limb as u64 * m as u64 + carry;
            *limb = (v % LIMB) as u32;
            carry = v / LIMB;
        }
        while carry > 0 {
            self.0.push((carry % LIMB) as u32);
            carry /= LIMB;
        }
    }

    /// Parse ASCII digits of `radix` (2..=16); `None` on any other character
    /// or when empty.
    pub(crate) fn from_radix(digits: &str, radix: u32) -> Option<Self> {
        if digits.is_empty() {
            return None;
        }
        let mut n = BigUint::default();
        for c in digits.chars() {
            n.mul_add(radix, c.to_digit(radix)?);
        }
        Some(n)
    }

    /// Decimal digits (no sign, at least `"0"`).
    pub(crate) fn to_decimal(&self) -> String {
        let mut limbs = self.0.iter().rev().skip_while(|&&l| l == 0);
        let Some(first) = limbs.next() else {
            return "0".to_owned();
        };
        let mut s = first.to_string();
        for l in limbs {
            s.push_str(&format!("{l:09}"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_repr_matches_python() {
        // (value, Python's repr) pairs produced by CPython 3.11.
        let cases: &[(f64, &str)] = &[
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (0.1, "0.1"),
            (1.5, "1.5"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (123456789012345680.0, "1.2345678901234568e+17"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (0.00012345, "0.00012345"),
            (1.5e-7, "1.5e-07"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (1e22, "1e+22"),
            (1e100, "1e+100"),
            (-2.5e-300, "-2.5e-300"),
            (685230.15, "685230.15"),
            (9007199254740993.0, "9007199254740992.0"),
            (0.3, "0.3"),
            (2.0 / 3.0, "0.6666666666666666"),
            (100.0, "100.0"),
            (1234.5678, "1234.5678"),
            (f64::NAN, "nan"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
        ];
        for &(v, want) in cases {
            assert_eq!(py_float_repr(v), want, "repr of {v:?}");
        }
    }

    #[test]
    fn decimal_table() {
        assert_eq!(unicode_decimal('7'), Some(7));
        assert_eq!(unicode_decimal('\u{663}'), Some(3));
        assert_eq!(unicode_decimal('\u{1d7d9}'), Some(1));
        assert_eq!(unicode_decimal('\u{1fbf9}'), Some(9));
        assert_eq!(unicode_decimal('a'), None);
        assert_eq!(unicode_decimal('\u{66a}'), None);
        assert_eq!(unicode_decimal('²'), None);
    }

    #[test]
    fn bigint() {
        let n = BigUint::from_radix("ffffffffffffffffffffffff", 16).unwrap();
        assert_eq!(n.to_decimal(), "79228162514264337593543950335");
        assert_eq!(BigUint::from_radix("0", 2).unwrap().to_decimal(), "0");
        assert!(BigUint::from_radix("", 2).is_none());
        assert!(BigUint::from_radix("2", 2).is_none());
    }
}
