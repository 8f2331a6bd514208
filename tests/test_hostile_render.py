"""Rendering that cannot fetch or serve anything, handlers safe with any input, and where the data lives."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import gradio as gr
import pytest
from gradio.utils import get_upload_folder, is_allowed_file

from supportbot.config import Settings, default_data_dir
from supportbot.services import Services
from supportbot.session import Session
from supportbot.ui import render
from supportbot.ui.app import CONTENT_SECURITY_POLICY, launch_options
from supportbot.ui.handlers import Playground, parse_message
from supportbot.ui.inert import EXACT_UP_TO, IMAGE_MARK, ZWSP, inert_markdown, md_escape, plain_json

LEAK = "http://127.0.0.1:9/leak"

# ---------------------------------------------------------------- inert markdown


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (f"![receipt]({LEAK})", f"{IMAGE_MARK}[receipt]({LEAK})"),
        (f"![]({LEAK})", f"{IMAGE_MARK}[image]({LEAK})"),
        # an angle-bracket destination is broken too (shown as text): safe, and rare in answers
        (f'![a](<{LEAK} x> "t")', f'{IMAGE_MARK}[a](<{ZWSP}{LEAK} x> "t")'),
        (f"![a][r]\n\n[r]: {LEAK}", f"{IMAGE_MARK}[a][r]\n\n[r]: {LEAK}"),
        ("![r][]\n\n[R]: <http://x/>", f"{IMAGE_MARK}[r][]\n\n[R]: <{ZWSP}http://x/>"),
        ("![r]", f"{IMAGE_MARK}[r]"),
        ("![a](&#104;ttp://127.0.0.1:9/leak)", f"{IMAGE_MARK}[a](&#104;ttp://127.0.0.1:9/leak)"),
        (f"[![a]({LEAK})](http://x/)", f"[{IMAGE_MARK}[a]({LEAK})](http://x/)"),
        ("\\![not an image](u)", f"\\!{ZWSP}[not an image](u)"),
        (f"<img src={LEAK}>", f"<{ZWSP}img src={LEAK}>"),
        ("<IMG SRC='&#x68;ttp://x'>", f"<{ZWSP}IMG SRC='&#x68;ttp://x'>"),
        (f"<div style=\"background:url('{LEAK}')\">", f"<{ZWSP}div style=\"background:url('{LEAK}')\">"),
        (f"<svg><image href='{LEAK}'/></svg>", f"<{ZWSP}svg><{ZWSP}image href='{LEAK}'/><{ZWSP}/svg>"),
        ("<!-- x --><?php ?>", f"<{ZWSP}!-- x --><{ZWSP}?php ?>"),
        ("a<br>b<br/>c<br />d", "a<br>b<br>c<br>d"),
        ("if a < b and c <= d: <3", "if a < b and c <= d: <3"),
        ("```html\n<p>hi</p>\n```", f"```html\n<{ZWSP}p>hi<{ZWSP}/p>\n```"),
        ("Plain answer, no markup.", "Plain answer, no markup."),
    ],
)
def test_images_become_links_and_tags_become_text(text, shown):
    assert inert_markdown(text) == shown


def test_nothing_fetchable_survives_any_mix():
    """Whatever the text, no "![" and no "<" directly before a tag name is left."""
    pieces = ["!", "[", "]", "(", ")", "<", "img", "/", "\\", "`", "```", "\n", "~~~", "br>", " ", "a", "&#33;"]
    import random

    rng = random.Random(8)
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 40)))
        out = inert_markdown(text)
        assert "![" not in out
        for i, ch in enumerate(out[:-1]):
            if ch == "<" and (out[i + 1].isascii() and out[i + 1].isalpha() or out[i + 1] in "/!?"):
                assert out.startswith(("<br>",), i), (text, out)
        assert out.replace(ZWSP, "").replace(IMAGE_MARK + "[image]", "![]").replace(IMAGE_MARK, "!") == (
            text.replace("<br/>", "<br>").replace("<br />", "<br>")
        ), (text, out)  # nothing else changes


@pytest.mark.parametrize(
    "adversarial",
    ["<a" * 500_000, "<" * 1_000_000, "![" * 500_000, "![]" * 333_333, "\\" * 999_998 + "![", "<br" * 333_333],
)
def test_a_megabyte_of_markup_renders_in_linear_time(adversarial):
    # Generous bound (a quadratic scan of 1 MB takes minutes); the typical figure is under 0.15 s.
    start = time.perf_counter()
    out = inert_markdown(adversarial)
    assert time.perf_counter() - start < 1.0
    assert "![" not in out


def test_the_exact_tag_rule_runs_up_to_its_bound_and_the_blunt_one_beyond():
    small = "a < b <img>" * (EXACT_UP_TO // 11)
    assert "a < b" in inert_markdown(small)
    big = "a < b <img>" * (EXACT_UP_TO // 11 + 1)
    assert "a < b" not in inert_markdown(big) and f"<{ZWSP}img>" in inert_markdown(big)


def test_names_are_shown_literally():
    assert md_escape("](http://x/) ![a*") == "\\]\\(http\\://x/\\) \\!\\[a\\*"
    assert len(md_escape("!" * 1_000_000)) < 500


def test_json_panels_never_carry_a_file():
    value = {"a": [{"path": "/data/x", "meta": {"_type": "gradio.FileData"}}], "b": {"path": "p", "meta": "str"}}
    shown = plain_json(value)
    assert isinstance(shown["a"][0], str) and '"/data/x"' in shown["a"][0] and isinstance(shown["b"], str)
    deep: object = 1
    for _ in range(100):
        deep = [deep]
    flat = plain_json({"d": deep})
    assert isinstance(flat, dict)  # cut to text below the depth limit, so nothing recurses without end


# ---------------------------------------------------------------- the chat view


def hostile_session(upload: str | None) -> Session:
    s = Session(turn=1)
    s.messages = [
        {
            "role": "user",
            "content": f"look ![x]({LEAK}?d=user)",
            "turn": 1,
            "attachments": [
                {"kind": "image", "filename": "](x) <b>.png", "width": 2, "height": 3, "local_file": upload},
                {"kind": "log", "filename": "app.log", "lines": 10, "est_tokens": 20},
            ],
        },
        {"role": "notice", "content": f"<img src={LEAK}?d=notice>", "turn": 1},
        {"role": "assistant", "content": f"![a]({LEAK}?d=answer)", "error": f"<img src={LEAK}>", "turn": 1},
    ]
    s.routes = [
        {"turn": 1, "model": f"![m]({LEAK})", "category": "x", "reason": f"![r]({LEAK})", "est_tokens": 1}
        | {"context_window": 2}
    ]
    s.tool_calls = [
        {"turn": 1, "call_id": "c", "name": f"![t]({LEAK})", "arguments": {"path": "/etc/passwd"}, "ok": False}
        | {"result": None, "error": f"<img src={LEAK}>", "duration_ms": 1.0}
    ]
    return s


def test_every_chat_message_is_a_string_with_nothing_fetchable(tmp_path):
    view = render.chat_view(hostile_session(str(tmp_path / "x.png")), "all", uploads=tmp_path / "uploads")
    for message in view:
        assert isinstance(message["content"], str)
        text = message["content"] + message.get("metadata", {}).get("title", "")
        assert "![" not in text and "<img" not in text
    assert "🖼️ *\\]\\(x\\) \\<b\\>\\.png* (2×3)" in [m["content"] for m in view]  # not in the upload folder


def test_a_screenshot_is_shown_only_from_the_upload_folder(tmp_path):
    uploads = tmp_path / "uploads"
    (uploads / "sha").mkdir(parents=True)
    inside = uploads / "sha" / "shot.png"
    inside.write_bytes(b"png")
    outside = tmp_path / "supportbot.sqlite3"
    outside.write_bytes(b"db")
    link = uploads / "sha" / "link.png"
    link.symlink_to(outside)
    assert render.served_upload(str(inside), uploads) == str(inside.resolve())
    for bad in (str(outside), str(link), str(uploads / "sha" / ".." / ".." / "supportbot.sqlite3"), None, 7):
        assert render.served_upload(bad, uploads) is None
    assert render.served_upload(str(inside), None) is None
    view = render.chat_view(hostile_session(str(inside)), "all", uploads=uploads)
    assert f"gradio_api/file={inside.resolve()}" in view[1]["content"] and view[1]["content"].startswith("![")


# ---------------------------------------------------------------- handlers called with anything


@pytest.fixture
def playground(tmp_path: Path) -> Playground:
    settings = Settings.load({"data_dir": tmp_path, "engine": "offline"}, environ={}, dotenv_path=None)
    return Playground(Services.create(settings))


@pytest.mark.parametrize("message", [None, 7, ["hi"], {"text": None}, {"files": [7, None]}, {"text": 5}])
def test_a_message_of_any_shape_is_read_safely(message):
    text, files = parse_message(message)
    assert isinstance(text, str) and files == []


@pytest.mark.parametrize("mode", ["all", "bogus", None, 7, {"path": "/etc/passwd"}])
@pytest.mark.parametrize("plan", ["pro", "nope", None, ["x"]])
def test_panels_accept_any_mode_and_plan(playground, mode, plan):
    panels = playground.redraw(mode, hostile_session(None), plan)
    assert all(isinstance(m["content"], str) for m in panels[0])
    assert isinstance(panels[3][0]["arguments"], str)  # the tool call's {"path": ...} shown as text (all calls as JSON)


@pytest.mark.parametrize("cid", [None, 7, {"path": "x"}, "<img src=x>", "x" * 1_000_000, "../../etc/passwd"])
def test_load_refuses_anything_but_an_id_without_echoing_it(playground, cid):
    with pytest.raises(gr.Error) as err:
        playground.load(cid, None)
    assert str(err.value.message) == "No conversation with that id is stored here (it may have expired)."


def test_import_reads_only_files_in_the_upload_folder(playground, tmp_path):
    outside = tmp_path / "c.json"
    outside.write_text("{}")
    session = Session()
    with pytest.warns(UserWarning, match="not a file uploaded to this page"):  # gr.Warning outside a request
        panels = playground.import_conversation({"path": str(outside)}, "all", session, None)
    assert panels[-1] is session


# ---------------------------------------------------------------- where the data lives, what is served


def test_the_default_data_dir_is_outside_the_working_and_temp_dirs(tmp_path):
    home = {"HOME": "/home/user"}
    assert default_data_dir(home) == Path("/home/user/.local/share/supportbot")
    assert default_data_dir(home | {"XDG_DATA_HOME": "/srv/xdg"}) == Path("/srv/xdg/supportbot")
    assert default_data_dir(home | {"XDG_DATA_HOME": "relative"}) == Path("/home/user/.local/share/supportbot")
    space = home | {"SPACE_ID": "me/bot"}
    assert default_data_dir(space, space_storage=tmp_path) == tmp_path / "supportbot"
    assert default_data_dir(space, space_storage=tmp_path / "absent") == Path("/home/user/.local/share/supportbot")
    chosen = Settings.load(environ=home, dotenv_path=None).data_dir
    assert chosen == Path("/home/user/.local/share/supportbot")
    assert not chosen.is_relative_to(Path.cwd()) and not chosen.is_relative_to(tempfile.gettempdir())
    assert Settings.load(environ=home | {"SUPPORTBOT_DATA_DIR": "/x"}, dotenv_path=None).data_dir == Path("/x")


def test_the_data_dir_is_blocked_wherever_it_is(tmp_path):
    inside_cwd = Path.cwd() / "data"  # the old default: under the working directory, which Gradio serves from
    for data_dir in (inside_cwd, tmp_path):
        settings = Settings.load({"data_dir": data_dir}, environ={}, dotenv_path=None)
        options = launch_options(settings, env={"GRADIO_BLOCKED_PATHS": "/srv/secret"})
        assert options["blocked_paths"] == [str(data_dir.resolve()), "/srv/secret"]
        allowed, reason = is_allowed_file(
            data_dir / "supportbot.sqlite3-wal",
            blocked_paths=options["blocked_paths"],
            allowed_paths=[os.getcwd(), tempfile.gettempdir()],  # what Gradio allows for outputs
            created_paths=[get_upload_folder()],
        )
        assert (allowed, reason) == (False, "in_blocklist")


def test_the_page_carries_a_content_security_policy():
    options = launch_options(Settings.load(environ={}, dotenv_path=None), env={})
    assert CONTENT_SECURITY_POLICY in options["head"] and 'http-equiv="Content-Security-Policy"' in options["head"]
    assert "img-src 'self' data: blob:" in CONTENT_SECURITY_POLICY and "media-src 'self'" in CONTENT_SECURITY_POLICY
