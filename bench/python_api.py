"""nbpipe.execute_notebook vs papermill.execute_notebook (see bench/python_api.sh).

Both are called in-process from this interpreter, the way an orchestrator calls papermill,
with kernel_name="python3" (the bench venv's kernelspec, JUPYTER_PATH set by the shell script)
and progress bars off. Each case is run once unrecorded per tool first (warm caches), then
`--reps` times interleaved; medians are reported. Every run's returned notebook must have all
its code cells executed with no error output, or the bench stops.
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import nbformat
import papermill

import nbpipe

OUT = Path(__file__).resolve().parent / "out" / "python-api"
CASES = [("cells_1", 1), ("cells_200", 200), ("cells_1000", 1000)]


def log(msg):
    print("[python-api] " + msg, file=sys.stderr, flush=True)


def make(n):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("x = 1") for _ in range(n)]
    path = OUT / ("in-%d.ipynb" % n)
    nbformat.write(nb, str(path))
    return path


def check(nb, n, what):
    code = [c for c in nb.cells if c.cell_type == "code"]
    bad = [c for c in code if c.get("execution_count") is None or any(o.get("output_type") == "error" for o in c.outputs)]
    if len(code) != n or bad:
        sys.exit("%s: expected %d executed code cells, got %d (%d bad)" % (what, n, len(code), len(bad)))


def run_papermill(src, dst):
    return papermill.execute_notebook(str(src), str(dst), kernel_name="python3", progress_bar=False)


def run_nbpipe(src, dst):
    return nbpipe.execute_notebook(str(src), str(dst), kernel_name="python3", progress_bar=False)


TOOLS = [("papermill", run_papermill), ("nbpipe", run_nbpipe)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1 repetition")
    args = ap.parse_args()
    reps = 1 if args.quick else args.reps
    OUT.mkdir(parents=True, exist_ok=True)
    log("nbpipe binary: %s; papermill %s" % (nbpipe.find_nbpipe_bin(), papermill.__version__))
    inputs = {name: make(n) for name, n in CASES}
    for tool, fn in TOOLS:
        check(fn(inputs["cells_1"], OUT / ("warm-%s.ipynb" % tool)), 1, tool + " warm-up")
    runs = {(case, tool): [] for case, _ in CASES for tool, _ in TOOLS}
    for rep in range(reps):
        for case, n in CASES:
            for tool, fn in TOOLS:
                dst = OUT / ("out-%s-%s.ipynb" % (case, tool))
                t0 = time.perf_counter()
                nb = fn(inputs[case], dst)
                wall = time.perf_counter() - t0
                check(nb, n, "%s %s" % (tool, case))
                runs[(case, tool)].append(wall)
                log("rep %d %-10s %-9s %.3f s" % (rep + 1, case, tool, wall))
    print()
    print("| case | papermill.execute_notebook | nbpipe.execute_notebook | nbpipe / papermill |")
    print("| --- | --- | --- | --- |")
    medians = {}
    for case, _ in CASES:
        pm = statistics.median(runs[(case, "papermill")])
        nbp = statistics.median(runs[(case, "nbpipe")])
        medians[case] = {"papermill": pm, "nbpipe": nbp, "ratio": nbp / pm}
        print("| %s | %.3f s | %.3f s | %.3f (1/%.1f) |" % (case, pm, nbp, nbp / pm, pm / nbp))
    with open(OUT.parent / "python-api-results.json", "w") as f:
        json.dump(
            {
                "reps": reps,
                "runs": {"%s/%s" % k: v for k, v in runs.items()},
                "medians": medians,
                "python": sys.version,
                "papermill": papermill.__version__,
                "cpus": os.cpu_count(),
            },
            f,
            indent=2,
        )


if __name__ == "__main__":
    main()
