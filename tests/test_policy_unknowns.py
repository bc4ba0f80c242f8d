"""During a preview any input computed from a resource not created yet is
unknown. An unknown may only silence the check that needs it: it must never
make a rule report a violation, nor make it fail. Each stack's graph, with one
value made unknown at a time (every leaf and every object or list inside a
resource, and every top-level property for the stack rules), judged by every
rule with the stack's policy config."""

from __future__ import annotations

import copy
import dataclasses
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from wondernest_policies.model import Resource
from wondernest_policies.registry import RULES

from tests.harness import evaluate, stack_config
from tests.test_policies import as_resources, policy_config
from tests.test_policy_analyzer import FULL_PROD
from tests.test_stack_prod import prod_config

UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
Path = tuple[str | int, ...]


def paths(value: Any, prefix: Path = ()) -> Iterator[Path]:
    """Every value inside `value`: objects, lists and leaves."""
    children: list[tuple[str | int, Any]] = []
    if isinstance(value, Mapping):
        children = list(value.items())
    elif isinstance(value, list):
        children = list(enumerate(value))
    for key, child in children:
        yield (*prefix, key)
        yield from paths(child, (*prefix, key))


def unknown_at(props: Mapping[str, Any], path: Path) -> dict[str, Any]:
    copied = copy.deepcopy(dict(props))
    target: Any = copied
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = UNKNOWN
    return copied


def graph(stack: str) -> list[Resource]:
    config = prod_config(FULL_PROD) if stack == "prod" else stack_config()
    return as_resources(evaluate(config, stack=stack), stack)


def resource_violations(resource: Resource, stack: str) -> Counter[tuple[str, str]]:
    return Counter(
        (rule.id, v.message) for rule in RULES for v in rule.run_resource(resource, policy_config(stack, rule))
    )


def stack_violations(resources: list[Resource], stack: str) -> Counter[tuple[str, str]]:
    return Counter(
        (rule.id, v.message) for rule in RULES for v in rule.run_stack(resources, policy_config(stack, rule))
    )


def added(found: Counter[tuple[str, str]], base: Counter[tuple[str, str]]) -> list[tuple[str, str]]:
    return sorted((found - base).elements())


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_an_unknown_value_anywhere_in_a_resource_adds_no_violation(stack: str) -> None:
    resources = graph(stack)
    problems = []
    variants = 0
    for resource in resources:
        base = resource_violations(resource, stack)
        for path in paths(resource.props):
            variants += 1
            variant = dataclasses.replace(resource, props=unknown_at(resource.props, path))
            try:
                found = resource_violations(variant, stack)
            except Exception as exc:
                problems.append(f"{resource.type} {resource.name} {path}: raises {exc!r}")
                continue
            problems += [f"{resource.type} {resource.name} {path}: {v}" for v in added(found, base)]
    assert variants > 1000
    assert problems == []


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_an_unknown_property_or_provider_setting_adds_no_stack_violation(stack: str) -> None:
    resources = graph(stack)
    base = stack_violations(resources, stack)
    problems = []
    for i, resource in enumerate(resources):
        variants = [dataclasses.replace(resource, props={k: UNKNOWN for k in resource.props})]
        variants += [dataclasses.replace(resource, props={**resource.props, key: UNKNOWN}) for key in resource.props]
        if resource.provider:
            variants += [
                dataclasses.replace(resource, provider={**resource.provider, key: UNKNOWN}) for key in resource.provider
            ]
        for variant in variants:
            changed = [*resources[:i], variant, *resources[i + 1 :]]
            try:
                found = stack_violations(changed, stack)
            except Exception as exc:
                problems.append(f"{resource.type} {resource.name}: raises {exc!r}")
                continue
            problems += [f"{resource.type} {resource.name}: {v}" for v in added(found, base)]
    assert problems == []
