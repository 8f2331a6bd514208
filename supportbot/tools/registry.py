"""The tool registry: plain typed functions in, OpenAI tool schemas and safe calls out.

A tool is a plain typed function whose first parameter is the injected
``ctx: ToolContext``; its JSON schema (OpenAI tools format) is built by pydantic from
the remaining parameters, and its description is the docstring's first line.
``ToolRegistry.run`` never raises for a bad call: malformed JSON, invalid arguments,
unknown tools, ``ToolError`` and crashes all become ``ok=False`` results the model
can act on. Only cancellation and ``KeyboardInterrupt`` propagate.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar, get_type_hints

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from supportbot.errors import ToolError
from supportbot.storage.sandbox import Sandbox

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class ToolContext:
    """Per-conversation state injected into every tool call; never part of a schema.

    ``store`` is the conversation's sandbox: what a tool changes is seen by this conversation only.
    """

    store: Sandbox
    conversation_id: str | None = None
    transcript: str = ""  # short plain-text summary of the conversation so far, for hand-offs
    ticket_fields: dict[str, Any] = field(default_factory=dict)  # filled by update_ticket


@dataclass(frozen=True)
class ToolResult:
    """The outcome of one tool call, successful or not."""

    call_id: str
    name: str
    arguments: dict[str, Any] | str  # dict when parsed, the raw string when not
    ok: bool
    result: Any
    error: str | None
    duration_ms: float

    def content(self) -> str:
        """The JSON text sent back to the model as the tool message."""
        payload = self.result if self.ok else {"error": self.error}
        return json.dumps(payload, ensure_ascii=False, default=str)


@dataclass(frozen=True)
class _Tool:
    name: str
    description: str
    fn: Callable[..., Any]
    params: type[BaseModel]
    schema: dict[str, Any]


def _tidy(node: Any, *, in_properties: bool = False) -> Any:
    """Drop pydantic's ``title`` noise and fold ``anyOf [X, null]`` into ``type: [X, "null"]``."""
    if isinstance(node, list):
        return [_tidy(n) for n in node]
    if not isinstance(node, dict):
        return node
    if in_properties:  # keys here are argument names, which may legitimately be "title"
        return {k: _tidy(v) for k, v in node.items()}
    out = {k: _tidy(v, in_properties=(k == "properties")) for k, v in node.items() if k != "title"}
    options = out.get("anyOf")
    if isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
        other = next(o for o in options if o != {"type": "null"})
        if isinstance(other.get("type"), str):
            del out["anyOf"]
            merged = {**other, "type": [other["type"], "null"]}
            if "enum" in merged:
                merged["enum"] = [*merged["enum"], None]
            out = {**merged, **out}
    return out


def _build(fn: Callable[..., Any]) -> _Tool:
    doc = inspect.getdoc(fn)
    if not doc:
        raise TypeError(f"tool {fn.__name__} needs a one-line docstring: it becomes the description")
    hints = get_type_hints(fn, include_extras=True)
    params = list(inspect.signature(fn).parameters.values())
    if not params or params[0].name != "ctx" or hints.get("ctx") is not ToolContext:
        raise TypeError(f"tool {fn.__name__} must take `ctx: ToolContext` as its first parameter")
    fields: dict[str, Any] = {}
    for p in params[1:]:
        if p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) or p.name not in hints:
            raise TypeError(f"tool {fn.__name__}: parameter {p.name} needs a type hint and a plain name")
        fields[p.name] = (hints[p.name], ... if p.default is p.empty else p.default)
    # Models often send 48291 for an id typed as a string; accept it instead of failing the call.
    config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)
    model = create_model(f"{fn.__name__}_args", __config__=config, **fields)
    parameters = _tidy(model.model_json_schema())
    parameters.setdefault("properties", {})
    parameters["additionalProperties"] = False
    description = doc.strip().splitlines()[0]
    schema = {
        "type": "function",
        "function": {"name": fn.__name__, "description": description, "parameters": parameters},
    }
    return _Tool(fn.__name__, description, fn, model, schema)


def _describe(error: ValidationError) -> str:
    parts = []
    for err in error.errors():
        where = ".".join(str(p) for p in err["loc"]) or "arguments"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


class ToolRegistry:
    """Named tools with schemas derived from their signatures."""

    def __init__(self) -> None:
        self._tools: dict[str, _Tool] = {}

    def tool(self, fn: F) -> F:
        """Register ``fn`` as a tool under its own name; returns it unchanged."""
        built = _build(fn)
        if built.name in self._tools:
            raise ValueError(f"a tool named {built.name} is already registered")
        self._tools[built.name] = built
        return fn

    def names(self) -> list[str]:
        """Registered tool names, in registration order."""
        return list(self._tools)

    def schemas(self, names: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """OpenAI ``tools=`` entries for ``names`` (default: all)."""
        wanted = self.names() if names is None else list(names)
        unknown = [n for n in wanted if n not in self._tools]
        if unknown:
            raise ValueError(f"unknown tools {unknown}; known: {', '.join(self._tools)}")
        return [json.loads(json.dumps(self._tools[n].schema)) for n in wanted]  # callers get a copy

    async def run(self, call_id: str, name: str, arguments: str, ctx: ToolContext) -> ToolResult:
        """Parse, validate and run one tool call; every failure becomes an ``ok=False`` result."""
        start = time.perf_counter()
        args: dict[str, Any] | str = arguments

        def done(ok: bool, result: Any = None, error: str | None = None) -> ToolResult:
            elapsed = (time.perf_counter() - start) * 1000
            return ToolResult(call_id, name, args, ok, result, error, round(elapsed, 3))

        tool = self._tools.get(name)
        if tool is None:
            return done(False, error=f"Unknown tool {name!r}. Available tools: {', '.join(self._tools)}.")
        try:
            # Some models send "" instead of "{}" for a call without arguments.
            parsed = json.loads(arguments) if arguments and arguments.strip() else {}
        except json.JSONDecodeError as exc:
            return done(
                False,
                error=f"Arguments for {name} are not valid JSON ({exc.msg} at position {exc.pos}); "
                "send a JSON object matching the tool's parameters.",
            )
        if not isinstance(parsed, dict):
            return done(False, error=f"Arguments for {name} must be a JSON object, not {type(parsed).__name__}.")
        args = parsed
        try:
            validated = tool.params.model_validate(parsed)
        except ValidationError as exc:
            return done(False, error=f"Invalid arguments for {name}: {_describe(exc)}.")
        kwargs = {key: getattr(validated, key) for key in type(validated).model_fields}
        try:
            if inspect.iscoroutinefunction(tool.fn):
                result = await tool.fn(ctx, **kwargs)
            else:
                # Tools do blocking SQLite work; keep the event loop free.
                result = await asyncio.to_thread(tool.fn, ctx, **kwargs)
        except ToolError as exc:
            return done(False, error=str(exc))
        except Exception as exc:  # a bug in a tool must reach the model as a result, not crash the turn
            return done(
                False,
                error=f"Tool {name} failed internally ({type(exc).__name__}: {str(exc)[:200]}). "
                "Do not retry with the same arguments; apologise and offer to escalate to a human.",
            )
        return done(True, result=result)
