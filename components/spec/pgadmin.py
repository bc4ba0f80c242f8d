"""pgAdmin's pre-registered server, so a developer lands on the database with no typing."""

from __future__ import annotations

import json

CONTAINER_SERVERS_FILE = "/pgadmin4/servers.json"
CONTAINER_UID = "5050"
CONTAINER_PORT = 80
STORAGE_ROOT = "/var/lib/pgadmin/storage"
PASSFILE_NAME = "pgpass"
CA_FILE_NAME = "ca.crt"


def storage_dir(login_email: str) -> str:
    """pgAdmin keeps each login's files in a directory named after the email with
    '@' replaced by '_'; in server mode servers.json paths are relative to it."""
    return f"{STORAGE_ROOT}/{login_email.replace('@', '_')}"


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
                # The server's certificate chains to the stack's CA and names the host.
                "SSLMode": "verify-full",
                "SSLRootCert": f"/{CA_FILE_NAME}",
                "PassFile": f"/{PASSFILE_NAME}",
            }
        }
    }
    return json.dumps(servers, indent=2, sort_keys=True) + "\n"


def render_pgpass(*, host: str, port: int, database: str, username: str, password: str) -> str:
    def esc(value: str) -> str:
        return value.replace("\\", "\\\\").replace(":", "\\:")

    return f"{esc(host)}:{port}:{esc(database)}:{esc(username)}:{esc(password)}\n"
