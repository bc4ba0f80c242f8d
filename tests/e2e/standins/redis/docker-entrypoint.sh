#!/bin/sh
# The official image's entrypoint contract: a first argument that is a flag or a
# .conf file means redis-server; as root, /data is handed to redis and the
# server is started as redis; a default umask tightens to 0077.
set -e
case "$1" in
    -*|*.conf) set -- redis-server "$@" ;;
esac
if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
    find . \! -user redis -exec chown redis '{}' +
    exec gosu redis "$0" "$@"
fi
[ "$(umask)" = 0022 ] && umask 0077
exec "$@"
