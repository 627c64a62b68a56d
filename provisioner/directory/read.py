"""The one entry point for `plan` / `sync`: read the configured directory sources."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from provisioner.directory.combine import combine, combine_scim
from provisioner.directory.config import DirectoryConfig
from provisioner.directory.hr_csv import hr_directory_read, read_hr_csv
from provisioner.directory.ldap_source import LdapSource
from provisioner.employee import DirectoryRead
from provisioner.errors import ConfigError
from provisioner.settings import Settings


def directory_config(settings: Settings) -> DirectoryConfig:
    """`directory:` from hauspost.yaml, or LDAP alone (UTC) when only `ldap:` is set."""
    if settings.directory is not None:
        return settings.directory
    if settings.ldap is not None:
        return DirectoryConfig(sources=("ldap",), time_zone=ZoneInfo("UTC"),
                               file=str(settings.file))
    raise ConfigError("no directory source configured: add an `ldap:` or a `directory:` "
                      "section", file=str(settings.file), key="directory")


def read_directory(settings: Settings) -> DirectoryRead:
    """Read every configured source into one `DirectoryRead`.

    Raises `DirectoryUnavailableError` / `DirectorySourceError` when a source cannot be
    read at all; bad entries are `SourceProblem`s in the result. The planner gets the
    company time zone for `leave.effective_status` from `directory_config(settings)`.
    """
    config = directory_config(settings)
    base = _read_ldap_and_hr(settings, config)
    if not config.uses_scim:
        assert base is not None  # noqa: S101 - parse_directory requires a source
        return base
    # Imported here: only a configuration listing `scim` needs the SCIM models.
    from provisioner.directory.scim_source import read_scim_directory

    return combine_scim(base, read_scim_directory(settings.store_url, settings.server_name))


def _read_ldap_and_hr(settings: Settings, config: DirectoryConfig) -> DirectoryRead | None:
    """LDAP, the HR export or both combined; None when neither is configured (SCIM alone)."""
    ldap_read = None
    if config.uses_ldap:
        if settings.ldap is None:  # parse_directory refuses this; kept for hand-made configs
            raise ConfigError("sources lists 'ldap' but there is no `ldap:` section",
                              file=str(settings.file), key="directory.sources")
        ldap_read = LdapSource(settings.ldap, server_name=settings.server_name).read()
    if config.hr_csv is None:
        return ldap_read
    hr = read_hr_csv(config.hr_csv, settings.server_name)
    if ldap_read is None:
        return hr_directory_read(hr)
    return combine(ldap_read, hr, ldap_only=config.ldap_only)
