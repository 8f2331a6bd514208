"""Settings: precedence, validation errors naming the variable, catalog and policy validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from supportbot.config import Settings
from supportbot.errors import CatalogError, ConfigError
from supportbot.routing.catalog import load_catalog
from supportbot.routing.router import load_policy


def test_defaults_run_offline_without_a_key():
    s = Settings.load(environ={}, dotenv_path=None)
    assert s.live is False
    assert s.base_url == "https://api.oxlo.ai/v1"
    assert s.max_output_tokens == 1024


def test_a_key_makes_auto_live_and_the_key_stays_secret():
    s = Settings.load(environ={"OXLO_API_KEY": "sk-secret-123"}, dotenv_path=None)
    assert s.live is True
    assert "sk-secret-123" not in repr(s) and "sk-secret-123" not in str(s.model_dump())


def test_precedence_overrides_then_environment_then_dotenv(tmp_path: Path):
    env_file = tmp_path / ".env"
    env_file.write_text(
        "SUPPORTBOT_MAX_TOOL_STEPS=3\nSUPPORTBOT_REQUEST_TIMEOUT=9\nOXLO_BASE_URL=http://from-file/v1\n"
    )
    s = Settings.load(environ={"SUPPORTBOT_MAX_TOOL_STEPS": "4"}, dotenv_path=env_file)
    assert (s.max_tool_steps, s.request_timeout, s.base_url) == (4, 9.0, "http://from-file/v1")
    s = Settings.load({"max_tool_steps": 5}, environ={"SUPPORTBOT_MAX_TOOL_STEPS": "4"}, dotenv_path=env_file)
    assert s.max_tool_steps == 5


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("SUPPORTBOT_ENGINE", "turbo"),
        ("SUPPORTBOT_MAX_TOOL_STEPS", "0"),
        ("SUPPORTBOT_REQUEST_TIMEOUT", "soon"),
        ("SUPPORTBOT_MAX_OUTPUT_TOKENS", "-5"),
        ("SUPPORTBOT_TICKET_MODE", "magic"),
    ],
)
def test_a_bad_value_names_its_variable(var: str, value: str):
    with pytest.raises(ConfigError) as info:
        Settings.load(environ={var: value}, dotenv_path=None)
    assert info.value.variable == var
    assert var in str(info.value) and value in str(info.value)


def test_live_engine_without_a_key_is_refused():
    with pytest.raises(ConfigError, match="OXLO_API_KEY"):
        Settings.load(environ={"SUPPORTBOT_ENGINE": "live"}, dotenv_path=None).check()


def test_the_catalog_has_the_articles_models():
    catalog = load_catalog()
    for model_id in (
        "llama-3.3-70b",
        "deepseek-r1-0528",
        "deepseek-v3.2",
        "kimi-k2.6",
        "qwen-3-32b",
        "deepseek-v4-flash",
        "glm-5",
        "minimax-m2.5",
        "kimi-vl-a3b",
        "gemma-3-27b",
    ):
        assert model_id in catalog
    assert catalog.get("deepseek-v4-flash").context_window == 1_000_000
    confirmed = {m.id for m in catalog if m.confirmed}
    assert {"llama-3.3-70b", "qwen-3-32b", "deepseek-r1-0528", "deepseek-v3.2", "kimi-k2.6", "gemma-3-27b"} <= confirmed
    assert not confirmed & {"kimi-vl-a3b", "deepseek-v4-flash", "glm-5", "minimax-m2.5"}
    # The vision page's models (tests/test_catalog_tiers.py checks their tiers) and the seed's Kimi VL A3B.
    vision = {m.id for m in catalog if m.capabilities.vision}
    page = {
        "ministral-14b",
        "llama-4-maverick",
        "kimi-k2.5",
        "kimi-k2.6",
        "kimi-k2-thinking",
        "gemma-3-4b",
        "gemma-3-27b",
    }
    assert vision == page | {"kimi-vl-a3b"}


def test_models_the_service_does_not_list_are_flagged_not_dropped():
    catalog = load_catalog().with_service_ids(["llama-3.3-70b", "kimi-k2.6"])
    assert "glm-5" in catalog.unlisted and "llama-3.3-70b" not in catalog.unlisted
    assert len(catalog.models) == len(load_catalog().models)


def test_a_bad_catalog_entry_is_named(tmp_path: Path):
    data = json.loads(Path("assets/models.json").read_text())
    data["models"][3]["context_window"] = "big"
    bad = tmp_path / "models.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(CatalogError) as info:
        load_catalog(bad)
    assert "models[3]" in str(info.value) and "kimi-k2.6" in str(info.value) and "context_window" in str(info.value)


def test_a_routing_policy_naming_an_unknown_model_is_refused(tmp_path: Path):
    data = json.loads(Path("assets/routing.json").read_text())
    data["preferences"]["vision"] = ["no-such-model"]
    bad = tmp_path / "routing.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(CatalogError, match="no-such-model"):
        load_policy(bad, load_catalog())
