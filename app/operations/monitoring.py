"""The monitoring services of the local stack: riskray's exporter, the local alert receiver, Alertmanager and
Prometheus, all on loopback with their data in the state folder.

Their configuration belongs to ``monitoring/`` (scrape config, rules, routing), which ``app`` may not import:
each program is started through ``python -m monitoring.local <name>``, which renders the service's config from
the settings and then becomes the service (exec), the way ``app.operations.haproxy_loopback`` launches HAProxy."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from app.config import Settings
from app.local_paths import monitoring_tool
from app.operations.supervisor import Program


@dataclass(frozen=True)
class MonitoringService:
    """The service interface of ``app.operations.manager`` (prepare, program, check, provision) for one program."""

    name: str
    port: Callable[[Settings], int]
    health_path: str

    def prepare(self, settings: Settings) -> None:
        settings.monitoring_dir.mkdir(parents=True, exist_ok=True)
        if self.name in ("prometheus", "alertmanager"):
            binary = monitoring_tool(settings, self.name)
            if not binary.exists():
                from app.operations.errors import StackError

                raise StackError(f"{binary} is missing: run the bootstrap (make bootstrap) to unpack Debian's "
                                 "prometheus and prometheus-alertmanager")

    def program(self, settings: Settings) -> Program:
        # the folder on the command line marks the process as this stack's (app.operations.manager.stray_processes)
        return Program(name=self.name, command=[sys.executable, "-m", "monitoring.local", self.name,
                                                str(settings.monitoring_dir)], stopwaitsecs=20)

    def url(self, settings: Settings) -> str:
        return f"http://{settings.monitoring_host}:{self.port(settings)}"

    def check(self, settings: Settings) -> None:
        httpx.get(self.url(settings) + self.health_path, timeout=5).raise_for_status()

    def provision(self, settings: Settings) -> None:
        """Nothing to create: each renders its own config on start."""




EXPORTER = MonitoringService("exporter", lambda s: s.exporter_port, "/metrics")
ALERT_RECEIVER = MonitoringService("alerts", lambda s: s.alert_webhook_port, "/health")
ALERTMANAGER = MonitoringService("alertmanager", lambda s: s.alertmanager_port, "/-/ready")
PROMETHEUS = MonitoringService("prometheus", lambda s: s.prometheus_port, "/-/ready")
SERVICES = (EXPORTER, ALERT_RECEIVER, ALERTMANAGER, PROMETHEUS)
