"""Directory sources: LDAP / Active Directory and an HR export become `Employee` records.

Kept free of imports on purpose: `provisioner.settings` imports `directory.config`, and
`directory.read` imports `provisioner.settings`. Import the submodules directly:

- `provisioner.directory.read.read_directory(settings)` -> `DirectoryRead` (the one entry point)
- `provisioner.directory.leave.effective_status(employee, now, tz)` for the planner
- `provisioner.directory.localpart.normalise_localpart(login)`
"""
