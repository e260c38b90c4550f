#!/usr/bin/env bash
# Builds tocsind and runs the example pipeline on this machine:
#   node_exporter -> Prometheus (scrape, recording rules) -> remote_write -> tocsind (rules)
# Everything listens on 127.0.0.1. The script waits until an alert fires, prints the alerts
# and the URLs, and keeps the three processes running until Ctrl-C. With --once it prints the
# firing alerts and the first notification and stops everything, which suits scripts and CI.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/run-example.sh [options]

  --once              start from an empty state folder, print the firing alerts and the
                      first notification, stop everything and exit (exit 0 once both
                      happened, 1 if not within --timeout and 60 s)
  --run-dir DIR       runtime folder for configs, logs and state (default: ./example-run,
                      or $TOCSIN_RUN_DIR)
  --build-dir DIR     CMake build folder (default: <source>/build-release, or $TOCSIN_BUILD_DIR)
  --timeout SECONDS   how long to wait for the first firing alert (default: 120)
  --skip-deps         do not install missing packages with scripts/install-deps.sh
  --skip-build        use the tocsind and tocsinctl already in the build folder
  -h, --help          show this help

Ports: node_exporter 9100, tocsind 9793 and Prometheus 9090 when free, otherwise ports that
the kernel picks. Set NODE_EXPORTER_PORT, TOCSIN_PORT or PROMETHEUS_PORT to force a port.
EOF
}

source_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
run_dir="${TOCSIN_RUN_DIR:-./example-run}"
build_dir="${TOCSIN_BUILD_DIR:-$source_dir/build-release}"
once=0
alert_timeout=120
skip_deps=0
skip_build=0

while [ $# -gt 0 ]; do
    case "$1" in
        --once) once=1 ;;
        --run-dir) run_dir="${2:?--run-dir needs a folder}"; shift ;;
        --build-dir) build_dir="${2:?--build-dir needs a folder}"; shift ;;
        --timeout) alert_timeout="${2:?--timeout needs a number of seconds}"; shift ;;
        --skip-deps) skip_deps=1 ;;
        --skip-build) skip_build=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run-example.sh: unknown option '$1'; see --help" >&2; exit 2 ;;
    esac
    shift
done

mkdir -p "$run_dir"
run_dir="$(cd "$run_dir" && pwd)"
log_dir="$run_dir/logs"
mkdir -p "$log_dir"

say() { printf '==> %s\n' "$*"; }
fail() { printf 'run-example.sh: %s\n' "$*" >&2; exit 1; }

# --- dependencies -----------------------------------------------------------------------------

deps_installed=0
install_deps() {
    [ "$skip_deps" -eq 0 ] || fail "missing dependencies ($1) and --skip-deps is set; run scripts/install-deps.sh"
    [ "$deps_installed" -eq 0 ] || fail "$1 still missing after scripts/install-deps.sh"
    say "installing dependencies ($1 missing) with scripts/install-deps.sh"
    "$source_dir/scripts/install-deps.sh"
    deps_installed=1
}

missing=()
for command in cmake ninja ccache g++ python3 prometheus prometheus-node-exporter; do
    command -v "$command" >/dev/null 2>&1 || missing+=("$command")
done
if [ ${#missing[@]} -gt 0 ]; then
    install_deps "${missing[*]}"
fi

# --- build --------------------------------------------------------------------------------------

tocsind="$build_dir/daemon/tocsind"
tocsinctl="$build_dir/daemon/tocsinctl"

configure() {
    cmake -S "$source_dir" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DTOCSIN_INTEGRATION_TESTS=OFF \
        >"$log_dir/cmake-configure.log" 2>&1
}

if [ "$skip_build" -eq 0 ]; then
    # Lets ccache reuse objects compiled in another checkout or build folder.
    export CCACHE_BASEDIR="$source_dir" CCACHE_NOHASHDIR=1
    say "configuring $build_dir (Release, Ninja, ccache)"
    if ! configure; then
        # A missing library shows up as a failed find_package, not as a missing command.
        install_deps "a library that CMake looks for (see $log_dir/cmake-configure.log)"
        configure || fail "CMake configure failed; see $log_dir/cmake-configure.log"
    fi
    say "building tocsind and tocsinctl (log: $log_dir/build.log)"
    if ! cmake --build "$build_dir" --parallel "${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
        --target tocsind tocsinctl >"$log_dir/build.log" 2>&1; then
        tail -n 30 "$log_dir/build.log" >&2
        fail "build failed; see $log_dir/build.log"
    fi
fi
[ -x "$tocsind" ] || fail "$tocsind not found; build it or drop --skip-build"

# --- ports ----------------------------------------------------------------------------------------

# Prints `preferred` if nothing listens on it on 127.0.0.1, otherwise a port the kernel picks.
# Another program can take the port before our server binds it. The server then fails to start
# with an address-in-use line in its log, and a second run picks again.
pick_port() {
    python3 - "$1" <<'EOF'
import socket, sys
preferred = int(sys.argv[1])
for port in (preferred, 0):
    with socket.socket() as s:
        # Servers set SO_REUSEADDR too, so a port left in TIME_WAIT by an earlier run is usable.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        print(s.getsockname()[1])
        break
EOF
}

node_exporter_port="${NODE_EXPORTER_PORT:-$(pick_port 9100)}"
tocsin_port="${TOCSIN_PORT:-$(pick_port 9793)}"
prometheus_port="${PROMETHEUS_PORT:-$(pick_port 9090)}"
if [ "$prometheus_port" = "$tocsin_port" ] || [ "$prometheus_port" = "$node_exporter_port" ]; then
    prometheus_port="$(pick_port 0)"
fi
tocsin_url="http://127.0.0.1:$tocsin_port"
prometheus_url="http://127.0.0.1:$prometheus_port"
node_exporter_url="http://127.0.0.1:$node_exporter_port"

# --- runtime folder -----------------------------------------------------------------------------

# tocsind reads the example rules in place, so an edit to examples/rules/*.yaml takes effect
# on the next reload.
sed -e "s|^listen: .*|listen: 127.0.0.1:$tocsin_port|" \
    -e "s|^external_url: .*|external_url: $tocsin_url|" \
    -e "s|^rule_files: .*|rule_files: [\"$source_dir/examples/rules/*.yaml\"]|" \
    -e "s|^model_schemas: .*|model_schemas: $source_dir/examples/models/models.yaml|" \
    -e '/^# --- receivers ---$/,$d' \
    "$source_dir/examples/tocsin.yaml" >"$run_dir/tocsin.yaml"

# Receivers: Slack and PagerDuty when their secrets are in the environment, otherwise the
# console receiver, which prints each notification to tocsind's log. tocsind reads the
# secrets from the environment itself; they are never written to the config file.
slack_receiver() {
    echo "    slack_configs:"
    echo "      - api_url_env: TOCSIN_SLACK_WEBHOOK_URL"
    echo "        send_resolved: true"
}
console_receiver() {
    echo "    console_configs: [{send_resolved: true}]"
}
delivery_targets=()
{
    echo "receivers:"
    echo "  - name: team"
    if [ -n "${TOCSIN_SLACK_WEBHOOK_URL:-}" ]; then slack_receiver; else console_receiver; fi
    echo "  - name: oncall"
    if [ -n "${TOCSIN_SLACK_WEBHOOK_URL:-}" ]; then slack_receiver; fi
    if [ -n "${TOCSIN_PAGERDUTY_ROUTING_KEY:-}" ]; then
        echo "    pagerduty_configs:"
        echo "      - routing_key_env: TOCSIN_PAGERDUTY_ROUTING_KEY"
    fi
    if [ -z "${TOCSIN_SLACK_WEBHOOK_URL:-}" ] && [ -z "${TOCSIN_PAGERDUTY_ROUTING_KEY:-}" ]; then
        console_receiver
    fi
} >>"$run_dir/tocsin.yaml"
[ -n "${TOCSIN_SLACK_WEBHOOK_URL:-}" ] && delivery_targets+=("Slack")
[ -n "${TOCSIN_PAGERDUTY_ROUTING_KEY:-}" ] && delivery_targets+=("PagerDuty (critical and page alerts)")
[ ${#delivery_targets[@]} -gt 0 ] || delivery_targets+=("the console receiver (lines in $log_dir/tocsind.log)")

sed -e "s|@SCRAPE_INTERVAL@|5s|" \
    -e "s|@EVALUATION_INTERVAL@|5s|" \
    -e "s|@NODE_EXPORTER_ADDRESS@|127.0.0.1:$node_exporter_port|" \
    -e "s|@RECORDING_RULES_FILE@|$source_dir/examples/prometheus/recording-rules.yml|" \
    -e "s|@TOCSIN_URL@|$tocsin_url|" \
    "$source_dir/examples/prometheus/prometheus.yml.in" >"$run_dir/prometheus.yml"

if [ -x "$tocsinctl" ]; then
    "$tocsinctl" check "$run_dir/tocsin.yaml" || fail "$run_dir/tocsin.yaml is invalid (see above)"
fi

# --- processes ----------------------------------------------------------------------------------

node_exporter_pid=""
tocsind_pid=""
prometheus_pid=""

# shellcheck disable=SC2317 # called from the EXIT trap, which shellcheck does not follow
# Sends SIGTERM, waits up to `timeout` seconds, then sends SIGKILL. Prints how the process ended.
stop_process() {
    local name="$1" pid="$2" timeout="$3"
    [ -n "$pid" ] || return 0
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + timeout))
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "    $name (pid $pid) did not stop within ${timeout}s; sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    local status=0
    wait "$pid" 2>/dev/null || status=$?
    case "$status" in
        0) echo "    $name stopped" ;;
        143) echo "    $name stopped by SIGTERM" ;;
        *) echo "    $name stopped with exit status $status" ;;
    esac
}

cleanup_done=0
# shellcheck disable=SC2317 # called from the EXIT trap
cleanup() {
    [ "$cleanup_done" -eq 0 ] || return 0
    cleanup_done=1
    trap - INT TERM
    say "stopping"
    # Prometheus first, so that it does not log failed remote writes while tocsind stops.
    stop_process prometheus "$prometheus_pid" 15
    stop_process tocsind "$tocsind_pid" 15
    stop_process node_exporter "$node_exporter_pid" 10
    echo "    logs and state stay in $run_dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Polls `url` until it returns 2xx, the process `pid` exits, or `timeout` seconds pass.
wait_ready() {
    local name="$1" url="$2" pid="$3" timeout="$4" log="$5"
    python3 - "$url" "$pid" "$timeout" <<'EOF' || { tail -n 20 "$log" >&2; fail "$name did not become ready at $url; see $log"; }
import os, sys, time, urllib.request
url, pid, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + timeout
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit(1)
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            if 200 <= response.status < 300:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.2)
sys.exit(1)
EOF
}

# Each server runs in its own session, so that Ctrl-C reaches only this script. Prometheus would
# otherwise stop on SIGINT by itself, and the order of the shutdown would be lost.
say "starting node_exporter on $node_exporter_url"
setsid prometheus-node-exporter --web.listen-address="127.0.0.1:$node_exporter_port" \
    --collector.disable-defaults --collector.cpu --collector.meminfo \
    --collector.filesystem --collector.loadavg \
    >"$log_dir/node_exporter.log" 2>&1 &
node_exporter_pid=$!
wait_ready node_exporter "$node_exporter_url/metrics" "$node_exporter_pid" 30 "$log_dir/node_exporter.log"

if [ "$once" -eq 1 ] && [ -d "$run_dir/state" ]; then
    # --once shows a first notification, which an alert announced by an earlier run would not get.
    say "removing the state of an earlier run ($run_dir/state)"
    rm -rf "$run_dir/state"
fi

say "starting tocsind on $tocsin_url"
setsid "$tocsind" --config "$run_dir/tocsin.yaml" >"$log_dir/tocsind.log" 2>&1 &
tocsind_pid=$!
wait_ready tocsind "$tocsin_url/-/ready" "$tocsind_pid" 30 "$log_dir/tocsind.log"

say "starting Prometheus on $prometheus_url"
setsid prometheus --config.file="$run_dir/prometheus.yml" \
    --storage.tsdb.path="$run_dir/prometheus-data" --storage.tsdb.retention.time=1d \
    --web.listen-address="127.0.0.1:$prometheus_port" \
    >"$log_dir/prometheus.log" 2>&1 &
prometheus_pid=$!
wait_ready prometheus "$prometheus_url/-/ready" "$prometheus_pid" 60 "$log_dir/prometheus.log"

# --- alerts -------------------------------------------------------------------------------------

# Prints the alerts from /api/v1/alerts as a table. Exits 0 if at least one alert is firing.
# Arguments: base URL, "wait" to poll until an alert fires or the timeout passes, timeout.
show_alerts() {
    python3 - "$@" <<'EOF'
import json, sys, time, urllib.request

base_url, mode, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])

def fetch():
    with urllib.request.urlopen(base_url + "/api/v1/alerts", timeout=5) as response:
        return json.load(response)["data"]["alerts"]

deadline = time.monotonic() + timeout
alerts = []
while True:
    try:
        alerts = fetch()
    except OSError as error:
        print(f"GET {base_url}/api/v1/alerts failed: {error}", file=sys.stderr)
    if mode != "wait" or any(a.get("state") == "firing" for a in alerts):
        break
    if time.monotonic() >= deadline:
        print(f"no alert fired within {timeout:.0f}s", file=sys.stderr)
        break
    time.sleep(1)

hidden = {"alertname", "severity", "instance", "job", "prometheus"}
rows = []
order = {"firing": 0, "pending": 1}
for a in sorted(alerts, key=lambda a: (order.get(a.get("state"), 2), a["labels"].get("alertname", ""))):
    labels = a.get("labels", {})
    extra = ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in hidden)
    rows.append([
        a.get("state", ""),
        a.get("severity", labels.get("severity", "")),
        labels.get("alertname", ""),
        labels.get("instance", "") + (f" {{{extra}}}" if extra else ""),
        a.get("value", ""),
        a.get("activeAt", ""),
        a.get("annotations", {}).get("summary", ""),
    ])
header = ["STATE", "SEVERITY", "ALERT", "INSTANCE", "VALUE", "ACTIVE SINCE", "SUMMARY"]
if not rows:
    print("(no active alerts)")
else:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    for r in [header] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
sys.exit(0 if any(a.get("state") == "firing" for a in alerts) else 1)
EOF
}

say "waiting up to ${alert_timeout}s for an alert to fire (Watchdog fires once samples arrive)"
fired=0
if show_alerts "$tocsin_url" wait "$alert_timeout"; then
    fired=1
fi

# Waits for the first notification of the alert group: a console line in the log, or a
# notification accepted by Slack or PagerDuty. group_wait in the example is 10s.
say "waiting up to 60s for the first notification (to ${delivery_targets[*]})"
notified=0
python3 - "$tocsin_url" "$log_dir/tocsind.log" <<'EOF' && notified=1
import re, sys, time, urllib.request
base_url, log_path = sys.argv[1], sys.argv[2]
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    with open(log_path, encoding="utf-8", errors="replace") as f:
        lines = [l.rstrip() for l in f]
    starts = [i for i, l in enumerate(lines) if "console receiver" in l]
    if starts:
        # The notification's own lines follow, indented by four spaces.
        first = starts[0]
        end = first + 1
        while end < len(lines) and lines[end].startswith("    "):
            end += 1
        print("\n".join(lines[first:end])[:4000])
        sys.exit(0)
    try:
        with urllib.request.urlopen(base_url + "/metrics", timeout=5) as response:
            text = response.read().decode()
        sent = sum(float(m) for m in re.findall(r"^tocsin_notifications_sent_total\{[^}]*\} (\S+)$", text, re.M))
        if sent > 0:
            print(f"{sent:.0f} notifications accepted by the receivers")
            sys.exit(0)
    except OSError:
        pass
    time.sleep(1)
print("no new notification within 60s. Alerts that an earlier run announced are not announced "
      "again before their repeat_interval, because the state folder keeps the notification log; "
      "--once starts from an empty state folder. See the tocsind log.", file=sys.stderr)
sys.exit(1)
EOF

cat <<EOF

    tocsind alerts    $tocsin_url/api/v1/alerts
    tocsind metrics   $tocsin_url/metrics
    Prometheus        $prometheus_url   (graph: $prometheus_url/graph)
    node_exporter     $node_exporter_url/metrics
    runtime folder    $run_dir (logs in $log_dir)
    reload rules      curl -X POST $tocsin_url/-/reload   (after editing $source_dir/examples/rules/)
EOF

if [ "$once" -eq 1 ]; then
    [ "$fired" -eq 1 ] && [ "$notified" -eq 1 ] || exit 1
    exit 0
fi

echo
say "running; press Ctrl-C to stop all three processes"
# Returns when a child exits (then the others are stopped too) or when Ctrl-C arrives.
status=0
wait -n "$node_exporter_pid" "$tocsind_pid" "$prometheus_pid" || status=$?
for name_pid in "node_exporter:$node_exporter_pid" "tocsind:$tocsind_pid" "prometheus:$prometheus_pid"; do
    if ! kill -0 "${name_pid#*:}" 2>/dev/null; then
        echo "run-example.sh: ${name_pid%%:*} exited unexpectedly (status $status); see $log_dir" >&2
    fi
done
exit 1
