"""Critical announcements: encrypted, acknowledged by a deadline, reminded, reported.

See docs/announcements.md. `tick.run_tick(settings, now)` is the scheduler entry point.
"""
