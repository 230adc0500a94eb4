#!/usr/bin/env python3
"""`anomaly_score` per series (GROUP BY): points scored per CPU second.

Starts the given `fleetlake` binary on a temporary directory, writes
--series series of --points points each (a daily wave, noise, whole-number
quantization on every other series, a spike every 5,000 points), flushes
them to Parquet, then runs, best of --repeat,

    SELECT s, f(v, time) AS x FROM t GROUP BY s

for f in avg (the reference: the scan and grouping alone), zscore and
anomaly_score, and reports for each the wall time and the server's CPU
seconds (from /proc), as points per CPU second: the whole query, scan
included, so the detector's own rate is higher.

    python3 benches/anomaly_throughput.py --bin target/release/fleetlake
"""

import argparse
import math
import random
import time

from fleetlake_server import cpu_seconds, post, running, sql, write_lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--points", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    total = a.series * a.points

    with running(a.bin) as url:
        rng = random.Random(1)
        t0 = 1_700_000_000 * 10**9

        def rows():
            for s in range(a.series):
                level = rng.uniform(20, 80)
                for i in range(a.points):
                    v = level + 10 * math.sin(i * 2 * math.pi / 288) + rng.gauss(0, 2)
                    if i % 5000 == 4999:
                        v += 40
                    if s % 2:
                        v = round(v)
                    yield f"t,s=s{s} v={v} {t0 + i * 300 * 10**9}"

        write_lines(url, rows())
        post(f"{url}/api/v1/admin/flush", b"", "application/json")
        print(f"{a.series} series x {a.points} points = {total:,} points")
        funcs = {
            "avg (reference)": "avg(v)",
            "zscore": "zscore(v, time)",
            "anomaly_score": "anomaly_score(v, time)",
        }
        for name, f in funcs.items():
            query = f"SELECT s, {f} AS x FROM t GROUP BY s"
            best = None
            for _ in range(a.repeat):
                c = cpu_seconds(url)
                t = time.perf_counter()
                out = sql(url, query)
                wall = time.perf_counter() - t
                cpu = cpu_seconds(url) - c
                assert len(out) == a.series, out[:3]
                if best is None or cpu < best[1]:
                    best = (wall, cpu)
            wall, cpu = best
            print(f"{name:16} wall {wall:6.2f} s  CPU {cpu:6.2f} s  {total / cpu / 1e6:6.2f} M points per CPU second")


if __name__ == "__main__":
    main()
