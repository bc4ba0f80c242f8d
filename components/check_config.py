"""Validates `Pulumi.<stack>.yaml` without the Pulumi CLI, with the program's own parser.

    python -m components.check_config dev            # exit 0 when valid, 1 with every bad key named
    python -m components.check_config dev --ports    # and, for a docker stack, its host ports free

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
from pathlib import Path
from typing import Any

import yaml

from components.config import NAMESPACE, ConfigError, PlatformConfig, parse_config, parse_raw_value
from components.preflight import check_ports, report
from components.spec.naming import Names

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


def read_stack_file(root: Path, stack: str) -> tuple[dict[str, Any], list[str], list[str]]:
    """The namespace's raw values, the top-level keys holding encrypted values
    (shown as [secret]) and the dotted paths of the encrypted values."""
    path = root / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        stacks = sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in root.glob("Pulumi.*.yaml"))
        raise StackFileError(f"no {path.name} in {root}; the stacks here are: {', '.join(stacks) or 'none'}")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise StackFileError(f"{path.name} is not valid YAML: {exc}") from None
    config = document.get("config", {}) if isinstance(document, dict) else None
    if not isinstance(config, dict):
        raise StackFileError(f"{path.name}: `config` must be a mapping of keys to values")
    prefix = f"{NAMESPACE}:"
    raw: dict[str, Any] = {}
    secret_keys: list[str] = []
    encrypted: list[str] = []
    for key, value in config.items():
        if not str(key).startswith(prefix):
            continue
        name = str(key)[len(prefix) :]
        found = list(_encrypted_paths(value, name))
        if found:
            secret_keys.append(str(key))
            encrypted += found
        value = _decrypt_placeholder(value)
        # The engine passes scalars to the program as text and structured values as JSON.
        raw[name] = parse_raw_value(value) if isinstance(value, str) else value
    return raw, secret_keys, encrypted


def check(root: Path, stack: str) -> tuple[PlatformConfig | None, list[str], list[str]]:
    """The parsed config (None when invalid), the problems, and the encrypted paths left unchecked."""
    raw, secret_keys, encrypted = read_stack_file(root, stack)
    try:
        return parse_config(raw, secret_keys), [], encrypted
    except ConfigError as exc:
        unchecked = tuple(f"{NAMESPACE}:{path} " for path in encrypted)
        problems = [p for p in exc.problems if not p.startswith(unchecked)]
        return None, problems, encrypted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m components.check_config", description=__doc__.split("\n")[0])
    parser.add_argument("stack", help="the stack whose Pulumi.<stack>.yaml to check, e.g. dev")
    parser.add_argument("--ports", action="store_true", help="also check that a docker stack's host ports are free")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the project directory (default: here)")
    parser.add_argument(
        "--container-prefix",
        action="store_true",
        help="print only the prefix of the stack's container names (<app>-<stack>-), for make logs and status",
    )
    args = parser.parse_args(argv)
    try:
        cfg, problems, encrypted = check(args.root, args.stack)
    except StackFileError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    if problems:
        sys.stderr.write(f"Pulumi.{args.stack}.yaml: {ConfigError(problems)}\n")
        return 1
    if args.container_prefix:
        # The app name is never a secret: read it even when other values are encrypted.
        app = (
            cfg.app_name
            if cfg is not None
            else str(
                read_stack_file(args.root, args.stack)[0].get(
                    "appName", PlatformConfig.model_fields["app_name"].default
                )
            )
        )
        sys.stdout.write(Names(app=app, stack=args.stack).resource("") + "\n")
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
        ports = {f"{NAMESPACE}:{key}": port for key, port in cfg.published_ports().items()}
        address = str(cfg.network.bind_address)
        return report(check_ports(address, ports, app=cfg.app_name, stack=args.stack))
    return 0


if __name__ == "__main__":
    sys.exit(main())
