"""Black-box tests of threshold overrides: PUT and DELETE /api/v1/rules/{name}/override.

Each test starts the built tocsind on 127.0.0.1 with a port chosen at run time and a config in a
temporary folder, and sets overrides over HTTP. It observes them through GET /api/v1/overrides,
GET /api/v1/rules, /metrics, the alerts and the log, across kill -9, reload and expiry. Only the
Python standard library is used.
"""

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import unittest

import harness

ARGS, UNITTEST_ARGV = harness.parse_args()
TOCSIND = os.path.join(ARGS.bin_dir, "tocsind")

# How long a pushed sample may take to show as an alert change, on a loaded machine.
ALERT_TIMEOUT_S = 15

MAIN_CONFIG = """\
listen: 127.0.0.1:{port}
state_dir: {state_dir}
rule_files: ["rules/*.yaml"]
shutdown_timeout: 5s
"""

RULES = """\
groups:
  - name: hosts
    rules:
      - alert: HighCpu
        expr: cpu
        tiers:
          warning: "> 90"
          critical: "> 95"
"""

# RULES without the critical tier, so that a reload must drop an override of critical.
RULES_WITHOUT_CRITICAL = """\
groups:
  - name: hosts
    rules:
      - alert: HighCpu
        expr: cpu
        tiers:
          warning: "> 90"
"""


class override_test_case(unittest.TestCase):
    def setUp(self):
        self.dir = harness.temp_dir("tocsin-overrides-", keep=ARGS.keep_temp)
        self.daemons = []
        self.port = harness.free_port()
        self.token = "admin-" + secrets.token_hex(16)
        self.token_file = self.dir.file("oncall.token", self.token + "\n")

    def tearDown(self):
        for daemon in self.daemons:
            if daemon.process is not None and daemon.process.running():
                daemon.kill()

    def write_config(self, rules=RULES, with_token=True):
        self.dir.file("rules/hosts.yaml", rules)
        extra = f"auth:\n  admin_token_files: [{self.token_file}]\n" if with_token else ""
        self.config_file = self.dir.file("tocsin.yaml", MAIN_CONFIG.format(
            port=self.port, state_dir=os.path.join(self.dir.path, "state")) + extra)

    def start_daemon(self):
        log_path = os.path.join(self.dir.path, f"tocsind-{len(self.daemons)}.log")
        daemon = harness.tocsind(ARGS.bin_dir, self.config_file, self.port, log_path)
        self.daemons.append(daemon)
        return daemon.start()

    def auth(self, token="default"):
        token = self.token if token == "default" else token
        return {} if token is None else {"Authorization": f"Bearer {token}"}

    def put_override(self, daemon, body, token="default", rule="HighCpu"):
        headers = {"Content-Type": "application/json", **self.auth(token)}
        return harness.http("PUT", f"{daemon.base_url}/api/v1/rules/{rule}/override",
                            json.dumps(body) if isinstance(body, dict) else body, headers)

    def delete_override(self, daemon, token="default", rule="HighCpu"):
        return harness.http("DELETE", f"{daemon.base_url}/api/v1/rules/{rule}/override", None,
                            self.auth(token))

    def overrides(self, daemon):
        response = harness.http("GET", daemon.base_url + "/api/v1/overrides")
        self.assertEqual(response.status, 200, response.text)
        return response.json()["data"]["overrides"]

    def rule(self, daemon, name="HighCpu"):
        response = harness.http("GET", daemon.base_url + "/api/v1/rules")
        self.assertEqual(response.status, 200, response.text)
        for group in response.json()["data"]["groups"]:
            for item in group["rules"]:
                if item["name"] == name:
                    return item
        self.fail(f"rule {name} missing from GET /api/v1/rules")

    def push(self, daemon, value, host="a"):
        response = daemon.push([({"__name__": "cpu", "host": host}, value, None)])
        self.assertTrue(200 <= response.status < 300, f"push cpu={value}: {response.status} {response.text}")

    def wait_severity(self, daemon, severity, host="a"):
        def probe():
            found = harness.find_alerts(daemon.alerts(), state="firing", alertname="HighCpu", host=host)
            return found[0] if found and found[0]["severity"] == severity else None
        return harness.wait_until(f"HighCpu on {host} to fire at {severity}", probe, ALERT_TIMEOUT_S)

    def check_override_visible(self, daemon, expires_at):
        listed = self.overrides(daemon)
        self.assertEqual(len(listed), 1, listed)
        item = listed[0]
        self.assertEqual(item["rule"], "HighCpu")
        self.assertEqual(item["expiresAt"], expires_at)
        self.assertEqual(item["author"], "alice")
        self.assertEqual(item["tokenName"], "oncall")
        self.assertEqual(item["reason"], "load test until 18:00")
        tiers = {t["severity"]: t["condition"] for t in item["tiers"]}
        self.assertEqual(tiers, {"warning": {"from": "> 90", "to": "> 92"},
                                 "critical": {"from": "> 95", "to": "> 97"}})

        rule = self.rule(daemon)
        self.assertEqual({t["severity"]: t["condition"] for t in rule["tiers"]},
                         {"warning": "> 92", "critical": "> 97"})
        self.assertEqual(rule["override"]["expiresAt"], expires_at)

        metrics = daemon.metrics()
        self.assertEqual(harness.metric_value(metrics, "tocsin_rule_threshold_override",
                                              rule="HighCpu", severity="critical"), 97)
        self.assertEqual(harness.metric_value(metrics, "tocsin_rule_threshold_override",
                                              rule="HighCpu", severity="warning"), 92)
        expiry = harness.metric_value(metrics, "tocsin_rule_threshold_override_expiry_timestamp_seconds",
                                      rule="HighCpu", severity="critical")
        self.assertAlmostEqual(expiry, harness.parse_rfc3339(expires_at), places=2)


class override_lifecycle_test(override_test_case):
    def test_override_applies_and_survives_kill_9(self):
        self.write_config()
        daemon = self.start_daemon()
        self.push(daemon, 96)
        before = self.wait_severity(daemon, "critical")

        response = self.put_override(daemon, {
            "tiers": {"critical": 97, "warning": 92}, "expires_in": "2h",
            "reason": "load test until 18:00", "author": "alice"})
        self.assertEqual(response.status, 200, response.text)
        expires_at = response.json()["data"]["expiresAt"]
        self.assertAlmostEqual(harness.parse_rfc3339(expires_at), time.time() + 7200, delta=60)
        self.check_override_visible(daemon, expires_at)

        # The override keeps the alert as it is until the next sample, which meets 97.
        kept = harness.find_alerts(daemon.alerts(), alertname="HighCpu", host="a")
        self.assertEqual([(a["id"], a["severity"], a["activeAt"]) for a in kept],
                         [(before["id"], "critical", before["activeAt"])])
        self.push(daemon, 96)
        stepped = self.wait_severity(daemon, "warning")
        self.assertEqual(stepped["id"], before["id"])
        self.assertEqual(stepped["activeAt"], before["activeAt"])

        log = daemon.log()
        self.assertIn("override set rule=HighCpu", log)
        self.assertIn("critical > 95 -> > 97", log)
        self.assertIn('author="alice"', log)
        self.assertNotIn(self.token, log, "the admin token appears in the log")

        daemon.process.signal(signal.SIGKILL)
        daemon.process.wait(timeout=10)
        restarted = self.start_daemon()
        self.check_override_visible(restarted, expires_at)
        self.assertIn("override restored rule=HighCpu", restarted.log())
        self.push(restarted, 96.5)
        self.assertEqual(self.wait_severity(restarted, "warning")["id"], before["id"])

        response = self.delete_override(restarted)
        self.assertEqual(response.status, 200, response.text)
        self.assertEqual(self.overrides(restarted), [])
        self.assertIsNone(harness.metric_value(restarted.metrics(), "tocsin_rule_threshold_override",
                                               rule="HighCpu", severity="critical"))
        self.assertNotIn("override", self.rule(restarted))
        self.push(restarted, 96)
        self.wait_severity(restarted, "critical")
        self.assertIn("override deleted rule=HighCpu", restarted.log())
        self.assertEqual(self.delete_override(restarted).status, 404)

        # Each change is in the audit log, whose chain verifies across the kill -9.
        audit_log = os.path.join(self.dir.path, "state", "audit.log")
        tocsinctl = os.path.join(ARGS.bin_dir, "tocsinctl")
        verify = subprocess.run([tocsinctl, "audit", "verify", audit_log], capture_output=True, text=True, timeout=30)
        self.assertEqual(verify.returncode, 0, verify.stdout + verify.stderr)
        shown = subprocess.run([tocsinctl, "audit", "show", audit_log, "--kind", "threshold_override", "--json"],
                               capture_output=True, text=True, timeout=30)
        self.assertEqual(shown.returncode, 0, shown.stderr)
        events = [json.loads(line)["details"]["event"] for line in shown.stdout.splitlines() if line.strip()]
        self.assertEqual(events, ["override set", "override deleted"])

    def test_override_expires(self):
        self.write_config()
        daemon = self.start_daemon()
        response = self.put_override(daemon, {"tiers": {"critical": 99}, "expires_in": "2s",
                                              "reason": "short test"})
        self.assertEqual(response.status, 200, response.text)
        self.assertEqual(response.json()["data"]["author"], "oncall")
        harness.wait_until("the override to expire", lambda: self.overrides(daemon) == [], 15)
        self.assertIsNone(daemon.metric("tocsin_rule_threshold_override_expiry_timestamp_seconds",
                                        rule="HighCpu", severity="critical"))
        self.assertIn("override expired; the rule file's thresholds apply again rule=HighCpu", daemon.log())
        self.push(daemon, 96)
        self.wait_severity(daemon, "critical")

        # Expired overrides are gone from the store too.
        daemon.process.signal(signal.SIGKILL)
        daemon.process.wait(timeout=10)
        self.assertEqual(self.overrides(self.start_daemon()), [])


class override_access_test(override_test_case):
    def test_refused_without_admin_token_configured(self):
        self.write_config(with_token=False)
        daemon = self.start_daemon()
        body = {"tiers": {"critical": 97}, "expires_in": "1h", "reason": "x"}
        response = self.put_override(daemon, body, token=None)
        self.assertEqual(response.status, 403, response.text)
        self.assertIn("auth.admin_token_files", response.text)
        self.assertEqual(self.delete_override(daemon, token=None).status, 403)
        self.assertEqual(self.overrides(daemon), [])

        # With a token configured and reloaded, the token is required and enough.
        self.write_config()
        self.assertEqual(daemon.reload().status, 200)
        for name, token in (("no token", None), ("wrong token", "wrong-" + self.token)):
            with self.subTest(name):
                self.assertEqual(self.put_override(daemon, body, token=token).status, 401)
        response = self.put_override(daemon, body)
        self.assertEqual(response.status, 200, response.text)

    def test_invalid_requests_name_the_problem(self):
        self.write_config()
        daemon = self.start_daemon()
        cases = [
            ("unknown rule", "NoSuchRule", {"tiers": {"critical": 97}, "expires_in": "1h", "reason": "x"},
             404, 'rule "NoSuchRule" not found'),
            ("unknown tier", "HighCpu", {"tiers": {"page": 97}, "expires_in": "1h", "reason": "x"},
             400, "rule HighCpu has no tier page; its tiers are warning, critical"),
            ("too long", "HighCpu", {"tiers": {"critical": 97}, "expires_in": "8d", "reason": "x"},
             400, "limits.max_override_duration"),
            ("no reason", "HighCpu", {"tiers": {"critical": 97}, "expires_in": "1h"},
             400, 'missing field "reason"'),
            ("not JSON", "HighCpu", "tiers=97", 400, "invalid JSON"),
        ]
        for name, rule, body, status, message in cases:
            with self.subTest(name):
                response = self.put_override(daemon, body, rule=rule)
                self.assertEqual(response.status, status, response.text)
                self.assertIn(message, response.text)
        response = harness.http("POST", daemon.base_url + "/api/v1/rules/HighCpu/override", b"{}",
                                self.auth())
        self.assertEqual(response.status, 405)
        self.assertEqual(self.overrides(daemon), [])

    def test_reload_drops_override_of_removed_tier(self):
        self.write_config()
        daemon = self.start_daemon()
        response = self.put_override(daemon, {"tiers": {"critical": 97}, "expires_in": "1h",
                                              "reason": "x"})
        self.assertEqual(response.status, 200, response.text)

        self.write_config(RULES_WITHOUT_CRITICAL)
        response = daemon.reload(self.token)
        self.assertEqual(response.status, 200, response.text)
        self.assertEqual(self.overrides(daemon), [])
        self.assertIn("reload: dropping the threshold override of rule HighCpu", daemon.log())
        self.assertIn("rule HighCpu has no tier critical", daemon.log())

        daemon.process.signal(signal.SIGKILL)
        daemon.process.wait(timeout=10)
        self.assertEqual(self.overrides(self.start_daemon()), [])


if __name__ == "__main__":
    harness.require_binary(TOCSIND)
    result = unittest.main(argv=UNITTEST_ARGV, exit=False, verbosity=2).result
    sys.exit(0 if result.wasSuccessful() else 1)
