"""Accounts: employees become Matrix accounts and leave again — plan, apply, offboard.

`plan.build_plan` is the pure planner (directory + links + accounts + policy -> actions),
`apply.apply_plan` carries a plan out through the admin API and the store, `offboard`
ends one person's access at once, `policy.policy_for` derives the plan policy from the
settings, `bot_account` keeps the announcement bot's account. The run that ties them to
the directory and the rooms is `provisioner.sync.run`.
"""
