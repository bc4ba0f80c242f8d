"""How every command ends on an error."""

from __future__ import annotations


class CommandError(SystemExit):
    """Python prints a SystemExit's text on stderr and exits 1, so the operator
    sees `error: <message>` and `make` stops. Raised from any depth, it needs
    no return code threaded back to `main`."""

    def __init__(self, message: str) -> None:
        super().__init__(f"error: {message}")

    @property
    def message(self) -> str:
        return str(self.code).removeprefix("error: ")
