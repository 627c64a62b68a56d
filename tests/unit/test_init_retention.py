"""`hauspost init` writes Synapse's message retention from the room policy: the company
default, the range the policy's lifetimes span, the purge jobs, the media lifetime; a bad
value stops init before it writes anything (exit code 3, one line)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from provisioner.cli import main
from provisioner.errors import ConfigError
from provisioner.homeserver.data_dir import InitRequest, init_data_dir
from provisioner.policy import PolicyError

POLICY = """
rooms:
  - key: announcements
    name: Ankündigungen
  - key: project
    for_each: group
    name: "{value}"
retention:
  default: 1y
  media: 180d
  rooms:
    announcements: 2y
    project: 52w
"""
PG_URL = "postgresql://synapse:pw@127.0.0.1:5432/synapse"


def company(data_dir: Path, policy: str = POLICY) -> Path:
    """A data directory whose hauspost.yaml names a policy directory (as an operator sets)."""
    init_data_dir(InitRequest(server_name="corp.test", data_dir=data_dir))
    (data_dir / "policies").mkdir()
    (data_dir / "policies" / "company.yaml").write_text(policy, encoding="utf-8")
    settings = data_dir / "hauspost.yaml"
    settings.write_text(settings.read_text(encoding="utf-8") + "policies: policies\n",
                        encoding="utf-8")
    return data_dir


def homeserver(data_dir: Path) -> dict[str, object]:
    config: dict[str, object] = yaml.safe_load((data_dir / "homeserver.yaml").read_text())
    return config


def snapshot(data_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(data_dir)): p.read_bytes()
            for p in sorted(data_dir.rglob("*")) if p.is_file()}


def test_without_a_policy_retention_is_off(tmp_path: Path) -> None:
    init_data_dir(InitRequest(server_name="corp.test", data_dir=tmp_path))
    config = homeserver(tmp_path)
    assert config["retention"] == {"enabled": False}
    assert config["media_retention"] == {"remote_media_lifetime": "1d",
                                         "local_media_lifetime": "365d"}


def test_init_writes_retention_from_the_policy(tmp_path: Path) -> None:
    data_dir = company(tmp_path)
    init_data_dir(InitRequest(server_name="corp.test", data_dir=data_dir))
    config = homeserver(data_dir)
    assert config["retention"] == {
        "enabled": True,
        "default_policy": {"max_lifetime": "1y"},
        "allowed_lifetime_min": "52w",
        "allowed_lifetime_max": "2y",
        "purge_jobs": [{"longest_max_lifetime": "3d", "interval": "1h"},
                       {"shortest_max_lifetime": "3d", "interval": "1d"}]}
    assert config["media_retention"] == {"remote_media_lifetime": "1d",
                                         "local_media_lifetime": "180d"}
    assert (data_dir / "homeserver.yaml.bak").is_file()  # the run before, without retention


def test_synapse_reads_the_written_retention(tmp_path: Path) -> None:
    from synapse.config.homeserver import HomeServerConfig

    data_dir = company(tmp_path)
    init_data_dir(InitRequest(server_name="corp.test", data_dir=data_dir))
    config = HomeServerConfig()
    config.parse_config_dict(homeserver(data_dir), str(data_dir), str(data_dir))
    day = 86_400_000
    assert config.retention.retention_enabled is True
    assert config.retention.retention_default_max_lifetime == 365 * day
    assert (config.retention.retention_allowed_lifetime_min,
            config.retention.retention_allowed_lifetime_max) == (364 * day, 730 * day)
    assert [(j.shortest_max_lifetime, j.longest_max_lifetime, j.interval)
            for j in config.retention.retention_purge_jobs] == [
        (None, 3 * day, 3_600_000), (3 * day, None, day)]
    assert config.media.media_retention_local_media_lifetime_ms == 180 * day


def test_in_the_worker_layout_every_process_reads_the_one_retention_section(
        tmp_path: Path) -> None:
    data_dir = company(tmp_path)
    init_data_dir(InitRequest(server_name="corp.test", data_dir=data_dir, database_url=PG_URL,
                              workers=1))
    text = (data_dir / "homeserver.yaml").read_text()
    assert text.count("\nretention:") == 1
    assert yaml.safe_load(text)["run_background_tasks_on"] == "background1"
    for worker in (data_dir / "workers").glob("*.yaml"):
        assert "retention" not in yaml.safe_load(worker.read_text()), worker


def test_synapse_runs_purge_jobs_on_the_main_process_only() -> None:
    """docs/org-rooms.md says the purge jobs run on the main process in the worker layout:
    Synapse starts them only where no `worker_app` is set (checked on its source, so an
    upgrade that moves them fails here, not in production)."""
    spec = importlib.util.find_spec("synapse")
    assert spec is not None and spec.origin is not None
    source = (Path(spec.origin).parent / "handlers" / "pagination.py").read_text()
    assert "self._is_master = hs.config.worker.worker_app is None" in source
    assert "if hs.config.retention.retention_enabled and self._is_master:" in source


@pytest.mark.parametrize(("bad", "error"), [
    ("announcements: 2 years", "retention.rooms.announcements: expected a duration such as "
                               "1d, 52w or 2y (a whole number and one of s, m, h, d, w, y), "
                               "got str '2 years'"),
    ("announcements: 730", "retention.rooms.announcements: expected a duration such as 1d, "
                           "52w or 2y (a whole number and one of s, m, h, d, w, y), got int "
                           "730"),
])
def test_a_value_that_is_not_a_duration_stops_init_before_any_write(
        tmp_path: Path, bad: str, error: str) -> None:
    data_dir = company(tmp_path, POLICY.replace("announcements: 2y", bad))
    before = snapshot(data_dir)
    with pytest.raises(PolicyError):
        init_data_dir(InitRequest(server_name="corp.test", data_dir=data_dir))
    result = CliRunner().invoke(main, ["init", "--server-name", "corp.test", "-d",
                                       str(data_dir)])
    assert result.exit_code == 3
    policy_file = data_dir / "policies" / "company.yaml"
    assert result.output == f"Error: invalid room policy: {policy_file}:12: {error}\n"
    assert snapshot(data_dir) == before


def test_media_lifetime_option_must_not_contradict_the_policy(tmp_path: Path) -> None:
    data_dir = company(tmp_path)
    before = snapshot(data_dir)
    with pytest.raises(ConfigError) as info:
        init_data_dir(InitRequest(server_name="corp.test", data_dir=data_dir,
                                  media_lifetime="30d"))
    assert str(info.value).startswith("--media-lifetime: 30d contradicts the room policy's "
                                      "retention.media (180d, ")
    assert snapshot(data_dir) == before
    init_data_dir(InitRequest(server_name="corp.test", data_dir=data_dir,
                              media_lifetime="180d"))
    assert homeserver(data_dir)["media_retention"] == {"remote_media_lifetime": "1d",
                                                       "local_media_lifetime": "180d"}
