"""Scenario results for people (a table per scenario and step) and for CI (JUnit XML)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from supportbot.qa.runner import Check, ScenarioResult

_DETAIL_WIDTH = 100


def table(result: ScenarioResult) -> str:
    """One scenario: a heading with the verdict, then step | expectation | result | detail."""
    turns = max((c.step for c in result.checks), default=0)
    head = (
        f"{'PASS' if result.passed else 'FAIL'}  {result.name}  "
        f"({result.source}, {turns} step{'s' if turns != 1 else ''}, {result.seconds:.1f} s)"
    )
    rows = [("step", "expectation", "result", "detail")]
    # FAIL in capitals: the eye finds it in a long table.
    rows += [(str(c.step), c.expectation, _verdict(c), _cut(c.detail)) for c in result.checks]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [head]
    for r in rows:
        lines.append("  " + "  ".join(cell.ljust(w) for cell, w in zip(r[:3], widths, strict=True)) + "  " + r[3])
    return "\n".join(line.rstrip() for line in lines)


def summary(results: list[ScenarioResult]) -> str:
    """The closing line: scenarios passed and failed, checks failed and skipped."""
    failed = sum(not r.passed for r in results)
    checks = [c for r in results for c in r.checks]
    bad = sum(c.status == "fail" for c in checks)
    skipped = sum(c.status == "skip" for c in checks)
    return (
        f"scenarios: {len(results) - failed} passed, {failed} failed "
        f"({len(checks)} checks, {bad} failed, {skipped} skipped)"
    )


def junit(results: list[ScenarioResult]) -> ET.ElementTree:
    """JUnit XML: a testsuite per scenario, a testcase per expectation."""
    root = ET.Element("testsuites", name="supportbot.qa")
    totals = {"tests": 0, "failures": 0, "skipped": 0}
    for r in results:
        counts = {
            "tests": len(r.checks),
            "failures": sum(c.status == "fail" for c in r.checks),
            "skipped": sum(c.status == "skip" for c in r.checks),
        }
        suite = ET.SubElement(
            root,
            "testsuite",
            name=r.name,
            file=r.source,
            time=f"{r.seconds:.3f}",
            errors="0",
            **{k: str(v) for k, v in counts.items()},
        )
        for c in r.checks:
            suite.append(_case(r, c))
        for k in totals:
            totals[k] += counts[k]
    root.attrib.update({k: str(v) for k, v in totals.items()}, errors="0")
    return ET.ElementTree(root)


def write_junit(results: list[ScenarioResult], path: str | Path) -> Path:
    """Write the JUnit XML file (folders made as needed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tree = junit(results)
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)
    return path


def _case(result: ScenarioResult, check: Check) -> ET.Element:
    case = ET.Element("testcase", classname=f"scenarios.{Path(result.source).stem}", time="0")
    case.set("name", f"step {check.step}: {check.expectation}")
    if check.status == "fail":
        ET.SubElement(case, "failure", message=_cut(check.detail) or "failed").text = check.detail
    elif check.status == "skip":
        ET.SubElement(case, "skipped", message=check.detail)
    return case


def _verdict(check: Check) -> str:
    return "FAIL" if check.status == "fail" else check.status


def _cut(text: str) -> str:
    return text if len(text) <= _DETAIL_WIDTH else text[: _DETAIL_WIDTH - 1] + "…"
