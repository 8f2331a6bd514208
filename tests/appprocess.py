"""The playground as its own process (``python app.py``), configured by environment variables only.

Used by the multi-replica tests and ``bench/replicas.py``: several of these on one PostgreSQL
database are replicas of one app, exactly as a deployment runs them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
# Variables a developer's shell may hold that must not reach a test replica.
_DROPPED = ("OXLO_API_KEY", "OXLO_BASE_URL", "SPACE_ID", "SYSTEM", "GRADIO_SERVER_NAME")


def free_port() -> int:
    """A loopback port nobody listens on (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppProcess:
    """``python app.py`` on a free loopback port, with ``env`` on top of a clean environment."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log = self.workdir / "app.log"
        base = {k: v for k, v in os.environ.items() if k not in _DROPPED and not k.startswith("SUPPORTBOT_")}
        self.env = {
            **base,
            "PYTHONPATH": str(ROOT),
            "GRADIO_ANALYTICS_ENABLED": "False",
            "GRADIO_SERVER_PORT": str(self.port),
            "SUPPORTBOT_ENGINE": "offline",
            "SUPPORTBOT_DATA_DIR": str(self.workdir / "data"),
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Where it serves."""
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> AppProcess:
        """Start the process (its cwd is the work directory, so no developer's .env is read)."""
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, str(ROOT / "app.py")], cwd=self.workdir, env=self.env, stdout=out, stderr=out
            )
        return self

    def wait_ready(self, timeout_s: float = 120.0) -> AppProcess:
        """Wait until the app answers; RuntimeError with its log when it exits or never answers."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"the app exited ({self.proc.returncode}):\n{self.tail()}")
            try:
                if httpx.get(f"{self.url}config", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass  # not listening yet
            time.sleep(0.2)
        raise RuntimeError(f"the app did not answer within {timeout_s:.0f} s:\n{self.tail()}")

    def tail(self, chars: int = 3000) -> str:
        """The end of its output."""
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL after 10 s)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def start_all(apps: list[AppProcess]) -> list[AppProcess]:
    """Start several at once (they import Gradio in parallel) and wait for each; stop all on failure."""
    try:
        for app in apps:
            app.start()
        for app in apps:
            app.wait_ready()
    except BaseException:
        for app in apps:
            app.stop()
        raise
    return apps
