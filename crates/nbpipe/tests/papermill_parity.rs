//! papermill behaviours found by running papermill's own test notebooks through both tools, and
//! the typed JSON parameters the Python API sends (`--parameters-json`), compared with what
//! papermill's `execute_notebook` injects for the same Python values.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;
use serde_json::{json, Value};

fn injected_source(nb: &Value) -> String {
    let cells = cells_tagged(nb, "injected-parameters");
    assert_eq!(cells.len(), 1, "one injected cell expected: {nb}");
    text(&cells[0]["source"])
}

#[test]
fn kernelspec_named_python_runs_as_python3() {
    let sb = Sandbox::new();
    sb.notebook(
        "in.ipynb",
        "python",
        vec![tagged("a = 1", "parameters"), code("print(a * 2)")],
    );
    let out = run(sb.nbpipe().args([
        "exec",
        "in.ipynb",
        "out.ipynb",
        "-p",
        "a",
        "21",
        "--no-progress-bar",
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    let nb = sb.read("out.ipynb");
    let last = nb["cells"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(stream(&last, "stdout"), "42\n");
    // `-k python` too, as jupyter_client's kernel manager maps it.
    let out = run(sb.nbpipe().args([
        "exec",
        "in.ipynb",
        "out2.ipynb",
        "-k",
        "python",
        "--no-progress-bar",
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    sb.assert_no_processes_left();
}

#[test]
fn unknown_kernel_writes_the_parameterized_notebook_and_keeps_exit_2() {
    let sb = Sandbox::new();
    sb.notebook(
        "in.ipynb",
        "no-such-kernel",
        vec![tagged("a = 1", "parameters"), code("print(a)")],
    );
    let out = run(sb.nbpipe().args([
        "exec",
        "in.ipynb",
        "out.ipynb",
        "-p",
        "a",
        "5",
        "--no-progress-bar",
    ]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no such kernel named \"no-such-kernel\""),
        "{}",
        stderr(&out)
    );
    let nb = sb.read("out.ipynb");
    sb.assert_valid("out.ipynb");
    assert_eq!(injected_source(&nb), "# Parameters\na = 5\n");
    assert_eq!(nb["metadata"]["papermill"]["exception"], json!(true));
    assert_eq!(nb["metadata"]["papermill"]["parameters"], json!({"a": 5}));
    assert!(nb["metadata"]["papermill"]["end_time"].is_string());
    for c in nb["cells"].as_array().unwrap() {
        assert_eq!(c["execution_count"], Value::Null, "{c}");
        assert_eq!(c["metadata"]["papermill"]["status"], "pending", "{c}");
    }
}

/// Python values of every JSON kind; `json.dumps` writes NaN/Infinity tokens and big ints.
const PY_VALUES: &str = r#"{
    "none": None, "t": True, "f": False, "zero": 0, "neg": -7,
    "big": 123456789012345678901234567890, "nbig": -(2**70),
    "fl": 0.1, "tiny": 5e-324, "huge": 1e300, "negzero": -0.0,
    "nan": float("nan"), "inf": float("inf"), "ninf": float("-inf"),
    "s": "quote\" back\\ nl\n tab\t é 😀 $x {y}", "empty": "",
    "lst": [1, 2.5, None, "x", [True, {"k": float("inf")}]],
    "dct": {"a": {"b": [2**64, -0.0]}, "c": None},
}"#;

#[test]
fn parameters_json_is_injected_exactly_as_papermill_injects_python_values() {
    let sb = Sandbox::new();
    sb.notebook(
        "in.ipynb",
        "python3",
        vec![tagged("x = 0", "parameters"), code("print(x)")],
    );
    // papermill's injected cell for the Python values themselves, and their json.dumps.
    let script = format!(
        "import json, sys, papermill\n\
         params = {PY_VALUES}\n\
         open('params.json', 'w').write(json.dumps(params))\n\
         nb = papermill.execute_notebook('in.ipynb', 'pm.ipynb', parameters=params, prepare_only=True, progress_bar=False)\n\
         cell = [c for c in nb.cells if 'injected-parameters' in c.metadata.get('tags', [])][0]\n\
         print(json.dumps(cell.source))\n"
    );
    let mut py = Command::new(sb.python());
    sb.isolate(&mut py);
    let out = run(py.args(["-c", &script]));
    assert!(out.status.success(), "papermill: {}", stderr(&out));
    // (papermill's notebook holds NaN in its metadata, which is not JSON: take the cell from it.)
    let papermill_cell: String = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        papermill_cell.contains("nan = float('nan')"),
        "{papermill_cell}"
    );

    // From a file.
    let out = run(sb.nbpipe().args([
        "exec",
        "in.ipynb",
        "nb.ipynb",
        "--parameters-json",
        "params.json",
        "--prepare-only",
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(injected_source(&sb.read("nb.ipynb")), papermill_cell);

    // From stdin, executed: the kernel sees the values.
    let json_text = std::fs::read_to_string(sb.path("params.json")).unwrap();
    let mut cmd = sb.nbpipe();
    cmd.args([
        "exec",
        "in.ipynb",
        "run.ipynb",
        "--parameters-json",
        "-",
        "--no-progress-bar",
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(json_text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let nb = sb.read("run.ipynb");
    assert_eq!(injected_source(&nb), papermill_cell);
    sb.assert_no_processes_left();
}

#[test]
fn bad_parameters_json_is_exit_2_naming_the_problem() {
    let sb = Sandbox::new();
    sb.notebook("in.ipynb", "python3", vec![tagged("x = 0", "parameters")]);
    for (what, text, phrase) in [
        ("not JSON", "{'a': 1}", "line 1 column 2"),
        ("not an object", "[1, 2]", "must be a JSON object"),
        ("trailing data", "{\"a\": 1} 2", "extra data"),
    ] {
        std::fs::write(sb.path("p.json"), text).unwrap();
        let out = run(sb.nbpipe().args([
            "exec",
            "in.ipynb",
            "out.ipynb",
            "--parameters-json",
            "p.json",
        ]));
        assert_eq!(out.status.code(), Some(2), "{what}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("--parameters-json p.json") && err.contains(phrase),
            "{what}: {err}"
        );
        assert!(!sb.path("out.ipynb").exists(), "{what}");
    }
    let out = run(sb.nbpipe().args([
        "exec",
        "in.ipynb",
        "out.ipynb",
        "--parameters-json",
        "missing.json",
    ]));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("could not read parameters file `missing.json`"));
}
