"""Seed slapd with employees and groups: as LDIF (for slapadd) or online with ldap3.

    people = make_people(50)
    server = start_slapd(workdir, seed_ldif=people_ldif(people) + groups_ldif(
        {"Sales": [p.uid for p in people[:10]]}))
    # or, against the running session slapd, under a per-test OU:
    ou = add_ou(conn, unique_name("t"))
    add_people(conn, people, ou)

Every person gets the plain-text password TEST_PASSWORD (slapd binds with it as stored;
test data only). DNs are built with escape_rdn, so odd names are fine. From the shell:
`python -m tests.harness.ldap_seed --employees 10000 --groups 20 > seed.ldif`.
"""

from __future__ import annotations

import base64
import itertools
import subprocess
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import ldap3
from ldap3.utils.dn import escape_rdn

from provisioner.homeserver.synapse_process import free_port
from tests.harness.slapd_server import (
    GROUPS_DN,
    MODULE_DIRS,
    PEOPLE_DN,
    SlapdMissingError,
    SlapdServer,
    find_slapd,
    start_slapd,
    wait_until_answering,
)
from tests.harness.synapse_server import TEST_PASSWORD

DEPARTMENTS = ("Sales", "Logistics", "IT", "Finance", "Production", "HR")
LOCATIONS = ("Berlin", "Hamburg", "München", "Köln")
_counter = itertools.count(1)


@dataclass(frozen=True)
class SeedPerson:
    uid: str
    cn: str
    mail: str | None
    employee_number: str | None
    department: str | None = None
    location: str | None = None
    #: uid of the manager (same OU), or None.
    manager_uid: str | None = None
    password: str = TEST_PASSWORD
    #: Extra attributes, e.g. {"employeeType": ["disabled"]}.
    extra: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def dn(self, people_dn: str = PEOPLE_DN) -> str:
        return f"uid={escape_rdn(self.uid)},{people_dn}"

    def attributes(self, people_dn: str = PEOPLE_DN) -> dict[str, list[str]]:
        # inetOrgPerson needs cn and sn; sn is derived so callers only think about cn.
        attrs: dict[str, list[str]] = {
            "objectClass": ["inetOrgPerson"],
            "uid": [self.uid],
            "cn": [self.cn],
            "sn": [self.cn.split()[-1] if self.cn.split() else self.cn],
            "userPassword": [self.password],
        }
        optional = {"mail": self.mail, "employeeNumber": self.employee_number,
                    "departmentNumber": self.department, "l": self.location}
        attrs.update({k: [v] for k, v in optional.items() if v is not None})
        if self.manager_uid is not None:
            attrs["manager"] = [f"uid={escape_rdn(self.manager_uid)},{people_dn}"]
        for name, values in self.extra.items():
            attrs[name] = list(values)
        return attrs


def unique_name(prefix: str = "t") -> str:
    """A name no other test uses: for per-test OUs and logins."""
    return f"{prefix}{next(_counter)}{uuid.uuid4().hex[:6]}"


def make_people(count: int, *, prefix: str = "emp", start: int = 0,
                domain: str = "hauspost.test", team_size: int = 10) -> list[SeedPerson]:
    """`count` employees emp00000…, numbered E00000…, in teams whose first member leads.

    Person `start` heads everyone; each team's lead reports to them.
    """
    people = []
    for i in range(start, start + count):
        uid = f"{prefix}{i:05d}"
        if i == start:
            manager = None
        elif (i - start) % team_size == 0:
            manager = f"{prefix}{start:05d}"
        else:
            manager = f"{prefix}{start + (i - start) // team_size * team_size:05d}"
        people.append(SeedPerson(
            uid=uid, cn=f"Employee {i:05d}", mail=f"{uid}@{domain}",
            employee_number=f"E{i:05d}", department=DEPARTMENTS[i % len(DEPARTMENTS)],
            location=LOCATIONS[i % len(LOCATIONS)], manager_uid=manager,
        ))
    return people


def _ldif_value(name: str, value: str) -> str:
    # RFC 2849: non-ASCII, leading space/colon/'<', or trailing space need base64.
    safe = (value.isascii() and value == value.strip() and not value.startswith((":", "<"))
            and "\n" not in value and "\r" not in value and "\0" not in value)
    if safe:
        return f"{name}: {value}"
    return f"{name}:: {base64.b64encode(value.encode('utf-8')).decode('ascii')}"


def _ldif_entry(dn: str, attributes: Mapping[str, Sequence[str]]) -> str:
    lines = [_ldif_value("dn", dn)]
    for name, values in attributes.items():
        lines.extend(_ldif_value(name, v) for v in values)
    return "\n".join(lines) + "\n\n"


def people_ldif(people: Iterable[SeedPerson], people_dn: str = PEOPLE_DN) -> str:
    return "".join(_ldif_entry(p.dn(people_dn), p.attributes(people_dn)) for p in people)


def group_dn(name: str, groups_dn: str = GROUPS_DN) -> str:
    return f"cn={escape_rdn(name)},{groups_dn}"


def _group_attributes(name: str, member_uids: Sequence[str],
                      people_dn: str) -> dict[str, list[str]]:
    if not member_uids:
        raise ValueError(f"group {name!r}: groupOfNames needs at least one member")
    return {"objectClass": ["groupOfNames"], "cn": [name],
            "member": [f"uid={escape_rdn(uid)},{people_dn}" for uid in member_uids]}


def groups_ldif(groups: Mapping[str, Sequence[str]], groups_dn: str = GROUPS_DN,
                people_dn: str = PEOPLE_DN) -> str:
    """groupOfNames entries: group name -> member uids."""
    return "".join(_ldif_entry(group_dn(name, groups_dn),
                               _group_attributes(name, uids, people_dn))
                   for name, uids in groups.items())


def _check(conn: ldap3.Connection, ok: bool, dn: str) -> None:
    if not ok:
        raise RuntimeError(f"LDAP add/modify of {dn} failed: {conn.result}")


def add_ou(conn: ldap3.Connection, name: str, parent: str = PEOPLE_DN) -> str:
    dn = f"ou={escape_rdn(name)},{parent}"
    _check(conn, conn.add(dn, ["organizationalUnit"], {"ou": name}), dn)
    return dn


def add_people(conn: ldap3.Connection, people: Iterable[SeedPerson],
               people_dn: str = PEOPLE_DN) -> None:
    for person in people:
        dn = person.dn(people_dn)
        _check(conn, conn.add(dn, attributes=person.attributes(people_dn)), dn)


def add_groups(conn: ldap3.Connection, groups: Mapping[str, Sequence[str]],
               groups_dn: str = GROUPS_DN, people_dn: str = PEOPLE_DN) -> None:
    for name, uids in groups.items():
        dn = group_dn(name, groups_dn)
        _check(conn, conn.add(dn, attributes=_group_attributes(name, uids, people_dn)), dn)


def modify_person(conn: ldap3.Connection, uid: str, changes: Mapping[str, Sequence[str]],
                  people_dn: str = PEOPLE_DN) -> None:
    """Replace attributes of a person (an empty list deletes the attribute)."""
    dn = f"uid={escape_rdn(uid)},{people_dn}"
    ops = {name: [(ldap3.MODIFY_REPLACE, list(values))] for name, values in changes.items()}
    _check(conn, conn.modify(dn, ops), dn)


def rename_person(conn: ldap3.Connection, uid: str, new_cn: str,
                  people_dn: str = PEOPLE_DN) -> None:
    """Change the display name (cn) only: the DN and uid stay, as in a real rename."""
    modify_person(conn, uid, {"cn": [new_cn]}, people_dn)


def delete_person(conn: ldap3.Connection, uid: str, people_dn: str = PEOPLE_DN) -> None:
    dn = f"uid={escape_rdn(uid)},{people_dn}"
    _check(conn, conn.delete(dn), dn)


@dataclass(frozen=True)
class TlsFiles:
    """A throw-away CA and a server certificate for 127.0.0.1 signed by it (PEM files)."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def make_tls_files(directory: Path, host: str = "127.0.0.1") -> TlsFiles:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Hauspost Test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                       crl_sign=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False,
                                       decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address(host)), x509.DNSName("localhost")]),
                critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    files.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key_file.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return files


@dataclass
class SlapdVariant(SlapdServer):
    """A slapd started by `start_slapd_variant`; `ldaps_port` is 0 without TLS."""

    ldaps_port: int = 0

    @property
    def ldaps_uri(self) -> str:
        return f"ldaps://127.0.0.1:{self.ldaps_port}"


def start_slapd_variant(workdir: Path, seed_ldif: str = "", *, memberof: bool = False,
                        tls: TlsFiles | None = None) -> SlapdVariant:
    """Like `start_slapd`, with extras the session slapd does not have.

    memberof: the memberof overlay, so groups added or changed online (not by slapadd) keep
    `memberOf` on their members up to date, as Active Directory does.
    tls: StartTLS on the ldap:// port and an extra ldaps:// listener with these files.
    """
    server = start_slapd(workdir, seed_ldif)
    server.stop()
    conf = workdir / "slapd.conf"
    text = conf.read_text(encoding="utf-8")
    before_database = ""
    if memberof:
        module = next((d / "memberof.la" for d in MODULE_DIRS
                       if (d / "memberof.la").exists()), None)
        if module is None:
            raise SlapdMissingError("slapd's memberof overlay (memberof.la) is not installed")
        before_database += f"moduleload {module}\n"
    if tls is not None:
        before_database += (f"TLSCACertificateFile {tls.ca_file}\n"
                            f"TLSCertificateFile {tls.cert_file}\n"
                            f"TLSCertificateKeyFile {tls.key_file}\n")
    # Modules and TLS are global settings; the overlay applies to the database above it.
    text = text.replace("\ndatabase mdb\n", f"\n{before_database}database mdb\n", 1)
    conf.write_text(text + ("overlay memberof\n" if memberof else ""), encoding="utf-8")

    slapd, _ = find_slapd()
    port = free_port()
    ldaps_port = free_port() if tls is not None else 0
    urls = f"ldap://127.0.0.1:{port}/" + (f" ldaps://127.0.0.1:{ldaps_port}/" if tls else "")
    with (workdir / "slapd.log").open("ab") as log:
        proc = subprocess.Popen([slapd, "-f", str(conf), "-h", urls, "-d", "0"],
                                stdout=subprocess.DEVNULL, stderr=log)
    return wait_until_answering(SlapdVariant(workdir=workdir, port=port, proc=proc,
                                             ldaps_port=ldaps_port))


def start_slapd_with_memberof(workdir: Path, seed_ldif: str = "") -> SlapdVariant:
    return start_slapd_variant(workdir, seed_ldif, memberof=True)


def main() -> None:
    """`python -m tests.harness.ldap_seed --employees 10000 > seed.ldif` (for slapadd)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--employees", type=int, default=50)
    parser.add_argument("--prefix", default="emp")
    parser.add_argument("--groups", type=int, default=0,
                        help="also write this many groupOfNames, members dealt round-robin")
    args = parser.parse_args()
    people = make_people(args.employees, prefix=args.prefix)
    sys.stdout.write(people_ldif(people))
    if args.groups:
        sys.stdout.write(groups_ldif({f"Team {g:03d}": [p.uid for p in people[g::args.groups]]
                                      for g in range(args.groups)}))


if __name__ == "__main__":
    main()
