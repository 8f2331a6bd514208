"""The offline demo engine: a rule-based support agent behind a real OpenAI-protocol server.

Demos, tests and CI use it through the real ``openai`` SDK, in process
(``engine.transport()`` with base_url ``http://offline.engine/v1``) or over
loopback (``start_server(engine)``). It is deterministic, names itself
"offline demo engine" and never claims to be a language model.

Failure injection (``protocol.FAILURE_KINDS``): ``engine.inject(kind, times)``,
the request header ``X-Supportbot-Fail: <kind>``, or the model id ``fail-<kind>``.
"""

from __future__ import annotations

from supportbot.engine.core import FAIL_HEADER, FAIL_MODEL_PREFIX, OWN_MODEL_ID, OfflineEngine
from supportbot.engine.protocol import FAILURE_KINDS
from supportbot.engine.server import RunningServer, start_server

OFFLINE_BASE_URL = "http://offline.engine/v1"

__all__ = ["FAILURE_KINDS", "FAIL_HEADER", "FAIL_MODEL_PREFIX", "OFFLINE_BASE_URL", "OWN_MODEL_ID",
           "OfflineEngine", "RunningServer", "start_server"]
