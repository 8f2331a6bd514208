"""The 🧪 QA tab: save the conversation as a scenario, run scenarios, simulate the engine's failures.

``build_qa_tab`` lays the tab out inside the panels' ``gr.Tabs`` and wires its events; ``QaHandlers``
holds the handlers (plain methods, given the app's ``Playground`` for visitors and budgets).

* Save as scenario (``/save_scenario``): the conversation as TOML (``qa.export``), shown and offered as
  a file in a fresh export folder (never the data directory).
* Run scenarios (``/run_scenarios``): shipped files by name, or one uploaded file, hostile until
  validated (``qa.scenario.load_untrusted``). Each runs in fresh Services with its own temporary
  database (so its own demo sandbox; the visitor's conversation is never touched), in a thread with its
  own event loop, one run at a time in the whole app; every model request draws on the visitor's budget.
* Simulate (``/simulate``, offline engine only): a failure kind and a delay kept in this visitor's
  ``gr.State`` and sent with each of their turns as request headers (``client.Simulation``).
"""

from __future__ import annotations

import asyncio
import html
import os
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.utils import get_upload_folder, is_in_or_equal

from supportbot.client import Simulation
from supportbot.config import ASSETS_DIR, on_space
from supportbot.errors import ScenarioError, SupportbotError
from supportbot.limits import VisitorBudget
from supportbot.qa.export import scenario_from_session
from supportbot.qa.runner import ScenarioResult, run_scenario
from supportbot.qa.scenario import Scenario, load, load_untrusted
from supportbot.session import Session

SCENARIOS_DIR = ASSETS_DIR / "scenarios"
HEADERS = ["scenario", "step", "expectation", "result", "detail"]
# Bounds on what one visitor may upload and run: a scenario is small text; a huge one is refused
# before it is read. Generated logs are written to disk and read by the turn: capped in all.
MAX_UPLOAD_BYTES = 64 * 1024
MAX_UPLOAD_TURNS = 12
MAX_UPLOAD_LOG_TOKENS = 3_000_000
# Scenarios one click may run on a Space (with a live key each costs the owner real requests).
SPACE_MAX_SCENARIOS = 3
QA_RUNS = "qa-scenarios"  # the concurrency group of the QA events (a run that finds one going is refused)
RUN_BUSY = "Another scenario run is going on in this app (one at a time): try again in a moment."


def shipped_scenarios() -> list[str]:
    """Names (file stems) of the scenarios in assets/scenarios."""
    return sorted(p.stem for p in SCENARIOS_DIR.glob("*.toml"))


@dataclass
class QaTab:
    """What app.py needs from the tab: the visitor's simulation, an input of every turn."""

    simulate: gr.State


class QaHandlers:
    """The QA tab's handlers; ``pg`` is the app's Playground (services, visitors, budgets)."""

    def __init__(self, pg: Any, max_scenarios: int | None = None) -> None:
        self.pg = pg
        self.max_scenarios = max_scenarios  # None: no bound (off a Space)
        # One scenario run at a time in the app, in a thread of its own (not the loop's shared pool, which
        # every visitor's saves and reads go through); the lock is released by that thread when it ends.
        self._runs = ThreadPoolExecutor(max_workers=1, thread_name_prefix="supportbot-qa")
        self._running = threading.Lock()

    # --- save as scenario -----------------------------------------------------------------------

    async def save_scenario(self, session: Session | None) -> tuple:
        """/save_scenario: (the TOML file, its text, a message); an empty conversation gets only the message."""
        session = session if isinstance(session, Session) else Session()
        if not any(m.get("role") == "user" for m in session.messages):
            return None, "", "Nothing to save yet: send a message first, then save the conversation as a scenario."
        if session.busy:
            return None, "", "The agent is still answering: save the scenario when the turn has ended."
        text = await asyncio.to_thread(scenario_from_session, session)
        path = await asyncio.to_thread(self._write, session.conversation_id, text)
        turns = sum(1 for m in session.messages if m.get("role") == "user")
        note = (
            f"Saved {turns} turn{'s' if turns != 1 else ''} as a scenario: the expectations are what happened. "
            "Trim what should not be checked, put the file in assets/scenarios/ and run "
            "`python -m supportbot.qa run`, or upload it below."
        )
        return str(path), text, note

    def _write(self, conversation_id: str, text: str) -> Path:
        path = self.pg.services.exports.new_dir() / f"scenario-{conversation_id[:8]}.toml"
        path.write_text(text, encoding="utf-8")
        return path

    # --- run scenarios --------------------------------------------------------------------------

    async def run_scenarios(
        self,
        names: Any,
        upload: Any = None,
        request: gr.Request = None,
        profile: gr.OAuthProfile | None = None,
    ) -> tuple:
        """/run_scenarios: shipped scenario names (and an uploaded file) in; (rows, message) out.

        Rows are [scenario, step, expectation, result, detail]; a refusal (bad file, too many, no budget)
        is the message with no rows, never an error."""
        try:
            scenarios = await asyncio.to_thread(self._chosen, names, upload)
            budget = await asyncio.to_thread(self.pg.budget, request, profile)
            await asyncio.to_thread(_check_allowance, budget, scenarios)
        except SupportbotError as exc:
            return _table([]), f"⚠️ {html.escape(str(exc), quote=False)}"
        if not self._running.acquire(blocking=False):  # answered at once: nobody waits in the shared queue
            return _table([]), "⚠️ " + RUN_BUSY
        stop = threading.Event()
        job = self._runs.submit(self._run_all, scenarios, budget, stop)  # the thread releases the run
        try:
            results = await asyncio.wrap_future(job)
        except asyncio.CancelledError:
            stop.set()  # the page went away or pressed stop: no further scenario starts
            raise
        rows = [[r.name, c.step, c.expectation, c.status, c.detail] for r in results for c in r.checks]
        passed = sum(r.passed for r in results)
        summary = f"{len(results)} scenario{'s' if len(results) != 1 else ''}: {passed} passed"
        summary += f", {len(results) - passed} failed" if passed < len(results) else ""
        return _table(rows), summary

    def _chosen(self, names: Any, upload: Any) -> list[Scenario]:
        """The scenarios asked for, validated; SupportbotError naming the problem."""
        if isinstance(names, str):
            names = [names] if names else []
        names = [n for n in names or () if isinstance(n, str)] if isinstance(names, list | tuple) else []
        known = shipped_scenarios()
        unknown = [n for n in names if n not in known]
        if unknown:
            raise SupportbotError(f"No shipped scenario named {unknown[0][:60]!r}; pick from the list.")
        count = len(dict.fromkeys(names)) + (1 if upload else 0)
        if count == 0:
            raise SupportbotError("Pick a shipped scenario or upload a scenario file (.toml) first.")
        if self.max_scenarios is not None and count > self.max_scenarios:
            raise SupportbotError(
                f"This app runs at most {self.max_scenarios} scenarios per click (each makes real model requests); "
                f"you picked {count}."
            )
        chosen = [load(SCENARIOS_DIR / f"{n}.toml") for n in dict.fromkeys(names)]
        if upload:
            chosen.append(self._uploaded(upload))
        return chosen

    def _uploaded(self, upload: Any) -> Scenario:
        """An uploaded scenario file: in Gradio's upload folder, small, valid; SupportbotError otherwise."""
        raw = upload.get("path") if isinstance(upload, dict) else upload
        path = Path(str(raw or ""))
        name = (upload.get("orig_name") if isinstance(upload, dict) else None) or path.name
        name = str(name)[:80]
        try:  # a forged path may be anything: a NUL byte, 5,000 characters, a loop of links
            uploaded = bool(raw) and is_in_or_equal(path, get_upload_folder()) and path.is_file()
            size = path.stat().st_size if uploaded else 0
        except (OSError, ValueError):
            uploaded = False
        if not uploaded:
            raise SupportbotError("That is not a file uploaded to this page.")
        if size > MAX_UPLOAD_BYTES:
            raise SupportbotError(
                f"{name}: the file is {size:,} bytes; a scenario may have at most {MAX_UPLOAD_BYTES:,}."
            )
        blocked = [Path(self.pg.services.settings.data_dir)]
        try:
            return load_untrusted(
                path.read_bytes(),
                name,
                max_bytes=MAX_UPLOAD_BYTES,
                max_turns=MAX_UPLOAD_TURNS,
                max_log_tokens=MAX_UPLOAD_LOG_TOKENS,
                blocked=blocked,
            )
        except ScenarioError as exc:
            raise SupportbotError(f"Not a valid scenario: {exc}") from None
        except (OSError, ValueError, RecursionError) as exc:  # what a crafted file may still provoke
            raise SupportbotError(f"{name}: not a valid scenario ({type(exc).__name__}).") from None

    def _run_all(self, scenarios: list[Scenario], budget: Any, stop: threading.Event) -> list[ScenarioResult]:
        """In the QA thread, each scenario on an event loop of its own (never the one that serves pages);
        holds the app's one run until it ends, whether or not anyone still waits for it."""
        try:
            settings, results = self.pg.services.settings, []
            for scenario in scenarios:
                if stop.is_set():
                    break
                results.append(asyncio.run(run_scenario(scenario, settings=settings, budget=budget)))
            return results
        finally:
            self._running.release()

    # --- simulate ------------------------------------------------------------------------------

    def simulate(self, failure: Any, latency: Any) -> tuple:
        """/simulate: this visitor's simulated failure and delay; (the State's value, a message).

        Refused (an error naming why) unless the engine is the offline one; 'none' and 0 switch it off."""
        failure = None if failure in (None, "", "none") else str(failure)
        try:
            chosen = self.pg.services.clients.simulation(failure, latency)
        except SupportbotError as exc:
            raise gr.Error(html.escape(str(exc), quote=False), print_exception=False) from None
        if not chosen.active:
            return None, "Nothing simulated: your turns go to the offline engine as usual."
        return chosen, simulation_note(chosen)


def simulation_note(sim: Simulation) -> str:
    """What the tab says while a simulation is on."""
    what = [f"every request fails with **{sim.failure}**"] if sim.failure else []
    what += [f"every request waits **{sim.latency_s:g} s** more"] if sim.latency_s > 0 else []
    return (
        f"🧪 On for your next turns in this tab's conversation: {' and '.join(what)}. Other visitors are not "
        "affected. Set the failure to none and the latency to 0 to stop."
    )


def _check_allowance(budget: Any, scenarios: list[Scenario]) -> None:
    """Refuse a run the visitor's budget cannot cover: count a request for every turn (one refused as bad
    input makes none, but it is the file that says so, and the file is the visitor's)."""
    if not isinstance(budget, VisitorBudget):
        return
    needed = sum(len(s.turns) for s in scenarios)
    allowance = budget.allowance()
    for whose, used, allowed in allowance.bounds:
        left = max(0, allowed - used)
        if left < needed:
            subject = "you have" if whose == "your" else "this app has (all visitors)"
            raise SupportbotError(
                f"These scenarios need at least {needed} model requests; {subject} {left} of {allowed} left "
                f"today. Pick fewer scenarios, or come back after {allowance.resets_at:%H:%M} UTC."
            )


def _table(rows: list[list[Any]]) -> dict[str, Any]:
    return {"headers": HEADERS, "data": rows}


def build_qa_tab(pg: Any, state: gr.State, *, env: Mapping[str, str] | None = None) -> QaTab:
    """The 🧪 QA tab, inside the panels' Tabs; wires its own events (``/save_scenario``, ``/run_scenarios``,
    ``/simulate``). Simulate shows only with the offline engine (and is refused for the others anyway);
    on a Space one click runs at most SPACE_MAX_SCENARIOS scenarios."""
    max_scenarios = SPACE_MAX_SCENARIOS if on_space(os.environ if env is None else env) else None
    offline = pg.services.clients.engine is not None
    qa = QaHandlers(pg, max_scenarios)
    with gr.Tab("🧪 QA", elem_id="sb-qa"):
        gr.Markdown(
            "**Run scenarios** — each in its own fresh demo shop, never this conversation"
            + (f"; at most {max_scenarios} per run here, counted in your daily requests." if max_scenarios else ".")
        )
        picks = gr.CheckboxGroup(shipped_scenarios(), label="Shipped scenarios", elem_id="sb-qa-picks")
        upload = gr.File(label="…or upload one scenario (.toml)", file_types=[".toml"], type="filepath", height=110)
        run_btn = gr.Button("▶️ Run scenarios", variant="primary", size="sm", elem_id="sb-qa-run")
        run_msg = gr.Markdown(elem_id="sb-qa-summary")
        results = gr.Dataframe(value=_table([]), headers=HEADERS, interactive=False, wrap=True, elem_id="sb-qa-results")
        gr.Markdown("**Save as scenario** — this conversation as a regression test (TOML) to trim and keep.")
        save_btn = gr.Button("💾 Save as scenario", size="sm", elem_id="sb-qa-save")
        save_msg = gr.Markdown()
        with gr.Accordion("The saved scenario", open=True):
            save_file = gr.File(label="Scenario file", interactive=False, height=60)
            save_code = gr.Code(label="Scenario (TOML)", language=None, interactive=False, max_lines=20)
        with gr.Group(visible=offline):
            gr.Markdown("**Simulate** (offline engine) — make your own turns fail, to see each error path.")
            kinds, most = pg.services.clients.simulation_choices()
            kind = gr.Dropdown(["none", *kinds], value="none", label="Simulated failure", elem_id="sb-qa-fail")
            latency = gr.Slider(0, most or 10.0, value=0, step=0.5, label="Added latency per request (s)")
            sim_msg = gr.Markdown()
        simulate = gr.State(None)
        # /simulate takes plain text and a number, so our own check answers a kind or delay it refuses.
        sim_api, api_kind, api_latency = gr.Button(visible=False), gr.Textbox(visible=False), gr.Number(visible=False)
    save_btn.click(qa.save_scenario, [state], [save_file, save_code, save_msg], api_name="save_scenario")
    run_btn.click(
        qa.run_scenarios,
        [picks, upload],
        [results, run_msg],
        api_name="run_scenarios",
        concurrency_limit=4,  # a call that finds the run taken is answered at once, so a few slots suffice
        concurrency_id=QA_RUNS,
    )
    # Wired before the controls' own events, so this one gets the api_name.
    sim_api.click(qa.simulate, [api_kind, api_latency], [simulate, sim_msg], api_name="simulate")
    for trigger in (kind.input, latency.release):
        trigger(qa.simulate, [kind, latency], [simulate, sim_msg], api_visibility="private")
    return QaTab(simulate)
