"""Model monitoring end to end: records and outcomes in, figures and alerts out.

tocsind reads a model schema with a reference file. The test streams inference records from a
seeded generator and outcomes for them. At first every feature looks like its reference and the
model is right 90% of the time: GET /api/v1/models/churn shows low PSI, no missing values, and
no rule fires. Then `income` shifts, `tenure` arrives empty and the model is right half of the
time: the figures show it for those features only, and the rules on the series tocsin_model
fire for the right feature. Bad records in a batch are reported by index while the good ones
are kept.
"""

import json
import os
import random
import time
import unittest

import harness

ARGS, UNITTEST_ARGV = harness.parse_args()
TIMEOUT_S = 40

TOCSIN_CONFIG = """\
listen: 127.0.0.1:{port}
state_dir: {state_dir}
rule_files: [{rules}]
model_schemas: {schemas}
shutdown_timeout: 5s
"""

SCHEMAS = """\
models:
  - name: churn
    task: binary_classification
    threshold: 0.5
    window: {duration: 1h, buckets: 60}
    outcome_horizon: 1h
    features:
      - name: income
        type: numeric
        range: [0, null]
        reference: {file: reference.jsonl}
      - name: tenure
        type: numeric
        reference: {file: reference.jsonl}
      - name: plan
        type: categorical
        reference: {file: reference.jsonl}
    prediction:
      type: score
"""

RULES = """\
groups:
  - name: models
    rules:
      - alert: FeatureDrift
        expr: tocsin_model{metric="psi"}
        tiers:
          warning: "> 0.25"
        annotations:
          summary: 'feature {{ $labels.feature }} of {{ $labels.model }} drifted (PSI {{ $value }})'
      - alert: FeatureMissing
        expr: tocsin_model{metric="missing_rate"}
        tiers:
          critical: "> 0.3"
      - alert: ModelAccuracyLow
        expr: tocsin_model{metric="accuracy"}
        tiers:
          critical: "< 0.75"
"""

PLANS = ["basic", "plus", "pro"]


def features(rng, drifted):
    return {
        "income": rng.gauss(80000 if drifted else 50000, 8000),
        "tenure": None if drifted else rng.randint(1, 60),
        "plan": rng.choice(PLANS),
    }


def reference_lines(rng, n):
    return "".join(json.dumps({"features": features(rng, False), "prediction": rng.random()}) + "\n"
                   for _ in range(n))


class models_test(unittest.TestCase):
    def setUp(self):
        self.dir = harness.temp_dir("tocsin-models-", keep=ARGS.keep_temp)
        self.dir.file("reference.jsonl", reference_lines(random.Random(7), 2000))
        schemas = self.dir.file("models.yaml", SCHEMAS)
        rules = self.dir.file("rules.yaml", RULES)
        self.port = harness.free_port()
        config = self.dir.file("tocsin.yaml", TOCSIN_CONFIG.format(
            port=self.port, state_dir=os.path.join(self.dir.path, "state"), rules=rules, schemas=schemas))
        self.daemon = harness.tocsind(ARGS.bin_dir, config, self.port,
                                      os.path.join(self.dir.path, "tocsind.log")).start()
        self.rng = random.Random(42)
        self.next_id = 0

    def tearDown(self):
        if self.daemon.process.running():
            self.daemon.stop()

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def post(self, path, items, ndjson=False):
        if ndjson:
            body = "".join(json.dumps(i) + "\n" for i in items)
            content_type = "application/x-ndjson"
        else:
            body = json.dumps(items)
            content_type = "application/json"
        return harness.http("POST", self.url(path), body, {"Content-Type": content_type})

    def stream(self, count, drifted):
        """Posts `count` records and their outcomes; the model is right 90% (50% when drifted)."""
        now_ms = int(time.time() * 1000)
        records, outcomes = [], []
        for _ in range(count):
            self.next_id += 1
            score = self.rng.random()
            right = self.rng.random() < (0.5 if drifted else 0.9)
            predicted = 1 if score >= 0.5 else 0
            records.append({"model": "churn", "version": "v1", "timestamp": now_ms, "id": f"r{self.next_id}",
                            "features": features(self.rng, drifted), "prediction": score})
            outcomes.append({"model": "churn", "id": f"r{self.next_id}", "timestamp": now_ms,
                             "outcome": predicted if right else 1 - predicted})
        answer = self.post("/api/v1/records", records, ndjson=drifted)
        self.assertEqual(answer.status, 200, answer.text)
        self.assertEqual(answer.json()["accepted"], count)
        answer = self.post("/api/v1/outcomes", outcomes)
        self.assertEqual(answer.status, 200, answer.text)
        self.assertEqual(answer.json()["joined"], count)

    def figures(self):
        response = harness.http("GET", self.url("/api/v1/models/churn"))
        self.assertEqual(response.status, 200, response.text)
        return response.json()["versions"].get("v1", {})

    def rule_series(self, name):
        rules = harness.http("GET", self.url("/api/v1/rules")).json()["data"]["groups"]
        for group in rules:
            for rule in group["rules"]:
                if rule["name"] == name:
                    return rule.get("series", 0)
        return 0

    def firing(self):
        return {(a["labels"]["alertname"], a["labels"].get("feature", ""))
                for a in self.daemon.alerts() if a["state"] == "firing"}

    def test_drift_alerts_name_the_feature(self):
        self.stream(600, drifted=False)
        before = self.figures()
        self.assertLess(before["features"]["income"]["psi"]["value"], 0.1)
        self.assertEqual(before["features"]["tenure"]["missing_rate"]["value"], 0)
        self.assertGreater(before["metrics"]["accuracy"]["value"], 0.85)
        self.assertEqual(before["metrics"]["accuracy"]["samples"], 600)
        # The figures reach the rules at the next publication (every 5 s); nothing fires on them.
        harness.wait_until("the first figures as series", lambda: self.rule_series("FeatureMissing") == 3,
                           TIMEOUT_S)
        self.assertEqual(self.firing(), set())

        self.stream(1400, drifted=True)
        after = self.figures()
        self.assertGreater(after["features"]["income"]["psi"]["value"], 0.25)
        self.assertLess(after["features"]["plan"]["psi"]["value"], 0.1)
        self.assertGreater(after["features"]["tenure"]["missing_rate"]["value"], 0.6)
        self.assertEqual(after["features"]["income"]["missing_rate"]["value"], 0)
        self.assertLess(after["metrics"]["accuracy"]["value"], 0.75)

        expected = {("FeatureDrift", "income"), ("FeatureMissing", "tenure"), ("ModelAccuracyLow", "")}
        harness.wait_until("the three alerts", lambda: self.firing() >= expected, TIMEOUT_S)
        self.assertEqual(self.firing(), expected)

        # The reference can be exported, in the form a stored reference reads.
        exported = harness.http("GET", self.url("/api/v1/models/churn/versions/v1/reference?feature=income"))
        self.assertEqual(exported.status, 200, exported.text)
        self.assertIn("edges", exported.json())
        missing = harness.http("GET", self.url("/api/v1/models/churn/versions/v9/reference?feature=income"))
        self.assertEqual(missing.status, 404, missing.text)

    def test_bad_records_reported_by_index(self):
        now_ms = int(time.time() * 1000)
        good = {"model": "churn", "version": "v1", "timestamp": now_ms, "id": "ok",
                "features": {"income": 1000, "tenure": 3, "plan": "pro"}, "prediction": 0.2}
        bad_model = dict(good, model="fraud")
        bad_time = dict(good, timestamp="yesterday")
        answer = self.post("/api/v1/records", [good, bad_model, bad_time])
        self.assertEqual(answer.status, 400, answer.text)
        body = answer.json()
        self.assertEqual(body["accepted"], 1)
        self.assertEqual([e["index"] for e in body["errors"]], [1, 2])
        self.assertIn("fraud", body["errors"][0]["error"])

        self.assertEqual(harness.http("POST", self.url("/api/v1/records"), "{not json",
                                      {"Content-Type": "application/json"}).status, 400)
        self.assertEqual(harness.http("GET", self.url("/api/v1/models/nosuch")).status, 404)
        listed = harness.http("GET", self.url("/api/v1/models")).json()
        self.assertEqual(listed["models"], [{"model": "churn", "versions": ["v1"]}])


if __name__ == "__main__":
    unittest.main(argv=UNITTEST_ARGV)
