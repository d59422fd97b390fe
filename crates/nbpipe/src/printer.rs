//! All user-facing output of a run goes through here: log lines by level, the progress bar,
//! live cell output (`--log-output`), and the `--stdout-file` / `--stderr-file` copies.
//! Messages go to stderr; stdout is reserved for a notebook written to `-`.

use std::fs::File;
use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use nbpipe_exec::Observer;
use serde_json::Value;

/// papermill's log levels, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Everything, including the kernel's own stderr.
    Debug,
    /// Paths, kernel, progress messages.
    Info,
    /// Warnings.
    Warning,
    /// Errors only.
    Error,
}

impl Level {
    /// Parse papermill's `--log-level` names.
    pub fn parse(s: &str) -> Level {
        match s.to_ascii_uppercase().as_str() {
            "NOTSET" | "DEBUG" => Level::Debug,
            "INFO" => Level::Info,
            "WARNING" => Level::Warning,
            _ => Level::Error,
        }
    }
}

/// The exec command's observer.
pub struct Printer {
    /// Minimum level printed.
    pub level: Level,
    /// Stream cell output to stderr.
    pub log_output: bool,
    /// Copy of the notebook's stdout stream.
    pub stdout_file: Option<File>,
    /// Copy of the notebook's stderr stream.
    pub stderr_file: Option<File>,
    bar: Option<ProgressBar>,
    want_bar: bool,
}

impl Printer {
    /// A printer; the bar is shown only when wanted and stderr is a terminal.
    pub fn new(level: Level, log_output: bool, progress: bool) -> Printer {
        Printer {
            level,
            log_output,
            stdout_file: None,
            stderr_file: None,
            bar: None,
            want_bar: progress && std::io::stderr().is_terminal(),
        }
    }

    /// Print a message at `level`.
    pub fn log(&self, level: Level, msg: &str) {
        if level < self.level {
            return;
        }
        let line = match level {
            Level::Warning => format!("warning: {msg}"),
            Level::Error => format!("error: {msg}"),
            _ => msg.to_string(),
        };
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    fn write_live(&self, text: &str) {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(text.as_bytes());
        if !text.ends_with('\n') {
            let _ = err.write_all(b"\n");
        }
    }
}

fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => String::new(),
    }
}

impl Observer for Printer {
    fn warn(&mut self, msg: &str) {
        self.log(Level::Warning, msg);
    }

    fn info(&mut self, msg: &str) {
        self.log(Level::Info, msg);
    }

    fn notebook_start(&mut self, total: usize) {
        if self.want_bar {
            let bar =
                ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg:<12} {bar:40} {pos}/{len} cells [{elapsed_precise}<{eta_precise}]",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_message("Executing");
            self.bar = Some(bar);
        }
    }

    fn cell_start(&mut self, index: usize, _total: usize, description: Option<&str>) {
        if let (Some(bar), Some(d)) = (&self.bar, description) {
            bar.set_message(format!("Executing {d}"));
        }
        if self.log_output {
            self.log(Level::Info, &format!("Executing Cell {:-<40}", index + 1));
        }
    }

    fn output(&mut self, _index: usize, output: &Value) {
        let kind = output
            .get("output_type")
            .and_then(Value::as_str)
            .unwrap_or("");
        if kind == "stream" {
            let t = text(output.get("text"));
            let stdout = output.get("name").and_then(Value::as_str) == Some("stdout");
            let file = if stdout {
                &mut self.stdout_file
            } else {
                &mut self.stderr_file
            };
            if let Some(f) = file {
                let _ = f.write_all(t.as_bytes()).and_then(|_| f.flush());
            }
            if self.log_output {
                match &self.bar {
                    Some(bar) => bar.suspend(|| self.write_live(&t)),
                    None => self.write_live(&t),
                }
            }
        } else if self.log_output {
            if let Some(plain) = output.get("data").and_then(|d| d.get("text/plain")) {
                self.write_live(&text(Some(plain)));
            } else if kind == "error" {
                let tb: Vec<String> = output
                    .get("traceback")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                self.write_live(&tb.join("\n"));
            }
        }
    }

    fn cell_end(&mut self, index: usize, _ok: bool) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
        if self.log_output {
            self.log(Level::Info, &format!("Ending Cell {:-<43}", index + 1));
        }
    }

    fn notebook_end(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
    }
}
