"""Model fallback: which model a failed turn runs on next, and which models failed recently.

A turn whose model fails with one of ``FALLBACK_KINDS`` (404, 403, an empty stream, or a 5xx or a
timeout after the SDK's retries) before any answer text was shown runs once more, on
``next_fallback``: the first of its route's ``fallbacks`` that can still take it. The router already
filtered those by plan, service list, images and window, in preference order; this re-checks them
(the model list may have been read since, and a turn with completed tool rounds needs a model that
takes tools) and puts models that failed recently last.

A model that failed this way is tried last for ``COOLDOWN_S`` seconds (5 minutes): ``Cooldown``
remembers it, and ``demote`` moves an automatic route off it. The registry is per process: with
several replicas each keeps its own, so a model failing on one is tried first on another until it
fails there too. It holds model ids only, never visitor data.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import replace

from supportbot.events import RouteDecision
from supportbot.routing.catalog import Catalog, ModelInfo

# ApiError kinds a turn falls back on; others (auth, rate limits, a dropped connection, a bad request)
# would fail on any model of the same service, or are the request's own fault.
FALLBACK_KINDS = frozenset({"not_found", "forbidden", "empty_stream", "server", "timeout"})
COOLDOWN_S = 300.0


def failure_label(kind: str, status: int | None) -> str:
    """'404', '403', '503', 'empty stream', 'timeout': how a failure is named in the chat and the Route panel."""
    if status:
        return str(status)
    return kind.replace("_", " ")


class Cooldown:
    """Models that failed recently (id -> label), each for ``seconds`` after its last failure; thread-safe."""

    def __init__(self, seconds: float = COOLDOWN_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self._until: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def failed(self, model_id: str, label: str) -> None:
        """Remember that ``model_id`` just failed (a later failure restarts its cooldown)."""
        with self._lock:
            self._until[model_id] = (self.clock() + self.seconds, label)

    def cooling(self) -> dict[str, str]:
        """The models still cooling down, with how each failed; expired entries are forgotten."""
        now = self.clock()
        with self._lock:
            for model_id in [m for m, (until, _) in self._until.items() if until <= now]:
                del self._until[model_id]
            return {m: label for m, (_, label) in self._until.items()}


def _last(ids: Collection[str], cooling: Collection[str]) -> list[str]:
    return sorted(ids, key=lambda i: i in cooling)  # stable: preference order otherwise


def candidates(
    decision: RouteDecision,
    catalog: Catalog,
    *,
    images: bool,
    tools: bool = False,
    exclude: Collection[str] = (),
    cooling: Collection[str] = (),
) -> list[ModelInfo]:
    """The route's fallbacks that can take its turn, in preference order with cooling models last.

    A fallback must still be on the plan and not known to be unlisted, read images when the turn has
    some, take tools when ``tools`` (completed tool rounds go along), and hold the prompt as it was
    prepared: the estimate, or the chosen model's window when logs were reduced or turns compacted."""
    need = min(decision.est_tokens, decision.context_window)
    usable = []
    for model_id in decision.fallbacks:
        if model_id in exclude or model_id not in catalog:
            continue
        m = catalog.get(model_id)
        if catalog.unavailable(m) is not None or (images and not m.capabilities.vision):
            continue
        if (tools and not m.capabilities.tools) or need > m.context_window:
            continue
        usable.append(m)
    return sorted(usable, key=lambda m: m.id in cooling)


def next_fallback(
    decision: RouteDecision,
    catalog: Catalog,
    *,
    images: bool,
    tools: bool = False,
    exclude: Collection[str] = (),
    cooling: Collection[str] = (),
) -> ModelInfo | None:
    """The model a failed turn runs on next (see ``candidates``), or None when none can take it."""
    found = candidates(decision, catalog, images=images, tools=tools, exclude=exclude, cooling=cooling)
    return found[0] if found else None


def demote(decision: RouteDecision, catalog: Catalog, cooling: Mapping[str, str], *, images: bool) -> RouteDecision:
    """``decision`` with recently failed models tried last: an automatic route moves to its first fallback that
    did not fail (when one can take the turn), and the fallbacks list the failed ones at the end. A model the
    user chose stays chosen: they asked for it, and its failure falls back as usual."""
    if not cooling:
        return decision
    fallbacks = tuple(_last(decision.fallbacks, cooling))
    if decision.model not in cooling or decision.rule.startswith("manual"):
        return replace(decision, fallbacks=fallbacks)
    alt = next_fallback(decision, catalog, images=images, exclude={decision.model}, cooling=cooling)
    if alt is None or alt.id in cooling:
        return replace(decision, fallbacks=fallbacks)  # every candidate failed lately: the preference order stands
    failed = catalog.get(decision.model) if decision.model in catalog else None
    name = failed.name if failed else decision.model
    minutes = f"{COOLDOWN_S / 60:g}"
    reason = (
        f"{decision.reason} {name} failed ({cooling[decision.model]}) in the last {minutes} minutes, so it is tried "
        f"last: {alt.name} takes this turn."
    )
    rest = _last([i for i in (decision.model, *decision.fallbacks) if i != alt.id], cooling)
    return replace(decision, model=alt.id, context_window=alt.context_window, fallbacks=tuple(rest), reason=reason)
