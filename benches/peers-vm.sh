#!/bin/sh
# VictoriaMetrics, the peer of the compaction benchmark (benches/README.md,
# "Compaction (issue 4)").
#
#   benches/peers-vm.sh install        install Debian's victoria-metrics (root)
#   benches/peers-vm.sh bin            print the path of its binary
#   benches/peers-vm.sh start DIR PORT start it on 127.0.0.1:PORT with a fresh
#                                      DIR, in the foreground
#
# `e2e --victoria-metrics "$(benches/peers-vm.sh bin)"` starts and stops it by
# itself with the same flags as `start`; `start` is for poking at it by hand.
# Debian's package does not start a service inside containers (policy-rc.d),
# and the binary is /usr/bin/victoria-metrics (`dpkg -L victoria-metrics`).
set -eu

bin=/usr/bin/victoria-metrics

case "${1:-}" in
install)
    if [ -x "$bin" ]; then
        echo "already installed: $bin ($(dpkg-query -W -f '${Version}' victoria-metrics))"
        exit 0
    fi
    apt-get update
    apt-get install -y victoria-metrics
    ;;
bin)
    [ -x "$bin" ] || { echo "not installed; run: $0 install" >&2; exit 1; }
    echo "$bin"
    ;;
start)
    dir=${2:?usage: $0 start DIR PORT}
    port=${3:?usage: $0 start DIR PORT}
    if [ -e "$dir" ] && [ -n "$(ls -A "$dir")" ]; then
        echo "$dir is not empty; VictoriaMetrics needs a fresh directory" >&2
        exit 1
    fi
    # The TSBS data is from 2016: without a long retention it is dropped on arrival.
    exec "$bin" -storageDataPath="$dir" -retentionPeriod=100y -httpListenAddr="127.0.0.1:$port"
    ;;
*)
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
