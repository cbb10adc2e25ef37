#!/bin/sh
# Entry point of the rabbitmq container: writes the application user into the definitions RabbitMQ
# imports at boot, then hands over to the image's own entry point.
#
# Why: when definitions are loaded at boot RabbitMQ skips creating its default user, so the user has
# to be part of the definitions. Only a salted hash of IMI_RABBITMQ_PASSWORD is written, inside the
# container; no credential is stored in the repository.
set -eu

: "${IMI_RABBITMQ_USER:?IMI_RABBITMQ_USER must be set}"
: "${IMI_RABBITMQ_PASSWORD:?IMI_RABBITMQ_PASSWORD must be set}"
case "$IMI_RABBITMQ_USER" in
    *[!A-Za-z0-9_.-]*)
        echo "IMI_RABBITMQ_USER may contain only letters, digits, '_', '.' and '-'" >&2
        exit 1
        ;;
esac

# rabbit_password_hashing_sha256: base64(salt ++ sha256(salt ++ password)) with a 4-byte random salt.
work=$(mktemp -d)
head -c 4 /dev/urandom > "$work/salt"
{ cat "$work/salt"; printf '%s' "$IMI_RABBITMQ_PASSWORD"; } | openssl dgst -sha256 -binary > "$work/digest"
password_hash=$(cat "$work/salt" "$work/digest" | base64 | tr -d '\n')
rm -rf "$work"

definitions_dir=/etc/rabbitmq/definitions.d
mkdir -p "$definitions_dir"
# The "management" tag lets operators use the UI to inspect and move dead-lettered messages.
cat > "$definitions_dir/20-user.json" <<JSON
{
  "vhosts": [{"name": "/"}],
  "users": [
    {
      "name": "$IMI_RABBITMQ_USER",
      "password_hash": "$password_hash",
      "hashing_algorithm": "rabbit_password_hashing_sha256",
      "tags": ["management"]
    }
  ],
  "permissions": [
    {"user": "$IMI_RABBITMQ_USER", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}
  ]
}
JSON
chmod 0644 "$definitions_dir/20-user.json"

exec docker-entrypoint.sh "$@"
