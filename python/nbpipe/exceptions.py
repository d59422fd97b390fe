"""Exceptions raised by the nbpipe Python API.

``PapermillExecutionError`` has papermill's attributes and message; the others replace the
``nbpipe`` command's exit codes (see the README's "Exit codes") with typed exceptions. All
derive from :class:`NbpipeError`, which carries the exit code, the command's stderr and the
output location.
"""

import re

__all__ = [
    "NbpipeError",
    "BinaryNotFoundError",
    "InvalidInputError",
    "MissingParameterError",
    "KernelNotFoundError",
    "KernelStartError",
    "PapermillExecutionError",
    "ExecutionTimeoutError",
    "DeadKernelError",
    "OutputNotStoredError",
    "RunInterruptedError",
    "ProjectRunError",
]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class NbpipeError(Exception):
    """Base class: the ``nbpipe`` command failed.

    Attributes: ``exit_code`` (int or None), ``stderr`` (str, what the command printed),
    ``output_path`` (where the output notebook is, if anywhere).
    """

    exit_code = None
    stderr = ""
    output_path = None

    def _attach(self, exit_code=None, stderr="", output_path=None):
        self.exit_code = exit_code
        self.stderr = stderr
        self.output_path = output_path
        return self


class BinaryNotFoundError(NbpipeError, FileNotFoundError):
    """The ``nbpipe`` executable could not be found (set ``NBPIPE_BIN`` or reinstall)."""


class InvalidInputError(NbpipeError, ValueError):
    """Bad input or usage (exit code 2): a malformed notebook or parameters, a bad path..."""


class MissingParameterError(InvalidInputError, KeyError):
    """A ``{name}`` in a path template has no parameter (papermill's
    ``PapermillMissingParameterException``)."""

    def __str__(self):
        return Exception.__str__(self)


class KernelNotFoundError(InvalidInputError, LookupError):
    """No kernelspec with the requested name or language exists (jupyter_client's
    ``NoSuchKernel``). The output notebook has been written with the parameters injected."""


class KernelStartError(NbpipeError, RuntimeError):
    """The kernel could not be started (exit code 3); the output notebook records it."""


class PapermillExecutionError(NbpipeError):
    """A cell raised an exception (exit code 1), exactly as papermill reports it.

    The output notebook has been written first, with papermill's error banner cells.
    """

    def __init__(self, cell_index, exec_count, source, ename, evalue, traceback):
        self.cell_index = cell_index
        self.exec_count = exec_count
        self.source = source
        self.ename = ename
        self.evalue = evalue
        self.traceback = traceback
        super().__init__(cell_index, exec_count, source, ename, evalue, traceback)

    def __str__(self):
        message = "\n" + 75 * "-" + "\n"
        message += 'Exception encountered at "In [%s]":\n' % (self.exec_count,)
        message += _ANSI.sub("", "\n".join(self.traceback))
        message += "\n"
        return message


class ExecutionTimeoutError(NbpipeError, TimeoutError):
    """A cell ran longer than ``execution_timeout`` (exit code 4); it was interrupted and the
    partial notebook saved. ``cell_index``/``exec_count``/``source`` name the cell when known."""

    cell_index = None
    exec_count = None
    source = None


class DeadKernelError(NbpipeError, RuntimeError):
    """The kernel died mid-run (exit code 138: segfault, ``os._exit``, OOM kill); the partial
    notebook is saved with an explanation (nbclient's ``DeadKernelError``)."""


class OutputNotStoredError(NbpipeError, OSError):
    """The output notebook could not be stored (exit code 5); a local copy was kept and its
    path is in the message."""

    def __str__(self):
        return Exception.__str__(self)


class RunInterruptedError(NbpipeError):
    """The run was stopped by a signal (exit codes 129/130/143); the notebook was saved."""


class ProjectRunError(NbpipeError):
    """``run_project``: a step failed. ``manifest`` holds the run manifest (``run.json``) when
    it could be read."""

    manifest = None
