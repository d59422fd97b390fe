//! Conformance with papermill: the same notebooks run through papermill 2.7 (from the test
//! environment) and through `nbpipe exec`, and the two output notebooks compared after
//! normalising only what legitimately differs between two runs (timestamps, durations, ids of
//! newly created cells, `metadata.papermill.version`, the working directory in strings).
//!
//! Both tools run from their own sub-directory of the sandbox (`pm/` and `nb/`) with the same
//! relative input and output names, so `metadata.papermill.input_path`/`output_path` and
//! `--inject-paths` values compare equal.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use serde_json::{json, Value};

/// Both tools' results on one notebook.
struct Both {
    pm: Value,
    nb: Value,
    pm_out: Output,
    nb_out: Output,
    /// Cell ids of the input notebook (ids not in it belong to newly created cells).
    input_ids: HashSet<String>,
    /// The two working directories, replaced by `<cwd>` in every string.
    dirs: [PathBuf; 2],
}

impl Both {
    fn pm_ok(&self) -> bool {
        self.pm_out.status.success()
    }

    fn nb_ok(&self) -> bool {
        self.nb_out.status.success()
    }

    fn pm_norm(&self) -> Value {
        normalize(&self.pm, &self.input_ids, &self.dirs)
    }

    fn nb_norm(&self) -> Value {
        normalize(&self.nb, &self.input_ids, &self.dirs)
    }

    /// Both tools succeeded, or both failed (papermill exits 1 on a cell error).
    fn assert_same_exit_class(&self) {
        assert_eq!(
            self.pm_ok(),
            self.nb_ok(),
            "exit status differs: papermill {:?}, nbpipe {:?}\n--- papermill stderr\n{}\n--- nbpipe stderr\n{}",
            self.pm_out.status.code(),
            self.nb_out.status.code(),
            stderr(&self.pm_out),
            stderr(&self.nb_out),
        );
    }

    /// The normalised notebooks are equal; on failure, the first differing path.
    fn assert_same_notebook(&self) {
        assert_same(&self.pm_norm(), &self.nb_norm());
    }

    /// Same exit class and same notebook: the usual full check.
    fn assert_conforms(&self) {
        self.assert_same_exit_class();
        self.assert_same_notebook();
        // Byte-identical injected source (not only equal after JSON parsing).
        let pm_inj = cells_tagged(&self.pm, "injected-parameters");
        let nb_inj = cells_tagged(&self.nb, "injected-parameters");
        assert_eq!(pm_inj.len(), nb_inj.len(), "injected cell count");
        for (a, b) in pm_inj.iter().zip(&nb_inj) {
            assert_eq!(text(&a["source"]), text(&b["source"]), "injected source");
        }
    }

    fn pm_cells(&self) -> &Vec<Value> {
        self.pm["cells"].as_array().unwrap()
    }

    fn nb_cells(&self) -> &Vec<Value> {
        self.nb["cells"].as_array().unwrap()
    }
}

fn papermill(sb: &Sandbox) -> Command {
    let mut c = Command::new(sb.venv.join("bin/papermill"));
    sb.isolate(&mut c);
    c
}

/// Run papermill and nbpipe on `input` (a file in the sandbox root) with the same flags.
/// `files` are copied next to the input for each tool (e.g. a `-f` YAML file).
fn run_both(sb: &Sandbox, input: &str, files: &[&str], args: &[&str]) -> Both {
    run_both_with(sb, input, files, args, args)
}

fn run_both_with(
    sb: &Sandbox,
    input: &str,
    files: &[&str],
    pm_args: &[&str],
    nb_args: &[&str],
) -> Both {
    let pm_dir = sb.path("pm");
    let nb_dir = sb.path("nb");
    for dir in [&pm_dir, &nb_dir] {
        std::fs::create_dir_all(dir).unwrap();
        for f in std::iter::once(&input).chain(files) {
            std::fs::copy(sb.path(f), dir.join(f)).unwrap();
        }
    }
    let mut pm_cmd = papermill(sb);
    pm_cmd
        .current_dir(&pm_dir)
        .args([input, "out.ipynb", "--no-progress-bar"])
        .args(pm_args);
    let mut nb_cmd = sb.nbpipe();
    nb_cmd
        .current_dir(&nb_dir)
        .args(["exec", input, "out.ipynb", "--no-progress-bar"])
        .args(nb_args);
    // Run both at once: each is mostly waiting for its kernel.
    let pm_child = std::thread::spawn(move || run(&mut pm_cmd));
    let nb_out = run(&mut nb_cmd);
    let pm_out = pm_child.join().unwrap();
    let read = |dir: &Path, out: &Output, who: &str| -> Value {
        let text = std::fs::read_to_string(dir.join("out.ipynb")).unwrap_or_else(|e| {
            panic!(
                "{who} wrote no output notebook ({e}); exit {:?}\n{}",
                out.status.code(),
                stderr(out)
            )
        });
        parse_lenient(&text)
    };
    let pm = read(&pm_dir, &pm_out, "papermill");
    let nb = read(&nb_dir, &nb_out, "nbpipe");
    let input_nb = parse_lenient(&std::fs::read_to_string(sb.path(input)).unwrap());
    let input_ids = input_nb["cells"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["id"].as_str().map(str::to_string))
        .collect();
    Both {
        pm,
        nb,
        pm_out,
        nb_out,
        input_ids,
        dirs: [pm_dir, nb_dir],
    }
}

/// Parse JSON as Python's `json` writes it: papermill writes a NaN or infinite parameter as a
/// bare `NaN` / `Infinity` / `-Infinity`, which is not JSON. Those become the strings
/// `"NaN"`, `"Infinity"`, `"-Infinity"`.
fn parse_lenient(text: &str) -> Value {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut in_string = false;
    while let Some(c) = rest.chars().next() {
        if in_string {
            if c == '\\' {
                out.push_str(&rest[..2]);
                rest = &rest[2..];
                continue;
            }
            if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else if let Some(word) = ["NaN", "Infinity", "-Infinity"]
            .into_iter()
            .find(|w| rest.starts_with(w))
        {
            out.push_str(&format!("\"{word}\""));
            rest = &rest[word.len()..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not a notebook: {e}\n{text}"))
}

/// Intentional difference: nbpipe merges consecutive stream outputs of the same name into one
/// (as the issue asks and as Jupyter front ends show them); nbclient keeps one output per
/// message. Merging both sides compares everything else exactly.
fn merge_streams(cell: &mut Value) {
    let Some(outs) = cell.get_mut("outputs").and_then(Value::as_array_mut) else {
        return;
    };
    let mut merged: Vec<Value> = Vec::new();
    for o in outs.drain(..) {
        if let Some(last) = merged.last_mut() {
            if o["output_type"] == "stream"
                && last["output_type"] == "stream"
                && o["name"] == last["name"]
            {
                let joined = text(&last["text"]) + &text(&o["text"]);
                last["text"] = json!(joined);
                continue;
            }
        }
        let mut o = o;
        if o["output_type"] == "stream" {
            o["text"] = json!(text(&o["text"]));
        }
        merged.push(o);
    }
    *outs = merged;
}

/// Replace what legitimately differs between two runs, keeping keys (and null-ness).
fn normalize(nb: &Value, input_ids: &HashSet<String>, dirs: &[PathBuf; 2]) -> Value {
    let mut nb = nb.clone();
    let placeholder = |v: &mut Value, what: &str| {
        if !v.is_null() {
            *v = json!(format!("<{what}>"));
        }
    };
    if let Some(pm) = nb["metadata"]
        .get_mut("papermill")
        .and_then(Value::as_object_mut)
    {
        for key in ["start_time", "end_time", "duration"] {
            if let Some(v) = pm.get_mut(key) {
                placeholder(v, key);
            }
        }
        if let Some(v) = pm.get_mut("version") {
            placeholder(v, "version");
        }
    }
    for cell in nb["cells"].as_array_mut().unwrap() {
        merge_streams(cell);
        if let Some(id) = cell.get_mut("id") {
            if !id.as_str().is_some_and(|s| input_ids.contains(s)) {
                placeholder(id, "new-id");
            }
        }
        let meta = &mut cell["metadata"];
        if let Some(exec) = meta.get_mut("execution").and_then(Value::as_object_mut) {
            for v in exec.values_mut() {
                placeholder(v, "timestamp");
            }
        }
        if let Some(pm) = meta.get_mut("papermill").and_then(Value::as_object_mut) {
            for key in ["start_time", "end_time", "duration"] {
                if let Some(v) = pm.get_mut(key) {
                    placeholder(v, key);
                }
            }
        }
    }
    let dirs: Vec<String> = dirs
        .iter()
        .map(|d| d.to_string_lossy().into_owned())
        .collect();
    replace_strings(&mut nb, &|s: &str| {
        let mut s = s.to_string();
        for d in &dirs {
            s = s.replace(d.as_str(), "<cwd>");
        }
        s
    });
    nb
}

fn replace_strings(v: &mut Value, f: &dyn Fn(&str) -> String) {
    match v {
        Value::String(s) => *s = f(s),
        Value::Array(a) => a.iter_mut().for_each(|x| replace_strings(x, f)),
        Value::Object(m) => m.values_mut().for_each(|x| replace_strings(x, f)),
        _ => {}
    }
}

/// The first path where `a` (papermill) and `b` (nbpipe) differ, with both values.
fn first_diff(a: &Value, b: &Value, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                match (x.get(k), y.get(k)) {
                    (Some(va), Some(vb)) => {
                        if let Some(d) = first_diff(va, vb, &format!("{path}.{k}")) {
                            return Some(d);
                        }
                    }
                    (Some(va), None) => {
                        return Some(format!("{path}.{k}: only papermill has it: {}", short(va)))
                    }
                    (None, Some(vb)) => {
                        return Some(format!("{path}.{k}: only nbpipe has it: {}", short(vb)))
                    }
                    (None, None) => unreachable!(),
                }
            }
            None
        }
        (Value::Array(x), Value::Array(y)) => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                if let Some(d) = first_diff(va, vb, &format!("{path}[{i}]")) {
                    let note = if x.len() != y.len() {
                        format!(
                            " (and {path} has {} items in papermill, {} in nbpipe)",
                            x.len(),
                            y.len()
                        )
                    } else {
                        String::new()
                    };
                    return Some(d + &note);
                }
            }
            if x.len() != y.len() {
                let extra = if x.len() > y.len() {
                    format!("papermill's extra: {}", short(&x[y.len()]))
                } else {
                    format!("nbpipe's extra: {}", short(&y[x.len()]))
                };
                return Some(format!(
                    "{path}: {} items in papermill, {} in nbpipe; {extra}",
                    x.len(),
                    y.len()
                ));
            }
            None
        }
        _ if a == b => None,
        _ => Some(format!(
            "{path}:\n  papermill: {}\n  nbpipe:    {}",
            short(a),
            short(b)
        )),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 600 {
        s.chars().take(600).collect::<String>() + "…"
    } else {
        s
    }
}

fn assert_same(pm: &Value, nb: &Value) {
    if let Some(d) = first_diff(pm, nb, "$") {
        panic!("papermill and nbpipe output notebooks differ at {d}");
    }
}

fn cell_types(cells: &[Value]) -> Vec<&str> {
    cells
        .iter()
        .map(|c| c["cell_type"].as_str().unwrap_or("?"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------------

const SHOW: &str = "for _k in sorted(k for k in dir() if not k.startswith('_') and k not in ('In', 'Out', 'exit', 'quit', 'get_ipython', 'open')):\n    print(_k, type(globals()[_k]).__name__, repr(globals()[_k]))";

#[test]
fn p_parameters_of_every_type() {
    let sb = Sandbox::new();
    sb.notebook(
        "in.ipynb",
        "python3",
        vec![
            md("# Params"),
            tagged(
                "i = 0\nf = 0.0\nexp = 0.0\nb = False\nn = 'x'\ns = 'default'\nu = ''",
                "parameters",
            ),
            code(SHOW),
        ],
    );
    let both = run_both(
        &sb,
        "in.ipynb",
        &[],
        &[
            "-p",
            "i",
            "42",
            "-p",
            "f",
            "3.5",
            "-p",
            "exp",
            "1e3",
            "-p",
            "zero_f",
            "0.0",
            "-p",
            "b",
            "True",
            "-p",
            "n",
            "None",
            "-p",
            "s",
            "it's \"quoted\" \\ back\\slash \\n not a newline",
            "-p",
            "u",
            "line1\nline2\ttab ünïcødé ✓ 🎉",
        ],
    );
    assert!(both.pm_ok(), "{}", stderr(&both.pm_out));
    both.assert_conforms();
    assert_eq!(both.nb["metadata"]["papermill"]["parameters"]["i"], 42);
}

#[test]
fn p_parameters_with_unusual_numbers() {
    let sb = Sandbox::new();
    sb.notebook(
        "in.ipynb",
        "python3",
        vec![tagged("a = 1", "parameters"), code(SHOW)],
    );
    let both = run_both(
        &sb,
        "in.ipynb",
        &[],
        &[
            "-p",
            "under",
            "1_000",
            "-p",
            "plus",
            "+5",
            "-p",
            "spaced",
            " 12 ",
            "-p",
            "tiny",
            "1e-300",
            "-p",
            "lower_true",
            "true",
            "-p",
            "empty",
            "",
            "-p",
            "hexs",
            "0x10",
            "-p",
            "uf",
            "1_0.5",
            "-p",
            "a",
            "2",
            "-p",
            "a",
            "3",
        ],
    );
    assert!(both.pm_ok(), "{}", stderr(&both.pm_out));
    both.assert_conforms();
}

#[test]
fn p_parameter_with_negative_value() {
    let sb = Sandbox::new();
    sb.notebook(
        "in.ipynb",
        "python3",
        vec![tagged("neg = 0", "parameters"), code(SHOW)],
    );
    let both = run_both(
        &sb,
        "in.ipynb",
        &[],
        &["-p", "neg", "-7", "-p", "negf", "-0.5", "-r", "dash", "-x"],
    );
    assert!(both.pm_ok(), "{}", stderr(&both.pm_out));
    both.assert_conforms();
}

#[test]
#[ignore = "nbpipe differs: metadata.papermill.parameters records NaN/inf as null, papermill writes bare NaN/Infinity (invalid JSON)"]
fn p_parameters_nan_and_infinity() {
    let sb = Sandbox::new();
    sb.notebook(
        "in.ipynb",
        "python3",
        vec![tagged("a = 1", "parameters"), code(SHOW)],
    );
    let both = run_both(
        &sb,
        "in.ipynb",
        &[],
        &[
            "-p", "nan", "nan", "-p", "inf", "inf", "-p", "infinity", "Infinity",
        ],
    );
    assert!(both.pm_ok(), "{}", stderr(&both.pm_out));
    both.assert_conforms();
}

#[test]
#[ignore = "nbpipe differs: metadata.papermill.parameters records an int beyond 64 bits as a string, papermill as a JSON number"]
fn p_parameter_big_integer() {
    let sb = Sandbox::new();
    sb.notebook(
        "in.ipynb",
        "python3",
        vec![tagged("a = 1", "parameters"), code(SHOW)],
    );
    let both = run_both(
        &sb,
        "in.ipynb",
        &[],
        &["-p", "big", "123456789012345678901234567890"],
    );
    assert!(both.pm_ok(), "{}", stderr(&both.pm_out));
    both.assert_conforms();
}

#[test]
fn yaml_string_and_file_parameters_nested() {
    let sb = Sandbox::new();
    sb.notebook(
        "in.ipynb",
        "python3",
        vec![
            tagged("cfg = {}\nitems = []\nname = ''", "parameters"),
            code(SHOW),
        ],
    );
    std::fs::write(
        sb.path("params.yaml"),
        "cfg:\n  db: {host: localhost, port: 5432, opts: [a, b, {c: 1.5}]}\n  enabled: true\n  nothing: null\nitems: [1, two, 3.0, [4, 5], {six: 6}]\nname: from-file\nday: 2024-05-01\nquoted: \"it's \\\"q\\\"\"\n",
    )
    .unwrap();
    let both = run_both(
        &sb,
        "in.ipynb",
        &["params.yaml"],
        &[
            "-f",
            "params.yaml",
            "-y",
            "name: from-yaml\nextra:\n  - {k: v, n: [1, 2]}\n  - ünï\nwhen: 2024-01-02T03:04:05",
        ],
    );
    assert!(both.pm_ok(), "{}", stderr(&both.pm_out));
    both.assert_conforms();
}

#[test]
fn raw_parameters_stay_strings_and_override_p() {
    let sb = Sandbox::new();
    sb.notebook(
        "in.ipynb",
        "python3",
        vec![tagged("n = 0\nm = 0", "parameters"), code(SHOW)],
    );
    let both = run_both(
        &sb,
        "in.ipynb",
        &[],
        &[
            "-r", "n", "42", "-p", "n", "1", "-r", "m", "True", "-r", "s", "a'b\"c",
        ],
    );
    assert!(both.pm_ok(), "{}", stderr(&both.pm_out));
    both.assert_conforms();
}

#[test]
fn inject_paths_adds_input_and_output_path() {
    let sb = Sandbox::new();
    sb.notebook(
        "in.ipynb",
        "python3",
        vec![tagged("x = 1", "parameters"), code(SHOW)],
    );
    let both = run_both(&sb, "in.ipynb", &[], &["--inject-paths", "-p", "x", "2"]);
    assert!(both.pm_ok(), "{}", stderr(&both.pm_out));
    both.assert_conforms();
    let both = run_both(&sb, "in.ipynb", &[], &["--inject-output-path"]);
    both.assert_conforms();
}

#[test]
fn no_parameters_cell_injects_at_top_with_warning() {
    let sb = Sandbox::new();
    sb.notebook("in.ipynb", "python3", vec![md("intro"), code("print(x)")]);
    let both = run_both(&sb, "in.ipynb", &[], &["-p", "x", "hello"]);
    assert!(both.pm_ok(), "{}", stderr(&both.pm_out));
    both.assert_conforms();
    assert_eq!(
        both.nb_cells()[0]["metadata"]["tags"],
        json!(["injected-parameters"])
    );
    let warning = "Input notebook does not contain a cell with tag 'parameters'";
    assert!(
        stderr(&both.pm_out).contains(warning),
        "{}",
        stderr(&both.pm_out)
    );
    assert!(
        stderr(&both.nb_out).contains(warning),
        "{}",
        stderr(&both.nb_out)
    );
}

#[test]
fn existing_injected_cell_is_replaced() {
    let sb = Sandbox::new();
    let mut old = tagged("# Parameters\nx = 'old'\n", "injected-parameters");
    old["outputs"] = json!([{"output_type": "stream", "name": "stdout", "text": "stale\n"}]);
    old["execution_count"] = json!(7);
    sb.notebook(
        "in.ipynb",
        "python3",
        vec![
            tagged("x = 'default'", "parameters"),
            code("print('between')"),
            old,
            code("print(x)"),
        ],
    );
    let both = run_both(&sb, "in.ipynb", &[], &["-p", "x", "new"]);
    assert!(both.pm_ok(), "{}", stderr(&both.pm_out));
    both.assert_conforms();
    assert_eq!(both.nb_cells().len(), 4);
}

#[test]
fn parameters_cell_in_the_middle_and_unknown_parameter() {
    let sb = Sandbox::new();
    sb.notebook(
        "in.ipynb",
        "python3",
        vec![
            code("import math"),
            tagged("alpha = 0.5  # the alpha\nbeta: int = 3", "parameters"),
            code("print(alpha, beta, gamma)"),
        ],
    );
    let both = run_both(
        &sb,
        "in.ipynb",
        &[],
        &["-p", "alpha", "0.1", "-p", "gamma", "x"],
    );
    assert!(both.pm_ok(), "{}", stderr(&both.pm_out));
    both.assert_conforms();
}

// ---------------------------------------------------------------------------------------------
// Failures and exits
// ---------------------------------------------------------------------------------------------

#[test]
fn failing_cell_gets_banners_and_pending_cells() {
    let sb = Sandbox::new();
    sb.notebook(
        "in.ipynb",
        "python3",
        vec![
            md("# Title"),
            code("x = 1\nprint('ok')"),
            code(
                "def f():\n    raise ValueError('boom \\u00fc')\nprint('before', flush=True)\nf()",
            ),
            code("print('never')"),
            md("after"),
        ],
    );
    let both = run_both(&sb, "in.ipynb", &[], &[]);
    assert_eq!(
        both.pm_out.status.code(),
        Some(1),
        "{}",
        stderr(&both.pm_out)
    );
    assert_eq!(
        both.nb_out.status.code(),
        Some(1),
        "{}",
        stderr(&both.nb_out)
    );
    both.assert_conforms();
    let banners = cells_tagged(&both.nb, "papermill-error-cell-tag");
    assert_eq!(banners.len(), 2);
}

#[test]
fn sys_exit_nonzero_fails_like_an_exception() {
    let sb = Sandbox::new();
    sb.notebook(
        "in.ipynb",
        "python3",
        vec![code("import sys\nsys.exit(3)"), code("print('never')")],
    );
    let both = run_both(&sb, "in.ipynb", &[], &[]);
    assert!(!both.pm_ok());
    both.assert_conforms();
}

#[test]
fn sys_exit_zero_stops_cleanly() {
    let sb = Sandbox::new();
    sb.notebook(
        "in.ipynb",
        "python3",
        vec![
            code("print('one')"),
            code("import sys\nprint('before')\nsys.exit(0)"),
            code("print('after')"),
        ],
    );
    let both = run_both(&sb, "in.ipynb", &[], &[]);
    both.assert_same_exit_class();
    assert!(both.nb_ok(), "{}", stderr(&both.nb_out));
    // Known, intentional difference: papermill records the SystemExit cell as failed (status
    // "failed", exception true, and the notebook's exception true) although it exits 0 and
    // adds no banner; nbpipe records it as "completed" because the run ended cleanly.
    let pm_cell = &both.pm_cells()[1]["metadata"]["papermill"];
    let nb_cell = &both.nb_cells()[1]["metadata"]["papermill"];
    assert_eq!(pm_cell["status"], "failed");
    assert_eq!(pm_cell["exception"], true);
    assert_eq!(nb_cell["status"], "completed");
    assert_eq!(nb_cell["exception"], false);
    // Everything else is papermill's.
    let mut pm = both.pm_norm();
    let nb = both.nb_norm();
    pm["cells"][1]["metadata"]["papermill"] = nb["cells"][1]["metadata"]["papermill"].clone();
    pm["metadata"]["papermill"]["exception"] = nb["metadata"]["papermill"]["exception"].clone();
    assert_same(&pm, &nb);
    assert!(cells_tagged(&both.nb, "papermill-error-cell-tag").is_empty());
}

/// Intentional difference: a cell tagged `raises-exception` is expected to raise (nbclient's
/// meaning). Both tools run on past it; papermill then fails the run anyway because its final
/// scan sees the error output, nbpipe honours the tag and succeeds without banners.
#[test]
fn raises_exception_tag_lets_the_run_continue_and_succeed() {
    let sb = Sandbox::new();
    sb.notebook(
        "in.ipynb",
        "python3",
        vec![
            tagged("raise KeyError('expected')", "raises-exception"),
            code("print('continued')"),
        ],
    );
    let both = run_both(&sb, "in.ipynb", &[], &[]);
    assert_eq!(
        both.pm_out.status.code(),
        Some(1),
        "papermill's behaviour changed"
    );
    assert!(both.nb_out.status.success(), "{}", stderr(&both.nb_out));
    assert!(cells_tagged(&both.nb, "papermill-error-cell-tag").is_empty());
    let cells = both.nb["cells"].as_array().unwrap();
    assert_eq!(cells[0]["outputs"][0]["ename"], "KeyError");
    assert_eq!(stream(&cells[1], "stdout"), "continued\n");
    // Papermill ran the second cell too: only the verdict differs.
    assert!(both.pm["cells"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| stream(c, "stdout") == "continued\n"));
}

// ---------------------------------------------------------------------------------------------
// Outputs
// ---------------------------------------------------------------------------------------------

#[test]
fn rich_outputs_are_recorded_identically() {
    let sb = Sandbox::new();
    // A 1x1 PNG.
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
    sb.notebook(
        "in.ipynb",
        "python3",
        vec![
            code("from IPython.display import display, clear_output, Image, HTML, Markdown\nimport base64, sys, time"),
            code("h = display('first', display_id=True)\ndisplay(HTML('<b>other</b>'))\nh.update('updated')"),
            code("h2 = display(Markdown('*md*'), display_id='fixed-id')\nprint('mid')\nh2.update(Markdown('**md2**'))"),
            code("for i in range(5):\n    clear_output(wait=True)\n    print(f'tick {i}')\ndisplay('final')"),
            code("print('will vanish')\nclear_output()\nprint('after clear')"),
            code("{'a': [1, 2, 3], 'b': 'x' * 3}"),
            code(&format!("Image(data=base64.b64decode('{png}'))")),
            code(&format!("display(Image(data=base64.b64decode('{png}'), width=10))\n42")),
            code("print('out 1', flush=True)\ntime.sleep(0.2)\nprint('err 1', file=sys.stderr, flush=True)\ntime.sleep(0.2)\nprint('out 2', flush=True)\ntime.sleep(0.2)\nprint('err 2', file=sys.stderr, flush=True)"),
            code("display({'application/json': {'k': [1, None, True]}, 'text/plain': 'j'}, raw=True, metadata={'application/json': {'expanded': False}})"),
            code("x = 5\nx;"),
            code("h.update('updated again from a later cell')"),
        ],
    );
    let both = run_both(&sb, "in.ipynb", &[], &[]);
    assert!(both.pm_ok(), "{}", stderr(&both.pm_out));
    both.assert_conforms();
}

#[test]
fn separate_stream_messages_merge_into_one_output() {
    let sb = Sandbox::new();
    sb.notebook(
        "in.ipynb",
        "python3",
        vec![code(
            "import time\nprint('a', flush=True)\ntime.sleep(0.3)\nprint('b', flush=True)\ntime.sleep(0.3)\nprint('c', end='', flush=True)",
        )],
    );
    let both = run_both(&sb, "in.ipynb", &[], &[]);
    assert!(both.pm_ok(), "{}", stderr(&both.pm_out));
    both.assert_conforms();
    // papermill keeps three outputs; nbpipe merges them into one (the intentional difference).
    let outs = both.nb["cells"][0]["outputs"].as_array().unwrap();
    assert_eq!(outs.len(), 1, "{outs:?}");
    assert_eq!(text(&outs[0]["text"]), "a\nb\nc");
}

#[test]
fn markdown_raw_and_empty_cells() {
    let sb = Sandbox::new();
    let mut raw = json!({"cell_type": "raw", "id": "raw00001", "metadata": {"format": "text/x-rst"}, "source": "raw *text*\n.. rst::"});
    raw["metadata"]["custom"] = json!({"keep": [1]});
    let mut attached = md("![img](attachment:a.png)");
    attached["attachments"] = json!({"a.png": {"image/png": "iVBORw0KGgo="}});
    sb.notebook(
        "in.ipynb",
        "python3",
        vec![
            md("# Heading\n\nsome *text*"),
            raw,
            code(""),
            code("   \n\n"),
            code("1 + 1"),
            attached,
            code("# only a comment"),
            code("2 + 2"),
        ],
    );
    let both = run_both(&sb, "in.ipynb", &[], &[]);
    assert!(both.pm_ok(), "{}", stderr(&both.pm_out));
    both.assert_conforms();
    assert_eq!(
        cell_types(both.nb_cells()),
        ["markdown", "raw", "code", "code", "code", "markdown", "code", "code"]
    );
}

#[test]
fn skip_execution_tag_is_not_run() {
    // nbclient skips cells tagged `skip-execution` (its `skip_cells_with_tag` default); the
    // cell keeps its old outputs and papermill still stamps it completed.
    let sb = Sandbox::new();
    let mut skipped = tagged(
        "print('skipped')\nraise SystemError('must not run')",
        "skip-execution",
    );
    skipped["outputs"] =
        json!([{"output_type": "stream", "name": "stdout", "text": "old output\n"}]);
    skipped["execution_count"] = json!(9);
    sb.notebook(
        "in.ipynb",
        "python3",
        vec![code("print(1)"), skipped, code("print(2)")],
    );
    let both = run_both(&sb, "in.ipynb", &[], &[]);
    assert!(both.pm_ok(), "{}", stderr(&both.pm_out));
    both.assert_conforms();
}

#[test]
fn stale_outputs_and_execution_counts_are_replaced() {
    let sb = Sandbox::new();
    let mut c1 = code("print('fresh')");
    c1["outputs"] = json!([{"output_type": "stream", "name": "stdout", "text": "stale\n"}]);
    c1["execution_count"] = json!(41);
    c1["metadata"]["execution"] = json!({"iopub.status.busy": "2020-01-01T00:00:00.000000Z"});
    c1["metadata"]["papermill"] = json!({"status": "failed", "exception": true});
    c1["metadata"]["collapsed"] = json!(true);
    let mut c2 = code("");
    c2["outputs"] =
        json!([{"output_type": "stream", "name": "stdout", "text": "stale on empty\n"}]);
    c2["execution_count"] = json!(42);
    sb.notebook("in.ipynb", "python3", vec![c1, c2]);
    let both = run_both(&sb, "in.ipynb", &[], &[]);
    assert!(both.pm_ok(), "{}", stderr(&both.pm_out));
    both.assert_conforms();
}

// ---------------------------------------------------------------------------------------------
// Modes and formats
// ---------------------------------------------------------------------------------------------

#[test]
fn report_mode_hides_inputs() {
    let sb = Sandbox::new();
    sb.notebook(
        "in.ipynb",
        "python3",
        vec![md("text"), tagged("x = 1", "parameters"), code("print(x)")],
    );
    let both = run_both(&sb, "in.ipynb", &[], &["--report-mode", "-p", "x", "3"]);
    assert!(both.pm_ok(), "{}", stderr(&both.pm_out));
    both.assert_conforms();
}

#[test]
fn prepare_only_writes_without_running() {
    let sb = Sandbox::new();
    let mut c = code("print(x)");
    c["outputs"] = json!([{"output_type": "stream", "name": "stdout", "text": "old\n"}]);
    c["execution_count"] = json!(3);
    sb.notebook(
        "in.ipynb",
        "python3",
        vec![tagged("x = 1", "parameters"), c, md("end")],
    );
    let both = run_both(&sb, "in.ipynb", &[], &["--prepare-only", "-p", "x", "2"]);
    assert!(both.pm_ok(), "{}", stderr(&both.pm_out));
    both.assert_conforms();
}

#[test]
fn v4_4_input_is_upgraded_to_4_5() {
    let sb = Sandbox::new();
    let nb = json!({
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": ["# Old\n", "format"]},
            {"cell_type": "code", "execution_count": null, "metadata": {"tags": ["parameters"]}, "outputs": [], "source": ["x = 1"]},
            {"cell_type": "code", "execution_count": null, "metadata": {}, "outputs": [], "source": ["print(x)\n", "x * 2"]}
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 4
    });
    std::fs::write(
        sb.path("in.ipynb"),
        serde_json::to_string_pretty(&nb).unwrap(),
    )
    .unwrap();
    let both = run_both(&sb, "in.ipynb", &[], &["-p", "x", "21"]);
    assert!(both.pm_ok(), "{}", stderr(&both.pm_out));
    both.assert_conforms();
    assert_eq!(both.nb["nbformat_minor"], 5);
    for c in both.nb_cells() {
        assert!(c["id"].is_string(), "{c}");
    }
}

#[test]
fn bash_kernel_notebook() {
    let sb = Sandbox::new();
    sb.notebook(
        "in.ipynb",
        "bash",
        vec![
            tagged("name=default\ncount=1", "parameters"),
            code("echo \"hello $name\"\necho \"$count\""),
            md("md"),
            code("for i in 1 2 3; do echo line $i; done"),
            code("echo to-stderr >&2"),
        ],
    );
    let both = run_both(
        &sb,
        "in.ipynb",
        &[],
        &[
            "-p",
            "name",
            "it's \"me\" $HOME",
            "-p",
            "count",
            "3",
            "-p",
            "flag",
            "True",
        ],
    );
    assert!(both.pm_ok(), "{}", stderr(&both.pm_out));
    both.assert_conforms();
}

#[test]
fn bash_kernel_failing_cell() {
    let sb = Sandbox::new();
    sb.notebook(
        "in.ipynb",
        "bash",
        vec![code("echo ok"), code("false"), code("echo after")],
    );
    let both = run_both(&sb, "in.ipynb", &[], &[]);
    both.assert_conforms();
}

#[test]
fn base64_yaml_and_p_precedence() {
    let sb = Sandbox::new();
    sb.notebook(
        "in.ipynb",
        "python3",
        vec![
            tagged("a = 0\nb = 0\nc = 0\nd = 0", "parameters"),
            code(SHOW),
        ],
    );
    // base64 of "a: from-b64\nb: from-b64\nc: from-b64\nd: [1, {x: y}]\n"
    let b64 = "YTogZnJvbS1iNjQKYjogZnJvbS1iNjQKYzogZnJvbS1iNjQKZDogWzEsIHt4OiB5fV0K";
    let both = run_both(
        &sb,
        "in.ipynb",
        &[],
        &[
            "-b",
            b64,
            "-y",
            "b: from-yaml\nc: from-yaml",
            "-p",
            "c",
            "from-p",
        ],
    );
    assert!(both.pm_ok(), "{}", stderr(&both.pm_out));
    both.assert_conforms();
}

#[test]
fn rerun_of_a_failed_output_notebook() {
    // papermill's own failed output (banners, injected cell, metadata.papermill, outputs) fed
    // back to both tools after fixing the error.
    let sb = Sandbox::new();
    sb.notebook(
        "first.ipynb",
        "python3",
        vec![
            tagged("x = 1", "parameters"),
            code("raise RuntimeError('first run')"),
            code("print(x)"),
        ],
    );
    let mut pm = papermill(&sb);
    pm.args([
        "first.ipynb",
        "failed.ipynb",
        "--no-progress-bar",
        "-p",
        "x",
        "5",
    ]);
    let out = run(&mut pm);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let fixed = std::fs::read_to_string(sb.path("failed.ipynb"))
        .unwrap()
        .replace("raise RuntimeError('first run')", "print('fixed')");
    std::fs::write(sb.path("in.ipynb"), fixed).unwrap();
    let both = run_both(&sb, "in.ipynb", &[], &["-p", "x", "6"]);
    assert!(both.pm_ok(), "{}", stderr(&both.pm_out));
    both.assert_conforms();
    assert!(cells_tagged(&both.nb, "papermill-error-cell-tag").is_empty());
}

#[test]
fn notebook_without_kernelspec_run_with_k() {
    let sb = Sandbox::new();
    let nb = json!({
        "cells": [code("import sys\nprint(sys.version_info[0])")],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5
    });
    std::fs::write(sb.path("in.ipynb"), nb.to_string()).unwrap();
    let both = run_both(
        &sb,
        "in.ipynb",
        &[],
        &["-k", "python3", "-l", "python", "-p", "y", "1"],
    );
    assert!(both.pm_ok(), "{}", stderr(&both.pm_out));
    both.assert_conforms();
}

#[test]
fn ansi_and_unicode_outputs() {
    let sb = Sandbox::new();
    sb.notebook(
        "in.ipynb",
        "python3",
        vec![
            code("print('\\x1b[31mred\\x1b[0m ünïcødé ✓ 🎉\\r\\noverwritten\\rdone')"),
            code("'\\u00e9' * 3"),
            code("from IPython.display import display\ndisplay({'text/plain': 'p', 'text/html': '<p>é</p>', 'text/latex': '$x$', 'image/svg+xml': '<svg xmlns=\"http://www.w3.org/2000/svg\"/>'}, raw=True)"),
        ],
    );
    let both = run_both(&sb, "in.ipynb", &[], &[]);
    assert!(both.pm_ok(), "{}", stderr(&both.pm_out));
    both.assert_conforms();
}
