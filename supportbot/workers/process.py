"""The worker process: its own Services and runner, one asyncio loop serving many turns at once.

Started by ``TurnPool`` as ``python -m supportbot.workers FD``: it reads its settings, then commands
(start a turn or a resume, cancel one, stop) from the socket ``FD``, and answers with each burst of
events and the session patch that came with it, then the final session.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from supportbot.conversation import TurnRunner
from supportbot.errors import SupportbotError
from supportbot.limits import NO_LIMIT, Budget, VisitorBudget
from supportbot.services import Services
from supportbot.session import Session
from supportbot.streaming import FRAME_S, batches
from supportbot.workers.state import Tracker, apply_state, session_state


def worker_main(fd: int) -> None:
    """A worker (``python -m supportbot.workers FD``): its settings first, then commands, on socket ``fd``."""
    conn = Connection(fd)
    settings, factory = conn.recv()
    services = factory(settings) if factory is not None else Services.create(settings)
    asyncio.run(_serve(conn, TurnRunner(services)))


async def _serve(conn: Connection, runner: TurnRunner) -> None:
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    send_lock = threading.Lock()
    tasks: dict[int, asyncio.Task] = {}

    def send(message: tuple) -> None:
        with send_lock:
            conn.send(message)

    def read() -> None:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                message = ("stop",)
            loop.call_soon_threadsafe(inbox.put_nowait, message)
            if message[0] == "stop":
                return

    threading.Thread(target=read, name="supportbot-worker-inbox", daemon=True).start()
    send(("ready",))
    while True:
        message = await inbox.get()
        if message[0] == "stop":
            break
        if message[0] == "cancel":
            if (task := tasks.get(message[1])) is not None:
                task.cancel()
            continue
        job = message[1]
        task = loop.create_task(_play(runner, message, send))
        tasks[job] = task
        task.add_done_callback(lambda _t, job=job: tasks.pop(job, None))
    for task in list(tasks.values()):
        task.cancel()


async def _play(runner: TurnRunner, message: tuple, send: Callable[[tuple], None]) -> None:
    """Run one turn (or a resume) on a copy of the visitor's session; stream events and patches back."""
    _, job, kind, state, args, bounds = message
    session = Session()
    apply_state(session, state)
    budget: Budget = VisitorBudget(runner.s.counters, bounds) if bounds else NO_LIMIT
    tracker = Tracker()
    tracker.patch(session)  # the other side starts from the same state

    def progress(fraction: float, description: str) -> None:
        send(("progress", job, fraction, description))

    if kind == "run":
        text, files, selected, ticket_mode, simulate = args
        events = runner.run(
            session,
            text,
            files,
            selected=selected,
            ticket_mode=ticket_mode,
            progress=progress,
            budget=budget,
            simulate=simulate,
        )
    else:
        call_id, approved, ticket_mode = args
        events = runner.resume(session, call_id, approved, ticket_mode=ticket_mode, budget=budget)
    try:
        # One message per burst of events, gathered for half the page's frame: the page redraws at most once
        # a frame, so sending more often costs both processes and shows nothing sooner (9 messages a turn -> 3).
        async for batch in batches(events, FRAME_S / 2):
            send(("events", job, batch, tracker.patch(session)))
    except SupportbotError as exc:
        send(("refused", job, type(exc).__name__, str(exc)))
        return
    except asyncio.CancelledError:
        send(("done", job, session_state(session), True))  # what the stopped turn kept
        raise
    except Exception as exc:  # a bug in a turn must reach the visitor's process, not vanish in this one
        send(("failed", job, f"{type(exc).__name__}: {exc}"))
        raise
    send(("done", job, session_state(session), False))
