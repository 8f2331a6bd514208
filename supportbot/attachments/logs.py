"""Customer logs: open a pasted or uploaded log as a stream with caps, checked to be text.

A log arrives as pasted text (``str``), an uploaded file (``Path``, maybe gzip) or raw
upload bytes. A gzip that ends early (a partial download) is read as far as it goes and
marked ``cut_off``; a corrupt one is refused. ``open_log`` scans it once without keeping extra copies: a 100 MB log is
never held in memory several times. Fencing a log as data is a text rule shared with the
offline engine (``supportbot.vocabulary.fence_log``); reading and reducing one live beside
this module (``analysis``, ``reduce``).
"""

from __future__ import annotations

import codecs
import gzip
import os
import tempfile
import weakref
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from supportbot.errors import LogRejected
from supportbot.routing.tokens import classify, estimate_chars

CHUNK_BYTES = 4 * 2**20
# Above this share of control characters a "log" is really a binary file.
MAX_CONTROL_RATIO = 0.01
# Invalid UTF-8 is read as latin-1 only when it is mostly ASCII (a legacy Windows log).
MAX_LATIN1_HIGH_RATIO = 0.05
_CONTROL = bytes(b for b in range(32) if b not in (9, 10, 13, 27)) + b"\x7f"  # ESC: ANSI colours are fine


@dataclass(frozen=True)
class LogLimits:
    """Caps applied before a log is accepted."""

    max_upload_bytes: int = 50 * 2**20
    max_expanded_bytes: int = 200 * 2**20


@dataclass
class LogFile:
    """A scanned log on disk or in memory; its text is not necessarily loaded."""

    filename: str
    size_bytes: int
    line_count: int
    char_count: int
    est_tokens: int
    encoding: str
    path: Path | None = None
    text: str | None = None
    kind: str = field(default="log", repr=False)
    # A .gz whose stream ended early (a partial download): these are the lines that arrived.
    cut_off: bool = False

    def read_text(self) -> str:
        """Load the full text (only for logs that fit the model)."""
        if self.text is not None:
            return self.text
        assert self.path is not None
        with open(self.path, encoding=self.encoding, newline="\n") as f:
            return f.read()

    def iter_lines(self) -> Iterator[str]:
        """Stream the lines (without line terminators) without loading the file."""
        for chunk in self.iter_chunks():
            for line in chunk.decode("utf-8").split("\n"):
                yield line.removesuffix("\r")

    def iter_chunks(self) -> Iterator[bytes]:
        """Stream UTF-8 chunks of whole lines (the final newline of each chunk removed)."""
        if self.text is not None:
            start = 0
            while start < len(self.text):
                end = self.text.find("\n", start + CHUNK_BYTES)
                end = len(self.text) if end == -1 else end
                chunk = self.text[start:end]
                yield (chunk[:-1] if end == len(self.text) and chunk.endswith("\n") else chunk).encode(
                    "utf-8", "surrogatepass"
                )
                start = end + 1
            return
        assert self.path is not None
        native = self.encoding in ("utf-8", "utf-8-sig")
        with open(self.path, "rb") if native else open(self.path, encoding=self.encoding, newline="\n") as f:
            if self.encoding == "utf-8-sig":
                f.read(3)
            rest: bytes = b""
            while block := f.read(CHUNK_BYTES):
                data = rest + (block if native else block.encode("utf-8"))
                cut = data.rfind(b"\n")
                if cut == -1:
                    rest = data
                    continue
                rest = data[cut + 1 :]
                yield data[:cut]
            if rest:
                yield rest


def open_log(source: str | Path | bytes, filename: str | None = None, limits: LogLimits = LogLimits()) -> LogFile:
    """Scan a pasted (str), uploaded (Path) or raw (bytes) log once and check it is usable text."""
    if isinstance(source, str):
        return _open_text(source, filename or "pasted_text.txt", limits)
    if isinstance(source, (bytes, bytearray, memoryview)):
        name = filename or "log.txt"
        _check_upload(name, len(source), limits)
        fd, tmp = tempfile.mkstemp(prefix="supportbot-log-", suffix=".txt")
        os.close(fd)
        try:
            cut_off = False
            if bytes(source[:2]) == b"\x1f\x8b":
                cut_off = _gunzip_to(name, gzip.GzipFile(fileobj=_BytesReader(source)), Path(tmp), limits)
                name = name.removesuffix(".gz")
            else:
                Path(tmp).write_bytes(source)
            log = _scan_file(Path(tmp), name, temporary=True)
            log.cut_off = cut_off
            return log
        except BaseException:
            os.unlink(tmp)
            raise
    path = Path(source)
    name = filename or path.name
    _check_upload(name, path.stat().st_size, limits)
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    if not gz:
        return _scan_file(path, name, temporary=False)
    fd, tmp = tempfile.mkstemp(prefix="supportbot-log-", suffix=".txt")
    os.close(fd)
    try:
        with gzip.open(path, "rb") as stream:
            cut_off = _gunzip_to(name, stream, Path(tmp), limits)
        log = _scan_file(Path(tmp), name.removesuffix(".gz"), temporary=True)
        log.cut_off = cut_off
        return log
    except BaseException:
        os.unlink(tmp)
        raise


class _BytesReader:
    """A read-only file over any bytes-like upload without copying it (BytesIO copies bytearrays)."""

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self._view = memoryview(data)
        self._pos = 0

    def read(self, n: int = -1) -> bytes:
        end = len(self._view) if n < 0 else min(len(self._view), self._pos + n)
        out = self._view[self._pos : end].tobytes()
        self._pos = end
        return out


def _check_upload(name: str, size: int, limits: LogLimits) -> None:
    if size == 0:
        raise LogRejected(name, "the log is empty; attach the file again or paste the relevant lines.")
    if size > limits.max_upload_bytes:
        raise LogRejected(
            name,
            f"the upload is {size / 2**20:.1f} MB, over the {limits.max_upload_bytes / 2**20:.0f} MB limit; "
            "compress it with gzip or attach only the time range around the problem.",
        )


def _gunzip_to(name: str, stream: gzip.GzipFile, dest: Path, limits: LogLimits) -> bool:
    """Decompress into ``dest``; True when the stream ends early (a partial download), in which
    case ``dest`` holds every complete line that arrived. A corrupt stream is refused."""
    total = 0
    last_newline = -1
    try:
        with open(dest, "wb") as out:
            while True:
                try:
                    # read1: one step of the decoder at a time, so a cut loses nothing already
                    # decompressed. At most one byte past the cap: a gzip bomb is stopped, never expanded.
                    block = stream.read1(min(CHUNK_BYTES, limits.max_expanded_bytes + 1 - total))
                except EOFError:
                    break  # the stream ends before its end marker: keep what arrived
                if not block:
                    return False
                if (at := block.rfind(b"\n")) >= 0:
                    last_newline = total + at
                total += len(block)
                if total > limits.max_expanded_bytes:
                    raise LogRejected(
                        name,
                        f"the compressed log expands beyond {limits.max_expanded_bytes / 2**20:.0f} MB; "
                        "attach only the time range around the problem.",
                    )
                out.write(block)
    except (OSError, zlib.error) as exc:  # a bad header, bad data or a checksum that does not match
        raise LogRejected(name, f"the gzip file is corrupt ({exc}); compress it again.") from exc
    if total == 0:
        raise LogRejected(
            name, "the gzip file ends before any of the log arrived (a partial download?); attach it again."
        )
    if last_newline >= 0:
        os.truncate(dest, last_newline + 1)  # a line cut in half is not a line
    return True


def _open_text(text: str, name: str, limits: LogLimits) -> LogFile:
    if len(text) > limits.max_expanded_bytes:
        raise LogRejected(name, "the pasted text is too long; attach the log as a .gz file instead.")
    data = text.encode("utf-8", "surrogatepass")
    if not data:
        raise LogRejected(name, "the log is empty; paste the relevant lines.")
    _check_binary(name, data, data.translate(None, _CONTROL))
    lines = text.count("\n") + (not text.endswith("\n"))
    kind = classify(text[:20_000])
    return LogFile(name, len(data), lines, len(text), estimate_chars(len(text), kind), "utf-8", None, text, kind)


def _check_binary(name: str, chunk: bytes, without_control: bytes) -> None:
    if b"\x00" in chunk:
        raise LogRejected(
            name, "this is a binary file, not a text log (it contains NUL bytes); attach the .log/.txt file itself."
        )
    if len(chunk) - len(without_control) > MAX_CONTROL_RATIO * len(chunk):
        raise LogRejected(name, "this looks like a binary file, not a text log; attach the .log/.txt file itself.")


def _scan_file(path: Path, name: str, temporary: bool) -> LogFile:
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:3] == codecs.BOM_UTF8:
        encoding = "utf-8-sig"
    elif head[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        encoding = "utf-16"
    else:
        encoding = "utf-8"
    try:
        log = _scan_as(path, name, encoding)
    except UnicodeDecodeError as exc:
        if encoding != "utf-8":
            raise LogRejected(
                name, f"the log is not valid {encoding} text ({exc.reason}); re-save it as UTF-8."
            ) from exc
        log = _scan_as(path, name, "latin-1")  # only reached for text that passed the binary checks
    if temporary:
        log.path = path
        weakref.finalize(log, _unlink_quietly, str(path))  # the decompressed copy lives as long as the LogFile
    return log


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass  # already removed by the user or a temp cleaner: nothing to do


def _scan_as(path: Path, name: str, encoding: str) -> LogFile:
    """One streaming pass: binary checks, decoding, line and character counts."""
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    size = lines = chars = high = 0
    ends_with_newline = True
    sample = ""
    with open(path, "rb") as f:
        while block := f.read(CHUNK_BYTES):
            size += len(block)
            text = decoder.decode(block)
            if encoding == "utf-16":
                as_bytes = text.encode("utf-8", "surrogatepass")
                _check_binary(name, as_bytes, as_bytes.translate(None, _CONTROL))
            else:
                _check_binary(name, block, block.translate(None, _CONTROL))
            if encoding == "latin-1":
                high += len(block) - len(block.translate(None, bytes(range(128, 256))))
            lines += text.count("\n")
            chars += len(text)
            if text:
                ends_with_newline = text.endswith("\n")
            if len(sample) < 20_000:
                sample += text[: 20_000 - len(sample)]
        chars += len(decoder.decode(b"", final=True))
    if size == 0:
        raise LogRejected(name, "the log is empty; attach the file again or paste the relevant lines.")
    if encoding == "latin-1" and high > MAX_LATIN1_HIGH_RATIO * size:
        raise LogRejected(name, "the log is neither UTF-8 nor UTF-16 text; re-save it as UTF-8 and attach it again.")
    kind = classify(sample)
    lines += not ends_with_newline
    return LogFile(name, size, lines, chars, estimate_chars(chars, kind), encoding, path, None, kind)
