"""Regenerate the README's screenshots: the playground on the offline engine, in Debian's Chromium.

    python assets/make_screenshots.py

Desktop (1280x800) after the order example and the long log; phone (390x844) after the order example.
Saved as assets/screenshot-desktop.png and assets/screenshot-phone.png, each under 300 KB (a palette PNG
only when the full-colour one would be larger).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def _launch(data_dir: Path):
    from supportbot.config import Settings
    from supportbot.ui.app import build_app, launch_options, queue_options

    settings = Settings.load({"data_dir": data_dir, "engine": "offline"}, environ={}, dotenv_path=None)
    demo = build_app(settings)
    options = launch_options(settings, env={})
    options.update(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    demo.queue(**queue_options(settings))
    return demo, demo.launch(**options)[1]


def _turn(page, label: str) -> None:
    from playwright.sync_api import expect

    users = page.get_by_test_id("user")
    before = users.count()
    page.get_by_role("button", name=label, exact=True).click()
    expect(users.nth(before)).to_be_visible(timeout=20_000)
    expect(page.locator("#sb-box button.stop-button")).to_have_count(0, timeout=20_000)
    page.wait_for_timeout(1200)  # the chat's scroll to the turn's start, the plot


MAX_BYTES = 300 * 1024


def _save(png: bytes, path: Path) -> None:
    tmp = path.with_suffix(".raw.png")
    tmp.write_bytes(png)
    with Image.open(tmp) as im:
        im.convert("RGB").save(path, optimize=True)
        if path.stat().st_size > MAX_BYTES:  # a palette keeps text sharp; emoji colours suffer a little
            im.convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(path, optimize=True)
    tmp.unlink()
    print(f"{path.name}: {path.stat().st_size // 1024} KB")


def main() -> None:
    """Launch, drive, save."""
    from playwright.sync_api import sync_playwright

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    demo, url = _launch(Path(tempfile.mkdtemp()))
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            desk = browser.new_page(viewport={"width": 1280, "height": 800})
            desk.goto(url)
            desk.locator(".sb-badge").wait_for()
            _turn(desk, "📦 Order")
            _save(desk.screenshot(), HERE / "screenshot-desktop.png")
            phone = browser.new_page(viewport={"width": 390, "height": 844})
            phone.goto(url)
            phone.locator(".sb-badge").wait_for()
            _turn(phone, "📦 Order")
            phone.evaluate("window.scrollTo(0, 0)")
            _save(phone.screenshot(), HERE / "screenshot-phone.png")
            browser.close()
    finally:
        demo.close()


if __name__ == "__main__":
    main()
