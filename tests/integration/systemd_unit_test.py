"""Checks systemd/tocsind.service with `systemd-analyze verify`.

verify needs the ExecStart binary to exist, so the test verifies a temporary copy whose
ExecStart points at the built tocsind. systemd-analyze exits 0 even for unknown keys and values
it cannot parse (it only prints a warning), so any output at all fails the test.
Exits 77 (skipped) when systemd-analyze is not installed.
"""

import os
import re
import shutil
import subprocess
import sys
import unittest

import harness

ARGS, UNITTEST_ARGV = harness.parse_args()
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
UNIT = os.path.join(ARGS.source_dir, "systemd", "tocsind.service")
INSTALLED_BINARY = "/usr/local/bin/tocsind"


class systemd_unit_test(unittest.TestCase):
    def setUp(self):
        with open(UNIT, encoding="utf-8") as f:
            self.unit = f.read()
        self.dir = harness.temp_dir("tocsin-systemd-", keep=ARGS.keep_temp)

    def verify(self, text):
        path = self.dir.file("tocsind.service", text)
        completed = subprocess.run([SYSTEMD_ANALYZE, "verify", path], capture_output=True,
                                   timeout=60, env=dict(os.environ, SYSTEMD_LOG_COLOR="0"))
        output = (completed.stdout + completed.stderr).decode(errors="replace").strip()
        return completed.returncode, output

    def test_unit_verifies_cleanly(self):
        self.assertIn(f"ExecStart={INSTALLED_BINARY} ", self.unit,
                      "ExecStart no longer starts /usr/local/bin/tocsind; update this test")
        tocsind = os.path.join(ARGS.bin_dir, "tocsind")
        code, output = self.verify(self.unit.replace(INSTALLED_BINARY, tocsind))
        self.assertEqual(code, 0, f"systemd-analyze verify failed:\n{output}")
        self.assertEqual(output, "", f"systemd-analyze verify printed warnings:\n{output}")

    def test_verify_catches_a_bad_line(self):
        # Proves that the check above can fail: a misspelt key must produce a warning.
        tocsind = os.path.join(ARGS.bin_dir, "tocsind")
        broken = self.unit.replace(INSTALLED_BINARY, tocsind).replace(
            "NoNewPrivileges=yes", "NoNewPrivilege=yes")
        _, output = self.verify(broken)
        self.assertIn("NoNewPrivilege", output)

    def test_unit_keeps_required_settings(self):
        settings = {}
        for line in self.unit.splitlines():
            match = re.match(r"^([A-Za-z]+)=(.*)$", line)
            if match:
                settings.setdefault(match.group(1), []).append(match.group(2))
        expected = {
            "Type": "notify",
            "NotifyAccess": "main",
            "ExecReload": "/bin/kill -HUP $MAINPID",
            "Restart": "on-failure",
            "StateDirectory": "tocsin",
            "ConfigurationDirectory": "tocsin",
            "NoNewPrivileges": "yes",
            "ProtectSystem": "strict",
            "CapabilityBoundingSet": "",
            "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        }
        for key, value in expected.items():
            with self.subTest(key):
                self.assertIn(value, settings.get(key, []), f"{key}={value} is missing")
        self.assertIn("WatchdogSec", settings)
        self.assertIn("TimeoutStopSec", settings)


if __name__ == "__main__":
    if SYSTEMD_ANALYZE is None:
        harness.skip("systemd-analyze is not installed (apt-get install systemd)")
    harness.require_binary(os.path.join(ARGS.bin_dir, "tocsind"))
    result = unittest.main(argv=UNITTEST_ARGV, exit=False, verbosity=2).result
    sys.exit(0 if result.wasSuccessful() else 1)
