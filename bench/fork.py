"""Kernel-ready latency: nbpipe's fork server vs nbpipe's cold start vs jupyter_client's.

Run by bench/fork.sh with the bench venv's python. Target: p50 of a forked kernel <= 25 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench as core  # noqa: E402  (bench.py: cpu_busy, table, kernel_floor, BenchError)

RESULTS = core.OUT_DIR / "fork-results.json"
TARGET_P50_S = 0.025


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def ms(x):
    return f"{x * 1e3:.1f} ms"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=30, help="forked kernels (cold: at most 10)")
    ap.add_argument("--preload", nargs="*", default=[], help="modules the zygote preloads")
    args = ap.parse_args()
    binary = os.environ.get("KERNEL_READY_BIN")
    if not binary or not Path(binary).is_file():
        raise core.BenchError("KERNEL_READY_BIN not set or missing; run bench/fork.sh")
    busy = core.cpu_busy()
    python = str(core.VENV / "bin" / "python3")
    t = time.perf_counter()
    p = subprocess.run([binary, python, str(args.n), *args.preload], capture_output=True, text=True, timeout=1800)
    if p.returncode:
        raise core.BenchError(f"kernel_ready exited {p.returncode}:\n{p.stderr[-3000:]}")
    res = json.loads(p.stdout)
    res["wall_s"] = time.perf_counter() - t
    floor = core.kernel_floor(5, 20)
    res["jupyter_client_start_s"] = floor["kernel_start_runs_s"]
    res["cpu_busy_before"] = busy
    res["cpu_busy_after"] = core.cpu_busy()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")

    fork, cold, jc = res["fork_s"], res["cold_s"], res["jupyter_client_start_s"]
    print(f"\nKernel ready — CPUs busy before/after: {busy:.0%}/{res['cpu_busy_after']:.0%}"
          + (f"; preload {' '.join(args.preload)}" if args.preload else ""))
    core.table(["start", "n", "p50", "p95", "max"], [
        ["nbpipe, forked from the zygote (launch -> first execute_reply)", len(fork), ms(pct(fork, .5)), ms(pct(fork, .95)), ms(max(fork))],
        ["nbpipe, cold (launch -> first execute_reply)", len(cold), ms(pct(cold, .5)), ms(pct(cold, .95)), ms(max(cold))],
        ["jupyter_client / papermill, cold (start -> kernel_info_reply)", len(jc), ms(pct(jc, .5)), ms(pct(jc, .95)), ms(max(jc))],
    ])
    fd, cd = res["fork_shutdown_s"], res["cold_shutdown_s"]
    print(f"shutdown (shutdown_request -> process gone): forked p50 {ms(pct(fd, .5))}, cold p50 {ms(pct(cd, .5))}")
    print(f"zygote: first kernel {res['zygote_start_to_first_kernel_s']:.2f} s after enable (imports once); "
          f"memory rss {res['zygote_memory']['rss_kib'] / 1024:.1f} MiB")
    fm, cm = res["forked_kernel_memory"], res["cold_kernel_memory"]
    print(f"kernel memory (idle, after one cell): forked private {fm['private_kib'] / 1024:.1f} MiB "
          f"(pss {fm['pss_kib'] / 1024:.1f}, rss {fm['rss_kib'] / 1024:.1f}); cold private "
          f"{cm['private_kib'] / 1024:.1f} MiB (pss {cm['pss_kib'] / 1024:.1f}, rss {cm['rss_kib'] / 1024:.1f})")
    p50 = pct(fork, .5)
    print(f"target: forked kernel ready p50 <= 25 ms: {ms(p50)} {'PASS' if p50 <= TARGET_P50_S else 'MISS'}; "
          f"{statistics.median(cold) / p50:.0f}x faster than nbpipe cold, {statistics.median(jc) / p50:.0f}x than jupyter_client")
    print(f"\nresults: {RESULTS}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except core.BenchError as e:
        print(f"[bench-fork] ERROR: {e}", file=sys.stderr)
        sys.exit(1)
