"""The prediction service as other rooms address it: the Serve deployment's name, and which rows of the
``predictions`` table were answers.

The deployment is named by Serve itself (``serve_deployments.app``), by its deploy (``app.operations.serving``), by
the dashboard (``monitoring.dashboard``) and, since YAML and the DAG cannot import this module, by the Serve config,
the alert rules and ``dags/riskray_ops/kube.py``: tests/unit/test_prediction_service_names.py pins those to
:data:`DEPLOYMENT`.
"""

from __future__ import annotations

DEPLOYMENT = "FraudDetector"

# SQL condition on ``predictions``: the rows returned to a caller. A shadow row was scored and logged but never
# returned, and repeats its champion row's inputs: what was served (counts, drift inputs, the demo's AUC) leaves it out.
ANSWERED = "variant <> 'shadow'"

# The reviews answered in the last day: the load on the fraud team's review queue (``predictions_reviews_idx``)
REVIEWS_LAST_DAY_SQL = (f"SELECT count(*) FROM predictions WHERE outcome = 'review' AND {ANSWERED} "
                        "AND predicted_at > now() - interval '1 day'")
