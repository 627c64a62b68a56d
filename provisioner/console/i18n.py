"""The console's words in German and English: one small catalogue, German for `de` browsers.

Templates call `t("key")`; a key missing in a language is a test failure
(tests/unit/test_console_i18n.py), never a blank on the page.
"""

from __future__ import annotations

LANGUAGES = ("de", "en")
DEFAULT = "en"

CATALOGUE: dict[str, dict[str, str]] = {
    "app": {"de": "Hauspost-Konsole", "en": "Hauspost console"},
    "sign_in": {"de": "Anmelden", "en": "Sign in"},
    "sign_out": {"de": "Abmelden", "en": "Sign out"},
    "username": {"de": "Benutzername", "en": "Username"},
    "password": {"de": "Passwort", "en": "Password"},
    "sign_in_hint": {"de": "Mit Ihrem Firmenkonto (wie in Element).",
                     "en": "With your company account (as in Element)."},
    "bad_login": {"de": "Benutzername oder Passwort falsch.",
                  "en": "Wrong username or password."},
    "no_role": {"de": "Ihr Konto hat keine Rolle in der Konsole. Wenden Sie sich an die IT.",
                "en": "Your account has no console role. Ask IT."},
    "too_many": {"de": "Zu viele Versuche. Bitte in %(minutes)s Minuten erneut versuchen.",
                 "en": "Too many attempts. Try again in %(minutes)s minutes."},
    "homeserver_down": {"de": "Der Chat-Server antwortet nicht. Bitte später erneut versuchen.",
                        "en": "The chat server does not answer. Try again later."},
    "signed_in_as": {"de": "Angemeldet als", "en": "Signed in as"},
    "roles": {"de": "Rollen", "en": "Roles"},
    "home": {"de": "Übersicht", "en": "Overview"},
    "people": {"de": "Personen", "en": "People"},
    "sync": {"de": "Abgleich", "en": "Sync"},
    "announcements": {"de": "Ankündigungen", "en": "Announcements"},
    "review": {"de": "Zugriffsprüfung", "en": "Access review"},
    "search": {"de": "Suchen", "en": "Search"},
    "search_hint": {"de": "Name, Login, Personalnummer oder Abteilung",
                    "en": "Name, login, employee id or department"},
    "results": {"de": "%(count)s Treffer", "en": "%(count)s found"},
    "more_results": {"de": "Die ersten %(shown)s von %(count)s; bitte genauer suchen.",
                     "en": "The first %(shown)s of %(count)s; narrow the search."},
    "name": {"de": "Name", "en": "Name"},
    "login": {"de": "Login", "en": "Login"},
    "employee_id": {"de": "Personalnummer", "en": "Employee id"},
    "department": {"de": "Abteilung", "en": "Department"},
    "location": {"de": "Standort", "en": "Location"},
    "groups": {"de": "Gruppen", "en": "Groups"},
    "email": {"de": "E-Mail", "en": "E-mail"},
    "directory_status": {"de": "Status im Verzeichnis", "en": "Directory status"},
    "status_active": {"de": "aktiv", "en": "active"},
    "status_inactive": {"de": "ausgeschieden / gesperrt", "en": "left / disabled"},
    "leave_date": {"de": "Austrittsdatum", "en": "Leave date"},
    "account": {"de": "Konto", "en": "Account"},
    "account_active": {"de": "aktiv", "en": "active"},
    "account_deactivated": {"de": "deaktiviert", "en": "deactivated"},
    "no_account": {"de": "kein Konto", "en": "no account"},
    "held": {"de": "von Hand offboardet (bleibt gesperrt)",
             "en": "offboarded by hand (stays locked)"},
    "rooms": {"de": "Räume", "en": "Rooms"},
    "last_change": {"de": "Letzte Änderung", "en": "Last change"},
    "audit_trail": {"de": "Protokoll", "en": "Audit trail"},
    "when": {"de": "Wann", "en": "When"},
    "actor": {"de": "Wer", "en": "Who"},
    "action": {"de": "Aktion", "en": "Action"},
    "reason": {"de": "Grund", "en": "Reason"},
    "offboard": {"de": "Zugang beenden (Offboarding)", "en": "End access (offboard)"},
    "offboard_confirm": {"de": "Zugang von %(name)s jetzt beenden? Alle Sitzungen und Geräte "
                                "werden sofort abgemeldet.",
                         "en": "End %(name)s's access now? Every session and device is "
                               "signed out at once."},
    "confirm": {"de": "Ja, jetzt ausführen", "en": "Yes, do it now"},
    "cancel": {"de": "Abbrechen", "en": "Cancel"},
    "access_ended": {"de": "Zugang beendet in %(ms)s ms.", "en": "Access ended in %(ms)s ms."},
    "already_deactivated": {"de": "Das Konto war bereits deaktiviert.",
                            "en": "The account was already deactivated."},
    "rooms_left": {"de": "Aus allen Räumen entfernt.", "en": "Removed from every room."},
    "rooms_remaining": {"de": "Noch in %(count)s Räumen (der Server entfernt im Hintergrund).",
                        "en": "Still in %(count)s rooms (the server removes in the background)."},
    "rehire": {"de": "Wieder einstellen (Sperre aufheben)", "en": "Rehire (lift the hold)"},
    "rehired": {"de": "Sperre aufgehoben; Auftrag %(job)s aktiviert das Konto wieder.",
                "en": "Hold lifted; job %(job)s reactivates the account."},
    "reason_required": {"de": "Bitte einen Grund angeben.", "en": "Please give a reason."},
    "sync_runs": {"de": "Letzte Läufe", "en": "Last runs"},
    "pending_plan": {"de": "Anstehende Änderungen", "en": "Pending changes"},
    "show_plan": {"de": "Plan berechnen", "en": "Compute the plan"},
    "no_changes": {"de": "Keine Änderungen anstehend.", "en": "No changes pending."},
    "apply": {"de": "Anwenden", "en": "Apply"},
    "problems": {"de": "Fehlerhafte Verzeichniseinträge (übersprungen)",
                 "en": "Bad directory entries (skipped)"},
    "guard_trips": {"de": "Schutz vor Massendeaktivierung: %(count)s Deaktivierungen. Zum "
                          "Erzwingen „%(phrase)s“ eintippen.",
                    "en": "Mass-deactivation guard: %(count)s deactivations. Type "
                          "“%(phrase)s” to force."},
    "guard_refused": {"de": "Nicht angewendet: der Schutz vor Massendeaktivierung hat "
                            "ausgelöst und die Bestätigung fehlte oder war falsch.",
                      "en": "Not applied: the mass-deactivation guard tripped and the "
                            "confirmation was missing or wrong."},
    "applied": {"de": "%(applied)s von %(total)s Änderungen angewendet, %(failed)s "
                      "fehlgeschlagen.",
                "en": "Applied %(applied)s of %(total)s changes, %(failed)s failed."},
    "plan_changed": {"de": "Der Plan hat sich geändert, seit Sie ihn geprüft haben. Bitte den "
                           "neuen Plan prüfen.",
                     "en": "The plan changed since you reviewed it. Review the new plan."},
    "job_queue": {"de": "Warteschlange (SCIM/Webhook)", "en": "Job queue (SCIM/webhook)"},
    "status": {"de": "Status", "en": "Status"},
    "started": {"de": "Begonnen", "en": "Started"},
    "counts": {"de": "Zahlen", "en": "Counts"},
    "compose": {"de": "Neue Ankündigung", "en": "New announcement"},
    "targets": {"de": "An", "en": "To"},
    "body": {"de": "Text (Markdown)", "en": "Text (Markdown)"},
    "attachment": {"de": "Anhang", "en": "Attachment"},
    "at_most": {"de": "höchstens", "en": "at most"},
    "ack_by": {"de": "Bestätigung bis (Firmenzeit)", "en": "Acknowledge by (company time)"},
    "preview": {"de": "Vorschau", "en": "Preview"},
    "send": {"de": "Senden", "en": "Send"},
    "sent": {"de": "Gesendet an %(count)s Personen.", "en": "Sent to %(count)s people."},
    "reach": {"de": "Reichweite", "en": "Reach"},
    "sending_status": {"de": "Status", "en": "Status"},
    "state_sent": {"de": "gesendet", "en": "sent"},
    "state_sending": {"de": "wird gesendet", "en": "being sent"},
    "state_interrupted": {"de": "unterbrochen", "en": "interrupted"},
    "state_failed": {"de": "fehlgeschlagen", "en": "failed"},
    "finish_sending": {"de": "Senden abschließen", "en": "Finish sending"},
    "finish_sending_hint": {
        "de": "Was schon in den Räumen steht, wird erfasst und nicht noch einmal gepostet.",
        "en": "What is already in its rooms is recorded, not posted again."},
    "finish_sending_text": {
        "de": "Text (nur nötig, wenn die Ankündigung noch in keinem ihrer Räume steht)",
        "en": "Text (needed only when the announcement is in none of its rooms yet)"},
    "sending_finished": {"de": "Ankündigung fertig gesendet.",
                         "en": "Announcement finished."},
    "recipients": {"de": "Empfänger", "en": "Recipients"},
    "delivered": {"de": "Zugestellt", "en": "Delivered"},
    "seen": {"de": "Gelesen", "en": "Seen"},
    "acknowledged": {"de": "Bestätigt", "en": "Acknowledged"},
    "missing": {"de": "Noch nicht bestätigt", "en": "Not yet acknowledged"},
    "notices": {"de": "Erinnerungen und Zusammenfassungen", "en": "Reminders and summaries"},
    "kind": {"de": "Art", "en": "Kind"},
    "sent_at": {"de": "Gesendet", "en": "Sent"},
    "manager_summary": {"de": "Zusammenfassung an Vorgesetzte", "en": "Manager summary"},
    "printable": {"de": "Bericht zum Drucken", "en": "Printable report"},
    "more_in_csv": {"de": "… und %(count)s weitere (alle in der CSV-Datei und im Bericht).",
                    "en": "… and %(count)s more (all of them in the CSV and the report)."},
    "download_csv": {"de": "CSV herunterladen", "en": "Download CSV"},
    "deadline": {"de": "Frist", "en": "Deadline"},
    "none": {"de": "keine", "en": "none"},
    "run_review": {"de": "Prüfung jetzt durchführen", "en": "Run the review now"},
    "last_review": {"de": "Letzte Prüfung", "en": "Last review"},
    "never": {"de": "noch nie", "en": "never"},
    "members": {"de": "Mitglieder", "en": "Members"},
    "mandatory": {"de": "Pflicht (Richtlinie)", "en": "Mandatory (policy)"},
    "chosen": {"de": "Selbst beigetreten", "en": "Chosen"},
    "unexplained": {"de": "Konten ohne Personaldatensatz", "en": "Accounts no employee explains"},
    "missing_members": {"de": "Fehlt (laut Richtlinie)", "en": "Missing (policy)"},
    "unmanaged_rooms": {"de": "Weitere Räume (von Beschäftigten angelegt)",
                        "en": "Other rooms (made by employees)"},
    "admin_tokens": {"de": "Von Admins ausgestellte Zugänge („anmelden als“)",
                     "en": "Tokens issued by admins (\"log in as\")"},
    "not_available": {"de": "nicht verfügbar (Sitzungsmodul nicht geladen)",
                      "en": "not available (sessions module not loaded)"},
    "admins": {"de": "Server-Administratoren", "en": "Server admins"},
    "forbidden": {"de": "Dafür fehlt Ihnen die Rolle.", "en": "Your role does not allow this."},
    "bad_csrf": {"de": "Das Formular ist abgelaufen. Bitte neu laden.",
                 "en": "The form has expired. Reload the page."},
    "not_found": {"de": "Nicht gefunden.", "en": "Not found."},
    "error": {"de": "Fehler", "en": "Error"},
    "session_ended": {"de": "Ihre Sitzung ist beendet. Bitte neu anmelden.",
                      "en": "Your session has ended. Sign in again."},
    "language": {"de": "English", "en": "Deutsch"},
}


def pick_language(accept_language: str | None, cookie: str | None = None) -> str:
    """The cookie's choice, else the first supported language of Accept-Language."""
    if cookie in LANGUAGES:
        return cookie
    best: tuple[float, str] | None = None
    for part in (accept_language or "").split(","):
        tag, _, params = part.strip().partition(";")
        lang = tag.strip().lower().split("-")[0]
        if lang not in LANGUAGES:
            continue
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        if q <= 0:  # q=0: "not acceptable"; an unreadable weight counts as that too
            continue
        if best is None or q > best[0]:
            best = (q, lang)
    return best[1] if best else DEFAULT


def translate(lang: str, key: str, **values: object) -> str:
    text = CATALOGUE[key][lang]
    return text % values if values else text
