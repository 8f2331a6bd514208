"""The 🧪 QA tab through a launched app: /save_scenario, /run_scenarios and /simulate with gradio_client,
on the offline engine; the engine's latency header and the simulation's refusals through their own doors."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from supportbot.client import ClientFactory
from supportbot.config import ASSETS_DIR, Settings
from supportbot.conversation import TurnRunner
from supportbot.engine import LATENCY_HEADER, MAX_LATENCY_S, OfflineEngine
from supportbot.errors import ScenarioError, SupportbotError
from supportbot.qa.runner import run_scenario
from supportbot.qa.scenario import load_text, load_untrusted
from supportbot.services import Services
from supportbot.session import Session
from supportbot.ui.handlers import Playground
from supportbot.ui.qa_view import MAX_UPLOAD_BYTES, QaHandlers
from tests.conftest import launch_app

ORDER = "Where is my order #48291?"
REFUND = "I'd like a refund for order #48258, it never arrived."


def say(client: Client, text: str):
    return client.predict({"text": text, "files": []}, api_name="/chat")


def last_texts(chat) -> str:
    """Every text of the chat, joined."""
    return " ".join(part.get("text", "") for m in chat for part in m["content"] if isinstance(part, dict))


def last_answer(chat) -> str:
    """The text of the chat's last message (the turn's answer or its error)."""
    return " ".join(part.get("text", "") for part in chat[-1]["content"] if isinstance(part, dict))


@pytest.fixture(scope="module")
def qa_app(tmp_path_factory: pytest.TempPathFactory):
    """An app on the offline engine with the Space's visitor budget (so runs are charged), and its services."""
    made: list[Services] = []

    def services(settings: Settings) -> Services:
        made.append(Services.create(settings))
        return made[0]

    data_dir = tmp_path_factory.mktemp("qa-app")
    demo, url = launch_app(data_dir, services=services, visitor_requests_per_day=40)
    yield url, made[0], data_dir
    demo.close()


def test_saving_an_empty_conversation_says_so_without_an_error(qa_app):
    client = Client(qa_app[0], verbose=False)
    path, text, message = client.predict(api_name="/save_scenario")
    assert path is None and text == ""
    assert "Nothing to save yet" in message


def test_a_saved_conversation_loads_and_passes_when_run_again(qa_app, tmp_path: Path):
    client = Client(qa_app[0], verbose=False)
    say(client, ORDER)
    say(client, REFUND)
    path, text, message = client.predict(api_name="/save_scenario")
    assert "Saved 2 turns" in message
    saved = Path(path).read_text(encoding="utf-8")
    assert saved.rstrip("\n") == text.rstrip("\n")  # the download is the text shown (the code view trims the end)
    scenario = load_text(saved, "saved.toml")
    assert [t.text for t in scenario.turns] == [ORDER, REFUND]
    refund = [t for t in scenario.turns[1].expect.tools if t.name == "request_refund"]
    assert refund and refund[0].arguments["order_id"] == "48258"
    assert scenario.turns[1].expect.ticket["order_ids"] == ["48291", "48258"]
    result = asyncio.run(run_scenario(scenario, overrides={"engine": "offline"}, environ={}, dotenv_path=None))
    assert result.passed, [c for c in result.checks if c.status == "fail"]
    names = {c.expectation for c in result.checks}
    assert any(n.startswith("tool request_refund(") for n in names)
    assert "route category = triage" in names


def test_a_shipped_scenario_runs_and_passes_and_is_charged_to_the_visitor(qa_app):
    url, services, _ = qa_app
    client = Client(url, verbose=False)
    budget = services.budget("ip:127.0.0.1")
    say(client, REFUND)  # the visitor's own conversation, which the run must leave alone
    session_before = client.predict(api_name="/session")
    used_before = budget.allowance().bounds[0][1]
    table, summary = client.predict(["example-1-order"], None, api_name="/run_scenarios")
    assert client.predict(api_name="/session") == session_before
    assert summary == "1 scenario: 1 passed"
    assert table["headers"] == ["scenario", "step", "expectation", "result", "detail"]
    rows = table["data"]
    assert rows and {r[3] for r in rows} == {"pass"}
    assert {r[0] for r in rows} == {"Example: order status"}
    requests = int(next(r[4] for r in rows if r[2] == "answered").split(", ")[1].split()[0])
    assert budget.allowance().bounds[0][1] - used_before == requests >= 1


WRONG = """name = "Deliberately wrong"
[[turns]]
text = "Where is my order #48291?"
[turns.expect]
contains = ["banana"]
[[turns.expect.tools]]
name = "check_order_status"
arguments = { order_id = "48291" }
"""


def test_an_uploaded_scenario_with_a_wrong_expectation_shows_fail(qa_app, tmp_path: Path):
    upload = tmp_path / "wrong.toml"
    upload.write_text(WRONG, encoding="utf-8")
    client = Client(qa_app[0], verbose=False)
    table, summary = client.predict([], handle_file(str(upload)), api_name="/run_scenarios")
    assert summary == "1 scenario: 0 passed, 1 failed"
    by = {r[2]: r for r in table["data"]}
    assert by["answer contains 'banana'"][3] == "fail"
    assert "48291" in by["answer contains 'banana'"][4]  # the detail shows the answer it got
    assert by['tool check_order_status(order_id="48291")'][3] == "pass"


def hostile_cases(data_dir: Path) -> list[tuple[str, str, str]]:
    db = data_dir / "supportbot.sqlite3"
    turn = '[[turns]]\ntext = "hi"\n'
    return [
        ("huge.toml", turn + "# " + "x" * (MAX_UPLOAD_BYTES + 10) + "\n", f"at most {MAX_UPLOAD_BYTES:,}"),
        ("bad.toml", "[[turns]\ntext = ", "not valid TOML"),
        ("up.toml", turn + 'attachments = ["../../etc/passwd"]\n', "attachments are paths inside assets/"),
        ("data.toml", turn + f"attachments = [{str(db)!r}]\n", "attachments are paths inside assets/"),
        ("key.toml", turn + "colour = 1\n", "turns[0].colour: Extra inputs are not permitted"),
        ("many.toml", turn * 13, "at most 12"),
        ("log.toml", turn + 'generate = ["log:20000000"]\n', "may generate 3,000,000"),
    ]


def test_hostile_uploads_get_a_clear_message_and_run_nothing(qa_app, tmp_path: Path):
    url, _, data_dir = qa_app
    client = Client(url, verbose=False)
    for name, body, says in hostile_cases(data_dir):
        upload = tmp_path / name
        upload.write_text(body, encoding="utf-8")
        table, message = client.predict([], handle_file(str(upload)), api_name="/run_scenarios")
        assert table["data"] == [], name
        assert message.startswith("⚠️") and says in message, (name, message)
        assert name in message or name == "huge.toml" or "uploaded" in message, message


def test_the_data_directory_is_refused_even_inside_assets():
    blocked = ASSETS_DIR / "samples"  # stands for a data directory someone configured under assets/
    body = '[[turns]]\ntext = "hi"\nattachments = ["samples/checkout-error.png"]\n'
    with pytest.raises(ScenarioError, match="not a file a scenario may attach"):
        load_untrusted(body.encode(), "x.toml", max_bytes=10_000, max_turns=5, max_log_tokens=0, blocked=[blocked])
    ok = load_untrusted(body.encode(), "x.toml", max_bytes=10_000, max_turns=5, max_log_tokens=0, blocked=[])
    assert ok.turns[0].attachments == ["samples/checkout-error.png"]


def test_unknown_names_none_chosen_and_the_space_bound_are_refused(tmp_path: Path):
    settings = Settings.load({"data_dir": tmp_path, "engine": "offline"}, environ={}, dotenv_path=None)
    services = Services.create(settings)
    try:
        qa = QaHandlers(Playground(services), max_scenarios=3)
        with pytest.raises(SupportbotError, match="at most 3 scenarios per click"):
            qa._chosen(["example-1-order", "example-2-refund", "example-3-policy", "example-4-escalation"], None)
        with pytest.raises(SupportbotError, match="No shipped scenario named '../../etc/passwd'"):
            qa._chosen(["../../etc/passwd"], None)
        with pytest.raises(SupportbotError, match="Pick a shipped scenario"):
            qa._chosen([], None)
        assert [s.name for s in qa._chosen(["example-1-order"] * 5, None)] == ["Example: order status"]
    finally:
        services.close()


def test_a_run_the_visitors_budget_cannot_cover_is_refused(tmp_path: Path):
    demo, url = launch_app(tmp_path, visitor_requests_per_day=1)
    try:
        client = Client(url, verbose=False)
        table, message = client.predict(["capability-order"], None, api_name="/run_scenarios")  # two turns
        assert table["data"] == []
        assert "need at least 2 model requests; you have 1 of 1 left today" in message
    finally:
        demo.close()


# --- simulate --------------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [0, 1])
def test_a_simulated_failure_is_this_visitors_only_and_the_chat_stays_usable(tmp_path: Path, workers: int):
    demo, url = launch_app(tmp_path, turn_workers=workers)
    try:
        assert simulate_group_visible(url) is True
        tester, other = Client(url, verbose=False), Client(url, verbose=False)
        note = tester.predict("server", 1.5, api_name="/simulate")
        assert "server" in note and "Other visitors are not affected" in note
        job = tester.submit({"text": ORDER, "files": []}, api_name="/chat")  # slowed by 1.5 s per request
        answered = last_texts(say(other, ORDER)[0])  # meanwhile, another visitor's turn
        assert "48291" in answered and "went wrong" not in answered
        assert not job.done()  # the other turn really ran while the simulated one was in flight
        failed = last_texts(job.result()[0])
        assert "Simulated (QA tab)" in failed and "**server**" in failed
        assert "The model service had trouble (500)" in failed
        saved = tester.predict(api_name="/save_scenario")[1]  # a saved scenario says which turn was simulated
        assert "answered = false" in saved and "failure was simulated in the QA tab" in saved
        assert tester.predict("none", 0, api_name="/simulate").startswith("Nothing simulated")
        again = say(tester, ORDER)[0]
        assert "The model service had trouble (500)" in last_texts(again)  # the failed turn is still shown
        assert "48291" in last_answer(again) and "went wrong" not in last_answer(again)  # answered this time
    finally:
        if demo.turn_pool is not None:
            demo.turn_pool.close()
        demo.close()


def test_simulate_is_refused_unless_the_engine_is_the_offline_one(tmp_path: Path):
    cassette = ASSETS_DIR / "cassettes" / "order-escalation.jsonl"
    demo, url = launch_app(tmp_path, engine="replay", cassette_path=cassette)
    try:
        assert simulate_group_visible(url) is False  # the controls are hidden...
        with pytest.raises(AppError, match="Simulated failures need the offline engine"):
            Client(url, verbose=False).predict("rate_limit", 0, api_name="/simulate")  # ...and the API refuses
    finally:
        demo.close()
    live = Settings.load(
        {"data_dir": tmp_path / "live", "engine": "live", "api_key": "sk-test-0000000000"}, environ={}, dotenv_path=None
    )
    factory = ClientFactory(live)
    with pytest.raises(SupportbotError, match="need the offline engine"):
        factory.simulation("rate_limit", 0)
    offline = ClientFactory(Settings.load({"data_dir": tmp_path, "engine": "offline"}, environ={}, dotenv_path=None))
    simulated = offline.simulation("rate_limit", 2)
    # A turn carrying a simulation made for the offline engine is still refused by a live app, before it starts.
    services = Services.create(live)
    try:
        session = Session()
        with pytest.raises(SupportbotError, match="need the offline engine"):
            asyncio.run(_first(TurnRunner(services).run(session, ORDER, simulate=simulated)))
        assert session.messages == [] and not session.busy
    finally:
        services.close()
    for bad in (-1, MAX_LATENCY_S + 0.5, "nan", "soon"):
        with pytest.raises(SupportbotError, match="Added latency"):
            offline.simulation(None, bad)
    with pytest.raises(SupportbotError, match="Unknown failure kind"):
        offline.simulation("meteor", 0)


def simulate_group_visible(url: str) -> bool:
    """Whether the group holding the Simulate controls is visible, read from the page's config."""
    config = httpx.get(url + "config").json()
    components = {c["id"]: c for c in config["components"]}
    target = next(c["id"] for c in config["components"] if c["props"].get("elem_id") == "sb-qa-fail")

    def parents(node, trail):
        if node["id"] == target:
            return trail
        for child in node.get("children", ()):
            if (found := parents(child, [*trail, node["id"]])) is not None:
                return found
        return None

    group = next(i for i in reversed(parents(config["layout"], [])) if components[i]["type"] == "group")
    return components[group]["props"]["visible"]


async def _first(events):
    async for event in events:
        return event


def test_the_engine_latency_header_is_validated_and_capped():
    engine = OfflineEngine(keep_requests=False)
    body = b'{"model": "llama-3.3-70b", "messages": [{"role": "user", "content": "hi"}]}'
    assert engine.handle("POST", "/v1/chat/completions", {LATENCY_HEADER: "2.5"}, body).latency_s == 2.5
    assert engine.handle("POST", "/v1/chat/completions", {LATENCY_HEADER: "999"}, body).latency_s == MAX_LATENCY_S
    assert engine.handle("POST", "/v1/chat/completions", {}, body).latency_s == 0
    failing = {LATENCY_HEADER: "1", "x-supportbot-fail": "rate_limit"}
    out = engine.handle("POST", "/v1/chat/completions", failing, body)
    assert (out.status, out.latency_s) == (429, 1.0)
    for bad in ("-1", "nan", "inf", "soon"):
        out = engine.handle("POST", "/v1/chat/completions", {LATENCY_HEADER: bad}, body)
        assert out.status == 400 and LATENCY_HEADER in out.body.decode(), bad


def test_two_visitors_simulating_at_once_keep_their_own_failures(tmp_path: Path):
    demo, url = launch_app(tmp_path)
    try:
        a, b = Client(url, verbose=False), Client(url, verbose=False)
        a.predict("rate_limit", 0, api_name="/simulate")
        b.predict("forbidden", 0, api_name="/simulate")
        out: dict[str, str] = {}
        threads = [
            threading.Thread(target=lambda c=c, k=k: out.update({k: last_texts(say(c, ORDER)[0])}))
            for c, k in ((a, "a"), (b, "b"))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert "Rate limit reached (429)" in out["a"] and "(403)" not in out["a"]
        assert "Not allowed (403)" in out["b"] and "(429)" not in out["b"]
    finally:
        demo.close()


def test_a_simulated_failure_leaves_no_model_cooling_down_for_other_visitors(tmp_path: Path):
    # The shared cooldown steers every visitor's routes away from a failed model: a tester's simulated
    # failure says nothing of the model, so it must not put one there. A real failure does (the control).
    services = Services.create(Settings.load({"data_dir": tmp_path, "engine": "offline"}, environ={}, dotenv_path=None))
    runner = TurnRunner(services)

    async def turn(**kwargs) -> None:
        async for _ in runner.run(
            Session(), "What does this error mean?", [ASSETS_DIR / "samples/checkout-error.png"], **kwargs
        ):
            pass

    asyncio.run(turn(simulate=services.clients.simulation("not_found", 0)))
    assert services.cooldown.cooling() == {}
    services.clients.engine.inject("not_found", 1)  # the same failure, for real this time
    asyncio.run(turn())
    assert services.cooldown.cooling()  # the model that failed is now tried last


@pytest.mark.parametrize(
    "body, said",
    [
        (
            "[[turns]]\ntext = 'hi'\n[turns.expect]\nticket = {category = " + "[" * 40_000 + "]" * 40_000 + "}\n",
            "nested",
        ),
        ("[[turns]]\ntext = 'hi'\nattachments = ['" + "a" * 5000 + "']\n", "paths inside assets"),
        ('[[turns]]\ntext = "hi"\nattachments = ["samples/a\\u0000b"]\n', "no such file"),
        (
            "[[turns]]\ntext = 'hi'\nattachments = [" + ", ".join(["'samples/checkout-service.log'"] * 9) + "]\n",
            "at most 8",
        ),
    ],
    ids=["deep-nesting", "long-name", "nul-byte", "many-attachments"],
)
def test_crafted_scenarios_are_refused_with_a_message_not_a_crash(body: str, said: str):
    with pytest.raises(ScenarioError, match=said):
        load_untrusted(body.encode(), "crafted.toml", max_bytes=2**20, max_turns=12, max_log_tokens=10**6, blocked=[])


def test_a_run_asked_for_while_another_goes_on_is_answered_at_once_and_the_first_finishes(tmp_path: Path):
    # One run at a time in the app, but nobody waits in the shared queue for it: the second is told so.
    from supportbot.ui.qa_view import RUN_BUSY

    demo, url = launch_app(tmp_path, visitor_requests_per_day=0)
    try:
        long_run = ["capability-long-log", "capability-reduced-log", "example-7-long-log"]
        first = Client(url, verbose=False).submit(long_run, None, api_name="/run_scenarios")
        other = Client(url, verbose=False)
        deadline, told, first_running = time.monotonic() + 30, False, False
        while not first.done() and time.monotonic() < deadline:
            _, said = other.predict(["example-1-order"], None, api_name="/run_scenarios")
            if RUN_BUSY in said:
                told, first_running = True, not first.done()
                break
        assert told, "the second run was never refused while the first ran"
        assert first_running  # the answer came while the first still ran: it did not wait in the queue
        assert first.result()[1] == "3 scenarios: 3 passed"
    finally:
        demo.close()
