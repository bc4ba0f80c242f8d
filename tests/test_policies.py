"""The policy pack: every rule both ways, unknowns, and the whole dev stack."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi_policy import PolicyResourceOptions, ResourceValidationArgs, StackValidationArgs
from pulumi_policy.deserialize import deserialize_properties
from pulumi_policy.policy import PolicyCustomTimeouts, PolicyResource
from pulumi_policy.proxy import unknown_checking_proxy
from wondernest_policies.docker import CONTAINER, IMAGE, REMOTE_IMAGE, VOLUME
from wondernest_policies.model import Resource, Rule, Violation
from wondernest_policies.platform import AMP_ALERTMANAGER, AMP_RULES, NETWORK, ROLE
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


# (rule, a compliant resource, a non-compliant one, the one problem reported)
RESOURCE_CASES: list[tuple[str, Resource, Resource, str]] = [
    (
        "docker-image-pinned",
        Resource(REMOTE_IMAGE, "redis-image", "urn:redis-image", {"name": "redis:7.4.1-bookworm"}),
        Resource(REMOTE_IMAGE, "redis-image", "urn:redis-image", {"name": "redis:latest"}),
        "image 'redis:latest' uses 'latest', which is not a version.",
    ),
    (
        "docker-image-pinned",
        Resource(IMAGE, "api-image", "urn:api-image", {"imageName": "wondernest-api:0123456789abcdef"}),
        Resource(IMAGE, "api-image", "urn:api-image", {"imageName": "wondernest-api"}),
        "image 'wondernest-api' is not pinned to a version tag or digest.",
    ),
    (
        "docker-image-pinned",
        container(),
        container(image="postgres"),
        "image 'postgres' is not pinned to a version tag or digest.",
    ),
    ("docker-container-non-root", container(), container(user="0:0"), "runs as root."),
    (
        "docker-container-non-root",
        container(),
        container(user=None),
        "no user is set, so the image's default (often root) applies.",
    ),
    ("docker-container-healthcheck", container(), container(healthcheck=None), "has no healthcheck."),
    ("docker-container-restart-policy", container(), container(restart="no"), "restart policy is 'no'."),
    # A job `pulumi up` runs to its end: waited on until it exits, never restarted.
    (
        "docker-container-healthcheck",
        container(healthcheck=None, attach=True, mustRun=False, restart="no"),
        container(healthcheck=None, attach=False, mustRun=False, restart="no"),
        "has no healthcheck.",
    ),
    (
        "docker-container-restart-policy",
        container(healthcheck=None, attach=True, mustRun=False, restart="no"),
        container(healthcheck=None, attach=True, mustRun=False, restart="unless-stopped"),
        "runs once, but its restart policy is 'unless-stopped'.",
    ),
    ("docker-container-memory-limit", container(), container(memory=0), "has no memory limit."),
    ("docker-container-not-privileged", container(), container(privileged=True), "runs privileged."),
    (
        "docker-container-no-host-namespaces",
        container(),
        container(networkMode="host"),
        "shares the host's networkMode.",
    ),
    ("docker-container-no-new-privileges", container(), container(securityOpts=[]), "does not set no-new-privileges."),
    (
        "docker-container-capabilities-dropped",
        container(),
        container(capabilities={"drops": []}),
        "does not drop all capabilities.",
    ),
    (
        "docker-container-capabilities-dropped",
        container(capabilities={"drops": ["ALL"], "adds": ["NET_BIND_SERVICE"]}),
        container(capabilities={"drops": ["ALL"], "adds": ["SYS_ADMIN"]}),
        "adds capabilities ['SYS_ADMIN'].",
    ),
    ("docker-container-read-only-root", container(), container(readOnly=False), "has a writable root filesystem."),
    (
        "secrets-not-in-env",
        container(),
        container(envs=["DB_PASSWORD=hunter2"]),
        "environment variable DB_PASSWORD carries a literal secret.",
    ),
    (
        "secrets-not-in-env",
        container(),
        container(envs=["JWT_SECRET=abc"]),
        "environment variable JWT_SECRET carries a literal secret.",
    ),
    (
        "secrets-not-in-env",
        container(),
        container(envs=["DATABASE_URL=postgres://app:hunter2@db/app"]),
        "environment variable DATABASE_URL holds a URL with credentials.",
    ),
    (
        "published-ports-loopback",
        container(),
        container(ports=[{"external": 8080, "ip": "0.0.0.0"}]),
        "publishes port 8080 on 0.0.0.0.",
    ),
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
        "holds data but is not protected from deletion.",
    ),
    (
        "postgres-role-connection-limit",
        Resource(ROLE, "role-app", "urn:r", {"name": "wondernest_app", "connection_limit": 50}),
        Resource(ROLE, "role-app", "urn:r", {"name": "wondernest_app", "connection_limit": -1}),
        "has no connection limit.",
    ),
    (
        "postgres-role-not-superuser",
        Resource(ROLE, "role-monitoring", "urn:r", {"member_of": ["pg_monitor"]}),
        Resource(ROLE, "role-monitoring", "urn:r", {"member_of": ["pg_monitor", "pg_write_server_files"]}),
        "is a member of ['pg_write_server_files'], which reach the server's files or programs.",
    ),
]


@pytest.mark.parametrize(("rule_id", "good", "bad", "problem"), RESOURCE_CASES, ids=[c[0] for c in RESOURCE_CASES])
def test_each_resource_rule_both_ways(rule_id: str, good: Resource, bad: Resource, problem: str) -> None:
    assert run(rule_id, good) == []
    assert run(rule_id, bad) == [Violation(f"{bad.name}: {problem} Fix: {BY_ID[rule_id].remediation}", bad.urn)]


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


# Each container check at its edges, the problems it reports exact: (rule, the
# compliant container changed in one way, the problems).
CONTAINER_EDGES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("docker-container-no-host-namespaces", {"pidMode": "host"}, ["shares the host's pidMode."]),
    ("docker-container-no-host-namespaces", {"ipcMode": "host"}, ["shares the host's ipcMode."]),
    ("docker-container-no-host-namespaces", {"usernsMode": "host"}, ["shares the host's usernsMode."]),
    ("docker-container-no-host-namespaces", {"networkMode": "host", "ipcMode": "host"},
     ["shares the host's networkMode, ipcMode."]),
    ("docker-container-no-host-namespaces", {"networkMode": "bridge", "ipcMode": "private"}, []),
    # Docker reads only the first word: NONE switches the healthcheck off whatever follows.
    ("docker-container-healthcheck", {"healthcheck": {"tests": ["NONE"]}}, ["has no healthcheck."]),
    ("docker-container-healthcheck", {"healthcheck": {"tests": ["NONE", "CMD", "true"]}}, ["has no healthcheck."]),
    ("docker-container-healthcheck", {"healthcheck": {"tests": []}}, ["has no healthcheck."]),
    ("docker-container-healthcheck", {"healthcheck": {"tests": ["CMD-SHELL"]}}, []),
    ("docker-container-healthcheck", {"healthcheck": {"tests": UNKNOWN}}, []),
    ("docker-container-healthcheck", {"healthcheck": {"tests": [UNKNOWN, "true"]}}, []),
    ("docker-container-memory-limit", {"memory": 1}, []),
    ("docker-container-memory-limit", {"memory": -1}, ["has no memory limit."]),
    ("docker-container-memory-limit", {"memory": None}, ["has no memory limit."]),
    ("docker-container-memory-limit", {"memory": UNKNOWN}, []),
    ("docker-container-non-root", {"user": "root:root"}, ["runs as root."]),
    ("docker-container-non-root", {"user": "0"}, ["runs as root."]),
    ("docker-container-non-root", {"user": "1001"}, []),
    ("docker-container-non-root", {"user": UNKNOWN}, []),
    ("docker-container-restart-policy", {"restart": "always"}, []),
    ("docker-container-restart-policy", {"restart": "on-failure"}, []),
    ("docker-container-restart-policy", {"restart": UNKNOWN}, []),
    ("docker-container-no-new-privileges", {"securityOpts": ["no-new-privileges"]}, []),
    ("docker-container-no-new-privileges", {"securityOpts": ["no-new-privileges=true"]}, []),
    ("docker-container-no-new-privileges", {"securityOpts": ["no-new-privileges:false"]},
     ["does not set no-new-privileges."]),
    ("docker-container-capabilities-dropped", {"capabilities": {"drops": ["ALL"], "adds": ["SYS_ADMIN", "NET_ADMIN"]}},
     ["adds capabilities ['NET_ADMIN', 'SYS_ADMIN']."]),
    ("docker-container-capabilities-dropped", {"capabilities": {"drops": ["CHOWN"], "adds": ["SYS_ADMIN"]}},
     ["does not drop all capabilities.", "adds capabilities ['SYS_ADMIN']."]),
    ("docker-container-capabilities-dropped", {"capabilities": None}, ["does not drop all capabilities."]),
    ("docker-container-capabilities-dropped", {"capabilities": UNKNOWN}, []),
    ("docker-container-capabilities-dropped", {"capabilities": {"drops": UNKNOWN}}, []),
    ("docker-container-read-only-root", {"readOnly": UNKNOWN}, []),
    ("docker-container-not-privileged", {"privileged": UNKNOWN}, []),
    ("secrets-not-in-env", {"envs": ["PLAIN", UNKNOWN, "DB_PASSWORD=hunter2"]},
     ["environment variable DB_PASSWORD carries a literal secret."]),
    ("secrets-not-in-env", {"envs": ["DB_PASSWORD=a=b", "REDIS_PASSWORD=c"]},
     ["environment variable DB_PASSWORD carries a literal secret.",
      "environment variable REDIS_PASSWORD carries a literal secret."]),
    ("secrets-not-in-env", {"envs": UNKNOWN}, []),
    ("secrets-not-in-env", {"command": ["redis-server", UNKNOWN, "--requirepass", "hunter2"]},
     ["the command passes a literal secret to --requirepass."]),
    ("secrets-not-in-env", {"entrypoints": ["sh", "-c", "export DB_PASSWORD=hunter2 && exec ./app"]},
     ["the entrypoint sets DB_PASSWORD to a literal secret."]),
    ("secrets-not-in-env", {"healthcheck": {"tests": ["CMD-SHELL", "redis-cli -a hunter2 ping"]}},
     ["the healthcheck passes a literal secret to -a."]),
    ("secrets-not-in-env", {"healthcheck": UNKNOWN, "command": UNKNOWN}, []),
    ("published-ports-loopback", {"ports": [{"external": 80, "ip": UNKNOWN}, {"external": 81, "ip": "0.0.0.0"}]},
     ["publishes port 81 on 0.0.0.0."]),
    ("published-ports-loopback", {"ports": [{"external": 80, "ip": "localhost"}]},
     ["publishes port 80 on localhost."]),
    ("published-ports-loopback", {"ports": [{"external": 80, "ip": "::1"}, {"external": 81, "ip": "127.0.0.2"}]}, []),
]  # fmt: skip


@pytest.mark.parametrize(("rule_id", "change", "problems"), CONTAINER_EDGES, ids=[c[0] for c in CONTAINER_EDGES])
def test_each_container_check_at_its_edges(rule_id: str, change: dict[str, Any], problems: list[str]) -> None:
    remediation = BY_ID[rule_id].remediation
    assert [v.message for v in run(rule_id, container(**change))] == [
        f"api: {problem} Fix: {remediation}" for problem in problems
    ]


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
    the properties of the provider a resource is created through (when declared).
    The values the provider computed (ARNs, ids) join the inputs: the engine's
    stack rules read each resource's state (tests/policy_analyzer.py sends
    each kind of call exactly what the engine does)."""
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
            deserialize_properties(copy.deepcopy({**(d.outputs or {}), **d.inputs})),
            protect=bool(d.options.get("protect")),
            provider=provider_of(d.options.get("provider")),
            depends_on={
                key: tuple(short(u) for u in urns) for key, urns in d.options.get("property_dependencies", {}).items()
            },
            parent=short(d.options["parent"]) if d.options.get("parent") else "",
        )
        for d in ev.declared
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


def labelled(typ: str, resource_name: str, component: str, **props: Any) -> Resource:
    labels = [{"label": "com.wondernest.component", "value": component}]
    return Resource(typ, resource_name, f"urn:{resource_name}", {"labels": labels, **props})


BACKEND = labelled(NETWORK, "backend", "network-backend", name="wn-backend", internal=True)
FRONTEND = labelled(NETWORK, "frontend", "network-frontend", name="wn-frontend", internal=False)
OPS = labelled(NETWORK, "ops", "network-ops", name="wn-ops", internal=False)


def joining(component: str, *names: str, **sources: Resource) -> Resource:
    """A data-tier container joining networks by name, or (a preview) by where the name came from."""
    attached = [{"name": n} for n in names] + [{"name": UNKNOWN} for _ in sources]
    container = labelled(CONTAINER, component, component, networksAdvanced=attached)
    deps = tuple(r.urn for r in sources.values())
    return dataclasses.replace(container, depends_on={"networksAdvanced": deps} if deps else {})


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        ([BACKEND, FRONTEND, joining("postgres", "wn-backend")], []),
        ([BACKEND, FRONTEND, joining("postgres", "wn-backend", "wn-frontend")],
         ["postgres: the data tier joins non-internal network wn-frontend."]),
        ([BACKEND, FRONTEND, joining("redis", a=FRONTEND)],
         ["redis: the data tier joins non-internal network wn-frontend."]),
        ([BACKEND, FRONTEND, joining("redis", a=BACKEND)], []),
        ([BACKEND, FRONTEND, joining("redis", "wn-unknown")], []),
        ([BACKEND, FRONTEND, dataclasses.replace(FRONTEND, props={**FRONTEND.props, "name": UNKNOWN}),
          joining("redis", "wn-backend")], []),
        # A preview: every name unknown, the container joins by source; a name not known matches no other.
        ([BACKEND, dataclasses.replace(FRONTEND, props={**FRONTEND.props, "name": UNKNOWN}),
          joining("redis", a=BACKEND)], []),
        # A network whose labels are not known yet is judged at `up`; the others now.
        ([Resource(NETWORK, "mystery", "urn:mystery", {"labels": UNKNOWN, "name": "wn-mystery", "internal": False}),
          FRONTEND, joining("postgres", "wn-mystery", "wn-frontend")],
         ["postgres: the data tier joins non-internal network wn-frontend."]),
        # The ops bridge publishes the admin ports of Postgres and Redis, never an exporter's.
        ([OPS, joining("postgres", "wn-ops")], []),
        ([OPS, joining("postgres-exporter", "wn-ops")],
         ["postgres-exporter: the data tier joins non-internal network wn-ops."]),
        ([FRONTEND, joining("api", "wn-frontend")], []),
    ],
    ids=["internal", "by-name", "by-source", "by-source-internal", "unnamed", "name-unknown", "names-unknown",
         "labels-unknown", "ops", "ops-exporter", "not-data-tier"],
)  # fmt: skip
def test_the_data_tier_joins_internal_networks_only(resources: list[Resource], expected: list[str]) -> None:
    assert_reports("network-data-tier-internal", resources, expected)


def assert_reports(rule_id: str, resources: list[Resource], expected: list[str]) -> None:
    """The stack rule reports exactly these messages, each against the first
    resource of the name the message starts with."""
    rule = BY_ID[rule_id]
    found = rule.run_stack(resources, {})
    urns: dict[str, str] = {}
    for r in resources:
        urns.setdefault(r.name, r.urn)
    assert [v.message for v in found] == [f"{m} Fix: {rule.remediation}" for m in expected]
    assert [v.urn for v in found] == [urns[m.split(":", 1)[0]] for m in expected]


def scraped(*containers: Resource, jobs: str | None = "api") -> list[Resource]:
    config = UNKNOWN if jobs is None else f"scrape_configs:\n- job_name: prometheus\n- job_name: {jobs}\n"
    prometheus = service("prometheus", "prometheus",
                         uploads=[{"file": "/etc/prometheus/prometheus.yml", "content": config}])  # fmt: skip
    return [prometheus, *containers]


def service(name: str, job: str | None, **props: Any) -> Resource:
    container = labelled(CONTAINER, name, name, **props)
    if job is not None:
        labels = [*container.props["labels"], {"label": "com.wondernest.metrics-job", "value": job}]
        container = dataclasses.replace(container, props={**container.props, "labels": labels})
    return container


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        (scraped(service("api", "api")), []),
        (scraped(service("api", None)), ["api: declares no metrics job (label com.wondernest.metrics-job)."]),
        (scraped(service("api", "apix")), ["api: Prometheus has no scrape job 'apix' for it."]),
        (scraped(service("api", "apix"), jobs=None), []),
        # A job `pulumi up` runs to its end exports nothing; one not known to be a job is judged at `up`.
        (scraped(service("migrations", None, attach=True, mustRun=False)), []),
        (scraped(service("maybe", None, attach=UNKNOWN), service("api", None)),
         ["api: declares no metrics job (label com.wondernest.metrics-job)."]),
    ],
    ids=["scraped", "no-job", "unknown-job", "config-unknown", "runs-once", "kind-unknown"],
)  # fmt: skip
def test_every_service_is_scraped(resources: list[Resource], expected: list[str]) -> None:
    assert_reports("monitoring-every-service-scraped", resources, expected)


RULES_FILE = """groups:
- name: platform
  rules:
  - alert: Down
    expr: up == 0
    labels: {severity: critical}
  - alert: Slow
    expr: slow > 1
    labels: {severity: warning}
  - alert: Watchdog
    expr: vector(1)
    labels: {severity: none}
  - record: job:up:sum
    expr: sum(up)
"""
ROUTES = """route:
  receiver: ticket
  routes:
  - matchers: ['severity="critical"']
    receiver: page
  - matchers: [severity=warning]
    receiver: ticket
receivers:
- name: page
- name: ticket
"""


def monitoring(
    rules: str | None = RULES_FILE, routes: str | None = ROUTES, *others: Resource, alertmanager: bool = True
) -> list[Resource]:
    """A Prometheus and an Alertmanager container with their files, as the rule reads them."""

    def labelled(name: str, path: str, content: str | None) -> Resource:
        labels = [{"label": "com.wondernest.component", "value": name}]
        uploads = [{"file": path, "content": UNKNOWN if content is None else content}]
        return Resource(CONTAINER, name, f"urn:{name}", {"labels": labels, "uploads": uploads})

    found = [labelled("prometheus", "/etc/prometheus/rules/platform.yml", rules), *others]
    if alertmanager:
        found.append(labelled("alertmanager", "/etc/alertmanager/alertmanager.yml", routes))
    return found


def managed(rules: str = RULES_FILE, definition: str | None = "") -> list[Resource]:
    """AMP's rule namespace and Alertmanager definition (None: no definition declared)."""
    found = [Resource(AMP_RULES, "rules", "urn:rules", {"data": rules})]
    if definition is not None:
        text = definition or yaml.safe_dump({"alertmanager_config": ROUTES})
        found.append(Resource(AMP_ALERTMANAGER, "definition", "urn:definition", {"definition": text}))
    return found


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        (monitoring(), []),
        ([], []),
        (monitoring(alertmanager=False),
         [("Prometheus evaluates alerts but no Alertmanager is declared.", "urn:prometheus")]),
        # No rules to route: an Alertmanager alone has nothing to judge.
        ([r for r in monitoring() if r.name == "alertmanager"], []),
        # A container whose labels are not known yet may be the Alertmanager.
        (monitoring(None, None, Resource(CONTAINER, "x", "urn:x", {"labels": UNKNOWN}), alertmanager=False), []),
        # Files not known yet (a preview): decided at `up`.
        (monitoring(None), []),
        (monitoring(RULES_FILE, None), []),
        (
            monitoring(RULES_FILE, ROUTES.replace("receiver: ticket\nreceivers", "receiver: tickets\nreceivers")),
            [("alerts of severity 'warning' reach no receiver of their own.", "urn:alertmanager")],
        ),
        (
            monitoring(RULES_FILE, ROUTES.replace('[\'severity="critical"\']', "[team=db]")),
            [("alerts of severity 'critical' reach no receiver of their own.", "urn:alertmanager")],
        ),
        (
            monitoring(RULES_FILE, ROUTES.replace("receiver: page", "receiver: ticket")),
            [("alerts of severity 'warning' share receiver 'ticket' with 'critical'.", "urn:alertmanager")],
        ),
        # A severity is read whole from its matcher, only its quotes taken off.
        (monitoring(RULES_FILE.replace("severity: warning", "severity: XWARN"),
                    ROUTES.replace("severity=warning", 'severity="XWARN"')), []),
        # Managed Prometheus (AMP): a rule namespace and an Alertmanager definition.
        (managed(), []),
        (managed(definition=None), [("Prometheus evaluates alerts but no Alertmanager is declared.", "urn:rules")]),
        (managed(rules=UNKNOWN), []),
        (managed(definition=UNKNOWN), []),
        (managed(definition=yaml.safe_dump({"alertmanager_config": ROUTES.replace("receiver: page", "receiver: x")})),
         [("alerts of severity 'critical' reach no receiver of their own.", "urn:definition")]),
    ],
    ids=["routed", "none", "no-alertmanager", "alertmanager-alone", "labels-unknown", "rules-unknown", "routes-unknown",
         "undeclared-receiver", "no-route", "shared", "quoted", "managed", "managed-no-alertmanager",
         "managed-rules-unknown", "managed-definition-unknown", "managed-no-route"],
)  # fmt: skip
def test_each_severity_reaches_a_receiver_of_its_own(
    resources: list[Resource], expected: list[tuple[str, str]]
) -> None:
    rule = BY_ID["alerting-severities-routed"]
    assert rule.run_stack(resources, {}) == [Violation(f"{m} Fix: {rule.remediation}", urn) for m, urn in expected]


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


def backup_job(*labels: tuple[str, str], name: str = "backups") -> Resource:
    return Resource(CONTAINER, name, f"urn:{name}", {"labels": [{"label": k, "value": v} for k, v in labels]})


POSTGRES = backup_job(("com.wondernest.component", "postgres"), name="postgres")
NO_RESTORE = ["postgres: no backup job verifies its backups by restoring them."]


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        ([POSTGRES, backup_job(("com.wondernest.component", "backups"), ("com.wondernest.backup-verify", "restore"))],
         []),
        ([POSTGRES, backup_job(("com.wondernest.component", "backups"))], NO_RESTORE),
        ([POSTGRES], NO_RESTORE),
        # The backups component's own label: another container saying it restores verifies nothing.
        ([POSTGRES, backup_job(("com.wondernest.component", "api"), ("com.wondernest.backup-verify", "restore"))],
         NO_RESTORE),
        # A container whose labels are not known yet may be the job: judged at `up`.
        ([POSTGRES, dataclasses.replace(backup_job(), props={"labels": UNKNOWN})], []),
    ],
    ids=["verified", "not-verified", "no-job", "not-the-backups-job", "labels-unknown"],
)  # fmt: skip
def test_a_database_container_is_backed_up_by_a_job_that_restores(
    resources: list[Resource], expected: list[str]
) -> None:
    assert_reports("postgres-backup-verified", resources, expected)


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
