"""The policy pack through Pulumi's analyzer protocol: launched as the
language host launches it, configured as the engine configures it, and fed
both stacks in the engine's own form, during `pulumi up` (everything known)
and during a first `pulumi preview` (every computed value unknown)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from wondernest_policies import aws

from tests.harness import evaluate, stack_config
from tests.policy_analyzer import Analyzer, Diagnostic, EngineResource, engine_form, policy_analyzer
from tests.test_policies import as_resources, violations
from tests.test_policies_aws import MUTATIONS
from tests.test_stack_prod import CERT, prod_config

ROOT = Path(__file__).resolve().parents[1]
FULL_PROD = {
    "domainName": "api.example.com",
    "certificateArn": CERT,
    "adminBastion": True,
    "backupCopyRegion": "eu-central-1",
    "dbReadReplicas": 1,
    "dbReplicaInstanceClass": "db.r6g.large",
}
# Mutations a first preview cannot see: the mutated value sits inside a
# value computed from resources not created yet (a task's container
# definitions, a policy document naming ARNs), or the rule must read such a
# value to know what it is looking at (a secret's content). `pulumi up`
# judges them once known; policies/README.md lists them.
DECIDED_AT_UP: dict[str, set[str]] = {
    "task role allowed all of S3": {"aws-policies-least-privilege", "aws-task-role-scoped"},
    "API task role reaching another stack's queue": {"aws-task-role-scoped"},
    "dumps readable by anyone": {"aws-policies-least-privilege", "aws-task-role-scoped"},
    "a token pasted under an innocent name": {"aws-ecs-task-hardened"},
    "a password on the command line": {"aws-ecs-task-hardened"},
    "a capability added": {"aws-ecs-task-hardened"},
    "app credentials never rotated": {"aws-database-credentials-rotate"},
    "the API pinned to its first password": {"aws-database-credentials-rotate"},
    "signing keys never rotated": {"aws-secrets-rotate"},
    "the API pinned to the first signing keys": {"aws-secrets-rotate"},
}


def full(config: dict[str, Any]) -> dict[str, Any]:
    return {f"wondernest:{key}": value for key, value in config.items()}


def graph(
    config: dict[str, Any], stack: str, *, preview: bool, secret_keys: list[str] | None = None
) -> list[EngineResource]:
    ev = evaluate(config, stack=stack, preview=preview, secret_keys=secret_keys)
    return engine_form(ev.declared, stack=stack, project="wondernest", config=full(config))


def named(diagnostics: Sequence[Diagnostic], level: str = "mandatory") -> dict[str, list[str]]:
    """Policy → the names of the resources it reports (each message starts
    with the rule's description, then `<name>: ...`)."""
    found: dict[str, list[str]] = {}
    for d in diagnostics:
        if d.level == level:
            found.setdefault(d.policy, []).append(d.message.split("\n", 1)[1].split(":", 1)[0])
    return {policy: sorted(names) for policy, names in found.items()}


@pytest.fixture(scope="module")
def prod_preview() -> Iterator[tuple[Analyzer, list[EngineResource]]]:
    config = prod_config(FULL_PROD)
    with policy_analyzer(stack="prod", project="wondernest", config=full(config), dry_run=True) as analyzer:
        yield analyzer, graph(config, "prod", preview=True)


@pytest.mark.parametrize("preview", [False, True], ids=["up", "preview"])
@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_both_stacks_pass_the_pack_through_the_analyzer(stack: str, preview: bool) -> None:
    config = prod_config(FULL_PROD) if stack == "prod" else stack_config()
    resources = graph(config, stack, preview=preview)
    with policy_analyzer(stack=stack, project="wondernest", config=full(config), dry_run=preview) as analyzer:
        diagnostics = analyzer.analyze(resources)
        assert {p.name for p in analyzer.info.policies} >= {"aws-rds-hardened", "docker-image-pinned"}
    assert named(diagnostics) == {}
    # Nothing judged "can't run during preview": every rule decided what it could.
    assert not [d for d in diagnostics if "during preview" in d.message]
    if stack == "dev":
        # The one advisory rule, on exactly the containers the direct evaluation reports.
        direct = violations(as_resources(evaluate(config)))
        assert named(diagnostics, "advisory") == direct


def test_the_engine_urns_carry_the_whole_parent_chain() -> None:
    resources = graph(prod_config(FULL_PROD), "prod", preview=True)
    rds = next(r for r in resources if r.type == aws.RDS and r.name == "postgres")
    assert rds.urn == (
        "urn:pulumi:prod::wondernest::wondernest:aws:Platform$wondernest:aws:Database$aws:rds/instance:Instance::postgres"
    )
    parents = {r.urn for r in resources}
    assert all(r.parent in parents for r in resources if r.parent)


def test_a_public_unencrypted_database_is_refused_in_a_preview(prod_preview: Any) -> None:
    analyzer, resources = prod_preview
    mutated = [
        r.changed(lambda props: {**props, "publiclyAccessible": True, "storageEncrypted": False})
        if r.type == aws.RDS and r.name == "postgres"
        else r
        for r in resources
    ]
    rds = next(r for r in mutated if r.type == aws.RDS and r.name == "postgres")
    assert not isinstance(rds.properties["kmsKeyId"], str), "the key's ARN is unknown in a first preview"
    diagnostics = [d for d in analyzer.analyze(mutated) if d.level == "mandatory"]
    messages = [d.message for d in diagnostics if d.policy == "aws-rds-hardened"]
    assert len(messages) == 2, messages
    assert any("is publicly accessible" in m for m in messages)
    assert any("storage is not encrypted" in m for m in messages)


def mutate(resources: list[EngineResource], typ: str, name: str, change: Any) -> tuple[list[EngineResource], bool, str]:
    """The graph with one resource changed, whether the change is visible
    (False when it falls inside a value the preview does not know), and the
    changed resource's URN."""
    targets = [r for r in resources if r.type == typ and r.name == name]
    assert len(targets) == 1, f"{typ} {name}: {len(targets)} in the preview graph"
    visible = True
    mutated = []
    for r in resources:
        if r is targets[0]:
            if change is None:
                continue
            try:
                r = r.changed(change)
            except (TypeError, KeyError, AttributeError):
                visible = False
        mutated.append(r)
    return mutated, visible, targets[0].urn


@pytest.mark.parametrize(
    ("what", "typ", "name", "change", "expected"), MUTATIONS, ids=[m[0].replace(" ", "-") for m in MUTATIONS]
)
def test_each_mutation_of_prod_is_refused_in_a_preview_where_it_is_known(
    prod_preview: Any, what: str, typ: str, name: str, change: Any, expected: dict[str, list[str]]
) -> None:
    analyzer, resources = prod_preview
    mutated, visible, urn = mutate(resources, typ, name, change)
    # The unchanged resources' own Analyze answers are the clean graph's (none).
    found = named(analyzer.analyze(mutated, only=[urn]))
    if what in DECIDED_AT_UP:
        assert found == {}, what
        assert set(expected) == DECIDED_AT_UP[what]
    else:
        assert visible, f"{what}: the change fell inside an unknown value"
        assert found == expected, what


def test_the_readme_names_what_a_preview_cannot_decide() -> None:
    text = (ROOT / "policies" / "README.md").read_text()
    section = text.split("## During a preview", 1)[1].split("\n## ", 1)[0]
    for rule in set().union(*DECIDED_AT_UP.values()):
        assert f"`{rule}`" in section, rule
