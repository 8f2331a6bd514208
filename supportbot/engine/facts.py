"""What the rules can read from a customer's words: ids, intents, mood, language.

Pure functions over text. These are keyword rules, not understanding: the
offline engine says so, and the live models do the real work.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from supportbot.vocabulary import (
    SCAN_CHARS,
    Words,
    content_text,
    detect_language,
    find_customer_ids,
    find_emails,
    find_order_ids,
    words_of,
)

# A code block the customer typed; bounded so an unclosed fence costs one scan, not one per backtick.
_FENCE = re.compile(r"```[^`]{0,200000}```")
# Words of 3+ capitals; the look-behind after the first letter (a word start) lets the engine skip to capitals.
_CAPS = re.compile(r"[A-ZÁÉÍÓÚÑ](?<!\w.)[A-ZÁÉÍÓÚÑ]{2,}\b")

REFUND = (
    "refund",
    "money back",
    "reimburse",
    "reembolso",
    "devolución del dinero",
    "devolucion del dinero",
    "devuelvan el dinero",
    "remboursement",
    "rembourser",
    "rückerstattung",
    "erstattung",
    "geld zurück",
)
POLICY = (
    "policy",
    "policies",
    "how do i",
    "how can i",
    "how long",
    "how to",
    "return",
    "warranty",
    "shipping cost",
    "delivery cost",
    "password",
    "privacy",
    "payment",
    "pay with",
    "membership",
    "cancel an order",
    "política",
    "politica",
    "cómo",
    "como puedo",
    "cuánto tarda",
    "garantía",
    "garantia",
    "devolver",
    "devolución",
    "contraseña",
    "envío",
    "pago",
)
ANGRY = (
    "angry",
    "furious",
    "ridiculous",
    "unacceptable",
    "worst",
    "terrible",
    "awful",
    "useless",
    "scam",
    "fed up",
    "disgusting",
    "pathetic",
    "incompetent",
    "never again",
    "cancel my account",
    "what a joke",
    "inaceptable",
    "ridículo",
    "ridiculo",
    "harto",
    "harta",
    "pésimo",
    "pesimo",
    "el peor",
    "estafa",
    "enfadado",
    "enfadada",
    "furioso",
    "vergüenza",
    "cancelar mi cuenta",
)
MILD = (
    "worried",
    "still",
    "yet",
    "again",
    "late",
    "disappointed",
    "supposed to",
    "annoyed",
    "frustrat",
    "preocupad",
    "todavía",
    "todavia",
    "aún no",
    "tarde",
    "otra vez",
    "decepcionad",
)
LEGAL = (
    "lawyer",
    "attorney",
    "sue ",
    "sue you",
    "legal action",
    "court",
    "chargeback",
    "small claims",
    "abogado",
    "demanda",
    "denuncia",
    "consumo",
)
HUMAN = (
    "human",
    "real person",
    "agent",
    "manager",
    "supervisor",
    "representative",
    "someone real",
    "humano",
    "persona real",
    "agente",
    "gerente",
    "encargado",
)
POSITIVE = ("thank", "thanks", "great", "perfect", "awesome", "love", "gracias", "genial", "perfecto")
# A question about what went wrong: after a log was sent, it is about that log.
FAILURE_WORDS = (
    "fail",
    "error",
    "wrong",
    "broken",
    "crash",
    "why",
    "going on",
    "happening",
    "cause",
    "issue",
    "problem",
    "falla",
    "fallo",
    "error",
    "por qué",
    "problema",
    "pasa",
)
GREETING = ("hello", "hi", "hey", "good morning", "good afternoon", "hola", "buenos días", "buenas")


@dataclass
class Facts:
    """Everything the rules found in one user turn (plus earlier turns where noted)."""

    text: str
    language: str = "en"
    order_ids: list[str] = field(default_factory=list)
    earlier_order_ids: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    customer_ids: list[str] = field(default_factory=list)
    refund: bool = False
    policy: bool = False
    wants_human: bool = False
    legal: bool = False
    frustration: int = 0
    positive: bool = False
    greeting: bool = False
    images: list[str] = field(default_factory=list)  # image URLs
    logs: list[tuple[str, str]] = field(default_factory=list)  # (filename, text)
    cut_off: dict[str, int] = field(default_factory=dict)  # filename -> lines, for logs that ended early
    # Logs (or their analyses) sent in earlier turns that this message asks about: (filename, text).
    earlier_logs: list[tuple[str, str]] = field(default_factory=list)
    asks_failure: bool = False  # the message asks what went wrong

    @property
    def escalate(self) -> bool:
        return self.wants_human or self.legal or self.frustration >= 2

    @property
    def priority(self) -> str:
        if self.legal:
            return "urgent"
        if self.escalate:
            return "high"
        return "normal" if self.order_ids or self.refund or self.logs else "low"

    @property
    def sentiment(self) -> str:
        if self.frustration or self.legal:
            return "negative"
        return "positive" if self.positive else "neutral"

    @property
    def category(self) -> str:
        lowered = self.text[:SCAN_CHARS].lower()
        if self.refund:
            return "refund"
        if self.logs or self.images or self.earlier_logs:
            return "technical"
        if self.order_ids or self.earlier_order_ids:
            return "order_status"
        if any(w in lowered for w in ("password", "login", "log in", "account", "contraseña", "cuenta")):
            return "account"
        if any(w in lowered for w in ("payment", "invoice", "charged", "billing", "pago", "factura")):
            return "billing"
        if self.policy:
            return "policy"
        if self.escalate:
            return "complaint"
        return "general"


def images_of(content: Any) -> list[str]:
    """The image URLs in a message's content parts."""
    if not isinstance(content, list):
        return []
    return [p["image_url"]["url"] for p in content if isinstance(p, dict) and p.get("type") == "image_url"]


def _has(words: Words, phrases: tuple[str, ...]) -> bool:
    """Whether a phrase starts a word of ``words`` ("frustrat" finds "frustrated"); "sue " must be the whole word."""
    return any(words.has(p, prefix=True) for p in phrases)


def _all_caps_words(text: str) -> int:
    caps = _CAPS.findall(text[:SCAN_CHARS])
    return sum(1 for w in caps if w not in {"USD", "EUR", "UPS", "DHL", "API"})


def analyse_turn(content: Any, earlier_user_texts: list[str] | None = None, logs: list | None = None) -> Facts:
    """Facts of one user message (its first ``SCAN_CHARS`` characters); ``logs`` are the fenced logs found in it."""
    raw = content_text(content)
    # Keep pasted logs out of the keyword rules: an "ERROR" line is not an angry customer.
    for _, body in logs or ():
        raw = raw.replace(body, " ")
    # The rules read the first SCAN_CHARS characters: a customer writes the request near the
    # start, and a 1 MB paste then costs what a short message costs.
    text = _FENCE.sub(" ", raw[:SCAN_CHARS])
    words = words_of(text)
    facts = Facts(text=text.strip(), images=images_of(content), logs=list(logs or ()))
    facts.language = detect_language(text) if text.strip() else "en"
    facts.emails = find_emails(text)
    facts.customer_ids = find_customer_ids(text)
    facts.order_ids = find_order_ids(text)
    earlier_ids = [find_order_ids(_FENCE.sub(" ", t[:SCAN_CHARS])) for t in reversed(earlier_user_texts or [])]
    facts.earlier_order_ids = list(dict.fromkeys(oid for ids in earlier_ids for oid in ids))
    facts.refund = _has(words, REFUND)
    facts.policy = _has(words, POLICY) or (
        text.rstrip().endswith("?") and not facts.order_ids and _has(words, ("how", "what", "can i", "cómo", "qué"))
    )
    facts.wants_human = _has(words, HUMAN)
    facts.legal = _has(words, LEGAL)
    strong = sum((_has(words, ANGRY), "!!" in text, _all_caps_words(text) >= 2))
    facts.frustration = min(3, 3 if facts.legal else (strong + 1 if strong else int(_has(words, MILD))))
    facts.positive = _has(words, POSITIVE)
    facts.asks_failure = _has(words, FAILURE_WORDS)
    facts.greeting = _has(words, GREETING) and len(text.split(maxsplit=6)) <= 6
    return facts


def summary(facts: Facts) -> str:
    """A one-line intent summary in English (for tickets)."""
    parts = []
    if facts.refund:
        ids = facts.order_ids or facts.earlier_order_ids[:1]
        parts.append("refund request" + (f" for order {', '.join('#' + i for i in ids)}" if ids else ""))
    elif facts.order_ids:
        parts.append("order status for " + ", ".join("#" + i for i in facts.order_ids))
    if facts.policy and not facts.refund and not (facts.logs or facts.earlier_logs):
        parts.append("policy or how-to question")
    if facts.logs or facts.earlier_logs:
        parts.append("log analysis")
    if facts.images:
        parts.append("screenshot attached")
    if facts.escalate:
        parts.append("asks for a human" if facts.wants_human else "frustrated customer")
    if not parts:
        words = facts.text.split(maxsplit=16)  # 16 words and the rest, if any
        return (
            ("Customer says: " + " ".join(words[:16]) + ("…" if len(words) > 16 else ""))
            if words
            else "Customer message without text"
        )
    return "Customer " + "; ".join(parts)


def ticket_hints(facts: Facts, results: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Hints for a structured ticket or ``update_ticket``, by conventional field name."""
    results = results or {}
    escalation = results.get("escalation_ticket_id")
    escalated = bool(escalation or facts.escalate)
    steps = []
    if facts.refund and not (facts.order_ids or facts.earlier_order_ids):
        steps.append("Ask the customer for the order number")
    if escalated:
        steps.append("Human agent follows up on the escalation")
    if facts.order_ids and not facts.refund:
        steps.append("Share tracking details and watch the delivery date")
    if facts.logs or facts.earlier_logs:
        steps.append("Check the failing dependency the log analysis names")
    elif facts.policy:
        steps.append("Point the customer to the knowledge-base article")
    if not steps:
        steps.append("Wait for the customer's reply")
    email, customer_id = (facts.emails or [None])[0], (facts.customer_ids or [None])[0]
    customer = {"id": customer_id, "email": email, "text": email or customer_id} if email or customer_id else None
    status = "escalated" if escalated else results.get("status") or "open"
    hints = {
        "category": facts.category,
        "intent_summary": summary(facts),
        "sentiment": facts.sentiment,
        "frustration": facts.frustration,
        "priority": facts.priority,
        "language": facts.language,
        "order_ids": facts.order_ids or facts.earlier_order_ids,
        "order_id": (facts.order_ids or [None])[0],
        "customer": customer,
        "customer_email": email,
        "email": email,
        "customer_id": customer_id,
        "status": status,
        "escalation_ticket_id": escalation,
        "needs_human": escalated,
        "next_steps": steps,
        "actions_taken": list(results.get("actions_taken", [])),
        "reason": summary(facts),
    }
    if results.get("ticket_id"):
        hints["ticket_id"] = results["ticket_id"]
    return hints
