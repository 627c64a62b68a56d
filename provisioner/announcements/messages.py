"""Every word an employee or a reader of the reach report sees, in German and English.

One catalogue for the bot's messages (acknowledgement line, reminders, manager summary,
room name) and the report, so the console can show the same words. A key missing in one
language is a test failure (tests/unit/test_announce_messages.py), never a blank.

The language is `language:` in announcements.yaml; without it German for a company whose
time zone is German-speaking, else English.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from provisioner.announcements.local_time import format_local

LANGUAGES = ("de", "en")
_GERMAN_ZONES = frozenset({"Europe/Berlin", "Europe/Vienna", "Europe/Zurich"})

CATALOGUE: dict[str, dict[str, str]] = {
    # --- to employees --------------------------------------------------------------------
    "ack_line": {
        "de": "**Bitte bis {when} bestätigen:** reagieren Sie mit ✅ auf diese Nachricht.",
        "en": "**Please acknowledge by {when}:** react with ✅ to this message."},
    "reminder_open": {
        "de": "Erinnerung: „{title}“. Bitte bis {when} bestätigen: reagieren Sie mit ✅ auf "
              "die Ankündigung oder antworten Sie auf diese Nachricht mit „ok“.",
        "en": "Reminder: “{title}”. Please acknowledge by {when}: react with ✅ to the "
              "announcement, or reply “ok” to this message."},
    "reminder_passed": {
        "de": "Erinnerung: „{title}“. Die Frist ({when}) ist abgelaufen – bitte trotzdem "
              "bestätigen: reagieren Sie mit ✅ auf die Ankündigung oder antworten Sie auf "
              "diese Nachricht mit „ok“.",
        "en": "Reminder: “{title}”. The deadline ({when}) has passed – please still "
              "acknowledge: react with ✅ to the announcement, or reply “ok” to this "
              "message."},
    "summary_one": {
        "de": "„{title}“ (Frist {when}): 1 Person aus Ihrem Team hat noch nicht bestätigt:",
        "en": "“{title}” (deadline {when}): 1 of your team has not acknowledged yet:"},
    "summary_many": {
        "de": "„{title}“ (Frist {when}): {count} Personen aus Ihrem Team haben noch nicht "
              "bestätigt:",
        "en": "“{title}” (deadline {when}): {count} of your team have not acknowledged yet:"},
    "room_name": {"de": "📢 Ankündigung {when}", "en": "📢 Announcement {when}"},
    # --- the reach report ----------------------------------------------------------------
    "report_title": {"de": "Reichweite der Ankündigung {id}",
                     "en": "Reach of announcement {id}"},
    "announcement": {"de": "Ankündigung {id}", "en": "Announcement {id}"},
    "as_of": {"de": "Stand", "en": "As of"},
    "time_zone": {"de": "Zeitzone", "en": "Time zone"},
    "sent": {"de": "Gesendet", "en": "Sent"},
    "deadline": {"de": "Frist", "en": "Deadline"},
    "deadline_passed": {"de": "abgelaufen", "en": "passed"},
    "deadline_open": {"de": "noch nicht abgelaufen", "en": "not yet passed"},
    "no_deadline": {"de": "keine (keine Bestätigung verlangt)",
                    "en": "none (no acknowledgement asked)"},
    "recipients": {"de": "Empfänger", "en": "Recipients"},
    "delivered": {"de": "Zugestellt", "en": "Delivered"},
    "seen": {"de": "Gesehen", "en": "Seen"},
    "acknowledged": {"de": "Bestätigt", "en": "Acknowledged"},
    "not_tracked": {"de": "nicht erfasst", "en": "not tracked"},
    "chart_title": {"de": "Bestätigungen im Zeitverlauf", "en": "Acknowledgements over time"},
    "chart_deadline": {"de": "Frist", "en": "deadline"},
    "chart_as_of": {"de": "Stand", "en": "as of"},
    "by_department": {"de": "Nach Abteilung", "en": "By department"},
    "department": {"de": "Abteilung", "en": "Department"},
    "no_department": {"de": "(keine)", "en": "(none)"},
    "per_person": {"de": "Pro Person", "en": "Per person"},
    "name": {"de": "Name", "en": "Name"},
    "manager": {"de": "Vorgesetzte(r)", "en": "Manager"},
    "seen_at": {"de": "Gesehen am", "en": "Seen at"},
    "acknowledged_at": {"de": "Bestätigt am", "en": "Acknowledged at"},
    "via": {"de": "Wie", "en": "Via"},
    # Words, not the emoji: a printed report must not depend on an emoji font.
    "via_reaction": {"de": "Reaktion", "en": "reaction"},
    "via_reply": {"de": "Antwort „ok“", "en": "reply “ok”"},
    "reminders_sent": {"de": "Erinnerungen", "en": "Reminders"},
    "yes_devices_one": {"de": "ja (1 Gerät)", "en": "yes (1 device)"},
    "yes_devices_many": {"de": "ja ({count} Geräte)", "en": "yes ({count} devices)"},
    "no": {"de": "nein", "en": "no"},
    "missing": {"de": "Nicht bestätigt ({count})", "en": "Missing ({count})"},
    "not_delivered": {"de": "(nicht zugestellt)", "en": "(not delivered)"},
    "notices": {"de": "Erinnerungen und Zusammenfassungen an Vorgesetzte",
                "en": "Reminders and manager summaries"},
    "no_notices": {"de": "Keine gesendet.", "en": "None sent."},
    "to": {"de": "An", "en": "To"},
    "people_one": {"de": "1 Person", "en": "1 person"},
    "people_many": {"de": "{count} Personen", "en": "{count} people"},
    "what": {"de": "Was", "en": "What"},
    "stage_reminder": {"de": "Erinnerung ({hours} h vor der Frist)",
                       "en": "reminder ({hours} h before the deadline)"},
    "stage_reminder_at_deadline": {"de": "Erinnerung (zur Frist)",
                                   "en": "reminder (at the deadline)"},
    "stage_summary": {"de": "Zusammenfassung an Vorgesetzte", "en": "manager summary"},
    "notice_failed": {"de": "fehlgeschlagen: {error}", "en": "failed: {error}"},
    "notice_pending": {"de": "vorgemerkt, nicht gesendet", "en": "claimed, not sent"},
    "purged": {"de": "Personenbezogene Daten nach Ablauf der Aufbewahrungsfrist gelöscht; "
                     "nur die Summen bleiben.",
               "en": "Per-person data deleted after the retention period; counts only."},
    "nothing_per_person": {"de": "Keine Bestätigung verlangt: pro Person wird nichts "
                                 "gespeichert.",
                           "en": "No acknowledgement asked: nothing is kept per person."},
    "status": {"de": "Status", "en": "Status"},
    "status_interrupted": {
        "de": "beim Senden unterbrochen: in {posted} von {rooms} Räumen gepostet, soweit "
              "erfasst; abschließen mit {command}",
        "en": "interrupted while sending: posted in {posted} of {rooms} room(s) as far as "
              "recorded; finish it with {command}"},
    "status_failed": {
        "de": "beim Senden fehlgeschlagen: in {posted} von {rooms} Räumen gepostet, soweit "
              "erfasst; abschließen mit {command}",
        "en": "failed while sending: posted in {posted} of {rooms} room(s) as far as "
              "recorded; finish it with {command}"},
    "status_sending": {
        "de": "wird gerade gesendet: in {posted} von {rooms} Räumen gepostet ({command} "
              "erst, wenn es unterbrochen ist)",
        "en": "being sent now: posted in {posted} of {rooms} room(s) ({command} only once "
              "it was interrupted)"},
    "footer_hash": {"de": "SHA-256 der personenbezogenen CSV",
                    "en": "SHA-256 of the per-person CSV"},
    "footer_check": {"de": "Prüfen einer Kopie: {command} | sha256sum",
                     "en": "To check a copy: {command} | sha256sum"},
}


def text(key: str, language: str, **values: object) -> str:
    return CATALOGUE[key][language].format(**values)


def default_language(tz: ZoneInfo) -> str:
    return "de" if tz.key in _GERMAN_ZONES else "en"


@dataclass(frozen=True)
class CompanyLocale:
    """The company's clock and language: how every recipient-facing text is written."""

    time_zone: ZoneInfo
    language: str

    def when(self, dt: datetime) -> str:
        return format_local(dt, self.time_zone, self.language)

    def for_person(self, language: str | None) -> CompanyLocale:
        """The company's clock in the person's own language, where we speak it."""
        if language in LANGUAGES and language != self.language:
            return CompanyLocale(self.time_zone, language)
        return self


UTC_ENGLISH = CompanyLocale(ZoneInfo("UTC"), "en")


def ack_line(deadline: datetime, locale: CompanyLocale) -> str:
    return text("ack_line", locale.language, when=locale.when(deadline))


def reminder_text(title: str, deadline: datetime, now: datetime, locale: CompanyLocale) -> str:
    key = "reminder_passed" if now >= deadline else "reminder_open"
    return text(key, locale.language, title=title, when=locale.when(deadline))


def summary_text(title: str, deadline: datetime, names: list[str], locale: CompanyLocale) -> str:
    key = "summary_one" if len(names) == 1 else "summary_many"
    head = text(key, locale.language, title=title, when=locale.when(deadline),
                count=len(names))
    return "\n".join([head, *(f"- {n}" for n in names)])


def room_name(sent_at: datetime, locale: CompanyLocale) -> str:
    return text("room_name", locale.language, when=locale.when(sent_at))
