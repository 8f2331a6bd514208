"""The Usage panel: requests, tokens, latency and flat vs token-priced cost. Pure."""

from __future__ import annotations

import html

import pandas as pd

from supportbot.limits import Allowance
from supportbot.pricing import Pricing, cumulative_series, summarize
from supportbot.session import Session

BASE_HEADERS = ["turn", "req", "tok in", "tok out", "ms", "TTFT", "flat $"]


def headers(pricing: Pricing) -> list[str]:
    """Table columns: the base ones plus one per reference provider."""
    return BASE_HEADERS + [f"{p.name.split()[0]} $" for p in pricing.providers.values()]


def empty_plot() -> pd.DataFrame:
    """An empty frame with the plot's columns."""
    return pd.DataFrame(
        {"turn": pd.Series(dtype="int"), "usd": pd.Series(dtype="float"), "pricing": pd.Series(dtype="str")}
    )


def _money(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"${value:,.4f}" if value < 1 else f"${value:,.2f}"


def render(session: Session, pricing: Pricing, plan: str) -> tuple[str, pd.DataFrame]:
    """(summary HTML with the per-turn table, cumulative-cost frame) for the session's requests."""
    summary = summarize(session.usage, pricing, plan)
    latency: dict[int, float] = {}
    ttft: dict[int, float | None] = {}
    for rec in session.usage:
        latency[rec["turn"]] = latency.get(rec["turn"], 0.0) + rec["latency_ms"]
        if rec.get("ttft_ms") is not None and ttft.get(rec["turn"]) is None:
            ttft[rec["turn"]] = rec["ttft_ms"]
    providers = list(pricing.providers)
    rows = [
        [
            r.turn,
            r.requests,
            r.prompt_tokens,
            r.completion_tokens,
            round(latency.get(r.turn, 0.0)),
            _round(ttft.get(r.turn)),
            _money(r.flat_cost),
            *(_money(r.token_costs.get(p)) for p in providers),
        ]
        for r in reversed(summary.rows)
    ]
    head = "<tr><th>pricing</th><th>total</th><th>vs flat</th></tr>"
    body = [
        f"<tr><td>Oxlo {html.escape(summary.plan)} (flat, {_money(summary.flat_per_request)}/request)</td>"
        f"<td>{_money(summary.flat_cost)}</td><td>1.0×</td></tr>"
    ]
    for p in providers:
        ratio = summary.ratio.get(p)
        why = summary.why_missing(p)
        cell = f"{ratio:.1f}×" if ratio is not None else "n/a"
        title = f' title="{html.escape(why)}"' if why else ""
        body.append(
            f"<tr{title}><td>{html.escape(pricing.providers[p].name)} (tokens)</td>"
            f"<td>{_money(summary.token_costs.get(p))}</td><td>{cell}</td></tr>"
        )
    lines = [
        f"<b>{summary.requests}</b> requests · <b>{summary.prompt_tokens + summary.completion_tokens:,}</b> tokens "
        f"({summary.prompt_tokens:,} in, {summary.completion_tokens:,} out)"
        + (f" · {summary.estimated_requests} estimated" if summary.estimated_requests else ""),
        f"<table>{head}{''.join(body)}</table>",
    ]
    if summary.over_cap:
        lines.append(
            f"<div class='sb-warnline'>⚠️ {summary.over_cap} request(s) went over the {html.escape(summary.plan)} "
            "plan's published per-request token cap.</div>"
        )
    missing = [summary.why_missing(p) for p in providers if summary.why_missing(p)]
    if missing:
        lines.append("<div class='sb-sub'>" + " ".join(html.escape(m) for m in missing) + "</div>")
    if summary.unverified:
        lines.append(
            "<div class='sb-sub'>Some prices are unverified placeholders: see assets/pricing.json (each figure has "
            "a source and date).</div>"
        )
    series = cumulative_series(summary)
    # Every line starts at turn 0 with nothing spent, so even one turn draws a visible segment.
    points = [{"turn": 0, "usd": 0.0, "pricing": f"Oxlo {summary.plan} (flat)"}] if series else []
    if series:
        points += [
            {"turn": 0, "usd": 0.0, "pricing": pricing.providers[p].name}
            for p, v in series[0][2].items()
            if v is not None
        ]
    for turn, flat, token in series:
        points.append({"turn": turn, "usd": flat, "pricing": f"Oxlo {summary.plan} (flat)"})
        for p, value in token.items():
            if value is not None:
                points.append({"turn": turn, "usd": value, "pricing": pricing.providers[p].name})
    frame = pd.DataFrame(points) if points else empty_plot()
    if rows:
        cols = headers(pricing)
        table = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
        lines.append(
            "<b>Per turn</b> (newest first)<div class='sb-scroll'><table><tr>"
            + "".join(f"<th>{html.escape(c)}</th>" for c in cols)
            + f"</tr>{table}</table></div>"
        )
    return "".join(f"<div>{line}</div>" for line in lines), frame


def allowance_html(allowance: Allowance | None) -> str:
    """The visitor's daily budget left ('' when nothing is bounded)."""
    if allowance is None or not allowance.bounds:
        return ""
    parts = []
    for whose, used, allowed in allowance.bounds:
        label = "You" if whose == "your" else "This app (all visitors)"
        parts.append(f"{label}: <b>{max(0, allowed - used):,}</b> of {allowed:,} requests left")
    return f"<div class='sb-budget'>Today's budget · {' · '.join(parts)} · resets {allowance.resets_at:%H:%M} UTC</div>"


def _round(value: float | None) -> float | str:
    return "–" if value is None else round(value)
