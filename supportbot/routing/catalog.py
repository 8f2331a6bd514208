"""The model catalog: an editable JSON file in assets/, validated on load.

A ``Catalog`` also knows, once the app has started, which plan the routes are for and which
models the service lists at ``GET /v1/models`` ("listed", "not listed" or "not checked"). It is
immutable: start-up replaces it (``for_plan``, ``with_service_ids``), nothing mutates it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from supportbot.config import ASSETS_DIR
from supportbot.errors import CatalogError

Category = Literal["triage", "reasoning", "multilingual", "long_context", "agentic", "vision"]
CATEGORIES: tuple[str, ...] = ("triage", "reasoning", "multilingual", "long_context", "agentic", "vision")
Tier = Literal["free", "pro", "premium", "unknown"]
# Oxlo's published tiers, lowest first; "unknown" means Oxlo publishes none for the model.
TIERS: tuple[str, ...] = ("free", "pro", "premium")

# Why automatic routing passed a model over; shown in the route reason and the Route panel.
NOT_LISTED = "not listed by the service"
NOT_ON_PLAN = "not on your plan"
NO_IMAGES = "cannot read images"
TOO_SMALL = "window too small"
TIER_UNPUBLISHED = "tier not published (routing.json excludes such models)"


class Capabilities(BaseModel):
    """What a model can do through the chat-completions API."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    tools: bool = False
    vision: bool = False
    json_schema: bool = False
    reasoning: bool = False


class Fact(BaseModel):
    """Where one catalog fact comes from, as pricing.json records its figures."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    source: str = Field(min_length=1)
    as_of: date | None = None  # the day it was read
    verified: bool = False  # True only when read on the provider's own current page


class Sources(BaseModel):
    """The source of each fact that has one; more keys are refused so a typo is named."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    tier: Fact | None = None
    vision: Fact | None = None
    context_window: Fact | None = None


class ModelInfo(BaseModel):
    """One catalog entry."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    categories: tuple[Category, ...] = Field(min_length=1)
    context_window: int = Field(ge=1024)
    capabilities: Capabilities = Capabilities()
    confirmed: bool = False
    max_image_edge: int | None = Field(None, ge=64)
    source: str = ""
    tier: Tier = "unknown"
    sources: Sources = Sources()

    @model_validator(mode="after")
    def _a_known_tier_has_a_source(self) -> ModelInfo:
        if self.tier != "unknown" and self.sources.tier is None:
            raise ValueError(f"tier {self.tier!r} needs sources.tier saying where it was read (or use 'unknown')")
        return self

    @property
    def label(self) -> str:
        """Display name with the markers a user needs when choosing."""
        marks = " 👁" if self.capabilities.vision else ""
        return f"{self.name}{marks}" + ("" if self.confirmed else " (id unconfirmed)")

    @property
    def tier_label(self) -> str:
        """'Pro', 'Premium', 'Free' or 'tier not published'."""
        return "tier not published" if self.tier == "unknown" else self.tier.title()


@dataclass(frozen=True)
class Catalog:
    """An ordered, read-only set of models (file order) and what the service and the plan allow."""

    models: tuple[ModelInfo, ...]
    served: frozenset[str] | None = None  # ids GET /models listed; None: the list was not checked
    plan: str | None = None  # the plan routes are for (SUPPORTBOT_PLAN); None: every tier
    plan_tiers: frozenset[str] = frozenset(TIERS)

    def __iter__(self) -> Iterator[ModelInfo]:
        return iter(self.models)

    def __contains__(self, model_id: object) -> bool:
        return any(m.id == model_id for m in self.models)

    def get(self, model_id: str) -> ModelInfo:
        """The entry for ``model_id``; KeyError names the known ids."""
        for m in self.models:
            if m.id == model_id:
                return m
        raise KeyError(f"unknown model {model_id!r}; known: {', '.join(self.ids())}")

    def ids(self) -> list[str]:
        """All model ids in file order."""
        return [m.id for m in self.models]

    def in_category(self, category: str) -> list[ModelInfo]:
        """Models listing ``category``, in file order."""
        return [m for m in self.models if category in m.categories]

    @property
    def checked(self) -> bool:
        """Whether the service's model list was read."""
        return self.served is not None

    @property
    def unlisted(self) -> frozenset[str]:
        """Catalog ids the service does not list (none when the list was not checked)."""
        if self.served is None:
            return frozenset()
        return frozenset(m.id for m in self.models if m.id not in self.served)

    def listed(self, model_id: str) -> bool | None:
        """True or False from the service's list; None when it was not checked."""
        return None if self.served is None else model_id in self.served

    def on_plan(self, model: ModelInfo) -> bool | None:
        """Whether the plan includes the model's tier; None when the tier is not published."""
        return None if model.tier == "unknown" else model.tier in self.plan_tiers

    def for_plan(self, plan: str, tiers: Iterable[str]) -> Catalog:
        """A copy whose routes are for ``plan``, which includes ``tiers``."""
        return replace(self, plan=plan, plan_tiers=frozenset(tiers))

    def with_service_ids(self, served: Iterable[str]) -> Catalog:
        """A copy that knows what the service lists; models it does not list are flagged, never dropped."""
        return replace(self, served=frozenset(served))

    def unavailable(self, model: ModelInfo) -> str | None:
        """Why automatic routing may not use ``model`` (not listed, not on the plan), or None."""
        if self.listed(model.id) is False:
            return NOT_LISTED
        if self.on_plan(model) is False:
            return NOT_ON_PLAN
        return None


def load_catalog(path: Path | None = None) -> Catalog:
    """Load and validate the catalog; a bad entry raises CatalogError naming it."""
    path = Path(path or ASSETS_DIR / "models.json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CatalogError(str(path), f"cannot read the catalog: {exc}") from None
    entries = data.get("models") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise CatalogError(str(path), 'expected {"models": [ ... ]} with at least one model')
    models: list[ModelInfo] = []
    for i, entry in enumerate(entries):
        name = f"{path.name} models[{i}]" + (f" ({entry.get('id')})" if isinstance(entry, dict) else "")
        try:
            models.append(ModelInfo.model_validate(entry))
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            raise CatalogError(name, f"{where}: {msg}" if where else msg) from None
    seen: set[str] = set()
    for m in models:
        if m.id in seen:
            raise CatalogError(f"{path.name} ({m.id})", "duplicate model id")
        seen.add(m.id)
    return Catalog(tuple(models))
