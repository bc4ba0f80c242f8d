"""The policy pack: every rule both ways, unknowns, and the whole dev stack."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from pulumi_policy import PolicyResourceOptions, ResourceValidationArgs, StackValidationArgs
from pulumi_policy.deserialize import deserialize_properties
from pulumi_policy.policy import PolicyCustomTimeouts, PolicyResource
from pulumi_policy.proxy import unknown_checking_proxy
from wondernest_policies.docker import CONTAINER, IMAGE, REMOTE_IMAGE, VOLUME
from wondernest_policies.model import Resource, Rule, Violation
from wondernest_policies.platform import NETWORK, ROLE
from wondernest_policies.registry import RULES, policies

from tests.harness import Evaluation, evaluate_once, stack_config

ROOT = Path(__file__).resolve().parents[1]
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
BY_ID = {rule.id: rule for rule in RULES}


def container(**overrides: Any) -> Resource:
    """A container that satisfies every container rule."""
    props: dict[str, Any] = {
        "name": "wondernest-dev-api",
        "image": "wondernest-api:0123456789abcdef",
        "user": "1001:1001",
        "healthcheck": {"tests": ["CMD", "true"]},
        "restart": "unless-stopped",
        "memory": 512,
        "privileged": False,
        "securityOpts": ["no-new-privileges:true"],
        "capabilities": {"drops": ["ALL"]},
        "readOnly": True,
        "envs": ["DB_PASSWORD_FILE=/run/secrets/db-password", "DB_HOST=postgres"],
        "ports": [{"internal": 8080, "external": 8080, "ip": "127.0.0.1"}],
        "labels": [{"label": "com.wondernest.component", "value": "api"}],
    }
    props.update(overrides)
    return Resource(CONTAINER, "api", "urn:pulumi:dev::wondernest::docker:index/container:Container::api", props)


def run(rule_id: str, resource: Resource, config: Mapping[str, Any] | None = None) -> list[Violation]:
    return BY_ID[rule_id].run_resource(resource, config or {})


# (rule, a compliant resource, a non-compliant one, words the message must contain)
RESOURCE_CASES: list[tuple[str, Resource, Resource, str]] = [
    (
        "docker-image-pinned",
        Resource(REMOTE_IMAGE, "redis-image", "urn:redis-image", {"name": "redis:7.4.1-bookworm"}),
        Resource(REMOTE_IMAGE, "redis-image", "urn:redis-image", {"name": "redis:latest"}),
        "latest",
    ),
    (
        "docker-image-pinned",
        Resource(IMAGE, "api-image", "urn:api-image", {"imageName": "wondernest-api:0123456789abcdef"}),
        Resource(IMAGE, "api-image", "urn:api-image", {"imageName": "wondernest-api"}),
        "not pinned",
    ),
    ("docker-image-pinned", container(), container(image="postgres"), "not pinned"),
    ("docker-container-non-root", container(), container(user="0:0"), "root"),
    ("docker-container-non-root", container(), container(user=None), "no user"),
    ("docker-container-healthcheck", container(), container(healthcheck=None), "no healthcheck"),
    ("docker-container-restart-policy", container(), container(restart="no"), "restart policy"),
    # A job `pulumi up` runs to its end: waited on until it exits, never restarted.
    (
        "docker-container-healthcheck",
        container(healthcheck=None, attach=True, mustRun=False, restart="no"),
        container(healthcheck=None, attach=False, mustRun=False, restart="no"),
        "no healthcheck",
    ),
    (
        "docker-container-restart-policy",
        container(healthcheck=None, attach=True, mustRun=False, restart="no"),
        container(healthcheck=None, attach=True, mustRun=False, restart="unless-stopped"),
        "runs once",
    ),
    ("docker-container-memory-limit", container(), container(memory=0), "memory limit"),
    ("docker-container-not-privileged", container(), container(privileged=True), "privileged"),
    ("docker-container-no-host-namespaces", container(), container(networkMode="host"), "networkMode"),
    ("docker-container-no-new-privileges", container(), container(securityOpts=[]), "no-new-privileges"),
    ("docker-container-capabilities-dropped", container(), container(capabilities={"drops": []}), "drop all"),
    (
        "docker-container-capabilities-dropped",
        container(capabilities={"drops": ["ALL"], "adds": ["NET_BIND_SERVICE"]}),
        container(capabilities={"drops": ["ALL"], "adds": ["SYS_ADMIN"]}),
        "SYS_ADMIN",
    ),
    ("docker-container-read-only-root", container(), container(readOnly=False), "writable"),
    ("secrets-not-in-env", container(), container(envs=["DB_PASSWORD=hunter2"]), "DB_PASSWORD"),
    ("secrets-not-in-env", container(), container(envs=["JWT_SECRET=abc"]), "JWT_SECRET"),
    (
        "secrets-not-in-env",
        container(),
        container(envs=["DATABASE_URL=postgres://app:hunter2@db/app"]),
        "URL with credentials",
    ),
    ("published-ports-loopback", container(), container(ports=[{"external": 8080, "ip": "0.0.0.0"}]), "0.0.0.0"),
    (
        "data-volume-protected",
        Resource(
            VOLUME,
            "postgres-data",
            "urn:v",
            {"labels": [{"label": "com.wondernest.holds-data", "value": "true"}]},
            protect=True,
        ),
        Resource(
            VOLUME, "postgres-data", "urn:v", {"labels": [{"label": "com.wondernest.holds-data", "value": "true"}]}
        ),
        "not protected",
    ),
    (
        "postgres-role-connection-limit",
        Resource(ROLE, "role-app", "urn:r", {"name": "wondernest_app", "connection_limit": 50}),
        Resource(ROLE, "role-app", "urn:r", {"name": "wondernest_app", "connection_limit": -1}),
        "connection limit",
    ),
    (
        "postgres-role-not-superuser",
        Resource(ROLE, "role-monitoring", "urn:r", {"member_of": ["pg_monitor"]}),
        Resource(ROLE, "role-monitoring", "urn:r", {"member_of": ["pg_monitor", "pg_write_server_files"]}),
        "pg_write_server_files",
    ),
]


@pytest.mark.parametrize(("rule_id", "good", "bad", "words"), RESOURCE_CASES, ids=[c[0] for c in RESOURCE_CASES])
def test_each_resource_rule_both_ways(rule_id: str, good: Resource, bad: Resource, words: str) -> None:
    assert run(rule_id, good) == []
    violations = run(rule_id, bad)
    assert len(violations) == 1
    message = violations[0].message
    assert message.startswith(f"{bad.name}:") and words in message
    assert "Fix:" in message and violations[0].urn == bad.urn


def readme_rule_row(rule: Rule) -> str:
    """The rule's row in policies/README.md: its own words, so the two cannot drift apart."""
    applies = ", ".join(t.rsplit(":", 1)[1] for t in rule.resource_types) or "the whole stack"
    levels = " | ".join(enforcement(stack)[rule.id] for stack in ("dev", "prod"))
    return f"| `{rule.id}` | {rule.severity} | {applies} | {levels} | {rule.description} *Fix:* {rule.remediation} |"


def test_the_readme_lists_every_rule_in_its_own_words() -> None:
    readme = (ROOT / "policies" / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| `")]
    assert rows == [readme_rule_row(rule) for rule in RULES]


def test_every_rule_is_covered_and_documented() -> None:
    from tests.test_policies_aws import AWS_RESOURCE_CASES
    from tests.test_policies_aws import STACK_CASES as AWS_STACK_CASES

    covered = {c[0] for c in (*RESOURCE_CASES, *STACK_CASES, *AWS_RESOURCE_CASES, *AWS_STACK_CASES)}
    assert covered == set(BY_ID)
    readme = (ROOT / "policies" / "README.md").read_text()
    for rule in RULES:
        assert rule.description and rule.remediation and rule.severity
        assert f"`{rule.id}`" in readme, rule.id


@pytest.mark.parametrize(
    ("port", "shown"),
    [
        ({"external": 8080}, "every interface"),
        ({"external": 8080, "ip": None}, "every interface"),
        ({"external": 8080, "ip": ""}, "every interface"),
        ({"external": 8080, "ip": "0.0.0.0"}, "0.0.0.0"),
        ({"external": 8080, "ip": "::"}, "::"),
        ({"external": 8080, "ip": "192.168.1.10"}, "192.168.1.10"),
    ],
)
def test_a_port_not_bound_to_loopback_is_refused(port: dict[str, Any], shown: str) -> None:
    found = run("published-ports-loopback", container(ports=[port]))
    assert [v.message.split(" Fix:")[0] for v in found] == [f"api: publishes port 8080 on {shown}."]


@pytest.mark.parametrize("ip", ["127.0.0.1", "127.0.0.2", "::1"])
def test_a_port_bound_to_loopback_passes(ip: str) -> None:
    assert run("published-ports-loopback", container(ports=[{"external": 8080, "ip": ip}])) == []


def test_a_wider_bind_passes_only_when_the_stack_allows_it() -> None:
    public = container(ports=[{"external": 8080, "ip": "0.0.0.0"}])
    assert run("published-ports-loopback", public, {"allowPublicBind": True}) == []


def test_unknown_values_are_never_judged() -> None:
    maybe = container(
        image=UNKNOWN, user=UNKNOWN, healthcheck=UNKNOWN, restart=UNKNOWN, memory=UNKNOWN,
        securityOpts=UNKNOWN, capabilities=UNKNOWN, envs=UNKNOWN, ports=[{"external": 8080, "ip": UNKNOWN}],
    )  # fmt: skip
    for rule in RULES:
        if rule.check_resource and CONTAINER in rule.resource_types and rule.id != "docker-container-read-only-root":
            assert rule.run_resource(maybe, {}) == [], rule.id


def _options(protect: bool = False) -> PolicyResourceOptions:
    return PolicyResourceOptions(protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def test_the_served_policies_report_through_pulumi_policy_and_tolerate_unknowns() -> None:
    served = {p.name: p for p in policies()}
    assert set(served) == set(BY_ID)
    reported: list[tuple[str, str | None]] = []
    bad = container(user="root", image=UNKNOWN)
    args = ResourceValidationArgs(
        CONTAINER, unknown_checking_proxy(dict(bad.props)), bad.urn, bad.name, _options(), None
    )
    for name in ("docker-container-non-root", "docker-image-pinned"):
        served[name].validate(args, lambda message, urn=None: reported.append((message, urn)))  # type: ignore[attr-defined]
    assert len(reported) == 1 and "runs as root" in reported[0][0]


# --- stack rules, over the mocked dev stack ------------------------------------------


def as_resources(ev: Evaluation, stack: str = "dev") -> list[Resource]:
    """What the policy engine sees: inputs with secrets unwrapped, protect, and
    the properties of the provider a resource is created through (when declared)."""
    providers = {d.name: d.inputs for d in ev.declared if d.typ.startswith("pulumi:providers:")}

    def provider_of(ref: str | None) -> dict[str, Any] | None:
        name = ref.split("::")[-2] if ref else None
        return deserialize_properties(copy.deepcopy(providers[name])) if name in providers else None

    def urn(typ: str, name: str) -> str:
        return f"urn:pulumi:{stack}::wondernest::{typ}::{name}"

    def short(engine_urn: str) -> str:
        """The engine's URN (with the parent types) in the short form these resources use."""
        *_, types, name = engine_urn.split("::")
        return urn(types.rsplit("$", 1)[-1], name)

    return [
        Resource(
            d.typ,
            d.name,
            urn(d.typ, d.name),
            deserialize_properties(copy.deepcopy(d.inputs)),
            protect=bool(d.options.get("protect")),
            provider=provider_of(d.options.get("provider")),
            depends_on={
                key: tuple(short(u) for u in urns) for key, urns in d.options.get("property_dependencies", {}).items()
            },
        )
        for d in ev.declared
        if not d.typ.startswith("wondernest:")
    ]


def enforcement(stack: str) -> dict[str, str]:
    raw = json.loads((ROOT / "policies" / "config" / f"{stack}.json").read_text())
    levels = {}
    for rule in RULES:
        value = raw.get(rule.id, raw.get("all", "mandatory"))
        levels[rule.id] = value["enforcementLevel"] if isinstance(value, dict) else value
    return levels


def policy_config(stack: str, rule: Rule) -> dict[str, Any]:
    raw = json.loads((ROOT / "policies" / "config" / f"{stack}.json").read_text()).get(rule.id)
    return {k: v for k, v in raw.items() if k != "enforcementLevel"} if isinstance(raw, dict) else {}


def violations(resources: list[Resource], stack: str = "dev") -> dict[str, list[str]]:
    """Rule id → the names of the resources it reports, sorted, under the stack's policy config."""
    found: dict[str, list[str]] = {}
    for rule in RULES:
        config = policy_config(stack, rule)
        for violation in rule.run_stack(resources, config) + [
            v for r in resources for v in rule.run_resource(r, config)
        ]:
            found.setdefault(rule.id, []).append(violation.message.split(":", 1)[0])
    return {rule: sorted(names) for rule, names in found.items()}


@pytest.fixture(scope="module")
def dev_resources() -> list[Resource]:
    return as_resources(evaluate_once(stack_config()))


WRITABLE = [
    "alertmanager",
    "api",
    "backups",
    "grafana",
    "migrations",
    "pgadmin",
    "postgres",
    "postgres-exporter",
    "prometheus",
    "redis",
    "redis-exporter",
]


def test_the_dev_stack_has_no_mandatory_violation(dev_resources: list[Resource]) -> None:
    found = violations(dev_resources)
    levels = enforcement("dev")
    mandatory = {rule: names for rule, names in found.items() if levels[rule] == "mandatory"}
    assert mandatory == {}
    # The one advisory is the known, documented gap.
    assert sorted(found["docker-container-read-only-root"]) == WRITABLE
    assert set(found) == {"docker-container-read-only-root"}


def test_a_broken_copy_of_the_stack_produces_exactly_the_expected_violations() -> None:
    # A stack config that allows a public bind while the policy config does not,
    # and a graph with an unpinned image and a secret in an env var: mistakes
    # the config layer would refuse, made as if something slipped past it.
    ev = evaluate_once(stack_config({"network": {"allowPublicBind": True, "bindAddress": "0.0.0.0"}}))
    resources = as_resources(ev)
    broken = []
    for r in resources:
        props = dict(r.props)
        if r.type == REMOTE_IMAGE and r.name == "redis-image":
            props["name"] = "redis"
        if r.type == CONTAINER and r.name == "api":
            props["envs"] = [*props["envs"], "DB_PASSWORD=plaintext-in-env"]
        broken.append(Resource(r.type, r.name, r.urn, props, r.protect))
    found = violations(broken)
    found.pop("docker-container-read-only-root")
    assert {rule: sorted(names) for rule, names in found.items()} == {
        "docker-image-pinned": ["redis-image"],
        "secrets-not-in-env": ["api"],
        "published-ports-loopback": ["api", "grafana", "pgadmin", "postgres", "prometheus", "redis"],
    }


def _stack(resources: list[Resource]) -> list[Resource]:
    return resources


STACK_CASES: list[tuple[str, str]] = [
    ("network-data-tier-internal", "exporter on the frontend network"),
    ("monitoring-every-service-scraped", "a container with no metrics job"),
    ("alerting-severities-routed", "a severity with no route"),
    ("postgres-backup-verified", "no backup job"),
]


def _replace(resources: list[Resource], name: str, typ: str, **props: Any) -> list[Resource]:
    out = []
    for r in resources:
        if r.name == name and r.type == typ:
            r = Resource(r.type, r.name, r.urn, {**r.props, **props}, r.protect)
        out.append(r)
    return out


@pytest.mark.parametrize(
    ("container_name", "network", "reported"),
    [
        ("postgres", "wondernest-dev-frontend", True),
        ("redis", "wondernest-dev-frontend", True),
        ("postgres-exporter", "wondernest-dev-frontend", True),
        ("redis-exporter", "wondernest-dev-ops", True),
        # The ops bridge publishes Postgres' and Redis' admin ports, and holds nothing else.
        ("postgres", "wondernest-dev-ops", False),
        ("redis", "wondernest-dev-ops", False),
    ],
)
def test_stack_rule_network_data_tier_internal(
    dev_resources: list[Resource], container_name: str, network: str, reported: bool
) -> None:
    rule = BY_ID["network-data-tier-internal"]
    assert rule.run_stack(dev_resources, {}) == []
    container = next(r for r in dev_resources if r.name == container_name and r.type == CONTAINER)
    attached = [a for a in container.get("networksAdvanced") if a["name"] != network]
    joined = _replace(
        dev_resources, container_name, CONTAINER, networksAdvanced=[*attached, {"name": network, "aliases": []}]
    )
    found = [v.message.split(" Fix:")[0] for v in rule.run_stack(joined, {})]
    assert found == ([f"{container_name}: the data tier joins non-internal network {network}."] if reported else [])


def test_stack_rule_network_data_tier_internal_reads_the_network_itself(dev_resources: list[Resource]) -> None:
    """The backend network made non-internal: every data-tier container on it is reported."""
    rule = BY_ID["network-data-tier-internal"]
    opened = _replace(dev_resources, "backend", NETWORK, internal=False)
    found = sorted(v.message.split(":")[0] for v in rule.run_stack(opened, {}))
    assert found == ["postgres", "postgres-exporter", "redis", "redis-exporter"]


def test_stack_rule_every_service_scraped(dev_resources: list[Resource]) -> None:
    rule = BY_ID["monitoring-every-service-scraped"]
    assert rule.run_stack(dev_resources, {}) == []
    redis = next(r for r in dev_resources if r.name == "redis" and r.type == CONTAINER)
    labels = [item for item in redis.get("labels") if item["label"] != "com.wondernest.metrics-job"]
    found = rule.run_stack(_replace(dev_resources, "redis", CONTAINER, labels=labels), {})
    assert len(found) == 1 and found[0].message.startswith("redis: declares no metrics job")


def test_stack_rule_severities_routed(dev_resources: list[Resource]) -> None:
    rule = BY_ID["alerting-severities-routed"]
    assert rule.run_stack(dev_resources, {}) == []
    am = next(r for r in dev_resources if r.name == "alertmanager" and r.type == CONTAINER)
    uploads = [
        {**u, "content": u["content"].replace('severity="warning"', 'severity="info"')}
        if u["file"] == "/etc/alertmanager/alertmanager.yml"
        else u
        for u in am.get("uploads")
    ]
    found = rule.run_stack(_replace(dev_resources, "alertmanager", CONTAINER, uploads=uploads), {})
    assert len(found) == 1 and "'warning'" in found[0].message
    merged = [
        {**u, "content": u["content"].replace("receiver: ticket", "receiver: page")}
        if u["file"] == "/etc/alertmanager/alertmanager.yml"
        else u
        for u in am.get("uploads")
    ]
    found = rule.run_stack(_replace(dev_resources, "alertmanager", CONTAINER, uploads=merged), {})
    assert [v.message.split(" Fix:")[0] for v in found] == [
        "alerts of severity 'warning' share receiver 'page' with 'critical'."
    ]


def without_backups(resources: list[Resource]) -> list[Resource]:
    return [r for r in resources if not (r.type == CONTAINER and r.name == "backups")]


def test_stack_rule_backup_verified(dev_resources: list[Resource]) -> None:
    rule = BY_ID["postgres-backup-verified"]
    assert rule.run_stack(dev_resources, {}) == []
    assert [v.message.split(":")[0] for v in rule.run_stack(without_backups(dev_resources), {})] == ["postgres"]
    unproven = _replace(
        dev_resources, "backups", CONTAINER,
        labels=[{"label": "com.wondernest.component", "value": "backups"}],
    )  # fmt: skip
    assert [v.message.split(":")[0] for v in rule.run_stack(unproven, {})] == ["postgres"]


def test_stack_policies_served_through_pulumi_policy(dev_resources: list[Resource]) -> None:
    served = {p.name: p for p in policies()}
    reported: list[str] = []
    args = StackValidationArgs(
        [
            PolicyResource(r.type, r.props, r.urn, r.name, _options(r.protect), None, None, [], {})
            for r in without_backups(dev_resources)
        ]
    )
    served["postgres-backup-verified"].validate(args, lambda message, urn=None: reported.append(message))  # type: ignore[attr-defined]
    assert len(reported) == 1 and reported[0].startswith("postgres: no backup job")
