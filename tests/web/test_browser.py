"""The SDK, the stream and the demo shop in a real (headless) Chromium.

Each test is one or two fresh customers (browser contexts) on the demo shop served
by a real worker on the embedded broker; what the browser shows is checked against
what the pipeline published on Kafka.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest

from streamer.web.tokens import TokenSigner
from tests.conftest import WorkerProcess
from tests.web.conftest import ARTIFACTS, SECRET, Shop, fail_payment, records_of

pytestmark = pytest.mark.broker

INTERVENTIONS = "frictionwatch.interventions"
EVENTS = "frictionwatch.events"


def rage_click(page: Any, selector: str, clicks: int = 4) -> None:
    """Clicks as fast as the mouse goes, on one spot (no actionability waits between)."""
    box = page.locator(selector).bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    for _ in range(clicks):
        page.mouse.click(x, y)


def interventions(web: WorkerProcess, sid: str, kind: str) -> list[dict]:
    rows = records_of(web, INTERVENTIONS, sid, lambda rs: any(r["kind"] == kind for r in rs))
    return [r for r in rows if r["kind"] == kind]


def events(web: WorkerProcess, sid: str, wanted: set[str]) -> list[dict]:
    """The session's events on Kafka, once every type in ``wanted`` is there."""
    return records_of(web, EVENTS, sid, lambda rs: wanted <= {e["type"] for e in rs})


def test_rage_clicking_the_broken_pay_button_shows_a_nudge_within_2s(
    shop: Shop, web_worker: WorkerProcess
) -> None:
    page = shop.open("/demo/checkout")
    sid = page.evaluate("frictionwatch.sessionId()")
    rage_click(page, "#pay")
    clicked = time.monotonic()
    nudge = page.locator("[data-fw-nudge]")
    nudge.wait_for(state="visible", timeout=30_000)
    assert time.monotonic() - clicked <= 2.0
    iid = nudge.get_attribute("data-fw-nudge")
    assert "working" in nudge.inner_text()  # the rage_click message

    # Accessible: a labelled dialog that takes the focus, Tab reaches its buttons,
    # Escape dismisses it.
    assert nudge.get_attribute("role") == "dialog"
    assert page.evaluate("document.activeElement.getAttribute('data-fw-nudge')") == iid
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Talk to a person"
    page.keyboard.press("Escape")
    nudge.wait_for(state="detached")

    (record,) = interventions(web_worker, sid, "nudge")
    assert record["intervention_id"] == iid and record["delivered"] is True
    assert record["reasons"][0]["detector"] == "rage_click"
    seen = events(web_worker, sid, {"intervention_shown", "intervention_dismissed"})
    assert {e["intervention_id"] for e in seen if e["type"].startswith("intervention_")} == {iid}
    clicks = [e for e in seen if e["type"] == "click"]
    assert len(clicks) == 4
    assert {c["target"] for c in clicks} == {"button#pay"} and clicks[0]["text"] == "Pay"
    assert all(c["reaction_cut"] for c in clicks[:3])  # nobody waited for a reaction


def test_three_failed_payments_show_the_handoff_banner_with_the_context_id(
    shop: Shop, web_worker: WorkerProcess
) -> None:
    page = shop.open("/demo/checkout")
    sid = page.evaluate("frictionwatch.sessionId()")
    page.fill("input[name=card]", "4000 0000 0000 0002")  # typed, never sent
    fail_payment(page, 3)
    banner = page.locator("[data-fw-handoff]")
    banner.wait_for(state="visible", timeout=30_000)
    shown_id = page.locator("[data-fw-context-id]").inner_text()

    (handoff,) = interventions(web_worker, sid, "handoff")
    assert shown_id == handoff["intervention_id"] == banner.get_attribute("data-fw-handoff")
    checkout = handoff["context"]["checkout"]
    assert checkout["failures"] == 3 and checkout["codes"] == ["card_declined"]
    assert page.locator("[role=status] [data-fw-handoff]").count() == 1  # announced politely
    assert page.locator("[data-fw-nudge]").count() == 0  # the nudge gave way to the human

    sent = events(web_worker, sid, {"checkout_failed", "intervention_shown"})
    assert sum(e["type"] == "checkout_failed" for e in sent) == 3
    assert sum(e["type"] == "http_error" and e["status"] == 402 for e in sent) == 3
    # Not the card number typed (searched for outside ids and times: random digits).
    typed = str([{k: v for k, v in e.items() if k not in (
        "ts", "received_at", "event_id", "session_id", "intervention_id")} for e in sent])
    assert "4000" not in typed and "0002" not in typed


def test_talk_to_a_person_hands_off_without_friction(shop: Shop, web_worker: WorkerProcess) -> None:
    page = shop.open("/demo")
    sid = page.evaluate("frictionwatch.sessionId()")
    page.click("#help")
    page.locator("[data-fw-handoff]").wait_for(state="visible", timeout=30_000)
    (handoff,) = interventions(web_worker, sid, "handoff")
    assert [r["detector"] for r in handoff["reasons"]] == ["help_request"]
    # No friction at all: the request for a person is the only signal of the session.
    assert {s["detector"] for s in handoff["context"]["signals"]} == {"help_request"}

    # ...and from a nudge, by keyboard alone.
    page = shop.open("/demo/checkout")
    sid = page.evaluate("frictionwatch.sessionId()")
    fail_payment(page, 2)
    nudge = page.locator("[data-fw-nudge]")
    nudge.wait_for(state="visible", timeout=30_000)
    nudge_id = nudge.get_attribute("data-fw-nudge")
    page.locator("[data-fw-nudge] [data-fw-action=accept]").focus()
    page.keyboard.press("Enter")
    page.locator("[data-fw-handoff]").wait_for(state="visible", timeout=30_000)
    sent = events(web_worker, sid, {"intervention_accepted", "help_request"})
    accepted = [e for e in sent if e["type"] == "intervention_accepted"]
    assert [e["intervention_id"] for e in accepted] == [nudge_id]
    assert [e["channel"] for e in sent if e["type"] == "help_request"] == ["nudge"]


def test_reloading_does_not_show_an_intervention_again(shop: Shop, web_worker: WorkerProcess) -> None:
    page = shop.open("/demo/checkout")
    fail_payment(page, 2)
    page.locator("[data-fw-nudge]").wait_for(state="visible", timeout=30_000)
    for _ in range(2):
        page.reload()
        Shop.wait_connected(page)
        # The server replays the recent intervention to the new stream; the SDK knows it.
        page.wait_for_function("() => frictionwatch.debug().received >= 1", timeout=30_000)
        debug = page.evaluate("frictionwatch.debug()")
        assert debug["skipped"] >= 1 and debug["shown"] == 0
        assert page.locator("[data-fw-nudge], [data-fw-handoff]").count() == 0


def _stream_status(page: Any, sid: str, token: str | None) -> list[Any]:
    return page.evaluate(
        """async ([sid, token]) => {
            const q = token === null ? '' : '?token=' + encodeURIComponent(token);
            const r = await fetch('/v1/sessions/' + sid + '/interventions' + q);
            return [r.status, (await r.json()).error];
        }""", [sid, token])


def test_a_token_opens_only_its_own_session(shop: Shop, web_worker: WorkerProcess) -> None:
    a = shop.open("/demo")
    b = shop.open("/demo")
    sid_a = a.evaluate("frictionwatch.sessionId()")
    sid_b, token_b = b.evaluate(
        "(() => { const s = JSON.parse(sessionStorage.getItem('fw:session'));"
        " return [s.id, s.token]; })()")
    assert sid_a != sid_b

    assert _stream_status(b, sid_a, token_b) == [403, "wrong_session"]
    version, _, expires, sig = token_b.split(".")
    claim_a = base64.urlsafe_b64encode(sid_a.encode()).rstrip(b"=").decode()
    assert _stream_status(b, sid_a, f"{version}.{claim_a}.{expires}.{sig}") == [403, "bad_token"]
    assert _stream_status(b, sid_b, token_b[:-4] + "AAAA") == [403, "bad_token"]
    expired = TokenSigner(SECRET.encode(), ttl_s=60).issue(sid_a, now=time.time() - 3600)
    assert _stream_status(b, sid_a, expired) == [401, "expired_token"]
    assert _stream_status(b, sid_a, None) == [401, "missing_token"]
    assert web_worker.metric("frictionwatch_web_rejections_total", endpoint="stream",
                             reason="wrong_session") >= 1

    a.click("#help")
    a.locator("[data-fw-handoff]").wait_for(state="visible", timeout=30_000)
    interventions(web_worker, sid_a, "handoff")
    time.sleep(1.0)  # give a leak every chance to arrive
    debug_b = b.evaluate("frictionwatch.debug()")
    assert debug_b["connected"] and debug_b["received"] == 0
    assert b.locator("[data-fw-handoff]").count() == 0


def test_a_screenshot_of_the_nudge_is_saved(shop: Shop) -> None:
    page = shop.open("/demo/checkout")
    rage_click(page, "#pay")
    nudge = page.locator("[data-fw-nudge]")
    nudge.wait_for(state="visible", timeout=30_000)
    ARTIFACTS.mkdir(exist_ok=True)
    whole, dialog = ARTIFACTS / "nudge.png", ARTIFACTS / "nudge-dialog.png"
    page.screenshot(path=str(whole))
    nudge.screenshot(path=str(dialog))
    for path in (whole, dialog):
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
