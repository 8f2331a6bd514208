"""Spending bounds: who a visitor is, the budget each model request draws on, the per-turn token cap.

The agent and ticket extraction receive a :class:`Budget` and call ``reserve()`` before every
model request (a turn stops cleanly, with a message, when it runs out) and ``record(attempts)``
after it with the attempts the SDK actually made. ``reserve`` takes one request from every
bound at once, atomically, in the database (``storage.counters``); ``record`` adds the SDK's
retries. So concurrent turns never take more than a limit, and the only overshoot is retries:
at most ``SUPPORTBOT_MAX_RETRIES`` per request in flight when the limit is reached (a request
stopped mid-retry counts its reserved attempt only). Knows nothing of Gradio: the UI passes the
visitor's address headers or account name in.
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Protocol

from supportbot.config import Settings
from supportbot.errors import LimitReached, SupportbotError
from supportbot.events import RouteDecision
from supportbot.routing.router import TurnFacts
from supportbot.routing.tokens import with_margin
from supportbot.storage.counters import APP_SCOPE, SpendCounters

MIN_LOG_TOKENS = 1000  # below this a reduced log says too little to be worth sending
_MAX_ADDRESS_CHARS = 64


class Budget(Protocol):
    """What a turn's model requests draw on."""

    async def check(self, requests: int = 1) -> None:
        """Raise LimitReached when fewer than ``requests`` are left (before a turn starts; takes nothing)."""

    async def reserve(self) -> None:
        """Take one request before sending it; LimitReached when a bound has no room."""

    async def record(self, attempts: int) -> None:
        """Settle a reserved request with the attempts the SDK made (1 + its retries)."""


class Unlimited:
    """The budget when no bound is set: takes and records nothing."""

    async def check(self, requests: int = 1) -> None:
        """Nothing to check."""

    async def reserve(self) -> None:
        """Nothing to take."""

    async def record(self, attempts: int) -> None:
        """Nothing to record."""


NO_LIMIT: Budget = Unlimited()


@dataclass(frozen=True)
class Bound:
    """One daily bound: its counter scope, its size, the variable that sets it, and whose it is."""

    scope: str
    allowed: int
    variable: str
    whose: str  # "your" or "this app's"


@dataclass(frozen=True)
class Allowance:
    """What is left today, for the Usage panel: ``(whose, used, allowed)`` per bound, and the reset time."""

    bounds: tuple[tuple[str, int, int], ...]
    resets_at: datetime


def _until(resets_at: datetime, now: datetime) -> str:
    minutes = max(1, int((resets_at - now).total_seconds() // 60))
    span = f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"
    return f"at {resets_at:%H:%M} UTC (in {span})"


class VisitorBudget:
    """A visitor's daily budget and the app's, drawn on together (all or none)."""

    def __init__(self, counters: SpendCounters, bounds: list[Bound]) -> None:
        self.counters = counters
        self.bounds = bounds

    def _refused(self, bound: Bound, used: int) -> LimitReached:
        resets = self.counters.resets_at()
        now = datetime.fromtimestamp(self.counters.clock(), timezone.utc)
        subject = (
            "Your daily request limit" if bound.whose == "your" else "This app's daily request limit (all visitors)"
        )
        return LimitReached(
            bound.variable,
            used,
            bound.allowed,
            f"{subject} is reached: {used:,} of {bound.allowed:,} requests used today ({bound.variable}). "
            f"It resets {_until(resets, now)}. Your conversation is kept; send your message again then.",
            resets.isoformat(),
        )

    async def check(self, requests: int = 1) -> None:
        """Refuse work that could not make ``requests`` requests (a turn needs one; a comparison one per model)."""
        used = await asyncio.to_thread(self.counters.used, [b.scope for b in self.bounds])
        for bound in self.bounds:
            if used[bound.scope] >= bound.allowed:
                raise self._refused(bound, used[bound.scope])
        for bound in self.bounds:
            if (left := bound.allowed - used[bound.scope]) < requests:
                whose = "You have" if bound.whose == "your" else "This app (all visitors) has"
                raise LimitReached(
                    bound.variable,
                    used[bound.scope],
                    bound.allowed,
                    f"{whose} {left:,} of {bound.allowed:,} requests left today ({bound.variable}); this needs at "
                    f"least {requests:,} (one per model). Nothing was sent; try again after "
                    f"{self.counters.resets_at():%H:%M} UTC.",
                    self.counters.resets_at().isoformat(),
                )

    async def reserve(self) -> None:
        """Take one request from every bound, or raise LimitReached naming the one without room."""
        refusal = await asyncio.to_thread(self.counters.take, [(b.scope, b.allowed) for b in self.bounds])
        if refusal is not None:
            bound = next(b for b in self.bounds if b.scope == refusal.scope)
            raise self._refused(bound, refusal.used)

    async def record(self, attempts: int) -> None:
        """Count the SDK's retries on top of the reserved attempt."""
        if attempts > 1:
            await asyncio.to_thread(self.counters.add, [b.scope for b in self.bounds], attempts - 1)

    def allowance(self) -> Allowance:
        """Today's use of every bound (a database read)."""
        used = self.counters.used([b.scope for b in self.bounds])
        return Allowance(tuple((b.whose, used[b.scope], b.allowed) for b in self.bounds), self.counters.resets_at())


def budget_for(settings: Settings, counters: SpendCounters, identity: str) -> Budget:
    """The budget of the visitor ``identity`` under the settings' daily bounds (NO_LIMIT when none is set)."""
    bounds = []
    if settings.visitor_requests_per_day:
        bounds.append(
            Bound(
                counters.visitor_scope(identity),
                settings.visitor_requests_per_day,
                "SUPPORTBOT_VISITOR_REQUESTS_PER_DAY",
                "your",
            )
        )
    if settings.requests_per_day:
        bounds.append(Bound(APP_SCOPE, settings.requests_per_day, "SUPPORTBOT_REQUESTS_PER_DAY", "this app's"))
    return VisitorBudget(counters, bounds) if bounds else NO_LIMIT


# --- who the visitor is -----------------------------------------------------------------------------


def client_address(forwarded_for: str | None, peer: str | None, trusted_proxies: int) -> str:
    """The visitor's address: the entry ``trusted_proxies`` hops from the right of X-Forwarded-For (each
    trusted proxy appends the address it saw), or the connecting peer with no trusted proxy. Entries
    further left are whatever the client sent, so they are never used."""
    hops = [h.strip() for h in (forwarded_for or "").split(",") if h.strip()]
    if trusted_proxies and len(hops) >= trusted_proxies:
        raw = hops[-trusted_proxies]
    else:
        raw = peer or "unknown"
    raw = raw[:_MAX_ADDRESS_CHARS]
    try:
        ip = ipaddress.ip_address(raw)
    except ValueError:
        return raw
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        # One IPv6 subscriber usually holds a whole /64: count the network, not each address in it.
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def visitor_identity(settings: Settings, *, forwarded_for: str | None, peer: str | None, username: str | None) -> str:
    """'hf:<account>' when sign-in is required (SupportbotError when not signed in), else 'ip:<address>'."""
    if settings.require_login:
        if not username:
            raise SupportbotError(
                "Sign in with Hugging Face (the button at the top of the page) to chat: this app counts "
                "requests per account (SUPPORTBOT_REQUIRE_LOGIN)."
            )
        return f"hf:{username}"
    return f"ip:{client_address(forwarded_for, peer, settings.trusted_proxies)}"


# --- the per-turn token cap --------------------------------------------------------------------------


def cap_turn(decision: RouteDecision, facts: TurnFacts, cap: int | None, margin: float) -> RouteDecision:
    """Keep a turn's estimated prompt within ``cap`` (SUPPORTBOT_MAX_INPUT_TOKENS_PER_TURN).

    Attached logs are reduced to fit when that leaves them at least MIN_LOG_TOKENS; otherwise the
    turn is refused with LimitReached (too much history, text or images for the cap)."""
    if not cap or decision.est_tokens <= cap:
        return decision
    rest = facts.prompt_tokens() - facts.log_tokens  # everything but the logs, before the margin
    budget = int(cap / (1 + margin)) - rest - 1
    if facts.log_tokens and facts.reducible_log and budget >= MIN_LOG_TOKENS:
        if decision.reduce_logs_to is not None:
            budget = min(budget, decision.reduce_logs_to)
        return replace(
            decision,
            reduce_logs_to=budget,
            est_tokens=with_margin(rest + budget, margin),
            reason=f"{decision.reason} The log is reduced to ~{budget:,} tokens to stay within this app's "
            f"{cap:,}-token limit per turn.",
        )
    raise LimitReached(
        "SUPPORTBOT_MAX_INPUT_TOKENS_PER_TURN",
        decision.est_tokens,
        cap,
        f"This message would send about {decision.est_tokens:,} tokens to the model; this app allows {cap:,} per "
        "turn (SUPPORTBOT_MAX_INPUT_TOKENS_PER_TURN). Send a shorter message or log, or start a new conversation "
        "(the whole conversation is resent every turn).",
    )
