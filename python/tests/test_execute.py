"""`nbpipe.execute_notebook` against a real ipykernel, compared with papermill where papermill
defines the behaviour (injected cell, error attributes, inspect output)."""

import io
import logging
import math
import os
import pathlib
import sysconfig

import nbformat
import papermill
import pytest

import nbpipe
from conftest import injected, kernels_left, make_notebook, stream_text

# Every JSON kind, the corners included; a tuple and non-string dict keys take papermill's
# fallbacks (str()). (Objects json cannot write, like dates, also become str(), but papermill
# itself then fails writing them into the notebook's metadata, so they cannot be compared.)
VALUES = {
    "none": None,
    "t": True,
    "f": False,
    "zero": 0,
    "neg": -7,
    "big": 123456789012345678901234567890,
    "nbig": -(2 ** 70),
    "u64": 2 ** 64 - 1,
    "fl": 0.1,
    "third": 1 / 3,
    "tiny": 5e-324,
    "huge": 1e300,
    "negzero": -0.0,
    "nan": float("nan"),
    "inf": float("inf"),
    "ninf": float("-inf"),
    "s": "quote\" back\\ nl\n tab\t \x00 é 😀 ${x} {y} '''",
    "empty": "",
    "lst": [1, 2.5, None, "x", [True, {"k": float("inf")}], []],
    "dct": {"a": {"b": [2 ** 64, -0.0]}, "c": None},
    # papermill sorts metadata keys when writing, so key types are not mixed within a dict.
    "ikeys": {10: "ten", 2: "two"},
    "fkeys": {1.5: "x", -0.5: "y"},
    "tup": (1, "a"),
}


def test_the_wheel_carries_a_stripped_binary():
    path = nbpipe.find_nbpipe_bin()
    assert os.path.dirname(path) == sysconfig.get_path("scripts"), path
    # The dist profile: stripped (the release binary with line tables is ~190 MB).
    assert os.path.getsize(path) < 80 * 1024 * 1024, os.path.getsize(path)
    import subprocess

    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("nbpipe ")


def test_runs_a_notebook_and_returns_a_notebook_node(sandbox):
    make_notebook(sandbox / "in.ipynb", [("a = 1", "parameters"), "print(a * 2)", "a + 1"])
    nb = nbpipe.execute_notebook(pathlib.Path("in.ipynb"), pathlib.Path("out.ipynb"), parameters={"a": 20})
    assert isinstance(nb, nbformat.NotebookNode)
    assert stream_text(nb.cells[2]) == "40\n"
    assert nb.cells[3].outputs[0]["data"]["text/plain"] == "21"
    assert nb.metadata.papermill.parameters == {"a": 20}
    assert nb.metadata.papermill.exception is False or nb.metadata.papermill.exception is None
    on_disk = nbformat.read(str(sandbox / "out.ipynb"), as_version=4)
    assert on_disk == nb
    assert kernels_left(str(sandbox)) == []


def test_parameters_of_every_kind_are_injected_exactly_as_papermill_injects_them(sandbox):
    make_notebook(sandbox / "in.ipynb", [("x = 0", "parameters")])
    pm = papermill.execute_notebook(
        "in.ipynb", "pm.ipynb", parameters=VALUES, prepare_only=True, progress_bar=False
    )
    ours = nbpipe.execute_notebook("in.ipynb", "nb.ipynb", parameters=VALUES, prepare_only=True)
    assert injected(ours) == injected(pm)
    # And from a reread of the written file.
    assert injected(nbformat.read("nb.ipynb", as_version=4)) == injected(pm)


def test_parameter_values_reach_the_kernel_intact(sandbox):
    names = [k for k in VALUES if k != "tup"]
    make_notebook(
        sandbox / "in.ipynb",
        [
            ("x = 0", "parameters"),
            "import math\n"
            "vals = [%s]\n" % ", ".join(names)
            + "print(repr([('nan' if isinstance(v, float) and math.isnan(v) else v) for v in vals]))\n"
            "print(repr([type(v).__name__ for v in vals]))\n"
            "print(math.copysign(1, negzero))",
        ],
    )
    nb = nbpipe.execute_notebook("in.ipynb", "out.ipynb", parameters={k: VALUES[k] for k in names})
    lines = stream_text(nb.cells[-1]).splitlines()

    def norm(v):
        return "nan" if isinstance(v, float) and math.isnan(v) else v

    expected = [
        {str(k): v for k, v in VALUES[k].items()} if isinstance(VALUES[k], dict) else norm(VALUES[k])
        for k in names
    ]
    assert lines[0] == repr(expected)
    assert lines[1] == repr([type(VALUES[k]).__name__ for k in names])
    assert lines[2] == "-1.0"


def test_parameters_as_a_yaml_file_path_like_papermill(sandbox):
    make_notebook(sandbox / "in.ipynb", [("a = 1", "parameters"), "print(repr(a))"])
    (sandbox / "p.yaml").write_text("a: [1, yes, '2']\n")
    nb = nbpipe.execute_notebook("in.ipynb", "out.ipynb", parameters="p.yaml")
    assert stream_text(nb.cells[-1]) == "[1, True, '2']\n"


def test_bad_parameters_are_type_errors_before_anything_runs(sandbox):
    make_notebook(sandbox / "in.ipynb", [("a = 1", "parameters")])
    with pytest.raises(TypeError):
        nbpipe.execute_notebook("in.ipynb", "out.ipynb", parameters={1: "x"})
    with pytest.raises(nbpipe.InvalidInputError, match="invalid python parameter name"):
        nbpipe.execute_notebook("in.ipynb", "out.ipynb", parameters={"a; import os": 1})
    assert not (sandbox / "out.ipynb").exists()


def test_failing_cell_raises_papermill_execution_error_like_papermill(sandbox):
    make_notebook(
        sandbox / "in.ipynb",
        [("a = 1", "parameters"), "print('before')", "def f():\n    raise ValueError('bad %d' % a)\nf()", "print('never')"],
    )
    with pytest.raises(papermill.PapermillExecutionError) as pm_info:
        papermill.execute_notebook("in.ipynb", "pm.ipynb", parameters={"a": 3}, progress_bar=False)
    with pytest.raises(nbpipe.PapermillExecutionError) as ours_info:
        nbpipe.execute_notebook("in.ipynb", "out.ipynb", parameters={"a": 3})
    pm, ours = pm_info.value, ours_info.value
    for attr in ("cell_index", "exec_count", "source", "ename", "evalue"):
        assert getattr(ours, attr) == getattr(pm, attr), attr
    assert ours.ename == "ValueError" and ours.evalue == "bad 3"
    assert any("ValueError" in line for line in ours.traceback)
    assert str(ours).startswith('\n' + '-' * 75 + '\nException encountered at "In [4]":\n')
    assert str(ours).splitlines()[:3] == str(pm).splitlines()[:3]
    assert "\x1b[" not in str(ours)
    assert ours.exit_code == 1
    # The output notebook is written first, with papermill's banner cells.
    out = nbformat.read("out.ipynb", as_version=4)
    pm_out = nbformat.read("pm.ipynb", as_version=4)
    assert [c.cell_type for c in out.cells] == [c.cell_type for c in pm_out.cells]
    assert out.metadata.papermill.exception is True
    assert kernels_left(str(sandbox)) == []


def test_sys_exit_zero_is_success(sandbox):
    make_notebook(sandbox / "in.ipynb", ["import sys; sys.exit(0)", "print('never')"])
    nb = nbpipe.execute_notebook("in.ipynb", "out.ipynb")
    assert stream_text(nb.cells[1]) == ""


def test_unknown_kernel_raises_kernel_not_found_after_writing_the_notebook(sandbox):
    make_notebook(sandbox / "in.ipynb", [("a = 1", "parameters"), "print(a)"], kernel="nope")
    with pytest.raises(nbpipe.KernelNotFoundError, match='no such kernel named "nope"') as info:
        nbpipe.execute_notebook("in.ipynb", "out.ipynb", parameters={"a": 2})
    assert info.value.exit_code == 2
    assert isinstance(info.value, LookupError)
    out = nbformat.read("out.ipynb", as_version=4)
    assert injected(out) == "# Parameters\na = 2\n"
    assert out.metadata.papermill.exception is True


def test_kernel_named_python_runs_as_python3(sandbox):
    make_notebook(sandbox / "in.ipynb", ["print('hi')"], kernel="python")
    nb = nbpipe.execute_notebook("in.ipynb", "out.ipynb")
    assert stream_text(nb.cells[0]) == "hi\n"
    nb = nbpipe.execute_notebook("in.ipynb", "out2.ipynb", kernel_name="python")
    assert stream_text(nb.cells[0]) == "hi\n"


def test_execution_timeout_raises_with_the_cell(sandbox):
    make_notebook(sandbox / "in.ipynb", ["x = 1", "import time; time.sleep(30)"])
    with pytest.raises(nbpipe.ExecutionTimeoutError) as info:
        nbpipe.execute_notebook("in.ipynb", "out.ipynb", execution_timeout=1)
    assert isinstance(info.value, TimeoutError)
    assert info.value.exit_code == 4
    assert info.value.source == "import time; time.sleep(30)"
    assert nbformat.read("out.ipynb", as_version=4).metadata.papermill.exception is True
    assert kernels_left(str(sandbox)) == []


def test_dead_kernel_raises_dead_kernel_error(sandbox):
    make_notebook(sandbox / "in.ipynb", ["print('a')", "import os; os._exit(3)"])
    with pytest.raises(nbpipe.DeadKernelError) as info:
        nbpipe.execute_notebook("in.ipynb", "out.ipynb")
    assert info.value.exit_code == 138
    out = nbformat.read("out.ipynb", as_version=4)
    printed = [c for c in out.cells if c.source == "print('a')"]
    assert stream_text(printed[0]) == "a\n"
    assert out.metadata.papermill.exception is True


def test_missing_input_is_invalid_input(sandbox):
    with pytest.raises(nbpipe.InvalidInputError, match="nope.ipynb"):
        nbpipe.execute_notebook("nope.ipynb", "out.ipynb")


def test_prepare_only_injects_without_running(sandbox):
    make_notebook(sandbox / "in.ipynb", [("a = 1", "parameters"), "print(a)"])
    nb = nbpipe.execute_notebook("in.ipynb", "out.ipynb", parameters={"a": 5}, prepare_only=True)
    assert injected(nb) == "# Parameters\na = 5\n"
    assert all(c.get("execution_count") is None for c in nb.cells)
    assert stream_text(nb.cells[-1]) == ""


def test_report_mode_hides_inputs_like_papermill(sandbox):
    make_notebook(sandbox / "in.ipynb", [("a = 1", "parameters"), "print(a)"])
    ours = nbpipe.execute_notebook("in.ipynb", "out.ipynb", parameters={"a": 5}, report_mode=True)
    pm = papermill.execute_notebook(
        "in.ipynb", "pm.ipynb", parameters={"a": 5}, report_mode=True, progress_bar=False
    )
    assert [c.metadata.get("jupyter") for c in ours.cells] == [c.metadata.get("jupyter") for c in pm.cells]
    assert all(c.metadata["jupyter"]["source_hidden"] for c in ours.cells)


def test_cwd_sets_the_kernel_working_directory(sandbox):
    (sandbox / "work").mkdir()
    (sandbox / "work" / "data.txt").write_text("payload")
    make_notebook(sandbox / "in.ipynb", ["import os; print(os.getcwd()); print(open('data.txt').read())"])
    nb = nbpipe.execute_notebook("in.ipynb", "out.ipynb", cwd=sandbox / "work")
    assert stream_text(nb.cells[0]) == "%s\npayload\n" % (sandbox / "work")


def test_stdout_and_stderr_files_as_paths_and_file_objects(sandbox):
    make_notebook(
        sandbox / "in.ipynb",
        ["import sys\nprint('out 1')\nprint('err 1', file=sys.stderr)", "print('out 2')"],
    )
    nbpipe.execute_notebook("in.ipynb", "out.ipynb", stdout_file=sandbox / "o.txt", stderr_file="e.txt")
    assert (sandbox / "o.txt").read_text() == "out 1\nout 2\n"
    assert (sandbox / "e.txt").read_text() == "err 1\n"
    text_out, bin_err = io.StringIO(), io.BytesIO()
    nbpipe.execute_notebook("in.ipynb", "out.ipynb", stdout_file=text_out, stderr_file=bin_err)
    assert text_out.getvalue() == "out 1\nout 2\n"
    assert bin_err.getvalue() == b"err 1\n"
    with open(sandbox / "real.txt", "w") as f:
        nbpipe.execute_notebook("in.ipynb", "out.ipynb", stdout_file=f)
    assert (sandbox / "real.txt").read_text() == "out 1\nout 2\n"


def test_log_output_streams_to_the_nbpipe_logger(sandbox, caplog):
    make_notebook(sandbox / "in.ipynb", ["print('hello from the cell')"])
    with caplog.at_level(logging.INFO, logger="nbpipe"):
        nbpipe.execute_notebook("in.ipynb", "out.ipynb", log_output=True)
    messages = [r.getMessage() for r in caplog.records if r.name == "nbpipe"]
    assert any("hello from the cell" in m for m in messages), messages
    assert any("Input Notebook" in m for m in messages), messages


def test_output_none_and_stdout_return_the_notebook(sandbox):
    make_notebook(sandbox / "in.ipynb", [("a = 1", "parameters"), "print(a)"])
    nb = nbpipe.execute_notebook("in.ipynb", None, parameters={"a": 9})
    assert stream_text(nb.cells[-1]) == "9\n"
    nb = nbpipe.execute_notebook("in.ipynb", "-", parameters={"a": 8})
    assert stream_text(nb.cells[-1]) == "8\n"
    assert [p for p in os.listdir(sandbox) if p.endswith(".ipynb")] == ["in.ipynb"]


def test_notebook_node_input_and_templated_output(sandbox):
    nb_in = nbformat.v4.new_notebook()
    nb_in.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbformat.v4.new_code_cell("region = 'x'")
    cell.metadata["tags"] = ["parameters"]
    nb_in.cells = [cell, nbformat.v4.new_code_cell("print(region)")]
    nb = nbpipe.execute_notebook(nb_in, "out-{region}.ipynb", parameters={"region": "eu{1}"})
    assert stream_text(nb.cells[-1]) == "eu{1}\n"
    assert (sandbox / "out-eu{1}.ipynb").exists()
    with pytest.raises(nbpipe.MissingParameterError):
        nbpipe.execute_notebook(nb_in, "out-{nope}.ipynb", parameters={"region": "x"})


def test_inspect_notebook_matches_papermill(sandbox):
    make_notebook(
        sandbox / "in.ipynb",
        [("alpha = 0.5  # the rate\nname: str = 'x'\nn = None\nitems = [1, 2]", "parameters")],
    )
    assert nbpipe.inspect_notebook(pathlib.Path("in.ipynb")) == papermill.inspect_notebook("in.ipynb")
    assert nbpipe.inspect_notebook("{n}.ipynb", parameters={"n": "in"})["alpha"]["help"] == "the rate"


def test_binary_override_and_missing_binary(sandbox, monkeypatch):
    monkeypatch.setenv("NBPIPE_BIN", str(sandbox / "missing"))
    with pytest.raises(nbpipe.BinaryNotFoundError, match="NBPIPE_BIN"):
        nbpipe.execute_notebook("in.ipynb", "out.ipynb")
