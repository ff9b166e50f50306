"""The package reads as layers (docs/design.md): each module imports only its
own layer and the layers below, and nothing outside ``contrib`` imports it.

Read from the source with :mod:`ast`, so a new upward import fails here
before it ties the pure core to a broker or a scheduler.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "ccs_beat"

#: layer of each module (without the ``ccs_beat.`` prefix), bottom first
LAYERS: dict[str, int] = {
    # 0 - pure values and rules: no broker, no store, no scheduler
    **dict.fromkeys(["errors", "logs", "events", "identity", "guard", "policy", "snapshot",
                     "replies", "ledger", "decide", "judging", "entries", "policies"], 0),
    # 1 - I/O: the reader, the ledger stores, the worker's memory, reporting
    **dict.fromkeys(["cluster", "ledger_store", "stores", "stores.file", "skipping",
                     "covering", "control", "signals", "reporting"], 1),
    # 2 - the coordinator and what reads beat's state from outside
    **dict.fromkeys(["coordinator", "checks", "status"], 2),
    # 3 - the adapters: schedulers, the task, the CLI, the package's public names
    **dict.fromkeys(["scheduler", "task", "cli", "", "contrib"], 3),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """The ccs_beat modules ``path`` imports, without the prefix."""
    name = module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[:len(package) - (node.level - 1)] if node.level > 1 else package
            base = [part for part in base if part]   # the package itself is ""
            if node.module:
                found.add(".".join([*base, node.module]))
            else:
                found.update(".".join([*base, alias.name]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ccs_beat"):
            found.add(node.module.removeprefix("ccs_beat").lstrip("."))
    return {f for f in found if f}


def layer(name: str) -> int | None:
    if name.startswith("contrib"):
        return 3
    if name.startswith("simulation"):
        return 1   # drives the pure rule and the reply parsing, never a broker
    return LAYERS.get(name)


CORE = [p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts]


@pytest.mark.parametrize("path", CORE, ids=lambda p: module_name(p) or "ccs_beat")
def test_a_module_imports_only_its_own_layer_and_the_layers_below(path: Path) -> None:
    name = module_name(path)
    own = layer(name)
    assert own is not None, f"{name}: place the new module in a layer in LAYERS"
    upward = {dep: layer(dep) for dep in imports_of(path)
              if (layer(dep) or 0) > own}
    assert not upward, f"{name} (layer {own}) imports from a higher layer: {upward}"


def test_nothing_outside_contrib_imports_contrib() -> None:
    offenders = {module_name(p): sorted(d for d in imports_of(p) if d.startswith("contrib"))
                 for p in CORE if not module_name(p).startswith("contrib")}
    assert not {name: deps for name, deps in offenders.items() if deps}


def test_the_layer_check_reads_relative_imports_as_the_interpreter_resolves_them() -> None:
    fake = PACKAGE / "decide.py"
    assert "snapshot" in imports_of(fake) and "coordinator" not in imports_of(fake)
    assert "contrib.django.store" in imports_of(PACKAGE / "contrib" / "django" / "schedulers.py")
    assert "scheduler" in imports_of(PACKAGE / "__init__.py")
