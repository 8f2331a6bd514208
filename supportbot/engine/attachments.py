"""What the offline engine can honestly say about images and pasted logs."""

from __future__ import annotations

import base64
import binascii
import io
import struct

from PIL import Image, UnidentifiedImageError

from supportbot.logs import LogAnalysis, analyse, find_fenced_logs, render_analysis

# Far below Pillow's own bomb limit: we only read the header, but never decode huge images.
MAX_PIXELS = 60_000_000
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, UnidentifiedImageError)


def describe_image(url: str, language: str = "en") -> str:
    """Format, pixel size and byte size of a data-URL image, and what a vision model would add."""
    es = language == "es"
    if not url.startswith("data:"):
        return ("Recibí un enlace a una imagen; sin conexión no puedo descargarlo." if es else
                "I received a link to an image; offline, I cannot download it.")
    try:
        header, _, payload = url.partition(",")
        data = base64.b64decode(payload, validate=False) if ";base64" in header else payload.encode()
        with Image.open(io.BytesIO(data)) as im:
            fmt, (width, height) = im.format or "unknown", im.size
    except (binascii.Error, *_DECODE_ERRORS):
        return ("La imagen adjunta no se pudo leer (¿archivo dañado?)." if es else
                "The attached image could not be read (is the file damaged?).")
    size = _human_bytes(len(data))
    screenshot = fmt in ("PNG", "WEBP") and width >= 600 and height >= 300 and width * height <= MAX_PIXELS
    if es:
        kind = "parece una captura de pantalla" if screenshot else "es una imagen"
        return (f"Recibí una imagen {fmt} de {width}×{height} píxeles ({size}); {kind}. "
                "Sin conexión no puedo leer su contenido: un modelo de visión en vivo leería el texto y "
                "los mensajes de error que muestra.")
    kind = "it looks like a screenshot" if screenshot else "it is a picture"
    return (f"I received a {fmt} image of {width}×{height} pixels ({size}); {kind}. "
            "Offline I cannot read what it shows: a live vision model would read its text and any "
            "error messages in it.")


def _human_bytes(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n / (1024 * 1024):.1f} MB"


def find_logs(text: str) -> list[tuple[str, str]]:
    """The fenced logs (made by supportbot.logs.fence_log) in a message."""
    return find_fenced_logs(text)


# Words in the most frequent error -> where to look first. Checked in order.
HINTS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("timeout", "timed out", "deadline"), "an upstream service or the network is slow: check its latency and "
                                           "the timeout settings"),
    (("connection refused", "econnrefused", "unreachable", "connection reset"), "a dependency is down or "
                                                                                "unreachable: check it is running"),
    (("out of memory", "oom", "memoryerror", "heap"), "the process runs out of memory: check its limits and usage"),
    (("no space", "disk full", "enospc"), "the disk is full: free space or rotate logs"),
    (("permission denied", "eacces", "forbidden", "401", "403", "unauthorized"),
     "credentials or permissions are wrong: check keys, tokens and file modes"),
    (("ssl", "certificate", "tls"), "a TLS certificate problem: check expiry and the trust store"),
)


def suggestion(analysis: LogAnalysis) -> str:
    """One deterministic next step derived from the analysis."""
    if not analysis.top_error_templates:
        return ("**Suggestion:** no errors here; capture a log while reproducing the problem, "
                "or raise the log level to DEBUG.")
    template, count = analysis.top_error_templates[0]
    lowered = template.lower()
    for words, advice in HINTS:
        if any(w in lowered for w in words):
            return f"**Suggestion:** the most frequent error ({count}×) suggests {advice}."
    when = analysis.first_error[0] if analysis.first_error and analysis.first_error[0] else "its first occurrence"
    return (f"**Suggestion:** start with the most frequent error ({count}×) and look at what changed just "
            f"before {when}.")


def analyse_log(filename: str, text: str) -> str:
    """A deterministic analysis of one pasted log: counts, levels, top errors and a next step."""
    analysis = analyse(text.splitlines())
    return f"**{filename}**\n\n{render_analysis(analysis)}\n\n{suggestion(analysis)}"
