"""The HR export: a CSV file (UTF-8 with or without BOM, `;` or `,`) -> HR records.

A file that cannot be used as a whole (unreadable, a mapped column missing) raises a
`DirectorySourceError` naming the file and the column. A bad row is a `SourceProblem`
"employees.csv:LINE: …" and is skipped; the other rows proceed.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from dataclasses import dataclass
from datetime import date

from provisioner.directory.config import HrCsvConfig
from provisioner.directory.duplicates import duplicate_reasons
from provisioner.directory.errors import DirectorySourceError, DirectoryUnavailableError
from provisioner.directory.language import preferred_language
from provisioner.directory.leave import effective_status
from provisioner.directory.localpart import InvalidLocalpartError, normalise_localpart
from provisioner.employee import DirectoryRead, Employee, SourceProblem, Status

logger = logging.getLogger(__name__)

__all__ = ["HrRead", "HrRecord", "effective_status", "hr_directory_read", "parse_leave_date",
           "read_hr_csv"]

_BOM = b"\xef\xbb\xbf"
_ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_GERMAN_DATE = re.compile(r"(\d{1,2})\.(\d{1,2})\.(\d{4})")
_EXCEL_SEP = re.compile(r"sep=([;,])")
# Undecodable bytes survive decoding as lone surrogates U+DC80..U+DCFF (surrogateescape),
# so one bad row can be reported by line instead of failing the whole file.
_UNDECODABLE = re.compile("[\udc80-\udcff]")


@dataclass(frozen=True)
class HrRecord:
    """One valid row. Fields whose column is not mapped are None."""

    line: int
    employee_id: str
    localpart: str | None = None
    display_name: str | None = None
    email: str | None = None
    department: str | None = None
    location: str | None = None
    manager_id: str | None = None
    groups: frozenset[str] = frozenset()
    #: None when the file has no status column.
    status: Status | None = None
    leave_date: date | None = None
    language: str | None = None


@dataclass(frozen=True)
class HrRead:
    records: tuple[HrRecord, ...]
    problems: tuple[SourceProblem, ...]
    #: For locations: "employees.csv".
    file_name: str
    source: str


def parse_leave_date(text: str) -> date:
    """`YYYY-MM-DD` or `DD.MM.YYYY`; raises ValueError otherwise (also for 31.02.)."""
    iso = _ISO_DATE.fullmatch(text)
    if iso:
        return date(int(iso[1]), int(iso[2]), int(iso[3]))
    german = _GERMAN_DATE.fullmatch(text)
    if german:
        return date(int(german[3]), int(german[2]), int(german[1]))
    raise ValueError(text)


def _detect_delimiter(first_line: str) -> str:
    # The delimiter that splits the header into more columns wins; a one-column header
    # reads the same either way.
    counts = {d: len(next(csv.reader([first_line], delimiter=d), [])) for d in (";", ",")}
    return ";" if counts[";"] > counts[","] else ","


def _read_text(config: HrCsvConfig) -> str:
    try:
        data = config.path.read_bytes()
    except OSError as exc:
        raise DirectoryUnavailableError(
            f"cannot read HR file {config.path}: {exc.strerror or exc}"
        ) from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DirectorySourceError(
            f"{config.path}: the file is UTF-16; export it as UTF-8 (with or without BOM)"
        )
    if data.startswith(_BOM):
        data = data[len(_BOM):]
    return data.decode("utf-8", errors="surrogateescape")


def _bad_bytes(value: str) -> str:
    """The first few undecodable bytes, e.g. "0xf6 0xdf" for Latin-1 "öß"."""
    bad = [f"0x{ord(c) - 0xDC00:02x}" for c in value if 0xDC80 <= ord(c) <= 0xDCFF]
    return " ".join(list(dict.fromkeys(bad))[:3])


class _RowError(Exception):
    pass


class _Row:
    """One CSV row with the header index, reading cells by role."""

    def __init__(self, config: HrCsvConfig, index: dict[str, int], cells: list[str]) -> None:
        self._config = config
        self._index = index
        self._cells = cells

    def get(self, role: str) -> str | None:
        header: str | None = getattr(self._config.columns, role)
        if header is None:
            return None
        value = self._cells[self._index[header]].strip()
        return value or None

    def required(self, role: str) -> str:
        value = self.get(role)
        if value is None:
            header = getattr(self._config.columns, role)
            raise _RowError(f"missing required value in column {header!r} ({role})")
        return value


def _status(config: HrCsvConfig, row: _Row) -> Status | None:
    header = config.columns.status
    if header is None:
        return None
    value = (row.get("status") or "").lower()
    if value in config.active_values:
        return Status.ACTIVE
    if value in config.inactive_values:
        return Status.INACTIVE
    if not value:
        raise _RowError(f"missing required value in column {header!r} (status)")
    allowed = ", ".join(sorted(config.active_values | config.inactive_values))
    raise _RowError(f"unknown status {value!r} in column {header!r} (expected one of: {allowed})")


def _record(config: HrCsvConfig, line: int, row: _Row, server_name: str | None) -> HrRecord:
    employee_id = row.required("employee_id")
    localpart: str | None = None
    display_name: str | None = None
    login: str | None
    if config.identity_source:
        login = row.required("localpart")
        display_name = row.required("display_name")
    else:
        login = row.get("localpart")
        display_name = row.get("display_name")
    if login is not None:
        try:
            localpart = normalise_localpart(login, server_name)
        except InvalidLocalpartError as exc:
            raise _RowError(f"{exc} (column {config.columns.localpart!r})") from None
    leave_text = row.get("leave_date")
    leave_date: date | None = None
    if leave_text is not None:
        try:
            leave_date = parse_leave_date(leave_text)
        except ValueError:
            raise _RowError(
                f"bad date {leave_text!r} in column {config.columns.leave_date!r} "
                "(expected YYYY-MM-DD or DD.MM.YYYY)"
            ) from None
    groups_text = row.get("groups")
    groups = frozenset(
        g.strip() for g in (groups_text or "").split(config.groups_separator) if g.strip()
    )
    return HrRecord(
        line=line, employee_id=employee_id, localpart=localpart, display_name=display_name,
        email=row.get("email"), department=row.get("department"), location=row.get("location"),
        manager_id=row.get("manager_id"), groups=groups, status=_status(config, row),
        leave_date=leave_date, language=preferred_language(row.get("language")),
    )


def _header_index(config: HrCsvConfig, header: list[str], line: int) -> dict[str, int]:
    name = config.path.name
    names = [h.strip() for h in header]
    for h in names:
        if _UNDECODABLE.search(h):
            raise DirectorySourceError(f"{name}:{line}: the header is not valid UTF-8 "
                                       f"(bytes {_bad_bytes(h)}); export the file as UTF-8")
    index: dict[str, int] = {}
    for i, h in enumerate(names):
        index.setdefault(h, i)
    mapped = config.columns.mapped()
    for role, column in mapped.items():
        if column not in index:
            present = ", ".join(repr(h) for h in names if h) or "none"
            raise DirectorySourceError(
                f"{name}: column {column!r} (mapped as directory.hr_csv.columns.{role}) "
                f"is missing from the file; its columns are: {present}"
            )
        if names.count(column) > 1:
            raise DirectorySourceError(f"{name}:{line}: column {column!r} appears more than once "
                                       "in the header")
    return index


def read_hr_csv(config: HrCsvConfig, server_name: str | None = None) -> HrRead:
    """Read and check the whole HR file; see the module docstring for what raises.

    With `server_name`, logins are also checked to fit into a Matrix ID on that server.
    """
    text = _read_text(config)
    name = config.path.name
    first_line, _, rest = text.partition("\n")
    first_line = first_line.rstrip("\r")
    skipped_lines = 0
    excel_sep = _EXCEL_SEP.fullmatch(first_line.strip())
    if excel_sep:
        # Excel writes "sep=;" above the header when asked to; it names the delimiter.
        text, skipped_lines = rest, 1
        first_line = rest.partition("\n")[0].rstrip("\r")
    if not first_line.strip():
        raise DirectorySourceError(f"{name}:{skipped_lines + 1}: the first line must be the "
                                   "header; it is empty")
    delimiter = config.delimiter or (excel_sep[1] if excel_sep else None) \
        or _detect_delimiter(first_line)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = next(reader)
        index = _header_index(config, header, skipped_lines + 1)
        rows: list[tuple[int, list[str]]] = []
        start = reader.line_num + 1
        for cells in reader:
            rows.append((skipped_lines + start, cells))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise DirectorySourceError(
            f"{name}:{skipped_lines + reader.line_num}: not a readable CSV file ({exc})"
        ) from None

    records: list[HrRecord] = []
    problems: list[SourceProblem] = []
    for line, cells in rows:
        if not any(c.strip() for c in cells):
            continue
        location = f"{name}:{line}"
        if len(cells) != len(header):
            problems.append(SourceProblem(
                location, f"expected {len(header)} fields separated by {delimiter!r}, "
                          f"got {len(cells)}; skipped"))
            continue
        row = _Row(config, index, cells)
        bad = [(h.strip(), c) for h, c in zip(header, cells, strict=True)
               if _UNDECODABLE.search(c)]
        if bad:
            employee_id = row.get("employee_id")
            columns = ", ".join(f"{h!r} (bytes {_bad_bytes(c)})" for h, c in bad)
            problems.append(SourceProblem(
                location, f"not valid UTF-8 in column {columns}; export the file as UTF-8; "
                          "skipped",
                employee_id=employee_id if employee_id and not _UNDECODABLE.search(employee_id)
                else None))
            continue
        try:
            records.append(_record(config, line, row, server_name))
        except _RowError as exc:
            login = row.get("localpart")
            problems.append(SourceProblem(
                location, f"{exc}; skipped", employee_id=row.get("employee_id"),
                localpart=login.lower() if login else None))

    # Rows already skipped still claim their id / login: a good row sharing one is held
    # back too, since two rows claim it.
    reasons = duplicate_reasons(
        [f"{name}:{r.line}" for r in records] + [p.location for p in problems],
        {"employee id": [r.employee_id for r in records] + [p.employee_id for p in problems],
         "login": [r.localpart for r in records] + [p.localpart for p in problems]},
    )
    for i, reason in sorted(reasons.items()):
        if i >= len(records):
            continue
        r = records[i]
        problems.append(SourceProblem(f"{name}:{r.line}", reason, employee_id=r.employee_id,
                                      localpart=r.localpart))
    kept = tuple(r for i, r in enumerate(records) if i not in reasons)
    problems.sort(key=lambda p: int(p.location.rsplit(":", 1)[1]))
    logger.info("HR file %s: %d rows read, %d skipped", name, len(kept), len(problems))
    return HrRead(records=kept, problems=tuple(problems), file_name=name,
                  source=f"hr_csv:{config.path}")


def hr_directory_read(read: HrRead) -> DirectoryRead:
    """The HR file as the only source: every record must carry login and name."""
    employees = []
    for r in read.records:
        if r.localpart is None or r.display_name is None:
            raise ValueError("hr_directory_read needs an HR config with identity_source=True")
        employees.append(Employee(
            employee_id=r.employee_id, localpart=r.localpart, display_name=r.display_name,
            email=r.email, department=r.department, location=r.location,
            manager_id=r.manager_id, groups=r.groups, status=r.status or Status.ACTIVE,
            leave_date=r.leave_date, language=r.language,
        ))
    return DirectoryRead(employees=tuple(employees), problems=read.problems, complete=True,
                         source=read.source)
