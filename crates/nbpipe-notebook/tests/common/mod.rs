//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixtures_dir().join(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// Input fixtures (`*.ipynb`), sorted.
pub fn input_fixtures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ipynb"))
        .collect();
    v.sort();
    v
}

/// Replace the values of cell-level `"id"` lines (3-space indent in
/// nbformat's indent=1 layout) so randomly generated ids compare equal.
pub fn mask_cell_ids(s: &str) -> String {
    s.split_inclusive('\n')
        .map(|line| {
            if line.starts_with("   \"id\": \"") {
                let comma = if line.trim_end().ends_with(',') {
                    ","
                } else {
                    ""
                };
                format!("   \"id\": \"<ID>\"{comma}\n")
            } else {
                line.to_owned()
            }
        })
        .collect()
}

/// Tiny deterministic PRNG (xorshift64*), so tests need no extra crates.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// The test environment's Python (provisioned by `scripts/test-env.sh`, which `scripts/test.sh`
/// exports as `NBPIPE_TEST_ENV`).
pub fn python() -> std::path::PathBuf {
    let env = std::env::var("NBPIPE_TEST_ENV").unwrap_or_else(|_| "/nonexistent".into());
    Path::new(&env).join("bin/python")
}

/// The test environment's site-packages (for papermill's own test notebooks).
pub fn site_packages() -> std::path::PathBuf {
    let env = std::env::var("NBPIPE_TEST_ENV").unwrap_or_else(|_| "/nonexistent".into());
    std::fs::read_dir(Path::new(&env).join("lib"))
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .map(|e| e.path().join("site-packages"))
        .unwrap_or_default()
}

/// `nbformat.writes(nbformat.reads(s, as_version=4)) + "\n"` for each input,
/// run in one Python process; `None` when the venv is not available.
pub fn python_roundtrip(inputs: &[Vec<u8>]) -> Option<Vec<Vec<u8>>> {
    let py = python();
    if !py.exists() {
        // scripts/test.sh always provides it; a bare `cargo test` outside it skips.
        eprintln!(
            "note: {} not found; skipping comparison against Python nbformat",
            py.display()
        );
        return None;
    }
    let dir = std::env::temp_dir().join(format!(
        "nbpipe-notebook-pycmp-{}-{}",
        std::process::id(),
        Rng(std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1)
        .next_u64()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let mut paths = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let p = dir.join(format!("{i}.ipynb"));
        std::fs::write(&p, input).unwrap();
        paths.push(p);
    }
    let script = r#"
import sys, logging, warnings
logging.disable(logging.CRITICAL)
warnings.simplefilter("ignore")
import nbformat
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as f:
        s = f.read()
    out = nbformat.writes(nbformat.reads(s, as_version=4)) + "\n"
    with open(path + ".out", "w", encoding="utf-8") as f:
        f.write(out)
"#;
    let status = std::process::Command::new(&py)
        .arg("-c")
        .arg(script)
        .args(&paths)
        .current_dir(&dir)
        .status()
        .expect("run python");
    assert!(status.success(), "python nbformat round trip failed");
    let outs = paths
        .iter()
        .map(|p| std::fs::read(p.with_extension("ipynb.out")).unwrap())
        .collect();
    std::fs::remove_dir_all(&dir).ok();
    Some(outs)
}

/// Pieces random strings are made of: line breaks Python's `splitlines`
/// knows, characters JSON must escape, and multi-byte UTF-8.
const PIECES: &[&str] = &[
    "a", "b", "xyz", " ", "\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\u{85}",
    "\u{2028}", "\u{2029}", "\t", "\"", "\\", "/", "é", "世界", "🎉", "\x00", "\x01", "\x1f",
    "\x7f", "\u{feff}", "#", "{", "}",
];

impl Rng {
    pub fn string(&mut self, max_pieces: usize) -> String {
        let n = self.below(max_pieces + 1);
        (0..n).map(|_| PIECES[self.below(PIECES.len())]).collect()
    }

    pub fn number(&mut self) -> serde_json::Value {
        use serde_json::Value;
        match self.below(5) {
            0 => Value::from(self.next_u64()),
            1 => Value::from(self.next_u64() as i64),
            2 => Value::from(self.below(1000) as f64 / 8.0),
            _ => loop {
                let f = f64::from_bits(self.next_u64());
                if f.is_finite() {
                    break Value::from(f);
                }
            },
        }
    }

    pub fn json(&mut self, depth: usize) -> serde_json::Value {
        use serde_json::Value;
        match self.below(if depth == 0 { 5 } else { 7 }) {
            0 => Value::Null,
            1 => Value::Bool(self.below(2) == 0),
            2 => self.number(),
            3 | 4 => Value::String(self.string(6)),
            5 => Value::Array((0..self.below(4)).map(|_| self.json(depth - 1)).collect()),
            _ => Value::Object(
                (0..self.below(4))
                    .map(|_| (self.string(3), self.json(depth - 1)))
                    .collect(),
            ),
        }
    }

    /// A string, or sometimes the same text as a list of lines.
    pub fn text(&mut self) -> serde_json::Value {
        let s = self.string(12);
        if self.below(2) == 0 {
            serde_json::Value::String(s)
        } else {
            let mut lines: Vec<String> = Vec::new();
            for part in s.split_inclusive('\n') {
                lines.push(part.to_owned());
            }
            serde_json::json!(lines)
        }
    }

    pub fn mimebundle(&mut self) -> serde_json::Value {
        const MIMES: &[&str] = &[
            "text/plain",
            "text/html",
            "text/markdown",
            "image/png",
            "image/svg+xml",
            "application/javascript",
            "application/json",
            "application/vnd.x+json",
            "application/x-custom",
            "text/x-thing",
        ];
        let mut m = serde_json::Map::new();
        for _ in 0..self.below(4) {
            let mime = MIMES[self.below(MIMES.len())];
            let v = if mime.ends_with("json") {
                self.json(2)
            } else {
                self.text()
            };
            m.insert(mime.to_owned(), v);
        }
        serde_json::Value::Object(m)
    }

    pub fn output(&mut self) -> serde_json::Value {
        use serde_json::json;
        match self.below(6) {
            0 => json!({"output_type": "stream", "name": "stdout", "text": self.text()}),
            1 => {
                json!({"output_type": "display_data", "data": self.mimebundle(), "metadata": self.json(2)})
            }
            2 => json!({"output_type": "execute_result", "execution_count": self.below(50),
                        "data": self.mimebundle(), "metadata": {}}),
            3 => json!({"output_type": "error", "ename": self.string(3), "evalue": self.string(5),
                        "traceback": [self.string(5), self.string(5)]}),
            4 => {
                json!({"output_type": "vendor_thing", "text": self.text(), "payload": self.json(3)})
            }
            _ => json!({"output_type": self.string(2), "data": self.mimebundle()}),
        }
    }

    /// A random but well-formed nbformat 4 notebook.
    pub fn notebook(&mut self) -> serde_json::Value {
        use serde_json::{json, Map, Value};
        let minor = [0u64, 2, 4, 5, 5][self.below(5)];
        let mut cells = Vec::new();
        for i in 0..self.below(8) {
            let cell_type = ["code", "code", "markdown", "raw", "vendor"][self.below(5)];
            let mut cell = Map::new();
            cell.insert("cell_type".into(), json!(cell_type));
            if minor >= 5 || self.below(8) == 0 {
                cell.insert("id".into(), json!(format!("cell-{i}")));
            }
            let mut metadata = Map::new();
            for _ in 0..self.below(3) {
                metadata.insert(self.string(2), self.json(3));
            }
            if self.below(3) == 0 {
                metadata.insert("tags".into(), json!(["parameters"]));
            }
            cell.insert("metadata".into(), Value::Object(metadata));
            cell.insert("source".into(), self.text());
            if cell_type == "code" {
                let n = self.below(4);
                cell.insert(
                    "outputs".into(),
                    Value::Array((0..n).map(|_| self.output()).collect()),
                );
                let count = if self.below(2) == 0 {
                    Value::Null
                } else {
                    json!(self.below(100))
                };
                cell.insert("execution_count".into(), count);
            }
            if cell_type != "code" && self.below(3) == 0 {
                cell.insert("attachments".into(), json!({"a.png": self.mimebundle()}));
            }
            if self.below(4) == 0 {
                cell.insert(format!("x_{}", self.string(2)), self.json(2));
            }
            cells.push(Value::Object(cell));
        }
        let mut metadata = Map::new();
        for _ in 0..self.below(4) {
            metadata.insert(self.string(3), self.json(3));
        }
        json!({"nbformat": 4, "nbformat_minor": minor, "metadata": metadata, "cells": cells,
               "x_top": self.json(2)})
    }

    /// A v3 text field: a string, a `splitlines(True)` list or a `splitlines()` list.
    pub fn v3_text(&mut self) -> serde_json::Value {
        let s = self.string(10);
        match self.below(3) {
            0 => serde_json::json!(s),
            1 => serde_json::json!(s.split_inclusive('\n').collect::<Vec<_>>()),
            _ => serde_json::json!(s.split('\n').collect::<Vec<_>>()),
        }
    }

    /// A random nbformat 3 notebook.
    pub fn v3_notebook(&mut self) -> serde_json::Value {
        use serde_json::json;
        let mut worksheets = Vec::new();
        for _ in 0..=self.below(2) {
            let mut cells = Vec::new();
            for _ in 0..self.below(6) {
                let cell = match self.below(5) {
                    0 => json!({"cell_type": "heading", "level": self.below(4) + 1,
                                "metadata": {}, "source": self.v3_text()}),
                    1 => json!({"cell_type": "markdown", "metadata": {"k": self.json(2)},
                                "source": self.v3_text(), "rendered": self.v3_text()}),
                    2 => json!({"cell_type": "raw", "metadata": {}, "source": self.v3_text()}),
                    _ => {
                        let mut outputs = Vec::new();
                        for _ in 0..self.below(4) {
                            outputs.push(match self.below(4) {
                                0 => json!({"output_type": "pyout", "prompt_number": self.below(9),
                                            "metadata": {"png": {"width": 3}},
                                            "text": self.v3_text(), "html": self.v3_text(),
                                            "png": self.string(4), "latex": self.v3_text(),
                                            "json": serde_json::to_string(&self.json(2)).unwrap()}),
                                1 => json!({"output_type": "display_data", "svg": self.v3_text(),
                                            "javascript": self.v3_text(), "jpeg": "abc"}),
                                2 => json!({"output_type": "stream", "stream": "stderr", "text": self.v3_text()}),
                                _ => json!({"output_type": "pyerr", "ename": "E", "evalue": self.string(3),
                                            "traceback": [self.string(4)]}),
                            });
                        }
                        json!({"cell_type": "code", "language": "python", "collapsed": self.below(2) == 0,
                               "input": self.v3_text(), "prompt_number": self.below(20),
                               "metadata": {}, "outputs": outputs})
                    }
                };
                cells.push(cell);
            }
            worksheets.push(json!({"metadata": {}, "cells": cells}));
        }
        json!({"nbformat": 3, "nbformat_minor": 0, "metadata": {"name": self.string(3)},
               "worksheets": worksheets})
    }
}
