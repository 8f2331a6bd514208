"""Route a turn to a model, with a reason a person understands. Pure: no I/O here
beyond loading the editable policy file once.

Rules, first match wins (each tested in tests/test_router.py):
1. images attached -> a vision model (never a text-only one);
2. the estimated prompt exceeds the triage model's window -> the smallest
   long-context model that fits; beyond every window -> the largest, with the
   logs reduced to fit (or, with no logs to reduce, old turns compacted);
3. a customer not writing in English -> a multilingual model;
4. troubleshooting, errors, code or logs -> a reasoning model;
5. several actions in one message -> an agentic model;
6. otherwise -> the triage model.
A capable manual selection wins; an incapable one is switched with the reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from supportbot.config import ASSETS_DIR
from supportbot.errors import CatalogError
from supportbot.events import RouteDecision
from supportbot.routing.catalog import CATEGORIES, Catalog, ModelInfo
from supportbot.routing.tokens import with_margin
from supportbot.vocabulary import (
    CHARS_PER_TOKEN,
    detect_language,
    find_order_ids,
    find_phrases,
    language_name,
    words_of,
)


class RoutingPolicy(BaseModel):
    """The editable routing preferences and thresholds (assets/routing.json)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    preferences: dict[str, list[str]]
    safety_margin: float = Field(0.10, ge=0, le=1)
    min_actions_for_agentic: int = Field(2, ge=2)
    reasoning_keywords: list[str] = []
    action_verbs: dict[str, list[str]] = {}


def load_policy(path: Path | None = None, catalog: Catalog | None = None) -> RoutingPolicy:
    """Load the policy; an unknown category or model id raises CatalogError naming it."""
    path = Path(path or ASSETS_DIR / "routing.json")
    try:
        policy = RoutingPolicy.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError, ValidationError) as exc:
        raise CatalogError(path.name, str(exc).splitlines()[0]) from None
    for category, ids in policy.preferences.items():
        if category not in CATEGORIES:
            raise CatalogError(
                f"{path.name} preferences.{category}", f"unknown category; use one of {', '.join(CATEGORIES)}"
            )
        for model_id in ids:
            if catalog is not None and model_id not in catalog:
                raise CatalogError(f"{path.name} preferences.{category}", f"model {model_id!r} is not in the catalog")
    return policy


@dataclass(frozen=True)
class TurnFacts:
    """What the router needs to know about a turn; token counts are estimates without margin."""

    text: str
    images: int = 0
    log_tokens: int = 0
    history_tokens: int = 0
    overhead_tokens: int = 0  # system prompt + tool schemas
    output_tokens: int = 1024
    reducible_log: bool = True
    history: list[str] = field(default_factory=list)  # earlier user texts, for language continuity

    def prompt_tokens(self, image_tokens: int = 1600) -> int:
        """Everything the request will carry, before the margin."""
        return (
            self.history_tokens
            + self.overhead_tokens
            + self.output_tokens
            + self.log_tokens
            + self.images * image_tokens
            + int(len(self.text) / CHARS_PER_TOKEN["prose"])
        )


def _words(text: str, phrases: list[str]) -> list[str]:
    """The phrases written as whole words in the first ``SCAN_CHARS`` characters of ``text``."""
    return find_phrases(words_of(text), phrases)


def count_actions(text: str, policy: RoutingPolicy) -> int:
    """How many distinct actions a message asks for (order checks count per order)."""
    words = words_of(text)
    verbs = {name for name, phrases in policy.action_verbs.items() if find_phrases(words, phrases)}
    orders = set(find_order_ids(text))
    extra_orders = max(0, len(orders) - 1)
    return len(verbs) + extra_orders


def _fits(model: ModelInfo, need: int) -> bool:
    return need <= model.context_window


def _first(catalog: Catalog, ids: list[str], need: int, *, vision: bool = False) -> ModelInfo | None:
    for model_id in ids:
        if model_id in catalog:
            m = catalog.get(model_id)
            if _fits(m, need) and (m.capabilities.vision or not vision):
                return m
    return None


def _fmt(tokens: int) -> str:
    return (
        f"{tokens / 1_000_000:.1f}M"
        if tokens >= 1_000_000
        else f"{tokens / 1000:.0f}K"
        if tokens >= 1000
        else str(tokens)
    )


def route(facts: TurnFacts, catalog: Catalog, policy: RoutingPolicy, selected: str | None = None) -> RouteDecision:
    """Decide the model for a turn; see the module docstring for the rules."""
    need = with_margin(facts.prompt_tokens(), policy.safety_margin)
    auto = _route_auto(facts, catalog, policy, need)
    if not selected or selected == "auto":
        return auto
    chosen = catalog.get(selected)
    if facts.images and not chosen.capabilities.vision:
        return _replace(
            auto,
            switched_from=chosen.id,
            reason=f"{chosen.name} cannot read images, so this turn switched: {auto.reason}",
        )
    if not _fits(chosen, need):
        if (
            facts.log_tokens and auto.model == chosen.id
        ):  # the chosen model is the one auto picks: keep its log reduction
            return _replace(auto, reason=f"You chose {chosen.name}. {auto.reason}", rule=f"manual_{auto.rule}")
        if facts.log_tokens:
            return _replace(
                auto,
                switched_from=chosen.id,
                reason=f"The prompt (~{_fmt(need)} tokens) exceeds {chosen.name}'s {_fmt(chosen.context_window)} "
                f"window, so this turn switched: {auto.reason}",
            )
        # The user insists on this model and only the history is too long: compact old turns.
        return RouteDecision(
            chosen.id,
            chosen.categories[0],
            f"You chose {chosen.name}; the conversation (~{_fmt(need)} tokens) exceeds its "
            f"{_fmt(chosen.context_window)} window, so older turns are compacted into a summary.",
            (),
            None,
            need,
            chosen.context_window,
            None,
            "manual_compact",
        )
    return RouteDecision(
        chosen.id,
        chosen.categories[0],
        f"You chose {chosen.name}, and it can take this turn.",
        auto.fallbacks,
        None,
        need,
        chosen.context_window,
        None,
        "manual",
    )


def _replace(d: RouteDecision, **changes) -> RouteDecision:
    from dataclasses import replace

    return replace(d, **changes)


def _decision(
    m: ModelInfo, category: str, reason: str, need: int, rule: str, fallbacks: list[str], **extra
) -> RouteDecision:
    return RouteDecision(
        m.id,
        category,
        reason,
        tuple(f for f in fallbacks if f != m.id),
        None,
        need,
        m.context_window,
        rule=rule,
        **extra,
    )


def _route_auto(facts: TurnFacts, catalog: Catalog, policy: RoutingPolicy, need: int) -> RouteDecision:
    prefs = policy.preferences
    triage = catalog.get(prefs["triage"][0]) if prefs.get("triage") else catalog.models[0]

    if facts.images:
        ids = list(dict.fromkeys(prefs.get("vision", []) + [m.id for m in catalog.in_category("vision")]))
        m = _first(catalog, ids, need, vision=True)
        n = "a screenshot" if facts.images == 1 else f"{facts.images} images"
        if m:
            return _decision(m, "vision", f"{n.capitalize()} attached: {m.name} reads images.", need, "vision", ids)
        biggest = max(
            (catalog.get(i) for i in ids if i in catalog and catalog.get(i).capabilities.vision),
            key=lambda x: x.context_window,
            default=None,
        )
        if biggest is None:
            raise CatalogError(
                "routing.json preferences.vision", "no vision-capable model in the catalog; images cannot be routed"
            )
        if facts.log_tokens and facts.reducible_log:
            budget = _log_budget(facts, biggest, policy)
            return _decision(
                biggest,
                "vision",
                f"{n.capitalize()} attached, and the log is too long for {biggest.name}'s "
                f"{_fmt(biggest.context_window)} window: the log is reduced to ~{_fmt(budget)} tokens.",
                need,
                "vision_reduced",
                ids,
                reduce_logs_to=budget,
            )
        return _decision(
            biggest,
            "vision",
            f"{n.capitalize()} attached, and the conversation (~{_fmt(need)} tokens) is too long for "
            f"{biggest.name}'s {_fmt(biggest.context_window)} window: older turns are compacted into a summary.",
            need,
            "compact",
            ids,
        )

    if not _fits(triage, need):
        ids = list(dict.fromkeys(prefs.get("long_context", []) + [m.id for m in catalog.in_category("long_context")]))
        fitting = sorted(
            (catalog.get(i) for i in set(ids) if i in catalog and _fits(catalog.get(i), need)),
            key=lambda x: x.context_window,
        )
        what = "the attached log" if facts.log_tokens > facts.history_tokens else "the conversation"
        if fitting:
            m = fitting[0]
            return _decision(
                m,
                "long_context",
                f"The prompt with {what} is ~{_fmt(need)} tokens, over {triage.name}'s {_fmt(triage.context_window)} "
                f"window: {m.name} ({_fmt(m.context_window)}) is the smallest that fits.",
                need,
                "long_context",
                [x.id for x in fitting],
            )
        biggest = max((catalog.get(i) for i in set(ids) if i in catalog), key=lambda x: x.context_window)
        if facts.log_tokens and facts.reducible_log:
            budget = _log_budget(facts, biggest, policy)
            return _decision(
                biggest,
                "long_context",
                f"The log (~{_fmt(facts.log_tokens)} tokens) exceeds every model's window, even {biggest.name}'s "
                f"{_fmt(biggest.context_window)}: it is reduced to ~{_fmt(budget)} tokens (repeats collapsed, errors "
                "kept).",
                need,
                "long_context_reduced",
                [biggest.id],
                reduce_logs_to=budget,
            )
        return _decision(
            biggest,
            "long_context",
            f"The conversation (~{_fmt(need)} tokens) exceeds every model's window: older turns are compacted into a "
            f"summary for {biggest.name}.",
            need,
            "compact",
            [biggest.id],
        )

    lang = detect_language(facts.text)
    if lang == "en" and facts.history and len(facts.text) < 40:
        lang = detect_language(" ".join(facts.history[-3:] + [facts.text]))  # a short "sí, gracias" keeps the language
    if lang != "en":
        m = _first(catalog, prefs.get("multilingual", []), need)
        if m:
            return _decision(
                m,
                "multilingual",
                f"The customer writes in {language_name(lang)}: {m.name} handles multilingual support.",
                need,
                "multilingual",
                prefs["multilingual"],
            )

    hits = _words(facts.text, policy.reasoning_keywords)
    if facts.log_tokens or hits:
        why = "A log is attached" if facts.log_tokens else f"Troubleshooting words ({', '.join(hits[:3])})"
        m = _first(catalog, prefs.get("reasoning", []), need)
        if m:
            return _decision(
                m,
                "reasoning",
                f"{why}: {m.name} reasons through errors and logs.",
                need,
                "reasoning",
                prefs["reasoning"],
            )

    actions = count_actions(facts.text, policy)
    if actions >= policy.min_actions_for_agentic:
        m = _first(catalog, prefs.get("agentic", []), need)
        if m:
            return _decision(
                m,
                "agentic",
                f"{actions} actions asked for in one message: {m.name} handles multi-step tool work.",
                need,
                "agentic",
                prefs["agentic"],
            )

    return _decision(
        triage,
        "triage",
        f"A routine support question: {triage.name} answers fast.",
        need,
        "triage",
        prefs.get("triage", []),
    )


def _log_budget(facts: TurnFacts, model: ModelInfo, policy: RoutingPolicy) -> int:
    """Tokens left for logs in ``model`` once everything else and the margin are counted."""
    rest = with_margin(facts.prompt_tokens() - facts.log_tokens, policy.safety_margin)
    return max(1000, int(model.context_window / (1 + policy.safety_margin)) - rest)
