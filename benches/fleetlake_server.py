"""Starting a `fleetlake` binary on a temporary directory for the Python
benches, and talking to it over HTTP."""

import contextlib
import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The process id and data directory of each running server, by base URL.
_PIDS = {}
_DIRS = {}


def data_dir(url):
    """The data directory of the server at `url` (its store is `store/`)."""
    return _DIRS[url]


def cpu_seconds(url):
    """CPU seconds (user + system) the server at `url` has used so far."""
    with open(f"/proc/{_PIDS[url]}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def post(url, body, ctype):
    req = urllib.request.Request(url, data=body, headers={"Content-Type": ctype})
    with urllib.request.urlopen(req, timeout=600) as r:
        return r.read()


def sql(url, query, db="fleet"):
    """The rows of `query` on `db`, as JSON objects."""
    body = json.dumps({"sql": query, "db": db}).encode()
    return json.loads(post(f"{url}/api/v1/sql", body, "application/json"))


def write_lines(url, lines, db="fleet", chunk=100_000):
    """Writes line-protocol `lines` (any iterable of str) to `db`, `chunk`
    lines per request."""
    batch = []
    for line in lines:
        batch.append(line)
        if len(batch) == chunk:
            _write(url, batch, db)
            batch = []
    if batch:
        _write(url, batch, db)


def _write(url, lines, db):
    post(f"{url}/api/v3/write_lp?db={db}", "\n".join(lines).encode(), "text/plain")


@contextlib.contextmanager
def running(binary):
    """Yields the base URL of `binary serve` on a free loopback port and a
    temporary data directory, once it answers /health; stops it after."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as d:
        server = subprocess.Popen(
            [binary, "serve", "--data-dir", d, "--http-bind", f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(300):
                try:
                    urllib.request.urlopen(f"{url}/health", timeout=1)
                    break
                except OSError:
                    if server.poll() is not None:
                        raise RuntimeError(f"{binary} exited with {server.returncode}")
                    time.sleep(0.1)
            _PIDS[url] = server.pid
            _DIRS[url] = d
            yield url
        finally:
            _PIDS.pop(url, None)
            _DIRS.pop(url, None)
            server.terminate()
            server.wait(timeout=30)
