#!/usr/bin/env bash
# The official postgres image's entrypoint contract, for the stand-in:
#  - POSTGRES_PASSWORD, POSTGRES_USER, POSTGRES_DB, POSTGRES_INITDB_ARGS, each
#    also read from a file named by <VAR>_FILE (both set is an error);
#  - a first argument that is a flag means `postgres <flags>`;
#  - as root: PGDATA and the socket directory are handed to postgres and the
#    script re-runs itself as postgres;
#  - an empty PGDATA is initialised: initdb with the password, a `host all all
#    all <password_encryption>` line appended to pg_hba.conf, then a temporary
#    server on the socket only, started with the command's own settings,
#    creates POSTGRES_DB and runs /docker-entrypoint-initdb.d, and is stopped;
#  - a PGDATA with PG_VERSION is used as it is;
#  - then the command replaces the shell.
set -Eeo pipefail

file_env() {
    local var="$1" file_var="${1}_FILE" default="${2:-}"
    if [ -n "${!var:-}" ] && [ -n "${!file_var:-}" ]; then
        printf >&2 'error: both %s and %s are set (but are exclusive)\n' "$var" "$file_var"
        exit 1
    fi
    local value="$default"
    if [ -n "${!var:-}" ]; then
        value="${!var}"
    elif [ -n "${!file_var:-}" ]; then
        value="$(< "${!file_var}")"
    fi
    export "$var"="$value"
    unset "$file_var"
}

setup_env() {
    file_env POSTGRES_PASSWORD
    file_env POSTGRES_USER postgres
    file_env POSTGRES_DB "$POSTGRES_USER"
    file_env POSTGRES_INITDB_ARGS
    : "${POSTGRES_HOST_AUTH_METHOD:=}"
    DATABASE_ALREADY_EXISTS=
    if [ -s "$PGDATA/PG_VERSION" ]; then
        DATABASE_ALREADY_EXISTS=true
    fi
}

create_directories() {
    mkdir -p "$PGDATA"
    chmod 00700 "$PGDATA" || :
    mkdir -p /var/run/postgresql || :
    chmod 03775 /var/run/postgresql || :
    if [ "$(id -u)" = 0 ]; then
        find "$PGDATA" \! -user postgres -exec chown postgres '{}' +
        find /var/run/postgresql \! -user postgres -exec chown postgres '{}' +
    fi
}

run_sql() {
    local runner=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)
    if [ -n "$POSTGRES_DB" ]; then
        runner+=(--dbname "$POSTGRES_DB")
    fi
    PGHOST= PGHOSTADDR= "${runner[@]}" "$@"
}

initialise() {
    if [ -z "$POSTGRES_PASSWORD" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
        echo >&2 'Error: Database is uninitialized and superuser password is not specified.'
        exit 1
    fi
    # An arbitrary --user uid gets a passwd entry through nss_wrapper, as upstream.
    if ! getent passwd "$(id -u)" > /dev/null; then
        NSS_WRAPPER_PASSWD="$(mktemp)" NSS_WRAPPER_GROUP="$(mktemp)"
        export LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libnss_wrapper.so NSS_WRAPPER_PASSWD NSS_WRAPPER_GROUP
        printf 'postgres:x:%s:%s:PostgreSQL:%s:/bin/false\n' "$(id -u)" "$(id -g)" "$PGDATA" > "$NSS_WRAPPER_PASSWD"
        printf 'postgres:x:%s:\n' "$(id -g)" > "$NSS_WRAPPER_GROUP"
    fi
    eval 'initdb --username="$POSTGRES_USER" --pwfile=<(printf "%s\n" "$POSTGRES_PASSWORD") '"$POSTGRES_INITDB_ARGS"
    if [ -n "${NSS_WRAPPER_PASSWD:-}" ]; then
        rm -f "$NSS_WRAPPER_PASSWD" "$NSS_WRAPPER_GROUP"
        unset LD_PRELOAD NSS_WRAPPER_PASSWD NSS_WRAPPER_GROUP
    fi

    local args=("$@")
    [ "${args[0]}" = postgres ] && args=("${args[@]:1}")
    local auth
    auth="$(postgres -C password_encryption "${args[@]}")"
    : "${POSTGRES_HOST_AUTH_METHOD:=$auth}"
    printf '\nhost all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >> "$PGDATA/pg_hba.conf"

    export PGPASSWORD="${PGPASSWORD:-$POSTGRES_PASSWORD}"
    NOTIFY_SOCKET= PGUSER="${PGUSER:-$POSTGRES_USER}" \
        pg_ctl -D "$PGDATA" -o "$(printf '%q ' "${args[@]}" -c listen_addresses='' -p "${PGPORT:-5432}")" -w start
    local exists
    exists="$(POSTGRES_DB= run_sql --dbname postgres --set db="$POSTGRES_DB" --tuples-only <<< "SELECT 1 FROM pg_database WHERE datname = :'db';")"
    if [ -z "$exists" ]; then
        POSTGRES_DB= run_sql --dbname postgres --set db="$POSTGRES_DB" <<< 'CREATE DATABASE :"db";'
    fi
    local f
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
            *.sh) if [ -x "$f" ]; then "$f"; else . "$f"; fi ;;
            *.sql) run_sql -f "$f" ;;
            *.sql.gz) gunzip -c "$f" | run_sql ;;
            *.sql.xz) xzcat "$f" | run_sql ;;
            *.sql.zst) zstd -dc "$f" | run_sql ;;
            *) [ -e "$f" ] && echo "$0: ignoring $f" ;;
        esac
    done
    PGUSER="${PGUSER:-postgres}" pg_ctl -D "$PGDATA" -m fast -w stop
    unset PGPASSWORD
    echo 'PostgreSQL init process complete; ready for start up.'
}

if [ "${1:0:1}" = - ]; then
    set -- postgres "$@"
fi
if [ "$1" = postgres ] && ! printf '%s\n' "$@" | grep -qxE -- "-\?|--help|--describe-config|-V|--version"; then
    setup_env
    create_directories
    if [ "$(id -u)" = 0 ]; then
        exec gosu postgres "${BASH_SOURCE[0]}" "$@"
    fi
    if [ -z "$DATABASE_ALREADY_EXISTS" ]; then
        initialise "$@"
    else
        echo 'PostgreSQL Database directory appears to contain a database; Skipping initialization'
    fi
fi
exec "$@"
