"""The cost panel: requests, tokens and flat vs token-priced cost, with a headline sentence. Pure.

Every token-priced figure says how it was made: ``≈`` when a provider does not list a model and its
nearest listed equivalent was priced instead (named below the table, with the basis and source from
``assets/pricing.json``), ``partial`` when some requests have no price there at all (how many the
total covers). Nothing unknown reads as zero, and nothing reads as "n/a".
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import pandas as pd

from supportbot.limits import Allowance
from supportbot.pricing import CostSummary, Pricing, cumulative_series, summarize
from supportbot.session import Session

# One colour per line, so a provider keeps its colour whatever the plan (the flat plan is the accent).
PALETTE = ("#4f46e5", "#0891b2", "#d97706", "#16a34a", "#db2777", "#64748b", "#9333ea")


def plural(n: int, one: str, many: str | None = None) -> str:
    """'1 request', '2 requests' (``many`` for irregular plurals)."""
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def money(value: float | None) -> str:
    """Dollars with enough digits to tell small figures apart ($0.00133, $0.02, $1.50); '—' for nothing priced."""
    if value is None:
        return "—"
    if value == 0:
        return "$0"
    if value >= 1:
        return f"${value:,.2f}"
    digits = f"{value:.5f}" if value < 0.01 else f"{value:.4f}"
    whole, _, frac = digits.partition(".")
    frac = frac.rstrip("0").ljust(2, "0")  # no trailing zeros past the cents
    return f"${whole}.{frac}"


def ratio_text(value: float) -> str:
    """'3.2×', '0.4×', '120×'."""
    return f"{value:,.0f}×" if value >= 100 else f"{value:.1f}×" if value >= 0.1 else f"{value:.2f}×"


@dataclass
class UsageView:
    """What the cost panel shows: its HTML, the cumulative plot's frame, and the plot's colours and turn order."""

    html: str
    frame: pd.DataFrame
    colors: dict[str, str] = field(default_factory=dict)
    turns: list[str] = field(default_factory=list)


def empty_plot() -> pd.DataFrame:
    """An empty frame with the plot's columns (the turn is a label, so the axis shows whole turns)."""
    return pd.DataFrame(
        {"turn": pd.Series(dtype="str"), "usd": pd.Series(dtype="float"), "pricing": pd.Series(dtype="str")}
    )


def plan_label(summary: CostSummary) -> str:
    """'Oxlo Pro (flat)': the chosen plan, as the legend and the tables name it."""
    return f"Oxlo {summary.plan.title()} (flat)"


def _provider_cell(summary: CostSummary, p: str) -> str:
    """A provider's total: '≈' when it includes equivalents, '≥ … partial' when it leaves requests out."""
    total = summary.token_costs.get(p)
    if total is None:
        return "no price"
    mark = "≈" if p in summary.estimates else ""
    if summary.partial(p):
        return f"≥{mark}{money(total)} <span class='sb-partial'>partial</span>"
    return f"{mark}{money(total)}"


def headline(summary: CostSummary) -> str:
    """One sentence for the whole conversation: flat on the chosen plan vs the range of token prices."""
    if not summary.requests:
        return "No requests yet: the cost of each turn appears here."
    priced = {p: t for p, t in summary.token_costs.items() if t is not None}
    flat = f"<b>{money(summary.flat_cost)}</b> flat on Oxlo {html.escape(summary.plan.title())}"
    lead = f"This conversation ({plural(summary.requests, 'request')}): {flat}"
    if not priced:
        return f"{lead}; no token-priced provider lists these models."
    low = min(priced, key=lambda p: priced[p])
    high = max(priced, key=lambda p: priced[p])
    names = summary.provider_names
    approx = "≈" if summary.estimates else ""
    span = f"{approx}{money(priced[low])}" if low == high else f"{approx}{money(priced[low])}–{money(priced[high])}"
    partial = " (some partial)" if any(summary.partial(p) for p in priced) else ""
    sentence = f"{lead} vs <b>{span}</b> at token prices{partial}"
    cheapest = priced[low]
    if summary.flat_cost > 0 and cheapest > 0:
        times = cheapest / summary.flat_cost
        cheap = html.escape(names.get(low, low))
        if times >= 1:
            sentence += f": even the cheapest, {cheap}, costs <b>{ratio_text(times)}</b> the flat price"
        else:
            sentence += (
                f": the cheapest, {cheap}, costs {ratio_text(times)} the flat price "
                "on turns this short; flat pricing pays off on long prompts"
            )
    return sentence + "."


def _totals_table(summary: CostSummary, providers: list[str], names: dict[str, str]) -> str:
    rows = [
        f"<tr><td>{html.escape(plan_label(summary))}<div class='sb-sub'>{money(summary.flat_per_request)} a request"
        f"</div></td><td>{summary.requests:,}</td><td>{money(summary.flat_cost)}</td><td>1.0×</td></tr>"
    ]
    for p in providers:
        ratio = summary.ratio.get(p)
        covered = summary.requests - summary.unpriced.get(p, 0)
        shown = f"{covered:,} of {summary.requests:,}" if summary.partial(p) else f"{summary.requests:,}"
        cell = "—" if ratio is None else ("≥" if summary.partial(p) else "") + ratio_text(ratio)
        rows.append(
            f"<tr><td>{html.escape(names[p])}<div class='sb-sub'>token prices</div></td><td>{shown}</td>"
            f"<td>{_provider_cell(summary, p)}</td><td>{cell}</td></tr>"
        )
    head = "<tr><th>pricing</th><th>requests</th><th>total</th><th>vs flat</th></tr>"
    return f"<table class='sb-totals'>{head}{''.join(rows)}</table>"


def _notes(summary: CostSummary, pricing: Pricing, providers: list[str]) -> str:
    """How each figure was made: equivalents (with basis and source), what is left out, unverified prices."""
    items = []
    for p in providers:
        for model, via in summary.estimates.get(p, {}).items():
            eq = pricing.equivalents.get(model)
            basis = f" ({html.escape(eq.basis)}; source: {html.escape(eq.source)}, {eq.as_of})" if eq else ""
            items.append(
                f"<li>≈ {html.escape(summary.provider_names[p])} does not list <code>{html.escape(model)}</code>: "
                f"priced as <code>{html.escape(via)}</code>, an estimate{basis}.</li>"
            )
        if why := summary.why_missing(p):
            items.append(f"<li>{html.escape(why)}</li>")
    if summary.unverified:
        items.append(
            "<li>Some prices are unverified placeholders (the Oxlo plan prices among them): see assets/pricing.json, "
            "where each figure has a source and a date.</li>"
        )
    if summary.estimated_requests:
        items.append(
            f"<li>{plural(summary.estimated_requests, 'request')} had no token count from the server: estimated.</li>"
        )
    if not items:
        return ""
    return f"<details class='sb-notes'><summary>How these figures are made</summary><ul>{''.join(items)}</ul></details>"


def _turn_table(summary: CostSummary, providers: list[str], names: dict[str, str]) -> str:
    cols = ["turn", "req", "tokens", "flat", *(names[p].split()[0] for p in providers)]
    rows = []
    for r in reversed(summary.rows):
        cells = [
            str(r.turn),
            str(r.requests),
            f"<span title='{r.prompt_tokens:,} in, {r.completion_tokens:,} out'>"
            f"{r.prompt_tokens + r.completion_tokens:,}</span>",
            money(r.flat_cost),
        ]
        for p in providers:
            cost = r.token_costs.get(p)
            mark = "≈" if r.estimated.get(p) else ""
            cell = f"{mark}{money(cost)}" if cost is not None else "—"
            cells.append(cell + ("*" if r.unpriced.get(p) and cost is not None else ""))
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    foot = "≈ an equivalent's price · * leaves out a request it has no price for · — no price"
    return (
        f"<div class='sb-turns'><b>Per turn</b> (newest first)<table><tr>{head}</tr>{''.join(rows)}</table>"
        f"<div class='sb-sub'>{foot}</div></div>"
    )


def render(session: Session, pricing: Pricing, plan: str) -> UsageView:
    """The cost panel for the session's requests under ``plan``: headline, totals, per-turn table, plot data."""
    summary = summarize(session.usage, pricing, plan)
    providers = list(pricing.providers)
    names = {p: pricing.providers[p].name for p in providers}
    parts = [f"<div class='sb-headline'>{headline(summary)}</div>"]
    if summary.requests:
        tokens = summary.prompt_tokens + summary.completion_tokens
        parts.append(
            f"<div class='sb-sub'>{plural(summary.requests, 'request')} · {plural(tokens, 'token')} "
            f"({summary.prompt_tokens:,} in, {summary.completion_tokens:,} out)</div>"
        )
        parts.append(_totals_table(summary, providers, names))
        if summary.over_cap:
            parts.append(
                f"<div class='sb-warnline'>⚠️ {plural(summary.over_cap, 'request')} went over the "
                f"{html.escape(summary.plan)} plan's published per-request token cap.</div>"
            )
        parts.append(_notes(summary, pricing, providers))
        parts.append(_turn_table(summary, providers, names))
    flat_name = plan_label(summary)
    labels = {p: names[p] + (" (partial)" if summary.partial(p) else "") for p in providers}
    colors = {flat_name: PALETTE[0]} | {labels[p]: PALETTE[1 + i % (len(PALETTE) - 1)] for i, p in enumerate(providers)}
    series = cumulative_series(summary)
    points: list[dict[str, object]] = []
    if series:  # every line starts at 0 before the first turn, so one turn already draws a segment
        points.append({"turn": "0", "usd": 0.0, "pricing": flat_name})
        points += [{"turn": "0", "usd": 0.0, "pricing": labels[p]} for p in providers if series[-1][2][p] is not None]
    for turn, flat, token in series:
        points.append({"turn": str(turn), "usd": flat, "pricing": flat_name})
        points += [{"turn": str(turn), "usd": v, "pricing": labels[p]} for p, v in token.items() if v is not None]
    frame = pd.DataFrame(points) if points else empty_plot()
    turns = ["0", *(str(t) for t, _, _ in series)]
    return UsageView("".join(p for p in parts if p), frame, colors, turns)


def allowance_html(allowance: Allowance | None) -> str:
    """The visitor's daily budget left ('' when nothing is bounded)."""
    if allowance is None or not allowance.bounds:
        return ""
    parts = []
    for whose, used, allowed in allowance.bounds:
        label = "You" if whose == "your" else "This app (all visitors)"
        parts.append(f"{label}: <b>{max(0, allowed - used):,}</b> of {allowed:,} requests left")
    return f"<div class='sb-budget'>Today's budget · {' · '.join(parts)} · resets {allowance.resets_at:%H:%M} UTC</div>"
