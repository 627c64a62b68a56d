"""Imports inside `provisioner` point one way: from the command line down to the core.

The layers, top to bottom (docstring of `provisioner/__init__.py` says why):

    cli → service → console → scim | announcements | review | gdpr → sync → rooms → accounts → homeserver
        → directory | policy → migrations → store → settings → each package's config.py
        → core

A module may import its own package and any lower layer; never a higher layer, and never a
peer across `|`. Lazy imports inside functions count too: they close the same circle.
Checked on the source with `ast`, so the test needs nothing installed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PACKAGE = Path(__file__).resolve().parents[2] / "provisioner"

#: Top to bottom; each entry a set of peers that must not import each other.
LAYERS: list[set[str]] = [
    {"cli"},
    {"service"},
    {"console"},  # the web console: served by `hauspost serve`, calls what the CLI calls
    {"scim", "announcements", "review", "gdpr"},
    {"sync"},
    {"rooms"},
    {"accounts"},
    {"homeserver"},
    {"directory", "policy"},
    {"migrations"},  # Alembic scripts: read the store's models; the store runs them by path
    {"store"},
    {"settings"},
    {"config"},  # directory/config.py, service/config.py, … : one hauspost.yaml section each
    {"core"},    # the top-level modules: errors, employee, actor, validation, …
]
RANK = {unit: rank for rank, peers in enumerate(LAYERS) for unit in peers}


def unit_of(module: str, package: Path = PACKAGE) -> str:
    """The layer unit of a dotted module name inside `provisioner`."""
    parts = module.split(".")[1:]
    if not parts:
        return "core"  # `provisioner` itself (its __init__ holds only the version)
    if len(parts) >= 2 and parts[-1] == "config":
        return "config"
    head = parts[0]
    if head == "__main__":
        return "cli"  # `python -m provisioner` is the command line
    if (package / head).is_dir():
        return head
    return "settings" if head == "settings" else "core"


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, package_dir: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, imported module) for every `provisioner` import in the file, lazy ones too."""
    name = module_name(path, package_dir)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target == "provisioner":  # `from provisioner import x`: x is the module
                found.extend((node.lineno, f"provisioner.{a.name}") for a in node.names)
            elif target.startswith("provisioner."):
                found.append((node.lineno, target))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names
                         if a.name.startswith("provisioner."))
    return found


def violations(package: Path = PACKAGE) -> list[str]:
    problems = []
    for path in sorted(package.rglob("*.py")):
        source = module_name(path, package)
        here = unit_of(source, package)
        for line, target in imports_of(path, package):
            there = unit_of(target, package)
            if there == here:
                continue
            if RANK[there] < RANK[here]:
                problems.append(f"{path.relative_to(package.parent)}:{line}: {source} ({here}) "
                                f"imports {target} ({there}), a higher layer")
            elif RANK[there] == RANK[here]:
                problems.append(f"{path.relative_to(package.parent)}:{line}: {source} ({here}) "
                                f"imports {target} ({there}), a peer")
    return problems


def test_every_package_has_a_layer() -> None:
    units = {unit_of(module_name(p)) for p in PACKAGE.rglob("*.py")}
    assert units <= set(RANK), f"packages without a layer: {sorted(units - set(RANK))}"


def test_imports_point_down() -> None:
    assert violations() == []


def test_a_reverse_import_is_caught(tmp_path: Path) -> None:
    """The check itself can fail: a store module importing the sync run is reported."""
    fake = tmp_path / "provisioner"
    (fake / "store").mkdir(parents=True)
    (fake / "sync").mkdir()
    (fake / "store" / "__init__.py").write_text("")
    (fake / "store" / "bad.py").write_text(
        "def f():\n    from provisioner.sync.run import run_sync\n    return run_sync\n")
    (fake / "sync" / "__init__.py").write_text("")
    (fake / "sync" / "run.py").write_text("from provisioner.store import bad\n")
    assert violations(fake) == [
        "provisioner/store/bad.py:2: provisioner.store.bad (store) imports "
        "provisioner.sync.run (sync), a higher layer"]
