"""Turns in worker processes (SUPPORTBOT_TURN_WORKERS): the same behaviour as in process, through a launched app."""

from __future__ import annotations

import pickle
import threading
import time
from pathlib import Path

import pytest
from conftest import launch_app
from gradio_client import Client
from gradio_client.exceptions import AppError

from supportbot.session import Session
from supportbot.workers.state import Tracker, apply_patch, apply_state, session_state

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory):
    """An app whose turns run in one worker process, on a slowly streaming offline engine."""
    import workerservices

    demo, url = launch_app(
        tmp_path_factory.mktemp("workers"),
        worker_services=workerservices.slow,
        turn_workers=1,
        visitor_requests_per_day=40,
    )
    yield demo, url
    demo.turn_pool.close()
    demo.close()


def turn(client: Client, text: str) -> dict:
    client.predict({"text": text, "files": []}, api_name="/chat")
    return client.predict(api_name="/session")


def test_a_turn_in_a_worker_calls_tools_fills_the_ticket_and_is_stored(app):
    demo, url = app
    client = Client(url, verbose=False)
    session = turn(client, "Where is my order #48291? It was supposed to arrive yesterday.")
    assert [c["name"] for c in session["tool_calls"]][0] == "check_order_status"
    assert session["tool_calls"][0]["result"]["status"] == "delayed"
    answer = session["messages"][-1]
    assert answer["role"] == "assistant" and session["tool_calls"][0]["result"]["tracking_number"] in answer["content"]
    assert session["ticket"]["order_ids"] == ["48291"] and session["usage"]
    # The worker stored it; this process reads it back by id.
    other = Client(url, verbose=False)
    stored = other.predict(session["conversation_id"], api_name="/load")
    assert stored["messages"] == session["messages"] and stored["tool_calls"] == session["tool_calls"]


def test_bad_input_is_refused_with_its_message_and_the_session_is_untouched(app, tmp_path: Path):
    demo, url = app
    client = Client(url, verbose=False)
    before = turn(client, "What is your return policy?")
    fake = tmp_path / "screenshot.png"
    fake.write_bytes(b"this is not an image")
    from gradio_client import handle_file

    with pytest.raises(AppError, match="not an image"):
        client.predict({"text": "what is this?", "files": [handle_file(str(fake))]}, api_name="/chat")
    assert client.predict(api_name="/session") == before


def test_a_second_turn_while_one_runs_is_refused_and_stop_keeps_what_arrived(app):
    demo, url = app
    client = Client(url, verbose=False)
    job = client.submit({"text": "What is your return policy for opened items?", "files": []}, api_name="/chat")
    deadline = time.time() + 30
    while not any(m["role"] == "user" for m in client.predict(api_name="/session")["messages"]):
        assert time.time() < deadline, "the turn never started"
        time.sleep(0.05)
    with pytest.raises(AppError, match="still answering"):
        client.predict({"text": "and shipping?", "files": []}, api_name="/chat")
    job.cancel()  # Stop
    deadline = time.time() + 30
    while True:  # the worker hands back what the stopped turn kept
        session = client.predict(api_name="/session")
        last = session["messages"][-1]
        if last["role"] == "assistant":
            break
        assert time.time() < deadline, "the stopped turn's state never came back"
        time.sleep(0.1)
    assert last.get("stopped") or last["content"]  # stopped midway, or it had just finished
    after = turn(client, "Thanks!")  # the conversation goes on
    assert after["messages"][-1]["role"] == "assistant" and not after["messages"][-1].get("error")


def test_two_visitors_at_once_each_get_their_own_sandbox(app):
    demo, url = app
    results = {}

    def visitor(name: str) -> None:
        client = Client(url, verbose=False)
        results[name] = turn(client, "I'd like a refund for order #48258, it never arrived.")

    threads = [threading.Thread(target=visitor, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for session in results.values():
        refund = next(c for c in session["tool_calls"] if c["name"] == "request_refund")
        assert refund["result"]["outcome"] == "approved"  # each in its own sandbox, so both approved


def test_the_visitors_budget_holds_in_the_worker(tmp_path: Path):
    import workerservices

    demo, url = launch_app(tmp_path, worker_services=workerservices.slow, turn_workers=1, visitor_requests_per_day=2)
    try:
        client = Client(url, verbose=False)
        turn(client, "What is your return policy?")  # two requests: a tool round and the answer
        with pytest.raises(AppError, match="SUPPORTBOT_VISITOR_REQUESTS_PER_DAY"):
            client.predict({"text": "And shipping?", "files": []}, api_name="/chat")
    finally:
        demo.turn_pool.close()
        demo.close()


def test_a_patch_carries_new_items_changed_tails_and_fields_but_never_the_busy_flag():
    worker = Session()
    worker.messages = [{"role": "user", "content": "hi", "turn": 1}]
    worker.routes = [{"turn": 1, "model": "a"}]
    local = Session()
    apply_state(local, pickle.loads(pickle.dumps(session_state(worker))))
    tracker = Tracker()
    tracker.patch(worker)
    worker.messages.append({"role": "assistant", "content": "hello", "turn": 1})
    worker.routes[-1]["fallback_from"] = "b"  # changed in place
    worker.turn, worker.busy = 1, True
    patch = pickle.loads(pickle.dumps(tracker.patch(worker)))
    apply_patch(local, patch)
    assert local.messages == worker.messages and local.routes == worker.routes and local.turn == 1
    assert local.busy is False and "busy" not in patch and "history" not in patch
    assert tracker.patch(worker) == {}  # nothing new


def test_a_worker_that_dies_is_replaced_and_the_next_turn_is_served(tmp_path: Path):
    demo, url = launch_app(tmp_path, turn_workers=1)
    try:
        client = Client(url, verbose=False)
        turn(client, "What is your return policy?")
        dead = demo.turn_pool._procs[0]
        dead.kill()
        dead.wait(timeout=10)
        session = turn(client, "Where is my order #48291?")  # a new worker takes it
        assert session["messages"][-1]["role"] == "assistant" and not session["messages"][-1].get("error")
        assert demo.turn_pool._procs[0] is not dead and demo.turn_pool._procs[0].poll() is None
    finally:
        demo.turn_pool.close()
        demo.close()


def test_with_two_workers_a_conversation_continues_on_whichever_worker_is_free(tmp_path: Path):
    # A Space runs one worker per core. A session's next turn goes to the least busy worker: here the
    # other one, while a second visitor's slow turn holds the first. History and sandbox go with it.
    import workerservices

    demo, url = launch_app(tmp_path, worker_services=workerservices.slow, turn_workers=2)
    try:
        alice = Client(url, verbose=False)
        first = turn(alice, "I'd like a refund for order #48258, it never arrived.")
        assert next(c for c in first["tool_calls"] if c["name"] == "request_refund")["result"]["outcome"] == "approved"
        busy = threading.Thread(target=turn, args=(Client(url, verbose=False), "Where is my order #48291?"))
        busy.start()
        deadline = time.monotonic() + 10
        while not demo.turn_pool._jobs and time.monotonic() < deadline:  # the slow turn holds a worker
            time.sleep(0.02)
        held = {job.worker for job in list(demo.turn_pool._jobs.values())}
        second = turn(alice, "Please refund order #48258 again.")
        busy.join()
        assert held == {0}  # so alice's second turn ran on worker 1
        refunds = [c for c in second["tool_calls"] if c["name"] == "request_refund"]
        assert refunds[-1]["result"]["outcome"] != "approved"
        assert "already refunded" in refunds[-1]["result"]["explanation"]
        assert second["messages"][: len(first["messages"])] == first["messages"]
    finally:
        demo.turn_pool.close()
        demo.close()
