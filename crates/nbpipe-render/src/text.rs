//! Plain-text helpers: nbformat multiline strings, terminal control characters in streams,
//! and human-readable durations and timestamps.

use serde_json::Value;

/// The text of an nbformat multiline string: a string, or a list of strings joined as they are.
/// Anything else is `None`.
pub(crate) fn multiline(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => {
            let mut out = String::new();
            for item in items {
                out.push_str(item.as_str()?);
            }
            Some(out)
        }
        _ => None,
    }
}

/// Apply what a terminal would do with `\r` and backspace, as Jupyter does for streams:
/// `\r\n` is a newline, a lone `\r` returns to the start of the line so later text overwrites
/// it (progress bars), and a backspace erases the character before it.
pub(crate) fn apply_carriage_returns(text: &str) -> String {
    if !text.contains(['\r', '\u{8}']) {
        return text.to_owned();
    }
    let text = text.replace("\r\n", "\n");
    let mut out = String::with_capacity(text.len());
    for (i, raw_line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let mut line: Vec<char> = Vec::new();
        let mut cursor = 0;
        for c in raw_line.chars() {
            match c {
                '\r' => cursor = 0,
                '\u{8}' => {
                    if cursor > 0 {
                        cursor -= 1;
                        if cursor + 1 == line.len() {
                            line.pop();
                        } else {
                            line.remove(cursor);
                        }
                    }
                }
                c => {
                    if cursor < line.len() {
                        line[cursor] = c;
                    } else {
                        line.push(c);
                    }
                    cursor += 1;
                }
            }
        }
        out.extend(line);
    }
    out
}

/// A duration in seconds, for people: `0.042 s`, `3.21 s`, `2 min 5 s`, `1 h 02 min`.
pub(crate) fn format_duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return format!("{seconds} s");
    }
    if seconds < 1.0 {
        format!("{seconds:.3} s")
    } else if seconds < 60.0 {
        format!("{seconds:.2} s")
    } else if seconds < 3600.0 {
        let whole = seconds.round() as u64;
        format!("{} min {} s", whole / 60, whole % 60)
    } else {
        let minutes = (seconds / 60.0).round() as u64;
        format!("{} h {:02} min", minutes / 60, minutes % 60)
    }
}

/// A papermill timestamp (`2024-05-01T12:00:00.123456`) shortened to the second, with a space
/// for the `T`. Anything that does not look like one is returned unchanged.
pub(crate) fn format_timestamp(stamp: &str) -> String {
    let bytes = stamp.as_bytes();
    if bytes.len() >= 19 && bytes[10] == b'T' && bytes[4] == b'-' && bytes[13] == b':' {
        let mut out = String::with_capacity(20);
        out.push_str(&stamp[..10]);
        out.push(' ');
        out.push_str(&stamp[11..19]);
        if stamp.ends_with('Z') {
            out.push_str(" UTC");
        }
        out
    } else {
        stamp.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn multiline_joins_lists_and_rejects_other_values() {
        assert_eq!(multiline(&json!(["a\n", "b"])).as_deref(), Some("a\nb"));
        assert_eq!(multiline(&json!("x")).as_deref(), Some("x"));
        assert_eq!(multiline(&json!(3)), None);
        assert_eq!(multiline(&json!(["a", 1])), None);
    }

    #[test]
    fn carriage_return_overwrites_the_line() {
        assert_eq!(
            apply_carriage_returns(" 10%\r 50%\r100%\ndone\n"),
            "100%\ndone\n"
        );
        assert_eq!(apply_carriage_returns("abcdef\rXY"), "XYcdef");
        assert_eq!(apply_carriage_returns("a\r\nb"), "a\nb");
        assert_eq!(apply_carriage_returns("abc\u{8}\u{8}d"), "ad");
        assert_eq!(apply_carriage_returns("plain"), "plain");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_duration(0.0421), "0.042 s");
        assert_eq!(format_duration(3.214), "3.21 s");
        assert_eq!(format_duration(125.4), "2 min 5 s");
        assert_eq!(format_duration(3725.0), "1 h 02 min");
    }

    #[test]
    fn timestamps_are_cut_to_the_second() {
        assert_eq!(
            format_timestamp("2024-05-01T12:00:00.123456"),
            "2024-05-01 12:00:00"
        );
        assert_eq!(
            format_timestamp("2024-05-01T12:00:00.1Z"),
            "2024-05-01 12:00:00 UTC"
        );
        assert_eq!(format_timestamp("yesterday"), "yesterday");
    }
}
