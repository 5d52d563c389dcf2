"""What the local Prometheus is told to watch (promtool 2.42 accepts it), and the dashboard: the committed JSON is
the one definition, importable into current Grafana, its counters summed without per-process labels."""

from __future__ import annotations

import json
import re
import subprocess

from app.config import Settings
from monitoring import dashboard, local


def _settings(**changes: object) -> Settings:
    return Settings(**changes)  # type: ignore[arg-type]


def test_the_rendered_prometheus_config_passes_promtool_check_config(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = _settings(monitoring_work_dir=tmp_path)
    path = local.write_prometheus_config(settings)
    result = subprocess.run([str(settings.prometheus_bin_dir / "promtool"), "check", "config", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_scrape_targets_come_from_settings_and_ray_is_found_through_its_discovery_file() -> None:
    settings = _settings(serve_port=18000, exporter_port=18097, prometheus_port=18090, alertmanager_port=18095,
                         monitoring_host="127.0.0.9", ray_host="127.0.0.8", prometheus_scrape_interval_s=7,
                         alert_rule_for_s=None)
    config = local.prometheus_config(settings)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["riskray-serve"]["static_configs"][0]["targets"] == ["127.0.0.8:18000"]
    assert jobs["riskray-exporter"]["static_configs"][0]["targets"] == ["127.0.0.9:18097"]
    assert jobs["ray"]["file_sd_configs"][0]["files"] == [str(local.ray_discovery_file(settings))]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.9:18095"]
    assert config["global"]["scrape_interval"] == config["global"]["evaluation_interval"] == "7s"
    assert config["rule_files"] == [str(local.RULES)]


def test_a_short_alert_duration_renders_a_copy_of_the_rules_that_differs_only_in_for(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import yaml

    settings = _settings(monitoring_work_dir=tmp_path, alert_rule_for_s=10)
    path = local.write_rules(settings)
    assert local.prometheus_config(settings)["rule_files"] == [str(path)] and path != local.RULES
    production = yaml.safe_load(local.RULES.read_text())
    rendered = yaml.safe_load(path.read_text())
    fors = {r["for"] for g in rendered["groups"] for r in g["rules"] if "for" in r}
    assert fors == {"10s"}
    for group in production["groups"]:
        for rule in group["rules"]:
            rule.update({"for": "10s"} if "for" in rule else {})
    assert rendered == production
    result = subprocess.run([str(settings.prometheus_bin_dir / "promtool"), "check", "rules", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_services_listen_on_the_monitoring_host_only() -> None:
    settings = _settings(monitoring_host="127.0.0.9")
    assert "--web.listen-address=127.0.0.9:29090" in local.prometheus_command(settings)
    command = local.alertmanager_command(settings)
    assert "--web.listen-address=127.0.0.9:29095" in command and "--cluster.listen-address=" in command


def test_the_committed_dashboard_is_the_definition() -> None:
    committed = json.loads(dashboard.DASHBOARD_FILE.read_text())
    assert committed == dashboard.grafana_dashboard(), "run python -m monitoring.dashboard"


def test_the_dashboard_imports_into_current_grafana_with_a_datasource_variable() -> None:
    board = dashboard.grafana_dashboard()
    assert board["schemaVersion"] == 42
    (variable,) = board["templating"]["list"]
    assert variable["type"] == "datasource" and variable["query"] == "prometheus"
    titles = [p["title"] for p in board["panels"]]
    for wanted in ("Request rate", "Prediction latency", "Model accuracy", "Data drift", "Serve replicas", "CPU",
                   "Memory", "Error rate", "Feature freshness", "Degraded share", "Ray Serve HTTP"):
        assert any(t.startswith(wanted) for t in titles), wanted
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])
        assert len({p["gridPos"]["y"] * 100 + p["gridPos"]["x"] for p in board["panels"]}) == len(board["panels"])


def test_every_rate_is_aggregated_so_replica_restarts_do_not_break_it() -> None:
    for panel in dashboard.PANELS:
        for target in panel.targets:
            if re.search(r"\b(rate|increase)\(", target.expr):
                assert re.match(r"\(?(sum|max|avg|histogram_quantile)\b", target.expr), f"{panel.title}: {target.expr}"
