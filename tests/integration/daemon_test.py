"""Black-box tests of the tocsind process: config errors, reload, restarts, limits and auth.

Each test starts the built tocsind on 127.0.0.1 with a port chosen at run time and a config in a
temporary folder. It feeds samples through POST /api/v1/push and observes the daemon through its
HTTP API, /metrics, exit code and log. Only the Python standard library is used.
"""

import json
import os
import re
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import unittest
import urllib.error
import urllib.request

import harness

ARGS, UNITTEST_ARGV = harness.parse_args()
TOCSIND = os.path.join(ARGS.bin_dir, "tocsind")
TOCSINCTL = os.path.join(ARGS.bin_dir, "tocsinctl")

SHUTDOWN_TIMEOUT_S = 5
# How long a sample may take to turn into a firing alert with `for: 0s`. tocsind evaluates on
# every sample or tick (1s), and the margin is for a loaded machine.
ALERT_TIMEOUT_S = 15

MAIN_CONFIG = """\
listen: 127.0.0.1:{port}
state_dir: {state_dir}
rule_files: ["rules/*.yaml"]
shutdown_timeout: {shutdown}s
"""

# The good rule file: a cpu sample above 90 fires HighCpu at once.
RULES_V1 = """\
groups:
  - name: app
    rules:
      - alert: HighCpu
        expr: cpu
        tiers:
          warning: "> 90"
        annotations:
          summary: 'cpu {{ $value }} on {{ $labels.host }}'
"""

# Broken versions of RULES_V1. Each also raises the threshold to 99, so a sample of 95 that
# fires proves that the old rules are still the active ones. `line` is the line of the error.
BAD_RULES = {
    "yaml syntax error": ("""\
groups:
  - name: app
    rules:
      - alert: HighCpu
        expr: cpu
        tiers:
          warning: "> 99"
        annotations: summary: cpu is high
""", 8),
    "unknown field": ("""\
groups:
  - name: app
    rules:
      - alert: HighCpu
        expr: cpu
        tiers:
          warning: "> 99"
        severity_override: page
        annotations:
          summary: 'cpu {{ $value }} on {{ $labels.host }}'
""", 8),
    "unterminated template action": ("""\
groups:
  - name: app
    rules:
      - alert: HighCpu
        expr: cpu
        tiers:
          warning: "> 99"
        annotations:
          summary: 'cpu {{ $value on {{ $labels.host }}'
""", 9),
    "undefined template function": ("""\
groups:
  - name: app
    rules:
      - alert: HighCpu
        expr: cpu
        tiers:
          warning: "> 99"
        annotations:
          summary: 'cpu {{ $value | no_such_function }} on {{ $labels.host }}'
""", 9),
}

LOCATION = re.compile(r"([^\s:'\"]+):(\d+):(\d+)")


def locations(text, file_name):
    """Return the set of (line, column) positions that `text` reports for `file_name`."""
    return {(int(m.group(2)), int(m.group(3)))
            for m in LOCATION.finditer(text) if os.path.basename(m.group(1)) == file_name}


class daemon_test_case(unittest.TestCase):
    """Starts tocsind instances with their own folders and stops them after each test."""

    def setUp(self):
        self.dir = harness.temp_dir("tocsin-daemon-", keep=ARGS.keep_temp)
        self.daemons = []

    def tearDown(self):
        for daemon in self.daemons:
            if daemon.process is not None and daemon.process.running():
                daemon.kill()

    def write_config(self, rules=RULES_V1, extra="", port=None):
        port = port or harness.free_port()
        self.rule_file = self.dir.file("rules/app.yaml", rules)
        self.config_file = self.dir.file("tocsin.yaml", MAIN_CONFIG.format(
            port=port, state_dir=os.path.join(self.dir.path, "state"),
            shutdown=SHUTDOWN_TIMEOUT_S) + extra)
        return port

    def start_daemon(self, port, log_level="debug"):
        log_path = os.path.join(self.dir.path, f"tocsind-{len(self.daemons)}.log")
        daemon = harness.tocsind(ARGS.bin_dir, self.config_file, port, log_path, log_level)
        self.daemons.append(daemon)
        return daemon.start()

    def push_ok(self, daemon, labels, value, token=None):
        response = daemon.push([(labels, value, None)], token=token)
        self.assertTrue(200 <= response.status < 300,
                        f"push {labels}={value} returned {response.status}: {response.text}")

    def wait_alert(self, daemon, description, state="firing", timeout=ALERT_TIMEOUT_S, **labels):
        def probe():
            return harness.find_alerts(daemon.alerts(), state=state, **labels)
        try:
            return harness.wait_until(description, probe, timeout)[0]
        except AssertionError as error:
            raise AssertionError(f"{error}\nalerts: {daemon.alerts()}\n"
                                 f"log:\n{daemon.process.log_tail()}") from None

    def run_tool(self, argv, timeout=30):
        completed = subprocess.run(argv, capture_output=True, timeout=timeout)
        output = completed.stdout.decode(errors="replace") + completed.stderr.decode(errors="replace")
        return completed.returncode, output


class config_errors_test(daemon_test_case):
    def start_and_expect_exit(self):
        """Start tocsind on the current config; expect it to exit non-zero. Return its output."""
        self.startups = getattr(self, "startups", 0) + 1
        process = harness.server_process("tocsind", [TOCSIND, "--config", self.config_file],
                                         os.path.join(self.dir.path, f"startup-{self.startups}.log"))
        code = process.wait(timeout=20)
        if code is None:
            process.kill()
            self.fail(f"tocsind kept running with an invalid config; log:\n{process.log_tail()}")
        output = process.log()
        process.kill()
        self.assertNotEqual(code, 0, f"tocsind exited 0 with an invalid config; log:\n{output}")
        return output

    def test_bad_rule_file_stops_startup(self):
        for name, (rules, line) in BAD_RULES.items():
            with self.subTest(name):
                self.write_config(rules)
                output = self.start_and_expect_exit()
                found = locations(output, "app.yaml")
                self.assertTrue(found, f"no app.yaml:line:column in the output:\n{output}")
                self.assertIn(line, {l for l, _ in found},
                              f"error not reported on line {line}:\n{output}")

                check_code, check_output = self.run_tool([TOCSINCTL, "check", self.config_file])
                self.assertNotEqual(check_code, 0, f"tocsinctl check passed:\n{check_output}")
                self.assertEqual(locations(check_output, "app.yaml"), found,
                                 f"tocsinctl check and tocsind report different positions:\n"
                                 f"tocsinctl: {check_output}\ntocsind: {output}")

    def test_unknown_main_key_stops_startup(self):
        self.write_config(extra="retention: 5d\n")
        output = self.start_and_expect_exit()
        self.assertIn((5, 1), locations(output, "tocsin.yaml"),
                      f"expected tocsin.yaml:5:1 for the unknown key:\n{output}")
        self.assertIn("retention", output)

    def test_valid_config_passes_check(self):
        self.write_config()
        code, output = self.run_tool([TOCSINCTL, "check", self.config_file])
        self.assertEqual(code, 0, f"tocsinctl check rejected a valid config:\n{output}")


class reload_test(daemon_test_case):
    def reload_succeeded(self, daemon):
        return daemon.metric("tocsin_config_last_reload_successful")

    def test_failed_reload_keeps_old_rules(self):
        daemon = self.start_daemon(self.write_config())
        self.assertEqual(self.reload_succeeded(daemon), 1.0)

        for index, (name, (rules, _)) in enumerate(BAD_RULES.items()):
            for trigger in ("http", "sighup"):
                with self.subTest(f"{name} via {trigger}"):
                    self.check_failed_reload(daemon, rules, trigger, host=f"{trigger}-{index}")

    def check_failed_reload(self, daemon, rules, trigger, host):
        success_time = daemon.metric("tocsin_config_last_reload_success_timestamp_seconds")
        log_size = len(daemon.log())
        self.dir.file("rules/app.yaml", rules)

        if trigger == "http":
            response = daemon.reload()
            self.assertEqual(response.status, 400, f"POST /-/reload: {response.text}")
            self.assertTrue(locations(response.text, "app.yaml"),
                            f"the reload error does not name app.yaml:line:column: {response.text}")
            self.assertEqual(self.reload_succeeded(daemon), 0.0)
        else:
            daemon.process.signal(signal.SIGHUP)
            harness.wait_until("tocsin_config_last_reload_successful 0 after SIGHUP",
                               lambda: self.reload_succeeded(daemon) == 0.0, 10)
        self.assertTrue(daemon.process.running(), "tocsind exited after a failed reload")
        self.assertEqual(daemon.metric("tocsin_config_last_reload_success_timestamp_seconds"),
                         success_time, "a failed reload moved the last-success timestamp")
        new_log = daemon.log()[log_size:]
        self.assertIn("app.yaml", new_log, "no log line names the broken file")

        # 95 fires only under the old threshold of 90.
        self.push_ok(daemon, {"__name__": "cpu", "host": host}, 95)
        self.wait_alert(daemon, "the old rule to fire after the failed reload",
                        alertname="HighCpu", host=host)

        self.dir.file("rules/app.yaml", RULES_V1)
        if trigger == "http":
            response = daemon.reload()
            self.assertEqual(response.status, 200, f"reload of the fixed file: {response.text}")
            self.assertEqual(self.reload_succeeded(daemon), 1.0)
        else:
            daemon.process.signal(signal.SIGHUP)
            harness.wait_until("tocsin_config_last_reload_successful 1 after SIGHUP",
                               lambda: self.reload_succeeded(daemon) == 1.0, 10)
        self.assertGreaterEqual(
            daemon.metric("tocsin_config_last_reload_success_timestamp_seconds"), success_time)

    def test_failed_main_config_reload(self):
        port = self.write_config()
        daemon = self.start_daemon(port)
        with open(self.config_file, encoding="utf-8") as f:
            good_config = f.read()

        for trigger in ("http", "sighup"):
            with self.subTest(trigger):
                with open(self.config_file, "a", encoding="utf-8") as f:
                    f.write("retention: 5d\n")
                if trigger == "http":
                    response = daemon.reload()
                    self.assertEqual(response.status, 400, f"POST /-/reload: {response.text}")
                    self.assertIn((5, 1), locations(response.text, "tocsin.yaml"),
                                  f"the reload error does not name tocsin.yaml:5:1: {response.text}")
                    self.assertEqual(self.reload_succeeded(daemon), 0.0)
                else:
                    daemon.process.signal(signal.SIGHUP)
                    harness.wait_until("tocsin_config_last_reload_successful 0 after SIGHUP",
                                       lambda: self.reload_succeeded(daemon) == 0.0, 10)

                host = f"main-{trigger}"
                self.push_ok(daemon, {"__name__": "cpu", "host": host}, 95)
                self.wait_alert(daemon, "the old rules to fire after the failed reload",
                                alertname="HighCpu", host=host)

                self.dir.file("tocsin.yaml", good_config)
                response = daemon.reload()
                self.assertEqual(response.status, 200, f"reload of the fixed file: {response.text}")
                self.assertEqual(self.reload_succeeded(daemon), 1.0)

    def test_valid_reload_keeps_unchanged_alerts(self):
        rules = RULES_V1 + """\
      - alert: HighMem
        expr: mem
        tiers:
          warning: "> 90"
"""
        daemon = self.start_daemon(self.write_config(rules))
        self.push_ok(daemon, {"__name__": "cpu", "host": "a"}, 95)
        before = self.wait_alert(daemon, "HighCpu to fire", alertname="HighCpu", host="a")

        # HighMem changes and a new rule appears; HighCpu stays as it was.
        changed = RULES_V1 + """\
      - alert: HighMem
        expr: mem
        tiers:
          warning: "> 50"
      - alert: HighDisk
        expr: disk
        tiers:
          critical: "> 0.9"
"""
        self.dir.file("rules/app.yaml", changed)
        response = daemon.reload()
        self.assertEqual(response.status, 200, f"POST /-/reload: {response.text}")

        after = harness.find_alerts(daemon.alerts(), alertname="HighCpu", host="a")
        self.assertEqual(len(after), 1, f"HighCpu is gone after the reload: {daemon.alerts()}")
        self.assertEqual(after[0]["state"], "firing")
        self.assertEqual(after[0]["id"], before["id"])
        self.assertEqual(after[0]["activeAt"], before["activeAt"])

        self.push_ok(daemon, {"__name__": "cpu", "host": "a"}, 96)
        self.push_ok(daemon, {"__name__": "mem", "host": "a"}, 60)
        self.wait_alert(daemon, "the changed HighMem rule to fire at 60", alertname="HighMem", host="a")
        again = harness.find_alerts(daemon.alerts(), alertname="HighCpu", host="a")
        self.assertEqual([a["activeAt"] for a in again], [before["activeAt"]])


class restart_test(daemon_test_case):
    RULES = RULES_V1 + """\
      - alert: SustainedCpu
        expr: cpu
        for: 1h
        tiers:
          warning: "> 90"
"""

    def fire_and_snapshot(self, daemon, host):
        self.push_ok(daemon, {"__name__": "cpu", "host": host}, 95)
        firing = self.wait_alert(daemon, "HighCpu to fire", alertname="HighCpu", host=host)
        pending = self.wait_alert(daemon, "SustainedCpu to be pending", state="pending",
                                  alertname="SustainedCpu", host=host)
        return firing, pending

    def check_restored(self, daemon, firing, pending, restart):
        alerts = daemon.alerts()
        for before in (firing, pending):
            found = harness.find_alerts(alerts, **before["labels"])
            self.assertEqual(len(found), 1, f"{before['labels']} missing after {restart}: {alerts}")
            after = found[0]
            self.assertEqual(after["state"], before["state"], f"state changed after {restart}")
            self.assertEqual(after["id"], before["id"], f"id changed after {restart}")
            self.assertEqual(after["activeAt"], before["activeAt"], f"activeAt changed after {restart}")
            self.assertEqual(after.get("firedAt"), before.get("firedAt"), f"firedAt changed after {restart}")

    def test_kill_9_keeps_alerts(self):
        port = self.write_config(self.RULES)
        daemon = self.start_daemon(port)
        firing, pending = self.fire_and_snapshot(daemon, "k9")
        daemon.process.signal(signal.SIGKILL)
        daemon.process.wait(timeout=10)

        restarted = self.start_daemon(port)
        self.check_restored(restarted, firing, pending, "kill -9 and restart")

    def test_sigterm_exits_zero_and_keeps_alerts(self):
        port = self.write_config(self.RULES)
        daemon = self.start_daemon(port)
        firing, pending = self.fire_and_snapshot(daemon, "term")

        daemon.process.signal(signal.SIGTERM)
        code = daemon.process.wait(timeout=SHUTDOWN_TIMEOUT_S + 2)
        self.assertIsNotNone(code, f"tocsind still runs {SHUTDOWN_TIMEOUT_S + 2}s after SIGTERM "
                                   f"with shutdown_timeout {SHUTDOWN_TIMEOUT_S}s")
        self.assertEqual(code, 0, f"SIGTERM exit code; log:\n{daemon.process.log_tail()}")

        restarted = self.start_daemon(port)
        self.check_restored(restarted, firing, pending, "SIGTERM and restart")


class limits_test(daemon_test_case):
    def post_expecting_413(self, daemon, path, body, headers, request_name):
        try:
            response = harness.http("POST", daemon.base_url + path, body, headers)
        except OSError as error:
            self.fail(f"{request_name}: no HTTP response ({error}); tocsind running: "
                      f"{daemon.process.running()}; log:\n{daemon.process.log_tail()}")
        self.assertEqual(response.status, 413, f"{request_name}: {response.text}")
        self.assertTrue(daemon.process.running(), f"tocsind exited after {request_name}")

    def test_body_over_limit_gets_413(self):
        daemon = self.start_daemon(self.write_config(extra="limits:\n  max_body_bytes: 1KiB\n"))
        samples = [{"labels": {"__name__": "cpu", "host": f"h{i}"}, "value": 1.0} for i in range(100)]
        self.post_expecting_413(daemon, "/api/v1/push", json.dumps({"samples": samples}),
                                {"Content-Type": "application/json"}, "push of a 4 KiB body")
        self.post_expecting_413(daemon, "/api/v1/write", os.urandom(4096), {
            "Content-Type": "application/x-protobuf", "Content-Encoding": "snappy",
            "X-Prometheus-Remote-Write-Version": "0.1.0"}, "remote_write of a 4 KiB body")

        self.push_ok(daemon, {"__name__": "cpu", "host": "small"}, 95)
        self.wait_alert(daemon, "a small push to still work", alertname="HighCpu", host="small")


class auth_test(daemon_test_case):
    def test_tokens_guard_writes_and_reload(self):
        write_token = "write-" + secrets.token_hex(16)
        admin_token = "admin-" + secrets.token_hex(16)
        write_file = self.dir.file("write.token", write_token + "\n")
        admin_file = self.dir.file("admin.token", admin_token + "\n")
        port = self.write_config(extra=f"auth:\n  write_token_files: [{write_file}]\n"
                                       f"  admin_token_files: [{admin_file}]\n")
        daemon = self.start_daemon(port, log_level="trace")
        sample = [({"__name__": "cpu", "host": "auth"}, 95, None)]
        bodies = []

        for name, token in (("no token", None), ("wrong token", "wrong-" + write_token),
                            ("admin token", admin_token)):
            with self.subTest(f"push with {name}"):
                response = daemon.push(sample, token=token)
                bodies.append(response.text)
                self.assertEqual(response.status, 401, response.text)

        response = harness.http("POST", daemon.base_url + "/api/v1/push",
                                json.dumps({"samples": []}),
                                {"Authorization": "Basic " + write_token})
        self.assertEqual(response.status, 401, "a Basic header passed as a bearer token")

        response = harness.http("POST", daemon.base_url + "/api/v1/write", b"x", {
            "Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"})
        bodies.append(response.text)
        self.assertEqual(response.status, 401, f"remote_write without a token: {response.text}")

        self.push_ok(daemon, sample[0][0], 95, token=write_token)
        self.wait_alert(daemon, "the authorised push to fire", alertname="HighCpu", host="auth")

        for name, token in (("no token", None), ("write token", write_token)):
            with self.subTest(f"reload with {name}"):
                response = daemon.reload(token)
                bodies.append(response.text)
                self.assertIn(response.status, (401, 403), response.text)
        response = daemon.reload(admin_token)
        self.assertEqual(response.status, 200, f"reload with the admin token: {response.text}")

        exposed = daemon.metrics() + json.dumps(daemon.alerts()) + "".join(bodies)
        for token in (write_token, admin_token):
            self.assertNotIn(token, exposed, "a token appears in /metrics, alerts or a response")

        self.assertEqual(daemon.stop(), 0)
        log = daemon.log()
        for token in (write_token, admin_token):
            self.assertNotIn(token, log, "a token appears in tocsind's log")


class tls_test(daemon_test_case):
    def make_certificate(self):
        """Create a self-signed certificate for 127.0.0.1 with the openssl command."""
        if shutil.which("openssl") is None:
            self.skipTest("the openssl command is not installed")
        cert = os.path.join(self.dir.path, "tls.crt")
        key = os.path.join(self.dir.path, "tls.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", key, "-out", cert], check=True, capture_output=True, timeout=60)
        return cert, key

    def https(self, context, method, url, body=None):
        request = urllib.request.Request(url, data=body, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=5, context=context) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def test_tls_listener_serves_https_only(self):
        cert, key = self.make_certificate()
        port = self.write_config(extra=f"tls:\n  cert_file: {cert}\n  key_file: {key}\n")
        log_path = os.path.join(self.dir.path, "tocsind-tls.log")
        daemon = harness.tocsind(ARGS.bin_dir, self.config_file, port, log_path, scheme="https")
        self.daemons.append(daemon)
        daemon.start(wait_ready=False)
        context = ssl.create_default_context(cafile=cert)
        base = f"https://127.0.0.1:{port}"

        def ready():
            if not daemon.process.running():
                raise AssertionError(f"tocsind exited; log:\n{daemon.process.log_tail()}")
            return self.https(context, "GET", base + "/-/ready")[0] == 200
        harness.wait_until("tocsind to answer over TLS", ready, 30)

        body = json.dumps({"samples": [{"labels": {"__name__": "cpu", "host": "tls"}, "value": 95}]})
        status, text = self.https(context, "POST", base + "/api/v1/push", body.encode())
        self.assertEqual(status, 200, text)
        status, text = self.https(context, "GET", base + "/api/v1/alerts")
        self.assertEqual(status, 200, text)
        self.assertIn('"host":"tls"', text)

        try:
            response = harness.http("GET", f"http://127.0.0.1:{port}/-/healthy", timeout=3)
        except OSError:
            pass
        else:
            self.fail(f"plain HTTP on the TLS port got an HTTP answer: {response.status}")

        untrusted = ssl.create_default_context()
        with self.assertRaises(urllib.error.URLError, msg="a client must be able to verify the server"):
            self.https(untrusted, "GET", base + "/-/healthy")
        self.assertEqual(daemon.stop(), 0)

    def test_unreadable_key_stops_startup(self):
        cert, _ = self.make_certificate()
        self.write_config(extra=f"tls:\n  cert_file: {cert}\n  key_file: {cert}.missing\n")
        code, output = self.run_tool([TOCSIND, "--config", self.config_file], timeout=30)
        self.assertNotEqual(code, 0, "tocsind started without its TLS key")
        self.assertIn("key_file", output)


if __name__ == "__main__":
    harness.require_binary(TOCSIND)
    harness.require_binary(TOCSINCTL)
    result = unittest.main(argv=UNITTEST_ARGV, exit=False, verbosity=2).result
    sys.exit(0 if result.wasSuccessful() else 1)
