#!/usr/bin/env python3
"""Per-row anomaly scores over a sliding frame: what each row costs.

Starts the given `fleetlake` binary on a temporary directory, writes one
series of --rows points (noise on a daily-like wave, whole-number
quantized, with flat stretches), then times, best of --repeat, each of

    SELECT max(s) FROM (SELECT f(v, time) OVER (ORDER BY time
        ROWS BETWEEN <frame - 1> PRECEDING AND CURRENT ROW) AS s FROM w)

for f in zscore, robust_zscore, ewma_deviation(…, 0.05) and DataFusion's
own avg (the reference in the same run). Prints µs per row and the ratio
to avg.

    python3 benches/window_scores.py --bin target/release/fleetlake
"""

import argparse
import math
import random
import time

from fleetlake_server import running, sql, write_lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--frame", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()

    with running(a.bin) as url:
        rng = random.Random(1)
        t0 = 1_700_000_000 * 10**9

        def rows():
            for i in range(a.rows):
                if (i // 5000) % 3 == 2:
                    v = 40  # a flat stretch
                else:
                    v = round(50 + 10 * math.sin(i / 900) + rng.gauss(0, 2))
                yield f"w,host=h v={v} {t0 + i * 10**9}"

        write_lines(url, rows(), chunk=50_000)
        frame = f"ROWS BETWEEN {a.frame - 1} PRECEDING AND CURRENT ROW"
        funcs = {
            "avg (reference)": "avg(v)",
            "zscore": "zscore(v, time)",
            "robust_zscore": "robust_zscore(v, time)",
            "ewma_deviation": "ewma_deviation(v, time, 0.05)",
        }
        best = {}
        for name, f in funcs.items():
            query = f"SELECT max(s) AS m FROM (SELECT {f} OVER (ORDER BY time {frame}) AS s FROM w)"
            times = []
            for _ in range(a.repeat):
                t = time.perf_counter()
                out = sql(url, query)
                times.append(time.perf_counter() - t)
            best[name] = min(times)
            print(f"{name:18} {best[name] * 1e6 / a.rows:8.2f} µs/row  max score {out[0]['m']}")
        ref = best["avg (reference)"]
        print("ratio to avg: " + ", ".join(f"{n} {t / ref:.1f}x" for n, t in best.items() if n != "avg (reference)"))


if __name__ == "__main__":
    main()
