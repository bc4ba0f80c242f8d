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
    def labels(self) -> dict[str, str]:
        """Docker labels as a dict (inputs hold them as a list of {label, value})."""
        raw = self.props.get("labels") or []
        if unknown(raw):
            return {}
        return {item["label"]: item["value"] for item in raw if isinstance(item, Mapping)}


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
