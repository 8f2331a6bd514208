"""Requests, tokens and money: flat per-request plans beside token-priced providers.

The figures live in ``assets/pricing.json`` (editable; each with ``source``, ``as_of``
and ``verified``). A price we do not know is ``None``, never zero. Where a provider does not
list a model, the file's ``equivalents`` name the nearest models it does list (by size and
kind, with the basis and its source): the request is priced as that model, marked as an
estimate. A request with neither is left out of that provider's total, which is then marked
partial (how many requests it covers) and names the models, so a comparison never looks
cheaper than it is without saying so.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from supportbot.config import ASSETS_DIR
from supportbot.errors import CatalogError
from supportbot.events import UsageRecord

DAYS_PER_MONTH = 30


class Plan(BaseModel):
    """A flat-priced plan: a monthly price buys a number of requests per day."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1)
    monthly_usd: float = Field(ge=0)
    requests_per_day: int = Field(ge=1)
    max_tokens_per_request: int | None = Field(None, ge=1)  # None: no cap published
    source: str = Field(min_length=1)
    as_of: date
    verified: bool = False


class TokenPrice(BaseModel):
    """One model's token price at one provider, USD per 1M tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    input: float = Field(ge=0)
    output: float = Field(ge=0)
    provider_model: str = ""
    source: str = Field(min_length=1)
    as_of: date
    verified: bool = False


class Equivalent(BaseModel):
    """The models a provider may list instead of one it lacks, nearest first, and why they compare."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    like: tuple[str, ...] = Field(min_length=1)
    basis: str = Field(min_length=1)  # e.g. "a 1T-parameter MoE: priced as the nearest listed large MoE"
    source: str = Field(min_length=1)
    as_of: date


@dataclass(frozen=True)
class Quote:
    """How one model is priced at one provider: its own price, or an equivalent's (``via``), an estimate."""

    price: TokenPrice
    via: str | None = None  # the equivalent priced instead; None for the model's own price
    basis: str = ""

    @property
    def estimated(self) -> bool:
        return self.via is not None


class Provider(BaseModel):
    """A token-priced provider; ``models`` maps our catalog ids to a price or None (unknown)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1)
    url: str = ""
    models: dict[str, TokenPrice | None] = Field(default_factory=dict)


@dataclass(frozen=True)
class Pricing:
    """The validated pricing file."""

    plans: tuple[Plan, ...]
    providers: dict[str, Provider]
    currency: str = "USD"
    equivalents: dict[str, Equivalent] = field(default_factory=dict)

    def plan(self, name: str) -> Plan:
        """The plan called ``name``; CatalogError lists the known plans."""
        for p in self.plans:
            if p.name == name:
                return p
        raise CatalogError(f"plan {name!r}", f"unknown plan; known: {', '.join(p.name for p in self.plans)}")

    def price(self, provider: str, model: str) -> TokenPrice | None:
        """The token price of ``model`` at ``provider``, None when unknown."""
        if provider not in self.providers:
            raise CatalogError(f"provider {provider!r}", f"unknown provider; known: {', '.join(self.providers)}")
        return self.providers[provider].models.get(model)

    def quote(self, provider: str, model: str) -> Quote | None:
        """``model``'s price at ``provider``, else its nearest listed equivalent's (an estimate), else None."""
        if (own := self.price(provider, model)) is not None:
            return Quote(own)
        eq = self.equivalents.get(model)
        for other in eq.like if eq else ():
            if (price := self.price(provider, other)) is not None:
                return Quote(price, other, eq.basis)
        return None


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']}" if where else err["msg"]


def load_pricing(path: Path | str | None = None) -> Pricing:
    """Load and validate the pricing file; a bad entry raises CatalogError naming it."""
    path = Path(path or ASSETS_DIR / "pricing.json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CatalogError(str(path), f"cannot read the pricing file: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("plans"), list) or not data["plans"]:
        raise CatalogError(path.name, 'expected {"plans": [ ... ], "providers": { ... }} with at least one plan')
    if data.get("currency", "USD") != "USD":
        raise CatalogError(f"{path.name} currency", "only USD is supported")
    plans: list[Plan] = []
    for i, entry in enumerate(data["plans"]):
        label = f"{path.name} plans[{i}]" + (f" ({entry.get('name')})" if isinstance(entry, dict) else "")
        try:
            plans.append(Plan.model_validate(entry))
        except ValidationError as exc:
            raise CatalogError(label, _first_error(exc)) from None
    names = [p.name for p in plans]
    for name in names:
        if names.count(name) > 1:
            raise CatalogError(f"{path.name} plan {name!r}", "duplicate plan name")
    providers: dict[str, Provider] = {}
    raw_providers = data.get("providers") or {}
    if not isinstance(raw_providers, dict):
        raise CatalogError(f"{path.name} providers", "expected an object keyed by provider id")
    for key, entry in raw_providers.items():
        models = entry.get("models") if isinstance(entry, dict) else None
        if isinstance(models, dict):  # validate model by model so the error names the model
            for model_id, price in models.items():
                if price is None:
                    continue
                try:
                    TokenPrice.model_validate(price)
                except ValidationError as exc:
                    raise CatalogError(f"{path.name} providers.{key}.models.{model_id}", _first_error(exc)) from None
        try:
            providers[key] = Provider.model_validate(entry)
        except ValidationError as exc:
            raise CatalogError(f"{path.name} providers.{key}", _first_error(exc)) from None
    equivalents: dict[str, Equivalent] = {}
    raw_eq = data.get("equivalents") or {}
    if not isinstance(raw_eq, dict):
        raw_eq = {}
    priced = {m for p in providers.values() for m, price in p.models.items() if price is not None}
    for model_id, entry in raw_eq.items():
        if model_id.startswith("_"):
            continue  # a comment
        try:
            eq = Equivalent.model_validate(entry)
        except ValidationError as exc:
            raise CatalogError(f"{path.name} equivalents.{model_id}", _first_error(exc)) from None
        if unknown := [m for m in eq.like if m not in priced]:
            raise CatalogError(f"{path.name} equivalents.{model_id}", f"{', '.join(unknown)}: no provider prices it")
        equivalents[model_id] = eq
    return Pricing(tuple(plans), providers, equivalents=equivalents)


@lru_cache(maxsize=1)
def default_pricing() -> Pricing:
    """The shipped pricing file, loaded once (read-only, so safe to share between sessions)."""
    return load_pricing()


# ---------------------------------------------------------------- per request


def flat_cost_per_request(plan: Plan) -> float:
    """monthly price / (requests per day x 30): the effective marginal cost of a request at full use.

    Below full use each request effectively costs more; a team should read this as
    the floor, the way a token price is the floor of a token-priced bill.
    """
    return plan.monthly_usd / (plan.requests_per_day * DAYS_PER_MONTH)


def _fields(record: UsageRecord | Mapping[str, Any]) -> tuple[str, int, int, int]:
    if isinstance(record, UsageRecord):
        return record.model, record.prompt_tokens, record.completion_tokens, record.turn
    return (
        str(record["model"]),
        int(record.get("prompt_tokens", 0)),
        int(record.get("completion_tokens", 0)),
        int(record.get("turn", 0)),
    )


def token_cost(record: UsageRecord | Mapping[str, Any], provider: str, pricing: Pricing | None = None) -> float | None:
    """What this request would cost at a token-priced provider; None when the model has no known price there."""
    model, prompt, completion, _ = _fields(record)
    price = (pricing or default_pricing()).price(provider, model)
    if price is None:
        return None
    return prompt * price.input / 1_000_000 + completion * price.output / 1_000_000


def over_cap(record: UsageRecord | Mapping[str, Any], plan: Plan) -> bool:
    """Whether prompt + completion exceed the plan's published per-request token cap (False when none is published)."""
    _, prompt, completion, _ = _fields(record)
    return plan.max_tokens_per_request is not None and prompt + completion > plan.max_tokens_per_request


# ---------------------------------------------------------------- summaries


@dataclass(frozen=True)
class TurnCost:
    """One turn's requests and what they cost each way."""

    turn: int
    requests: int
    prompt_tokens: int
    completion_tokens: int
    flat_cost: float
    token_costs: dict[str, float | None]  # provider -> cost of the requests it prices; None when it prices none
    over_cap: int = 0  # requests above the plan's per-request token cap
    unpriced: dict[str, int] = field(default_factory=dict)  # provider -> requests it has no price for
    estimated: dict[str, int] = field(default_factory=dict)  # provider -> requests priced as an equivalent


@dataclass(frozen=True)
class CostSummary:
    """Per-turn rows and totals for one plan against every token-priced provider."""

    plan: str
    flat_per_request: float
    rows: list[TurnCost]
    requests: int
    prompt_tokens: int
    completion_tokens: int
    estimated_requests: int  # requests whose tokens were estimated, not reported by the server
    flat_cost: float
    token_costs: dict[str, float | None]  # provider -> total of what it prices; None when it prices nothing
    missing: dict[str, list[str]]  # provider -> models used that it has no price (nor equivalent) for
    ratio: dict[str, float | None]  # provider -> token-priced cost / flat cost
    over_cap: int
    unverified: bool  # some figure used is not confirmed (see assets/pricing.json)
    provider_names: dict[str, str] = field(default_factory=dict)
    unpriced: dict[str, int] = field(default_factory=dict)  # provider -> requests left out of its total
    estimates: dict[str, dict[str, str]] = field(default_factory=dict)  # provider -> {model: equivalent priced}

    def partial(self, provider: str) -> bool:
        """Whether ``provider``'s total leaves out requests it has no price for."""
        return self.unpriced.get(provider, 0) > 0

    def why_missing(self, provider: str) -> str | None:
        """A sentence naming the models ``provider``'s total leaves out, or None when it covers every request."""
        models = self.missing.get(provider)
        if not models:
            return None
        name = self.provider_names.get(provider, provider)
        left = self.unpriced.get(provider, 0)
        covered = self.requests - left
        return (
            f"{name} lists no price for {', '.join(models)} (nor an equivalent), so its total is partial: "
            f"{covered} of {self.requests} requests."
        )

    def to_json(self) -> dict[str, Any]:
        """A plain dict for the UI and /session."""
        return asdict(self)


def summarize(records: Iterable[UsageRecord | Mapping[str, Any]], pricing: Pricing, plan: str) -> CostSummary:
    """Group requests by turn and total them: flat cost under ``plan`` beside each provider's token cost
    (its own price, or its nearest listed equivalent's, marked; requests with neither are counted apart)."""
    chosen = pricing.plan(plan)
    per_request = flat_cost_per_request(chosen)
    providers = list(pricing.providers)
    turns: dict[int, list[UsageRecord | Mapping[str, Any]]] = {}
    for rec in records:
        turns.setdefault(_fields(rec)[3], []).append(rec)
    rows: list[TurnCost] = []
    missing: dict[str, list[str]] = {p: [] for p in providers}
    estimates: dict[str, dict[str, str]] = {p: {} for p in providers}
    estimated = 0
    unverified = not chosen.verified
    for turn in sorted(turns):
        recs = turns[turn]
        costs: dict[str, float | None] = {}
        unpriced: dict[str, int] = {}
        by_equivalent: dict[str, int] = {}
        for p in providers:
            total: float | None = None
            for rec in recs:
                model, prompt, completion, _ = _fields(rec)
                quote = pricing.quote(p, model)
                if quote is None:
                    if model not in missing[p]:
                        missing[p].append(model)
                    unpriced[p] = unpriced.get(p, 0) + 1
                    continue
                if quote.via is not None:
                    estimates[p][model] = quote.via
                    by_equivalent[p] = by_equivalent.get(p, 0) + 1
                unverified = unverified or not quote.price.verified
                cost = prompt * quote.price.input / 1_000_000 + completion * quote.price.output / 1_000_000
                total = cost if total is None else total + cost
            costs[p] = total
        estimated += sum(1 for r in recs if (r.estimated if isinstance(r, UsageRecord) else r.get("estimated")))
        rows.append(
            TurnCost(
                turn=turn,
                requests=len(recs),
                prompt_tokens=sum(_fields(r)[1] for r in recs),
                completion_tokens=sum(_fields(r)[2] for r in recs),
                flat_cost=len(recs) * per_request,
                token_costs=costs,
                over_cap=sum(over_cap(r, chosen) for r in recs),
                unpriced=unpriced,
                estimated=by_equivalent,
            )
        )
    flat_total = sum(r.flat_cost for r in rows)
    totals: dict[str, float | None] = {}
    for p in providers:
        values = [r.token_costs[p] for r in rows if r.token_costs[p] is not None]
        totals[p] = sum(values) if values else None
    ratio = {p: (t / flat_total if t is not None and flat_total > 0 else None) for p, t in totals.items()}
    return CostSummary(
        plan=chosen.name,
        flat_per_request=per_request,
        rows=rows,
        requests=sum(r.requests for r in rows),
        prompt_tokens=sum(r.prompt_tokens for r in rows),
        completion_tokens=sum(r.completion_tokens for r in rows),
        estimated_requests=estimated,
        flat_cost=flat_total,
        token_costs=totals,
        missing={p: m for p, m in missing.items() if m},
        ratio=ratio,
        over_cap=sum(r.over_cap for r in rows),
        unverified=unverified,
        provider_names={k: v.name for k, v in pricing.providers.items()},
        unpriced={p: sum(r.unpriced.get(p, 0) for r in rows) for p in providers},
        estimates={p: e for p, e in estimates.items() if e},
    )


def cumulative_series(summary: CostSummary) -> list[tuple[int, float, dict[str, float | None]]]:
    """(turn, flat cumulative, {provider: cumulative of what it prices, None until it prices a request})."""
    series: list[tuple[int, float, dict[str, float | None]]] = []
    flat = 0.0
    running: dict[str, float | None] = dict.fromkeys(summary.token_costs)
    for row in summary.rows:
        flat += row.flat_cost
        for p, cost in row.token_costs.items():
            if cost is not None:
                running[p] = (running.get(p) or 0.0) + cost
        series.append((row.turn, flat, dict(running)))
    return series
