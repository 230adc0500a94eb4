#!/usr/bin/env python3
"""Anomaly detectors against a labeled corpus, scored as the Numenta
Anomaly Benchmark (NAB) scores them.

The corpus is generated here (seeded, so it can be shipped and re-made):
streams of the kinds fleet telemetry has — machine temperature (slow
drift, daily cycle, sensor noise), cloud CPU (bursty, whole percent),
request traffic (daily and weekly seasonality, counts), ad clicks (small
Poisson counts), quantized utilisation (steps of 5 with flat stretches),
flat counters (rare increments) — with gaps (missing points), and labeled
anomalies of the kinds operators chase: spikes and dips, level shifts,
drifts before a failure, a change in variance, a lost seasonal cycle, a
flatline. Each stream is written to a real `fleetlake` server (the binary
given) and every detector is run there as SQL, per row:

    SELECT stream, time, <f>(v, time) OVER (PARTITION BY stream ORDER BY time
        ROWS BETWEEN <w> PRECEDING AND CURRENT ROW) FROM nab

Scoring follows NAB (github.com/numenta/NAB, `nab/scorer.py`, standard
profile): each labeled anomaly gets a window of 10% of the stream's length
÷ its number of anomalies, centred on it; the first 15% of a stream (at
most 750 points, as NAB's getProbationPeriod) is probationary (not scored); inside a window the first detection scores
A_TP × σ(position) (earlier is better), later ones nothing; a window
without detection scores −A_FN; a detection outside windows scores
A_FP × σ(distance past the last window) (≈ −A_FP far from it). Weights
A_TP = 1, A_FP = 0.11, A_FN = 1. The total over the corpus is normalized
to 100 × (raw − null) / (perfect − null), "null" being a detector that
never fires. One threshold per detector for the whole corpus: the one
that scores best (as NAB's optimizer picks it).

    python3 benches/anomaly_nab.py --bin target/release/fleetlake [--write-corpus DIR]

`--nab DIR` scores a corpus in NAB's own layout instead (`DIR/data/<category>/<name>.csv`
with `timestamp,value` rows, `DIR/labels/combined_windows.json`): NAB's
real-world streams, if you have a copy, with their labeled windows as given.
Streams listed in the labels but missing under `data/` are skipped.
"""

import argparse
import bisect
import csv
import datetime
import json
import math
import os
import random
import time

from fleetlake_server import running, sql, write_lines

STEP_S = 300  # one point every 5 minutes
T0 = 1_700_000_000
DAY = 86_400 // STEP_S
A_TP, A_FP, A_FN = 1.0, 0.11, 1.0


def scaled_sigmoid(pos):
    if pos > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * pos)) - 1.0


# ---------------------------------------------------------------- corpus


def base_stream(kind, n, rng):
    """Normal behaviour of one stream kind: a list of floats."""
    out = []
    level = rng.uniform(40, 60)
    ar = 0.0
    for i in range(n):
        day = math.sin(2 * math.pi * i / DAY)
        week = math.sin(2 * math.pi * i / (7 * DAY))
        if kind == "machine_temp":
            ar = 0.97 * ar + rng.gauss(0, 0.4)
            out.append(round(level + 3 * day + ar, 2))
        elif kind == "cloud_cpu":
            burst = rng.expovariate(1 / 4) if rng.random() < 0.05 else 0
            out.append(float(min(100, max(0, round(25 + 5 * day + rng.gauss(0, 2) + burst)))))
        elif kind == "traffic":
            rate = 800 * (1.2 + day + 0.3 * week)
            out.append(float(max(0, round(rng.gauss(rate, math.sqrt(max(rate, 1)))))))
        elif kind == "ad_clicks":
            lam = 3 + 2 * max(day, -0.9)
            # Poisson by inversion (small means).
            k, p, u = 0, math.exp(-lam), rng.random()
            s = p
            while u > s:
                k += 1
                p *= lam / k
                s += p
            out.append(float(k))
        elif kind == "quantized_util":
            v = 60 + 15 * day + rng.gauss(0, 3)
            if (i // 500) % 4 == 3:
                v = 60  # a flat stretch: the collector reports its last value
            out.append(float(5 * round(v / 5)))
        elif kind == "flat_counter":
            out.append(float(int(i / 700)))  # a counter that rarely moves
        else:
            raise ValueError(kind)
    return out


ANOMALIES = ["spike", "dip", "level_shift", "drift", "variance", "flatline", "season_loss"]


def inject(kind, values, at, rng):
    """Puts one anomaly of `kind` at index `at`; returns the labeled index."""
    n = len(values)
    spread = (max(values) - min(values)) or 1.0
    if kind == "spike":
        values[at] += spread * rng.uniform(0.6, 1.2)
    elif kind == "dip":
        values[at] -= spread * rng.uniform(0.6, 1.2)
    elif kind == "level_shift":
        shift = spread * rng.uniform(0.3, 0.6) * rng.choice([-1, 1])
        for j in range(at, min(n, at + 300)):
            values[j] += shift
    elif kind == "drift":
        # A failure announced by a slow climb; labeled where it becomes clear.
        start = max(0, at - 150)
        for j in range(start, min(n, at + 20)):
            values[j] += spread * 0.8 * (j - start) / 170
    elif kind == "variance":
        mean = sum(values[max(0, at - 50):at]) / max(1, len(values[max(0, at - 50):at]))
        for j in range(at, min(n, at + 200)):
            values[j] = mean + (values[j] - mean) * 4 + rng.gauss(0, spread * 0.15)
    elif kind == "flatline":
        for j in range(at, min(n, at + 250)):
            values[j] = values[at - 1]
    elif kind == "season_loss":
        mean = sum(values[max(0, at - DAY):at]) / max(1, len(values[max(0, at - DAY):at]))
        for j in range(at, min(n, at + DAY)):
            values[j] = mean + (values[j] - mean) * 0.1
    return at


def corpus(seed, streams_per_kind=4, n=4000):
    rng = random.Random(seed)
    kinds = ["machine_temp", "cloud_cpu", "traffic", "ad_clicks", "quantized_util", "flat_counter"]
    out = []
    for kind in kinds:
        for k in range(streams_per_kind):
            values = base_stream(kind, n, rng)
            labels = []
            count = rng.choice([1, 2, 3])
            # Anomalies after the probationary 15%, apart from each other.
            slots = sorted(rng.sample(range(int(n * 0.2) // 400, n // 400 - 1), count))
            for s in slots:
                a = rng.choice(ANOMALIES)
                if kind == "flat_counter" and a in ("variance", "season_loss", "flatline"):
                    a = "spike"
                at = s * 400 + rng.randrange(50, 350)
                labels.append(inject(a, values, at, rng))
            # Gaps: the collector was down; no rows.
            present = [True] * n
            for _ in range(rng.choice([0, 1, 2])):
                g = rng.randrange(int(n * 0.2), n - 40)
                for j in range(g, g + rng.randrange(5, 30)):
                    if j not in labels:
                        present[j] = False
            out.append({"name": f"{kind}_{k}", "values": values, "present": present, "labels": labels})
    return out


# ---------------------------------------------------------------- scoring


def nab_corpus(root, categories=None):
    """NAB's layout: the streams of `root/labels/combined_windows.json`
    found under `root/data/` (optionally only those whose category is in
    `categories`), with their windows as row index ranges."""
    def seconds(text):
        return int(datetime.datetime.fromisoformat(text).replace(
            tzinfo=datetime.timezone.utc).timestamp())
    with open(os.path.join(root, "labels", "combined_windows.json")) as f:
        labels = json.load(f)
    out = []
    for rel, wins in sorted(labels.items()):
        path = os.path.join(root, "data", rel)
        if not os.path.exists(path) or (categories and rel.split("/")[0] not in categories):
            continue
        # By time, one row per timestamp (the last, as the server keeps
        # it): a few NAB files repeat an hour (daylight saving) or a row.
        by_time = {}
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                by_time[seconds(row["timestamp"])] = float(row["value"])
        times = sorted(by_time)
        values = [by_time[t] for t in times]
        windows = [(bisect.bisect_left(times, seconds(lo)), bisect.bisect_right(times, seconds(hi)) - 1)
                   for lo, hi in wins]
        out.append({"name": rel.removesuffix(".csv").replace("/", "."), "values": values,
                    "present": [True] * len(values), "labels": windows, "windows": windows,
                    "times": times})
    return out


def windows_of(stream):
    if "windows" in stream:
        return stream["windows"]
    n = len(stream["values"])
    labels = stream["labels"]
    width = int(0.1 * n / max(1, len(labels)))
    return [(max(0, a - width // 2), min(n - 1, a + width // 2)) for a in labels]


def nab_score(stream, fired):
    """Raw NAB score of one stream given the indices where the detector fired."""
    n = len(stream["values"])
    # NAB's getProbationPeriod: 15 % of the stream, at most 750 points.
    probation = min(int(0.15 * n), 750)
    wins = windows_of(stream)
    hit = [False] * len(wins)
    score = 0.0
    for i in sorted(fired):
        if i < probation:
            continue
        inside = None
        for w, (lo, hi) in enumerate(wins):
            if lo <= i <= hi:
                inside = w
        if inside is not None:
            if not hit[inside]:
                lo, hi = wins[inside]
                pos = -(hi - i) / (hi - lo) if hi > lo else -2.0
                score += A_TP * scaled_sigmoid(pos)
                hit[inside] = True
            continue
        before = [w for w in wins if w[1] < i]
        if before:
            lo, hi = before[-1]
            score += A_FP * scaled_sigmoid((i - hi) / (hi - lo) if hi > lo else 2.0)
        else:
            score -= A_FP
    score -= A_FN * hit.count(False)
    return score


def normalized(streams, fired_by_stream):
    raw = sum(nab_score(s, fired_by_stream.get(s["name"], [])) for s in streams)
    null = -A_FN * sum(len(s["labels"]) for s in streams)
    perfect = sum(A_TP * scaled_sigmoid(-1.0) * len(s["labels"]) for s in streams)
    return 100 * (raw - null) / (perfect - null)


def at_threshold(streams, scores, t):
    """The normalized score when firing at `t` and above."""
    fired = {k: [i for i, v in rows if v is not None and v >= t] for k, rows in scores.items()}
    return normalized(streams, fired)


def best_threshold(streams, scores):
    """scores: stream -> list of (index, score). The single threshold (on
    |score|) that scores best, from the quantiles of all scores."""
    every = sorted(abs(v) for rows in scores.values() for _, v in rows if v is not None)
    if not every:
        return None, 0.0
    candidates = sorted({every[int(q * (len(every) - 1))] for q in
                         [1 - 10 ** (-k / 4) for k in range(4, 25)]})
    best = (None, -1e9)
    for t in candidates:
        fired = {name: [i for i, v in rows if v is not None and abs(v) >= t and abs(v) > 0]
                 for name, rows in scores.items()}
        s = normalized(streams, fired)
        if s > best[1]:
            best = (t, s)
    return best


# ---------------------------------------------------------------- server


DETECTORS = {
    "zscore, 288 rows (a day)": "zscore(v, time) OVER (PARTITION BY stream ORDER BY time ROWS BETWEEN 288 PRECEDING AND CURRENT ROW)",
    "zscore, 2000 rows": "zscore(v, time) OVER (PARTITION BY stream ORDER BY time ROWS BETWEEN 2000 PRECEDING AND CURRENT ROW)",
    "robust_zscore, 288 rows": "robust_zscore(v, time) OVER (PARTITION BY stream ORDER BY time ROWS BETWEEN 288 PRECEDING AND CURRENT ROW)",
    "robust_zscore, 2000 rows": "robust_zscore(v, time) OVER (PARTITION BY stream ORDER BY time ROWS BETWEEN 2000 PRECEDING AND CURRENT ROW)",
    "ewma_deviation 0.05, 2000 rows": "ewma_deviation(v, time, 0.05) OVER (PARTITION BY stream ORDER BY time ROWS BETWEEN 2000 PRECEDING AND CURRENT ROW)",
    "ewma_deviation 0.005, 2000 rows": "ewma_deviation(v, time, 0.005) OVER (PARTITION BY stream ORDER BY time ROWS BETWEEN 2000 PRECEDING AND CURRENT ROW)",
    "seasonal_delta 1 day": "seasonal_delta(v, time, INTERVAL '1 day') OVER (PARTITION BY stream ORDER BY time ROWS BETWEEN 400 PRECEDING AND CURRENT ROW)",
    # The learning detector over everything before each row (a growing frame).
    "anomaly_score": "anomaly_score(v, time) OVER (PARTITION BY stream ORDER BY time)",
}

# Detectors with a threshold of their own: also scored at it.
DEFAULT_THRESHOLD = {"anomaly_score": 0.5}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--length", type=int, default=4000, help="points per stream")
    ap.add_argument("--write-corpus", help="also write the corpus (CSV + labels JSON) here")
    ap.add_argument("--nab", help="score NAB's layout under this directory instead of the generated corpus")
    ap.add_argument("--categories", help="with --nab: only these categories (comma-separated, e.g. realKnownCause)")
    a = ap.parse_args()
    if a.nab:
        streams = nab_corpus(a.nab, a.categories and a.categories.split(","))
        if not streams:
            raise SystemExit(f"no NAB streams under {a.nab}")
    else:
        streams = corpus(a.seed, n=a.length)
    for s in streams:
        s.setdefault("times", [T0 + i * STEP_S for i in range(len(s["values"]))])
        s["index"] = {t: i for i, t in enumerate(s["times"])}
    if a.write_corpus:
        os.makedirs(a.write_corpus, exist_ok=True)
        for s in streams:
            with open(os.path.join(a.write_corpus, s["name"] + ".csv"), "w") as f:
                f.write("timestamp,value\n")
                for i, (v, p) in enumerate(zip(s["values"], s["present"])):
                    if p:
                        f.write(f"{T0 + i * STEP_S},{v}\n")
        with open(os.path.join(a.write_corpus, "labels.json"), "w") as f:
            json.dump({s["name"]: [T0 + i * STEP_S for i in s["labels"]] for s in streams}, f, indent=1)

    with running(a.bin) as url:
        write_lines(url, (f"nab,stream={s['name']} v={v} {t * 10**9}"
                          for s in streams
                          for t, v, p in zip(s["times"], s["values"], s["present"]) if p))
        print(f"{len(streams)} streams, {sum(len(s['labels']) for s in streams)} labeled anomalies, "
              f"{sum(sum(s['present']) for s in streams)} points")
        index = {s["name"]: s["index"] for s in streams}
        for name, expr in DETECTORS.items():
            t = time.perf_counter()
            rows = sql(url, f"SELECT stream, CAST(time AS BIGINT) AS t, {expr} AS s FROM nab "
                            "ORDER BY stream, time")
            took = time.perf_counter() - t
            scores = {}
            for r in rows:
                i = index[r["stream"]][r["t"] // 10**9]
                v = r["s"]
                if isinstance(v, str):  # Infinity, -Infinity, NaN
                    v = {"Infinity": math.inf, "-Infinity": math.inf}.get(v)
                scores.setdefault(r["stream"], []).append((i, v))
            threshold, score = best_threshold(streams, scores)
            line = f"{name:34} NAB standard {score:6.1f}  threshold {threshold}"
            if name in DEFAULT_THRESHOLD:
                t = DEFAULT_THRESHOLD[name]
                line += f"; at its default {t}: {at_threshold(streams, scores, t):.1f}"
            print(f"{line}  ({took:.1f} s)")
            if name in DEFAULT_THRESHOLD:
                # How flat the score is around the default, and (NAB's
                # layout) per category at the default.
                curve = [round(DEFAULT_THRESHOLD[name] + d / 100, 2) for d in range(-10, 11, 2)]
                print("    by threshold: " + "  ".join(
                    f"{t}: {at_threshold(streams, scores, t):.1f}" for t in curve))
                categories = sorted({s["name"].split(".")[0] for s in streams if "." in s["name"]})
                if len(categories) > 1:
                    print("    by category:  " + "  ".join(
                        f"{c} ({len(g)}): {at_threshold(g, scores, DEFAULT_THRESHOLD[name]):.1f}"
                        for c in categories
                        for g in [[s for s in streams if s["name"].startswith(c + ".")]]))


if __name__ == "__main__":
    main()
