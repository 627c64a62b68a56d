"""`hauspost serve`: the long-running service (SCIM endpoint, HR webhook, schedules)."""
