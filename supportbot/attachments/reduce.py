"""Cutting a log to a token budget: collapse repeats, keep errors, traces, head and tail.

``reduce_log`` reads a ``LogFile`` (see ``supportbot.attachments.logs``) once, chunk by chunk, with
``_Scanner``: line keys are counted at C speed (``bytes.translate``) and only the lines
shown get a readable template. What counts as an error comes from ``supportbot.attachments.analysis``.
"""

from __future__ import annotations

import re
from collections import Counter, deque
from dataclasses import dataclass, field

from supportbot.attachments.analysis import LINE_CHARS, is_important, looks_like_access_log, template_of
from supportbot.attachments.logs import LogFile
from supportbot.routing.tokens import estimate_chars

HEAD_MAX = 5000
TAIL_MAX = 5000
CONTEXT_MAX = 3
BLOCK_MAX_LINES = 200
# Beyond this many distinct line keys (a log of unique lines) new keys are not counted.
MAX_KEYS = 200_000
MAX_BLOCKS = 20_000
# Grouping key: a line with its digits and lower-case hex letters deleted. Crude, but a
# C-speed bytes.translate; the readable template is computed only for the shown keys.
_KEY_DELETE = b"0123456789abcdef"
# Each literal costs a full scan of the lower-cased chunk, so keep the list short: a
# trace's own lines are reached from its first line ("...Exception", "Traceback").
_CANDIDATES = (b"err", b"warn", b"fatal", b"crit", b"severe", b"emerg", b"alert", b"exception", b"traceback", b"panic")
_HTTP_CANDIDATES = (b'" 5', b'" 4')  # access-log status codes, searched only in access logs
# (context lines, lines per block, characters per line), most generous first.
_ERROR_LEVELS = ((3, 60, 1000), (2, 30, 500), (1, 15, 300), (0, 8, 200), (0, 4, 160))
# A line that goes on the error block above it (a trace frame, "Caused by:", an indented line).
_CONTINUATION = re.compile(
    r"^(?:\s+at\s|\s+\.\.\. ?\d+ |Caused by:|Suppressed:|\s+File \"|\s{2,}\S|\t\S|Traceback \("
    r"|[\w.$]+(?:Exception|Error|Exit|Interrupt|Throwable)\b(?::|$))"
)


@dataclass(frozen=True)
class ReducedLog:
    """A log cut to a token budget, with what was kept and dropped."""

    text: str
    header: str
    source_lines: int
    kept_lines: int
    templates_collapsed: int
    dropped_lines: int
    est_tokens: int


@dataclass
class _Block:
    line_no: int
    before: list[str]
    body: list[str]
    body_lines: int = 1
    keys: list[bytes] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    count: int = 1
    last_line_no: int = 0


def _dec(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").removesuffix("\r")


class _Scanner:
    """One streaming pass collecting head, tail, line-key counts and error blocks."""

    def __init__(self) -> None:
        self.lines_seen = 0
        self.head: list[str] = []
        self.tail: deque[bytes] = deque(maxlen=TAIL_MAX)
        self.counts: Counter[bytes | None] = Counter()
        self.reps: dict[bytes | None, bytes] = {}
        self.blocks: dict[bytes, _Block] = {}
        self.error_templates: Counter[str] = Counter()
        self.block_lines = 0
        self.open: _Block | None = None
        self.awaiting: list[_Block] = []
        self.prev: list[bytes] = []
        self.keys: list[bytes | None] = []
        self.http: bool | None = None
        self.block_templates: dict[bytes, str] = {}

    def feed(self, chunk: bytes) -> None:
        lines = chunk.split(b"\n")
        keys: list[bytes | None] = list(chunk.translate(None, _KEY_DELETE).split(b"\n"))
        self.keys = keys
        if self.http is None:
            self.http = looks_like_access_log(_dec(chunk[:20_000]))
        for block in self.awaiting:
            block.after += [_dec(x) for x in lines[: CONTEXT_MAX - len(block.after)]]
        self.awaiting = [b for b in self.awaiting if len(b.after) < CONTEXT_MAX]
        in_block: list[int] = []
        pos = self._extend(lines, 0, in_block) if self.open else 0
        for idx in self._candidates(chunk):
            if idx < pos or not is_important(line := _dec(lines[idx])):
                continue
            before = (self.prev + lines[:idx])[-CONTEXT_MAX:] if idx < CONTEXT_MAX else lines[idx - CONTEXT_MAX : idx]
            self.open = _Block(self.lines_seen + idx + 1, [_dec(x) for x in before], [line], keys=[keys[idx] or b""])
            in_block.append(idx)
            pos = self._extend(lines, idx + 1, in_block)
        if len(self.head) < HEAD_MAX:
            self.head += [_dec(x) for x in lines[: HEAD_MAX - len(self.head)]]
        self.tail.extend(lines[-TAIL_MAX:])
        for idx in in_block:
            keys[idx] = None  # block lines are shown in the error section, not as templates
        if len(self.counts) < MAX_KEYS:
            self.counts.update(keys)
            firsts = dict(zip(reversed(keys), reversed(lines), strict=True))  # C-speed: first line per key
            for key in firsts.keys() - self.reps.keys():
                self.reps[key] = firsts[key]
        else:
            self.counts.update(k for k in keys if k in self.counts)
        self.prev = lines[-CONTEXT_MAX:]
        self.lines_seen += len(lines)

    def finish(self) -> None:
        if self.open:
            self._close([], 0)
        self.counts.pop(None, None)

    def _candidates(self, chunk: bytes) -> list[int]:
        low = chunk.lower()
        found: set[int] = set()
        for literal in _CANDIDATES + (_HTTP_CANDIDATES if self.http else ()):
            i = low.find(literal)
            while i != -1:
                found.add(i)
                # One hit makes its line a candidate: go on from the next line, so a 5 MB line
                # full of "error" costs one find, not a million.
                eol = low.find(b"\n", i)
                i = -1 if eol == -1 else low.find(literal, eol + 1)
        out: list[int] = []
        idx = prev = 0
        for p in sorted(found):
            idx += chunk.count(b"\n", prev, p)
            prev = p
            if not out or out[-1] != idx:
                out.append(idx)
        return out

    def _extend(self, lines: list[bytes], start: int, in_block: list[int]) -> int:
        block = self.open
        assert block is not None
        for j in range(start, len(lines)):
            line = _dec(lines[j])
            if not _CONTINUATION.match(line[:LINE_CHARS]):
                self._close(lines, j)
                return j
            if len(block.body) < BLOCK_MAX_LINES:
                block.body.append(line)
                block.keys.append(self.keys[j] or b"")
            block.body_lines += 1
            in_block.append(j)
        return len(lines)  # the block may go on in the next chunk

    def _close(self, lines: list[bytes], j: int) -> None:
        block = self.open
        assert block is not None
        self.open = None
        # Blocks are grouped by their lines' keys (digits and hex deleted), which is C-speed;
        # the readable template of a block's first line is computed once per group.
        sig = b"\n".join(block.keys)
        head_template = self.block_templates.get(sig) or template_of(block.body[0])
        if len(self.block_templates) < MAX_BLOCKS:
            self.block_templates[sig] = head_template
        self.error_templates[head_template] += 1
        self.block_lines += block.body_lines
        known = self.blocks.get(sig)
        if known:
            known.count += 1
            known.last_line_no = block.line_no
        elif len(self.blocks) < MAX_BLOCKS:
            block.last_line_no = block.line_no
            block.after = [_dec(x) for x in lines[j : j + CONTEXT_MAX]]
            if len(block.after) < CONTEXT_MAX:
                self.awaiting.append(block)
            self.blocks[sig] = block


def _clip(line: str, limit: int) -> str:
    return line if len(line) <= limit else f"{line[:limit]}…[+{len(line) - limit} chars]"


def _render_block(b: _Block, ctx: int, max_lines: int, max_chars: int) -> list[str]:
    where = f"line {b.line_no:,}" + (f" (x{b.count:,}, last at line {b.last_line_no:,})" if b.count > 1 else "")
    body = [_clip(x, max_chars) for x in b.body[:max_lines]]
    if b.body_lines > len(body):
        body.append(f"    ... [+{b.body_lines - len(body):,} more lines]")
    before = [_clip(x, max_chars) for x in b.before[len(b.before) - ctx :]] if ctx else []
    return [f"-- {where} --", *before, *body, *[_clip(x, max_chars) for x in b.after[:ctx]]]


def _size(lines: list[str]) -> int:
    return sum(len(x) + 1 for x in lines)


def _error_section(scan: _Scanner, allowance: int) -> tuple[list[str], int, str]:
    """Every distinct error block if it fits, else the first and last ones plus top templates."""
    blocks = list(scan.blocks.values())
    if not blocks:
        return [], 0, ""
    total = sum(b.count for b in blocks)
    for ctx, max_lines, max_chars in _ERROR_LEVELS:
        out = [f"== errors, warnings and stack traces: {len(blocks):,} distinct, {total:,} occurrences =="]
        used = _size(out)
        for b in blocks:
            lines = _render_block(b, ctx, max_lines, max_chars)
            used += _size(lines)
            if used > allowance:
                break  # this level is too generous: try the next one
            out += lines
        if used <= allowance:
            shown = sum(min(len(b.body), max_lines) + min(ctx, len(b.before)) + min(ctx, len(b.after)) for b in blocks)
            return out, shown, ""
    ctx, max_lines, max_chars = _ERROR_LEVELS[-1]
    for k in (10, 5, 3, 2, 1, 0):
        k = min(k, (len(blocks) + 1) // 2)
        top = scan.error_templates.most_common(20 if k >= 3 else 5)
        picked = blocks[:k] + blocks[max(k, len(blocks) - k) :]
        out = [f"== {len(top)} most frequent error templates ==", *[f"[x{n:,}] {_clip(t, 200)}" for t, n in top]]
        out.append(f"== first {k} and last {k} of {len(blocks):,} distinct error blocks ==")
        for b in picked:
            out += _render_block(b, ctx, max_lines, max_chars)
        if _size(out) <= allowance or k == 0:
            note = (
                f"; errors alone exceed the budget: showing the first {k} and last {k} of {len(blocks):,} "
                f"distinct error blocks and the {len(top)} most frequent error templates"
            )
            return out, sum(min(len(b.body), max_lines) for b in picked), note
    raise AssertionError("unreachable")


def _template_section(scan: _Scanner, allowance: int) -> tuple[list[str], int]:
    merged: Counter[str] = Counter()
    for key, n in scan.counts.most_common(2000):
        if n < 2:
            break
        merged[_clip(template_of(_dec(scan.reps[key])), 300)] += n
    out = ["== most frequent lines as templates ([xCOUNT] template) =="]
    used = _size(out)
    collapsed = 0
    for template, n in merged.most_common():
        line = f"[x{n:,}] {template}"
        used += len(line) + 1
        if used > allowance:
            break
        out.append(line)
        collapsed += n
    return (out, collapsed) if len(out) > 1 else ([], 0)


def reduce_log(log: LogFile, budget_tokens: int) -> ReducedLog:
    """Cut a log to ``budget_tokens``: collapse repeats, keep errors, traces, head and tail."""
    kind = log.kind
    # Largest character count whose estimate stays within the budget.
    limit = max(0, int((budget_tokens - 1) * {"prose": 4.0, "code": 3.0}.get(kind, 2.0)))
    n = log.line_count
    complete = f'[complete log "{log.filename}": {n:,} lines, nothing dropped]'
    if log.char_count + len(complete) + 1 <= limit:
        text = f"{complete}\n{log.read_text()}"
        return ReducedLog(text, complete, n, n, 0, 0, estimate_chars(len(text), kind))

    scan = _Scanner()
    for chunk in log.iter_chunks():
        scan.feed(chunk)
    scan.finish()

    avail = max(0, limit - 400)  # room for the header line
    errors, error_lines, note = _error_section(scan, int(avail * 0.7))
    avail -= _size(errors)
    templates, collapsed = _template_section(scan, avail // 2)
    avail -= _size(templates)
    head: list[str] = []
    used = 60  # the two section titles
    for line in scan.head:
        line = _clip(line, 1000)
        used += len(line) + 1
        if used > avail // 2:
            break
        head.append(line)
    used = _size(head) + 60
    tail: list[str] = []
    for offset, raw in enumerate(reversed(scan.tail)):
        line = _clip(_dec(raw), 1000)
        used += len(line) + 1
        if n - offset <= len(head) or used > avail:
            break
        tail.append(line)
    tail.reverse()

    repeats = sum((b.count - 1) * b.body_lines for b in scan.blocks.values())
    verbatim = len(head) + len(tail) + error_lines
    dropped = max(0, n - verbatim - collapsed - repeats)
    template_count = max(0, len(templates) - 1)
    kept = verbatim + template_count
    header = (
        f'[reduced log "{log.filename}": {n:,} lines -> {kept:,} kept; {collapsed + repeats:,} repeated lines '
        f"collapsed into {template_count:,} templates and {len(scan.blocks):,} error blocks; "
        f"{dropped:,} lines dropped from the middle{note}]"
    )
    body: list[str] = []
    if head:
        body += [f"== first {len(head):,} lines ==", *head]
    body += templates + errors
    if tail:
        body += [f"== last {len(tail):,} lines ==", *tail]
    text = "\n".join([header, *body])
    if len(text) > limit:  # a safety net: the allowances above should already fit
        marker = "\n[... cut to fit the token budget]"
        text = text[: max(0, limit - len(marker))] + marker if limit > len(marker) else text[:limit]
    return ReducedLog(text, header, n, kept, collapsed + repeats, dropped, estimate_chars(len(text), kind))
