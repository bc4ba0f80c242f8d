"""What a rule sees, and what a rule is."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

# The engine's placeholders for values not known until apply (pulumi_policy.proxy).
UNKNOWNS = frozenset(
    {
        "1c4a061d-8072-4f0a-a4cb-0ff528b18fe7",
        "3eeb2bf0-c639-47a8-9e75-3b44932eb421",
        "04da6b54-80e4-46f7-96ec-b56ff0331ba9",
        "6a19a0b0-7e62-4c92-b797-7f8e31da9cc2",
        "030794c1-ac77-496b-92df-f27374a8bd58",
        "e48ece36-62e2-4504-bad9-02848725956a",
        "dd056dcd-154b-4c76-9bd3-c8f88648b5ff",
    }
)

Severity = Literal["low", "medium", "high", "critical"]


def unknown(value: Any) -> bool:
    return isinstance(value, str) and value in UNKNOWNS


def has_unknown(value: Any) -> bool:
    """The value, or anything inside it, is not known yet."""
    if isinstance(value, Mapping):
        return any(has_unknown(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(has_unknown(v) for v in value)
    return unknown(value)


# During a preview every value computed from a resource not yet created is
# unknown. A check that needs such a value passes for now (`pulumi up` judges
# it again once known); the checks beside it are still decided.


def holds(value: Any, test: Callable[[Any], bool]) -> bool:
    """`test` passes on the value, or the value is not known yet."""
    return has_unknown(value) or bool(test(value))


def at(value: Any, *path: str | int) -> Any:
    """The value at `path` inside an object or list, None where it is absent,
    and the unknown itself where the path crosses one: a check on one leaf is
    silenced by that leaf's unknown only, not by an unknown beside it."""
    for key in path:
        if unknown(value):
            return value
        if isinstance(key, int):
            value = value[key] if isinstance(value, (list, tuple)) and -len(value) <= key < len(value) else None
        else:
            value = value.get(key) if isinstance(value, Mapping) else None
    return value


def is_true(value: Any) -> bool:
    return holds(value, lambda v: v is True)


def items(value: Any) -> list[Any]:
    """A list property's known items: none when the list is unknown or not a list."""
    if not isinstance(value, (list, tuple)):
        return []
    return [item for item in value if not unknown(item)]


def mappings(value: Any) -> list[Mapping[str, Any]]:
    """A list property's known object items."""
    return [item for item in items(value) if isinstance(item, Mapping)]


def mapping(value: Any) -> Mapping[str, Any]:
    """An object property, or an empty one when it is unknown or absent."""
    return value if isinstance(value, Mapping) else {}


def includes(value: Any, wanted: Any) -> bool:
    """The list holds `wanted`, or may once its unknown parts are known."""
    return holds(value, lambda v: isinstance(v, (list, tuple)) and wanted in v)


@dataclass(frozen=True)
class Resource:
    type: str
    name: str
    urn: str
    props: Mapping[str, Any]
    protect: bool = False
    provider: Mapping[str, Any] | None = None
    """The properties of the provider resource the resource is created through, when known."""
    depends_on: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Per property, the URNs of the resources its value came from: how a rule
    relates resources whose ids are not known yet, as in a preview."""
    parent: str = ""
    """The URN of the resource it is declared under (in a stack policy; "" otherwise)."""

    def get(self, key: str, default: Any = None) -> Any:
        return self.props.get(key, default)

    def refers_to(self, key: str, other: Resource) -> bool:
        return other.urn in self.depends_on.get(key, ())

    @property
    def container_definitions(self) -> list[dict[str, Any]] | None:
        """An ECS task definition's containers (inputs hold them as JSON text);
        None while they are unknown, or on a resource that has none."""
        text = self.props.get("containerDefinitions")
        if text is None or unknown(text):
            return None
        return list(json.loads(text))

    @property
    def runs_once(self) -> bool:
        """A Docker container `pulumi up` runs to its end (`attach`, not
        `mustRun`), such as migrations: a job, not a service."""
        return self.props.get("attach") is True and self.props.get("mustRun") is False

    @property
    def kind_known(self) -> bool:
        """Whether it is known to be a job or a service."""
        return not has_unknown(self.props.get("attach")) and not has_unknown(self.props.get("mustRun"))

    @property
    def labels(self) -> dict[str, str]:
        """Docker labels as a dict (inputs hold them as a list of {label, value}); known ones only."""
        return {
            item["label"]: item["value"]
            for item in mappings(self.props.get("labels"))
            if not has_unknown(item.get("label")) and not has_unknown(item.get("value"))
        }

    @property
    def labels_known(self) -> bool:
        return not has_unknown(self.props.get("labels"))


@dataclass(frozen=True)
class Violation:
    message: str
    urn: str | None = None


ResourceCheck = Callable[[Resource, Mapping[str, Any]], Iterable[str]]
StackCheck = Callable[[Sequence[Resource], Mapping[str, Any]], Iterable[Violation]]


@dataclass(frozen=True)
class Rule:
    id: str
    description: str
    """What it checks and why."""
    severity: Severity
    remediation: str
    resource_types: tuple[str, ...] = ()
    """Types a resource rule applies to; empty for a stack rule."""
    check_resource: ResourceCheck | None = None
    check_stack: StackCheck | None = None
    config_schema: dict[str, Any] = field(default_factory=dict)

    def run_resource(self, resource: Resource, config: Mapping[str, Any]) -> list[Violation]:
        if self.check_resource is None or resource.type not in self.resource_types:
            return []
        return [
            Violation(f"{resource.name}: {m} Fix: {self.remediation}", resource.urn)
            for m in self.check_resource(resource, config)
        ]

    def run_stack(self, resources: Sequence[Resource], config: Mapping[str, Any]) -> list[Violation]:
        if self.check_stack is None:
            return []
        return [Violation(f"{v.message} Fix: {self.remediation}", v.urn) for v in self.check_stack(resources, config)]
