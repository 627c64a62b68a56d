"""Read YAML into plain values while remembering the line of every key and list item.

`yaml.safe_load` forgets positions, so an error could only name the key. We compose the
node tree instead (the same parser) and keep `path -> line`, so a policy error reads
`policies/rooms.yaml:14: rooms[2].members: ...`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from provisioner.errors import ConfigError

Path = tuple[str | int, ...]


class PolicyError(ConfigError):
    """One or more problems in the policy files, each with file:line and key path."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = tuple(problems)
        if len(problems) == 1:  # one problem, one line
            super().__init__(f"invalid room policy: {problems[0]}")
            return
        super().__init__(f"invalid room policy ({len(problems)} problems):\n  "
                         + "\n  ".join(problems))


def key_path(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "(top level)"


@dataclass(frozen=True)
class Located:
    """A parsed file: its plain data and the line (1-based) of each key / item."""

    file: str
    data: Any
    lines: dict[Path, int]

    def line(self, path: Path) -> int:
        # Fall back to the nearest enclosing key that has a position.
        while path not in self.lines and path:
            path = path[:-1]
        return self.lines.get(path, 1)

    def problem(self, path: Path, message: str) -> str:
        return f"{self.file}:{self.line(path)}: {key_path(path)}: {message}"


class _Walker:
    def __init__(self, file: str) -> None:
        self.file = file
        self.lines: dict[Path, int] = {}
        self.constructor = yaml.constructor.SafeConstructor()

    def value(self, node: yaml.Node, path: Path) -> Any:
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                line = key_node.start_mark.line + 1
                if not isinstance(key_node, yaml.ScalarNode):
                    raise PolicyError([f"{self.file}:{line}: {key_path(path)}: keys must be "
                                       "plain strings"])
                key = str(key_node.value)
                if key in out:
                    raise PolicyError([f"{self.file}:{line}: {key_path(path + (key,))}: "
                                       f"duplicate key (first at line "
                                       f"{self.lines[path + (key,)]})"])
                self.lines[path + (key,)] = line
                out[key] = self.value(value_node, path + (key,))
            return out
        if isinstance(node, yaml.SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                self.lines[path + (index,)] = item.start_mark.line + 1
                items.append(self.value(item, path + (index,)))
            return items
        return self.constructor.construct_object(node, deep=True)


def load_located(text: str, file: str) -> Located:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise PolicyError([f"{file}:{line}: not valid YAML "
                           f"({getattr(exc, 'problem', None) or exc})"]) from None
    walker = _Walker(file)
    data = walker.value(root, ()) if root is not None else {}
    return Located(file=file, data=data, lines=walker.lines)
