#!/usr/bin/env bash
# Scores tocsin's detectors on Numenta Anomaly Benchmark (NAB) data with one global rules file.
#
# For every data file, `tocsinctl backtest` replays the series through the engine with the
# series named `nab` (so the rules select `expr: nab`) and writes the per-row alert state
# (--samples-csv). Rows that repeat a timestamp or step back in time (a few NAB files have
# them) are skipped by the backtest (--skip-bad-rows). to_detections.py turns those rows into NAB detections: alert=1 while any
# rule fires. nab_score.py then scores the rising edges (one detection per alert) and prints
# the standard, reward_low_FP_rate and reward_low_FN_rate scores. The CPU time of tocsinctl
# over all files is printed as nanoseconds per input sample (reading, detection and writing
# the samples CSV included).
#
# Usage: bench/nab/run-nab.sh [--tocsinctl PATH] [--data DIR] [--tools DIR] [--rules FILE]
#                             [--out DIR] [-- NAB_SCORE_ARGS ...]
#   --tocsinctl PATH  default: build/release/daemon/tocsinctl in the checkout
#   --data DIR        NAB data root holding data/ and labels/combined_windows.json;
#                     default: ../shared/data/nab beside the checkout
#   --tools DIR       folder holding nab_score.py; default: ../shared/tools beside the checkout
#   --rules FILE      default: bench/nab/rules.yaml
#   --out DIR         folder for samples, detections and scores; default: a new
#                     /tmp/tocsin-nab.XXXX
#   after --          further arguments for nab_score.py, such as `--count rows`
# The NAB data and scorer are not part of the repository.
# "skipped: ..." is printed, with exit status 0, when they are missing.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
tocsinctl=$root/build/release/daemon/tocsinctl
data=$root/../shared/data/nab
tools=$root/../shared/tools
rules=$here/rules.yaml
out=
score_args=()

usage() {
  sed -n '/^# Usage:/,/^# "skipped/p' "$0" | sed 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
  case $1 in
    --tocsinctl) tocsinctl=${2:?--tocsinctl needs a path}; shift 2 ;;
    --data) data=${2:?--data needs a folder}; shift 2 ;;
    --tools) tools=${2:?--tools needs a folder}; shift 2 ;;
    --rules) rules=${2:?--rules needs a file}; shift 2 ;;
    --out) out=${2:?--out needs a folder}; shift 2 ;;
    --) shift; score_args=("$@"); break ;;
    -h | --help) usage; exit 0 ;;
    *) echo "run-nab.sh: unknown argument '$1'; see --help" >&2; exit 2 ;;
  esac
done

windows=$data/labels/combined_windows.json
if [ ! -d "$data/data" ] || [ ! -f "$windows" ]; then
  echo "skipped: NAB data not found at $data (expected data/ and labels/combined_windows.json; set --data)"
  exit 0
fi
if [ ! -f "$tools/nab_score.py" ]; then
  echo "skipped: NAB scorer not found at $tools/nab_score.py (set --tools)"
  exit 0
fi
if [ ! -x "$tocsinctl" ]; then
  echo "run-nab.sh: tocsinctl not found at $tocsinctl; build the Release target tocsinctl or pass --tocsinctl" >&2
  exit 2
fi
if [ ! -f "$rules" ]; then
  echo "run-nab.sh: rules file not found at $rules; pass --rules" >&2
  exit 2
fi
if [ -z "$out" ]; then
  out=$(mktemp -d /tmp/tocsin-nab.XXXX)
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -rf "$out/samples" "$out/detections"

mapfile -t files < <(cd "$data/data" && find . -name '*.csv' | sed 's|^\./||' | LC_ALL=C sort)
if [ ${#files[@]} -eq 0 ]; then
  echo "skipped: no CSV files under $data/data"
  exit 0
fi

samples=0
for rel in "${files[@]}"; do
  rows=$(grep -c . "$data/data/$rel")
  samples=$((samples + rows - 1)) # minus the header
done

# Backtests every file. The loop's CPU time is that of the tocsinctl processes. Messages go to
# fd 3 (the script's stderr), because the loop's stderr carries the time.
exec 3>&2
backtest_all() {
  for rel in "${files[@]}"; do
    mkdir -p "$out/samples/$rel"
    if ! "$tocsinctl" backtest --rules "$rules" --metric nab --skip-bad-rows --samples-csv "$out/samples/$rel" \
      "$data/data/$rel" > "$out/samples/$rel/report.txt" 2> "$out/samples/$rel/stderr.txt"; then
      echo "run-nab.sh: tocsinctl backtest failed on $rel:" >&3
      cat "$out/samples/$rel/stderr.txt" >&3
      return 1
    fi
  done
}
TIMEFORMAT='%3U %3S'
{ time backtest_all; } 2> "$out/cpu.txt"
read -r cpu_user cpu_sys < "$out/cpu.txt"

for rel in "${files[@]}"; do
  mkdir -p "$(dirname "$out/detections/$rel")"
  shopt -s nullglob
  parts=("$out/samples/$rel"/*.csv)
  shopt -u nullglob
  if [ ${#parts[@]} -eq 0 ]; then
    echo "run-nab.sh: samples CSV missing for $rel; check that a rule in $rules selects expr: nab" >&2
    exit 1
  fi
  python3 "$here/to_detections.py" --data "$data/data/$rel" "$out/detections/$rel" "${parts[@]}"
done

python3 "$tools/nab_score.py" --detections "$out/detections" --data "$data/data" --windows "$windows" \
  --json "$out/score.json" --per-file-csv "$out/per_file.csv" "${score_args[@]}" > "$out/score.txt"

python3 - "$out/score.json" <<'EOF'
import json
import sys

with open(sys.argv[1], encoding="utf-8") as handle:
    doc = json.load(handle)
settings = doc["settings"]
print(f"NAB score, {settings['files']} files, {settings['windows_total']} windows, "
      f"detections counted as {'rising edges' if settings['count'] == 'edges' else 'active rows'}:")
for name, p in doc["summary"].items():
    threshold = "" if p["threshold"] is None else f", threshold {p['threshold']:g}"
    print(f"  {name:20s} {p['normalized']:7.2f}  (TP {p['tp']}, FN {p['fn']}, FP {p['fp']}{threshold})")
EOF

awk -v u="$cpu_user" -v s="$cpu_sys" -v n="$samples" -v f="${#files[@]}" 'BEGIN {
  printf "tocsinctl CPU %.3f s (user %.3f, sys %.3f) for %d samples in %d files: %.0f ns per sample\n",
         u + s, u, s, n, f, (u + s) * 1e9 / n
}'
echo "details: $out (score.txt, per_file.csv, detections/, samples/)"
