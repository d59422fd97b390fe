//! Managed environments, kernel selection and interrupt modes, log streaming, older formats.

mod common;

use common::*;
use serde_json::{json, Value};

fn cells(nb: &Value) -> &Vec<Value> {
    nb["cells"].as_array().unwrap()
}

#[test]
fn exec_uses_nearest_managed_environment_unless_kernel_is_named() {
    let sb = Sandbox::new();
    let project = sb.path("project");
    std::fs::create_dir_all(project.join("sub")).unwrap();
    // A package the test kernels do not have (the test venv pulls in `six` via boto3).
    std::fs::write(project.join("requirements.txt"), "tomli-w\n").unwrap();
    sb.notebook(
        "project/sub/nb.ipynb",
        "python3",
        vec![code("import sys, tomli_w\nprint(sys.executable)")],
    );
    let out = run(sb.nbpipe().args(["env", "project", "--quiet"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(project.join(".nbpipe/env.json").exists());

    // The notebook two levels down finds the project's environment.
    let out = run(sb
        .nbpipe()
        .args(["exec", "project/sub/nb.ipynb", "out.ipynb"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let exe = stream(&cells(&sb.read("out.ipynb"))[0], "stdout");
    // (A venv's python is a symlink to the base interpreter: compare the path as reported.)
    let home = sb.path(".nbpipe-home");
    assert!(
        std::path::Path::new(exe.trim()).starts_with(&home),
        "{exe} not under {}",
        home.display()
    );

    // `-k` wins over the managed environment (and this kernel has no `tomli_w`).
    let out = run(sb.nbpipe().args([
        "exec",
        "project/sub/nb.ipynb",
        "out2.ipynb",
        "-k",
        "python3",
    ]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let nb = sb.read("out2.ipynb");
    assert_eq!(cells(&nb)[2]["outputs"][0]["ename"], "ModuleNotFoundError");

    // A second `nbpipe env` reuses the environment.
    let before = std::fs::read_to_string(project.join(".nbpipe/env.json")).unwrap();
    let out = run(sb.nbpipe().args(["env", "project", "--quiet"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let after = std::fs::read_to_string(project.join(".nbpipe/env.json")).unwrap();
    let path = |s: &str| serde_json::from_str::<Value>(s).unwrap()["env_path"].clone();
    assert_eq!(path(&before), path(&after));
    sb.assert_no_processes_left();
}

/// A kernelspec with `interrupt_mode: message` is interrupted over the control channel.
#[test]
fn timeout_interrupts_message_mode_kernels_over_control_channel() {
    let sb = Sandbox::new();
    let kdir = sb.path("kernels/share/jupyter/kernels/pymsg");
    std::fs::create_dir_all(&kdir).unwrap();
    let spec = json!({
        "argv": [sb.python(), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python (message interrupts)",
        "language": "python",
        "interrupt_mode": "message"
    });
    std::fs::write(kdir.join("kernel.json"), spec.to_string()).unwrap();
    sb.notebook(
        "in.ipynb",
        "pymsg",
        vec![
            code("import time\nprint('sleeping', flush=True)\ntime.sleep(600)"),
            code("print('never')"),
        ],
    );
    let out = run(sb
        .nbpipe()
        .env("JUPYTER_PATH", sb.path("kernels/share/jupyter"))
        .args(["exec", "in.ipynb", "out.ipynb", "--execution-timeout", "2"]));
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let nb = sb.read("out.ipynb");
    let enames: Vec<&str> = cells(&nb)[2]["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["ename"].as_str())
        .collect();
    // The kernel itself raised KeyboardInterrupt: the interrupt reached it.
    assert!(enames.contains(&"KeyboardInterrupt"), "{enames:?}");
    assert!(enames.contains(&"CellTimeoutError"), "{enames:?}");
    sb.assert_no_processes_left();
}

#[test]
fn log_output_and_stream_files_get_cell_output() {
    let sb = Sandbox::new();
    sb.notebook(
        "in.ipynb",
        "python3",
        vec![code(
            "import sys\nprint('to-stdout')\nprint('to-stderr', file=sys.stderr)",
        )],
    );
    let out = run(sb.nbpipe().args([
        "exec",
        "in.ipynb",
        "out.ipynb",
        "--log-output",
        "--stdout-file",
        "so.txt",
        "--stderr-file",
        "se.txt",
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("to-stdout") && err.contains("to-stderr"),
        "{err}"
    );
    assert!(err.contains("Executing Cell 1"), "{err}");
    assert_eq!(
        std::fs::read_to_string(sb.path("so.txt")).unwrap(),
        "to-stdout\n"
    );
    assert_eq!(
        std::fs::read_to_string(sb.path("se.txt")).unwrap(),
        "to-stderr\n"
    );
}

#[test]
fn v3_and_v4_0_notebooks_run_and_come_out_as_v4_5() {
    let sb = Sandbox::new();
    let v3 = json!({
        "nbformat": 3, "nbformat_minor": 0,
        "metadata": {"name": "old", "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "worksheets": [{"cells": [
            {"cell_type": "heading", "level": 2, "metadata": {}, "source": "Old"},
            {"cell_type": "code", "language": "python", "input": "print('v3 ok')", "metadata": {}, "outputs": [], "prompt_number": 7}
        ], "metadata": {}}]
    });
    std::fs::write(sb.path("v3.ipynb"), v3.to_string()).unwrap();
    let out = run(sb.nbpipe().args(["exec", "v3.ipynb", "v3-out.ipynb"]));
    assert!(out.status.success(), "{}", stderr(&out));
    sb.assert_valid("v3-out.ipynb");
    let nb = sb.read("v3-out.ipynb");
    assert_eq!(
        (nb["nbformat"].as_u64(), nb["nbformat_minor"].as_u64()),
        (Some(4), Some(5))
    );
    assert_eq!(text(&cells(&nb)[0]["source"]), "## Old");
    assert_eq!(stream(&cells(&nb)[1], "stdout"), "v3 ok\n");

    let v40 = json!({
        "nbformat": 4, "nbformat_minor": 0,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "cells": [{"cell_type": "code", "metadata": {}, "source": "print('v4.0 ok')", "outputs": [], "execution_count": null}]
    });
    std::fs::write(sb.path("v40.ipynb"), v40.to_string()).unwrap();
    let out = run(sb.nbpipe().args(["exec", "v40.ipynb", "v40-out.ipynb"]));
    assert!(out.status.success(), "{}", stderr(&out));
    sb.assert_valid("v40-out.ipynb");
    let nb = sb.read("v40-out.ipynb");
    assert_eq!(nb["nbformat_minor"], 5);
    assert!(cells(&nb)[0]["id"].is_string());
    assert_eq!(stream(&cells(&nb)[0], "stdout"), "v4.0 ok\n");
}

#[test]
fn clear_output_wait_and_many_outputs_are_recorded_like_nbclient() {
    let sb = Sandbox::new();
    sb.notebook(
        "in.ipynb",
        "python3",
        vec![code(
            "from IPython.display import clear_output, display\nfor i in range(50):\n    clear_output(wait=True)\n    display(f'step {i}')\nprint('a')\nprint('b')",
        )],
    );
    let out = run(sb.nbpipe().args(["exec", "in.ipynb", "out.ipynb"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let nb = sb.read("out.ipynb");
    let outs = cells(&nb)[0]["outputs"].as_array().unwrap();
    assert_eq!(outs.len(), 2, "{outs:?}");
    assert_eq!(text(&outs[0]["data"]["text/plain"]), "'step 49'");
    // Consecutive stream messages are merged into one output.
    assert_eq!(text(&outs[1]["text"]), "a\nb\n");
}

/// The bar is drawn on a terminal (a pseudo-terminal from util-linux `script`), never into logs.
#[test]
fn progress_bar_only_on_a_terminal() {
    let sb = Sandbox::new();
    sb.notebook("in.ipynb", "python3", vec![code("x = 1"), code("y = 2")]);
    let out = run(sb.nbpipe().args(["exec", "in.ipynb", "out.ipynb"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("cells"), "{}", stderr(&out));

    let cmd = format!(
        "{} exec in.ipynb out-tty.ipynb",
        env!("CARGO_BIN_EXE_nbpipe")
    );
    let mut script = std::process::Command::new("script");
    sb.isolate(&mut script);
    let out = run(script.args(["-qec", &cmd, "/dev/null"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(screen.contains("2/2 cells"), "{screen}");
    assert!(sb.path("out-tty.ipynb").exists());
}
