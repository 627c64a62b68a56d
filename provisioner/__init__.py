"""Hauspost provisioner: the `hauspost` CLI and service for IT admins and HR.

One subpackage per capability; imports point one way, from the command line down to the
core (`tests/unit/test_import_layers.py` keeps it so):

    cli → service → console → scim | announcements | review | gdpr → sync → rooms → accounts → homeserver
        → directory | policy → store (and its migrations) → settings → each package's config.py
        → core

- `cli/`: every click command and the demo; thin: parse, call one function, print.
- `service/`: `hauspost serve`: HTTP (SCIM, HR webhook), the job worker, schedules.
- `console/`: the web console for HR, communications, IT and auditors (under /console/).
- `review/`: the access review (who is in which room and why; unexplained accounts, admins).
- `gdpr/`: access export, erasure with pseudonyms, legal holds, the leaver's data timeline.
- `scim/`: the SCIM 2.0 endpoint; `announcements/`: encrypted announcements, acks, reports.
- `sync/`: one `plan`/`sync` run: directory → accounts → rooms, under the run lock.
- `rooms/`: org-chart rooms and spaces (plan, apply, run); `accounts/`: accounts (plan,
  apply, offboard, the plan policy, the bot's account).
- `homeserver/`: `init`'s data directory and rendered config, Synapse and its workers as
  processes, the admin-API client, the service account.
- `directory/`: LDAP, AD, HR CSV and SCIM records become `Employee`s; `policy/`: the room
  policies in `policies/*.yaml`; `store/`: state, audit log, job queue, run lock.
- `settings.py`: hauspost.yaml, composed from each package's `config.py` (a leaf that
  parses one section and imports only the core).
- The core stays at the top: `employee.py` (the shared records), `errors.py`, `actor.py`,
  `validation.py`, `private_files.py`, `servername.py`. They import nothing above them.
"""

__version__ = "0.1.0"
