"""The customer's message as the model receives it, and as the transcript describes it.

Text first, then each log fenced as data (reduced to a token budget when the route says so),
then the screenshots as image parts. The transcript keeps what was sent about each attachment,
never the attachment itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from supportbot.attachments.images import PreparedImage
from supportbot.attachments.logs import LogFile
from supportbot.attachments.reduce import reduce_log
from supportbot.vocabulary import fence_log


def user_message(text: str, log_blocks: list[str], images: list[PreparedImage]) -> dict[str, Any]:
    """The customer's message as the model receives it: text and fenced logs, then images."""
    body = "\n\n".join([t for t in [text, *log_blocks] if t]) or "(see attachment)"
    if not images:
        return {"role": "user", "content": body}
    return {"role": "user", "content": [{"type": "text", "text": body}, *(im.content_part() for im in images)]}


def with_images(user_msg: dict[str, Any], images: list[PreparedImage]) -> dict[str, Any]:
    """``user_msg`` (text first, then images) with ``images`` in place of the ones it carried."""
    return {**user_msg, "content": [user_msg["content"][0], *(im.content_part() for im in images)]}


def image_meta(im: PreparedImage, path: Path) -> dict[str, Any]:
    """What the transcript says about a screenshot."""
    return {
        "kind": "image",
        "filename": im.filename,
        "format": im.source_format,
        "width": im.source_width,
        "height": im.source_height,
        "sent_width": im.width,
        "sent_height": im.height,
        "payload_bytes": im.payload_bytes,
        # Not "path": Gradio treats any output dict with a "path" key as a file to serve.
        "local_file": str(path),
    }


def log_blocks(logs: list[LogFile], budget: int | None) -> tuple[list[str], list[dict[str, Any]]]:
    """Each log fenced (reduced in proportion when together they exceed ``budget`` tokens), and what the
    transcript says about it."""
    blocks, meta = [], []
    total = sum(log.est_tokens for log in logs) or 1
    for log in logs:
        info = {
            "kind": "log",
            "filename": log.filename,
            "bytes": log.size_bytes,
            "lines": log.line_count,
            "est_tokens": log.est_tokens,
            "reduced": False,
            "header": "",
        }
        if budget is not None and total > budget:
            reduced = reduce_log(log, max(500, budget * log.est_tokens // total))
            blocks.append(fence_log(reduced.text, log.filename))
            # The reduced text itself is kept once, in the model history (and so in the stored snapshot).
            info.update(reduced=True, header=reduced.header, sent_tokens=reduced.est_tokens)
        else:
            blocks.append(fence_log(log.read_text(), log.filename))
            info["sent_tokens"] = log.est_tokens
        meta.append(info)
    return blocks, meta
