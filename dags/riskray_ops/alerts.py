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
    except AirflowNotFoundException as error:
        log.info("connection %s not found (%s): channel off", conn_id, error)
        return False
    return True


def failure_text(context: Any) -> str:
    ti = context["ti"]
    return (f":rotating_light: riskray retraining: task {ti.task_id} failed in run {ti.run_id} "
            f"(try {ti.try_number}): {str(context.get('exception') or 'see the task log')[:500]}")


def post(text: str, severity: str = "error") -> list[str]:
    """Post ``text`` to every configured channel; returns the channels posted to."""
    from airflow.providers.pagerduty.notifications.pagerduty import PagerdutyNotifier
    from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

    posted = []
    if configured(SLACK_CONN):
        SlackWebhookNotifier(slack_webhook_conn_id=SLACK_CONN, text=text).notify({})
        posted.append("slack")
    if configured(PAGERDUTY_CONN):
        PagerdutyNotifier(pagerduty_events_conn_id=PAGERDUTY_CONN, summary=text[:1000], severity=severity,
                          source="riskray_retraining").notify({})
        posted.append("pagerduty")
    if not posted:
        log.info("no alert channel configured (connections %s, %s): not posted: %s", SLACK_CONN, PAGERDUTY_CONN,
                 text)
    return posted


class TaskFailureNotifier(BaseNotifier):
    """``on_failure_callback`` of every task (DAG-level failure callbacks do not fire in Airflow 3,
    apache/airflow#63374): the failed task and its error to the configured channels."""

    def notify(self, context: Any) -> None:
        post(failure_text(context))
