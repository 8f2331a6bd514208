"""The 🧪 QA tab in a real browser (Debian's Chromium through Playwright): pick a shipped scenario, run it, see it pass."""

from __future__ import annotations

import pytest

from tests.test_browser import ARTIFACTS, browser, page  # noqa: F401 - the browser and page fixtures

pytestmark = pytest.mark.browser


def test_the_qa_tab_runs_a_shipped_scenario_and_shows_pass(page):  # noqa: F811
    from playwright.sync_api import expect

    # Beside the other tabs, or in Gradio's "More tabs" menu when the panel is too narrow for all of them.
    tab = page.get_by_role("tab", name="🧪 QA")
    if not tab.count():
        page.get_by_role("button", name="More tabs").click()
        tab = page.locator(".overflow-dropdown button", has_text="🧪 QA")
    tab.click()
    page.locator("#sb-qa-picks").get_by_label("example-3-policy").check()
    page.locator("#sb-qa-run").click()
    expect(page.locator("#sb-qa-summary")).to_contain_text("1 scenario: 1 passed")
    results = page.locator("#sb-qa-results")
    expect(results).to_contain_text("Example: policy question")
    expect(results.get_by_role("gridcell", name="pass", exact=True).first).to_be_visible()
    expect(results.get_by_role("gridcell", name="fail", exact=True)).to_have_count(0)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "qa-tab.png"))
    assert page.errors == []
