"""Housekeeping: export files expire, Gradio's cache is swept, retention reaches every table (on both backends)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from gradio_client import Client

from supportbot.config import Settings
from supportbot.conversation import TurnRunner
from supportbot.engine import OfflineEngine
from supportbot.housekeeping import DAY_S, EXPORT_TTL_S, ExportFiles, Sweeper, purge
from supportbot.limits import NO_LIMIT
from supportbot.services import Services
from supportbot.session import Session
from supportbot.storage.sandbox import open_sandbox
from supportbot.ui.app import CACHE_SWEEP, build_app
from tests.conftest import launch_app

# Every table a visitor's activity writes to; the seeded demo tables are not among them.
VISITOR_TABLES = ("conversations", "ticket_versions", "sandboxes", "order_changes", "refunds", "escalations")


def settings(data_dir: Path, **overrides) -> Settings:
    return Settings.load({"data_dir": data_dir, "engine": "offline", **overrides}, environ={}, dotenv_path=None)


def count(services: Services, table: str) -> int:
    return services.store.execute(f"SELECT COUNT(*) AS n FROM {table}")[0]["n"]


def run(runner: TurnRunner, session: Session, text: str, budget) -> None:
    async def go():
        async for _ in runner.run(session, text, budget=budget):
            pass

    asyncio.run(go())


# --- exports ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def export_app(tmp_path_factory: pytest.TempPathFactory):
    clock = [time.time()]
    made: dict[str, Services] = {}
    root = tmp_path_factory.mktemp("exports")

    def services(s: Settings) -> Services:
        made["services"] = Services.create(s)
        made["services"].exports = ExportFiles(root, clock=lambda: clock[0])
        return made["services"]

    demo, url = launch_app(tmp_path_factory.mktemp("export-app"), services)
    yield url, root, clock, made["services"]
    demo.close()


def test_export_files_are_removed_once_gradio_has_served_its_copy(export_app) -> None:
    url, root, clock, services = export_app
    client = Client(url, verbose=False, ssl_verify=False)
    client.predict({"text": "Where is my order #48291?", "files": []}, api_name="/chat")
    files, _ = client.predict(api_name="/export")
    downloaded = {Path(f).name: Path(f) for f in files}
    conversation = next(p for name, p in downloaded.items() if name.startswith("conversation-"))
    assert json.loads(conversation.read_text())["format"] == "supportbot.conversation/1"  # what the visitor got
    [first] = list(root.iterdir())
    assert sorted(p.name for p in first.iterdir()) == sorted(downloaded)
    assert all(not str(p).startswith(str(root)) for p in downloaded.values())  # served from Gradio's copy
    clock[0] = time.time() + EXPORT_TTL_S + 1
    client.predict(api_name="/export")  # each export sweeps the expired ones first
    assert not first.exists() and len(list(root.iterdir())) == 1
    # With no further export, the housekeeping thread removes them on its own.
    clock[0] = time.time() + EXPORT_TTL_S + 1
    sweeper = Sweeper(services, every_s=0.05, purge_every_s=3600).start()
    try:
        deadline = time.monotonic() + 5
        while list(root.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list(root.iterdir()) == []
    finally:
        sweeper.stop()


def test_gradio_deletes_uploads_and_its_copies_within_the_hour(tmp_path: Path) -> None:
    demo = build_app(settings(tmp_path))
    every, age = demo.delete_cache
    assert (every, age) == CACHE_SWEEP and every + age <= 3600


# --- retention -------------------------------------------------------------------------------------


def test_retention_purges_every_table_and_keeps_the_seeded_shop(backend, tmp_path: Path) -> None:
    s = backend.settings(tmp_path, retention_days=30, visitor_requests_per_day=100)
    services = backend.services(s, OfflineEngine())
    runner = TurnRunner(services)
    seeded = services.store.execute("SELECT * FROM orders ORDER BY id")
    budget = services.budget("ip:203.0.113.7")
    refund = Session()
    run(runner, refund, "I'd like a refund for order #48258, it never arrived.", budget)
    run(runner, Session(), "This is ridiculous!!! My order #48291 is late AGAIN. I want a human NOW.", budget)
    for table in VISITOR_TABLES:
        assert count(services, table) > 0, table
    assert count(services, "spend_counters") == 1

    assert purge(services, now=time.time() + 10 * DAY_S) == {
        "conversations": 0,
        "sandboxes": 0,
        "counters": 1,  # a finished day is gone whatever the retention
        "exports": 0,
    }
    for table in VISITOR_TABLES:
        assert count(services, table) > 0, table
    gone = purge(services, now=time.time() + 31 * DAY_S)
    assert gone["conversations"] == 2 and gone["sandboxes"] == 2
    for table in (*VISITOR_TABLES, "spend_counters"):
        assert count(services, table) == 0, table
    assert services.store.execute("SELECT * FROM orders ORDER BY id") == seeded
    assert services.history.load(refund.conversation_id) is None


def test_a_conversation_in_use_keeps_its_sandbox(backend, tmp_path: Path) -> None:
    services = backend.services(backend.settings(tmp_path, retention_days=30), OfflineEngine())
    session = Session()
    run(TurnRunner(services), session, "I'd like a refund for order #48258, it never arrived.", NO_LIMIT)
    # 29 days later the conversation takes another turn, which touches its sandbox: it lives on.
    later = time.time() + 29 * DAY_S
    open_sandbox(services.store, session.conversation_id, now=later)
    assert purge(services, now=later + 2 * DAY_S)["sandboxes"] == 0
    assert services.store.sandbox(session.conversation_id).get_order("48258")["status"] == "refunded"


def test_without_retention_only_finished_counter_days_go(backend, tmp_path: Path) -> None:
    services = backend.services(backend.settings(tmp_path, visitor_requests_per_day=100), OfflineEngine())
    run(TurnRunner(services), Session(), "Where is my order #48291?", services.budget("ip:1.2.3.4"))
    gone = purge(services, now=time.time() + 400 * DAY_S)
    assert gone["conversations"] == 0 and gone["counters"] == 1
    assert count(services, "conversations") == 1 and count(services, "refunds") == 0
