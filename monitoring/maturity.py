"""The label maturity curve: how fast frauds become known, measured from the label events.

Of the frauds eventually known for transactions old enough to have had their whole reporting horizon, the share whose
first fraud report came within k days of the transaction. A cohort of predictions ``a`` days old then has about
``curve.at(a)`` of its frauds known: the realised numbers of a younger cohort would count its unreported frauds as
legitimate (``app.labels.matured``) and read too low.

Only transactions at least the horizon old are measured (a younger one's late reports have not come yet, and
counting it would bend the curve towards the fast reporters). Frauds reported only later than the horizon are
left out, as the card schemes' chargeback limit leaves them out.
"""

from __future__ import annotations

import numpy as np

from app.reports import MaturityCurve

POINTS = 41  # curve points from 0 to the horizon


def from_delays(delays_days: np.ndarray, horizon_days: float, min_frauds: int, rule_days: float) -> MaturityCurve:
    """The curve of first-report delays (days, of frauds of transactions at least ``horizon_days`` old); with fewer
    than ``min_frauds`` of them, the rule: nothing known before ``rule_days``, everything from then on."""
    delays = np.sort(np.asarray(delays_days, dtype=np.float64))
    delays = delays[delays <= horizon_days]
    if len(delays) < min_frauds:
        return rule(rule_days, horizon_days)
    days = np.linspace(0.0, horizon_days, POINTS)
    share = np.searchsorted(delays, days, side="right") / len(delays)
    return MaturityCurve(source="label events", horizon_days=horizon_days, frauds=len(delays),
                         days=[round(float(d), 6) for d in days], share=[float(s) for s in share])


def rule(rule_days: float, horizon_days: float) -> MaturityCurve:
    """The fixed rule as a curve: a step from 0 to 1 at ``rule_days`` (labels inside rows count as reported then)."""
    if rule_days <= 0:
        return MaturityCurve(source="rule", horizon_days=horizon_days, frauds=0, days=[0.0], share=[1.0])
    return MaturityCurve(source="rule", horizon_days=horizon_days, frauds=0, days=[rule_days - 1e-9, rule_days],
                         share=[0.0, 1.0])
