"""The ``frictionwatch`` command line, as a user runs it."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest

from streamer.cli import main
from tests.conftest import ROOT, stop_process


def _children(pid: int) -> set[int]:
    """Every live descendant of ``pid``, read from /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.broker
def test_run_shows_interventions_and_ctrl_c_leaves_nothing() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "streamer", "run", "--speed", "40", "--web-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
        start_new_session=True,  # its own process group, as a shell gives a foreground job
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(
        target=lambda: [lines.put(raw.decode(errors="replace")) for raw in process.stdout],  # type: ignore[union-attr]
        daemon=True,
    ).start()
    seen: list[str] = []
    children: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        flowing = False
        while time.monotonic() < deadline and not flowing:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            seen.append(line)
            counts = re.search(r"nudges\s+(\d+)\s+handoffs\s+(\d+)", line)
            flowing = bool(counts and int(counts[1]) > 0 and int(counts[2]) > 0)
        assert flowing, "no interventions within a minute:\n" + "".join(seen[-20:])
        assert any(re.match(r"broker: 127\.0\.0\.1:\d+$", s.strip()) for s in seen)
        assert any(s.startswith("web: http://") for s in seen)
        children = _children(process.pid)
        assert children, "the broker should be a child process"
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: SIGINT to the whole foreground group
        process.wait(30)
    finally:
        stop_process(process)
    time.sleep(0.5)
    assert not [pid for pid in children if _alive(pid)], "processes left behind"


def test_replay_writes_signal_and_intervention_lines(tmp_path: Path, capsys) -> None:
    events = tmp_path / "events.jsonl"
    labels = tmp_path / "labels.jsonl"
    assert main(["simulate", "--seed", "3", "--sessions", "300",
                 "--events-out", str(events), "--labels-out", str(labels)]) == 0
    with events.open("ab") as fh:
        fh.write(b"this line is not json\n")
    out = tmp_path / "out.jsonl"
    assert main(["replay", str(events), "--out", str(out)]) == 0
    assert "line " in capsys.readouterr().err  # the bad line is reported, not fatal
    rows = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    kinds = {r["kind"] for r in rows}
    assert kinds == {"signal", "nudge", "handoff"}
    for row in rows:
        assert isinstance(row["session_id"], str) and isinstance(row["ts"], int)
        if row["kind"] == "signal":
            assert row["detector"]
    labelled = {(x["session_id"], x["type"]) for x in map(orjson.loads, labels.read_bytes().splitlines())}
    # anomalous_session comes from the online model, not from a rule a label can name.
    fired = {(r["session_id"], r["detector"]) for r in rows
             if r["kind"] == "signal" and r["detector"] != "anomalous_session"}
    assert fired == labelled


def test_bad_config_fails_at_start_naming_the_key(tmp_path: Path, capsys) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[rage_click]\nmin_clics = 4\n")
    assert main(["replay", "-", "--config", str(config)]) == 2
    assert "rage_click.min_clics" in capsys.readouterr().err
    config.write_text("[policy]\ncooldown_ms = -5\n")
    assert main(["replay", "-", "--config", str(config)]) == 2
    assert "policy.cooldown_ms = -5" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["replay", "{missing}"],
    ["replay", "{missing}", "--labels", "{missing}"],
    ["report", "{missing}"],
    ["simulate", "--sessions", "2", "--events-out", "{missing_dir}/e.jsonl"],
])
def test_a_missing_file_is_one_line_and_status_2(tmp_path: Path, capsys, argv: list[str]) -> None:
    paths = {"missing": str(tmp_path / "nope.jsonl"), "missing_dir": str(tmp_path / "no" / "dir")}
    assert main([a.format(**paths) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("frictionwatch: error: ") and "Traceback" not in err
    assert "nope.jsonl" in err or "dir" in err
