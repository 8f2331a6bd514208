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
from datetime import datetime

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
# (words in the error, the next step in English, in Spanish)
ADVICE = (
    (
        ("timed out", "timeout", "deadline"),
        "an upstream service is slow or unreachable: check its status and "
        "latency around that time, and the client's timeout and retry settings",
        "un servicio del que depende va lento o no responde: revisa su estado y su latencia a esa hora, y el "
        "tiempo de espera y los reintentos del cliente",
    ),
    (
        ("refused", "unreachable", "reset by peer"),
        "a dependency is down or unreachable: check that it is running",
        "una dependencia está caída o inaccesible: comprueba que está en marcha",
    ),
    (
        ("out of memory", "oom", "heap"),
        "the process runs out of memory: check its limits and what grew",
        "el proceso se queda sin memoria: revisa sus límites y qué creció",
    ),
    (
        ("no space", "disk full"),
        "the disk is full: free space or rotate logs",
        "el disco está lleno: libera espacio o rota los registros",
    ),
    (
        ("401", "403", "unauthorized", "forbidden", "permission denied"),
        "credentials or permissions are wrong: check keys, tokens and roles",
        "las credenciales o los permisos no son correctos: revisa claves, tokens y roles",
    ),
    (
        ("certificate", "ssl", "tls"),
        "a TLS certificate problem: check expiry and the trust store",
        "un problema de certificado TLS: revisa la caducidad y el almacén de confianza",
    ),
    (
        ("declined", "insufficient funds"),
        "these are card declines from the issuer, not a fault in the service",
        "son rechazos de tarjeta del banco emisor, no un fallo del servicio",
    ),
)
DEFAULT_ADVICE = (
    "look at what changed just before it first appeared (a deploy, a config change, a dependency)",
    "mira qué cambió justo antes de que apareciera (un despliegue, un cambio de configuración, una dependencia)",
)
# The answer's words; English unless the customer writes Spanish.
WORDS = {
    "en": {
        "summary": "Log summary",
        "lines": "lines",
        "no_errors": "There are no ERROR or FATAL lines in it.",
        "no_errors_next": "capture a log while reproducing the problem, or raise the log level to DEBUG",
        "what": "What fails",
        "of": "{count} of the {total} errors",
        "since": "Since",
        "last": "last at {when}",
        "often": "How often",
        "times": "{count:,} times in {span}, about {rate}",
        "once": "once",
        "others": "Other errors",
        "range": "Errors run from {first} to {last}.",
        "next": "Suggestion (next step)",
        "unknown": "an unknown time",
        "minute": "{n} a minute",
        "hour": "{n} an hour",
        "cut": "⚠️ The file was cut off after {lines:,} lines: it ends early, as a partial download does. What "
        "follows covers only the lines that arrived; the end of the log, often where the error is, is missing. "
        "Please send the complete file.",
    },
    "es": {
        "summary": "Resumen del registro",
        "lines": "líneas",
        "no_errors": "No hay ninguna línea ERROR ni FATAL.",
        "no_errors_next": "guarda un registro mientras reproduces el problema, o sube el nivel de registro a DEBUG",
        "what": "Qué falla",
        "of": "{count} de los {total} errores",
        "since": "Desde",
        "last": "el último a las {when}",
        "often": "Con qué frecuencia",
        "times": "{count:,} veces en {span}, unas {rate}",
        "once": "una vez",
        "others": "Otros errores",
        "range": "Los errores van de {first} a {last}.",
        "next": "Siguiente paso sugerido",
        "unknown": "una hora desconocida",
        "minute": "{n} por minuto",
        "hour": "{n} por hora",
        "cut": "⚠️ El archivo se cortó tras {lines:,} líneas: termina antes de tiempo, como una descarga "
        "incompleta. Lo que sigue cubre solo las líneas que llegaron; falta el final del registro, donde suele "
        "estar el error. Envía el archivo completo, por favor.",
    },
}


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


def advice_for(message: str, language: str = "en") -> str:
    """One next step for an error message."""
    lowered = message.lower()
    es = language == "es"
    for words, advice, advice_es in ADVICE:
        if any(w in lowered for w in words):
            return advice_es if es else advice
    return DEFAULT_ADVICE[1 if es else 0]


def _moment(stamp: str | None) -> datetime | None:
    """An ISO timestamp of a log line as a datetime (None for other forms: syslog has no year)."""
    if not stamp or not stamp[:4].isdigit():
        return None
    try:
        return datetime.fromisoformat(stamp.replace(",", ".").replace("Z", "+00:00").replace(" ", "T", 1))
    except ValueError:
        return None


def _span(seconds: float) -> str:
    if seconds < 90:
        n = round(seconds)
        return f"{n} s"
    if seconds < 90 * 60:
        n = round(seconds / 60)
        return f"{n} min"
    n = round(seconds / 3600, 1)
    return f"{n:g} h"


def how_often(count: int, first: str | None, last: str | None, language: str = "en") -> str | None:
    """'162 times in 4 min, about 45 a minute': how often an error came, from its first and last timestamps."""
    w = WORDS.get(language, WORDS["en"])
    start, end = _moment(first), _moment(last)
    if start is None or end is None or count < 2:
        return None
    seconds = (end - start).total_seconds()
    if seconds <= 0:
        return None
    per_minute = count / (seconds / 60)
    rate = (
        w["minute"].format(n=f"{per_minute:.0f}" if per_minute >= 10 else f"{per_minute:.1f}".rstrip("0").rstrip("."))
        if per_minute >= 1
        else w["hour"].format(n=f"{per_minute * 60:.0f}")
    )
    return w["times"].format(count=count, span=_span(seconds), rate=rate)


def render(
    filename: str,
    reading: LogReading,
    question: str = "",
    *,
    cut_off_after: int | None = None,
    language: str = "en",
) -> str:
    """The answer about one log: what fails, since when, how often, and a next step; first of all, when the
    file ended early, that it was cut off and after how many lines. English, or Spanish for ``language="es"``."""
    w = WORDS.get(language, WORDS["en"])
    levels = ", ".join(f"{lvl} {reading.levels[lvl]:,}" for lvl in LEVELS if reading.levels[lvl])
    head = f"**{filename}** — {w['summary']}: {reading.lines:,} {w['lines']}"
    out = [head + (f" ({levels})" if levels else "") + "."]
    if cut_off_after is not None:
        out.append(w["cut"].format(lines=cut_off_after))
    if not reading.errors:
        out.append(w["no_errors"])
        out.append(f"**{w['next']}:** {w['no_errors_next']}.")
        return "\n\n".join(out)
    (main, count), *others = reading.errors.most_common(4)
    total = sum(reading.errors.values())
    first, last = reading.first_seen[main], reading.last_seen[main]
    out.append(f"**{w['what']}:** `{main}` — {w['of'].format(count=f'{count:,}', total=f'{total:,}')}.")
    out.append(f"**{w['since']}:** {first or w['unknown']} ({w['last'].format(when=last or w['unknown'])}).")
    if (often := how_often(count, first, last, language)) is not None:
        out.append(f"**{w['often']}:** {often}.")
    if others:
        out.append(f"{w['others']}: " + "; ".join(f"`{m}` ×{n:,}" for m, n in others) + ".")
    out.append(w["range"].format(first=reading.first_error, last=reading.last_error))
    out.append(f"**{w['next']}:** {advice_for(main, language)}.")
    return "\n\n".join(out)
