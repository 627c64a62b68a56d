"""A real OpenLDAP slapd on a free loopback port, with its own config and data in a temp dir."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import ldap3

from provisioner.homeserver.synapse_process import free_port

BASE_DN = "dc=hauspost,dc=test"
ADMIN_DN = f"cn=admin,{BASE_DN}"
ADMIN_PASSWORD = "slapd-admin-secret"
PEOPLE_DN = f"ou=people,{BASE_DN}"
GROUPS_DN = f"ou=groups,{BASE_DN}"

SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIRS = (Path("/usr/lib/ldap"), Path("/usr/lib/x86_64-linux-gnu/ldap"),
               Path("/usr/lib/aarch64-linux-gnu/ldap"))


class SlapdMissingError(RuntimeError):
    pass


def find_slapd(path: str | None = None, sbin: Path = Path("/usr/sbin"),
               schema_dir: Path = SCHEMA_DIR) -> tuple[str, str]:
    """Locate slapd and slapadd (Debian keeps them in /usr/sbin, often not on PATH)."""
    def locate(name: str) -> str | None:
        return shutil.which(name, path=path) or (str(sbin / name) if (sbin / name).exists()
                                                 else None)

    slapd, slapadd = locate("slapd"), locate("slapadd")
    if not slapd or not slapadd or not (schema_dir / "inetorgperson.schema").exists():
        raise SlapdMissingError(
            "slapd is not installed: the LDAP tests need the Debian packages slapd and "
            "ldap-utils (`apt-get install -y slapd ldap-utils`; .ci/run installs them)"
        )
    return slapd, slapadd


def base_ldif() -> str:
    return f"""\
dn: {BASE_DN}
objectClass: dcObject
objectClass: organization
o: Hauspost Test
dc: hauspost

dn: {PEOPLE_DN}
objectClass: organizationalUnit
ou: people

dn: {GROUPS_DN}
objectClass: organizationalUnit
ou: groups

"""


@dataclass
class SlapdServer:
    workdir: Path
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def uri(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    def connection(self) -> ldap3.Connection:
        server = ldap3.Server(self.uri, get_info=ldap3.NONE)
        return ldap3.Connection(server, ADMIN_DN, ADMIN_PASSWORD, auto_bind=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_slapd(workdir: Path, seed_ldif: str = "") -> SlapdServer:
    """Write slapd.conf, load the LDIF offline with slapadd, start slapd on loopback."""
    slapd, slapadd = find_slapd()
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "db"
    db.mkdir(exist_ok=True)
    module_path = next((d for d in MODULE_DIRS if (d / "back_mdb.la").exists()
                        or (d / "back_mdb.so").exists()), None)
    module_lines = (f"modulepath {module_path}\nmoduleload back_mdb\n"
                    if module_path else "")
    hashed = subprocess.run(["slappasswd", "-s", ADMIN_PASSWORD], capture_output=True,
                            text=True, check=False).stdout.strip() or ADMIN_PASSWORD
    conf = workdir / "slapd.conf"
    conf.write_text(f"""\
include {SCHEMA_DIR}/core.schema
include {SCHEMA_DIR}/cosine.schema
include {SCHEMA_DIR}/inetorgperson.schema
include {SCHEMA_DIR}/nis.schema
pidfile {workdir}/slapd.pid
argsfile {workdir}/slapd.args
{module_lines}
database mdb
maxsize 1073741824
suffix "{BASE_DN}"
rootdn "{ADMIN_DN}"
rootpw {hashed}
directory {db}
index objectClass eq
index uid eq
access to attrs=userPassword by self write by anonymous auth by * none
access to * by * read
sizelimit unlimited
""", encoding="utf-8")
    ldif = workdir / "seed.ldif"
    ldif.write_text(base_ldif() + seed_ldif, encoding="utf-8")
    subprocess.run([slapadd, "-f", str(conf), "-l", str(ldif), "-q"], check=True,
                   capture_output=True)
    port = free_port()
    proc = subprocess.Popen(  # -d 0: stay in the foreground as our child; no syslog noise
        [slapd, "-f", str(conf), "-h", f"ldap://127.0.0.1:{port}/", "-d", "0"],
        stdout=subprocess.DEVNULL, stderr=open(workdir / "slapd.log", "wb"),  # noqa: SIM115
    )
    return wait_until_answering(SlapdServer(workdir=workdir, port=port, proc=proc))


S = TypeVar("S", bound=SlapdServer)


def wait_until_answering(server: S, timeout: float = 20.0) -> S:
    """Return `server` once an admin bind works; raise with slapd's log if it died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError("slapd exited at start-up: " + (server.workdir / "slapd.log")
                               .read_text(errors="replace")[-2000:])
        try:
            server.connection().unbind()
            return server
        except ldap3.core.exceptions.LDAPException:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"slapd did not answer within {timeout:.0f} s")
