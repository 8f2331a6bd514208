"""Final answers written from tool results and the turn's facts, in English or Spanish."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from supportbot.engine import spanish
from supportbot.engine.facts import Facts

MARKER = "_(offline demo engine)_"
MARKERS = {"en": MARKER, "es": "_(motor de demostración sin conexión)_"}
TEMPLATE_LANGUAGES = ("en", "es")

T: dict[str, dict[str, str]] = {
    "order": {"en": "Order #{id} is **{status}**", "es": "El pedido #{id} está **{status}**"},
    "carrier": {"en": "with {carrier}", "es": "con {carrier}"},
    "tracking": {"en": "tracking number {tracking}", "es": "número de seguimiento {tracking}"},
    "eta": {"en": "expected delivery {eta}", "es": "entrega prevista el {eta}"},
    "delivered": {"en": "delivered on {date}", "es": "entregado el {date}"},
    "late": {
        "en": "I'm sorry it is late ({days} past the estimated date).",
        "es": "Lamento el retraso ({days} después de la fecha prevista).",
    },
    "refund_ok": {
        "en": "Your refund for order #{id} is **approved**: {amount}.",
        "es": "Tu reembolso del pedido #{id} está **aprobado**: {amount}.",
    },
    "refund_no": {
        "en": "I could not approve a refund for order #{id}.",
        "es": "No he podido aprobar el reembolso del pedido #{id}.",
    },
    "kb": {
        "en": "These help-centre articles should answer it:",
        "es": "Estos artículos del centro de ayuda (en inglés) lo responden:",
    },
    "kb_none": {
        "en": "I found no help-centre article for that. Could you rephrase, or shall I get a person?",
        "es": "No encontré ningún artículo de ayuda. ¿Puedes reformularlo, o prefieres que te atienda una persona?",
    },
    "escalated": {
        "en": "I've passed this to a human colleague: ticket **{ticket}**{queue}. They'll follow up here.",
        "es": "He pasado tu caso a una persona del equipo: ticket **{ticket}**{queue}. Te responderán aquí.",
    },
    "queue": {"en": ", position {pos} in the queue", "es": ", posición {pos} en la cola"},
    "customer": {"en": "I found your account, {name} ({tier}).", "es": "Encontré tu cuenta, {name} ({tier})."},
    "tool_error": {"en": "I couldn't complete `{tool}`: {error}", "es": "No pude completar `{tool}`: {error}"},
    "not_approved": {
        "en": "A human agent did not approve `{tool}`, so I have not done it. I can explain the policy or look at "
        "other options with you.",
        "es": "Un agente humano no aprobó `{tool}`, así que no lo he hecho. Puedo explicarte la política o buscar "
        "otras opciones contigo.",
    },
    "next_error": {
        "en": "Could you double-check the details (for example the order number) so I can try again?",
        "es": "¿Puedes revisar los datos (por ejemplo el número de pedido) para intentarlo de nuevo?",
    },
    "ask_order": {
        "en": "I can help with that refund. What is the order number (for example #48291)?",
        "es": "Puedo ayudarte con el reembolso. ¿Cuál es el número de pedido (por ejemplo #48291)?",
    },
    "greeting": {
        "en": "Hello! How can I help? For an order, send me its number (for example #48291).",
        "es": "¡Hola! ¿En qué puedo ayudarte? Si es sobre un pedido, envíame su número (por ejemplo #48291).",
    },
    "thanks": {
        "en": "You're welcome! Is there anything else I can help with?",
        "es": "¡De nada! ¿Puedo ayudarte con algo más?",
    },
    "fallback": {
        "en": "I can help with order status, refunds, returns, warranty and account questions. "
        "Could you share your order number or describe the issue?",
        "es": "Puedo ayudarte con el estado de pedidos, reembolsos, devoluciones, garantía y tu cuenta. "
        "¿Me das el número de pedido o me describes el problema?",
    },
    "sorry": {"en": "I'm sorry about this experience.", "es": "Siento mucho esta experiencia."},
    "no_tool": {
        "en": "I can't {what} right now; a colleague will be able to help.",
        "es": "Ahora mismo no puedo {what}; una persona del equipo podrá ayudarte.",
    },
    "no_tools": {
        "en": "I can't {what} in this turn: the model answering it ({model}) cannot use tools. "
        "Choose Auto, or a model that can use tools, and ask again.",
        "es": "No puedo {what} en este turno: el modelo que responde ({model}) no puede usar herramientas. "
        "Elige Auto, o un modelo que use herramientas, y vuelve a preguntar.",
    },
    "other_language": {
        "en": "(I answer in English: the offline demo engine has templates in English and Spanish only.)",
        "es": "",
    },
}
STATUS_ES = {
    "shipped": "enviado",
    "delivered": "entregado",
    "processing": "en preparación",
    "delayed": "retrasado",
    "cancelled": "cancelado",
    "refunded": "reembolsado",
    "in_transit": "en tránsito",
}
WHAT = {
    "orders": {"en": "look up orders", "es": "consultar pedidos"},
    "refund": {"en": "process refunds", "es": "tramitar reembolsos"},
    "kb": {"en": "search the help centre", "es": "buscar en el centro de ayuda"},
    "human": {"en": "hand you over to a person", "es": "pasarte con una persona"},
}


def t(key: str, lang: str, **values: Any) -> str:
    """Template ``key`` in ``lang`` (English when there is no template for it)."""
    table = T[key]
    return table.get(lang if lang in TEMPLATE_LANGUAGES else "en", table["en"]).format(**values)


@dataclass(frozen=True)
class ToolOutcome:
    """One tool call of the current turn and what it returned."""

    name: str
    arguments: dict[str, Any]
    result: Any  # parsed JSON when the tool message was JSON, else the text


def parse_result(content: Any) -> Any:
    """The tool message content, parsed as JSON when it is JSON."""
    text = content if isinstance(content, str) else json.dumps(content) if content is not None else ""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _pick(data: Any, *keys: str) -> Any:
    if not isinstance(data, dict):
        return None
    for key in keys:
        if data.get(key) not in (None, ""):
            return data[key]
    return None


def _error_of(result: Any) -> str | None:
    if isinstance(result, dict) and result.get("error"):
        err = result["error"]
        return err.get("message", str(err)) if isinstance(err, dict) else str(err)
    if isinstance(result, str) and re.match(r"\s*(error|failed|exception)\b", result, re.IGNORECASE):
        return result.strip()
    return None


def render_order(out: ToolOutcome, lang: str) -> str:
    """Order status with carrier, tracking, ETA and an apology when late."""
    r = out.result
    oid = _pick(r, "order_id", "id") or out.arguments.get("order_id", "?")
    status = str(_pick(r, "status") or "unknown")
    line = t("order", lang, id=str(oid).lstrip("#"), status=STATUS_ES.get(status, status) if lang == "es" else status)
    details = []
    if carrier := _pick(r, "carrier"):
        details.append(t("carrier", lang, carrier=carrier))
    if tracking := _pick(r, "tracking_number", "tracking", "tracking_id"):
        details.append(t("tracking", lang, tracking=tracking))
    if delivered := _pick(r, "delivered_on", "delivered_at"):
        details.append(t("delivered", lang, date=delivered))
    elif eta := _pick(r, "eta", "estimated_delivery", "expected_delivery"):
        details.append(t("eta", lang, eta=eta))
    text = line + (" " + ", ".join(details) if details else "") + "."
    if detail := _pick(r, "status_detail"):
        # The carrier's note is English data: in Spanish, its translation or nothing.
        detail = spanish.STATUS_DETAIL.get(str(detail)) if lang == "es" else detail
        text += f" {detail}" if detail else ""
    if _pick(r, "is_late"):
        late = _pick(r, "days_late") or 1
        text += " " + t("late", lang, days=spanish.days(late) if lang == "es" else _days_en(late))
    return text


def render_refund(out: ToolOutcome, lang: str) -> str:
    """Refund approved or denied, with the policy's reason."""
    r = out.result
    oid = str(_pick(r, "order_id") or out.arguments.get("order_id", "?")).lstrip("#")
    outcome = str(_pick(r, "outcome", "status", "decision") or "").lower()
    approved = _pick(r, "approved") is True or outcome in ("approved", "accepted", "ok")
    reason = _pick(r, "explanation", "reason", "policy_reason", "message") or ""
    if lang == "es":  # the explanation is English: say it again from the policy's facts
        reason = spanish.refund_reason(_pick(r, "policy"), oid)
    if approved:
        amount = _pick(r, "amount")
        money = f"{amount} {_pick(r, 'currency') or ''}".strip() if amount is not None else "—"
        text = t("refund_ok", lang, id=oid, amount=money)
    else:
        text = t("refund_no", lang, id=oid)
    if refund_id := _pick(r, "refund_id"):
        text += f" (ref. {refund_id})"
    return f"{text} {reason}".strip()


def render_kb(out: ToolOutcome, lang: str) -> str:
    """Top article titles with ids and a one-line gist."""
    r = out.result
    results = r if isinstance(r, list) else _pick(r, "results", "articles") or []
    if not results:
        return t("kb_none", lang)
    lines = [t("kb", lang)]
    for art in results[:3]:
        if not isinstance(art, dict):
            continue
        gist = str(_pick(art, "snippet", "summary", "gist", "content", "body") or "").replace("**", "")
        # The articles are English: a Spanish answer names them (marked "en inglés") without quoting them.
        gist = "" if lang == "es" else re.split(r"(?<=[.!?])\s", " ".join(gist.split()), maxsplit=1)[0][:160]
        ident = _pick(art, "id", "article_id")
        lines.append(
            f"- **{_pick(art, 'title') or 'Article'}**"
            + (f" ({ident})" if ident else "")
            + (f": {gist}" if gist else "")
        )
    return "\n".join(lines)


def render_escalation(out: ToolOutcome, lang: str) -> str:
    """Escalation ticket id and queue position."""
    r = out.result
    ticket = _pick(r, "ticket_id", "escalation_ticket_id", "id") or "?"
    pos = _pick(r, "queue_position", "position")
    return t("escalated", lang, ticket=ticket, queue=t("queue", lang, pos=pos) if pos is not None else "")


def render_customer(out: ToolOutcome, lang: str) -> str:
    """Who the customer is, briefly."""
    r = out.result
    customer = _pick(r, "customer") if isinstance(_pick(r, "customer"), dict) else r
    name = _pick(customer, "name") or _pick(customer, "email") or "—"
    text = t("customer", lang, name=name, tier=_pick(customer, "tier", "plan") or "—")
    recent = _pick(r, "recent_orders") or []
    if recent:
        text += " " + ", ".join(f"#{o.get('id')} ({o.get('status')})" for o in recent[:3] if isinstance(o, dict))
    return text


RENDERERS = {
    "check_order_status": render_order,
    "request_refund": render_refund,
    "search_knowledge_base": render_kb,
    "escalate_to_human": render_escalation,
    "lookup_customer": render_customer,
}


def render_outcome(out: ToolOutcome, lang: str) -> str | None:
    """One paragraph for one tool result; None for bookkeeping tools."""
    if (error := _error_of(out.result)) is not None:
        if "not approved by a human" in error:  # a call a person declined: nothing to double-check
            return t("not_approved", lang, tool=out.name)
        if lang == "es":
            return spanish.tool_error(out.name, error) + " " + t("next_error", lang)
        return t("tool_error", lang, tool=out.name, error=error) + " " + t("next_error", lang)
    if out.name == "update_ticket":
        return None  # bookkeeping: the customer need not hear about it
    renderer = RENDERERS.get(out.name)
    if renderer is not None:
        return renderer(out, lang)
    shown = json.dumps(out.result, ensure_ascii=False)[:300] if not isinstance(out.result, str) else out.result[:300]
    return f"`{out.name}` → {shown}"


def _days_en(n: Any) -> str:
    return f"{n} day" if str(n) == "1" else f"{n} days"


def direct_reply(facts: Facts, offered: set[str], lang: str, model: str | None = None) -> str:
    """The reply when no tool was called this turn (none needed, or none offered). ``model`` is set when
    the request offered no tools at all: the model answering cannot use them, and the reply says so."""
    parts: list[str] = []
    missing: list[str] = []
    if facts.escalate:
        parts.append(t("sorry", lang))
    if facts.refund and not (facts.order_ids or facts.earlier_order_ids):
        parts.append(t("ask_order", lang))
    elif facts.refund and "request_refund" not in offered:
        missing.append("refund")
    elif facts.order_ids and "check_order_status" not in offered:
        missing.append("orders")
    if facts.policy and "search_knowledge_base" not in offered and not facts.refund:
        missing.append("kb")
    if facts.escalate and "escalate_to_human" not in offered:
        missing.append("human")
    if missing and model:  # one sentence naming all it cannot do, and why
        what = _and([WHAT[m].get(lang, WHAT[m]["en"]) for m in missing], lang)
        parts.append(t("no_tools", lang, what=what, model=model))
    else:
        parts += [t("no_tool", lang, what=WHAT[m].get(lang, WHAT[m]["en"])) for m in missing]
    if not parts and not facts.logs and not facts.images:
        parts.append(
            t("greeting", lang) if facts.greeting else t("thanks", lang) if facts.positive else t("fallback", lang)
        )
    return "\n\n".join(parts)


def _and(items: list[str], lang: str) -> str:
    """'a', 'a and b', 'a, b and c' (y in Spanish)."""
    word = " y " if lang == "es" else " and "
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + word + items[-1]


def finish(parts: list[str], lang: str) -> str:
    """Join the answer's paragraphs, add the language note and the unobtrusive marker (in the answer's language)."""
    body = "\n\n".join(p for p in parts if p)
    if lang not in TEMPLATE_LANGUAGES:
        body += "\n\n" + T["other_language"]["en"]
    return f"{body}\n\n{MARKERS.get(lang, MARKER)}"
