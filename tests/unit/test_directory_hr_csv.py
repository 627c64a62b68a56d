"""The HR export: encodings, delimiters, column mapping, and every kind of bad row."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from provisioner.directory.config import HrColumns, HrCsvConfig
from provisioner.directory.errors import DirectorySourceError, DirectoryUnavailableError
from provisioner.directory.hr_csv import HrRecord, hr_directory_read, read_hr_csv
from provisioner.employee import Employee, SourceProblem, Status

GERMAN = HrColumns(employee_id="Personalnummer", localpart="Login", display_name="Name",
                   email="E-Mail", department="Abteilung", status="Status",
                   leave_date="Austrittsdatum")


def config(path: Path, columns: HrColumns = GERMAN, **kw: object) -> HrCsvConfig:
    return HrCsvConfig(path=path, columns=columns, **kw)  # type: ignore[arg-type]


def write(tmp_path: Path, text: str, *, bom: bool = False, encoding: str = "utf-8") -> Path:
    path = tmp_path / "employees.csv"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode(encoding))
    return path


GOOD_SEMICOLON = (
    "Personalnummer;Login;Name;E-Mail;Abteilung;Status;Austrittsdatum\n"
    "1001;anna;Anna Schmidt;anna@firma.de;Vertrieb;aktiv;\n"
    "1002;Ben;Ben Müller;;Lager;aktiv;31.03.2026\n"
    "1003;cara;\"Nowak; Cara\";cara@firma.de;IT;ausgetreten;2025-12-31\n"
)

EXPECTED_GOOD = (
    HrRecord(2, "1001", "anna", "Anna Schmidt", "anna@firma.de", "Vertrieb",
             status=Status.ACTIVE),
    HrRecord(3, "1002", "ben", "Ben Müller", None, "Lager", status=Status.ACTIVE,
             leave_date=date(2026, 3, 31)),
    HrRecord(4, "1003", "cara", "Nowak; Cara", "cara@firma.de", "IT", status=Status.INACTIVE,
             leave_date=date(2025, 12, 31)),
)


@pytest.mark.parametrize("bom", [False, True])
def test_semicolon_file_with_and_without_bom(tmp_path: Path, bom: bool) -> None:
    read = read_hr_csv(config(write(tmp_path, GOOD_SEMICOLON, bom=bom)))
    assert read.records == EXPECTED_GOOD
    assert read.problems == ()


@pytest.mark.parametrize("bom", [False, True])
def test_comma_file_with_crlf_line_ends(tmp_path: Path, bom: bool) -> None:
    text = (GOOD_SEMICOLON.replace(";", ",").replace('"Nowak, Cara"', '"Nowak, Cara"')
            .replace("\n", "\r\n"))
    read = read_hr_csv(config(write(tmp_path, text, bom=bom)))
    assert read.records == (EXPECTED_GOOD[0], EXPECTED_GOOD[1],
                            HrRecord(4, "1003", "cara", "Nowak, Cara", "cara@firma.de", "IT",
                                     status=Status.INACTIVE, leave_date=date(2025, 12, 31)))
    assert read.problems == ()


def test_configured_delimiter_overrides_detection(tmp_path: Path) -> None:
    # The header alone would look comma-separated; the config says ';'.
    text = "Personalnummer;Login;Name;Status,Extra\n1001;anna;Anna;aktiv,x\n"
    cols = HrColumns(employee_id="Personalnummer", localpart="Login", display_name="Name")
    read = read_hr_csv(config(write(tmp_path, text), cols, delimiter=";"))
    assert [r.employee_id for r in read.records] == ["1001"]


def test_every_bad_row_is_reported_by_line_and_the_rest_proceed(tmp_path: Path) -> None:
    text = (
        "Personalnummer;Login;Name;E-Mail;Abteilung;Status;Austrittsdatum\n"
        "1001;anna;Anna;;;aktiv;\n"            # 2 ok
        ";nobody;No Id;;;aktiv;\n"             # 3 missing id
        "1003;cara;;;;aktiv;\n"                # 4 missing name
        "1004;dora;Dora;;;aktiv;31.02.2026\n"  # 5 impossible date
        "1005;emil;Emil;;;aktiv;2026/03/01\n"  # 6 unknown date format
        "1006;fritz;Fritz;;;pausiert;\n"       # 7 unknown status
        "1007;jörg;Jörg;;;aktiv;\n"            # 8 login not a localpart
        "1008;hans;Hans;;;aktiv\n"             # 9 a field short
        "\n"                                   # 10 blank: ignored
        "1009;ida;Ida;;;;\n"                   # 11 empty status
        "1010;jan;\"Jan\nMulti\";;;aktiv;\n"   # 12-13 quoted newline is fine
    )
    read = read_hr_csv(config(write(tmp_path, text), identity_source=True))
    assert [(r.line, r.employee_id) for r in read.records] == [(2, "1001"), (12, "1010")]
    assert read.records[1].display_name == "Jan\nMulti"
    assert read.problems == (
        SourceProblem("employees.csv:3", "missing required value in column 'Personalnummer' "
                      "(employee_id); skipped", localpart="nobody"),
        SourceProblem("employees.csv:4", "missing required value in column 'Name' "
                      "(display_name); skipped", employee_id="1003", localpart="cara"),
        SourceProblem("employees.csv:5", "bad date '31.02.2026' in column 'Austrittsdatum' "
                      "(expected YYYY-MM-DD or DD.MM.YYYY); skipped",
                      employee_id="1004", localpart="dora"),
        SourceProblem("employees.csv:6", "bad date '2026/03/01' in column 'Austrittsdatum' "
                      "(expected YYYY-MM-DD or DD.MM.YYYY); skipped",
                      employee_id="1005", localpart="emil"),
        SourceProblem("employees.csv:7", "unknown status 'pausiert' in column 'Status' "
                      "(expected one of: active, aktiv, ausgetreten, inactive, inaktiv, left); "
                      "skipped", employee_id="1006", localpart="fritz"),
        SourceProblem("employees.csv:8", "login 'jörg' contains characters not allowed in a "
                      "Matrix ID: 'ö' (allowed: a-z 0-9 . _ = - /) (column 'Login'); skipped",
                      employee_id="1007", localpart="jörg"),
        SourceProblem("employees.csv:9", "expected 7 fields separated by ';', got 6; skipped"),
        SourceProblem("employees.csv:11", "missing required value in column 'Status' "
                      "(status); skipped", employee_id="1009", localpart="ida"),
    )


def test_non_utf8_row_is_reported_and_the_rest_proceed(tmp_path: Path) -> None:
    path = tmp_path / "employees.csv"
    path.write_bytes(
        b"Personalnummer;Login;Name\n1001;anna;Anna\n"
        + "1002;joerg;Jörg Weiß\n".encode("latin-1")
        + "1003;cara;Cara Lüders\n".encode()
        + "1004;dirk;Dirk Müller-".encode() + "Weiß\n".encode("latin-1")
    )
    cols = HrColumns(employee_id="Personalnummer", localpart="Login", display_name="Name")
    read = read_hr_csv(config(path, cols, identity_source=True))
    assert [r.employee_id for r in read.records] == ["1001", "1003"]
    assert read.records[1].display_name == "Cara Lüders"
    assert read.problems == (
        SourceProblem("employees.csv:3", "not valid UTF-8 in column 'Name' (bytes 0xf6 0xdf); "
                      "export the file as UTF-8; skipped", employee_id="1002"),
        # Valid UTF-8 ("ü") in the same cell is not blamed; only the Latin-1 byte is.
        SourceProblem("employees.csv:5", "not valid UTF-8 in column 'Name' (bytes 0xdf); "
                      "export the file as UTF-8; skipped", employee_id="1004"),
    )


def test_duplicate_ids_and_logins_report_every_copy(tmp_path: Path) -> None:
    text = ("Personalnummer,Login,Name\n"
            "1,anna,Anna\n2,ANNA,Anna Zwei\n3,ben,Ben\n3,carl,Carl\n4,dora,Dora\n")
    cols = HrColumns(employee_id="Personalnummer", localpart="Login", display_name="Name")
    read = read_hr_csv(config(write(tmp_path, text), cols, identity_source=True))
    assert [r.employee_id for r in read.records] == ["4"]
    assert read.problems == (
        SourceProblem("employees.csv:2", "duplicate login 'anna' (also at employees.csv:3); "
                      "skipped", employee_id="1", localpart="anna"),
        SourceProblem("employees.csv:3", "duplicate login 'anna' (also at employees.csv:2); "
                      "skipped", employee_id="2", localpart="anna"),
        SourceProblem("employees.csv:4", "duplicate employee id '3' (also at employees.csv:5); "
                      "skipped", employee_id="3", localpart="ben"),
        SourceProblem("employees.csv:5", "duplicate employee id '3' (also at employees.csv:4); "
                      "skipped", employee_id="3", localpart="carl"),
    )


def test_a_mapped_column_missing_from_the_file_is_an_error_naming_it(tmp_path: Path) -> None:
    text = "Personalnummer;Login;Name;E-Mail;Abteilung;Status\n1001;anna;Anna;;;aktiv\n"
    with pytest.raises(DirectorySourceError) as caught:
        read_hr_csv(config(write(tmp_path, text)))
    assert str(caught.value) == (
        "employees.csv: column 'Austrittsdatum' (mapped as directory.hr_csv.columns.leave_date)"
        " is missing from the file; its columns are: 'Personalnummer', 'Login', 'Name', "
        "'E-Mail', 'Abteilung', 'Status'")


def test_columns_the_mapping_does_not_name_are_ignored(tmp_path: Path) -> None:
    text = "Kostenstelle;Personalnummer;Status\n4711;1001;left\n"
    cols = HrColumns(employee_id="Personalnummer", status="Status")
    read = read_hr_csv(config(write(tmp_path, text), cols))
    assert read.records == (HrRecord(2, "1001", status=Status.INACTIVE),)


def test_utf16_file_is_refused_with_advice(tmp_path: Path) -> None:
    path = write(tmp_path, "\ufeffPersonalnummer;Status\n", encoding="utf-16-le")
    with pytest.raises(DirectorySourceError, match="UTF-16; export it as UTF-8"):
        read_hr_csv(config(path, HrColumns(employee_id="Personalnummer")))


def test_missing_file_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(DirectoryUnavailableError) as caught:
        read_hr_csv(config(tmp_path / "nope.csv"))
    assert str(caught.value) == (f"cannot read HR file {tmp_path / 'nope.csv'}: "
                                 "No such file or directory")


def test_empty_first_line_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DirectorySourceError, match=r"employees.csv:1: the first line must be"):
        read_hr_csv(config(write(tmp_path, "\nPersonalnummer\n1\n")))


def test_configured_status_values_and_empty_means_active(tmp_path: Path) -> None:
    text = "id,state\n1,\n2,GONE\n3,here\n"
    cols = HrColumns(employee_id="id", status="state")
    read = read_hr_csv(config(write(tmp_path, text), cols,
                              active_values=frozenset({"", "here"}),
                              inactive_values=frozenset({"gone"})))
    assert [(r.employee_id, r.status) for r in read.records] == [
        ("1", Status.ACTIVE), ("2", Status.INACTIVE), ("3", Status.ACTIVE)]


def test_groups_column_is_split(tmp_path: Path) -> None:
    text = "id;login;name;groups\n1;anna;Anna; Sales | Berlin ||\n"
    cols = HrColumns(employee_id="id", localpart="login", display_name="name", groups="groups")
    read = read_hr_csv(config(write(tmp_path, text), cols, identity_source=True))
    assert read.records[0].groups == frozenset({"Sales", "Berlin"})


def test_hr_as_the_only_source_gives_employees(tmp_path: Path) -> None:
    read = hr_directory_read(read_hr_csv(config(write(tmp_path, GOOD_SEMICOLON),
                                                identity_source=True)))
    assert read.complete is True
    assert read.employees == (
        Employee("1001", "anna", "Anna Schmidt", "anna@firma.de", "Vertrieb"),
        Employee("1002", "ben", "Ben Müller", None, "Lager", leave_date=date(2026, 3, 31)),
        Employee("1003", "cara", "Nowak; Cara", "cara@firma.de", "IT", status=Status.INACTIVE,
                 leave_date=date(2025, 12, 31)),
    )
    assert read.source == f"hr_csv:{tmp_path / 'employees.csv'}"


def test_broken_quoting_stops_the_whole_file_with_its_line(tmp_path: Path) -> None:
    # An unbalanced quote would swallow the following rows unnoticed; refuse the file.
    text = "Personalnummer;Status\n1001;aktiv\n1002;\"aktiv\"x\n1003;left\n"
    cols = HrColumns(employee_id="Personalnummer", status="Status")
    with pytest.raises(DirectorySourceError) as caught:
        read_hr_csv(config(write(tmp_path, text), cols))
    assert str(caught.value) == ("employees.csv:3: not a readable CSV file "
                                 "(';' expected after '\"')")


def test_excel_sep_line_names_the_delimiter_and_lines_stay_physical(tmp_path: Path) -> None:
    # Excel's "sep=;" line is not the header; rows keep their physical line numbers.
    text = "sep=;\r\nPersonalnummer;Status\r\n1001;aktiv\r\n1002;weg\r\n"
    cols = HrColumns(employee_id="Personalnummer", status="Status")
    read = read_hr_csv(config(write(tmp_path, text, bom=True), cols))
    assert read.records == (HrRecord(3, "1001", status=Status.ACTIVE),)
    assert [p.location for p in read.problems] == ["employees.csv:4"]


def test_header_problems_name_the_header_line(tmp_path: Path) -> None:
    text = "sep=,\nid,id,Status\n1,1,aktiv\n"
    cols = HrColumns(employee_id="id", status="Status")
    with pytest.raises(DirectorySourceError) as caught:
        read_hr_csv(config(write(tmp_path, text), cols))
    assert str(caught.value) == "employees.csv:2: column 'id' appears more than once in the header"


def test_language_column_gives_each_person_a_language_code(tmp_path: Path) -> None:
    text = ("Personalnummer;Login;Name;Sprache\n1001;anna;Anna;Deutsch\n1002;ben;Ben;en-GB\n"
            "1003;cem;Cem;\n1004;dan;Dan;??\n")
    cols = HrColumns(employee_id="Personalnummer", localpart="Login", display_name="Name",
                     language="Sprache")
    read = read_hr_csv(config(write(tmp_path, text), cols, identity_source=True))
    assert read.problems == ()
    assert [(r.localpart, r.language) for r in read.records] == [
        ("anna", "de"), ("ben", "en"), ("cem", None), ("dan", None)]
    assert [e.language for e in hr_directory_read(read).employees] == ["de", "en", None, None]
