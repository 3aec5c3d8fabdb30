"""``frictionwatch tune`` (a grid of replays), the plots of tune and compare, and the
progress bars that must stay off the output when nothing watches a terminal."""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import orjson
import pytest

from streamer.cli import main
from streamer.tools.progress import progress
from streamer.tools.tune import MAX_GRID, SweepError, grid, parse_sweep

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("sim")
    events, labels = root / "events.jsonl", root / "labels.jsonl"
    assert main(["simulate", "--seed", "3", "--sessions", "300",
                 "--events-out", str(events), "--labels-out", str(labels)]) == 0
    return events, labels


def charts(html: str) -> list[ET.Element]:
    """Every chart of a page, parsed as XML (so it is well-formed SVG)."""
    return [ET.fromstring(svg) for svg in re.findall(r'<svg class="chart".*?</svg>', html, re.S)]


def series(chart: ET.Element) -> dict[str, ET.Element]:
    return {g.attrib["data-series"]: g for g in chart.iter(f"{SVG}g") if g.get("class") == "series"}


# -- sweeps and the grid ---------------------------------------------------------------
def test_sweep_values_are_ints_when_every_number_is_else_floats() -> None:
    assert parse_sweep("rage_click.min_clicks=3:4:1").values == (3, 4)
    assert all(isinstance(v, int) for v in parse_sweep("a.b=0:10:5").values)
    floats = parse_sweep("policy.nudge_threshold=0.1:0.5:0.1").values
    assert floats == (0.1, 0.2, 0.3, 0.4, 0.5) and all(isinstance(v, float) for v in floats)
    assert parse_sweep("a.b=1:2:0.5").values == (1.0, 1.5, 2.0)
    assert parse_sweep("a.b=7:7:1").values == (7,)
    assert parse_sweep("policy.weights.rage_click=0:1:1").path == ("policy", "weights", "rage_click")


@pytest.mark.parametrize(("spec", "message"), [
    ("rage_click.min_clicks", "expected section.key=START:STOP:STEP"),
    ("min_clicks=3:4:1", "expected section.key=START:STOP:STEP"),
    ("rage_click.min_clicks=3:4", "expected section.key=START:STOP:STEP"),
    ("rage_click.min_clicks=three:4:1", "'three' is not a number"),
    ("rage_click.min_clicks=3:4:0", "STEP must be > 0"),
    ("rage_click.min_clicks=3:nan:1", "not a finite number"),
    ("rage_click.min_clicks=5:4:1", "STOP 4 is below START 5"),
    ("rage_click.min_clicks=0:1000:1", "1001 values; at most"),
])
def test_bad_sweeps_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(SweepError, match=re.escape(message)):
        parse_sweep(spec)


def test_the_grid_is_the_cartesian_product_and_is_capped() -> None:
    a, b = parse_sweep("a.x=1:3:1"), parse_sweep("b.y=0:1:1")
    assert grid([a, b]) == [{"a.x": x, "b.y": y} for x in (1, 2, 3) for y in (0, 1)]
    with pytest.raises(SweepError, match="given twice"):
        grid([a, a])
    big = parse_sweep(f"c.z=1:{MAX_GRID}:1")
    with pytest.raises(SweepError, match=rf"the grid has {2 * MAX_GRID} points .* at most {MAX_GRID}"):
        grid([big, b])


# -- the command -----------------------------------------------------------------------
def test_tune_prints_the_grid_and_plots_the_trade_off(
    simulated: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events, labels = simulated
    plot = tmp_path / "tune.html"
    capsys.readouterr()
    assert main(["tune", str(events), "--labels", str(labels),
                 "--sweep", "rage_click.min_clicks=2:5:1", "--plot", str(plot)]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0] == "base = defaults"
    header = lines[2]
    for column in ("rage_click.min_clicks", "rage_click precision", "rage_click recall",
                   "rage_click median ms", "all precision", "clean nudged"):
        assert column in header
    rows = [line.split() for line in lines[3:]]
    assert [row[0] for row in rows] == ["2", "3", "4", "5"]
    assert rows[1][1:3] == ["1.000", "1.000"]  # the default finds every planted burst
    assert float(rows[3][2]) < 1.0  # 5 clicks miss the 3-click bursts: recall drops
    assert captured.err == f"wrote the plot to {plot}\n"  # no progress: not a terminal

    html = plot.read_text()
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    (chart,) = charts(html)
    drawn = series(chart)
    assert list(drawn) == ["rage_click precision", "rage_click recall", "clean sessions nudged (share)"]
    for g in drawn.values():
        assert len(list(g.iter(f"{SVG}circle"))) == 4  # one point per swept value
    assert "<table>" in html and html.count("<tr>") == 1 + 4


def test_tune_grid_equals_separate_replays(
    simulated: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each grid point is exactly what replay --labels --json reports for that config."""
    events, labels = simulated
    base = tmp_path / "base.toml"
    base.write_text("[dead_click]\nthreshold_ms = 2000\n")
    capsys.readouterr()
    assert main(["tune", str(events), "--labels", str(labels), "--config", str(base),
                 "--sweep", "rage_click.min_clicks=3:4:1", "--json"]) == 0
    result = orjson.loads(capsys.readouterr().out)
    assert [row["values"] for row in result["grid"]] == [{"rage_click.min_clicks": 3},
                                                        {"rage_click.min_clicks": 4}]
    replays: list[dict[str, Any]] = []
    for clicks in (3, 4):
        config = tmp_path / f"min_clicks_{clicks}.toml"
        config.write_text(f"[dead_click]\nthreshold_ms = 2000\n\n[rage_click]\nmin_clicks = {clicks}\n")
        assert main(["replay", str(events), "--labels", str(labels), "--config", str(config),
                     "--json"]) == 0
        replays.append(orjson.loads(capsys.readouterr().out))
    assert [row["report"] for row in result["grid"]] == replays
    assert replays[0] != replays[1]  # the sweep changed something
    for row, replay in zip(result["grid"], replays, strict=True):
        rage = replay["detectors"]["rage_click"]
        assert row["summary"]["detectors"]["rage_click"] == {
            key: rage[key] for key in ("episodes", "fired", "precision", "recall", "median_detect_ms")}
        assert row["summary"]["clean_nudged_share"] == replay["clean_nudged_share"]


def test_a_policy_sweep_pools_every_detector(
    simulated: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events, labels = simulated
    plot = tmp_path / "policy.html"
    assert main(["tune", str(events), "--labels", str(labels), "--plot", str(plot),
                 "--sweep", "policy.nudge_threshold=0.5:1.5:0.5",
                 "--sweep", "rage_click.max_interval_ms=500:1000:500"]) == 0
    header = capsys.readouterr().out.splitlines()[2]
    assert "rage_click precision" in header and "policy.nudge_threshold" in header
    found = charts(plot.read_text())
    assert len(found) == 2  # one chart per max_interval_ms, nudge_threshold on the x axis
    for chart in found:
        assert all(len(list(g.iter(f"{SVG}circle"))) <= 3 for g in series(chart).values())


@pytest.mark.parametrize(("sweep", "message"), [
    ("rage_click.min_clics=3:4:1", "unknown key rage_click.min_clics"),
    ("rage_clik.min_clicks=3:4:1", "unknown detector 'rage_clik'"),
    ("rage_click.min_clicks=1:3:1", "at rage_click.min_clicks=1: rage_click.min_clicks = 1 is out of range"),
    ("rage_click.min_clicks", "expected section.key=START:STOP:STEP"),
])
def test_a_bad_sweep_is_one_line_and_status_2(
    simulated: tuple[Path, Path], sweep: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    events, labels = simulated
    capsys.readouterr()
    assert main(["tune", str(events), "--labels", str(labels), "--sweep", sweep]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("frictionwatch: error: ") and message in captured.err
    assert captured.err.count("\n") == 1


def test_compare_plots_precision_and_recall_a_vs_b(
    simulated: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events, labels = simulated
    a, b, plot = tmp_path / "a.toml", tmp_path / "b.toml", tmp_path / "compare.html"
    a.write_text("")
    b.write_text("[dead_click]\nenabled = false\n")
    assert main(["compare", str(events), "--labels", str(labels), str(a), str(b), "--json"]) == 0
    plain = capsys.readouterr().out
    assert main(["compare", str(events), "--labels", str(labels), str(a), str(b), "--json",
                 "--plot", str(plot)]) == 0
    captured = capsys.readouterr()
    assert captured.out == plain  # the report on stdout is unchanged by --plot
    both = orjson.loads(plain)
    detectors = list(both["a"]["detectors"])
    precision, recall = charts(plot.read_text())
    for chart, metric in ((precision, "precision"), (recall, "recall")):
        drawn = series(chart)
        assert list(drawn) == ["A", "B"]
        for name, report in (("A", both["a"]), ("B", both["b"])):
            defined = [d for d in detectors if report["detectors"][d][metric] is not None]
            assert len(list(drawn[name].iter(f"{SVG}rect"))) == len(defined)
    # dead_click is off in B: it never fires, so its precision is undefined, no bar.
    assert both["b"]["detectors"]["dead_click"]["precision"] is None


# -- progress --------------------------------------------------------------------------
class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_only_on_a_terminal() -> None:
    piped, tty = io.StringIO(), Terminal()
    assert list(progress(range(5), piped, "replay")) == list(range(5))
    assert piped.getvalue() == ""
    assert list(progress(range(5), tty, "replay", total=5, unit="lines")) == list(range(5))
    assert "replay:" in tty.getvalue() and "0/5" in tty.getvalue()  # then cleared


def test_long_runs_are_silent_when_stderr_is_not_a_terminal(
    simulated: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events, labels = simulated
    capsys.readouterr()
    assert main(["simulate", "--seed", "4", "--sessions", "50",
                 "--events-out", str(tmp_path / "e.jsonl")]) == 0
    err = capsys.readouterr().err
    assert err.startswith("wrote 50 sessions") and err.count("\n") == 1
    assert main(["replay", str(events), "--labels", str(labels)]) == 0
    assert capsys.readouterr().err == ""
    assert main(["tune", str(events), "--labels", str(labels),
                 "--sweep", "rage_click.min_clicks=3:4:1"]) == 0
    assert capsys.readouterr().err == ""
