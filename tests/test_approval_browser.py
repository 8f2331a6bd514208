"""Approve / Deny in a real browser (Debian's Chromium through Playwright), on an app that asks approval for
refunds and escalations: the buttons appear only while a call waits, each finishes the turn, and a reload of
the conversation's link brings the waiting call back."""

from __future__ import annotations

import pytest

from supportbot.ui.handlers import EXAMPLES
from tests.test_browser import ARTIFACTS, TURN_TIMEOUT_MS, VIEWPORT, browser  # noqa: F401 - the browser fixture

pytestmark = pytest.mark.browser

REFUND_EXAMPLE = next(label for label, _, _ in EXAMPLES if label.startswith("💸"))


@pytest.fixture(scope="module")
def approval_url(tmp_path_factory: pytest.TempPathFactory):
    from tests.conftest import launch_app

    demo, url = launch_app(tmp_path_factory.mktemp("approval-browser"), confirm_tools="request_refund")
    yield url
    demo.close()


@pytest.fixture
def page(browser, approval_url: str):  # noqa: F811 - the fixture imported above
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(TURN_TIMEOUT_MS)
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.goto(approval_url, wait_until="domcontentloaded")
    yield page
    context.close()


def test_approve_and_deny_buttons_finish_the_paused_turn(page, browser, approval_url: str):  # noqa: F811
    from playwright.sync_api import expect

    bar = page.locator(".sb-approval")
    approve, deny = page.get_by_role("button", name="✅ Approve"), page.get_by_role("button", name="🚫 Deny")
    expect(page.locator(".sb-badge")).to_contain_text("Offline demo engine")
    expect(bar).to_be_hidden()

    page.get_by_role("button", name=REFUND_EXAMPLE, exact=True).click()
    expect(bar).to_be_visible()
    expect(bar).to_contain_text("request_refund")
    expect(page.get_by_test_id("bot").last).to_contain_text("awaits approval")
    expect(approve).to_be_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "approval-paused.png"))

    # The link of this conversation (in the address bar once the turn is stored), opened elsewhere,
    # shows the same call waiting.
    page.wait_for_url("**?c=*")
    conversation_id = page.url.split("c=")[1].split("&")[0]
    other = browser.new_context(viewport=VIEWPORT).new_page()
    other.goto(f"{approval_url}?c={conversation_id}", wait_until="domcontentloaded")
    expect(other.locator(".sb-approval")).to_be_visible(timeout=TURN_TIMEOUT_MS)
    expect(other.locator(".sb-approval")).to_contain_text("request_refund")
    other.context.close()

    deny.click()
    expect(page.get_by_test_id("bot").last).to_contain_text("did not approve", timeout=TURN_TIMEOUT_MS)
    expect(bar).to_be_hidden()

    page.get_by_role("button", name=REFUND_EXAMPLE, exact=True).click()  # asks again: a new call waits
    expect(bar).to_be_visible()
    approve.click()
    expect(page.get_by_test_id("bot").last).to_contain_text("181.49", timeout=TURN_TIMEOUT_MS)
    expect(bar).to_be_hidden()
    assert page.errors == [], f"uncaught errors in the page: {page.errors}"
