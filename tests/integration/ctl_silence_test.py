"""Black-box tests of `tocsinctl silence add|query|update|expire` against a running tocsind.

tocsind runs on 127.0.0.1 with an admin token and no receivers. The tests run the built
tocsinctl, check its output and exit code, and check the server's state over
GET /api/v2/silences. Only the Python standard library is used.
"""

import os
import shutil
import subprocess
import time
import unittest

import harness

ARGS, UNITTEST_ARGV = harness.parse_args()
TOCSINCTL = os.path.join(ARGS.bin_dir, "tocsinctl")
TOKEN = "ctl-silence-test-token-5b1d"

CONFIG = """\
listen: 127.0.0.1:{port}
state_dir: {state_dir}
rule_files: ["rules/*.yaml"]
shutdown_timeout: 5s
auth:
  admin_token_files: [{token_file}]
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


class ctl_silence_test(unittest.TestCase):
    def setUp(self):
        self.dir = harness.temp_dir("tocsin-ctl-silence-", keep=ARGS.keep_temp)
        self.port = harness.free_port()
        # Whitespace around the token, as an editor leaves it.
        self.token_file = self.dir.file("admin.token", f"  {TOKEN}\n\n")
        self.dir.file("rules/disks.yaml", RULES)
        self.config = self.dir.file("tocsin.yaml", CONFIG.format(
            port=self.port, state_dir=os.path.join(self.dir.path, "state"), token_file=self.token_file))
        self.base = f"http://127.0.0.1:{self.port}"
        self.daemon = harness.tocsind(ARGS.bin_dir, self.config, self.port,
                                      os.path.join(self.dir.path, "tocsind.log"), scheme="http").start()

    def tearDown(self):
        if self.daemon.process is not None and self.daemon.process.running():
            self.daemon.stop()

    def ctl(self, *args, env=None, url="default"):
        """Run tocsinctl silence ARGS; return (exit code, stdout, stderr)."""
        full_env = {k: v for k, v in os.environ.items() if k not in ("TOCSIN_URL", "TOCSIN_TOKEN")}
        full_env["USER"] = "ci-user"
        full_env.update(env or {})
        argv = [TOCSINCTL, "silence", *args]
        if url is not None:
            argv += ["--url", self.base if url == "default" else url]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=full_env)
        output = done.stdout + done.stderr
        self.assertNotIn(TOKEN, output, "tocsinctl printed the token")
        return done.returncode, done.stdout, done.stderr

    def server_silences(self):
        response = harness.http("GET", self.base + "/api/v2/silences")
        self.assertEqual(response.status, 200, response.text)
        return {s["id"]: s for s in response.json()}

    def test_add_query_update_expire(self):
        now = time.time()
        code, out, err = self.ctl("add", "--token-file", self.token_file, "--author", "alice",
                                  "--comment", "disk swap, OPS-12", "--duration", "2h",
                                  "DiskFull", "instance=~db-.*", "env!=dev")
        self.assertEqual(code, 0, err)
        first = out.strip()
        self.assertRegex(first, r"^[0-9a-f-]{36}$")

        silences = self.server_silences()
        self.assertEqual(list(silences), [first])
        saved = silences[first]
        self.assertEqual(saved["status"]["state"], "active")
        self.assertEqual(saved["createdBy"], "alice")
        self.assertEqual(saved["comment"], "disk swap, OPS-12")
        self.assertEqual(saved["matchers"], [
            {"name": "alertname", "value": "DiskFull", "isRegex": False, "isEqual": True},
            {"name": "instance", "value": "db-.*", "isRegex": True, "isEqual": True},
            {"name": "env", "value": "dev", "isRegex": False, "isEqual": False},
        ])
        self.assertAlmostEqual(harness.parse_rfc3339(saved["endsAt"]), now + 7200, delta=30)

        # URL and token from the environment, author from $USER, a pending silence.
        start = now + 86400
        code, out, err = self.ctl("add", "--comment", "maintenance", "--start", rfc3339(start),
                                  "--end", rfc3339(start + 3600), "alertname=HighCpu", "job=node", url=None,
                                  env={"TOCSIN_URL": self.base, "TOCSIN_TOKEN": TOKEN})
        self.assertEqual(code, 0, err)
        pending = out.strip()
        saved = self.server_silences()[pending]
        self.assertEqual(saved["status"]["state"], "pending")
        self.assertEqual(saved["createdBy"], "ci-user")

        # The table: a header, then active ones before pending ones.
        code, out, err = self.ctl("query")
        self.assertEqual(code, 0, err)
        lines = out.splitlines()
        self.assertEqual(lines[0].split(), ["ID", "Matchers", "Starts", "At", "Ends", "At", "Created", "By",
                                            "Comment"])
        self.assertEqual([line.split()[0] for line in lines[1:]], [first, pending])
        self.assertIn('alertname="DiskFull" instance=~"db-.*" env!="dev"', lines[1])
        self.assertIn("disk swap, OPS-12", lines[1])
        self.assertTrue(lines[2].rstrip().endswith("ci-user     maintenance"), lines[2])

        # Filters go to the server; a bare first argument is the alert name.
        code, out, err = self.ctl("query", "-q", "DiskFull")
        self.assertEqual((code, out), (0, first + "\n"), err)
        code, out, err = self.ctl("query", "-q", "job=node")
        self.assertEqual((code, out), (0, pending + "\n"), err)
        code, out, err = self.ctl("query", "-q", "alertname=Nothing")
        self.assertEqual((code, out), (0, ""), err)

        # Update in place: the active silence's end and comment, then the pending one's end.
        code, out, err = self.ctl("update", "--token-file", self.token_file, "--duration", "3h",
                                  "--comment", "takes longer", first)
        self.assertEqual(code, 0, err)
        self.assertEqual(out.strip(), first)
        saved = self.server_silences()[first]
        self.assertEqual(saved["comment"], "takes longer")
        self.assertEqual(saved["createdBy"], "alice")
        self.assertAlmostEqual(harness.parse_rfc3339(saved["endsAt"]), time.time() + 3 * 3600, delta=30)

        code, out, err = self.ctl("update", "--token-file", self.token_file, "--end", rfc3339(start + 7200),
                                  pending)
        self.assertEqual((code, out.strip()), (0, pending), err)
        self.assertEqual(harness.parse_rfc3339(self.server_silences()[pending]["endsAt"]), int(start) + 7200)

        # Expire: the known one expires, the unknown one fails the command.
        code, out, err = self.ctl("expire", "--token-file", self.token_file, first, "no-such-silence")
        self.assertEqual(code, 1)
        self.assertEqual(err, "tocsinctl: 404: silence no-such-silence not found\n")
        self.assertEqual(self.server_silences()[first]["status"]["state"], "expired")
        code, out, err = self.ctl("expire", "--token-file", self.token_file, first)
        self.assertEqual(code, 1)
        self.assertRegex(err, r"^tocsinctl: 409: silence [0-9a-f-]+ already expired")

        code, out, err = self.ctl("query", "-q")
        self.assertEqual((code, out), (0, pending + "\n"), err)
        code, out, err = self.ctl("query", "-q", "--expired")
        self.assertEqual((code, out), (0, first + "\n"), err)

        # An expired silence cannot be updated.
        code, out, err = self.ctl("update", "--token-file", self.token_file, "--comment", "again", first)
        self.assertEqual(code, 1)
        self.assertIn("has expired", err)

    def test_update_of_a_pending_silence_keeps_its_id(self):
        start = time.time() + 3600
        code, out, err = self.ctl("add", "--token-file", self.token_file, "--comment", "later",
                                  "--start", rfc3339(start), "DiskFull")
        self.assertEqual(code, 0, err)
        old = out.strip()
        # --duration counts from the start of a pending silence.
        code, out, err = self.ctl("update", "--token-file", self.token_file, "--duration", "10m", old)
        self.assertEqual((code, out.strip()), (0, old), err)
        silences = self.server_silences()
        self.assertEqual(list(silences), [old])
        self.assertEqual(silences[old]["status"]["state"], "pending")
        self.assertAlmostEqual(harness.parse_rfc3339(silences[old]["endsAt"]), int(start) + 600, delta=1)

    def test_errors_name_the_problem(self):
        # No token: the server's 401, and nothing stored.
        code, out, err = self.ctl("add", "--comment", "x", "DiskFull")
        self.assertEqual(code, 1)
        self.assertEqual(out, "")
        self.assertTrue(err.startswith("tocsinctl: 401: missing bearer token"), err)
        code, out, err = self.ctl("add", "--comment", "x", "DiskFull", env={"TOCSIN_TOKEN": "wrong"})
        self.assertEqual(code, 1)
        self.assertTrue(err.startswith("tocsinctl: 401: invalid bearer token"), err)

        # The server's validation message, as a JSON string decoded.
        code, out, err = self.ctl("add", "--token-file", self.token_file, "--comment", "x", "instance=~.*")
        self.assertEqual(code, 1)
        self.assertTrue(err.startswith("tocsinctl: 400: ") and "empty string" in err, err)

        # Usage errors exit 2 and send nothing.
        code, out, err = self.ctl("add", "--token-file", self.token_file, "--comment", "x", "instance=~db-(")
        self.assertEqual(code, 2)
        self.assertIn('invalid matcher "instance=~db-("', err)
        self.assertIn("name=~regex", err)
        code, out, err = self.ctl("add", "--token-file", self.token_file, "--comment", "x", "--duration", "2 h",
                                  "DiskFull")
        self.assertEqual(code, 2)
        self.assertIn('--duration "2 h"', err)
        code, out, err = self.ctl("add", "--token-file", self.token_file, "DiskFull")
        self.assertEqual(code, 2)
        self.assertIn("--comment", err)
        code, out, err = self.ctl("add", "--token-file", self.token_file, "--comment", "x", "--duration", "1h",
                                  "--end", rfc3339(time.time() + 60), "DiskFull")
        self.assertEqual(code, 2)
        code, out, err = self.ctl("update", "--token-file", self.token_file, "some-id")
        self.assertEqual(code, 2)
        self.assertIn("nothing to change", err)
        code, out, err = self.ctl("add", "--token-file", os.path.join(self.dir.path, "missing.token"),
                                  "--comment", "x", "DiskFull")
        self.assertEqual(code, 2)
        self.assertIn("cannot read the token file", err)
        code, out, err = self.ctl("query", url="127.0.0.1:9793")
        self.assertEqual(code, 2)
        self.assertIn("http://", err)
        self.assertEqual(self.server_silences(), {})

        # Nothing listens: the URL and the way to change it.
        closed = f"http://127.0.0.1:{harness.free_port()}"
        code, out, err = self.ctl("query", url=closed)
        self.assertEqual(code, 1)
        self.assertIn(closed, err)
        self.assertIn("--url", err)
        self.assertIn("--url", self.ctl("query", url=None, env={"TOCSIN_URL": closed})[2])


class ctl_silence_tls_test(unittest.TestCase):
    def test_https_with_a_private_ca(self):
        if shutil.which("openssl") is None:
            self.skipTest("the openssl command is not installed")
        directory = harness.temp_dir("tocsin-ctl-silence-tls-", keep=ARGS.keep_temp)
        cert = os.path.join(directory.path, "tls.crt")
        key = os.path.join(directory.path, "tls.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", key, "-out", cert], check=True, capture_output=True, timeout=60)
        port = harness.free_port()
        directory.file("rules/disks.yaml", RULES)
        token_file = directory.file("admin.token", TOKEN)
        config = directory.file("tocsin.yaml", CONFIG.format(
            port=port, state_dir=os.path.join(directory.path, "state"), token_file=token_file)
            + f"tls:\n  cert_file: {cert}\n  key_file: {key}\n")
        # Not waiting for readiness here, because the harness's probe does not trust this CA.
        daemon = harness.tocsind(ARGS.bin_dir, config, port, os.path.join(directory.path, "tocsind.log"),
                                 scheme="https").start(wait_ready=False)
        try:
            url = f"https://127.0.0.1:{port}"
            env = {k: v for k, v in os.environ.items() if k not in ("TOCSIN_URL", "TOCSIN_TOKEN")}

            def run(*args):
                return subprocess.run([TOCSINCTL, "silence", *args, "--url", url], capture_output=True, text=True,
                                      timeout=60, env=env)

            harness.wait_until("tocsind to serve https",
                               lambda: run("query", "--ca-file", cert).returncode == 0, 30)
            added = run("add", "--ca-file", cert, "--token-file", token_file, "--author", "tls", "--comment", "x",
                        "DiskFull")
            self.assertEqual(added.returncode, 0, added.stderr)
            listed = run("query", "-q", "--ca-file", cert)
            self.assertEqual(listed.stdout, added.stdout)

            untrusted = run("query")
            self.assertEqual(untrusted.returncode, 1)
            self.assertIn("--ca-file", untrusted.stderr)
            plain = subprocess.run([TOCSINCTL, "silence", "query", "--url", f"http://127.0.0.1:{port}"],
                                   capture_output=True, text=True, timeout=60, env=env)
            self.assertEqual(plain.returncode, 1)
            self.assertIn("https://", plain.stderr)
        finally:
            daemon.stop()


if __name__ == "__main__":
    harness.require_binary(os.path.join(ARGS.bin_dir, "tocsind"))
    harness.require_binary(TOCSINCTL)
    unittest.main(argv=UNITTEST_ARGV)
