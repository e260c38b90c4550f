"""Black-box tests of silences through Alertmanager's v2 silence API.

tocsind runs on 127.0.0.1 with a threshold rule and a webhook receiver served by
tocsin-fake-receivers. Samples go in over POST /api/v1/push. The tests create, list, update
and expire silences over HTTP and check what reaches the webhook, what the alerts API shows,
and that silences survive SIGKILL. Only the Python standard library is used.
"""

import json
import os
import signal
import time
import unittest

import harness

ARGS, UNITTEST_ARGV = harness.parse_args()
FAKE_RECEIVERS = os.path.join(ARGS.bin_dir, os.pardir, "tests", "tocsin-fake-receivers")

TIMEOUT_S = 20

CONFIG = """\
listen: 127.0.0.1:{port}
state_dir: {state_dir}
rule_files: ["rules/*.yaml"]
shutdown_timeout: 5s
route:
  receiver: hook
  group_by: [alertname, instance]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: http://127.0.0.1:{fake_port}/webhook/ops
        send_resolved: true
"""

RULES = """\
groups:
  - name: disks
    rules:
      - alert: DiskFull
        expr: disk_used_ratio
        tiers: {critical: '> 0.9'}
"""


def rfc3339(seconds):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class silences_test(unittest.TestCase):
    def setUp(self):
        self.dir = harness.temp_dir("tocsin-silences-", keep=ARGS.keep_temp)
        self.port = harness.free_port()
        self.fake_port = harness.free_port()
        self.events_path = os.path.join(self.dir.path, "events.jsonl")
        self.dir.file("rules/disks.yaml", RULES)
        self.config = self.dir.file("tocsin.yaml", CONFIG.format(
            port=self.port, state_dir=os.path.join(self.dir.path, "state"), fake_port=self.fake_port))
        self.fake = harness.server_process(
            "tocsin-fake-receivers", [FAKE_RECEIVERS, "--port", str(self.fake_port), "--events", self.events_path],
            os.path.join(self.dir.path, "fake-receivers.log"))
        harness.wait_until("tocsin-fake-receivers to listen", lambda: "listening on" in self.fake.log(), 30)
        self.daemon = None
        self.start()

    def tearDown(self):
        if self.daemon is not None and self.daemon.process.running():
            self.daemon.stop()
        self.fake.stop(timeout=10)

    def start(self):
        self.daemon = harness.tocsind(ARGS.bin_dir, self.config, self.port,
                                      os.path.join(self.dir.path, f"tocsind-{time.monotonic_ns()}.log")).start()

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def push(self, instance, value):
        response = self.daemon.push([({"__name__": "disk_used_ratio", "instance": instance}, value, None)])
        self.assertTrue(200 <= response.status < 300, response.text)

    def post_silence(self, body):
        return harness.http("POST", self.url("/api/v2/silences"), json.dumps(body),
                            {"Content-Type": "application/json"})

    def silence_body(self, matchers, minutes=60, **extra):
        now = time.time()
        body = {"matchers": matchers, "startsAt": rfc3339(now - 5), "endsAt": rfc3339(now + minutes * 60),
                "createdBy": "integration test", "comment": "disk replacement"}
        body.update(extra)
        return body

    def webhook_alerts(self):
        if not os.path.exists(self.events_path):
            return []
        out = []
        with open(self.events_path, encoding="utf-8") as f:
            for line in f:
                event = json.loads(line)
                self.assertTrue(event["accepted"], f"the webhook rejected a payload: {event['reason']}")
                for alert in event["body"]["alerts"]:
                    out.append((alert["labels"]["instance"], alert["status"]))
        return out

    def test_silenced_alert_is_not_sent_and_shows_in_the_api(self):
        created = self.post_silence(self.silence_body([{"name": "instance", "value": "db-1", "isRegex": False}]))
        self.assertEqual(created.status, 200, created.text)
        silence_id = created.json()["silenceID"]

        self.push("db-1", 0.95)
        self.push("web-1", 0.95)
        # db-1's group started first with no group_wait, so it has flushed once web-1's page is out.
        harness.wait_until("the web-1 page", lambda: ("web-1", "firing") in self.webhook_alerts(), TIMEOUT_S)
        self.assertNotIn(("db-1", "firing"), self.webhook_alerts())

        alerts = harness.http("GET", self.url("/api/v1/alerts")).json()["data"]["alerts"]
        by_instance = {a["labels"]["instance"]: a for a in alerts}
        self.assertEqual(by_instance["db-1"]["silencedBy"], [silence_id])
        self.assertEqual(by_instance["web-1"]["silencedBy"], [])

        listed = harness.http("GET", self.url("/api/v2/silences?filter=" + "instance%3D%22db-1%22")).json()
        self.assertEqual([s["id"] for s in listed], [silence_id])
        self.assertEqual(listed[0]["status"]["state"], "active")
        self.assertEqual(listed[0]["matchers"],
                         [{"name": "instance", "value": "db-1", "isRegex": False, "isEqual": True}])
        self.assertEqual(self.daemon.metric("tocsin_silences", state="active"), 1)

        # Expiring the silence lets the alert through at its group's next tick.
        expired = harness.http("DELETE", self.url(f"/api/v2/silence/{silence_id}"))
        self.assertEqual(expired.status, 200, expired.text)
        harness.wait_until("the db-1 page", lambda: ("db-1", "firing") in self.webhook_alerts(), TIMEOUT_S)
        again = harness.http("DELETE", self.url(f"/api/v2/silence/{silence_id}"))
        self.assertEqual(again.status, 409, again.text)
        self.assertIn("already expired", again.json())

    def test_silence_survives_sigkill(self):
        created = self.post_silence(self.silence_body([{"name": "instance", "value": "db-.*", "isRegex": True}]))
        self.assertEqual(created.status, 200, created.text)
        silence_id = created.json()["silenceID"]
        os.killpg(self.daemon.process.pid, signal.SIGKILL)
        self.daemon.process.popen.wait()

        self.start()
        got = harness.http("GET", self.url(f"/api/v2/silence/{silence_id}"))
        self.assertEqual(got.status, 200, got.text)
        self.assertEqual(got.json()["status"]["state"], "active")
        self.assertIn("restored 1 silences", self.daemon.log())
        self.push("db-7", 0.99)
        self.push("web-1", 0.99)
        harness.wait_until("the web-1 page", lambda: ("web-1", "firing") in self.webhook_alerts(), TIMEOUT_S)
        self.assertNotIn(("db-7", "firing"), self.webhook_alerts())

    def test_bad_silences_are_rejected_with_the_reason(self):
        cases = [
            ("{", 400, "invalid JSON"),
            (json.dumps(self.silence_body([])), 400, "no matchers"),
            (json.dumps(self.silence_body([{"name": "env", "value": ".*", "isRegex": True}])), 400,
             "matches the empty string"),
            (json.dumps(self.silence_body([{"name": "a", "value": "b", "isRegex": False}], minutes=-10)), 400,
             "is not after"),
            (json.dumps(self.silence_body([{"name": "a", "value": "b", "isRegex": False}], id="unknown")), 404,
             "not found"),
        ]
        for body, status, message in cases:
            response = harness.http("POST", self.url("/api/v2/silences"), body, {"Content-Type": "application/json"})
            self.assertEqual(response.status, status, f"{body[:60]}: {response.text}")
            self.assertIn(message, response.json())
        self.assertEqual(harness.http("GET", self.url("/api/v2/silence/nope")).status, 404)
        self.assertEqual(harness.http("GET", self.url("/api/v2/silences")).json(), [])
        self.assertTrue(self.daemon.process.running())


if __name__ == "__main__":
    harness.require_binary(os.path.join(ARGS.bin_dir, "tocsind"))
    unittest.main(argv=UNITTEST_ARGV)
