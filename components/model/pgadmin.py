"""pgAdmin's pre-registered server, so a developer lands on the database with no typing."""

from __future__ import annotations

import json

CONTAINER_SERVERS_FILE = "/pgadmin4/servers.json"
CONTAINER_UID = "5050"
CONTAINER_PORT = 80
# Delivered outside pgAdmin's storage: an upload would create the storage
# directories as root, and pgAdmin refuses to start without write access to them.
PGPASS_FILE = "/run/secrets/pgpass"
"""The image's entrypoint copies PGPASS_FILE into the login's storage as `.pgpass` on first start."""
CA_FILE = "/run/secrets/ca.crt"
"""Given to libpq as PGSSLROOTCERT: in server mode pgAdmin resolves a
servers.json SSLRootCert inside the login's storage only."""


def render_servers_json(*, name: str, group: str, host: str, port: int, database: str, username: str) -> str:
    servers = {
        "Servers": {
            "1": {
                "Name": name,
                "Group": group,
                "Host": host,
                "Port": port,
                "MaintenanceDB": database,
                "Username": username,
                # The server's certificate chains to the stack's CA (PGSSLROOTCERT) and names the host.
                "SSLMode": "verify-full",
                # Relative to the login's storage, where the entrypoint copied PGPASS_FILE.
                "PassFile": "/.pgpass",
            }
        }
    }
    return json.dumps(servers, indent=2, sort_keys=True) + "\n"


def render_pgpass(*, host: str, port: int, database: str, username: str, password: str) -> str:
    def esc(value: str) -> str:
        return value.replace("\\", "\\\\").replace(":", "\\:")

    return f"{esc(host)}:{port}:{esc(database)}:{esc(username)}:{esc(password)}\n"
