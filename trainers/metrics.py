"""Trainer Prometheus metrics: ebrain_trainer_<what>_<unit>."""

from prometheus_client import Counter

# promoted: the canary held up and every device got the version; rolled_back: the canary did worse and went back
# to the parent; no_verdict: too little telemetry before the deadline, rolled back on the safe side.
ROLLOUT_VERDICTS = ("promoted", "rolled_back", "no_verdict")
ROLLOUTS = Counter("ebrain_trainer_rollouts_total", "Canary rollouts finished, by verdict", ["verdict"])
for _verdict in ROLLOUT_VERDICTS:
    ROLLOUTS.labels(_verdict)  # every series exists from the start, so increase() sees the first rollout


def rollout_label(verdict: str) -> str:
    """The metric label for a rollout decision's verdict ('promote', 'rollback', or 'wait' at the deadline)."""
    return {"promote": "promoted", "rollback": "rolled_back"}.get(verdict, "no_verdict")
