"""Hostile visitors beside normal ones: does one visitor's abuse slow down everyone else?

    python bench/hostile.py [--sessions 50] [--turns 3] [--latency 0.3]

The playground runs in this process on the offline engine (in process, answering after
``--latency`` seconds, as a remote service would). A driver process runs ``--sessions`` normal
visitors at once, each sending ``--turns`` ordinary messages one after another (an order
question, a policy question, a thank-you), while a prober loads the page (``GET /`` and
``/config``) every 100 ms. The run is made twice against the same app: first with no one else,
then with two hostile visitors hammering it the whole time:

* a 1 MB message that is one single "word" (a pasted token);
* a 5 MB log that is one single line;
* a decompression-bomb screenshot (a 20,000 x 20,000 PNG of a few hundred KB) and a 7,000 x 7,000
  photo-like JPEG;
* a crafted conversation import, sent by ``fn_index`` to the private import event with a message
  whose content names the database file and an HTML component.

It prints p50/p95 of the normal visitors' turn times and of the page loads in both runs, what the
hostile visitors got back, and as its last line ``hostile slowdown p95: X`` (hostile p95 turn time
over the quiet run's; goal <= 1.5).
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
import zlib
from multiprocessing.connection import Connection
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

GOAL = 1.5
NORMAL_TURNS = [
    "Where is my order #48291? It was supposed to arrive yesterday.",
    "What is your return policy for opened items?",
    "Thanks, that helps!",
]


# --- the app ------------------------------------------------------------------------------------


def launch(data_dir: Path, latency: float):
    """The playground on a free loopback port, on an offline engine that answers after ``latency`` s."""
    from supportbot.config import Settings
    from supportbot.engine import OfflineEngine
    from supportbot.services import Services
    from supportbot.ui.app import build_app, launch_options, queue_options

    settings = Settings.load({"data_dir": data_dir, "engine": "offline"}, environ={}, dotenv_path=None)
    engine = OfflineEngine(latency_s=latency, keep_requests=False)
    demo = build_app(settings, Services.create(settings, engine))
    options = launch_options(settings, env={})
    options.update(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    demo.queue(**queue_options(settings))
    _, url, _ = demo.launch(**options)
    return demo, url


# --- the hostile material -----------------------------------------------------------------------


def bomb_png(width: int, height: int) -> bytes:
    """A valid grayscale PNG of ``width`` x ``height`` zero pixels: tiny on disk, huge decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    row = b"\x00" * (width + 1)  # filter byte + pixels
    compressor = zlib.compressobj(9)
    parts = [compressor.compress(row) for _ in range(height)]
    parts.append(compressor.flush())
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


def noisy_jpeg(side: int) -> bytes:
    """A photo-like (noisy) RGB JPEG, side x side: tens of MB decoded from a few MB."""
    from PIL import Image

    image = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=60)
    return out.getvalue()


def hostile_files(folder: Path) -> dict[str, Path]:
    """Write the hostile uploads once."""
    files = {
        "one_line.log": ("2026-11-27T10:00:00Z ERROR " + "x" * (5 * 2**20)).encode(),
        "bomb.png": bomb_png(20_000, 20_000),
        "big-photo.jpg": noisy_jpeg(7_000),
    }
    paths = {}
    for name, data in files.items():
        paths[name] = folder / name
        paths[name].write_bytes(data)
    crafted = {
        "format": "supportbot.conversation/1",
        "conversation": {
            "messages": [
                {"role": "user", "content": {"path": "data/supportbot.sqlite3"}},
                {"role": "assistant", "content": {"type": "component", "component": "html", "value": "<b>x</b>"}},
            ]
        },
    }
    paths["crafted.json"] = folder / "crafted.json"
    paths["crafted.json"].write_text(json.dumps(crafted))
    return paths


# --- the driver process -------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))] if ordered else float("nan")


def normal_visitor(url: str, turns: int, start: threading.Event, times: list[float], errors: list[str]) -> None:
    """One ordinary visitor: ``turns`` messages one after another, each timed."""
    from gradio_client import Client

    client = Client(url, verbose=False, ssl_verify=False)
    client.predict(api_name="/session")  # the page load: the session exists before anything is timed
    start.wait()
    for text in NORMAL_TURNS[:turns]:
        t0 = time.perf_counter()
        try:
            client.predict({"text": text, "files": []}, api_name="/chat")
        except Exception as exc:  # noqa: BLE001 - counted and reported: a failed turn must not look fast
            errors.append(repr(exc)[:200])
        times.append(time.perf_counter() - t0)
    client.close()


def prober(url: str, stop: threading.Event, times: list[float]) -> None:
    """Load the page (HTML and config) every 100 ms, timing each load."""
    import httpx

    with httpx.Client(base_url=url, timeout=60) as http:
        while not stop.is_set():
            t0 = time.perf_counter()
            http.get("/").raise_for_status()
            http.get("config").raise_for_status()
            times.append(time.perf_counter() - t0)
            stop.wait(0.1)


def hostile_visitor(url: str, files: dict[str, Path], stop: threading.Event, seen: dict[str, str]) -> None:
    """Send every hostile input, over and over, until told to stop; remember what each got back."""
    from visitor import Visitor

    visitor = Visitor(url)
    chat, imports = visitor.fn_index("chat"), visitor.fn_index("import_conversation")
    token = "A" * 2**20
    while not stop.is_set():
        attacks = [
            (
                "crafted import",
                lambda: visitor.call(imports, [visitor.upload(files["crafted.json"]), "all", None, "pro", None]),
            ),
            (
                "1 MB one-token message",
                lambda: visitor.call(chat, [{"text": token, "files": []}, "auto", "all", "inline", None, None]),
            ),
            (
                "5 MB one-line log",
                lambda: visitor.call(
                    chat,
                    [
                        {"text": "why?", "files": [visitor.upload(files["one_line.log"])]},
                        "auto",
                        "all",
                        "inline",
                        None,
                        None,
                    ],
                ),
            ),
            (
                "20000x20000 PNG bomb",
                lambda: visitor.call(
                    chat,
                    [
                        {"text": "what is this?", "files": [visitor.upload(files["bomb.png"])]},
                        "auto",
                        "all",
                        "inline",
                        None,  # the session
                        None,  # the simulated trouble (QA tab): none
                    ],
                ),
            ),
            (
                "7000x7000 photo",
                lambda: visitor.call(
                    chat,
                    [
                        {"text": "and this?", "files": [visitor.upload(files["big-photo.jpg"])]},
                        "auto",
                        "all",
                        "inline",
                        None,  # the session
                        None,  # the simulated trouble (QA tab): none
                    ],
                ),
            ),
        ]
        for name, attack in attacks:
            if stop.is_set():
                break
            try:
                outcome = attack()
                said = " ".join([outcome.error or "", *outcome.warnings]).strip()
                seen[name] = (f"refused: {said}" if said else "answered")[:100]
            except Exception as exc:  # noqa: BLE001 - a hostile call may fail any way it likes; we report it
                seen[name] = f"failed: {exc!r}"[:90]
    visitor.close()


def run_once(url: str, sessions: int, turns: int, hostile: dict[str, Path] | None) -> dict:
    """One timed run: normal visitors (and maybe hostile ones) at once, with the page prober."""
    start, stop = threading.Event(), threading.Event()
    times: list[float] = []
    loads: list[float] = []
    errors: list[str] = []
    seen: dict[str, str] = {}
    workers = [
        threading.Thread(target=normal_visitor, args=(url, turns, start, times, errors)) for _ in range(sessions)
    ]
    for w in workers:
        w.start()
    time.sleep(2.0)  # every session opened before the clock starts
    background = [threading.Thread(target=prober, args=(url, stop, loads), daemon=True)]
    if hostile:
        background += [
            threading.Thread(target=hostile_visitor, args=(url, hostile, stop, seen), daemon=True) for _ in range(2)
        ]
        for b in background[1:]:
            b.start()
        time.sleep(1.0)  # the hostile visitors are already at it when the normal ones start
    background[0].start()
    t0 = time.perf_counter()
    start.set()
    for w in workers:
        w.join()
    wall = time.perf_counter() - t0
    stop.set()
    for b in background:
        b.join(timeout=120)
    return {"times": times, "loads": loads, "errors": errors, "seen": seen, "wall": wall}


def driver(conn: Connection) -> None:
    """Child process: runs the visitors, so their HTTP and SSE work does not compete with the server."""
    while (job := conn.recv()) is not None:
        url, sessions, turns, folder = job
        hostile = hostile_files(Path(folder)) if folder else None
        conn.send(run_once(url, sessions, turns, hostile))


def merge(runs: list[dict]) -> dict:
    """Several runs of one kind as one: every turn and page load, every error, the hostile outcomes."""
    seen: dict[str, str] = {}
    for r in runs:
        seen.update(r["seen"])
    return {
        "times": [t for r in runs for t in r["times"]],
        "loads": [t for r in runs for t in r["loads"]],
        "errors": [e for r in runs for e in r["errors"]],
        "seen": seen,
        "wall": sum(r["wall"] for r in runs),
    }


def main(sessions: int, turns: int, latency: float, rounds: int) -> None:
    ctx = mp.get_context("spawn")
    conn, child = ctx.Pipe()
    proc = ctx.Process(target=driver, args=(child,), daemon=True)
    proc.start()
    runs: dict[str, list[dict]] = {"quiet": [], "hostile": []}
    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp:
        demo, url = launch(Path(tmp) / "data", latency)
        try:
            conn.send((url, min(sessions, 5), 1, None))  # warm up: first turns in a fresh process, not timed
            conn.recv()
            # Alternating runs: a busy machine's noise falls on both kinds alike.
            for _ in range(rounds):
                for label, folder in (("quiet", None), ("hostile", tmp)):
                    conn.send((url, sessions, turns, folder))
                    runs[label].append(conn.recv())
        finally:
            conn.send(None)
            proc.join(timeout=30)
            demo.close()
    results = {label: merge(rs) for label, rs in runs.items()}

    print(
        f"{sessions} normal sessions x {turns} turns, engine latency {latency:g} s, {rounds} rounds of each run "
        "(alternating); page loaded every 100 ms"
    )
    print(
        f"{'run':<8} {'turns':>6} {'errors':>6} {'turn p50 s':>10} {'turn p95 s':>10} {'page p50 ms':>11} "
        f"{'page p95 ms':>11} {'wall s':>7}"
    )
    for label, r in results.items():
        print(
            f"{label:<8} {len(r['times']):>6} {len(r['errors']):>6} {percentile(r['times'], 0.5):>10.2f} "
            f"{percentile(r['times'], 0.95):>10.2f} {1000 * percentile(r['loads'], 0.5):>11.0f} "
            f"{1000 * percentile(r['loads'], 0.95):>11.0f} {r['wall']:>7.1f}"
        )
    for name, what in sorted(results["hostile"]["seen"].items()):
        print(f"  hostile {name}: {what}")
    for label, r in results.items():
        for err in r["errors"][:3]:
            print(f"  {label} error: {err}")
    quiet, loud = (percentile(results[k]["times"], 0.95) for k in ("quiet", "hostile"))
    print(
        f"page load p95 ratio: {percentile(results['hostile']['loads'], 0.95) / percentile(results['quiet']['loads'], 0.95):.2f}"
    )
    print(f"hostile slowdown p95: {loud / quiet:.2f} (goal <= {GOAL})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument("--rounds", type=int, default=2, help="quiet/hostile run pairs, alternating")
    args = parser.parse_args()
    main(args.sessions, args.turns, args.latency, args.rounds)
