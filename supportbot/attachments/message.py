"""What a turn's attachments become in the request and in the transcript.

Logs are fenced as customer data (reduced to a token budget when they must be), screenshots
become image parts; the transcript keeps a short description of each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from supportbot.attachments.images import PreparedImage
from supportbot.attachments.logs import LogFile
from supportbot.attachments.reduce import reduce_log
from supportbot.vocabulary import cut_off_note, fence_log


def fence_logs(logs: list[LogFile], budget: int | None) -> tuple[list[str], list[dict[str, Any]]]:
    """Each log fenced as data (reduced to its share of ``budget`` when one is given), and what the
    transcript says of it."""
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
        # A .gz that ended early is said so beside the fence, by us: the model reads it as a fact.
        note = cut_off_note(log.filename, log.line_count) + "\n" if log.cut_off else ""
        if log.cut_off:
            info["cut_off"] = True
        if budget is not None and total > budget:
            reduced = reduce_log(log, max(500, budget * log.est_tokens // total))
            blocks.append(note + fence_log(reduced.text, log.filename))
            # The reduced text itself is kept once, in the model history (and so in the stored snapshot).
            info.update(reduced=True, header=reduced.header, sent_tokens=reduced.est_tokens)
        else:
            blocks.append(note + fence_log(log.read_text(), log.filename))
            info["sent_tokens"] = log.est_tokens
        meta.append(info)
    return blocks, meta


def image_meta(im: PreparedImage, path: Path) -> dict[str, Any]:
    """What the transcript says of a prepared screenshot (and where this server keeps the upload)."""
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


def user_message(text: str, log_blocks: list[str], images: list[PreparedImage]) -> dict[str, Any]:
    """The user message a request carries: the text, the fenced logs, then the images as parts."""
    body = "\n\n".join([t for t in [text, *log_blocks] if t]) or "(see attachment)"
    if not images:
        return {"role": "user", "content": body}
    return {"role": "user", "content": [{"type": "text", "text": body}, *(im.content_part() for im in images)]}


def with_images(user_msg: dict[str, Any], images: list[PreparedImage]) -> dict[str, Any]:
    """``user_msg`` (text first, then images) with ``images`` in place of the ones it carried."""
    return {**user_msg, "content": [user_msg["content"][0], *(im.content_part() for im in images)]}
