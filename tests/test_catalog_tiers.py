"""Tiers, plans and the service's model list: the catalog matches Oxlo as published, and automatic
routes only take models the plan includes and the service lists (issue 14).

The end-to-end tests serve the offline engine on loopback with a chosen model list
(``GET /v1/models``; it answers 404 for any other model) and run real turns through the SDK.
"""

from __future__ import annotations

import asyncio
import json
from datetime import date
from pathlib import Path

import pytest

from supportbot.config import Settings
from supportbot.conversation import TurnRunner
from supportbot.engine import OfflineEngine, start_server
from supportbot.errors import ApiError, CatalogError, ConfigError
from supportbot.events import ErrorEvent, FallbackStarted, RouteChosen
from supportbot.routing.catalog import NOT_LISTED, NOT_ON_PLAN, TOO_SMALL, load_catalog
from supportbot.routing.router import TurnFacts, load_policy, plan_tiers, route
from supportbot.services import Services
from supportbot.session import Session
from supportbot.ui import render
from supportbot.ui.app import model_choices

ASSETS = Path("assets")
SCREENSHOT = ASSETS / "samples" / "checkout-error.png"
LONG_LOG = ASSETS / "samples" / "checkout-service.log"  # ~190K tokens: over the triage window
VISION_PAGE = "https://docs.oxlo.ai/docs/capabilities/vision"
# docs.oxlo.ai/docs/capabilities/vision, read 2026-12-01: API id -> tier
VISION_PAGE_TIERS = {
    "ministral-14b": "pro",
    "llama-4-maverick": "pro",
    "kimi-k2.5": "premium",
    "kimi-k2.6": "premium",
    "kimi-k2-thinking": "premium",
    "gemma-3-4b": "free",
    "gemma-3-27b": "premium",
}
PLANS = ("free", "pro", "premium")
# A service that lists neither Llama 4 Maverick nor the seed's Kimi VL A3B, as Oxlo does not.
SOME = [
    "llama-3.3-70b",
    "deepseek-r1-0528",
    "qwen-3-32b",
    "deepseek-v4-flash",
    "kimi-k2.6",
    "gemma-3-27b",
    "ministral-14b",
    "gemma-3-4b",
]

# --- the catalog's facts --------------------------------------------------------------------


def test_every_model_on_the_vision_page_reads_images_with_its_tier_and_source():
    catalog = load_catalog()
    for model_id, tier in VISION_PAGE_TIERS.items():
        m = catalog.get(model_id)
        assert m.capabilities.vision and m.tier == tier, model_id
        for fact in (m.sources.tier, m.sources.vision):
            assert fact is not None and VISION_PAGE in fact.source and fact.verified, model_id
            assert fact.as_of == date(2026, 12, 1)


def test_kimi_vl_a3b_stays_marked_unconfirmed_and_not_on_the_vision_page():
    m = load_catalog().get("kimi-vl-a3b")
    assert m.capabilities.vision and not m.confirmed and m.tier == "unknown"
    assert not m.sources.vision.verified and "not list" in m.sources.vision.source
    assert "(id unconfirmed)" in m.label


def test_every_model_has_a_tier_and_every_fact_added_says_where_it_comes_from():
    for m in load_catalog():
        assert m.tier in ("free", "pro", "premium", "unknown")
        assert m.sources.tier is not None and m.sources.tier.as_of is not None, m.id
        assert m.source or m.sources.context_window is not None, f"{m.id}: context window without a source"


def test_the_default_vision_preference_is_the_issues_order():
    policy = load_policy(catalog=load_catalog())
    assert policy.preferences["vision"] == [
        "kimi-vl-a3b",
        "gemma-3-27b",
        "kimi-k2.6",
        "llama-4-maverick",
        "ministral-14b",
        "gemma-3-4b",
    ]
    assert set(policy.plans) == set(PLANS)  # the plan names of pricing.json
    assert plan_tiers(policy, "free") == ["free"] and set(plan_tiers(policy, "premium")) == {"free", "pro", "premium"}


# --- editable and validated ------------------------------------------------------------------


def edited(tmp_path: Path, name: str, change) -> Path:
    data = json.loads((ASSETS / name).read_text())
    change(data)
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def model_entry(data: dict, model_id: str) -> dict:
    return next(m for m in data["models"] if m["id"] == model_id)


def test_a_bad_tier_value_is_named(tmp_path: Path):
    path = edited(tmp_path, "models.json", lambda d: model_entry(d, "gemma-3-4b").update(tier="gold"))
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    assert "gemma-3-4b" in str(info.value) and "tier" in str(info.value) and "premium" in str(info.value)


def test_a_known_tier_without_a_source_is_refused(tmp_path: Path):
    path = edited(tmp_path, "models.json", lambda d: model_entry(d, "llama-3.3-70b").update(tier="pro", sources={}))
    with pytest.raises(CatalogError, match=r"llama-3.3-70b.*sources.tier"):
        load_catalog(path)


def test_a_misspelt_source_key_is_named(tmp_path: Path):
    path = edited(tmp_path, "models.json", lambda d: model_entry(d, "gemma-3-4b")["sources"].update(teir={}))
    with pytest.raises(CatalogError, match=r"gemma-3-4b.*sources\.teir"):
        load_catalog(path)


def test_every_preference_pointing_at_a_missing_model_is_named(tmp_path: Path):
    def change(d):
        d["preferences"]["vision"].insert(0, "gemma-27b")  # the old vision page's id
        d["preferences"]["triage"].append("llama-9")

    with pytest.raises(CatalogError) as info:
        load_policy(edited(tmp_path, "routing.json", change), catalog=load_catalog())
    assert "preferences.vision: 'gemma-27b'" in str(info.value) and "preferences.triage: 'llama-9'" in str(info.value)


def test_a_bad_tier_in_a_plan_is_named(tmp_path: Path):
    path = edited(tmp_path, "routing.json", lambda d: d["plans"]["pro"].append("platinum"))
    with pytest.raises(CatalogError, match=r"plans\.pro\.2"):
        load_policy(path, catalog=load_catalog())


def test_an_unknown_plan_stops_start_up_naming_the_variable(tmp_path: Path):
    settings = Settings.load({"data_dir": tmp_path, "engine": "offline", "plan": "gold"}, environ={}, dotenv_path=None)
    with pytest.raises(ConfigError, match="SUPPORTBOT_PLAN.*gold.*free, pro, premium"):
        Services.create(settings)


def test_plans_must_match_the_pricing_plans():
    policy = load_policy(catalog=load_catalog())
    with pytest.raises(CatalogError, match="routing.json plans"):
        plan_tiers(policy, "pro", ["free", "pro", "premium", "team"])


def test_an_edited_tier_changes_the_route(tmp_path: Path):
    # Say Oxlo moves Llama 4 Maverick to Premium: on Pro a screenshot then goes to Ministral 14B.
    path = edited(tmp_path, "models.json", lambda d: model_entry(d, "llama-4-maverick").update(tier="premium"))
    catalog = load_catalog(path)
    policy = load_policy(catalog=catalog)
    pro = catalog.for_plan("pro", plan_tiers(policy, "pro")).with_service_ids(catalog.ids())
    d = route(TurnFacts("what is this?", images=1), pro, policy)
    assert d.model == "ministral-14b" and {"model": "llama-4-maverick", "reason": NOT_ON_PLAN} in d.to_json()["skipped"]


# --- against a local OpenAI-compatible server that lists a chosen subset ------------------------


def live_services(tmp_path: Path, base_url: str, plan: str, **overrides) -> Services:
    settings = Settings.load(
        {"data_dir": tmp_path, "engine": "live", "api_key": "k", "base_url": base_url, "plan": plan}
        | {"max_retries": 0, **overrides},
        environ={},
        dotenv_path=None,
    )
    return Services.create(settings)


def run_turn(services: Services, text: str, files: list[Path] | None = None, **kwargs) -> tuple[Session, list]:
    runner, session = TurnRunner(services), Session()

    async def go():
        return [e async for e in runner.run(session, text, files, **kwargs)]

    return session, asyncio.run(go())


@pytest.fixture(scope="module")
def some_server():
    engine = OfflineEngine(model_ids=SOME)
    with start_server(engine) as server:
        yield server


def test_on_pro_a_screenshot_goes_to_a_listed_pro_vision_model(tmp_path: Path, some_server):
    services = live_services(tmp_path, some_server.base_url, "pro")
    asyncio.run(services.check_catalog())
    session, events = run_turn(services, "What does this error mean?", [SCREENSHOT])
    r = session.routes[0]
    assert r["model"] == "ministral-14b" and services.catalog.get(r["model"]).tier == "pro"
    assert some_server.engine.requests[-1]["model"] == "ministral-14b"  # the request really went there
    skipped = {s["model"]: s["reason"] for s in r["skipped"]}
    assert skipped["llama-4-maverick"] == NOT_LISTED and skipped["kimi-vl-a3b"] == NOT_LISTED
    assert skipped["gemma-3-27b"] == NOT_ON_PLAN and skipped["kimi-k2.6"] == NOT_ON_PLAN
    assert "Kimi VL A3B, Llama 4 Maverick, Kimi K2.5, Kimi K2.5 Thinking (not listed by the service)" in r["reason"]
    assert "Gemma 3 27B, Kimi K2.6 (not on your plan)" in r["reason"]
    assert r["fallbacks"] == ["gemma-3-4b"]  # the fallback order: on the plan and listed, in preference order
    panel = render.routes_html(session)
    assert "not listed by the service" in panel and "not on your plan" in panel and "ministral-14b" in panel


@pytest.mark.parametrize("kimi_vl_listed", [False, True])
def test_on_premium_a_screenshot_goes_to_gemma_3_27b(tmp_path: Path, kimi_vl_listed: bool):
    listed = SOME + ["llama-4-maverick"] + (["kimi-vl-a3b"] if kimi_vl_listed else [])
    with start_server(OfflineEngine(model_ids=listed)) as server:
        services = live_services(tmp_path, server.base_url, "premium")
        asyncio.run(services.check_catalog())
        session, _ = run_turn(services, "What does this error mean?", [SCREENSHOT])
        assert server.engine.requests[-1]["model"] == "gemma-3-27b"
    r = session.routes[0]
    assert r["model"] == "gemma-3-27b" and r["fallbacks"][:2] == ["kimi-k2.6", "llama-4-maverick"]
    # Kimi VL A3B's tier is not published: even when listed it comes after every known Premium model.
    assert ("kimi-vl-a3b" in r["fallbacks"]) is kimi_vl_listed and r["fallbacks"][-1:] == (
        ["kimi-vl-a3b"] if kimi_vl_listed else ["gemma-3-4b"]
    )


@pytest.mark.parametrize("plan", PLANS)
def test_on_every_plan_the_first_choice_is_included_and_listed(tmp_path: Path, some_server, plan: str):
    services = live_services(tmp_path, some_server.base_url, plan)
    catalog = asyncio.run(services.check_catalog())
    tiers = set(plan_tiers(services.policy, plan))
    expected = {
        "free": ("gemma-3-4b", "deepseek-v4-flash", "qwen-3-32b", "llama-3.3-70b"),
        "pro": ("ministral-14b", "deepseek-v4-flash", "qwen-3-32b", "llama-3.3-70b"),
        "premium": ("gemma-3-27b", "kimi-k2.6", "gemma-3-27b", "llama-3.3-70b"),
    }[plan]
    turns = [
        ("What does this error mean?", [SCREENSHOT]),
        ("Our checkout keeps failing, here is the log", [LONG_LOG]),
        ("Hola, ¿dónde está mi pedido #48291? Debía llegar ayer.", None),
        ("Where is my order #48291?", None),
    ]
    for (text, files), want in zip(turns, expected, strict=True):
        before = len(some_server.engine.requests)
        session, events = run_turn(services, text, files)
        r = session.routes[0]
        m = catalog.get(r["model"])
        assert r["model"] == want, (plan, text, r["reason"])
        assert some_server.engine.requests[before]["model"] == want  # sent there, and the server served it
        assert r["model"] in SOME and (m.tier in tiers or m.tier == "unknown")
        if m.tier == "unknown":  # allowed, but said: Oxlo publishes no tier for it
            assert "does not publish" in r["reason"]
        assert not [e for e in events if isinstance(e, ErrorEvent)]
        for f in r["fallbacks"]:  # what a later fallback may use obeys the same rules
            fm = catalog.get(f)
            assert f in SOME and (fm.tier in tiers or fm.tier == "unknown") and f != r["model"]


@pytest.mark.parametrize("plan", PLANS)
def test_a_model_the_service_does_not_list_is_never_chosen_automatically(plan: str):
    catalog = load_catalog()
    policy = load_policy(catalog=catalog)
    facts = [
        TurnFacts("Where is my order #48291?"),
        TurnFacts("what is this", images=1),
        TurnFacts("what is this", images=2, log_tokens=200_000),
        TurnFacts("log", log_tokens=150_000),
        TurnFacts("log", log_tokens=3_000_000),
        TurnFacts("The app crashes with an exception"),
        TurnFacts("Check orders #48291 and #48292 and refund the second one"),
        TurnFacts("Hola, ¿dónde está mi pedido?"),
        TurnFacts("and now?", history_tokens=2_000_000, reducible_log=False),
    ]
    for listed in (SOME, catalog.ids()[::2], catalog.ids()[1::2]):
        c = catalog.for_plan(plan, plan_tiers(policy, plan)).with_service_ids(listed)
        for f in facts:
            try:
                d = route(f, c, policy)
            except CatalogError as exc:  # nothing usable: said, never sent to an unlisted model
                assert "no model can take" in str(exc)
                continue
            assert d.model in listed and set(d.fallbacks) <= set(listed), (listed, f, d)
            assert c.on_plan(c.get(d.model)) is not False and all(c.on_plan(c.get(x)) is not False for x in d.fallbacks)
            assert len(set(d.fallbacks)) == len(d.fallbacks) and d.model not in d.fallbacks
            assert all(s.model not in listed for s in d.skipped if s.reason == NOT_LISTED)


def test_a_screenshot_and_a_long_log_go_to_one_model_in_one_turn(tmp_path: Path, some_server):
    # Kimi K2.6 reads images and holds ~190K tokens of log: on Premium, one request, nothing reduced.
    services = live_services(tmp_path, some_server.base_url, "premium")
    asyncio.run(services.check_catalog())
    before = len(some_server.engine.requests)
    session, events = run_turn(services, "The checkout shows this; log attached", [SCREENSHOT, LONG_LOG])
    r = session.routes[0]
    assert (r["model"], r["rule"], r["reduce_logs_to"]) == ("kimi-k2.6", "vision", None)
    assert {"model": "gemma-3-27b", "reason": TOO_SMALL} in r["skipped"]
    sent = some_server.engine.requests[before]
    assert sent["model"] == "kimi-k2.6"
    parts = sent["messages"][-1]["content"]
    assert any(p["type"] == "image_url" for p in parts) and sum(len(p.get("text", "")) for p in parts) > 300_000


def test_when_the_list_cannot_be_read_routing_proceeds_and_says_so(tmp_path: Path):
    with start_server(OfflineEngine()) as server:
        base_url = server.base_url
    services = live_services(tmp_path, base_url, "pro", request_timeout=2)  # the server is gone: refused
    with pytest.raises(ApiError):
        asyncio.run(services.check_catalog())
    assert not services.catalog.checked and services.catalog.unlisted == frozenset()
    d = route(TurnFacts("what is this?", images=1), services.catalog, services.policy)
    assert d.model == "llama-4-maverick"  # as configured: the first Pro vision model
    assert "could not be checked" in d.reason


def test_a_pick_above_the_plan_is_allowed_with_a_warning_and_a_403_names_plan_and_tier(tmp_path: Path, some_server):
    services = live_services(tmp_path, some_server.base_url, "pro")
    asyncio.run(services.check_catalog())
    some_server.engine.inject("forbidden")
    session, events = run_turn(services, "What does this error mean?", [SCREENSHOT], selected="gemma-3-27b")
    decision = next(e.decision for e in events if isinstance(e, RouteChosen))
    assert decision.model == "gemma-3-27b" and decision.rule == "manual"
    assert decision.warning and "Premium tier" in decision.warning and "Pro" in decision.warning
    assert "⚠" in decision.reason
    # The fallbacks a later change retries on stay within the plan and the list.
    assert decision.fallbacks == ("ministral-14b", "gemma-3-4b")
    # The 403 names plan and tier, and the turn falls back within the plan (tests/test_fallback.py has more).
    fell = next(e for e in events if isinstance(e, FallbackStarted))
    assert fell.status == 403 and "Pro plan" in fell.message and "Gemma 3 27B needs the Premium tier" in fell.message
    assert "SUPPORTBOT_PLAN" in fell.message and fell.model == "ministral-14b"
    assert not [e for e in events if isinstance(e, ErrorEvent)]
    assert "⚠" in render.routes_html(session)


def test_a_pick_the_service_does_not_list_is_allowed_with_a_warning(tmp_path: Path, some_server):
    services = live_services(tmp_path, some_server.base_url, "pro")
    asyncio.run(services.check_catalog())
    d = route(TurnFacts("hello"), services.catalog, services.policy, "glm-5")
    assert d.model == "glm-5" and "not listed by the service" in d.warning and "404" in d.reason


def test_the_model_menu_flags_unlisted_and_above_plan_models_but_keeps_them(tmp_path: Path, some_server):
    services = live_services(tmp_path, some_server.base_url, "pro")
    asyncio.run(services.check_catalog())
    labels = {value: label for label, value in model_choices(services)}
    assert set(labels) == {"auto", *services.catalog.ids()}  # nothing dropped
    assert "Pro plan" in labels["auto"]
    assert "not listed by the service" in labels["llama-4-maverick"] and "Pro" in labels["llama-4-maverick"]
    assert "above your Pro plan" in labels["gemma-3-27b"] and "not listed" not in labels["gemma-3-27b"]
    assert "⚠" not in labels["ministral-14b"] and "⚠" not in labels["llama-3.3-70b"]


def test_the_route_panel_survives_hostile_or_old_routes():
    session = Session()
    session.routes = [
        {"turn": 1, "model": "m", "category": "triage", "reason": "r", "est_tokens": 1, "context_window": 2},
        {
            "turn": 2,
            "model": "m",
            "category": "vision",
            "reason": "r",
            "est_tokens": 1,
            "context_window": 2,
            "skipped": [{"model": "<script>x</script>", "reason": "not on your plan"}, "junk", 3],
            "warning": "<b>careful</b>",
        },
        {"turn": 3, "model": "m", "category": "triage", "reason": "r", "est_tokens": 1, "context_window": 2}
        | {"skipped": "not a list"},
    ]
    panel = render.routes_html(session)
    assert "<script>" not in panel and "&lt;script&gt;" in panel and "<b>careful" not in panel
    assert panel.count("<li>") == 1


def test_when_no_vision_model_is_usable_a_screenshot_is_refused_clearly_and_changes_nothing(tmp_path: Path):
    with start_server(OfflineEngine(model_ids=["llama-3.3-70b", "gemma-3-27b"])) as server:
        services = live_services(tmp_path, server.base_url, "free")
        asyncio.run(services.check_catalog())
        runner, session = TurnRunner(services), Session()

        async def turn(text, files=None):
            return [e async for e in runner.run(session, text, files)]

        with pytest.raises(CatalogError) as info:
            asyncio.run(turn("What does this error mean?", [SCREENSHOT]))
        assert "no model can take images" in str(info.value) and "Gemma 3 27B (not on your plan)" in str(info.value)
        assert "Gemma 3 4B" in str(info.value) and "(not listed by the service)" in str(info.value)
        assert (session.turn, session.messages, server.engine.requests) == (0, [], [])
        asyncio.run(turn("Where is my order #48291?"))  # still usable
        assert session.routes[0]["model"] == "llama-3.3-70b" and server.engine.requests[0]["model"] == "llama-3.3-70b"
