"""The editable routing policy (assets/routing.json): preferences, plans, thresholds, keywords."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from supportbot.config import ASSETS_DIR
from supportbot.errors import CatalogError, ConfigError
from supportbot.routing.catalog import CATEGORIES, Catalog

KnownTier = Literal["free", "pro", "premium"]


def _default_plans() -> dict[str, list[str]]:
    return {"free": ["free"], "pro": ["free", "pro"], "premium": ["free", "pro", "premium"]}


class RoutingPolicy(BaseModel):
    """The editable routing preferences and thresholds (assets/routing.json)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    preferences: dict[str, list[str]]
    # plan name (as in pricing.json) -> the model tiers it includes
    plans: dict[str, list[KnownTier]] = Field(default_factory=_default_plans)
    # what automatic routing does with a model whose tier Oxlo does not publish
    unknown_tier: Literal["after_known", "in_order", "exclude"] = "after_known"
    safety_margin: float = Field(0.10, ge=0, le=1)
    min_actions_for_agentic: int = Field(2, ge=2)
    reasoning_keywords: list[str] = []
    action_verbs: dict[str, list[str]] = {}


def load_policy(path: Path | None = None, catalog: Catalog | None = None) -> RoutingPolicy:
    """Load the policy; a bad value, an unknown category or model ids missing from the catalog raise CatalogError."""
    path = Path(path or ASSETS_DIR / "routing.json")
    try:
        policy = RoutingPolicy.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError) as exc:
        raise CatalogError(path.name, str(exc).splitlines()[0]) from None
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise CatalogError(f"{path.name} {where}", err["msg"]) from None
    for category in policy.preferences:
        if category not in CATEGORIES:
            raise CatalogError(
                f"{path.name} preferences.{category}", f"unknown category; use one of {', '.join(CATEGORIES)}"
            )
    if catalog is not None:
        # Name every bad reference at once: a user editing the file fixes them in one go.
        missing = [
            f"preferences.{category}: {model_id!r}"
            for category, ids in policy.preferences.items()
            for model_id in ids
            if model_id not in catalog
        ]
        if missing:
            raise CatalogError(path.name, "models not in the catalog: " + "; ".join(missing))
    return policy


def plan_tiers(policy: RoutingPolicy, plan: str, pricing_plans: Iterable[str] | None = None) -> list[str]:
    """The tiers ``plan`` includes; ConfigError names SUPPORTBOT_PLAN, CatalogError a routing/pricing mismatch."""
    if pricing_plans is not None:
        priced = set(pricing_plans)
        if priced != set(policy.plans):
            raise CatalogError(
                "routing.json plans",
                f"must name the plans of pricing.json ({', '.join(sorted(priced))}); "
                f"it names {', '.join(sorted(policy.plans)) or 'none'}",
            )
    if plan not in policy.plans:
        raise ConfigError("SUPPORTBOT_PLAN", f"unknown plan {plan!r}; use one of {', '.join(policy.plans)}")
    return list(policy.plans[plan])
