"""Object-store paths (a real S3 server, SeaweedFS) and `nbpipe.run_project`."""

import json

import nbformat
import pytest

import nbpipe
from conftest import injected, make_notebook, stream_text


def test_s3_input_and_output(sandbox, s3_env):
    make_notebook(sandbox / "in.ipynb", [("a = 1", "parameters"), "print(a + 1)"])
    # Upload through nbpipe itself (prepare-only), then run from S3 to S3.
    nbpipe.execute_notebook("in.ipynb", s3_env + "/in.ipynb", prepare_only=True)
    nb = nbpipe.execute_notebook(s3_env + "/in.ipynb", s3_env + "/out-{a}.ipynb", parameters={"a": 41})
    assert stream_text(nb.cells[-1]) == "42\n"
    stored = nbformat.reads(nbpipe.read_location(s3_env + "/out-41.ipynb").decode(), as_version=4)
    assert stored == nb
    assert nb.metadata.papermill.output_path == s3_env + "/out-41.ipynb"


def test_s3_failure_raises_after_storing_the_notebook(sandbox, s3_env):
    make_notebook(sandbox / "in.ipynb", ["1 / 0"])
    with pytest.raises(nbpipe.PapermillExecutionError) as info:
        nbpipe.execute_notebook("in.ipynb", s3_env + "/fail.ipynb")
    assert info.value.ename == "ZeroDivisionError"
    stored = nbformat.reads(nbpipe.read_location(s3_env + "/fail.ipynb").decode(), as_version=4)
    assert stored.metadata.papermill.exception is True


def test_inspect_notebook_reads_an_s3_notebook(sandbox, s3_env):
    make_notebook(sandbox / "in.ipynb", [("alpha = 0.5  # learning rate\nname = 'x'", "parameters")])
    nbpipe.execute_notebook("in.ipynb", s3_env + "/inspect-me.ipynb", prepare_only=True)
    local = nbpipe.inspect_notebook(sandbox / "in.ipynb")
    remote = nbpipe.inspect_notebook(s3_env + "/inspect-{which}.ipynb", parameters={"which": "me"})
    assert remote == local
    assert remote["alpha"]["default"] == "0.5"
    assert remote["alpha"]["help"] == "learning rate"


def test_missing_s3_object_is_invalid_input(sandbox, s3_env):
    with pytest.raises(nbpipe.InvalidInputError):
        nbpipe.execute_notebook(s3_env + "/nope.ipynb", "out.ipynb")


def _project(root, second_fails=False):
    root.mkdir()
    (root / "nbpipe.yaml").write_text("notebooks:\n  - first.ipynb\n  - second.ipynb\n")
    (root / "requirements.txt").write_text("# only ipykernel\n")
    make_notebook(root / "first.ipynb", [("big = 0\nratio = 0.0", "parameters"), "print(repr((big, ratio)))"])
    make_notebook(root / "second.ipynb", ["raise RuntimeError('boom')" if second_fails else "print('two')"])


def test_run_project_returns_the_manifest(sandbox):
    _project(sandbox / "proj")
    manifest = nbpipe.run_project(
        sandbox / "proj",
        parameters={"big": 2 ** 80, "ratio": float("inf")},
        output=str(sandbox / "runs" / "{run_id}"),
        run_id="r1",
    )
    assert manifest["run_id"] == "r1"
    assert manifest["status"] == "succeeded"
    assert [s["status"] for s in manifest["steps"]] == ["succeeded", "succeeded"]
    first = nbformat.read(str(sandbox / "runs" / "r1" / "first.ipynb"), as_version=4)
    assert injected(first) == "# Parameters\nbig = %d\nratio = float('inf')\n" % 2 ** 80
    assert stream_text(first.cells[-1]) == "(%d, inf)\n" % 2 ** 80
    assert json.loads((sandbox / "runs" / "r1" / "run.json").read_text()) == manifest


def test_run_project_failure_raises_with_the_manifest(sandbox):
    _project(sandbox / "proj", second_fails=True)
    with pytest.raises(nbpipe.ProjectRunError) as info:
        nbpipe.run_project(sandbox / "proj", output=str(sandbox / "out"), run_id="r2")
    manifest = info.value.manifest
    assert manifest["status"] == "failed"
    assert [s["status"] for s in manifest["steps"]] == ["succeeded", "failed"]
    with pytest.raises(nbpipe.InvalidInputError):
        nbpipe.run_project(sandbox / "no-such-project")
