"""Concurrency: N sessions each sending one turn at once to the playground, which talks to the
offline engine over loopback as if it were the live service, with a fixed latency per request.

    python bench/concurrency.py [--sessions 50] [--latency 1.0] [--message "..."]

The ideal wall time is (model requests per turn) x latency: the engine's sleep is the only
unavoidable wait. Requests per turn are measured from /session usage before the timed part.
Two baselines are measured in the same run and driven identically:

* the peer: the twenty-line app a user would write instead, a ``gr.ChatInterface`` whose handler
  streams the answer from the same engine with ``AsyncOpenAI`` (one request a turn, no tools, no
  panels);
* a bare Gradio app whose one handler only sleeps for the ideal time: the ceiling of Gradio plus
  gradio_client on this machine.

When a turn makes more than one request, the peer is measured a second time making that many
(streamed one after the other, nothing else): how close to the bare app the SDK's own work lets
any app come here, printed as ``peer, N requests a turn vs bare: X``.

For each it prints wall time, efficiency (ideal / wall), server CPU per turn and the p99 lag of
the server's event loop (a ticker task on that loop, every 5 ms, during the timed part). Then
``relative to peer: X`` (app efficiency / peer efficiency, goal >= 1.0) and, last,
``relative efficiency: X`` (app / bare, goal >= 0.90).

The N clients (one session each, connected and with their session opened before the timed part)
run in a separate process, like real users' browsers: in this process their SSE parsing would
compete with the server for the GIL (``--in-process`` shows that). "cpu/turn ms" is the app's CPU
time per turn during the timed part: this process plus its turn workers (the engine runs in its own
process, as the real service is remote; its CPU is the "engine cpu s" column, the clients' is
"client cpu s"). All of them share this machine's cores: on 2 cores, a busy engine or driver slows
the app's wall time too, which is why the bare app's efficiency is the yardstick.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
from gradio_client import Client  # noqa: E402

from supportbot.config import USABLE_CORES, Settings  # noqa: E402
from supportbot.engine import OfflineEngine, start_server  # noqa: E402
from supportbot.ui.app import build_app, launch_options, queue_options  # noqa: E402

GOAL = 0.90
PEER_GOAL = 1.0
LAG_GOAL_MS = 50.0


class LagProbe:
    """Measures how late the server's event loop runs a 5 ms ticker: started by an event on that loop."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.running = False

    async def start(self) -> str:
        """The probe's event: runs on the server loop, starts the ticker there, returns at once."""
        if not self.running:
            self.running = True
            self.samples = []
            asyncio.get_running_loop().create_task(self._tick())
        return "started"

    def stop(self) -> list[float]:
        self.running = False
        return self.samples

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while self.running:
            due = loop.time() + 0.005
            await asyncio.sleep(0.005)
            self.samples.append(max(0.0, loop.time() - due) * 1000)


def add_probe(demo: gr.Blocks, probe: LagProbe) -> None:
    """Give an app a hidden ``/lagprobe`` event that starts ``probe`` on the app's own event loop."""
    with demo:
        out = gr.Textbox(visible=False)
        gr.Button(visible=False).click(probe.start, None, out, api_name="lagprobe", concurrency_limit=None)
        gr.Button(visible=False).click(lambda: "", None, out, api_name="ping_probe", concurrency_limit=None)


def launch_playground(data_dir: Path, base_url: str, probe: LagProbe, workers: int) -> tuple[gr.Blocks, str, Settings]:
    """The playground pointed at `base_url` as a live OpenAI-compatible service."""
    settings = Settings.load(
        {
            "data_dir": data_dir,
            "engine": "live",
            "api_key": "bench",
            "base_url": base_url,
            "max_retries": 0,
            "turn_workers": workers,
        },
        environ={},
        dotenv_path=None,
    )
    demo = build_app(settings)
    add_probe(demo, probe)
    demo.queue(**queue_options(settings))
    options = launch_options(settings, env={})
    options.update(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    _, url, _ = demo.launch(**options)
    return demo, url, settings


def launch_peer(base_url: str, max_threads: int, probe: LagProbe, requests: int = 1) -> tuple[gr.Blocks, str]:
    """The twenty-line app a user would write instead: ChatInterface streaming from AsyncOpenAI.

    With ``requests=2`` it streams a second answer after the first, as many requests a turn as the
    playground makes, with nothing else (no tools, no panels): the floor for any app that makes them."""
    from openai import AsyncOpenAI

    clients: dict[object, AsyncOpenAI] = {}  # one client per event loop, as the playground does

    async def respond(message: str, history: list) -> object:
        loop = asyncio.get_running_loop()
        client = clients.get(loop) or clients.setdefault(loop, AsyncOpenAI(base_url=base_url, api_key="bench"))
        messages = [{"role": "user", "content": message}]
        answer = ""
        for _ in range(requests):
            stream = await client.chat.completions.create(
                model="llama-3.3-70b", messages=messages, stream=True, max_tokens=1024
            )
            answer = ""
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    answer += chunk.choices[0].delta.content
                    yield answer
            messages += [{"role": "assistant", "content": answer}, {"role": "user", "content": "And then?"}]

    demo = gr.ChatInterface(respond, api_name="chat", concurrency_limit=None)
    add_probe(demo, probe)
    demo.queue(default_concurrency_limit=None)
    _, url, _ = demo.launch(
        server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True, max_threads=max_threads
    )
    return demo, url


def launch_bare(sleep_s: float, max_threads: int, probe: LagProbe) -> tuple[gr.Blocks, str]:
    """A Blocks app whose one handler only sleeps: what Gradio itself costs."""

    async def wait(text: str) -> str:
        await asyncio.sleep(sleep_s)
        return text

    with gr.Blocks() as demo:
        box = gr.Textbox()
        out = gr.Textbox()
        box.submit(wait, box, out, api_name="wait", concurrency_limit=None)
        gr.Button().click(lambda: "", None, out, api_name="ping")
    add_probe(demo, probe)
    demo.queue(default_concurrency_limit=None)
    _, url, _ = demo.launch(
        server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True, max_threads=max_threads
    )
    return demo, url


def turn(client: Client, message: str) -> None:
    client.predict({"text": message, "files": []}, api_name="/chat")


def requests_per_turn(url: str, message: str) -> int:
    """Model requests one turn of `message` makes, from the session's usage records."""
    client = Client(url, verbose=False, ssl_verify=False)
    turn(client, message)
    session = client.predict(api_name="/session")
    assert session["messages"][-1]["role"] == "assistant" and not session["messages"][-1].get("error"), session[
        "messages"
    ][-1]
    return len(session["usage"])


def run_at_once(clients: list[Client], call: Callable[[Client], object]) -> float:
    """Wall seconds from one start signal until every client's call has returned."""
    start = threading.Event()
    errors: list[BaseException] = []

    def worker(client: Client) -> None:
        start.wait()
        try:
            call(client)
        except BaseException as exc:  # noqa: BLE001 - re-raised below: a failed turn must not look fast
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    time.sleep(0.2)  # let every thread reach start.wait()
    t0 = time.perf_counter()
    start.set()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"{len(errors)} of {len(clients)} calls failed; first: {errors[0]!r}")
    return wall


def make_clients(url: str, n: int) -> list[Client]:
    """N clients (= N sessions), connected before anything is timed."""
    return [Client(url, verbose=False, ssl_verify=False) for _ in range(n)]


def open_sessions(clients: list[Client], kind: str) -> None:
    """One cheap call per client, untimed: Gradio builds a session's state on its first event
    (~10 ms per session for the playground's ~40 components, serial on the event loop), which a
    browser does on page load, long before its user sends a message."""
    for c in clients:
        c.predict(api_name={"playground": "/session", "peer": "/ping_probe"}.get(kind, "/ping"))


def call_for(kind: str, message: str) -> Callable[[Client], object]:
    """What one session sends: a chat turn to the playground, or one call of the bare app."""
    if kind == "playground":
        return lambda c: turn(c, message)
    if kind == "peer":
        return lambda c: c.predict(message, api_name="/chat")
    return lambda c: c.predict("hi", api_name="/wait")


def driver(conn: Connection) -> None:
    """Child process: make the clients, wait for "go", run them all at once, send back (wall, cpu)."""
    while (job := conn.recv()) is not None:
        url, n, kind, message = job
        clients = make_clients(url, n)
        open_sessions(clients, kind)
        conn.send("ready")
        conn.recv()  # go
        cpu0 = time.process_time()
        wall = run_at_once(clients, call_for(kind, message))
        conn.send((wall, time.process_time() - cpu0))
        for c in clients:
            c.close()


class Drivers:
    """Runs the N clients in a separate process (like real users' browsers), or in this one."""

    def __init__(self, in_process: bool) -> None:
        self.conn: Connection | None = None
        if not in_process:
            self.conn, child = mp.get_context("spawn").Pipe()
            self.proc = mp.get_context("spawn").Process(target=driver, args=(child,), daemon=True)
            self.proc.start()

    def run(self, url: str, n: int, kind: str, message: str) -> tuple[float, float, float]:
        """(wall s, server-process CPU s, client CPU s) for N sessions sending at once."""
        if self.conn is None:
            clients = make_clients(url, n)
            open_sessions(clients, kind)
            cpu0 = time.process_time()
            wall = run_at_once(clients, call_for(kind, message))
            return wall, time.process_time() - cpu0, float("nan")
        self.conn.send((url, n, kind, message))
        assert self.conn.recv() == "ready"
        cpu0 = time.process_time()
        self.conn.send("go")
        wall, client_cpu = self.conn.recv()
        return wall, time.process_time() - cpu0, client_cpu

    def close(self) -> None:
        if self.conn is not None:
            self.conn.send(None)
            self.proc.join(timeout=10)


def serve_engine(conn: Connection, latency: float) -> None:
    """The engine in its own process, as the real service is remote: its CPU is not the app's."""
    engine = OfflineEngine(latency_s=latency)
    with start_server(engine) as server:
        conn.send(server.base_url)
        while conn.recv() is not None:
            conn.send((len(engine.requests), time.process_time()))


class RemoteEngine:
    """The offline engine served from a child process; ``requests()`` counts what it received."""

    def __init__(self, latency: float) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=serve_engine, args=(child, latency), daemon=True)
        self.proc.start()
        self.base_url: str = self.conn.recv()

    def requests(self) -> int:
        return self.stats()[0]

    def stats(self) -> tuple[int, float]:
        """(requests received so far, the engine process's CPU seconds so far)."""
        self.conn.send("count")
        return self.conn.recv()

    def close(self) -> None:
        self.conn.send(None)
        self.proc.join(timeout=10)


def process_cpu(pids: list[int]) -> float:
    """CPU seconds (user + system) used so far by these processes, from /proc (0 where unreadable)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def worker_pids(demo: gr.Blocks | None) -> list[int]:
    """The playground's turn-worker processes: their CPU is the app's too."""
    pool = getattr(demo, "turn_pool", None)
    return [p.pid for p in getattr(pool, "_procs", []) if p is not None]


def timed(
    drivers: Drivers,
    url: str,
    probe: LagProbe,
    n: int,
    kind: str,
    message: str,
    engine: RemoteEngine,
    workers: list[int] = (),
) -> tuple[float, float, float, float, float]:
    """(wall s, app CPU s, client CPU s, engine CPU s, event-loop lag p99 ms) of one timed run.

    The app's CPU is this process's plus its turn workers'."""
    Client(url, verbose=False, ssl_verify=False).predict(api_name="/lagprobe")
    engine_cpu0, workers_cpu0 = engine.stats()[1], process_cpu(list(workers))
    wall, server_cpu, client_cpu = drivers.run(url, n, kind, message)
    engine_cpu = engine.stats()[1] - engine_cpu0
    server_cpu += process_cpu(list(workers)) - workers_cpu0
    lags = sorted(probe.stop()) or [float("nan")]
    return wall, server_cpu, client_cpu, engine_cpu, lags[min(len(lags) - 1, int(0.99 * len(lags)))]


def main(sessions: int, latency: float, message: str, in_process: bool, workers: int) -> None:
    rows: list[tuple[str, float, float, float, float, float, float]] = []
    drivers = Drivers(in_process)
    engine = RemoteEngine(latency)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-concurrency-") as tmp:
            probe = LagProbe()
            demo, url, settings = launch_playground(Path(tmp), engine.base_url, probe, workers)
            max_threads = launch_options(settings, env={})["max_threads"]
            try:
                requests = requests_per_turn(url, message)
                ideal = requests * latency
                print(
                    f"{message!r} makes {requests} model request(s) per turn -> ideal {ideal:.2f} s; "
                    f"concurrency_limit={settings.concurrency_limit}, max_threads={max_threads}, "
                    f"clients {'in this process' if in_process else 'in a separate process'}, "
                    f"turn workers: {workers or 'none (turns on the server loop)'}"
                )
                served = engine.requests()
                rows.append(
                    (
                        "supportbot",
                        ideal,
                        *timed(drivers, url, probe, sessions, "playground", message, engine, worker_pids(demo)),
                    )
                )
                made = engine.requests() - served
                assert made == sessions * requests, (
                    f"the timed turns made {made} requests, expected {sessions * requests}"
                )
            finally:
                if demo.turn_pool is not None:
                    demo.turn_pool.close()
                demo.close()

            probe = LagProbe()
            peer, peer_url = launch_peer(engine.base_url, max_threads, probe)
            try:
                Client(peer_url, verbose=False).predict(message, api_name="/chat")  # warm: first request
                rows.append(
                    (
                        "peer (ChatInterface)",
                        latency,
                        *timed(drivers, peer_url, probe, sessions, "peer", message, engine),
                    )
                )
            finally:
                peer.close()

            if requests > 1:
                probe = LagProbe()
                floor, floor_url = launch_peer(engine.base_url, max_threads, probe, requests)
                try:
                    Client(floor_url, verbose=False).predict(message, api_name="/chat")
                    rows.append(
                        (
                            f"peer, {requests} requests a turn",
                            ideal,
                            *timed(drivers, floor_url, probe, sessions, "peer", message, engine),
                        )
                    )
                finally:
                    floor.close()

            probe = LagProbe()
            bare, bare_url = launch_bare(ideal, max_threads, probe)
            try:
                rows.append(
                    ("bare gradio (sleep only)", ideal, *timed(drivers, bare_url, probe, sessions, "bare", "", engine))
                )
            finally:
                bare.close()
    finally:
        drivers.close()
        engine.close()

    print(
        f"{'app':<26} {'sessions':>8} {'ideal s':>8} {'wall s':>8} {'efficiency':>10} {'cpu/turn ms':>11} "
        f"{'loop lag p99 ms':>15} {'client cpu s':>12} {'engine cpu s':>12}"
    )
    for name, ideal_s, wall_s, server_cpu, client_cpu, engine_cpu, lag in rows:
        print(
            f"{name:<26} {sessions:>8} {ideal_s:>8.2f} {wall_s:>8.2f} {ideal_s / wall_s:>10.3f} "
            f"{1000 * server_cpu / sessions:>11.1f} {lag:>15.1f} {client_cpu:>12.2f} {engine_cpu:>12.2f}"
        )
    app_eff, peer_eff, bare_eff = rows[0][1] / rows[0][2], rows[1][1] / rows[1][2], rows[-1][1] / rows[-1][2]
    print(f"app event-loop lag p99: {rows[0][6]:.1f} ms (goal <= {LAG_GOAL_MS:.0f})")
    if len(rows) == 4:  # the floor: the peer making as many requests a turn as the app, and nothing else
        print(
            f"{rows[2][0]} vs bare: {rows[2][1] / rows[2][2] / bare_eff:.3f} (the same requests through the SDK, nothing else)"
        )
    print(f"relative to peer: {app_eff / peer_eff:.3f} (goal >= {PEER_GOAL:.2f})")
    print(f"relative efficiency: {app_eff / bare_eff:.3f} (goal >= {GOAL:.2f})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--latency", type=float, default=1.0, help="seconds the engine waits before each chat response")
    parser.add_argument("--message", default="What is your return policy?", help="the turn every session sends")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="drive the clients from threads in this process (they then compete with the server for the GIL)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=USABLE_CORES,
        help="SUPPORTBOT_TURN_WORKERS for the playground (0: turns on its loop); default: a Space's, one per core",
    )
    args = parser.parse_args()
    main(args.sessions, args.latency, args.message, args.in_process, args.workers)
