#!/usr/bin/env python3
"""nbpipe vs papermill benchmark driver (run it through bench/run.sh, which provisions the venv).

What it measures, all in one run on the same machine and the same kernel:

* Kernel floor, with jupyter_client directly (no notebook runner at all):
  - kernel start: KernelManager.start_kernel() until the first kernel_info reply;
  - per-cell round trip: execute `x = 1` N times, each waiting for the execute_reply and the
    iopub `idle` status, divided by N. No runner can do a trivial cell faster than this.
* For each case notebook (1, 200, 1,000 trivial cells; 10 cells of ~2 MB random PNG each),
  for each tool (papermill / nbpipe, each with default saving and with
  --no-request-save-on-cell-execute):
  - wall time of the runner command (spawn to exit, kernel start and shutdown included);
  - peak RSS of the runner process alone (VmHWM), never the kernel's: see peak_rss below.
  Each measurement is repeated (3 times, 1 with --quick) and the median is reported; every run
  must exit 0 and leave an output notebook with every code cell executed, or the bench fails.

Results are printed as tables with the targets and written to bench/out/results.json.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out"
NB_DIR = OUT_DIR / "notebooks"
RUN_DIR = OUT_DIR / "runs"
RESULTS = OUT_DIR / "results.json"

VENV = Path(sys.prefix)  # bench.py runs with the venv's python3 (see run.sh)
KERNEL = "python3"
LOG_LEVEL = "WARNING"  # papermill logs every cell at INFO; keep both tools quiet
COMMON_FLAGS = ["-k", KERNEL, "--no-progress-bar", "--log-level", LOG_LEVEL]
NO_SAVE = "--no-request-save-on-cell-execute"
HIST_ARG = "--HistoryManager.hist_file=:memory:"  # what nbclient (papermill) adds to ipykernel's argv

# Targets from the issue.
TARGET_RATIO_1000 = 1 / 30  # nbpipe default wall at 1,000 cells vs papermill default
TARGET_PER_CELL_OVER_FLOOR = 0.05  # per-cell cost at most 5 % above the kernel floor
TARGET_RSS_MIB = 25.0  # runner peak RSS
TARGET_ONE_CELL_SLACK_S = 0.100  # one-cell wall at most kernel start + 100 ms

BUSY_WARN = 0.10  # warn if the CPUs are this busy before the bench starts

# Image case: each cell builds a valid PNG of random (incompressible) RGB pixels with the
# standard library only and displays it, so no numpy/pillow/matplotlib and no downloads.
# 816 x 816 x 3 bytes ~= 2.0 MB of PNG per cell -> ~20 MB of images (~27 MB of base64 in the .ipynb).
IMAGE_CELLS = 10
IMAGE_SIDE = 816
IMAGE_CELL_SOURCE = f"""\
import os, struct, zlib
from IPython.display import Image, display
w = h = {IMAGE_SIDE}
raw = b"".join(b"\\x00" + os.urandom(w * 3) for _ in range(h))  # filter byte + random RGB row
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
png = (b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
       + chunk(b"IDAT", zlib.compress(raw, 1)) + chunk(b"IEND", b""))
display(Image(data=png, format="png"))
"""
# base64 of the PNG (4/3 of ~2.0 MB); the output check requires at least 90 % of it.
IMAGE_MIN_B64 = int(IMAGE_SIDE * (IMAGE_SIDE * 3 + 1) * 4 / 3 * 0.9)

# (case name, number of code cells, source of each cell)
CASES = [
    ("cells_1", 1, "x = 1"),
    ("cells_200", 200, "x = 1"),
    ("cells_1000", 1000, "x = 1"),
    ("images_20mb", IMAGE_CELLS, IMAGE_CELL_SOURCE),
]
TOOLS = ["papermill", "papermill_nosave", "nbpipe", "nbpipe_nosave"]
TOOL_LABELS = {
    "papermill": "papermill",
    "papermill_nosave": "papermill --no-save",
    "nbpipe": "nbpipe",
    "nbpipe_nosave": "nbpipe --no-save",
}


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    """A run failed or produced a wrong notebook: the numbers would be meaningless."""


# --------------------------------------------------------------------------------------------
# Peak RSS of the runner process only.
#
# GNU time's %M (and wait4's ru_maxrss) is NOT the runner's own peak: Linux reports
# max(own peak, peak of the largest reaped descendant), and both runners reap their kernel,
# which is usually the biggest process. So instead we read VmHWM ("high water mark" of the
# resident set, of this process's own address space only) from /proc/<pid>/status at the last
# moment it exists: we attach with ptrace(PTRACE_SEIZE, PTRACE_O_TRACEEXIT), which stops the
# runner at exit before its memory is torn down, read VmHWM, and let it go. That is exact and
# costs nothing while the runner runs (it is otherwise not stopped; signals are passed through).
# If ptrace is not permitted, we fall back to polling VmHWM every 5 ms (may miss growth in the
# last few ms before exit); the method used is recorded in results.json.
# --------------------------------------------------------------------------------------------
_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
_libc.ptrace.restype = ctypes.c_long
PTRACE_CONT = 7
PTRACE_SEIZE = 0x4206
PTRACE_O_TRACEEXIT = 0x40
PTRACE_EVENT_EXIT = 6


def _vmhwm_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, ValueError):
        pass
    return None


def run_measured(argv: list[str], env: dict, log_path: Path, timeout: float) -> dict:
    """Run argv; return exit code, wall seconds, runner peak RSS (KiB) and the RSS method."""
    with open(log_path, "wb") as logf:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=logf,
                                stderr=subprocess.STDOUT, start_new_session=True)
    pid = proc.pid
    traced = _libc.ptrace(PTRACE_SEIZE, pid, None, ctypes.c_void_p(PTRACE_O_TRACEEXIT)) == 0

    hwm = [None]
    stop_poll = threading.Event()
    poller = None
    if not traced:  # fallback: sample VmHWM (it only grows, so the last value seen is the peak)
        def poll():
            while not stop_poll.is_set():
                v = _vmhwm_kib(pid)
                if v is not None:
                    hwm[0] = v
                stop_poll.wait(0.005)
        poller = threading.Thread(target=poll, daemon=True)
        poller.start()

    timed_out = threading.Event()

    def kill_group():
        timed_out.set()
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    watchdog = threading.Timer(timeout, kill_group)
    watchdog.start()
    try:
        while True:
            _, status = os.waitpid(pid, 0)
            if os.WIFSTOPPED(status):  # only a traced runner stops
                sig, event = os.WSTOPSIG(status), status >> 16
                if sig == signal.SIGTRAP and event == PTRACE_EVENT_EXIT:
                    hwm[0] = _vmhwm_kib(pid)  # exiting, address space still intact
                    inject = 0
                elif event:  # other ptrace event stops (e.g. group-stop): resume, inject nothing
                    inject = 0
                else:  # a signal being delivered to the runner: pass it on unchanged
                    inject = sig
                _libc.ptrace(PTRACE_CONT, pid, None, ctypes.c_void_p(inject))
                continue
            wall = time.perf_counter() - t0
            rc = os.waitstatus_to_exitcode(status)
            break
    except BaseException:  # e.g. Ctrl-C: do not leave the runner behind
        kill_group()
        raise
    finally:
        watchdog.cancel()
        stop_poll.set()
        if poller:
            poller.join()
    proc.returncode = rc  # reaped by us; keep Popen from waiting again
    if timed_out.is_set():
        raise BenchError(f"timed out after {timeout:.0f} s: {' '.join(argv)} (log: {log_path})")
    return {"rc": rc, "wall_s": wall, "rss_kib": hwm[0], "rss_method": "ptrace-exit" if traced else "poll-5ms"}


# --------------------------------------------------------------------------------------------
# Notebooks and output checks
# --------------------------------------------------------------------------------------------
def make_notebooks() -> dict[str, Path]:
    import nbformat

    NB_DIR.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, n, source in CASES:
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python 3", "language": "python"}
        nb.metadata["language_info"] = {"name": "python"}
        nb.cells = [nbformat.v4.new_code_cell(source) for _ in range(n)]
        path = NB_DIR / f"{name}.ipynb"
        nbformat.write(nb, path)
        paths[name] = path
    return paths


def check_output(path: Path, case: str, n_cells: int) -> None:
    """Fail unless the output notebook exists and every code cell ran without error."""
    if not path.is_file():
        raise BenchError(f"{case}: output notebook {path} was not written")
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise BenchError(f"{case}: output notebook {path} is not valid JSON: {e}") from e
    code = [c for c in nb.get("cells", []) if c.get("cell_type") == "code"]
    executed = [c for c in code if isinstance(c.get("execution_count"), int)]
    if len(code) != n_cells or len(executed) != n_cells:
        raise BenchError(f"{case}: {path} has {len(executed)} executed of {len(code)} code cells, "
                         f"expected {n_cells} executed")
    for i, c in enumerate(code):
        outs = c.get("outputs", [])
        if any(o.get("output_type") == "error" for o in outs):
            raise BenchError(f"{case}: cell {i} of {path} holds an error output")
        if case.startswith("images"):
            pngs = [o["data"]["image/png"] for o in outs if "image/png" in o.get("data", {})]
            size = sum(len(p) if isinstance(p, str) else len("".join(p)) for p in pngs)
            if size < IMAGE_MIN_B64:
                raise BenchError(f"{case}: cell {i} of {path} has {size} chars of image/png, "
                                 f"expected >= {IMAGE_MIN_B64}")


# --------------------------------------------------------------------------------------------
# Kernel floor (jupyter_client directly)
# --------------------------------------------------------------------------------------------
def _recv(session, sock) -> dict:
    """Next message on sock; Session.recv returns None on the socket's receive timeout."""
    msg = session.recv(sock, mode=0)[1]
    if msg is None:
        import zmq
        raise zmq.Again()
    return msg


def _run_cell(session, shell, iopub, code: str = "x = 1") -> None:
    """Execute one cell the way a runner must: wait for its execute_reply and its iopub idle."""
    sent = session.send(shell, "execute_request", {
        "code": code, "silent": False, "store_history": True, "user_expressions": {},
        "allow_stdin": False, "stop_on_error": True})
    msg_id = sent["header"]["msg_id"]
    while True:
        msg = _recv(session, shell)
        if msg["parent_header"].get("msg_id") == msg_id:
            if msg["content"].get("status") != "ok":
                raise BenchError(f"kernel floor: cell failed: {msg['content']}")
            break
    while True:
        msg = _recv(session, iopub)
        if (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status"
                and msg["content"]["execution_state"] == "idle"):
            break


def _connect(ctx, kind: int, addr: str):
    import zmq

    sock = ctx.socket(kind)
    sock.linger = 0
    sock.rcvtimeo = 60_000  # ms; a stuck kernel fails the bench instead of hanging it
    if kind == zmq.SUB:
        sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect(addr)
    return sock


def kernel_floor(reps: int, n_cells: int) -> dict:
    """Kernel start and per-cell round trip with the leanest Python client there is:
    jupyter_client's KernelManager to start the kernel, then its Session (signing,
    serialisation) over plain blocking zmq sockets, no event loop or client threads, so
    the figure is as close to the kernel's own cost as Python gets."""
    import zmq
    from jupyter_client.manager import KernelManager

    ctx = zmq.Context.instance()
    starts, per_cell = [], []
    for _ in range(reps):
        km = KernelManager(kernel_name=KERNEL)
        sockets = []
        t0 = time.perf_counter()
        # Same kernel command line as papermill/nbclient: IPython history kept in memory, not
        # in ~/.ipython's sqlite file (which would add a disk write per cell).
        km.start_kernel(extra_arguments=[HIST_ARG], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            shell = _connect(ctx, zmq.DEALER, f"tcp://{km.ip}:{km.shell_port}")
            sockets.append(shell)
            iopub = _connect(ctx, zmq.SUB, f"tcp://{km.ip}:{km.iopub_port}")
            sockets.append(iopub)
            session = km.session
            # Start time = until the kernel answers kernel_info (zmq queues the request until
            # the kernel binds its shell socket, so one request suffices).
            session.send(shell, "kernel_info_request", {})
            while _recv(session, shell)["msg_type"] != "kernel_info_reply":
                pass
            starts.append(time.perf_counter() - t0)
            # Warm-up (not timed): wait until iopub is subscribed (its first idle arrives), then
            # run a few more cells so the timed ones pay no lazy-import costs.
            iopub.rcvtimeo = 2_000
            for attempt in range(10):
                try:
                    _run_cell(session, shell, iopub)
                    break
                except zmq.Again as e:
                    if attempt == 9:
                        raise BenchError("kernel floor: no iopub idle status from the kernel") from e
            iopub.rcvtimeo = 60_000
            for _ in range(20):
                _run_cell(session, shell, iopub)
            t0 = time.perf_counter()
            for _ in range(n_cells):
                _run_cell(session, shell, iopub)
            per_cell.append((time.perf_counter() - t0) / n_cells)
        except zmq.Again as e:
            raise BenchError("kernel floor: the kernel stopped answering (60 s)") from e
        finally:
            for sock in sockets:
                sock.close()
            km.shutdown_kernel(now=True)  # not timed; avoids ipykernel's occasional slow exit
    return {
        "kernel_start_s": statistics.median(starts),
        "per_cell_s": statistics.median(per_cell),
        "kernel_start_runs_s": starts,
        "per_cell_runs_s": per_cell,
        "cells_per_run": n_cells,
        "client": "jupyter_client KernelManager + Session over blocking pyzmq sockets",
    }


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------
def tool_argv(tool: str, nbpipe_bin: str, inp: Path, out: Path) -> list[str]:
    if tool.startswith("papermill"):
        argv = [str(VENV / "bin" / "papermill"), str(inp), str(out)] + COMMON_FLAGS
    else:
        argv = [nbpipe_bin, "exec", str(inp), str(out)] + COMMON_FLAGS
    if tool.endswith("_nosave"):
        argv.append(NO_SAVE)
    return argv


def tool_env() -> dict:
    """Both tools: the venv first on PATH and its share/jupyter first on JUPYTER_PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["JUPYTER_PATH"] = str(VENV / "share" / "jupyter")
    env.pop("PYTHONPATH", None)
    return env


def bench_kernels() -> set[int]:
    """PIDs of live kernels started from the bench venv (their argv holds ipykernel_launcher)."""
    pids = set()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"ipykernel_launcher" in argv and argv[0].startswith(str(VENV).encode()):
            pids.add(int(d.name))
    return pids


def reap_leftover_kernels(before: set[int], what: str) -> list[int]:
    """A runner must stop its kernel before it exits. Kernels it left behind would load the
    machine during later runs: report them, then kill them (they are this run's children)."""
    deadline = time.monotonic() + 2.0
    while (left := bench_kernels() - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in left:
        log(f"WARNING: {what} left its kernel (pid {pid}) running; killing it")
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return sorted(left)


def run_once(tool, case, n_cells, inp, nbpipe_bin, env, timeout, tag) -> dict:
    case_dir = RUN_DIR / case
    case_dir.mkdir(parents=True, exist_ok=True)
    out = case_dir / f"{tool}.ipynb"
    logp = case_dir / f"{tool}.{tag}.log"
    out.unlink(missing_ok=True)
    argv = tool_argv(tool, nbpipe_bin, inp, out)
    before = bench_kernels()
    r = run_measured(argv, env, logp, timeout)
    r["leftover_kernels"] = reap_leftover_kernels(before, f"{tool} on {case}")
    if r["rc"] != 0:
        tail = logp.read_text(errors="replace")[-3000:]
        raise BenchError(f"{tool} on {case} exited {r['rc']}: {' '.join(argv)}\n--- {logp} (tail)\n{tail}")
    check_output(out, case, n_cells)
    if r["rss_kib"] is None:
        raise BenchError(f"{tool} on {case}: could not read the runner's VmHWM")
    return r


def cpu_busy(seconds: float = 2.0) -> float:
    """Fraction of all CPUs' time spent non-idle over a short sample (from /proc/stat)."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]  # total, idle + iowait
    t0, i0 = sample()
    time.sleep(seconds)
    t1, i1 = sample()
    return 1 - (i1 - i0) / max(t1 - t0, 1)


def version_of(argv, env) -> str:
    try:
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60).stdout.strip()
    except OSError as e:
        return f"unavailable ({e})"


def median_or_none(xs):
    return statistics.median(xs) if xs else None


def fmt_s(x):
    return "—" if x is None else f"{x:.3f} s"


def fmt_mib(x):
    return "—" if x is None else f"{x:.1f} MiB"


def mark(ok):
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


def table(headers, rows):
    """Print rows under headers: first column left-aligned, the others right-aligned."""
    widths = [max(len(str(r[i])) for r in [headers] + rows) for i in range(len(headers))]

    def line(r):
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(r, widths, strict=True)))
    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="1 repetition, and skip papermill default on 1,000 cells (~400 s)")
    ap.add_argument("--papermill-only", action="store_true", help="do not run nbpipe")
    ap.add_argument("--reps", type=int, help="repetitions per measurement (default 3, 1 with --quick)")
    ap.add_argument("--only", help="comma-separated cases to run (" + ",".join(c[0] for c in CASES) + ")")
    ap.add_argument("--floor-cells", type=int, default=1000, help="cells per kernel-floor run")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds before a single run is killed")
    args = ap.parse_args()
    reps = args.reps or (1 if args.quick else 3)
    cases = [c for c in CASES if not args.only or c[0] in args.only.split(",")]
    if not cases:
        ap.error("--only matched no case")

    env = tool_env()
    os.environ["JUPYTER_PATH"] = env["JUPYTER_PATH"]  # for the in-process kernel floor
    os.environ["PATH"] = env["PATH"]

    # The kernelspec both tools must resolve: the venv's python3, first on JUPYTER_PATH.
    from jupyter_client.kernelspec import KernelSpecManager
    spec = KernelSpecManager().get_kernel_spec(KERNEL)
    if not Path(spec.resource_dir).resolve().is_relative_to((VENV / "share" / "jupyter").resolve()):
        raise BenchError(f"kernelspec {KERNEL} resolves to {spec.resource_dir}, not inside {VENV}/share/jupyter")
    log(f"kernelspec {KERNEL}: {spec.resource_dir} -> {spec.argv[0]}")

    # nbpipe: NBPIPE_BIN (set by run.sh to the cargo build, or by the user).
    nbpipe_bin = os.environ.get("NBPIPE_BIN", "")
    nbpipe_skip = None
    if args.papermill_only:
        nbpipe_skip = "--papermill-only"
    elif not nbpipe_bin:
        nbpipe_skip = "NBPIPE_BIN is not set"
    elif not (os.path.isfile(nbpipe_bin) and os.access(nbpipe_bin, os.X_OK)):
        nbpipe_skip = f"NBPIPE_BIN={nbpipe_bin} is not an executable file"
    if nbpipe_skip:
        log(f"SKIPPING nbpipe: {nbpipe_skip}. Only the papermill half and the kernel floor are measured.")
    tools = [t for t in TOOLS if not (nbpipe_skip and t.startswith("nbpipe"))]

    meta = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": {"machine": platform.machine(), "kernel": platform.release(), "cpus": os.cpu_count()},
        "python": sys.version.split()[0],
        "venv": str(VENV),
        "kernelspec": {"resource_dir": spec.resource_dir, "argv": spec.argv},
        "papermill": version_of([str(VENV / "bin" / "papermill"), "--version"], env).split(" from ")[0],
        "nbpipe": None if nbpipe_skip else version_of([nbpipe_bin, "--version"], env),
        "nbpipe_bin": nbpipe_bin or None,
        "nbpipe_skipped": nbpipe_skip,
        "cpu_busy_before": cpu_busy(),  # other work on the machine skews every figure
        "reps": reps,
        "quick": args.quick,
        "flags": COMMON_FLAGS,
    }
    for pkg in ("ipykernel", "jupyter_client", "nbformat", "nbclient", "pyzmq"):
        try:
            from importlib.metadata import version
            meta[pkg] = version(pkg)
        except Exception:  # noqa: BLE001 - informational only
            meta[pkg] = None
    if not nbpipe_skip:  # nbpipe must resolve the same kernelspec
        listing = version_of([nbpipe_bin, "kernels", "--json"], env)
        meta["nbpipe_kernels"] = listing
        try:
            dirs = [k.get("resource_dir") for k in json.loads(listing) if k.get("name") == KERNEL]
        except (ValueError, AttributeError, TypeError):
            log("note: could not parse `nbpipe kernels --json`; kernelspec not cross-checked")
        else:
            if dirs and Path(dirs[0]).resolve() != Path(spec.resource_dir).resolve():
                raise BenchError(f"nbpipe resolves kernel {KERNEL} to {dirs[0]}, papermill to {spec.resource_dir}")
            log(f"nbpipe kernelspec {KERNEL}: {dirs[0] if dirs else 'not listed (!)'}")

    if meta["cpu_busy_before"] > BUSY_WARN:
        log(f"WARNING: the CPUs were {meta['cpu_busy_before']:.0%} busy before the bench: "
            "other work will skew the figures")
    shutil.rmtree(RUN_DIR, ignore_errors=True)
    notebooks = make_notebooks()
    meta["notebook_bytes"] = {name: notebooks[name].stat().st_size for name, _, _ in CASES}

    # 1. Kernel floor (also warms the venv's .pyc and page cache for the kernel).
    #    It is measured again after the tools (step 4) and the median of both is used; the two
    #    halves are printed so that drift of the machine during the bench shows.
    floor_reps = max(reps, 3)  # cheap (a few seconds each), so never fewer than 3
    log(f"kernel floor (before): {floor_reps} kernels, start + {args.floor_cells} x `x = 1` each")
    floor_before = kernel_floor(floor_reps, args.floor_cells)
    log(f"  kernel start {floor_before['kernel_start_s']:.3f} s, per cell {floor_before['per_cell_s'] * 1e3:.3f} ms")

    # 2. Warm-up: one unrecorded run of each tool, so no measured run pays first-use costs.
    for tool in tools:
        log(f"warm-up: {tool}")
        run_once(tool, "cells_1", 1, notebooks["cells_1"], nbpipe_bin, env, args.timeout, "warmup")

    # 3. Measurements. Repetitions are interleaved across tools to spread any machine drift.
    cases_out = {}
    for name, n, _ in cases:
        runs = {t: [] for t in TOOLS}
        status = {t: "ok" for t in TOOLS}
        for t in TOOLS:
            if t not in tools:
                status[t] = f"skipped: {nbpipe_skip}"
            elif args.quick and name == "cells_1000" and t == "papermill":
                status[t] = "skipped: --quick (papermill default at 1,000 cells takes minutes)"
        for rep in range(reps):
            for t in TOOLS:
                if status[t] != "ok":
                    continue
                log(f"{name}: {t} (run {rep + 1}/{reps})")
                r = run_once(t, name, n, notebooks[name], nbpipe_bin, env, args.timeout, f"run{rep + 1}")
                log(f"  {r['wall_s']:.3f} s, runner peak RSS {r['rss_kib'] / 1024:.1f} MiB")
                runs[t].append(r)
        for t in TOOLS:
            if status[t].startswith("skipped"):
                log(f"{name}: {t} {status[t]}")
        cases_out[name] = {
            "cells": n,
            "notebook_bytes": meta["notebook_bytes"][name],
            "tools": {t: {
                "status": status[t],
                "wall_s": median_or_none([r["wall_s"] for r in runs[t]]),
                "rss_mib": median_or_none([r["rss_kib"] / 1024 for r in runs[t]]),
                "runs": runs[t],
            } for t in TOOLS},
        }

    # 4. Kernel floor again, and the machine's load after the bench.
    log(f"kernel floor (after): {floor_reps} kernels")
    floor_after = kernel_floor(floor_reps, args.floor_cells)
    log(f"  kernel start {floor_after['kernel_start_s']:.3f} s, per cell {floor_after['per_cell_s'] * 1e3:.3f} ms")
    starts = floor_before["kernel_start_runs_s"] + floor_after["kernel_start_runs_s"]
    cells = floor_before["per_cell_runs_s"] + floor_after["per_cell_runs_s"]
    floor = {
        "kernel_start_s": statistics.median(starts),
        "per_cell_s": statistics.median(cells),
        "before": floor_before,
        "after": floor_after,
        "client": floor_before["client"],
    }
    meta["cpu_busy_after"] = cpu_busy()
    results = {"meta": meta, "floor": floor, "cases": cases_out}
    results["derived"], results["targets"] = derive(cases_out, floor)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    report(results)
    print(f"\nresults: {RESULTS}")
    return 0


def derive(cases: dict, floor: dict):
    """Ratios, per-cell costs and target verdicts from the medians."""
    def wall(case, tool):
        return cases.get(case, {}).get("tools", {}).get(tool, {}).get("wall_s")

    derived = {"ratio_nbpipe_over_papermill": {}, "per_cell_s": {}, "per_cell_over_floor": {}}
    for case in cases:
        derived["ratio_nbpipe_over_papermill"][case] = {}
        for mode, pm, nb in (("default", "papermill", "nbpipe"), ("nosave", "papermill_nosave", "nbpipe_nosave")):
            a, b = wall(case, nb), wall(case, pm)
            derived["ratio_nbpipe_over_papermill"][case][mode] = a / b if a and b else None
    # Marginal cost of one more trivial cell: (wall at 1,000 - wall at 1) / 999.
    for t in TOOLS:
        w1, w1000 = wall("cells_1", t), wall("cells_1000", t)
        pc = (w1000 - w1) / 999 if w1 is not None and w1000 is not None else None
        derived["per_cell_s"][t] = pc
        derived["per_cell_over_floor"][t] = pc / floor["per_cell_s"] - 1 if pc is not None else None

    targets = []
    r = derived["ratio_nbpipe_over_papermill"].get("cells_1000", {}).get("default")
    targets.append({"name": "nbpipe / papermill wall, default, 1,000 cells", "value": r,
                    "target": f"<= 1/{round(1 / TARGET_RATIO_1000)}",
                    "pass": None if r is None else r <= TARGET_RATIO_1000})
    for t in ("nbpipe", "nbpipe_nosave"):
        v = derived["per_cell_over_floor"][t]
        targets.append({"name": f"{TOOL_LABELS[t]}: per-cell cost over kernel floor", "value": v,
                        "target": f"<= +{TARGET_PER_CELL_OVER_FLOOR:.0%}",
                        "pass": None if v is None else v <= TARGET_PER_CELL_OVER_FLOOR})
    for t in ("nbpipe", "nbpipe_nosave"):
        rss = [c["tools"][t]["rss_mib"] for c in cases.values() if c["tools"][t]["rss_mib"] is not None]
        v = max(rss) if rss else None
        targets.append({"name": f"{TOOL_LABELS[t]}: runner peak RSS, max over cases", "value": v,
                        "target": f"<= {TARGET_RSS_MIB:g} MiB",
                        "pass": None if v is None else v <= TARGET_RSS_MIB})
    limit = floor["kernel_start_s"] + TARGET_ONE_CELL_SLACK_S
    for t in ("nbpipe", "nbpipe_nosave"):
        v = wall("cells_1", t)
        targets.append({"name": f"{TOOL_LABELS[t]}: one-cell wall", "value": v,
                        "target": f"<= kernel start + {TARGET_ONE_CELL_SLACK_S * 1e3:.0f} ms = {limit:.3f} s",
                        "pass": None if v is None else v <= limit})
    return derived, targets


def report(results: dict) -> None:
    cases, floor, derived, meta = results["cases"], results["floor"], results["derived"], results["meta"]
    print()
    print(f"nbpipe benchmark — {meta['date']} — {meta['host']['cpus']} CPUs — median of {meta['reps']} run(s)")
    print(f"papermill {meta['papermill']}; nbpipe {meta['nbpipe'] or 'SKIPPED (' + str(meta['nbpipe_skipped']) + ')'}; "
          f"ipykernel {meta['ipykernel']}; python {meta['python']}")
    busy = max(meta["cpu_busy_before"], meta["cpu_busy_after"])
    print(f"CPU busy (other work) just before the bench: {meta['cpu_busy_before']:.0%}, just after: "
          f"{meta['cpu_busy_after']:.0%}"
          + ("  WARNING: the machine was busy, figures are skewed" if busy > BUSY_WARN else ""))
    print(f"kernel floor (jupyter_client): start {floor['kernel_start_s']:.3f} s, "
          f"trivial cell round trip {floor['per_cell_s'] * 1e3:.3f} ms "
          + "(" + "; ".join(f"{when} the tools: {floor[when]['kernel_start_s']:.3f} s, "
                            f"{floor[when]['per_cell_s'] * 1e3:.3f} ms" for when in ("before", "after")) + ")")

    def cell(case, t, key, fmt):
        e = cases[case]["tools"][t]
        return "skipped" if e["status"].startswith("skipped") else fmt(e[key])

    print("\nWall time (runner command, kernel start/shutdown included)")
    rows = []
    for case in cases:
        ratios = derived["ratio_nbpipe_over_papermill"][case]
        rows.append([case] + [cell(case, t, "wall_s", fmt_s) for t in TOOLS]
                    + [fmt_ratio(ratios["default"]), fmt_ratio(ratios["nosave"])])
    table(["case"] + [TOOL_LABELS[t] for t in TOOLS] + ["nbpipe/pm default", "nbpipe/pm no-save"], rows)
    print("(--no-save = --no-request-save-on-cell-execute)")

    print("\nPer-cell cost: (wall at 1,000 cells - wall at 1 cell) / 999, vs kernel floor "
          f"{floor['per_cell_s'] * 1e3:.3f} ms")
    rows = []
    for t in TOOLS:
        pc, over = derived["per_cell_s"][t], derived["per_cell_over_floor"][t]
        target = f"<= +{TARGET_PER_CELL_OVER_FLOOR:.0%}" if t.startswith("nbpipe") else ""
        verdict = mark(None if over is None else over <= TARGET_PER_CELL_OVER_FLOOR) if target else ""
        rows.append([TOOL_LABELS[t], "—" if pc is None else f"{pc * 1e3:.3f} ms",
                     "—" if over is None else f"{over:+.1%}", target, verdict])
    table(["tool", "per cell", "over floor", "target", ""], rows)

    print("\nRunner peak RSS (VmHWM of the runner process only, not the kernel; "
          f"target nbpipe <= {TARGET_RSS_MIB:g} MiB)")
    rows = []
    for case in cases:
        row = [case]
        for t in TOOLS:
            v = cases[case]["tools"][t]["rss_mib"]
            s = cell(case, t, "rss_mib", fmt_mib)
            if t.startswith("nbpipe") and v is not None:
                s += " " + mark(v <= TARGET_RSS_MIB)
            row.append(s)
        rows.append(row)
    table(["case"] + [TOOL_LABELS[t] for t in TOOLS], rows)

    left = [(case, t) for case, c in cases.items() for t, e in c["tools"].items()
            for r in e["runs"] if r.get("leftover_kernels")]
    if left:
        print("\nWARNING: runner exited with its kernel still running (killed by the bench): "
              + ", ".join(f"{TOOL_LABELS[t]} on {case}" for case, t in left))

    print("\nTargets")
    rows = []
    for tg in results["targets"]:
        v = tg["value"]
        if v is None:
            vs = "—"
        elif "ratio" in tg["name"] or "papermill wall" in tg["name"]:
            vs = fmt_ratio(v)
        elif "floor" in tg["name"]:
            vs = f"{v:+.1%}"
        elif "RSS" in tg["name"]:
            vs = fmt_mib(v)
        else:
            vs = fmt_s(v)
        rows.append([tg["name"], vs, tg["target"], mark(tg["pass"])])
    table(["target", "measured", "goal", ""], rows)


def fmt_ratio(r):
    if r is None:
        return "—"
    return f"{r:.3f} (1/{1 / r:.1f})" if r < 1 else f"{r:.3f} ({r:.1f}x slower)"


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"\n[bench] FAILED: {e}", file=sys.stderr)
        sys.exit(1)
