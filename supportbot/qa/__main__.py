"""``python -m supportbot.qa run [PATH...] [--model ID] [--junit FILE]``: run scenario files.

Prints a table per scenario and step; exits 1 when any expectation fails, 2 when a scenario
file or a setting is invalid (the message names the file and field, or the variable).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from supportbot.config import ASSETS_DIR, Settings
from supportbot.errors import ConfigError, SupportbotError
from supportbot.qa import report, scenario
from supportbot.qa.runner import ScenarioResult, run_scenario
from supportbot.routing.catalog import load_catalog

DEFAULT_PATH = ASSETS_DIR / "scenarios"


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run, report; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m supportbot.qa", description="QA scenarios for supportbot.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run scenario files and check their expectations")
    run.add_argument("paths", nargs="*", help=f"scenario files or folders of *.toml (default: {DEFAULT_PATH})")
    run.add_argument("--model", help="force this catalog model id for every turn (route checks are skipped)")
    run.add_argument("--junit", type=Path, help="also write JUnit XML here, for CI")
    args = parser.parse_args(argv)
    try:
        scenarios = [scenario.load(p) for p in scenario.discover(args.paths or [DEFAULT_PATH])]
        settings = Settings.load()
        settings.check()
        if args.model and args.model not in load_catalog(settings.catalog_path):
            raise ConfigError("--model", f"unknown model {args.model!r}; see {settings.catalog_path}")
    except SupportbotError as exc:
        print(f"supportbot.qa: {exc}", file=sys.stderr)
        return 2
    if not scenarios:
        print(f"supportbot.qa: no scenario files in {' '.join(args.paths)}", file=sys.stderr)
        return 2
    forced = f", model {args.model} for every turn" if args.model else ""
    print(f"Running {len(scenarios)} scenario(s) on {_engine(settings)}{forced}")
    print()
    results = asyncio.run(_run_all(scenarios, args.model))
    print(report.summary(results))
    if args.junit:
        print(f"JUnit XML: {report.write_junit(results, args.junit)}")
    return 0 if all(r.passed for r in results) else 1


async def _run_all(scenarios: list[scenario.Scenario], model: str | None) -> list[ScenarioResult]:
    results = []
    for s in scenarios:
        result = await run_scenario(s, model=model)
        print(report.table(result), end="\n\n", flush=True)
        results.append(result)
    return results


def _engine(settings: Settings) -> str:
    if settings.engine == "replay":
        return f"a replay of {settings.cassette_path}"
    return f"the live service at {settings.base_url}" if settings.live else "the offline demo engine"


if __name__ == "__main__":
    sys.exit(main())
