"""Screenshots and photos as compact, metadata-free data URLs for vision models.

An upload is recognised by its content (never by its name), checked before it
is decoded (size, dimensions against a pixel cap that fits the machine: decompression
bombs), decoded at most one per core at once, verified, oriented by its
EXIF tag, stripped of every metadata chunk, downscaled to the model's long edge
and re-encoded: screenshots as a palette PNG when that is small (text stays
crisp), otherwise the smaller of WebP and JPEG at quality ~85.
"""

from __future__ import annotations

import base64
import ctypes
import ctypes.util
import heapq
import io
import os
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from supportbot.attachments.sniff import not_an_image, sniff_other
from supportbot.config import USABLE_CORES
from supportbot.errors import ImageRejected

ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
DEFAULT_MAX_BYTES = 10 * 2**20
DEFAULT_MAX_EDGE = 1792


def _machine_memory() -> int:
    """Bytes of memory this process may use: the container's limit when there is one (a Space)."""
    limits = []
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            limits.append(int(Path(path).read_text().strip()))
        except (OSError, ValueError):
            continue  # no such cgroup file, or "max" (no limit)
    try:
        limits.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (OSError, ValueError, AttributeError):
        limits.append(4 * 2**30)  # not a POSIX system: assume a small machine
    return min(limits)


# A decode holds the whole bitmap in memory, ~10 bytes a pixel at its peak (RGBA, its
# premultiplied copy for the resize, the alpha channel). Decodes run at most one per core at
# once, process-wide, and an eighth of the machine's memory (256 MB to 2 GB) is shared between
# them: that sets the pixel cap. On a 2-core, 16 GB Space: 2 decodes of at most 50 MP.
DECODES_AT_ONCE = USABLE_CORES
BYTES_PER_PIXEL = 10
DECODE_MEMORY = min(2 * 2**30, max(256 * 2**20, _machine_memory() // 8))
DEFAULT_MAX_PIXELS = min(50_000_000, DECODE_MEMORY // (DECODES_AT_ONCE * BYTES_PER_PIXEL))
# Process-wide on purpose: memory is the process's, whichever visitor or runner decodes.
_DECODE_SLOTS = threading.BoundedSemaphore(DECODES_AT_ONCE)
# Images at least this large hand their freed memory back to the system after a decode.
_TRIM_PIXELS = 4_000_000
# Pixels sampled to tell a UI screenshot (a few flat colours) from a photo: the share its 16 commonest
# colours cover is known to within ~1% from 4096 (counting 16384, a photo's all-distinct colours took 15 ms).
FLAT_SAMPLE_PIXELS = 4_096
# Pixels sampled for a flat image's palette: enough that every colour covering ~0.05% of it is seen
# (a UI's colours are few and large; four times as many samples gave the same error, in twice the time).
PALETTE_SAMPLE_PIXELS = 65_536
# The payload we aim for; a 12 MP screenshot should come out well under it.
TARGET_BYTES = 600 * 1024
LOSSY_QUALITIES = (85, 70, 55)
# Images at least this large are resized in two halves on two threads (a photo libjpeg decoded at
# half scale is ~3 MP: its last filter pass took ~40 ms on one).
SPLIT_PIXELS = 2_000_000
# After the box reduce, a ratio under 2 is left: see _resize_rgb.
RESAMPLE = Image.BILINEAR
Z_RLE = 3  # zlib's strategy number, as Pillow's PNG encoder takes it (compress_type)
# WebP method 1 is ~3x faster than the default 4 and only a few % larger.
WEBP_METHOD = 1

# Phone cameras write multi-picture JPEGs, which Pillow reports as MPO.
_FORMAT_ALIASES = {"MPO": "JPEG"}
_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
# Pillow's decoders raise a wide, undocumented set of errors on corrupt input.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error, KeyError)


@dataclass(frozen=True)
class PreparedImage:
    """An image re-encoded for a chat request, with what was done to it."""

    filename: str
    mime: str
    source_format: str
    width: int
    height: int
    source_width: int  # as displayed, i.e. after EXIF orientation
    source_height: int
    payload_bytes: int
    data_url: str

    def content_part(self) -> dict:
        """The OpenAI chat content part carrying this image."""
        return {"type": "image_url", "image_url": {"url": self.data_url}}


def prepare_image(
    source: bytes | str | Path,
    filename: str | None = None,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_edge: int = DEFAULT_MAX_EDGE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> PreparedImage:
    """Check, orient, strip, downscale and re-encode an uploaded image.

    At most ``DECODES_AT_ONCE`` images are decoded at once in the process; the others wait."""
    data, name = _read_source(source, filename, max_bytes)
    with _DECODE_SLOTS:
        prepared, pixels = _prepare(data, name, max_edge, max_pixels)
    if pixels >= _TRIM_PIXELS:
        _TRIMMER.soon()
    return prepared


def _prepare(data: bytes, name: str, max_edge: int, max_pixels: int) -> tuple[PreparedImage, int]:
    im = _open_checked(data, name, max_pixels)
    source_format = _FORMAT_ALIASES.get(im.format or "", im.format or "")
    source_w, source_h = im.size
    scale = min(1.0, max_edge / max(source_w, source_h))
    target = (max(1, round(source_w * scale)), max(1, round(source_h * scale)))
    if scale < 1.0 and source_format == "JPEG":
        # Let libjpeg decode at 1/2, 1/4 or 1/8 scale: far less work than a full decode.
        im.draft(im.mode, target)
    try:
        im.load()
    except Image.DecompressionBombError as exc:
        raise ImageRejected(name, f"{exc}. Send a smaller screenshot.") from exc
    except _DECODE_ERRORS as exc:
        raise ImageRejected(
            name, f"the image is truncated or corrupt ({exc}); save it again and re-attach it."
        ) from exc

    flat = _looks_flat(im)
    im = _resize(_normalise_mode(im), target)
    # Orientation commutes with a uniform downscale, so rotate the small image.
    try:
        ImageOps.exif_transpose(im, in_place=True)
    except _DECODE_ERRORS:
        pass  # a malformed EXIF block: the pixels are fine, keep them as stored
    if im.size != target and im.size == target[::-1]:
        source_w, source_h = source_h, source_w  # report the source as the customer sees it
    im.info = {}  # drop EXIF, XMP, ICC, text chunks: nothing but pixels leaves here
    fmt, payload = _encode(im, flat)
    prepared = PreparedImage(
        filename=name,
        mime=_MIME[fmt],
        source_format=source_format,
        width=im.width,
        height=im.height,
        source_width=source_w,
        source_height=source_h,
        payload_bytes=len(payload),
        data_url=f"data:{_MIME[fmt]};base64,{base64.b64encode(payload).decode('ascii')}",
    )
    return prepared, source_w * source_h


def _load_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None  # not glibc: nothing to call


_MALLOC_TRIM = _load_trim()


def _release_freed_memory() -> None:
    """Hand freed heap memory back to the system. glibc keeps what a large decode freed in its
    per-thread arenas (four 7000x7000 PNGs left ~230 MB resident for good); malloc_trim returns it."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


class _Trimmer:
    """Runs ``_release_freed_memory`` on a thread of its own after each large decode: handing ~100 MB
    back to the system takes ~70 ms, which the customer waiting for this image need not wait for.
    One trim at a time; decodes that finish during it get one more pass after it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = False
        self._again = False

    def soon(self) -> None:
        with self._lock:
            if self._running:
                self._again = True
                return
            self._running = True
        threading.Thread(target=self._run, name="supportbot-trim", daemon=True).start()

    def _run(self) -> None:
        while True:
            _release_freed_memory()
            with self._lock:
                if not self._again:
                    self._running = False
                    return
                self._again = False


_TRIMMER = _Trimmer()


def _read_source(source: bytes | str | Path, filename: str | None, max_bytes: int) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        name = filename or "image"
        size = len(source)
        data = bytes(source) if size <= max_bytes else b""
    else:
        path = Path(source)
        name = filename or path.name
        size = path.stat().st_size  # checked before reading, let alone decoding
        data = path.read_bytes() if 0 < size <= max_bytes else b""
    if size == 0:
        raise ImageRejected(name, "the file is empty; take the screenshot again and re-attach it.")
    if size > max_bytes:
        raise ImageRejected(
            name,
            f"the file is {size / 2**20:.1f} MB, over the {max_bytes / 2**20:.0f} MB limit; "
            "crop it or save it as JPEG and re-attach it.",
        )
    return data, name


def _open_checked(data: bytes, name: str, max_pixels: int) -> Image.Image:
    other = sniff_other(data)
    if other:
        raise ImageRejected(name, other)
    try:
        im = Image.open(io.BytesIO(data), formats=["PNG", "JPEG", "WEBP", "GIF", "BMP"])
        _check_pixels(im, name, max_pixels)
        im.verify()  # checks chunk CRCs and structure without decoding pixels
        # verify() leaves the object unusable: open again to decode.
        im = Image.open(io.BytesIO(data), formats=["PNG", "JPEG", "WEBP", "GIF", "BMP"])
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own global guard fires first for extreme sizes (or as a warning
        # turned into an error under -W error); report it like ours.
        raise ImageRejected(name, f"{exc}. Send a smaller screenshot.") from exc
    except UnidentifiedImageError as exc:
        raise ImageRejected(name, not_an_image(data)) from exc
    except _DECODE_ERRORS as exc:
        raise ImageRejected(
            name, f"the image is truncated or corrupt ({exc}); save it again and re-attach it."
        ) from exc
    return im


def _check_pixels(im: Image.Image, name: str, max_pixels: int) -> None:
    w, h = im.size
    if w * h > max_pixels:
        raise ImageRejected(
            name,
            f"the image claims {w}x{h} = {w * h / 1e6:.0f} megapixels, over the "
            f"{max_pixels / 1e6:.0f} MP limit (a possible decompression bomb); "
            "send a normal screenshot or resize it first.",
        )


def _looks_flat(im: Image.Image) -> bool:
    """True for UI-like images: a few colours cover most of the picture."""
    step = max(1, int((im.width * im.height / FLAT_SAMPLE_PIXELS) ** 0.5))
    # NEAREST keeps exact source colours (a filtered sample would invent blends).
    sample = im if step == 1 else im.resize((max(1, im.width // step), max(1, im.height // step)), Image.NEAREST)
    if sample.mode not in ("RGB", "RGBA", "L", "P"):
        return False
    colors = sample.getcolors(sample.width * sample.height)
    if not colors:
        return False
    return sum(heapq.nlargest(16, (count for count, _ in colors))) >= 0.5 * sample.width * sample.height


def _has_alpha(im: Image.Image) -> bool:
    return im.getchannel("A").getextrema()[0] < 255


def _normalise_mode(im: Image.Image) -> Image.Image:
    """Bring any decoded mode to L, RGB or RGBA; drop alpha that is fully opaque."""
    if im.mode in ("L", "RGB"):
        return im
    if im.mode in ("I;16", "I;16L", "I;16B"):
        return im.point(lambda v: v * (1 / 256)).convert("L")  # 16-bit grey: keep the contrast
    if im.mode == "1" or im.mode in ("I", "F"):
        return im.convert("L")
    if im.mode == "RGBA" or im.mode in ("P", "PA", "LA", "La", "RGBa") or "transparency" in im.info:
        rgba = im if im.mode == "RGBA" else im.convert("RGBA")
        return rgba if _has_alpha(rgba) else rgba.convert("RGB")
    return im.convert("RGB")  # CMYK, YCbCr, LAB, ...


def _resize(im: Image.Image, target: tuple[int, int]) -> Image.Image:
    if im.size[0] <= target[0] and im.size[1] <= target[1]:
        return im
    if im.mode == "RGBA":
        # Premultiply so colours under transparent pixels do not bleed into edges.
        return _resize_rgb(im.convert("RGBa"), target).convert("RGBA")
    return _resize_rgb(im, target)


def _resize_rgb(im: Image.Image, target: tuple[int, int]) -> Image.Image:
    """A box reduce by the integer part of the ratio, then a bilinear (triangle) filter for the rest,
    in two halves on two threads."""
    # reducing_gap=1.0: the box reduce averages whole pixel blocks, which keeps text legible; what is
    # left is a ratio under 2, where the triangle filter matches LANCZOS by eye at half its time.
    w, h = im.size
    tw, th = target
    if w * h < SPLIT_PIXELS or th < 2:
        return im.resize(target, RESAMPLE, reducing_gap=1.0)
    # Pillow releases the GIL while resampling, and a resize with a source box reads
    # the filter's support from outside the box, so two halves join without a seam.
    mid = th // 2
    split_y = mid * h / th
    halves: list[Image.Image] = []
    worker = threading.Thread(
        target=lambda: halves.append(im.resize((tw, mid), RESAMPLE, box=(0, 0, w, split_y), reducing_gap=1.0))
    )
    worker.start()
    bottom = im.resize((tw, th - mid), RESAMPLE, box=(0, split_y, w, h), reducing_gap=1.0)
    worker.join()
    out = Image.new(im.mode, target)
    out.info = im.info.copy()  # as Pillow's own resize does: the EXIF orientation is applied after this
    out.paste(halves[0], (0, 0))
    out.paste(bottom, (0, mid))
    return out


def _to_palette(im: Image.Image) -> Image.Image:
    """256 colours for a flat image: the palette is built from an exact-colour sample, then every
    pixel takes its nearest entry. ~5x faster than building it from every pixel, and for a UI
    (a few flat colours cover most of it) the sample holds the same colours."""
    if im.mode != "RGB":  # Pillow maps only RGB (and L) onto a given palette
        return im.quantize(256, method=Image.Quantize.FASTOCTREE)
    step = max(1, int((im.width * im.height / PALETTE_SAMPLE_PIXELS) ** 0.5))
    # NEAREST keeps exact source colours (a filtered sample would invent blends).
    sample = im if step == 1 else im.resize((max(1, im.width // step), max(1, im.height // step)), Image.NEAREST)
    return im.quantize(palette=sample.quantize(256, method=Image.Quantize.FASTOCTREE), dither=Image.Dither.NONE)


def _save(im: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    im.save(out, fmt, **options)
    return out.getvalue()


def _encode(im: Image.Image, flat: bool) -> tuple[str, bytes]:
    """Pick the output format: palette PNG for small screenshots, else the smaller lossy one."""
    if flat:
        pal = im if im.mode == "L" else _to_palette(im)
        # zlib's run-length strategy suits a UI's flat runs: ~15% faster than the default on a 12 MP
        # screenshot (and smaller there; 10-20% larger on small ones). Over the target, the default.
        png = _save(pal, "PNG", compress_level=3, compress_type=Z_RLE)
        if len(png) > TARGET_BYTES:
            png = _save(pal, "PNG", compress_level=3)
        if len(png) <= TARGET_BYTES:
            return "PNG", png
    if not flat and im.mode != "RGBA":
        # A photo: the first JPEG quality under the target is good enough. WebP is ~25% smaller but
        # ~10x slower to encode, and the model's token cost does not depend on the bytes.
        for quality in LOSSY_QUALITIES:
            jpeg = _save(im, "JPEG", quality=quality, subsampling=2)
            if len(jpeg) <= TARGET_BYTES:
                return "JPEG", jpeg
    best: tuple[str, bytes] | None = None
    for quality in LOSSY_QUALITIES:
        candidates: list[tuple[str, bytes]] = [("WEBP", _save(im, "WEBP", quality=quality, method=WEBP_METHOD))]
        if im.mode != "RGBA":  # JPEG would lose the transparency
            # 4:4:4 chroma keeps coloured UI text sharp; photos take the usual 4:2:0.
            candidates.append(("JPEG", _save(im, "JPEG", quality=quality, subsampling=0 if flat else 2)))
        best = min(candidates, key=lambda c: len(c[1]))
        if len(best[1]) <= TARGET_BYTES:
            break
    assert best is not None
    return best
