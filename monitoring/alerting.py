"""Alertmanager's configuration, rendered from settings (Alertmanager reads no environment variables): critical
alerts to PagerDuty (Events API v2), warnings to Slack, each only when its URL or key is set; with neither set,
every alert goes to the local webhook receiver the stack runs, which logs it, so nothing is posted anywhere by
default. The rendered file holds secrets: it is written to the state folder with mode 600."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from app.config import Settings

LOCAL = "local-webhook"
PAGERDUTY = "pagerduty"
SLACK = "slack"


def local_webhook_url(settings: Settings) -> str:
    return f"http://{settings.monitoring_host}:{settings.alert_webhook_port}/alerts"


def alertmanager_config(settings: Settings) -> dict[str, Any]:
    pagerduty = slack = None
    if settings.alert_pagerduty_routing_key is not None:
        pagerduty = {"routing_key": settings.alert_pagerduty_routing_key.get_secret_value()}
    if settings.alert_slack_webhook_url is not None:
        slack = {"api_url": settings.alert_slack_webhook_url.get_secret_value()}
    return _config(local_webhook_url(settings), settings, pagerduty, slack)


def cluster_alertmanager_config(settings: Settings, secrets_dir: str, receiver_url: str) -> dict[str, Any]:
    """The same routing for the cluster's Alertmanager, with no secret in it: the PagerDuty key and the Slack URL
    are read from the files of a mounted Secret (``*_file``), so the config itself can be committed."""
    return _config(receiver_url, settings,
                   {"routing_key_file": f"{secrets_dir}/pagerduty-routing-key"},
                   {"api_url_file": f"{secrets_dir}/slack-webhook-url"})


def _config(local_url: str, settings: Settings, pagerduty: dict[str, str] | None, slack: dict[str, str] | None
            ) -> dict[str, Any]:
    receivers: list[dict[str, Any]] = [{"name": LOCAL, "webhook_configs": [{"url": local_url, "send_resolved": True}]}]
    routes: list[dict[str, Any]] = []
    if pagerduty is not None:
        receivers.append({"name": PAGERDUTY, "pagerduty_configs": [{
            **pagerduty, "url": settings.alert_pagerduty_url, "send_resolved": True,
            "description": '{{ .CommonAnnotations.summary }}'}]})
        routes.append({"receiver": PAGERDUTY, "matchers": ['severity="critical"']})
    if slack is not None:
        receivers.append({"name": SLACK, "slack_configs": [{
            **slack, "send_resolved": True,
            "title": '{{ .CommonAnnotations.summary }}', "text": '{{ .CommonAnnotations.description }}'}]})
        routes.append({"receiver": SLACK, "matchers": ['severity="warning"']})
    return {
        "route": {"receiver": LOCAL, "group_by": ["alertname"], "group_wait": f"{settings.alert_group_wait_s}s",
                  "group_interval": f"{settings.alert_group_interval_s}s", "repeat_interval": "4h",
                  "routes": routes},
        "receivers": receivers,
    }


def write_alertmanager_config(settings: Settings, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(alertmanager_config(settings), sort_keys=False))
    path.chmod(0o600)
    return path
