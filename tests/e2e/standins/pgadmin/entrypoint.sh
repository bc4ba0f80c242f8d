#!/bin/bash
# The upstream pgAdmin image's entrypoint contract, for the stand-in:
#  - PGADMIN_DEFAULT_PASSWORD also read from PGADMIN_DEFAULT_PASSWORD_FILE;
#  - an empty config_distro.py gets the image's defaults plus one line per
#    PGADMIN_CONFIG_<KEY> variable (`KEY = value`, the value as Python);
#  - on a new /var/lib/pgadmin: the email and password are required, the
#    database and the user are set up, PGADMIN_SERVER_JSON_FILE's servers are
#    loaded for that user, and PGPASS_FILE is copied into the user's storage;
#  - gunicorn serves pgAdmin on [::]:80 (PGADMIN_LISTEN_ADDRESS/PORT).
# Not reproduced: postfix (no mail here; the stack sets PGADMIN_DISABLE_POSTFIX),
# TLS on 443 and the unix socket.
set -e

file_env() {
    local var="$1" file_var="${1}_FILE"
    if [ -n "${!var:-}" ] && [ -n "${!file_var:-}" ]; then
        printf >&2 'error: both %s and %s are set (but are exclusive)\n' "$var" "$file_var"
        exit 1
    fi
    if [ -z "${!var:-}" ] && [ -n "${!file_var:-}" ]; then
        export "$var"="$(< "${!file_var}")"
    fi
    unset "$file_var"
}

file_env PGADMIN_DEFAULT_PASSWORD
CONFIG_DISTRO_FILE_PATH="${PGADMIN_CUSTOM_CONFIG_DISTRO_FILE:-/pgadmin4/config_distro.py}"
if [ ! -s "$CONFIG_DISTRO_FILE_PATH" ]; then
    {
        echo "CA_FILE = '/etc/ssl/certs/ca-certificates.crt'"
        echo "LOG_FILE = '/dev/null'"
        for var in $(env | grep '^PGADMIN_CONFIG_' | cut -d= -f1); do
            echo "${var#PGADMIN_CONFIG_} = ${!var}"
        done
    } > "$CONFIG_DISTRO_FILE_PATH"
fi

if [ ! -f /var/lib/pgadmin/pgadmin4.db ]; then
    if [ -z "${PGADMIN_DEFAULT_EMAIL:-}" ] || [ -z "${PGADMIN_DEFAULT_PASSWORD:-}" ]; then
        echo 'You need to define the PGADMIN_DEFAULT_EMAIL and PGADMIN_DEFAULT_PASSWORD or PGADMIN_DEFAULT_PASSWORD_FILE environment variables.'
        exit 1
    fi
    cd /pgadmin4
    PGADMIN_SETUP_EMAIL="$PGADMIN_DEFAULT_EMAIL" PGADMIN_SETUP_PASSWORD="$PGADMIN_DEFAULT_PASSWORD" /venv/bin/python3 run_pgadmin.py
    PGADMIN_SERVER_JSON_FILE="${PGADMIN_SERVER_JSON_FILE:-/pgadmin4/servers.json}"
    if [ -f "$PGADMIN_SERVER_JSON_FILE" ]; then
        if [ "${PGADMIN_CONFIG_SERVER_MODE:-}" = False ]; then
            /venv/bin/python3 /pgadmin4/setup.py load-servers "$PGADMIN_SERVER_JSON_FILE"
        else
            /venv/bin/python3 /pgadmin4/setup.py load-servers "$PGADMIN_SERVER_JSON_FILE" --user "$PGADMIN_DEFAULT_EMAIL"
        fi
    fi
    if [ -n "${PGPASS_FILE:-}" ] && [ -f "$PGPASS_FILE" ]; then
        storage="/var/lib/pgadmin/storage/${PGADMIN_DEFAULT_EMAIL//@/_}"
        mkdir -p "$storage"
        cp "$PGPASS_FILE" "$storage/.pgpass"
        chmod 600 "$storage/.pgpass"
    fi
fi

TIMEOUT=$(cd /pgadmin4 && /venv/bin/python3 -c 'import config; print(config.SESSION_EXPIRATION_TIME * 60 * 60 * 24)')
exec /venv/bin/gunicorn --limit-request-line "${GUNICORN_LIMIT_REQUEST_LINE:-8190}" --timeout "$TIMEOUT" \
    --bind "${PGADMIN_LISTEN_ADDRESS:-[::]}:${PGADMIN_LISTEN_PORT:-80}" -w 1 --threads "${GUNICORN_THREADS:-25}" \
    --access-logfile "${GUNICORN_ACCESS_LOGFILE:--}" -c gunicorn_config.py run_pgadmin:app
