"""Flat per-request cost against token prices, checked with arithmetic done by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from supportbot.errors import CatalogError
from supportbot.events import UsageRecord
from supportbot.pricing import (
    cumulative_series,
    flat_cost_per_request,
    load_pricing,
    over_cap,
    summarize,
    token_cost,
)
from supportbot.routing.catalog import load_catalog

SRC = {"source": "test fixture", "as_of": "2026-01-01", "verified": True}
DOC = {
    "currency": "USD",
    "plans": [
        {"name": "basic", "monthly_usd": 30.0, "requests_per_day": 100, "max_tokens_per_request": 10000, **SRC},
        {"name": "open", "monthly_usd": 90.0, "requests_per_day": 1000, "max_tokens_per_request": None, **SRC},
    ],
    "providers": {
        "alpha": {
            "name": "Alpha AI",
            "models": {"m1": {"input": 1.0, "output": 2.0, **SRC}, "m2": {"input": 0.5, "output": 1.5, **SRC}},
        },
        "beta": {"name": "Beta Cloud", "models": {"m1": {"input": 2.0, "output": 4.0, **SRC}, "m2": None}},
    },
}
RECORDS = [
    UsageRecord("m1", "tool_round", 1000, 500, False, 100.0, turn=1),
    {"model": "m1", "purpose": "answer", "prompt_tokens": 2000, "completion_tokens": 100, "estimated": True, "turn": 1},
    UsageRecord("m2", "answer", 12000, 300, False, 100.0, turn=2),
]


def write(tmp_path: Path, doc: dict) -> Path:
    path = tmp_path / "pricing.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


@pytest.fixture
def pricing(tmp_path):
    return load_pricing(write(tmp_path, DOC))


def test_flat_cost_per_request(pricing):
    # 30 USD / (100 requests/day x 30 days) = 0.01 USD
    assert flat_cost_per_request(pricing.plan("basic")) == pytest.approx(0.01)
    # 90 / (1000 x 30) = 0.003
    assert flat_cost_per_request(pricing.plan("open")) == pytest.approx(0.003)


def test_token_cost_by_hand(pricing):
    # alpha m1: 1000 x 1.0/1e6 + 500 x 2.0/1e6 = 0.001 + 0.001
    assert token_cost(RECORDS[0], "alpha", pricing) == pytest.approx(0.002)
    # beta m1 from a plain dict: 2000 x 2.0/1e6 + 100 x 4.0/1e6 = 0.004 + 0.0004
    assert token_cost(RECORDS[1], "beta", pricing) == pytest.approx(0.0044)
    assert token_cost(RECORDS[2], "beta", pricing) is None  # m2 has no beta price: unknown, not free


def test_summary_by_hand(pricing):
    s = summarize(RECORDS, pricing, "basic")
    assert s.requests == 3 and s.prompt_tokens == 15000 and s.completion_tokens == 900
    assert s.estimated_requests == 1
    assert s.flat_cost == pytest.approx(0.03)
    assert [r.turn for r in s.rows] == [1, 2]
    assert s.rows[0].flat_cost == pytest.approx(0.02) and s.rows[1].flat_cost == pytest.approx(0.01)
    # alpha: turn 1 = 0.002 + (0.002 + 0.0002) = 0.0042; turn 2 = 12000 x 0.5/1e6 + 300 x 1.5/1e6 = 0.00645
    assert s.rows[0].token_costs["alpha"] == pytest.approx(0.0042)
    assert s.rows[1].token_costs["alpha"] == pytest.approx(0.00645)
    assert s.token_costs["alpha"] == pytest.approx(0.01065)
    assert s.ratio["alpha"] == pytest.approx(0.355)  # 0.01065 / 0.03
    # beta: turn 1 = 0.004 + 0.0044 = 0.0084; turn 2's m2 has no price and no equivalent: left out, and the
    # total says it is partial (2 of 3 requests) rather than pretending the third was free.
    assert s.rows[0].token_costs["beta"] == pytest.approx(0.0084)
    assert s.rows[1].token_costs["beta"] is None and s.rows[1].unpriced == {"beta": 1}
    assert s.token_costs["beta"] == pytest.approx(0.0084) and s.ratio["beta"] == pytest.approx(0.28)
    assert s.partial("beta") and not s.partial("alpha") and s.unpriced == {"alpha": 0, "beta": 1}
    assert s.missing == {"beta": ["m2"]}
    assert s.why_missing("beta") == (
        "Beta Cloud lists no price for m2 (nor an equivalent), so its total is partial: 2 of 3 requests."
    )
    assert s.why_missing("alpha") is None
    assert s.over_cap == 1  # 12000 + 300 > 10000
    assert json.loads(json.dumps(s.to_json()))["unpriced"]["beta"] == 1


def test_cumulative_series(pricing):
    series = cumulative_series(summarize(RECORDS, pricing, "basic"))
    assert [turn for turn, _, _ in series] == [1, 2]
    assert series[0][1] == pytest.approx(0.02) and series[1][1] == pytest.approx(0.03)
    assert series[0][2]["alpha"] == pytest.approx(0.0042) and series[1][2]["alpha"] == pytest.approx(0.01065)
    # beta's line carries what it prices (partial after turn 2), never dropping to nothing
    assert series[0][2]["beta"] == pytest.approx(0.0084) and series[1][2]["beta"] == pytest.approx(0.0084)


def test_a_missing_model_is_priced_as_its_nearest_listed_equivalent(tmp_path):
    doc = json.loads(json.dumps(DOC))
    doc["equivalents"] = {
        "_comment": "ignored",
        "m2": {"like": ["m9", "m1"], "basis": "a model of m1's size", "source": "test", "as_of": "2026-01-01"},
    }
    doc["providers"]["alpha"]["models"]["m9"] = {"input": 7.0, "output": 7.0, **SRC}
    pricing = load_pricing(write(tmp_path, doc))
    # beta lacks m2 and m9: priced as m1 at beta (2.0 in, 4.0 out), marked as an estimate
    quote = pricing.quote("beta", "m2")
    assert quote is not None and quote.estimated and quote.via == "m1" and quote.basis == "a model of m1's size"
    assert not pricing.quote("alpha", "m2").estimated  # alpha has its own m2 price
    s = summarize(RECORDS, pricing, "basic")
    # turn 2 at beta: 12000 x 2.0/1e6 + 300 x 4.0/1e6 = 0.024 + 0.0012 = 0.0252; total 0.0084 + 0.0252 = 0.0336
    assert s.rows[1].token_costs["beta"] == pytest.approx(0.0252) and s.rows[1].estimated == {"beta": 1}
    assert s.token_costs["beta"] == pytest.approx(0.0336) and not s.partial("beta")
    assert s.estimates == {"beta": {"m2": "m1"}} and s.missing == {}


def test_an_equivalent_nobody_prices_is_refused(tmp_path):
    doc = json.loads(json.dumps(DOC))
    doc["equivalents"] = {"m2": {"like": ["m7"], "basis": "b", "source": "s", "as_of": "2026-01-01"}}
    with pytest.raises(CatalogError, match="equivalents.m2") as err:
        load_pricing(write(tmp_path, doc))
    assert "m7: no provider prices it" in str(err.value)


def test_over_cap(pricing):
    basic, open_plan = pricing.plan("basic"), pricing.plan("open")
    assert over_cap({"model": "m1", "prompt_tokens": 9000, "completion_tokens": 1001}, basic) is True
    assert over_cap({"model": "m1", "prompt_tokens": 9000, "completion_tokens": 1000}, basic) is False  # at the cap
    assert over_cap(RECORDS[2], open_plan) is False  # no published cap


def test_unknown_plan_names_known_ones(pricing):
    with pytest.raises(CatalogError) as err:
        summarize(RECORDS, pricing, "gold")
    assert "gold" in str(err.value) and "basic" in str(err.value)


def test_bad_price_names_the_entry(tmp_path):
    doc = json.loads(json.dumps(DOC))
    doc["providers"]["alpha"]["models"]["m2"]["input"] = -1
    with pytest.raises(CatalogError) as err:
        load_pricing(write(tmp_path, doc))
    assert err.value.entry == "pricing.json providers.alpha.models.m2"
    assert "input" in str(err.value)


def test_bad_plan_names_the_entry(tmp_path):
    doc = json.loads(json.dumps(DOC))
    doc["plans"][1]["requests_per_day"] = 0
    with pytest.raises(CatalogError) as err:
        load_pricing(write(tmp_path, doc))
    assert err.value.entry == "pricing.json plans[1] (open)"
    assert "requests_per_day" in str(err.value)


def test_missing_source_is_rejected(tmp_path):
    doc = json.loads(json.dumps(DOC))
    del doc["providers"]["beta"]["models"]["m1"]["source"]
    with pytest.raises(CatalogError, match="providers.beta.models.m1"):
        load_pricing(write(tmp_path, doc))


def test_shipped_file_covers_the_catalog():
    pricing = load_pricing()
    assert pricing.plan("pro").monthly_usd >= 0  # the default SUPPORTBOT_PLAN exists
    catalog_ids = set(load_catalog().ids())
    for key, provider in pricing.providers.items():
        assert set(provider.models) == catalog_ids, key  # every model listed: a price or an explicit null
        for price in provider.models.values():
            assert price is None or (price.input > 0 and price.output > 0)  # unknown is null, never 0
    # Every model has equivalents named, with a basis; the long-log and screenshot models are priced everywhere.
    assert set(pricing.equivalents) == catalog_ids
    for provider in pricing.providers:
        for model in ("deepseek-v4-flash", "llama-4-maverick", "kimi-k2.6", "qwen-3-32b"):
            assert pricing.quote(provider, model) is not None, (provider, model)
