"""Route a turn to a model, with a reason a person understands. Pure: no I/O here.

Rules, first match wins (each tested in tests/test_router.py):
1. images attached -> a vision model (never a text-only one), the first whose window also
   holds any attached log; when none does, the largest, with the log reduced;
2. the estimated prompt exceeds the triage model's window -> the smallest
   long-context model that fits; beyond every window -> the largest, with the
   logs reduced to fit (or, with no logs to reduce, old turns compacted);
3. a customer not writing in English -> a multilingual model;
4. troubleshooting, errors, code or logs -> a reasoning model;
5. several actions in one message -> an agentic model;
6. otherwise -> the triage model.
Automatic routes only use models the plan includes (``Catalog.plan``) and, when the service's
model list was read, models it lists; the others are named in ``skipped`` with the reason. A
model whose tier is not published is used after the known-included ones (routing.json
``unknown_tier``). ``fallbacks`` are the other usable candidates, in the same order.
A capable manual selection wins, with a warning when the plan or the service may refuse it;
an incapable one is switched with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from supportbot.errors import CatalogError
from supportbot.events import RouteDecision, Skipped
from supportbot.routing.candidates import Pick, pick_models, skips_text
from supportbot.routing.catalog import Catalog, ModelInfo
from supportbot.routing.policy import RoutingPolicy, load_policy, plan_tiers
from supportbot.routing.tokens import with_margin
from supportbot.vocabulary import (
    CHARS_PER_TOKEN,
    detect_language,
    find_order_ids,
    find_phrases,
    language_name,
    words_of,
)

__all__ = ["RoutingPolicy", "TurnFacts", "count_actions", "load_policy", "plan_tiers", "route"]


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


def _fmt(tokens: int) -> str:
    return (
        f"{tokens / 1_000_000:.1f}M"
        if tokens >= 1_000_000
        else f"{tokens / 1000:.0f}K"
        if tokens >= 1000
        else str(tokens)
    )


def _plan_name(catalog: Catalog) -> str:
    return f"your {catalog.plan.title()} plan" if catalog.plan else "your plan"


def _decision(
    catalog: Catalog,
    m: ModelInfo,
    category: str,
    reason: str,
    need: int,
    rule: str,
    fallbacks: list[ModelInfo],
    skipped: list[Skipped],
    **extra,
) -> RouteDecision:
    skipped = [s for s in skipped if s.model != m.id]
    notes = [reason]
    if skipped:
        notes.append(f"Skipped: {skips_text(catalog, skipped)}.")
    if m.tier == "unknown":
        notes.append(f"Oxlo does not publish {m.name}'s tier: assumed on {_plan_name(catalog)}.")
    if not catalog.checked:
        notes.append("The service's model list could not be checked.")
    return RouteDecision(
        m.id,
        category,
        " ".join(notes),
        tuple(dict.fromkeys(f.id for f in fallbacks if f.id != m.id)),
        None,
        need,
        m.context_window,
        rule=rule,
        skipped=tuple(skipped),
        **extra,
    )


def _nothing_usable(what: str, catalog: Catalog, skipped: list[Skipped]) -> CatalogError:
    detail = skips_text(catalog, skipped) or "no candidates in routing.json"
    return CatalogError(
        "route",
        f"no model can take {what} automatically: {detail}. Choose a model by hand, or check SUPPORTBOT_PLAN, "
        "assets/models.json and assets/routing.json.",
    )


# --- the rules ------------------------------------------------------------------------------


def route(facts: TurnFacts, catalog: Catalog, policy: RoutingPolicy, selected: str | None = None) -> RouteDecision:
    """Decide the model for a turn; see the module docstring for the rules."""
    need = with_margin(facts.prompt_tokens(), policy.safety_margin)
    if not selected or selected == "auto":
        return _route_auto(facts, catalog, policy, need)
    chosen = catalog.get(selected)
    try:
        auto: RouteDecision | None = _route_auto(facts, catalog, policy, need)
    except CatalogError:
        if (facts.images and not chosen.capabilities.vision) or (need > chosen.context_window and facts.log_tokens):
            raise
        auto = None  # nothing automatic is usable, but the user's own choice can take the turn
    if facts.images and not chosen.capabilities.vision:
        assert auto is not None
        return replace(
            auto,
            switched_from=chosen.id,
            reason=f"{chosen.name} cannot read images, so this turn switched: {auto.reason}",
        )
    if need > chosen.context_window:
        if facts.log_tokens and auto is not None and auto.model == chosen.id:
            # the chosen model is the one auto picks: keep its log reduction
            return _warned(
                catalog,
                chosen,
                replace(auto, reason=f"You chose {chosen.name}. {auto.reason}", rule=f"manual_{auto.rule}"),
            )
        if facts.log_tokens and auto is not None:
            return replace(
                auto,
                switched_from=chosen.id,
                reason=f"The prompt (~{_fmt(need)} tokens) exceeds {chosen.name}'s {_fmt(chosen.context_window)} "
                f"window, so this turn switched: {auto.reason}",
            )
        # The user insists on this model and only the history is too long: compact old turns.
        return _warned(
            catalog,
            chosen,
            RouteDecision(
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
            ),
        )
    fallbacks = () if auto is None else tuple(i for i in (auto.model, *auto.fallbacks) if i != chosen.id)
    return _warned(
        catalog,
        chosen,
        RouteDecision(
            chosen.id,
            chosen.categories[0],
            f"You chose {chosen.name}, and it can take this turn."
            if chosen.capabilities.tools
            else f"You chose {chosen.name}.",
            tuple(dict.fromkeys(fallbacks)),
            None,
            need,
            chosen.context_window,
            None,
            "manual",
        ),
    )


NO_TOOLS_NOTE = (
    "It cannot use tools, so this turn is answered without looking anything up "
    "(no order lookups, refunds, help-centre search or hand-off)."
)


def _warned(catalog: Catalog, chosen: ModelInfo, d: RouteDecision) -> RouteDecision:
    """``d`` with a visible warning when the plan or the service may refuse the user's choice, and a note when
    the chosen model cannot use tools (the answer says the same)."""
    if not chosen.capabilities.tools:
        d = replace(d, reason=f"{d.reason} {NO_TOOLS_NOTE}")
    if catalog.on_plan(chosen) is False:
        plan = catalog.plan.title() if catalog.plan else "your plan"
        warning = f"{chosen.name} needs the {chosen.tier_label} tier and your plan is {plan}: the service may refuse it"
        warning += " (403)."
    elif catalog.listed(chosen.id) is False:
        warning = f"{chosen.name} is not listed by the service: it may not be served (404)."
    else:
        return d
    return replace(d, warning=warning, reason=f"{d.reason} ⚠ {warning}")


def _route_auto(facts: TurnFacts, catalog: Catalog, policy: RoutingPolicy, need: int) -> RouteDecision:
    prefs = policy.preferences
    if facts.images:
        return _route_images(facts, catalog, policy, need)

    triage_pick = pick_models(catalog, policy, prefs.get("triage", []), None)
    lead, carried = "", list(triage_pick.skipped)
    if triage_pick.usable:
        triage = triage_pick.usable[0]
    else:  # no triage model is usable: any usable model answers routine questions
        anyone = pick_models(catalog, policy, catalog.ids(), None)
        if not anyone.usable:
            raise _nothing_usable("this turn", catalog, anyone.skipped)
        triage = anyone.usable[0]

    if need > triage.context_window:
        return _route_long(facts, catalog, policy, need, triage, carried)

    def fell_through(category: str, pick: Pick, why: str) -> None:
        nonlocal lead
        carried.extend(pick.skipped)
        lead += f"{why}, but no {category} model can take it ({skips_text(catalog, pick.skipped) or 'none listed'}). "

    lang = detect_language(facts.text)
    if lang == "en" and facts.history and len(facts.text) < 40:
        lang = detect_language(" ".join(facts.history[-3:] + [facts.text]))  # a short "sí, gracias" keeps the language
    if lang != "en":
        pick = pick_models(catalog, policy, prefs.get("multilingual", []), need)
        why = f"The customer writes in {language_name(lang)}"
        if pick.usable:
            m = pick.usable[0]
            reason = f"{lead}{why}: {m.name} handles multilingual support."
            return _decision(
                catalog, m, "multilingual", reason, need, "multilingual", pick.usable, carried + pick.skipped
            )
        fell_through("multilingual", pick, why)

    hits = _words(facts.text, policy.reasoning_keywords)
    if facts.log_tokens or hits:
        why = "A log is attached" if facts.log_tokens else f"Troubleshooting words ({', '.join(hits[:3])})"
        pick = pick_models(catalog, policy, prefs.get("reasoning", []), need)
        if pick.usable:
            m = pick.usable[0]
            reason = f"{lead}{why}: {m.name} reasons through errors and logs."
            return _decision(catalog, m, "reasoning", reason, need, "reasoning", pick.usable, carried + pick.skipped)
        fell_through("reasoning", pick, why)

    actions = count_actions(facts.text, policy)
    if actions >= policy.min_actions_for_agentic:
        pick = pick_models(catalog, policy, prefs.get("agentic", []), need)
        why = f"{actions} actions asked for in one message"
        if pick.usable:
            m = pick.usable[0]
            reason = f"{lead}{why}: {m.name} handles multi-step tool work."
            return _decision(catalog, m, "agentic", reason, need, "agentic", pick.usable, carried + pick.skipped)
        fell_through("agentic", pick, why)

    routine = "Otherwise a routine support question" if lead else "A routine support question"
    reason = f"{lead}{routine}: {triage.name} answers fast."
    return _decision(catalog, triage, "triage", reason, need, "triage", triage_pick.usable, carried)


def _route_images(facts: TurnFacts, catalog: Catalog, policy: RoutingPolicy, need: int) -> RouteDecision:
    prefs = policy.preferences
    ids = prefs.get("vision", []) + [m.id for m in catalog.in_category("vision")]
    n = "a screenshot" if facts.images == 1 else f"{facts.images} images"
    pick = pick_models(catalog, policy, ids, need, images=True)
    if pick.usable:
        m = pick.usable[0]
        also = (
            f" and its {_fmt(m.context_window)} window also holds the ~{_fmt(facts.log_tokens)}-token log"
            if facts.log_tokens
            else ""
        )
        reason = f"{n.capitalize()} attached: {m.name} reads images{also}."
        return _decision(catalog, m, "vision", reason, need, "vision", pick.usable, pick.skipped)
    big = pick_models(catalog, policy, ids, None, images=True, largest=True)
    if not big.usable:
        raise _nothing_usable("images", catalog, big.skipped)
    biggest = big.usable[0]
    # Nothing fits, so the window is not news: the skips worth naming are the other reasons. Another
    # model can stand in only if it holds what this one is given (a log reduced or turns compacted for it).
    fallbacks = [m for m in big.usable if m.context_window >= biggest.context_window]
    if facts.log_tokens and facts.reducible_log:
        budget = _log_budget(facts, biggest, policy)
        reason = (
            f"{n.capitalize()} attached, and the log is too long for {biggest.name}'s "
            f"{_fmt(biggest.context_window)} window: the log is reduced to ~{_fmt(budget)} tokens."
        )
        return _decision(
            catalog, biggest, "vision", reason, need, "vision_reduced", fallbacks, big.skipped, reduce_logs_to=budget
        )
    reason = (
        f"{n.capitalize()} attached, and the conversation (~{_fmt(need)} tokens) is too long for "
        f"{biggest.name}'s {_fmt(biggest.context_window)} window: older turns are compacted into a summary."
    )
    return _decision(catalog, biggest, "vision", reason, need, "compact", fallbacks, big.skipped)


def _route_long(
    facts: TurnFacts, catalog: Catalog, policy: RoutingPolicy, need: int, triage: ModelInfo, carried: list[Skipped]
) -> RouteDecision:
    ids = policy.preferences.get("long_context", []) + [m.id for m in catalog.in_category("long_context")]
    what = "the attached log" if facts.log_tokens > facts.history_tokens else "the conversation"
    pick = pick_models(catalog, policy, ids, need, order=lambda m: m.context_window)
    if pick.usable:
        m = pick.usable[0]
        reason = (
            f"The prompt with {what} is ~{_fmt(need)} tokens, over {triage.name}'s {_fmt(triage.context_window)} "
            f"window: {m.name} ({_fmt(m.context_window)}) is the smallest that fits."
        )
        return _decision(catalog, m, "long_context", reason, need, "long_context", pick.usable, carried + pick.skipped)
    big = pick_models(catalog, policy, ids, None, largest=True)
    if not big.usable:
        raise _nothing_usable("a prompt this long", catalog, carried + big.skipped)
    biggest = big.usable[0]
    fallbacks = [m for m in big.usable if m.context_window >= biggest.context_window]
    skipped = carried + big.skipped  # every window is too small: only the other reasons are news
    if facts.log_tokens and facts.reducible_log:
        budget = _log_budget(facts, biggest, policy)
        reason = (
            f"The log (~{_fmt(facts.log_tokens)} tokens) exceeds every model's window, even {biggest.name}'s "
            f"{_fmt(biggest.context_window)}: it is reduced to ~{_fmt(budget)} tokens (repeats collapsed, errors kept)."
        )
        return _decision(
            catalog,
            biggest,
            "long_context",
            reason,
            need,
            "long_context_reduced",
            fallbacks,
            skipped,
            reduce_logs_to=budget,
        )
    reason = (
        f"The conversation (~{_fmt(need)} tokens) exceeds every model's window: older turns are compacted into a "
        f"summary for {biggest.name}."
    )
    return _decision(catalog, biggest, "long_context", reason, need, "compact", fallbacks, skipped)


def _log_budget(facts: TurnFacts, model: ModelInfo, policy: RoutingPolicy) -> int:
    """Tokens left for logs in ``model`` once everything else and the margin are counted."""
    rest = with_margin(facts.prompt_tokens() - facts.log_tokens, policy.safety_margin)
    return max(1000, int(model.context_window / (1 + policy.safety_margin)) - rest)
