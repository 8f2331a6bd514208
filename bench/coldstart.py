"""Cold start: `python app.py` until the page answers, against the smallest Gradio app like it.

    python bench/coldstart.py [--runs 5]

Each run starts a fresh interpreter and polls GET / every 10 ms until the first HTTP 200. The
baseline, run alternately in the same session, is a bare Blocks app with a Chatbot and a
MultimodalTextbox (what any chat app on Gradio pays). The playground runs on the offline engine
with a data directory created by one untimed warm-up start (a restart, as on a Space that keeps
its storage; the first start ever also seeds the demo database). Prints each run, the medians,
and as its last line ``cold start vs bare: X`` (goal <= 1.2).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
GOAL = 1.2
BARE_APP = """
import gradio as gr

with gr.Blocks() as demo:
    chat = gr.Chatbot()
    box = gr.MultimodalTextbox()
    box.submit(lambda m, h: h, [box, chat], chat)

demo.launch(server_name="127.0.0.1", server_port={port})
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def time_to_first_page(cmd: list[str], env: dict[str, str], port: int, timeout_s: float = 120.0) -> float:
    """Seconds from starting ``cmd`` until GET / on ``port`` answers 200; the process is then stopped."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        with httpx.Client(timeout=1.0) as http:
            while time.perf_counter() - start < timeout_s:
                if proc.poll() is not None:
                    raise RuntimeError(f"{cmd} exited early: {proc.stderr.read().decode()[-2000:]}")
                try:
                    if http.get(f"http://127.0.0.1:{port}/").status_code == 200:
                        return time.perf_counter() - start
                except httpx.TransportError:
                    pass
                time.sleep(0.01)
        raise TimeoutError(f"{cmd} did not answer within {timeout_s} s")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def main(runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-coldstart-") as tmp:
        bare = Path(tmp) / "bare_app.py"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("OXLO_", "SUPPORTBOT_"))},
            "GRADIO_ANALYTICS_ENABLED": "False",
            "SUPPORTBOT_ENGINE": "offline",
            "SUPPORTBOT_DATA_DIR": str(Path(tmp) / "data"),
            "PYTHONDONTWRITEBYTECODE": "0",
        }

        def app(port: int) -> float:
            return time_to_first_page([sys.executable, "app.py"], {**env, "GRADIO_SERVER_PORT": str(port)}, port)

        def baseline(port: int) -> float:
            bare.write_text(BARE_APP.format(port=port))
            return time_to_first_page([sys.executable, str(bare)], env, port)

        app(free_port())  # warm-up: byte-compiles, seeds the data directory, fills the OS file cache
        baseline(free_port())
        times: dict[str, list[float]] = {"supportbot": [], "bare gradio": []}
        for i in range(runs):
            times["supportbot"].append(app(free_port()))
            times["bare gradio"].append(baseline(free_port()))
            print(f"run {i + 1}: supportbot {times['supportbot'][-1]:.2f} s, bare {times['bare gradio'][-1]:.2f} s")
    print(f"{'app':<12} {'runs':>4} {'median s':>9} {'min s':>6} {'max s':>6}")
    for name, ts in times.items():
        print(f"{name:<12} {len(ts):>4} {statistics.median(ts):>9.2f} {min(ts):>6.2f} {max(ts):>6.2f}")
    ratio = statistics.median(times["supportbot"]) / statistics.median(times["bare gradio"])
    print(f"cold start vs bare: {ratio:.2f} (goal <= {GOAL})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    main(parser.parse_args().runs)
