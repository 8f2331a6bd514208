"""The product's token estimates against something it did not write: the engine's own count.

``supportbot.routing.tokens`` estimates by characters per kind of text and routes with a 10%
safety margin; ``supportbot.engine.tokens`` counts by a GPT-4-style pre-tokenizer split. With
the margin the estimate must never be below the engine's count (a prompt the router thinks fits
must fit) and never more than twice it (or long-context models are chosen for nothing): an
estimator twice too low, or twice too high, fails here. Then whole turns at the edge of a
model's window go through the router and the real offline engine, which judges overflow by
its own count.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from supportbot.agent import SYSTEM_PROMPT
from supportbot.attachments.intake import Attachments
from supportbot.attachments.logs import open_log
from supportbot.config import ASSETS_DIR, Settings
from supportbot.conversation import TurnRunner
from supportbot.engine import OfflineEngine
from supportbot.engine import tokens as engine_tokens
from supportbot.events import Done, ErrorEvent, RouteChosen
from supportbot.routing import tokens
from supportbot.services import Services
from supportbot.session import Session
from supportbot.tools import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_LOG = (ASSETS_DIR / "samples" / "checkout-service.log").read_text(encoding="utf-8")
KB = "\n\n".join(p.read_text(encoding="utf-8") for p in sorted((ASSETS_DIR / "demo" / "kb").glob("*.md")))
README = (ROOT / "README.md").read_text(encoding="utf-8").split("---\n", 2)[2]  # without the Space's front matter
_README_LINES = re.sub(r"```.*?```", "", README, flags=re.S).splitlines()  # code blocks aside
README_PROSE = "\n".join(line for line in _README_LINES if not line.startswith("|"))
README_TABLES = "\n".join(line for line in _README_LINES if line.startswith("|"))
SPANISH = "\n".join(
    [
        "Hola, buenas tardes. Les escribo porque mi pedido número 48291 todavía no ha llegado.",
        "Según el correo de confirmación, debía llegar ayer por la mañana, pero el seguimiento no se ha "
        "actualizado desde hace tres días.",
        "Es un regalo de cumpleaños para mi hija y estoy bastante preocupada.",
        "¿Podrían decirme dónde está el paquete y cuándo llegará? Si se ha perdido, me gustaría que me "
        "devolvieran el dinero o que me enviaran otro.",
        "Muchas gracias por su ayuda. Quedo atenta a su respuesta.",
        "Un saludo cordial,",
        "María José Fernández",
    ]
)
SAMPLES = {
    "sample log": SAMPLE_LOG,
    "knowledge-base prose": KB,
    "Spanish": SPANISH,
    "orders JSON": (ASSETS_DIR / "demo" / "orders.json").read_text(encoding="utf-8"),
    "catalog JSON": (ASSETS_DIR / "models.json").read_text(encoding="utf-8"),
    "tool schemas JSON": json.dumps(REGISTRY.schemas()),
    "README prose": README_PROSE,
    "README tables": pytest.param(
        README_TABLES,
        marks=pytest.mark.xfail(
            strict=True,
            reason="Markdown tables of code spans, numbers and units are classified as prose (4 characters a "
            "token) but count about 3: ~14% under the engine's count, beyond the 10% margin. Found by this test; "
            "routing left unchanged in a restructure.",
        ),
    ),
}


@pytest.mark.parametrize("text", SAMPLES.values(), ids=SAMPLES.keys())
def test_the_estimate_with_its_margin_is_never_below_the_engines_count_nor_twice_above(text: str):
    counted = engine_tokens.count_tokens(text)
    estimated = tokens.with_margin(tokens.estimate_tokens(text))
    assert counted > 50  # a real sample, not a handful of words
    assert counted <= estimated <= 2 * counted, f"estimate {estimated}, engine {counted}"


def test_a_whole_request_is_estimated_at_or_above_the_engines_count():
    """System prompt, a customer message with a pasted log, tool schemas: what the agent sends."""
    messages = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "Checkout fails, see below\n" + SAMPLE_LOG[:20_000]},
        {"role": "assistant", "content": "Lo siento, lo reviso ahora."},
        {"role": "user", "content": SPANISH},
    ]
    schemas = REGISTRY.schemas()
    counted = engine_tokens.count_messages(messages) + engine_tokens.count_tools(schemas)
    estimated = tokens.with_margin(tokens.estimate_messages(messages) + tokens.estimate_tools(schemas))
    assert counted <= estimated <= 2 * counted


# --- at the edge of a window, through the router and the real offline engine ---------------------


@pytest.fixture
def runner(tmp_path: Path) -> TurnRunner:
    settings = Settings.load({"data_dir": tmp_path, "engine": "offline"}, environ={}, dotenv_path=None)
    return TurnRunner(Services.create(settings, OfflineEngine()))


def largest(fits, lo: int, hi: int, within: int = 64) -> int:
    """An n in [lo, hi) with fits(n) and not fits(n + within), for fits true at lo, false at hi and
    monotone between: the edge to ``within`` characters (16-32 tokens), not closer, as each probe
    routes a long text."""
    assert fits(lo) and not fits(hi)
    while hi - lo > within:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def repeated(text: str, chars: int) -> str:
    return (text * (chars // len(text) + 1))[:chars]


def run(runner: TurnRunner, text: str, files: list[Path], selected: str | None) -> list:
    async def go():
        return [e async for e in runner.run(Session(), text, files, selected=selected)]

    return asyncio.run(go())


@pytest.mark.parametrize(
    ("model_id", "source", "selected", "rule"),
    [
        ("qwen-3-32b", KB, "qwen-3-32b", "manual"),  # typed prose, the model chosen by hand
        ("qwen-3-32b", SPANISH, None, "multilingual"),  # typed Spanish
    ],
    ids=["prose-qwen-32K", "spanish-qwen-32K"],
)
def test_typed_text_just_under_a_window_is_accepted_by_the_engine(runner, model_id, source, selected, rule):
    window = runner.s.catalog.get(model_id).context_window

    def fits(n: int) -> bool:
        d = runner.decide(Session(), repeated(source, n), Attachments(), selected)
        return d.model == model_id and d.rule == rule

    text = repeated(source, largest(fits, window * 3, window * 4))
    assert_accepted_at_the_edge(runner, run(runner, text, [], selected), model_id, rule, window)


@pytest.mark.parametrize(
    ("model_id", "kinds"),
    [("kimi-k2.6", ("long_context",)), ("deepseek-v4-flash", ("long_context",))],
    ids=["log-kimi-262K", "log-deepseek-1M"],
)
def test_a_log_just_under_a_window_is_accepted_by_the_engine(tmp_path, model_id, kinds):
    # Premium: every long-context model is on the plan, so each window is reachable.
    settings = Settings.load(
        {"data_dir": tmp_path, "engine": "offline", "plan": "premium"}, environ={}, dotenv_path=None
    )
    runner = TurnRunner(Services.create(settings, OfflineEngine()))
    window = runner.s.catalog.get(model_id).context_window
    text = "Our checkout keeps failing, the log is attached"

    def fits(n: int) -> bool:
        found = Attachments(logs=[open_log(repeated(SAMPLE_LOG, n), "checkout.log")])
        d = runner.decide(Session(), text, found, None)
        return d.model == model_id and d.rule in kinds and d.reduce_logs_to is None

    path = tmp_path / "checkout.log"
    path.write_text(repeated(SAMPLE_LOG, largest(fits, int(window * 1.7), window * 3)), encoding="utf-8")
    assert_accepted_at_the_edge(runner, run(runner, text, [path], None), model_id, kinds[0], window)


def assert_accepted_at_the_edge(runner: TurnRunner, events: list, model_id: str, rule: str, window: int) -> None:
    route = next(e.decision for e in events if isinstance(e, RouteChosen))
    assert (route.model, route.rule, route.reduce_logs_to) == (model_id, rule, None)
    assert window - 64 <= route.est_tokens <= window  # really at the edge, by the router's estimate
    errors = [e for e in events if isinstance(e, ErrorEvent)]
    assert errors == [], errors[0].message if errors else ""
    assert [e.ok for e in events if isinstance(e, Done)] == [True]
    # The engine accepted the whole prompt by its own count, and it was a large share of the window:
    # an estimator 40% too low would have sent more than the window holds.
    engine = runner.s.clients.engine
    first = engine.requests[0]
    assert first["model"] == model_id
    counted = engine.prompt_tokens(first) + first["max_tokens"]
    assert 0.7 * window < counted <= window
