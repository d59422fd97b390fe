//! Test harness: an isolated workspace per test, the real `nbpipe` binary, real kernels from
//! the test environment that `scripts/test-env.sh` provisions (ipykernel, bash_kernel,
//! papermill, nbformat), and helpers to check that no kernel process outlives a run.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// One test's sandbox.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub venv: PathBuf,
    pub tag: String,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let venv = PathBuf::from(std::env::var("NBPIPE_TEST_ENV").expect(
            "NBPIPE_TEST_ENV is not set: run the tests with `scripts/test.sh`, which provisions the Python kernels",
        ));
        assert!(
            venv.join("bin/python").exists(),
            "NBPIPE_TEST_ENV={} has no bin/python; rerun scripts/test-env.sh",
            venv.display()
        );
        Sandbox {
            dir: tempfile::tempdir().unwrap(),
            venv,
            tag: uuid_like(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The nbpipe binary with an environment that sees only the test kernels.
    pub fn nbpipe(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_nbpipe"));
        self.isolate(&mut c);
        c
    }

    /// Apply the sandbox's environment to any command (papermill too).
    pub fn isolate(&self, c: &mut Command) {
        c.current_dir(self.dir.path())
            .env("JUPYTER_PATH", self.venv.join("share/jupyter"))
            .env("JUPYTER_DATA_DIR", self.path(".jupyter-data"))
            .env("JUPYTER_CONFIG_DIR", self.path(".jupyter-config"))
            .env("JUPYTER_RUNTIME_DIR", self.path(".jupyter-runtime"))
            .env("NBPIPE_HOME", self.path(".nbpipe-home"))
            // Zygotes are advertised per sandbox: another test's `nbpipe exec` must not fork
            // from this one's (tests share NBPIPE_HOME for its environments).
            .env("NBPIPE_ZYGOTES", self.path(".zygotes"))
            .env("NBPIPE_TEST_TAG", &self.tag)
            .env("PYDEVD_DISABLE_FILE_VALIDATION", "1")
            .env_remove("VIRTUAL_ENV")
            .env_remove("CONDA_PREFIX")
            .stdin(std::process::Stdio::null());
    }

    pub fn python(&self) -> PathBuf {
        self.venv.join("bin/python")
    }

    /// Write a v4.5 notebook with these cells and kernel.
    pub fn notebook(&self, name: &str, kernel: &str, cells: Vec<Value>) -> PathBuf {
        let (display, language) = match kernel {
            "bash" => ("Bash", "bash"),
            _ => ("Python 3", "python"),
        };
        let nb = json!({
            "cells": cells,
            "metadata": {"kernelspec": {"name": kernel, "display_name": display, "language": language}},
            "nbformat": 4,
            "nbformat_minor": 5
        });
        let p = self.path(name);
        std::fs::write(&p, serde_json::to_string_pretty(&nb).unwrap()).unwrap();
        p
    }

    pub fn read(&self, name: &str) -> Value {
        let text = std::fs::read_to_string(self.path(name))
            .unwrap_or_else(|e| panic!("output notebook {name} missing: {e}"));
        serde_json::from_str(&text).unwrap()
    }

    /// Fail unless Python's nbformat accepts the notebook.
    pub fn assert_valid(&self, name: &str) {
        let out = Command::new(self.python())
            .args([
                "-c",
                "import sys, nbformat; nbformat.validate(nbformat.read(sys.argv[1], as_version=4)); print('ok')",
            ])
            .arg(self.path(name))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "nbformat.validate rejected {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// PIDs of live processes started under this sandbox (kernels inherit the tag).
    pub fn processes_left(&self) -> Vec<i32> {
        let needle = format!("NBPIPE_TEST_TAG={}", self.tag);
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if pid == std::process::id() as i32 {
                continue;
            }
            if let Ok(env) = std::fs::read(entry.path().join("environ")) {
                if env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()) {
                    // Zombies already exited; only count live ones.
                    let stat =
                        std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
                    if !stat.contains(") Z ") {
                        pids.push(pid);
                    }
                }
            }
        }
        pids
    }

    /// Assert no process of this sandbox survives (waits briefly for exits in flight).
    pub fn assert_no_processes_left(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = self.processes_left();
            if left.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                for pid in &left {
                    let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
                }
                panic!("processes left behind: {left:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Environments are content-addressed and locked, so project tests share one NBPIPE_HOME:
/// a project environment is built once per test run instead of once per test.
pub fn shared_home() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("nbpipe-home-shared");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn uuid_like() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}-{:x}", t, std::process::id())
}

pub fn code(src: &str) -> Value {
    json!({"cell_type": "code", "id": uuid_like()[..8].to_string() + &format!("{:04}", rand_u16()), "metadata": {}, "source": src, "outputs": [], "execution_count": null})
}

pub fn tagged(src: &str, tag: &str) -> Value {
    let mut c = code(src);
    c["metadata"]["tags"] = json!([tag]);
    c
}

pub fn md(src: &str) -> Value {
    json!({"cell_type": "markdown", "id": format!("md{:06}", rand_u16()), "metadata": {}, "source": src})
}

fn rand_u16() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static N: AtomicU16 = AtomicU16::new(1);
    N.fetch_add(1, Ordering::Relaxed)
}

pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => String::new(),
    }
}

/// All stream text of a cell, by stream name.
pub fn stream(cell: &Value, name: &str) -> String {
    cell["outputs"]
        .as_array()
        .map(|outs| {
            outs.iter()
                .filter(|o| o["output_type"] == "stream" && o["name"] == name)
                .map(|o| text(&o["text"]))
                .collect()
        })
        .unwrap_or_default()
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("could not run command")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn cells_tagged<'a>(nb: &'a Value, tag: &str) -> Vec<&'a Value> {
    nb["cells"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c["metadata"]["tags"]
                .as_array()
                .is_some_and(|t| t.iter().any(|x| x == tag))
        })
        .collect()
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}
