"""Scenario files, the runner CLI and session -> scenario, through the real runner and TurnRunner
on the offline engine; the CLI as a subprocess, as CI runs it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from supportbot.config import ASSETS_DIR, Settings
from supportbot.conversation import TurnRunner
from supportbot.errors import ScenarioError
from supportbot.qa import scenario as sc
from supportbot.qa.export import _value, scenario_from_session
from supportbot.qa.runner import matches, play_turn, run_scenario
from supportbot.services import Services
from supportbot.session import Session

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ASSETS_DIR / "scenarios"
OFFLINE = {"engine": "offline"}


def run_offline(scenario: sc.Scenario, **kwargs):
    return asyncio.run(run_scenario(scenario, overrides=OFFLINE, environ={}, dotenv_path=None, **kwargs))


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m supportbot.qa`` as CI runs it: offline, no key, no .env from the repo."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OXLO_", "SUPPORTBOT_"))}
    env |= {"PYTHONPATH": str(ROOT), "SUPPORTBOT_ENGINE": "offline"}
    return subprocess.run(
        [sys.executable, "-m", "supportbot.qa", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_every_shipped_scenario_passes_offline():
    files = sc.discover([SCENARIOS])
    names = {f.stem for f in files}
    capabilities = ["order", "refund-approved", "refund-denied", "policy", "escalation", "spanish", "screenshot"]
    capabilities += ["long-log", "reduced-log", "bad-input"]
    assert {f"capability-{c}" for c in capabilities} <= names
    assert len([n for n in names if n.startswith("example-")]) == 7
    for f in files:
        result = run_offline(sc.load(f))
        failed = [c for c in result.checks if c.status != "pass"]
        assert not failed, f"{f.name}: {failed}"
        assert len(result.checks) >= 4, f.name  # every scenario checks something real


def test_example_scenarios_are_the_ui_examples():
    from supportbot.ui.handlers import EXAMPLES

    examples = sorted(SCENARIOS.glob("example-*.toml"))
    assert len(examples) == len(EXAMPLES)
    for path, (_, text, files) in zip(examples, EXAMPLES, strict=True):
        turn = sc.load(path).turns[0]
        assert turn.text == text, path.name
        assert turn.attachments == [f"samples/{f}" for f in files], path.name


WRONG = """
name = "Deliberately wrong"
[[turns]]
text = "Where is my order #48291?"
[turns.expect]
ticket = { category = "refund" }
contains = ["banana"]
[[turns.expect.tools]]
name = "check_order_status"
arguments = { order_id = "48291" }
"""


def test_a_wrong_expectation_fails_the_cli_with_exit_1_and_a_junit_failure(tmp_path: Path):
    (tmp_path / "wrong.toml").write_text(WRONG)
    good = tmp_path / "good.toml"
    good.write_text((SCENARIOS / "capability-refund-denied.toml").read_text())
    junit = tmp_path / "out" / "scenarios.xml"
    proc = cli("run", str(tmp_path), "--junit", str(junit), cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL  Deliberately wrong" in proc.stdout and "PASS  Refund denied" in proc.stdout
    wrong = proc.stdout[proc.stdout.index("FAIL  Deliberately wrong") :]
    row = [line.split() for line in wrong.splitlines() if 'ticket category = "refund"' in line][0]
    assert row[-4:] == ['"refund"', "FAIL", "got", '"order_status"'], row
    assert "scenarios: 1 passed, 1 failed" in proc.stdout
    root = ET.parse(junit).getroot()
    assert root.get("failures") == "2"
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    failures = [c.get("name") for c in suites["Deliberately wrong"].iter("testcase") if c.find("failure") is not None]
    assert failures == ['step 1: ticket category = "refund"', "step 1: answer contains 'banana'"]
    assert suites["Refund denied: an order only 1 day late"].get("failures") == "0"
    # The right expectations in the same file passed: only the wrong ones fail.
    passed = [c.get("name") for c in suites["Deliberately wrong"].iter("testcase") if len(c) == 0]
    assert 'step 1: tool check_order_status(order_id="48291")' in passed


def test_the_cli_passes_and_exits_0_when_every_expectation_holds(tmp_path: Path):
    proc = cli("run", str(SCENARIOS / "capability-refund-denied.toml"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "on the offline demo engine" in proc.stdout and "FAIL" not in proc.stdout


@pytest.mark.parametrize(
    ("body", "where", "says"),
    [
        ('[[turns]]\ntext = "hi"\n[turns.expect]\ncolour = "red"\n', "turns[0].expect.colour", "Extra inputs"),
        (
            '[[turns]]\ntext = "hi"\n[[turns.expect.tools]]\nname = "refund"\n',
            "turns[0].expect.tools[0].name",
            "unknown tool 'refund'",
        ),
        (
            '[[turns]]\ntext = "hi"\nattachments = ["../../etc/passwd"]\n',
            "turns[0].attachments",
            "paths inside assets/",
        ),
        ('[[turns]]\ntext = "hi"\nattachments = ["samples/nope.png"]\n', "turns[0].attachments", "no such file"),
        ('[[turns]]\ntext = "hi"\ngenerate = ["log:lots"]\n', "turns[0].generate", "whole number of tokens"),
        ('[[turns]]\ntext = "hi"\ngenerate = ["video"]\n', "turns[0].generate", "unknown generator"),
        (
            '[[turns]]\ntext = "hi"\n[turns.expect]\nticket = { categry = "refund" }\n',
            "turns[0].expect.ticket",
            "categry",
        ),
        (
            '[[turns]]\ntext = "hi"\n[turns.expect]\ninput_error = "x"\ncontains = ["y"]\n',
            "turns[0].expect",
            "drop contains",
        ),
        ('[[turns]]\ntext = "hi"\n[turns.expect]\nmax_requests = "two"\n', "turns[0].expect.max_requests", "integer"),
        ("turns = []\n", "turns", "at least 1"),
        ('name = "x"\n', "turns", "Field required"),
        ('[[turns]\ntext = "hi"\n', "not valid TOML", "line 1"),
    ],
)
def test_validation_errors_name_the_file_and_the_field(tmp_path: Path, body: str, where: str, says: str):
    path = tmp_path / "broken.toml"
    path.write_text(body)
    with pytest.raises(ScenarioError) as err:
        sc.load(path)
    message = str(err.value)
    assert message.startswith(str(path)) and where in message and says in message, message


def test_the_cli_refuses_a_bad_file_with_exit_2_naming_it(tmp_path: Path):
    (tmp_path / "typo.toml").write_text('[[turns]]\ntext = "hi"\n[turns.expect]\ncontain = ["x"]\n')
    proc = cli("run", str(tmp_path / "typo.toml"), cwd=tmp_path)
    assert proc.returncode == 2
    assert "typo.toml: turns[0].expect.contain: Extra inputs are not permitted" in proc.stderr
    proc = cli("run", str(tmp_path / "typo.toml"), "--model", "gpt-17", cwd=tmp_path)
    assert proc.returncode == 2 and "typo.toml" in proc.stderr


def test_an_unknown_forced_model_is_refused_before_anything_runs(tmp_path: Path):
    proc = cli("run", str(SCENARIOS / "capability-policy.toml"), "--model", "gpt-17", cwd=tmp_path)
    assert proc.returncode == 2 and "--model: unknown model 'gpt-17'" in proc.stderr


def test_an_input_error_expectation_fails_when_the_turn_is_accepted():
    s = sc.load_text(
        '[[turns]]\ntext = "Where is my order #48291?"\n[turns.expect]\ninput_error = "not an image"\n', "t"
    )
    checks = run_offline(s).checks
    assert [(c.expectation, c.status) for c in checks] == [
        ("refused with 'not an image'", "fail"),
        ("conversation unchanged", "fail"),
    ]
    assert checks[0].detail.startswith("the turn ran: Order #48291")


def test_forcing_a_model_runs_every_turn_on_it_and_skips_route_checks():
    s = sc.load(SCENARIOS / "example-1-order.toml")
    checks = run_offline(s, model="qwen-3-32b").checks
    assert checks[0].expectation == "answered" and checks[0].detail.startswith("qwen-3-32b")
    route = [c for c in checks if c.expectation.startswith("route")]
    assert route and all(c.status == "skip" and "forced" in c.detail for c in route)
    assert all(c.status == "pass" for c in checks if c not in route)


def test_subset_matching():
    assert matches({"a": 1}, {"a": 1, "b": 2}) and not matches({"a": 1, "c": 3}, {"a": 1})
    assert matches(["48291"], ["48291"]) and not matches(["48291"], ["48291", "48258"])
    assert matches({"x": [{"id": "K"}]}, {"x": [{"id": "K", "t": "y"}]})
    assert matches(181.49, 181.49) and matches(0.0, 0) and not matches(True, 1) and not matches(None, "x")


def play(runner: TurnRunner, session: Session, text: str, files: list[Path] | None = None, model: str | None = None):
    return asyncio.run(play_turn(runner, session, text, files or [], model))


def test_a_session_saved_as_a_scenario_replays_and_passes(tmp_path: Path):
    settings = Settings.load({"data_dir": tmp_path, "engine": "offline"}, environ={}, dotenv_path=None)
    runner = TurnRunner(Services.create(settings))
    session = Session()
    play(runner, session, "Where is my order #48291? It was supposed to arrive yesterday.")
    play(runner, session, "What is this error?", [ASSETS_DIR / "samples" / "checkout-error.png"])
    outside = tmp_path / "mine.log"
    outside.write_text("2026-11-27T10:00:00Z ERROR boom\n" * 50)
    play(runner, session, 'Here is my "log"\nplease look', [outside], model="kimi-k2.6")
    play(runner, session, "This is ridiculous!!! I want to talk to a human NOW.")
    text = scenario_from_session(session, name="Saved")

    data = tomllib.loads(text)  # plain TOML first: what a tester opens and trims
    turns = data["turns"]
    assert [t["text"] for t in turns][2] == 'Here is my "log"\nplease look'
    assert turns[0]["expect"]["tools"][0] == {"name": "check_order_status", "arguments": {"order_id": "48291"}}
    assert turns[0]["expect"]["route"] == {"category": "triage"}
    assert turns[1]["attachments"] == ["samples/checkout-error.png"]
    assert turns[1]["expect"]["route"] == {"category": "vision"}
    # What the vision model called (the default Pro-plan vision model takes tools) is what was saved.
    called = [c["name"] for c in session.tool_calls if c["turn"] == 2]
    assert [t["name"] for t in turns[1]["expect"].get("tools", [])] == called
    assert "attachments" not in turns[2] and "# attached 'mine.log'" in text and turns[2]["model"] == "kimi-k2.6"
    assert turns[3]["expect"]["ticket"] == {
        "category": "order_status",
        "status": "escalated",
        "priority": session.ticket["priority"],
        "language": "en",
        "sentiment": "negative",
        "order_ids": ["48291"],
        "customer": {"id": "C1001", "email": "maya.thompson@example.com"},  # the order's owner
    }
    escalation = [t for t in turns[3]["expect"]["tools"] if t["name"] == "escalate_to_human"][0]
    assert escalation["arguments"] == session.tool_calls[-2]["arguments"]
    # update_ticket by name only: its arguments are the model's wording, checked through the ticket.
    assert {"name": "update_ticket"} in turns[3]["expect"]["tools"]

    # The tester drops the turn whose log is not under assets/ (or copies it there); the rest replays.
    parts = text.split("[[turns]]")  # header, then one part per turn
    kept = "[[turns]]".join(p for i, p in enumerate(parts) if i != 3)
    result = run_offline(sc.load_text(kept, "saved.toml"))
    assert result.passed and len(result.checks) > 10, result.checks


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        'quo"te',
        "back\\slash",
        "new\nline\ttab",
        "del\x7fchar",
        "ñ ü 漢字 🙂",
        "",
        0,
        -3,
        2.5,
        True,
        False,
        [1, "a"],
        {"a b": 1, "c": {"d": [True]}},
    ],
)
def test_toml_values_round_trip(value):
    assert tomllib.loads(f"v = {_value(value)}")["v"] == value
