"""Work that grows with input size never runs on the event loop; image decoding is bounded.

A ticker on the event loop measures how late it wakes while hostile turns run through the real
TurnRunner -> SDK -> offline engine (in-process transport): the loop serves every visitor, so
its lag is what another visitor would wait. Decoding is measured in a fresh process: at most one
decode per core at once, and the memory is handed back afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from supportbot.attachments import images
from supportbot.config import Settings
from supportbot.conversation import TurnRunner
from supportbot.engine import OfflineEngine
from supportbot.errors import SupportbotError
from supportbot.services import Services
from supportbot.session import Session
from supportbot.ui import render

ROOT = Path(__file__).resolve().parents[1]
MAX_LAG_S = 0.100


def make_runner(data_dir: Path) -> TurnRunner:
    settings = Settings.load({"data_dir": data_dir, "engine": "offline"}, environ={}, dotenv_path=None)
    return TurnRunner(Services.create(settings, OfflineEngine()))


async def _ticker(stop: asyncio.Event, lags: list[float], every_s: float = 0.005) -> None:
    """Wake every ``every_s`` and record how late each wake-up was."""
    while not stop.is_set():
        start = time.perf_counter()
        await asyncio.sleep(every_s)
        lags.append(time.perf_counter() - start - every_s)


async def _turn(runner: TurnRunner, text: str, files: list[Path] | None = None) -> Session | SupportbotError:
    session = Session()
    try:
        async for _ in runner.run(session, text, files):
            pass
    except SupportbotError as exc:
        return exc
    return session


def _worst_lag(runner: TurnRunner, make_turns) -> tuple[float, list]:
    """Run the turns ``make_turns()`` makes beside a ticker; the ticker's worst lag, best of 3 runs.

    A call that blocks the loop blocks it every run; a machine busy with other work delays a
    wake-up only now and then, so the best run is the loop's own worst case."""

    async def scenario() -> tuple[float, list]:
        lags: list[float] = []
        stop = asyncio.Event()
        ticker = asyncio.create_task(_ticker(stop, lags))
        await asyncio.sleep(0.02)
        results = await asyncio.gather(*make_turns())
        stop.set()
        await ticker
        assert len(lags) > 10  # the ticker ran throughout
        return max(lags), results

    asyncio.run(_turn(runner, "Where is my order #48291?"))  # imports, clients: paid once per process
    best, results = asyncio.run(scenario())
    for _ in range(2):
        if best < MAX_LAG_S:
            break
        lag, results = asyncio.run(scenario())
        best = min(best, lag)
    return best, results


def test_the_loop_stays_responsive_while_hostile_turns_run(tmp_path: Path):
    runner = make_runner(tmp_path / "data")
    log = tmp_path / "one-line.log"
    log.write_text("2026-11-27T10:00:00.000Z ERROR [worker-1] payment failed: " + "x=1 " * 1_250_000)  # 5 MB, 1 line

    lag, (refused, long_text, with_log, ordinary) = _worst_lag(
        runner,
        lambda: (
            _turn(runner, "A" * 1_000_000),  # one 1 MB token: refused
            _turn(runner, "Where is order #48291? " + "Q" * 180_000),  # one 180K token, under the limit
            _turn(runner, "Here is our service log, what is wrong?", [log]),  # a 5 MB one-line log
            _turn(runner, "Where is my order #48291?"),  # an ordinary visitor at the same time
        ),
    )
    assert isinstance(refused, SupportbotError) and "SUPPORTBOT_MAX_TEXT_CHARS" in str(refused)
    assert isinstance(long_text, Session) and "48291" in long_text.messages[-1]["content"]
    assert isinstance(with_log, Session)
    attachment = with_log.messages[0]["attachments"][0]
    assert attachment["lines"] == 1 and attachment["reduced"]  # 5 MB does not fit any window: reduced
    assert "ERROR" in with_log.messages[-1]["content"]
    assert isinstance(ordinary, Session) and "48291" in ordinary.messages[-1]["content"]
    assert lag < MAX_LAG_S, f"the event loop stalled for {lag * 1000:.0f} ms"


def test_the_in_process_engine_answers_from_a_worker_thread(tmp_path: Path):
    # A prompt the engine needs a while to read (a long history of long messages): the loop
    # keeps ticking while it reads, because the transport hands the work to a thread.
    runner = make_runner(tmp_path)
    history = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": "word " * 12_000 + f"#{48000 + i}"}
        for i in range(16)
    ]
    sessions: list[Session] = []

    def turns():
        session = Session()
        session.history = list(history)
        sessions.append(session)
        return (_turn_on(runner, session, "Where is my order #48291?"),)

    lag, _ = _worst_lag(runner, turns)
    assert all(s.messages[-1]["role"] == "assistant" and "48291" in s.messages[-1]["content"] for s in sessions)
    assert runner.s.clients.engine.requests[-1]["messages"][1]["content"].startswith("word word")  # it read them all
    assert lag < MAX_LAG_S, f"the event loop stalled for {lag * 1000:.0f} ms"


async def _turn_on(runner: TurnRunner, session: Session, text: str) -> None:
    async for _ in runner.run(session, text):
        pass


def test_a_huge_message_is_rendered_bounded():
    session = Session()
    session.messages = [
        {"role": "user", "content": "x" * 150_000, "attachments": [], "turn": 1},
        {"role": "assistant", "content": "y" * 150_000, "error": "the service failed", "turn": 1},
    ]
    user, answer = render.chat_view(session)
    assert len(user["content"]) < render.SHOWN_CHARS + 100 and "130,000 more characters not shown" in user["content"]
    assert len(answer["content"]) < render.SHOWN_CHARS + 200
    assert answer["content"].endswith("the service failed")  # the error is never the part cut off


_DECODE_PROBE = """
import sys, threading, time
sys.path.insert(0, sys.argv[1])
from PIL import Image
from supportbot.attachments import images

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024

path = sys.argv[2]
Image.new("RGBA", (4000, 4000), (200, 30, 30, 128)).save(path, compress_level=1)
base = rss_mb()
peak = [base]
done = threading.Event()

def watch():
    while not done.is_set():
        peak[0] = max(peak[0], rss_mb())
        time.sleep(0.002)

watcher = threading.Thread(target=watch)
watcher.start()
images.prepare_image(path, max_bytes=50 * 2**20)
one = peak[0] - base
peak[0] = rss_mb()
before = peak[0]
workers = [threading.Thread(target=images.prepare_image, args=(path,), kwargs={"max_bytes": 50 * 2**20})
           for _ in range(3 * images.DECODES_AT_ONCE)]
for w in workers:
    w.start()
for w in workers:
    w.join()
done.set()
watcher.join()
print(json.dumps({"one": one, "many": peak[0] - before, "after": rss_mb() - base,
                  "slots": images.DECODES_AT_ONCE}))
""".replace("print(json", "import json\nprint(json")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads resident memory from /proc")
def test_decodes_run_at_most_one_per_core_and_hand_memory_back(tmp_path: Path):
    out = subprocess.run(
        [sys.executable, "-c", _DECODE_PROBE, str(ROOT), str(tmp_path / "big.png")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
    )
    m = json.loads(out.stdout.strip().splitlines()[-1])
    # One 16 MP RGBA decode peaks at ~10 bytes a pixel; three times as many images as slots at
    # once must peak at about ``slots`` decodes, not all of them (without the slots: 3x more).
    assert m["one"] > 60, m  # the probe really decoded a large image
    assert m["many"] < (m["slots"] + 0.75) * m["one"], m
    assert m["after"] < 0.5 * m["one"], m  # freed memory went back to the system


def test_the_pixel_cap_fits_the_machine():
    assert 1 <= images.DECODES_AT_ONCE <= 4
    assert 256 * 2**20 <= images.DECODE_MEMORY <= 2 * 2**30
    # Every decode allowed at once, each at the cap, fits in the memory set aside for decoding.
    assert images.DECODES_AT_ONCE * images.DEFAULT_MAX_PIXELS * images.BYTES_PER_PIXEL <= images.DECODE_MEMORY
    assert images.DEFAULT_MAX_PIXELS <= 50_000_000
