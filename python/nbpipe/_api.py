"""papermill's Python API on the ``nbpipe`` binary: ``execute_notebook``, ``inspect_notebook``,
and ``run_project`` for nbpipe projects.

Every call runs the installed ``nbpipe`` command (see :mod:`nbpipe._binary`). Parameters
travel as typed JSON (``--parameters-json -`` on stdin, see :mod:`nbpipe._params`), the output
notebook is read back from where the command wrote it, and exit codes become the exceptions of
:mod:`nbpipe.exceptions`.
"""

import json
import math
import os
import re
import tempfile
import threading

import nbformat

from . import _binary
from ._params import to_json
from .exceptions import (
    DeadKernelError,
    ExecutionTimeoutError,
    InvalidInputError,
    KernelNotFoundError,
    KernelStartError,
    MissingParameterError,
    NbpipeError,
    OutputNotStoredError,
    PapermillExecutionError,
    ProjectRunError,
    RunInterruptedError,
)

__all__ = ["execute_notebook", "inspect_notebook", "run_project", "read_location"]

ERROR_MARKER_TAG = "papermill-error-cell-tag"

# kwargs papermill passes to its engine that mean something to nbpipe as well.
_ENGINE_KWARGS = {"autosave_cell_every", "log_level"}


def _location(path):
    if path is None:
        return None
    if isinstance(path, (str, bytes)) or hasattr(path, "__fspath__"):
        p = os.fspath(path)
        return p.decode() if isinstance(p, bytes) else p
    raise TypeError("expected a path, a URL or None, got %s" % type(path).__name__)


def _parameterize_path(path, parameters):
    """papermill's ``parameterize_path``: ``str.format`` with the parameters."""
    try:
        return path.format(**(parameters or {}))
    except KeyError as e:
        raise MissingParameterError("Missing parameter %s" % e) from None


def _escape_template(path):
    # The binary templates paths too; the path is already templated here.
    return path.replace("{", "{{").replace("}", "}}")


def _seconds(value, what):
    if value is None:
        return None
    try:
        s = float(value)
    except (TypeError, ValueError):
        raise TypeError("%s must be a number of seconds, got %r" % (what, value)) from None
    if math.isnan(s) or s < 0:
        raise ValueError("%s must be a number of seconds >= 0, got %r" % (what, value))
    if math.isinf(s):
        return None
    return str(int(math.ceil(s)))


def _is_local(loc):
    return "://" not in loc and loc != "-"


def read_location(location):
    """The bytes stored at ``location`` (a path or any URL nbpipe accepts), read with nbpipe's
    own storage code and credentials (``nbpipe cat``)."""
    loc = _location(location)
    if _is_local(loc):
        with open(loc, "rb") as f:
            return f.read()
    res = _binary.run(["cat", loc], log=False)
    if res.returncode != 0:
        raise NbpipeError(res.stderr.strip() or "could not read %s" % loc)._attach(
            res.returncode, res.stderr, loc
        )
    return res.stdout


def _read_notebook(data):
    return nbformat.reads(data.decode("utf-8"), as_version=4)


class _StreamCopy:
    """A pipe whose write end the binary opens as ``--stdout-file /dev/fd/N``; a thread copies
    what arrives into a Python file object (text or binary) while the run goes on."""

    def __init__(self, fileobj):
        self.fileobj = fileobj
        self.read_fd, self.write_fd = os.pipe()
        self.thread = threading.Thread(target=self._copy, daemon=True)
        self.thread.start()

    @property
    def path(self):
        return "/dev/fd/%d" % self.write_fd

    def _copy(self):
        with os.fdopen(self.read_fd, "rb", buffering=0) as r:
            while True:
                chunk = r.read(65536)
                if not chunk:
                    break
                try:
                    self.fileobj.write(chunk)
                except TypeError:
                    self.fileobj.write(chunk.decode("utf-8", "replace"))
        flush = getattr(self.fileobj, "flush", None)
        if flush:
            flush()

    def close_writer(self):
        if self.write_fd is not None:
            os.close(self.write_fd)
            self.write_fd = None

    def finish(self):
        self.close_writer()
        self.thread.join()


def _stream_target(value, flag, args, copies, fds):
    if value is None:
        return
    if isinstance(value, (str, bytes)) or hasattr(value, "__fspath__"):
        args += [flag, _location(value)]
        return
    if not hasattr(value, "write"):
        raise TypeError("%s must be a path or a writable file object" % flag)
    copy = _StreamCopy(value)
    copies.append(copy)
    fds.append(copy.write_fd)
    args += [flag, copy.path]


def _failure_from_notebook(nb):
    """papermill's ``raise_for_execution_errors`` on the notebook without its banner cells."""
    cells = [c for c in nb.cells if ERROR_MARKER_TAG not in c.get("metadata", {}).get("tags", [])]
    for index, cell in enumerate(cells):
        has_sys_exit = False
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                if output.get("ename") == "SystemExit" and output.get("evalue") in ("", "0"):
                    has_sys_exit = True
                    continue
                return PapermillExecutionError(
                    cell_index=index,
                    exec_count=cell.get("execution_count"),
                    source=cell.get("source"),
                    ename=output.get("ename"),
                    evalue=output.get("evalue"),
                    traceback=output.get("traceback", []),
                )
        if not has_sys_exit and cell.get("metadata", {}).get("papermill", {}).get("exception") is True:
            return PapermillExecutionError(
                cell_index=index,
                exec_count=cell.get("execution_count"),
                source=cell.get("source"),
                ename="CellExecutionError",
                evalue="",
                traceback=[],
            )
    return None


def _last_error(stderr, default):
    lines = [l[len("error: "):] for l in stderr.splitlines() if l.startswith("error: ")]
    return "\n".join(lines) if lines else (stderr.strip() or default)


_KERNEL_MISSING = re.compile(r"no such kernel named|no kernel found for language|no kernel name found")


def _raise_for_exit(code, stderr, output, nb):
    """Map the command's exit code (README "Exit codes") to an exception."""
    msg = _last_error(stderr, "nbpipe exited with code %s" % code)
    if code == 1:
        err = _failure_from_notebook(nb) if nb is not None else None
        if err is None:
            err = NbpipeError(msg)
        raise err._attach(code, stderr, output)
    if code == 2:
        cls = KernelNotFoundError if _KERNEL_MISSING.search(stderr) else InvalidInputError
        raise cls(msg)._attach(code, stderr, output)
    if code == 3:
        raise KernelStartError(msg)._attach(code, stderr, output)
    if code == 4:
        err = ExecutionTimeoutError(msg)._attach(code, stderr, output)
        failure = _failure_from_notebook(nb) if nb is not None else None
        if failure is not None:
            err.cell_index, err.exec_count, err.source = (
                failure.cell_index,
                failure.exec_count,
                failure.source,
            )
        raise err
    if code == 5:
        raise OutputNotStoredError(msg)._attach(code, stderr, output)
    if code == 138:
        raise DeadKernelError(msg)._attach(code, stderr, output)
    if code in (129, 130, 143) or code < 0:
        raise RunInterruptedError(msg)._attach(code, stderr, output)
    raise NbpipeError(msg)._attach(code, stderr, output)


def execute_notebook(
    input_path,
    output_path,
    parameters=None,
    engine_name=None,
    request_save_on_cell_execute=True,
    prepare_only=False,
    kernel_name=None,
    language=None,
    progress_bar=True,
    log_output=False,
    stdout_file=None,
    stderr_file=None,
    start_timeout=60,
    report_mode=False,
    cwd=None,
    execution_timeout=None,
    **kwargs
):
    """Execute a notebook with parameters, as ``papermill.execute_notebook`` does.

    ``input_path`` / ``output_path``: a path (``str`` or ``pathlib.Path``), a URL nbpipe
    accepts (``s3://``, ``gs://``, ``az://``, ``http(s)://``), ``"-"`` for stdout as output,
    or ``None`` as output (the notebook is returned, not stored). ``input_path`` may also be an
    ``nbformat.NotebookNode``. ``{name}`` in either path is filled from ``parameters``.
    ``parameters`` is a dict of JSON-representable values (or the path of a YAML file, as in
    papermill); they reach the notebook exactly as papermill injects them.
    ``stdout_file`` / ``stderr_file``: a path or a writable file object receiving the
    notebook's stdout / stderr streams as they are produced. ``log_output`` streams cell
    output to the ``nbpipe`` logger. ``cwd``: the kernel's working directory.
    Extra keyword arguments papermill would pass to its engine are accepted; nbpipe uses
    ``autosave_cell_every`` and ``log_level`` and ignores the rest.

    Returns the output notebook as an ``nbformat.NotebookNode``. Raises
    :class:`PapermillExecutionError` when a cell fails (after the notebook was written) and
    the other :mod:`nbpipe.exceptions` for every other failure.
    """
    yaml_file = None
    if isinstance(parameters, (str, os.PathLike)):
        # papermill reads a YAML file when `parameters` is a string.
        yaml_file = os.fspath(parameters)
        parameters = None
    json_text = to_json(parameters) if parameters else None
    params_for_paths = parameters or {}

    args = ["exec"]
    tmpdir = None
    copies = []
    try:
        if isinstance(input_path, nbformat.NotebookNode) or isinstance(input_path, dict):
            tmpdir = tempfile.mkdtemp(prefix="nbpipe-")
            src = os.path.join(tmpdir, "input.ipynb")
            nbformat.write(nbformat.from_dict(input_path), src)
            input_loc = src
        else:
            input_loc = _parameterize_path(_location(input_path), params_for_paths)
        output_loc = _location(output_path)
        if output_loc is not None:
            output_loc = _parameterize_path(output_loc, params_for_paths)
        to_stdout = output_loc is None or output_loc == "-"
        args += [_escape_template(input_loc), "-" if to_stdout else _escape_template(output_loc)]

        if yaml_file is not None:
            args += ["-f", yaml_file]
        if json_text is not None:
            args += ["--parameters-json", "-"]
        if engine_name is not None:
            args += ["--engine", str(engine_name)]
        if not request_save_on_cell_execute:
            args.append("--no-request-save-on-cell-execute")
        if prepare_only:
            args.append("--prepare-only")
        if kernel_name:
            args += ["-k", str(kernel_name)]
        if language:
            args += ["-l", str(language)]
        args.append("--progress-bar" if progress_bar else "--no-progress-bar")
        if log_output:
            args.append("--log-output")
        if report_mode:
            args.append("--report-mode")
        if cwd is not None:
            args += ["--cwd", _location(cwd)]
        timeout = _seconds(start_timeout, "start_timeout")
        if timeout is not None:
            args += ["--start-timeout", timeout]
        timeout = _seconds(execution_timeout, "execution_timeout")
        if timeout is not None:
            args += ["--execution-timeout", timeout]
        if "autosave_cell_every" in kwargs:
            args += ["--autosave-cell-every", _seconds(kwargs["autosave_cell_every"], "autosave_cell_every") or "0"]
        if "log_level" in kwargs:
            args += ["--log-level", str(kwargs["log_level"])]
        for flag in ("inject_input_path", "inject_output_path", "inject_paths"):
            if kwargs.get(flag):
                args.append("--" + flag.replace("_", "-"))
        fds = []
        _stream_target(stdout_file, "--stdout-file", args, copies, fds)
        _stream_target(stderr_file, "--stderr-file", args, copies, fds)

        try:
            res = _binary.run(
                args,
                stdin_bytes=json_text.encode("utf-8") if json_text is not None else None,
                pass_fds=tuple(fds),
            )
        finally:
            for c in copies:
                c.finish()
            copies = []

        nb = None
        data = None
        if to_stdout:
            data = res.stdout or None
        elif res.returncode in (0, 1, 2, 3, 4, 138, 129, 130, 143):
            try:
                data = read_location(output_loc)
            except (OSError, NbpipeError):
                data = None
        if data:
            try:
                nb = _read_notebook(data)
            except Exception:  # noqa: BLE001 - a partial or foreign file: report the exit code
                nb = None
        if res.returncode != 0:
            _raise_for_exit(res.returncode, res.stderr, None if to_stdout else output_loc, nb)
        if nb is None:
            raise NbpipeError(
                "nbpipe succeeded but the output notebook could not be read back from %s"
                % ("stdout" if to_stdout else output_loc)
            )._attach(0, res.stderr, output_loc)
        return nb
    finally:
        for c in copies:
            c.close_writer()
        if tmpdir is not None:
            import shutil

            shutil.rmtree(tmpdir, ignore_errors=True)


def inspect_notebook(notebook_path, parameters=None):
    """The parameters a notebook declares, as ``papermill.inspect_notebook`` returns them: a
    dict of name → ``{"name", "inferred_type_name", "default", "help"}``. ``{name}`` in the path
    is filled from ``parameters``."""
    path = _parameterize_path(_location(notebook_path), parameters)
    if "://" in path:
        # An object-store or HTTP location: read it with nbpipe's own credentials, then
        # inspect the local copy (`nbpipe inspect` takes files).
        with tempfile.TemporaryDirectory(prefix="nbpipe-inspect-") as tmp:
            local = os.path.join(tmp, "notebook.ipynb")
            with open(local, "wb") as f:
                f.write(read_location(path))
            return _inspect_file(local)
    return _inspect_file(path)


def _inspect_file(path):
    res = _binary.run(["inspect", "--json", path], log=False)
    if res.returncode != 0:
        _raise_for_exit(res.returncode, res.stderr, None, None)
    return {p["name"]: p for p in json.loads(res.stdout.decode("utf-8"))}




def run_project(
    directory=".",
    parameters=None,
    output=None,
    run_id=None,
    jobs=None,
    cache=False,
    trigger=None,
    quiet=True,
):
    """Run an nbpipe project (a folder with ``nbpipe.yaml``), like ``nbpipe run``, and return
    its run manifest (``run.json``) as a dict. Progress goes to the ``nbpipe`` logger.

    ``parameters`` (a dict, typed as for :func:`execute_notebook`) apply to every step;
    ``output`` is the output prefix (a folder or ``s3://``… prefix; ``{run_id}`` is filled in).
    Raises :class:`ProjectRunError` (with ``.manifest``) when a step failed,
    :class:`InvalidInputError` for a bad project or arguments.
    """
    args = ["run", _location(directory)]
    json_text = to_json(parameters) if parameters else None
    if json_text is not None:
        args += ["--parameters-json", "-"]
    if output is not None:
        args += ["--output", _location(output)]
    if run_id is not None:
        args += ["--run-id", str(run_id)]
    if jobs is not None:
        args += ["--jobs", str(int(jobs))]
    if cache:
        args.append("--cache")
    if trigger is not None:
        args += ["--trigger", str(trigger)]
    if quiet:
        args.append("--quiet")
    # `--json`: the run's manifest (run.json) on stdout, whatever the run's outcome.
    args.append("--json")
    res = _binary.run(args, stdin_bytes=json_text.encode("utf-8") if json_text else None)
    manifest = None
    prefix = None
    try:
        manifest = json.loads(res.stdout.decode("utf-8"))
        prefix = manifest.get("output")
    except (ValueError, AttributeError):
        manifest = None
    if res.returncode == 1:
        failed = [
            "%s: %s" % (s.get("id"), s.get("error") or s.get("status"))
            for s in (manifest or {}).get("steps", [])
            if s.get("status") == "failed"
        ]
        message = "; ".join(failed) or _last_error(res.stderr, "a step of the run failed")
        err = ProjectRunError(message)
        err.manifest = manifest
        raise err._attach(1, res.stderr, prefix)
    if res.returncode != 0:
        _raise_for_exit(res.returncode, res.stderr, prefix, None)
    if manifest is None:
        raise NbpipeError("the run finished but its run.json could not be read")._attach(
            0, res.stderr, prefix
        )
    return manifest
