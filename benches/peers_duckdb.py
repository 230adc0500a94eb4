#!/usr/bin/env python3
"""DuckDB as a peer of fleetlake: SQL over the same Parquet files.

Usage: peers_duckdb.py GLOB   (e.g. DATA/store/fleet/cpu/**/*.parquet)

Reads one JSON request per line on stdin, {"sql": "...", "rows": true|false},
and answers one JSON line each: {"ms": <execute + fetch, ms>, "columns": [...],
"rows": [[...], ...]} (rows only when asked), or {"error": "..."}. The view
`cpu` holds the files' columns (the hive partition column `day` is left out),
so the fleetlake SQL of the TSBS queries runs unchanged. Times are in-process
(no HTTP), measured around execute + fetchall.
"""
import datetime
import json
import sys
import time

import duckdb


def cell(v):
    if isinstance(v, datetime.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=datetime.timezone.utc)
        return v.isoformat()
    return v


def main():
    glob = sys.argv[1]
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    quoted = glob.replace("'", "''")
    con.execute(
        f"CREATE VIEW cpu AS SELECT * EXCLUDE (day) FROM read_parquet('{quoted}', hive_partitioning = true)"
    )
    for line in sys.stdin:
        req = json.loads(line)
        try:
            t = time.perf_counter()
            cur = con.execute(req["sql"])
            rows = cur.fetchall()
            ms = (time.perf_counter() - t) * 1e3
            out = {"ms": ms, "columns": [d[0] for d in cur.description], "n": len(rows)}
            if req.get("rows"):
                out["rows"] = [[cell(v) for v in r] for r in rows]
        except Exception as e:  # the caller reports it with the query
            out = {"error": str(e)}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
