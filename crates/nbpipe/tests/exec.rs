//! End-to-end runs of `nbpipe exec` against real ipykernel and bash_kernel.

mod common;

use common::*;
use serde_json::{json, Value};

fn cells(nb: &Value) -> &Vec<Value> {
    nb["cells"].as_array().unwrap()
}

#[test]
fn runs_notebook_injects_parameters_and_records_outputs() {
    let sb = Sandbox::new();
    sb.notebook(
        "in.ipynb",
        "python3",
        vec![
            md("# Title"),
            tagged("a = 1\nb = 'x'", "parameters"),
            code("print(a)\nprint(b)\nimport sys; print('err', file=sys.stderr)\na * 2"),
            code(""),
            code("from IPython.display import display\nh = display('x', display_id=True)\nh.update('y')"),
        ],
    );
    let out = run(sb.nbpipe().args([
        "exec",
        "in.ipynb",
        "out.ipynb",
        "-p",
        "a",
        "21",
        "-p",
        "b",
        "hello",
        "--no-progress-bar",
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    let nb = sb.read("out.ipynb");
    sb.assert_valid("out.ipynb");
    let cs = cells(&nb);
    assert_eq!(cs.len(), 6);
    let injected = &cs[2];
    assert_eq!(injected["metadata"]["tags"], json!(["injected-parameters"]));
    assert_eq!(
        text(&injected["source"]),
        "# Parameters\na = 21\nb = \"hello\"\n"
    );
    assert_eq!(stream(&cs[3], "stdout"), "21\nhello\n");
    assert_eq!(stream(&cs[3], "stderr"), "err\n");
    let result = cs[3]["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["output_type"] == "execute_result")
        .unwrap();
    assert_eq!(text(&result["data"]["text/plain"]), "42");
    // Empty code cells are not sent to the kernel.
    assert_eq!(cs[4]["execution_count"], Value::Null);
    // update_display_data replaced the displayed value in place.
    let disp = &cs[5]["outputs"][0];
    assert_eq!(disp["output_type"], "display_data");
    assert_eq!(text(&disp["data"]["text/plain"]), "'y'");
    // papermill metadata, per cell and for the notebook.
    let pm = &nb["metadata"]["papermill"];
    assert_eq!(pm["parameters"], json!({"a": 21, "b": "hello"}));
    assert_eq!(pm["input_path"], "in.ipynb");
    assert_eq!(pm["output_path"], "out.ipynb");
    assert_eq!(pm["exception"], Value::Null);
    assert!(pm["duration"].as_f64().unwrap() > 0.0);
    for c in cs {
        assert_eq!(c["metadata"]["papermill"]["status"], "completed", "{c}");
    }
    for key in [
        "iopub.status.busy",
        "iopub.execute_input",
        "shell.execute_reply",
        "iopub.status.idle",
    ] {
        assert!(
            cs[3]["metadata"]["execution"][key].is_string(),
            "missing {key}"
        );
    }
    assert_eq!(nb["metadata"]["language_info"]["name"], "python");
    assert_eq!(cs[3]["execution_count"], 3);
    sb.assert_no_processes_left();
}

#[test]
fn failing_cell_inserts_banners_saves_and_exits_1() {
    let sb = Sandbox::new();
    sb.notebook(
        "in.ipynb",
        "python3",
        vec![
            code("x = 1"),
            code("raise ValueError('boom')"),
            code("print('never')"),
        ],
    );
    let out = run(sb.nbpipe().args(["exec", "in.ipynb", "out.ipynb"]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("ValueError"), "{}", stderr(&out));
    let nb = sb.read("out.ipynb");
    sb.assert_valid("out.ipynb");
    let cs = cells(&nb);
    assert_eq!(cs.len(), 5);
    assert_eq!(cs[0]["cell_type"], "markdown");
    assert!(text(&cs[0]["source"]).contains("In [2]"), "{}", cs[0]);
    assert_eq!(
        cs[2]["metadata"]["tags"],
        json!(["papermill-error-cell-tag"])
    );
    assert_eq!(cs[3]["outputs"][0]["ename"], "ValueError");
    assert_eq!(cs[3]["metadata"]["papermill"]["status"], "failed");
    assert_eq!(cs[4]["metadata"]["papermill"]["status"], "pending");
    assert_eq!(cs[4]["execution_count"], Value::Null);
    assert_eq!(nb["metadata"]["papermill"]["exception"], true);

    // Re-running the output notebook removes the old banners first.
    std::fs::write(
        sb.path("fixed.ipynb"),
        std::fs::read_to_string(sb.path("out.ipynb"))
            .unwrap()
            .replace("raise ValueError('boom')", "y = 2"),
    )
    .unwrap();
    let out = run(sb.nbpipe().args(["exec", "fixed.ipynb", "out2.ipynb"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let nb2 = sb.read("out2.ipynb");
    assert!(cells_tagged(&nb2, "papermill-error-cell-tag").is_empty());
    assert_eq!(cells(&nb2).len(), 3);
    sb.assert_no_processes_left();
}

#[test]
fn sys_exit_zero_ends_cleanly() {
    let sb = Sandbox::new();
    sb.notebook(
        "in.ipynb",
        "python3",
        vec![
            code("import sys\nprint('before')\nsys.exit(0)"),
            code("print('after')"),
        ],
    );
    let out = run(sb.nbpipe().args(["exec", "in.ipynb", "out.ipynb"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let nb = sb.read("out.ipynb");
    assert!(cells_tagged(&nb, "papermill-error-cell-tag").is_empty());
    assert_eq!(stream(&cells(&nb)[1], "stdout"), "");
}

#[test]
fn input_gets_an_error_instead_of_hanging() {
    let sb = Sandbox::new();
    sb.notebook("in.ipynb", "python3", vec![code("name = input('who? ')")]);
    let out = run(sb
        .nbpipe()
        .args(["exec", "in.ipynb", "out.ipynb", "--execution-timeout", "60"]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let nb = sb.read("out.ipynb");
    let err = &cells(&nb)[2]["outputs"][0];
    assert_eq!(err["ename"], "StdinNotImplementedError", "{err}");
    sb.assert_no_processes_left();
}

#[test]
fn execution_timeout_interrupts_cell_and_fails_run() {
    let sb = Sandbox::new();
    sb.notebook(
        "in.ipynb",
        "python3",
        vec![
            code("print('start', flush=True)\nimport time\ntime.sleep(600)"),
            code("print('never')"),
        ],
    );
    let started = std::time::Instant::now();
    let out = run(sb
        .nbpipe()
        .args(["exec", "in.ipynb", "out.ipynb", "--execution-timeout", "2"]));
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        started.elapsed().as_secs() < 60,
        "timeout did not stop the run"
    );
    let nb = sb.read("out.ipynb");
    sb.assert_valid("out.ipynb");
    let cell = &cells(&nb)[2];
    assert_eq!(stream(cell, "stdout"), "start\n");
    let enames: Vec<&Value> = cell["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| &o["ename"])
        .collect();
    assert!(enames.contains(&&json!("CellTimeoutError")), "{enames:?}");
    assert_eq!(cell["metadata"]["papermill"]["status"], "failed");
    sb.assert_no_processes_left();
}

#[test]
fn kernel_death_saves_partial_notebook_with_explanation() {
    let sb = Sandbox::new();
    sb.notebook(
        "in.ipynb",
        "python3",
        vec![
            code("print('alive')"),
            code("import os, signal\nprint('dying', flush=True)\nimport time; time.sleep(0.2)\nos.kill(os.getpid(), signal.SIGKILL)"),
            code("print('never')"),
        ],
    );
    let started = std::time::Instant::now();
    let out = run(sb.nbpipe().args(["exec", "in.ipynb", "out.ipynb"]));
    assert_eq!(out.status.code(), Some(138), "{}", stderr(&out));
    assert!(started.elapsed().as_secs() < 30);
    let nb = sb.read("out.ipynb");
    sb.assert_valid("out.ipynb");
    let cs = cells(&nb);
    assert_eq!(stream(&cs[1], "stdout"), "alive\n");
    let dead = &cs[3];
    assert_eq!(stream(dead, "stdout"), "dying\n");
    let err = dead["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["output_type"] == "error")
        .unwrap();
    assert_eq!(err["ename"], "DeadKernelError");
    assert!(
        err["evalue"].as_str().unwrap().contains("signal 9"),
        "{err}"
    );
    sb.assert_no_processes_left();
}

#[test]
fn os_exit_is_noticed_as_kernel_death() {
    let sb = Sandbox::new();
    sb.notebook("in.ipynb", "python3", vec![code("import os\nos._exit(3)")]);
    let out = run(sb.nbpipe().args(["exec", "in.ipynb", "out.ipynb"]));
    assert_eq!(out.status.code(), Some(138), "{}", stderr(&out));
    assert!(stderr(&out).contains("exit code 3"), "{}", stderr(&out));
    sb.assert_no_processes_left();
}

#[test]
fn sigterm_interrupts_saves_and_leaves_no_kernel() {
    let sb = Sandbox::new();
    sb.notebook(
        "in.ipynb",
        "python3",
        vec![code("import subprocess\np = subprocess.Popen(['sleep', '600'])\nprint('ready', flush=True)\nimport time\ntime.sleep(600)")],
    );
    let mut child = sb
        .nbpipe()
        .args([
            "exec",
            "in.ipynb",
            "out.ipynb",
            "--autosave-cell-every",
            "1",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the cell is running (its output reached the saved notebook).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Ok(t) = std::fs::read_to_string(sb.path("out.ipynb")) {
            // The output text, not the source (which also says 'ready').
            if t.contains("\"ready\\n\"") {
                break;
            }
        }
        assert!(std::time::Instant::now() < deadline, "cell never started");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143));
    let nb = sb.read("out.ipynb");
    let cell = &cells(&nb)[0];
    assert_eq!(stream(cell, "stdout"), "ready\n");
    assert_eq!(cell["metadata"]["papermill"]["status"], "failed");
    sb.assert_no_processes_left();
}

#[test]
fn bash_kernel_gets_shell_quoted_parameters() {
    let sb = Sandbox::new();
    sb.notebook(
        "in.ipynb",
        "bash",
        vec![
            tagged("name=default", "parameters"),
            code("printf '%s|' \"$name\" \"$n\""),
        ],
    );
    let tricky = "it's a \"test\" $HOME `id` \\ done";
    let out = run(sb.nbpipe().args([
        "exec",
        "in.ipynb",
        "out.ipynb",
        "-p",
        "name",
        tricky,
        "-p",
        "n",
        "7",
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    let nb = sb.read("out.ipynb");
    // bash_kernel ends its output with a newline of its own.
    assert_eq!(
        stream(&cells(&nb)[2], "stdout").trim_end_matches('\n'),
        format!("{tricky}|7|")
    );
    sb.assert_no_processes_left();
}

#[test]
fn prepare_only_keeps_outputs_and_unknown_fields() {
    let sb = Sandbox::new();
    let mut cell = tagged("a = 1", "parameters");
    cell["outputs"] = json!([{"output_type": "vendor_thing", "payload": {"k": [1, 2]}}]);
    cell["metadata"]["vendor"] = json!({"keep": true});
    let p = sb.notebook("in.ipynb", "python3", vec![cell, code("a")]);
    let mut nb: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    nb["vendor_top_level"] = json!({"x": 1});
    nb["metadata"]["custom"] = json!("kept");
    std::fs::write(&p, serde_json::to_string(&nb).unwrap()).unwrap();
    let out = run(sb.nbpipe().args([
        "exec",
        "in.ipynb",
        "out.ipynb",
        "--prepare-only",
        "-p",
        "a",
        "2",
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    let nb = sb.read("out.ipynb");
    assert_eq!(nb["vendor_top_level"], json!({"x": 1}));
    assert_eq!(nb["metadata"]["custom"], "kept");
    assert_eq!(nb["cells"][0]["outputs"][0]["output_type"], "vendor_thing");
    assert_eq!(nb["cells"][0]["metadata"]["vendor"], json!({"keep": true}));
    assert_eq!(text(&nb["cells"][1]["source"]), "# Parameters\na = 2\n");
}

#[test]
fn kernel_outputs_with_custom_mime_types_are_kept_verbatim() {
    let sb = Sandbox::new();
    sb.notebook(
        "in.ipynb",
        "python3",
        vec![code(
            "from IPython.display import display\ndisplay({'application/x-vendor+json': {'k': [1, 2]}, 'text/plain': 'v'}, raw=True, metadata={'m': 1})",
        )],
    );
    let out = run(sb.nbpipe().args(["exec", "in.ipynb", "out.ipynb"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let nb = sb.read("out.ipynb");
    sb.assert_valid("out.ipynb");
    let o = &nb["cells"][0]["outputs"][0];
    assert_eq!(o["data"]["application/x-vendor+json"], json!({"k": [1, 2]}));
    assert_eq!(o["metadata"], json!({"m": 1}));
}

#[test]
fn output_path_is_templated_from_parameters() {
    let sb = Sandbox::new();
    sb.notebook(
        "in.ipynb",
        "python3",
        vec![tagged("day = 'x'", "parameters")],
    );
    let out = run(sb.nbpipe().args([
        "exec",
        "in.ipynb",
        "out-{day}.ipynb",
        "-p",
        "day",
        "2024-05-01",
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(sb.path("out-2024-05-01.ipynb").exists());
}

#[test]
fn reads_stdin_and_writes_stdout() {
    let sb = Sandbox::new();
    let p = sb.notebook("in.ipynb", "python3", vec![code("print(6 * 7)")]);
    let out = run(sb
        .nbpipe()
        .args(["exec", "-", "-"])
        .stdin(std::fs::File::open(&p).unwrap()));
    assert!(out.status.success(), "{}", stderr(&out));
    let nb: Value = serde_json::from_slice(&out.stdout).expect("stdout is one notebook");
    assert_eq!(stream(&nb["cells"][0], "stdout"), "42\n");
}

/// Large outputs are kept in a temporary spill file during the run (not in memory) and
/// streamed into the output notebook: what the kernel produced must arrive whole — long
/// merged streams with every kind of line break, big images, display updates and
/// `clear_output(wait=True)` animations — and the file must be what nbformat writes.
#[test]
fn large_outputs_are_recorded_whole() {
    let sb = Sandbox::new();
    let tmp = sb.path("tmp");
    std::fs::create_dir(&tmp).unwrap();
    sb.notebook(
        "big.ipynb",
        "python3",
        vec![
            code(concat!(
                "import base64, os\n",
                "from IPython.display import Image, display, clear_output, update_display\n",
                "def png(n):\n",
                "    return b'\\x89PNG\\r\\n\\x1a\\n' + os.urandom(n)\n",
                "lines = []\n",
                "for i in range(4000):\n",
                "    line = f'line {i} \\u00e9 \\\"q\\\" \\\\ \\t' + ('\\r\\n' if i % 3 else '\\u2028')\n",
                "    lines.append(line)\n",
                "    print(line, end='', flush=(i % 100 == 0))\n",
                "_ = open('stream.txt', 'w', newline='').write(''.join(lines))",
            )),
            code(concat!(
                "a = png(600_000)\n",
                "display(Image(data=a, format='png'), display_id='shown')\n",
                "_ = open('a.b64', 'w').write(base64.b64encode(a).decode())",
            )),
            code(concat!(
                "for k in range(5):\n",
                "    frame = png(100_000 + k)\n",
                "    clear_output(wait=True)\n",
                "    display(Image(data=frame, format='png'))\n",
                "_ = open('frame.b64', 'w').write(base64.b64encode(frame).decode())\n",
                "b = png(700_000)\n",
                "update_display(Image(data=b, format='png'), display_id='shown')\n",
                "_ = open('b.b64', 'w').write(base64.b64encode(b).decode())",
            )),
        ],
    );
    let out = run(sb.nbpipe().env("TMPDIR", &tmp).args([
        "exec",
        "big.ipynb",
        "out.ipynb",
        "--no-progress-bar",
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    sb.assert_valid("out.ipynb");
    let nb = sb.read("out.ipynb");
    let cs = cells(&nb);
    let read = |name: &str| std::fs::read_to_string(sb.path(name)).unwrap();

    // 4,000 stream messages merged into one output, every byte kept.
    let outs = cs[0]["outputs"].as_array().unwrap();
    assert_eq!(outs.len(), 1, "one merged stream output");
    assert!(
        text(&outs[0]["text"]) == read("stream.txt"),
        "stream text differs"
    );

    // The display was updated in place by a later cell (display id across cells).
    let png = |o: &Value| text(&o["data"]["image/png"]).trim_end().to_string();
    assert!(
        png(&cs[1]["outputs"][0]) == read("b.b64"),
        "display not updated"
    );
    // clear_output(wait=True) left only the last frame.
    let frames = cs[2]["outputs"].as_array().unwrap();
    assert_eq!(frames.len(), 1, "only the last frame is left");
    assert!(png(&frames[0]) == read("frame.b64"), "last frame differs");
    assert!(read("a.b64") != read("b.b64"));

    // Byte for byte what nbformat writes for the same notebook.
    let check = std::process::Command::new(sb.python())
        .args([
            "-c",
            "import sys, nbformat; p = sys.argv[1]; raw = open(p, encoding='utf-8').read(); \
             sys.exit(0 if nbformat.writes(nbformat.reads(raw, as_version=4)) + '\\n' == raw else 1)",
        ])
        .arg(sb.path("out.ipynb"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    // The spill file was anonymous: nothing is left in TMPDIR.
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");
    sb.assert_no_processes_left();
}
