"""Runbooks through tocsind, end to end, on real processes.

Alerts arrive on POST /api/v2/alerts. The runbook stops a canary service that the test started
(by its pid file), calls a local deploy API that returns 500 and then 200, runs an allowlisted
program with a label value as one argument, tells the data scientists through
tocsin-fake-receivers (which checks every payload against the receivers' contracts) and waits
for the alert to resolve. The tests also cover approval through the API, a silenced alert, a
kill -9 in the middle of a step, and the audit log through tocsinctl and the API.
"""

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
import unittest

import harness

ARGS, UNITTEST_ARGV = harness.parse_args()
FAKE_RECEIVERS = os.path.join(ARGS.bin_dir, os.pardir, "tests", "tocsin-fake-receivers")
TOCSINCTL = os.path.join(ARGS.bin_dir, "tocsinctl")
TIMEOUT_S = 30
ADMIN_TOKEN = "admin-token-for-runbooks-test"
ROUTING_KEY = "0123456789abcdef0123456789abcdef"

TOCSIN_CONFIG = """\
listen: 127.0.0.1:{port}
state_dir: {state_dir}
rule_files: []
shutdown_timeout: 5s
auth:
  admin_token_files: [{token_file}]
runbooks:
  files: [{runbook_file}, {example_file}]
  allowed_programs: [{record_program}, {slow_program}, {example_program}]
route:
  receiver: oncall
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: oncall
    webhook_configs:
      - url: http://127.0.0.1:{fake_port}/webhook/oncall
    pagerduty_configs:
      - routing_key: {routing_key}
        url: http://127.0.0.1:{fake_port}/v2/enqueue
  - name: data-scientists
    webhook_configs:
      - url: http://127.0.0.1:{fake_port}/webhook/data-scientists
  - name: ml-lead
    webhook_configs:
      - url: http://127.0.0.1:{fake_port}/webhook/ml-lead
  - name: ml-oncall
    webhook_configs:
      - url: http://127.0.0.1:{fake_port}/webhook/ml-oncall
"""

RUNBOOKS = """\
runbooks:
  - name: canary-rollback
    trigger:
      matchers: ['alertname="ModelAucDrift"', 'team="ml-canary"']
      min_severity: critical
    approval: {{required_before: rollback-model, timeout: 10m}}
    params:
      model: '^[a-z0-9][a-z0-9-]{{0,62}}$'
      version: '^v[0-9]{{1,6}}$'
    escalate_to: ml-lead
    steps:
      - name: stop-canary
        stop: {{pid_file: {pid_file}}}
        timeout: 10s
      - name: rollback-model
        rollback:
          http:
            url: 'http://127.0.0.1:{deploy_port}/models/{{{{ $labels.model }}}}/rollback'
            body: '{{"from": "{{{{ $labels.version }}}}", "run": "{{{{ $run.id }}}}"}}'
            attempts: 3
            backoff: 100ms
        timeout: 5s
      - name: record
        exec:
          argv: [{record_program}, '{{{{ $labels.model }}}}']
        timeout: 10s
      - name: tell-data-scientists
        notify:
          receiver: data-scientists
          text: 'Rolled back {{{{ $labels.model }}}} from {{{{ $labels.version }}}} (run {{{{ $run.id }}}}).'
      - name: wait-for-recovery
        wait: {{until: resolved}}
        timeout: 5m
  - name: slow-fix
    trigger:
      matchers: ['alertname="SlowFix"']
    escalate_to: ml-lead
    on_interrupt: abort_and_escalate
    steps:
      - name: slow
        exec:
          argv: [{slow_program}]
        timeout: 1m
"""

RECORD_PROGRAM = """\
#!/bin/sh
# Appends its arguments, one per line, to the file next to it.
for a in "$@"; do printf '%s\\n' "$a" >> "$(dirname "$0")/record.out"; done
"""

SLOW_PROGRAM = """\
#!/bin/sh
# Counts its starts, then runs until it is killed.
echo start >> "$(dirname "$0")/slow.out"
exec sleep 300
"""

CANARY = """\
import os, signal, sys, time
with open(sys.argv[1], "w") as f:
    f.write(str(os.getpid()))
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
while True:
    time.sleep(1)
"""


class deploy_api:
    """A deploy API on 127.0.0.1: the first POST gets 500, later ones 200. Records every request."""

    def __init__(self):
        self.requests = []
        owner = self

        class handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length).decode("utf-8")
                owner.requests.append({"path": self.path, "key": self.headers.get("Idempotency-Key"),
                                       "body": body})
                status = 500 if len(owner.requests) == 1 else 200
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": true}' if status == 200 else b'{"error": "busy"}')

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def rfc3339(seconds):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class runbooks_test(unittest.TestCase):
    def setUp(self):
        self.dir = harness.temp_dir("tocsin-runbooks-", keep=ARGS.keep_temp)
        self.port = harness.free_port()
        self.fake_port = harness.free_port()
        self.events_path = os.path.join(self.dir.path, "events.jsonl")
        self.deploy = deploy_api()
        self.pid_file = os.path.join(self.dir.path, "canary.pid")
        self.canary = harness.server_process(
            "canary", [sys.executable, self.dir.file("canary.py", CANARY), self.pid_file],
            os.path.join(self.dir.path, "canary.log"))
        def pid_written():
            if not os.path.exists(self.pid_file):
                return False
            with open(self.pid_file) as f:
                return f.read().strip()
        harness.wait_until("the canary's pid file", pid_written, TIMEOUT_S)
        record = self.dir.file("record.sh", RECORD_PROGRAM)
        slow = self.dir.file("slow.sh", SLOW_PROGRAM)
        os.chmod(record, 0o755)
        os.chmod(slow, 0o755)
        runbook_file = self.dir.file("runbooks.yaml", RUNBOOKS.format(
            pid_file=self.pid_file, deploy_port=self.deploy.port, record_program=record, slow_program=slow))
        # The bundled example, with the paths of this machine and dry_run off.
        with open(os.path.join(ARGS.source_dir, "examples", "runbooks", "model-rollback.yaml")) as f:
            example = f.read()
        example_program = os.path.join(ARGS.source_dir, "examples", "runbooks", "rollback.sh")
        self.example_pid_file = os.path.join(self.dir.path, "example-canary.pid")
        self.registry = os.path.join(self.dir.path, "registry")
        for old, new in (("/run/model-canary/canary.pid", self.example_pid_file),
                         ("/opt/tocsin/examples/runbooks/rollback.sh", example_program),
                         ("/var/lib/model-registry", self.registry),
                         ("dry_run: true", "dry_run: false")):
            self.assertIn(old, example)
            example = example.replace(old, new)
        example_file = self.dir.file("example.yaml", example)
        token_file = self.dir.file("admin.token", ADMIN_TOKEN + "\n")
        self.state_dir = os.path.join(self.dir.path, "state")
        config = self.dir.file("tocsin.yaml", TOCSIN_CONFIG.format(
            port=self.port, state_dir=self.state_dir, fake_port=self.fake_port, token_file=token_file,
            runbook_file=runbook_file, record_program=record, slow_program=slow, routing_key=ROUTING_KEY,
            example_file=example_file, example_program=example_program))
        self.fake = harness.server_process(
            "tocsin-fake-receivers", [FAKE_RECEIVERS, "--port", str(self.fake_port), "--events", self.events_path,
                                      "--routing-key", ROUTING_KEY],
            os.path.join(self.dir.path, "fake-receivers.log"))
        harness.wait_until("tocsin-fake-receivers to listen", lambda: "listening on" in self.fake.log(), 30)
        self.daemon = harness.tocsind(ARGS.bin_dir, config, self.port,
                                      os.path.join(self.dir.path, "tocsind.log")).start()

    def tearDown(self):
        if self.daemon.process.running():
            self.daemon.stop()
        self.fake.stop(timeout=10)
        if self.canary.running():
            self.canary.stop(timeout=10)
        self.deploy.stop()
        # The slow program of a killed tocsind may still run; it is in its own process group.
        subprocess.run(["pkill", "-f", os.path.join(self.dir.path, "slow.sh")], check=False)

    # ---- helpers ----

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def admin(self, method, path, body=None, token=ADMIN_TOKEN):
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = "Bearer " + token
        return harness.http(method, self.url(path), None if body is None else json.dumps(body), headers)

    def post_alerts(self, alerts):
        response = harness.http("POST", self.url("/api/v2/alerts"), json.dumps(alerts),
                                {"Content-Type": "application/json"})
        self.assertEqual(response.status, 200, response.text)

    def events(self):
        if not os.path.exists(self.events_path):
            return []
        with open(self.events_path, encoding="utf-8") as f:
            events = [json.loads(line) for line in f if line.strip()]
        for event in events:
            self.assertTrue(event["accepted"], f"a receiver rejected a payload: {event}")
        return events

    def bodies(self, path):
        return [e["body"] for e in self.events() if e["path"] == path]

    def runs(self, **query):
        q = "&".join(f"{k}={v}" for k, v in query.items())
        response = self.admin("GET", "/api/v1/runbooks/runs" + ("?" + q if q else ""))
        self.assertEqual(response.status, 200, response.text)
        return response.json()

    def run_of(self, runbook):
        runs = self.runs(runbook=runbook)["runs"]
        return runs[0] if runs else None

    def wait_phase(self, runbook, phase, outcome=None):
        def probe():
            r = self.run_of(runbook)
            return r if r and r["phase"] == phase and (outcome is None or r["outcome"] == outcome) else None
        return harness.wait_until(f"run of {runbook} in phase {phase} ({outcome})", probe, TIMEOUT_S)

    def alert(self, **labels):
        base = {"alertname": "ModelAucDrift", "team": "ml-canary", "model": "fraud", "version": "v7",
                "severity": "critical"}
        base.update(labels)
        return base

    # ---- tests ----

    def test_rollback_with_approval(self):
        start = time.time()
        alert = {"labels": self.alert(), "startsAt": rfc3339(start)}
        self.post_alerts([alert])

        # The canary is stopped at once; the rollback waits for a person.
        waiting = self.wait_phase("canary-rollback", "waiting_approval")
        self.assertEqual(waiting["approval"]["state"], "waiting")
        self.assertEqual(self.daemon.metric("tocsin_runbook_runs_active", runbook="canary-rollback",
                                            phase="waiting_approval"), 1)
        self.assertEqual(self.daemon.metric("tocsin_runbook_runs_active", runbook="canary-rollback",
                                            phase="running"), 0)
        self.assertEqual([s["outcome"] for s in waiting["steps"][:1]], ["succeeded"])
        harness.wait_until("the canary to exit", lambda: not self.canary.running(), TIMEOUT_S)
        self.assertEqual(self.deploy.requests, [])
        harness.wait_until("the approval request at ml-lead", lambda: self.bodies("/webhook/ml-lead"), TIMEOUT_S)
        request = self.bodies("/webhook/ml-lead")[0]["alerts"][0]
        self.assertEqual(request["labels"]["purpose"], "approval_request")
        self.assertIn("waits for approval before step rollback-model", request["annotations"]["summary"])

        # The same episode again, as a sender's repeat: no second run.
        self.post_alerts([alert])
        run_id = waiting["id"]

        # Approval needs the admin token and a valid body.
        self.assertEqual(self.admin("POST", f"/api/v1/runbooks/runs/{run_id}/approve", {"by": "alice"},
                                    token=None).status, 401)
        self.assertEqual(self.admin("POST", f"/api/v1/runbooks/runs/{run_id}/approve", {"by": ""}).status, 400)
        self.assertEqual(self.admin("POST", "/api/v1/runbooks/runs/r0000000000000000/approve",
                                    {"by": "alice"}).status, 404)
        approved = self.admin("POST", f"/api/v1/runbooks/runs/{run_id}/approve",
                              {"by": "alice", "reason": "AUC fell on every shard"})
        self.assertEqual(approved.status, 200, approved.text)
        self.assertEqual(approved.json()["approval"]["reason"], "AUC fell on every shard")
        self.assertIn(f"tocsinctl runbooks approve {run_id}", request["annotations"]["summary"])

        # Once decided, the request resolves at its receiver.
        def request_resolved():
            return [b for b in self.bodies("/webhook/ml-lead") if b["status"] == "resolved"]
        resolved = harness.wait_until("the resolve of the approval request", request_resolved, TIMEOUT_S)
        self.assertEqual(resolved[0]["alerts"][0]["labels"]["purpose"], "approval_request")

        # Rollback (500 then 200, one Idempotency-Key), the program, the message, then the wait.
        running = self.wait_phase("canary-rollback", "running")
        harness.wait_until("the wait step", lambda: self.run_of("canary-rollback")["steps"][4]["state"] == "running",
                           TIMEOUT_S)
        self.assertEqual(len(self.deploy.requests), 2, self.deploy.requests)
        self.assertEqual(self.deploy.requests[0]["path"], "/models/fraud/rollback")
        keys = {r["key"] for r in self.deploy.requests}
        self.assertEqual(len(keys), 1)
        self.assertRegex(keys.pop(), r"^[0-9a-f]{32}$")
        self.assertEqual(json.loads(self.deploy.requests[1]["body"]), {"from": "v7", "run": running["id"]})
        with open(os.path.join(self.dir.path, "record.out")) as f:
            self.assertEqual(f.read(), "fraud\n")
        harness.wait_until("the message to the data scientists",
                           lambda: self.bodies("/webhook/data-scientists"), TIMEOUT_S)
        message = self.bodies("/webhook/data-scientists")[0]["alerts"][0]
        self.assertEqual(message["annotations"]["summary"], f"Rolled back fraud from v7 (run {run_id}).")
        self.assertEqual(message["labels"]["runbook"], "canary-rollback")

        # The rollback as a PagerDuty change event.
        harness.wait_until("the change event", lambda: self.bodies("/v2/change/enqueue"), TIMEOUT_S)
        change = self.bodies("/v2/change/enqueue")[0]
        self.assertIn("canary-rollback", change["payload"]["summary"])
        self.assertNotIn("event_action", change)

        # Resolving the alert ends the wait; the run succeeds and the alert's receivers hear it.
        self.post_alerts([{"labels": self.alert(), "startsAt": rfc3339(start), "endsAt": rfc3339(time.time())}])
        done = self.wait_phase("canary-rollback", "finished", "succeeded")
        self.assertEqual([s["outcome"] for s in done["steps"]],
                         ["succeeded", "succeeded", "succeeded", "succeeded", "succeeded"])
        self.assertEqual(done["approval"]["by"], "alice")
        self.assertEqual(len(self.runs(runbook="canary-rollback")["runs"]), 1)

        def annotated():
            for body in self.bodies("/webhook/oncall"):
                for a in body["alerts"]:
                    if "waiting for approval" in a["annotations"].get("runbook_actions", ""):
                        return True
            return False
        harness.wait_until("runbook_actions in the alert's notification", annotated, TIMEOUT_S)
        pd = [b for b in self.bodies("/v2/enqueue") if b.get("event_action") == "trigger"]
        self.assertTrue(any("runbook_actions" in b["payload"].get("custom_details", {}) for b in pd), pd)

        # The audit log verifies and records every step, through tocsinctl and the API.
        audit_path = os.path.join(self.state_dir, "audit.log")
        verify = subprocess.run([TOCSINCTL, "audit", "verify", audit_path], capture_output=True, text=True,
                                timeout=30)
        self.assertEqual(verify.returncode, 0, verify.stdout + verify.stderr)
        self.assertEqual(self.admin("GET", "/api/v1/audit", token=None).status, 401)
        listed = self.admin("GET", f"/api/v1/audit?run={run_id}")
        self.assertEqual(listed.status, 200, listed.text)
        document = listed.json()
        self.assertTrue(document["chain"]["ok"])
        kinds = [r["kind"] for r in document["records"]]
        for kind in ("run_started", "step", "approval", "notification", "run_finished"):
            self.assertIn(kind, kinds)
        approvals = [r for r in document["records"] if r["kind"] == "approval" and r["actor"] == "alice"]
        self.assertEqual(len(approvals), 1)

        metrics = self.daemon.metrics()
        self.assertEqual(harness.metric_value(metrics, "tocsin_runbook_runs_finished_total",
                                              runbook="canary-rollback", outcome="succeeded"), 1)
        self.assertEqual(harness.metric_value(metrics, "tocsin_runbook_steps_total", runbook="canary-rollback",
                                              kind="rollback", outcome="succeeded"), 1)

        # A new episode of the same alert is a new run with a new Idempotency-Key.
        self.post_alerts([{"labels": self.alert(), "startsAt": rfc3339(time.time() + 1)}])
        harness.wait_until("a second run", lambda: len(self.runs(runbook="canary-rollback")["runs"]) == 2,
                           TIMEOUT_S)

    def test_bundled_example_end_to_end(self):
        canary = harness.server_process(
            "example-canary", [sys.executable, os.path.join(self.dir.path, "canary.py"), self.example_pid_file],
            os.path.join(self.dir.path, "example-canary.log"))
        harness.wait_until("the example canary's pid file", lambda: os.path.exists(self.example_pid_file), TIMEOUT_S)
        start = time.time()
        labels = {"alertname": "ModelAucDrift", "team": "ml", "model": "fraud", "version": "v7",
                  "severity": "critical"}
        self.post_alerts([{"labels": labels, "startsAt": rfc3339(start)}])

        waiting = self.wait_phase("model-rollback", "waiting_approval")
        harness.wait_until("the example canary to exit", lambda: not canary.running(), TIMEOUT_S)
        harness.wait_until("the approval request at ml-oncall", lambda: self.bodies("/webhook/ml-oncall"), TIMEOUT_S)
        self.assertFalse(os.path.exists(os.path.join(self.registry, "fraud", "current")))
        approved = self.admin("POST", f"/api/v1/runbooks/runs/{waiting['id']}/approve", {"by": "bob"})
        self.assertEqual(approved.status, 200, approved.text)

        harness.wait_until("the rollback", lambda: os.path.exists(os.path.join(self.registry, "fraud", "current")),
                           TIMEOUT_S)
        with open(os.path.join(self.registry, "fraud", "current")) as f:
            self.assertEqual(f.read(), "v6\n")
        harness.wait_until("the message to the data scientists",
                           lambda: self.bodies("/webhook/data-scientists"), TIMEOUT_S)
        text = self.bodies("/webhook/data-scientists")[0]["alerts"][0]["annotations"]["summary"]
        self.assertIn("stopped the canary of fraud and rolled it back from v7", text)
        rollback = self.run_of("model-rollback")["steps"][1]
        self.assertEqual(rollback["outcome"], "succeeded")
        self.assertIn("rolled fraud back from v7 to v6", rollback["output"])

        self.post_alerts([{"labels": labels, "startsAt": rfc3339(start), "endsAt": rfc3339(time.time())}])
        self.wait_phase("model-rollback", "finished", "succeeded")

    def test_check_counts_the_runbooks(self):
        config = os.path.join(self.dir.path, "tocsin.yaml")
        checked = subprocess.run([TOCSINCTL, "check", config], capture_output=True, text=True, timeout=30)
        self.assertEqual(checked.returncode, 0, checked.stderr)
        self.assertIn("4 receivers, 3 runbooks)", checked.stdout)

    def test_silenced_alert_is_skipped_and_recorded(self):
        now = time.time()
        silence = {"matchers": [{"name": "model", "value": "fraud", "isRegex": False, "isEqual": True}],
                   "startsAt": rfc3339(now - 60), "endsAt": rfc3339(now + 3600), "createdBy": "alice",
                   "comment": "maintenance"}
        created = self.admin("POST", "/api/v2/silences", silence)
        self.assertEqual(created.status, 200, created.text)
        self.post_alerts([{"labels": self.alert(), "startsAt": rfc3339(now)}])

        def skipped():
            return self.runs(runbook="canary-rollback")["skips"]
        skips = harness.wait_until("the recorded skip", skipped, TIMEOUT_S)
        self.assertEqual(skips[0]["reason"], "silenced")
        self.assertEqual(self.runs(runbook="canary-rollback")["runs"], [])
        self.assertTrue(self.canary.running())
        self.assertEqual(harness.metric_value(self.daemon.metrics(), "tocsin_runbook_decisions_total",
                                              runbook="canary-rollback", decision="skipped_silenced"), 1)

    def test_kill_during_step_interrupts(self):
        self.post_alerts([{"labels": {"alertname": "SlowFix", "severity": "warning"}, "startsAt": rfc3339(time.time())}])
        slow_out = os.path.join(self.dir.path, "slow.out")
        harness.wait_until("the slow program to start", lambda: os.path.exists(slow_out), TIMEOUT_S)
        self.daemon.kill()
        self.daemon.start()

        done = self.wait_phase("slow-fix", "finished", "interrupted")
        self.assertEqual(done["steps"][0]["outcome"], "interrupted")
        harness.wait_until("the escalation to ml-lead", lambda: self.bodies("/webhook/ml-lead"), TIMEOUT_S)
        escalation = self.bodies("/webhook/ml-lead")[0]["alerts"][0]
        self.assertEqual(escalation["labels"]["purpose"], "escalation")
        # The step was not run a second time.
        with open(slow_out) as f:
            self.assertEqual(f.read(), "start\n")
        verify = subprocess.run([TOCSINCTL, "audit", "verify", os.path.join(self.state_dir, "audit.log")],
                                capture_output=True, text=True, timeout=30)
        self.assertEqual(verify.returncode, 0, verify.stdout + verify.stderr)


if __name__ == "__main__":
    unittest.main(argv=UNITTEST_ARGV)
