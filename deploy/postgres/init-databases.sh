#!/bin/bash
# One database per service, owned by a login role of the same name. Only the owner (and the
# superuser) may connect: CONNECT is revoked from PUBLIC, so a service's credentials reach its own
# database and no other.
#
# The postgres image runs this once, from /docker-entrypoint-initdb.d, when it starts on an empty
# data directory. Changing a password later takes `ALTER ROLE <service> PASSWORD '...'`.
set -e

: "${IMI_REGISTRY_DB_PASSWORD:?IMI_REGISTRY_DB_PASSWORD must be set}"
: "${IMI_EXCHANGE_DB_PASSWORD:?IMI_EXCHANGE_DB_PASSWORD must be set}"
: "${IMI_NOTIFIER_DB_PASSWORD:?IMI_NOTIFIER_DB_PASSWORD must be set}"
: "${IMI_RETENTION_DB_PASSWORD:?IMI_RETENTION_DB_PASSWORD must be set}"

# Passwords travel as psql variables and are quoted by psql (:'name'), never spliced into SQL text.
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "${POSTGRES_DB:-$POSTGRES_USER}" \
    --set=registry_password="$IMI_REGISTRY_DB_PASSWORD" \
    --set=exchange_password="$IMI_EXCHANGE_DB_PASSWORD" \
    --set=notifier_password="$IMI_NOTIFIER_DB_PASSWORD" \
    --set=retention_password="$IMI_RETENTION_DB_PASSWORD" \
    <<'SQL'
CREATE ROLE registry LOGIN PASSWORD :'registry_password';
CREATE DATABASE registry OWNER registry;
REVOKE ALL ON DATABASE registry FROM PUBLIC;

CREATE ROLE exchange LOGIN PASSWORD :'exchange_password';
CREATE DATABASE exchange OWNER exchange;
REVOKE ALL ON DATABASE exchange FROM PUBLIC;

CREATE ROLE notifier LOGIN PASSWORD :'notifier_password';
CREATE DATABASE notifier OWNER notifier;
REVOKE ALL ON DATABASE notifier FROM PUBLIC;

CREATE ROLE retention LOGIN PASSWORD :'retention_password';
CREATE DATABASE retention OWNER retention;
REVOKE ALL ON DATABASE retention FROM PUBLIC;
SQL
