#!/usr/bin/env python3
"""One large aggregation on a Ballista cluster of one executor, then two,
beside the single server, over the same compacted data (issue 21).

Starts a `fleetlake` writer on a temporary directory, writes `--hosts`
hosts x `--hours` hours of 10-second cpu rows, flushes and compacts (so
the data is as a long-running server has it: compacted days), then
times (best of `--runs`) the query on the server and through
`fleetlake ballista sql` with 1 executor x 2 tasks, 1 executor x 1 task and
2 executors x 1 task. A `count(*)` through the cluster is timed too: the
client's fixed cost (process start, catalog load, job submission).

    python3 benches/ballista_scale.py --bin target/release/fleetlake
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fleetlake_server as fs  # noqa: E402

QUERY = (
    "SELECT hostname, date_bin(INTERVAL '1 hour', time) AS h, max(usage_user) AS mx, "
    "avg(usage_system) AS av, count(*) AS n FROM cpu GROUP BY hostname, h ORDER BY hostname, h"
)
COUNT = "SELECT count(*) AS n FROM cpu"


def lines(hosts, hours):
    start = 1_451_606_400_000_000_000
    for e in range(hours * 360):
        t = start + e * 10_000_000_000
        for h in range(hosts):
            x = (h * 2654435761 + e * 40503) & 0xFFFF
            yield (
                f"cpu,hostname=host_{h},region=r{h % 4} usage_user={x % 100}i,"
                f"usage_system={(x >> 3) % 100}i,usage_idle={(x >> 5) % 100}i {t}"
            )


def wait_port(port):
    for _ in range(300):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def start(binary, *args):
    return subprocess.Popen(
        [binary, "ballista", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "RUST_LOG": "warn"},
    )


def best(runs, f):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t0)
    return min(times), out


def cluster(binary, executors, tasks, store, runs):
    """Best time of COUNT and QUERY on a fresh cluster; the answer."""
    port = fs.free_port()
    procs = [start(binary, "scheduler", "--bind", f"127.0.0.1:{port}", "--store", store)]
    try:
        wait_port(port)
        with tempfile.TemporaryDirectory() as work:
            for i in range(executors):
                p, g = fs.free_port(), fs.free_port()
                own = os.path.join(work, f"executor-{i}")
                os.makedirs(own)
                procs.append(
                    start(
                        binary, "executor", "--scheduler", f"127.0.0.1:{port}",
                        "--port", str(p), "--grpc-port", str(g),
                        "--concurrent-tasks", str(tasks), "--work-dir", own,
                        "--store", store,
                    )
                )
                wait_port(p)

            def run(q):
                out = subprocess.run(
                    [binary, "ballista", "sql", "--scheduler", f"df://127.0.0.1:{port}",
                     "--store", store, q],
                    check=True, capture_output=True, env={**os.environ, "RUST_LOG": "warn"},
                )
                return json.loads(out.stdout)

            count, _ = best(runs, lambda: run(COUNT))
            query, answer = best(runs, lambda: run(QUERY))
            return count, query, answer
    finally:
        for p in procs:
            p.kill()
            p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--hosts", type=int, default=200)
    ap.add_argument("--hours", type=int, default=24)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    with fs.running(a.bin) as url:
        t0 = time.perf_counter()
        fs.write_lines(url, lines(a.hosts, a.hours))
        fs.post(f"{url}/api/v1/admin/flush", b"", "text/plain")
        fs.post(f"{url}/api/v1/admin/compact", b"", "text/plain")
        rows = fs.sql(url, COUNT)[0]["n"]
        print(f"{rows} rows written, flushed and compacted in {time.perf_counter() - t0:.1f} s")
        store = os.path.join(fs.data_dir(url), "store")
        server_t, want = best(a.runs, lambda: fs.sql(url, QUERY))
        print(f"| setup | count(*) | aggregation ({len(want)} groups) |")
        print("|---|---:|---:|")
        print(f"| the server (HTTP) | - | {server_t:.3f} s |")
        for executors, tasks in [(1, 1), (1, 2), (2, 1)]:
            count, query, answer = cluster(a.bin, executors, tasks, store, a.runs)
            assert len(answer) == len(want), (len(answer), len(want))
            print(f"| Ballista, {executors} executor(s) x {tasks} task(s) | {count:.3f} s | {query:.3f} s |")


if __name__ == "__main__":
    main()
