"""Escalation, acknowledgements and the storm guard, end to end.

tocsind takes alerts on POST /api/v2/alerts and delivers to tocsin-fake-receivers, which checks
every payload against Alertmanager's webhook format. An unacknowledged alert reaches the escalation
receiver after the step's delay. An acknowledged one does not until the acknowledgement is
withdrawn. A flood of new alerts for a receiver with a storm guard arrives
there as one digest, and the alerts stay listed in the API.
"""

import json
import os
import subprocess
import time
import unittest

import harness

ARGS, UNITTEST_ARGV = harness.parse_args()
FAKE_RECEIVERS = os.path.join(ARGS.bin_dir, os.pardir, "tests", "tocsin-fake-receivers")
TIMEOUT_S = 30
ADMIN_TOKEN = "admin-token-for-fatigue-test"

TOCSIN_CONFIG = """\
listen: 127.0.0.1:{port}
state_dir: {state_dir}
rule_files: []
shutdown_timeout: 5s
auth:
  admin_token_files: [{token_file}]
route:
  receiver: oncall
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
  escalate:
    - after: 3s
      receiver: lead
  routes:
    - matchers: ['team="data"']
      receiver: data-science
      escalate: []
receivers:
  - name: oncall
    webhook_configs:
      - url: http://127.0.0.1:{fake_port}/webhook/oncall
  - name: lead
    webhook_configs:
      - url: http://127.0.0.1:{fake_port}/webhook/lead
  - name: data-science
    storm_guard: {{max_new_alerts: 3, window: 10m}}
    webhook_configs:
      - url: http://127.0.0.1:{fake_port}/webhook/data-science
"""


def rfc3339(seconds):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class fatigue_test(unittest.TestCase):
    def setUp(self):
        self.dir = harness.temp_dir("tocsin-fatigue-", keep=ARGS.keep_temp)
        self.port = harness.free_port()
        self.fake_port = harness.free_port()
        self.events_path = os.path.join(self.dir.path, "events.jsonl")
        token_file = self.dir.file("admin.token", ADMIN_TOKEN + "\n")
        config = self.dir.file("tocsin.yaml", TOCSIN_CONFIG.format(
            port=self.port, state_dir=os.path.join(self.dir.path, "state"), fake_port=self.fake_port,
            token_file=token_file))
        self.fake = harness.server_process(
            "tocsin-fake-receivers", [FAKE_RECEIVERS, "--port", str(self.fake_port), "--events", self.events_path],
            os.path.join(self.dir.path, "fake-receivers.log"))
        harness.wait_until("tocsin-fake-receivers to listen", lambda: "listening on" in self.fake.log(), 30)
        self.daemon = harness.tocsind(ARGS.bin_dir, config, self.port,
                                      os.path.join(self.dir.path, "tocsind.log")).start()

    def tearDown(self):
        if self.daemon.process.running():
            self.daemon.stop()
        self.fake.stop(timeout=10)

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def post_alerts(self, alerts):
        response = harness.http("POST", self.url("/api/v2/alerts"), json.dumps(alerts),
                                {"Content-Type": "application/json"})
        self.assertEqual(response.status, 200, response.text)

    def ack(self, method, alert_id, body=None, token=ADMIN_TOKEN):
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = "Bearer " + token
        return harness.http(method, self.url(f"/api/v1/alerts/{alert_id}/ack"),
                            None if body is None else json.dumps(body), headers)

    def notifications(self, receiver):
        """Webhook bodies that reached /webhook/<receiver>, in order."""
        if not os.path.exists(self.events_path):
            return []
        with open(self.events_path, encoding="utf-8") as f:
            events = [json.loads(line) for line in f if line.strip()]
        out = []
        for event in events:
            self.assertTrue(event["accepted"], f"the webhook rejected a payload: {event['reason']}")
            if event["path"] == f"/webhook/{receiver}":
                out.append(event["body"])
        return out

    def fingerprint(self, instance):
        listed = harness.http("GET", self.url("/api/v2/alerts")).json()
        for a in listed:
            if a["labels"].get("instance") == instance:
                return a["fingerprint"]
        self.fail(f"alert of instance {instance} is not listed: {listed}")

    def test_escalation_skips_acknowledged_alerts_until_withdrawn(self):
        now = time.time()
        self.post_alerts([
            {"labels": {"alertname": "ModelLatencyHigh", "instance": "canary", "severity": "critical"},
             "startsAt": rfc3339(now)},
            {"labels": {"alertname": "ModelLatencyHigh", "instance": "main", "severity": "critical"},
             "startsAt": rfc3339(now)},
        ])
        canary = self.fingerprint("canary")

        # Access control and bad input first: nothing is recorded by these.
        self.assertEqual(self.ack("POST", canary, {"by": "alice"}, token=None).status, 401)
        bad = self.ack("POST", canary, {"by": ""})
        self.assertEqual(bad.status, 400)
        self.assertIn('"by" is missing or empty', bad.text)
        self.assertEqual(self.ack("POST", canary, {"by": "alice", "owner": "x"}).status, 400)
        self.assertEqual(self.ack("POST", "0123456789abcdef", {"by": "alice"}).status, 404)
        self.assertEqual(self.ack("POST", "not-hex", {"by": "alice"}).status, 400)

        done = self.ack("POST", canary, {"by": "alice", "comment": "rolling back the canary"})
        self.assertEqual(done.status, 200, done.text)
        self.assertEqual(done.json()["acknowledged"]["by"], "alice")
        self.assertEqual(done.json()["acknowledged"]["comment"], "rolling back the canary")
        audit = subprocess.run([os.path.join(ARGS.bin_dir, "tocsinctl"), "audit", "show",
                                os.path.join(self.dir.path, "state", "audit.log"), "--kind", "acknowledgement",
                                "--json"], capture_output=True, text=True, timeout=30)
        self.assertEqual(audit.returncode, 0, audit.stderr)
        records = [json.loads(line) for line in audit.stdout.splitlines() if line.strip()]
        self.assertEqual([(r["actor"], r["details"]["comment"]) for r in records],
                         [("alice", "rolling back the canary")])

        harness.wait_until("the escalation to lead", lambda: self.notifications("lead"), TIMEOUT_S)
        first = self.notifications("lead")[0]
        self.assertEqual([a["labels"]["instance"] for a in first["alerts"]], ["main"])
        self.assertEqual(first["alerts"][0]["annotations"]["escalation"],
                         "step 1: firing for 3s or more without an acknowledgement")
        self.assertTrue(self.notifications("oncall"))

        withdrawn = self.ack("DELETE", canary)
        self.assertEqual(withdrawn.status, 200, withdrawn.text)
        self.assertIsNone(withdrawn.json()["acknowledged"])

        def both_escalated():
            return any(sorted(a["labels"]["instance"] for a in n["alerts"] if a["status"] == "firing") ==
                       ["canary", "main"] for n in self.notifications("lead"))
        harness.wait_until("the canary alert at lead after the withdrawal", both_escalated, TIMEOUT_S)

        self.assertEqual(harness.metric_value(self.daemon.metrics(), "tocsin_escalations_total"), 2)

        # An acknowledgement survives a kill -9 of tocsind, because it is saved before the response.
        self.assertEqual(self.ack("POST", canary, {"by": "bob", "comment": "still on it"}).status, 200)
        self.daemon.kill()
        self.daemon.start()
        shown = self.ack("GET", canary, token=None)
        self.assertEqual(shown.status, 200, shown.text)
        self.assertEqual(shown.json()["acknowledged"]["by"], "bob")
        self.assertEqual(shown.json()["acknowledged"]["comment"], "still on it")

    def test_routes_test_lists_the_escalation_steps(self):
        tocsinctl = os.path.join(ARGS.bin_dir, "tocsinctl")
        config = os.path.join(self.dir.path, "tocsin.yaml")
        done = subprocess.run([tocsinctl, "routes", "test", "--config", config, "alertname=ModelLatencyHigh",
                               "--verify-receivers", "oncall"], capture_output=True, text=True, timeout=30)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn("oncall\troute={}", done.stdout)
        self.assertIn("\tescalates to lead after 3s when not acknowledged (step 1)", done.stdout)
        data = subprocess.run([tocsinctl, "routes", "test", "--config", config, "alertname=X", "team=data"],
                              capture_output=True, text=True, timeout=30)
        self.assertEqual(data.returncode, 0, data.stderr)
        self.assertIn("data-science", data.stdout)
        self.assertNotIn("escalates", data.stdout)  # escalate: [] turns it off below

    def test_storm_guard_sends_one_digest_for_a_flood(self):
        now = time.time()
        flood = [{"labels": {"alertname": "FeatureMissing", "team": "data", "model": "churn",
                             "feature": f"f{i:02d}", "severity": "warning"},
                  "startsAt": rfc3339(now)} for i in range(20)]
        self.post_alerts(flood)
        harness.wait_until("the storm digest", lambda: self.notifications("data-science"), TIMEOUT_S)
        sent = self.notifications("data-science")
        self.assertEqual(len(sent), 1, json.dumps(sent, indent=1)[:2000])
        digest = sent[0]["alerts"]
        self.assertEqual(len(digest), 1)
        self.assertEqual(digest[0]["labels"]["alertname"], "AlertStorm")
        self.assertEqual(digest[0]["labels"]["receiver"], "data-science")
        self.assertIn("stands for 20 of them", digest[0]["annotations"]["summary"])
        self.assertIn('model="churn"', digest[0]["annotations"]["description"])

        listed = harness.http("GET", self.url("/api/v2/alerts")).json()
        self.assertEqual(len([a for a in listed if a["labels"]["alertname"] == "FeatureMissing"]), 20)
        self.assertEqual(harness.metric_value(self.daemon.metrics(), "tocsin_alert_storms"), 1)

        # Resolving every alert of the storm resolves the digest.
        for a in flood:
            a["endsAt"] = a["startsAt"]  # in the past, and never before the start
        self.post_alerts(flood)
        harness.wait_until("the resolved digest",
                           lambda: any(n["status"] == "resolved" for n in self.notifications("data-science")),
                           TIMEOUT_S)
        # Over the whole flood, the receiver heard the digest and its resolve, nothing else.
        sent = self.notifications("data-science")
        self.assertEqual([(n["status"], n["alerts"][0]["labels"]["alertname"]) for n in sent],
                         [("firing", "AlertStorm"), ("resolved", "AlertStorm")])


if __name__ == "__main__":
    unittest.main(argv=UNITTEST_ARGV)
