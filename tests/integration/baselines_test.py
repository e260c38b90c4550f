"""Black-box tests of detector baselines across restarts.

Each test starts the built tocsind on 127.0.0.1 with a dynamic rule, pushes enough samples for
its baseline to be ready, stops the daemon (SIGTERM, or SIGKILL after a periodic snapshot) and
starts it again on the same state folder. The next sample must be scored at once: the series is
not warming up again. Only the Python standard library is used.
"""

import os
import time
import unittest

import harness

ARGS, UNITTEST_ARGV = harness.parse_args()

# How long a snapshot or a pushed sample may take to show, on a loaded machine.
TIMEOUT_S = 15

MAIN_CONFIG = """\
listen: 127.0.0.1:{port}
state_dir: {state_dir}
rule_files: ["rules/*.yaml"]
shutdown_timeout: 5s
baseline_snapshot_interval: {snapshot}
"""

RULES = """\
groups:
  - name: queues
    rules:
      - alert: QueueDepthUnusual
        expr: queue_depth
        no_data: {timeout: 1h}
        dynamic: {type: mean_sigma, window: 1h, min_samples: 30, sigma_floor: 1.0, k: 4}
"""


class baselines_test_case(unittest.TestCase):
    def setUp(self):
        self.dir = harness.temp_dir("tocsin-baselines-", keep=ARGS.keep_temp)
        self.port = harness.free_port()
        self.daemons = []
        # Sample times step one second at a time from a minute ago, so none is in the future.
        self.next_ms = int(time.time() * 1000) - 60_000

    def tearDown(self):
        for daemon in self.daemons:
            if daemon.process is not None and daemon.process.running():
                daemon.kill()

    def start_daemon(self, snapshot="5m"):
        self.dir.file("rules/queues.yaml", RULES)
        config = self.dir.file("tocsin.yaml", MAIN_CONFIG.format(
            port=self.port, state_dir=os.path.join(self.dir.path, "state"), snapshot=snapshot))
        log_path = os.path.join(self.dir.path, f"tocsind-{len(self.daemons)}.log")
        daemon = harness.tocsind(ARGS.bin_dir, config, self.port, log_path)
        self.daemons.append(daemon)
        return daemon.start()

    def push(self, daemon, count, value=100):
        samples = []
        for _ in range(count):
            samples.append(({"__name__": "queue_depth", "queue": "orders"}, value, self.next_ms))
            self.next_ms += 1000
        response = daemon.push(samples)
        self.assertTrue(200 <= response.status < 300, f"push: {response.status} {response.text}")

    def warming_up(self, daemon):
        response = harness.http("GET", daemon.base_url + "/api/v1/rules")
        self.assertEqual(response.status, 200, response.text)
        rule = response.json()["data"]["groups"][0]["rules"][0]
        self.assertEqual(rule["dynamic"]["type"], "mean_sigma")
        return rule["warmingUp"]

    def test_baseline_survives_sigterm(self):
        daemon = self.start_daemon()
        self.push(daemon, 10)
        self.assertEqual(self.warming_up(daemon), 1)
        self.push(daemon, 30)
        self.assertEqual(self.warming_up(daemon), 0)
        self.assertEqual(daemon.stop(), 0)

        daemon = self.start_daemon()
        self.assertIn("restored 1 detector baselines", daemon.log())
        # Ready before any new sample: the saved output says so.
        self.assertEqual(self.warming_up(daemon), 0)
        self.push(daemon, 1)
        self.assertEqual(self.warming_up(daemon), 0)
        self.assertEqual(daemon.metric("tocsin_rule_series_warming_up", rule="QueueDepthUnusual"), 0)

        # The restored baseline scores at once: a jump of 50 against a floor of 1 fires.
        self.push(daemon, 1, value=150)
        harness.wait_until("QueueDepthUnusual to fire", lambda: harness.find_alerts(
            daemon.alerts(), state="firing", alertname="QueueDepthUnusual"), TIMEOUT_S)

    def test_baseline_survives_sigkill_after_a_snapshot(self):
        daemon = self.start_daemon(snapshot="1s")
        self.push(daemon, 40)
        self.assertEqual(self.warming_up(daemon), 0)
        harness.wait_until("a baseline snapshot", lambda: "saved 1 detector baselines" in daemon.log(), TIMEOUT_S)
        daemon.kill()

        daemon = self.start_daemon(snapshot="1s")
        self.push(daemon, 1)
        self.assertEqual(self.warming_up(daemon), 0)

    def test_edited_dynamic_block_starts_over(self):
        daemon = self.start_daemon()
        self.push(daemon, 40)
        self.assertEqual(daemon.stop(), 0)

        self.dir.file("rules/queues.yaml", RULES.replace("window: 1h", "window: 2h"))
        config = self.dir.file("tocsin.yaml", MAIN_CONFIG.format(
            port=self.port, state_dir=os.path.join(self.dir.path, "state"), snapshot="5m"))
        log_path = os.path.join(self.dir.path, "tocsind-edited.log")
        daemon = harness.tocsind(ARGS.bin_dir, config, self.port, log_path)
        self.daemons.append(daemon)
        daemon.start()
        self.assertIn("restored 0 detector baselines (1 dropped", daemon.log())
        self.push(daemon, 1)
        self.assertEqual(self.warming_up(daemon), 1)


if __name__ == "__main__":
    harness.require_binary(os.path.join(ARGS.bin_dir, "tocsind"))
    unittest.main(argv=UNITTEST_ARGV)
