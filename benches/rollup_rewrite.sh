#!/usr/bin/env bash
# Aggregations answered from rollups (issue 20, point 2): the fifteen TSBS
# queries over one store, with the server told of its rollups (`--rollups`,
# so queries that a rollup answers exactly read it) and without (the same
# files, the rollup tables unused), alternately, `--rounds` times each.
# Every answer of the first two runs of each query type is checked against
# the generator (`fleetlake bench query --check 2`).
#
#   benches/rollup_rewrite.sh [--hosts 4000] [--hours 3] [--runs 10] [--rounds 2]
#
# Needs a release build ($CARGO_TARGET_DIR or target/release) and python3.
set -euo pipefail

hosts=4000
hours=3
runs=10
rounds=2
while [ $# -gt 0 ]; do
    case "$1" in
        --hosts) hosts=$2; shift 2 ;;
        --hours) hours=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done

bin=${BIN:-${CARGO_TARGET_DIR:-target}/release/fleetlake}
rollups="$(cd "$(dirname "$0")" && pwd)/tsbs_rollups.toml"
work=$(mktemp -d /var/tmp/rollup-rewrite.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
start_at=2016-01-01T00:00:00Z
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

start() {
    "$bin" serve --data-dir "$work/data" --http-bind "127.0.0.1:$port" \
        --compaction-interval 0 "$@" >"$work/server.log" 2>&1 &
    pid=$!
    until curl -sf -o /dev/null "$url/health"; do
        kill -0 "$pid" || { cat "$work/server.log"; exit 1; }
        sleep 0.1
    done
}
stop() {
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=
}
admin() { curl -sf -X POST "$url/api/v1/admin/$1" >/dev/null; }

start --rollups "$rollups"
"$bin" bench ingest --url "$url/api/v3/write_lp?db=fleet" --gen cpu-only \
    --hosts "$hosts" --hours "$hours" --start "$start_at" --concurrency 4 --batch 5000 >/dev/null
admin flush
admin compact
admin rollup
admin compact
stop

for round in $(seq 1 "$rounds"); do
    for mode in rollups source; do
        if [ "$mode" = rollups ]; then
            start --rollups "$rollups"
            # A pass with nothing to do publishes the rollups' progress.
            admin rollup
        else
            start
        fi
        "$bin" bench query --url "$url" --hosts "$hosts" --hours "$hours" --start "$start_at" \
            --runs "$runs" --check 2 --report-json "$work/$mode-$round.json" >/dev/null
        stop
    done
done

python3 - "$work" "$rounds" <<'EOF'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
res = {}
for mode in ("rollups", "source"):
    for r in range(1, rounds + 1):
        for q in json.load(open(f"{work}/{mode}-{r}.json")):
            e = res.setdefault(q["name"], {}).setdefault(mode, {"med": [], "ok": 0, "checked": 0})
            e["med"].append(q["median_ms"])
            e["ok"] += q["correct"]
            e["checked"] += q["checked"]
print(f"| query | from the source (ms) | with rollups (ms) | source / rollups | answers checked |")
print("|---|---:|---:|---:|---|")
for name, m in res.items():
    s = statistics.median(m["source"]["med"])
    w = statistics.median(m["rollups"]["med"])
    ok = f'{m["rollups"]["ok"]}/{m["rollups"]["checked"]}, {m["source"]["ok"]}/{m["source"]["checked"]}'
    print(f"| {name} | {s:.2f} | {w:.2f} | {s / w:.2f}x | {ok} |")
EOF
