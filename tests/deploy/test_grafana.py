"""deploy/grafana: the provisioning files and the dashboard JSON, checked structurally
(no Grafana server is installable here; the live test checks the PromQL itself)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from tests.deploy.promql import (
    DASHBOARDS,
    GRAFANA_PROVISIONING,
    PROMETHEUS_CONFIG,
    dashboard_exprs,
    load_dashboard,
    load_yaml,
    panels,
    substitute,
)

PANEL_TYPES = {"row", "timeseries", "stat", "gauge", "bargauge", "table", "text", "piechart",
               "heatmap", "barchart", "state-timeline", "histogram", "logs"}

#: What issue 6 asks the dashboard to show, by the metric (or recorded series) it needs.
REQUIRED_CONTENT = {
    "events/s": "frictionwatch_events_total",
    "consumer lag per partition": "frictionwatch:consumer_lag:max_by_partition",
    "decision latency": "frictionwatch_decision_latency_seconds_bucket",
    "dead letters": "frictionwatch_invalid_events_total",
    "signals by detector": "frictionwatch_signals_total",
    "interventions by kind and delivery": "frictionwatch_interventions_total",
    "friction by page route": "frictionwatch_friction_by_route_total",
    "incidents": "frictionwatch_incidents_open",
}


def datasources() -> list[dict[str, Any]]:
    found = []
    for path in sorted((GRAFANA_PROVISIONING / "datasources").glob("*.yml")):
        doc = load_yaml(path)
        assert doc["apiVersion"] == 1, path
        found.extend(doc["datasources"])
    return found


def provisioned_uids() -> dict[str, str]:
    return {ds["uid"]: ds["type"] for ds in datasources()}


@pytest.fixture(params=DASHBOARDS, ids=lambda p: p.name)
def dashboard(request: pytest.FixtureRequest) -> dict[str, Any]:
    return load_dashboard(request.param)


def test_datasource_is_provisioned_with_a_fixed_uid() -> None:
    sources = datasources()
    assert [(ds["uid"], ds["type"]) for ds in sources] == [("prometheus", "prometheus")]
    ds = sources[0]
    assert ds["url"] == "http://prometheus:9090" and ds["access"] == "proxy"
    # $__rate_interval is only right when Grafana knows the scrape interval.
    scrape = load_yaml(PROMETHEUS_CONFIG)["global"]["scrape_interval"]
    assert ds["jsonData"]["timeInterval"] == scrape


def test_dashboard_provider_reads_files() -> None:
    providers = [p for path in sorted((GRAFANA_PROVISIONING / "dashboards").glob("*.yml"))
                 for p in load_yaml(path)["providers"]]
    assert len(providers) == 1
    provider = providers[0]
    assert provider["type"] == "file" and provider["options"]["path"].startswith("/")
    assert DASHBOARDS, "no dashboard JSON in deploy/grafana/dashboards"


def test_dashboard_is_grafana_dashboard_json(dashboard: dict[str, Any]) -> None:
    assert isinstance(dashboard["schemaVersion"], int) and 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["title"] and dashboard["uid"] and len(dashboard["uid"]) <= 40
    assert "id" not in dashboard or dashboard["id"] is None  # provisioning assigns it
    ids = [p.get("id") for p in panels(dashboard)]
    assert all(isinstance(i, int) for i in ids), ids
    duplicates = [i for i, n in Counter(ids).items() if n > 1]
    assert duplicates == [], f"duplicate panel ids {duplicates}"
    for panel in panels(dashboard):
        assert panel["type"] in PANEL_TYPES, panel["type"]
        assert panel.get("title"), panel["id"]
        grid = panel["gridPos"]
        assert {"x", "y", "w", "h"} <= grid.keys() and grid["x"] + grid["w"] <= 24, panel["id"]


def test_every_datasource_reference_resolves(dashboard: dict[str, Any]) -> None:
    uids = provisioned_uids()

    def check(ref: Any, where: str) -> None:
        assert isinstance(ref, dict), f"{where}: datasource must be {{type, uid}}, got {ref!r}"
        assert ref.get("uid") in uids, f"{where}: datasource uid {ref.get('uid')!r} is not provisioned"
        assert ref.get("type") == uids[ref["uid"]], f"{where}: type {ref.get('type')!r}"

    for panel in panels(dashboard):
        if panel["type"] in ("row", "text"):
            continue
        check(panel.get("datasource"), f"panel {panel['id']}")
        for target in panel["targets"]:
            check(target.get("datasource", panel["datasource"]), f"panel {panel['id']} target")
    for variable in dashboard.get("templating", {}).get("list", []):
        if "datasource" in variable:
            check(variable["datasource"], f"variable {variable.get('name')}")
    for annotation in dashboard.get("annotations", {}).get("list", []):
        check(annotation.get("datasource"), f"annotation {annotation.get('name')}")


def test_every_target_has_an_expr_and_a_unique_ref(dashboard: dict[str, Any]) -> None:
    for panel in panels(dashboard):
        if panel["type"] in ("row", "text"):
            continue
        targets = panel.get("targets", [])
        assert targets, f"panel {panel['id']} has no target"
        refs = [t.get("refId") for t in targets]
        assert len(set(refs)) == len(refs) and all(refs), f"panel {panel['id']}: refIds {refs}"
    for where, expr in dashboard_exprs(dashboard):
        assert expr.strip(), f"{where}: empty expr"
        substitute(expr)  # only Grafana's own variables
        assert "session_id" not in expr and "user_id" not in expr, f"{where}: unbounded label"


def test_dashboard_shows_what_ops_asked_for(dashboard: dict[str, Any]) -> None:
    exprs = " ".join(expr for _, expr in dashboard_exprs(dashboard))
    missing = {what: metric for what, metric in REQUIRED_CONTENT.items() if metric not in exprs}
    assert missing == {}
