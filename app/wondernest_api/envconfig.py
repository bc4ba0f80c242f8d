"""Settings from the environment, with a `<NAME>_FILE` variant for every value.

Shared by the API and the backup tool (both in the same image): one loader,
one way of naming every bad variable at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

Model = TypeVar("Model", bound=BaseModel)
Port = Annotated[int, Field(ge=1, le=65535)]


class DatabaseSettings(BaseModel):
    """The PostgreSQL connection both programs read: DB_HOST, DB_PORT, DB_NAME,
    DB_USER, DB_PASSWORD(_FILE), DB_SSLMODE, DB_SSLROOTCERT (the CA file that
    `verify-ca`/`verify-full` check the server's certificate against)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    db_host: str
    db_port: Port = 5432
    db_name: str
    db_user: str
    db_password: SecretStr
    db_sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = "prefer"
    db_sslrootcert: str | None = None

    def conninfo(self, application_name: str) -> str:
        from psycopg.conninfo import make_conninfo

        verified = {} if self.db_sslrootcert is None else {"sslrootcert": self.db_sslrootcert}
        return make_conninfo(
            host=self.db_host,
            port=self.db_port,
            dbname=self.db_name,
            user=self.db_user,
            password=self.db_password.get_secret_value(),
            sslmode=self.db_sslmode,
            application_name=application_name,
            connect_timeout=5,
            **verified,
        )


class SettingsError(Exception):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


def _secret_variables(model: type[BaseModel]) -> set[str]:
    """The variables of the model's secrets: a missing one is pointed at its `_FILE` form."""
    return {
        name.upper()
        for name, field in model.model_fields.items()
        if SecretStr in (field.annotation, *get_args(field.annotation))
    }


def load_from_env(model: type[Model], env: Mapping[str, str]) -> Model:
    """Each field `name` reads `NAME`, or the file `NAME_FILE` names (not both);
    every problem is reported in one SettingsError."""
    secrets = _secret_variables(model)
    raw: dict[str, object] = {}
    problems: list[str] = []
    for name in model.model_fields:
        variable = name.upper()
        file_variable = f"{variable}_FILE"
        if file_variable in env:
            if variable in env:
                problems.append(f"{variable}: set either {variable} or {file_variable}, not both")
                continue
            path = Path(env[file_variable])
            try:
                raw[name] = path.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                problems.append(f"{file_variable}: cannot read {path}: {exc.strerror}")
        elif variable in env:
            raw[name] = env[variable]
    try:
        settings = model.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors():
            variable = str(err["loc"][0]).upper() if err["loc"] else "?"
            if err["type"] == "missing":
                hint = f" (or {variable}_FILE)" if variable in secrets else ""
                problems.append(f"{variable}: required and not set{hint}")
            else:
                problems.append(f"{variable}: {err['msg'].removeprefix('Value error, ')}")
        raise SettingsError(problems) from None
    if problems:
        raise SettingsError(problems)
    return settings
