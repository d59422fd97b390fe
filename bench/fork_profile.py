#!/usr/bin/env python3
"""Where a forked kernel's start goes: the zygote's child, step by step.

    PYTHON bench/fork_profile.py [--n N] [--detail] [--cprofile FILE] [--preload MODULE ...]

PYTHON is the environment's interpreter (e.g. the bench venv's, which has ipykernel and
jupyter_client). This runs nbpipe's real zygote (crates/nbpipe-kernel/src/zygote.py) as a
child process, asks it for N kernels over its socket exactly as nbpipe does, drives each
with jupyter_client (connect, one `execute_request` of `1`, shutdown), and instruments the
*forked child* only:

* the time from `fork()` to each `IPKernelApp` initialisation step (parse_command_line,
  init_sockets, init_kernel, ...) and to each message the kernel sends (median over N);
* the modules the child still imports after the fork and the regular expressions it still
  compiles: both should be empty, else add them to the zygote's KERNEL_MODULES /
  `warm_caches` (ipykernel, IPython or traitlets changed);
* with --cprofile FILE, a cProfile of the last child, fork -> its first execute_reply
  (`python -m pstats FILE`).

The client here is jupyter_client, so the time between the kernel's first `status` and its
`execute_input` is the client's (it connects, with ZeroMQ's reconnect delay, after the
fork) and says nothing about nbpipe's: `bench/fork.sh` measures nbpipe's whole launch.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ZYGOTE_DIR = Path(__file__).resolve().parent.parent / "crates" / "nbpipe-kernel" / "src"
STEPS = [
    "parse_command_line", "init_profile_dir", "init_config_files", "init_connection_file",
    "init_sockets", "init_heartbeat", "write_connection_file", "init_io", "init_signal",
    "init_kernel", "init_path", "init_shell", "init_gui_pylab", "init_extensions", "init_code",
    "initialize", "start",
]
# Inside init_kernel (--detail): the kernel and its shell, step by step.
DETAIL = [
    ("ipykernel.ipkernel", "IPythonKernel", ["__init__", "start"]),
    ("ipykernel.zmqshell", "ZMQInteractiveShell", ["__init__"]),
    ("IPython.core.interactiveshell", "InteractiveShell", None),  # its init_* methods
]


def instrument(out: Path, cprofile: str | None, detail: bool = False):
    """Patch the zygote module so that each forked child records its own timeline."""
    import zygote

    t_fork = [0.0]
    real_fork = os.fork

    def fork():
        t_fork[0] = time.perf_counter()
        return real_fork()

    os.fork = fork
    real_run = zygote.run_kernel

    def run_kernel(argv):
        t0 = t_fork[0]
        import resource

        ru0 = resource.getrusage(resource.RUSAGE_SELF)  # fork reset them: ~0 here
        marks = [["fork -> run_kernel", 0.0, time.perf_counter() - t0]]
        before = set(sys.modules)
        import re

        compiled = []
        real_compile = re._compiler.compile

        def compile_(p, flags=0):
            compiled.append("%r flags=%d" % (str(p)[:100], int(flags)))
            return real_compile(p, flags)

        re._compiler.compile = compile_
        from ipykernel import kernelapp

        app = kernelapp.IPKernelApp
        for name in STEPS:
            real = getattr(app, name, None)
            if real is None:
                continue

            def step(self, *a, _real=real, _name=name, **k):
                s = time.perf_counter() - t0
                try:
                    return _real(self, *a, **k)
                finally:
                    marks.append([_name, s, time.perf_counter() - t0 - s])

            setattr(app, name, step)
        for module, cls_name, names in DETAIL if detail else []:
            import importlib

            cls = getattr(importlib.import_module(module), cls_name)
            if names is None:
                names = [n for n in vars(cls) if n.startswith("init_")]
            for name in names:
                real = vars(cls)[name]

                def step(self, *a, _real=real, _name="  %s.%s" % (cls_name, name), **k):
                    s = time.perf_counter() - t0
                    try:
                        return _real(self, *a, **k)
                    finally:
                        marks.append([_name, s, time.perf_counter() - t0 - s])

                setattr(cls, name, step)
        import jupyter_client.session as session

        real_send = session.Session.send
        prof = None
        if cprofile:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()

        def send(self, stream, msg_or_type, *a, **k):
            r = real_send(self, stream, msg_or_type, *a, **k)
            kind = msg_or_type if isinstance(msg_or_type, str) else msg_or_type["header"]["msg_type"]
            marks.append(["sent " + kind, time.perf_counter() - t0, None])
            if kind == "execute_reply":
                if prof is not None:
                    prof.disable()
                    prof.dump_stats(cprofile)
                import resource

                ru = resource.getrusage(resource.RUSAGE_SELF)  # the child's, all threads
                report = {"marks": marks, "modules": sorted(set(sys.modules) - before),
                          "patterns": compiled,
                          "rusage": [ru.ru_utime - ru0.ru_utime, ru.ru_stime - ru0.ru_stime,
                                     ru.ru_minflt - ru0.ru_minflt]}
                tmp = out / ("child-%d.json.tmp" % os.getpid())
                tmp.write_text(json.dumps(report))
                tmp.rename(out / ("child-%d.json" % os.getpid()))  # whole, for the reader
            return r

        session.Session.send = send
        return real_run(argv)

    zygote.run_kernel = run_kernel
    return zygote


def serve(sock: str, owner: str, out: str, cprofile: str, preload: list[str], detail: bool) -> None:
    sys.path.insert(0, str(ZYGOTE_DIR))
    zygote = instrument(Path(out), cprofile or None, detail)
    sys.argv = [str(ZYGOTE_DIR / "zygote.py"), sock, owner, *preload]
    zygote.main()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--cprofile", default="", help="write a cProfile of the last child here")
    ap.add_argument("--preload", nargs="*", default=[])
    ap.add_argument("--detail", action="store_true",
                    help="also time the kernel's and its shell's own initialisation steps")
    ap.add_argument("--serve", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(*args.serve, args.preload, args.detail)
        return 0

    from jupyter_client import BlockingKernelClient
    from jupyter_client.connect import write_connection_file

    with tempfile.TemporaryDirectory(prefix="nbpipe-fork-profile-") as tmp:
        out = Path(tmp)
        sock = str(out / "zygote.sock")
        zyg = subprocess.Popen(
            [sys.executable, __file__, "--serve", sock, str(os.getpid()), str(out),
             os.path.abspath(args.cprofile) if args.cprofile else "",
             *(["--detail"] if args.detail else []), "--preload", *args.preload],
            stdout=subprocess.PIPE)
        try:
            if zyg.stdout.readline().strip() != b"ready":
                print("the zygote did not start", file=sys.stderr)
                return 1
            stderr = os.open(out / "kernels.err", os.O_WRONLY | os.O_CREAT)
            reports, totals = [], []
            for i in range(args.n):
                cf = str(out / ("kernel-%d.json" % i))
                write_connection_file(cf, ip="127.0.0.1", key=os.urandom(16).hex().encode())
                t0 = time.perf_counter()
                conn = socket.socket(socket.AF_UNIX)
                conn.connect(sock)
                me = os.pidfd_open(os.getpid())
                req = {"argv": ["-f", cf, "--HistoryManager.hist_file=:memory:"], "cwd": tmp,
                       "env": dict(os.environ)}
                socket.send_fds(conn, [json.dumps(req).encode() + b"\n"], [stderr, me])
                os.close(me)
                pid = json.loads(conn.makefile("rb").readline())["pid"]
                client = BlockingKernelClient(connection_file=cf)
                client.load_connection_file()
                client.start_channels()
                msg_id = client.execute("1")
                while client.get_shell_msg(timeout=60)["parent_header"].get("msg_id") != msg_id:
                    pass
                totals.append(time.perf_counter() - t0)
                report = out / ("child-%d.json" % pid)
                for _ in range(200):
                    if report.exists():
                        break
                    time.sleep(0.01)
                reports.append(json.loads(report.read_text()))
                client.shutdown()
                client.stop_channels()
                conn.close()
                try:
                    os.killpg(pid, 9)  # do not wait out ipykernel's own exit
                except OSError:
                    pass
        finally:
            zyg.kill()
            zyg.wait()

    ms = lambda x: "%7.1f" % (x * 1e3)  # noqa: E731
    print("kernel ready (fork -> execute_reply seen by jupyter_client), n=%d: p50 %s ms"
          % (len(totals), ms(statistics.median(totals)).strip()))
    print("\n%-28s %9s %9s   (ms after fork, median of %d kernels)" % ("child step", "start", "took", len(reports)))
    names = []
    for r in reports:
        for m in r["marks"]:
            if m[0] not in names:
                names.append(m[0])
    for name in names:
        # The first of each per kernel: `sent status` is sent several times (starting,
        # then busy/idle around each request); its first is the kernel going live.
        rows = [next(m for m in r["marks"] if m[0] == name)
                for r in reports if any(m[0] == name for m in r["marks"])]
        start = statistics.median(m[1] for m in rows)
        took = [m[2] for m in rows if m[2] is not None]
        print("%-28s %9s %9s" % (name, ms(start), ms(statistics.median(took)) if took else ""))
    ru = [r["rusage"] for r in reports]
    print("\nchild CPU until its first execute_reply (median): user %s ms, system %s ms, "
          "%d minor page faults (copy-on-write of the zygote's pages among them)"
          % (ms(statistics.median(u for u, _, _ in ru)).strip(),
             ms(statistics.median(s for _, s, _ in ru)).strip(),
             statistics.median(f for _, _, f in ru)))
    modules = sorted({m for r in reports for m in r["modules"]})
    patterns = sorted({p for r in reports for p in r["patterns"]})
    print("\nmodules imported after the fork: %s" % (", ".join(modules) or "none"))
    print("regular expressions compiled after the fork: %s" % ("" if patterns else "none"))
    for p in patterns:
        print("  " + p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
