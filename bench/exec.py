#!/usr/bin/env python3
"""`nbpipe exec` beside a running zygote (run it through bench/exec.sh, which provisions the
venv and builds nbpipe).

A project folder (bench/out/exec/: an empty requirements.txt, so its managed environment is
ipykernel alone, and an nbpipe.yaml whose one step waits for a file) holds `one.ipynb`, a
parameters cell and one cell that prints whether its kernel leads its own session (forked
kernels do, and so do papermill's) and its parent pid. Measured, alternating, end to end (process start to exit):

* `papermill one.ipynb OUT -k python3` (the bench venv's kernel);
* `nbpipe exec one.ipynb OUT --no-fork-server` (a cold kernel of the managed environment);
* `nbpipe exec one.ipynb OUT` while `nbpipe run` of the folder runs its waiting step, so the
  environment's zygote is up and advertised: the kernel is forked from it. Each such run must
  print the advertised zygote's pid as its parent, and no other may, or the bench fails.

Results: a table on stdout and bench/out/exec-results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench as core  # noqa: E402  (cpu_busy, table, version_of, BenchError, BUSY_WARN)

BenchError = core.BenchError
OUT_DIR = Path(__file__).resolve().parent / "out"
PROJECT = OUT_DIR / "exec"
NBPIPE_HOME = OUT_DIR / "nbpipe-home"  # isolated: env builds here never touch ~/.cache/nbpipe
ZYGOTES = OUT_DIR / "exec-zygotes"
RESULTS = OUT_DIR / "exec-results.json"
VENV = Path(sys.prefix)
GO = PROJECT / "go"
PROBE = "import os\nprint(os.getsid(0) == os.getpid(), os.getppid())"


def log(msg: str) -> None:
    print(f"[bench-exec] {msg}", file=sys.stderr, flush=True)


def notebook(cells: list[str]) -> dict:
    def code(src, tags=()):
        return {"cell_type": "code", "execution_count": None, "metadata": {"tags": list(tags)},
                "outputs": [], "source": src}
    return {"cells": [code("x = 1", ["parameters"])] + [code(c) for c in cells],
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                        "language": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def make_project() -> None:
    shutil.rmtree(PROJECT, ignore_errors=True)
    PROJECT.mkdir(parents=True)
    (PROJECT / "requirements.txt").write_text("")
    (PROJECT / "nbpipe.yaml").write_text(
        "output: runs/{run_id}/\nnotebooks: [hold.ipynb]\n")
    wait = f"import os, time\nwhile not os.path.exists({str(GO)!r}):\n    time.sleep(0.02)"
    (PROJECT / "hold.ipynb").write_text(json.dumps(notebook([wait])))
    (PROJECT / "one.ipynb").write_text(json.dumps(notebook([PROBE])))


def tool_env() -> dict:
    """bench.py's (the venv first on PATH and JUPYTER_PATH), plus nbpipe's own folders."""
    env = core.tool_env()
    env["NBPIPE_HOME"] = str(NBPIPE_HOME)
    env["NBPIPE_ZYGOTES"] = str(ZYGOTES)
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    for k in ("VIRTUAL_ENV", "CONDA_PREFIX"):
        env.pop(k, None)
    return env


def probe(out: Path) -> tuple[bool, int]:
    """(forked?, parent pid) printed by the notebook's probe cell."""
    nb = json.loads(out.read_text())
    text = "".join("".join(o.get("text", "")) for c in nb["cells"] for o in c.get("outputs", [])
                   if o.get("output_type") == "stream")
    forked, ppid = text.split()[:2]
    return forked == "True", int(ppid)


def timed(argv: list[str], env: dict, out: Path, timeout: float) -> tuple[float, bool, int]:
    out.unlink(missing_ok=True)
    t0 = time.perf_counter()
    p = subprocess.run(argv, env=env, cwd=PROJECT, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=timeout)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise BenchError(f"{argv[0]} exited {p.returncode}: {p.stderr.decode()[-2000:]}")
    forked, ppid = probe(out)
    return wall, forked, ppid


def hold_zygote(nbpipe: str, env: dict, timeout: float) -> tuple[subprocess.Popen, int]:
    """Start `nbpipe run` of the project; once its zygote is advertised, its pid."""
    GO.unlink(missing_ok=True)
    shutil.rmtree(ZYGOTES, ignore_errors=True)
    run = subprocess.Popen([nbpipe, "run", str(PROJECT), "--quiet"], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    deadline = time.time() + timeout
    while time.time() < deadline:
        for f in ZYGOTES.glob("*.json") if ZYGOTES.is_dir() else []:
            try:
                return run, int(json.loads(f.read_text())["pid"])
            except (ValueError, KeyError, OSError):
                pass
        if run.poll() is not None:
            raise BenchError(f"nbpipe run exited {run.returncode} before its zygote was up")
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)
    raise BenchError("no zygote advertised in time")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=10, help="runs per variant (default 10)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds before a run fails")
    args = ap.parse_args()
    nbpipe = os.environ.get("NBPIPE_BIN") or ""
    if not Path(nbpipe).is_file():
        raise BenchError(f"NBPIPE_BIN={nbpipe!r} is not a file (run bench/exec.sh)")
    env = tool_env()
    make_project()
    log("building the project's managed environment (nbpipe env)")
    subprocess.run([nbpipe, "env", str(PROJECT), "--quiet"], env=env, check=True)
    busy = core.cpu_busy()
    if busy > core.BUSY_WARN:
        log(f"WARNING: the CPUs were {busy:.0%} busy before the bench: other work will skew it")
    out = PROJECT / "one.out.ipynb"
    variants = {
        "papermill": [str(VENV / "bin" / "papermill"), "one.ipynb", str(out), "-k", "python3",
                      "--no-progress-bar"],
        "nbpipe exec, cold": [nbpipe, "exec", "one.ipynb", str(out), "--no-fork-server"],
        "nbpipe exec, forked": [nbpipe, "exec", "one.ipynb", str(out)],
    }
    walls: dict[str, list[float]] = {k: [] for k in variants}
    run, zygote = hold_zygote(nbpipe, env, args.timeout)
    try:
        # One unmeasured round first: page cache, .pyc files.
        for name, argv in variants.items():
            timed(argv, env, out, args.timeout)
        for i in range(args.reps):
            for name, argv in variants.items():
                wall, forked, ppid = timed(argv, env, out, args.timeout)
                # (papermill's kernels lead their own session too: the parent decides.)
                if name.endswith("forked") and (not forked or ppid != zygote):
                    raise BenchError(f"{name}: not forked from the held zygote {zygote} "
                                     f"(own session={forked}, parent {ppid})")
                if not name.endswith("forked") and ppid == zygote:
                    raise BenchError(f"{name}: forked from the zygote, expected a cold kernel")
                walls[name].append(wall)
    finally:
        GO.write_text("")
        try:
            run.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
    busy_after = core.cpu_busy()
    pm = statistics.median(walls["papermill"])
    rows = []
    for name, xs in walls.items():
        med = statistics.median(xs)
        rows.append([name, f"{med * 1e3:.0f} ms", f"{min(xs) * 1e3:.0f} ms",
                     f"{max(xs) * 1e3:.0f} ms", f"1/{pm / med:.1f}" if name != "papermill" else "1"])
    print(f"\n`nbpipe exec` of a one-cell notebook, {args.reps} alternating runs each "
          f"(CPUs {busy:.0%} busy before, {busy_after:.0%} after):\n")
    core.table(["", "median", "min", "max", "vs papermill"], rows)
    RESULTS.write_text(json.dumps({
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": platform.node(),
        "cpu_busy_before": busy, "cpu_busy_after": busy_after, "reps": args.reps,
        "wall_s": walls, "median_s": {k: statistics.median(v) for k, v in walls.items()},
    }, indent=1))
    log(f"results in {RESULTS}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        log(f"ERROR: {e}")
        sys.exit(1)
