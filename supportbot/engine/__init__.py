"""The offline demo engine: a rule-based support agent behind a real OpenAI-protocol server.

Demos, tests and CI use it through the real ``openai`` SDK, in process
(``engine.transport()`` with base_url ``http://offline.engine/v1``) or over
loopback (``start_server(engine)``). It is deterministic, names itself
"offline demo engine" and never claims to be a language model.

A one-way door: the product imports this package only where the offline engine is chosen,
and the engine imports nothing of the product but ``supportbot.vocabulary`` (shared text
rules). What it knows of the catalog is what it is given: model ids and context windows.
It counts tokens its own way (``engine.tokens``) and reads logs its own way
(``engine.logreader``), so tests of the product's estimates check them against something
the product did not write.

Failure injection (``protocol.FAILURE_KINDS``): ``engine.inject(kind, times)``,
the request header ``X-Supportbot-Fail: <kind>``, or the model id ``fail-<kind>``. The header
``X-Supportbot-Latency: <seconds>`` adds a delay to one request (at most ``MAX_LATENCY_S``).
"""

from __future__ import annotations

from typing import Any

from supportbot.engine.core import (
    FAIL_HEADER,
    FAIL_MODEL_PREFIX,
    LATENCY_HEADER,
    MAX_LATENCY_S,
    OWN_MODEL_ID,
    OfflineEngine,
    load_windows,
)
from supportbot.engine.protocol import FAILURE_KINDS

OFFLINE_BASE_URL = "http://offline.engine/v1"

__all__ = [
    "FAILURE_KINDS",
    "FAIL_HEADER",
    "FAIL_MODEL_PREFIX",
    "LATENCY_HEADER",
    "MAX_LATENCY_S",
    "OFFLINE_BASE_URL",
    "OWN_MODEL_ID",
    "OfflineEngine",
    "RunningServer",
    "load_windows",
    "start_server",
]


def __getattr__(name: str) -> Any:
    # The loopback server needs uvicorn; the in-process transport does not, so load it on first use.
    if name in ("RunningServer", "start_server"):
        from supportbot.engine import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
