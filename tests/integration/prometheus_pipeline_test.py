"""End-to-end test: node_exporter -> Prometheus -> remote_write -> tocsind -> /api/v1/alerts.

Starts a real node_exporter, a real Prometheus (Debian's 2.42 package) and the built tocsind on
127.0.0.1 with ports chosen at run time, and checks the alerts through tocsind's HTTP API.
Prometheus scrapes and evaluates every second and sends a remote_write batch at least every
second, so each step settles within a few seconds. The deadlines below leave room for a loaded
machine. Exits 77 (skipped) when the Prometheus or node_exporter binaries are missing.
"""

import os
import shutil
import sys
import unittest

import harness

ARGS, UNITTEST_ARGV = harness.parse_args()

PROMETHEUS = shutil.which("prometheus")
NODE_EXPORTER = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")

WRITE_TOKEN = "pipeline-write-token-7f3a9c"

TOCSIN_CONFIG = """\
listen: 127.0.0.1:{port}
state_dir: {state_dir}
rule_files: ["rules/*.yaml"]
log_level: debug
shutdown_timeout: 5s
auth:
  write_token_files: [{token_file}]
"""

RULES = """\
groups:
  - name: node
    rules:
      # The load average is never negative, so this goes pending on the first sample and
      # fires 10s of sample time later.
      - alert: NodeLoadSeen
        expr: node_load1{job="node"}
        for: 10s
        tiers:
          warning: ">= 0"
        annotations:
          summary: 'load {{ $value }} on {{ $labels.instance }}'
      - alert: NodeExporterDown
        expr: up{job="node"}
        for: 0s
        tiers:
          critical: "== 0"
        annotations:
          summary: 'cannot scrape {{ $labels.instance }}'
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
    authorization:
      type: Bearer
      credentials_file: {token_file}
    write_relabel_configs:
      - source_labels: [__name__]
        regex: "up|node_load1"
        action: keep
    queue_config:
      batch_send_deadline: 1s
      min_backoff: 30ms
      max_backoff: 1s
"""


class prometheus_pipeline_test(unittest.TestCase):
    def setUp(self):
        self.dir = harness.temp_dir("tocsin-pipeline-", keep=ARGS.keep_temp)
        self.processes = []

        self.node_port = harness.free_port()
        self.tocsin_port = harness.free_port()
        self.prometheus_port = harness.free_port()

        token_file = self.dir.file("write.token", WRITE_TOKEN + "\n")
        self.dir.file("rules/node.yaml", RULES)
        config = self.dir.file("tocsin.yaml", TOCSIN_CONFIG.format(
            port=self.tocsin_port, state_dir=os.path.join(self.dir.path, "state"),
            token_file=token_file))
        self.prometheus_config = self.dir.file("prometheus.yml", PROMETHEUS_CONFIG.format(
            node_port=self.node_port, tocsin_port=self.tocsin_port, token_file=token_file))

        self.tocsind = harness.tocsind(ARGS.bin_dir, config, self.tocsin_port,
                                       os.path.join(self.dir.path, "tocsind.log"))

    def tearDown(self):
        for process in reversed(self.processes):
            process.stop(timeout=10)
        if self.tocsind.process is not None and self.tocsind.process.running():
            self.tocsind.stop()
        if os.path.exists(self.tocsind.log_path) and WRITE_TOKEN in self.tocsind.log():
            self.fail("tocsind's log contains the write token")

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

    def wait_for_alert(self, description, timeout, state=None, **labels):
        def probe():
            return harness.find_alerts(self.tocsind.alerts(), state=state, **labels)
        try:
            return harness.wait_until(description, probe, timeout)[0]
        except AssertionError as error:
            raise AssertionError(f"{error}\nalerts: {self.tocsind.alerts()}\n"
                                 f"tocsind log:\n{self.tocsind.process.log_tail()}") from None

    def test_alerts_follow_node_exporter(self):
        node_exporter = self.start_node_exporter()
        self.tocsind.start()
        self.start_prometheus()

        # The load rule goes pending first, because it waits 10s of sample time.
        pending = self.wait_for_alert("NodeLoadSeen to be pending", 60,
                                      state="pending", alertname="NodeLoadSeen")
        self.assertEqual(pending["labels"].get("job"), "node")
        self.assertEqual(pending["labels"].get("instance"), f"127.0.0.1:{self.node_port}")
        self.assertEqual(pending["labels"].get("severity"), "warning")
        self.assertNotIn("firedAt", pending, "a pending alert must not carry firedAt")

        firing = self.wait_for_alert("NodeLoadSeen to fire", 60,
                                     state="firing", alertname="NodeLoadSeen")
        self.assertEqual(firing["id"], pending["id"], "the alert id changed from pending to firing")
        self.assertEqual(firing["activeAt"], pending["activeAt"],
                         "activeAt changed from pending to firing")
        pending_seconds = (harness.parse_rfc3339(firing["firedAt"])
                           - harness.parse_rfc3339(firing["activeAt"]))
        # Both timestamps may be rounded down to whole seconds, hence 9 and not 10.
        self.assertGreaterEqual(pending_seconds, 9.0,
                                f"fired {pending_seconds}s after activeAt, before `for: 10s` passed")
        self.assertTrue(firing["annotations"].get("summary", "").startswith("load "),
                        f"summary not rendered: {firing['annotations']}")

        self.assertEqual(harness.find_alerts(self.tocsind.alerts(), alertname="NodeExporterDown"), [],
                         "NodeExporterDown is active while node_exporter is up")
        ingested = self.tocsind.metric("tocsin_samples_ingested_total")
        self.assertIsNotNone(ingested, "/metrics has no tocsin_samples_ingested_total")
        self.assertGreater(ingested, 0)

        # Prometheus records up == 0 at the first failed scrape, and `for: 0s` fires at once.
        node_exporter.stop(timeout=10)
        self.processes.remove(node_exporter)
        down = self.wait_for_alert("NodeExporterDown to fire after node_exporter stopped", 60,
                                   state="firing", alertname="NodeExporterDown")
        self.assertEqual(down["labels"].get("severity"), "critical")
        self.assertEqual(down["labels"].get("instance"), f"127.0.0.1:{self.node_port}")
        self.assertEqual(float(down["value"]), 0.0)

        # Back on the same port, up returns to 1 and the alert resolves.
        self.start_node_exporter()

        def resolved():
            return not harness.find_alerts(self.tocsind.alerts(), alertname="NodeExporterDown")
        harness.wait_until("NodeExporterDown to resolve after node_exporter restarted",
                           resolved, 60)

        rejected = harness.metric_values(self.tocsind.metrics(), "tocsin_samples_rejected_total")
        rejected_total = sum(value for _, value in rejected)
        self.assertEqual(rejected_total, 0, f"tocsind rejected samples from Prometheus: {rejected}")


if __name__ == "__main__":
    if PROMETHEUS is None or NODE_EXPORTER is None:
        harness.skip("prometheus and prometheus-node-exporter are required "
                     "(apt-get install prometheus prometheus-node-exporter)")
    harness.require_binary(os.path.join(ARGS.bin_dir, "tocsind"))
    result = unittest.main(argv=UNITTEST_ARGV, exit=False, verbosity=2).result
    sys.exit(0 if result.wasSuccessful() else 1)
