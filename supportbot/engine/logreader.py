"""The engine's own reading of a pasted log: levels, the main error, when it started, a next step.

Independent of the product's log analysis (``supportbot.attachments.analysis``), as a real
model would be: the engine only sees the fenced text in a request. Each line is read through
its first 2,000 characters, and every pattern has bounded repeats, so a 5 MB line costs one
slice, not a backtracking search.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

LINE_CHARS = 2000
LEVELS = ("FATAL", "ERROR", "WARN", "INFO", "DEBUG", "TRACE")
_ALIASES = {"CRITICAL": "FATAL", "SEVERE": "ERROR", "ERR": "ERROR", "WARNING": "WARN"}
_LEVEL = re.compile(r"(?<![\w.-])(FATAL|CRITICAL|SEVERE|ERROR|ERR|WARNING|WARN|INFO|DEBUG|TRACE)(?![\w-])")
_JSON_LEVEL = re.compile(r'"(?:level|severity|lvl)"\s{0,3}:\s{0,3}"(\w{1,10})"', re.I)
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?Z?|\w{3} [ \d]\d \d{2}:\d{2}:\d{2}")
_MASK = re.compile(r"\b[0-9a-f]{6,64}\b|\d{1,20}(?:\.\d{1,20})?", re.I)
_PREFIX = re.compile(
    r"^.{0,80}?(?:FATAL|CRITICAL|SEVERE|ERROR|ERR)\b:?\s{0,3}(?:\[[^\]]{0,60}\]:?\s{0,3})?(?:[\w.]{0,20}-[0-9a-f]{6,40}\s)?"
)
ADVICE = (
    (
        ("timed out", "timeout", "deadline"),
        "an upstream service is slow or unreachable: check its status and "
        "latency around that time, and the client's timeout and retry settings",
    ),
    (("refused", "unreachable", "reset by peer"), "a dependency is down or unreachable: check that it is running"),
    (("out of memory", "oom", "heap"), "the process runs out of memory: check its limits and what grew"),
    (("no space", "disk full"), "the disk is full: free space or rotate logs"),
    (
        ("401", "403", "unauthorized", "forbidden", "permission denied"),
        "credentials or permissions are wrong: check keys, tokens and roles",
    ),
    (("certificate", "ssl", "tls"), "a TLS certificate problem: check expiry and the trust store"),
    (("declined", "insufficient funds"), "these are card declines from the issuer, not a fault in the service"),
)


@dataclass
class LogReading:
    """What the engine read in one log."""

    lines: int = 0
    levels: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    first_seen: dict[str, str | None] = field(default_factory=dict)
    last_seen: dict[str, str | None] = field(default_factory=dict)
    first_error: str | None = None
    last_error: str | None = None


def _level(line: str) -> str | None:
    found = _JSON_LEVEL.search(line) if line.lstrip().startswith("{") else None
    word = (found.group(1) if found else None) or (m.group(1) if (m := _LEVEL.search(line)) else None)
    if word is None:
        return None
    word = _ALIASES.get(word.upper(), word.upper())
    return word if word in LEVELS else None


def _message(line: str) -> str:
    """The error without its timestamp, level, thread and ids: what repeats across lines."""
    text = _PREFIX.sub("", line, count=1).strip()
    return _MASK.sub("<n>", text)[:200]


def read_log(text: str) -> LogReading:
    """Count levels and errors of a log in one pass."""
    reading = LogReading()
    for raw in text.removesuffix("\n").split("\n"):
        reading.lines += 1
        line = raw[:LINE_CHARS]
        level = _level(line)
        if level is None:
            continue
        reading.levels[level] += 1
        if level in ("ERROR", "FATAL"):
            when = m.group(0) if (m := _TIME.search(line, 0, 120)) else None
            message = _message(line)
            reading.errors[message] += 1
            reading.first_seen.setdefault(message, when)
            reading.last_seen[message] = when
            reading.first_error = reading.first_error or when or "(no timestamp)"
            reading.last_error = when or reading.last_error
    return reading


def advice_for(message: str) -> str:
    """One next step for an error message."""
    lowered = message.lower()
    for words, advice in ADVICE:
        if any(w in lowered for w in words):
            return advice
    return "look at what changed just before it first appeared (a deploy, a config change, a dependency)"


def render(filename: str, reading: LogReading, question: str = "", *, cut_off_after: int | None = None) -> str:
    """The answer about one log: summary, the main error with when and how often, a next step; first of
    all, when the file ended early, that it was cut off and after how many lines."""
    levels = ", ".join(f"{lvl} {reading.levels[lvl]:,}" for lvl in LEVELS if reading.levels[lvl])
    out = [f"**{filename}** — Log summary: {reading.lines:,} lines" + (f" ({levels})" if levels else "") + "."]
    if cut_off_after is not None:
        out.append(
            f"⚠️ The file was cut off after {cut_off_after:,} lines: it ends early, as a partial download does. "
            "What follows covers only the lines that arrived; the end of the log, often where the error is, is "
            "missing. Please send the complete file."
        )
    if not reading.errors:
        out.append("There are no ERROR or FATAL lines in it.")
        out.append("**Suggestion:** capture a log while reproducing the problem, or raise the log level to DEBUG.")
        return "\n\n".join(out)
    (main, count), *others = reading.errors.most_common(4)
    total = sum(reading.errors.values())
    out.append(
        f"The main error is `{main}`: {count:,} of the {total:,} errors, first at "
        f"{reading.first_seen[main] or 'an unknown time'}, last at {reading.last_seen[main] or 'an unknown time'}."
    )
    if others:
        out.append("Other errors: " + "; ".join(f"`{m}` ×{n:,}" for m, n in others) + ".")
    out.append(f"Errors run from {reading.first_error} to {reading.last_error}.")
    out.append(f"**Suggestion:** {advice_for(main)}.")
    return "\n\n".join(out)
