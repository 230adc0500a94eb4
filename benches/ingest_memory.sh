#!/bin/sh
# Peak RSS of the fleetlake server while it ingests generated TSBS data
# (issue 20, point 3), or the cost of one flush measured alone.
#
#   benches/ingest_memory.sh [--gen cpu-only|devops] [--hosts N] [--hours H]
#                            [--rate SAMPLES_PER_S] [--prepare-bytes B]
#                            [--flush-alone] [--queries N [--sql SQL]]
#                            [-- serve flags...]
#
# Starts target/release/fleetlake (or $CARGO_TARGET_DIR/release) on a free
# loopback port with a fresh data directory, loads the data with `fleetlake
# bench ingest` (4 writers, 5,000-line bodies), samples VmRSS and
# fleetlake_buffer_bytes every second, and prints the loader's report, the
# server's VmHWM right after the load, the number of flushes and the
# largest buffer sample. With --flush-alone the server never flushes during
# the load (--flush-bytes and --memory-budget far above the data); the script
# then times one POST /api/v1/admin/flush and prints RSS before and VmHWM
# after it. With --queries N, N clients send SQL (default: every host's
# per-minute maxima, 720,000 groups at 4,000 hosts x 3 h, sorted) one after
# another from the load's first rows to its end; the script prints their answers'
# statuses and the largest share of the server's memory budget
# (fleetlake_memory_used_bytes) sampled. The server is stopped on exit, by
# its pid.
set -eu

gen=cpu-only hosts=4000 hours=3 rate="" prep=2147483648 alone=0 queries=0
sql="SELECT hostname, date_bin(INTERVAL '1 minute', time) AS minute, max(usage_user) AS u, \
max(usage_system) AS s, avg(usage_idle) AS i FROM cpu GROUP BY 1, 2 ORDER BY u DESC, s DESC LIMIT 5"
while [ $# -gt 0 ]; do
    case "$1" in
    --gen) gen=$2; shift 2 ;;
    --hosts) hosts=$2; shift 2 ;;
    --hours) hours=$2; shift 2 ;;
    --rate) rate="--rate $2"; shift 2 ;;
    --prepare-bytes) prep=$2; shift 2 ;;
    --flush-alone) alone=1; shift ;;
    --queries) queries=$2; shift 2 ;;
    --sql) sql=$2; shift 2 ;;
    --) shift; break ;;
    *) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
    esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
bin=${CARGO_TARGET_DIR:-$root/target}/release/fleetlake
[ -x "$bin" ] || { echo "missing $bin: run cargo build --release -p fleetlake" >&2; exit 1; }
work=$(mktemp -d /var/tmp/fleetlake-ingest-memory.XXXXXX)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port
extra=""
[ "$alone" = 1 ] && extra="--flush-bytes 100000000000 --memory-budget 100000000000"
# shellcheck disable=SC2086
RUST_LOG=info "$bin" serve --http-bind "127.0.0.1:$port" --data-dir "$work/data" \
    --gc-grace 0s $extra "$@" >"$work/server.log" 2>&1 &
pid=$!
sampler=""
cleanup() {
    [ -n "$sampler" ] && kill "$sampler" 2>/dev/null || true
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM
i=0
until curl -sf -o /dev/null "$url/health"; do
    i=$((i + 1)); [ $i -gt 240 ] && { echo "server not answering" >&2; exit 1; }
    sleep 0.5
done
kb() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$pid/status"; }
buffer() { curl -s "$url/metrics" | awk '/^fleetlake_buffer_bytes / {print $2}'; }
# The buffer's bytes and the memory budget's total, from one scrape.
buffer_and_budget() {
    curl -s "$url/metrics" | awk '/^fleetlake_buffer_bytes / {b = $2}
        /^fleetlake_memory_used_bytes/ {s += $2} END {print b, s + 0}'
}
(
    while kill -0 "$pid" 2>/dev/null; do
        echo "$(kb VmRSS) $(buffer_and_budget)"
        sleep 1
    done
) >"$work/samples" &
sampler=$!
python3 -c 'import json, sys; print(json.dumps({"sql": sys.argv[1], "format": "json"}))' "$sql" >"$work/query.json"
client() {
    # From the load's first rows on (before them, the table does not exist).
    until curl -sf -o /dev/null -H 'Content-Type: application/json' \
        --data '{"sql": "SELECT 1 FROM cpu LIMIT 1"}' "$url/api/v1/sql"; do
        [ -e "$work/loaded" ] && return
        sleep 0.2
    done
    while [ ! -e "$work/loaded" ]; do
        curl -s -o /dev/null -w '%{http_code} %{time_total}\n' -H 'Content-Type: application/json' \
            --data-binary @"$work/query.json" "$url/api/v1/sql?db=fleet"
    done >"$work/answers.$1"
}
clients=""
n=0
while [ "$n" -lt "$queries" ]; do
    n=$((n + 1))
    client "$n" &
    clients="$clients $!"
done

echo "machine: $(nproc) cores; $(date -u +%FT%TZ); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "data: TSBS $gen, $hosts hosts x $hours h; serve flags: $extra $*"
# shellcheck disable=SC2086
"$bin" bench ingest --url "$url/api/v3/write_lp?db=fleet" --gen "$gen" --hosts "$hosts" \
    --hours "$hours" --start 2016-01-01T00:00:00Z --seed 1 --concurrency 4 --batch 5000 \
    --prepare-bytes "$prep" $rate
touch "$work/loaded"
# shellcheck disable=SC2086
[ -n "$clients" ] && wait $clients
echo "server VmHWM after the load: $(($(kb VmHWM) / 1024)) MiB"
if [ "$queries" -gt 0 ]; then
    echo "queries ($queries clients): $(cat "$work"/answers.* | awk '{print $1}' | sort | uniq -c | awk '{printf "%s x %s; ", $1, $2}')"
    echo "  seconds per answer, median: $(cat "$work"/answers.* | awk '{print $2}' | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')"
    echo "  largest memory budget sample: $(awk '{print int($3 / 1048576)}' "$work/samples" | sort -n | tail -n 1) MiB"
fi
if [ "$alone" = 1 ]; then
    echo "before the flush: VmRSS $(($(kb VmRSS) / 1024)) MiB, buffer $(($(buffer | cut -d. -f1) / 1048576)) MiB"
    t0=$(date +%s.%N)
    curl -sf -X POST "$url/api/v1/admin/flush" >/dev/null
    t1=$(date +%s.%N)
    echo "flush: $(awk "BEGIN {printf \"%.2f\", $t1 - $t0}") s; VmHWM after it $(($(kb VmHWM) / 1024)) MiB"
fi
echo "flushes: $(grep -c 'flushed' "$work/server.log" || true); largest buffer sample: $(awk '{print int($2 / 1048576)}' "$work/samples" | sort -n | tail -n 1) MiB"
