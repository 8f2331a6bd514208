"""prepare_image: recognised by content, checked before decoding, oriented, stripped, small."""

from __future__ import annotations

import base64
import io
import random
import struct
import zipfile
import zlib

import pytest
from PIL import Image, ImageDraw, PngImagePlugin

from supportbot.attachments.images import PreparedImage, prepare_image
from supportbot.errors import ImageRejected


def encode(im: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **options)
    return buf.getvalue()


def screenshot(w: int = 640, h: int = 400) -> Image.Image:
    im = Image.new("RGB", (w, h), (245, 245, 245))
    d = ImageDraw.Draw(im)
    d.rectangle([0, 0, w, 40], fill=(30, 40, 60))
    for y in range(60, h - 20, 24):
        d.text((20, y), "Order #1234 could not be shipped: address invalid", fill=(20, 20, 20))
    return im


def photo(w: int = 300, h: int = 200, seed: int = 1) -> Image.Image:
    rnd = random.Random(seed)
    return Image.frombytes("RGB", (w, h), bytes(rnd.randrange(256) for _ in range(w * h * 3)))


def decode(prepared: PreparedImage) -> Image.Image:
    header, b64 = prepared.data_url.split(",", 1)
    assert header == f"data:{prepared.mime};base64"
    payload = base64.b64decode(b64)
    assert len(payload) == prepared.payload_bytes
    im = Image.open(io.BytesIO(payload))
    im.load()
    assert Image.MIME[im.format] == prepared.mime
    return im


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [("PNG", "PNG"), ("JPEG", "JPEG"), ("WEBP", "WEBP"), ("BMP", "BMP"), ("GIF", "GIF")],
)
def test_each_accepted_format_is_prepared(fmt: str, expected: str) -> None:
    src = encode(screenshot(), fmt)
    p = prepare_image(src, f"shot.{fmt.lower()}")
    assert p.source_format == expected
    assert (p.width, p.height) == (p.source_width, p.source_height) == (640, 400)
    out = decode(p)
    assert out.size == (640, 400)
    assert p.content_part() == {"type": "image_url", "image_url": {"url": p.data_url}}


def test_gif_uses_the_first_frame() -> None:
    frames = [Image.new("RGB", (64, 64), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    out = decode(prepare_image(buf.getvalue(), "anim.gif")).convert("RGB")
    r, g, b = out.getpixel((32, 32))
    assert r > 200 and b < 50


def test_format_is_recognised_by_content_not_name() -> None:
    p = prepare_image(encode(screenshot(), "PNG"), "holiday.jpg")
    assert p.source_format == "PNG"
    assert p.filename == "holiday.jpg"


def test_path_sources_are_accepted(tmp_path) -> None:
    path = tmp_path / "shot.png"
    path.write_bytes(encode(screenshot(), "PNG"))
    assert prepare_image(path).filename == "shot.png"
    assert prepare_image(str(path)).source_format == "PNG"


def zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.txt", "hello")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "empty"),
        (b"2026-11-27 ERROR something failed\n" * 20, "text, not an image"),
        (zip_bytes(), "ZIP archive"),
        (encode(screenshot(), "TIFF"), "TIFF images are not accepted; send a PNG, JPEG, WebP, GIF or BMP"),
        (encode(screenshot(), "ICO"), "ICO images are not accepted"),
        (encode(screenshot(), "PNG")[:3000], "truncated or corrupt"),
        (b"\x89PNG\r\n\x1a\n" + b"garbage" * 50, "not a recognised image|truncated or corrupt"),
    ],
)
def test_unusable_files_are_rejected_with_advice(data: bytes, match: str) -> None:
    with pytest.raises(ImageRejected, match=match) as info:
        prepare_image(data, "upload.png")
    assert info.value.filename == "upload.png"


def test_truncated_jpeg_is_rejected() -> None:
    data = encode(photo(400, 300), "JPEG", quality=90)
    with pytest.raises(ImageRejected, match="truncated or corrupt"):
        prepare_image(data[: len(data) // 2], "cut.jpg")


def test_oversize_file_is_rejected_before_decoding(tmp_path) -> None:
    data = encode(photo(), "PNG")
    with pytest.raises(ImageRejected, match="over the"):
        prepare_image(data, "big.png", max_bytes=len(data) - 1)
    path = tmp_path / "big.png"
    path.write_bytes(data)
    with pytest.raises(ImageRejected, match="over the"):
        prepare_image(path, max_bytes=1000)


def png_claiming(width: int, height: int) -> bytes:
    """A tiny real PNG whose IHDR (with a valid CRC) claims other dimensions."""
    data = bytearray(encode(Image.new("RGB", (8, 8), "white"), "PNG"))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("size", [(8_000, 8_000), (12_000, 10_000), (100_000, 100_000)])
def test_decompression_bombs_are_rejected_without_allocating(size: tuple[int, int]) -> None:
    # 64 MP trips our own cap, 120 MP Pillow's warning (an error here), 10 GP Pillow's error: all become ours.
    with pytest.raises(ImageRejected, match="decompression bomb"):
        prepare_image(png_claiming(*size), "bomb.png")


def test_pixel_cap_is_a_parameter() -> None:
    with pytest.raises(ImageRejected, match="megapixels"):
        prepare_image(encode(screenshot(), "PNG"), max_pixels=100_000)


def test_exif_orientation_is_applied_and_metadata_stripped() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    exif[0x010F] = "PhoneMaker"
    src = encode(photo(300, 100), "JPEG", exif=exif, quality=90)
    p = prepare_image(src, "phone.jpg")
    assert (p.source_width, p.source_height) == (p.width, p.height) == (100, 300)
    out = decode(p)
    assert out.size == (100, 300)
    assert not out.getexif()
    assert "exif" not in out.info and "icc_profile" not in out.info


def test_png_text_and_icc_chunks_are_stripped() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "customer@example.com")
    src = encode(screenshot(), "PNG", pnginfo=info, icc_profile=b"\0" * 128)
    out = decode(prepare_image(src, "shot.png"))
    assert "Author" not in out.info and "icc_profile" not in out.info


def test_downscales_long_edge_and_keeps_aspect() -> None:
    p = prepare_image(encode(screenshot(4000, 1000), "PNG"), "wide.png")
    assert (p.width, p.height) == (1792, 448)
    assert decode(p).size == (1792, 448)
    small = prepare_image(encode(photo(1200, 1600), "JPEG"), "tall.jpg", max_edge=896)
    assert (small.width, small.height) == (672, 896)
    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 90° counter-clockwise on display
    rotated = prepare_image(encode(photo(3000, 1000), "JPEG", exif=exif), "r.jpg")
    assert (rotated.source_width, rotated.source_height) == (1000, 3000)
    assert (rotated.width, rotated.height) == (597, 1792)


def test_a_photo_large_enough_to_be_resized_in_halves_is_still_turned_upright() -> None:
    # 6 MP, stored landscape, EXIF orientation 6 (turn 90° clockwise): a camera held upright. libjpeg
    # cannot decode it at half scale (1500 px < 1792), so the full image is resized in two halves.
    w, h = 3000, 2000
    im = Image.new("RGB", (w, h), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, w // 2, h))  # the stored left half is red: upright, it is the top
    exif = Image.Exif()
    exif[0x0112] = 6
    p = prepare_image(encode(im, "JPEG", exif=exif), "camera.jpg")
    assert (p.source_width, p.source_height) == (h, w) and (p.width, p.height) == (1195, 1792)
    upright = decode(p).convert("RGB")
    top, bottom = upright.getpixel((600, 100)), upright.getpixel((600, 1692))
    assert top[0] > 200 and top[2] < 50 and bottom[2] > 200 and bottom[0] < 50


def test_large_split_resize_has_no_seam() -> None:
    # Above 2 MP the resize runs in two halves; a flat image must stay flat across the join.
    im = Image.new("RGB", (3000, 2000), (200, 100, 50))
    out = decode(prepare_image(encode(im, "PNG"), "flat.png")).convert("RGB")
    assert out.size == (1792, 1195)
    assert out.getextrema() == ((200, 200), (100, 100), (50, 50))


def test_screenshots_become_png_and_photos_lossy() -> None:
    assert prepare_image(encode(screenshot(), "BMP"), "s.bmp").mime == "image/png"
    assert prepare_image(encode(photo(), "PNG"), "p.png").mime in ("image/jpeg", "image/webp")


def test_transparency_is_kept_and_opaque_alpha_dropped() -> None:
    im = Image.new("RGBA", (200, 100), (0, 0, 0, 0))
    ImageDraw.Draw(im).rectangle([50, 25, 150, 75], fill=(255, 0, 0, 255))
    out = decode(prepare_image(encode(im, "PNG"), "t.png")).convert("RGBA")
    assert out.getpixel((5, 5))[3] == 0 and out.getpixel((100, 50)) == (255, 0, 0, 255)
    opaque = decode(prepare_image(encode(screenshot().convert("RGBA"), "PNG"), "o.png"))
    assert "A" not in opaque.getbands() and "transparency" not in opaque.info


def test_palette_and_grey_images_are_accepted() -> None:
    assert decode(prepare_image(encode(screenshot().convert("P"), "PNG"), "p.png")).size == (640, 400)
    assert decode(prepare_image(encode(photo().convert("L"), "JPEG"), "g.jpg")).size == (300, 200)
    grey16 = Image.new("I;16", (50, 50), 40_000)
    out = decode(prepare_image(encode(grey16, "PNG"), "g16.png")).convert("L")
    assert 150 <= out.getpixel((10, 10)) <= 160  # scaled to 8 bits, not clipped to white
