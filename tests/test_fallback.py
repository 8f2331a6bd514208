"""Model fallback (issue 11 item 1, in the order issue 14 decides): when the chosen model fails with a 404,
a 403, an empty stream, or a 5xx or a timeout after the SDK's retries, before any answer text was shown,
the turn runs once more on the next fallback that can take it; a model that failed is tried last for
5 minutes.

End to end against the offline engine served on loopback (a model it does not serve answers 404; its
failure injection can name one model), or the scripted model where a test needs exact replies.
Expected models are worked out by hand from assets/routing.json and assets/models.json.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from supportbot.config import Settings
from supportbot.conversation import TurnRunner
from supportbot.engine import OfflineEngine, start_server
from supportbot.events import ErrorEvent, FallbackStarted, RouteDecision, TextDelta
from supportbot.routing.catalog import load_catalog
from supportbot.routing.fallback import COOLDOWN_S, Cooldown, demote, next_fallback
from supportbot.routing.router import TurnFacts, load_policy, plan_tiers, route
from supportbot.services import Services
from supportbot.session import Session
from supportbot.storage.counters import APP_SCOPE
from supportbot.testing import ScriptedModel, error, reply, tool_call
from supportbot.ui import render

SCREENSHOT = Path("assets") / "samples" / "checkout-error.png"  # 1440 x 900
LONG_LOG = Path("assets") / "samples" / "checkout-service.log"  # ~190K tokens
ORDER = "Where is my order #48291?"


class Clock:
    """A monotonic clock a test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def live_services(tmp_path: Path, base_url: str, plan: str = "pro", **overrides: Any) -> Services:
    """Services talking to a loopback server; its model list is never read, so routing does not know what it
    serves (as when GET /v1/models cannot be checked) and a model it does not serve answers 404."""
    settings = Settings.load(
        {"data_dir": tmp_path, "engine": "live", "api_key": "k", "base_url": base_url, "plan": plan}
        | {"max_retries": 0, **overrides},
        environ={},
        dotenv_path=None,
    )
    services = Services.create(settings)
    services.cooldown = Cooldown(clock=Clock())
    return services


def run(runner: TurnRunner, session: Session, text: str, files: list[Path] | None = None, **kwargs) -> list:
    async def go():
        return [e async for e in runner.run(session, text, files, **kwargs)]

    return asyncio.run(go())


def image_edge(body: dict) -> int:
    """The long edge of the image a chat request carries."""
    part = next(p for p in body["messages"][-1]["content"] if p["type"] == "image_url")
    raw = base64.b64decode(part["image_url"]["url"].split(",", 1)[1])
    with Image.open(io.BytesIO(raw)) as img:
        return max(img.size)


@pytest.fixture(scope="module")
def no_maverick():
    """Every catalog model but Llama 4 Maverick, the first Pro vision model routing would pick."""
    engine = OfflineEngine()
    engine.model_ids = [m for m in engine.model_ids if m != "llama-4-maverick"]
    with start_server(engine) as server:
        yield server


# --- the screenshot turn of the "Done when" ------------------------------------------------


def test_a_screenshot_whose_first_vision_model_gets_404_is_answered_by_the_second(tmp_path: Path, no_maverick):
    services = live_services(tmp_path, no_maverick.base_url)
    runner, session = TurnRunner(services), Session()
    before = len(no_maverick.engine.requests)
    events = run(runner, session, "What does this error mean?", [SCREENSHOT])
    sent = [b["model"] for b in no_maverick.engine.requests[before:]]
    # Once on Llama 4 Maverick, then the turn on Ministral 14B (a tool round, then the answer): the Pro order.
    assert sent == ["llama-4-maverick", "ministral-14b", "ministral-14b"]
    (fell,) = [e for e in events if isinstance(e, FallbackStarted)]
    assert (fell.failed, fell.model, fell.status) == ("llama-4-maverick", "ministral-14b", 404)
    assert not [e for e in events if isinstance(e, ErrorEvent)]
    r = session.routes[0]
    assert (r["model"], r["fallback_from"], r["context_window"]) == ("ministral-14b", "llama-4-maverick", 262144)
    assert r["reason"].endswith("Llama 4 Maverick failed (404); answered by Ministral 14B.")
    # Every existing route field kept; the fallbacks as routed (unchecked list: Kimi VL A3B, tier unpublished, last).
    assert r["category"] == "vision" and r["fallbacks"] == ["ministral-14b", "gemma-3-4b", "kimi-vl-a3b"]
    notices = [m["content"] for m in session.messages if m["role"] == "notice"]
    assert any(n.startswith("Llama 4 Maverick failed (404), so Ministral 14B answers instead.") for n in notices)
    answer = session.messages[-1]
    assert answer["role"] == "assistant" and answer["model"] == "ministral-14b" and "PNG" in answer["content"]
    # Every request counts: the failed one as a discarded attempt, the fallback's with their tokens.
    assert [(u["model"], u["purpose"]) for u in session.usage] == [
        ("llama-4-maverick", "retry"),
        ("ministral-14b", "answer"),
        ("ministral-14b", "tool_round"),
    ]
    assert "fell back from llama-4-maverick" in render.routes_html(session)
    assert "answered by Ministral 14B" in render.routes_html(session)


def test_the_seeds_pair_kimi_vl_a3b_then_gemma_3_27b_with_the_image_sized_for_gemma(tmp_path: Path):
    # The seed's example: Kimi VL A3B is not served (404); on Premium, Gemma 3 27B answers. Gemma takes
    # images up to 896 px, Kimi VL A3B up to 1792: the screenshot is prepared again for it.
    engine = OfflineEngine()
    engine.model_ids = [m for m in engine.model_ids if m != "kimi-vl-a3b"]
    with start_server(engine) as server:
        services = live_services(tmp_path, server.base_url, "premium")
        session = Session()
        run(TurnRunner(services), session, "What does this error mean?", [SCREENSHOT], selected="kimi-vl-a3b")
        first, second = server.engine.requests[:2]
    assert (first["model"], second["model"]) == ("kimi-vl-a3b", "gemma-3-27b")
    assert (image_edge(first), image_edge(second)) == (1440, 896)
    r = session.routes[0]
    assert "Kimi VL A3B failed (404); answered by Gemma 3 27B." in r["reason"] and r["fallback_from"] == "kimi-vl-a3b"
    user = session.messages[0]["attachments"][0]
    assert (user["width"], user["height"]) == (1440, 900)


def test_a_403_on_tier_gives_the_plan_message_and_falls_back_within_the_plan(tmp_path: Path):
    with start_server(OfflineEngine()) as server:
        services = live_services(tmp_path, server.base_url, "pro")
        server.engine.inject("forbidden", model="gemma-3-27b")  # only Gemma 3 27B refuses
        session = Session()
        events = run(TurnRunner(services), session, "What does this error mean?", [SCREENSHOT], selected="gemma-3-27b")
        sent = [b["model"] for b in server.engine.requests]
    fell = next(e for e in events if isinstance(e, FallbackStarted))
    assert fell.status == 403 and "your Pro plan (SUPPORTBOT_PLAN)" in fell.message
    assert "Gemma 3 27B needs the Premium tier" in fell.message
    # Within Pro: the first automatic vision choice on Pro, Llama 4 Maverick (tier Pro), not a Premium model.
    assert sent == ["gemma-3-27b", "llama-4-maverick", "llama-4-maverick"]
    catalog = services.catalog
    assert catalog.on_plan(catalog.get(session.routes[0]["model"])) is True
    assert all(catalog.on_plan(catalog.get(f)) is not False for f in session.routes[0]["fallbacks"])
    assert any("Pro plan" in m["content"] for m in session.messages if m["role"] == "notice")


def test_a_long_log_falls_back_to_a_model_whose_window_holds_it(tmp_path: Path):
    # On Premium a ~190K-token log goes to Kimi K2.6 (262K); when it fails, DeepSeek V4 Flash (1M) takes the
    # same prompt, log unreduced. DeepSeek R1 (164K) is not a candidate: its window is too small.
    with start_server(OfflineEngine()) as server:
        services = live_services(tmp_path, server.base_url, "premium")
        server.engine.inject("unavailable", model="kimi-k2.6")
        session = Session()
        run(TurnRunner(services), session, "Our checkout keeps failing, here is the log", [LONG_LOG])
        sent = server.engine.requests
    assert [b["model"] for b in sent][:2] == ["kimi-k2.6", "deepseek-v4-flash"]
    assert sent[0]["messages"][-1] == sent[1]["messages"][-1]  # the same customer message, log and all
    r = session.routes[0]
    assert (r["rule"], r["reduce_logs_to"], r["model"], r["fallback_from"]) == (
        "long_context",
        None,
        "deepseek-v4-flash",
        "kimi-k2.6",
    )
    assert "deepseek-r1-0528" not in r["fallbacks"] and "ERROR 173" in session.messages[-1]["content"]


@pytest.mark.parametrize("kind", ["server", "unavailable", "empty_stream", "timeout", "not_found"])
def test_each_failure_kind_falls_back_after_the_sdks_retries(tmp_path: Path, kind: str):
    with start_server(OfflineEngine()) as server:
        services = live_services(tmp_path, server.base_url, max_retries=1, request_timeout=1)
        server.engine.inject(kind, times=5, model="llama-4-maverick")
        session = Session()
        events = run(TurnRunner(services), session, "What does this error mean?", [SCREENSHOT])
        sent = [b["model"] for b in server.engine.requests]
    retried = kind in ("server", "unavailable", "timeout")  # the SDK retries 5xx and timeouts, once here
    assert sent == ["llama-4-maverick"] * (2 if retried else 1) + ["ministral-14b"] * 2
    assert next(e for e in events if isinstance(e, FallbackStarted)).kind == (
        "server" if kind == "unavailable" else kind
    )
    assert session.messages[-1]["model"] == "ministral-14b" and not session.messages[-1].get("error")
    assert [u["purpose"] for u in session.usage].count("retry") == sent.count("llama-4-maverick")


def test_failures_a_fallback_cannot_help_are_not_retried_elsewhere(tmp_path: Path):
    # A 429 or a bad key fails on any model of the service: the error stands, one model tried.
    with start_server(OfflineEngine()) as server:
        services = live_services(tmp_path, server.base_url)
        server.engine.inject("rate_limit", model="llama-4-maverick")
        session = Session()
        events = run(TurnRunner(services), session, "What does this error mean?", [SCREENSHOT])
        assert [b["model"] for b in server.engine.requests] == ["llama-4-maverick"]
    assert not [e for e in events if isinstance(e, FallbackStarted)]
    assert next(e for e in events if isinstance(e, ErrorEvent)).kind == "rate_limit"
    assert session.routes[0]["fallback_from"] is None and session.routes[0]["model"] == "llama-4-maverick"


def test_with_no_fallback_that_can_take_it_the_error_stands(tmp_path: Path):
    # A routine question: the triage preference names one model, so the route has no fallbacks.
    with start_server(OfflineEngine(model_ids=["qwen-3-32b"])) as server:
        services = live_services(tmp_path, server.base_url)
        session = Session()
        events = run(TurnRunner(services), session, ORDER)
    assert session.routes[0]["fallbacks"] == [] and not [e for e in events if isinstance(e, FallbackStarted)]
    err = next(e for e in events if isinstance(e, ErrorEvent))
    assert err.status == 404 and "llama-3.3-70b" in err.message
    assert session.messages[-1]["error_kind"] == "not_found" and session.history == []


def test_at_most_once_a_turn_when_the_fallback_fails_too(tmp_path: Path):
    with start_server(OfflineEngine()) as server:
        services = live_services(tmp_path, server.base_url)
        server.engine.inject("not_found", model="llama-4-maverick")
        server.engine.inject("server", model="ministral-14b")
        session = Session()
        events = run(TurnRunner(services), session, "What does this error mean?", [SCREENSHOT])
        assert [b["model"] for b in server.engine.requests] == ["llama-4-maverick", "ministral-14b"]
    assert len([e for e in events if isinstance(e, FallbackStarted)]) == 1
    err = next(e for e in events if isinstance(e, ErrorEvent))
    assert err.status == 500 and session.messages[-1]["model"] == "ministral-14b"
    r = session.routes[0]
    assert r["reason"].endswith("Llama 4 Maverick failed (404); Ministral 14B failed too (500).")
    assert "answered by" not in r["reason"]


def test_both_requests_count_in_the_spending_budget(tmp_path: Path, no_maverick):
    services = live_services(tmp_path, no_maverick.base_url, requests_per_day=50)
    before = len(no_maverick.engine.requests)
    run(TurnRunner(services), Session(), "What does this error mean?", [SCREENSHOT], budget=services.budget("ip:x"))
    assert services.counters.used([APP_SCOPE])[APP_SCOPE] == 3 == len(no_maverick.engine.requests) - before


# --- text already shown; tool rounds already done (the scripted model) ---------------------------------


def scripted(tmp_path: Path, model: ScriptedModel, **overrides: Any) -> Services:
    settings = Settings.load(
        {"data_dir": tmp_path, "engine": "live", "api_key": "k", "max_retries": 0, **overrides},
        environ={},
        dotenv_path=None,
    )
    return Services.create(settings, transport=model)


def by_model(answers: dict[str, list]):
    """A script step answering each model from its own queue."""

    def step(body: dict):
        return answers[body["model"]].pop(0)

    return step


def test_text_already_streamed_means_no_fallback(tmp_path: Path):
    # Qwen says something and calls a tool; its next request fails: the customer has read its words, so the
    # error stands rather than another model starting over.
    answers = {
        "qwen-3-32b": [
            reply("Let me look that up. ", tool_call("check_order_status", {"order_id": "48291"})),
            error(503),
        ],
        "llama-3.3-70b": [reply("should never be asked")],
    }
    model = ScriptedModel(*[by_model(answers)] * 3)
    session = Session()
    events = run(TurnRunner(scripted(tmp_path, model)), session, ORDER, selected="qwen-3-32b")
    assert [b["model"] for b in model.chat_bodies] == ["qwen-3-32b", "qwen-3-32b"]
    assert session.routes[0]["fallbacks"] == ["llama-3.3-70b"]  # there was a fallback; it was not used
    assert not [e for e in events if isinstance(e, FallbackStarted)]
    assert next(e for e in events if isinstance(e, ErrorEvent)).status == 503
    last = session.messages[-1]
    assert last["content"] == "Let me look that up. " and last["error_kind"] == "server"
    assert session.routes[0]["fallback_from"] is None


def test_completed_tool_rounds_go_along_to_the_fallback_and_never_run_twice(tmp_path: Path):
    # No text shown, one tool round done, then Qwen fails: Llama 3.3 continues the same turn with the round
    # in its messages (the order lookup is not repeated) and answers.
    answers = {
        "qwen-3-32b": [reply(tool_call("check_order_status", {"order_id": "48291"}, id="call_a")), error(500)],
        "llama-3.3-70b": [reply("It is delayed; tracking 1Z.")],
    }
    model = ScriptedModel(*[by_model(answers)] * 3)
    session = Session()
    events = run(TurnRunner(scripted(tmp_path, model)), session, ORDER, selected="qwen-3-32b")
    assert [b["model"] for b in model.chat_bodies] == ["qwen-3-32b", "qwen-3-32b", "llama-3.3-70b"]
    assert [c["name"] for c in session.tool_calls] == ["check_order_status"]  # ran once
    last_request = model.chat_bodies[-1]["messages"]
    assert [m["role"] for m in last_request] == ["system", "user", "assistant", "tool"]
    assert last_request[2]["tool_calls"][0]["id"] == "call_a" and "tools" in model.chat_bodies[-1]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "It is delayed; tracking 1Z."
    # Memory: the user message, the round once, the answer.
    assert [m["role"] for m in session.history] == ["user", "assistant", "tool", "assistant"]
    assert [(u["model"], u["purpose"]) for u in session.usage] == [
        ("qwen-3-32b", "answer"),
        ("qwen-3-32b", "retry"),
        ("llama-3.3-70b", "tool_round"),
    ]


def test_the_step_limit_counts_the_whole_turn_across_a_fallback(tmp_path: Path):
    # Two tool rounds allowed: one on Qwen, then Llama may run one more and must then answer.
    answers = {
        "qwen-3-32b": [reply(tool_call("check_order_status", {"order_id": "48291"})), error(500)],
        "llama-3.3-70b": [reply(tool_call("check_order_status", {"order_id": "48292"}))] * 3,
    }
    model = ScriptedModel(*[by_model(answers)] * 6)
    session = Session()
    events = run(TurnRunner(scripted(tmp_path, model, max_tool_steps=2)), session, ORDER, selected="qwen-3-32b")
    assert [b["model"] for b in model.chat_bodies] == ["qwen-3-32b", "qwen-3-32b", "llama-3.3-70b", "llama-3.3-70b"]
    assert next(e for e in events if isinstance(e, ErrorEvent)).kind == "step_limit"
    assert len(session.tool_calls) == 2


# --- the cooldown -----------------------------------------------------------------------------------


def test_a_failed_model_is_tried_last_for_five_minutes_then_restored(tmp_path: Path, no_maverick):
    services = live_services(tmp_path, no_maverick.base_url)
    clock = services.cooldown.clock
    runner = TurnRunner(services)

    def first_model_of_a_screenshot_turn() -> tuple[str, dict]:
        before = len(no_maverick.engine.requests)
        session = Session()
        run(runner, session, "What does this error mean?", [SCREENSHOT])
        return no_maverick.engine.requests[before]["model"], session.routes[0]

    assert first_model_of_a_screenshot_turn()[0] == "llama-4-maverick"  # fails (404), falls back
    clock.now += COOLDOWN_S - 1
    model, r = first_model_of_a_screenshot_turn()
    assert model == "ministral-14b" and r["model"] == "ministral-14b" and r["fallback_from"] is None
    assert "Llama 4 Maverick failed (404) in the last 5 minutes, so it is tried last" in r["reason"]
    assert r["fallbacks"] == ["gemma-3-4b", "kimi-vl-a3b", "llama-4-maverick"]  # still a fallback, the last one
    clock.now += 1  # five minutes after the failure
    assert first_model_of_a_screenshot_turn()[0] == "llama-4-maverick"


def test_the_cooldown_registry_forgets_after_its_time_and_a_new_failure_restarts_it():
    clock = Clock()
    cool = Cooldown(seconds=300, clock=clock)
    cool.failed("a", "404")
    clock.now += 200
    cool.failed("b", "503")
    assert cool.cooling() == {"a": "404", "b": "503"}
    clock.now += 100
    assert cool.cooling() == {"b": "503"}
    cool.failed("b", "timeout")
    clock.now += 250
    assert cool.cooling() == {"b": "timeout"}
    clock.now += 50
    assert cool.cooling() == {}


# --- the pure helpers -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pro():
    catalog = load_catalog()
    policy = load_policy(catalog=catalog)
    return catalog.for_plan("pro", plan_tiers(policy, "pro")), policy


def test_next_fallback_rechecks_images_tools_window_plan_and_the_service_list(pro):
    catalog, _ = pro
    d = RouteDecision("qwen-3-32b", "multilingual", "r", ("kimi-vl-a3b", "gemma-3-27b", "llama-3.3-70b", "glm-5"))
    d = RouteDecision(**{**d.__dict__, "est_tokens": 5000, "context_window": 32768})
    assert next_fallback(d, catalog, images=False).id == "kimi-vl-a3b"
    # Kimi VL A3B takes no tools: with completed rounds it cannot continue the turn; Gemma 3 27B is Premium.
    assert next_fallback(d, catalog, images=False, tools=True).id == "llama-3.3-70b"
    assert next_fallback(d, catalog, images=True, tools=True) is None  # no Pro-usable vision model with tools here
    listed = catalog.with_service_ids(["qwen-3-32b", "glm-5"])
    assert next_fallback(d, listed, images=False).id == "glm-5"  # the list was read since: unlisted are out
    assert next_fallback(d, catalog, images=False, cooling={"kimi-vl-a3b"}).id == "llama-3.3-70b"
    big = RouteDecision(**{**d.__dict__, "est_tokens": 140_000, "context_window": 262_144})
    assert next_fallback(big, catalog, images=False) is None  # every fallback's window is 131,072


def test_demote_moves_an_automatic_route_but_never_a_manual_choice(pro):
    catalog, policy = pro
    catalog = catalog.with_service_ids([i for i in catalog.ids() if i != "kimi-vl-a3b"])  # as Oxlo lists them
    d = route(TurnFacts("what is this?", images=1), catalog, policy)
    assert (d.model, d.fallbacks) == ("llama-4-maverick", ("ministral-14b", "gemma-3-4b"))
    moved = demote(d, catalog, {"llama-4-maverick": "404"}, images=True)
    assert (moved.model, moved.fallbacks, moved.context_window) == (
        "ministral-14b",
        ("gemma-3-4b", "llama-4-maverick"),
        262_144,
    )
    assert moved.rule == "vision" and moved.reason.startswith(d.reason)
    both = demote(d, catalog, {"llama-4-maverick": "404", "ministral-14b": "503"}, images=True)
    assert (both.model, both.fallbacks) == ("gemma-3-4b", ("llama-4-maverick", "ministral-14b"))
    every = {"llama-4-maverick": "404", "ministral-14b": "503", "gemma-3-4b": "timeout"}
    assert demote(d, catalog, every, images=True).model == "llama-4-maverick"  # all failed: order stands
    manual = route(TurnFacts("what is this?", images=1), catalog, policy, "llama-4-maverick")
    kept = demote(manual, catalog, {"llama-4-maverick": "404", "ministral-14b": "404"}, images=True)
    assert kept.model == "llama-4-maverick" and kept.fallbacks == ("gemma-3-4b", "ministral-14b")


def test_route_records_keep_every_field_and_add_fallback_from(pro):
    catalog, policy = pro
    fields = route(TurnFacts(ORDER), catalog, policy).to_json()
    assert {"model", "category", "reason", "fallbacks", "switched_from", "est_tokens", "context_window"} <= set(fields)
    assert {"reduce_logs_to", "rule", "skipped", "warning", "fallback_from"} <= set(fields)
    assert fields["fallback_from"] is None and json.dumps(fields)
