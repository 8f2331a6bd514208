"""Turns in worker processes: the SDK, the agent loop and the tools run beside Gradio's event loop.

With ``SUPPORTBOT_TURN_WORKERS=N`` the app starts N worker processes, each with its own
``Services`` (its own database connections and SDK clients) and one asyncio loop serving many
turns at once. ``TurnPool`` has ``TurnRunner``'s interface (``run``, ``resume``, ``load``), so the
UI cannot tell them apart: a turn's session goes to a worker, its events come back as they happen
with the changes they made to the session, and the final session replaces the visitor's copy.
The process that serves pages then spends per turn only what rendering costs.

What stays as it was: one turn at a time per session (checked here, before anything is sent);
Stop (a cancelled turn is cancelled in the worker, which keeps what arrived, as in process);
bad input raises before any event, the session untouched; the visitor's budget and sandbox live in
the database every process shares. Per process: each worker keeps its own model cooldown.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from supportbot.attachments.intake import refuse_empty
from supportbot.client import Simulation
from supportbot.config import Settings
from supportbot.conversation import Progress, TurnRunner
from supportbot.errors import SupportbotError
from supportbot.events import Event
from supportbot.limits import NO_LIMIT, Budget, VisitorBudget
from supportbot.services import Services
from supportbot.session import Session
from supportbot.workers.state import apply_patch, apply_state, session_state

# How long a stopped turn may take to hand back what it kept before the visitor's copy is freed anyway.
STOP_GRACE_S = 30.0


class RemoteRefusal(SupportbotError):
    """A turn refused in a worker (bad input, a limit, a pending approval): its message, and its kind."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)


@dataclass
class _Job:
    session: Session
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue
    progress: Progress | None
    worker: int
    conn: Any = None  # the worker connection the job was sent on
    stopped: bool = False


class TurnPool:
    """Runs turns in worker processes; the same interface as ``TurnRunner`` for the UI."""

    def __init__(
        self, runner: TurnRunner, workers: int, *, factory: Callable[[Settings], Services] | None = None
    ) -> None:
        """``runner`` serves what needs no worker (loading a conversation); ``factory`` (picklable: a
        module-level function) builds each worker's Services, ``Services.create`` by default."""
        if workers < 1:
            raise ValueError("a TurnPool needs at least one worker")
        self.runner = runner
        self.s = runner.s
        self._jobs: dict[int, _Job] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._conns: list[Connection | None] = []
        self._send_locks: list[threading.Lock] = []
        self._procs: list[subprocess.Popen | None] = []
        self._factory = factory
        self._conns = [None] * workers
        self._send_locks = [threading.Lock() for _ in range(workers)]
        self._procs = [None] * workers
        for index in range(workers):
            self._spawn(index)

    def _spawn(self, index: int) -> None:
        """Start worker ``index``: a fresh interpreter running only this module (no Gradio, no copy of the
        server's threads or locks), with this process's import path so it imports the same code."""
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        ours, theirs = socket.socketpair()
        proc = subprocess.Popen(
            [sys.executable, "-m", "supportbot.workers", str(theirs.fileno())], pass_fds=[theirs.fileno()], env=env
        )
        theirs.close()
        conn = Connection(ours.detach())
        # Not waited for: the page comes up while the worker imports; a first turn's message waits in the socket.
        conn.send((self.s.settings, self._factory))
        self._conns[index], self._procs[index] = conn, proc
        threading.Thread(target=self._read, args=(index, conn), daemon=True, name=f"turns-{index}-outbox").start()

    # --- what needs no worker --------------------------------------------------------------------

    def load(self, conversation_id: str) -> Session | None:
        """A stored conversation (see ``TurnRunner.load``)."""
        return self.runner.load(conversation_id)

    def purge_expired(self, every_s: float = 3600.0) -> int:
        """Retention, from this process (see ``TurnRunner.purge_expired``)."""
        return self.runner.purge_expired(every_s)

    def close(self) -> None:
        """Stop the workers."""
        for index, conn in enumerate(self._conns):
            if conn is None:
                continue
            try:
                with self._send_locks[index]:
                    conn.send(("stop",))
            except OSError:
                continue  # already gone
        for proc in filter(None, self._procs):
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()

    # --- turns -------------------------------------------------------------------------------------

    async def run(
        self,
        session: Session,
        text: str,
        files: list[str | Path] | None = None,
        *,
        selected: str | None = None,
        ticket_mode: str | None = None,
        progress: Progress | None = None,
        budget: Budget = NO_LIMIT,
        simulate: Simulation | None = None,
    ) -> AsyncIterator[Event]:
        """``TurnRunner.run``, in a worker (the simulation goes along with the turn)."""
        refuse_empty(text, files)  # before the session is sent anywhere
        args = (text, [str(f) for f in files or ()], selected, ticket_mode, simulate)
        async for event in self._job("run", session, args, progress, budget):
            yield event

    async def resume(
        self,
        session: Session,
        call_id: str,
        approved: bool,
        *,
        ticket_mode: str | None = None,
        budget: Budget = NO_LIMIT,
    ) -> AsyncIterator[Event]:
        """``TurnRunner.resume``, in a worker."""
        async for event in self._job("resume", session, (call_id, approved, ticket_mode), None, budget):
            yield event

    async def _job(
        self, kind: str, session: Session, args: tuple, progress: Progress | None, budget: Budget
    ) -> AsyncIterator[Event]:
        # Checked and set before anything is sent: two turns at once would each overwrite the other's session.
        if session.busy:
            raise SupportbotError(
                "This conversation is still answering the previous message: wait for it, or press stop."
            )
        session.busy = True
        bounds = budget.bounds if isinstance(budget, VisitorBudget) else None
        with self._lock:
            job_id = next(self._ids)
            worker = min(range(len(self._conns)), key=lambda i: sum(j.worker == i for j in self._jobs.values()))
            job = _Job(session, asyncio.get_running_loop(), asyncio.Queue(), progress, worker)
            self._jobs[job_id] = job
        finished = False
        try:
            job.conn = self._send(worker, ("start", job_id, kind, session_state(session), args, bounds))
            while True:
                message = await job.queue.get()
                what = message[0]
                if what == "events":
                    apply_patch(session, message[3])
                    for event in message[2]:
                        yield event
                elif what == "progress" and job.progress is not None:
                    job.progress(message[2], message[3])
                elif what == "refused":
                    finished = True
                    raise RemoteRefusal(message[2], message[3])
                elif what == "failed":
                    finished = True
                    raise RuntimeError(f"the turn failed in its worker: {message[2]}")
                elif what == "done":
                    apply_state(session, message[2])
                    finished = True
                    return
        except (asyncio.CancelledError, GeneratorExit):
            if not finished:
                # Stopped: the worker cancels the turn, keeps what arrived, and sends the session it kept;
                # the reader thread applies it (this generator is gone by then) and frees the session.
                job.stopped = True
                self._send(worker, ("cancel", job_id))
                job.loop.call_later(STOP_GRACE_S, self._give_up, job_id)
            raise
        finally:
            if finished or not job.stopped:
                with self._lock:
                    self._jobs.pop(job_id, None)
                session.busy = False

    def _send(self, worker: int, message: tuple) -> Connection:
        """Send to worker ``worker`` (started again first if it died); returns the connection used."""
        with self._send_locks[worker]:
            proc = self._procs[worker]
            if proc is None or proc.poll() is not None:  # it died (a crash, the OOM killer): start another
                self._spawn(worker)
            conn = self._conns[worker]
            try:
                conn.send(message)
            except OSError as exc:
                raise SupportbotError("The turn could not start (its worker process stopped); send it again.") from exc
            return conn

    def _read(self, worker: int, conn: Connection) -> None:
        """The reader thread of one worker: hands each message to its job's loop."""
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                message = None
            if message is None:
                self._worker_gone(conn)
                return
            if message == ("ready",):
                continue
            with self._lock:
                job = self._jobs.get(message[1])
            if job is None:
                continue
            if job.stopped and message[0] == "done":
                job.loop.call_soon_threadsafe(self._finish_stopped, message[1], message[2])
            elif not job.stopped:
                job.loop.call_soon_threadsafe(job.queue.put_nowait, message)

    def _finish_stopped(self, job_id: int, state: dict[str, Any]) -> None:
        with self._lock:
            job = self._jobs.pop(job_id, None)
        if job is not None:
            apply_state(job.session, state)
            job.session.busy = False

    def _give_up(self, job_id: int) -> None:
        with self._lock:
            job = self._jobs.pop(job_id, None)
        if job is not None:
            job.session.busy = False

    def _worker_gone(self, conn: Connection) -> None:
        """A worker died: the turns sent to it end with an error instead of waiting for ever."""
        with self._lock:
            jobs = [(jid, j) for jid, j in self._jobs.items() if j.conn is conn]
        for job_id, job in jobs:
            if job.stopped:
                job.loop.call_soon_threadsafe(self._give_up, job_id)
            else:
                job.loop.call_soon_threadsafe(job.queue.put_nowait, ("failed", job_id, "the worker process exited"))
