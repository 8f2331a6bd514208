"""Re-record the demo cassette: the order + escalation conversation, played against the offline
engine's loopback server in live mode, with SUPPORTBOT_RECORD on.

    python assets/cassettes/make_cassette.py [--out assets/cassettes/order-escalation.jsonl]

The same by hand (any free port):

    python -m supportbot.engine --port 8001 &
    SUPPORTBOT_ENGINE=live OXLO_BASE_URL=http://127.0.0.1:8001/v1 OXLO_API_KEY=x \\
      SUPPORTBOT_RECORD=assets/cassettes/order-escalation.jsonl \\
      python -m supportbot.qa run assets/scenarios/capability-escalation.toml
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "assets" / "scenarios" / "capability-escalation.toml"
DEFAULT_OUT = Path(__file__).resolve().parent / "order-escalation.jsonl"


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port: int, timeout_s: float = 30.0) -> None:
    """Return once the server accepts connections."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the offline engine did not start on port {port}")


def record(out: Path, scenario: Path = SCENARIO) -> int:
    """Serve the engine, play ``scenario`` live against it while recording to ``out``; the runner's exit status."""
    out.unlink(missing_ok=True)  # SUPPORTBOT_RECORD appends: start from an empty file
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen([sys.executable, "-m", "supportbot.engine", "--port", str(port)], env=env, cwd=ROOT)
    try:
        wait_for(port)
        live = {
            "SUPPORTBOT_ENGINE": "live",
            "OXLO_BASE_URL": f"http://127.0.0.1:{port}/v1",
            "OXLO_API_KEY": "x",  # the loopback engine accepts any key; the cassette never holds it
            "SUPPORTBOT_RECORD": str(out),
        }
        run = [sys.executable, "-m", "supportbot.qa", "run", str(scenario)]
        return subprocess.run(run, env={**env, **live}, cwd=ROOT).returncode
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="cassette to write")
    status = record(parser.parse_args().out)
    sys.exit(status)
