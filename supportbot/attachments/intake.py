"""Sorting what arrives with a message: images by their bytes, everything else as a log.

The file name's suffix is only a hint: content decides (a text file named ``.png`` is
refused as an image, not sent as one). Long, log-like text typed into the box becomes a log
attachment, so it is reduced and fenced like an upload; other text over
``SUPPORTBOT_MAX_TEXT_CHARS`` (a pasted blob, one endless token) is refused with a message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from supportbot.attachments.logs import LogFile, LogLimits, open_log
from supportbot.config import Settings
from supportbot.errors import AttachmentError, SupportbotError
from supportbot.routing import tokens

IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".heic", ".ico", ".svg"}
# Text typed or sent through the API that is this long and log-like is treated as a log attachment.
INLINE_LOG_CHARS = 4000
# Log files one message may carry (a pasted log makes one more).
MAX_LOGS_PER_MESSAGE = 4


@dataclass
class Attachments:
    """A message's attachments, sorted; images are read (and size-checked) later by prepare_image."""

    images: list[Path] = field(default_factory=list)
    logs: list[LogFile] = field(default_factory=list)


def refuse_empty(text: str | None, files: list[str | Path] | None) -> None:
    """SupportbotError for a turn with nothing in it (no text, no file)."""
    if not (text or "").strip() and not files:
        raise SupportbotError("Type a message or attach a screenshot or log first.")


def log_limits(settings: Settings) -> LogLimits:
    """The upload and gzip-expansion caps from the settings."""
    return LogLimits(settings.max_upload_mb * 2**20, settings.max_gz_expanded_mb * 2**20)


def sort_files(files: list[str | Path], text: str, settings: Settings) -> tuple[str, Attachments]:
    """Split uploads into images and logs by content; long log-like text becomes a log, other text over
    ``settings.max_text_chars`` is refused (SupportbotError)."""
    found = Attachments()
    limits = log_limits(settings)
    log_paths: list[Path] = []
    for f in files:
        path = Path(f)
        with path.open("rb") as fh:
            head = fh.read(16)
        is_image = head.startswith(IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")
        if is_image or path.suffix.lower() in IMAGE_SUFFIXES:
            found.images.append(path)
        else:
            log_paths.append(path)
    # Counted before any is read: each log sent costs tokens (a reduced one at least ~500), whatever its size.
    if len(log_paths) > MAX_LOGS_PER_MESSAGE:
        raise AttachmentError(
            f"{len(log_paths)} logs",
            f"at most {MAX_LOGS_PER_MESSAGE} log files per message; send the rest in the next one.",
        )
    found.logs = [open_log(path, path.name, limits) for path in log_paths]
    if len(found.images) > settings.max_images_per_turn:
        raise AttachmentError(
            f"{len(found.images)} images",
            f"at most {settings.max_images_per_turn} images per message; send the rest in the next one.",
        )
    if len(text) > INLINE_LOG_CHARS and tokens.classify(text) == "log":
        found.logs.append(open_log(text, "pasted.log", limits))
        text = ""
    elif len(text) > settings.max_text_chars:
        raise SupportbotError(
            f"Your message is {len(text):,} characters long, over the {settings.max_text_chars:,}-character limit "
            "(SUPPORTBOT_MAX_TEXT_CHARS), and it does not read as a log. Send the part that matters, or attach a "
            "log as a .log, .txt or .gz file."
        )
    return text, found
