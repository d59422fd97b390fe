"""Finding the ``nbpipe`` executable and running it.

The wheel installs the binary into the interpreter's scripts directory (``bin/`` of a venv,
``~/.local/bin`` for ``--user``). Lookup order: ``$NBPIPE_BIN``, the scripts directory of this
interpreter's install scheme, the directory of ``sys.executable``, the user scheme's scripts
directory, then ``PATH``.

:func:`run` streams the command's stderr line by line to the ``nbpipe`` logger while it runs,
feeds stdin from a thread and collects stdout, so no pipe can fill up and block the command.
"""

import logging
import os
import shutil
import subprocess
import sys
import sysconfig
import threading

from .exceptions import BinaryNotFoundError

logger = logging.getLogger("nbpipe")

_EXE = "nbpipe.exe" if os.name == "nt" else "nbpipe"


def _candidates():
    env = os.environ.get("NBPIPE_BIN")
    if env:
        yield env
        return
    try:
        yield os.path.join(sysconfig.get_path("scripts"), _EXE)
    except KeyError:
        pass
    yield os.path.join(os.path.dirname(os.path.abspath(sys.executable)), _EXE)
    scheme = "nt_user" if os.name == "nt" else "posix_user"
    try:
        yield os.path.join(sysconfig.get_path("scripts", scheme), _EXE)
    except KeyError:
        pass
    found = shutil.which("nbpipe")
    if found:
        yield found


def find_nbpipe_bin():
    """The path of the ``nbpipe`` executable; raises :class:`BinaryNotFoundError`."""
    tried = []
    for path in _candidates():
        tried.append(path)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    if os.environ.get("NBPIPE_BIN"):
        raise BinaryNotFoundError("NBPIPE_BIN=%s is not an executable file" % tried[0])
    raise BinaryNotFoundError(
        "the `nbpipe` executable was not found (looked at %s and PATH); reinstall the nbpipe "
        "package or set NBPIPE_BIN" % ", ".join(tried)
    )


class Result:
    """What a finished command left: exit code, stdout bytes, stderr text."""

    def __init__(self, returncode, stdout, stderr):
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


def _log_line(line):
    if line.startswith("error: "):
        logger.error(line[len("error: "):])
    elif line.startswith("warning: "):
        logger.warning(line[len("warning: "):])
    else:
        logger.info(line)


def run(args, stdin_bytes=None, log=True, pass_fds=(), cwd=None):
    """Run ``nbpipe ARGS``; stderr lines go to the ``nbpipe`` logger as they arrive (when
    ``log``) and are returned too. A KeyboardInterrupt stops the command the way Ctrl-C in a
    terminal would (SIGINT: the cell is interrupted, the notebook saved) and is re-raised."""
    cmd = [find_nbpipe_bin()] + [os.fspath(a) for a in args]
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE if stdin_bytes is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        pass_fds=pass_fds,
        cwd=cwd,
    )
    out_chunks = []
    err_lines = []

    def feed():
        try:
            proc.stdin.write(stdin_bytes)
        except (BrokenPipeError, OSError):
            pass
        finally:
            try:
                proc.stdin.close()
            except OSError:
                pass

    def collect_stdout():
        out_chunks.append(proc.stdout.read())

    threads = [threading.Thread(target=collect_stdout, daemon=True)]
    if stdin_bytes is not None:
        threads.append(threading.Thread(target=feed, daemon=True))
    for t in threads:
        t.start()
    try:
        for raw in iter(proc.stderr.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            err_lines.append(line)
            if log:
                _log_line(line)
        proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(2)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise
    finally:
        for t in threads:
            t.join()
        proc.stderr.close()
        proc.stdout.close()
    return Result(proc.returncode, b"".join(out_chunks), "\n".join(err_lines))
