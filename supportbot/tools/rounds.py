"""A round of tool calls: run one after another, pausing before a call a human must approve.

The model asks for one or more calls at once. ``run_calls`` runs them in order; at a call named in
SUPPORTBOT_CONFIRM_TOOLS it runs nothing more and yields ``ApprovalRequested`` (the calls already
run, the paused one and the ones after it), and the agent ends the turn's event there: a pause holds
no task and no concurrency slot. ``finish_round`` later runs the paused call (approved) or answers
it with ``DENIED`` (denied: the model hears it as the call's result), then the rest of the round,
pausing again at the next such call.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from typing import Any

from supportbot.errors import ConfigError
from supportbot.events import ApprovalRequested, Event, ToolCallFinished, ToolCallStarted
from supportbot.tools.registry import ToolContext, ToolRegistry

DENIED = "The customer's request was not approved by a human agent."


@dataclass
class Call:
    """One tool call as the model streamed it."""

    id: str = ""
    name: str = ""
    arguments: str = ""


def confirm_set(names: Collection[str], registry: ToolRegistry) -> frozenset[str]:
    """The tools that need approval; ConfigError naming SUPPORTBOT_CONFIRM_TOOLS and the first unknown name."""
    known = registry.names()
    for name in names:
        if name not in known:
            raise ConfigError("SUPPORTBOT_CONFIRM_TOOLS", f"unknown tool {name!r}; the tools are {', '.join(known)}")
    return frozenset(names)


def _tool_message(call_id: str, content: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": content}


async def _run_one(registry: ToolRegistry, call: Call, ctx: ToolContext, partial: list[dict]) -> AsyncIterator[Event]:
    yield ToolCallStarted(call.id, call.name, call.arguments)
    result = await registry.run(call.id, call.name, call.arguments, ctx)
    yield ToolCallFinished(
        call.id, call.name, result.arguments, result.ok, result.result, result.error, result.duration_ms
    )
    partial.append(_tool_message(call.id, result.content()))


async def run_calls(
    registry: ToolRegistry,
    calls: list[Call],
    ctx: ToolContext,
    confirm: Collection[str],
    partial: list[dict[str, Any]],
    steps: int,
) -> AsyncIterator[Event]:
    """Run ``calls`` in order, appending each result to ``partial`` (the round so far, starting with the
    assistant's message); stop with ``ApprovalRequested`` before the first call ``confirm`` names."""
    for i, call in enumerate(calls):
        if call.name in confirm:
            queued = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in calls[i + 1 :]]
            yield ApprovalRequested(call.id, call.name, call.arguments, queued, list(partial), steps)
            return
        async for event in _run_one(registry, call, ctx, partial):
            yield event


def denied(call: Call) -> ToolCallFinished:
    """The result a denied call gets: an error the model reads, and the Tools panel shows."""
    try:
        arguments: Any = json.loads(call.arguments) if call.arguments.strip() else {}
    except json.JSONDecodeError:
        arguments = call.arguments
    return ToolCallFinished(call.id, call.name, arguments, False, None, DENIED, 0.0)


async def finish_round(
    registry: ToolRegistry,
    paused: ApprovalRequested,
    approved: bool,
    ctx: ToolContext,
    confirm: Collection[str],
    partial: list[dict[str, Any]],
) -> AsyncIterator[Event]:
    """Run the paused call (or refuse it with DENIED), then the rest of its round; ``partial`` grows as they run.

    Ends with ``ApprovalRequested`` when a later call of the round needs approval too."""
    call = Call(paused.call_id, paused.name, paused.arguments)
    if approved:
        async for event in _run_one(registry, call, ctx, partial):
            yield event
    else:
        yield denied(call)
        partial.append(_tool_message(call.id, json.dumps({"error": DENIED})))
    rest = [Call(q["id"], q["name"], q["arguments"]) for q in paused.queued]
    async for event in run_calls(registry, rest, ctx, confirm, partial, paused.steps):
        yield event
