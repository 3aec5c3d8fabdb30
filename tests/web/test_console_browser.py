"""Issue 14, acceptance 1: Chromium opens the console at ``/`` during ``frictionwatch run``
with traffic and an outage, and sees the counters move, interventions arrive in the list
and the outage's incident show; a handoff opens its context.

The scenario is :func:`benchmarks.console_screenshot.watch` (the same run makes the
README's screenshot): ``run --speed 20 --outage 12:6 --config deploy/outage-demo.toml``,
whose incident rules learn for 30 s instead of 30 min, so the incident opens about 15 s
after the outage starts (36 s into the run). Screenshots go to ``artifacts/``.
"""

from __future__ import annotations

import pytest

from tests.conftest import CI, need_tool
from tests.web.conftest import ARTIFACTS


@pytest.mark.broker
@pytest.mark.timeout(240)
def test_the_console_shows_a_run_live() -> None:
    need_tool("chromium")
    try:
        import playwright  # noqa: F401
    except ImportError:
        message = "playwright is not installed (pip install -e '.[dev]')"
        if CI:
            pytest.fail(message)
        pytest.skip(message)
    from benchmarks.console_screenshot import INCIDENT_KEY, watch

    seen = watch(ARTIFACTS / "console.png")
    assert seen.events_later > seen.events_first > 0, seen.run_output[-5:]
    assert seen.ticks > 0
    kinds = {i["kind"] for i in seen.interventions}
    assert kinds == {"nudge", "handoff"}, kinds
    route, failure = INCIDENT_KEY.split("|")
    assert route in seen.incident and failure in seen.incident
    assert "failed payment" in seen.handoff_text and "Journey" in seen.handoff_text
    assert seen.handoff_title.startswith("Handoff ")
    assert "Demo shop" in seen.page_text  # run serves the demo, so the console links it
    assert all(path.stat().st_size > 10_000 for path in seen.screenshots)
