"""The dashboard shows what issue 13 asks for: the uplift model's estimated vs realised
uplift, interventions avoided, conversions gained, and the risk AUC at decision (that
each expression returns series is tests/deploy/test_promql_live.py's job)."""

from __future__ import annotations

from streamer.metrics import Metrics
from tests.deploy.promql import DASHBOARDS, dashboard_exprs, load_dashboard, panels

#: What the issue asks the dashboard to show, by a metric its expression must read.
ISSUE_13 = {
    "estimated uplift": "frictionwatch_uplift_estimated_sum",
    "realised uplift from the holdout": 'group="holdout"',
    "interventions avoided": 'chosen="none"',
    "conversions gained": 'arm="targeted",result="converted"',
    "risk AUC at decision": "frictionwatch_model_risk_auc_at_decision",
    "interventions by arm": "frictionwatch_arm_interventions_total",
    "uplift model learning": "frictionwatch_uplift_outcomes_learned",
}


def test_the_dashboard_shows_the_models_that_change_decisions() -> None:
    (path,) = [p for p in DASHBOARDS if p.name == "frictionwatch.json"]
    dashboard = load_dashboard(path)
    exprs = " ".join(expr for _, expr in dashboard_exprs(dashboard))
    assert {what: needle for what, needle in ISSUE_13.items() if needle not in exprs} == {}
    titles = {p["title"] for p in panels(dashboard)}
    assert "Estimated vs realised uplift (targeted arm, 1h)" in titles


def test_the_metrics_it_reads_are_exported() -> None:
    names = {sample.name for family in Metrics().registry.collect() for sample in family.samples}
    for metric in ("frictionwatch_uplift_estimated_sum", "frictionwatch_uplift_estimated_count",
                   "frictionwatch_arm_outcomes_total", "frictionwatch_arm_decisions_total",
                   "frictionwatch_arm_interventions_total", "frictionwatch_uplift_outcomes_learned",
                   "frictionwatch_uplift_warm", "frictionwatch_model_risk_auc_at_decision"):
        assert metric in names, metric
