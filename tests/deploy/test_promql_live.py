"""Every PromQL expression of the dashboard and the rules, against a real Prometheus.

A Prometheus (Debian package ``prometheus``) scrapes a worker on the embedded broker
every second and evaluates deploy/prometheus/rules; the worker is fed simulated
shopping sessions that end during a payment outage, so an incident is open too (the
incident panels count open ones). The worker and its broker are this module's own:
incident detection is fleet-wide, every signal on the broker counts. Then every
dashboard target, every rule expression and every recorded series must return at
least one series. Alert conditions are cut at their comparisons and set operators
(see ``promql.operands``), so ``x > 10000`` checks that ``x`` exists, not that the
alert fires. A metric name with a typo, or one the worker
does not export, therefore fails the suite.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamer.embedded import EmbeddedBroker, free_port
from streamer.tools import outage, simulate
from tests.conftest import WorkerProcess, need_tool, produce, running_worker, stop_process, wait_for
from tests.deploy.promql import (
    DASHBOARDS,
    PROMETHEUS_CONFIG,
    RULE_FILES,
    dashboard_exprs,
    load_dashboard,
    load_yaml,
    metric_names,
    operands,
    rules,
    substitute,
)

pytestmark = [pytest.mark.broker, pytest.mark.promtool]

#: Metrics the dashboard or rules use that the worker does not export yet. Each is
#: skipped by the series checks (its name is still checked for being listed here), and
#: the test fails once the worker exports it, so the entry cannot outlive its reason.
PENDING_METRICS: frozenset[str] = frozenset()

BASE_TS = 1_767_225_600_000
SETTLE_S = 90


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as resp:
                body = orjson.loads(resp.read())
        except urllib.error.HTTPError as exc:  # 400 on a PromQL syntax error
            body = orjson.loads(exc.read())
        if body["status"] != "success":
            raise PromQLError(f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def series(self, expr: str) -> list[dict[str, Any]]:
        return list(self.api("query", query=expr)["result"])


class PromQLError(Exception):
    pass


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """Rules only (as the shared worker), incidents after one minute of learning."""
    tmp = tmp_path_factory.mktemp("promql-worker")
    config = tmp / "live.toml"
    config.write_text("[model]\nenabled = false\n\n[incidents]\nlearn_ms = 60000\n")
    with EmbeddedBroker() as broker:
        # One partition keeps the backlog of signals in event-time order (see test_incidents).
        with running_worker(broker, tmp, "fw-promql-live", "--config", str(config),
                            partitions=1) as w:
            yield w


@pytest.fixture(scope="module")
def prometheus(worker: WorkerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    binary = need_tool("prometheus")
    tmp = tmp_path_factory.mktemp("prometheus")
    deployed = load_yaml(PROMETHEUS_CONFIG)
    job = next(j for j in deployed["scrape_configs"] if j["job_name"] == "frictionwatch")
    target = worker.web.removeprefix("http://")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in RULE_FILES],
        # The deployed job (name, path, ...) pointed at the test worker.
        "scrape_configs": [{**job, "static_configs": [{"targets": [target]}]}],
    }
    (tmp / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    port = free_port()
    log = tmp / "prometheus.log"
    with open(log, "wb") as fh:
        process = subprocess.Popen(
            [binary, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ready(url), 60, f"prometheus ready (log {log})", process)
        yield Prometheus(url, process, log)
    finally:
        stop_process(process)


def _feed(worker: WorkerProcess) -> None:
    """Simulated sessions through Kafka (friction included) and one beacon over HTTP.

    Payments fail for everyone from minute 2 to the end: the incident stays open.
    """
    sessions = outage.inject(simulate.generate(seed=606, sessions=600, start_ts=BASE_TS),
                             outage.Outage.parse("2:10", BASE_TS))
    # Stamped with their receive time, as the collector publishes them: incidents run on
    # server time, and this backlog is produced within seconds.
    records = [(key, orjson.dumps([dict(e, received_at=e["ts"]) for e in orjson.loads(value)]))
               for key, value in simulate.interleave(sessions)]
    before = worker.metric("frictionwatch_records_total")
    asyncio.run(produce(worker.settings.bootstrap_servers, records))
    request = urllib.request.Request(f"{worker.web}/v1/sessions", data=b"{}", method="POST")
    with urllib.request.urlopen(request, timeout=10) as resp:
        session = orjson.loads(resp.read())
    beacon = orjson.dumps({"token": session["token"], "events": [
        {"session_id": session["session_id"], "type": "page_view", "ts": BASE_TS, "page": "/"}]})
    request = urllib.request.Request(f"{worker.web}/v1/collect", data=beacon, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 202
    wait_for(lambda: worker.metric("frictionwatch_records_total") - before >= len(records), 90,
             f"worker to consume the simulated traffic (log {worker.log})", worker.process)


def _exported(worker: WorkerProcess) -> set[str]:
    """Family and sample names on the worker's /metrics (a family may have no sample yet)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                "summary": ("_sum", "_count")}
    names: set[str] = set()
    for family in text_string_to_metric_families(worker.metrics_text()):
        names.add(family.name)
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ()))
        names.update(s.name for s in family.samples)
    return names


def _all_exprs() -> list[tuple[str, str]]:
    found = [(f"{path.name} {where}", substitute(expr))
             for path in DASHBOARDS for where, expr in dashboard_exprs(load_dashboard(path))]
    for rule in rules():
        name = rule.get("record") or rule.get("alert")
        found.append((f"{rule['file']} rule {name}", rule["expr"]))
        if "record" in rule:
            found.append((f"{rule['file']} recorded series", rule["record"]))
    return found


def _inputs(names: set[str], recorded: dict[str, str]) -> set[str]:
    """The exported metrics behind ``names``, through recording rules."""
    out: set[str] = set()
    for name in names:
        out |= _inputs(metric_names(recorded[name]), recorded) if name in recorded else {name}
    return out


def _problems(prom: Prometheus, exported: set[str]) -> list[str]:
    recorded = {r["record"]: r["expr"] for r in rules() if "record" in r}
    problems: list[str] = []
    for where, expr in _all_exprs():
        for operand in operands(expr):
            if _inputs(metric_names(operand), recorded) & PENDING_METRICS:
                continue
            try:
                if not prom.series(operand):
                    problems.append(f"{where}: no series for {operand!r}")
            except PromQLError as exc:
                problems.append(f"{where}: {operand!r}: {exc}")
    for group in prom.api("rules")["groups"]:
        for rule in group["rules"]:
            if rule["health"] != "ok":
                problems.append(f"rule {rule['name']}: health {rule['health']} {rule.get('lastError', '')}")
    return problems


def test_pending_metrics_are_really_pending_and_used(worker: WorkerProcess) -> None:
    exported = _exported(worker)
    assert PENDING_METRICS & exported == set(), "exported now: remove from PENDING_METRICS"
    used = set().union(*(metric_names(expr) for _, expr in _all_exprs()))
    assert PENDING_METRICS - used == set(), "PENDING_METRICS entries nothing uses"


def test_every_metric_name_exists(worker: WorkerProcess) -> None:
    exported = _exported(worker)
    recorded = {r["record"] for r in rules() if "record" in r}
    unknown = sorted(
        f"{where}: {name}"
        for where, expr in _all_exprs()
        for name in metric_names(expr)
        if name not in exported | recorded | PENDING_METRICS
    )
    assert not unknown, "neither exported by the worker nor recorded (a typo?):\n" + "\n".join(unknown)


def test_prometheus_loaded_every_rule(prometheus: Prometheus) -> None:
    loaded = {rule["name"] for group in prometheus.api("rules")["groups"] for rule in group["rules"]}
    assert loaded == {r.get("record") or r.get("alert") for r in rules()}


def test_every_expression_returns_series(prometheus: Prometheus, worker: WorkerProcess) -> None:
    _feed(worker)
    exported = _exported(worker)
    # Rates need two scrapes and recorded series an evaluation: poll until all agree.
    deadline = time.monotonic() + SETTLE_S
    problems = _problems(prometheus, exported)
    while problems and time.monotonic() < deadline:
        time.sleep(1)
        problems = _problems(prometheus, exported)
    assert problems == [], "\n".join(problems) + f"\n(prometheus log: {prometheus.log})"
