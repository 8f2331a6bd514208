"""Every routing rule, the manual override, token estimates and language detection (pure)."""

from __future__ import annotations

import pytest

from supportbot.routing import tokens
from supportbot.routing.catalog import load_catalog
from supportbot.routing.router import TurnFacts, count_actions, load_policy, plan_tiers, route
from supportbot.vocabulary import detect_language

BASE = load_catalog()
POLICY = load_policy(catalog=BASE)


def catalog_for(plan: str):
    """The catalog as the app holds it on ``plan`` with a service that lists every model (the offline engine)."""
    return BASE.for_plan(plan, plan_tiers(POLICY, plan)).with_service_ids(BASE.ids())


CATALOG = catalog_for("pro")  # the default SUPPORTBOT_PLAN
PREMIUM = catalog_for("premium")


def decide(facts: TurnFacts, selected: str | None = None, catalog=CATALOG):
    return route(facts, catalog, POLICY, selected)


def test_a_routine_question_goes_to_triage():
    d = decide(TurnFacts("Where is my order #48291?"))
    assert (d.model, d.category, d.rule) == ("llama-3.3-70b", "triage", "triage")
    assert "Llama 3.3 70B" in d.reason


def test_an_image_goes_to_the_first_vision_model_on_the_plan():
    # Pro: the seed's pair is passed over (Kimi VL A3B's tier is unpublished, so it comes after the
    # Pro models; Gemma 3 27B and Kimi K2.6 are Premium), so Llama 4 Maverick, then Ministral 14B.
    d = decide(TurnFacts("what does this error mean", images=1))
    assert (d.model, d.category) == ("llama-4-maverick", "vision")
    assert d.fallbacks == ("ministral-14b", "gemma-3-4b", "kimi-vl-a3b")
    assert "screenshot" in d.reason.lower()
    d = decide(TurnFacts("what does this error mean", images=1), catalog=PREMIUM)
    assert (d.model, d.fallbacks[:2]) == ("gemma-3-27b", ("kimi-k2.6", "llama-4-maverick"))
    assert d.fallbacks[-1] == "kimi-vl-a3b"


def test_an_image_never_goes_to_a_text_only_model_even_when_chosen():
    d = decide(TurnFacts("look", images=2), selected="llama-3.3-70b")
    assert CATALOG.get(d.model).capabilities.vision
    assert d.switched_from == "llama-3.3-70b"
    assert "cannot read images" in d.reason


def test_a_capable_manual_choice_wins():
    d = decide(TurnFacts("look", images=1), selected="ministral-14b")
    assert (d.model, d.rule, d.warning) == ("ministral-14b", "manual", None)
    assert d.fallbacks[0] == "llama-4-maverick"  # what Auto would have chosen comes first
    assert decide(TurnFacts("hello"), selected="deepseek-v3.2").model == "deepseek-v3.2"


@pytest.mark.parametrize(
    ("plan", "log_tokens", "model", "rule"),
    [
        ("pro", 100_000, "deepseek-r1-0528", "reasoning"),  # fits triage: a log is troubleshooting
        ("premium", 100_000, "kimi-k2.6", "reasoning"),  # a known Premium model before an unpublished tier
        ("premium", 150_000, "kimi-k2.6", "long_context"),  # over Llama's 131K: the smallest long-context model
        ("pro", 150_000, "deepseek-v4-flash", "long_context"),  # Kimi K2.6 is Premium
        ("premium", 300_000, "deepseek-v4-flash", "long_context"),  # over Kimi's 262K
        ("pro", 880_000, "deepseek-v4-flash", "long_context"),
        ("premium", 3_000_000, "deepseek-v4-flash", "long_context_reduced"),  # beyond every window: the largest
    ],
)
def test_logs_route_by_size(plan: str, log_tokens: int, model: str, rule: str):
    d = decide(TurnFacts("here is the log", log_tokens=log_tokens), catalog=catalog_for(plan))
    assert (d.model, d.rule) == (model, rule)
    assert d.est_tokens <= d.context_window or d.reduce_logs_to is not None


# Worked by hand, independently of the router's code: a turn "log" with an attached log carries the log
# plus 1,024 output tokens (the 3-character text rounds down to 0), and the router asks for 10% more
# (rounded down, plus 1) to fit the window. So the largest log that fits window W is the largest n with
# (n + 1024) x 1.1 < W:
#   131,072 / 1.1 = 119,156.4   -> n + 1024 <= 119,156 -> n <= 118,132
#   262,144 / 1.1 = 238,312.7   -> n + 1024 <= 238,312 -> n <= 237,288
# 1,000,000 / 1.1 = 909,090.9   -> n + 1024 <= 909,090 -> n <= 908,066
@pytest.mark.parametrize(
    ("plan", "fits", "window", "below", "above"),
    [
        ("pro", 118_132, 131_072, "deepseek-r1-0528", "deepseek-v4-flash"),  # the triage window (Llama 3.3 70B)
        ("premium", 118_132, 131_072, "kimi-k2.6", "kimi-k2.6"),
        ("premium", 237_288, 262_144, "kimi-k2.6", "deepseek-v4-flash"),  # the first long-context window
        ("pro", 908_066, 1_000_000, "deepseek-v4-flash", "deepseek-v4-flash"),  # the largest: above it, reduced
    ],
)
def test_logs_just_below_at_and_above_each_window(plan: str, fits: int, window: int, below: str, above: str):
    catalog = catalog_for(plan)
    for n in (fits - 1000, fits):
        d = decide(TurnFacts("log", log_tokens=n), catalog=catalog)
        assert d.model == below and d.reduce_logs_to is None and d.est_tokens <= d.context_window
    at_edge = decide(TurnFacts("log", log_tokens=fits), catalog=catalog)
    assert at_edge.est_tokens in (window - 1, window)  # really at the edge: (fits + 1024) x 1.1 rounds to it
    d = decide(TurnFacts("log", log_tokens=fits + 1), catalog=catalog)
    assert d.model == above
    if window == 1_000_000:
        # 1,000,000 / 1.1 = 909,090 for the whole prompt, less the rest (1,024 + 10% + 1 = 1,127): 907,963.
        assert d.reduce_logs_to == 907_963
    else:
        assert d.reduce_logs_to is None


def test_a_log_beyond_every_window_is_reduced_to_fit_and_the_reason_says_so():
    d = decide(TurnFacts("log", log_tokens=3_000_000))
    assert d.model == "deepseek-v4-flash"
    assert d.reduce_logs_to == 907_963  # worked above: what the 1M window leaves for the log
    assert "reduced" in d.reason and "908K" in d.reason


def test_a_manual_choice_too_small_for_a_log_switches_with_the_reason():
    d = decide(TurnFacts("log", log_tokens=300_000), selected="qwen-3-32b")
    assert d.model == "deepseek-v4-flash" and d.switched_from == "qwen-3-32b"
    assert "exceeds Qwen 3 32B" in d.reason


def test_history_beyond_every_window_compacts():
    d = decide(TurnFacts("and now?", history_tokens=2_000_000, reducible_log=False))
    assert d.rule == "compact" and "compacted" in d.reason


def test_spanish_goes_to_qwen():
    d = decide(TurnFacts("Hola, ¿dónde está mi pedido #48291? Debía llegar ayer."))
    assert (d.model, d.category) == ("qwen-3-32b", "multilingual")
    assert "Spanish" in d.reason


def test_a_short_reply_keeps_the_conversations_language():
    d = decide(TurnFacts("sí, gracias", history=["Hola, ¿dónde está mi pedido? Todavía no ha llegado."]))
    assert d.model == "qwen-3-32b"


def test_troubleshooting_goes_to_a_reasoning_model():
    d = decide(TurnFacts("The app crashes with an exception every time I open settings"))
    assert (d.model, d.category) == ("deepseek-r1-0528", "reasoning")


def test_several_actions_go_to_an_agentic_model():
    text = "Check orders #48291 and #48292 and refund the second one"
    assert count_actions(text, POLICY) >= 2
    d = decide(TurnFacts(text))
    assert (d.model, d.category) == ("glm-5", "agentic")
    assert count_actions("Where is my order #48291?", POLICY) == 1


def test_fallbacks_never_repeat_the_chosen_model():
    for facts in (TurnFacts("hi"), TurnFacts("x", images=1), TurnFacts("log", log_tokens=200_000)):
        d = decide(facts)
        assert d.model not in d.fallbacks


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("Where is my order? It was supposed to arrive yesterday.", "en"),
        ("¿Dónde está mi pedido? Debía llegar ayer.", "es"),
        ("Bonjour, où est ma commande ? Elle devait arriver hier.", "fr"),
        ("Wo ist meine Bestellung? Sie sollte gestern ankommen.", "de"),
        ("ok", "en"),
        ("#48291", "en"),
        ("注文はどこですか", "ja"),
    ],
)
def test_language_detection(text: str, lang: str):
    assert detect_language(text) == lang


def test_token_estimates_are_calibrated_by_kind():
    prose = "The quick brown fox jumps over the lazy dog while the customer waits for a reply. " * 50
    log = "2026-11-27T10:00:01.123Z ERROR [worker-3] req-7f3a91c2 db timeout after 30000ms\n" * 50
    assert tokens.classify(prose) == "prose" and tokens.classify(log) == "log"
    assert abs(tokens.estimate_tokens(prose) - len(prose) / 4) < 2
    assert abs(tokens.estimate_tokens(log) - len(log) / 2) < 2
    image_msg = {
        "role": "user",
        "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "data:"}}],
    }
    assert tokens.estimate_message(image_msg) == 4 + 1 + 1600  # message overhead, "hi", one screenshot


def test_choosing_the_largest_model_for_an_oversized_log_still_reduces_it():
    d = decide(TurnFacts("log", log_tokens=3_000_000), selected="deepseek-v4-flash")
    assert d.model == "deepseek-v4-flash" and d.reduce_logs_to is not None
    assert d.reason.startswith("You chose DeepSeek V4 Flash") and "reduced" in d.reason


def test_an_image_with_a_history_too_long_for_vision_models_compacts():
    d = decide(TurnFacts("and this?", images=1, history_tokens=2_000_000, reducible_log=False))
    assert CATALOG.get(d.model).capabilities.vision and d.rule == "compact"
    assert d.model == "llama-4-maverick"  # the largest vision window on Pro
    assert "compacted" in d.reason and d.reduce_logs_to is None
    assert len(d.fallbacks) == len(set(d.fallbacks))
