"""`pip install hauspost` then `hauspost demo`, outside any checkout (issue "A new user's first
hour"): the wheel carries the demo company and the example policy.

The wheel is built from this checkout (offline: `pip wheel --no-build-isolation`) and
installed with pip into a fresh venv in a temp directory. Its dependencies (Synapse, nio …)
come from the suite's venv through a `.pth` line, since the suite may not download; the
editable install of the checkout is not visible there, so `provisioner`, `synapse_modules`
and the demo files are the wheel's own (asserted below). Then the wheel's `hauspost demo`
runs, from a working directory outside the checkout, until it is ready, and a demo
employee logs in.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from provisioner.homeserver.synapse_process import free_port
from tests.integration.test_demo import login, start_demo

REPO = Path(__file__).resolve().parents[2]


def build_wheel(out: Path) -> Path:
    """Build from a copy of the source tree: an in-tree build would write build/ and
    *.egg-info into the checkout the suite is running from."""
    source = out.parent / "source"
    shutil.copytree(REPO, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "node_modules", "build", "*.egg-info", ".demo", "__pycache__",
        ".mypy_cache", ".ruff_cache", ".pytest_cache"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "--no-build-isolation", "-q", "-w", str(out), str(source)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    [wheel] = out.glob("hauspost-*.whl")
    return wheel


def fresh_venv(root: Path, wheel: Path) -> Path:
    """A new venv with its own pip (never the suite's pip: `--prefix` would uninstall the
    suite's editable hauspost first), the wheel installed, the suite's packages behind it."""
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=180)
    python = root / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; "
                                "print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    proc = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                           str(wheel)], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    (site / "zz_suite_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n",
                                                    encoding="utf-8")
    return python


def test_the_wheel_carries_the_demo_company(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "dist")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"provisioner/cli/demo_company/employees.csv",
            "provisioner/cli/demo_company/policies/muster-gmbh.yaml",
            "synapse_modules/identity.py"} <= names
    with zipfile.ZipFile(wheel) as z:
        packed = z.read("provisioner/cli/demo_company/employees.csv")
    assert packed == (REPO / "config" / "demo" / "employees.csv").read_bytes()  # a file, not a link


def test_hauspost_demo_from_the_wheel(tmp_path: Path) -> None:
    python = fresh_venv(tmp_path / "venv", build_wheel(tmp_path / "dist"))
    where = subprocess.run([str(python), "-c", "import provisioner, synapse_modules; "
                            "print(provisioner.__file__); print(synapse_modules.__file__)"],
                           capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    assert all(line.startswith(str(tmp_path / "venv")) for line in where.split()), where

    port = free_port()
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc, lines, ready = start_demo([str(tmp_path / "venv" / "bin" / "hauspost"), "demo", "-d",
                                     "demo", "--port", str(port)], cwd=work, env=env)
    try:
        assert ready.wait(240), "the wheel's demo never became ready:\n" + "".join(lines)
        resp = login(f"http://127.0.0.1:{port}", "anna.schmidt")
        assert resp.status_code == 200, resp.text
        assert resp.json()["user_id"] == "@anna.schmidt:hauspost.localhost"
        assert (work / "demo" / "demo-company" / "policies" / "muster-gmbh.yaml").is_file()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 0, "".join(lines)
