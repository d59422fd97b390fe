//! ANSI terminal text (tracebacks, coloured logs) to HTML spans.
//!
//! SGR sequences set colour and weight: the 16 basic colours become `ansi-fg-N` / `ansi-bg-N`
//! classes (styled by the page), 256-colour and truecolor values become inline `rgb()` styles
//! built from numbers only. Bold, faint, italic, underline and inverse are supported. Every
//! other escape sequence (cursor movement, OSC titles and links) is removed, never shown.
//! All text is HTML-escaped.

use crate::escape::push_escaped;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Color {
    /// One of the 16 basic colours (0–7 normal, 8–15 bright).
    Basic(u8),
    Rgb(u8, u8, u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Style {
    fg: Option<Color>,
    bg: Option<Color>,
    bold: bool,
    faint: bool,
    italic: bool,
    underline: bool,
    inverse: bool,
}

impl Style {
    /// Apply one SGR parameter list (already split on `;`/`:`).
    fn apply(&mut self, params: &[u32]) {
        if params.is_empty() {
            *self = Style::default();
            return;
        }
        let mut i = 0;
        while i < params.len() {
            let p = params[i];
            match p {
                0 => *self = Style::default(),
                1 => self.bold = true,
                2 => self.faint = true,
                3 => self.italic = true,
                4 => self.underline = true,
                7 => self.inverse = true,
                21 | 22 => {
                    self.bold = false;
                    self.faint = false;
                }
                23 => self.italic = false,
                24 => self.underline = false,
                27 => self.inverse = false,
                30..=37 => self.fg = Some(Color::Basic((p - 30) as u8)),
                39 => self.fg = None,
                40..=47 => self.bg = Some(Color::Basic((p - 40) as u8)),
                49 => self.bg = None,
                90..=97 => self.fg = Some(Color::Basic((p - 90 + 8) as u8)),
                100..=107 => self.bg = Some(Color::Basic((p - 100 + 8) as u8)),
                38 | 48 => {
                    let (color, used) = extended_color(&params[i + 1..]);
                    i += used;
                    if let Some(color) = color {
                        if p == 38 {
                            self.fg = Some(color);
                        } else {
                            self.bg = Some(color);
                        }
                    }
                }
                _ => {}
            }
            i += 1;
        }
    }

    fn is_plain(&self) -> bool {
        *self == Style::default()
    }

    /// The opening `<span ...>` for this style.
    fn open_tag(&self, out: &mut String) {
        let (fg, bg) = if self.inverse {
            (
                Some(self.bg.unwrap_or(Color::Rgb(255, 255, 255))),
                Some(self.fg.unwrap_or(Color::Rgb(0, 0, 0))),
            )
        } else {
            (self.fg, self.bg)
        };
        let mut classes: Vec<String> = Vec::new();
        let mut styles: Vec<String> = Vec::new();
        for (color, kind) in [(fg, "fg"), (bg, "bg")] {
            match color {
                Some(Color::Basic(n)) => classes.push(format!("ansi-{kind}-{n}")),
                Some(Color::Rgb(r, g, b)) => {
                    let prop = if kind == "fg" {
                        "color"
                    } else {
                        "background-color"
                    };
                    styles.push(format!("{prop}:rgb({r},{g},{b})"));
                }
                None => {}
            }
        }
        if self.bold {
            classes.push("ansi-bold".into());
        }
        if self.faint {
            classes.push("ansi-faint".into());
        }
        if self.italic {
            classes.push("ansi-italic".into());
        }
        if self.underline {
            classes.push("ansi-underline".into());
        }
        out.push_str("<span");
        if !classes.is_empty() {
            out.push_str(" class=\"");
            out.push_str(&classes.join(" "));
            out.push('"');
        }
        if !styles.is_empty() {
            out.push_str(" style=\"");
            out.push_str(&styles.join(";"));
            out.push('"');
        }
        out.push('>');
    }
}

/// Parse the arguments after a 38/48: `5;N` (256 colours) or `2;R;G;B` (truecolor).
/// Returns the colour and how many parameters it consumed.
fn extended_color(rest: &[u32]) -> (Option<Color>, usize) {
    match rest.first() {
        Some(5) => match rest.get(1) {
            Some(&n) if n <= 255 => (Some(palette_256(n as u8)), 2),
            Some(_) => (None, 2),
            None => (None, 1),
        },
        Some(2) if rest.len() >= 4 => {
            let c = |v: u32| v.min(255) as u8;
            (Some(Color::Rgb(c(rest[1]), c(rest[2]), c(rest[3]))), 4)
        }
        Some(_) => (None, rest.len()),
        None => (None, 0),
    }
}

/// The xterm 256-colour palette: 0–15 stay basic (themeable), 16–231 the colour cube,
/// 232–255 the grey ramp.
fn palette_256(n: u8) -> Color {
    match n {
        0..=15 => Color::Basic(n),
        16..=231 => {
            let n = n - 16;
            let level = |v: u8| if v == 0 { 0 } else { 55 + 40 * v };
            Color::Rgb(level(n / 36), level((n / 6) % 6), level(n % 6))
        }
        _ => {
            let v = 8 + 10 * (n - 232);
            Color::Rgb(v, v, v)
        }
    }
}

/// Convert terminal text with ANSI escape sequences into escaped HTML with styled spans.
pub(crate) fn to_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 32);
    let mut style = Style::default();
    let mut span_open = false;
    let mut pending = String::new();

    let flush = |out: &mut String, pending: &mut String, style: &Style, span_open: &mut bool| {
        if pending.is_empty() {
            return;
        }
        if !*span_open && !style.is_plain() {
            style.open_tag(out);
            *span_open = true;
        }
        push_escaped(out, pending);
        pending.clear();
    };

    let mut chars = text.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        match c {
            '\u{1b}' => match chars.peek().map(|&(_, c)| c) {
                Some('[') => {
                    chars.next();
                    let mut params = String::new();
                    let mut final_byte = None;
                    for (_, c) in chars.by_ref() {
                        if ('\u{40}'..='\u{7e}').contains(&c) {
                            final_byte = Some(c);
                            break;
                        }
                        params.push(c);
                    }
                    if final_byte == Some('m') {
                        let values: Vec<u32> = if params.is_empty() {
                            Vec::new()
                        } else {
                            params
                                .split([';', ':'])
                                .map(|p| p.parse().unwrap_or(0))
                                .collect()
                        };
                        let mut next = style;
                        next.apply(&values);
                        if next != style {
                            flush(&mut out, &mut pending, &style, &mut span_open);
                            if span_open {
                                out.push_str("</span>");
                                span_open = false;
                            }
                            style = next;
                        }
                    }
                }
                Some(']') => {
                    // OSC: up to BEL or ESC \ (string terminator).
                    chars.next();
                    while let Some((_, c)) = chars.next() {
                        if c == '\u{7}' {
                            break;
                        }
                        if c == '\u{1b}' && chars.peek().map(|&(_, c)| c) == Some('\\') {
                            chars.next();
                            break;
                        }
                    }
                }
                Some(_) => {
                    chars.next();
                }
                None => {}
            },
            '\n' | '\t' => pending.push(c),
            c if c.is_control() => {}
            c => pending.push(c),
        }
    }
    flush(&mut out, &mut pending, &style, &mut span_open);
    if span_open {
        out.push_str("</span>");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_only_escaped() {
        assert_eq!(to_html("a < b & c\n"), "a &lt; b &amp; c\n");
    }

    #[test]
    fn basic_colors_become_classes() {
        assert_eq!(
            to_html("\u{1b}[0;31mZeroDivisionError\u{1b}[0m: boom"),
            "<span class=\"ansi-fg-1\">ZeroDivisionError</span>: boom"
        );
        assert_eq!(
            to_html("\u{1b}[1;92mok\u{1b}[39;22m."),
            "<span class=\"ansi-fg-10 ansi-bold\">ok</span>."
        );
        assert_eq!(
            to_html("\u{1b}[44mx\u{1b}[m"),
            "<span class=\"ansi-bg-4\">x</span>"
        );
    }

    #[test]
    fn extended_colors_become_rgb_styles() {
        assert_eq!(
            to_html("\u{1b}[38;5;196mred\u{1b}[0m"),
            "<span style=\"color:rgb(255,0,0)\">red</span>"
        );
        assert_eq!(
            to_html("\u{1b}[38;5;244mgrey\u{1b}[0m"),
            "<span style=\"color:rgb(128,128,128)\">grey</span>"
        );
        assert_eq!(
            to_html("\u{1b}[48;2;10;20;300mx\u{1b}[0m"),
            "<span style=\"background-color:rgb(10,20,255)\">x</span>"
        );
        assert_eq!(
            to_html("\u{1b}[38;5;3mx"),
            "<span class=\"ansi-fg-3\">x</span>"
        );
    }

    #[test]
    fn inverse_swaps_colors() {
        assert_eq!(
            to_html("\u{1b}[7;32mx\u{1b}[27m"),
            "<span class=\"ansi-bg-2\" style=\"color:rgb(255,255,255)\">x</span>"
        );
    }

    #[test]
    fn markup_inside_colored_text_is_escaped() {
        let html = to_html("\u{1b}[31m<script>alert(1)</script>\u{1b}[0m");
        assert!(!html.contains("<script"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
    }

    #[test]
    fn other_sequences_and_controls_are_dropped() {
        assert_eq!(to_html("a\u{1b}[2Kb\u{1b}[1Ac"), "abc");
        assert_eq!(to_html("\u{1b}]0;title\u{7}x"), "x");
        assert_eq!(
            to_html("\u{1b}]8;;http://e.x\u{1b}\\link\u{1b}]8;;\u{1b}\\"),
            "link"
        );
        assert_eq!(to_html("a\u{0}b\u{7}c\u{1b}"), "abc");
    }

    #[test]
    fn unclosed_style_is_closed_at_the_end() {
        assert_eq!(
            to_html("\u{1b}[1mbold"),
            "<span class=\"ansi-bold\">bold</span>"
        );
    }

    #[test]
    fn ipython_traceback_line() {
        let line = "\u{1b}[0;31m---> 1\u{1b}[0m \u{1b}[38;5;241m1\u{1b}[39m\u{1b}[38;5;241m/\u{1b}[39m\u{1b}[38;5;241m0\u{1b}[39m";
        assert_eq!(
            to_html(line),
            "<span class=\"ansi-fg-1\">---&gt; 1</span> \
             <span style=\"color:rgb(98,98,98)\">1</span>\
             <span style=\"color:rgb(98,98,98)\">/</span>\
             <span style=\"color:rgb(98,98,98)\">0</span>"
        );
    }
}
