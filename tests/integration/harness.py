"""Shared helpers for the black-box tests: processes, ports, HTTP and bounded polling.

Every server runs on 127.0.0.1 in its own process group, so that a test can always stop it and
anything it spawned. Only the Python standard library is used.
"""

import argparse
import atexit
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

# CTest reports a test that exits with this code as skipped (SKIP_RETURN_CODE).
SKIP_EXIT_CODE = 77


def parse_args():
    """Parse --bin-dir and --source-dir, and leave the rest for unittest."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bin-dir", required=True,
                        help="folder that holds the built tocsind and tocsinctl")
    parser.add_argument("--source-dir", required=True, help="root of the tocsin checkout")
    parser.add_argument("--keep-temp", action="store_true",
                        help="keep the temporary folders (configs, logs) for inspection")
    args, rest = parser.parse_known_args()
    args.bin_dir = os.path.abspath(args.bin_dir)
    args.source_dir = os.path.abspath(args.source_dir)
    return args, [sys.argv[0]] + rest


def skip(reason):
    """Print why the whole test file is skipped and exit with the CTest skip code."""
    print(f"SKIP: {reason}", flush=True)
    sys.exit(SKIP_EXIT_CODE)


def require_binary(path):
    if not os.access(path, os.X_OK):
        print(f"FAIL: {path} is missing or not executable; build the tocsind and tocsinctl "
              f"targets first", file=sys.stderr)
        sys.exit(1)


def free_port():
    """Return a TCP port on 127.0.0.1 that nothing listens on right now.

    Another process can take the port before the server binds it. The server then fails to
    start with an address-in-use error in its log.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class temp_dir:
    """A temporary folder, removed at exit unless `keep` is set."""

    def __init__(self, prefix, keep=False):
        self.path = tempfile.mkdtemp(prefix=prefix)
        self.keep = keep
        atexit.register(self.remove)

    def remove(self):
        if self.keep:
            print(f"kept {self.path}", file=sys.stderr)
        else:
            shutil.rmtree(self.path, ignore_errors=True)

    def file(self, name, text):
        path = os.path.join(self.path, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path


_running = []


def _kill_all_at_exit():
    for process in list(_running):
        process.kill()


atexit.register(_kill_all_at_exit)


class server_process:
    """A child process in its own process group, with stdout and stderr in one log file."""

    def __init__(self, name, argv, log_path, env=None):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.log_file = open(log_path, "ab")
        self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log_file,
                                      stderr=subprocess.STDOUT, start_new_session=True, env=env)
        _running.append(self)

    @property
    def pid(self):
        return self.popen.pid

    def running(self):
        return self.popen.poll() is None

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", errors="replace")

    def log_tail(self, lines=30):
        return "\n".join(self.log().splitlines()[-lines:])

    def signal(self, signum):
        if self.running():
            os.kill(self.popen.pid, signum)

    def wait(self, timeout):
        """Wait for the exit; return the exit code, or None if it is still running."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=15):
        """Send SIGTERM, wait up to `timeout` seconds, then SIGKILL the group. Return the code."""
        self.signal(signal.SIGTERM)
        code = self.wait(timeout)
        if code is None:
            self.kill()
            code = self.popen.wait()
        self._forget()
        return code

    def kill(self):
        """SIGKILL the whole process group and reap the process."""
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.popen.wait()
        self._forget()

    def _forget(self):
        if self in _running:
            _running.remove(self)
        self.log_file.close()


class http_response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def text(self):
        return self.body.decode("utf-8", errors="replace")

    def json(self):
        return json.loads(self.body)


def http(method, url, body=None, headers=None, timeout=5):
    """Send one request and return the response, also for 4xx and 5xx statuses.

    Raises OSError when the connection fails.
    """
    if isinstance(body, str):
        body = body.encode("utf-8")
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return http_response(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as error:
        return http_response(error.code, dict(error.headers), error.read())


def wait_until(description, probe, timeout, interval=0.2):
    """Call `probe` until it returns a true value or `timeout` seconds pass.

    An OSError from `probe`, such as a server that does not listen yet, counts as a false value.
    On timeout raises AssertionError with `description` and the last value or error seen.
    """
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            result = probe()
            if result:
                return result
            last = result
        except OSError as error:
            last = error
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {description}; last seen: {last!r}")
        time.sleep(interval)


def wait_http_ok(url, process, timeout=30):
    """Wait until GET `url` returns 2xx. Fails at once if `process` exits meanwhile."""
    def probe():
        if not process.running():
            raise AssertionError(f"{process.name} exited with code {process.popen.returncode} "
                                 f"before {url} answered; log:\n{process.log_tail()}")
        return 200 <= http("GET", url, timeout=2).status < 300
    try:
        wait_until(f"{url} to answer 2xx", probe, timeout)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{process.name} log:\n{process.log_tail()}") from None


def get_alerts(base_url, headers=None):
    response = http("GET", base_url + "/api/v1/alerts", headers=headers)
    if response.status != 200:
        raise AssertionError(f"GET /api/v1/alerts returned {response.status}: {response.text}")
    document = response.json()
    if document.get("status") != "success":
        raise AssertionError(f"GET /api/v1/alerts returned status {document.get('status')!r}")
    return document["data"]["alerts"]


def find_alerts(alerts, state=None, **labels):
    """Return the alerts whose labels contain `labels` and, if given, whose state is `state`."""
    found = []
    for alert in alerts:
        if state is not None and alert.get("state") != state:
            continue
        if all(alert.get("labels", {}).get(k) == v for k, v in labels.items()):
            found.append(alert)
    return found


_sample_line = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def metric_values(exposition, name):
    """Return [(labels dict, float value)] for every sample of `name` in Prometheus text format."""
    values = []
    for line in exposition.splitlines():
        match = _sample_line.match(line)
        if not match or match.group(1) != name:
            continue
        labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        values.append((labels, float(match.group(3))))
    return values


def metric_value(exposition, name, **labels):
    """Return the value of the one sample of `name` with `labels`, or None if it is absent."""
    for sample_labels, value in metric_values(exposition, name):
        if all(sample_labels.get(k) == v for k, v in labels.items()):
            return value
    return None


def parse_rfc3339(text):
    """Return seconds since the epoch for an RFC 3339 timestamp such as 2024-12-01T10:00:00.5Z."""
    from datetime import datetime
    normalised = text.replace("Z", "+00:00").replace("z", "+00:00")
    # datetime.fromisoformat in Python 3.11 accepts any fraction length; older versions want 6.
    match = re.match(r"^(.*T\d\d:\d\d:\d\d)(\.\d+)?(.*)$", normalised)
    if match and match.group(2):
        normalised = match.group(1) + (match.group(2) + "000000")[:7] + match.group(3)
    return datetime.fromisoformat(normalised).timestamp()


class tocsind:
    """A tocsind process on 127.0.0.1 with a config file written by the test."""

    def __init__(self, bin_dir, config_path, port, log_path, log_level="debug", scheme="http"):
        self.binary = os.path.join(bin_dir, "tocsind")
        self.config_path = config_path
        self.port = port
        self.log_path = log_path
        self.log_level = log_level
        self.base_url = f"{scheme}://127.0.0.1:{port}"
        self.process = None

    def start(self, wait_ready=True):
        argv = [self.binary, "--config", self.config_path, "--log-level", self.log_level]
        self.process = server_process("tocsind", argv, self.log_path)
        if wait_ready:
            wait_http_ok(self.base_url + "/-/ready", self.process)
        return self

    def stop(self, timeout=15):
        return self.process.stop(timeout)

    def kill(self):
        self.process.kill()

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", errors="replace")

    def push(self, samples, token=None):
        """POST /api/v1/push with [(labels, value, timestamp_ms or None)]."""
        body = {"samples": []}
        for labels, value, timestamp_ms in samples:
            sample = {"labels": labels, "value": value}
            if timestamp_ms is not None:
                sample["timestamp_ms"] = timestamp_ms
            body["samples"].append(sample)
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return http("POST", self.base_url + "/api/v1/push", json.dumps(body), headers)

    def reload(self, token=None):
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return http("POST", self.base_url + "/-/reload", b"", headers)

    def metrics(self):
        response = http("GET", self.base_url + "/metrics")
        if response.status != 200:
            raise AssertionError(f"GET /metrics returned {response.status}: {response.text}")
        return response.text

    def metric(self, name, **labels):
        return metric_value(self.metrics(), name, **labels)

    def alerts(self):
        return get_alerts(self.base_url)


def start_node_exporter(binary, port, log_path):
    """Start node_exporter with only the loadavg collector on 127.0.0.1 and wait until it serves."""
    process = server_process(
        "node_exporter",
        [binary, f"--web.listen-address=127.0.0.1:{port}", "--collector.disable-defaults",
         "--collector.loadavg"],
        log_path)
    wait_http_ok(f"http://127.0.0.1:{port}/metrics", process)
    return process


def start_prometheus(binary, config_path, data_dir, port, log_path):
    """Start Prometheus on 127.0.0.1 and wait until it is ready."""
    process = server_process(
        "prometheus",
        [binary, f"--config.file={config_path}", f"--storage.tsdb.path={data_dir}",
         f"--web.listen-address=127.0.0.1:{port}"],
        log_path)
    wait_http_ok(f"http://127.0.0.1:{port}/-/ready", process, timeout=60)
    return process
