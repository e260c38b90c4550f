"""Black-box test of the noise report: GET /api/v1/report/noise and `tocsinctl report noise`.

tocsind runs on 127.0.0.1 with a webhook receiver of tocsin-fake-receivers (which checks
Alertmanager's webhook format). Alerts go in through POST /api/v2/alerts, so notifications go
out; some are resolved. The report must then count the notifications, episodes and firing times
exactly, keep them across a restart, cut a long period to history_retention, and reject a bad
`since` with a 400 that names the value. Only the Python standard library is used.
"""

import json
import os
import subprocess
import time
import unittest

import harness

ARGS, UNITTEST_ARGV = harness.parse_args()
TOCSINCTL = os.path.join(ARGS.bin_dir, "tocsinctl")
FAKE_RECEIVERS = os.path.join(ARGS.bin_dir, os.pardir, "tests", "tocsin-fake-receivers")
TIMEOUT_S = 30

CONFIG = """\
listen: 127.0.0.1:{port}
state_dir: {state_dir}
rule_files: []
shutdown_timeout: 5s
history_retention: 40d
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


def rfc3339(seconds):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class noise_report_test(unittest.TestCase):
    def setUp(self):
        self.dir = harness.temp_dir("tocsin-noise-", keep=ARGS.keep_temp)
        self.port = harness.free_port()
        self.fake_port = harness.free_port()
        self.events_path = os.path.join(self.dir.path, "events.jsonl")
        self.config = self.dir.file("tocsin.yaml", CONFIG.format(
            port=self.port, state_dir=os.path.join(self.dir.path, "state"), fake_port=self.fake_port))
        self.fake = harness.server_process(
            "tocsin-fake-receivers", [FAKE_RECEIVERS, "--port", str(self.fake_port), "--events", self.events_path],
            os.path.join(self.dir.path, "fake-receivers.log"))
        harness.wait_until("tocsin-fake-receivers to listen", lambda: "listening on" in self.fake.log(), 30)
        self.daemon = harness.tocsind(ARGS.bin_dir, self.config, self.port,
                                      os.path.join(self.dir.path, "tocsind.log")).start()
        self.base = f"http://127.0.0.1:{self.port}"

    def tearDown(self):
        if self.daemon.process.running():
            self.daemon.stop()
        self.fake.stop(timeout=10)

    def webhook_alerts(self, status):
        """(alertname, instance) of every alert with `status` that the webhook accepted, in order."""
        if not os.path.exists(self.events_path):
            return []
        out = []
        with open(self.events_path, encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    continue
                event = json.loads(line)
                self.assertTrue(event["accepted"], f"the webhook rejected a payload: {event['reason']}")
                for alert in event["body"]["alerts"]:
                    if alert["status"] == status:
                        out.append((alert["labels"]["alertname"], alert["labels"]["instance"]))
        return out

    def post_alerts(self, alerts):
        response = harness.http("POST", self.base + "/api/v2/alerts", json.dumps(alerts),
                                {"Content-Type": "application/json"})
        self.assertEqual(response.status, 200, response.text)

    def report(self, query="since=1h"):
        response = harness.http("GET", self.base + "/api/v1/report/noise?" + query)
        self.assertEqual(response.status, 200, response.text)
        document = response.json()
        self.assertEqual(document["status"], "success")
        return document["data"]

    def ctl(self, *args):
        """Run tocsinctl report noise ARGS against the daemon; return (exit code, stdout, stderr)."""
        env = {k: v for k, v in os.environ.items() if k not in ("TOCSIN_URL", "TOCSIN_TOKEN")}
        done = subprocess.run([TOCSINCTL, "report", "noise", "--url", self.base, *args],
                              capture_output=True, text=True, timeout=60, env=env)
        return done.returncode, done.stdout, done.stderr

    @staticmethod
    def stats(item):
        return (item["notifications"], item["episodes"], item["resolved_episodes"], item["median_firing_seconds"],
                item["resolved_within_5m"], item["flapping_seconds"])

    def test_report_counts_notifications_and_episodes(self):
        start = int(time.time()) - 600

        def alert(name, instance, ends=None):
            item = {"labels": {"alertname": name, "instance": instance, "severity": "warning"},
                    "startsAt": rfc3339(start)}
            if ends is not None:
                item["endsAt"] = rfc3339(ends)
            return item

        # One notification per group: DiskFull with a and b, HighCpu with c.
        self.post_alerts([alert("DiskFull", "a"), alert("DiskFull", "b"), alert("HighCpu", "c")])
        harness.wait_until("both groups to notify",
                           lambda: len(self.webhook_alerts("firing")) == 3, TIMEOUT_S)
        # DiskFull a resolves after 4 minutes of firing, HighCpu c after 7: one more notification each.
        self.post_alerts([alert("DiskFull", "a", start + 240), alert("HighCpu", "c", start + 420)])
        harness.wait_until("both resolves", lambda: sorted(self.webhook_alerts("resolved")) ==
                           [("DiskFull", "a"), ("HighCpu", "c")], TIMEOUT_S)
        self.assertEqual(sorted(self.webhook_alerts("firing")),
                         [("DiskFull", "a"), ("DiskFull", "b"), ("DiskFull", "b"), ("HighCpu", "c")])

        data = self.report()
        self.assertFalse(data["capped"])
        self.assertEqual(data["period_seconds"], 3600)
        self.assertEqual(harness.parse_rfc3339(data["to"]) - harness.parse_rfc3339(data["from"]), 3600)
        totals = data["totals"]
        # Episodes: a (240 s), b (firing), c (420 s). The median of 240 and 420 is 330.
        self.assertEqual(self.stats(totals), (4, 3, 2, 330, 1, 0))
        self.assertAlmostEqual(totals["resolved_within_5m_share"], 1 / 3)
        self.assertEqual((totals["rules"], totals["groups"]), (2, 2))
        self.assertEqual([(r["alertname"], self.stats(r)) for r in data["rules"]],
                         [("DiskFull", (2, 2, 1, 240, 1, 0)), ("HighCpu", (2, 1, 1, 420, 0, 0))])
        self.assertEqual([r["resolved_within_5m_share"] for r in data["rules"]], [0.5, 0])
        self.assertEqual([(g["group_key"], g["receiver"], self.stats(g)) for g in data["groups"]],
                         [('{}:{alertname="DiskFull"}', "hook", (2, 2, 1, 240, 1, 0)),
                          ('{}:{alertname="HighCpu"}', "hook", (2, 1, 1, 420, 0, 0))])

        # limit cuts the lists, not the totals.
        data = self.report("since=1h&limit=1")
        self.assertEqual([r["alertname"] for r in data["rules"]], ["DiskFull"])
        self.assertEqual(len(data["groups"]), 1)
        self.assertEqual(data["totals"]["notifications"], 4)

        # A period longer than history_retention (40d) is cut to it.
        data = self.report("since=90d")
        self.assertTrue(data["capped"])
        self.assertEqual(data["period_seconds"], 40 * 86400)
        self.assertEqual(data["totals"]["notifications"], 4)

        # The default period is 7 days.
        data = self.report("")
        self.assertEqual(data["period_seconds"], 7 * 86400)

        # tocsinctl: the tables.
        code, out, err = self.ctl("--since", "1h")
        self.assertEqual(code, 0, err)
        lines = out.splitlines()
        self.assertRegex(lines[0], r"^Noise report from \S+Z to \S+Z \(1h\)$")
        self.assertEqual(lines[1], "Totals: 4 notifications, 3 episodes (2 resolved), median firing time 5m30s, "
                                   "33% resolved within 5m, flapping 0s")
        self.assertEqual(lines[3], "Rules (2 of 2)")
        self.assertEqual(lines[4].split(), ["ALERTNAME", "NOTIFICATIONS", "EPISODES", "RESOLVED", "MEDIAN",
                                            "FIRING", "WITHIN", "5M", "FLAPPING"])
        self.assertEqual(lines[5].split(), ["DiskFull", "2", "2", "1", "4m", "50%", "0s"])
        self.assertEqual(lines[6].split(), ["HighCpu", "2", "1", "1", "7m", "0%", "0s"])
        self.assertEqual(lines[8], "Groups (2 of 2)")
        self.assertEqual(lines[9].split()[:2], ["GROUP", "RECEIVER"])
        self.assertEqual(lines[10].split(), ['{}:{alertname="DiskFull"}', "hook", "2", "2", "1", "4m", "50%", "0s"])
        self.assertEqual(lines[11].split(), ['{}:{alertname="HighCpu"}', "hook", "2", "1", "1", "7m", "0%", "0s"])
        self.assertEqual(len(lines), 12)

        # tocsinctl --json: the server's document.
        code, out, err = self.ctl("--since", "1h", "--limit", "1", "--json")
        self.assertEqual(code, 0, err)
        document = json.loads(out)
        self.assertEqual([r["alertname"] for r in document["data"]["rules"]], ["DiskFull"])
        self.assertEqual(self.stats(document["data"]["totals"]), (4, 3, 2, 330, 1, 0))

        # The history survives a restart.
        self.assertEqual(self.daemon.stop(), 0)
        self.daemon.start()
        data = self.report()
        self.assertEqual(self.stats(data["totals"]), (4, 3, 2, 330, 1, 0))

    def test_bad_queries_are_rejected(self):
        response = harness.http("GET", self.base + "/api/v1/report/noise?since=7days")
        self.assertEqual(response.status, 400)
        self.assertIn('invalid since "7days"', response.text)
        self.assertIn("expected a duration such as 7d, 24h or 30m", response.text)

        response = harness.http("GET", self.base + "/api/v1/report/noise?since=0s")
        self.assertEqual(response.status, 400)
        self.assertIn('invalid since "0s"', response.text)

        response = harness.http("GET", self.base + "/api/v1/report/noise?limit=5000")
        self.assertEqual(response.status, 400)
        self.assertIn('invalid limit "5000"; expected a whole number from 1 to 1000', response.text)

        response = harness.http("POST", self.base + "/api/v1/report/noise", b"")
        self.assertEqual(response.status, 405)

        # tocsinctl checks --since itself: a usage error, exit 2.
        code, out, err = self.ctl("--since", "7days")
        self.assertEqual(code, 2)
        self.assertIn('--since "7days"', err)
        self.assertEqual(out, "")

        # An empty report.
        code, out, err = self.ctl("--since", "5m")
        self.assertEqual(code, 0, err)
        self.assertIn("Totals: 0 notifications, 0 episodes (0 resolved)", out)
        self.assertIn("none notified in this period", out)


if __name__ == "__main__":
    harness.require_binary(os.path.join(ARGS.bin_dir, "tocsind"))
    harness.require_binary(TOCSINCTL)
    unittest.main(argv=UNITTEST_ARGV)
