"""Duplicate logins and ids: every copy reported, none kept, skipped entries included."""

from __future__ import annotations

from pathlib import Path

from provisioner.directory.config import HrColumns, HrCsvConfig
from provisioner.directory.duplicates import reject_duplicates
from provisioner.directory.hr_csv import read_hr_csv
from provisioner.employee import Employee, SourceProblem


def test_unique_entries_are_kept_in_order() -> None:
    entries = [("a", Employee("1", "anna", "Anna")), ("b", Employee("2", "ben", "Ben"))]
    assert reject_duplicates(entries) == ((entries[0][1], entries[1][1]), ())


def test_three_copies_name_each_other_and_a_double_clash_gives_both_reasons() -> None:
    entries = [("a", Employee("1", "sam", "Sam")), ("b", Employee("2", "sam", "Sam")),
               ("c", Employee("2", "sam", "Sam")), ("d", Employee("4", "dora", "Dora"))]
    kept, problems = reject_duplicates(entries)
    assert kept == (entries[3][1],)
    assert [(p.location, p.message) for p in problems] == [
        ("a", "duplicate login 'sam' (also at b, c); skipped"),
        ("b", "duplicate employee id '2' (also at c); duplicate login 'sam' (also at a, c); "
              "skipped"),
        ("c", "duplicate employee id '2' (also at b); duplicate login 'sam' (also at a, b); "
              "skipped"),
    ]


def test_an_entry_sharing_a_login_with_a_skipped_entry_is_held_back_too() -> None:
    skipped = SourceProblem("uid=sam,ou=east", "missing required attribute 'employeeNumber' "
                            "(employee_id); skipped", localpart="sam")
    entries = [("uid=sam,ou=west", Employee("2", "sam", "Sam")),
               ("uid=eva,ou=west", Employee("3", "eva", "Eva"))]
    kept, problems = reject_duplicates(entries, [skipped])
    assert kept == (entries[1][1],)
    assert problems == (SourceProblem(
        "uid=sam,ou=west", "duplicate login 'sam' (also at uid=sam,ou=east); skipped",
        employee_id="2", localpart="sam"),)


def test_hr_row_sharing_an_id_with_a_bad_row_is_held_back(tmp_path: Path) -> None:
    path = tmp_path / "hr.csv"
    path.write_text("id;login;name;left\n7;anna;Anna;31.02.2026\n7;ben;Ben;\n8;cara;Cara;\n",
                    encoding="utf-8")
    config = HrCsvConfig(path=path, identity_source=True, columns=HrColumns(
        employee_id="id", localpart="login", display_name="name", leave_date="left"))
    read = read_hr_csv(config)
    assert [r.employee_id for r in read.records] == ["8"]
    assert [(p.location, p.message) for p in read.problems] == [
        ("hr.csv:2", "bad date '31.02.2026' in column 'left' (expected YYYY-MM-DD or "
                     "DD.MM.YYYY); skipped"),
        ("hr.csv:3", "duplicate employee id '7' (also at hr.csv:2); skipped"),
    ]
