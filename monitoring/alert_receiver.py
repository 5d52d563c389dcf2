"""The local alert receiver: Alertmanager's webhook target when no Slack or PagerDuty URL is set.

Each notification is logged (one line per alert, in the stack's log) and appended to ``alerts.jsonl`` in the
monitoring folder; ``GET /alerts`` lists what arrived, so the demo and the tests can see that an alert really
went Prometheus -> Alertmanager -> receiver. Nothing leaves the machine."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from app.config import Settings

logger = logging.getLogger("riskray.alerts")


def received_path(settings: Settings) -> Path:
    return settings.monitoring_dir / "alerts.jsonl"


def read_received(settings: Settings) -> list[dict]:
    """Every alert received so far (Alertmanager's alert objects, with the receiver it was routed to)."""
    path = received_path(settings)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def handler(settings: Settings) -> type[BaseHTTPRequestHandler]:
    path = received_path(settings)
    lock = threading.Lock()

    class Receiver(BaseHTTPRequestHandler):
        def _reply(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            if self.path != "/alerts":
                self._reply(404, {"detail": "POST /alerts"})
                return
            try:
                notification = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                alerts = notification["alerts"]
            except (ValueError, KeyError, TypeError) as error:
                self._reply(422, {"detail": f"not an Alertmanager webhook notification: {error}"})
                return
            with lock, path.open("a") as out:
                for alert in alerts:
                    alert["receiver"] = notification.get("receiver")
                    out.write(json.dumps(alert) + "\n")
                    logger.warning("alert %s %s (%s): %s", alert.get("status"), alert["labels"].get("alertname"),
                                   alert["labels"].get("severity"), alert.get("annotations", {}).get("summary"))
            self._reply(200, {"received": len(alerts)})

        def do_GET(self) -> None:
            if self.path == "/health":
                self._reply(200, {"status": "ok"})
            elif self.path == "/alerts":
                self._reply(200, read_received(settings))
            else:
                self._reply(404, {"detail": "GET /alerts or /health"})

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Receiver


def serve(settings: Settings) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    received_path(settings).parent.mkdir(parents=True, exist_ok=True)
    server = ThreadingHTTPServer((settings.monitoring_host, settings.alert_webhook_port), handler(settings))
    logger.info("alert receiver on http://%s:%d/alerts", settings.monitoring_host, settings.alert_webhook_port)
    server.serve_forever()
