"""Every rule, and the adapters that serve them through pulumi_policy."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pulumi_policy import (
    Policy,
    PolicyConfigSchema,
    PolicyResourceOptions,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import _DictProxy, _ListProxy

from wondernest_policies.aws import AWS_RESOURCE_RULES, AWS_STACK_RULES
from wondernest_policies.aws_network import NETWORK_RESOURCE_RULES, NETWORK_STACK_RULES
from wondernest_policies.credentials import CREDENTIAL_RULES
from wondernest_policies.docker import CONTAINER_RULES
from wondernest_policies.model import Resource, Rule, Violation
from wondernest_policies.platform import RESOURCE_RULES, STACK_RULES
from wondernest_policies.policy_documents import POLICY_DOCUMENT_RULES
from wondernest_policies.task_roles import TASK_ROLE_RULES

RULES: list[Rule] = [
    *CONTAINER_RULES,
    *RESOURCE_RULES,
    *STACK_RULES,
    *AWS_RESOURCE_RULES,
    *NETWORK_RESOURCE_RULES,
    *POLICY_DOCUMENT_RULES,
    *AWS_STACK_RULES,
    *NETWORK_STACK_RULES,
    *CREDENTIAL_RULES,
    *TASK_ROLE_RULES,
]


def _schema(rule: Rule) -> PolicyConfigSchema | None:
    return PolicyConfigSchema(properties=rule.config_schema) if rule.config_schema else None


def plain(value: Any) -> Any:
    """The properties as data, each unknown left as the engine's sentinel.

    pulumi_policy hands rules proxies that raise on reading an unknown value,
    and drops the whole rule when one does: during a preview, a rule that
    first reads a computed property (a key's ARN, say) would then report
    nothing, even for a property that is known and wrong. Rules see plain
    data instead and decide each check on its own: an unknown silences only
    the check that needs it (`model.unknown`)."""
    if isinstance(value, (_DictProxy, _ListProxy)):
        value = value["__target"]
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def _report(evaluate: Callable[[], list[Violation]], report_violation: ReportViolation) -> None:
    for violation in evaluate():
        report_violation(violation.message, violation.urn)


def _resource(
    resource_type: str,
    name: str,
    urn: str,
    props: Any,
    opts: PolicyResourceOptions,
    provider: Any,
    property_dependencies: Mapping[str, Sequence[Any]] | None = None,
    parent: Any = None,
) -> Resource:
    """What a rule sees of a resource the engine hands the pack, its provider's
    properties and (in a stack policy) its property dependencies included."""
    return Resource(
        resource_type,
        name,
        urn,
        plain(props),
        protect=bool(opts.protect),
        provider=plain(provider.props) if provider is not None else None,
        depends_on={key: tuple(d.urn for d in deps) for key, deps in (property_dependencies or {}).items()},
        parent=parent.urn if parent is not None else "",
    )


def _resource_policy(rule: Rule) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        resource = _resource(args.resource_type, args.name, args.urn, args.props, args.opts, args.provider)
        _report(lambda: rule.run_resource(resource, plain(args.get_config() or {})), report_violation)

    return ResourceValidationPolicy(
        name=rule.id,
        description=rule.description,
        validate=validate,
        severity=Severity(rule.severity),
        remediation_steps=rule.remediation,
        config_schema=_schema(rule),
    )


def _stack_policy(rule: Rule) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        resources = [
            _resource(r.resource_type, r.name, r.urn, r.props, r.opts, r.provider, r.property_dependencies, r.parent)
            for r in args.resources
        ]
        _report(lambda: rule.run_stack(resources, plain(args.get_config() or {})), report_violation)

    return StackValidationPolicy(
        name=rule.id,
        description=rule.description,
        validate=validate,
        severity=Severity(rule.severity),
        remediation_steps=rule.remediation,
        config_schema=_schema(rule),
    )


def policies() -> list[Policy]:
    return [_stack_policy(r) if r.check_stack else _resource_policy(r) for r in RULES]
