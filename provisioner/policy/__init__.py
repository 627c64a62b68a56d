"""Room policies: `policies/*.yaml` maps directory attributes to spaces and rooms.

`load_policies(directory)` reads every `*.yaml` / `*.yml` file there (sorted by name),
validates them together and returns a frozen PolicySet, or raises PolicyError naming
file:line and key of every problem. See policies/README.md for the schema.
"""

from __future__ import annotations

from pathlib import Path

from provisioner.policy.located import PolicyError, load_located
from provisioner.policy.model import PolicySet, RoomPolicy, SpacePolicy
from provisioner.policy.schema import parse_documents

__all__ = ["PolicyError", "PolicySet", "RoomPolicy", "SpacePolicy", "load_policies",
           "parse_texts"]


def parse_texts(texts: dict[str, str]) -> PolicySet:
    """Validate policy texts given as {file name: YAML text} (used by tests, too)."""
    docs = []
    problems: list[str] = []
    for name, text in texts.items():
        try:
            docs.append(load_located(text, name))
        except PolicyError as exc:
            problems.extend(exc.problems)
    if problems:
        raise PolicyError(problems)
    return parse_documents(docs)


def load_policies(directory: Path) -> PolicySet:
    if not directory.is_dir():
        raise PolicyError([f"{directory}: not a directory (hauspost.yaml `policies:`)"])
    texts: dict[str, str] = {}
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        try:
            texts[str(path)] = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError([f"{path}:1: cannot read: {exc}"]) from None
    if not texts:
        raise PolicyError([f"{directory}: no *.yaml policy files"])
    return parse_texts(texts)
