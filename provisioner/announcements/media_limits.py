"""The upload limits an attachment must meet, read from homeserver.yaml.

The media gate (synapse_modules/media_gate.py) would refuse an oversize upload anyway, but
only after the announcement text was posted; checking here first means a refused file
stops the announcement before anything is sent. An encrypted file reaches the server as
application/octet-stream, so the gate can't judge its type: we apply the gate's type
allow-list to the file's own type here, which is the policy's intent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from provisioner.errors import ConfigError

MEDIA_GATE_MODULE = "synapse_modules.media_gate.MediaGate"
_SIZE = re.compile(r"^([0-9]+)\s*([KMG]?)B?$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
_SYNAPSE_DEFAULT = "50M"


@dataclass(frozen=True)
class MediaLimits:
    max_upload_bytes: int
    #: Empty: no type restriction (no media gate configured).
    allowed_media_types: frozenset[str]
    source: str


def parse_size(value: object, where: str) -> int:
    match = _SIZE.match(str(value).strip())
    if match is None:
        raise ConfigError(f'expected a size like "20M", got {value!r}', key=where)
    return int(match.group(1)) * _UNITS[match.group(2).upper()]


def limits_from_config(config: dict[str, object], source: str) -> MediaLimits:
    limit = parse_size(config.get("max_upload_size", _SYNAPSE_DEFAULT), "max_upload_size")
    types: frozenset[str] = frozenset()
    modules = config.get("modules") or []
    for item in modules if isinstance(modules, list) else []:
        if isinstance(item, dict) and item.get("module") == MEDIA_GATE_MODULE:
            gate = item.get("config") or {}
            if isinstance(gate, dict):
                limit = min(limit, parse_size(gate.get("max_upload_size", _SYNAPSE_DEFAULT),
                                              "media_gate.max_upload_size"))
                types = frozenset(str(t) for t in gate.get("allowed_media_types") or [])
    return MediaLimits(max_upload_bytes=limit, allowed_media_types=types, source=source)


def load_media_limits(homeserver_yaml: Path) -> MediaLimits:
    try:
        data = yaml.safe_load(homeserver_yaml.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the upload limits: {exc}",
                          file=str(homeserver_yaml)) from None
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping", file=str(homeserver_yaml))
    return limits_from_config(data, str(homeserver_yaml))
