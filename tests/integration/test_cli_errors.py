"""Clear one-line errors with documented non-zero exit codes, through the real `hauspost` CLI."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from provisioner.errors import EXIT_CONFIG, EXIT_ENVIRONMENT
from tests.harness.slapd_server import SlapdMissingError, find_slapd


def hauspost(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "provisioner", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got: {result.stderr!r}"
    assert lines[0].startswith("Error: ")
    return lines[0]


@pytest.mark.parametrize("name", ["bad name!", "exa_mple.com", "example.com:99999", "-x.com"])
def test_invalid_server_name(tmp_path: Path, name: str) -> None:
    result = hauspost("init", "--server-name", name, "-d", str(tmp_path / "d"))
    assert result.returncode == EXIT_CONFIG
    line = one_error_line(result)
    assert line.startswith("Error: --server-name: ")
    assert not (tmp_path / "d").exists()


def test_unwritable_data_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = hauspost("init", "--server-name", "example.com", "-d", str(blocker / "data"))
    assert result.returncode == EXIT_ENVIRONMENT
    line = one_error_line(result)
    assert line.startswith(f"Error: data directory {blocker / 'data'} is not writable")


def test_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert hauspost("init", "--server-name", "example.com", "-d", str(tmp_path),
                        "--port", str(port)).returncode == 0
        result = hauspost("run", "-d", str(tmp_path))
    assert result.returncode == EXIT_ENVIRONMENT
    assert one_error_line(result) == (
        f"Error: port {port} on 127.0.0.1 is in use: stop what runs there or choose "
        "another port with `hauspost init --port`")


def test_malformed_settings_file(tmp_path: Path) -> None:
    assert hauspost("init", "--server-name", "example.com", "-d", str(tmp_path)).returncode == 0
    (tmp_path / "hauspost.yaml").write_text("server_name: example.com\nhomeserver: [unclosed\n")
    result = hauspost("run", "-d", str(tmp_path))
    assert result.returncode == EXIT_CONFIG
    line = one_error_line(result)
    assert line.startswith(f"Error: {tmp_path / 'hauspost.yaml'}: line ")
    assert "not valid YAML" in line


def test_unknown_settings_key_names_file_and_key(tmp_path: Path) -> None:
    assert hauspost("init", "--server-name", "example.com", "-d", str(tmp_path)).returncode == 0
    settings = tmp_path / "hauspost.yaml"
    settings.write_text(settings.read_text() + "federation: true\n")
    result = hauspost("run", "-d", str(tmp_path))
    assert result.returncode == EXIT_CONFIG
    assert one_error_line(result).startswith(
        f"Error: {settings}: federation: unknown key (known keys here: ")


def test_malformed_homeserver_yaml(tmp_path: Path) -> None:
    assert hauspost("init", "--server-name", "example.com", "-d", str(tmp_path)).returncode == 0
    (tmp_path / "homeserver.yaml").write_text("listeners:\n  - port: [8008\n")
    result = hauspost("run", "-d", str(tmp_path))
    assert result.returncode == EXIT_CONFIG
    line = one_error_line(result)
    assert line.startswith(f"Error: {tmp_path / 'homeserver.yaml'}: line ")


def test_missing_data_dir(tmp_path: Path) -> None:
    result = hauspost("run", "-d", str(tmp_path / "nothing-here"))
    assert result.returncode == EXIT_CONFIG
    assert one_error_line(result) == (
        f"Error: {tmp_path / 'nothing-here' / 'hauspost.yaml'}: not found; "
        "run `hauspost init` first (or pass the right --data-dir)")


def test_slapd_missing_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(SlapdMissingError) as info:
        find_slapd(path=str(tmp_path), sbin=tmp_path, schema_dir=tmp_path)
    assert str(info.value) == (
        "slapd is not installed: the LDAP tests need the Debian packages slapd and "
        "ldap-utils (`apt-get install -y slapd ldap-utils`; .ci/run installs them)")


def test_bad_media_lifetime(tmp_path: Path) -> None:
    result = hauspost("init", "--server-name", "example.com", "-d", str(tmp_path / "d"),
                      "--media-lifetime", "forever")
    assert result.returncode == EXIT_CONFIG
    assert one_error_line(result) == (
        "Error: --media-lifetime: expected a duration such as 90d or 1y, got 'forever'")
    assert not (tmp_path / "d").exists()
