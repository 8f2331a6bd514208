"""The playground as a stakeholder and a QA tester use it, in Chromium (see tests/test_browser.py for the
launch rules): the agent view beside the chat, a message box that never loses a draft, links that resume,
a cost panel without "n/a", and a phone layout. Screenshots go to tests/artifacts/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import launch_app
from test_browser import ARTIFACTS, MIN_PNG_BYTES, TURN_TIMEOUT_MS, VIEWPORT, browser  # noqa: F401 - fixture

from supportbot.ui.handlers import EXAMPLES

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
ORDER, REFUND, POLICY, ESCALATION, SPANISH, SCREENSHOT, LONG_LOG = (label for label, _, _ in EXAMPLES)
# Slow enough to type during an answer: the order answer streams ~40 deltas, so about 5 s.
STREAM_DELAY_S = 0.12


@pytest.fixture(scope="module")
def slow_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A playground whose offline engine streams slowly, so a turn can be interrupted."""
    demo, url = launch_app(tmp_path_factory.mktemp("slow-app"), stream_delay_s=STREAM_DELAY_S)
    yield url
    demo.close()


def open_page(browser, url: str, viewport: dict = VIEWPORT):  # noqa: F811 - the browser fixture
    """A fresh context and page on ``url``, recording page errors."""
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    page.set_default_timeout(TURN_TIMEOUT_MS)
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.goto(url, wait_until="domcontentloaded")
    return page


def shot(page, name: str, full: bool = False) -> Path:
    """Save a screenshot under tests/artifacts and check it is a rendered page, not a blank one."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > MIN_PNG_BYTES, f"{path.name}: {len(data)} bytes"
    return path


def in_view(page, locator, height: int, min_visible: float = 40) -> bool:
    """Whether ``locator``'s element starts inside the viewport and at least ``min_visible`` px of it show."""
    box = locator.bounding_box()
    assert box is not None, "not rendered"
    return box["y"] >= 0 and min(box["y"] + box["height"], height) - box["y"] >= min(min_visible, box["height"])


def send_example(page, label: str) -> None:
    """Click an example and wait for its turn to end (its message shown, then the Stop button gone)."""
    from playwright.sync_api import expect

    users = page.get_by_test_id("user")
    before = users.count()
    page.get_by_role("button", name=label, exact=True).click()
    expect(users.nth(before)).to_be_visible()
    expect(page.locator("#sb-box button.stop-button")).to_have_count(0, timeout=TURN_TIMEOUT_MS)


def test_the_agent_view_is_beside_the_chat_at_1280x800(browser, app_url):  # noqa: F811
    from playwright.sync_api import expect

    page = open_page(browser, app_url)
    expect(page.locator(".sb-badge")).to_contain_text("Offline demo engine")
    page.get_by_role("button", name=ORDER, exact=True).click()
    bot = page.get_by_test_id("bot").last
    expect(bot).to_contain_text("UPS")
    tool = page.locator(".sb-timeline .sb-tool", has_text="check_order_status")
    expect(tool).to_contain_text('"order_id": "48291"')  # its arguments...
    expect(tool).to_contain_text('"status": "delayed"')  # ...its result...
    expect(tool.locator(".sb-meta")).to_have_text(re.compile(r"\d+\.\d ms"))  # ...and its duration
    timeline = page.locator(".sb-timeline")
    expect(timeline.locator(".sb-route")).to_contain_text("llama-3.3-70b")
    expect(timeline.locator(".sb-ticket")).to_contain_text("pending_customer")  # what changed in the ticket
    expect(timeline.locator(".sb-cost")).to_contain_text("2 requests")
    ticket = page.locator(".sb-ticket-json")
    expect(ticket).to_contain_text("TCK-")
    expect(ticket).to_contain_text("maya.thompson@example.com")  # the order's customer
    # All at once, without switching tabs or scrolling: the customer's message, the answer, the tool call
    # and the ticket JSON.
    height = VIEWPORT["height"]
    for what, locator in [
        ("the customer's message", page.get_by_test_id("user").first),
        ("the answer", bot),
        ("the tool call", tool),
        ("the ticket JSON", ticket),
        ("the message box", page.get_by_test_id("textbox")),
        ("the examples", page.get_by_role("button", name=LONG_LOG, exact=True)),
    ]:
        assert in_view(page, locator, height), f"{what} is not inside the 1280x800 viewport"
    shot(page, "playground-1280x800-order")
    assert page.errors == []


def test_any_turn_can_be_shown_and_a_new_one_shows_itself(browser, app_url):  # noqa: F811
    from playwright.sync_api import expect

    page = open_page(browser, app_url)
    expect(page.locator(".sb-badge")).to_be_visible()
    send_example(page, ORDER)
    send_example(page, REFUND)
    timeline = page.locator(".sb-timeline")
    expect(timeline).to_contain_text("request_refund")
    page.locator(".sb-turnpick input").click()
    page.get_by_role("option", name=re.compile(r"^Turn 1 · Where is my order")).click()
    expect(timeline).to_contain_text("Turn 1 of 2")
    expect(timeline.locator(".sb-tool")).to_contain_text(["check_order_status", "update_ticket"])
    send_example(page, POLICY)
    expect(timeline).to_contain_text("Turn 3")
    expect(timeline).to_contain_text("search_knowledge_base")
    assert page.errors == []


def test_a_draft_typed_during_an_answer_survives(browser, slow_url):  # noqa: F811
    from playwright.sync_api import expect

    page = open_page(browser, slow_url)
    box = page.get_by_test_id("textbox")
    stop = page.locator("#sb-box button.stop-button")
    expect(page.locator(".sb-badge")).to_be_visible()
    expect(stop).to_have_count(0)  # no Stop while idle

    box.fill("Where is my order #48291?")
    box.press("Enter")
    expect(stop).to_be_visible()  # Stop only while answering
    expect(page.get_by_test_id("bot").last).not_to_contain_text("UPS")  # still streaming
    box.fill("and my other order, #48258?")
    box.press("Enter")  # sent while busy: refused beside the box, the draft kept
    expect(page.locator(".sb-note")).to_contain_text("Still answering")
    page.get_by_role("button", name=POLICY, exact=True).click()  # an example during the turn: refused the same way
    expect(page.get_by_test_id("user")).to_have_count(1)  # the chat is not blanked; nothing else was sent
    shot(page, "playground-draft-during-answer")
    expect(stop).to_have_count(0, timeout=TURN_TIMEOUT_MS)  # the answer ended
    expect(page.get_by_test_id("bot").last).to_contain_text("UPS")
    expect(box).to_have_value("and my other order, #48258?")  # the draft survived the whole turn
    expect(page.locator(".sb-note")).to_have_count(0)
    expect(page.get_by_test_id("user")).to_have_count(1)

    box.press("Enter")  # now it goes
    expect(page.get_by_test_id("user")).to_have_count(2)
    expect(box).to_have_value("")
    stop.click()  # stopped mid-answer: marked as such, in the chat and in the agent view
    expect(page.get_by_test_id("bot").last).to_contain_text("Stopped")
    expect(page.locator(".sb-timeline .sb-stopped")).to_be_visible()
    expect(stop).to_have_count(0)
    assert page.errors == []


def test_an_empty_send_does_nothing_and_bad_input_is_one_warning(browser, app_url, tmp_path):  # noqa: F811
    from playwright.sync_api import expect

    page = open_page(browser, app_url)
    expect(page.locator(".sb-badge")).to_be_visible()
    box = page.get_by_test_id("textbox")
    box.press("Enter")
    box.fill("   ")
    box.press("Enter")
    page.wait_for_timeout(1000)
    expect(page.locator(".toast-body")).to_have_count(0)  # no toast for an empty send
    expect(page.get_by_test_id("user")).to_have_count(0)

    fake = tmp_path / "receipt.png"
    fake.write_bytes(b"this is not an image at all")
    composer = page.get_by_role("group", name="Multimedia input field")
    composer.locator("input[type=file]").set_input_files(str(fake))
    expect(composer.get_by_role("listitem", name="File thumbnail")).to_have_count(1)  # uploaded
    box.fill("see the attached receipt")
    box.press("Enter")
    toast = page.locator(".toast-body")
    expect(toast).to_have_count(1)
    expect(toast).to_contain_text("receipt.png")  # the file is named
    expect(toast).to_contain_text("not an image")
    expect(box).to_have_value("see the attached receipt")  # the message is back in the box
    expect(composer.get_by_role("listitem", name="File thumbnail")).to_have_count(1)  # with its file
    expect(page.get_by_test_id("user")).to_have_count(0)  # and nothing was sent
    # No "Error" pill on any panel: every status tracker is quiet.
    assert page.locator(".error").filter(has_text="Error").count() == 0
    shot(page, "playground-bad-input")
    assert page.errors == []


def test_the_address_bar_carries_the_conversation_and_a_reload_resumes(browser, app_url):  # noqa: F811
    from playwright.sync_api import expect

    page = open_page(browser, app_url)
    expect(page.locator(".sb-badge")).to_be_visible()
    assert "c=" not in page.url
    send_example(page, ORDER)
    expect(page).to_have_url(re.compile(r"\?c=[A-Za-z0-9_-]{16,64}$"))
    first = page.url.split("?c=")[1]
    send_example(page, REFUND)
    page.reload(wait_until="domcontentloaded")  # mid-conversation: both turns come back
    expect(page.get_by_test_id("user")).to_have_count(2)
    expect(page.get_by_test_id("bot").last).to_contain_text("approved")
    expect(page.locator(".sb-timeline .sb-tool", has_text="request_refund")).to_be_visible()
    expect(page).to_have_url(re.compile(f"c={first}"))
    # The reloaded conversation goes on under a new id (a fork): the address bar follows.
    send_example(page, POLICY)
    expect(page).not_to_have_url(re.compile(f"c={first}"))
    forked = page.url.split("?c=")[1]
    # This browser's own list: both ids, newest first, titled by their first message.
    page.get_by_role("tab", name="🕘 Conversations").click()
    recent = page.locator(".sb-recent label")
    expect(recent).to_have_count(2)
    expect(recent.first).to_contain_text("Where is my order #48291?")
    expect(recent.first).to_contain_text("(open)")
    # Copy link copies the address (with the new id) to the clipboard.
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.locator("#sb-copy").click()
    expect(page.locator("#sb-copy")).to_have_text("✓ Link copied")
    assert page.evaluate("navigator.clipboard.readText()") == page.url
    # Picking the older one opens it (two turns, as it was stored); the address bar follows.
    recent.nth(1).click()
    expect(page.get_by_test_id("user")).to_have_count(2)
    expect(page).to_have_url(re.compile(f"c={first}"))
    # Another browser has its own list (only what it opened itself), even on the same link.
    other = open_page(browser, f"{page.url.split('?')[0]}?c={forked}")
    expect(other.get_by_test_id("user")).to_have_count(3)
    other.get_by_role("tab", name="🕘 Conversations").click()
    expect(other.locator(".sb-recent label")).to_have_count(1)
    other.context.close()
    # The trash icon starts a new conversation: the address bar drops the id, the chat empties.
    page.locator("#sb-chat").get_by_role("button", name=re.compile("clear", re.I)).click()
    expect(page.get_by_test_id("user")).to_have_count(0)
    expect(page).not_to_have_url(re.compile(r"c="))
    send_example(page, SPANISH)
    expect(page.get_by_test_id("user")).to_have_count(1)  # the old chat does not come back
    assert page.errors == []


def test_the_phone_layout_at_390x844(browser, app_url):  # noqa: F811
    from playwright.sync_api import expect

    page = open_page(browser, app_url, PHONE)
    expect(page.locator(".sb-badge")).to_be_visible()
    header = page.locator(".sb-header").bounding_box()
    assert header is not None and header["height"] <= 100, f"the header takes {header} (two lines at most)"
    badge = page.locator(".sb-badge").bounding_box()
    assert badge is not None and badge["width"] > 2 * badge["height"], "the engine badge is a pill, not a circle"
    height = PHONE["height"]
    assert in_view(page, page.get_by_test_id("textbox"), height), "the message box is below the first screen"
    assert in_view(page, page.get_by_role("button", name=ORDER, exact=True), height), "no example on the first screen"
    chat = page.locator("#sb-chat").bounding_box()
    panels = page.locator(".sb-panels").bounding_box()
    assert chat is not None and panels is not None and panels["y"] >= chat["y"] + chat["height"]  # panels below
    shot(page, "playground-390x844")
    send_example(page, ORDER)
    expect(page.get_by_test_id("bot").last).to_contain_text("UPS")
    shot(page, "playground-390x844-order", full=True)
    assert page.errors == []


def test_the_cost_panel_after_the_long_log_has_no_unknown_total(browser, app_url):  # noqa: F811
    from playwright.sync_api import expect

    page = open_page(browser, app_url)
    expect(page.locator(".sb-badge")).to_be_visible()
    send_example(page, ORDER)
    send_example(page, LONG_LOG)
    expect(page.get_by_test_id("bot").last).to_contain_text("PaymentGatewayClient")
    page.get_by_role("tab", name="📊 Cost").click()
    usage = page.locator("div.block.sb-usage")
    expect(usage.locator(".sb-headline")).to_contain_text("This conversation (4 requests)")
    expect(usage.locator(".sb-headline")).to_contain_text("flat on Oxlo Pro")
    totals = usage.locator(".sb-totals").inner_text()
    assert "n/a" not in usage.inner_text() and "no price" not in totals
    # DeepSeek V4 Flash is listed by no provider: priced as its nearest equivalent, marked, with its basis.
    assert "≈" in totals
    usage.locator(".sb-notes summary").click()
    expect(usage.locator(".sb-notes")).to_contain_text("does not list deepseek-v4-flash")
    # The tables fit the panel: nothing wider than it.
    panel = usage.bounding_box()
    for table in usage.locator("table").all():
        box = table.bounding_box()
        assert box is not None and panel is not None and box["x"] + box["width"] <= panel["x"] + panel["width"] + 1
    # The legend follows the plan.
    page.get_by_label("Flat-priced Oxlo plan to compare with token prices").click()
    page.get_by_role("option", name="Oxlo Premium").click()
    expect(usage.locator(".sb-headline")).to_contain_text("flat on Oxlo Premium")
    legend = page.locator(".sb-panels .vega-embed")
    expect(legend).to_contain_text("Oxlo Premium (flat)")
    expect(legend).not_to_contain_text("Oxlo Pro (flat)")
    shot(page, "playground-cost-after-long-log")
    assert page.errors == []
