"""Reading a log line: its level, timestamp and template; and a one-pass summary of a log.

``level_of``, ``timestamp_of`` and ``template_of`` understand plain, syslog, Apache,
JSON (pino, logstash) and Java/Python-trace logs. ``analyse`` counts levels and error
templates over any stream of lines and ``render_analysis`` turns the result into
markdown. ``supportbot.attachments.reduce`` uses the same line rules to decide what it keeps.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

# Each line is read through its first LINE_CHARS characters: level, timestamp and the start of
# the message sit there, and a 5 MB single-line log then costs one slice, not a 5 MB search.
LINE_CHARS = 4000
_TS_PATTERNS = (
    re.compile(r"\[(\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\]"),  # Apache access
    re.compile(r"\[(\w{3} \w{3} [ \d]\d \d{2}:\d{2}:\d{2}(?:\.\d+)? \d{4})\]"),  # Apache error
    re.compile(r"(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?)"),  # ISO 8601
    re.compile(r"^(\w{3} [ \d]\d \d{2}:\d{2}:\d{2})"),  # syslog
)
_MASKS = (
    (re.compile("|".join(p.pattern for p in _TS_PATTERNS)), "<TS>"),
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"), "<UUID>"),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"), "<IP>"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b|\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}\b"), "<HEX>"),
    # Quoted values (JSON keys stay). Possessive bodies never give back, and a quote after a
    # backslash never opens a string: ``\"`` repeated was a quadratic search from every quote.
    (re.compile(r'"(?<![\w"\\]")(?:[^"\\\n]++|\\.)*+"(?!\s*:)|\'(?<!\w\')[^\'\n]*+\'(?!\w)'), "<STR>"),
    (re.compile(r"(?<![A-Za-z_<])[-+]?\d+(?:\.\d+)?"), "<N>"),
)
_LEVEL_NAMES = {
    "FATAL": "FATAL", "CRITICAL": "FATAL", "CRIT": "FATAL", "EMERG": "FATAL", "ALERT": "FATAL", "PANIC": "FATAL",
    "SEVERE": "ERROR", "ERROR": "ERROR", "ERR": "ERROR",
    "WARNING": "WARN", "WARN": "WARN",
    "NOTICE": "INFO", "INFO": "INFO",
    "DEBUG": "DEBUG", "FINE": "DEBUG",
    "TRACE": "TRACE", "FINER": "TRACE", "FINEST": "TRACE",
}  # fmt: skip
_NAMES = "|".join(sorted(_LEVEL_NAMES, key=len, reverse=True))
_LEVEL_UPPER = re.compile(rf"(?<![\w.-])({_NAMES})(?![\w-])")
# Lower-case levels only in a level position ("[error]", "[core:warn]", "level=info", "error:").
# Matched against the lower-cased line: (?i) would make the engine try every case at every position.
_LEVEL_LOWER = re.compile(
    rf"(?:\b(?:level|lvl|severity)=\"?|[\[:<])({_NAMES.lower()})(?=[\]>\s\"]|$)|\b({_NAMES.lower()})(?=:\s)"
)
_HTTP_STATUS = re.compile(r'"[A-Z]+ \S+ HTTP/[\d.]+" (\d{3}) ')
_JSON_LEVEL = re.compile(r'"(?:level|severity|lvl|levelname|log\.level)"\s*:\s*"?(\w+)"?')
_JSON_TS = re.compile(r'"(?:@timestamp|timestamp|time|ts)"\s*:\s*"?([^",}]{1,64})"?')
_PINO_LEVELS = {"10": "TRACE", "20": "DEBUG", "30": "INFO", "40": "WARN", "50": "ERROR", "60": "FATAL"}
_TRACE_START = re.compile(
    r"^(?:Traceback \(|Caused by:|Suppressed:|During handling of|The above exception|panic:|goroutine \d+ \[|\s+at\s"
    r"|[\w.$]+(?:Exception|Error|Throwable)(?::|$))"
)


def template_of(line: str) -> str:
    """Mask the variable parts (timestamps, ids, ips, numbers, quoted values) of a line's first ``LINE_CHARS``."""
    line = line[:LINE_CHARS]
    for pattern, repl in _MASKS:
        line = pattern.sub(repl, line)
    return line


def level_of(line: str) -> str | None:
    """The log level of a line (ERROR, WARN, INFO, DEBUG, TRACE, FATAL), or None."""
    line = line[:LINE_CHARS]
    if line.lstrip().startswith("{"):
        m = _JSON_LEVEL.search(line)
        if m:
            value = m.group(1)
            return _PINO_LEVELS.get(value) or _LEVEL_NAMES.get(value.upper())
    m = _HTTP_STATUS.search(line)
    if m:
        status = m.group(1)
        return "ERROR" if status[0] == "5" else "WARN" if status[0] == "4" else "INFO"
    m = _LEVEL_UPPER.search(line)
    if m:
        return _LEVEL_NAMES[m.group(1)]
    m = _LEVEL_LOWER.search(line.lower())
    if m:
        return _LEVEL_NAMES[(m.group(1) or m.group(2)).upper()]
    return None


def timestamp_of(line: str) -> str | None:
    """The timestamp of a line as written in it (ISO, syslog, Apache, JSON ts/time/timestamp)."""
    line = line[:LINE_CHARS]
    if line.lstrip().startswith("{"):
        m = _JSON_TS.search(line)
        if m:
            return m.group(1).strip()
    for pattern in _TS_PATTERNS:
        m = pattern.search(line, 0, 120)
        if m:
            return m.group(1)
    return None


def is_important(line: str) -> bool:
    """True for lines reduce_log always keeps: errors, warnings and stack-trace starts."""
    return level_of(line) in ("ERROR", "FATAL", "WARN") or bool(_TRACE_START.match(line[:LINE_CHARS]))


def looks_like_access_log(text: str) -> bool:
    """True when ``text`` holds an access-log request line with its status code (Apache, nginx)."""
    return bool(_HTTP_STATUS.search(text))


# --- analysis -----------------------------------------------------------------------


@dataclass
class LogAnalysis:
    """Streaming summary of a log: levels, top error templates, first and last error."""

    line_count: int
    levels: dict[str, int]
    top_error_templates: list[tuple[str, int]]
    first_error: tuple[str | None, str] | None
    last_error: tuple[str | None, str] | None


def analyse(lines: Iterable[str], top: int = 5) -> LogAnalysis:
    """Count levels and error templates and find the first and last error, in one pass."""
    levels: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    first: tuple[str | None, str] | None = None
    last: tuple[str | None, str] | None = None
    count = 0
    for line in lines:
        count += 1
        level = level_of(line)
        if level is None:
            continue
        levels[level] += 1
        if level in ("ERROR", "FATAL"):
            errors[template_of(line)] += 1
            last = (timestamp_of(line), line)
            first = first or last
    order = ("FATAL", "ERROR", "WARN", "INFO", "DEBUG", "TRACE")
    return LogAnalysis(count, {k: levels[k] for k in order if levels[k]}, errors.most_common(top), first, last)


def render_analysis(a: LogAnalysis) -> str:
    """A short markdown summary of an analysis."""
    out = [f"**Log summary:** {a.line_count:,} lines"]
    if a.levels:
        out.append("- Levels: " + ", ".join(f"{k} {v:,}" for k, v in a.levels.items()))
    if a.top_error_templates:
        out.append("- Most frequent errors:")
        out += [f"  - x{n:,} `{_inline(t)}`" for t, n in a.top_error_templates]
    for label, err in (("First error", a.first_error), ("Last error", a.last_error)):
        if err:
            out.append(f"- {label} ({err[0] or 'no timestamp'}): `{_inline(err[1])}`")
    if not a.first_error:
        out.append("- No ERROR or FATAL lines.")
    return "\n".join(out)


def _inline(text: str, limit: int = 200) -> str:
    text = text.replace("`", "'").strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"
