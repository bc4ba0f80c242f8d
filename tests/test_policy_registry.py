"""The adapters between pulumi_policy and the rules: what a rule is handed of
the engine's resource (name, URN, properties as plain data, protection, its
provider's properties, property dependencies, the policy config) and what the
engine is handed back (each violation with its URN, and the rule's metadata)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pulumi_policy import (
    PolicyConfigSchema,
    PolicyProviderResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.policy import PolicyCustomTimeouts, PolicyResource
from pulumi_policy.proxy import unknown_checking_proxy
from wondernest_policies import registry
from wondernest_policies.model import Resource, Rule, Violation
from wondernest_policies.registry import RULES, policies

UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
URN = "urn:pulumi:dev::wondernest::docker:index/container:Container::api"
PROVIDER = PolicyProviderResource(
    "pulumi:providers:docker", {"host": "unix:///var/run/docker.sock"}, "urn:provider", "docker"
)


def options(protect: bool) -> PolicyResourceOptions:
    return PolicyResourceOptions(protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def test_every_rule_is_served_with_its_metadata() -> None:
    served = policies()
    assert [p.name for p in served] == [rule.id for rule in RULES]
    for rule, policy in zip(RULES, served, strict=True):
        kind = StackValidationPolicy if rule.check_stack else ResourceValidationPolicy
        assert isinstance(policy, kind), rule.id
        assert policy.description == rule.description
        assert policy.severity is not None and policy.severity.value == rule.severity
        assert policy.remediation_steps == rule.remediation
        assert policy.enforcement_level is None  # the stack's policy config decides it
        schema = policy.config_schema
        if rule.config_schema:
            assert isinstance(schema, PolicyConfigSchema) and schema.properties == rule.config_schema, rule.id
        else:
            assert schema is None, rule.id


def recorder(into: list[tuple[str, str | None]]) -> Callable[..., None]:
    def report(message: str, urn: str | None = None) -> None:
        into.append((message, urn))

    return report


class Probe:
    """A rule's check that records what it was handed and reports one problem."""

    def __init__(self) -> None:
        self.seen: list[tuple[Any, Mapping[str, Any]]] = []

    def resource(self, resource: Resource, config: Mapping[str, Any]) -> Iterable[str]:
        self.seen.append((resource, config))
        return ["is wrong."]

    def stack(self, resources: Sequence[Resource], config: Mapping[str, Any]) -> Iterable[Violation]:
        self.seen.append((list(resources), config))
        return [Violation(f"{r.name}: is wrong.", r.urn) for r in resources]


def test_a_resource_rule_sees_the_resource_as_plain_data_with_its_protection_and_provider() -> None:
    probe = Probe()
    rule = Rule("probe", "d", "high", "do it.", ("docker:index/container:Container",), probe.resource)
    props = {"user": "root", "image": UNKNOWN, "ports": [{"ip": UNKNOWN}]}
    reported: list[tuple[str, str | None]] = []
    args = ResourceValidationArgs(
        "docker:index/container:Container",
        unknown_checking_proxy(props),
        URN,
        "api",
        options(protect=True),
        PROVIDER,
        unknown_checking_proxy({"allowPublicBind": True}),
    )
    registry._resource_policy(rule).validate(args, recorder(reported))
    [(resource, config)] = probe.seen
    assert resource == Resource(
        "docker:index/container:Container",
        "api",
        URN,
        props,
        protect=True,
        provider={"host": "unix:///var/run/docker.sock"},
    )
    assert type(resource.props) is dict and type(resource.props["ports"]) is list
    assert config == {"allowPublicBind": True} and type(config) is dict
    assert reported == [("api: is wrong. Fix: do it.", URN)]


def test_a_resource_rule_without_config_or_provider_sees_none() -> None:
    probe = Probe()
    rule = Rule("probe", "d", "high", "do it.", ("docker:index/container:Container",), probe.resource)
    args = ResourceValidationArgs("docker:index/container:Container", {}, URN, "api", options(protect=False), None)
    registry._resource_policy(rule).validate(args, recorder([]))
    [(resource, config)] = probe.seen
    assert resource.protect is False and resource.provider is None and resource.depends_on == {}
    assert config == {}


def test_a_stack_rule_sees_every_resource_with_its_property_dependencies_and_parent() -> None:
    probe = Probe()
    rule = Rule("probe", "d", "high", "do it.", check_stack=probe.stack)
    network = PolicyResource(
        "docker:index/network:Network", {"internal": True}, "urn:network", "net", options(False), None, None, [], {}
    )
    api = PolicyResource(
        "docker:index/container:Container",
        unknown_checking_proxy({"networksAdvanced": [{"name": UNKNOWN}]}),
        URN,
        "api",
        options(True),
        PROVIDER,
        network,
        [network],
        {"networksAdvanced": [network], "labels": []},
    )
    reported: list[tuple[str, str | None]] = []
    args = StackValidationArgs([network, api], {"floor": 3})
    registry._stack_policy(rule).validate(args, recorder(reported))
    [(resources, config)] = probe.seen
    assert resources == [
        Resource("docker:index/network:Network", "net", "urn:network", {"internal": True}),
        Resource(
            "docker:index/container:Container",
            "api",
            URN,
            {"networksAdvanced": [{"name": UNKNOWN}]},
            protect=True,
            provider={"host": "unix:///var/run/docker.sock"},
            depends_on={"networksAdvanced": ("urn:network",), "labels": ()},
            parent="urn:network",
        ),
    ]
    assert config == {"floor": 3}
    assert reported == [("net: is wrong. Fix: do it.", "urn:network"), ("api: is wrong. Fix: do it.", URN)]
    probe.seen.clear()
    registry._stack_policy(rule).validate(StackValidationArgs([network]), recorder([]))
    assert probe.seen[0][1] == {}
