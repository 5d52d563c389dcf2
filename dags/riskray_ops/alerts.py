"""Slack and PagerDuty alerts of the retraining DAG, through the Airflow providers' notifiers.

Where to post comes from Airflow connections (``riskray_slack``: a Slack incoming webhook, the URL as the password;
``riskray_pagerduty``: an Events API v2 routing key as the password). A connection that is not set means that
channel is off: nothing is posted and the log says so, so a fresh install runs without either.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import BaseNotifier, Connection
from airflow.sdk.exceptions import AirflowNotFoundException

SLACK_CONN = "riskray_slack"
PAGERDUTY_CONN = "riskray_pagerduty"

log = logging.getLogger(__name__)


def configured(conn_id: str) -> bool:
    try:
        Connection.get(conn_id)
    except AirflowNotFoundException:
        log.info("connection %s not set: channel off", conn_id)
        return False
    except Exception as error:  # a lookup that fails otherwise (seen in failure callbacks): say so, post nothing
        log.warning("connection %s could not be read (%s: %s): not posting there", conn_id, type(error).__name__,
                    error)
        return False
    return True


def failure_text(context: Any) -> str:
    ti = context["ti"]
    return (f":rotating_light: riskray retraining: task {ti.task_id} failed in run {ti.run_id} "
            f"(try {ti.try_number}): {str(context.get('exception') or 'see the task log')[:500]}")


def post(text: str, severity: str = "error", page: bool = True) -> list[str]:
    """Post ``text`` to every configured channel (``page=False``: Slack only, for news that must not open a
    PagerDuty incident); returns the channels posted to."""
    from airflow.providers.pagerduty.notifications.pagerduty import PagerdutyNotifier
    from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

    posted = []
    channels = {
        "slack": (SLACK_CONN, lambda: SlackWebhookNotifier(slack_webhook_conn_id=SLACK_CONN, text=text)),
        "pagerduty": (PAGERDUTY_CONN, lambda: PagerdutyNotifier(
            pagerduty_events_conn_id=PAGERDUTY_CONN, summary=text[:1000], severity=severity,
            source="riskray_retraining")),
    }
    if not page:
        channels.pop("pagerduty")
    for name, (conn_id, notifier) in channels.items():
        if not configured(conn_id):
            continue
        try:  # one channel failing must not keep the alert from the other
            notifier().notify({})
        except Exception as error:
            log.error("alert to %s failed: %s: %s", name, type(error).__name__, error)
            continue
        log.info("alert posted to %s", name)
        posted.append(name)
    if not posted:
        log.info("no alert channel configured (connections %s, %s): not posted: %s", SLACK_CONN, PAGERDUTY_CONN,
                 text)
    return posted


class TaskFailureNotifier(BaseNotifier):
    """``on_failure_callback`` of every task (DAG-level failure callbacks do not fire in Airflow 3,
    apache/airflow#63374): the failed task and its error to the configured channels."""

    def notify(self, context: Any) -> None:
        post(failure_text(context))
