"""Attachments a scenario makes at run time instead of shipping them (``generate = ["log:3000000"]``).

Kinds:

* ``log:TOKENS`` — a realistic service log of about TOKENS tokens (~2 characters a token),
  INFO lines with a WARN every 31st and an ERROR every 97th line;
* ``text-as-png`` — a plain text file named ``note.png`` (bad input: text posing as an image).
"""

from __future__ import annotations

from pathlib import Path

MAX_LOG_TOKENS = 20_000_000  # ~40 MB: far past every context window, still quick to write
KINDS = ("log:TOKENS", "text-as-png")


def check(spec: str) -> str:
    """``spec`` if it names a known generator; ValueError saying what is allowed otherwise."""
    kind, _, arg = spec.partition(":")
    if kind == "log":
        if not arg.isdigit() or not 1 <= int(arg) <= MAX_LOG_TOKENS:
            raise ValueError(f"'log:TOKENS' needs a whole number of tokens from 1 to {MAX_LOG_TOKENS:,} (got {spec!r})")
        return spec
    if spec == "text-as-png":
        return spec
    raise ValueError(f"unknown generator {spec!r}; use one of: {', '.join(KINDS)}")


def make(spec: str, folder: Path) -> Path:
    """Write the generated attachment into ``folder`` and return its path (blocking: call in a thread)."""
    kind, _, arg = check(spec).partition(":")
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "log":
        return write_log(folder / f"service-{int(arg)}-tokens.log", int(arg))
    path = folder / "note.png"
    path.write_text("Order #48291 never arrived. This is a text note, not a screenshot.\n", encoding="utf-8")
    return path


def write_log(path: Path, target_tokens: int) -> Path:
    """A service log of about ``target_tokens`` tokens, written in blocks to keep memory flat."""
    size, i, block = 0, 0, []
    with path.open("w", encoding="utf-8") as f:
        while size < target_tokens * 2:
            level = "ERROR" if i % 97 == 0 else "WARN" if i % 31 == 0 else "INFO"
            line = (
                f"2026-11-27T10:{(i // 60) % 60:02d}:{i % 60:02d}.{i % 1000:03d}Z {level} [worker-{i % 7}] "
                f"req-{i * 7919 % 100000:05x} handled /api/orders/{40000 + i % 9000} in {i % 500}ms\n"
            )
            block.append(line)
            size += len(line)
            i += 1
            if len(block) == 10_000:
                f.write("".join(block))
                block.clear()
        f.write("".join(block))
    return path
