"""Rules across resources and targets: database roles, network tiers, monitoring coverage, backups."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import yaml

from wondernest_policies.docker import CONTAINER
from wondernest_policies.model import Resource, Rule, Violation, is_true, items, mappings, unknown

ROLE = "pulumi-python:dynamic/postgres:Role"
RDS = "aws:rds/instance:Instance"
BACKUP_SELECTION = "aws:backup/selection:Selection"
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
NETWORK = "docker:index/network:Network"
DATA_TIER = frozenset({"postgres", "redis", "postgres-exporter", "redis-exporter"})
# Roles that make a member as powerful as a superuser for files or programs on the server.
SUPERUSER_EQUIVALENT = frozenset(
    {"pg_execute_server_program", "pg_read_server_files", "pg_write_server_files", "rds_superuser"}
)
# Containers that are tools for a developer, not services of the platform.
UNSCRAPED_COMPONENTS = frozenset({"pgadmin", "dev-s3"})


@functools.lru_cache(maxsize=32)
def _parsed(text: str) -> Any:
    """A rendered YAML file, parsed once per text: the pack judges the same
    prometheus.yml and rule files once per resource and once per graph."""
    return yaml.safe_load(text)


def _role_limited(resource: Resource, _config: Mapping[str, Any]) -> Iterable[str]:
    limit = resource.get("connection_limit")
    if unknown(limit):
        return []
    return [] if isinstance(limit, (int, float)) and limit >= 1 else ["has no connection limit."]


def _role_not_superuser(resource: Resource, _config: Mapping[str, Any]) -> Iterable[str]:
    problems = []
    if resource.get("superuser") is True:
        problems.append("is a superuser.")
    # `items` is empty for a list not known yet.
    granted = sorted(SUPERUSER_EQUIVALENT & set(items(resource.get("member_of"))))
    if granted:
        problems.append(f"is a member of {granted}, which reach the server's files or programs.")
    return problems


def _containers(resources: Sequence[Resource]) -> list[Resource]:
    return [r for r in resources if r.type == CONTAINER]


def _component(resource: Resource) -> str:
    return resource.labels.get("com.wondernest.component", "")


def _uploaded(resource: Resource, path: str) -> str | None:
    for upload in mappings(resource.get("uploads")):
        if upload.get("file") == path and isinstance(upload.get("content"), str) and not unknown(upload["content"]):
            return str(upload["content"])
    return None


def _attached(container: Resource, networks: Sequence[Resource]) -> list[Resource]:
    """The networks a container joins: by name where names are known, else by
    where `networksAdvanced` came from (in a preview the names are outputs)."""
    by_name = {str(n.get("name")): n for n in networks if not unknown(n.get("name"))}
    # A name not known yet is none of these: they are known ones only.
    found = [
        by_name[str(a.get("name"))]
        for a in mappings(container.get("networksAdvanced"))
        if str(a.get("name")) in by_name
    ]
    found += [n for n in networks if container.refers_to("networksAdvanced", n) and n not in found]
    return found


def _data_tier_internal(resources: Sequence[Resource], _config: Mapping[str, Any]) -> Iterable[Violation]:
    networks = [r for r in resources if r.type == NETWORK]
    for container in _containers(resources):
        if not container.labels_known or _component(container) not in DATA_TIER:
            continue
        for network in _attached(container, networks):
            if not network.labels_known:
                continue
            # The ops bridge carries only the loopback-published admin ports; Docker
            # cannot publish from an internal network.
            ops = network.labels.get("com.wondernest.component") == "network-ops"
            exporter = _component(container).endswith("-exporter")
            if not is_true(network.get("internal")) and not (ops and not exporter):
                yield Violation(
                    f"{container.name}: the data tier joins non-internal network {network.get('name')}.",
                    container.urn,
                )


def _scrape_jobs(resources: Sequence[Resource]) -> set[str] | None:
    """The scrape jobs of the stack's Prometheus; None while they cannot be told."""
    if any(not c.labels_known for c in _containers(resources)):
        return None
    for container in _containers(resources):
        if _component(container) == "prometheus":
            text = _uploaded(container, "/etc/prometheus/prometheus.yml")
            if text is None:
                return None
            return {job["job_name"] for job in _parsed(text).get("scrape_configs") or []}
    return set()


def _every_service_scraped(resources: Sequence[Resource], _config: Mapping[str, Any]) -> Iterable[Violation]:
    jobs = _scrape_jobs(resources)
    if jobs is None:
        return
    for container in _containers(resources):
        if not container.labels_known or not container.kind_known:
            continue
        if _component(container) in UNSCRAPED_COMPONENTS or container.runs_once:
            continue
        job = container.labels.get("com.wondernest.metrics-job")
        if not job:
            yield Violation(
                f"{container.name}: declares no metrics job (label com.wondernest.metrics-job).", container.urn
            )
        elif job not in jobs:
            yield Violation(f"{container.name}: Prometheus has no scrape job {job!r} for it.", container.urn)


AMP_RULES = "aws:amp/ruleGroupNamespace:RuleGroupNamespace"
AMP_ALERTMANAGER = "aws:amp/alertManagerDefinition:AlertManagerDefinition"


def _severities_routed(resources: Sequence[Resource], _config: Mapping[str, Any]) -> Iterable[Violation]:
    rules_text = am_text = None
    prometheus = alertmanager = None
    for container in _containers(resources):
        if _component(container) == "prometheus":
            prometheus = container
            rules_text = _uploaded(container, "/etc/prometheus/rules/platform.yml")
        if _component(container) == "alertmanager":
            alertmanager = container
            am_text = _uploaded(container, "/etc/alertmanager/alertmanager.yml")
    for resource in resources:
        # Managed Prometheus: the rule namespace and the Alertmanager definition.
        if resource.type == AMP_RULES:
            prometheus = resource
            data = resource.get("data")
            rules_text = None if unknown(data) else data
        if resource.type == AMP_ALERTMANAGER:
            alertmanager = resource
            definition = resource.get("definition")
            am_text = None if unknown(definition) else _parsed(definition)["alertmanager_config"]
    # am_text comes only with an alertmanager: its test adds no case, it tells the type checker.
    if rules_text is None or am_text is None or alertmanager is None:
        unsure = any(not c.labels_known for c in _containers(resources))
        if prometheus is not None and alertmanager is None and not unsure:
            yield Violation("Prometheus evaluates alerts but no Alertmanager is declared.", prometheus.urn)
        return
    severities = {
        rule["labels"]["severity"]
        for group in _parsed(rules_text)["groups"]
        for rule in group["rules"]
        if "alert" in rule and rule["alert"] != "Watchdog"
    }
    config = _parsed(am_text)
    receivers = {r["name"] for r in config.get("receivers") or []}
    routed = {}
    for route in config["route"].get("routes") or []:
        for matcher in route.get("matchers") or []:
            if matcher.startswith("severity="):
                routed[matcher.removeprefix("severity=").strip('"')] = route.get("receiver")
    shared: dict[str, str] = {}
    for severity in sorted(severities):
        receiver = routed.get(severity)
        if receiver is None or receiver not in receivers:
            yield Violation(
                f"alerts of severity {severity!r} reach no receiver of their own.",
                alertmanager.urn,
            )
        elif receiver in shared:
            # Pages and tickets in one place: the pages drown, or the tickets wake someone.
            yield Violation(
                f"alerts of severity {severity!r} share receiver {receiver!r} with {shared[receiver]!r}.",
                alertmanager.urn,
            )
        else:
            shared[receiver] = severity


def _postgres_backed_up(resources: Sequence[Resource], _config: Mapping[str, Any]) -> Iterable[Violation]:
    databases = [c for c in _containers(resources) if _component(c) == "postgres"]
    backups = [c for c in _containers(resources) if _component(c) == "backups" or not c.labels_known]
    verified = [c for c in backups if c.labels.get("com.wondernest.backup-verify") == "restore" or not c.labels_known]
    for database in databases:
        if not verified:
            yield Violation(f"{database.name}: no backup job verifies its backups by restoring them.", database.urn)
    # A read replica's data is its source's, which these back up.
    for database in (r for r in resources if r.type == RDS and not r.get("replicateSourceDb")):
        if not any(r.type == BACKUP_SELECTION for r in resources):
            yield Violation(f"{database.name}: no AWS Backup selection takes its snapshots.", database.urn)
        if not any(_runs_backup_service(r) for r in resources):
            yield Violation(f"{database.name}: no backup task verifies its dumps by restoring them.", database.urn)


def _runs_backup_service(resource: Resource) -> bool:
    """An ECS task running wondernest_backup's scheduled, restore-verifying service."""
    if resource.type != TASK_DEFINITION:
        return False
    containers = resource.container_definitions
    if containers is None:
        return True
    return any(any(e.get("name") == "BACKUP_SCHEDULE" for e in c.get("environment") or []) for c in containers)


RESOURCE_RULES: list[Rule] = [
    Rule(
        "postgres-role-connection-limit",
        "Every database role has a connection limit, so one misbehaving client cannot take every connection.",
        "high",
        "Give the role a CONNECTION LIMIT in the platform model (components/model/database.py).",
        (ROLE,),
        _role_limited,
    ),
    Rule(
        "postgres-role-not-superuser",
        "No role the platform declares is a superuser or holds a superuser-equivalent predefined role.",
        "critical",
        "Grant the specific privileges the role needs instead.",
        (ROLE,),
        _role_not_superuser,
    ),
]

STACK_RULES: list[Rule] = [
    Rule(
        "network-data-tier-internal",
        "Postgres, Redis and the exporters talk only on an internal network (no route off the host). Postgres "
        "and Redis may also join the ops bridge, which exists only to publish their admin ports on loopback.",
        "high",
        "Attach data-tier containers to the backend network (internal) only.",
        check_stack=_data_tier_internal,
    ),
    Rule(
        "monitoring-every-service-scraped",
        "Every service container is covered by a Prometheus scrape job (directly or through its exporter), "
        "so no outage is silent.",
        "medium",
        "Label the container with its job (com.wondernest.metrics-job) and add that job to prometheus.yml.",
        check_stack=_every_service_scraped,
    ),
    Rule(
        "alerting-severities-routed",
        "Every alert severity the rules use is routed to a receiver of its own in Alertmanager: pages and "
        "tickets never share one.",
        "high",
        "Route each severity to its own receiver in alertmanager.yml.",
        check_stack=_severities_routed,
    ),
    Rule(
        "postgres-backup-verified",
        "Every Postgres has a backup job that proves its backups by restoring them; on AWS, also an AWS Backup "
        "selection for its snapshots. A read replica's data is its source's, backed up there.",
        "high",
        "Declare the Backups component (restore-verified) for the database.",
        check_stack=_postgres_backed_up,
    ),
]
