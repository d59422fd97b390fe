//! Malformed inputs and broken kernels: every one gives a clear message and the documented exit
//! code (2 bad usage or input, 3 kernel could not start), never a panic, never a lost output
//! file, never a kernel process left behind. Plus `inspect`, `--help-notebook` and the
//! `papermill` alias.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// What an existing output file holds before a run that must not touch it.
const SENTINEL: &str = "{\"sentinel\": \"previous run's output\"}\n";

fn base_notebook(sb: &Sandbox) -> PathBuf {
    sb.notebook(
        "in.ipynb",
        "python3",
        vec![tagged("a = 1", "parameters"), code("print(a)")],
    )
}

/// The run failed cleanly: this exit code, no panic, the helpful phrases on stderr.
#[track_caller]
fn assert_clean_failure(what: &str, out: &Output, code: i32, phrases: &[&str]) {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: wrong exit code; stderr:\n{err}"
    );
    assert!(!err.contains("panicked"), "{what}: nbpipe panicked:\n{err}");
    assert!(
        !err.contains("RUST_BACKTRACE"),
        "{what}: nbpipe panicked:\n{err}"
    );
    for p in phrases {
        assert!(
            err.contains(p),
            "{what}: stderr does not say {p:?}; stderr:\n{err}"
        );
    }
}

/// No half-written temp file of an atomic save is left in the sandbox.
#[track_caller]
fn assert_no_temp_files(sb: &Sandbox) {
    let left: Vec<String> = std::fs::read_dir(sb.dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp") || n.starts_with(".nbpipe-"))
        .collect();
    assert!(left.is_empty(), "temp files left behind: {left:?}");
}

/// Run `nbpipe exec <args>` with an existing `out.ipynb`; it must fail with exit 2 and the
/// phrases, leave `out.ipynb` byte-identical and leave no process or temp file.
#[track_caller]
fn expect_usage_error(sb: &Sandbox, what: &str, args: &[&str], phrases: &[&str]) {
    std::fs::write(sb.path("out.ipynb"), SENTINEL).unwrap();
    let out = run(sb.nbpipe().arg("exec").args(args));
    assert_clean_failure(what, &out, 2, phrases);
    assert_eq!(
        std::fs::read_to_string(sb.path("out.ipynb")).unwrap(),
        SENTINEL,
        "{what}: the existing output notebook was modified"
    );
    assert_no_temp_files(sb);
    sb.assert_no_processes_left();
}

/// A kernelspec directory `NAME/kernel.json` under `<sandbox>/extra-kernels/kernels`.
fn kernelspec(sb: &Sandbox, name: &str, spec: &Value) -> PathBuf {
    let root = sb.path("extra-kernels");
    let dir = root.join("kernels").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("kernel.json"), spec.to_string()).unwrap();
    root
}

/// `nbpipe` seeing the extra kernelspecs first, then the test environment's.
fn nbpipe_with_kernels(sb: &Sandbox, root: &Path) -> Command {
    let mut c = sb.nbpipe();
    let path = std::env::join_paths([root.to_path_buf(), sb.venv.join("share/jupyter")]).unwrap();
    c.env("JUPYTER_PATH", path);
    c
}

/// A kernel-start failure (exit 3) still saves the output notebook as the run's record,
/// like papermill, with `metadata.papermill.exception` set and no cell executed.
#[track_caller]
fn assert_start_failure_recorded(sb: &Sandbox, what: &str) {
    let nb = sb.read("out.ipynb");
    sb.assert_valid("out.ipynb");
    assert_eq!(
        nb["metadata"]["papermill"]["exception"],
        json!(true),
        "{what}: {}",
        nb["metadata"]["papermill"]
    );
    for c in nb["cells"].as_array().unwrap() {
        assert_eq!(c["execution_count"], Value::Null, "{what}: {c}");
    }
    assert_no_temp_files(sb);
}

// ---------------------------------------------------------------------------------------------
// Malformed notebooks
// ---------------------------------------------------------------------------------------------

#[test]
fn malformed_notebooks_are_exit_2_and_leave_the_output_alone() {
    let sb = Sandbox::new();
    let good = serde_json::to_string(&json!({
        "cells": [{"cell_type": "code", "id": "c1", "metadata": {}, "source": "1", "outputs": [], "execution_count": null}],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5
    }))
    .unwrap();
    let no_cells = json!({"metadata": {}, "nbformat": 4, "nbformat_minor": 5}).to_string();
    let v5 = good.replace("\"nbformat\":4", "\"nbformat\":5");
    assert_ne!(v5, good);
    let v3 = json!({"metadata": {}, "nbformat": 3, "nbformat_minor": 0}).to_string();
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "not JSON",
            "this is not json {".into(),
            vec!["not a valid notebook", "invalid JSON at line 1 column"],
        ),
        (
            "JSON array",
            "[1, 2, 3]".into(),
            vec!["top-level JSON value is an array, expected an object"],
        ),
        ("no cells", no_cells, vec!["has no `cells`"]),
        (
            "nbformat 5",
            v5,
            vec!["unsupported notebook format version 5", "nbformat 4"],
        ),
        ("nbformat 3 without worksheets", v3, vec!["no `worksheets`"]),
        (
            "truncated",
            good[..good.len() / 2].to_string(),
            vec!["invalid JSON", "EOF"],
        ),
        ("empty file", String::new(), vec!["invalid JSON"]),
        (
            "cells is not a list",
            json!({"cells": {}, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}).to_string(),
            vec!["`cells`"],
        ),
    ];
    for (what, text, phrases) in cases {
        std::fs::write(sb.path("bad.ipynb"), &text).unwrap();
        let mut phrases = phrases;
        phrases.push("`bad.ipynb`");
        expect_usage_error(&sb, what, &["bad.ipynb", "out.ipynb"], &phrases);
    }
    // Raw invalid UTF-8 bytes, not just odd characters.
    std::fs::write(sb.path("bad.ipynb"), b"{\"cells\": [\xff]}").unwrap();
    expect_usage_error(
        &sb,
        "invalid UTF-8",
        &["bad.ipynb", "out.ipynb"],
        &["`bad.ipynb` is not a valid notebook"],
    );
}

#[test]
fn missing_input_file_is_exit_2() {
    let sb = Sandbox::new();
    expect_usage_error(
        &sb,
        "missing input",
        &["missing.ipynb", "out.ipynb"],
        &["could not read `missing.ipynb`", "No such file"],
    );
    expect_usage_error(
        &sb,
        "directory as input",
        &[".", "out.ipynb"],
        &["could not read `.`"],
    );
}

#[test]
fn missing_notebook_argument_is_a_usage_error() {
    let sb = Sandbox::new();
    let out = run(sb.nbpipe().arg("exec"));
    assert_clean_failure("no arguments", &out, 2, &["NOTEBOOK_PATH"]);
    base_notebook(&sb);
    let out = run(sb
        .nbpipe()
        .args(["exec", "in.ipynb", "out.ipynb", "-p", "a"]));
    assert_clean_failure("-p without a value", &out, 2, &["--parameters"]);
    assert!(!sb.path("out.ipynb").exists());
}

// ---------------------------------------------------------------------------------------------
// Kernels
// ---------------------------------------------------------------------------------------------

#[test]
fn unknown_kernel_is_exit_2_and_lists_available_kernels() {
    let sb = Sandbox::new();
    base_notebook(&sb);
    // As papermill, the output notebook is written before the kernel is looked up (see
    // papermill_parity.rs); the error and the exit code are unchanged.
    let out = run(sb
        .nbpipe()
        .args(["exec", "in.ipynb", "out.ipynb", "-k", "nope"]));
    assert_clean_failure(
        "-k nope",
        &out,
        2,
        &[
            "no such kernel named \"nope\"",
            "available kernels:",
            "python3",
            "bash",
        ],
    );
    assert_start_failure_recorded(&sb, "-k nope");
    sb.assert_no_processes_left();
    // The same for a kernel named only in the notebook's metadata.
    sb.notebook("other.ipynb", "no-such-kernel", vec![code("1")]);
    let out = run(sb.nbpipe().args(["exec", "other.ipynb", "out.ipynb"]));
    assert_clean_failure(
        "kernelspec in metadata",
        &out,
        2,
        &["no such kernel named \"no-such-kernel\"", "python3"],
    );
    assert_start_failure_recorded(&sb, "kernelspec in metadata");
}

#[test]
fn invalid_kernelspec_is_exit_2_naming_the_file() {
    let sb = Sandbox::new();
    base_notebook(&sb);
    let root = kernelspec(&sb, "broken", &json!({"display_name": "no argv"}));
    std::fs::write(sb.path("out.ipynb"), SENTINEL).unwrap();
    let out = run(nbpipe_with_kernels(&sb, &root).args([
        "exec",
        "in.ipynb",
        "out.ipynb",
        "-k",
        "broken",
    ]));
    assert_clean_failure(
        "kernelspec without argv",
        &out,
        2,
        &["invalid kernelspec", "broken/kernel.json", "argv"],
    );
    // Written before the kernel is looked up, as papermill does.
    assert_start_failure_recorded(&sb, "kernelspec without argv");
    sb.assert_no_processes_left();
}

#[test]
fn kernel_binary_missing_is_exit_3_at_once() {
    let sb = Sandbox::new();
    base_notebook(&sb);
    let root = kernelspec(
        &sb,
        "ghost",
        &json!({"argv": ["/nonexistent/bin/kernel", "-f", "{connection_file}"], "display_name": "Ghost", "language": "python"}),
    );
    let started = Instant::now();
    let out =
        run(nbpipe_with_kernels(&sb, &root).args(["exec", "in.ipynb", "out.ipynb", "-k", "ghost"]));
    assert_clean_failure(
        "missing kernel binary",
        &out,
        3,
        &[
            "could not start kernel `ghost`",
            "/nonexistent/bin/kernel",
            "No such file",
        ],
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_start_failure_recorded(&sb, "missing kernel binary");
    sb.assert_no_processes_left();
}

#[test]
fn kernel_that_never_answers_is_exit_3_after_start_timeout() {
    let sb = Sandbox::new();
    base_notebook(&sb);
    let python = sb.python().to_string_lossy().into_owned();
    let root = kernelspec(
        &sb,
        "sleepy",
        &json!({"argv": [python, "-c", "import time; time.sleep(100)", "{connection_file}"], "display_name": "Sleepy", "language": "python"}),
    );
    let started = Instant::now();
    let out = run(nbpipe_with_kernels(&sb, &root).args([
        "exec",
        "in.ipynb",
        "out.ipynb",
        "-k",
        "sleepy",
        "--start-timeout",
        "3",
    ]));
    let took = started.elapsed();
    assert_clean_failure(
        "silent kernel",
        &out,
        3,
        &["kernel `sleepy` did not become ready within 3 s"],
    );
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(10),
        "took {took:?}"
    );
    assert_start_failure_recorded(&sb, "silent kernel");
    // The sleeping process was killed with its group, not left to sleep for 100 s.
    sb.assert_no_processes_left();
}

/// Regression (seen in the service benchmark): a kernel that lost a port race reported
/// `Address already in use` but stayed alive, and nbpipe waited the whole start timeout.
/// It is now given up on at once and started again on new ports (here it always fails, so
/// after the retries the error says why — long before the 60 s timeout).
#[test]
fn kernel_that_cannot_bind_its_ports_is_retried_at_once() {
    let sb = Sandbox::new();
    base_notebook(&sb);
    let python = sb.python().to_string_lossy().into_owned();
    let clash = "import sys, time; print('zmq.error.ZMQError: Address already in use', file=sys.stderr, flush=True); time.sleep(100)";
    let root = kernelspec(
        &sb,
        "clash",
        &json!({"argv": [python, "-c", clash, "{connection_file}"], "display_name": "Clash", "language": "python"}),
    );
    let started = Instant::now();
    let out =
        run(nbpipe_with_kernels(&sb, &root).args(["exec", "in.ipynb", "out.ipynb", "-k", "clash"]));
    let took = started.elapsed();
    assert_clean_failure("port clash", &out, 3, &["Address already in use"]);
    assert!(took < Duration::from_secs(30), "took {took:?}");
    sb.assert_no_processes_left();
}

#[test]
fn kernel_that_exits_at_once_is_exit_3_with_its_exit_code() {
    let sb = Sandbox::new();
    base_notebook(&sb);
    let python = sb.python().to_string_lossy().into_owned();
    let root = kernelspec(
        &sb,
        "quitter",
        &json!({"argv": [python, "-c", "import sys; print('cannot start: no GPU', file=sys.stderr); sys.exit(5)", "{connection_file}"], "display_name": "Quitter", "language": "python"}),
    );
    let started = Instant::now();
    let out = run(nbpipe_with_kernels(&sb, &root).args([
        "exec",
        "in.ipynb",
        "out.ipynb",
        "-k",
        "quitter",
    ]));
    assert_clean_failure(
        "kernel exits at once",
        &out,
        3,
        // The exit code and what the kernel said on stderr.
        &[
            "kernel `quitter` died",
            "exit code 5",
            "cannot start: no GPU",
        ],
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert_start_failure_recorded(&sb, "kernel exits at once");
    sb.assert_no_processes_left();
}

// ---------------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------------

#[test]
fn bad_parameter_sources_are_exit_2_naming_the_problem() {
    let sb = Sandbox::new();
    base_notebook(&sb);
    std::fs::write(sb.path("list.yaml"), "- 1\n- 2\n").unwrap();
    std::fs::write(sb.path("bad.yaml"), "a: [1,\n").unwrap();
    let nb = ["in.ipynb", "out.ipynb"];
    let cases: Vec<(&str, Vec<&str>, Vec<&str>)> = vec![
        (
            "bad YAML in -y",
            vec!["-y", "a: [1,"],
            vec!["--parameters_yaml", "invalid YAML", "unclosed bracket"],
        ),
        (
            "-f missing file",
            vec!["-f", "nofile.yaml"],
            vec![
                "could not read parameters file `nofile.yaml`",
                "No such file",
            ],
        ),
        (
            "-f with a list",
            vec!["-f", "list.yaml"],
            vec!["`list.yaml`", "must be a mapping"],
        ),
        (
            "-f with bad YAML",
            vec!["-f", "bad.yaml"],
            vec!["`bad.yaml`", "invalid YAML"],
        ),
        (
            "-y with a scalar",
            vec!["-y", "42"],
            vec!["--parameters_yaml", "must be a mapping"],
        ),
        (
            "bad base64",
            vec!["-b", "!!!notbase64"],
            vec!["--parameters_base64", "invalid base64"],
        ),
        (
            "base64 of bad YAML",
            // base64 of "a: [1,"
            vec!["-b", "YTogWzEs"],
            vec!["--parameters_base64", "invalid YAML"],
        ),
        (
            "name with a space",
            vec!["-p", "a b", "1"],
            vec!["invalid python parameter name \"a b\""],
        ),
        (
            "name that is code",
            vec!["-p", "x=1;import os", "1"],
            vec!["invalid python parameter name \"x=1;import os\""],
        ),
        (
            "name that is a keyword",
            vec!["-r", "import", "1"],
            vec!["parameter name \"import\""],
        ),
        (
            "name from YAML that is code",
            vec!["-y", "'a; import os': 1"],
            vec!["parameter name \"a; import os\""],
        ),
    ];
    for (what, extra, phrases) in cases {
        let args: Vec<&str> = nb.iter().copied().chain(extra).collect();
        expect_usage_error(&sb, what, &args, &phrases);
    }
}

// ---------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------

#[test]
fn bad_paths_are_exit_2() {
    let sb = Sandbox::new();
    base_notebook(&sb);
    expect_usage_error(
        &sb,
        "unknown template name",
        &["in.ipynb", "out-{nope}.ipynb", "-p", "a", "1"],
        &["missing parameter `nope`", "out-{nope}.ipynb"],
    );
    expect_usage_error(
        &sb,
        "unclosed template",
        &["in.ipynb", "out-{a.ipynb", "-p", "a", "1"],
        &["unclosed `{`"],
    );
    expect_usage_error(
        &sb,
        "--cwd missing",
        &["in.ipynb", "out.ipynb", "--cwd", "/nonexistent/nbpipe-dir"],
        &["--cwd `/nonexistent/nbpipe-dir` is not a directory"],
    );
    expect_usage_error(
        &sb,
        "unsupported scheme",
        &["nosuch://bucket/k.ipynb", "out.ipynb"],
        &["nosuch://bucket/k.ipynb", "`nosuch`", "not supported"],
    );
}

#[test]
fn missing_output_directory_is_exit_2_before_any_kernel_runs() {
    let sb = Sandbox::new();
    base_notebook(&sb);
    let before = std::fs::read(sb.path("in.ipynb")).unwrap();
    let started = Instant::now();
    let out = run(sb
        .nbpipe()
        .args(["exec", "in.ipynb", "nodir/out.ipynb", "-p", "a", "2"]));
    // README: exit 2 is "bad usage or input: ... bad paths".
    assert_clean_failure(
        "missing output directory",
        &out,
        2,
        &["could not write `nodir/out.ipynb`", "No such file"],
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!sb.path("nodir").exists(), "the directory was created");
    assert_eq!(std::fs::read(sb.path("in.ipynb")).unwrap(), before);
    assert_no_temp_files(&sb);
    sb.assert_no_processes_left();
}

/// `s3://` input: the message names the location, the run fails fast and cleanly. (Today the
/// scheme is unsupported; with object-store support the unreachable endpoint below fails the
/// read instead; both are exit 2.)
#[test]
fn s3_input_gives_a_clear_error() {
    let sb = Sandbox::new();
    std::fs::write(sb.path("out.ipynb"), SENTINEL).unwrap();
    let started = Instant::now();
    let out = run(sb
        .nbpipe()
        .args(["exec", "s3://b/k.ipynb", "out.ipynb"])
        // Never reach a real cloud: a closed local port, fake keys, no metadata service.
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("NBPIPE_STORE_MAX_RETRIES", "0")
        .env("NBPIPE_STORE_RETRY_TIMEOUT_SECS", "2"));
    assert_clean_failure("s3 input", &out, 2, &["s3://b/k.ipynb"]);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        std::fs::read_to_string(sb.path("out.ipynb")).unwrap(),
        SENTINEL
    );
    sb.assert_no_processes_left();
}

// ---------------------------------------------------------------------------------------------
// inspect, --help-notebook, the papermill alias
// ---------------------------------------------------------------------------------------------

const PARAMS_SOURCE: &str = "a = 1  # the a\nb: str = \"x\"\nc = [\n    1,\n    2,  # two\n]\n";

/// papermill 2.x's `--help-notebook` table for [`PARAMS_SOURCE`] (checked against papermill).
const PARAMS_TABLE: &str = "\nParameters inferred for notebook 'p.ipynb':\n  a: Unknown type (default 1)     the a\n  b: str (default \"x\")            \n  c: Unknown type (default [1,2,])\n";

#[test]
fn inspect_prints_the_parameters_table_and_json() {
    let sb = Sandbox::new();
    sb.notebook(
        "p.ipynb",
        "python3",
        vec![
            md("# Report"),
            tagged(PARAMS_SOURCE, "parameters"),
            code("print(a, b, c)"),
        ],
    );
    let out = run(sb.nbpipe().args(["inspect", "p.ipynb"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), PARAMS_TABLE);

    let out = run(sb.nbpipe().args(["inspect", "p.ipynb", "--json"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let got: Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    assert_eq!(
        got,
        json!([
            {"name": "a", "inferred_type_name": "None", "default": "1", "help": "the a"},
            {"name": "b", "inferred_type_name": "str", "default": "\"x\"", "help": ""},
            {"name": "c", "inferred_type_name": "None", "default": "[1,2,]", "help": ""},
        ])
    );

    // No parameters cell, and a bad notebook.
    sb.notebook("none.ipynb", "python3", vec![code("x = 1")]);
    let out = run(sb.nbpipe().args(["inspect", "none.ipynb"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("No cell tagged 'parameters'"));
    std::fs::write(sb.path("bad.ipynb"), "[]").unwrap();
    let out = run(sb.nbpipe().args(["inspect", "bad.ipynb"]));
    assert_clean_failure("inspect bad notebook", &out, 2, &["`bad.ipynb`"]);
    let out = run(sb.nbpipe().args(["inspect", "missing.ipynb"]));
    assert_clean_failure("inspect missing notebook", &out, 2, &["missing.ipynb"]);
}

#[test]
fn help_notebook_prints_the_table_without_running() {
    let sb = Sandbox::new();
    sb.notebook(
        "p.ipynb",
        "python3",
        vec![
            tagged(PARAMS_SOURCE, "parameters"),
            code("open('ran.txt', 'w').write('x')"),
        ],
    );
    let out = run(sb.nbpipe().args(["exec", "p.ipynb", "--help-notebook"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("Usage: "), "{stdout}");
    assert!(stdout.ends_with(PARAMS_TABLE), "{stdout}");
    assert!(
        !sb.path("ran.txt").exists(),
        "--help-notebook ran the notebook"
    );
    assert!(!sb.path("out.ipynb").exists());
    sb.assert_no_processes_left();
}

#[test]
fn papermill_symlink_behaves_as_nbpipe_exec() {
    let sb = Sandbox::new();
    sb.notebook(
        "in.ipynb",
        "python3",
        vec![tagged("a = 1", "parameters"), code("print(a * 10)")],
    );
    let bin = sb.path("bin");
    std::fs::create_dir(&bin).unwrap();
    let link = bin.join("papermill");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_nbpipe"), &link).unwrap();
    let mut cmd = Command::new(&link);
    sb.isolate(&mut cmd);
    let out = run(cmd.args(["in.ipynb", "out.ipynb", "-p", "a", "2"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let nb = sb.read("out.ipynb");
    sb.assert_valid("out.ipynb");
    let cells = nb["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 3);
    assert_eq!(text(&cells[1]["source"]), "# Parameters\na = 2\n");
    assert_eq!(stream(&cells[2], "stdout"), "20\n");
    assert_eq!(nb["metadata"]["papermill"]["parameters"], json!({"a": 2}));

    // Its errors are papermill's usage errors too.
    let mut cmd = Command::new(&link);
    sb.isolate(&mut cmd);
    let out = run(cmd.args(["missing.ipynb", "out2.ipynb"]));
    assert_clean_failure(
        "papermill alias, missing input",
        &out,
        2,
        &["missing.ipynb"],
    );
    assert!(!sb.path("out2.ipynb").exists());
    sb.assert_no_processes_left();
}

/// Known gap (reported, not fixed): the notebook reader stops at serde_json's nesting limit of
/// 128, so a valid notebook with deeply nested metadata or outputs is rejected with exit 2
/// ("recursion limit exceeded") while papermill and nbformat read it; regression test.
#[test]
fn deeply_nested_but_valid_notebook_is_accepted() {
    let sb = Sandbox::new();
    let mut deep = json!(1);
    for _ in 0..200 {
        deep = json!({ "k": deep });
    }
    let mut cell = code("1");
    cell["metadata"]["deep"] = deep;
    sb.notebook("deep.ipynb", "python3", vec![cell]);
    let out = run(sb
        .nbpipe()
        .args(["exec", "deep.ipynb", "out.ipynb", "--prepare-only"]));
    assert!(out.status.success(), "{}", stderr(&out));
    // Absurd nesting is a clear error, not a stack overflow.
    let absurd = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    std::fs::write(sb.path("absurd.ipynb"), absurd).unwrap();
    let out = run(sb.nbpipe().args(["exec", "absurd.ipynb", "out2.ipynb"]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("nested"), "{}", stderr(&out));
}
