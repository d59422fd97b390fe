#!/usr/bin/env python3
"""Project benchmark driver: `nbpipe run` vs the papermill shell loop (run it through
bench/project.sh, which provisions the venv and builds nbpipe).

A 10-notebook project (generated under bench/out/project/: each notebook a `parameters` cell and
5 light stdlib-only cells that read the CSV the previous step wrote, compute, and write a CSV and
a summary) is run, in the same bench run, by:

* `papermill loop`: a bash loop, `papermill NB OUT/NB -k python3 --no-progress-bar` once per
  notebook in order, the way teams run such a project today;
* `nbpipe run` on the same project (short-form nbpipe.yaml), cache off, a fresh `--run-id`;
* `nbpipe run --cache` on an empty cache (populating it), then a warm re-run in which every
  step must come from the cache;
* a DAG variant (a second project whose steps 2..10 need only step 1: a *different pipeline
  shape*), with `-j 1` and `-j 4`.

Each measurement is repeated (3 times, 1 with --quick), interleaved, and the median reported.
Every run must exit 0 and leave every expected output notebook, fully executed without errors
(and for nbpipe a run.json with every step succeeded, cached or not as expected), or the bench
fails. Results: a table on stdout and bench/out/project-results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench as core  # noqa: E402  (bench.py: cpu_busy, table, version_of, BenchError, BUSY_WARN)

BenchError = core.BenchError
BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out"
PROJECT = OUT_DIR / "project"  # the short-form project (list order)
PROJECT_DAG = OUT_DIR / "project-dag"  # same notebooks, steps 2..10 need only step 1
RUNS = OUT_DIR / "project-runs"  # outputs of every run (local store), logs
NBPIPE_HOME = OUT_DIR / "nbpipe-home"  # isolated: env builds here never touch ~/.cache/nbpipe
RESULTS = OUT_DIR / "project-results.json"
VENV = Path(sys.prefix)
KERNEL = "python3"
BUCKET = "nbpipe-bench"
N_ROWS = 10_000


def log(msg: str) -> None:
    print(f"[bench-project] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# The project: 10 notebooks, deterministic, stdlib only, each reading the previous step's CSV.
# Every step keeps the same row schema, so that the DAG variant (steps 2..10 all reading step 1's
# output) runs the very same notebooks with another `input_name`.
# --------------------------------------------------------------------------------------------
SETUP = '''\
import csv, hashlib, json, os, statistics
from collections import Counter, defaultdict

FIELDS = ["order_id", "day", "region", "product", "qty", "unit_price", "discount", "amount"]
os.makedirs(data_dir, exist_ok=True)

def load(name):
    with open(os.path.join(data_dir, name), newline="") as f:
        return [{"order_id": int(r["order_id"]), "day": int(r["day"]), "region": r["region"],
                 "product": r["product"], "qty": int(r["qty"]), "unit_price": float(r["unit_price"]),
                 "discount": float(r["discount"]), "amount": float(r["amount"])}
                for r in csv.DictReader(f)]
'''
LOAD = '''\
rows = load(input_name)
print(f"read {len(rows)} rows from {input_name}")
'''
SAVE = '''\
with open(os.path.join(data_dir, output_name), "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=FIELDS)
    w.writeheader()
    w.writerows(rows)
with open(os.path.join(data_dir, output_name[:-4] + ".summary.json"), "w") as f:
    json.dump(summary, f, indent=1, sort_keys=True)
'''
SHOW = '''\
print(f"wrote {len(rows)} rows to {output_name}")
print(json.dumps(summary, sort_keys=True)[:400])
'''

INGEST_LOAD = '''\
import random
rng = random.Random(seed)
REGIONS = ["EU", "NA", "APAC", "LATAM", "MEA"]
PRODUCTS = [f"P{i:03d}" for i in range(40)]
rows = []
for i in range(n_rows):
    region = rng.choice(REGIONS)
    if rng.random() < 0.02:
        region = " " + region.lower() + " "  # messy codes, fixed by clean
    oid = i if rng.random() > 0.01 else max(0, i - 1)  # a few duplicate order ids
    qty = rng.choice([0] + [rng.randint(1, 30)] * 49)  # ~2 % empty orders
    price = round(rng.lognormvariate(3, 0.6), 2)
    rows.append({"order_id": oid, "day": rng.randint(0, 364), "region": region,
                 "product": rng.choice(PRODUCTS), "qty": qty, "unit_price": price,
                 "discount": 0.0, "amount": round(qty * price, 2)})
print(f"generated {len(rows)} rows")
'''

# (stem, extra parameters, transform cell: sets `rows` and `summary`)
STEPS = [
    ("01_ingest", {"seed": 42, "n_rows": N_ROWS}, '''\
summary = {"rows": len(rows), "regions": dict(sorted(Counter(r["region"] for r in rows).items()))}
'''),
    ("02_clean", {}, '''\
seen, clean = set(), []
for r in rows:
    r["region"] = r["region"].strip().upper()
    if r["qty"] > 0 and r["order_id"] not in seen:
        seen.add(r["order_id"])
        clean.append(r)
summary = {"rows_in": len(rows), "rows_out": len(clean), "dropped": len(rows) - len(clean)}
rows = clean
'''),
    ("03_discount", {"tiers": "20:0.10,10:0.05"}, '''\
tier_list = sorted(((int(q), float(d)) for q, d in (t.split(":") for t in tiers.split(","))), reverse=True)
for r in rows:
    r["discount"] = next((d for q, d in tier_list if r["qty"] >= q), 0.0)
    r["amount"] = round(r["qty"] * r["unit_price"] * (1 - r["discount"]), 2)
summary = {"discounted": sum(r["discount"] > 0 for r in rows), "revenue": round(sum(r["amount"] for r in rows), 2)}
'''),
    ("04_fx", {"base": "EUR"}, '''\
RATES = {"EU": 1.0, "NA": 0.92, "APAC": 0.0061, "LATAM": 0.18, "MEA": 0.25}
for r in rows:
    r["amount"] = round(r["amount"] * RATES.get(r["region"].strip().upper(), 1.0), 2)
totals = defaultdict(float)
for r in rows:
    totals[r["region"]] += r["amount"]
summary = {"currency": base, "totals": {k: round(v, 2) for k, v in sorted(totals.items())}}
'''),
    ("05_outliers", {"z_max": 3.0}, '''\
by_product = defaultdict(list)
for r in rows:
    by_product[r["product"]].append(r["amount"])
stats = {p: (statistics.fmean(v), statistics.pstdev(v) or 1.0) for p, v in by_product.items()}
kept = [r for r in rows if abs(r["amount"] - stats[r["product"]][0]) / stats[r["product"]][1] <= z_max]
summary = {"rows_in": len(rows), "outliers": len(rows) - len(kept)}
rows = kept
'''),
    ("06_region_totals", {}, '''\
agg = defaultdict(lambda: [0, 0.0])
for r in rows:
    agg[r["region"]][0] += 1
    agg[r["region"]][1] += r["amount"]
rows.sort(key=lambda r: (r["region"], r["order_id"]))
summary = {k: {"orders": n, "revenue": round(s, 2), "avg": round(s / n, 2)} for k, (n, s) in sorted(agg.items())}
'''),
    ("07_top_products", {"top": 10}, '''\
revenue = Counter()
for r in rows:
    revenue[r["product"]] += r["amount"]
summary = {"top": [[p, round(v, 2)] for p, v in revenue.most_common(top)]}
'''),
    ("08_weekly", {"window": 4}, '''\
weekly = defaultdict(float)
for r in rows:
    weekly[r["day"] // 7] += r["amount"]
weeks = [round(weekly[w], 2) for w in range(max(weekly) + 1)]
rolling = [round(statistics.fmean(weeks[max(0, i - window + 1):i + 1]), 2) for i in range(len(weeks))]
summary = {"weeks": len(weeks), "best_week": max(range(len(weeks)), key=weeks.__getitem__), "rolling_last": rolling[-1]}
'''),
    ("09_quantiles", {"n_quantiles": 10}, '''\
amounts = defaultdict(list)
for r in rows:
    amounts[r["region"]].append(r["amount"])
summary = {k: [round(q, 2) for q in statistics.quantiles(v, n=n_quantiles)] for k, v in sorted(amounts.items())}
'''),
    ("10_report", {}, '''\
canon = "\\n".join(",".join(str(r[k]) for k in FIELDS) for r in sorted(rows, key=lambda r: r["order_id"]))
summary = {"rows": len(rows), "revenue": round(sum(r["amount"] for r in rows), 2),
           "sha256": hashlib.sha256(canon.encode()).hexdigest()}
for k, v in summary.items():
    print(f"{k:>8}: {v}")
'''),
]
STEMS = [s[0] for s in STEPS]
NOTEBOOKS = [f"{s}.ipynb" for s in STEMS]


def make_project() -> None:
    import nbformat

    for d in (PROJECT, PROJECT_DAG):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    for i, (stem, extra, transform) in enumerate(STEPS):
        params = {"data_dir": "data", "input_name": "" if i == 0 else f"{STEMS[i - 1]}.csv",
                  "output_name": f"{stem}.csv", **extra}
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python 3", "language": "python"}
        nb.metadata["language_info"] = {"name": "python"}
        pcell = nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}" for k, v in params.items()))
        pcell.metadata["tags"] = ["parameters"]
        nb.cells = [nbformat.v4.new_markdown_cell(f"# {stem}"), pcell,
                    nbformat.v4.new_code_cell(SETUP),
                    nbformat.v4.new_code_cell(INGEST_LOAD if i == 0 else LOAD),
                    nbformat.v4.new_code_cell(transform),
                    nbformat.v4.new_code_cell(SAVE),
                    nbformat.v4.new_code_cell(SHOW)]
        for d in (PROJECT, PROJECT_DAG):
            nbformat.write(nb, d / f"{stem}.ipynb")
    for d in (PROJECT, PROJECT_DAG):
        (d / "requirements.txt").write_text("# stdlib only: the kernel environment is just ipykernel\n")
    # Short form, exactly what teams already write: the notebooks run in list order.
    (PROJECT / "nbpipe.yaml").write_text("notebooks:\n" + "".join(f"  - {nb}\n" for nb in NOTEBOOKS))
    # A different pipeline shape: steps 2..10 need only step 1 (and read its CSV).
    dag = "notebooks:\n" + f"  - path: {NOTEBOOKS[0]}\n"
    for nb, stem in zip(NOTEBOOKS[1:], STEMS[1:], strict=True):
        dag += (f"  - path: {nb}\n    needs: {STEMS[0]}\n"
                f"    parameters: {{input_name: {STEMS[0]}.csv}}\n")
    (PROJECT_DAG / "nbpipe.yaml").write_text(dag)
    # The shell loop teams use today (kept next to the project so it can be read and rerun).
    loop = PROJECT / "run-papermill.sh"
    loop.write_text(f'''\
#!/usr/bin/env bash
# The shell loop teams use today: papermill once per notebook, in order, outputs to one store.
# usage: run-papermill.sh OUTPUT_PREFIX DATA_DIR
set -euo pipefail
cd "$(dirname "$0")"
out="$1"; data="$2"
case "$out" in s3://*) ;; *) mkdir -p "$out" ;; esac
for nb in {" ".join(NOTEBOOKS)}; do
  papermill "$nb" "$out/$nb" -k {KERNEL} --no-progress-bar -p data_dir "$data"
done
''')
    loop.chmod(0o755)


# --------------------------------------------------------------------------------------------
# Local SeaweedFS (`weed mini`), as crates/nbpipe-store/tests/common/seaweed.rs starts it.
# --------------------------------------------------------------------------------------------
class Seaweed:
    def __init__(self, weed: str):
        self.weed = weed
        self.dir = Path(tempfile.mkdtemp(prefix="nbpipe-bench-seaweed-"))
        self.proc = None
        self.ports = {}

    @staticmethod
    def _free_ports() -> tuple[dict, list]:
        held = []

        def take():
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            held.append(s)
            return s.getsockname()[1]
        while True:  # `weed mini` dials admin + 10000 for the admin gRPC port, whatever we say
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            admin = s.getsockname()[1]
            if admin > 55_000:
                s.close()
                continue
            g = socket.socket()
            try:
                g.bind(("127.0.0.1", admin + 10_000))
            except OSError:
                s.close()
                g.close()
                continue
            held += [s, g]
            break
        ports = {k: take() for k in ("s3", "s3.port.grpc", "master", "master.port.grpc", "volume",
                                     "volume.port.grpc", "filer", "filer.port.grpc")}
        ports["admin"], ports["admin.port.grpc"] = admin, admin + 10_000
        return ports, held

    def start(self, timeout: float = 60) -> None:
        for _attempt in range(3):
            self.ports, held = self._free_ports()
            p = self.ports
            argv = [self.weed, "mini", f"-dir={self.dir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                    "-webdav=false", "-admin.ui=false", "-master.telemetry=false",
                    "-s3.port.iceberg=0", "-s3.port.lance=0",
                    f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3.port.grpc']}",
                    f"-master.port={p['master']}", f"-master.port.grpc={p['master.port.grpc']}",
                    f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume.port.grpc']}",
                    f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer.port.grpc']}",
                    f"-admin.port={p['admin']}", f"-admin.port.grpc={p['admin.port.grpc']}",
                    f"-bucket={BUCKET}"]
            (self.dir / "data").mkdir(parents=True, exist_ok=True)
            # `weed mini` turns authentication on when it sees AWS credentials: give it none.
            env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}
            for s in held:
                s.close()
            with open(self.dir / "weed.log", "ab") as logf:
                self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=logf,
                                             stderr=subprocess.STDOUT, start_new_session=True)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                if (self._status(p["s3"], "/") is not None
                        and self._status(p["filer"], f"/buckets/{BUCKET}/") == 200):
                    return
                time.sleep(0.1)
            self.stop()  # died (a port was taken meanwhile) or too slow: new ports
        raise BenchError(f"SeaweedFS did not start; log: {self.dir / 'weed.log'}\n{self.log_tail()}")

    @staticmethod
    def _status(port: int, path: str):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            return None

    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def log_tail(self) -> str:
        try:
            return "\n".join((self.dir / "weed.log").read_text(errors="replace").splitlines()[-30:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(1)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        self.proc = None
        ports = [str(v) for v in self.ports.values()]
        for f in Path("/tmp").glob("seaweedfs-*.sock"):  # unix sockets it leaves, named by port
            if any(f.name.endswith(f"-{p}.sock") for p in ports):
                f.unlink(missing_ok=True)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Store access (local folder or s3:// through boto3) and output checks
# --------------------------------------------------------------------------------------------
class Store:
    def __init__(self, s3_endpoint: str | None):
        self.s3 = None
        if s3_endpoint:
            import boto3
            self.s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                                   aws_access_key_id="test", aws_secret_access_key="test")

    def prefix(self, variant: str, tag: str) -> str:
        return f"s3://{BUCKET}/{variant}/{tag}" if self.s3 else str(RUNS / variant / tag)

    def read(self, uri: str) -> str | None:
        if uri.startswith("s3://"):
            bucket, _, key = uri[5:].partition("/")
            try:
                return self.s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
            except self.s3.exceptions.NoSuchKey:
                return None
        p = Path(uri)
        return p.read_text(encoding="utf-8") if p.is_file() else None


def check_notebook(store: Store, uri: str, what: str) -> tuple[float, float]:
    """Fail unless the output notebook exists with every code cell executed and no error output.
    Returns the sum of its cells' execution durations and the notebook's own duration (both
    metadata.papermill.duration; the latter covers kernel start to end of the last cell)."""
    text = store.read(uri)
    if text is None:
        raise BenchError(f"{what}: output notebook {uri} was not written")
    try:
        nb = json.loads(text)
    except ValueError as e:
        raise BenchError(f"{what}: {uri} is not valid JSON: {e}") from e
    code = [c for c in nb.get("cells", []) if c.get("cell_type") == "code"]
    if len(code) < 6 or not all(isinstance(c.get("execution_count"), int) for c in code):
        raise BenchError(f"{what}: {uri}: not every code cell ran ({len(code)} code cells)")
    for c in code:
        if any(o.get("output_type") == "error" for o in c.get("outputs", [])):
            raise BenchError(f"{what}: {uri} holds an error output")
    return (sum((c.get("metadata", {}).get("papermill", {}).get("duration") or 0.0) for c in code),
            nb.get("metadata", {}).get("papermill", {}).get("duration") or 0.0)


def check_manifest(store: Store, prefix: str, what: str, cached: bool) -> dict:
    text = store.read(f"{prefix}/run.json")
    if text is None:
        raise BenchError(f"{what}: {prefix}/run.json was not written")
    m = json.loads(text)
    bad = [s["id"] for s in m["steps"] if s["status"] != "succeeded"]
    if m["status"] != "succeeded" or bad or len(m["steps"]) != len(STEMS):
        raise BenchError(f"{what}: run.json status {m['status']}, steps not succeeded: {bad}")
    hits = [s["id"] for s in m["steps"] if s.get("cached_from")]
    if cached and len(hits) != len(STEMS):
        raise BenchError(f"{what}: expected every step from the cache, cached: {hits}")
    if not cached and hits:
        raise BenchError(f"{what}: expected no cached step, cached: {hits}")
    return m


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------
def is_kernel(argv: list[bytes], stat: str) -> bool:
    """A cold kernel (`python -m ipykernel_launcher`), or one forked by nbpipe's zygote: same
    command line as the zygote (`python .../zygote.py`), but in a session of its own."""
    if b"ipykernel_launcher" in argv:
        return True
    if any(a.endswith(b"/zygote.py") for a in argv):
        fields = stat.rsplit(")", 1)[1].split()
        return fields[3] == stat.split(" ", 1)[0]  # field 6, session id == pid
    return False


def kernels(prefixes: list[str]) -> set[int]:
    """PIDs of live kernels started from the bench venv or the isolated nbpipe home."""
    pids = set()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
            stat = (d / "stat").read_text()
        except OSError:
            continue
        if is_kernel(argv, stat) and any(argv[0].startswith(p.encode()) for p in prefixes):
            pids.add(int(d.name))
    return pids


def timed(argv: list[str], env: dict, logp: Path, timeout: float, cwd: Path | None = None) -> dict:
    """Wall time of argv from spawn to reap; kills its process group on timeout."""
    logp.parent.mkdir(parents=True, exist_ok=True)
    with open(logp, "wb") as logf:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=logf,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise BenchError(f"timed out after {timeout:.0f} s: {' '.join(argv)} (log: {logp})") from None
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        wall = time.perf_counter() - t0
    return {"rc": rc, "wall_s": wall, "log": str(logp)}


class Runner:
    def __init__(self, nbpipe: str, env: dict, store: Store, timeout: float):
        self.nbpipe, self.env, self.store, self.timeout = nbpipe, env, store, timeout
        self.kernel_prefixes = [str(VENV), str(NBPIPE_HOME)]

    def _run(self, what: str, argv: list[str], logp: Path, cwd: Path | None = None) -> dict:
        before = kernels(self.kernel_prefixes)
        r = timed(argv, self.env, logp, self.timeout, cwd)
        deadline = time.monotonic() + 2.0
        while (left := kernels(self.kernel_prefixes) - before) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in left:
            log(f"WARNING: {what} left a kernel (pid {pid}) running; killing it")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        r["leftover_kernels"] = sorted(left)
        if r["rc"] != 0:
            tail = logp.read_text(errors="replace")[-3000:]
            raise BenchError(f"{what} exited {r['rc']}: {' '.join(argv)}\n--- {logp} (tail)\n{tail}")
        return r

    def papermill_loop(self, tag: str, data: str) -> dict:
        prefix = self.store.prefix("papermill-loop", tag)
        r = self._run(f"papermill loop ({tag})", ["bash", str(PROJECT / "run-papermill.sh"), prefix, data],
                      RUNS / "logs" / f"papermill-loop.{tag}.log")
        times = [check_notebook(self.store, f"{prefix}/{nb}", f"papermill loop ({tag})") for nb in NOTEBOOKS]
        r["cell_time_s"] = sum(c for c, _ in times)
        r["notebook_time_s"] = sum(n for _, n in times)
        r["output"] = prefix
        return r

    def nbpipe_run(self, variant: str, tag: str, data: str, project: Path = PROJECT,
                   extra: tuple = (), cached: bool = False) -> dict:
        prefix = self.store.prefix(variant, tag)
        run_id = f"{variant}-{tag}-{int(time.time() * 1000)}"
        argv = [self.nbpipe, "run", str(project), "--output", prefix + "/", "--run-id", run_id,
                "-p", "data_dir", data, "--quiet", *extra]
        r = self._run(f"{variant} ({tag})", argv, RUNS / "logs" / f"{variant}.{tag}.log")
        times = [check_notebook(self.store, f"{prefix}/{stem}.ipynb", f"{variant} ({tag})") for stem in STEMS]
        m = check_manifest(self.store, prefix, f"{variant} ({tag})", cached)
        if not cached:  # cached outputs carry the timings of the run that made them
            r["cell_time_s"] = sum(c for c, _ in times)
            r["notebook_time_s"] = sum(n for _, n in times)
        r["steps_cached"] = sum(1 for s in m["steps"] if s.get("cached_from"))
        r["output"], r["run_id"] = prefix, run_id
        return r


def final_checksum(project: Path, data: str) -> str | None:
    try:
        return json.loads((project / data / "10_report.summary.json").read_text())["sha256"]
    except (OSError, ValueError, KeyError):
        return None


def median(xs):
    return statistics.median(xs) if xs else None


def fmt_ratio(r):
    if r is None:
        return "—"
    return f"{r:.3f} (1/{1 / r:.1f})" if r < 1 else f"{r:.3f} ({r:.2f}x)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 repetition instead of 3")
    ap.add_argument("--reps", type=int, help="repetitions per measurement (default 3, 1 with --quick)")
    ap.add_argument("--s3", action="store_true", help="outputs of both tools to s3:// on a local SeaweedFS")
    ap.add_argument("--no-dag", action="store_true", help="skip the DAG variant (-j 1 / -j 4)")
    ap.add_argument("--timeout", type=float, default=1200, help="seconds before a single run is killed")
    args = ap.parse_args()
    reps = args.reps or (1 if args.quick else 3)

    nbpipe = os.environ.get("NBPIPE_BIN", "")
    if not (nbpipe and os.path.isfile(nbpipe) and os.access(nbpipe, os.X_OK)):
        raise BenchError(f"NBPIPE_BIN={nbpipe!r} is not an executable file (run bench/project.sh)")
    env = dict(os.environ)
    env["PATH"] = f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["JUPYTER_PATH"] = str(VENV / "share" / "jupyter")
    env["NBPIPE_HOME"] = str(NBPIPE_HOME)
    env.pop("PYTHONPATH", None)
    for k in [k for k in env if k.startswith("AWS_")]:
        del env[k]  # never the caller's credentials or endpoint

    from jupyter_client.kernelspec import KernelSpecManager
    os.environ["JUPYTER_PATH"] = env["JUPYTER_PATH"]
    spec = KernelSpecManager().get_kernel_spec(KERNEL)
    if not Path(spec.resource_dir).resolve().is_relative_to((VENV / "share" / "jupyter").resolve()):
        raise BenchError(f"kernelspec {KERNEL} resolves to {spec.resource_dir}, not inside {VENV}/share/jupyter")

    meta = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": {"machine": platform.machine(), "kernel": platform.release(), "cpus": os.cpu_count()},
        "python": sys.version.split()[0],
        "venv": str(VENV),
        "papermill": core.version_of([str(VENV / "bin" / "papermill"), "--version"], env).split(" from ")[0],
        "nbpipe": core.version_of([nbpipe, "--version"], env),
        "nbpipe_bin": nbpipe,
        "papermill_kernel": {"resource_dir": spec.resource_dir, "argv0": spec.argv[0]},
        "reps": reps,
        "quick": args.quick,
        "notebooks": len(NOTEBOOKS),
        "rows": N_ROWS,
        "cpu_busy_before": core.cpu_busy(),
    }
    from importlib.metadata import version
    meta["papermill_kernel"]["ipykernel"] = version("ipykernel")
    if meta["cpu_busy_before"] > core.BUSY_WARN:
        log(f"WARNING: the CPUs were {meta['cpu_busy_before']:.0%} busy before the bench: "
            "other work will skew the figures")

    shutil.rmtree(RUNS, ignore_errors=True)
    make_project()
    log(f"project: {PROJECT} ({len(NOTEBOOKS)} notebooks); DAG variant: {PROJECT_DAG}")

    weed = None
    store_desc = "local folder"
    try:
        if args.s3:
            weed = Seaweed(os.environ.get("WEED_BIN") or str(VENV / "bin" / "weed"))
            log("starting SeaweedFS (weed mini, 127.0.0.1 only)")
            weed.start()
            env.update({"AWS_ENDPOINT_URL": weed.endpoint(), "BOTO3_ENDPOINT_URL": weed.endpoint(),
                        "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                        "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_EC2_METADATA_DISABLED": "true"})
            store_desc = f"s3://{BUCKET} on SeaweedFS {weed.endpoint()}"
        store = Store(weed.endpoint() if weed else None)
        runner = Runner(nbpipe, env, store, args.timeout)

        # 1. The project's kernel environment, built once before any timing (and reported).
        log("nbpipe env: building the project's kernel environment (--force; uv's own cache may be warm)")
        envb = timed([nbpipe, "env", str(PROJECT), "--force", "--quiet"], env,
                     RUNS / "logs" / "env-build.log", args.timeout)
        envr = timed([nbpipe, "env", str(PROJECT), "--quiet"], env, RUNS / "logs" / "env-reuse.log", args.timeout)
        timed([nbpipe, "env", str(PROJECT_DAG), "--quiet"], env, RUNS / "logs" / "env-dag.log", args.timeout)
        if envb["rc"] or envr["rc"]:
            raise BenchError(f"nbpipe env failed: see {envb['log']}")
        marker = json.loads((PROJECT / ".nbpipe" / "env.json").read_text())
        env_ipk = core.version_of([marker["python"], "-c", "import ipykernel; print(ipykernel.__version__)"], env)
        meta["nbpipe_kernel"] = {"python": marker["python"], "ipykernel": env_ipk}
        meta["env_build_s"], meta["env_reuse_s"] = envb["wall_s"], envr["wall_s"]
        log(f"  env build {envb['wall_s']:.2f} s, reuse check {envr['wall_s']:.3f} s; "
            f"ipykernel {env_ipk} (papermill's kernel: {meta['papermill_kernel']['ipykernel']})")

        # Kernel start floor (bench.py's jupyter_client client, the bench venv's kernel): what
        # any runner pays per notebook, whatever it does.
        floor_before = core.kernel_floor(3, 50)["kernel_start_runs_s"]
        log(f"kernel start floor (jupyter_client, median of 3): {statistics.median(floor_before):.3f} s")

        # 2. Warm-up (unrecorded): each tool runs the first notebook once; also checks the store.
        log("warm-up: papermill and nbpipe exec on the first notebook")
        if not args.s3:  # neither tool creates a local output folder
            for tool in ("papermill", "nbpipe"):
                Path(store.prefix("warmup", tool)).mkdir(parents=True, exist_ok=True)
        try:
            runner._run("papermill warm-up", [str(VENV / "bin" / "papermill"), NOTEBOOKS[0],
                        store.prefix("warmup", "papermill") + "/" + NOTEBOOKS[0], "-k", KERNEL,
                        "--no-progress-bar", "-p", "data_dir", "data/warmup"],
                        RUNS / "logs" / "warmup-papermill.log", cwd=PROJECT)
        except BenchError as e:
            if not args.s3:
                raise
            raise BenchError(f"papermill could not write to the S3 endpoint {weed.endpoint()} "
                             f"(BOTO3_ENDPOINT_URL/AWS_ENDPOINT_URL); rerun without --s3.\n{e}") from e
        runner._run("nbpipe warm-up", [nbpipe, "exec", str(PROJECT / NOTEBOOKS[0]),
                    store.prefix("warmup", "nbpipe") + "/" + NOTEBOOKS[0], "--no-progress-bar",
                    "-p", "data_dir", "data/warmup"], RUNS / "logs" / "warmup-nbpipe.log", cwd=PROJECT)

        # 3. Measurements, interleaved across variants. The cache is wiped before each
        #    populating run, and the warm re-run right after it must be served from it entirely.
        variants = [
            ("papermill-loop", "papermill loop (10 x papermill)"),
            ("nbpipe", "nbpipe run"),
            ("nbpipe-nofork", "nbpipe run --no-fork-server"),
            ("nbpipe-cache-populate", "nbpipe run --cache (cold: populating)"),
            ("nbpipe-cache-warm", "nbpipe run --cache (warm: all cached)"),
        ]
        if not args.no_dag:
            variants += [("nbpipe-dag-j1", "nbpipe run -j 1, DAG shape"),
                         ("nbpipe-dag-j4", "nbpipe run -j 4, DAG shape")]
        runs = {v: [] for v, _ in variants}
        checksums = []
        for rep in range(1, reps + 1):
            tag = str(rep)
            for v, label in variants:
                log(f"{label} (run {rep}/{reps})")
                if v == "papermill-loop":
                    r = runner.papermill_loop(tag, f"data/pm-{tag}")
                    checksums.append(("papermill loop", tag, final_checksum(PROJECT, f"data/pm-{tag}")))
                elif v == "nbpipe":
                    r = runner.nbpipe_run(v, tag, f"data/nbpipe-{tag}")
                    checksums.append(("nbpipe run", tag, final_checksum(PROJECT, f"data/nbpipe-{tag}")))
                elif v == "nbpipe-nofork":
                    r = runner.nbpipe_run(v, tag, f"data/nofork-{tag}", extra=("--no-fork-server",))
                elif v == "nbpipe-cache-populate":
                    shutil.rmtree(PROJECT / ".nbpipe" / "cache", ignore_errors=True)
                    r = runner.nbpipe_run(v, tag, f"data/cache-{tag}", extra=("--cache",))
                elif v == "nbpipe-cache-warm":
                    r = runner.nbpipe_run(v, tag, f"data/cache-{tag}", extra=("--cache",), cached=True)
                else:
                    jobs = v.rsplit("-j", 1)[1]
                    r = runner.nbpipe_run(v, tag, f"data/{v}-{tag}", project=PROJECT_DAG, extra=("-j", jobs))
                log(f"  {r['wall_s']:.2f} s" + (f" (cells {r['cell_time_s']:.2f} s)" if r.get("cell_time_s") else ""))
                runs[v].append(r)
        # Same computation, same answer: the pipeline's final checksum must match across tools.
        sums = {c for _, _, c in checksums}
        if None in sums or len(sums) != 1:
            raise BenchError(f"the pipelines' final results differ or are missing: {checksums}")
        meta["final_sha256"] = sums.pop()
        # The floor again after the runs; the median over both is used (load drifts).
        floor_after = core.kernel_floor(3, 50)["kernel_start_runs_s"]
        meta["kernel_start_floor_s"] = statistics.median(floor_before + floor_after)
        meta["kernel_start_floor_runs_s"] = {"before": floor_before, "after": floor_after}
        log(f"kernel start floor after the runs: {statistics.median(floor_after):.3f} s")
    finally:
        if weed:
            weed.cleanup()

    meta["store"] = store_desc
    meta["cpu_busy_after"] = core.cpu_busy()
    n = len(NOTEBOOKS)
    out = {}
    for v, label in variants:
        walls = [r["wall_s"] for r in runs[v]]
        cells = [r["cell_time_s"] for r in runs[v] if r.get("cell_time_s") is not None]
        nbt = [r["notebook_time_s"] for r in runs[v] if r.get("notebook_time_s") is not None]
        w = median(walls)
        ct = median(cells)
        out[v] = {"label": label, "wall_s": w, "per_notebook_s": w / n,
                  "cell_time_s": ct, "notebook_time_s": median(nbt),
                  "overhead_per_notebook_s": (w - ct) / n if ct is not None else None,
                  "runs": runs[v]}
    pm, nb, warm = (out[k]["wall_s"] for k in ("papermill-loop", "nbpipe", "nbpipe-cache-warm"))
    derived = {
        "ratio_nbpipe_over_papermill_loop": nb / pm,
        "ratio_cache_warm_over_nbpipe": warm / nb,
        "ratio_cache_warm_over_papermill_loop": warm / pm,
        "saved_per_notebook_s": (pm - nb) / n,
        "ratio_cache_populate_over_nbpipe": out["nbpipe-cache-populate"]["wall_s"] / nb,
        "ratio_nofork_over_papermill_loop": out["nbpipe-nofork"]["wall_s"] / pm,
        "ratio_nbpipe_over_nofork": nb / out["nbpipe-nofork"]["wall_s"],
    }
    if "nbpipe-dag-j1" in out:
        derived["ratio_dag_j4_over_dag_j1"] = out["nbpipe-dag-j4"]["wall_s"] / out["nbpipe-dag-j1"]["wall_s"]
    results = {"meta": meta, "variants": out, "derived": derived}
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    report(results)
    print(f"\nresults: {RESULTS}")
    return 0


def report(results: dict) -> None:
    meta, out, d = results["meta"], results["variants"], results["derived"]
    print()
    print(f"nbpipe project benchmark — {meta['date']} — {meta['host']['cpus']} CPUs — "
          f"median of {meta['reps']} run(s) — {meta['notebooks']} notebooks, {meta['rows']:,} rows")
    print(f"papermill {meta['papermill']} (kernel: bench venv, ipykernel {meta['papermill_kernel']['ipykernel']}); "
          f"{meta['nbpipe']} (kernel: project env, ipykernel {meta['nbpipe_kernel']['ipykernel']}); "
          f"python {meta['python']}; outputs to {meta['store']}")
    busy = max(meta["cpu_busy_before"], meta["cpu_busy_after"])
    print(f"CPU busy (other work) just before the bench: {meta['cpu_busy_before']:.0%}, just after: "
          f"{meta['cpu_busy_after']:.0%}"
          + ("  WARNING: the machine was busy, figures are skewed" if busy > core.BUSY_WARN else ""))
    print(f"nbpipe env (built once, before timing): build {meta['env_build_s']:.2f} s, "
          f"reuse check {meta['env_reuse_s']:.3f} s")
    pm = out["papermill-loop"]["wall_s"]
    order = ["papermill-loop", "nbpipe", "nbpipe-nofork", "nbpipe-cache-populate", "nbpipe-cache-warm",
             "nbpipe-dag-j1", "nbpipe-dag-j4"]
    ks = meta["kernel_start_floor_s"]
    rows = []
    for k in order:
        if k not in out:
            continue
        e = out[k]
        oh = e["overhead_per_notebook_s"]
        rows.append([e["label"], f"{e['wall_s']:.2f} s", f"{e['per_notebook_s']:.3f} s",
                     "—" if oh is None else f"{oh:.3f} s", "—" if oh is None or k == "nbpipe-dag-j4" else f"{oh - ks:+.3f} s",
                     fmt_ratio(e["wall_s"] / pm)])
    print("\nWall time (whole pipeline: process and kernel starts, 10 notebooks, outputs stored)")
    core.table(["variant", "wall", "per notebook", "overhead/notebook", "over kernel start",
                "vs papermill loop"], rows)
    print("(overhead/notebook = (wall - sum of cell execution times in the output notebooks) / 10;\n"
          f" over kernel start = overhead/notebook - kernel start floor {ks:.3f} s (jupyter_client);\n"
          " the DAG rows are a different pipeline shape: steps 2..10 need only step 1)")
    print()
    print(f"nbpipe run / papermill loop:         {fmt_ratio(d['ratio_nbpipe_over_papermill_loop'])}, "
          f"{d['saved_per_notebook_s']:.3f} s saved per notebook")
    print(f"--no-fork-server / papermill loop:   {fmt_ratio(d['ratio_nofork_over_papermill_loop'])}; "
          f"fork server on / off: {fmt_ratio(d['ratio_nbpipe_over_nofork'])} (target: nbpipe run <= 1/8 of the loop)")
    print(f"warm --cache re-run / nbpipe run:    {fmt_ratio(d['ratio_cache_warm_over_nbpipe'])}")
    print(f"warm --cache re-run / papermill loop: {fmt_ratio(d['ratio_cache_warm_over_papermill_loop'])}")
    print(f"--cache populating run / nbpipe run: {fmt_ratio(d['ratio_cache_populate_over_nbpipe'])}")
    if "ratio_dag_j4_over_dag_j1" in d:
        print(f"DAG shape, -j 4 / -j 1:              {fmt_ratio(d['ratio_dag_j4_over_dag_j1'])} "
              f"({meta['host']['cpus']} CPUs)")
    left = [k for k, e in out.items() for r in e["runs"] if r.get("leftover_kernels")]
    if left:
        print("\nWARNING: kernels left running after (killed by the bench): " + ", ".join(left))


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"\n[bench-project] FAILED: {e}", file=sys.stderr)
        sys.exit(1)
