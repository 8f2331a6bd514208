"""Choosing among a category's candidates: which the plan, the service list, images and the prompt
allow, in what order, and why the others were skipped. Pure."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from supportbot.events import Skipped
from supportbot.routing.catalog import NO_IMAGES, TIER_UNPUBLISHED, TOO_SMALL, Catalog, ModelInfo
from supportbot.routing.policy import RoutingPolicy


@dataclass(frozen=True)
class Pick:
    """Candidates split into usable (best first) and skipped (with why), in preference order."""

    usable: list[ModelInfo]
    skipped: list[Skipped]


def pick_models(
    catalog: Catalog,
    policy: RoutingPolicy,
    ids: list[str],
    need: int | None,
    *,
    images: bool = False,
    order: Callable[[ModelInfo], int] | None = None,
    largest: bool = False,
) -> Pick:
    """Filter ``ids`` by the service list, the plan, images and ``need`` (None: any window), then rank:
    by ``order`` within known-included, then unpublished tiers; ``largest``: by window first (nothing
    fits, so the most room wins)."""
    usable, skipped = [], []
    for model_id in dict.fromkeys(ids):
        if model_id not in catalog:
            continue
        m = catalog.get(model_id)
        why = catalog.unavailable(m)
        if why is None and m.tier == "unknown" and policy.unknown_tier == "exclude":
            why = TIER_UNPUBLISHED
        if why is None and images and not m.capabilities.vision:
            why = NO_IMAGES
        if why is None and need is not None and need > m.context_window:
            why = TOO_SMALL
        if why:
            skipped.append(Skipped(m.id, why))
        else:
            usable.append(m)

    def rank(m: ModelInfo) -> tuple[int, bool, int]:
        # Oxlo publishes no tier for some models: they may 403, so the known-included go first.
        later = policy.unknown_tier == "after_known" and catalog.on_plan(m) is None
        return (-m.context_window if largest else 0, later, order(m) if order else 0)

    return Pick(sorted(usable, key=rank), skipped)  # sorted() is stable: preference order within a rank


def skips_text(catalog: Catalog, skipped: list[Skipped]) -> str:
    """'Gemma 3 27B, Kimi K2.6 (not on your plan); Kimi VL A3B (not listed by the service)'."""
    by_reason: dict[str, list[str]] = {}
    for s in skipped:
        by_reason.setdefault(s.reason, []).append(catalog.get(s.model).name if s.model in catalog else s.model)
    return "; ".join(f"{', '.join(names)} ({reason})" for reason, names in by_reason.items())
