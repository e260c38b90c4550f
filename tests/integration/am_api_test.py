"""tocsind as the Alertmanager of a real Prometheus.

Prometheus (Debian's package) scrapes tocsind's /metrics and evaluates an alerting rule on
tocsin_silences: creating a silence in tocsind makes the rule fire, expiring it resolves the
rule. Prometheus sends both to tocsind's POST /api/v2/alerts, and tocsind must route them to the
webhook of tocsin-fake-receivers (which checks Alertmanager's webhook format), list the alert
on GET /api/v2/alerts while it fires, and announce the resolve. Bad batches are rejected with
the reason while their valid alerts are kept.

Exits 77 (skipped) when Prometheus is missing.
"""

import json
import os
import shutil
import time
import unittest

import harness

ARGS, UNITTEST_ARGV = harness.parse_args()
PROMETHEUS = shutil.which("prometheus")
FAKE_RECEIVERS = os.path.join(ARGS.bin_dir, os.pardir, "tests", "tocsin-fake-receivers")
TIMEOUT_S = 60

TOCSIN_CONFIG = """\
listen: 127.0.0.1:{port}
state_dir: {state_dir}
rule_files: []
shutdown_timeout: 5s
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: http://127.0.0.1:{fake_port}/webhook/ops
        send_resolved: true
"""

PROMETHEUS_CONFIG = """\
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [{rules}]
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:{tocsin_port}"]
scrape_configs:
  - job_name: tocsin
    static_configs:
      - targets: ["127.0.0.1:{tocsin_port}"]
"""

PROMETHEUS_RULES = """\
groups:
  - name: meta
    rules:
      - alert: SilenceActive
        expr: tocsin_silences{state="active"} > 0
        labels: {severity: warning}
        annotations: {summary: "a silence is active in tocsind"}
"""


def rfc3339(seconds):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class am_api_test(unittest.TestCase):
    def setUp(self):
        self.dir = harness.temp_dir("tocsin-am-api-", keep=ARGS.keep_temp)
        self.port = harness.free_port()
        self.fake_port = harness.free_port()
        self.events_path = os.path.join(self.dir.path, "events.jsonl")
        config = self.dir.file("tocsin.yaml", TOCSIN_CONFIG.format(
            port=self.port, state_dir=os.path.join(self.dir.path, "state"), fake_port=self.fake_port))
        self.fake = harness.server_process(
            "tocsin-fake-receivers", [FAKE_RECEIVERS, "--port", str(self.fake_port), "--events", self.events_path],
            os.path.join(self.dir.path, "fake-receivers.log"))
        harness.wait_until("tocsin-fake-receivers to listen", lambda: "listening on" in self.fake.log(), 30)
        self.daemon = harness.tocsind(ARGS.bin_dir, config, self.port,
                                      os.path.join(self.dir.path, "tocsind.log")).start()
        self.prometheus = None

    def tearDown(self):
        if self.prometheus is not None:
            self.prometheus.stop(timeout=10)
        if self.daemon.process.running():
            self.daemon.stop()
        self.fake.stop(timeout=10)

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def webhook_events(self):
        if not os.path.exists(self.events_path):
            return []
        with open(self.events_path, encoding="utf-8") as f:
            events = [json.loads(line) for line in f if line.strip()]
        for event in events:
            self.assertTrue(event["accepted"], f"the webhook rejected a payload: {event['reason']}")
        return events

    def alerts_with_status(self, name, status):
        out = []
        for event in self.webhook_events():
            for alert in event["body"]["alerts"]:
                if alert["labels"].get("alertname") == name and alert["status"] == status:
                    out.append(alert)
        return out

    def test_prometheus_alerts_route_notify_and_resolve(self):
        if PROMETHEUS is None:
            harness.skip("prometheus is not installed")
        rules = self.dir.file("prometheus-rules.yml", PROMETHEUS_RULES)
        prometheus_config = self.dir.file("prometheus.yml", PROMETHEUS_CONFIG.format(
            rules=rules, tocsin_port=self.port))
        self.prometheus = harness.start_prometheus(
            PROMETHEUS, prometheus_config, os.path.join(self.dir.path, "prometheus-data"), harness.free_port(),
            os.path.join(self.dir.path, "prometheus.log"))

        now = time.time()
        silence = {"matchers": [{"name": "alertname", "value": "Unrelated", "isRegex": False}],
                   "startsAt": rfc3339(now - 5), "endsAt": rfc3339(now + 3600),
                   "createdBy": "integration test", "comment": "makes the Prometheus rule fire"}
        created = harness.http("POST", self.url("/api/v2/silences"), json.dumps(silence),
                               {"Content-Type": "application/json"})
        self.assertEqual(created.status, 200, created.text)

        harness.wait_until("the SilenceActive page",
                           lambda: self.alerts_with_status("SilenceActive", "firing"), TIMEOUT_S)
        firing = self.alerts_with_status("SilenceActive", "firing")[0]
        self.assertEqual(firing["labels"]["severity"], "warning")
        self.assertEqual(firing["labels"]["job"], "tocsin")
        self.assertEqual(firing["annotations"]["summary"], "a silence is active in tocsind")
        self.assertIn("/graph?g0.expr=", firing["generatorURL"])

        listed = harness.http("GET", self.url("/api/v2/alerts?filter=alertname%3D%22SilenceActive%22")).json()
        self.assertEqual(len(listed), 1, listed)
        self.assertEqual(listed[0]["status"]["state"], "active")
        self.assertEqual(listed[0]["receivers"], [{"name": "hook"}])

        silence_id = created.json()["silenceID"]
        self.assertEqual(harness.http("DELETE", self.url(f"/api/v2/silence/{silence_id}")).status, 200)
        harness.wait_until("the SilenceActive resolve",
                           lambda: self.alerts_with_status("SilenceActive", "resolved"), TIMEOUT_S)
        self.assertEqual(len(self.alerts_with_status("SilenceActive", "firing")), 1,
                         "expected exactly one firing notification before the resolve")

    def test_bad_batches_keep_their_valid_alerts(self):
        now = time.time()
        good = {"labels": {"alertname": "FromScript", "instance": "a"}, "startsAt": rfc3339(now - 60)}
        cases = [
            ("{", 400, "invalid JSON"),
            ("{}", 400, "must be a JSON array"),
            (json.dumps([good, {"labels": {}}]), 400, "1 of 2 alerts were invalid"),
            (json.dumps([{"labels": {"alertname": "X"}, "startsAt": "yesterday"}]), 400, "not an RFC 3339 time"),
            (json.dumps([{"labels": {"alertname": "X"}, "startsAt": rfc3339(now), "endsAt": rfc3339(now - 60)}]),
             400, "is before startsAt"),
            ("[" + "[" * 20 + "]" * 20 + "]", 400, "deeper than"),
        ]
        for body, status, message in cases:
            response = harness.http("POST", self.url("/api/v2/alerts"), body, {"Content-Type": "application/json"})
            self.assertEqual(response.status, status, f"{body[:50]}: {response.text}")
            self.assertIn(message, response.json())
        listed = harness.http("GET", self.url("/api/v2/alerts")).json()
        self.assertEqual([a["labels"]["alertname"] for a in listed], ["FromScript"])
        groups = harness.http("GET", self.url("/api/v2/alerts/groups")).json()
        self.assertEqual([(g["labels"], g["receiver"]["name"], len(g["alerts"])) for g in groups],
                         [({"alertname": "FromScript"}, "hook", 1)])
        status = harness.http("GET", self.url("/api/v2/status")).json()
        self.assertEqual(status["cluster"]["status"], "disabled")
        self.assertIn("receivers:", status["config"]["original"])
        self.assertNotIn(f"127.0.0.1:{self.fake_port}/webhook", status["config"]["original"])
        self.assertEqual(harness.http("GET", self.url("/api/v2/receivers")).json(), [{"name": "hook"}])
        harness.wait_until("the FromScript page", lambda: self.alerts_with_status("FromScript", "firing"), TIMEOUT_S)
        self.assertTrue(self.daemon.process.running())


class alertmanager_flags_test(unittest.TestCase):
    """tocsind started as Alertmanager is: its flags and a plain alertmanager.yml."""

    def test_alertmanager_command_line(self):
        work = harness.temp_dir("tocsin-am-flags-", keep=ARGS.keep_temp)
        port = harness.free_port()
        config = work.file("alertmanager.yml", AM_CONFIG)
        argv = [os.path.join(ARGS.bin_dir, "tocsind"), "--config.file", config,
                "--storage.path", os.path.join(work.path, "data"),
                "--web.listen-address", f"127.0.0.1:{port}", "--cluster.listen-address=",
                "--web.route-prefix", "/am", "--log.level", "info"]
        process = harness.server_process("tocsind", argv, os.path.join(work.path, "tocsind.log"))
        try:
            harness.wait_http_ok(f"http://127.0.0.1:{port}/am/-/ready", process)
            self.assertEqual(harness.http("GET", f"http://127.0.0.1:{port}/-/ready").status, 404)
            status = harness.http("GET", f"http://127.0.0.1:{port}/am/api/v2/status").json()
            self.assertEqual(status["cluster"]["status"], "disabled")
            self.assertIn("--cluster.listen-address is an Alertmanager flag that tocsind ignores", process.log())
            self.assertTrue(os.path.exists(os.path.join(work.path, "data", "tocsin.db")))
        finally:
            process.stop(timeout=10)


AM_CONFIG = """\
route:
  receiver: hook
  group_by: [alertname]
receivers:
  - name: hook
    webhook_configs: [{url: "http://127.0.0.1:9/hook"}]
"""


if __name__ == "__main__":
    harness.require_binary(os.path.join(ARGS.bin_dir, "tocsind"))
    unittest.main(argv=UNITTEST_ARGV)
