"""Agent overhead: one turn with a tool call through the agent vs the same requests
made with the raw openai SDK, against the same loopback engine, interleaved.

    python bench/agent_overhead.py [--runs 60]

Prints a table of medians and, as its last line, the ratio agent / raw (goal <= 1.10).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import openai  # noqa: E402

from supportbot.agent import SYSTEM_PROMPT, Agent  # noqa: E402
from supportbot.client import ClientFactory  # noqa: E402
from supportbot.config import Settings  # noqa: E402
from supportbot.engine import OfflineEngine, start_server  # noqa: E402
from supportbot.events import Done  # noqa: E402
from supportbot.routing.catalog import load_catalog  # noqa: E402
from supportbot.storage.store import Store  # noqa: E402
from supportbot.tools import REGISTRY, ToolContext  # noqa: E402

DUMP = "--dump" in sys.argv
if DUMP:
    sys.argv.remove("--dump")
QUESTION = "Where is my order #48291?"


async def agent_turn(agent: Agent, model, ctx: ToolContext) -> str:
    done = None
    async for event in agent.run_turn([{"role": "user", "content": QUESTION}], model, ctx):
        if isinstance(event, Done):
            done = event
    assert done is not None and done.ok, done
    return done.text


async def raw_turn(client: openai.AsyncOpenAI, model_id: str, ctx: ToolContext, max_tokens: int) -> str:
    """The same requests by hand: stream, gather tool calls, run them, stream the answer."""
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": QUESTION}]
    tools = REGISTRY.schemas()
    for _ in range(4):
        stream = await client.chat.completions.create(
            model=model_id,
            messages=messages,
            tools=tools,
            stream=True,
            stream_options={"include_usage": True},
            max_tokens=max_tokens,
        )
        text, calls = "", {}
        async for chunk in stream:
            for choice in chunk.choices:
                if choice.delta.content:
                    text += choice.delta.content
                for tc in choice.delta.tool_calls or ():
                    call = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                    call["id"] = tc.id or call["id"]
                    call["name"] += (tc.function.name or "") if tc.function else ""
                    call["arguments"] += (tc.function.arguments or "") if tc.function else ""
        if not calls:
            return text
        messages.append(
            {
                "role": "assistant",
                "content": text or None,
                "tool_calls": [
                    {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                    for c in calls.values()
                ],
            }
        )
        for c in calls.values():
            result = await REGISTRY.run(c["id"], c["name"], c["arguments"], ctx)
            messages.append({"role": "tool", "tool_call_id": c["id"], "content": result.content()})
    raise RuntimeError("raw loop did not finish")


async def main(runs: int) -> None:
    engine = OfflineEngine()
    with start_server(engine) as server, tempfile.TemporaryDirectory() as tmp:
        settings = Settings.load(
            {"base_url": server.base_url, "api_key": "bench", "engine": "live", "max_retries": 0},
            environ={},
            dotenv_path=None,
        )
        agent = Agent(settings, ClientFactory(settings))
        # The same HTTP settings the agent's factory uses, so only the loop differs.
        timeout = httpx.Timeout(settings.request_timeout, connect=10.0)
        raw = openai.AsyncOpenAI(
            base_url=server.base_url,
            api_key="bench",
            max_retries=0,
            timeout=timeout,
            http_client=httpx.AsyncClient(
                timeout=timeout, verify=False, limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100)
            ),
        )
        model = load_catalog().get("llama-3.3-70b")
        store = Store(Path(tmp) / "bench.sqlite3")
        ctx = ToolContext(store.sandbox("bench"))
        for _ in range(5):  # warm up connections and caches on both paths
            await agent_turn(agent, model, ctx)
            await raw_turn(raw, model.id, ctx, settings.max_output_tokens)
        agent_ms, raw_ms = [], []
        for i in range(runs):
            pair = [
                ("agent", lambda: agent_turn(agent, model, ctx)),
                ("raw", lambda: raw_turn(raw, model.id, ctx, settings.max_output_tokens)),
            ]
            for name, fn in pair if i % 2 == 0 else pair[::-1]:  # interleave, alternating order
                start = time.perf_counter()
                await fn()
                (agent_ms if name == "agent" else raw_ms).append((time.perf_counter() - start) * 1000)
        store.close()
    a, r = statistics.median(agent_ms), statistics.median(raw_ms)
    if DUMP:
        print(sorted(round(x) for x in agent_ms), sorted(round(x) for x in raw_ms))
    print(f"{'path':<10}{'runs':>6}{'median ms':>12}{'p90 ms':>10}")
    for name, values in (("agent", agent_ms), ("raw SDK", raw_ms)):
        p90 = statistics.quantiles(values, n=10)[-1]
        print(f"{name:<10}{len(values):>6}{statistics.median(values):>12.2f}{p90:>10.2f}")
    print(f"ratio agent/raw: {a / r:.3f} (goal <= 1.10)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60)
    asyncio.run(main(parser.parse_args().runs))
