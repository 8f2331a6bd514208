"""Offline language detection: script ranges plus stop-word counts. No downloads.

Good enough to route a support message: it looks at the customer's words only,
ignores order numbers, emails and code, and answers "en" when unsure so English
stays the default route.
"""

from __future__ import annotations

import re

STOPWORDS: dict[str, frozenset[str]] = {
    "en": frozenset("the and is are my i you it to of for in on with not was have this that where what when my order please".split()),
    "es": frozenset(
        "el la los las un una y es son mi mis yo tu usted no que de del en con por para pedido dónde donde cuándo "
        "cuando está estaba hola gracias quiero necesito llegó llegado todavía aún ayer hoy favor reembolso "
        "pero muy ya porque cómo como qué mí su sus".split()
    ),
    "fr": frozenset(
        "le la les un une et est sont mon ma mes je vous il pas que de du des en avec pour commande où quand "
        "bonjour merci veux besoin arrivé toujours hier aujourd'hui remboursement mais très déjà pourquoi".split()
    ),
    "de": frozenset(
        "der die das ein eine und ist sind mein meine ich sie es nicht dass von zu mit für bestellung wo wann "
        "hallo danke möchte brauche angekommen immer noch gestern heute rückerstattung aber sehr schon warum".split()
    ),
    "pt": frozenset(
        "o a os as um uma e é são meu minha eu você não que de do da em com por para pedido onde quando olá "
        "obrigado quero preciso chegou ainda ontem hoje reembolso mas muito já porque".split()
    ),
    "it": frozenset(
        "il lo la gli le un una e è sono mio mia io lei non che di del della in con per ordine dove quando ciao "
        "grazie voglio bisogno arrivato ancora ieri oggi rimborso ma molto già perché".split()
    ),
}

SCRIPTS: tuple[tuple[str, str], ...] = (
    ("ja", r"[\u3040-\u30ff]"),
    ("zh", r"[\u4e00-\u9fff]"),
    ("ko", r"[\uac00-\ud7af]"),
    ("ru", r"[\u0400-\u04ff]"),
    ("ar", r"[\u0600-\u06ff]"),
    ("hi", r"[\u0900-\u097f]"),
    ("el", r"[\u0370-\u03ff]"),
    ("he", r"[\u0590-\u05ff]"),
    ("th", r"[\u0e00-\u0e7f]"),
)
# Letters only in some Latin-script languages: strong evidence when present.
MARKERS: dict[str, str] = {"es": "ñ¿¡", "de": "ßäöü", "fr": "çœêèàû", "pt": "ãõ"}
NAMES = {"en": "English", "es": "Spanish", "fr": "French", "de": "German", "pt": "Portuguese", "it": "Italian",
         "ja": "Japanese", "zh": "Chinese", "ko": "Korean", "ru": "Russian", "ar": "Arabic", "hi": "Hindi",
         "el": "Greek", "he": "Hebrew", "th": "Thai"}

_NOISE = re.compile(r"\S+@\S+|https?://\S+|#?\d[\w-]*|`[^`]*`")
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?", re.UNICODE)


def detect_language(text: str) -> str:
    """ISO 639-1 code of the text's language; "en" when unsure."""
    text = _NOISE.sub(" ", text[:4000])
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return "en"
    for code, pattern in SCRIPTS:
        if len(re.findall(pattern, text)) / len(letters) > 0.3:
            return code
    words = [w.lower() for w in _WORD.findall(text)]
    if not words:
        return "en"
    scores = {code: sum(w in stop for w in words) for code, stop in STOPWORDS.items()}
    lowered = text.lower()
    for code, chars in MARKERS.items():
        scores[code] += 2 * sum(lowered.count(c) for c in chars)
    best = max(scores, key=lambda c: scores[c])
    # Short English texts share words like "no" and "a" with others: demand a margin.
    if best != "en" and scores[best] >= 2 and scores[best] > scores["en"] * 1.2:
        return best
    return "en"


def language_name(code: str) -> str:
    """Human name of a language code."""
    return NAMES.get(code, code)
