"""The demo data under ``assets/demo``: pydantic models for each entry, and their loaders.

The files are user-editable, so every entry is checked on load and a bad one raises
``CatalogError`` naming the file, the entry and the field. ``supportbot.store.Store``
seeds its tables from what these loaders return.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from supportbot.errors import CatalogError

_M = TypeVar("_M", bound=BaseModel)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class CustomerEntry(_Strict):
    id: str = Field(pattern=r"^C\d{4,}$")
    name: str = Field(min_length=1)
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    tier: Literal["standard", "plus", "premium"]
    language: str = Field(pattern=r"^[a-z]{2}$")
    created_days_ago: int = Field(ge=0)


class ItemEntry(_Strict):
    sku: str = Field(min_length=1)
    name: str = Field(min_length=1)
    qty: int = Field(ge=1)
    unit_price: float = Field(ge=0)


class OrderEntry(_Strict):
    id: str = Field(pattern=r"^\d{4,10}$")
    customer_id: str
    status: Literal["processing", "shipped", "delivered", "delayed", "cancelled", "refunded"]
    status_detail: str | None = None
    ordered_days_ago: int = Field(ge=0)
    shipped_days_ago: int | None = Field(default=None, ge=0)
    eta_days: int | None = Field(default=None, description="days from seeding; negative = past")
    delivered_days_ago: int | None = Field(default=None, ge=0)
    cancelled_days_ago: int | None = Field(default=None, ge=0)
    refunded_days_ago: int | None = Field(default=None, ge=0)
    carrier: str | None = None
    tracking_number: str | None = None
    items: list[ItemEntry] = Field(min_length=1)
    total: float = Field(ge=0)
    currency: str = Field(pattern=r"^[A-Z]{3}$")

    @model_validator(mode="after")
    def _consistent(self) -> OrderEntry:
        needs = {
            "shipped": ("shipped_days_ago", "eta_days", "carrier", "tracking_number"),
            "delayed": ("shipped_days_ago", "eta_days"),
            "delivered": ("shipped_days_ago", "delivered_days_ago"),
            "cancelled": ("cancelled_days_ago",),
            "refunded": ("refunded_days_ago",),
        }.get(self.status, ())
        missing = [name for name in needs if getattr(self, name) is None]
        if missing:
            raise ValueError(f"a {self.status} order needs {', '.join(missing)}")
        # Every event happens on or after the order day (offsets count backwards).
        for name in ("shipped_days_ago", "delivered_days_ago", "cancelled_days_ago", "refunded_days_ago"):
            value = getattr(self, name)
            if value is not None and value > self.ordered_days_ago:
                raise ValueError(
                    f"{name} ({value}) is before the order date (ordered_days_ago {self.ordered_days_ago})"
                )
        if self.eta_days is not None and self.eta_days < -self.ordered_days_ago:
            raise ValueError(f"eta_days ({self.eta_days}) is before the order date")
        expected = round(sum(i.qty * i.unit_price for i in self.items), 2)
        if abs(expected - self.total) > 0.005:
            raise ValueError(f"total {self.total} does not match the items ({expected})")
        return self


class KbEntry(_Strict):
    id: str = Field(pattern=r"^KB-\d{3,}$")
    title: str = Field(min_length=3)
    category: Literal["shipping", "returns", "refunds", "warranty", "account", "payments", "privacy", "troubleshooting"]
    body: str = Field(min_length=40)


class Policy(_Strict):
    """Refund and returns policy from ``policy.json``; ``notes`` documents each decision."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    refund_window_days: int = Field(ge=0, le=365)
    return_window_days: int = Field(ge=0, le=365)
    lost_parcel_days_after_eta: int = Field(ge=1, le=90)
    refund_processing: str
    warranty_months: int = Field(ge=0)
    notes: dict[str, str] = Field(default_factory=dict)


def _describe(error: ValidationError) -> str:
    parts = []
    for err in error.errors():
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {err['msg']}" if loc else err["msg"])
    return "; ".join(parts)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogError(path.name, f"file not found at {path}") from None
    except json.JSONDecodeError as exc:
        raise CatalogError(path.name, f"not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}") from None


def read_entries(path: Path, model: type[_M], label: str) -> list[_M]:
    """Read a JSON list of ``model`` entries; a bad or duplicate entry raises CatalogError naming it."""
    raw = _read_json(path)
    if not isinstance(raw, list):
        raise CatalogError(path.name, "expected a JSON list of entries")
    out: list[_M] = []
    seen: set[str] = set()
    for i, entry in enumerate(raw):
        name = f"{path.name}[{i}]"
        if isinstance(entry, dict) and "id" in entry:
            name += f" ({label} {entry['id']})"
        try:
            item = model.model_validate(entry)
        except ValidationError as exc:
            raise CatalogError(name, _describe(exc)) from None
        if item.id in seen:  # type: ignore[attr-defined]
            raise CatalogError(name, "duplicate id")
        seen.add(item.id)  # type: ignore[attr-defined]
        out.append(item)
    return out


def read_kb(kb_dir: Path) -> list[KbEntry]:
    """Parse and validate ``kb/*.md``: a ``---`` header of ``key: value`` lines, then the body."""
    files = sorted(kb_dir.glob("*.md"))
    if not files:
        raise CatalogError(f"{kb_dir.name}/", f"no knowledge-base articles (*.md) in {kb_dir}")
    articles: list[KbEntry] = []
    seen: set[str] = set()
    for path in files:
        name = f"kb/{path.name}"
        text = path.read_text(encoding="utf-8")
        match = re.match(r"\A---\s*\n(.*?)\n---\s*\n(.*)\Z", text, re.S)
        if not match:
            raise CatalogError(name, "must start with a '---' header (id, title, category) closed by '---'")
        fields: dict[str, str] = {}
        for line in match.group(1).splitlines():
            key, sep, value = line.partition(":")
            if not sep:
                raise CatalogError(name, f"header line {line!r} is not 'key: value'")
            fields[key.strip()] = value.strip()
        try:
            article = KbEntry.model_validate({**fields, "body": match.group(2).strip()})
        except ValidationError as exc:
            raise CatalogError(name, _describe(exc)) from None
        if article.id in seen:
            raise CatalogError(name, f"duplicate article id {article.id}")
        seen.add(article.id)
        articles.append(article)
    return articles


def load_policy(demo_dir: Path) -> Policy:
    """Read and validate ``policy.json``."""
    try:
        return Policy.model_validate(_read_json(demo_dir / "policy.json"))
    except ValidationError as exc:
        raise CatalogError("policy.json", _describe(exc)) from None
