"""Validates `Pulumi.<stack>.yaml` without the Pulumi CLI, with the program's own parser.

    python -m components.commands.check_config dev            # exit 0 when valid, 1 with every bad key named
    python -m components.commands.check_config dev --ports    # and, for a docker stack, its host ports free

The keys reach `parse_config` as the engine hands them to the program: structured
values as data, scalars as text, so the message is the one `pulumi up` would print.
Values stored encrypted (`pulumi config set --secret`) cannot be read without the
stack's secrets provider; they are passed as a placeholder and problems with them
are left for `pulumi up` to report, which the output says.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from components.commands.errors import CommandError
from components.commands.preflight import check_ports, report
from components.config import ConfigError, PlatformConfig, parse_config, parse_raw_value, project_keys, project_name
from components.model.database import database_spec
from components.model.naming import Names

ENCRYPTED = "encrypted-value"


class StackFileError(Exception):
    pass


def _encrypted_paths(value: Any, path: str) -> Iterator[str]:
    if isinstance(value, dict):
        if set(value) == {"secure"}:
            yield path
            return
        for key, inner in value.items():
            yield from _encrypted_paths(inner, f"{path}.{key}")


def _decrypt_placeholder(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"secure"}:
            return ENCRYPTED
        return {key: _decrypt_placeholder(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [_decrypt_placeholder(inner) for inner in value]
    return value


@dataclass(frozen=True)
class StackFile:
    namespace: str
    """The project's name in Pulumi.yaml: the namespace its keys are read from."""
    raw: dict[str, Any]
    """The project's values, namespace stripped, as the engine hands them over."""
    secret_keys: list[str]
    """The keys holding encrypted values (shown as [secret])."""
    encrypted: list[str]
    """The dotted paths of the encrypted values."""
    strays: list[str]
    """A problem for each key in a namespace nothing reads."""
    exposed: list[str]
    """A problem for each app secret stored in plain text beside encrypted ones:
    the engine marks the whole key secret, so only the file shows it."""


def read_stack_file(root: Path, stack: str) -> StackFile:
    path = root / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        stacks = sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in root.glob("Pulumi.*.yaml"))
        raise StackFileError(f"no {path.name} in {root}; the stacks here are: {', '.join(stacks) or 'none'}")
    try:
        namespace = project_name(root)
    except ConfigError as exc:
        raise StackFileError(exc.problems[0]) from None
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise StackFileError(f"{path.name} is not valid YAML: {exc}") from None
    config = document.get("config", {}) if isinstance(document, dict) else None
    if not isinstance(config, dict):
        raise StackFileError(f"{path.name}: `config` must be a mapping of keys to values")
    mine, strays = project_keys(config, namespace)
    raw: dict[str, Any] = {}
    secret_keys: list[str] = []
    encrypted: list[str] = []
    exposed: list[str] = []
    for name, value in mine.items():
        found = list(_encrypted_paths(value, name))
        if found:
            secret_keys.append(f"{namespace}:{name}")
            encrypted += found
        if found and name == "appSecrets" and isinstance(value, dict):
            exposed += [
                f"{namespace}:appSecrets.{secret}: stored in plain text in {path.name}; set it again with "
                f"pulumi config set --secret --path 'appSecrets.{secret}' <value>"
                for secret in value
                if f"appSecrets.{secret}" not in found
            ]
        value = _decrypt_placeholder(value)
        # The engine passes scalars to the program as text and structured values as JSON.
        raw[name] = parse_raw_value(value) if isinstance(value, str) else value
    return StackFile(namespace, raw, secret_keys, encrypted, strays, exposed)


def check(root: Path, stack: str) -> tuple[PlatformConfig | None, list[str], list[str]]:
    """The parsed config (None when invalid), the problems, and the encrypted paths left unchecked."""
    found = read_stack_file(root, stack)
    try:
        problems = [*found.strays, *found.exposed]
        return (
            parse_config(found.raw, found.secret_keys, found.namespace, problems, stack=stack, root=root),
            [],
            found.encrypted,
        )
    except ConfigError as exc:
        unchecked = tuple(f"{found.namespace}:{path} " for path in found.encrypted)
        problems = [p for p in exc.problems if not p.startswith(unchecked)]
        return None, problems, found.encrypted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m components.commands.check_config", description=__doc__.split("\n")[0]
    )
    parser.add_argument("stack", help="the stack whose Pulumi.<stack>.yaml to check, e.g. dev")
    parser.add_argument("--ports", action="store_true", help="also check that a docker stack's host ports are free")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the project directory (default: here)")
    parser.add_argument(
        "--container-prefix",
        action="store_true",
        help="print only the prefix of the stack's container names (<app>-<stack>-), for make logs and status",
    )
    parser.add_argument(
        "--import-args",
        action="store_true",
        help="print only the owner and schemas an import takes (make import-dump)",
    )
    args = parser.parse_args(argv)
    try:
        cfg, problems, encrypted = check(args.root, args.stack)
    except StackFileError as exc:
        raise CommandError(str(exc)) from None
    if problems:
        raise CommandError(f"Pulumi.{args.stack}.yaml: {ConfigError(problems)}")
    if args.container_prefix:
        # The app name is never a secret: read it even when other values are encrypted.
        app = (
            cfg.app_name
            if cfg is not None
            else str(
                read_stack_file(args.root, args.stack).raw.get(
                    "appName", PlatformConfig.model_fields["app_name"].default
                )
            )
        )
        sys.stdout.write(Names(app=app, stack=args.stack).resource("") + "\n")
        return 0
    if args.import_args:
        if cfg is None:
            raise CommandError(f"Pulumi.{args.stack}.yaml has encrypted values; decrypt with pulumi first")
        spec = database_spec(Names(app=cfg.app_name, stack=args.stack), cfg.postgres.schemas)
        sys.stdout.write(f"--owner {spec.role('migrator').name} --schemas {','.join(cfg.postgres.schemas)}\n")
        return 0
    if encrypted:
        sys.stdout.write(
            f"Pulumi.{args.stack}.yaml: {len(encrypted)} encrypted value(s) not checked here "
            f"({', '.join(encrypted)}); pulumi up checks them after decrypting\n"
        )
    if cfg is None:
        sys.stdout.write(f"Pulumi.{args.stack}.yaml: valid apart from the encrypted values\n")
        return 0
    sys.stdout.write(f"Pulumi.{args.stack}.yaml: valid (target {cfg.target}, appName {cfg.app_name})\n")
    if args.ports and cfg.target == "docker":
        namespace = read_stack_file(args.root, args.stack).namespace
        ports = {f"{namespace}:{key}": port for key, port in cfg.published_ports().items()}
        address = str(cfg.network.bind_address)
        return report(check_ports(address, ports, app=cfg.app_name, stack=args.stack))
    return 0


if __name__ == "__main__":
    sys.exit(main())
