"""nbpipe: run Jupyter notebooks in production exactly as written, with papermill's Python API.

Switching from papermill is an import change::

    import nbpipe as pm
    nb = pm.execute_notebook("in.ipynb", "out.ipynb", parameters={"alpha": 0.6})

The work is done by the ``nbpipe`` binary installed with this package (a Rust engine that
never hangs and saves in linear time); this module runs it, passes parameters as typed JSON,
reads the output notebook back and turns exit codes into exceptions. See docs/python.md.
"""

from ._api import execute_notebook, inspect_notebook, read_location, run_project
from ._binary import find_nbpipe_bin
from .exceptions import (
    BinaryNotFoundError,
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

__all__ = [
    "execute_notebook",
    "inspect_notebook",
    "run_project",
    "read_location",
    "find_nbpipe_bin",
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
