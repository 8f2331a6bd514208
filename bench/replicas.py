"""Replicas: two app processes on one PostgreSQL database behind a round-robin proxy, against one on SQLite.

    python bench/replicas.py [--sessions 100] [--turns 3] [--concurrency 20] [--database-url postgresql://…]

Each session is one visitor (its own address, passed as X-Forwarded-For through the proxy, a
trusted hop) sending ``--turns`` messages. Sessions are not sticky: every turn is a new Gradio
session (gradio_client's ``reset_session``: a new ``session_hash``), and the proxy (bench/proxy.py)
sends each new Gradio session of a visitor to the *other* replica than its last, so every turn
after the first runs on the replica that did not serve the one before. It continues the same
stored conversation there with ``/load`` (as a ``?c=`` link does), then ``/chat``. Uploads carry no
session, so that proxy would split them from their turn: the bench sends text only (a real
load balancer keeps a browser on one replica by cookie).

Both daily bounds are set so the run hits them (each visitor's last turn, and the app's total).
Printed, per setup: turns answered, stopped by a limit mid-turn, refused by a limit before
starting, failed; **lost turns** (goal 0): turns the visitor saw accepted that are missing from
the stored conversation at the end, read back through the proxy, or that could not be
continued; **overshoot** (goal 0): requests counted beyond the app's and any visitor's limit, read
from the database (retries are off, so none is allowed); p50/p95 turn time (``/load`` + ``/chat``,
not gradio_client's own connection set-up). The baseline, driven identically in the same run, is
one replica on SQLite without the proxy. Without ``--database-url`` a throwaway PostgreSQL server
is started (tests/pgserver.py; needs Debian's ``postgresql`` package and psycopg).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import httpx  # noqa: E402

from bench.proxy import STATS_PATH  # noqa: E402

TEXTS = ("Where is my order #48291?", "And what about order #48258?", "Is order #48250 still eligible for a refund?")


# --- the driver ----------------------------------------------------------------------------------------------


@dataclass
class Turn:
    """One turn as the visitor saw it."""

    kind: str  # answered | limit (stopped mid-turn) | refused (before starting) | failed
    seconds: float
    error: str = ""


@dataclass
class Visit:
    """One session: its turns, and what the visitor last saw stored."""

    address: str
    turns: list[Turn] = field(default_factory=list)
    conversation_id: str | None = None
    messages: list[dict] = field(default_factory=list)
    accepted: int = 0  # turns whose message was recorded (answered or stopped by a limit)
    lost: int = 0


def client(url: str, address: str):
    from gradio_client import Client

    headers = {"X-Forwarded-For": address}
    return Client(url, verbose=False, ssl_verify=False, headers=headers, httpx_kwargs={"timeout": 120})


def visit(url: str, address: str, turns: int) -> Visit:
    """Send ``turns`` messages, each from a new Gradio session that continues the stored conversation."""
    from gradio_client.exceptions import AppError

    v = Visit(address)
    try:
        c = client(url, address)  # the page: its config is the same on every replica
    except Exception as exc:  # noqa: BLE001 - a page that does not open fails every turn, counted
        v.turns = [Turn("failed", 0.0, f"{type(exc).__name__}: {exc}"[:200]) for _ in range(turns)]
        return v
    try:
        for n in range(turns):
            if n:
                c.reset_session()  # a new Gradio session: through the proxy, the other replica
            start = time.perf_counter()
            try:
                if v.conversation_id is not None:
                    loaded = c.predict(v.conversation_id, api_name="/load")
                    if loaded["messages"] != v.messages:
                        v.lost += 1  # the other replica does not show what this visitor saw stored
                c.predict({"text": TEXTS[n % len(TEXTS)], "files": []}, api_name="/chat")
                seconds = time.perf_counter() - start
                session = c.predict(api_name="/session")
                v.conversation_id, v.messages = session["conversation_id"], session["messages"]
                v.accepted += 1
                kind = "limit" if session["messages"][-1].get("error_kind") == "limit" else "answered"
                v.turns.append(Turn(kind, seconds))
            except AppError as exc:
                kind = "refused" if "daily request limit" in str(exc) else "failed"
                v.turns.append(Turn(kind, time.perf_counter() - start, str(exc)[:200]))
            except Exception as exc:  # noqa: BLE001 - counted and shown: the figure this bench exists for
                v.turns.append(Turn("failed", time.perf_counter() - start, f"{type(exc).__name__}: {exc}"[:200]))
    finally:
        c.close()
    return v


def check_stored(url: str, v: Visit) -> None:
    """Read the conversation back (a new session, so through the proxy it may be either replica)."""
    if v.conversation_id is None:
        return
    try:
        c = client(url, v.address)
        try:
            stored = c.predict(v.conversation_id, api_name="/load")["messages"]
        finally:
            c.close()
    except Exception:  # noqa: BLE001 - an unreadable conversation loses every turn in it
        stored = []
    users = sum(m["role"] == "user" for m in stored)
    v.lost += max(0, v.accepted - users) + (stored != v.messages and users >= v.accepted)


def drive(url: str, sessions: int, turns: int, concurrency: int, tag: int) -> tuple[list[Visit], float]:
    """Every session at once (at most ``concurrency`` in flight); returns the visits and the wall time."""
    addresses = [f"10.{tag}.{i // 250}.{i % 250 + 1}" for i in range(sessions)]
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        visits = list(pool.map(lambda a: visit(url, a, turns), addresses))
    wall = time.perf_counter() - start
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda v: check_stored(url, v), visits))
    return visits, wall


def overshoot(url: str | None, data_dir: Path, visitor_limit: int, app_limit: int) -> tuple[int, int, int]:
    """(app used, most any visitor used, requests beyond the limits), read from the database."""
    from supportbot.storage.db import open_database

    db = open_database(url, data_dir)
    try:
        rows = db.execute("SELECT scope, used FROM spend_counters")
    finally:
        db.close()
    app = sum(r["used"] for r in rows if r["scope"] == "app")
    visitors = [r["used"] for r in rows if r["scope"] != "app"] or [0]
    beyond = max(0, app - app_limit) + sum(max(0, u - visitor_limit) for u in visitors)
    return app, max(visitors), beyond


# --- the run -------------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of ``values``, or 0."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def row(label: str, visits: list[Visit], wall: float, counts: tuple[int, int, int], limits: tuple[int, int]) -> str:
    turns = [t for v in visits for t in v.turns]
    kinds = {k: sum(t.kind == k for t in turns) for k in ("answered", "limit", "refused", "failed")}
    timed = [t.seconds * 1000 for t in turns if t.kind in ("answered", "limit")]
    app, top, beyond = counts
    return (
        f"| {label} | {len(visits)} | {len(turns)} | {kinds['answered']} | {kinds['limit']} | {kinds['refused']} "
        f"| {kinds['failed']} | **{sum(v.lost for v in visits)}** | {app}/{limits[1]} | {top}/{limits[0]} "
        f"| **{beyond}** | {statistics.median(timed) if timed else 0:.0f} | {percentile(timed, 95):.0f} | {wall:.1f} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=20, help="sessions in flight at once")
    parser.add_argument("--visitor-limit", type=int, default=5, help="requests per visitor per day (2 per turn)")
    parser.add_argument(
        "--app-limit",
        type=int,
        default=0,
        help="requests per day for the app (default: 90%% of the most the visitors may use)",
    )
    parser.add_argument("--database-url", help="an empty PostgreSQL database (default: a throwaway server)")
    args = parser.parse_args()

    from tests.appprocess import AppProcess, free_port, start_all

    visitor_limit = args.visitor_limit
    app_limit = args.app_limit or int(0.9 * visitor_limit * args.sessions)
    work = Path(tempfile.mkdtemp(prefix="bench-replicas-"))
    server = None
    url = args.database_url
    if not url:
        from tests.pgserver import PgServer, missing

        if reason := missing():
            print(f"bench/replicas.py needs PostgreSQL: {reason} (or pass --database-url)", file=sys.stderr)
            return 2
        server = PgServer.start()
        url = server.create_database("bench")
    limits = {
        "SUPPORTBOT_VISITOR_REQUESTS_PER_DAY": str(visitor_limit),
        "SUPPORTBOT_REQUESTS_PER_DAY": str(app_limit),
        "SUPPORTBOT_MAX_RETRIES": "0",
    }
    # Behind the proxy the visitor's address is the second hop from the right; straight in, the first.
    replicas = [
        AppProcess(work / f"replica-{i}", {**limits, "SUPPORTBOT_DATABASE_URL": url, "SUPPORTBOT_TRUSTED_PROXIES": "2"})
        for i in (1, 2)
    ]
    single = AppProcess(work / "single", {**limits, "SUPPORTBOT_TRUSTED_PROXIES": "1"})
    apps = [*replicas, single]
    proxy = None
    try:
        print(f"starting 3 app processes and the proxy (work dir {work}) ...", flush=True)
        start_all(apps)
        port = free_port()
        proxy = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "proxy.py"), str(port), *(r.url for r in replicas)]
        )
        proxy_url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(proxy_url + STATS_PATH.lstrip("/"), timeout=2).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proxy.poll() is not None:
                    raise RuntimeError("the proxy did not start") from None
                time.sleep(0.2)
        print(f"driving {args.sessions} sessions x {args.turns} turns, {args.concurrency} at once ...", flush=True)
        base = drive(single.url, args.sessions, args.turns, args.concurrency, tag=1)
        base_counts = overshoot(None, single.workdir / "data", visitor_limit, app_limit)
        pair = drive(proxy_url, args.sessions, args.turns, args.concurrency, tag=2)
        pair_counts = overshoot(url, work, visitor_limit, app_limit)
        stats = httpx.get(proxy_url + STATS_PATH.lstrip("/"), timeout=5).json()
    finally:
        if proxy is not None:
            proxy.kill()  # it holds the clients' open heartbeat streams; nothing in it needs a clean exit
            proxy.wait(timeout=10)
        for app in apps:
            app.stop()
        if server is not None:
            server.stop()

    print()
    print(
        "| setup | sessions | turns | answered | stopped by limit | refused by limit | failed | lost (goal 0) "
        "| app requests / limit | most by one visitor / limit | overshoot (goal 0) | p50 ms | p95 ms | wall s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    print(row("1 replica, SQLite, direct", *base, base_counts, (visitor_limit, app_limit)))
    print(row("2 replicas, PostgreSQL, proxy", *pair, pair_counts, (visitor_limit, app_limit)))
    print()
    print(
        f"proxy: Gradio sessions per replica {stats['sessions']}, requests per replica {stats['requests']}; "
        f"a visitor's next session on the other replica {stats['switched']} times, on the same {stats['kept']}"
    )
    failures = [t.error for v in pair[0] + base[0] for t in v.turns if t.kind == "failed"]
    for error in sorted(set(failures))[:5]:
        print(f"failed: {error}")
    p95 = [
        percentile([t.seconds for v in run[0] for t in v.turns if t.kind in ("answered", "limit")], 95)
        for run in (base, pair)
    ]
    print(f"p95 turn time, 2 replicas on PostgreSQL / 1 on SQLite: {p95[1] / p95[0] if p95[0] else 0:.2f}x")
    lost = sum(v.lost for v in pair[0] + base[0])
    return 0 if lost == 0 and pair_counts[2] == 0 and base_counts[2] == 0 and not failures else 1


if __name__ == "__main__":
    sys.exit(main())
