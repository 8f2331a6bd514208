"""Run scenarios: each in fresh Services (a temporary data directory), turn by turn through
``conversation.TurnRunner``, the same path the UI takes; then check each turn's expectations.

The engine is whatever the settings say: the offline engine with no key, the live service with
``OXLO_API_KEY``, a cassette with ``SUPPORTBOT_ENGINE=replay``. ``model`` forces one model for
every turn (then route expectations are skipped: the route was chosen, not decided).
"""

from __future__ import annotations

import asyncio
import copy
import json
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from supportbot.config import ASSETS_DIR, Settings, redact
from supportbot.conversation import TurnRunner
from supportbot.errors import SupportbotError
from supportbot.events import Done, ErrorEvent, Event
from supportbot.limits import NO_LIMIT, Budget
from supportbot.qa import generate
from supportbot.qa.scenario import Expect, Scenario
from supportbot.services import Services
from supportbot.session import Session

Status = Literal["pass", "fail", "skip"]


@dataclass(frozen=True)
class Check:
    """One expectation of one step (turn), and how it went."""

    step: int
    expectation: str
    status: Status
    detail: str = ""


@dataclass
class ScenarioResult:
    """Every check of one scenario."""

    name: str
    source: str
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        """True when no check failed."""
        return not any(c.status == "fail" for c in self.checks)


@dataclass
class _Outcome:
    """What one turn did, read back from the session and the events."""

    refused: str | None = None
    unchanged: bool = True
    events: list[Event] = field(default_factory=list)
    route: dict[str, Any] = field(default_factory=dict)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    usage: list[dict[str, Any]] = field(default_factory=list)
    answer: str = ""
    ticket: dict[str, Any] = field(default_factory=dict)

    @property
    def errors(self) -> list[str]:
        return [e.message for e in self.events if isinstance(e, ErrorEvent)]

    @property
    def ok(self) -> bool:
        done = [e for e in self.events if isinstance(e, Done)]
        return bool(done) and done[-1].ok and not self.errors


async def run_scenario(
    scenario: Scenario,
    *,
    model: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    dotenv_path: str | Path | None = ".env",
    settings: Settings | None = None,
    budget: Budget = NO_LIMIT,
) -> ScenarioResult:
    """Play ``scenario`` in fresh Services and check every expectation; ConfigError for bad settings.

    ``settings`` (an app's own) replaces loading them; ``budget`` is what each model request draws on
    (the UI passes the visitor's, so a Space's spending bounds hold for scenarios too)."""
    result = ScenarioResult(scenario.name, scenario.source)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="supportbot-qa-") as tmp:
        # A fresh SQLite database every time, even where SUPPORTBOT_DATABASE_URL names a shared one;
        # no approval pauses (a scenario's tools run as scripted) and no visitor budget, whatever a
        # Space's defaults would say: a scenario checks the agent, not the hosting bounds.
        fresh = {
            "data_dir": Path(tmp) / "data",
            "database_url": None,
            "confirm_tools": "none",
            "visitor_requests_per_day": 0,
            "requests_per_day": 0,
        }
        if settings is not None:  # the app's settings, already valid; its own database stays out of it
            settings = Settings.model_validate({**settings.model_dump(), **fresh, "turn_workers": 0})
        else:
            settings = Settings.load({**(overrides or {}), **fresh}, environ=environ, dotenv_path=dotenv_path)
        services = await asyncio.to_thread(Services.create, settings)  # seeding a database: off the loop
        try:
            result.checks = await _play(services, scenario, model, Path(tmp), budget)
        finally:
            services.close()
    result.seconds = time.perf_counter() - started
    return result


async def _play(
    services: Services, scenario: Scenario, model: str | None, tmp: Path, budget: Budget = NO_LIMIT
) -> list[Check]:
    runner, session, checks = TurnRunner(services), Session(), []
    for step, turn in enumerate(scenario.turns, 1):
        chosen = model or turn.model
        if chosen and chosen not in services.catalog:
            known = ", ".join(services.catalog.ids())
            return [*checks, Check(step, f"model {chosen} is in the catalog", "fail", f"known: {known}")]
        files = [ASSETS_DIR / a for a in turn.attachments]
        files += [await asyncio.to_thread(generate.make, g, tmp / f"turn-{step}") for g in turn.generate]
        try:
            outcome = await play_turn(runner, session, turn.text, files, chosen, budget)
        except Exception as exc:  # a crash is a failed step, reported with the rest, not a stopped run
            # Redacted: an exception may quote a request, and the table is shown to visitors.
            key = services.settings.api_key.get_secret_value() if services.settings.api_key else None
            said = redact(f"{type(exc).__name__}: {exc}", key)[:300]
            return [*checks, Check(step, "turn runs", "fail", said)]
        checks += check_turn(step, turn.expect, outcome, forced=model is not None)
    return checks


async def play_turn(
    runner: TurnRunner, session: Session, text: str, files: list[Path], model: str | None, budget: Budget = NO_LIMIT
) -> _Outcome:
    """Run one turn and gather what it did; a refused turn (bad input) is an outcome, not an error."""
    before = (json.dumps(session.to_json(), default=str), copy.deepcopy(session.history))
    counts = len(session.routes), len(session.tool_calls), len(session.usage), len(session.messages)
    out = _Outcome()
    try:
        async for event in runner.run(session, text, files, selected=model, budget=budget):
            out.events.append(event)
    except SupportbotError as exc:
        out.refused = str(exc)
    out.unchanged = before == (json.dumps(session.to_json(), default=str), session.history)
    out.route = session.routes[-1] if len(session.routes) > counts[0] else {}
    out.tool_calls = session.tool_calls[counts[1] :]
    out.usage = session.usage[counts[2] :]
    answers = [m for m in session.messages[counts[3] :] if m["role"] == "assistant"]
    out.answer = (answers[-1].get("content") or "") if answers else ""
    out.ticket = session.ticket
    return out


def check_turn(step: int, expect: Expect, out: _Outcome, *, forced: bool = False) -> list[Check]:
    """Every expectation of one turn against what it did."""
    if expect.input_error is not None:
        want = expect.input_error
        refused = out.refused is not None and want.lower() in out.refused.lower()
        detail = out.refused if out.refused is not None else f"the turn ran: {_short(out.answer)}"
        return [
            Check(step, f"refused with {want!r}", _status(refused), detail),
            Check(step, "conversation unchanged", _status(out.unchanged), _changed(out)),
        ]
    if out.refused is not None:
        return [Check(step, "turn accepted", "fail", out.refused)]
    checks = [_answered(step, expect.answered, out)]
    for name, want in (expect.route.model_dump(exclude_none=True) if expect.route else {}).items():
        if forced:
            checks.append(Check(step, f"route {name} = {want}", "skip", "model forced by --model"))
        else:
            got = out.route.get(name)
            checks.append(Check(step, f"route {name} = {want}", _status(got == want), f"got {got}"))
    made = ", ".join(_call_text(c) for c in out.tool_calls) or "no tool was called"
    for tool in expect.tools:
        found = next((c for c in out.tool_calls if _tool_matches(tool, c)), None)
        label = f"tool {tool.name}({_args_text(tool.arguments)})"
        if tool.result:
            label += f" -> {_args_text(tool.result)}"
        detail = _call_text(found) if found else f"called: {made}"
        checks.append(Check(step, label, _status(found is not None), detail))
    for name in expect.no_tools:
        called = [c for c in out.tool_calls if c["name"] == name]
        checks.append(Check(step, f"no {name}", _status(not called), ", ".join(map(_call_text, called))))
    for name, want in expect.ticket.items():
        got = out.ticket.get(name)
        checks.append(Check(step, f"ticket {name} = {_show(want)}", _status(matches(want, got)), f"got {_show(got)}"))
    low = out.answer.lower()
    for text in expect.contains:
        checks.append(Check(step, f"answer contains {text!r}", _status(text.lower() in low), _short(out.answer)))
    for text in expect.not_contains:
        checks.append(Check(step, f"answer lacks {text!r}", _status(text.lower() not in low), _short(out.answer)))
    if expect.max_requests is not None:
        n, most = len(out.usage), expect.max_requests
        purposes = ", ".join(u["purpose"] for u in out.usage)
        checks.append(Check(step, f"at most {most} requests", _status(n <= most), f"{n}: {purposes}"))
    return checks


def _changed(out: _Outcome) -> str:
    return "" if out.unchanged else "the session changed"


def _answered(step: int, want: bool, out: _Outcome) -> Check:
    model = out.route.get("model", "?")
    how = f"{model}, {len(out.usage)} request{'s' if len(out.usage) != 1 else ''}"
    if want:
        return Check(step, "answered", _status(out.ok), how if out.ok else "; ".join(out.errors) or "no answer")
    return Check(step, "ended in an error", _status(not out.ok), "; ".join(out.errors) or f"answered ({how})")


def matches(want: Any, got: Any) -> bool:
    """Subset match: tables need only the expected keys; lists match item by item; scalars are equal."""
    if isinstance(want, dict):
        return isinstance(got, dict) and all(k in got and matches(v, got[k]) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(got, list) and len(want) == len(got) and all(map(matches, want, got))
    if isinstance(want, bool) or isinstance(got, bool):
        return want is got
    return want == got


def _tool_matches(tool: Any, call: dict[str, Any]) -> bool:
    if call["name"] != tool.name or (tool.ok is not None and call["ok"] != tool.ok):
        return False
    return matches(tool.arguments, call["arguments"]) and (not tool.result or matches(tool.result, call["result"]))


def _status(ok: bool) -> Status:
    return "pass" if ok else "fail"


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _args_text(args: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={_show(v)}" for k, v in args.items())


def _call_text(call: dict[str, Any]) -> str:
    args = call["arguments"]
    shown = _args_text(args) if isinstance(args, dict) else _show(args)
    return _short(f"{call['name']}({shown})" + ("" if call["ok"] else f" failed: {call['error']}"), 120)


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
