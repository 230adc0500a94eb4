#!/bin/sh
# fleetlake side by side with VictoriaMetrics, InfluxDB 1.x and DuckDB on the
# same generated TSBS cpu-only data (issue 3, section 3).
#
#   benches/peers.sh [--hosts N] [--hours H] [--large] [--seed S] [--runs N]
#                    [--check N] [--concurrency C] [--batch B]
#                    [--workdir DIR] [--no-install] [--keep] [--rollups]
#
# Installs what is missing (apt-get: victoria-metrics, influxdb; pip: duckdb),
# starts fleetlake (target/release, built by `cargo build --release
# --workspace --bins`), VictoriaMetrics and InfluxDB on loopback with fresh
# directories under the work directory, loads the same data into each with the
# same loader (`fleetlake bench ingest`: 4 writers, 5,000-line bodies by
# default), measures bytes on disk and peak RSS, then runs `peers` (the
# fifteen TSBS queries on every system, the first --check runs of each
# compared with the generator's answer) and prints one table. DuckDB runs the
# same SQL over fleetlake's Parquet files after compaction. With --rollups,
# fleetlake also keeps per-minute and per-hour rollups of cpu (materialized
# after the compaction, not counted in its bytes), which answer the queries
# whose buckets they hold exactly.
#
# Default size: 4,000 hosts x 3 h (43.2M samples); --large: 4,000 x 24 h.
# Every server this script starts is stopped on exit, by its pid.
set -eu

hosts=4000 hours=3 seed=1 runs=10 check=2 conc=4 batch=5000
start=2016-01-01T00:00:00Z
install=1 keep=0 work="" rollups=0
while [ $# -gt 0 ]; do
    case "$1" in
    --hosts) hosts=$2; shift 2 ;;
    --hours) hours=$2; shift 2 ;;
    --large) hours=24; shift ;;
    --seed) seed=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --check) check=$2; shift 2 ;;
    --concurrency) conc=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --workdir) work=$2; shift 2 ;;
    --no-install) install=0; shift ;;
    --keep) keep=1; shift ;;
    --rollups) rollups=1; shift ;;
    *) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
    esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
bin=${CARGO_TARGET_DIR:-$root/target}/release
for b in fleetlake peers; do
    [ -x "$bin/$b" ] || { echo "missing $bin/$b: run cargo build --release --workspace --bins" >&2; exit 1; }
done
if [ -z "$work" ]; then
    work=$(mktemp -d /tmp/fleetlake-peers.XXXXXX)
elif [ -e "$work" ] && [ -n "$(ls -A "$work")" ]; then
    echo "$work is not empty; the peers need fresh directories" >&2
    exit 1
fi
mkdir -p "$work"
facts=$work/facts
: >"$facts"
pids=""

cleanup() {
    for p in $pids; do
        kill "$p" 2>/dev/null || true
    done
    for p in $pids; do
        wait "$p" 2>/dev/null || true
    done
    if [ "$keep" = 0 ]; then rm -rf "$work"; else echo "kept $work"; fi
}
trap cleanup EXIT INT TERM

# The peers not installed: Debian packages, then `duckdb` (a PyPI package).
missing_peers() {
    command -v victoria-metrics >/dev/null 2>&1 || printf ' victoria-metrics'
    command -v influxd >/dev/null 2>&1 || printf ' influxdb'
    python3 -c 'import duckdb' 2>/dev/null || printf ' duckdb'
}
missing=$(missing_peers)
if [ "$install" = 1 ] && [ -n "$missing" ]; then
    debian=$(echo "$missing" | sed 's/ duckdb//')
    if [ -n "$debian" ]; then
        apt-get update
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive apt-get install -y $debian
    fi
    python3 -c 'import duckdb' 2>/dev/null ||
        pip install duckdb || pip install --break-system-packages duckdb
    missing=$(missing_peers)
fi
# Every peer must be there before anything is loaded (minutes of work).
if [ -n "$missing" ]; then
    echo "missing peers:$missing (run without --no-install to install them)" >&2
    exit 1
fi

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_http() {
    i=0
    until curl -sf -o /dev/null "$1"; do
        i=$((i + 1))
        if [ $i -gt 240 ]; then echo "not answering: $1" >&2; return 1; fi
        sleep 0.5
    done
}

rss_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

# du -sb of the paths, once it has not changed for $1 seconds (at most $2 s).
settle() {
    quiet=$1 limit=$2
    shift 2
    prev=-1 same=0 waited=0
    while :; do
        cur=$(du -scb "$@" | tail -n 1 | cut -f1)
        if [ "$cur" = "$prev" ]; then same=$((same + 1)); else same=0 prev=$cur; fi
        [ $same -ge "$quiet" ] && break
        [ $waited -ge "$limit" ] && { echo "still changing after ${limit} s" >&2; break; }
        sleep 1
        waited=$((waited + 1))
    done
    echo "$cur"
}

data="--hosts $hosts --hours $hours --start $start --seed $seed"
ingest() { # name url
    echo "== $1: ingest into $2"
    # shellcheck disable=SC2086
    "$bin/fleetlake" bench ingest --url "$2" --gen cpu-only $data \
        --concurrency "$conc" --batch "$batch" --report-json "$work/$1.json"
    echo "$1 ingest_json $work/$1.json" >>"$facts"
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r); $(date -u +%FT%TZ)"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "data: TSBS cpu-only, $hosts hosts x $hours h from $start, seed $seed; work dir $work"

# ---------------------------------------------------------------- loader ceiling
echo "== loader ceiling (in-process discard sink)"
# shellcheck disable=SC2086
"$bin/fleetlake" bench ingest --url discard --gen cpu-only $data \
    --concurrency "$conc" --batch "$batch" --report-json "$work/discard.json"

# ---------------------------------------------------------------- fleetlake
fport=$(free_port)
furl=http://127.0.0.1:$fport
# No background compaction and no grace for replaced files: what is on disk
# after the forced compaction is exactly the live files, which DuckDB reads.
rollup_args=""
if [ "$rollups" = 1 ]; then
    rollup_args="--rollups $root/benches/tsbs_rollups.toml"
fi
# shellcheck disable=SC2086
RUST_LOG=warn "$bin/fleetlake" serve --http-bind "127.0.0.1:$fport" --data-dir "$work/fleetlake" \
    --compaction-interval 0 --gc-grace 0s $rollup_args >"$work/fleetlake.log" 2>&1 &
fpid=$!
pids="$pids $fpid"
wait_http "$furl/health"
ingest fleetlake "$furl/api/v3/write_lp?db=fleet"
echo "fleetlake rss_kb $(rss_kb $fpid)" >>"$facts"
curl -sf -X POST "$furl/api/v1/admin/flush" >/dev/null
echo "fleetlake bytes_flush $(du -sb "$work/fleetlake/store" | cut -f1)" >>"$facts"
wal_after_flush=$(du -sb "$work/fleetlake/wal" | cut -f1)
t0=$(date +%s.%N)
curl -sf -X POST "$furl/api/v1/admin/compact" >/dev/null
t1=$(date +%s.%N)
echo "fleetlake bytes_compacted $(du -sb "$work/fleetlake/store" | cut -f1)" >>"$facts"
echo "fleetlake note store (Parquet + catalog; the WAL's newest segment, kept after the flush, is $wal_after_flush more bytes) after a flush and after POST /api/v1/admin/compact ($(awk "BEGIN {printf \"%.1f\", $t1 - $t0}") s); acks after an fsynced WAL append; RSS = VmHWM after ingest" >>"$facts"
if [ "$rollups" = 1 ]; then
    t0=$(date +%s.%N)
    curl -sf -X POST "$furl/api/v1/admin/rollup" >/dev/null
    t1=$(date +%s.%N)
    echo "fleetlake note rollups cpu_1m and cpu_1h materialized after the compaction in $(awk "BEGIN {printf \"%.1f\", $t1 - $t0}") s ($(du -sb "$work/fleetlake/store/fleet/cpu_1m" "$work/fleetlake/store/fleet/cpu_1h" | awk '{s += $1} END {print s}') more bytes, not counted above); queries whose buckets a rollup holds exactly read it" >>"$facts"
fi
parquet_glob="$work/fleetlake/store/fleet/cpu/**/*.parquet"
echo "duckdb note reads fleetlake's $(find "$work/fleetlake/store/fleet/cpu" -name '*.parquet' | wc -l) compacted Parquet file(s) ($(find "$work/fleetlake/store/fleet/cpu" -name '*.parquet' -exec du -cb {} + | tail -n 1 | cut -f1) bytes); in-process times, no HTTP" >>"$facts"

# ---------------------------------------------------------------- VictoriaMetrics
vport=$(free_port)
vurl=http://127.0.0.1:$vport
# The TSBS data is from 2016: without a long retention it is dropped on arrival.
victoria-metrics -storageDataPath="$work/vm" -retentionPeriod=100y \
    -httpListenAddr="127.0.0.1:$vport" >"$work/vm.log" 2>&1 &
vpid=$!
pids="$pids $vpid"
wait_http "$vurl/health"
ingest victoria "$vurl/write"
echo "victoria rss_kb $(rss_kb $vpid)" >>"$facts"
curl -sf "$vurl/internal/force_flush" >/dev/null
echo "victoria bytes_flush $(settle 20 600 "$work/vm")" >>"$facts"
echo "victoria note $(victoria-metrics -version 2>/dev/null | head -n 1); acks before data is on disk; bytes = data dir once flushed and unchanged for 20 s" >>"$facts"

# ---------------------------------------------------------------- InfluxDB 1.x
iport=$(free_port)
rport=$(free_port)
iurl=http://127.0.0.1:$iport
mkdir -p "$work/influx"
cat >"$work/influx/influxdb.conf" <<CONF
reporting-disabled = true
bind-address = "127.0.0.1:$rport"
[meta]
  dir = "$work/influx/meta"
[data]
  dir = "$work/influx/data"
  wal-dir = "$work/influx/wal"
  # fsync every write before acknowledging it, as fleetlake does
  wal-fsync-delay = "0s"
  index-version = "inmem"
  query-log-enabled = false
  # snapshot and fully compact soon after the load, so the size settles
  cache-snapshot-write-cold-duration = "10s"
  compact-full-write-cold-duration = "30s"
[coordinator]
  query-timeout = "0s"
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:$iport"
  log-enabled = false
[continuous_queries]
  enabled = false
CONF
influxd -config "$work/influx/influxdb.conf" >"$work/influx.log" 2>&1 &
ipid=$!
pids="$pids $ipid"
wait_http "$iurl/ping"
curl -sf -X POST "$iurl/query" --data-urlencode "q=CREATE DATABASE fleet" >/dev/null
ingest influx "$iurl/write?db=fleet"
echo "influx rss_kb $(rss_kb $ipid)" >>"$facts"
echo "influx bytes_compacted $(settle 30 900 "$work/influx/data" "$work/influx/wal")" >>"$facts"
echo "influx note $(influxd version 2>/dev/null | head -n 1); wal-fsync-delay 0s; bytes = data + wal once unchanged for 30 s (full compaction after 30 s cold)" >>"$facts"

# ---------------------------------------------------------------- queries
echo "load average before the queries: $(cut -d' ' -f1-3 /proc/loadavg)"
status=0
# shellcheck disable=SC2086
"$bin/peers" $data --runs "$runs" --check "$check" --db fleet \
    --fleetlake "$furl" --victoria "$vurl" --influx "$iurl" \
    --duckdb-glob "$parquet_glob" --duckdb-helper "$root/benches/peers_duckdb.py" \
    --facts "$facts" --out "$work/table.md" || status=$?
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
exit $status
