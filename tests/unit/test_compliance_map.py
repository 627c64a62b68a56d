"""docs/compliance.md: every row names at least one test, and every named test exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "compliance.md"
REF = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")
CONTROLS = ["Art. 5(1)(c)", "Art. 5(1)(e)", "Art. 15", "Art. 17", "Art. 25", "Art. 32",
            "A.5.15", "A.5.16", "A.5.17", "A.5.18", "A.8.5", "A.8.12", "A.8.15", "A.8.24"]


def table_rows() -> list[str]:
    return [line for line in DOC.read_text(encoding="utf-8").splitlines()
            if line.startswith("| ") and not line.startswith("| control")
            and not line.startswith("| ---")]


def functions_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}


def test_every_claimed_control_has_a_row_with_a_test() -> None:
    rows = table_rows()
    for control in CONTROLS:
        (row,) = [r for r in rows if r.startswith(f"| {control} ")]
        assert REF.search(row), f"{control}: no test named"
    assert all(REF.search(r) for r in rows), [r[:60] for r in rows if not REF.search(r)]


@pytest.mark.parametrize(("path", "name"), sorted({m.groups() for r in table_rows()
                                                   for m in REF.finditer(r)}))
def test_named_test_exists(path: str, name: str) -> None:
    file = ROOT / path
    assert file.is_file(), f"{path} does not exist"
    assert name.startswith("test_") and name in functions_in(file), \
        f"{path} has no test {name}"
