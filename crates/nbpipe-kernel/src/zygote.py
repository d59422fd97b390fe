"""nbpipe fork server ("zygote") for one Python environment.

Started by nbpipe (crates/nbpipe-kernel/src/fork.rs) as

    PYTHON zygote.py SOCKET OWNER_PID [PRELOAD_MODULE ...]

It imports ipykernel and what a kernel imports while it starts (plus the project's
PRELOAD modules) without creating a thread, ZMQ context or event loop, binds the Unix
socket SOCKET (its directory is private, 0700), prints `ready` on stdout, and then serves
one request per connection:

  request   one line of JSON, sent with two file descriptors (SCM_RIGHTS):
            {"argv": [...], "cwd": "...", "env": {...}}
            fds: [stderr, owner] - the pipe the kernel's stderr goes to, and a pidfd of
            the requesting process (the kernel kills its own process group when it exits)
  reply     {"pid": N}            the kernel's pid (= its process group and session id)
            {"error": "..."}      nothing was started
  later     {"exit": "exit code 1" | "killed by signal 9 (SIGKILL)"} when the kernel
            exits; the zygote reaps it. The connection then closes.

The child runs `python -m ipykernel_launcher ARGV` in-process: same sys.argv, sys.path[0],
cwd, os.environ and __main__ as a cold kernel. Its command line was parsed by the zygote
once per shape (`preparse`), and IPKernelApp gets that result instead of parsing again. The zygote exits when OWNER_PID does
(pidfd) or, failing that, by PR_SET_PDEATHSIG.
"""

import ctypes
import json
import os
import select
import signal
import socket
import sys

PR_SET_PDEATHSIG = 1
IMPORT_ENV = {}
# What a kernel imports while it starts (ipykernel 6/7), all free of threads at import.
KERNEL_MODULES = [
    "ipykernel.kernelapp",
    "ipykernel.ipkernel",
    "ipykernel.zmqshell",
    "ipykernel.debugger",
    "ipykernel.iostream",
    "ipykernel.heartbeat",
    "jupyter_client.session",
    "IPython.core.completerlib",
    "IPython.core.debugger",
    "IPython.core.oinspect",
    "IPython.extensions.storemagic",
    "tornado.platform.asyncio",
    "tornado.queues",
    "tornado.locks",
    "tornado.gen",
    "zmq.eventloop.zmqstream",
    # Imported lazily while a kernel starts or runs its first cell (found by comparing
    # sys.modules before and after): importing them after the fork cost every kernel ~15 ms.
    "IPython.core.logger",
    "faulthandler",
    "psutil",  # jupyter_client.localinterfaces (optional there)
    "pwd",
    "resource",
    "runpy",
    "sqlite3",  # IPython's history
]


def describe(status):
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = "unknown"
        hint = " — possibly the out-of-memory killer" if sig == 9 else ""
        return "killed by signal %d (%s)%s" % (sig, name, hint)
    return "exit code %d" % os.waitstatus_to_exitcode(status)


def die_with_parent():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def preload(names):
    import importlib

    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as e:
            if name in KERNEL_MODULES:
                continue  # an older or newer ipykernel without that module
            print("nbpipe zygote: cannot preload %s: %s" % (name, e), file=sys.stderr)
            sys.exit(2)


def warm_caches():
    """Fill the process-wide caches a kernel fills while it starts and runs its first cell.

    Pure computations whose results Python keeps for the process (the `re` module's pattern
    cache, tokenize's compiled pattern): done once here, every kernel finds them ready
    instead of compiling ~15 patterns (~5 ms). Best effort: a library that changed its
    patterns only makes some of this useless, never wrong.
    """
    import io
    import re
    import tokenize

    try:
        list(tokenize.generate_tokens(io.StringIO("1\n").readline))
        from IPython.core import completer

        patterns = [
            # traitlets' command line, argparse (the kernel's command line)
            (r"^\w(\-?\w)*$", 0),
            (r"^-\d+$|^-\d*\.\d+$", 0),
            (r"\s+", re.ASCII),
            (r"\n\n\n+", 0),
            (r"(A)", 0),
            (r"(-*[A-]*)", 0),
            # IPython's completer, input transformer and startup-file globs
            ("[" + "".join("\\" + c for c in completer.DELIMS) + "]", 0),
            (r"([^\\] )", 0),
            (r"^[\w|\s.]+\(([^)]*)\).*", 0),
            (r"[\s|\[]*(\w+)(?:\s*=\s*.*)", 0),
            (r"(?i)^[rubf]*$", 0),
            # ipykernel's warnings filter (warnings.filterwarnings compiles with re.I)
            (".*Trio's signal handling code might have collided.*", re.I),
        ]
        for pattern, flags in patterns:
            re.compile(pattern, flags)
        import fnmatch
        import pathlib

        fnmatch.fnmatch("a.ipy", "*.ipy")
        pathlib.PurePath("a.py").match("*.py")
    except Exception:
        pass


# The kernel's command line, parsed once per shape. A kernel's argv differs from the
# next one's only in its connection file; traitlets' parse (it builds an argparse parser
# of ~50 options) cost each kernel ~6 ms. The zygote parses each shape once, with a
# placeholder for the connection file, and a kernel whose argv has a known shape gets that
# configuration with its own file put in. Any other argv parses as usual.
CONN_PLACEHOLDER = "/nbpipe-zygote/connection-file-placeholder.json"
PARSED = {}  # template argv (tuple) -> (Config, extra_args), or None: parse in the child


def argv_template(argv):
    """(template, connection file) for an argv `... -f FILE ...`, else (None, None)."""
    if argv.count("-f") != 1 or any(CONN_PLACEHOLDER in a for a in argv):
        return None, None
    i = argv.index("-f")
    if i + 1 >= len(argv) or argv[i + 1].startswith("-"):
        return None, None
    return tuple(argv[:i + 1]) + (CONN_PLACEHOLDER,) + tuple(argv[i + 2:]), argv[i + 1]


def config_values(config):
    """(section, key, value) for every value of a traitlets Config's sections."""
    for values in config.values():
        if hasattr(values, "items"):
            for key, value in values.items():
                yield values, key, value


def preparse(template):
    """Parse a kernel command line as `IPKernelApp.parse_command_line` would, or None.

    Only what traitlets' loader does (it reads no environment and no file); the app's own
    parse_command_line still runs in the child, handing this result to its update_config.
    None (the child parses) unless the parse is silent, leaves no extra arguments, and the
    placeholder landed in exactly one value.
    """
    if template in PARSED:
        return PARSED[template]
    PARSED[template] = None
    try:
        import logging

        import traitlets
        from ipykernel import kernelapp
        from traitlets.config.loader import KVArgParseConfigLoader

        if traitlets.version_info[0] != 5:
            return None
        if any(a in ("-h", "--help", "--help-all", "--version", "-V", "--") for a in template):
            return None
        if template[0] in (kernelapp.IPKernelApp.subcommands or {}):  # `install ...`
            return None
        logged = []

        class Record(logging.Handler):
            def emit(self, record):
                logged.append(record)

        log = logging.Logger("nbpipe-zygote-parse")
        log.addHandler(Record())
        app = kernelapp.IPKernelApp()  # a throwaway instance, not the singleton
        flags, aliases = app.flatten_flags()
        classes = list(app._classes_with_config_traits())
        loader = KVArgParseConfigLoader(
            list(template), aliases, flags, classes=classes, log=log, subcommands=app.subcommands
        )
        import contextlib
        import io
        import warnings

        out, err = io.StringIO(), io.StringIO()
        # Whatever the parse would say (argparse's errors, warnings, log records), the
        # child's own parse says it instead: such a shape is not kept.
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out), \
                warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")  # record, without marking them as shown
            config = loader.load_config()
        hits = [v for _s, _k, v in config_values(config) if v == CONN_PLACEHOLDER]
        said = logged or warned or out.getvalue() or err.getvalue()
        if said or loader.extra_args or len(hits) != 1:
            return None
        PARSED[template] = config
        return config
    except BaseException:  # argparse exits on a bad argv: the child reports it as usual
        return None


def use_preparsed(argv):
    """In a kernel: make IPKernelApp's command-line parse return the zygote's result."""
    template, conn = argv_template(list(argv))
    config = PARSED.get(template) if template is not None else None
    if config is None:
        return
    import copy

    from ipykernel import kernelapp

    config = copy.deepcopy(config)
    for section, key, value in list(config_values(config)):
        if value == CONN_PLACEHOLDER:
            section[key] = type(value)(conn)

    class Parsed:
        extra_args = []

        def __init__(self):
            self.config = config

        def load_config(self):
            return self.config

    app_class = kernelapp.IPKernelApp
    own = app_class.__dict__.get("_create_loader")
    real = app_class._create_loader
    want = list(argv)

    def _create_loader(self, argv, aliases, flags, classes=None):
        # Once: a later parse (another app in this process) is the usual one.
        if own is None:
            del app_class._create_loader
        else:
            app_class._create_loader = own
        if list(argv) != want:
            return real(self, argv, aliases, flags, classes=classes)
        return Parsed()

    app_class._create_loader = _create_loader


def recv_request(conn):
    data = b""
    fds = []
    while not data.endswith(b"\n"):
        chunk, got, _flags, _addr = socket.recv_fds(conn, 1 << 16, 4)
        fds.extend(got)
        if not chunk:
            break
        data += chunk
    return json.loads(data), fds


class Zygote:
    def __init__(self, path, owner_pid):
        self.owner = os.pidfd_open(owner_pid)
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(64)
        self.kernels = {}  # pid -> connection waiting for its exit
        self.signals = {}

    def serve(self):
        for sig in signal.valid_signals():
            if sig not in (signal.SIGKILL, signal.SIGSTOP):
                try:
                    self.signals[sig] = signal.getsignal(sig)
                except (OSError, ValueError):
                    pass
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self.wake_w)
        print("ready", flush=True)
        poll = select.poll()
        poll.register(self.owner, select.POLLIN)
        poll.register(self.wake_r, select.POLLIN)
        poll.register(self.listener, select.POLLIN)
        while True:
            for fd, _ev in poll.poll():
                if fd == self.owner:
                    return
                if fd == self.wake_r:
                    try:
                        os.read(self.wake_r, 512)
                    except BlockingIOError:
                        pass
                    self.reap()
                elif fd == self.listener.fileno():
                    conn, _ = self.listener.accept()
                    self.handle(conn)

    def reap(self):
        while self.kernels:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.kernels.pop(pid, None)
            if conn is not None:
                try:
                    conn.sendall(json.dumps({"exit": describe(status)}).encode() + b"\n")
                except OSError:
                    pass
                conn.close()

    def handle(self, conn):
        fds = []
        try:
            conn.settimeout(5)
            req, fds = recv_request(conn)
            if len(fds) != 2:
                raise ValueError("expected 2 file descriptors, got %d" % len(fds))
            template, _conn = argv_template(list(req["argv"]))
            if template is not None:
                preparse(template)
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
        except Exception as e:  # a bad request must not stop the server
            for fd in fds:
                os.close(fd)
            try:
                conn.sendall(json.dumps({"error": repr(e)}).encode() + b"\n")
            except OSError:
                pass
            conn.close()
            return
        if pid == 0:
            self.become_kernel(req, fds, conn)  # never returns
        for fd in fds:
            os.close(fd)
        self.kernels[pid] = conn
        try:
            conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
        except OSError:
            pass

    def become_kernel(self, req, fds, conn):
        code = 1
        try:
            os.setsid()
            signal.set_wakeup_fd(-1)
            for sig, handler in self.signals.items():
                try:
                    signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
                except (OSError, ValueError, TypeError):
                    pass
            stderr_fd, owner_fd = fds
            conn.close()
            self.listener.close()
            for other in self.kernels.values():
                other.close()
            self.kernels.clear()
            os.close(self.owner)
            os.close(self.wake_r)
            os.close(self.wake_w)
            devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, 0)
            os.dup2(devnull, 1)
            os.dup2(stderr_fd, 2)
            keep = {0, 1, 2, owner_fd}
            for name in os.listdir("/proc/self/fd"):
                fd = int(name)
                if fd not in keep:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            os.chdir(req["cwd"])
            os.environ.clear()
            os.environ.update(req["env"])
            os.environ.update(IMPORT_ENV)
            watch_owner(owner_fd)
            reseed()
            code = run_kernel(req["argv"])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            try:
                import atexit
                import threading

                finish_control_thread()
                # As the interpreter does at exit: wait for non-daemon threads, then run
                # the atexit handlers (ipykernel's close among them).
                shutdown = getattr(threading, "_shutdown", None)
                if shutdown is not None:
                    try:
                        shutdown()
                    except Exception:
                        pass
                atexit._run_exitfuncs()
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)


def watch_owner(owner_fd):
    """Kill this kernel's process group when the process that asked for it exits."""
    import threading

    def wait():
        select.select([owner_fd], [], [])
        os.killpg(0, signal.SIGKILL)

    threading.Thread(target=wait, name="nbpipe-owner-watch", daemon=True).start()


def reseed():
    """Entropy a cold interpreter would draw afresh."""
    import random

    random.seed()
    np = sys.modules.get("numpy.random")
    if np is not None:
        try:
            np.seed()
        except Exception:
            pass


def finish_control_thread():
    """Let ipykernel's control thread finish the message it is handling before exiting.

    After `shutdown_request` the control thread still flushes stdout and publishes its
    `idle` status, through the IOPub thread. The atexit handlers stop the IOPub thread
    first (it registered its `stop` after the app registered `close`), so a control thread
    still flushing then waits for an IOPub thread that is gone and `close` waits for it:
    the kernel hung until nbpipe's SIGTERM, its remaining atexit handlers unrun (py-spy
    stacks; one forked kernel in three in a busy `nbpipe run`). A cold interpreter gets
    there later, its control thread done. Stopping and joining the control thread before
    the atexit handlers gives the forked kernel the same order. Bounded; nothing user code
    sees changes; an ipykernel without these attributes is left as it is.
    """
    try:
        import threading

        from ipykernel.kernelapp import IPKernelApp

        if not IPKernelApp.initialized():
            return
        control = getattr(IPKernelApp.instance(), "control_thread", None)
        if (
            control is not None
            and control is not threading.current_thread()
            and control.is_alive()
            and hasattr(control, "stop")
        ):
            control.stop()
            control.join(timeout=5)
    except Exception:
        pass


def run_kernel(argv):
    """`python -m ipykernel_launcher ARGV`, in this process."""
    import runpy

    # `-m` puts the working directory first on sys.path; the zygote had its own there.
    sys.path[0] = os.getcwd()
    spec = __import__("importlib.util").util.find_spec("ipykernel_launcher")
    sys.argv = [spec.origin] + list(argv)
    try:
        use_preparsed(argv)
    except Exception:
        pass  # the kernel parses its command line itself
    runpy.run_module("ipykernel_launcher", run_name="__main__", alter_sys=True)
    return 0


def main():
    path, owner_pid = sys.argv[1], int(sys.argv[2])
    die_with_parent()
    if os.getppid() != owner_pid:
        sys.exit(3)  # the owner is already gone
    before = dict(os.environ)
    preload(KERNEL_MODULES + sys.argv[3:])
    # Variables the imports set (debugpy sets PYDEVD_USE_FRAME_EVAL): a cold kernel's
    # imports set them too, so each kernel gets them on top of its own environment.
    global IMPORT_ENV
    IMPORT_ENV = {k: v for k, v in os.environ.items() if before.get(k) != v}
    warm_caches()
    # The shape of nbpipe's kernel command lines (client.rs): parsed before the first request.
    preparse((("-f", CONN_PLACEHOLDER, "--HistoryManager.hist_file=:memory:")))
    try:
        # The machine's addresses, which jupyter_client reads once per process while the
        # kernel loads its connection file (~2 ms): read once here.
        from jupyter_client import localinterfaces

        localinterfaces.localhost()
    except Exception:
        pass
    import threading

    if threading.active_count() != 1 or len(os.listdir("/proc/self/task")) != 1:
        print("nbpipe zygote: preloading started threads; cannot fork safely", file=sys.stderr)
        sys.exit(4)
    # Move everything imported so far out of the garbage collector's sight: a kernel's
    # collections then neither scan it (a full collection while the kernel starts cost
    # ~30 ms) nor write to it (which would copy the zygote's pages into every kernel).
    import gc

    gc.collect()
    gc.freeze()
    Zygote(path, owner_pid).serve()


if __name__ == "__main__":
    main()
