"""Deterministic ticket heuristics: lexicons and the category, status, priority and sentiment rules.

Inline ticket building (``supportbot.ticket.build_inline``) uses these when neither a
tool fact nor the model's ``update_ticket`` call says otherwise. They read only the
transcript, make no request and are cheap enough to run every turn.
"""

from __future__ import annotations

import re
from typing import Any

from supportbot.vocabulary import (
    SCAN_CHARS,
    Category,
    Priority,
    Sentiment,
    Status,
    content_text,
    find_phrases,
    words_of,
)

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
# A customer saying the matter is settled, and words that say it is not (whatever else they say).
_CONFIRM = (
    "thanks",
    "thank you",
    "thank",
    "solved",
    "resolved",
    "that helps",
    "that works",
    "works now",
    "got it",
    "all good",
    "perfect",
    "great",
    "gracias",
    "resuelto",
    "perfecto",
    "genial",
)
_STILL_WRONG = (
    "not",
    "still",
    "but",
    "again",
    "though",
    "never",
    "didn't",
    "doesn't",
    "isn't",
    "hasn't",
    "haven't",
    "won't",
    "can't",
    "todavía",
    "aún",
    "pero",
    "sigue",
)
# Courtesy questions ("anything else I can help you with?") do not leave the ticket pending.
_COURTESY = ("anything else", "something else", "help you with", "further questions", "other questions")
# Words of 3+ capitals; the look-behind after the first letter (a word start) lets the engine skip to capitals.
_CAPS_WORD = re.compile(r"[A-Z](?<!\w.)[A-Z]{2,}\b")
# Each category's words as one pattern over ``Words.joined`` (words one space apart): it starts
# with a literal space, so the engine jumps from word to word instead of testing every position.
_CATEGORY_RES = {cat: re.compile(" (?:" + "|".join(words) + ")(?= )") for cat, words in _CATEGORY_WORDS.items()}
_ACRONYMS = {"USB", "LED", "API", "UPS", "DHL", "USPS", "ETA", "PDF", "SKU", "FAQ", "URL", "ID", "EUR", "USD"}


def user_texts(messages: list[dict[str, Any]]) -> list[str]:
    """The text of every user message, in order."""
    return [content_text(m.get("content")) for m in messages if m.get("role") == "user"]


def _message_anger(text: str) -> int:
    """Anger points of one message, read from its first ``SCAN_CHARS`` characters."""
    words = words_of(text)
    score = 2 * min(2, len(find_phrases(words, _ANGRY)))
    score += 1 if find_phrases(words, _MILD) else 0
    score += 1 if "!!" in text[:SCAN_CHARS] else 0
    caps = [w for w in _CAPS_WORD.findall(text[:SCAN_CHARS]) if w not in _ACRONYMS]
    score += 1 if caps else 0
    score += 1 if find_phrases(words, _HUMAN) and find_phrases(words, ("talk", "speak", "want", "need")) else 0
    return score


def frustration_of(messages: list[dict[str, Any]]) -> int:
    """0..3 from the user's words; the latest message counts most, earlier anger fades by one."""
    level = 0
    for text in user_texts(messages):
        level = max(min(3, _message_anger(text)), level - 1)
    return level


def sentiment_of(messages: list[dict[str, Any]], frustration: int) -> Sentiment:
    """The tone of the latest user message (its first ``SCAN_CHARS`` characters): thanks reads positive, any
    frustration negative."""
    texts = user_texts(messages)
    last = texts[-1][:SCAN_CHARS].lower() if texts else ""
    if frustration >= 1 and not any(w in last for w in _POSITIVE):
        return "negative"
    if any(w in last for w in _POSITIVE):
        return "positive"
    return "neutral"


def category_of(user_text: str | list[str], tool_names: list[str]) -> Category:
    """What the request is about: an explicit refund/return wish, then the tools used, then keyword counts.

    ``user_text`` is one text or every user message; each is read through its first ``SCAN_CHARS`` characters."""
    words = "".join(words_of(t).joined for t in ([user_text] if isinstance(user_text, str) else user_text))
    scores = {cat: len(pattern.findall(words)) for cat, pattern in _CATEGORY_RES.items()}
    # "refund" and "return" are explicit wishes; they beat the order talk that comes with them.
    for cat in ("refund", "returns"):
        if scores[cat]:
            return cat
    for name in tool_names:
        if name in _TOOL_CATEGORY:
            return _TOOL_CATEGORY[name]  # type: ignore[return-value]
    best = max(scores, key=lambda c: scores[c])
    return best if scores[best] else "other"  # type: ignore[return-value]


def status_of(messages: list[dict[str, Any]], escalated: bool, decided: str | None = None) -> Status:
    """Where the ticket stands after the conversation so far.

    escalated once a person has it; resolved when the customer's latest message confirms it is solved;
    pending_customer when the last answer asks something; otherwise what the latest turn's tools decided
    (``decided``: "resolved" for an approved refund, "pending" for a refused refund or a late parcel);
    open when nothing is decided yet (no answer, or an answer the customer has not confirmed)."""
    if escalated:
        return "escalated"
    last = next((m for m in reversed(messages) if m.get("role") in ("user", "assistant")), None)
    if last is None or last.get("role") != "assistant" or not content_text(last.get("content")).strip():
        return "open"  # no answer yet: nothing was decided
    texts = user_texts(messages)
    if texts and confirms(texts[-1]):
        return "resolved"
    if asks_question(content_text(last.get("content"))):
        return "pending_customer"
    if decided == "resolved":
        return "resolved"
    if decided == "pending":
        return "pending_customer"
    return "open"


def confirms(text: str) -> bool:
    """True when a customer's message (its first ``SCAN_CHARS`` characters) says the matter is settled:
    thanks or "that solves it", with no new question and nothing still wrong."""
    words = words_of(text)
    if "?" in text[:SCAN_CHARS] or find_phrases(words, _STILL_WRONG):
        return False
    return bool(find_phrases(words, _CONFIRM))


def asks_question(answer: str) -> bool:
    """True when the first ``SCAN_CHARS`` characters of an answer ask something other than a courtesy question."""
    # Each "?" ends a question that starts after the previous one: split once, check each piece.
    questions = answer[:SCAN_CHARS].lower().split("?")[:-1]
    return any(not any(p in q for p in _COURTESY) for q in questions)


def priority_of(frustration: int, category: str, escalated: bool, user_text: str | list[str]) -> Priority:
    """How soon a person should look: frustration and urgent words first, then escalation and money topics.

    ``user_text`` is one text or every user message; each is read through its first ``SCAN_CHARS`` characters."""
    lowered = [t[:SCAN_CHARS].lower() for t in ([user_text] if isinstance(user_text, str) else user_text)]
    urgent_words = any(w in low for low in lowered for w in _URGENT)
    if frustration >= 3 or (urgent_words and frustration >= 2):
        return "urgent"
    if frustration >= 2 or escalated or urgent_words or category in ("refund", "billing"):
        return "high"
    if frustration == 0 and category == "other":
        return "low"
    return "normal"


def _first_sentence(text: str, limit: int = 140) -> str:
    # A sentence longer than ``limit`` is cut anyway: never look further than that.
    sentence = re.split(r"(?<=[.?!])\s", text.strip()[: limit + 1], maxsplit=1)[0]
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
