"""End-to-end delivery: node_exporter -> Prometheus -> tocsind -> local PagerDuty and Slack.

A real Prometheus scrapes a real node_exporter and sends remote_write to tocsind. tocsind routes
the alerts to tocsin-fake-receivers, a local stand-in that enforces PagerDuty Events API v2 and
Slack Web API contracts and rejects what the real services reject. The test stops node_exporter
so that an alert fires, kills tocsind with SIGKILL after the trigger went out, starts it again,
and brings node_exporter back so that the alert resolves. Exactly one trigger and one resolve
per alert group must arrive, in that order, and the Slack resolve must be a reply in the
thread of the firing message, which is updated in place.

Exits 77 (skipped) when Prometheus or node_exporter are missing.
"""

import json
import os
import shutil
import signal
import sys
import unittest

import harness

ARGS, UNITTEST_ARGV = harness.parse_args()

PROMETHEUS = shutil.which("prometheus")
NODE_EXPORTER = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
FAKE_RECEIVERS = os.path.join(ARGS.bin_dir, os.pardir, "tests", "tocsin-fake-receivers")

ROUTING_KEY = "e2e0routing0key0000000000000000a"  # 32 characters, as PagerDuty requires
SLACK_TOKEN = "xoxb-e2e-bot-token-3b9d"

TOCSIN_CONFIG = """\
listen: 127.0.0.1:{port}
state_dir: {state_dir}
rule_files: ["rules/*.yaml"]
log_level: debug
shutdown_timeout: 5s

route:
  receiver: oncall
  group_by: [alertname, instance]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
receivers:
  - name: oncall
    pagerduty_configs:
      - routing_key_file: {routing_key_file}
        url: http://127.0.0.1:{fake_port}/v2/enqueue
    slack_configs:
      - bot_token_env: TOCSIN_E2E_SLACK_TOKEN
        app_url: http://127.0.0.1:{fake_port}/api/chat.postMessage
        channel: "#ops"
        send_resolved: true
"""

RULES = """\
groups:
  - name: node
    rules:
      - alert: NodeExporterDown
        expr: up{job="node"}
        for: 0s
        tiers:
          critical: "== 0"
        annotations:
          summary: 'cannot scrape {{ $labels.instance }}'
          runbook_url: https://runbooks.example/node-down
"""

PROMETHEUS_CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
scrape_configs:
  - job_name: node
    static_configs:
      - targets: ["127.0.0.1:{node_port}"]
remote_write:
  - url: http://127.0.0.1:{tocsin_port}/api/v1/write
    write_relabel_configs:
      - source_labels: [__name__]
        regex: "up"
        action: keep
    queue_config:
      batch_send_deadline: 1s
      min_backoff: 30ms
      max_backoff: 1s
"""


class delivery_pipeline_test(unittest.TestCase):
    def setUp(self):
        self.dir = harness.temp_dir("tocsin-delivery-", keep=ARGS.keep_temp)
        self.processes = []
        self.node_port = harness.free_port()
        self.tocsin_port = harness.free_port()
        self.prometheus_port = harness.free_port()
        self.fake_port = harness.free_port()
        self.events_path = os.path.join(self.dir.path, "events.jsonl")

        routing_key_file = self.dir.file("pd.key", ROUTING_KEY + "\n")
        self.dir.file("rules/node.yaml", RULES)
        self.config = self.dir.file("tocsin.yaml", TOCSIN_CONFIG.format(
            port=self.tocsin_port, state_dir=os.path.join(self.dir.path, "state"),
            routing_key_file=routing_key_file, fake_port=self.fake_port))
        self.prometheus_config = self.dir.file("prometheus.yml", PROMETHEUS_CONFIG.format(
            node_port=self.node_port, tocsin_port=self.tocsin_port))
        self.tocsind_log = os.path.join(self.dir.path, "tocsind.log")
        self.tocsind = None

    def tearDown(self):
        if self.tocsind is not None and self.tocsind.running():
            self.tocsind.stop(timeout=10)
        for process in reversed(self.processes):
            process.stop(timeout=10)
        if os.path.exists(self.tocsind_log):
            with open(self.tocsind_log, "rb") as f:
                log = f.read().decode("utf-8", errors="replace")
            for secret in (ROUTING_KEY, SLACK_TOKEN):
                if secret in log:
                    self.fail(f"tocsind's log contains a secret ({secret[:6]}...)")

    def start_tocsind(self):
        env = dict(os.environ, TOCSIN_E2E_SLACK_TOKEN=SLACK_TOKEN)
        argv = [os.path.join(ARGS.bin_dir, "tocsind"), "--config", self.config, "--log-level", "debug"]
        self.tocsind = harness.server_process("tocsind", argv, self.tocsind_log, env=env)
        harness.wait_http_ok(f"http://127.0.0.1:{self.tocsin_port}/-/ready", self.tocsind)

    def start_fake_receivers(self):
        process = harness.server_process(
            "tocsin-fake-receivers",
            [FAKE_RECEIVERS, "--port", str(self.fake_port), "--events", self.events_path,
             "--routing-key", ROUTING_KEY, "--slack-token", SLACK_TOKEN],
            os.path.join(self.dir.path, "fake-receivers.log"))
        self.processes.append(process)

        def listening():
            return "listening on" in process.log()
        harness.wait_until("tocsin-fake-receivers to listen", listening, 30)

    def start_node_exporter(self):
        process = harness.start_node_exporter(NODE_EXPORTER, self.node_port,
                                               os.path.join(self.dir.path, "node_exporter.log"))
        self.processes.append(process)
        return process

    def start_prometheus(self):
        process = harness.start_prometheus(PROMETHEUS, self.prometheus_config,
                                           os.path.join(self.dir.path, "prometheus-data"),
                                           self.prometheus_port,
                                           os.path.join(self.dir.path, "prometheus.log"))
        self.processes.append(process)
        return process

    def events(self):
        if not os.path.exists(self.events_path):
            return []
        with open(self.events_path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    def wait_for_events(self, description, predicate, timeout=60):
        def probe():
            return predicate(self.events())
        try:
            harness.wait_until(description, probe, timeout)
        except AssertionError as error:
            raise AssertionError(f"{error}\nevents: {json.dumps(self.events(), indent=1)[:4000]}\n"
                                 f"tocsind log:\n{self.tocsind.log_tail(40)}") from None

    def test_one_trigger_and_one_resolve_through_sigkill(self):
        self.start_fake_receivers()
        node_exporter = self.start_node_exporter()
        self.start_tocsind()
        self.start_prometheus()

        # Let Prometheus send a few samples with up == 1, then take node_exporter away.
        harness.wait_until("tocsind to ingest samples",
                           lambda: (harness.metric_value(
                               harness.http("GET", f"http://127.0.0.1:{self.tocsin_port}/metrics").text,
                               "tocsin_samples_ingested_total") or 0) > 0, 60)
        node_exporter.stop(timeout=10)
        self.processes.remove(node_exporter)

        def pagerduty(events, action=None):
            return [e for e in events if e["kind"] == "pagerduty" and e["accepted"]
                    and (action is None or e["body"].get("event_action") == action)]

        def slack(events):
            return [e for e in events if e["kind"] == "slack_api" and e["accepted"]]

        self.wait_for_events("a PagerDuty trigger and a Slack message",
                             lambda ev: pagerduty(ev, "trigger") and slack(ev))

        # SIGKILL: no shutdown path runs. The notification log was written before the send.
        os.killpg(self.tocsind.pid, signal.SIGKILL)
        self.tocsind.popen.wait()
        self.start_tocsind()

        self.start_node_exporter()
        self.wait_for_events("a PagerDuty resolve", lambda ev: pagerduty(ev, "resolve"), timeout=90)
        self.wait_for_events("the Slack resolve in the thread",
                             lambda ev: any(e["body"].get("thread_ts") for e in slack(ev)), timeout=30)

        events = self.events()
        rejected = [e for e in events if not e["accepted"]]
        self.assertEqual(rejected, [], "a receiver rejected a payload; the real service would too")

        pd = pagerduty(events)
        actions = [e["body"]["event_action"] for e in pd]
        self.assertEqual(actions, ["trigger", "resolve"],
                         f"expected exactly one trigger then one resolve, got {actions}")
        self.assertEqual(pd[0]["body"]["dedup_key"], pd[1]["body"]["dedup_key"],
                         "the resolve's dedup_key differs from the trigger's")
        trigger = pd[0]["body"]
        self.assertEqual(trigger["payload"]["severity"], "critical")
        self.assertIn("NodeExporterDown", trigger["payload"]["summary"])
        self.assertIn("https://runbooks.example/node-down", json.dumps(trigger.get("links", [])))

        posts = slack(events)
        parents = [e for e in posts if e["path"].endswith("chat.postMessage") and not e["body"].get("thread_ts")]
        replies = [e for e in posts if e["path"].endswith("chat.postMessage") and e["body"].get("thread_ts")]
        updates = [e for e in posts if e["path"].endswith("chat.update")]
        self.assertEqual(len(parents), 1, f"expected one firing message, got {len(parents)}")
        self.assertEqual(len(replies), 1, f"expected one threaded resolve, got {len(replies)}")
        self.assertGreaterEqual(len(updates), 1, "the firing message was not updated to show the resolve")
        parent_ts = parents[0]["response"]["ts"]
        self.assertEqual(replies[0]["body"]["thread_ts"], parent_ts)
        self.assertEqual(updates[-1]["body"]["ts"], parent_ts)

        base = f"http://127.0.0.1:{self.tocsin_port}"
        metrics = harness.http("GET", base + "/metrics").text
        sent = harness.metric_value(metrics, "tocsin_notifications_sent_total", integration="oncall/pagerduty/0")
        self.assertEqual(sent, 1.0, "the restarted tocsind should count the resolve it delivered")
        for path in ("/metrics", "/api/v1/alerts", "/api/v1/rules"):
            text = harness.http("GET", base + path).text
            for secret in (ROUTING_KEY, SLACK_TOKEN):
                self.assertNotIn(secret, text, f"GET {path} shows a secret")


if __name__ == "__main__":
    if PROMETHEUS is None or NODE_EXPORTER is None:
        harness.skip("prometheus and prometheus-node-exporter are required "
                     "(apt-get install prometheus prometheus-node-exporter)")
    harness.require_binary(os.path.join(ARGS.bin_dir, "tocsind"))
    harness.require_binary(FAKE_RECEIVERS)
    result = unittest.main(argv=UNITTEST_ARGV, exit=False, verbosity=2).result
    sys.exit(0 if result.wasSuccessful() else 1)
