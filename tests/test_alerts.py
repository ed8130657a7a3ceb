"""The Prometheus alert rules shipped in docker/prometheus/ (alerts.yml, with the scrape configuration
prometheus.yml): valid for Prometheus's own promtool, and their unit tests (alerts.test.yml: each alert fires on
the series that mean trouble, after its `for`, and stays silent on a healthy bus) pass."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.servers import REPO

RULES = REPO / "docker" / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("promtool is not installed: run `make test-deps` (apt-get install prometheus)")
    return subprocess.run([tool, *args], cwd=RULES, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args", [("check", "rules", "alerts.yml"), ("check", "config", "prometheus.yml"),
                                  ("test", "rules", "alerts.test.yml")], ids=" ".join)
def test_promtool_accepts(args):
    done = promtool(*args)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_unit_test():
    import yaml

    alerts = {rule["alert"] for group in yaml.safe_load((RULES / "alerts.yml").read_text())["groups"]
              for rule in group["rules"]}
    tested = {case["alertname"] for test in yaml.safe_load((RULES / "alerts.test.yml").read_text())["tests"]
              for case in test["alert_rule_test"] if case.get("exp_alerts")}
    assert alerts == tested, f"alerts never seen firing in alerts.test.yml: {sorted(alerts - tested)}"
