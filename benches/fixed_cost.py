#!/usr/bin/env python3
"""A small query's fixed cost, server-side, with the plan cache on and off
(issue 20, point 1).

Loads `--hosts` hosts x 3 h of TSBS cpu-only data (`fleetlake bench
ingest`), flushes and compacts, then restarts the server on that store
alternately with the plan cache on (`--query-plan-cache 256`) and off (`0`),
`--rounds` times each. Each start sends `--warmup` then `--queries`
single-groupby-1-1-1 queries (one host, one hour, max per minute: TSBS's
text, a random host and start second each time) over one kept-alive
connection, and reports the medians of:

- the `Server-Timing` phases (session, plan, optimize, physical) and
  `first_batch` (from the query's start to its first batch, all phases
  included: the server-side figure of the issue's target);
- the client's time to the last byte (HTTP on loopback included).

`--extra-files N` first adds N one-row flush files to `cpu`, each on a day of
2015 (outside every query's hour): a long-lived store's table has many
files, and the query should not pay for the ones it does not read.
`--other-bin B` alternates with a second binary instead of the cache's
settings (both with the cache on): the same store, before and after a change.
`--store DIR` keeps the loaded store in DIR and reuses it when it is there
(loading takes minutes; a profiler can be pointed at a server on it).
`--other-store DIR2` alternates with a store loaded before (e.g. by another
build, which compacted it otherwise): the same binary, two layouts.
`--shape` sends another TSBS query instead (the other single-groupby
shapes; `high-cpu-1`: one host's rows over a threshold; `high-cpu-all`:
every column of the rows over a threshold, ~400,000 of them;
`groupby-orderby-limit`: the newest five minutes' maxima over every host), `--format csv` asks for
CSV (what `benches/peers.sh` reads) instead of JSON. `--rollups` keeps
per-minute and per-hour rollups of cpu, as `benches/peers.sh --rollups`
does.

    python3 benches/fixed_cost.py --bin target/release/fleetlake
    python3 benches/fixed_cost.py --bin new/fleetlake --other-bin old/fleetlake --extra-files 2000
    python3 benches/fixed_cost.py --bin new/fleetlake --other-bin old/fleetlake --store /var/tmp/fc
    python3 benches/fixed_cost.py --bin new/fleetlake --other-bin old/fleetlake --store /var/tmp/fc \
        --shape high-cpu-all --format csv --queries 20 --warmup 2
    python3 benches/fixed_cost.py --bin new/fleetlake --store /var/tmp/fc-new --other-store /var/tmp/fc \
        --shape groupby-orderby-limit
"""

import argparse
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fleetlake_server as fs  # noqa: E402

START = 1_451_606_400  # 2016-01-01T00:00:00Z, `bench ingest`'s --start below
HOURS = 3


CPU_FIELDS = [
    "usage_user", "usage_system", "usage_idle", "usage_nice", "usage_iowait",
    "usage_irq", "usage_softirq", "usage_steal", "usage_guest", "usage_guest_nice",
]
# TSBS's single-groupby-M-H-T: M metrics, H hosts, T hours (the data's three
# hours when T is longer).
SINGLE_GROUPBY = {
    f"single-groupby-{m}-{h}-{t}": (m, h, t)
    for m, h, t in [(1, 1, 1), (1, 1, 12), (1, 8, 1), (5, 1, 1), (5, 1, 12), (5, 8, 1)]
}


def rfc3339(s):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(s))


def query(rng, hosts, shape):
    """TSBS's text of `shape` with a random host and times."""
    if shape == "high-cpu-all":
        # Twelve hours from a start second up to nine hours before the data.
        t0 = START - rng.randrange(0, 9 * 3600)
        return (
            "SELECT * FROM cpu WHERE usage_user > 90.0 "
            f"AND time >= '{rfc3339(t0)}' AND time < '{rfc3339(t0 + 12 * 3600)}'"
        )
    if shape == "groupby-orderby-limit":
        # The end of a random hour of the data.
        t1 = START + 3600 + rng.randrange(0, (HOURS - 1) * 3600)
        return (
            "SELECT time_bucket(INTERVAL '1 minute', time) AS minute, "
            "max(usage_user) AS max_usage_user FROM cpu "
            f"WHERE time < '{rfc3339(t1)}' "
            "GROUP BY minute ORDER BY minute DESC LIMIT 5"
        )
    if shape == "high-cpu-1":
        # One host, all of the data (TSBS's twelve hours hold all of its default three).
        return (
            "SELECT * FROM cpu WHERE usage_user > 90.0 "
            f"AND time >= '{rfc3339(START)}' AND time < '{rfc3339(START + HOURS * 3600)}' "
            f"AND hostname IN ('host_{rng.randrange(hosts)}')"
        )
    metrics, n_hosts, hours = SINGLE_GROUPBY[shape]
    if hours >= HOURS:
        t0, t1 = START, START + HOURS * 3600
    else:
        t0 = START + rng.randrange(0, (HOURS - hours) * 3600)
        t1 = t0 + hours * 3600
    picked = rng.sample(range(hosts), n_hosts)
    aggs = ", ".join(f"max({m}) AS max_{m}" for m in CPU_FIELDS[:metrics])
    in_list = ", ".join(f"'host_{h}'" for h in picked)
    return (
        f"SELECT time_bucket(INTERVAL '1 minute', time) AS minute, {aggs} FROM cpu "
        f"WHERE hostname IN ({in_list}) "
        f"AND time >= '{rfc3339(t0)}' AND time < '{rfc3339(t1)}' "
        "GROUP BY minute ORDER BY minute"
    )


def rows_of(body, fmt):
    if fmt == "csv":
        return body.count(b"\n") - 1
    return len(json.loads(body))


def canonical(args, body):
    """The answer to compare: the high-cpu queries have no ORDER BY, so their
    rows come in any order (one file's after another's, as the scan reads
    them)."""
    if not args.shape.startswith("high-cpu"):
        return body
    if args.format == "csv":
        return sorted(body.split(b"\n"))
    return sorted(json.dumps(r, sort_keys=True) for r in json.loads(body))


def check_rows(shape, n, body):
    if shape in SINGLE_GROUPBY:
        hours = min(SINGLE_GROUPBY[shape][2], HOURS)
        ok = n in (60 * hours, 60 * hours + 1)  # one more unless the start is aligned
    else:
        ok = {
            "groupby-orderby-limit": n == 5,
            "high-cpu-all": n > 0,
            "high-cpu-1": n >= 0,
        }[shape]
    if not ok:
        raise RuntimeError(f"{shape}: unexpected {n} rows: {body[:200]!r}")


ROLLUPS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tsbs_rollups.toml")


def start(binary, data, port, plan_cache, rollups=False):
    p = subprocess.Popen(
        [
            binary, "serve", "--data-dir", data, "--http-bind", f"127.0.0.1:{port}",
            "--compaction-interval", "0", "--query-plan-cache", str(plan_cache),
            *(["--rollups", ROLLUPS] if rollups else []),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return p
        except OSError:
            if p.poll() is not None:
                raise RuntimeError(f"{binary} exited with {p.returncode}")
            time.sleep(0.1)
    raise RuntimeError("the server did not start")


def timings(header):
    out = {}
    for part in header.split(","):
        fields = part.strip().split(";")
        for f in fields[1:]:
            if f.startswith("dur="):
                out[fields[0]] = float(f[4:])
    return out


def measure(port, args, seed):
    hosts, n, warmup = args.hosts, args.queries, args.warmup
    rng = random.Random(seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    rows = {k: [] for k in ["session", "plan", "optimize", "physical", "first_batch", "client"]}
    answers = []
    for i in range(warmup + n):
        path = "/api/v1/sql?" + urllib.parse.urlencode(
            {"db": "fleet", "q": query(rng, hosts, args.shape), "format": args.format}
        )
        t = time.perf_counter()
        conn.request("GET", path)
        r = conn.getresponse()
        body = r.read()
        client = (time.perf_counter() - t) * 1e3
        if r.status != 200:
            raise RuntimeError(f"HTTP {r.status}: {body[:500]!r}")
        if i < warmup:
            continue
        for k, v in timings(r.getheader("server-timing", "")).items():
            rows[k].append(v)
        rows["client"].append(client)
        check_rows(args.shape, rows_of(body, args.format), body)
        answers.append(canonical(args, body))
    conn.close()
    return {k: statistics.median(v) for k, v in rows.items() if v}, answers


def main():
    global HOURS
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default="target/release/fleetlake")
    ap.add_argument("--hosts", type=int, default=4000)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--extra-files", type=int, default=0)
    ap.add_argument("--other-bin")
    ap.add_argument(
        "--shape",
        default="single-groupby-1-1-1",
        choices=[*SINGLE_GROUPBY, "high-cpu-1", "high-cpu-all", "groupby-orderby-limit"],
        help="the TSBS query sent (single-groupby-1-1-1: the fixed cost)",
    )
    ap.add_argument("--format", default="json", choices=["json", "csv"])
    ap.add_argument(
        "--rollups",
        action="store_true",
        help="keep benches/tsbs_rollups.toml's rollups of cpu (materialized after the "
        "compaction), as benches/peers.sh --rollups does; a --store must be loaded with it",
    )
    ap.add_argument(
        "--store",
        help="keep the loaded store in this directory and reuse it when it exists "
        "(same --hosts and --extra-files), e.g. to profile a server on it",
    )
    ap.add_argument(
        "--other-store",
        help="a store loaded before (a --store of an earlier run, e.g. by another build, so "
        "compacted otherwise): alternate it with --store, both served by --bin (or by "
        "--other-bin for this one)",
    )
    ap.add_argument(
        "--hours",
        type=int,
        default=HOURS,
        help="hours of data loaded (TSBS's default run: 3); queries of more hours than "
        "there are (high-cpu-1, the 12-hour shapes) take all of it",
    )
    args = ap.parse_args()
    HOURS = args.hours
    if args.other_store and not os.path.exists(os.path.join(args.other_store, "loaded")):
        ap.error(f"--other-store {args.other_store} is not a loaded store")
    with tempfile.TemporaryDirectory() as scratch:
        data = args.store or scratch
        port = fs.free_port()
        if args.store and os.path.exists(os.path.join(data, "loaded")):
            run(args, data, port)
            return
        base = f"http://127.0.0.1:{port}"
        server = start(args.bin, data, port, 256, args.rollups)
        try:
            subprocess.run(
                [
                    args.bin, "bench", "ingest", "--url", f"{base}/api/v3/write_lp?db=fleet",
                    "--gen", "cpu-only", "--hosts", str(args.hosts), "--hours", str(HOURS),
                    "--start", rfc3339(START), "--concurrency", "4", "--batch", "5000",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            fs.post(f"{base}/api/v1/admin/flush", b"", "application/json")
            # Builds before 2026-12-08 ran one pass per request, merging the
            # oldest inputs that fit one merge's memory limit: a day of 4,000
            # hosts took 3 to 5 requests to become one run.
            for _ in range(100):
                report = json.loads(fs.post(f"{base}/api/v1/admin/compact", b"", "application/json"))
                if not report.get("compactions"):
                    break
            if args.rollups:
                fs.post(f"{base}/api/v1/admin/rollup", b"", "application/json")
            day0 = START - 400 * 86400
            for i in range(args.extra_files):
                t = (day0 + (i % 365) * 86400 + i // 365) * 10**9
                line = f"cpu,hostname=host_0 usage_user={i}i {t}"
                try:
                    fs.post(f"{base}/api/v3/write_lp?db=fleet", line.encode(), "text/plain")
                    fs.post(f"{base}/api/v1/admin/flush", b"", "application/json")
                except urllib.error.HTTPError as e:
                    raise RuntimeError(f"{e.url}: HTTP {e.code}: {e.read()[:500]!r}") from e
        finally:
            server.terminate()
            server.wait(timeout=60)
        if args.store:
            open(os.path.join(data, "loaded"), "w").close()
        run(args, data, port)


def run(args, data, port):
    # (label, binary, plan cache entries, store)
    setups = [("on", args.bin, 256, data), ("off", args.bin, 0, data)]
    if args.other_store:
        setups = [
            ("store", args.bin, 256, data),
            ("other", args.other_bin or args.bin, 256, args.other_store),
        ]
    elif args.other_bin:
        setups = [("bin", args.bin, 256, data), ("other-bin", args.other_bin, 256, data)]
    results = []
    if args.rounds == 0:
        return  # only load the store
    for r in range(args.rounds):
        for label, binary, cache, store in setups:
            server = start(binary, store, port, cache, args.rollups)
            try:
                m, answers = measure(port, args, seed=r)
            finally:
                server.terminate()
                server.wait(timeout=60)
            # Both setups get the same queries in a round: their answers must agree.
            if label == setups[0][0]:
                first = answers
            elif answers != first:
                raise RuntimeError(f"round {r}: {label} answered otherwise than {setups[0][0]}")
            results.append((r, label, m))
            print(
                f"round {r} {label}: " + ", ".join(f"{k} {v:.3f}" for k, v in m.items()),
                flush=True,
            )
    print("\nmedians of the rounds' medians (ms):")
    print(f"{'':<10}" + "".join(f"{k:>12}" for k in results[0][2]))
    for label, *_ in setups:
        ms = [m for _, l, m in results if l == label]
        line = "".join(f"{statistics.median(m[k] for m in ms):>12.3f}" for k in ms[0])
        print(f"{label:<10}" + line)


if __name__ == "__main__":
    main()
