"""Telling what an uploaded file is from its first bytes, so a refusal names what was sent."""

from __future__ import annotations

ACCEPTED_TEXT = "PNG, JPEG, WebP, GIF or BMP"

# Formats people do send that we do not decode, recognised by their first bytes.
_OTHER_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"II*\x00", "TIFF"),
    (0, b"MM\x00*", "TIFF"),
    (0, b"\x00\x00\x01\x00", "ICO"),
    (0, b"\x00\x00\x02\x00", "CUR"),
    (0, b"8BPS", "Photoshop PSD"),
    (0, b"icns", "ICNS"),
    (0, b"qoif", "QOI"),
    (0, b"DDS ", "DDS"),
    (0, b"\xff\x0a", "JPEG XL"),
    (4, b"JXL ", "JPEG XL"),
    (4, b"ftypheic", "HEIC"),
    (4, b"ftypheix", "HEIC"),
    (4, b"ftypmif1", "HEIF"),
    (4, b"ftypmsf1", "HEIF"),
    (4, b"ftypavif", "AVIF"),
)
_NOT_IMAGE_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a ZIP archive (or an Office document)"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"Rar!", "a RAR archive"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
)


def sniff_other(data: bytes) -> str | None:
    """Why a file in a format we do not decode is refused, named by its first bytes; None for the others."""
    for offset, magic, kind in _OTHER_MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return f"{kind} images are not accepted; send a {ACCEPTED_TEXT} (a screenshot, or export the image as PNG)."
    head = data[:1024].lstrip()
    if head[:4] == b"<svg" or (head[:5] == b"<?xml" and b"<svg" in head):
        return f"SVG images are not accepted; send a {ACCEPTED_TEXT} (export or screenshot it as PNG)."
    return None


def not_an_image(data: bytes) -> str:
    """What a file Pillow could not identify is instead, said so a customer knows what to send."""
    for magic, kind in _NOT_IMAGE_MAGIC:
        if data.startswith(magic):
            return f"this is not an image but {kind}; attach a {ACCEPTED_TEXT} screenshot instead."
    try:
        data[:4096].decode("utf-8")
        is_text = b"\x00" not in data[:4096]
    except UnicodeDecodeError:
        is_text = False
    if is_text:
        return (
            "this is text, not an image; paste it into the message or attach it as a .log/.txt file, "
            f"or attach a {ACCEPTED_TEXT} screenshot."
        )
    return f"this file is not a recognised image; attach a {ACCEPTED_TEXT} screenshot."
