"""The model catalog: an editable JSON file in assets/, validated on load."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from supportbot.config import ASSETS_DIR
from supportbot.errors import CatalogError

Category = Literal["triage", "reasoning", "multilingual", "long_context", "agentic", "vision"]
CATEGORIES: tuple[str, ...] = ("triage", "reasoning", "multilingual", "long_context", "agentic", "vision")


class Capabilities(BaseModel):
    """What a model can do through the chat-completions API."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    tools: bool = False
    vision: bool = False
    json_schema: bool = False
    reasoning: bool = False


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

    @property
    def label(self) -> str:
        """Display name with the markers a user needs when choosing."""
        marks = " 👁" if self.capabilities.vision else ""
        return f"{self.name}{marks}" + ("" if self.confirmed else " (id unconfirmed)")


@dataclass(frozen=True)
class Catalog:
    """An ordered, read-only set of models; file order is preference order."""

    models: tuple[ModelInfo, ...]
    unlisted: frozenset[str] = field(default_factory=frozenset)

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

    def with_service_ids(self, served: Iterable[str]) -> Catalog:
        """A copy that flags (never drops) models the service does not list."""
        served = set(served)
        return Catalog(self.models, frozenset(m.id for m in self.models if m.id not in served))


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
            raise CatalogError(name, f"{where}: {err['msg']}") from None
    seen: set[str] = set()
    for m in models:
        if m.id in seen:
            raise CatalogError(f"{path.name} ({m.id})", "duplicate model id")
        seen.add(m.id)
    return Catalog(tuple(models))
