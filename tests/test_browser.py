"""The playground in a real browser: Debian's Chromium driven by Playwright against the offline engine.

Skipped when Chromium (or the playwright package) is missing, unless SUPPORTBOT_REQUIRE_BROWSER=1
(CI sets it): then a missing browser fails the run instead of silently passing it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from supportbot.config import ASSETS_DIR
from supportbot.ui.handlers import EXAMPLES

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
SCREENSHOT = ASSETS_DIR / "samples" / "checkout-error.png"
VIEWPORT = {"width": 1280, "height": 800}
# Without the background-networking flags Chromium's own connections are refused on a closed network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TURN_TIMEOUT_MS = 15_000
MIN_PNG_BYTES = 20_000  # a blank 1280x800 page compresses to a few KB; a rendered playground is far larger
# The order-status example, found by its icon so a relabelled button does not break the test.
ORDER_EXAMPLE = next(label for label, _, _ in EXAMPLES if label.startswith("📦"))


def _unavailable(reason: str) -> None:
    if os.environ.get("SUPPORTBOT_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (SUPPORTBOT_REQUIRE_BROWSER=1, so this fails instead of skipping)")
    pytest.skip(reason)


def chromium_path() -> str | None:
    """Debian's Chromium, or whichever `chromium` is on PATH."""
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else shutil.which("chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """A headless Chromium for this module; skips (or fails under CI) when there is none."""
    executable = chromium_path()
    if executable is None:
        _unavailable("Chromium is not installed (looked for /usr/bin/chromium and `chromium` on PATH)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, app_url: str):
    """A fresh page at 1280x800 on the app, collecting uncaught page errors in `page.errors`."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(TURN_TIMEOUT_MS)  # a missing element fails in seconds, not Playwright's 30 s
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.goto(app_url, wait_until="domcontentloaded")
    yield page
    context.close()


def test_a_support_conversation_in_the_browser(page):
    from playwright.sync_api import expect

    expect(page.locator(".sb-badge")).to_contain_text("Offline demo engine", timeout=TURN_TIMEOUT_MS)
    last_bot = page.get_by_test_id("bot").last
    composer = page.get_by_role("group", name="Multimedia input field")
    submit = composer.get_by_test_id("submit-button")

    # An example question: a streamed answer with the tracking details, the tool call in the agent view
    # beside it, and the ticket under it: no tab to switch.
    page.get_by_role("button", name=ORDER_EXAMPLE, exact=True).click()
    expect(last_bot).to_contain_text("48291", timeout=TURN_TIMEOUT_MS)
    expect(last_bot).to_contain_text("UPS", timeout=TURN_TIMEOUT_MS)
    expect(page.locator(".sb-tool .sb-name", has_text="check_order_status")).to_be_visible(timeout=TURN_TIMEOUT_MS)
    expect(submit).to_be_visible(timeout=TURN_TIMEOUT_MS)  # the stop button gives way once the turn is over
    expect(page.locator(".sb-chip", has_text="order status")).to_be_visible(timeout=TURN_TIMEOUT_MS)

    # A screenshot through the textbox's own file input: routed to a vision model.
    composer.locator("input[type=file]").set_input_files(str(SCREENSHOT))
    expect(composer.locator("img").first).to_be_visible(timeout=TURN_TIMEOUT_MS)  # the upload finished
    page.get_by_test_id("textbox").fill("The checkout shows this error. What does it mean?")
    submit.click()
    expect(last_bot).to_contain_text("vision model", timeout=TURN_TIMEOUT_MS)
    newest_route = page.locator(".sb-timeline .sb-route")  # the agent view follows the latest turn
    expect(newest_route.locator(".sb-name b")).to_have_text("llama-4-maverick", timeout=TURN_TIMEOUT_MS)  # Pro's
    expect(newest_route).to_contain_text("vision")
    expect(newest_route).to_contain_text("Gemma 3 27B")  # and why the seed's Premium model was skipped
    expect(newest_route).to_contain_text("not on your plan")
    expect(submit).to_be_visible(timeout=TURN_TIMEOUT_MS)

    ARTIFACTS.mkdir(exist_ok=True)
    full, viewport = ARTIFACTS / "browser-full.png", ARTIFACTS / "browser-viewport.png"
    page.screenshot(path=str(full), full_page=True)
    page.screenshot(path=str(viewport))
    for png in (full, viewport):
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > MIN_PNG_BYTES, f"{png.name}: {len(data)} bytes"

    assert page.errors == [], f"uncaught errors in the page: {page.errors}"


def test_a_shared_link_reloads_the_conversation(page, browser, app_url: str):
    from playwright.sync_api import expect

    page.get_by_role("button", name=ORDER_EXAMPLE, exact=True).click()
    expect(page.get_by_test_id("bot").last).to_contain_text("UPS", timeout=TURN_TIMEOUT_MS)
    page.get_by_role("tab", name="🕘 Conversations").click()
    page.get_by_role("button", name="Export conversation").click()
    link = page.get_by_text("?c=")
    expect(link).to_be_visible(timeout=TURN_TIMEOUT_MS)
    conversation_id = link.inner_text().split("?c=")[1].split()[0].strip("`.")

    other = browser.new_context(viewport=VIEWPORT).new_page()
    other.goto(f"{app_url}?c={conversation_id}", wait_until="domcontentloaded")
    expect(other.get_by_test_id("bot").last).to_contain_text("UPS", timeout=TURN_TIMEOUT_MS)
    expect(other.locator(".sb-tool .sb-name", has_text="check_order_status")).to_be_visible(timeout=TURN_TIMEOUT_MS)
    expect(other.locator(".sb-chip", has_text="order status")).to_be_visible(timeout=TURN_TIMEOUT_MS)
    other.context.close()
