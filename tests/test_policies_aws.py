"""The AWS rules of the policy pack: each both ways, and the whole prod stack."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pulumi_policy import ResourceValidationArgs
from pulumi_policy.policy import PolicyProviderResource
from pulumi_policy.proxy import unknown_checking_proxy
from wondernest_policies import aws
from wondernest_policies.model import Resource
from wondernest_policies.registry import RULES, policies

from tests.harness import evaluate, stack_config
from tests.test_policies import UNKNOWN, _options, as_resources, enforcement, violations
from tests.test_stack_prod import CERT, prod_config

BY_ID = {rule.id: rule for rule in RULES}
TAGS = {"app": "wondernest", "environment": "prod", "owner": "platform-team", "cost-center": "wondernest"}


def res(typ: str, name: str, provider: dict[str, Any] | None = None, **props: Any) -> Resource:
    return Resource(typ, name, f"urn:pulumi:prod::wondernest::{typ}::{name}", props, provider=provider)


def rds(**overrides: Any) -> Resource:
    props = {
        "storageEncrypted": True,
        "kmsKeyId": "arn:aws:kms:eu-west-1:123456789012:key/k",
        "publiclyAccessible": False,
        "multiAz": True,
        "deletionProtection": True,
        "skipFinalSnapshot": False,
        "finalSnapshotIdentifier": "wondernest-prod-postgres-final",
        "backupRetentionPeriod": 14,
        "enabledCloudwatchLogsExports": ["postgresql", "upgrade"],
        "iamDatabaseAuthenticationEnabled": True,
        "performanceInsightsEnabled": True,
        "performanceInsightsKmsKeyId": "arn:aws:kms:eu-west-1:123456789012:key/k",
    }
    return res(aws.RDS, "postgres", **{**props, **overrides})


def redis(**overrides: Any) -> Resource:
    props = {
        "atRestEncryptionEnabled": True,
        "transitEncryptionEnabled": True,
        "authToken": "x" * 32,
        "automaticFailoverEnabled": True,
        "multiAzEnabled": True,
    }
    return res(aws.REPLICATION_GROUP, "redis", **{**props, **overrides})


def container(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "api",
        "user": "1001:1001",
        "readonlyRootFilesystem": True,
        "logConfiguration": {"logDriver": "awslogs", "options": {}},
        "environment": [{"name": "DB_HOST", "value": "db"}],
        "secrets": [{"name": "DB_PASSWORD", "valueFrom": "arn:aws:secretsmanager:eu-west-1:1:secret:x"}],
        **overrides,
    }


def task(**overrides: Any) -> Resource:
    return res(aws.TASK_DEFINITION, "api-task", containerDefinitions=json.dumps([container(**overrides)]))


def service(**overrides: Any) -> Resource:
    props = {
        "networkConfiguration": {"assignPublicIp": False, "subnets": ["subnet-a"]},
        "deploymentCircuitBreaker": {"enable": True, "rollback": True},
    }
    return res(aws.SERVICE, "api-service", **{**props, **overrides})


def alb(**overrides: Any) -> Resource:
    props = {"dropInvalidHeaderFields": True, "accessLogs": {"enabled": True}, "enableDeletionProtection": True}
    return res(aws.LOAD_BALANCER, "alb", **{**props, **overrides})


REDIRECT = [{"type": "redirect", "redirect": {"protocol": "HTTPS", "port": "443", "statusCode": "HTTP_301"}}]
FORWARD = [{"type": "forward", "targetGroupArn": "arn:tg"}]
LOGS_KEY = "arn:aws:kms:eu-west-1:123456789012:key/k"

AWS_RESOURCE_CASES: list[tuple[str, Resource, Resource, str]] = [
    ("aws-rds-hardened", rds(), rds(storageEncrypted=False), "not encrypted"),
    ("aws-rds-hardened", rds(), rds(publiclyAccessible=True), "publicly accessible"),
    ("aws-rds-hardened", rds(), rds(multiAz=False), "single-AZ"),
    ("aws-rds-hardened", rds(), rds(deletionProtection=False), "deletion protection"),
    ("aws-rds-hardened", rds(), rds(skipFinalSnapshot=True), "final snapshot"),
    ("aws-rds-hardened", rds(), rds(backupRetentionPeriod=7), "7 days, under 14"),
    ("aws-rds-hardened", rds(), rds(enabledCloudwatchLogsExports=[]), "log"),
    ("aws-rds-hardened", rds(), rds(iamDatabaseAuthenticationEnabled=False), "IAM"),
    ("aws-rds-hardened", rds(), rds(performanceInsightsKmsKeyId=None), "Performance Insights"),
    ("aws-elasticache-hardened", redis(), redis(atRestEncryptionEnabled=False), "at rest"),
    ("aws-elasticache-hardened", redis(), redis(transitEncryptionEnabled=False), "in transit"),
    ("aws-elasticache-hardened", redis(), redis(authToken=None), "authentication"),
    ("aws-elasticache-hardened", redis(), redis(automaticFailoverEnabled=False), "failover"),
    ("aws-ecs-task-hardened", task(), task(readonlyRootFilesystem=False), "writable root"),
    ("aws-ecs-task-hardened", task(), task(privileged=True), "privileged"),
    ("aws-ecs-task-hardened", task(), task(user="0"), "root"),
    ("aws-ecs-task-hardened", task(), task(logConfiguration={"logDriver": "json-file"}), "CloudWatch"),
    (
        "aws-ecs-task-hardened",
        task(),
        task(environment=[{"name": "DB_PASSWORD", "value": "hunter2"}]),
        "DB_PASSWORD carries a literal secret",
    ),
    (
        "aws-ecs-task-hardened",
        task(),
        task(environment=[{"name": "DATABASE_URL", "value": "postgres://app:hunter2@db/app"}]),
        "URL with credentials",
    ),
    ("aws-ecs-service-private", service(), service(networkConfiguration={"assignPublicIp": True}), "public IP"),
    ("aws-ecs-service-private", service(), service(deploymentCircuitBreaker={"enable": True}), "circuit breaker"),
    (
        "aws-ecs-container-insights",
        res(aws.CLUSTER, "cluster", settings=[{"name": "containerInsights", "value": "enabled"}]),
        res(aws.CLUSTER, "cluster", settings=[{"name": "containerInsights", "value": "disabled"}]),
        "Container Insights",
    ),
    (
        "aws-ec2-hardened",
        res(
            aws.EC2_INSTANCE, "bastion", metadataOptions={"httpTokens": "required"}, rootBlockDevice={"encrypted": True}
        ),
        res(
            aws.EC2_INSTANCE, "bastion", metadataOptions={"httpTokens": "optional"}, rootBlockDevice={"encrypted": True}
        ),
        "IMDSv1",
    ),
    (
        "aws-ec2-hardened",
        res(
            aws.EC2_INSTANCE, "bastion", metadataOptions={"httpTokens": "required"}, rootBlockDevice={"encrypted": True}
        ),
        res(aws.EC2_INSTANCE, "bastion", metadataOptions={"httpTokens": "required"}, rootBlockDevice={}),
        "unencrypted",
    ),
    (
        "aws-ec2-hardened",
        res(
            aws.EC2_INSTANCE, "bastion", metadataOptions={"httpTokens": "required"}, rootBlockDevice={"encrypted": True}
        ),
        res(
            aws.EC2_INSTANCE,
            "bastion",
            metadataOptions={"httpTokens": "required"},
            rootBlockDevice={"encrypted": True},
            associatePublicIpAddress=True,
        ),
        "public IP",
    ),
    ("aws-alb-hardened", alb(), alb(dropInvalidHeaderFields=False), "invalid HTTP headers"),
    ("aws-alb-hardened", alb(), alb(accessLogs={"enabled": False}), "access logs"),
    ("aws-alb-hardened", alb(), alb(enableDeletionProtection=False), "deletion protection"),
    (
        "aws-alb-https",
        res(aws.LISTENER, "http", protocol="HTTP", defaultActions=REDIRECT),
        res(aws.LISTENER, "http", protocol="HTTP", defaultActions=FORWARD),
        "plain HTTP",
    ),
    (
        "aws-alb-https",
        res(aws.LISTENER, "https", protocol="HTTPS", sslPolicy="ELBSecurityPolicy-TLS13-1-2-2021-06"),
        res(aws.LISTENER, "https", protocol="HTTPS", sslPolicy="ELBSecurityPolicy-2016-08"),
        "below 1.2",
    ),
    (
        "aws-kms-rotation",
        res(aws.KMS_KEY, "key", enableKeyRotation=True),
        res(aws.KMS_KEY, "key", enableKeyRotation=False),
        "rotate",
    ),
    (
        "aws-secret-customer-key",
        res(aws.SECRET, "postgres-app", kmsKeyId=LOGS_KEY),
        res(aws.SECRET, "postgres-app"),
        "AWS-managed key",
    ),
    (
        "aws-ecr-immutable-scanned",
        res(aws.ECR, "api-repository", imageTagMutability="IMMUTABLE", imageScanningConfiguration={"scanOnPush": True}),
        res(aws.ECR, "api-repository", imageTagMutability="MUTABLE", imageScanningConfiguration={"scanOnPush": True}),
        "overwritten",
    ),
    (
        "aws-ecr-immutable-scanned",
        res(aws.ECR, "api-repository", imageTagMutability="IMMUTABLE", imageScanningConfiguration={"scanOnPush": True}),
        res(aws.ECR, "api-repository", imageTagMutability="IMMUTABLE", imageScanningConfiguration={}),
        "scan",
    ),
    (
        "aws-log-retention",
        res(aws.LOG_GROUP, "api-logs", retentionInDays=90, kmsKeyId=LOGS_KEY),
        res(aws.LOG_GROUP, "api-logs", kmsKeyId=LOGS_KEY),
        "forever",
    ),
    (
        "aws-log-retention",
        res(aws.LOG_GROUP, "api-logs", retentionInDays=90, kmsKeyId=LOGS_KEY),
        res(aws.LOG_GROUP, "api-logs", retentionInDays=90),
        "customer key",
    ),
    (
        "aws-provider-default-tags",
        res(aws.AWS_PROVIDER, "aws", defaultTags=json.dumps({"tags": TAGS})),
        res(aws.AWS_PROVIDER, "aws", defaultTags=json.dumps({"tags": {"app": "wondernest"}})),
        "'owner'",
    ),
]


@pytest.mark.parametrize(
    ("rule_id", "good", "bad", "words"), AWS_RESOURCE_CASES, ids=[c[0] for c in AWS_RESOURCE_CASES]
)
def test_each_aws_resource_rule_both_ways(rule_id: str, good: Resource, bad: Resource, words: str) -> None:
    rule = BY_ID[rule_id]
    assert rule.run_resource(good, {}) == []
    found = rule.run_resource(bad, {})
    assert len(found) == 1, found
    assert found[0].message.startswith(f"{bad.name}:") and words in found[0].message
    assert "Fix:" in found[0].message and found[0].urn == bad.urn


def test_policy_config_relaxes_only_what_it_names() -> None:
    single_az = rds(multiAz=False)
    assert BY_ID["aws-rds-hardened"].run_resource(single_az, {"allowSingleAz": True}) == []
    short = rds(backupRetentionPeriod=7)
    assert BY_ID["aws-rds-hardened"].run_resource(short, {"allowSingleAz": True, "minBackupRetentionDays": 7}) == []
    plain = res(aws.LISTENER, "http", protocol="HTTP", defaultActions=FORWARD)
    assert BY_ID["aws-alb-https"].run_resource(plain, {"allowPlainHttp": True}) == []


def test_unknowns_are_not_judged() -> None:
    for rule_id, resource in (
        ("aws-ecs-task-hardened", res(aws.TASK_DEFINITION, "t", containerDefinitions=UNKNOWN)),
        (
            "aws-ecs-service-private",
            res(aws.SERVICE, "s", networkConfiguration=UNKNOWN, deploymentCircuitBreaker=UNKNOWN),
        ),
        ("aws-rds-hardened", rds(backupRetentionPeriod=UNKNOWN)),
        ("aws-log-retention", res(aws.LOG_GROUP, "l", retentionInDays=UNKNOWN, kmsKeyId=UNKNOWN)),
    ):
        assert BY_ID[rule_id].run_resource(resource, {}) == [], rule_id


# --- stack rules ----------------------------------------------------------------------


def bucket_set(name: str, **broken: Any) -> list[Resource]:
    """A bucket and its configuration resources as the platform declares them."""
    policy = {"Statement": [{"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]}
    parts: dict[str, dict[str, Any]] = {
        aws.BUCKET: {"bucket": name},
        aws.BUCKET_SSE: {
            "bucket": name,
            "rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms"}}],
        },
        aws.BUCKET_VERSIONING: {"bucket": name, "versioningConfiguration": {"status": "Enabled"}},
        aws.BUCKET_PAB: {
            "bucket": name,
            **{f: True for f in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")},
        },
        aws.BUCKET_POLICY: {"bucket": name, "policy": json.dumps(policy)},
    }
    out = []
    for typ, props in parts.items():
        change = broken.get(typ.rsplit(":", 1)[1])
        if change == "absent":
            continue
        out.append(res(typ, "dumps", **{**props, **(change or {})}))
    return out


def ingress(name: str, port: int, cidr: str = "0.0.0.0/0", group: str = "sg-alb") -> Resource:
    return res(aws.SG_INGRESS, name, cidrIpv4=cidr, fromPort=port, toPort=port, securityGroupId=group)


STACK_CASES: list[tuple[str, list[Resource], list[Resource], str]] = [
    ("aws-s3-hardened", bucket_set("b"), bucket_set("b", BucketServerSideEncryptionConfiguration="absent"),
     "no default encryption"),
    ("aws-s3-hardened", bucket_set("b"),
     bucket_set("b", BucketVersioning={"versioningConfiguration": {"status": "Suspended"}}), "not versioned"),
    ("aws-s3-hardened", bucket_set("b"), bucket_set("b", BucketPublicAccessBlock={"restrictPublicBuckets": False}),
     "public access"),
    ("aws-s3-hardened", bucket_set("b"),
     bucket_set("b", BucketPolicy={"policy": json.dumps({"Statement": []})}), "without TLS"),
    ("aws-no-open-ingress", [alb(securityGroups=["sg-alb"]), ingress("alb-in-443", 443)],
     [alb(securityGroups=["sg-alb"]), ingress("db-in", 5432, group="sg-db")], "port 5432 to the internet"),
    ("aws-no-open-ingress", [alb(securityGroups=["sg-alb"]), ingress("alb-in-443", 443)],
     [alb(securityGroups=["sg-alb"]), ingress("api-in-443", 443, group="sg-api")], "no load balancer uses"),
    ("aws-no-open-ingress", [ingress("alb-in-80", 80)], [ingress("v6", 22, cidr="::/0")], "port 22"),
    ("aws-required-tags", [res(aws.KMS_KEY, "key", provider={"defaultTags": json.dumps({"tags": TAGS})})],
     [res(aws.KMS_KEY, "key", provider={"region": "eu-west-1"})], "lacks the tags"),
    ("aws-required-tags", [res(aws.KMS_KEY, "key", provider={}, tags=TAGS)],
     [res(aws.KMS_KEY, "key", provider={}, tags={"app": "wondernest"})], "'environment'"),
]  # fmt: skip


@pytest.mark.parametrize(("rule_id", "good", "bad", "words"), STACK_CASES, ids=[c[0] for c in STACK_CASES])
def test_each_aws_stack_rule_both_ways(rule_id: str, good: list[Resource], bad: list[Resource], words: str) -> None:
    rule = BY_ID[rule_id]
    assert rule.run_stack(good, {}) == []
    found = rule.run_stack(bad, {})
    assert len(found) == 1, found
    assert words in found[0].message and "Fix:" in found[0].message


# --- the prod stack -----------------------------------------------------------------


def prod_violations(resources: list[Resource]) -> dict[str, list[str]]:
    return violations(resources, "prod")


@pytest.fixture(scope="module")
def prod_resources() -> list[Resource]:
    """Prod with everything optional switched on: certificate, alert email, bastion, cross-region copies."""
    config = prod_config(
        {
            "domainName": "api.example.com",
            "certificateArn": CERT,
            "alertEmail": "oncall@example.com",
            "adminBastion": True,
            "backupCopyRegion": "eu-central-1",
        }
    )
    return as_resources(evaluate(config, stack="prod"), "prod")


def test_the_prod_stack_passes_the_whole_pack(prod_resources: list[Resource]) -> None:
    assert all(level == "mandatory" for level in enforcement("prod").values())
    assert prod_violations(prod_resources) == {}


def test_prod_without_a_certificate_is_refused_for_plain_http() -> None:
    resources = as_resources(evaluate(prod_config(), stack="prod"), "prod")
    assert prod_violations(resources) == {"aws-alb-https": ["http"]}


def test_a_broken_prod_stack_produces_exactly_the_expected_violations() -> None:
    # Single-AZ and a short log retention come through the stack config; the rest
    # are mistakes made as if something had slipped past the config layer.
    ev = evaluate(
        prod_config(
            {"dbMultiAz": False, "logRetentionDays": 14, "certificateArn": CERT, "domainName": "a.example.com"}
        ),
        stack="prod",
    )
    broken = []
    for r in as_resources(ev, "prod"):
        props = dict(r.props)
        provider = r.provider
        if r.type == aws.RDS:
            props["publiclyAccessible"] = True
        if r.type == aws.SG_INGRESS and r.name == "api-to-postgres-ingress":
            props = {**props, "cidrIpv4": "0.0.0.0/0", "referencedSecurityGroupId": None}
        if r.type == aws.TASK_DEFINITION and r.name == "api-task":
            containers = json.loads(props["containerDefinitions"])
            containers[0]["environment"].append({"name": "JWT_SECRET", "value": "in-the-clear"})
            props["containerDefinitions"] = json.dumps(containers)
        if r.type == aws.KMS_KEY:
            provider = {"region": "eu-west-1"}
        broken.append(Resource(r.type, r.name, r.urn, props, r.protect, provider))
    logs = sorted(r.name for r in broken if r.type == aws.LOG_GROUP)
    assert prod_violations(broken) == {
        "aws-rds-hardened": ["postgres", "postgres"],
        "aws-no-open-ingress": ["api-to-postgres-ingress"],
        "aws-ecs-task-hardened": ["api-task"],
        "aws-log-retention": logs,
        "aws-required-tags": ["key"],
    }


def test_the_served_policies_see_the_provider() -> None:
    served = {p.name: p for p in policies()}
    reported: list[str] = []
    key = res(aws.KMS_KEY, "key", enableKeyRotation=False)
    provider = PolicyProviderResource(aws.AWS_PROVIDER, {"region": "eu-west-1"}, "urn:p", "aws")
    args = ResourceValidationArgs(
        aws.KMS_KEY, unknown_checking_proxy(dict(key.props)), key.urn, key.name, _options(), provider
    )
    served["aws-kms-rotation"].validate(args, lambda message, urn=None: reported.append(message))  # type: ignore[attr-defined]
    assert len(reported) == 1 and "rotate" in reported[0]


def test_the_severities_rule_reads_managed_prometheus(prod_resources: list[Resource]) -> None:
    rule = BY_ID["alerting-severities-routed"]
    assert rule.run_stack(prod_resources, {}) == []
    broken = []
    for r in prod_resources:
        if r.type == "aws:amp/alertManagerDefinition:AlertManagerDefinition":
            definition = str(r.props["definition"]).replace('severity=\\"critical\\"', 'severity=\\"page\\"')
            definition = definition.replace('severity="critical"', 'severity="page"')
            r = Resource(r.type, r.name, r.urn, {**r.props, "definition": definition}, r.protect, r.provider)
        broken.append(r)
    found = rule.run_stack(broken, {})
    assert len(found) == 1 and "'critical'" in found[0].message


def test_the_backup_rule_wants_aws_backup_and_a_verifying_task(prod_resources: list[Resource]) -> None:
    rule = BY_ID["postgres-backup-verified"]
    assert rule.run_stack(prod_resources, {}) == []
    without = [r for r in prod_resources if r.type != "aws:backup/selection:Selection"]
    assert [v.message.split(" Fix:")[0] for v in rule.run_stack(without, {})] == [
        "postgres: no AWS Backup selection takes its snapshots."
    ]


def test_the_staging_stack_passes_with_its_own_policy_config() -> None:
    ev = evaluate(stack_config(stack="staging"), stack="staging")
    resources = as_resources(ev, "staging")
    assert len(ev.of_type("aws:ec2/natGateway:NatGateway")) == 1
    assert not [d for d in ev.of_type("aws:ec2/vpcEndpoint:VpcEndpoint") if d.inputs["vpcEndpointType"] == "Interface"]
    assert ev.named("aws:rds/instance:Instance", "postgres").inputs["multiAz"] is False
    assert violations(resources, "staging") == {}
    # The same graph under prod's policy config: exactly what staging relaxes.
    assert prod_violations(resources) == {"aws-rds-hardened": ["postgres"], "aws-alb-https": ["http"]}
