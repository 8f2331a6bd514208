"""The plan of the house, checked: what each package may import, and how big a module may grow.

See ARCHITECTURE.md. Imports are read from the source (every ``import`` anywhere in a module,
including inside functions), and the lazy door to the engine is checked by importing in a
fresh interpreter.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "supportbot"
MAX_LINES = 400


def modules(under: Path = PACKAGE) -> list[Path]:
    return sorted(under.rglob("*.py"))


def imports(path: Path) -> list[tuple[str, bool]]:
    """Every module ``path`` imports, with whether the import runs when the module is loaded."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    deferred = {
        id(node)
        for fn in ast.walk(tree)
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
        for node in ast.walk(fn)
    }
    # Imports under "if TYPE_CHECKING:" only name types for annotations: not a dependency.
    typing_only = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING"
        for node in ast.walk(block)
    }
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) not in deferred) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            # "from supportbot import memory" imports supportbot.memory
            names = [f"{base}.{a.name}" if base in ("supportbot", "supportbot.engine") else base for a in node.names]
            found += [(name, id(node) not in deferred) for name in names]
    return found


def rel(path: Path) -> str:
    return path.relative_to(PACKAGE.parent).as_posix()


def test_the_scan_sees_imports_anywhere_in_a_module():
    found = dict(imports(PACKAGE / "client.py"))
    assert found["httpx"] is True and found["supportbot.engine.OfflineEngine"] is False  # inside a method
    assert found["openai"] is False  # only inside the functions that make or read SDK objects


# The layers of ARCHITECTURE.md: a module imports only from layers above its own.
LAYERS = {
    "errors": 0,
    "streaming": 0,
    "vocabulary": 0,
    "events": 0,
    "testing": 0,
    "config": 1,
    "session": 1,
    "routing": 2,
    "pricing": 2,
    "storage": 2,
    "client": 3,
    "sse": 3,
    "cassette": 2,
    "attachments": 3,
    "tools": 3,
    "limits": 3,
    "memory": 4,
    "approval": 4,
    "housekeeping": 4,
    "agent": 4,
    "ticket": 4,
    "services": 5,
    "turn_state": 5,
    "conversation": 6,
    "workers": 7,
    "ui": 8,
    "qa": 7,
}


def unit(path: Path) -> str:
    """The package or top-level module a file belongs to: ``routing``, ``agent``..."""
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else parts[0].removesuffix(".py")


# Modules that sit lower than their package: the ticket's schema and rules import only the
# vocabulary, so storage can validate an imported ticket against the one definition of it.
MODULE_LAYERS = {"ticket.record": 1, "ticket.rules": 1}


def layer_of(dotted: str) -> int:
    """The layer of ``routing`` or ``ticket.record`` (a module's own entry wins over its package's)."""
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in MODULE_LAYERS:
            return MODULE_LAYERS[".".join(parts[:n])]
    return LAYERS.get(parts[0], 99)


def test_each_layer_imports_only_the_layers_above_it():
    units = {unit(path) for path in modules()} - {"__init__", "engine"}
    assert units == set(LAYERS)  # a new package or module gets its place in ARCHITECTURE.md first
    wrong = []
    for path in modules():
        if unit(path) not in LAYERS:
            continue
        own = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        for name, _ in imports(path):
            if not name.startswith("supportbot."):
                continue
            dep = name.removeprefix("supportbot.")
            if dep.split(".")[0] == unit(path) or (dep.startswith("engine") and unit(path) == "client"):
                continue  # within a package; the lazy door to the engine is checked below
            if layer_of(dep) >= layer_of(own):
                wrong.append(f"{rel(path)} (layer {layer_of(own)}) imports {name} (layer {layer_of(dep)})")
    assert wrong == []


def test_importing_the_agent_and_the_conversation_loads_neither_the_engine_nor_a_server():
    code = (
        "import json, sys\n"
        "import supportbot.agent, supportbot.conversation\n"
        "first = sorted(m for m in sys.modules if m.split('.')[0] in ('uvicorn', 'gradio') or "
        "m.startswith('supportbot.engine'))\n"
        # The door opens when the offline engine is chosen, and only as far as it must: no server.
        "from supportbot.client import ClientFactory\n"
        "from supportbot.config import Settings\n"
        "ClientFactory(Settings.load({'engine': 'offline'}, environ={}, dotenv_path=None))\n"
        "then = sorted(m for m in sys.modules if m.split('.')[0] == 'uvicorn' or m.startswith('supportbot.engine'))\n"
        "print(json.dumps([first, then]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE.parent, timeout=120
    )
    first, then = json.loads(out.stdout.strip().splitlines()[-1])
    assert first == []
    assert "supportbot.engine.core" in then and not any(m.startswith("uvicorn") for m in then)


def test_the_engine_imports_nothing_of_the_product_but_the_vocabulary():
    leaks = [
        f"{rel(path)} imports {name}"
        for path in modules(PACKAGE / "engine")
        for name, _ in imports(path)
        if name.split(".")[0] == "supportbot"
        and name != "supportbot.vocabulary"
        and not name.startswith("supportbot.engine")
    ]
    assert leaks == []


def test_only_the_client_opens_the_door_to_the_engine_and_only_when_it_is_chosen():
    doors = [
        (rel(path), top_level)
        for path in modules()
        if "engine" not in path.relative_to(PACKAGE).parts
        for name, top_level in imports(path)
        if name.startswith("supportbot.engine")
    ]
    assert doors and {where for where, _ in doors} == {"supportbot/client.py"}
    assert not any(top_level for _, top_level in doors)  # lazily, inside the factory


def test_nothing_below_the_ui_imports_gradio():
    offenders = [
        f"{rel(path)} imports {name}"
        for path in modules()
        if path.relative_to(PACKAGE).parts[0] != "ui"
        for name, _ in imports(path)
        if name.split(".")[0] in ("gradio", "gradio_client")
    ]
    assert offenders == []


def test_the_ui_never_imports_the_sdk():
    offenders = [
        f"{rel(path)} imports {name}"
        for path in modules(PACKAGE / "ui")
        for name, _ in imports(path)
        if name.split(".")[0] in ("openai", "httpx")
    ]
    assert offenders == []


def test_the_scripted_model_is_for_tests_only_and_stands_alone():
    users = [rel(path) for path in modules() for name, _ in imports(path) if name == "supportbot.testing"]
    assert users == []  # no product module relies on the fake
    own = [name for name, _ in imports(PACKAGE / "testing.py") if name.split(".")[0] == "supportbot"]
    assert own == []  # it fakes the service, not the product


@pytest.mark.parametrize("path", modules(), ids=rel)
def test_no_module_is_over_400_lines(path: Path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{rel(path)} has {lines} lines: split it by responsibility"


def test_building_the_app_does_not_import_the_sdk():
    """Cold start: the openai SDK (~0.5 s of imports) loads after the page is up, not before."""
    code = (
        "import sys\n"
        "import supportbot.ui.app, supportbot.services, supportbot.conversation\n"
        "print('openai' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE.parent)
    assert out.stdout.strip() == "False"
