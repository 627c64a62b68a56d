"""One `plan` / `sync` run: directory → accounts → rooms, under the run lock, audited.

`run.run_sync` reads the directory, plans accounts and rooms, guards, applies and
records; `config` is the `sync:` section of hauspost.yaml.
"""
