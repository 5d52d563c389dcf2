"""`riskray monitor snapshot`: the dashboard's panels rendered from Prometheus' range API into one PNG."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from app.config import Settings
from app.errors import UserError
from monitoring.dashboard import PANELS

POINTS = 200


class PrometheusError(UserError, RuntimeError):
    """Prometheus cannot answer (not running, or the query is wrong); the message says which."""


def prometheus_url(settings: Settings) -> str:
    return f"http://{settings.monitoring_host}:{settings.prometheus_port}"


def query_range(settings: Settings, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
    try:
        response = httpx.get(f"{prometheus_url(settings)}/api/v1/query_range",
                             params={"query": expr, "start": start, "end": end, "step": step}, timeout=30)
    except httpx.HTTPError as error:
        raise PrometheusError(f"Prometheus at {prometheus_url(settings)} is unreachable ({error}): "
                              "is the stack up? (riskray stack up)") from None
    body = response.json()
    if response.status_code != 200 or body.get("status") != "success":
        raise PrometheusError(f"Prometheus refused {expr!r}: {body.get('error', response.text[:200])}")
    return body["data"]["result"]


def _legend(template: str, labels: dict[str, str]) -> str:
    for key, value in labels.items():
        template = template.replace("{{" + key + "}}", value)
    return template.replace("{{", "").replace("}}", "")


def render(settings: Settings, minutes: int, path: Path) -> dict[str, int]:
    """One subplot per panel over the last ``minutes``; returns the number of series each panel drew."""
    import matplotlib

    matplotlib.use("Agg")
    from datetime import UTC, datetime

    import matplotlib.pyplot as plt

    end = time.time()
    start = end - minutes * 60
    step = max((end - start) / POINTS, settings.prometheus_scrape_interval_s)
    columns = 3
    rows = -(-len(PANELS) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(6 * columns, 3.4 * rows), squeeze=False)
    drawn: dict[str, int] = {}
    for ax, panel in zip(axes.flat, PANELS, strict=False):
        count = 0
        for target in panel.targets:
            for series in query_range(settings, target.expr, start, end, step):
                times = [datetime.fromtimestamp(float(t), UTC) for t, _ in series["values"]]
                values = [float(v) for _, v in series["values"]]
                ax.plot(times, values, label=_legend(target.legend, series["metric"])[:40])
                count += 1
        ax.set_title(f"{panel.title} [{panel.unit}]", fontsize=10)
        if count:
            ax.legend(fontsize=7, loc="upper left")
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="grey")
        ax.tick_params(labelsize=7)
        drawn[panel.title] = count
    for ax in list(axes.flat)[len(PANELS):]:
        ax.axis("off")
    fig.suptitle(f"riskray, last {minutes} minutes (UTC) — {prometheus_url(settings)}")
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return drawn
