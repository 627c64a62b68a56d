"""Rooms and spaces from the org chart: plan, apply, and the room part of a sync run.

`plan` is the pure room planner (policies + members + room state -> actions), `apply`
carries room actions out through the admin API, `run` holds the adapters around them for
a `plan`/`sync` run and the service's room jobs. See docs/org-rooms.md.
"""
