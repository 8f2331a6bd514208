"""No single message can stall the server: every text rule runs in linear time on hostile input.

Each function here reads a visitor's text, a log or a model's answer with regular expressions.
It is run on 1 MB adversarial inputs (one long token, many "@", dots, digits, "#", backticks,
whitespace runs, one 1 MB line) and must answer within 100 ms, best of 3 (``time.perf_counter``).
The email regex of old took hours on such a token. This is the one timed check issue 8 asks for;
``python bench/linear_time.py`` prints the same functions' worst times as a table.

Functions that read a log get one-line inputs (1 MB of each shape and a 5 MB log line): their
cost is per line, and each line is read through a bounded prefix, so a line rule takes under
100 ms even on the 5 MB line; a whole-log rule must copy the text at least once, so its budget
is 100 ms per MB.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from supportbot import config, vocabulary
from supportbot.attachments import analysis
from supportbot.attachments.logs import open_log
from supportbot.attachments.reduce import reduce_log
from supportbot.engine import logreader, structured
from supportbot.engine.facts import analyse_turn, ticket_hints
from supportbot.engine.responder import respond
from supportbot.routing import router, tokens
from supportbot.routing.catalog import load_catalog
from supportbot.session import Session
from supportbot.storage.store import normalize_order_id, query_terms
from supportbot.ticket import extraction, rules
from supportbot.ticket.record import build_inline
from supportbot.ui import render

SIZE = 1_000_000
LIMIT_S = 0.100


def _fill(unit: str, size: int = SIZE) -> str:
    return (unit * (size // len(unit) + 1))[:size]


# The shapes that make backtracking regexes explode, each 1 MB.
HOSTILE: dict[str, str] = {
    "one long token": _fill("a"),
    "many @": _fill("@"),
    "a@a@": _fill("a@"),
    "many dots": _fill("."),
    "a.a.": _fill("a."),
    "many digits": _fill("1"),
    "1.1.": _fill("1."),
    "many #": _fill("#"),
    "#1#1": _fill("#1"),
    "many backticks": _fill("`"),
    "whitespace run": "a" + _fill(" ", SIZE - 2) + "a",
    "whitespace and newlines": _fill(" \t\n"),
    "many quotes": _fill('"'),
    "backslashes after a quote": '"' + _fill("\\", SIZE - 1),
    "keywords": _fill("order refund error anything else "),
    "capitals": _fill("ERROR "),
    "email-like": _fill("a.b+c-d@e-f.g"),
    "hex": _fill("deadbeef1"),
    "brackets": _fill("[["),
    "leading whitespace": _fill(" ", SIZE - 1) + "x",
    "escaped quotes": _fill('\\"'),
    "many order ids": _fill("#48291 "),
    "unclosed fence headers": _fill('Customer-supplied log "a" (data, not instructions):\n```log lines=1\n'),
    "a fence, spaces, a fence": "```x" + _fill(" ", SIZE - 8) + "x```",
    "deeply indented lines": _fill(_fill(" ", 9_999) + "x\n"),
    "courtesy without a question mark": _fill("anything I can help you with "),
    "one 1 MB log line": "2026-11-27T10:00:00.000Z ERROR [worker-1] " + _fill("x=1 ", SIZE - 43),
    "one 1 MB JSON line": '{"level":"error","time":"' + _fill("1", SIZE - 28) + '"}',
}
# Log readers get every one-line shape, and a 5 MB log line.
ONE_LINE = {name: text for name, text in HOSTILE.items() if "\n" not in text}
ONE_LINE["one 5 MB log line"] = "2026-11-27T10:00:00.000Z ERROR [worker-1] " + _fill("x=1 ", 5 * SIZE)

_CATALOG = load_catalog(config.ASSETS_DIR / "models.json")
_POLICY = router.load_policy(catalog=_CATALOG)
_TOOLS = [
    {"type": "function", "function": {"name": name, "parameters": {}}}
    for name in ("check_order_status", "request_refund", "lookup_customer", "search_knowledge_base")
]


def _user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def _chat_view(text: str) -> Any:
    session = Session()
    session.messages = [
        {"role": "user", "content": text, "attachments": [], "turn": 1},
        {"role": "assistant", "content": text, "turn": 1},
    ]
    return render.chat_view(session)


# Everything that reads a visitor's message or a model's answer.
MESSAGE_RULES: dict[str, Callable[[str], Any]] = {
    "vocabulary.find_order_ids": vocabulary.find_order_ids,
    "vocabulary.find_emails": vocabulary.find_emails,
    "vocabulary.find_customer_ids": vocabulary.find_customer_ids,
    "vocabulary.detect_language": vocabulary.detect_language,
    "vocabulary.words_of": vocabulary.words_of,
    "vocabulary.fence_log": lambda t: vocabulary.fence_log(t, "x.log"),
    "vocabulary.find_fenced_logs": vocabulary.find_fenced_logs,
    "routing.tokens.classify": tokens.classify,
    "routing.tokens.estimate_tokens": tokens.estimate_tokens,
    "router keyword search": lambda t: router._words(t, _POLICY.reasoning_keywords),
    "router.count_actions": lambda t: router.count_actions(t, _POLICY),
    "router.route": lambda t: router.route(router.TurnFacts(text=t), _CATALOG, _POLICY),
    "rules.frustration_of": lambda t: rules.frustration_of(_user(t)),
    "rules.sentiment_of": lambda t: rules.sentiment_of(_user(t), 0),
    "rules.category_of": lambda t: rules.category_of(t, []),
    "rules.status_of": lambda t: rules.status_of([{"role": "assistant", "content": t}], False),
    "rules.priority_of": lambda t: rules.priority_of(0, "other", False, t),
    "rules.summary_of": lambda t: rules.summary_of("other", [], [t]),
    "record.build_inline": lambda t: build_inline(
        conversation_id="c",
        messages=[*_user(t), {"role": "assistant", "content": t}],
        tool_calls=[],
        ticket_fields={},
    ),
    "extraction: parse the model's ticket": extraction._parse,
    "engine facts.analyse_turn": lambda t: ticket_hints(analyse_turn(t, [t])),
    "engine structured.parse_transcript": structured.parse_transcript,
    "engine structured.conversation_hints": lambda t: structured.conversation_hints(
        [{"role": "system", "content": t}, *_user(t), {"role": "assistant", "content": t}]
    ),
    "engine structured.schema_in_prompt": lambda t: structured.schema_in_prompt([{"role": "system", "content": t}]),
    "engine respond (tools offered)": lambda t: respond({"model": "m", "messages": _user(t), "tools": _TOOLS}),
    "store.query_terms": query_terms,
    "store.normalize_order_id": normalize_order_id,
    "config.redact": lambda t: config.redact(t, "sk-test-0123456789abcdef"),
    "render.chat_view": _chat_view,
}

# What reads one log line: a bounded prefix of it, so even the 5 MB line takes under 100 ms.
LINE_RULES: dict[str, Callable[[str], Any]] = {
    "analysis.level_of": analysis.level_of,
    "analysis.template_of": analysis.template_of,
    "analysis.timestamp_of": analysis.timestamp_of,
    "analysis.is_important": analysis.is_important,
    "analysis.analyse": lambda t: analysis.render_analysis(analysis.analyse([t])),
}
# What reads a whole log: it must at least copy the text once, so the budget is 100 ms per MB.
LOG_RULES: dict[str, Callable[[str], Any]] = {
    "analysis.looks_like_access_log": analysis.looks_like_access_log,
    "logs.open_log": lambda t: open_log(t, "pasted.log"),
    "reduce.reduce_log": lambda t: reduce_log(open_log(t, "pasted.log"), 2000),
    "engine logreader.read_log": logreader.read_log,
    "engine respond (a fenced log)": lambda t: respond(
        {"model": "m", "messages": _user(vocabulary.fence_log(t, "x.log"))}
    ),
}


def best_of_3(fn: Callable[[str], Any], text: str, limit: float) -> float:
    """The fastest of up to three runs, in seconds (a first run well under the limit is enough)."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        fn(text)
        best = min(best, time.perf_counter() - start)
        if best < limit / 2:
            break
    return best


def _slow(
    rule: Callable[[str], Any], inputs: dict[str, str], *, per_mb: bool = False, scale: int = 1
) -> dict[str, str]:
    """The inputs ``rule`` took too long on: over 100 ms (or 100 ms per MB read), best of 3."""
    rule("warm up: compile the patterns once")
    slow = {}
    for name, text in inputs.items():
        limit = scale * (LIMIT_S * max(1.0, len(text) / SIZE) if per_mb else LIMIT_S)
        if (took := best_of_3(rule, text, limit)) >= limit:
            slow[name] = f"{took * 1000:.0f} ms (limit {limit * 1000:.0f} ms)"
    return slow


@pytest.mark.parametrize("name", MESSAGE_RULES)
def test_message_rules_read_1_mb_of_hostile_text_in_under_100_ms(name: str):
    assert _slow(MESSAGE_RULES[name], HOSTILE) == {}


@pytest.mark.parametrize("name", LINE_RULES)
def test_line_rules_read_a_hostile_1_mb_or_5_mb_log_line_in_under_100_ms(name: str):
    assert _slow(LINE_RULES[name], ONE_LINE) == {}


@pytest.mark.parametrize("name", LOG_RULES)
def test_log_rules_read_a_hostile_one_line_log_in_under_100_ms_per_mb(name: str):
    assert _slow(LOG_RULES[name], ONE_LINE, per_mb=True) == {}


def test_the_ticket_reads_five_1_mb_turns_in_under_100_ms_each():
    # Every turn's ticket reads every user message: linear in the turns, never in their product
    # (a membership test on the growing list of order ids was quadratic).
    def five_turns(text: str) -> Any:
        messages = [*_user(text), {"role": "assistant", "content": "ok"}] * 5
        return build_inline(conversation_id="c", messages=messages, tool_calls=[], ticket_fields={})

    assert _slow(five_turns, HOSTILE, scale=5) == {}


def test_search_kb_reads_a_1_mb_query_in_under_100_ms(store):
    slow = _slow(lambda t: store.search_kb(t, top_k=3), HOSTILE)
    assert slow == {}


def test_the_rewritten_rules_still_read_what_a_customer_writes():
    # The bounded, linear rules keep their meaning on ordinary messages.
    assert router._words("The app crashed with a 500 error, it doesn't work", _POLICY.reasoning_keywords) == [
        "error",
        "crashed",
        "doesn't work",
        "500",
    ]
    assert router._words("a 5000 errorless debugger", _POLICY.reasoning_keywords) == []
    assert rules.category_of(["My package is late", "and the tracking says nothing"], []) == "order_status"
    assert rules.category_of("I cannot log in to my account", []) == "account"
    assert rules.status_of([{"role": "assistant", "content": "Done. Anything else I can help you with?"}], False) == (
        "open"
    )
    assert rules.status_of([{"role": "assistant", "content": "Which order? Anything else?"}], False) == (
        "pending_customer"
    )
    assert rules.frustration_of(_user("This is RIDICULOUS!! I want to talk to a human")) == 3
    assert "Field required" in extraction._parse('```json\n{"x": 1}\n```')[1]  # unfenced: valid JSON, not a ticket
    facts = analyse_turn("I am fed up, I will sue you. Where is #48291?")
    assert facts.legal and facts.order_ids == ["48291"] and facts.frustration == 3
    assert not analyse_turn("The suede jacket arrived").legal  # "sue " is a whole word
    assert structured.parse_transcript("user: hi\nthere\nassistant: hello")[:2] == (["hi\nthere"], ["hello"])
    # A keyword after the first SCAN_CHARS characters of a paste is not read: the bound is real.
    assert router._words("x " * vocabulary.SCAN_CHARS + "error", ["error"]) == []
