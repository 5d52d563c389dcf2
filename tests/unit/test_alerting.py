"""The alert rules pass Debian's promtool 2.42 (`check rules`, and the unit tests beside them prove each alert fires
where it should and stays quiet where it should not); Alertmanager routes critical alerts to PagerDuty and warnings
to Slack when configured, and everything to the local receiver when not (amtool 0.25)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from app.config import PROJECT_ROOT, Settings
from monitoring.alerting import LOCAL, PAGERDUTY, SLACK, write_alertmanager_config

RULES = PROJECT_ROOT / "monitoring" / "prometheus" / "rules.yml"
RULE_TESTS = PROJECT_ROOT / "monitoring" / "prometheus" / "tests"


def _tool(name: str) -> Path:
    path = Settings().prometheus_bin_dir / name
    assert path.exists(), f"{path} missing: run cluster/local/bootstrap.sh (make test does)"
    return path


def _run(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120)


def test_the_tools_are_the_versions_the_tests_are_written_for() -> None:
    assert "version 2.42." in _run(_tool("promtool"), "--version").stdout + _run(_tool("promtool"), "--version").stderr
    amtool = _run(_tool("amtool"), "--version")
    assert "version 0.25." in amtool.stdout + amtool.stderr


def test_every_rule_file_passes_promtool_check_rules() -> None:
    result = _run(_tool("promtool"), "check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_where_it_should_and_stays_quiet_where_it_should_not() -> None:
    tests = sorted(RULE_TESTS.glob("*.yml"))
    result = _run(_tool("promtool"), "test", "rules", *tests)
    assert result.returncode == 0, result.stdout + result.stderr
    tested = {case["alertname"] for f in tests for t in yaml.safe_load(f.read_text())["tests"]
              for case in t.get("alert_rule_test", [])}
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r}
    assert tested == alerts, f"alerts without a test: {sorted(alerts - tested)}"
    for rule in (r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]):
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"]), rule["alert"]
        anchor = rule["annotations"]["runbook_url"].split("#")[1]
        assert f"## {anchor.replace('-', ' ')}" in (PROJECT_ROOT / "docs" / "runbook.md").read_text().lower()


def test_the_drift_rule_acts_at_the_settings_threshold() -> None:
    rule = next(r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]
                if r.get("alert") == "RiskrayFeatureDrift")
    assert rule["expr"].strip().endswith(f"> {Settings.model_fields['drift_psi_act'].default}")


def _routes(config: Path, *labels: str) -> str:
    result = _run(_tool("amtool"), "config", "routes", "test", f"--config.file={config}", *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize(("configured", "severity", "receiver"), [
    (False, "critical", LOCAL), (False, "warning", LOCAL),
    (True, "critical", PAGERDUTY), (True, "warning", SLACK), (True, "info", LOCAL),
])
def test_alerts_are_routed_by_severity_to_the_configured_receivers(
    tmp_path: Path, configured: bool, severity: str, receiver: str
) -> None:
    slack = SecretStr("https://hooks.slack.invalid/T0/B0/x") if configured else None
    settings = Settings(alert_slack_webhook_url=slack,
                        alert_pagerduty_routing_key=SecretStr("r" * 32) if configured else None)
    config = write_alertmanager_config(settings, tmp_path / "alertmanager.yml")
    check = _run(_tool("amtool"), "check-config", config)
    assert check.returncode == 0, check.stdout + check.stderr
    assert oct(config.stat().st_mode & 0o777) == "0o600"
    assert _routes(config, f"severity={severity}", "alertname=RiskrayTest") == receiver


def test_the_group_timings_come_from_the_settings_and_the_cluster_keeps_the_defaults(tmp_path: Path) -> None:
    from monitoring.alerting import cluster_alertmanager_config

    settings = Settings(alert_group_wait_s=3, alert_group_interval_s=4)
    local = yaml.safe_load(write_alertmanager_config(settings, tmp_path / "a.yml").read_text())
    assert (local["route"]["group_wait"], local["route"]["group_interval"]) == ("3s", "4s")
    cluster = cluster_alertmanager_config(Settings.model_construct(), "/secrets", "http://receiver.invalid/")
    assert (cluster["route"]["group_wait"], cluster["route"]["group_interval"]) == ("10s", "60s")
