"""The engine on a loopback port: uvicorn in a daemon thread."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import uvicorn

if TYPE_CHECKING:
    from supportbot.engine.core import OfflineEngine

STARTUP_TIMEOUT_S = 10.0


@dataclass
class RunningServer:
    """A started loopback server; ``stop()`` shuts it down."""

    host: str
    port: int
    server: uvicorn.Server = field(repr=False)
    thread: threading.Thread = field(repr=False)
    engine: OfflineEngine = field(repr=False)

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, e.g. http://127.0.0.1:8123/v1."""
        return f"http://{self.host}:{self.port}/v1"

    def stop(self) -> None:
        """Stop serving and wait for the thread to end."""
        self.engine.close()
        self.server.should_exit = True
        self.thread.join(timeout=5)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready socket; port 0 picks a free port."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit this: without it each streamed reply can stall ~40 ms
    # on Nagle's algorithm meeting the client's delayed ACK (measured: 56-100 ms -> 15 ms a turn).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    return sock


def make_server(engine: OfflineEngine, log_level: str = "warning") -> uvicorn.Server:
    """A uvicorn server for the engine's app (not started)."""
    # A hung (injected timeout) request must not hold shutdown for long.
    config = uvicorn.Config(engine.asgi_app(), log_level=log_level, lifespan="off", timeout_graceful_shutdown=1)
    return uvicorn.Server(config)


def start_server(engine: OfflineEngine, host: str = "127.0.0.1", port: int = 0) -> RunningServer:
    """Serve ``engine`` on ``host:port`` in a daemon thread; returns once it accepts connections."""
    sock = bind(host, port)
    server = make_server(engine)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True, name=f"offline-engine-{sock.getsockname()[1]}"
    )
    thread.start()
    running = RunningServer(host, sock.getsockname()[1], server, thread, engine)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the offline engine did not start on {host}:{running.port}")
        time.sleep(0.01)
    with socket.create_connection((host, running.port), timeout=2):
        pass
    return running
