"""A company for the console tests: real slapd (people + groups), the session Synapse with
our modules, a real `sync`, and `hauspost serve` as a subprocess with the console on.

Roles come from directory groups, exactly as a customer configures them:
personal → hr, it-admins → it, kommunikation → comms, datenschutz → auditor.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from provisioner.homeserver.synapse_process import free_port
from provisioner.settings import load_settings
from tests.harness.ldap_seed import SeedPerson
from tests.harness.slapd_server import SlapdServer
from tests.harness.synapse_server import TEST_PASSWORD, SynapseServer
from tests.integration.service_env import ServiceConfig, ServiceProcess, start_service
from tests.integration.test_org_rooms import RoomsEnv, make_rooms_env

ROLE_GROUPS = {"hr": ["personal"], "it": ["it-admins"], "comms": ["kommunikation"],
               "auditor": ["datenschutz"]}
POLICY = """
rooms:
  - key: department
    for_each: department
    name: "Abteilung {value}"
    mandatory: true
"""
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Company:
    env: RoomsEnv
    service: ServiceProcess
    people: dict[str, SeedPerson]

    @property
    def url(self) -> str:
        return self.service.url + "/console"

    def mxid(self, key: str) -> str:
        return self.env.mxid(self.people[key])

    def employee_id(self, key: str) -> str:
        number = self.people[key].employee_number
        assert number is not None
        return number

    def browser_client(self) -> httpx.Client:
        """A cookie-keeping HTTP client that does not follow redirects (they are checked)."""
        return httpx.Client(base_url=self.service.url, timeout=60, follow_redirects=False)

    def sign_in(self, key: str, password: str = TEST_PASSWORD
                ) -> tuple[httpx.Client, httpx.Response]:
        return self.sign_in_as_login(self.people[key].uid, password)

    def sign_in_as_login(self, login: str, password: str
                         ) -> tuple[httpx.Client, httpx.Response]:
        client = self.browser_client()
        form = client.get("/console/login")
        assert form.status_code == 200, form.text
        response = client.post("/console/login", data={
            "csrf": csrf_of(form.text), "username": login, "password": password,
            "next": "/console/"})
        return client, response


def csrf_of(page: str) -> str:
    match = CSRF.search(page)
    assert match is not None, page[:2000]
    return match.group(1)


def console_company(synapse: SynapseServer, slapd: SlapdServer, workdir: Path,
                    extra_people: list[SeedPerson] | None = None,
                    console: dict[str, Any] | None = None) -> Iterator[Company]:
    for env in make_rooms_env(synapse, slapd, workdir, POLICY):
        token_file = workdir / "keys" / "service_account_token"
        shutil.copy(env.settings.service_token_file, token_file)
        os.chmod(token_file, 0o600)
        people = {
            "hr": env.person(1, cn="Hanna Schäfer", department="Personal"),
            "it": env.person(2, cn="Ilse Öztürk", department="IT"),
            "comms": env.person(3, cn="Kai Weiß", department="Kommunikation"),
            "auditor": env.person(4, cn="Dana Lindqvist", department="Recht"),
            "plain": env.person(5, cn="Jürgen Müller", department="Vertrieb"),
            "leaver": env.person(6, cn="Zoë Ørsted", department="Vertrieb"),
            "xss": env.person(7, cn="<script>alert('x')</script> Böse",
                              department="Vertrieb"),
            "li": env.person(8, cn="李 明", department="Produktion"),
            "it2": env.person(9, cn="Otto Admin", department="IT"),
            "nomail": env.person(10, cn="Ana Sánchez", mail=None, department="Vertrieb"),
        }
        env.seed(list(people.values()) + list(extra_people or []))
        for role, (group,) in ROLE_GROUPS.items():
            members = [people[role].uid] + ([people["it2"].uid] if role == "it" else [])
            env.group(group, members)
        port = free_port()
        doc = yaml.safe_load((workdir / "hauspost.yaml").read_text(encoding="utf-8"))
        doc["service_account"]["token_file"] = str(token_file)
        doc["service"] = {"listen": f"127.0.0.1:{port}", "scim": {"enabled": False},
                          "tick_seconds": 1, "retry_max_seconds": 1}
        doc["console"] = {"roles": ROLE_GROUPS, **(console or {})}
        (workdir / "hauspost.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True),
                                               encoding="utf-8")
        env.settings = load_settings(workdir)
        outcome = env.sync()
        assert outcome.status == "ok", outcome.to_json()
        service = start_service(workdir, ServiceConfig(port=port, token="", webhook_secret=""))
        try:
            yield Company(env=env, service=service, people=people)
        finally:
            service.stop()
