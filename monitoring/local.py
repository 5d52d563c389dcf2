"""Launchers of the local stack's monitoring programs: ``python -m monitoring.local <name> <monitoring folder>``.

``prometheus`` and ``alertmanager`` render their config from the settings into the monitoring folder, then exec
Debian's binaries bound to ``monitoring_host``; ``exporter`` and ``alerts`` run riskray's exporter and the local
alert receiver. (The folder argument only marks the process as this stack's; the settings decide.)

The scrape config is the one source of what Prometheus watches; the Kubernetes issue turns the same jobs into
PodMonitors/ServiceMonitors:

* ``riskray-serve``: the prediction API's ``/metrics`` (riskray's counters summed over replicas, the gauges of
  the latest monitoring report);
* ``ray``: every Ray node's metrics export, found through the file-based service discovery file Ray keeps
  up to date in its temp folder (no hard-coded ports; Serve's own ``ray_serve_*`` metrics are there);
* ``riskray-exporter``: stream lag and freshness, the prediction log, dead letters (``monitoring.exporter``);
* ``prometheus`` and ``alertmanager`` themselves.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import yaml

from app.config import PROJECT_ROOT, Settings, get_settings
from app.local_paths import monitoring_tool, ray_temp_dir
from monitoring import alerting

RULES = PROJECT_ROOT / "monitoring" / "prometheus" / "rules.yml"
RAY_DISCOVERY_FILE = "prom_metrics_service_discovery.json"


def prometheus_config(settings: Settings) -> dict[str, Any]:
    interval = f"{settings.prometheus_scrape_interval_s}s"
    host = settings.monitoring_host

    def static(job: str, target: str, path: str = "/metrics") -> dict[str, Any]:
        return {"job_name": job, "metrics_path": path, "static_configs": [{"targets": [target]}]}

    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval,
                   "external_labels": {"stack": "riskray-local"}},
        "rule_files": [str(rules_path(settings))],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"{host}:{settings.alertmanager_port}"]}]}]},
        "scrape_configs": [
            static("riskray-serve", f"{settings.ray_host}:{settings.serve_port}"),
            {"job_name": "ray", "file_sd_configs": [{"files": [str(ray_discovery_file(settings))]}]},
            static("riskray-exporter", f"{host}:{settings.exporter_port}"),
            static("prometheus", f"{host}:{settings.prometheus_port}"),
            static("alertmanager", f"{host}:{settings.alertmanager_port}"),
        ],
    }


def rules_path(settings: Settings) -> Path:
    """The rules Prometheus loads: rules.yml itself, or a copy with every ``for:`` set from the settings."""
    if settings.alert_rule_for_s is None:
        return RULES
    return settings.monitoring_dir / "rules.yml"


def write_rules(settings: Settings) -> Path:
    path = rules_path(settings)
    if path != RULES:
        groups = yaml.safe_load(RULES.read_text())
        for group in groups["groups"]:
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = f"{settings.alert_rule_for_s}s"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(groups, sort_keys=False))
    return path


def ray_discovery_file(settings: Settings) -> Path:
    """Ray writes its nodes' metrics targets here (a link to the current session's file)."""
    return ray_temp_dir(settings) / RAY_DISCOVERY_FILE


def prometheus_config_path(settings: Settings) -> Path:
    return settings.monitoring_dir / "prometheus.yml"


def alertmanager_config_path(settings: Settings) -> Path:
    return settings.monitoring_dir / "alertmanager.yml"


def write_prometheus_config(settings: Settings) -> Path:
    """The config and the rules it names."""
    write_rules(settings)
    path = prometheus_config_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(prometheus_config(settings), sort_keys=False))
    return path


def prometheus_command(settings: Settings) -> list[str]:
    data = settings.monitoring_dir / "prometheus-data"
    return [str(monitoring_tool(settings, "prometheus")), f"--config.file={prometheus_config_path(settings)}",
            f"--storage.tsdb.path={data}", f"--storage.tsdb.retention.time={settings.prometheus_retention}",
            f"--web.listen-address={settings.monitoring_host}:{settings.prometheus_port}",
            "--web.enable-lifecycle"]  # POST /-/reload after a rules change


def alertmanager_command(settings: Settings) -> list[str]:
    return [str(monitoring_tool(settings, "alertmanager")), f"--config.file={alertmanager_config_path(settings)}",
            f"--storage.path={settings.monitoring_dir / 'alertmanager-data'}",
            f"--web.listen-address={settings.monitoring_host}:{settings.alertmanager_port}",
            "--cluster.listen-address="]  # no HA gossip: it would listen on every interface


def main(argv: list[str]) -> None:
    name = argv[0] if argv else ""
    settings = get_settings()
    if name == "prometheus":
        write_prometheus_config(settings)
        command = prometheus_command(settings)
    elif name == "alertmanager":
        alerting.write_alertmanager_config(settings, alertmanager_config_path(settings))
        command = alertmanager_command(settings)
    elif name == "exporter":
        from monitoring import exporter

        exporter.serve(settings)
        return
    elif name == "alerts":
        from monitoring import alert_receiver

        alert_receiver.serve(settings)
        return
    else:
        raise SystemExit(f"usage: python -m monitoring.local prometheus|alertmanager|exporter|alerts <folder>; "
                         f"got {name!r}")
    sys.stdout.flush()
    os.execv(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
