"""A throwaway PostgreSQL server for tests and benchmarks: ``initdb`` and ``pg_ctl`` in a temporary directory.

It uses the binaries of Debian's ``postgresql`` package (``/usr/lib/postgresql/<version>/bin``), or
``initdb`` on the PATH, or only the directory in ``SUPPORTBOT_PG_BIN`` when that is set. ``initdb`` refuses to run as root,
so as root the server is created and run as the ``postgres`` system user (through ``runuser``),
in a directory handed to it. It listens on a free loopback port and a socket in its own
directory, trusts local connections (it holds only test data), and skips fsync: it lives for
one test session and is deleted with everything in it when stopped.

    server = PgServer.start()        # ~1.5 s
    url = server.create_database()   # or create_schema(), quicker, for one test
    ...
    server.stop()
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

DEBIAN_BINS = Path("/usr/lib/postgresql")
SYSTEM_USER = "postgres"


def find_bin() -> Path | None:
    """The directory holding initdb and pg_ctl (SUPPORTBOT_PG_BIN when set, and then only it; else the newest
    Debian version, else the PATH); None when not installed."""
    given = os.environ.get("SUPPORTBOT_PG_BIN")
    if given:
        return Path(given) if (Path(given) / "initdb").is_file() and (Path(given) / "pg_ctl").is_file() else None
    candidates = []
    if DEBIAN_BINS.is_dir():
        versions = [p for p in DEBIAN_BINS.iterdir() if p.name.isdigit()]
        candidates += [p / "bin" for p in sorted(versions, key=lambda p: int(p.name), reverse=True)]
    if found := shutil.which("initdb"):
        candidates.append(Path(found).parent)
    return next((d for d in candidates if (d / "initdb").is_file() and (d / "pg_ctl").is_file()), None)


def missing() -> str | None:
    """Why a server cannot be started here (no binaries, no driver), or None when it can."""
    if find_bin() is None:
        return "PostgreSQL's binaries (initdb, pg_ctl) are not installed: apt-get install postgresql"
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        return 'psycopg is not installed: pip install -e ".[postgres]"'
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root needs runuser to start PostgreSQL as another user"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    """One running PostgreSQL cluster in a temporary directory; ``stop()`` removes it."""

    def __init__(self, bindir: Path, root: Path, port: int) -> None:
        self.bindir = bindir
        self.root = root
        self.port = port
        self._as_postgres = os.geteuid() == 0
        self._stopped = False
        self._counter = 0

    @classmethod
    def start(cls, bindir: Path | None = None) -> PgServer:
        """initdb a new cluster and start it; RuntimeError with the server's log when that fails."""
        bindir = bindir or find_bin()
        if bindir is None:
            raise RuntimeError(missing() or "no PostgreSQL binaries")
        server = cls(bindir, Path(tempfile.mkdtemp(prefix="supportbot-pg-")), _free_port())
        if server._as_postgres:
            shutil.chown(server.root, SYSTEM_USER)
        try:
            server._run("initdb", "-D", str(server.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
            options = (
                f"-p {server.port} -k {server.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
            )
            server._run("pg_ctl", "-D", str(server.data), "-o", options, "-l", str(server.log), "-w", "start")
        except subprocess.CalledProcessError as exc:
            log = server.log.read_text(errors="replace")[-2000:] if server.log.exists() else ""
            shutil.rmtree(server.root, ignore_errors=True)
            raise RuntimeError(f"PostgreSQL did not start: {exc.stderr or exc.stdout}\n{log}") from None
        atexit.register(server.stop)  # a crashed session must not leave a server behind
        return server

    @property
    def data(self) -> Path:
        """The cluster's data directory."""
        return self.root / "data"

    @property
    def log(self) -> Path:
        """The server's log file."""
        return self.root / "server.log"

    def url(self, database: str = "postgres") -> str:
        """A connection URL for ``database`` (no password: the cluster trusts loopback)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A new, empty database; returns its URL."""
        import psycopg

        if name is None:
            self._counter += 1
            name = f"t{self._counter}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def create_schema(self, name: str | None = None) -> str:
        """A new, empty schema in the ``postgres`` database; returns a URL whose connections use it
        (through ``search_path``). Far quicker than a database per test, and as isolated for our tables."""
        import psycopg

        if name is None:
            self._counter += 1
            name = f"s{self._counter}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{name}"')
        return f"{self.url()}?options=-csearch_path%3D{name}"

    def drop_schema(self, url: str) -> None:
        """Drop the schema a ``create_schema`` URL names, with everything in it."""
        import psycopg

        name = url.rsplit("%3D", 1)[1]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting whoever is still connected."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        """Stop the server at once and delete its directory (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop")
        except subprocess.CalledProcessError:
            pass  # already gone; the directory still goes
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / program), *args]
        if self._as_postgres:
            cmd = ["runuser", "-u", SYSTEM_USER, "--", *cmd]
        return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)


if __name__ == "__main__":
    import time

    t0 = time.perf_counter()
    srv = PgServer.start()
    print(f"started {srv.url()} in {time.perf_counter() - t0:.2f} s; Ctrl-C stops it")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        srv.stop()
