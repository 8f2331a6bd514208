"""Spending bounds: settings, visitors, atomic daily counters, and refused turns through the real interfaces."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import gradio as gr
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from supportbot.config import ASSETS_DIR, SPACE_DEFAULTS, Settings
from supportbot.conversation import TurnRunner
from supportbot.engine import OfflineEngine
from supportbot.errors import ConfigError, LimitReached, SupportbotError
from supportbot.events import ErrorEvent
from supportbot.limits import NO_LIMIT, VisitorBudget, client_address, visitor_identity
from supportbot.services import Services
from supportbot.session import Session
from supportbot.storage.counters import APP_SCOPE, SpendCounters
from supportbot.ui.handlers import Playground
from tests.conftest import launch_app

ORDER = "Where is my order #48291?"  # the offline engine answers it in two requests (a tool round, then text)
DAY = 86_400


def settings(data_dir: Path, **overrides) -> Settings:
    return Settings.load(
        {"data_dir": data_dir, "engine": "offline", "max_retries": 0, **overrides}, environ={}, dotenv_path=None
    )


def run(runner: TurnRunner, session: Session, text: str, budget=NO_LIMIT, **kwargs) -> list:
    async def go():
        return [e async for e in runner.run(session, text, budget=budget, **kwargs)]

    return asyncio.run(go())


# --- settings ----------------------------------------------------------------------------------------


def test_space_defaults_apply_only_on_a_space_and_never_over_explicit_values() -> None:
    local = Settings.load(environ={}, dotenv_path=None)
    assert (local.visitor_requests_per_day, local.requests_per_day, local.max_input_tokens_per_turn) == (None,) * 3
    assert local.extraction_allowed and local.trusted_proxies == 0 and local.retention_days is None
    space = Settings.load(environ={"SPACE_ID": "me/supportbot"}, dotenv_path=None)
    assert space.visitor_requests_per_day == 200 and space.requests_per_day == 2000
    assert space.max_input_tokens_per_turn == 200_000 and not space.extraction_allowed
    assert space.trusted_proxies == 1 and space.retention_days == 30
    assert {k: getattr(space, k) for k in SPACE_DEFAULTS} == SPACE_DEFAULTS
    owner = Settings.load(
        environ={"SPACE_ID": "me/x", "SUPPORTBOT_VISITOR_REQUESTS_PER_DAY": "0", "SUPPORTBOT_ALLOW_EXTRACTION": "1"},
        dotenv_path=None,
    )
    assert owner.visitor_requests_per_day == 0 and owner.extraction_allowed and owner.requests_per_day == 2000


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("SUPPORTBOT_VISITOR_REQUESTS_PER_DAY", "-1"),
        ("SUPPORTBOT_REQUESTS_PER_DAY", "lots"),
        ("SUPPORTBOT_MAX_INPUT_TOKENS_PER_TURN", "1.5"),
        ("SUPPORTBOT_ALLOW_EXTRACTION", "perhaps"),
        ("SUPPORTBOT_REQUIRE_LOGIN", "2"),
        ("SUPPORTBOT_TRUSTED_PROXIES", "-1"),
        ("SUPPORTBOT_QUEUE_SIZE", "0"),
    ],
)
def test_bad_limit_settings_are_named(var: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.load(environ={var: value}, dotenv_path=None)
    assert info.value.variable == var and value in str(info.value)


def test_extraction_as_the_apps_mode_needs_extraction_allowed() -> None:
    s = Settings.load(environ={"SPACE_ID": "x", "SUPPORTBOT_TICKET_MODE": "extraction"}, dotenv_path=None)
    with pytest.raises(ConfigError, match="SUPPORTBOT_ALLOW_EXTRACTION"):
        s.check()


def test_the_queue_size_defaults_to_a_multiple_of_the_concurrency() -> None:
    assert Settings.load({"concurrency_limit": 8}, environ={}, dotenv_path=None).queue_max_size == 16
    assert Settings.load({"queue_size": 5}, environ={}, dotenv_path=None).queue_max_size == 5


# --- who a visitor is ----------------------------------------------------------------------------------


def test_the_client_address_is_read_through_the_trusted_hops_only() -> None:
    assert client_address("9.9.9.9", "10.0.0.1", 0) == "10.0.0.1"  # no trusted proxy: the header is ignored
    assert client_address("9.9.9.9, 203.0.113.7", "10.0.0.1", 1) == "203.0.113.7"  # the left entry is forged
    assert client_address("9.9.9.9, 203.0.113.7, 10.0.0.2", "10.0.0.1", 2) == "203.0.113.7"
    assert client_address(None, "10.0.0.1", 1) == "10.0.0.1"  # fewer hops than proxies: the peer
    assert client_address("2001:db8:1:2:aaaa::1", None, 1) == client_address("2001:db8:1:2:bbbb::9", None, 1)
    assert client_address("2001:db8:1:2::1", None, 1) == "2001:db8:1:2::/64"
    assert client_address("::ffff:203.0.113.7", None, 1) == "203.0.113.7"


def test_sign_in_decides_the_visitor_when_required(tmp_path: Path) -> None:
    s = settings(tmp_path, require_login=True)
    with pytest.raises(SupportbotError, match="Sign in with Hugging Face"):
        visitor_identity(s, forwarded_for="1.2.3.4", peer="1.2.3.4", username=None)
    alice_here = visitor_identity(s, forwarded_for=None, peer="1.2.3.4", username="alice")
    alice_there = visitor_identity(s, forwarded_for=None, peer="5.6.7.8", username="alice")
    assert alice_here == alice_there == "hf:alice"
    pg = Playground(Services.create(s, OfflineEngine()))
    profile = gr.OAuthProfile({"name": "Alice", "preferred_username": "alice", "profile": "", "picture": ""})
    assert pg.visitor(None, profile) == "hf:alice"


def test_visitors_are_stored_as_salted_hashes(backend, tmp_path: Path) -> None:
    services = backend.services(backend.settings(tmp_path, max_retries=0, visitor_requests_per_day=5))
    counters = services.counters
    scope = counters.visitor_scope("ip:203.0.113.7")
    assert "203.0.113.7" not in scope and scope == counters.visitor_scope("ip:203.0.113.7")
    assert scope != counters.visitor_scope("ip:203.0.113.8")
    # Same database (another process or replica): same salt, kept in the database.
    again = SpendCounters(backend.services(backend.settings(tmp_path)).store)
    assert again.visitor_scope("ip:203.0.113.7") == scope
    elsewhere = SpendCounters(backend.services(backend.settings(tmp_path / "other")).store)
    assert elsewhere.visitor_scope("ip:203.0.113.7") != scope
    asyncio.run(services.budget("ip:203.0.113.7").reserve())
    stored = services.store.execute("SELECT scope FROM spend_counters")
    assert all("203.0.113" not in row["scope"] for row in stored) and {r["scope"] for r in stored} == {scope}


# --- the counters ----------------------------------------------------------------------------------------


def test_take_is_all_or_nothing_and_never_exceeds_a_limit_under_threads(backend, tmp_path: Path) -> None:
    counters = backend.services(backend.settings(tmp_path)).counters
    assert counters.take([("visitor:a", 5), (APP_SCOPE, 1)]) is None
    refused = counters.take([("visitor:a", 5), (APP_SCOPE, 1)])
    assert refused is not None and (refused.scope, refused.used, refused.allowed) == (APP_SCOPE, 1, 1)
    assert counters.used(["visitor:a", APP_SCOPE]) == {"visitor:a": 1, APP_SCOPE: 1}  # a's +1 was rolled back
    granted: list[bool] = []
    barrier = threading.Barrier(12)

    def worker() -> None:
        barrier.wait()
        for _ in range(5):
            granted.append(counters.take([("visitor:b", 20)]) is None)

    threads = [threading.Thread(target=worker) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert granted.count(True) == 20 and counters.used(["visitor:b"])["visitor:b"] == 20


def test_a_new_day_starts_from_zero_and_the_old_one_is_purged(backend, tmp_path: Path) -> None:
    now = [1_700_000_000.0]
    counters = SpendCounters(backend.services(backend.settings(tmp_path)).store, clock=lambda: now[0])
    counters.add(["visitor:a"], 3)
    resets = counters.resets_at()
    assert resets.hour == resets.minute == 0 and 0 < resets.timestamp() - now[0] <= DAY
    now[0] = resets.timestamp() + 1
    assert counters.used(["visitor:a"]) == {"visitor:a": 0}
    assert counters.purge() == 1 and counters.store.execute("SELECT COUNT(*) AS n FROM spend_counters")[0]["n"] == 0


def test_a_restart_keeps_the_counters(backend, tmp_path: Path) -> None:
    s = backend.settings(tmp_path, max_retries=0, visitor_requests_per_day=2)
    runner = TurnRunner(backend.services(s, OfflineEngine()))
    run(runner, Session(), ORDER, runner.s.budget("ip:203.0.113.7"))
    restarted = backend.services(s, OfflineEngine())  # a new process on the same database
    with pytest.raises(LimitReached) as info:
        run(TurnRunner(restarted), Session(), ORDER, restarted.budget("ip:203.0.113.7"))
    assert (info.value.used, info.value.allowed) == (2, 2)
    assert info.value.variable == "SUPPORTBOT_VISITOR_REQUESTS_PER_DAY"
    run(TurnRunner(restarted), Session(), ORDER, restarted.budget("ip:198.51.100.1"))  # someone else still can


def test_every_request_counts_retries_and_extraction_included(backend, tmp_path: Path) -> None:
    engine = OfflineEngine()
    s = backend.settings(tmp_path, visitor_requests_per_day=100, max_retries=2)
    runner = TurnRunner(backend.services(s, engine))
    budget = runner.s.budget("ip:203.0.113.7")
    engine.inject("server", times=2)  # two attempts the SDK retries
    session = Session()
    run(runner, session, ORDER, budget, ticket_mode="extraction")
    purposes = [u["purpose"] for u in session.usage]
    assert purposes.count("retry") == 2 and "ticket_extraction" in purposes
    assert isinstance(budget, VisitorBudget)
    used = budget.allowance().bounds[0][1]
    assert used == len(session.usage) == len(engine.requests)


@pytest.mark.parametrize("retries", [0, 2])
def test_concurrent_turns_never_overshoot_beyond_the_sdks_retries(backend, tmp_path: Path, retries: int) -> None:
    engine = OfflineEngine(stream_delay_s=0.01)
    limit = 9
    s = backend.settings(tmp_path, requests_per_day=limit, max_retries=retries)
    runner = TurnRunner(backend.services(s, engine))
    if retries:
        engine.inject("server", times=6)  # six discarded attempts: the most the counter may overshoot by

    async def many():
        async def one(i: int):
            return [e async for e in runner.run(Session(), ORDER, budget=runner.s.budget(f"ip:10.0.0.{i}"))]

        return await asyncio.gather(*(one(i) for i in range(12)), return_exceptions=True)

    results = asyncio.run(many())
    used = runner.s.counters.used([APP_SCOPE])[APP_SCOPE]
    assert used == len(engine.requests)  # every attempt the engine saw was counted
    assert limit <= used <= limit + (6 if retries else 0)
    outcomes = []
    for r in results:
        if isinstance(r, BaseException):
            assert isinstance(r, LimitReached), r  # refused before it started
            outcomes.append(("limit", str(r)))
        else:
            errors = [e for e in r if isinstance(e, ErrorEvent)]
            outcomes.append((errors[0].kind, errors[0].message) if errors else ("answered", ""))
    assert sum(kind == "answered" for kind, _ in outcomes) <= limit // 2  # a complete turn takes two requests
    assert {kind for kind, _ in outcomes} <= {"answered", "limit", "server"}  # server: a failure outlived retries
    limited = [message for kind, message in outcomes if kind == "limit"]
    assert limited and all("SUPPORTBOT_REQUESTS_PER_DAY" in m for m in limited)


# --- per-turn size and extraction ---------------------------------------------------------------------


def test_a_turn_over_the_token_cap_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    runner = TurnRunner(Services.create(settings(tmp_path, max_input_tokens_per_turn=1000), OfflineEngine()))
    session = Session()
    with pytest.raises(LimitReached, match=r"this app allows 1,000 per turn \(SUPPORTBOT_MAX_INPUT_TOKENS_PER_TURN\)"):
        run(runner, session, ORDER)
    assert session.messages == [] and session.turn == 0 and not session.busy


def test_a_log_over_the_token_cap_is_reduced_to_fit(tmp_path: Path) -> None:
    cap = 100_000
    runner = TurnRunner(Services.create(settings(tmp_path, max_input_tokens_per_turn=cap), OfflineEngine()))
    session = Session()
    run(runner, session, "why does checkout fail?", files=[ASSETS_DIR / "samples" / "checkout-service.log"])
    route = session.routes[-1]
    assert route["est_tokens"] <= cap < route["est_tokens"] * 3
    assert "100,000-token limit per turn" in route["reason"]
    [log] = session.messages[0]["attachments"]
    assert log["reduced"] and log["sent_tokens"] < log["est_tokens"] and log["sent_tokens"] < cap
    assert session.messages[-1]["role"] == "assistant" and not session.messages[-1].get("error")


def test_extraction_is_refused_when_not_allowed(tmp_path: Path) -> None:
    runner = TurnRunner(Services.create(settings(tmp_path, allow_extraction=False), OfflineEngine()))
    session = Session()
    with pytest.raises(SupportbotError, match="SUPPORTBOT_ALLOW_EXTRACTION"):
        run(runner, session, ORDER, ticket_mode="extraction")
    assert session.messages == []
    run(runner, session, ORDER, ticket_mode="inline")
    assert all(u["purpose"] != "ticket_extraction" for u in session.usage)


def test_a_budget_spent_mid_extraction_skips_the_ticket_not_the_answer(tmp_path: Path) -> None:
    runner = TurnRunner(Services.create(settings(tmp_path, visitor_requests_per_day=2), OfflineEngine()))
    session = Session()
    run(runner, session, ORDER, runner.s.budget("ip:1.1.1.1"), ticket_mode="extraction")
    assert session.messages[-1]["role"] == "assistant" and not session.messages[-1].get("error")
    assert session.ticket_error.startswith("Ticket extraction skipped: Your daily request limit is reached")


# --- through the launched app ---------------------------------------------------------------------------


def client(url: str, address: str | None = None) -> Client:
    headers = {"X-Forwarded-For": address} if address else None
    return Client(url, verbose=False, ssl_verify=False, headers=headers)


def turn(c: Client, text: str = ORDER, **kwargs) -> dict:
    c.predict({"text": text, "files": []}, api_name="/chat", **kwargs)
    return c.predict(api_name="/session")


@pytest.fixture(scope="module")
def clock() -> list[float]:
    import time

    return [time.time()]


@pytest.fixture(scope="module")
def visitor_app(tmp_path_factory: pytest.TempPathFactory, clock: list[float]):
    def services(s: Settings) -> Services:
        made = Services.create(s)
        made.counters = SpendCounters(made.store, clock=lambda: clock[0])
        return made

    demo, url = launch_app(
        tmp_path_factory.mktemp("limits"), services, visitor_requests_per_day=2, trusted_proxies=1, max_retries=0
    )
    yield url
    demo.close()


def test_a_visitor_over_the_limit_is_refused_with_the_reason_and_loses_nothing(visitor_app: str, clock) -> None:
    alice = client(visitor_app, "203.0.113.7")
    before = turn(alice)
    with pytest.raises(AppError) as info:
        alice.predict({"text": "and #48258?", "files": []}, api_name="/chat")
    message = str(info.value)
    assert "Your daily request limit is reached: 2 of 2 requests used today" in message
    assert "(SUPPORTBOT_VISITOR_REQUESTS_PER_DAY)" in message and "It resets at 00:00 UTC (in " in message
    assert alice.predict(api_name="/session") == before
    # The same visitor behind a forged left entry is still the same visitor.
    with pytest.raises(AppError, match="Your daily request limit"):
        turn(client(visitor_app, "192.0.2.1, 203.0.113.7"))
    # Another visitor has a budget of their own.
    bob = turn(client(visitor_app, "198.51.100.9"))
    assert bob["messages"][-1]["role"] == "assistant" and not bob["messages"][-1].get("error")
    # The next day the conversation simply goes on.
    clock[0] += DAY
    after = turn(alice, "and #48258?")
    assert after["turns"] == before["turns"] + 1 and after["messages"][: len(before["messages"])] == before["messages"]


@pytest.fixture(scope="module")
def app_limited(tmp_path_factory: pytest.TempPathFactory):
    demo, url = launch_app(tmp_path_factory.mktemp("app-limit"), requests_per_day=3, trusted_proxies=1, max_retries=0)
    yield url
    demo.close()


def test_the_app_wide_limit_holds_across_visitors_and_stops_a_turn_cleanly(app_limited: str) -> None:
    first = turn(client(app_limited, "203.0.113.1"))  # two requests
    assert not first["messages"][-1].get("error")
    second = turn(client(app_limited, "203.0.113.2"))  # its tool round fits, its answer does not
    assert "check_order_status" in [c["name"] for c in second["tool_calls"]]
    assert all(c["ok"] for c in second["tool_calls"])
    last = second["messages"][-1]
    assert last["role"] == "assistant" and last["error_kind"] == "limit"
    assert "This app's daily request limit (all visitors) is reached: 3 of 3" in last["error"]
    assert len(second["usage"]) == 1
    with pytest.raises(AppError, match=r"SUPPORTBOT_REQUESTS_PER_DAY"):
        turn(client(app_limited, "203.0.113.3"))


def test_the_usage_panel_shows_what_is_left(tmp_path: Path) -> None:
    services = Services.create(settings(tmp_path, visitor_requests_per_day=5, requests_per_day=50, trusted_proxies=1))
    pg = Playground(services)
    request = gr.Request(headers={"x-forwarded-for": "203.0.113.7"}, client={"host": "10.0.0.1"})
    session = Session()

    async def chat():
        async for _ in pg.chat({"text": ORDER, "files": []}, session=session, request=request):
            pass

    asyncio.run(chat())
    usage_html = pg.details(session, None, request)[3]
    assert "You: <b>3</b> of 5 requests left" in usage_html
    assert "This app (all visitors): <b>48</b> of 50 requests left" in usage_html
    assert "resets 00:00 UTC" in usage_html
    unbounded = Playground(Services.create(settings(tmp_path / "free")))
    assert "requests left" not in unbounded.details(Session(), None, request)[3]


def test_sign_in_is_required_when_configured(tmp_path: Path) -> None:
    demo, url = launch_app(tmp_path, require_login=True)
    try:
        with pytest.raises(AppError, match="Sign in with Hugging Face"):
            turn(client(url))
    finally:
        demo.close()


def test_extraction_cannot_be_chosen_on_the_page_when_not_allowed(tmp_path: Path) -> None:
    demo, url = launch_app(tmp_path, allow_extraction=False)
    try:
        c = client(url)
        with pytest.raises(AppError):
            c.predict({"text": ORDER, "files": []}, "auto", "all", "extraction", api_name="/chat")
        assert c.predict(api_name="/session")["messages"] == []
        assert turn(c)["messages"][-1]["role"] == "assistant"
    finally:
        demo.close()


def test_the_chat_queue_refuses_work_beyond_its_size(tmp_path: Path) -> None:
    def slow(s: Settings) -> Services:
        return Services.create(s, OfflineEngine(stream_delay_s=0.02))

    demo, url = launch_app(tmp_path, slow, concurrency_limit=1, queue_size=1)
    try:
        clients = [client(url) for _ in range(3)]
        jobs = [c.submit({"text": ORDER, "files": []}, api_name="/chat") for c in clients]
        outcomes = []
        for job in jobs:
            try:
                job.result(timeout=60)
                outcomes.append("done")
            except Exception as exc:  # noqa: BLE001 - the refusal is what we look for
                outcomes.append(str(exc))
        assert outcomes.count("done") >= 1
        assert any("Queue is full" in o for o in outcomes), outcomes
    finally:
        demo.close()


def test_a_turn_stopped_by_a_limit_says_so_in_the_chat(tmp_path: Path) -> None:
    from supportbot.ui.render import chat_view

    runner = TurnRunner(Services.create(settings(tmp_path, requests_per_day=1), OfflineEngine()))
    session = Session()
    run(runner, session, ORDER, runner.s.budget("ip:1.1.1.1"))
    answer = chat_view(session)[-1]["content"]
    assert answer.startswith("⏳ **Limit reached.** This app's daily request limit (all visitors) is reached")
