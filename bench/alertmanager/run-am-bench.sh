#!/usr/bin/env bash
# Measures tocsind against Debian's prometheus-alertmanager under the same load, one after the
# other on this machine: ingest rate on POST /api/v2/alerts, resident memory with the alerts
# held, notification latency and CPU at rest. The load driver is bench-alertmanager.sh from the
# shared tools beside the checkout; it is not part of the repository.
#
# Usage: bench/alertmanager/run-am-bench.sh [--tocsind PATH] [--alertmanager PATH] [--tools DIR]
#   --tocsind PATH       default: build/release/daemon/tocsind in the checkout
#   --alertmanager PATH  default: /usr/bin/prometheus-alertmanager (Debian package
#                        prometheus-alertmanager); skipped when missing
#   --tools DIR          folder holding bench-alertmanager.sh; default: ../shared/tools
# Environment variables of bench-alertmanager.sh (N_ALERTS, BATCH, ...) pass through.
# "skipped: ..." is printed, with exit status 0, when the driver is missing.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
tocsind=$root/build/release/daemon/tocsind
alertmanager=/usr/bin/prometheus-alertmanager
tools=$root/../shared/tools

while [ $# -gt 0 ]; do
  case "$1" in
    --tocsind) tocsind=$2; shift 2 ;;
    --alertmanager) alertmanager=$2; shift 2 ;;
    --tools) tools=$2; shift 2 ;;
    -h|--help) sed -n '/^# Usage:/,/^# "skipped/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument $1; see --help" >&2; exit 2 ;;
  esac
done

driver=$tools/bench-alertmanager.sh
if [ ! -f "$driver" ]; then
  echo "skipped: $driver not found (the load driver is not part of the repository)"
  exit 0
fi
if [ ! -x "$tocsind" ]; then
  echo "tocsind not found at $tocsind; build it (cmake --build build/release --target tocsind) or pass --tocsind" >&2
  exit 2
fi

if [ -x "$alertmanager" ]; then
  echo "## $alertmanager"
  bash "$driver" "$alertmanager"
else
  echo "## skipped: $alertmanager not found (apt-get install prometheus-alertmanager)"
fi
echo "## $tocsind"
bash "$driver" "$tocsind"
