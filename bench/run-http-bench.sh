#!/usr/bin/env bash
# Starts a Release tocsind on 127.0.0.1 with bench/config and pushes remote_write load at it:
#   1. bench/remote_write_bench --url (1M samples over 100k series, Prometheus' request shape);
#   2. if the rw-load generator is present beside the checkout, the same load under which
#      Prometheus and VictoriaMetrics were measured. Without it this step is skipped.
# Usage: bench/run-http-bench.sh [BUILD_DIR]   (default: build/release, built if missing)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build/release}
port=${BENCH_PORT:-19793}
run_dir=$(mktemp -d /tmp/tocsin-http-bench.XXXX)

if [ ! -x "$build/bench/remote_write_bench" ] || [ ! -x "$build/daemon/tocsind" ]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTOCSIN_INTEGRATION_TESTS=OFF
  cmake --build "$build" --target tocsind remote_write_bench
fi

sed -e "s|127.0.0.1:19793|127.0.0.1:$port|" -e "s|state_dir: ./state|state_dir: $run_dir/state|" \
  "$root/bench/config/tocsin.yaml" > "$run_dir/tocsin.yaml"
cp "$root/bench/config/rules.yaml" "$run_dir/rules.yaml"

start_daemon() {
  rm -rf "$run_dir/state"
  "$build/daemon/tocsind" --config "$run_dir/tocsin.yaml" > "$run_dir/tocsind.log" 2>&1 &
  daemon_pid=$!
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/-/ready" > /dev/null && return 0
    sleep 0.1
  done
  echo "tocsind did not become ready; log:" >&2
  cat "$run_dir/tocsind.log" >&2
  return 1
}

stop_daemon() {
  kill -TERM "$daemon_pid" 2> /dev/null || true
  wait "$daemon_pid" 2> /dev/null || true
}
trap stop_daemon EXIT

echo "== remote_write_bench over HTTP (4 connections)"
start_daemon
"$build/bench/remote_write_bench" --url "http://127.0.0.1:$port/api/v1/write" --pid "$daemon_pid" --connections 4
grep -E "^(tocsin_series|tocsin_samples_ingested_total|tocsin_engine_state_bytes) " \
  <(curl -s "http://127.0.0.1:$port/metrics")
stop_daemon

shared_tool="$root/../shared/tools/remote-write/bench-remote-write.sh"
if [ -x "$shared_tool" ] || [ -f "$shared_tool" ]; then
  echo "== rw-load (10M samples, 100k series, 4 connections)"
  start_daemon
  bash "$shared_tool" url "http://127.0.0.1:$port/api/v1/write" "$daemon_pid"
  stop_daemon
else
  echo "== rw-load skipped: $shared_tool not found"
fi
