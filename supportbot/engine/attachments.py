"""What the offline engine can honestly say about images and pasted logs."""

from __future__ import annotations

import base64
import binascii
import io
import re
import struct

from PIL import Image, UnidentifiedImageError

from supportbot.engine.logreader import advice_for, read_log, render
from supportbot.vocabulary import find_fenced_logs

# Far below Pillow's own bomb limit: we only read the header, but never decode huge images.
MAX_PIXELS = 60_000_000
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, UnidentifiedImageError)


def describe_image(url: str, language: str = "en") -> str:
    """Format, pixel size and byte size of a data-URL image, and what a vision model would add."""
    es = language == "es"
    if not url.startswith("data:"):
        return (
            "Recibí un enlace a una imagen; sin conexión no puedo descargarlo."
            if es
            else "I received a link to an image; offline, I cannot download it."
        )
    try:
        header, _, payload = url.partition(",")
        data = base64.b64decode(payload, validate=False) if ";base64" in header else payload.encode()
        with Image.open(io.BytesIO(data)) as im:
            fmt, (width, height) = im.format or "unknown", im.size
    except (binascii.Error, *_DECODE_ERRORS):
        return (
            "La imagen adjunta no se pudo leer (¿archivo dañado?)."
            if es
            else "The attached image could not be read (is the file damaged?)."
        )
    size = _human_bytes(len(data))
    screenshot = fmt in ("PNG", "WEBP") and width >= 600 and height >= 300 and width * height <= MAX_PIXELS
    if es:
        kind = "parece una captura de pantalla" if screenshot else "es una imagen"
        return (
            f"Recibí una imagen {fmt} de {width}×{height} píxeles ({size}); {kind}. "
            "Sin conexión no puedo leer su contenido: un modelo de visión en vivo leería el texto y "
            "los mensajes de error que muestra."
        )
    kind = "it looks like a screenshot" if screenshot else "it is a picture"
    return (
        f"I received a {fmt} image of {width}×{height} pixels ({size}); {kind}. "
        "Offline I cannot read what it shows: a live vision model would read its text and any "
        "error messages in it."
    )


def _human_bytes(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n / (1024 * 1024):.1f} MB"


def find_logs(text: str) -> list[tuple[str, str]]:
    """The fenced logs (made by supportbot.vocabulary.fence_log) in a message."""
    return find_fenced_logs(text)


def analyse_log(filename: str, text: str, cut_off_after: int | None = None, language: str = "en") -> str:
    """A deterministic reading of one pasted log: counts, the main error, when and how often, a next step;
    ``cut_off_after`` (lines) when the file ended early."""
    return render(filename, read_log(text), cut_off_after=cut_off_after, language=language)


ANALYSIS_SUFFIX = " (analysis)"
_CODE_SPAN = re.compile(r"`([^`\n]{1,300})`")


def recall_log(filename: str, text: str, language: str = "en") -> str:
    """The answer to a question about a log sent in an earlier turn: read again when the request carries
    it whole, else from the analysis that stands in for it (its most frequent error first)."""
    if not filename.endswith(ANALYSIS_SUFFIX):
        return analyse_log(filename, text, None, language)
    name = filename.removesuffix(ANALYSIS_SUFFIX)
    es = language == "es"
    lead = (
        f"Según el análisis del registro que enviaste antes (**{name}**):"
        if es
        else f"From the analysis of the log you sent earlier (**{name}**):"
    )
    found = _CODE_SPAN.search(text)
    advice = advice_for(found.group(1), language) if found else None
    out = [lead, text.strip()]
    if advice:
        out.append(f"**{'Siguiente paso sugerido' if es else 'Suggestion (next step)'}:** {advice}.")
    return "\n\n".join(out)
