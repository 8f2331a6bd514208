"""The scenario file format: TOML read with ``tomllib``, validated by pydantic.

A scenario is a conversation (turns) with expectations per turn::

    name = "Refund denied"                  # optional, defaults to the file name
    description = "..."                     # optional

    [[turns]]
    text = "I want a refund for order #48291."
    attachments = ["samples/checkout-error.png"]   # relative to assets/
    generate = ["log:3000000"]              # made at run time (see supportbot.qa.generate)
    model = "llama-3.3-70b"                 # optional: force a model for this turn

    [turns.expect]
    answered = true                         # default: the turn ends with an answer, not an error
    route = { category = "triage", model = "llama-3.3-70b", rule = "triage" }
    no_tools = ["escalate_to_human"]        # must not be called
    ticket = { category = "refund", order_ids = ["48291"] }   # subset of the ticket after the turn
    contains = ["48291"]                    # in the answer, case-insensitive
    not_contains = ["approved"]
    max_requests = 2                        # model requests this turn, retries included
    # input_error = "not an image"          # instead: the turn is refused with this in the message
                                            # and the conversation is unchanged

    [[turns.expect.tools]]                  # called this turn, with at least these arguments
    name = "request_refund"
    arguments = { order_id = "48291" }
    result = { outcome = "denied" }         # optional: subset of what the tool returned
    ok = true                               # optional

Every table forbids unknown keys; errors name the file and the field.
"""

from __future__ import annotations

import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from supportbot.config import ASSETS_DIR
from supportbot.errors import ScenarioError
from supportbot.qa import generate
from supportbot.ticket.record import Ticket
from supportbot.tools import REGISTRY


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _known_tool(name: str) -> str:
    if name not in REGISTRY.names():
        raise ValueError(f"unknown tool {name!r}; tools are: {', '.join(REGISTRY.names())}")
    return name


class ToolExpect(_Strict):
    """A tool the turn must call: its name, and subsets of its arguments and result."""

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    result: dict[str, Any] = Field(default_factory=dict)
    ok: bool | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        return _known_tool(name)


class RouteExpect(_Strict):
    """Where the router sent the turn."""

    category: str | None = None
    model: str | None = None
    rule: str | None = None


class Expect(_Strict):
    """What must be true after a turn."""

    answered: bool = True
    input_error: str | None = Field(None, min_length=1)
    route: RouteExpect | None = None
    tools: list[ToolExpect] = Field(default_factory=list)
    no_tools: list[str] = Field(default_factory=list)
    ticket: dict[str, Any] = Field(default_factory=dict)
    contains: list[str] = Field(default_factory=list)
    not_contains: list[str] = Field(default_factory=list)
    max_requests: int | None = Field(None, ge=0)

    @field_validator("no_tools")
    @classmethod
    def _no_tools(cls, names: list[str]) -> list[str]:
        return [_known_tool(n) for n in names]

    @field_validator("ticket")
    @classmethod
    def _ticket_fields(cls, fields: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(fields) - set(Ticket.model_fields))
        if unknown:
            known = ", ".join(Ticket.model_fields)
            raise ValueError(f"unknown ticket field(s) {', '.join(unknown)}; fields are: {known}")
        return fields

    @model_validator(mode="after")
    def _input_error_alone(self) -> Expect:
        if self.input_error is not None:
            others = self.model_fields_set - {"input_error", "answered"}
            if others:
                raise ValueError(
                    f"input_error means the turn is refused before it runs; drop {', '.join(sorted(others))}"
                )
        return self


class Turn(_Strict):
    """One customer message and what must follow it."""

    text: str = ""
    # Bounded like a message's files (the turn refuses more anyway): checked before any path is looked at.
    attachments: list[str] = Field(default_factory=list, max_length=8)
    generate: list[str] = Field(default_factory=list, max_length=4)
    model: str | None = None
    expect: Expect = Field(default_factory=Expect)

    @field_validator("attachments")
    @classmethod
    def _in_assets(cls, paths: list[str]) -> list[str]:
        for p in paths:
            pure = PurePosixPath(p)
            if len(p) > 300 or pure.is_absolute() or ".." in pure.parts or "\\" in p:
                raise ValueError(f"{p!r}: attachments are paths inside assets/, like 'samples/checkout-error.png'")
            try:
                found = (ASSETS_DIR / pure).resolve()
                # Resolved, so a link inside assets/ cannot lead out of it.
                inside = found.is_relative_to(ASSETS_DIR.resolve()) and found.is_file()
            except (OSError, ValueError):  # a name the system refuses (a NUL byte, a loop of links)
                inside = False
            if not inside:
                raise ValueError(f"{p!r}: no such file in {ASSETS_DIR}")
        return paths

    @field_validator("generate")
    @classmethod
    def _generators(cls, specs: list[str]) -> list[str]:
        return [generate.check(s) for s in specs]


class Scenario(_Strict):
    """A named conversation with expectations; ``source`` is the file it came from."""

    name: str = ""
    description: str = ""
    turns: list[Turn] = Field(min_length=1)
    _source: str = PrivateAttr("")

    @property
    def source(self) -> str:
        """The file (or label) this scenario was read from."""
        return self._source


def load_text(text: str, source: str) -> Scenario:
    """Parse and validate scenario TOML; ScenarioError names ``source`` and the bad field."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(source, f"not valid TOML: {exc}") from None
    except RecursionError:  # arrays nested thousands deep: tomllib recurses once per level
        raise ScenarioError(source, "not a scenario: values nested too deeply") from None
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        problems = [f"{_where(e['loc'])}: {_message(e)}" for e in exc.errors()[:5]]
        raise ScenarioError(source, "; ".join(problems)) from None
    except RecursionError:
        raise ScenarioError(source, "not a scenario: values nested too deeply") from None
    if not scenario.name:
        scenario = scenario.model_copy(update={"name": Path(source).stem})
    scenario._source = source
    return scenario


def load_untrusted(
    data: bytes, source: str, *, max_bytes: int, max_turns: int, max_log_tokens: int, blocked: list[Path]
) -> Scenario:
    """A scenario a stranger uploaded: at most ``max_bytes`` of UTF-8 TOML, ``max_turns`` turns, generated logs of
    ``max_log_tokens`` in all, and no attachment under a ``blocked`` folder (the data directory); else
    ScenarioError saying which bound it broke."""
    if len(data) > max_bytes:
        raise ScenarioError(source, f"the file is {len(data):,} bytes; a scenario may have at most {max_bytes:,}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ScenarioError(source, "not UTF-8 text: a scenario is a TOML file") from None
    scenario = load_text(text, source)
    if len(scenario.turns) > max_turns:
        raise ScenarioError(source, f"{len(scenario.turns)} turns; an uploaded scenario may have at most {max_turns}")
    tokens = sum(int(g.partition(":")[2]) for t in scenario.turns for g in t.generate if g.startswith("log:"))
    if tokens > max_log_tokens:
        raise ScenarioError(
            source, f"generated logs of {tokens:,} tokens; an uploaded scenario may generate {max_log_tokens:,}"
        )
    roots = [b.resolve() for b in blocked]
    for n, turn in enumerate(scenario.turns, 1):
        for a in turn.attachments:
            if any((ASSETS_DIR / a).resolve().is_relative_to(r) for r in roots):
                raise ScenarioError(source, f"turns[{n - 1}].attachments: {a!r} is not a file a scenario may attach")
    return scenario


def load(path: str | Path) -> Scenario:
    """Read one scenario file (named relative to the working directory when it is below it)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(str(path), f"cannot read: {exc}") from None
    try:
        shown = str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        shown = str(path)
    return load_text(text, shown)


def discover(paths: list[str | Path]) -> list[Path]:
    """Scenario files named on the command line: files as given, folders' ``*.toml`` sorted."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(p.glob("*.toml"))
        elif p.is_file():
            found.append(p)
        else:
            raise ScenarioError(str(p), "no such file or folder")
    return found


def _where(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _message(error: dict[str, Any]) -> str:
    msg = str(error["msg"])
    return msg.removeprefix("Value error, ")
