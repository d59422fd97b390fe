#!/usr/bin/env python3
"""Service benchmark driver for `nbpipe serve` (run it through bench/serve.sh, which provisions
the venv and builds nbpipe).

A one-notebook project (bench/out/serve-project/: a `parameters` cell declaring `trigger_key`,
then `import time; t0 = time.time(); print(repr(t0))`, the moment the first user cell runs) with
an S3 trigger is served by `nbpipe serve` on 127.0.0.1 with a token, under an isolated
NBPIPE_HOME (bench/out/serve-home). Measured in the same run:

* latency, event -> first cell executing: an S3 notification record is POSTed to /hooks/s3; the
  event time is taken just before the POST is sent; the run is awaited through /api/runs and
  latency = t0 printed by the notebook - event time (same clock). Events are spaced out so that
  the warm pool has refilled before the next one. Modes: `--warm-kernels 1` and `0`. Optional:
  a burst of events sent at once (warm pool on), and the local inbox (1 s poll + size check).
* throughput: N small events (1,000; 200 with --quick) POSTed in batches as fast as possible,
  `--workers 2`; time until every run has finished (exactly N runs, all succeeded, one per key).
* for context: a cold `papermill` run of the same notebook (spawn -> first cell, and wall).

Results: tables on stdout and bench/out/serve-results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench as core  # noqa: E402  (bench.py: cpu_busy, table, version_of, kernel_floor, ...)

BenchError = core.BenchError
BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out"
PROJECT = OUT_DIR / "serve-project"
NBPIPE_HOME = OUT_DIR / "serve-home"  # isolated: never touches ~/.cache/nbpipe
WORK = OUT_DIR / "serve-work"  # databases, server logs, papermill outputs
RESULTS = OUT_DIR / "serve-results.json"
VENV = Path(sys.prefix)
KERNEL = "python3"
STEP = "probe"
BUCKET = "nbpipe-bench"
PREFIX = "events/"
TARGET_P50_S = 0.100  # event -> first cell, p50, warm pool on
WORKERS = 2
# `nbpipe serve` runs at most `--per-project` runs of one project at once (default 1), so with a
# single project `--workers 2` alone would still execute one run at a time: pass both.
PER_PROJECT = 2
BATCH = 50  # records per webhook POST in the throughput phase
T0_SOURCE = "import time; t0 = time.time(); print(repr(t0))"


def log(msg: str) -> None:
    print(f"[bench-serve] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# The project
# --------------------------------------------------------------------------------------------
def make_project() -> None:
    import nbformat

    shutil.rmtree(PROJECT, ignore_errors=True)
    PROJECT.mkdir(parents=True)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    pcell = nbformat.v4.new_code_cell("trigger_key = None")
    pcell.metadata["tags"] = ["parameters"]
    nb.cells = [pcell, nbformat.v4.new_code_cell(T0_SOURCE)]
    nbformat.write(nb, PROJECT / f"{STEP}.ipynb")
    (PROJECT / "requirements.txt").write_text("# nothing: the kernel environment is just ipykernel\n")
    (PROJECT / "nbpipe.yaml").write_text(
        f"notebooks:\n  - {STEP}.ipynb\nS3TriggerBucket: {BUCKET}\nS3TriggerKeyPrefix: {PREFIX}\n")


def read_t0(path: Path) -> float:
    """The t0 the first user cell printed, from an output notebook."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    for c in nb.get("cells", []):
        src = c.get("source", "")
        src = "".join(src) if isinstance(src, list) else src
        if c.get("cell_type") == "code" and "t0 = time.time()" in src:
            for o in c.get("outputs", []):
                if o.get("output_type") == "error":
                    raise BenchError(f"{path}: the t0 cell raised {o.get('ename')}")
                if o.get("output_type") == "stream" and o.get("name") == "stdout":
                    text = o.get("text", "")
                    text = "".join(text) if isinstance(text, list) else text
                    return float(text.strip().splitlines()[0])
            raise BenchError(f"{path}: the t0 cell has no stdout output")
    raise BenchError(f"{path}: no t0 cell")


# --------------------------------------------------------------------------------------------
# Kernels (processes) started from the isolated nbpipe home
# --------------------------------------------------------------------------------------------
CLK_TCK = os.sysconf("SC_CLK_TCK")


def is_kernel(argv: list[bytes], stat: str) -> bool:
    """A cold kernel (`python -m ipykernel_launcher`), or one forked by nbpipe's zygote: same
    command line as the zygote (`python .../zygote.py`), but in a session of its own."""
    if b"ipykernel_launcher" in argv:
        return True
    if any(a.endswith(b"/zygote.py") for a in argv):
        fields = stat.rsplit(")", 1)[1].split()
        return fields[3] == stat.split(" ", 1)[0]  # field 6, session id == pid
    return False


def kernels(prefixes: list[str]) -> dict[int, float]:
    """Live kernels whose interpreter is under one of prefixes: pid -> age in seconds."""
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
            stat = (d / "stat").read_text()
        except OSError:
            continue
        if is_kernel(argv, stat) and any(argv[0].startswith(p.encode()) for p in prefixes):
            start = int(stat.rsplit(")", 1)[1].split()[19]) / CLK_TCK  # field 22: starttime
            out[int(d.name)] = uptime - start
    return out


def kill_kernels(prefixes: list[str], what: str) -> list[int]:
    left = sorted(kernels(prefixes))
    for pid in left:
        log(f"WARNING: {what}: kernel pid {pid} still running; killing it")
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ts(v) -> float | None:
    """An API timestamp (RFC 3339 string or epoch seconds/ms) as epoch seconds."""
    if v is None:
        return None
    if isinstance(v, (int, float)):
        return v / 1000 if v > 1e11 else float(v)
    s = str(v).replace("Z", "+00:00")
    return datetime.fromisoformat(s).timestamp()


class Server:
    def __init__(self, nbpipe: str, env: dict, name: str, warm: int, workers: int, inbox: bool,
                 fork: bool = True):
        self.nbpipe, self.env, self.name, self.fork = nbpipe, env, name, fork
        self.warm, self.workers, self.inbox = warm, workers, inbox
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.base = f"http://127.0.0.1:{self.port}"
        self.db = WORK / f"{name}.sqlite"
        self.logp = WORK / f"{name}.log"
        self.proc = None
        self.prefixes = [str(NBPIPE_HOME)]
        self.leftover: list[int] = []

    def start(self, settle_s: float) -> None:
        for p in WORK.glob(f"{self.name}.sqlite*"):
            p.unlink()
        shutil.rmtree(PROJECT / "runs", ignore_errors=True)
        shutil.rmtree(PROJECT / ".nbpipe" / "inbox", ignore_errors=True)
        if kernels(self.prefixes):
            kill_kernels(self.prefixes, f"before {self.name}")
        argv = [self.nbpipe, "serve", str(PROJECT), "--listen", f"127.0.0.1:{self.port}",
                "--database", str(self.db), "--warm-kernels", str(self.warm),
                "--workers", str(self.workers), "--per-project", str(min(self.workers, PER_PROJECT)),
                "--token", self.token]
        if not self.inbox:
            argv.append("--no-inbox")
        if not self.fork:
            argv.append("--no-fork-server")
        log(f"{self.name}: nbpipe serve --warm-kernels {self.warm} --workers {self.workers} "
            f"--per-project {min(self.workers, PER_PROJECT)}"
            f"{'' if self.inbox else ' --no-inbox'}{'' if self.fork else ' --no-fork-server'} on 127.0.0.1:{self.port}")
        logf = open(self.logp, "wb")
        self.proc = subprocess.Popen(argv, env=self.env, stdin=subprocess.DEVNULL, stdout=logf,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        logf.close()
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name}: nbpipe serve exited {self.proc.returncode}; "
                                 f"log {self.logp}:\n{self.logp.read_text(errors='replace')[-3000:]}")
            try:
                with urllib.request.urlopen(self.base + "/api/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"{self.name}: server not healthy after 120 s (log {self.logp})")
            time.sleep(0.05)
        self.wait_pool(settle_s, 120)

    def wait_pool(self, settle_s: float, timeout: float) -> float:
        """Wait until the pool is (very likely) full: exactly `warm` kernels alive and the
        youngest older than settle_s (a comfortable multiple of a cold kernel start). The pool's
        readiness is not exposed by the server, so it is inferred from the processes."""
        t0 = time.monotonic()
        while True:
            ks = kernels(self.prefixes)
            if len(ks) == self.warm and (not ks or min(ks.values()) >= settle_s):
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise BenchError(f"{self.name}: pool not settled after {timeout:.0f} s: kernels {ks}")
            time.sleep(0.05)

    def post(self, path: str, body: dict, auth: bool = True) -> dict:
        req = urllib.request.Request(self.base + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        if auth:
            req.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read() or b"{}")

    def runs(self, q: str | None = None) -> list[dict]:
        out, offset = [], 0
        extra = "&q=" + urllib.parse.quote(q) if q else ""
        while True:
            with urllib.request.urlopen(f"{self.base}/api/runs?limit=1000&offset={offset}{extra}", timeout=60) as r:
                page = json.loads(r.read())
            items = page if isinstance(page, list) else page.get("runs", page.get("items", []))
            out += items
            if len(items) < 1000:
                return out
            offset += 1000

    def stop(self) -> dict:
        """SIGTERM, wait for the drain, then report (and kill) kernels left behind."""
        if self.proc is None:
            return {}
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(90)
        except subprocess.TimeoutExpired:
            log(f"WARNING: {self.name}: server still running 90 s after SIGTERM; killing it")
            os.killpg(self.proc.pid, signal.SIGKILL)
            rc = self.proc.wait()
        stop_s = time.monotonic() - t0
        deadline = time.monotonic() + 3
        while kernels(self.prefixes) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.leftover = kill_kernels(self.prefixes, f"{self.name} after SIGTERM")
        self.proc = None
        log(f"{self.name}: stopped (exit {rc}) in {stop_s:.2f} s; "
            f"kernels left: {len(self.leftover)}")
        return {"exit_code": rc, "stop_s": stop_s, "leftover_kernels": self.leftover}

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        kill_kernels(self.prefixes, f"{self.name} (aborted)")


def record(key: str, etag: str) -> dict:
    return {"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
            "eventTime": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": BUCKET},
                   "object": {"key": key, "size": 1, "eTag": etag}}}


TERMINAL = {"succeeded", "failed", "cancelled"}


def wait_runs(srv: Server, keys: set[str], timeout: float, progress_every: float | None = None,
              poll_s: float = 0.05, q: str | None = None) -> dict[str, dict]:
    """Wait until every key has a finished run; return key -> run (fails on duplicates)."""
    deadline = time.monotonic() + timeout
    last_print = time.monotonic()
    while True:
        runs = srv.runs(q)
        by_key: dict[str, list[dict]] = {}
        for r in runs:
            k = (r.get("trigger") or {}).get("key")
            if k in keys:
                by_key.setdefault(k, []).append(r)
        done = {k: v[0] for k, v in by_key.items() if v[0].get("status") in TERMINAL}
        if progress_every and time.monotonic() - last_print >= progress_every:
            counts: dict[str, int] = {}
            for v in by_key.values():
                counts[v[0].get("status")] = counts.get(v[0].get("status"), 0) + 1
            log(f"  {len(done)}/{len(keys)} finished; " + ", ".join(f"{s} {n}" for s, n in sorted(counts.items())))
            last_print = time.monotonic()
        if len(done) == len(keys):
            doubled = {k: len(v) for k, v in by_key.items() if len(v) > 1}
            if doubled:
                raise BenchError(f"{srv.name}: keys with more than one run: {list(doubled.items())[:5]}")
            return done
        if time.monotonic() > deadline:
            raise BenchError(f"{srv.name}: {len(done)}/{len(keys)} runs finished after {timeout:.0f} s")
        time.sleep(poll_s)


def check_run(srv: Server, run: dict) -> Path:
    if run.get("status") != "succeeded":
        raise BenchError(f"{srv.name}: run {run.get('id')} {run.get('status')} (see {srv.logp} and "
                         f"{PROJECT / 'runs' / str(run.get('id'))})")
    nb = PROJECT / "runs" / str(run["id"]) / f"{STEP}.ipynb"
    if not nb.is_file():
        raise BenchError(f"{srv.name}: run {run['id']} succeeded but {nb} does not exist")
    return nb


def pct(xs: list[float], q: float) -> float:
    """Percentile with linear interpolation (q in [0, 100])."""
    s = sorted(xs)
    if len(s) == 1:
        return s[0]
    i = (len(s) - 1) * q / 100
    lo = int(i)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (i - lo)


def summary(lat: list[float]) -> dict:
    return {"n": len(lat), "p50_s": pct(lat, 50), "p95_s": pct(lat, 95), "max_s": max(lat),
            "min_s": min(lat), "mean_s": statistics.fmean(lat)}


# --------------------------------------------------------------------------------------------
# Phases
# --------------------------------------------------------------------------------------------
def latency_phase(nbpipe, env, warm: int, n: int, settle_s: float, gap_s: float, timeout: float) -> dict:
    name = f"latency-warm{warm}"
    srv = Server(nbpipe, env, name, warm, WORKERS, inbox=False)
    events = []
    try:
        srv.start(settle_s)
        for i in range(n):
            waited = srv.wait_pool(settle_s, 120) if warm else 0.0
            if not warm:
                time.sleep(gap_s)
            key = f"{PREFIX}{name}/{i:04d}.csv"
            body = {"Records": [record(key, f"{name}-{i}")]}
            sent = time.time()
            resp = srv.post("/hooks/s3", body)
            acked = time.time()
            if resp.get("queued") != 1:
                raise BenchError(f"{name}: webhook answered {resp}, expected 1 queued")
            run = wait_runs(srv, {key}, timeout, q=key)[key]
            nb = check_run(srv, run)
            t0 = read_t0(nb)
            e = {"key": key, "run_id": run["id"], "sent": sent, "ack_s": acked - sent,
                 "latency_s": t0 - sent, "pool_wait_s": waited,
                 "created_s": (ts(run.get("created_at")) or sent) - sent,
                 "started_s": (ts(run.get("started_at")) or sent) - sent,
                 "finished_s": (ts(run.get("finished_at")) or sent) - sent}
            events.append(e)
            log(f"  {name} event {i + 1}/{n}: first cell {e['latency_s'] * 1e3:.0f} ms after the POST "
                f"(run started +{e['started_s'] * 1e3:.0f} ms, finished +{e['finished_s'] * 1e3:.0f} ms)")
    except BaseException:
        srv.kill()
        raise
    stop = srv.stop()
    lat = [e["latency_s"] for e in events]
    return {"warm_kernels": warm, "workers": WORKERS, "trigger": "webhook", "events": events,
            "summary": summary(lat), "server_stop": stop}


def burst_phase(nbpipe, env, n: int, settle_s: float, timeout: float) -> dict:
    """n events in one POST with the pool on: the first takes the warm kernel, the rest wait."""
    name = "burst-warm1"
    srv = Server(nbpipe, env, name, 1, WORKERS, inbox=False)
    try:
        srv.start(settle_s)
        keys = [f"{PREFIX}{name}/{i:04d}.csv" for i in range(n)]
        sent = time.time()
        resp = srv.post("/hooks/s3", {"Records": [record(k, f"{name}-{i}") for i, k in enumerate(keys)]})
        if resp.get("queued") != n:
            raise BenchError(f"{name}: webhook answered {resp}, expected {n} queued")
        runs = wait_runs(srv, set(keys), timeout)
        lat = sorted(read_t0(check_run(srv, runs[k])) - sent for k in keys)
    except BaseException:
        srv.kill()
        raise
    stop = srv.stop()
    log(f"  burst of {n}: first cells at " + ", ".join(f"{x * 1e3:.0f}" for x in lat) + " ms")
    return {"events": n, "warm_kernels": 1, "workers": WORKERS, "latencies_s": lat,
            "summary": summary(lat), "server_stop": stop}


def inbox_phase(nbpipe, env, n: int, settle_s: float, timeout: float) -> dict:
    """The local inbox: the event time is when the file is created (1 s poll + stability check)."""
    name = "inbox-warm1"
    srv = Server(nbpipe, env, name, 1, WORKERS, inbox=True)
    events = []
    try:
        srv.start(settle_s)
        inbox = PROJECT / ".nbpipe" / "inbox" / BUCKET
        for i in range(n):
            srv.wait_pool(settle_s, 120)
            rel = f"{PREFIX}{name}/{i:04d}.csv"
            path = inbox / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.parent / f".{path.name}.tmp"
            tmp.write_text("x\n")
            sent = time.time()
            os.rename(tmp, path)  # appears complete, at once
            run = wait_runs(srv, {rel}, timeout, q=rel)[rel]
            t0 = read_t0(check_run(srv, run))
            events.append({"key": rel, "run_id": run["id"], "latency_s": t0 - sent})
            log(f"  {name} event {i + 1}/{n}: first cell {(t0 - sent) * 1e3:.0f} ms after the file appeared")
    except BaseException:
        srv.kill()
        raise
    stop = srv.stop()
    return {"warm_kernels": 1, "trigger": "inbox", "events": events,
            "summary": summary([e["latency_s"] for e in events]), "server_stop": stop}


def throughput_phase(nbpipe, env, warm: int, n: int, settle_s: float, timeout: float,
                     fork: bool = True) -> dict:
    name = f"throughput-warm{warm}" + ("" if fork else "-nofork")
    srv = Server(nbpipe, env, name, warm, WORKERS, inbox=False, fork=fork)
    cpu0 = children_cpu_s()
    busy0 = core.cpu_busy()
    try:
        srv.start(settle_s)
        keys = [f"{PREFIX}{name}/{i:05d}.csv" for i in range(n)]
        log(f"{name}: posting {n} events in batches of {BATCH}")
        t_start = time.time()
        queued = 0
        for i in range(0, n, BATCH):
            chunk = keys[i:i + BATCH]
            resp = srv.post("/hooks/s3", {"Records": [record(k, f"{name}-{i + j}") for j, k in enumerate(chunk)]})
            queued += resp.get("queued", 0)
        t_posted = time.time()
        log(f"{name}: {queued} queued in {t_posted - t_start:.2f} s; waiting for the runs")
        if queued != n:
            raise BenchError(f"{name}: {queued} of {n} events queued")
        done = wait_runs(srv, set(keys), timeout, progress_every=15, poll_s=1.0)
        t_seen = time.time()
        server_cpu = process_cpu_s(srv.proc.pid)
        live_tree_cpu = tree_cpu_s(srv.proc.pid)
        all_runs = srv.runs()
        if len(all_runs) != n:
            raise BenchError(f"{name}: the server lists {len(all_runs)} runs, expected exactly {n}")
        # A failed run is recorded (with its error) and fails the bench after the figures are
        # written and printed, so that one bad run does not throw away a long measurement.
        bad = [{"id": r.get("id"), "status": r.get("status"), "error": (r.get("error") or "")[:2000]}
               for r in done.values() if r.get("status") != "succeeded"]
        good = [r for r in done.values() if r.get("status") == "succeeded"]
        missing = [r["id"] for r in good
                   if not (PROJECT / "runs" / str(r["id"]) / f"{STEP}.ipynb").is_file()]
        if missing:
            raise BenchError(f"{name}: {len(missing)} runs without an output notebook, e.g. {missing[0]}")
        finished = [ts(r.get("finished_at")) for r in done.values()]
        t_last = max(f for f in finished if f is not None) if all(finished) else t_seen
        # first-cell times under load (from the output notebooks)
        lat = sorted(read_t0(PROJECT / "runs" / str(r["id"]) / f"{STEP}.ipynb") - t_start for r in good)
    except BaseException:
        srv.kill()
        raise
    stop = srv.stop()
    # Where the CPU went, for the whole phase: the server process itself, and everything it
    # started (zygote, kernels). Read from /proc while the server still runs (`tree_cpu_s`:
    # each process's own time plus that of the children it reaped) — a zygote killed at
    # shutdown is not always reaped by the server, which would lose its kernels' time —
    # or, if larger, from this process's reaped children after the server stopped.
    tree_cpu = max(children_cpu_s() - cpu0, live_tree_cpu)
    cpu = {"nbpipe_serve_s": server_cpu, "server_tree_s": tree_cpu,
           "kernels_and_zygote_s": tree_cpu - server_cpu,
           "nbpipe_serve_ms_per_run": server_cpu / n * 1e3,
           "kernels_ms_per_run": (tree_cpu - server_cpu) / n * 1e3,
           "machine_cpu_busy_before": busy0, "machine_cpu_busy_after": core.cpu_busy()}
    elapsed = t_last - t_start
    rpm = n / elapsed * 60
    log(f"{name}: {n} runs finished ({len(good)} succeeded, {len(bad)} failed) in {elapsed:.1f} s "
        f"= {rpm:.0f} runs/min")
    log(f"{name}: CPU per run: nbpipe serve {cpu['nbpipe_serve_ms_per_run']:.0f} ms, kernels and "
        f"zygote {cpu['kernels_ms_per_run']:.0f} ms (machine busy {busy0:.0%} before)")
    for b in bad:
        log(f"  FAILED run {b['id']} ({b['status']}): {b['error'][:300]}")
    return {"warm_kernels": warm, "fork_server": fork, "workers": WORKERS, "events": n, "batch": BATCH,
            "post_s": t_posted - t_start, "elapsed_s": elapsed, "runs_per_min": rpm,
            "runs_listed": len(all_runs), "succeeded": len(good), "failed_runs": bad,
            "last_first_cell_s": lat[-1] if lat else None,
            "cpu": cpu, "server_stop": stop}


def children_cpu_s() -> float:
    """CPU seconds of this process's reaped descendants (and theirs, once reaped)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a live process and all its live descendants, each with the time of the
    children it has reaped (utime + stime + cutime + cstime)."""
    parent, cpu = {}, {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parent[int(d.name)] = int(fields[1])
        cpu[int(d.name)] = sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")

    def under(p: int) -> bool:
        while p > 1:
            if p == pid:
                return True
            p = parent.get(p, 0)
        return False

    return sum(c for p, c in cpu.items() if under(p))


def process_cpu_s(pid: int) -> float:
    """CPU seconds a live process has used itself (not its children)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def papermill_cold(env: dict, reps: int, timeout: float) -> dict:
    out_dir = WORK / "papermill"
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = []
    for i in range(reps + 1):  # the first one is an unrecorded warm-up (page cache, .pyc)
        out = out_dir / f"probe-{i}.ipynb"
        argv = [str(VENV / "bin" / "papermill"), str(PROJECT / f"{STEP}.ipynb"), str(out),
                "-k", KERNEL, "--no-progress-bar", "--log-level", "WARNING", "-p", "trigger_key", "x"]
        sent = time.time()
        t0p = time.perf_counter()
        p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, cwd=PROJECT)
        wall = time.perf_counter() - t0p
        if p.returncode != 0:
            raise BenchError(f"papermill exited {p.returncode}:\n{p.stderr[-3000:]}")
        first = read_t0(out) - sent
        if i:
            runs.append({"first_cell_s": first, "wall_s": wall})
        log(f"  papermill{' (warm-up)' if not i else ''}: first cell {first:.3f} s after spawn, wall {wall:.3f} s")
    deadline = time.monotonic() + 2  # ipykernel may take a moment to exit after papermill
    while kernels([str(VENV)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    kill_kernels([str(VENV)], "papermill")
    return {"runs": runs, "first_cell_s": statistics.median(r["first_cell_s"] for r in runs),
            "wall_s": statistics.median(r["wall_s"] for r in runs)}


# --------------------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--latency-events", type=int)
    ap.add_argument("--throughput-events", type=int)
    ap.add_argument("--burst", type=int, default=5, help="events in the burst case (0: skip)")
    ap.add_argument("--inbox-events", type=int, help="inbox latency events, warm pool on (0: skip)")
    ap.add_argument("--no-cold-throughput", action="store_true", help="throughput with the pool on only")
    ap.add_argument("--throughput-only", action="store_true",
                    help="skip papermill, latency, burst and inbox (results to serve-results-throughput.json)")
    ap.add_argument("--throughput-pools", default=None,
                    help="--warm-kernels values for the throughput phase, e.g. 1,0 or 0")
    ap.add_argument("--fork-modes", default=None,
                    help="throughput with the fork server on, off or both (on,off; default on,off, quick: on)")
    ap.add_argument("--timeout", type=float, default=3600, help="per phase wait, seconds")
    args = ap.parse_args()
    n_lat = args.latency_events or (10 if args.quick else 30)
    n_thr = args.throughput_events or (200 if args.quick else 1000)
    n_inbox = args.inbox_events if args.inbox_events is not None else (3 if args.quick else 5)
    cold_thr = not (args.quick or args.no_cold_throughput)
    pools = ([int(x) for x in args.throughput_pools.split(",")] if args.throughput_pools
             else ([1, 0] if cold_thr else [1]))
    fork_modes = [m == "on" for m in (args.fork_modes or ("on" if args.quick else "on,off")).split(",")]
    results_path = OUT_DIR / "serve-results-throughput.json" if args.throughput_only else RESULTS
    if n_thr > 1000:
        log("note: more than 1,000 events: /api/runs is paged (limit 1000)")

    nbpipe = os.environ.get("NBPIPE_BIN")
    if not nbpipe or not Path(nbpipe).is_file():
        raise BenchError(f"NBPIPE_BIN not set or missing ({nbpipe}); run bench/serve.sh")
    env = dict(os.environ)
    env["NBPIPE_HOME"] = str(NBPIPE_HOME)
    env.pop("PYTHONPATH", None)
    env.pop("NBPIPE_TOKEN", None)
    for k in [k for k in env if k.startswith("AWS_")]:
        del env[k]

    meta = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": {"machine": platform.machine(), "kernel": platform.release(), "cpus": os.cpu_count()},
        "python": sys.version.split()[0],
        "papermill": core.version_of([str(VENV / "bin" / "papermill"), "--version"], env).split(" from ")[0],
        "nbpipe": core.version_of([nbpipe, "--version"], env),
        "nbpipe_bin": nbpipe,
        "quick": args.quick,
        "workers": WORKERS,
        "per_project": PER_PROJECT,
        "worker_idle_poll_note": "workers poll the queue every 250 ms when idle (nbpipe-server worker.rs)",
        "latency_events": n_lat,
        "throughput_events": n_thr,
        "cpu_busy_before": core.cpu_busy(),
    }
    if meta["cpu_busy_before"] > core.BUSY_WARN:
        log(f"WARNING: the CPUs were {meta['cpu_busy_before']:.0%} busy before the bench: "
            "other work will skew the figures")
    if not args.throughput_only:  # keep the logs of a full run next to a throughput-only one
        shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True, exist_ok=True)
    make_project()
    log(f"project: {PROJECT}; NBPIPE_HOME={NBPIPE_HOME}")

    # 1. The project's environment, built once before any timing.
    t = time.perf_counter()
    p = subprocess.run([nbpipe, "env", str(PROJECT), "--quiet"], env=env, capture_output=True, text=True)
    meta["env_build_s"] = time.perf_counter() - t
    if p.returncode:
        raise BenchError(f"nbpipe env failed:\n{p.stdout[-2000:]}{p.stderr[-2000:]}")
    marker = json.loads((PROJECT / ".nbpipe" / "env.json").read_text())
    meta["env_python"] = marker.get("python")
    meta["env_ipykernel"] = core.version_of(
        [marker["python"], "-c", "import ipykernel; print(ipykernel.__version__)"], env)
    log(f"nbpipe env: {meta['env_build_s']:.2f} s (python {meta['env_python']}, ipykernel {meta['env_ipykernel']})")
    if not str(marker.get("python", "")).startswith(str(NBPIPE_HOME)):
        log(f"note: the env python {marker.get('python')} is not under NBPIPE_HOME; kernel accounting may miss it")

    # 2. Cold kernel start (jupyter_client, bench venv kernel: the same python and ipykernel
    #    as the project env): the pool's refill time, and the spacing between latency events.
    floor = core.kernel_floor(3, 20)
    kstart = floor["kernel_start_s"]
    settle = max(1.0, 2.5 * kstart)
    meta["kernel_start_s"] = kstart
    meta["kernel_start_runs_s"] = floor["kernel_start_runs_s"]
    meta["pool_settle_s"] = settle
    log(f"cold kernel start (jupyter_client, median of 3): {kstart:.3f} s -> pool refill ~{kstart:.2f} s; "
        f"a pooled kernel counts as ready once {settle:.2f} s old")

    results = {"meta": meta}
    try:
        if not args.throughput_only:
            log(f"papermill cold run of the probe notebook ({1 if args.quick else 3} + 1 warm-up)")
            results["papermill"] = papermill_cold(env, 1 if args.quick else 3, 600)

            results["latency"] = {}
            for warm in (1, 0):
                log(f"latency, --warm-kernels {warm}: {n_lat} webhook events, one at a time")
                results["latency"][f"warm{warm}"] = latency_phase(nbpipe, env, warm, n_lat, settle, settle, args.timeout)
            if args.burst:
                log(f"burst: {args.burst} events in one POST, --warm-kernels 1")
                results["burst"] = burst_phase(nbpipe, env, args.burst, settle, args.timeout)
            if n_inbox:
                log(f"inbox latency: {n_inbox} files, --warm-kernels 1")
                results["inbox"] = inbox_phase(nbpipe, env, n_inbox, settle, args.timeout)

        results["throughput"] = {}
        for fork in fork_modes:
            for warm in pools:
                key = f"warm{warm}" + ("" if fork else "-nofork")
                results["throughput"][key] = throughput_phase(nbpipe, env, warm, n_thr, settle, args.timeout, fork)
    finally:
        left = kill_kernels([str(NBPIPE_HOME), str(VENV)], "end of bench")
        results.setdefault("meta", meta)["leftover_kernels_at_end"] = left
        meta["cpu_busy_after"] = core.cpu_busy()
        results_path.parent.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(results, indent=2) + "\n")

    p50 = results.get("latency", {}).get("warm1", {}).get("summary", {}).get("p50_s")
    results["targets"] = [{"name": "event -> first cell p50, --warm-kernels 1 (webhook)", "value": p50,
                           "target": f"<= {TARGET_P50_S * 1e3:.0f} ms", "pass": None if p50 is None else p50 <= TARGET_P50_S}]
    forked = [t for t in results["throughput"].values() if t.get("fork_server", True)]
    if forked:
        rpm = max(t["runs_per_min"] for t in forked)
        results["targets"].append({"name": f"runs/min, --workers {WORKERS}, fork server on", "value": rpm,
                                   "unit": "runs/min", "target": ">= 900", "pass": rpm >= 900})
    results_path.write_text(json.dumps(results, indent=2) + "\n")
    report(results)
    print(f"\nresults: {results_path}")
    failed = [(k, t["failed_runs"]) for k, t in results["throughput"].items() if t["failed_runs"]]
    if failed:
        raise BenchError("runs failed in the throughput phase: " + "; ".join(
            f"{k}: {len(f)} (e.g. {f[0]['id']}: {f[0]['error'][:200]})" for k, f in failed))
    return 0


def ms(x):
    return "—" if x is None else f"{x * 1e3:.0f} ms"


def report(res: dict) -> None:
    m = res["meta"]
    print()
    print(f"nbpipe serve benchmark — {m['date']} — {m['host']['cpus']} CPUs — {m['nbpipe']}; "
          f"papermill {m['papermill']}; ipykernel {m['env_ipykernel']}; python {m['python']}"
          + (" — QUICK" if m["quick"] else ""))
    busy = max(m["cpu_busy_before"], m["cpu_busy_after"])
    print(f"CPU busy (other work) just before the bench: {m['cpu_busy_before']:.0%}, just after: "
          f"{m['cpu_busy_after']:.0%}" + ("  WARNING: the machine was busy, figures are skewed" if busy > core.BUSY_WARN else ""))
    print(f"cold kernel start (jupyter_client): {m['kernel_start_s']:.3f} s = the pool's refill time; "
          f"latency events spaced so a pooled kernel is >= {m['pool_settle_s']:.2f} s old")
    if "latency" in res:
        report_latency(res)
    report_throughput(res)


def report_latency(res: dict) -> None:
    pm = res["papermill"]
    print(f"papermill, cold, same notebook: first cell {pm['first_cell_s']:.3f} s after spawn, "
          f"wall {pm['wall_s']:.3f} s (median of {len(pm['runs'])})")

    print("\nEvent -> first cell executing (t0 printed by the first user cell - time the event was sent)")
    rows = []
    for k, label in (("warm1", "webhook, --warm-kernels 1"), ("warm0", "webhook, --warm-kernels 0")):
        s = res["latency"][k]["summary"]
        ev = res["latency"][k]["events"]
        rows.append([label, s["n"], ms(s["p50_s"]), ms(s["p95_s"]), ms(s["max_s"]),
                     ms(statistics.median(e["started_s"] for e in ev))])
    if "burst" in res:
        s = res["burst"]["summary"]
        rows.append([f"burst of {s['n']} in one POST, pool 1", s["n"], ms(s["p50_s"]), ms(s["p95_s"]),
                     ms(s["max_s"]), "—"])
    if "inbox" in res:
        s = res["inbox"]["summary"]
        rows.append(["inbox file, --warm-kernels 1", s["n"], ms(s["p50_s"]), ms(s["p95_s"]), ms(s["max_s"]), "—"])
    rows.append(["papermill cold (spawn -> first cell)", len(pm["runs"]), ms(pm["first_cell_s"]), "—", "—", "—"])
    core.table(["trigger", "n", "p50", "p95", "max", "run started (p50)"], rows)
    print(f"(--workers {WORKERS} --per-project {PER_PROJECT}; one event at a time, each awaited; the inbox is woken by file events; where the OS has none it adds its 1 s poll + size check)")



def report_throughput(res: dict) -> None:
    print(f"\nThroughput: small events posted in batches of {BATCH} as fast as possible, --workers {WORKERS} --per-project {PER_PROJECT}")
    rows = []
    for k, t in res["throughput"].items():
        rows.append([f"--warm-kernels {t['warm_kernels']}" + ("" if t.get("fork_server", True) else " --no-fork-server"),
                     f"{t['events']}" + (f" ({len(t['failed_runs'])} FAILED)" if t["failed_runs"] else ""),
                     f"{t['post_s']:.2f} s",
                     f"{t['elapsed_s']:.1f} s", f"{t['runs_per_min']:.0f}", f"{t['runs_per_min'] / 60:.2f}"])
    core.table(["pool", "runs (1 per key, must all succeed)", "posting", "first POST -> last finished",
                "runs/min", "runs/s"], rows)

    stops = [(name, ph.get("server_stop", {})) for name, ph in
             [(f"latency {k}", v) for k, v in res.get("latency", {}).items()]
             + [(f"throughput {k}", v) for k, v in res["throughput"].items()]
             + [(k, res[k]) for k in ("burst", "inbox") if k in res]]
    left = [(n, s.get("leftover_kernels")) for n, s in stops if s.get("leftover_kernels")]
    print("\nServer stop (SIGTERM): " + ", ".join(f"{n} exit {s.get('exit_code')} in {s.get('stop_s', 0):.1f} s"
                                                 for n, s in stops))
    print("kernels left after SIGTERM: " + ("none" if not left else
                                            "; ".join(f"{n}: {p} (killed)" for n, p in left)))

    print("\nTargets")
    core.table(["target", "measured", "goal", ""],
               [[t["name"], f"{t['value']:.0f}" if t.get("unit") else ms(t["value"]), t["target"],
                 core.mark(t["pass"])] for t in res["targets"]])


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"\n[bench-serve] FAILED: {e}", file=sys.stderr)
        sys.exit(1)
