"""Compare mode in Chromium (see tests/test_browser.py for the launch rules): two models picked, one message,
two answers side by side with their stats; Stop stops both. Screenshots go to tests/artifacts/."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import launch_app
from test_browser import browser  # noqa: F401 - fixture
from test_browser_playground import open_page, shot

pytestmark = pytest.mark.browser

ORDER = "Where is my order #48291? It was supposed to arrive yesterday."
# Slow enough to press Stop while both sides stream (the order answer streams ~40 deltas).
STREAM_DELAY_S = 0.1


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    demo, url = launch_app(tmp_path_factory.mktemp("compare-browser"), stream_delay_s=STREAM_DELAY_S)
    yield url
    demo.close()


def open_compare(browser, url: str):  # noqa: F811 - the browser fixture
    """The page with the Compare tab open, Model A and Model B picked by their labels."""
    page = open_page(browser, url)
    tab = page.get_by_role("tab", name="⚖️ Compare")
    page.wait_for_selector("[role=tablist]")
    if tab.count() == 0:  # the panel is narrower than the tabs: Gradio moves the last ones into its ⋯ menu
        page.get_by_label("More tabs").click()
        page.locator(".overflow-dropdown button", has_text="⚖️ Compare").click()
    else:
        tab.click()
    for box, label in (
        ("#sb-cmp-model-a", "Multilingual · Qwen 3 32B"),
        ("#sb-cmp-model-b", "Reasoning · DeepSeek V3.2"),
    ):
        page.locator(box).get_by_label(box[-1].upper().join(("Model ", ""))).click()
        page.locator(box).get_by_role("option", name=label).click()
    return page


def test_two_models_answer_side_by_side(browser, url):  # noqa: F811
    from playwright.sync_api import expect

    page = open_compare(browser, url)
    page.locator("#sb-cmp-box textarea").fill(ORDER)
    page.locator("#sb-cmp-go").click()
    for column, model in (("#sb-cmp-a", "Qwen 3 32B"), ("#sb-cmp-b", "DeepSeek V3.2")):
        col = page.locator(column)
        expect(col.locator(".sb-cmp-stats table")).to_contain_text(model, timeout=30_000)
        expect(col.locator(".sb-cmp-stats table")).to_contain_text("requests")
        expect(col.locator(".sb-cmp-stats")).to_contain_text("flat")
        bot = col.locator(".message.bot").last  # the answer, after the collapsed step with the tool
        expect(bot).to_contain_text("48291")
        expect(col).to_contain_text("check_order_status")
    expect(page.locator("#sb-cmp-go")).to_be_visible()
    shot(page, "compare-two-answers", full=True)
    # The main chat is untouched by the comparison.
    expect(page.locator("#sb-chat .message")).to_have_count(0)
    assert page.errors == []


def test_stop_stops_both_sides_and_they_keep_what_arrived(browser, url):  # noqa: F811
    from playwright.sync_api import expect

    page = open_compare(browser, url)
    page.locator("#sb-cmp-box textarea").fill(ORDER)
    page.locator("#sb-cmp-go").click()
    stop = page.locator("#sb-cmp-stop")
    expect(stop).to_be_visible()
    # Wait until both sides stream answer text, then stop.
    for column in ("#sb-cmp-a", "#sb-cmp-b"):
        expect(page.locator(column)).to_contain_text("48291", timeout=30_000)
    stop.click()
    for column in ("#sb-cmp-a", "#sb-cmp-b"):
        expect(page.locator(column).locator(".sb-cmp-stats")).to_contain_text("Stopped")
        expect(page.locator(column)).to_contain_text("Stopped")
    expect(page.locator("#sb-cmp-go")).to_be_visible()
    expect(stop).to_be_hidden()
    # Reset starts over: both columns empty again.
    page.locator("#sb-cmp-reset").click()
    for column in ("#sb-cmp-a", "#sb-cmp-b"):
        expect(page.locator(column).locator(".sb-cmp-stats")).to_contain_text("No turn yet")
    assert page.errors == []
