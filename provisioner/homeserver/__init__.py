"""The homeserver itself: `init`'s data directory and rendered config, Synapse's processes.

`data_dir.init_data_dir` writes homeserver.yaml (`homeserver_yaml`), the module entries
(`module_configs`), the workers layout (`workers`); `synapse_process` and
`worker_processes` run Synapse supervised; `synapse_admin` is the admin-API client every
capability uses; `service_account` bootstraps and holds the provisioner's own account.
"""
