"""`make render STACK=...`: every file the stack renders, written into a
folder, so a pull request shows the text that changes, where a preview shows
only a digest label or an `[secret]` upload.

    python -m tests.render STACK [--out DIR]

The program runs offline under the mock runtime the tests use, with the
stack's file as it is (encrypted values as placeholders): no engine, no cloud,
no Docker. What it writes is deterministic, and holds no secret: every
generated credential is the mock runtime's stand-in, written as `<secret>`
wherever it occurs (what is derived from one, such as an ACL file's hash, is
derived from the stand-in).

- dev: each container's uploads at `<container>/<path>`, and its command and
  environment in `<container>/CONTAINER.json`;
- an AWS stack: the task definitions (`tasks/<family>.json`), the metrics
  collector's config (`tasks/<family>.collector.yml`), the managed
  Prometheus rules and Alertmanager definition, the Grafana dashboards, the
  RDS and ElastiCache parameter groups, every IAM role's trust and policy, and
  every resource policy (keys, buckets, topics, vaults).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from components.commands.check_config import StackFileError, read_stack_file
from components.config import ConfigError, parse_config
from tests.harness import CONTAINER_TYPE, Declared, Evaluation, evaluate, unwrap

ROOT = Path(__file__).resolve().parents[1]
PLACEHOLDER = "<secret>"


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True) + "\n"


def _container_files(container: Declared) -> Iterator[tuple[str, str]]:
    inputs = container.inputs
    name = str(inputs["name"])
    # Credentials in them are the mock runtime's stand-ins, replaced by
    # `rendered` wherever they occur; what is derived from them (an ACL
    # file's hashes) is derived from those stand-ins, never a real secret.
    for upload in unwrap(inputs.get("uploads") or []):
        yield f"{name}{upload['file']}", str(upload.get("content", ""))
    described = {
        "image": unwrap(inputs.get("image")),
        "command": unwrap(inputs.get("command")),
        "user": unwrap(inputs.get("user")),
        "envs": sorted(unwrap(inputs.get("envs") or [])),
    }
    yield f"{name}/CONTAINER.json", _json(described)


def _aws_files(ev: Evaluation) -> Iterator[tuple[str, str]]:
    for d in ev.declared:
        inputs = unwrap(d.inputs)
        if d.typ == "aws:ecs/taskDefinition:TaskDefinition":
            family = str(inputs["family"])
            containers = json.loads(inputs["containerDefinitions"])
            for c in containers:
                for variable in c.get("environment") or []:
                    if variable["name"] == "AOT_CONFIG_CONTENT":
                        yield f"tasks/{family}.collector.yml", str(variable["value"])
                        variable["value"] = f"(tasks/{family}.collector.yml)"
            yield f"tasks/{family}.json", _json(containers)
        elif d.typ == "aws:amp/ruleGroupNamespace:RuleGroupNamespace":
            yield f"prometheus/{d.name}.yml", str(inputs["data"])
        elif d.typ == "aws:amp/alertManagerDefinition:AlertManagerDefinition":
            yield f"alertmanager/{d.name}.yml", str(inputs["definition"])
        elif d.typ == "grafana:oss/dashboard:Dashboard":
            yield f"grafana/{d.name}.json", _json(json.loads(inputs["configJson"]))
        elif d.typ in ("aws:rds/parameterGroup:ParameterGroup", "aws:elasticache/parameterGroup:ParameterGroup"):
            kind = d.typ.split(":")[1].split("/")[0]
            lines = sorted(f"{p['name']} = {p['value']}" for p in inputs.get("parameters") or [])
            yield f"{kind}/{inputs['name']}.conf", "".join(line + "\n" for line in lines)
        elif isinstance(inputs.get("policy"), str) and inputs["policy"].startswith("{"):
            # Role policies, and the resource policies of keys, buckets, topics, vaults.
            folder = "iam" if d.typ.startswith("aws:iam/") else "policies"
            yield f"{folder}/{d.name}.json", _json(json.loads(inputs["policy"]))
        elif d.typ == "aws:iam/role:Role":
            yield f"iam/{d.name}.trust.json", _json(json.loads(inputs["assumeRolePolicy"]))


def rendered(stack: str, root: Path = ROOT) -> dict[str, str]:
    """Relative path → text, for every file the stack renders."""
    found = read_stack_file(root, stack)
    cfg = parse_config(found.raw, found.secret_keys, found.namespace, found.strays, stack=stack, root=root)
    ev = evaluate(found.raw, stack=stack, project=found.namespace)
    if cfg.target == "docker":
        files = dict(f for c in ev.of_type(CONTAINER_TYPE) for f in _container_files(c))
    else:
        files = dict(_aws_files(ev))
    secrets = ev.generated_secrets
    for path, text in files.items():
        for secret in secrets:
            text = text.replace(secret, PLACEHOLDER)
        files[path] = text
    return dict(sorted(files.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.render", description=__doc__.split("\n")[0])
    parser.add_argument("stack")
    parser.add_argument("--out", type=Path, help="default: rendered/<stack>")
    args = parser.parse_args(argv)
    out: Path = args.out or ROOT / "rendered" / args.stack
    try:
        files = rendered(args.stack)
    except StackFileError as exc:
        raise SystemExit(f"error: {exc}") from None
    except ConfigError as exc:
        raise SystemExit(f"error: Pulumi.{args.stack}.yaml: {exc}") from None
    if out.exists():
        shutil.rmtree(out)
    for path, text in files.items():
        target = out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    print(f"{len(files)} files of stack {args.stack} in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
