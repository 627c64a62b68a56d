#!/bin/sh
# Runs once, when the postgres volume is first initialised (docker-entrypoint-initdb.d).
# Synapse's database comes from POSTGRES_DB with the cluster's C collation (initdb
# --locale=C in POSTGRES_INITDB_ARGS): Synapse refuses any other collation.
# The provisioner's store gets a database of its own, owned by the same role.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
CREATE DATABASE hauspost ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;
SQL
