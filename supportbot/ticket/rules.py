"""Deterministic ticket heuristics: lexicons and the category, status, priority and sentiment rules.

Inline ticket building (``supportbot.ticket.build_inline``) uses these when neither a
tool fact nor the model's ``update_ticket`` call says otherwise. They read only the
transcript, make no request and are cheap enough to run every turn.
"""

from __future__ import annotations

import re
from typing import Any

from supportbot.vocabulary import Category, Priority, Sentiment, Status, content_text

# Regexes, matched at word starts: plain substrings would read "app" in "appreciate"
# and "log" in "login". Dict order breaks ties, so order_status (the common case) is first.
_CATEGORY_WORDS: dict[str, tuple[str, ...]] = {
    "order_status": (
        r"where is",
        r"tracking",
        r"deliver\w*",
        r"arriv\w*",
        r"ship(?:ping|ped)",
        r"package",
        r"parcel",
        r"order status",
        r"late",
    ),
    "refund": (r"refund\w*", r"money back", r"reimburs\w*", r"chargeback"),
    "returns": (r"return\w*", r"exchang\w*", r"send it back", r"rma"),
    "billing": (r"invoice\w*", r"bill(?:ing|ed)", r"charged?", r"payment\w*", r"receipt\w*", r"subscription\w*"),
    "account": (r"password\w*", r"log ?in", r"sign ?in", r"account\w*", r"2fa", r"username\w*"),
    "technical": (
        r"error\w*",
        r"crash\w*",
        r"bug\w*",
        r"not working",
        r"doesn'?t work",
        r"broken",
        r"stack ?trace",
        r"exception\w*",
        r"logs?",
        r"screenshot\w*",
        r"firmware",
        r"won'?t turn on",
        r"app",
    ),
}
_TOOL_CATEGORY = {"request_refund": "refund", "check_order_status": "order_status"}
_ANGRY = (
    "ridiculous",
    "unacceptable",
    "angry",
    "furious",
    "terrible",
    "worst",
    "useless",
    "scam",
    "awful",
    "horrible",
    "pathetic",
    "fed up",
    "sick of",
    "waste of time",
    "joke",
    "incompetent",
)
_MILD = (
    "worried",
    "concerned",
    "upset",
    "disappointed",
    "frustrated",
    "annoyed",
    "still",
    "again",
    "waiting",
    "late",
    "unhappy",
)
_HUMAN = ("human", "real person", "manager", "supervisor", "agent")
_POSITIVE = ("thank", "thanks", "great", "perfect", "awesome", "appreciate", "excellent", "wonderful")
_URGENT = ("urgent", "asap", "emergency", "immediately")
_COURTESY_Q = re.compile(r"(?i)(anything else|something else|help you with|further questions|other questions)[^?]*\?")
_CAPS_WORD = re.compile(r"\b[A-Z]{3,}\b")
_ACRONYMS = {"USB", "LED", "API", "UPS", "DHL", "USPS", "ETA", "PDF", "SKU", "FAQ", "URL", "ID", "EUR", "USD"}


def user_texts(messages: list[dict[str, Any]]) -> list[str]:
    """The text of every user message, in order."""
    return [content_text(m.get("content")) for m in messages if m.get("role") == "user"]


def _has_word(low: str, word: str) -> bool:
    return re.search(rf"\b{re.escape(word)}\b", low) is not None


def _message_anger(text: str) -> int:
    low = text.lower()
    score = 2 * min(2, sum(_has_word(low, w) for w in _ANGRY))
    score += 1 if any(_has_word(low, w) for w in _MILD) else 0
    score += 1 if "!!" in text else 0
    caps = [w for w in _CAPS_WORD.findall(text) if w not in _ACRONYMS]
    score += 1 if caps else 0
    score += 1 if any(_has_word(low, w) for w in _HUMAN) and re.search(r"\b(talk|speak|want|need)\b", low) else 0
    return score


def frustration_of(messages: list[dict[str, Any]]) -> int:
    """0..3 from the user's words; the latest message counts most, earlier anger fades by one."""
    level = 0
    for text in user_texts(messages):
        level = max(min(3, _message_anger(text)), level - 1)
    return level


def sentiment_of(messages: list[dict[str, Any]], frustration: int) -> Sentiment:
    """The tone of the latest user message: thanks reads positive, any frustration negative."""
    texts = user_texts(messages)
    last = texts[-1].lower() if texts else ""
    if frustration >= 1 and not any(w in last for w in _POSITIVE):
        return "negative"
    if any(w in last for w in _POSITIVE):
        return "positive"
    return "neutral"


def category_of(user_text: str, tool_names: list[str]) -> Category:
    """What the request is about: an explicit refund/return wish, then the tools used, then keyword counts."""
    low = user_text.lower()
    scores = {cat: sum(len(re.findall(rf"\b{w}\b", low)) for w in words) for cat, words in _CATEGORY_WORDS.items()}
    # "refund" and "return" are explicit wishes; they beat the order talk that comes with them.
    for cat in ("refund", "returns"):
        if scores[cat]:
            return cat
    for name in tool_names:
        if name in _TOOL_CATEGORY:
            return _TOOL_CATEGORY[name]  # type: ignore[return-value]
    best = max(scores, key=lambda c: scores[c])
    return best if scores[best] else "other"  # type: ignore[return-value]


def status_of(messages: list[dict[str, Any]], escalated: bool) -> Status:
    """escalated; pending_customer if the last answer asks a question (or is missing); else resolved."""
    if escalated:
        return "escalated"
    last = next((m for m in reversed(messages) if m.get("role") in ("user", "assistant")), None)
    if last is None or last.get("role") != "assistant" or not content_text(last.get("content")).strip():
        return "pending_customer"  # no answer yet: nothing was resolved
    answer = _COURTESY_Q.sub("", content_text(last.get("content")))
    return "pending_customer" if "?" in answer else "resolved"


def priority_of(frustration: int, category: str, escalated: bool, user_text: str) -> Priority:
    """How soon a person should look: frustration and urgent words first, then escalation and money topics."""
    urgent_words = any(w in user_text.lower() for w in _URGENT)
    if frustration >= 3 or (urgent_words and frustration >= 2):
        return "urgent"
    if frustration >= 2 or escalated or urgent_words or category in ("refund", "billing"):
        return "high"
    if frustration == 0 and category == "other":
        return "low"
    return "normal"


def _first_sentence(text: str, limit: int = 140) -> str:
    sentence = re.split(r"(?<=[.?!])\s", text.strip(), maxsplit=1)[0]
    return sentence if len(sentence) <= limit else sentence[: limit - 1].rstrip() + "…"


def summary_of(category: str, order_ids: list[str], texts: list[str]) -> str:
    """One sentence on what the customer wants: a template with the order ids, else their first sentence."""
    orders = ", ".join(order_ids)
    templates = {
        "order_status": "Customer asks where order {o} is.",
        "refund": "Customer wants a refund for order {o}.",
        "returns": "Customer wants to return order {o}.",
    }
    if orders and category in templates:
        return templates[category].format(o=orders)
    return _first_sentence(texts[0]) if texts else "No customer message yet."
