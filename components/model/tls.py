"""Where a server finds its certificate, its key and the CA that signed them."""

from __future__ import annotations

from dataclasses import dataclass

# What both servers and every client accept: TLS 1.2 and later.
MIN_TLS_VERSION = "TLSv1.2"


@dataclass(frozen=True)
class ServerTls:
    cert_file: str
    key_file: str
    ca_file: str

    @classmethod
    def in_dir(cls, directory: str) -> ServerTls:
        return cls(f"{directory}/server.crt", f"{directory}/server.key", f"{directory}/ca.crt")
