"""Worst time of every text rule on 1 MB hostile inputs: one command, one table.

    python bench/linear_time.py [--timeout 20] [--only NAME]

Each (function, input) pair runs in a forked child, best of 3, and is killed after
``--timeout`` seconds (a super-linear regex on 1 MB can run for hours). The last column is
the worst input per function. The functions and inputs are those of ``tests/test_linear_time.py``,
which asserts each stays under 100 ms.
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing as mp
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _rules() -> tuple[dict[str, Callable[[str], object]], dict[str, str], dict[str, Callable[[str], object]], dict]:
    """The functions and inputs of ``tests/test_linear_time.py`` (one list, used by both)."""
    spec = importlib.util.spec_from_file_location("test_linear_time", ROOT / "tests" / "test_linear_time.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MESSAGE_RULES, module.HOSTILE, {**module.LINE_RULES, **module.LOG_RULES}, module.ONE_LINE


def cases() -> dict[str, tuple[Callable[[str], object], dict[str, str]]]:
    """Function name -> (function, the inputs it is timed on)."""
    messages, hostile, logs, one_line = _rules()
    return {**{n: (f, hostile) for n, f in messages.items()}, **{n: (f, one_line) for n, f in logs.items()}}


_TABLE: dict[str, tuple[Callable[[str], object], dict[str, str]]] = {}  # filled once, inherited by each fork


def _child(name: str, label: str, conn) -> None:
    fn, inputs = _TABLE[name]
    text = inputs[label]
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        fn(text)
        best = min(best, time.perf_counter() - start)
        if best > 1.0:
            break
    conn.send(best)


def measure(name: str, label: str, timeout: float) -> float | None:
    """Best-of-3 seconds, or None when the child was killed at ``timeout``."""
    parent, child = mp.Pipe(duplex=False)
    proc = mp.get_context("fork").Process(target=_child, args=(name, label, child))
    proc.start()
    ready = parent.poll(timeout)
    result = parent.recv() if ready else None
    if proc.is_alive():
        proc.kill()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    table = _TABLE
    table.update(cases())
    names = [n for n in table if args.only in n]
    print(f"{'function':40} {'worst':>10}  worst input (1 MB each, log rules also a 5 MB line; best of 3)")
    for name in names:
        worst, worst_input = 0.0, ""
        for label in table[name][1]:
            t = measure(name, label, args.timeout)
            seconds = float("inf") if t is None else t
            if seconds > worst:
                worst, worst_input = seconds, label
        shown = f">{args.timeout:g} s" if worst == float("inf") else f"{worst * 1000:,.1f} ms"
        print(f"{name:40} {shown:>10}  {worst_input}", flush=True)


if __name__ == "__main__":
    main()
