"""The prod stack under Pulumi's mock runtime, with AWS-shaped ids, ARNs and endpoints."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.config import ConfigError, parse_config
from components.local.monitoring import RULES_FILE
from components.model.alerts import RUNBOOKS_DOC, AlertThresholds, render_rule_file, rule_groups
from components.model.aws_sizes import RDS_CLASSES
from components.model.backups import max_backup_age_seconds
from components.model.dashboards import DASHBOARDS_DIR
from components.model.postgres_conf import rds_parameters, tune
from tests import harness
from tests.aws_mocks import ACCOUNT, MASTER_PASSWORD, aws_mock_state, ec2_id
from tests.harness import (
    CONTAINER_TYPE,
    Evaluation,
    as_json,
    declared_by,
    evaluate,
    fake_secret,
    is_secret,
    stack_config,
    unwrap,
)
from tests.test_stack_dev import DYNAMIC

CERT = "arn:aws:acm:eu-west-1:123456789012:certificate/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"
TASK_DEF = "aws:ecs/taskDefinition:TaskDefinition"
SERVICE = "aws:ecs/service:Service"
SG_INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
SG_EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
SECRET = "aws:secretsmanager/secret:Secret"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
# Resources AWS does not tag, or that are not AWS resources at all.
UNTAGGABLE_PREFIXES = ("pulumi:providers:", "wondernest:", "random:", "docker:", "grafana:", DYNAMIC)


RUNBOOKS = "https://git.example.org/platform/blob/main/docs/runbooks.md"
PAGING = {"page": {"email": "oncall@example.com"}, "runbookUrl": RUNBOOKS}
"""What a production stack must add to the committed file before anything is declared."""


def prod_config(aws: dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    """The committed prod config with a page destination, plus `aws` keys and overrides."""
    config = stack_config(stack="prod")
    config["aws"] = {**config["aws"], **(aws or {})}
    config["alerting"] = {**config.get("alerting", {}), **PAGING}
    config.update(overrides)
    return config


@pytest.fixture(scope="module")
def prod() -> Evaluation:
    """Prod as it is run: the file, plus the certificate and page destination it asks for."""
    return evaluate(prod_config({"domainName": "api.example.com", "certificateArn": CERT}), stack="prod")


@pytest.fixture(scope="module")
def prod_without_certificate() -> Evaluation:
    return evaluate(prod_config(), stack="prod")


def by_name(ev: Evaluation, typ: str) -> dict[str, dict[str, Any]]:
    return {d.name: unwrap(d.inputs) for d in ev.of_type(typ)}


def containers(ev: Evaluation, family_suffix: str) -> dict[str, dict[str, Any]]:
    [task] = [d for d in ev.of_type(TASK_DEF) if d.inputs["family"].endswith(family_suffix)]
    return {c["name"]: c for c in json.loads(task.inputs["containerDefinitions"])}


def test_every_component_is_declared_under_one_tagged_provider(prod: Evaluation) -> None:
    components = {d.typ for d in prod.declared if d.typ.startswith("wondernest:aws:")}
    assert components == {
        f"wondernest:aws:{c}"
        for c in (
            "Platform",
            "Network",
            "Secrets",
            "Database",
            "CredentialRotation",
            "SecretRotation",
            "Cache",
            "Api",
            "Waf",
            "Monitoring",
            "Backups",
        )
    }
    provider = prod.named("pulumi:providers:aws", "aws").inputs
    assert provider["region"] == "eu-west-1"
    assert json.loads(provider["defaultTags"])["tags"] == {
        "app": "wondernest",
        "environment": "prod",
        "owner": "platform-team",
        "cost-center": "wondernest",
        "managed-by": "pulumi",
    }


def test_every_aws_resource_goes_through_the_tagged_provider(prod: Evaluation) -> None:
    aws_resources = [d for d in prod.declared if d.typ.startswith("aws:")]
    assert len(aws_resources) > 150
    # The main provider, or the copy region's, both with the default tags.
    untagged = [
        d.name
        for d in aws_resources
        if not any(f"::{p}::" in (d.options.get("provider") or "") for p in ("aws", "copy-region"))
    ]
    assert untagged == []


def test_network_spans_three_azs_in_three_tiers_with_a_nat_per_az(prod: Evaluation) -> None:
    subnets = by_name(prod, "aws:ec2/subnet:Subnet")
    assert sorted(subnets) == sorted(f"{t}-{i}" for t in ("public", "private", "isolated") for i in range(3))
    assert {s["availabilityZone"] for s in subnets.values()} == {"eu-west-1a", "eu-west-1b", "eu-west-1c"}
    assert all(s["mapPublicIpOnLaunch"] is False for s in subnets.values())
    assert len(prod.of_type("aws:ec2/natGateway:NatGateway")) == 3
    routes = by_name(prod, "aws:ec2/routeTable:RouteTable")
    assert "routes" not in routes["isolated-rt"] or routes["isolated-rt"]["routes"] == []
    nat_routes = {r["routes"][0]["natGatewayId"] for k, r in routes.items() if k.startswith("private-rt-")}
    assert len(nat_routes) == 3
    default_sg = prod.named("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup", "default-sg").inputs
    assert default_sg["ingress"] == [] and default_sg["egress"] == []


def test_a_single_nat_gateway_when_configured() -> None:
    ev = evaluate(prod_config({"singleNatGateway": True, "azCount": 2}), stack="prod")
    assert len(ev.of_type("aws:ec2/natGateway:NatGateway")) == 1
    assert len(ev.of_type("aws:ec2/subnet:Subnet")) == 6


def test_flow_logs_and_endpoints(prod: Evaluation) -> None:
    flow = prod.named("aws:ec2/flowLog:FlowLog", "flow-log").inputs
    assert flow["trafficType"] == "ALL" and flow["logDestinationType"] == "cloud-watch-logs"
    log = prod.named(LOG_GROUP, "flow-logs").inputs
    assert log["retentionInDays"] == 90 and log["kmsKeyId"].startswith("arn:aws:kms:")
    endpoints = {e["serviceName"]: e for e in by_name(prod, "aws:ec2/vpcEndpoint:VpcEndpoint").values()}
    assert endpoints["com.amazonaws.eu-west-1.s3"]["vpcEndpointType"] == "Gateway"
    for service in ("ecr.api", "ecr.dkr", "logs", "secretsmanager"):
        endpoint = endpoints[f"com.amazonaws.eu-west-1.{service}"]
        assert endpoint["vpcEndpointType"] == "Interface" and endpoint["privateDnsEnabled"] is True


def test_security_groups_chain_alb_to_api_to_data_and_every_rule_says_why(prod: Evaluation) -> None:
    rules = [*prod.of_type(SG_INGRESS), *prod.of_type(SG_EGRESS)]
    assert all(r.inputs.get("description") for r in rules)
    open_ingress = sorted(
        (r.name, r.inputs["fromPort"]) for r in prod.of_type(SG_INGRESS) if r.inputs.get("cidrIpv4") == "0.0.0.0/0"
    )
    assert open_ingress == [("alb-in-443", 443), ("alb-in-80", 80)]
    ingress = {r.name: r.inputs for r in prod.of_type(SG_INGRESS)}
    sg = {
        key: ec2_id("sg", f"sg-{key}") for key in ("alb", "api", "postgres", "redis", "exporters", "backup", "rotation")
    }
    assert ingress["alb-to-api-ingress"]["referencedSecurityGroupId"] == sg["alb"]
    assert ingress["alb-to-api-ingress"]["securityGroupId"] == sg["api"]
    by_target = {
        port: {
            (r["securityGroupId"], r["referencedSecurityGroupId"]) for r in ingress.values() if r["fromPort"] == port
        }
        for port in (5432, 6379)
    }
    # Nothing but these tasks and the rotation function reaches the data tier.
    assert by_target[5432] == {(sg["postgres"], sg[k]) for k in ("api", "exporters", "backup", "rotation")}
    assert by_target[6379] == {(sg["redis"], sg[k]) for k in ("api", "exporters")}
    assert not any(r.get("cidrIpv4") for r in ingress.values() if r.get("fromPort") in (5432, 6379))


def test_kms_key_rotates_and_every_secret_uses_it(prod: Evaluation) -> None:
    key_resource = prod.named("aws:kms/key:Key", "key")
    key = key_resource.inputs
    assert key["enableKeyRotation"] is True and key["deletionWindowInDays"] == 30
    assert key_resource.options["protect"] is True
    secrets = by_name(prod, SECRET)
    assert sorted(secrets) == sorted(
        [
            "postgres-migrator",
            "postgres-app",
            "postgres-analytics",
            "postgres-monitoring",
            "postgres-backup",
            "redis-app",
            "redis-monitoring",
            "verify-login",
            "jwt-signing-key",
        ]
    )
    assert all(s["kmsKeyId"].startswith("arn:aws:kms:") for s in secrets.values())
    for version in prod.of_type("aws:secretsmanager/secretVersion:SecretVersion"):
        assert is_secret(version.inputs["secretString"])


def test_rds_is_private_encrypted_multi_az_protected_and_tuned(prod: Evaluation) -> None:
    db = prod.named("aws:rds/instance:Instance", "postgres")
    i = db.inputs
    assert db.options["protect"] is True
    assert i["engine"] == "postgres" and i["engineVersion"] == "15"
    assert i["instanceClass"] == "db.m6g.large"
    assert i["publiclyAccessible"] is False and i["multiAz"] is True
    assert i["storageType"] == "gp3" and i["allocatedStorage"] == 100 and i["maxAllocatedStorage"] == 500
    assert i["storageEncrypted"] is True and i["kmsKeyId"].startswith("arn:aws:kms:")
    assert i["deletionProtection"] is True and i["skipFinalSnapshot"] is False
    assert i["finalSnapshotIdentifier"] == "wondernest-prod-postgres-final"
    assert i["backupRetentionPeriod"] >= 14 and i["backupWindow"]
    assert i["performanceInsightsEnabled"] is True and i["performanceInsightsKmsKeyId"].startswith("arn:aws:kms:")
    assert i["monitoringInterval"] > 0 and i["monitoringRoleArn"]
    assert i["enabledCloudwatchLogsExports"] == ["postgresql", "upgrade"]
    assert i["iamDatabaseAuthenticationEnabled"] is True and i["copyTagsToSnapshot"] is True
    assert i["manageMasterUserPassword"] is True and "password" not in i
    subnets = prod.named("aws:rds/subnetGroup:SubnetGroup", "subnets").inputs["subnetIds"]
    assert sorted(subnets) == sorted(ec2_id("subnet", f"isolated-{i}") for i in range(3))


def test_the_parameter_group_comes_from_the_containers_tuning(prod: Evaluation) -> None:
    group = prod.named("aws:rds/parameterGroup:ParameterGroup", "parameters").inputs
    assert group["family"] == "postgres15"
    tuning = tune(RDS_CLASSES["db.m6g.large"], 100)
    expected = {p.name: (p.value, p.apply_method) for p in rds_parameters(tuning, slow_query_ms=500)}
    got = {p["name"]: (p["value"], p["applyMethod"]) for p in group["parameters"]}
    assert got == expected
    assert got["rds.force_ssl"] == ("1", "immediate")
    assert got["shared_buffers"][0] == str(tuning.shared_buffers_kb // 8)  # 8 kB pages, RDS's unit


def test_roles_are_applied_over_the_rds_managed_master_secret_by_its_arn(prod: Evaluation) -> None:
    """The provider reads the password when it connects: RDS's weekly rotation
    of it changes no object's inputs, so a preview shows nothing for it."""
    roles = prod.of_type(f"{DYNAMIC}Role")
    assert len(roles) == 10  # each login role and its alternate user
    postgres_objects = [d for d in prod.declared if d.typ.startswith(DYNAMIC)]
    for declared in postgres_objects:
        assert is_secret(declared.inputs["connection"])
        connection = unwrap(declared.inputs["connection"])
        assert "password" not in connection
        assert connection["password_secret"] == {"arn": prod.outputs["postgresMasterSecretArn"], "region": "eu-west-1"}
        assert connection["sslmode"] == "require"
        assert connection["host"].endswith(".rds.amazonaws.com")
    assert MASTER_PASSWORD not in json.dumps([unwrap(d.inputs) for d in postgres_objects])


def test_an_ssm_tunnel_is_one_setting() -> None:
    ev = evaluate(prod_config({"dbAdminHost": "127.0.0.1", "dbAdminPort": 15432}), stack="prod")
    connection = unwrap(ev.of_type(f"{DYNAMIC}Role")[0].inputs["connection"])
    assert (connection["host"], connection["port"]) == ("127.0.0.1", 15432)


def test_elasticache_users_have_the_local_acls_rules_and_the_default_user_is_off(prod: Evaluation) -> None:
    from components.model.redis_conf import APP_USER_RULES, EXPORTER_USER_RULES

    users = {d.name: d.inputs for d in prod.of_type("aws:elasticache/user:User")}
    assert set(users) == {"redis-user-default", "redis-user-app", "redis-user-monitoring"}
    group = prod.named("aws:elasticache/userGroup:UserGroup", "redis-users").inputs
    assert sorted(group["userIds"]) == sorted(u["userId"] for u in users.values())
    assert users["redis-user-default"]["userName"] == "default"
    assert users["redis-user-default"]["accessString"] == "off -@all"
    app = users["redis-user-app"]
    assert app["userName"] == "wondernest_app" and app["accessString"] == f"on {APP_USER_RULES}"
    # No flushing, no functions or scripts: what the local ACL denies, ElastiCache denies.
    assert "-@dangerous" in app["accessString"] and "-@scripting" in app["accessString"]
    monitoring = users["redis-user-monitoring"]["accessString"]
    assert monitoring == f"on {EXPORTER_USER_RULES.removeprefix('resetkeys resetchannels ')}"
    assert "~" not in monitoring and "config" not in monitoring and "slowlog|get" not in monitoring
    for key, user in users.items():
        assert is_secret(user["authenticationMode"]), key
        assert unwrap(user["authenticationMode"])["type"] == "password", key
    assert unwrap(users["redis-user-app"]["authenticationMode"])["passwords"] == [fake_secret("redis-app")]
    assert unwrap(users["redis-user-monitoring"]["authenticationMode"])["passwords"] == [
        fake_secret("redis-monitoring")
    ]
    secret_outputs = prod.named("aws:elasticache/user:User", "redis-user-app").options["additional_secret_outputs"]
    assert "passwords" in secret_outputs
    # Each client logs in as its own user.
    api_env = {e["name"]: e["value"] for e in containers(prod, "-api")["api"]["environment"]}
    exporter_env = {e["name"]: e["value"] for e in containers(prod, "-exporters")["redis-exporter"]["environment"]}
    assert api_env["REDIS_USER"] == "wondernest_app" and exporter_env["REDIS_USER"] == "wondernest_monitoring"
    assert prod.outputs["redisUser"] == "wondernest_app"


def test_elasticache_is_encrypted_authenticated_and_fails_over(prod: Evaluation) -> None:
    group = prod.named("aws:elasticache/replicationGroup:ReplicationGroup", "redis")
    r = group.inputs
    assert r["engine"] == "redis" and r["engineVersion"].startswith("7")
    assert r["numCacheClusters"] == 2 and r["automaticFailoverEnabled"] is True and r["multiAzEnabled"] is True
    assert r["transitEncryptionEnabled"] is True and r["transitEncryptionMode"] == "required"
    # Users, not a shared token: each client has its own, the default user is off.
    assert "authToken" not in r and r["authTokenUpdateStrategy"] == "DELETE"
    assert r["userGroupIds"] == ["wondernest-prod-redis-users"]
    assert r["atRestEncryptionEnabled"] is True and r["kmsKeyId"].startswith("arn:aws:kms:")
    assert r["snapshotRetentionLimit"] == 7
    assert {c["logType"] for c in r["logDeliveryConfigurations"]} == {"slow-log", "engine-log"}
    params = prod.named("aws:elasticache/parameterGroup:ParameterGroup", "parameters").inputs["parameters"]
    assert params == [{"name": "maxmemory-policy", "value": "allkeys-lru"}]


def test_images_go_to_immutable_scanned_repositories_tagged_by_content(prod: Evaluation) -> None:
    for repo in by_name(prod, "aws:ecr/repository:Repository").values():
        assert repo["imageTagMutability"] == "IMMUTABLE"
        assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
        assert repo["encryptionConfigurations"][0]["encryptionType"] == "KMS"
    repositories = sorted(by_name(prod, "aws:ecr/repository:Repository"))
    assert repositories == ["api-repository", "backup-repository", "postgres-exporter-repository"]
    assert sorted(d.name for d in prod.of_type("aws:ecr/lifecyclePolicy:LifecyclePolicy")) == repositories
    api_image = prod.named("docker:index/image:Image", "api-image").inputs
    assert is_secret(api_image["registry"])  # it carries the registry token
    # The AWS targets: the local image plus Amazon's RDS CA bundle.
    assert api_image["build"]["target"] == "runtime-aws" and api_image["build"]["platform"] == "linux/amd64"
    assert api_image["imageName"].startswith(f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/wondernest/prod/api:")
    assert unwrap(api_image["registry"])["password"] == "EcrToken" + "1" * 24


def test_the_api_task_is_hardened_and_takes_secrets_by_reference(prod: Evaluation) -> None:
    task = containers(prod, "-api")
    assert sorted(task) == ["api", "metrics-collector", "migrate"]
    for c in task.values():
        assert c["readonlyRootFilesystem"] is True
        assert c["user"] and not c["user"].startswith(("0", "root"))
        assert c["linuxParameters"]["initProcessEnabled"] is True
        assert "privileged" not in c or c["privileged"] is False
        assert c["logConfiguration"]["logDriver"] == "awslogs"
    api, migrate = task["api"], task["migrate"]
    assert api["dependsOn"] == [{"containerName": "migrate", "condition": "SUCCESS"}]
    assert migrate["essential"] is False and migrate["command"][-1] == "migrate"
    assert {s["name"] for s in api["secrets"]} == {
        "DB_USER", "DB_PASSWORD", "REDIS_PASSWORD", "JWT_SECRET", "JWT_PREVIOUS_SECRET", "JWT_NEXT_SECRET",
    }  # fmt: skip
    assert all(s["valueFrom"].startswith("arn:aws:secretsmanager:") for s in api["secrets"])
    env = {e["name"]: e["value"] for e in api["environment"]}
    assert env["REDIS_TLS"] == "true" and "REDIS_CA_FILE" not in env  # ElastiCache's chain is public
    # The instance's certificate is verified, name included, against the bundle in the image.
    assert (env["DB_SSLMODE"], env["DB_SSLROOTCERT"]) == ("verify-full", "/etc/ssl/certs/rds-global-bundle.pem")
    migrate = {e["name"]: e["value"] for e in task["migrate"]["environment"]}
    assert (migrate["DB_SSLMODE"], migrate["DB_SSLROOTCERT"]) == ("verify-full", "/etc/ssl/certs/rds-global-bundle.pem")
    # /metrics on a port of its own, which only the task's collector reads.
    assert env["METRICS_PORT"] == "9102" and env["PORT"] == "8080"
    scrape = yaml.safe_load(
        {e["name"]: e["value"] for e in task["metrics-collector"]["environment"]}["AOT_CONFIG_CONTENT"]
    )
    jobs = scrape["receivers"]["prometheus"]["config"]["scrape_configs"]
    assert [(j["job_name"], j["static_configs"][0]["targets"]) for j in jobs] == [("api", ["127.0.0.1:9102"])]
    # Only the load balancer's subnets are trusted to say who the client is.
    public = sorted(d.inputs["cidrBlock"] for d in prod.of_type("aws:ec2/subnet:Subnet") if d.name.startswith("public"))
    assert sorted(env["FORWARDED_ALLOW_IPS"].split(",")) == public and len(public) == 3
    assert api["healthCheck"]["command"][:2] == ["CMD", "python"]
    assert api["image"].startswith(f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/wondernest/prod/api@sha256:")


# (task family, container) → variable → (secret, JSON field): a field of the
# current version for every rotated secret, None for a generated secret read
# by version (no task reads one now: every secret a task reads rotates).
SECRET_REFS: dict[tuple[str, str], dict[str, tuple[str, str | None]]] = {
    # Migrations run as the role that owns the schema objects, with nothing else.
    ("-api", "migrate"): {
        "DB_USER": ("postgres-migrator", "username"),
        "DB_PASSWORD": ("postgres-migrator", "password"),
    },
    ("-api", "api"): {
        "DB_USER": ("postgres-app", "username"),
        "DB_PASSWORD": ("postgres-app", "password"),
        "REDIS_PASSWORD": ("redis-app", "password"),
        "JWT_SECRET": ("jwt-signing-key", "current"),
        "JWT_PREVIOUS_SECRET": ("jwt-signing-key", "previous"),
        "JWT_NEXT_SECRET": ("jwt-signing-key", "next"),
    },
    ("-api", "metrics-collector"): {},
    ("-exporters", "postgres-exporter"): {
        "DATA_SOURCE_USER": ("postgres-monitoring", "username"),
        "DATA_SOURCE_PASS": ("postgres-monitoring", "password"),
    },
    ("-exporters", "redis-exporter"): {"REDIS_PASSWORD": ("redis-monitoring", "password")},
    ("-exporters", "metrics-collector"): {},
    ("-backups", "backups"): {
        "DB_USER": ("postgres-backup", "username"),
        "DB_PASSWORD": ("postgres-backup", "password"),
    },
    ("-backups", "metrics-collector"): {},
}


def secret_refs(ev: Evaluation) -> dict[tuple[str, str], dict[str, str]]:
    refs: dict[tuple[str, str], dict[str, str]] = {}
    for family in sorted({family for family, _ in SECRET_REFS}):
        for name, container in containers(ev, family).items():
            refs[(family, name)] = {s["name"]: s["valueFrom"] for s in container.get("secrets", [])}
    return refs


def secret_arn(ev: Evaluation, name: str) -> str:
    inputs = ev.named("aws:secretsmanager/secret:Secret", name).inputs
    return str(aws_mock_state("aws:secretsmanager/secret:Secret", name, inputs)[1]["arn"])


def test_tasks_read_a_generated_secrets_version_and_a_rotated_secrets_current_fields(prod: Evaluation) -> None:
    refs = secret_refs(prod)
    assert set(refs) == set(SECRET_REFS)
    for family, wanted in SECRET_REFS.items():
        assert set(refs[family]) == set(wanted), family
        for variable, (key, json_field) in wanted.items():
            ref = refs[family][variable]
            if json_field is None:
                arn, version = ref.split(":::")
                assert arn == secret_arn(prod, key) and re.fullmatch(r"[0-9a-f-]{36}", version)
            else:
                # The field of whatever version is AWSCURRENT when the task starts.
                assert ref == f"{secret_arn(prod, key)}:{json_field}::", (family, variable)
    # IAM policies name the secret itself, not a version.
    policy = json.loads(prod.named("aws:iam/rolePolicy:RolePolicy", "api-execution-role").inputs["policy"])
    assert sorted(policy["Statement"][0]["Resource"]) == sorted(
        secret_arn(prod, k) for k in ("postgres-migrator", "postgres-app", "redis-app", "jwt-signing-key")
    )


@pytest.mark.parametrize("changed", ["redis-app", "postgres-app", "jwt-signing-key"])
def test_a_new_generated_value_changes_the_tasks_reading_it_by_version(
    prod: Evaluation, monkeypatch: pytest.MonkeyPatch, changed: str
) -> None:
    """A new version id is a new task definition, so ECS rolls the tasks onto the
    new value. A rotated secret's generated value was only its first value:
    changing it changes no task."""
    original = harness.fake_secret
    monkeypatch.setattr(
        harness, "fake_secret", lambda name: original(name + "-new") if name == changed else original(name)
    )
    after = secret_refs(evaluate(prod_config(), stack="prod"))
    before = secret_refs(prod)
    for family, wanted in SECRET_REFS.items():
        for variable, (key, json_field) in wanted.items():
            moved = after[family][variable] != before[family][variable]
            assert moved == (key == changed and json_field is None), (family, variable)


def test_no_generated_secret_reaches_a_task_definition_or_an_unsecret_input(prod: Evaluation) -> None:
    generated = [*prod.generated_secrets, MASTER_PASSWORD]
    for task in prod.of_type(TASK_DEF):
        text = task.inputs["containerDefinitions"]
        assert not any(value in text for value in generated), task.name

    def plain_leaks(value: Any) -> bool:
        if is_secret(value):
            return False
        if isinstance(value, dict):
            return any(plain_leaks(v) for v in value.values())
        if isinstance(value, list):
            return any(plain_leaks(v) for v in value)
        return isinstance(value, str) and any(secret in value for secret in generated)

    leaks = [(d.typ, d.name) for d in prod.declared if plain_leaks(d.inputs)]
    assert leaks == []
    rendered_outputs = json.dumps(prod.outputs, default=str)
    assert not any(value in rendered_outputs for value in generated)


def test_container_definitions_are_written_as_ecs_returns_them(prod: Evaluation) -> None:
    """Every field ECS fills in is present, so a refresh reads back what was written."""
    for task in prod.of_type(TASK_DEF):
        text = task.inputs["containerDefinitions"]
        assert text == json.dumps(json.loads(text), sort_keys=True)
        for c in json.loads(text):
            for key in ("cpu", "environment", "mountPoints", "volumesFrom", "portMappings", "systemControls"):
                assert key in c, (task.name, c["name"], key)
            assert [e["name"] for e in c["environment"]] == sorted(e["name"] for e in c["environment"])
            assert all(e["value"] != "" for e in c["environment"])
            for mapping in c["portMappings"]:
                assert mapping["hostPort"] == mapping["containerPort"] and mapping["protocol"] == "tcp"


def test_the_service_runs_privately_behind_an_https_alb(prod: Evaluation) -> None:
    service = prod.named(SERVICE, "api-service").inputs
    assert service["desiredCount"] >= 2 and service["launchType"] == "FARGATE"
    assert service["networkConfiguration"]["assignPublicIp"] is False
    assert sorted(service["networkConfiguration"]["subnets"]) == sorted(
        ec2_id("subnet", f"private-{i}") for i in range(3)
    )
    assert service["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    assert service["healthCheckGracePeriodSeconds"] > 0
    alb_resource = prod.named("aws:lb/loadBalancer:LoadBalancer", "alb")
    # It checks its log bucket's policy when created: the policy must exist first.
    assert any(
        urn.endswith("aws:s3/bucketPolicy:BucketPolicy::alb-logs") for urn in alb_resource.options["dependencies"]
    )
    alb = alb_resource.inputs
    assert alb["accessLogs"]["bucket"] == "wondernest-prod-alb-logs-123456789012"
    assert alb["dropInvalidHeaderFields"] is True and alb["enableDeletionProtection"] is True
    assert alb["accessLogs"]["enabled"] is True and alb["internal"] is False
    listeners = by_name(prod, "aws:lb/listener:Listener")
    assert listeners["https"]["protocol"] == "HTTPS" and listeners["https"]["certificateArn"] == CERT
    assert listeners["https"]["sslPolicy"].startswith("ELBSecurityPolicy-TLS13-1-2")
    redirect = listeners["http"]["defaultActions"][0]
    assert redirect["type"] == "redirect" and redirect["redirect"]["protocol"] == "HTTPS"
    assert prod.outputs["apiUrl"] == "https://api.example.com"
    # /metrics answers only the task's own collector: the load balancer turns it away.
    rule = prod.named("aws:lb/listenerRule:ListenerRule", "no-public-metrics").inputs
    assert rule["listenerArn"].startswith("arn:aws:lb:eu-west-1:123456789012:https-")  # the HTTPS listener
    assert rule["conditions"][0]["pathPattern"]["values"] == ["/metrics", "/metrics/*"]
    assert rule["actions"][0]["fixedResponse"]["statusCode"] == "404"
    policies = by_name(prod, "aws:appautoscaling/policy:Policy")
    metrics = {
        p["targetTrackingScalingPolicyConfiguration"]["predefinedMetricSpecification"]["predefinedMetricType"]
        for p in policies.values()
    }
    assert metrics == {"ECSServiceAverageCPUUtilization", "ALBRequestCountPerTarget"}
    target = prod.named("aws:appautoscaling/target:Target", "api-scaling").inputs
    assert (target["minCapacity"], target["maxCapacity"]) == (2, 10)
    cluster = prod.named("aws:ecs/cluster:Cluster", "cluster").inputs
    assert cluster["settings"] == [{"name": "containerInsights", "value": "enabled"}]


def test_without_a_certificate_the_alb_serves_plain_http(prod_without_certificate: Evaluation) -> None:
    listeners = by_name(prod_without_certificate, "aws:lb/listener:Listener")
    assert list(listeners) == ["http"] and listeners["http"]["defaultActions"][0]["type"] == "forward"
    assert prod_without_certificate.outputs["apiUrl"].startswith("http://wondernest-prod-api-")


def test_buckets_are_private_versioned_encrypted_and_tls_only(prod: Evaluation) -> None:
    # The copy region's two by default (test_one_region_only_with_a_stated_reason has the stack without them).
    assert sorted(by_name(prod, "aws:s3/bucket:Bucket")) == ["alb-logs", "copy-access-logs", "dumps", "dumps-copy"]
    blocks = by_name(prod, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert all(
        all(b[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"))
        for b in blocks.values()
    )
    assert all(
        v["versioningConfiguration"]["status"] == "Enabled"
        for v in by_name(prod, "aws:s3/bucketVersioning:BucketVersioning").values()
    )
    sse = by_name(prod, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
    assert sse["dumps"]["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "aws:kms"
    # ALB access logs accept SSE-S3 only.
    assert sse["alb-logs"]["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
    for policy in by_name(prod, "aws:s3/bucketPolicy:BucketPolicy").values():
        statements = json.loads(policy["policy"])["Statement"]
        assert statements[0]["Effect"] == "Deny"
        assert statements[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    lifecycle = by_name(prod, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")["dumps"]
    assert lifecycle["rules"][0]["transitions"][0]["storageClass"] == "GLACIER_IR"


def test_aws_backup_vault_plan_and_selection(prod: Evaluation) -> None:
    vault = prod.named("aws:backup/vault:Vault", "vault").inputs
    assert vault["kmsKeyArn"].startswith("arn:aws:kms:")
    lock = prod.named("aws:backup/vaultLockConfiguration:VaultLockConfiguration", "vault-lock").inputs
    assert lock["minRetentionDays"] == 7 and lock["maxRetentionDays"] == 365
    rules = {r["ruleName"]: r for r in prod.named("aws:backup/plan:Plan", "plan").inputs["rules"]}
    assert sorted(rules) == ["daily", "monthly", "weekly"]
    assert rules["daily"]["enableContinuousBackup"] is True
    assert [rules[r]["lifecycle"]["deleteAfter"] for r in ("daily", "weekly", "monthly")] == [14, 90, 365]
    # Continuous backup and the instance's own retention are one window: neither rewrites the other.
    assert prod.named("aws:rds/instance:Instance", "postgres").inputs["backupRetentionPeriod"] == 14
    # Copied off the region by default, to the region's partner.
    assert all(
        r["copyActions"][0]["destinationVaultArn"].endswith("wondernest-prod-vault-copy") for r in rules.values()
    )
    assert prod.named("pulumi:providers:aws", "copy-region").inputs["region"] == "eu-central-1"
    copy_lock = prod.named("aws:backup/vaultLockConfiguration:VaultLockConfiguration", "copy-vault-lock").inputs
    assert copy_lock["minRetentionDays"] == 7
    selection = prod.named("aws:backup/selection:Selection", "selection").inputs
    assert selection["resources"] == ["arn:aws:rds:eu-west-1:123456789012:db:wondernest-prod-postgres"]


def test_one_region_only_with_a_stated_reason() -> None:
    reason = "a throwaway load-test stack with no data worth a second region"
    ev = evaluate(prod_config({"backupCopyOffReason": reason}), stack="prod")
    rules = ev.named("aws:backup/plan:Plan", "plan").inputs["rules"]
    assert all(not r.get("copyActions") for r in rules)
    assert not [d for d in ev.declared if d.name in ("copy-region", "copy-vault", "dumps-replication")]
    with pytest.raises(ConfigError, match=r"backupCopyOffReason = .*: this stack copies to backupCopyRegion"):
        evaluate(prod_config({"backupCopyOffReason": reason, "backupCopyRegion": "eu-central-1"}), stack="prod")
    # A region with no partner in the same jurisdiction must name one, or the reason.
    no_partner = r"backupCopyRegion = .*: backups are copied to a second region, and sa-east-1"
    with pytest.raises(ConfigError, match=no_partner):
        evaluate(prod_config({"region": "sa-east-1"}), stack="prod")


def test_cross_region_copies_when_configured() -> None:
    ev = evaluate(prod_config({"backupCopyRegion": "eu-north-1"}), stack="prod")
    copy_provider = ev.named("pulumi:providers:aws", "copy-region").inputs
    assert copy_provider["region"] == "eu-north-1" and json.loads(copy_provider["defaultTags"])["tags"]
    rules = ev.named("aws:backup/plan:Plan", "plan").inputs["rules"]
    assert all(r["copyActions"][0]["destinationVaultArn"].endswith("wondernest-prod-vault-copy") for r in rules)
    there = {
        d.name
        for d in ev.declared
        if d.typ.startswith("aws:") and "::copy-region::" in (d.options.get("provider") or "")
    }
    assert {"copy-key", "copy-vault", "copy-access-logs", "dumps-copy"} <= there
    # The copy key: the account administers it, and uses it only through the
    # services that copy into the copy region, for this account.
    key_policy = json.loads(ev.named("aws:kms/key:Key", "copy-key").inputs["policy"])
    admin, use = key_policy["Statement"]
    assert admin["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"} and "kms:*" not in admin["Action"]
    assert not [
        a for a in admin["Action"] if a.startswith(("kms:Encrypt", "kms:Decrypt", "kms:Generate", "kms:Create*"))
    ]
    assert use["Condition"] == {
        "StringEquals": {
            "kms:ViaService": [f"{s}.eu-north-1.amazonaws.com" for s in ("backup", "rds", "s3")],
            "kms:CallerAccount": ACCOUNT,
        }
    }


def test_the_platform_key_is_used_only_through_the_services_that_encrypt_with_it(prod: Evaluation) -> None:
    """Every service the prod graph encrypts with the key is one the key lets
    use it, and no other is (the pack refuses the default policy)."""
    from components.aws.secrets import PLATFORM_KEY_SERVICES

    [key] = [d for d in prod.of_type("aws:kms/key:Key") if d.name == "key"]
    statements = {s["Sid"]: s for s in json.loads(key.inputs["policy"])["Statement"]}
    assert set(statements) == {"AccountAdministers", "UseThroughServices", "CloudWatchLogsEncrypts",
                               "AlertPublishersEncrypt"}  # fmt: skip
    via = statements["UseThroughServices"]["Condition"]["StringEquals"]["kms:ViaService"]
    assert via == [f"{s}.eu-west-1.amazonaws.com" for s in PLATFORM_KEY_SERVICES]
    key_arn = prod.outputs["kmsKeyArn"]
    # The resource types that name the key, by the service that then uses it.
    service_of = {
        "aws:secretsmanager/secret:Secret": "secretsmanager", "aws:rds/instance:Instance": "rds",
        "aws:elasticache/replicationGroup:ReplicationGroup": "elasticache",
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": "s3",
        "aws:sns/topic:Topic": "sns", "aws:backup/vault:Vault": "backup", "aws:ecr/repository:Repository": "ecr",
        "aws:ec2/instance:Instance": "ec2", "aws:amp/workspace:Workspace": "aps",
        # The rotation functions' environment (the cache users' ids): Lambda encrypts it.
        "aws:lambda/function:Function": "lambda",
        "aws:cloudwatch/logGroup:LogGroup": "logs",
        # The backup service's dumps (S3_KMS_KEY_ID): written through S3.
        "aws:ecs/taskDefinition:TaskDefinition": "s3",
        # The rotation function reads and writes secrets through Secrets Manager.
        "aws:serverlessrepository/cloudFormationStack:CloudFormationStack": "secretsmanager",
        # Roles allowed the key's actions: what they call is the services above.
        "aws:iam/rolePolicy:RolePolicy": "(roles)",
    }  # fmt: skip
    users = {service_of.get(d.typ, d.typ) for d in prod.declared if key_arn in as_json(d.inputs)}
    # CloudWatch Logs uses the key as a service principal, in a statement of its own.
    assert users - {"logs", "(roles)"} <= set(PLATFORM_KEY_SERVICES), users - set(PLATFORM_KEY_SERVICES)


def test_the_dumps_replicate_to_the_copy_region_and_deletions_do_not() -> None:
    ev = evaluate(prod_config({"backupCopyRegion": "eu-central-1"}), stack="prod")
    replication = ev.named("aws:s3/bucketReplicationConfig:BucketReplicationConfig", "dumps-replication")
    [rule] = replication.inputs["rules"]
    assert replication.inputs["bucket"] == f"wondernest-prod-backups-{ACCOUNT}"
    assert rule["destination"]["bucket"] == f"arn:aws:s3:::wondernest-prod-backups-copy-{ACCOUNT}"
    copy_key = ev.named("aws:kms/key:Key", "copy-key")
    assert rule["destination"]["encryptionConfiguration"]["replicaKmsKeyId"].startswith("arn:aws:kms:")
    assert any(u.endswith("::copy-key") for u in replication.options["property_dependencies"]["rules"])
    assert rule["sourceSelectionCriteria"]["sseKmsEncryptedObjects"]["status"] == "Enabled"
    assert rule["deleteMarkerReplication"]["status"] == "Disabled"
    # S3 refuses replication before both buckets are versioned.
    assert {u.rsplit("::", 1)[1] for u in replication.options["dependencies"]} >= {"dumps", "dumps-copy"}
    role_policy = json.loads(ev.named("aws:iam/rolePolicy:RolePolicy", "replication-role").inputs["policy"])
    actions = {
        a
        for st in role_policy["Statement"]
        for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])
    }
    assert "s3:ReplicateDelete" not in actions and "s3:ReplicateObject" in actions
    assert copy_key.inputs["enableKeyRotation"] is True
    lifecycle = by_name(ev, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
    assert lifecycle["dumps-copy"]["rules"] == lifecycle["dumps"]["rules"]


def test_the_dumps_replicate_by_default(prod: Evaluation) -> None:
    [replication] = prod.of_type("aws:s3/bucketReplicationConfig:BucketReplicationConfig")
    assert replication.inputs["rules"][0]["destination"]["bucket"].endswith(f"wondernest-prod-backups-copy-{ACCOUNT}")


def test_the_buckets_log_their_access_to_the_log_bucket(prod: Evaluation) -> None:
    loggings = by_name(prod, "aws:s3/bucketLogging:BucketLogging")
    assert loggings["dumps"] == {
        "bucket": f"wondernest-prod-backups-{ACCOUNT}",
        "targetBucket": f"wondernest-prod-alb-logs-{ACCOUNT}",
        "targetPrefix": "s3-access/dumps/",
    }
    # Server access logs land in the bucket's own region.
    assert loggings["dumps-copy"]["targetBucket"] == f"wondernest-prod-copy-logs-{ACCOUNT}"
    policy = json.loads(prod.named("aws:s3/bucketPolicy:BucketPolicy", "alb-logs").inputs["policy"])
    [statement] = [s for s in policy["Statement"] if s.get("Sid") == "S3ServerAccessLogs"]
    assert statement["Principal"] == {"Service": "logging.s3.amazonaws.com"}
    assert statement["Resource"] == f"arn:aws:s3:::wondernest-prod-alb-logs-{ACCOUNT}/s3-access/*"
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}


def test_a_web_acl_guards_the_load_balancer(prod: Evaluation) -> None:
    acl = prod.named("aws:wafv2/webAcl:WebAcl", "web-acl")
    assert acl.inputs["scope"] == "REGIONAL" and "allow" in acl.inputs["defaultAction"]
    rules = {r["name"]: r for r in acl.inputs["rules"]}
    assert sorted(r["priority"] for r in rules.values()) == [0, 1, 10, 11, 12]
    for group in ("AWSManagedRulesAmazonIpReputationList", "AWSManagedRulesCommonRuleSet",
                  "AWSManagedRulesKnownBadInputsRuleSet"):  # fmt: skip
        statement = rules[group]["statement"]["managedRuleGroupStatement"]
        assert statement == {"name": group, "vendorName": "AWS"}
        assert rules[group]["overrideAction"] == {"none": {}}
    everything = rules["rate"]["statement"]["rateBasedStatement"]
    assert everything["limit"] == 2000 and everything["aggregateKeyType"] == "IP"
    assert "scopeDownStatement" not in everything and rules["rate"]["action"] == {"block": {}}
    auth = rules["auth-rate"]["statement"]["rateBasedStatement"]
    assert auth["limit"] == 300
    match = auth["scopeDownStatement"]["byteMatchStatement"]
    assert match["searchString"] == "/auth/" and match["positionalConstraint"] == "STARTS_WITH"
    association = prod.named("aws:wafv2/webAclAssociation:WebAclAssociation", "web-acl-association")
    assert association.inputs["resourceArn"].startswith("arn:aws:elasticloadbalancing:")
    assert association.options["property_dependencies"]["resourceArn"][0].endswith("::alb")
    logging = prod.named("aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration", "web-acl-logging")
    assert logging.inputs["logDestinationConfigs"][0].endswith(":log-group:aws-waf-logs-wondernest-prod-api")
    assert [f["singleHeader"]["name"] for f in logging.inputs["redactedFields"]] == ["authorization", "cookie"]
    logs = prod.named("aws:cloudwatch/logGroup:LogGroup", "web-acl-logs").inputs
    assert logs["retentionInDays"] == 90 and logs["kmsKeyId"].startswith("arn:aws:kms:")


def test_the_web_acl_limits_come_from_the_config() -> None:
    ev = evaluate(prod_config({"wafRateLimit": 5000, "wafAuthRateLimit": 100}), stack="prod")
    rules = {r["name"]: r for r in ev.named("aws:wafv2/webAcl:WebAcl", "web-acl").inputs["rules"]}
    assert rules["rate"]["statement"]["rateBasedStatement"]["limit"] == 5000
    assert rules["auth-rate"]["statement"]["rateBasedStatement"]["limit"] == 100


def test_the_backup_service_verifies_and_copies_to_the_bucket(prod: Evaluation) -> None:
    [definition] = [d for d in prod.of_type(TASK_DEF) if d.name == "backups-task"]
    assert definition.inputs["ephemeralStorage"] == {"sizeInGib": 200}  # two copies of 100 GB, capped
    task = containers(prod, "-backups")
    backups = task["backups"]
    env = {e["name"]: e["value"] for e in backups["environment"]}
    assert env["S3_BUCKET"] == "wondernest-prod-backups-123456789012" and env["S3_SSE"] == "aws:kms"
    assert "DB_USER" not in env  # the user comes with its password
    assert (env["DB_SSLMODE"], env["DB_SSLROOTCERT"]) == ("verify-full", "/etc/ssl/certs/rds-global-bundle.pem")
    backup_image = prod.named("docker:index/image:Image", "backup-image").inputs
    assert backup_image["build"]["target"] == "backup-aws"
    assert [s["name"] for s in backups["secrets"]] == ["DB_PASSWORD", "DB_USER"]
    scrape = yaml.safe_load(
        {e["name"]: e["value"] for e in task["metrics-collector"]["environment"]}["AOT_CONFIG_CONTENT"]
    )
    jobs = scrape["receivers"]["prometheus"]["config"]["scrape_configs"]
    assert [(j["job_name"], j["static_configs"][0]["targets"]) for j in jobs] == [("backups", ["127.0.0.1:9200"])]


def _dev_rules(dev: Evaluation) -> str:
    uploads = dev.named(CONTAINER_TYPE, "prometheus").inputs["uploads"]
    return str(next(u["content"] for u in unwrap(uploads) if u["file"] == RULES_FILE))


@pytest.fixture(scope="module")
def dev() -> Evaluation:
    return evaluate(stack_config())


def test_parity_the_same_rules_run_in_both_targets(prod: Evaluation, dev: Evaluation) -> None:
    namespace = prod.named("aws:amp/ruleGroupNamespace:RuleGroupNamespace", "rules").inputs["data"]
    # The same but for where the runbooks are published, which prod must say.
    assert namespace == _dev_rules(dev).replace(RUNBOOKS_DOC, RUNBOOKS)
    thresholds = AlertThresholds(
        slo_objective=0.999,
        latency_p99_seconds=1.0,
        database="wondernest",
        backup_max_age_seconds=max_backup_age_seconds("0 3 * * *"),
        runbook_url=RUNBOOKS,
    )
    assert namespace == render_rule_file(rule_groups(thresholds))


def test_parity_the_same_dashboards_in_both_targets(prod: Evaluation, dev: Evaluation) -> None:
    uploads = unwrap(dev.named(CONTAINER_TYPE, "grafana").inputs["uploads"])
    local = {
        u["file"].removeprefix(f"{DASHBOARDS_DIR}/"): u["content"]
        for u in uploads
        if u["file"].startswith(DASHBOARDS_DIR)
    }
    managed = {
        d.name.removeprefix("dashboard-") + ".json": d.inputs["configJson"]
        for d in prod.of_type("grafana:oss/dashboard:Dashboard")
    }
    assert managed == local and len(managed) == 4
    datasource = prod.named("grafana:oss/dataSource:DataSource", "prometheus").inputs
    assert datasource["uid"] == "prometheus" and json.loads(datasource["jsonDataEncoded"])["sigV4Auth"] is True


def test_parity_the_same_roles_schemas_and_grants_in_both_targets(prod: Evaluation, dev: Evaluation) -> None:
    """AWS adds an alternate user per login role, for rotation, and cannot
    restrict catalog functions (RDS's master is not a superuser); the rest is the same."""

    def without_alternates(key: str, value: Any) -> Any:
        return [r for r in value if not r.endswith("_clone")] if key == "connect_roles" else value

    def objects(ev: Evaluation) -> dict[tuple[str, str], dict[str, Any]]:
        return {
            (d.typ, d.name): {
                k: without_alternates(k, v)
                for k, v in unwrap(d.inputs).items()
                if k not in ("connection", "password", "members", "rotated", "restricted_functions", "function_grants")
            }
            for d in ev.declared
            if d.typ.startswith(DYNAMIC) and not d.name.endswith("-alternate")
        }

    assert objects(prod) == objects(dev)
    access = {
        ev: unwrap(e.named(f"{DYNAMIC}DatabaseAccess", "database-access").inputs)
        for ev, e in (("dev", dev), ("prod", prod))
    }
    assert len(access["dev"]["restricted_functions"]) == 15 and access["dev"]["function_grants"]
    assert access["prod"]["restricted_functions"] == [] and access["prod"]["function_grants"] == {}
    assert len(objects(prod)) == 5 + 9 + 36 + 1 + 1  # roles, schemas, 4 grants per schema, access, extension
    alternates = {d.name for d in prod.of_type(f"{DYNAMIC}Role") if d.name.endswith("-alternate")}
    assert alternates == {f"role-{key}-alternate" for key in ("migrator", "app", "analytics", "monitoring", "backup")}
    assert not any(d.name.endswith("-alternate") for d in dev.declared)


def test_pages_and_tickets_publish_to_their_own_topics(prod: Evaluation) -> None:
    definition = yaml.safe_load(
        prod.named("aws:amp/alertManagerDefinition:AlertManagerDefinition", "alertmanager").inputs["definition"]
    )
    inner = yaml.safe_load(definition["alertmanager_config"])
    receivers = {r["name"]: r for r in inner["receivers"]}
    page, ticket = (receivers[kind]["sns_configs"][0] for kind in ("page", "ticket"))
    assert page["topic_arn"] == "arn:aws:sns:eu-west-1:123456789012:wondernest-prod-alerts-page"
    assert ticket["topic_arn"] == "arn:aws:sns:eu-west-1:123456789012:wondernest-prod-alerts-ticket"
    assert page["message"] == ticket["message"] == '{{ template "wondernest.text" . }}'
    assert inner["templates"] == ["wondernest.tmpl"]
    assert "Runbook: {{ .Annotations.runbook_url }}" in definition["template_files"]["wondernest.tmpl"]
    subscriptions = by_name(prod, "aws:sns/topicSubscription:TopicSubscription")
    assert subscriptions == {
        "alerts-page-email": {
            "topic": "arn:aws:sns:eu-west-1:123456789012:wondernest-prod-alerts-page",
            "protocol": "email",
            "endpoint": "oncall@example.com",
        }
    }
    assert prod.outputs["pageTopicArn"] == page["topic_arn"] and prod.outputs["ticketTopicArn"] == ticket["topic_arn"]


def test_ticket_email_and_https_webhooks_subscribe_to_their_topics() -> None:
    alerting = {
        "page": {"email": "oncall@example.com", "webhookUrl": "https://events.pagerduty.com/integration/x/enqueue"},
        "ticket": {"email": "platform@example.com"},
        "runbookUrl": RUNBOOKS,
    }
    ev = evaluate(prod_config(alerting=alerting), stack="prod")
    subscriptions = {
        name: (s["topic"].rsplit(":", 1)[1], s["protocol"], s["endpoint"])
        for name, s in by_name(ev, "aws:sns/topicSubscription:TopicSubscription").items()
    }
    assert subscriptions == {
        "alerts-page-email": ("wondernest-prod-alerts-page", "email", "oncall@example.com"),
        "alerts-page-https": (
            "wondernest-prod-alerts-page", "https", "https://events.pagerduty.com/integration/x/enqueue"
        ),
        "alerts-ticket-email": ("wondernest-prod-alerts-ticket", "email", "platform@example.com"),
    }  # fmt: skip


def test_a_production_stack_must_page_someone_with_absolute_runbook_links() -> None:
    committed = stack_config(stack="prod")
    with pytest.raises(ConfigError) as caught:
        evaluate(committed, stack="prod")
    assert [p.split(":")[1].split(" ")[0] for p in caught.value.problems] == ["alerting.page"]
    assert not declared_by(committed, stack="prod")
    relative = prod_config(alerting={"page": {"email": "oncall@example.com"}})
    with pytest.raises(ConfigError) as caught:
        evaluate(relative, stack="prod")
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith("wondernest:alerting.runbookUrl = (default): notifications")
    plain_http = prod_config(alerting={**PAGING, "page": {"webhookUrl": "http://hooks.example.com/x"}})
    with pytest.raises(ConfigError) as caught:
        evaluate(plain_http, stack="prod")
    assert caught.value.problems == [
        "wondernest:alerting.page.webhookUrl = 'http://hooks.example.com/x': SNS delivers only to https:// endpoints"
    ]
    moved = prod_config({"alertEmail": "oncall@example.com"})
    with pytest.raises(ConfigError) as caught:
        evaluate(moved, stack="prod")
    assert caught.value.problems == [
        "wondernest:aws.alertEmail = 'oncall@example.com': pages and tickets go to separate topics now; "
        "set alerting.page.email and/or alerting.ticket.email instead"
    ]


def test_services_start_after_the_roles_they_log_in_as(prod: Evaluation) -> None:
    for service in ("api-service", "exporters-service", "backups-service"):
        dependencies = prod.named(SERVICE, service).options["dependencies"]
        assert any(urn.endswith("postgres:Role::role-app") for urn in dependencies), service


def test_exporters_run_as_a_service_the_collector_scrapes(prod: Evaluation) -> None:
    task = containers(prod, "-exporters")
    assert sorted(task) == ["metrics-collector", "postgres-exporter", "redis-exporter"]
    assert [s["name"] for s in task["postgres-exporter"]["secrets"]] == ["DATA_SOURCE_PASS", "DATA_SOURCE_USER"]
    assert [s["name"] for s in task["redis-exporter"]["secrets"]] == ["REDIS_PASSWORD"]
    env = {e["name"]: e["value"] for e in task["redis-exporter"]["environment"]}
    assert env["REDIS_ADDR"].startswith("rediss://master.")
    uri = {e["name"]: e["value"] for e in task["postgres-exporter"]["environment"]}["DATA_SOURCE_URI"]
    assert uri.endswith("/wondernest?sslmode=verify-full&sslrootcert=/etc/ssl/certs/rds-global-bundle.pem")


def test_cloudwatch_alarms_page_or_file_a_ticket_and_link_their_runbook(prod: Evaluation) -> None:
    alarms = by_name(prod, "aws:cloudwatch/metricAlarm:MetricAlarm")
    assert alarms["alarm-redis-engine-cpu-002"]["dimensions"] == {"CacheClusterId": "wondernest-prod-redis-002"}
    pipeline = alarms["alarm-alert-pipeline"]
    assert pipeline["metricQueries"][0]["expression"] == 'SELECT SUM(AlertManagerAlertsReceived) FROM "AWS/Prometheus"'
    assert pipeline["treatMissingData"] == "breaching"
    topic = "arn:aws:sns:eu-west-1:123456789012:wondernest-prod-alerts-"
    pages = {name for name, a in alarms.items() if a["alarmActions"] == a["okActions"] == [f"{topic}page"]}
    tickets = {name for name, a in alarms.items() if a["alarmActions"] == a["okActions"] == [f"{topic}ticket"]}
    assert pages == {"alarm-rds-free-storage", "alarm-alb-5xx", "alarm-alert-pipeline", "alarm-alert-delivery"}
    assert tickets == set(alarms) - pages
    # Beside RDS storage: each cache node's memory and (with replicas) replication lag.
    for node in ("001", "002"):
        memory = alarms[f"alarm-redis-memory-{node}"]
        assert (memory["metricName"], memory["threshold"]) == ("DatabaseMemoryUsagePercentage", 90)
        lag = alarms[f"alarm-redis-replication-lag-{node}"]
        assert (lag["metricName"], lag["treatMissingData"]) == ("ReplicationLag", "notBreaching")
        assert lag["dimensions"] == {"CacheClusterId": f"wondernest-prod-redis-{node}"}
    runbooks = (Path(__file__).resolve().parents[1] / "docs" / "runbooks.md").read_text()
    for name, alarm in alarms.items():
        link = alarm["alarmDescription"].rsplit(". Runbook: ", 1)[1]
        assert link.startswith(f"{RUNBOOKS}#runbook-alarm-"), name
        assert f'<a id="{link.split("#")[1]}"></a>' in runbooks, f"no runbook section for {name}"


def test_every_log_group_is_encrypted_and_expires(prod: Evaluation) -> None:
    groups = by_name(prod, LOG_GROUP)
    assert len(groups) >= 6
    assert all(g["retentionInDays"] == 90 and g["kmsKeyId"].startswith("arn:aws:kms:") for g in groups.values())


def test_two_evaluations_declare_identical_inputs() -> None:
    def snapshot(ev: Evaluation) -> list[tuple[str, str, str]]:
        return sorted((d.typ, d.name, as_json(d.inputs)) for d in ev.declared)

    config = prod_config({"certificateArn": CERT, "domainName": "api.example.com"})
    assert snapshot(evaluate(config, stack="prod")) == snapshot(evaluate(config, stack="prod"))


def test_bad_aws_config_names_every_key_and_declares_nothing() -> None:
    bad = prod_config(
        {"region": "mars-1", "dbInstanceClass": "db.huge", "logRetentionDays": 45, "vpcCidr": "8.8.0.0/16",
         "wafRateLimit": 99, "secretRotationDays": 1},
        devTools={"enabled": True},
    )  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        evaluate(bad, stack="prod")
    problems = "\n".join(caught.value.problems)
    for key in (
        "aws.region",
        "aws.dbInstanceClass",
        "aws.logRetentionDays",
        "aws.vpcCidr",
        "aws.wafRateLimit",
        "aws.secretRotationDays",
    ):
        assert f"wondernest:{key}" in problems
    assert not declared_by(bad, stack="prod")


def test_cross_field_aws_rules() -> None:
    bad = prod_config({"apiCpu": 256, "apiMemoryMib": 4096, "apiMinCount": 4, "domainName": "api.example.com"})
    with pytest.raises(ConfigError) as caught:
        evaluate(bad, stack="prod")
    assert caught.value.problems == [
        "wondernest:aws.apiMemoryMib = 4096: Fargate with apiCpu 256 takes 512 to 2048 MiB in steps of 512",
        "wondernest:aws.apiDesiredCount = 2: must lie between apiMinCount and apiMaxCount",
        "wondernest:aws.domainName = 'api.example.com': domainName goes with certificateArn, or with hostedZoneId "
        "for a certificate the stack makes",
    ]
    assert not declared_by(bad, stack="prod")


def test_the_local_stack_declares_no_aws_resource(dev: Evaluation) -> None:
    assert not any(d.typ.startswith(("aws:", "grafana:")) for d in dev.declared)


def test_the_ssm_bastion_is_optional_and_admits_nothing() -> None:
    assert not evaluate(prod_config(), stack="prod").of_type("aws:ec2/instance:Instance")
    ev = evaluate(prod_config({"adminBastion": True, "dbAdminHost": "127.0.0.1"}), stack="prod")
    bastion = ev.named("aws:ec2/instance:Instance", "bastion")
    i = bastion.inputs
    assert i["ami"] == "ami-0123456789abcdef0" and bastion.options.get("provider")
    assert i["associatePublicIpAddress"] is False and "keyName" not in i
    assert i["metadataOptions"]["httpTokens"] == "required"
    assert i["rootBlockDevice"]["encrypted"] is True
    assert i["subnetId"] == ec2_id("subnet", "private-0")
    group = ec2_id("sg", "sg-bastion")
    assert not [r for r in ev.of_type(SG_INGRESS) if r.inputs["securityGroupId"] == group]
    to_postgres = ev.named(SG_INGRESS, "bastion-to-postgres-ingress").inputs
    assert (to_postgres["referencedSecurityGroupId"], to_postgres["fromPort"]) == (group, 5432)
    assert ev.outputs["adminBastionId"] == ec2_id("i", "bastion")


def test_the_tunnel_command_comes_from_the_stack_outputs() -> None:
    from components.commands.tunnel import session_command

    ev = evaluate(prod_config({"adminBastion": True, "dbAdminHost": "127.0.0.1", "dbAdminPort": 15432}), stack="prod")
    command = session_command(ev.outputs, 15432)
    assert command[:5] == ["aws", "ssm", "start-session", "--target", ec2_id("i", "bastion")]
    parameters = json.loads(command[-1])
    assert parameters["host"][0].startswith("wondernest-prod-postgres.") and parameters["portNumber"] == ["5432"]
    assert parameters["localPortNumber"] == ["15432"]
    with pytest.raises(SystemExit, match="no admin bastion"):
        session_command(evaluate(prod_config(), stack="prod").outputs, 15432)


def test_settings_the_aws_target_would_ignore_are_refused() -> None:
    bad = prod_config(
        network={"bindAddress": "127.0.0.1"},
        postgres={"memory": "2GiB"},
        images={"grafana": "grafana/grafana:11.6.0"},
        backups={**stack_config(stack="prod")["backups"], "s3Region": "eu-west-1"},
        alerting={**PAGING, "ticket": {"slackChannel": "#ops", "slackWebhookUrl": "https://hooks.slack.com/x"}},
    )
    with pytest.raises(ConfigError) as caught:
        evaluate(bad, stack="prod", secret_keys=["alerting"])
    assert caught.value.problems == [
        "wondernest:network = {...}: has no effect with target 'aws'; remove it (docs/aws.md)",
        "wondernest:postgres.memory = '2GiB': has no effect with target 'aws'; remove it (docs/aws.md)",
        "wondernest:images.grafana = 'grafana/grafana:11.6.0': has no effect with target 'aws'; remove it "
        "(docs/aws.md)",
        "wondernest:backups.s3Region = 'eu-west-1': has no effect with target 'aws'; remove it (docs/aws.md)",
        "wondernest:alerting.ticket.slackChannel = [secret]: Managed Prometheus notifies only through SNS; "
        "on aws a destination is an email or an HTTPS webhook SNS delivers to (page.email, page.webhookUrl, ...)",
        "wondernest:alerting.ticket.slackWebhookUrl = [secret]: Managed Prometheus notifies only through SNS; "
        "on aws a destination is an email or an HTTPS webhook SNS delivers to (page.email, page.webhookUrl, ...)",
    ]
    assert not declared_by(bad, stack="prod")


def test_the_exporter_image_bakes_in_the_specs_query_file(prod: Evaluation) -> None:
    from components.aws.monitoring import EXPORTER_DIR
    from components.model.monitoring import POSTGRES_EXPORTER_QUERIES

    assert yaml.safe_load((EXPORTER_DIR / "queries.yaml").read_text()) == POSTGRES_EXPORTER_QUERIES
    image = prod.named("docker:index/image:Image", "postgres-exporter-image").inputs
    assert image["build"]["args"] == {"BASE": "quay.io/prometheuscommunity/postgres-exporter:v0.11.1"}
    # Relative, like app/: the same from any checkout, so no diff between machines.
    assert image["build"]["context"] == "components/aws/exporter"
    exporter = containers(prod, "-exporters")["postgres-exporter"]
    assert exporter["command"] == [
        "--web.listen-address=127.0.0.1:9187",
        "--extend.query-path=/etc/postgres_exporter/queries.yaml",
    ]
    assert exporter["mountPoints"] == []


def test_only_the_backup_and_restore_tasks_write_to_task_storage(prod: Evaluation) -> None:
    mounted = {
        (task.name, c["name"], m["containerPath"])
        for task in prod.of_type(TASK_DEF)
        for c in json.loads(task.inputs["containerDefinitions"])
        for m in c["mountPoints"]
    }
    assert mounted == {("backups-task", "backups", "/backups"), ("restore-task", "restore", "/backups")}


def test_both_targets_export_the_same_outputs(prod: Evaluation, dev: Evaluation) -> None:
    """Plus what only one target has: pgAdmin, the stack's own CA and the
    secrets' values locally (a secret output), the secrets' ARNs and AWS's own
    resources on AWS (where RDS's CA comes with the images)."""
    local_only = {"pgadminUrl", "secrets", "caCertificate"}
    assert set(dev.outputs) - local_only <= set(prod.outputs)
    assert set(prod.outputs) - set(dev.outputs) == {
        "secretArns", "postgresMasterSecretArn", "pageTopicArn", "ticketTopicArn", "backupVault", "backupBucket",
        "kmsKeyArn", "restoreTask", "backupTask", "logGroups", "region",
    }  # fmt: skip
    assert prod.outputs["alertmanagerUrl"].endswith("/alertmanager/api/v2/alerts")
    assert prod.outputs["roles"] == dev.outputs["roles"]


def test_every_lookup_goes_through_the_platforms_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    """A data source on the default provider would read another region, or fail with no region at all."""
    from tests.harness import RecordingMocks

    seen: list[tuple[str, str]] = []
    original = RecordingMocks.call

    def spy(self: RecordingMocks, args: Any) -> Any:
        seen.append((args.token, args.provider))
        return original(self, args)

    monkeypatch.setattr(RecordingMocks, "call", spy)
    evaluate(prod_config({"adminBastion": True}), stack="prod")
    assert {token.split(":")[1] for token, _ in seen} >= {"index/getAvailabilityZones", "ecr/getAuthorizationToken"}
    assert {provider.split("::")[-2] for _, provider in seen} == {"aws"}


def test_read_replicas_follow_the_primary_and_feed_the_apis_read_pool() -> None:
    ev = evaluate(prod_config({"dbReadReplicas": 2, "dbReplicaInstanceClass": "db.r6g.xlarge"}), stack="prod")
    instances = by_name(ev, "aws:rds/instance:Instance")
    primary = instances["postgres"]
    replicas = {name: i for name, i in instances.items() if name != "postgres"}
    assert sorted(replicas) == ["postgres-replica-1", "postgres-replica-2"]
    for n, (name, r) in enumerate(sorted(replicas.items()), start=1):
        assert r["identifier"] == f"wondernest-prod-postgres-replica-{n}"
        assert r["replicateSourceDb"] == primary["identifier"]
        assert r["instanceClass"] == "db.r6g.xlarge"
        # The source's engine, storage and subnets: RDS refuses a subnet group for a same-region replica.
        assert not {"engine", "dbName", "username", "dbSubnetGroupName", "allocatedStorage"} & set(r)
        assert r["publiclyAccessible"] is False and r["vpcSecurityGroupIds"] == primary["vpcSecurityGroupIds"]
        assert r["storageEncrypted"] is True and r["kmsKeyId"] == primary["kmsKeyId"]
        assert r["caCertIdentifier"] == primary["caCertIdentifier"]
        assert r["iamDatabaseAuthenticationEnabled"] is True
        assert r["backupRetentionPeriod"] == 0 and r["skipFinalSnapshot"] is True
        assert r["deletionProtection"] is False, name
        assert r["parameterGroupName"] == "wondernest-prod-postgres15-replica"
    # Tuned for the replicas' 32 GiB with the primary's max_connections.
    group = by_name(ev, "aws:rds/parameterGroup:ParameterGroup")["replica-parameters"]
    expected = rds_parameters(tune(RDS_CLASSES["db.r6g.xlarge"], 100), slow_query_ms=500)
    assert {p["name"]: p["value"] for p in group["parameters"]} == {p.name: p.value for p in expected}
    # libpq's multi-host list, one RDS endpoint per replica: each certificate names its own.
    hosts = ev.outputs["postgresReaderEndpoint"].split(",")
    assert [h.split(".")[0] for h in hosts] == [f"wondernest-prod-postgres-replica-{n}" for n in (1, 2)]
    assert all(h.endswith(".eu-west-1.rds.amazonaws.com:5432") for h in hosts)
    api = containers(ev, "-api")["api"]
    env = {e["name"]: e["value"] for e in api["environment"]}
    assert env["DB_READ_HOSTS"] == ev.outputs["postgresReaderEndpoint"]
    assert "DB_READ_HOSTS" not in {e["name"] for e in containers(ev, "-api")["migrate"]["environment"]}
    alarms = by_name(ev, "aws:cloudwatch/metricAlarm:MetricAlarm")
    assert alarms["alarm-rds-replica-2-lag"]["metricName"] == "ReplicaLag"
    assert alarms["alarm-rds-replica-2-lag"]["dimensions"] == {
        "DBInstanceIdentifier": replicas["postgres-replica-2"]["identifier"]
    }


def test_without_replicas_there_is_no_reader_endpoint_and_no_read_pool(prod: Evaluation) -> None:
    assert "postgresReaderEndpoint" not in prod.outputs
    assert [d.name for d in prod.of_type("aws:rds/instance:Instance")] == ["postgres"]
    env = {e["name"] for e in containers(prod, "-api")["api"]["environment"]}
    assert "DB_READ_HOSTS" not in env


def test_replicas_of_the_primarys_class_share_its_parameter_group() -> None:
    ev = evaluate(prod_config({"dbReadReplicas": 1}), stack="prod")
    replica = by_name(ev, "aws:rds/instance:Instance")["postgres-replica-1"]
    assert replica["instanceClass"] == "db.m6g.large"
    assert replica["parameterGroupName"] == "wondernest-prod-postgres15"
    assert "replica-parameters" not in by_name(ev, "aws:rds/parameterGroup:ParameterGroup")


@pytest.mark.parametrize(
    ("aws", "problem"),
    [
        (
            {"dbReplicaInstanceClass": "db.r6g.large"},
            "wondernest:aws.dbReplicaInstanceClass = 'db.r6g.large': set dbReadReplicas too",
        ),
        ({"dbReadReplicas": 6}, "wondernest:aws.dbReadReplicas = 6: Input should be less than or equal to 5"),
        (
            {"dbReadReplicas": 1, "dbReplicaInstanceClass": "db.x9.huge"},
            "wondernest:aws.dbReplicaInstanceClass = 'db.x9.huge': not a known size",
        ),
    ],
)
def test_replica_settings_are_checked_before_anything_is_declared(aws: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        evaluate(prod_config(aws), stack="prod")
    assert len(caught.value.problems) == 1 and caught.value.problems[0].startswith(problem)
    assert not declared_by(prod_config(aws), stack="prod")


@pytest.mark.parametrize(("cpu", "memory", "hashes"), [(512, 1024, "1"), (1024, 2048, "1"), (2048, 4096, "2")])
def test_the_api_task_hashes_as_many_passwords_at_once_as_it_has_vcpus(cpu: int, memory: int, hashes: str) -> None:
    ev = evaluate(prod_config({"apiCpu": cpu, "apiMemoryMib": memory}), stack="prod")
    env = {e["name"]: e["value"] for e in containers(ev, "-api")["api"]["environment"]}
    assert env["HASH_CONCURRENCY"] == hashes


def test_a_hosted_zone_gets_the_stack_a_validated_certificate_and_its_alias() -> None:
    ev = evaluate(prod_config({"domainName": "api.example.com", "hostedZoneId": "Z0123456789ABCDEFGHIJ"}), stack="prod")
    [certificate] = [d.inputs for d in ev.of_type("aws:acm/certificate:Certificate")]
    assert certificate["domainName"] == "api.example.com" and certificate["validationMethod"] == "DNS"
    records = by_name(ev, "aws:route53/record:Record")
    assert records["certificate-validation"]["type"] == "CNAME"
    assert records["certificate-validation"]["zoneId"] == "Z0123456789ABCDEFGHIJ"
    [validation] = [d.inputs for d in ev.of_type("aws:acm/certificateValidation:CertificateValidation")]
    assert validation["validationRecordFqdns"] == [records["certificate-validation"]["name"].rstrip(".")]
    alias = records["alias"]
    assert alias["name"] == "api.example.com" and alias["type"] == "A"
    assert alias["aliases"][0]["zoneId"] == "Z32O12XQLNTSW2" and alias["aliases"][0]["evaluateTargetHealth"] is True
    https = by_name(ev, "aws:lb/listener:Listener")["https"]
    assert https["certificateArn"].startswith("arn:aws:acm:eu-west-1:")
    assert ev.outputs["apiUrl"] == "https://api.example.com"


@pytest.mark.parametrize(
    ("aws", "problem"),
    [
        ({"hostedZoneId": "Z0123456789ABCDEFGHIJ"}, "aws.hostedZoneId = 'Z0123456789ABCDEFGHIJ': needs domainName"),
        (
            {"hostedZoneId": "Z0123456789ABCDEFGHIJ", "domainName": "api.example.com", "certificateArn": CERT},
            ": the stack makes the certificate in the hosted zone; remove certificateArn",
        ),
        (
            {"domainName": "api.example.com"},
            "aws.domainName = 'api.example.com': domainName goes with certificateArn, or with hostedZoneId",
        ),
    ],
)
def test_a_domain_needs_a_certificate_or_a_zone_to_make_one_in(aws: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(prod_config(aws), stack="prod")
    assert any(problem in p for p in caught.value.problems), caught.value.problems


def test_task_roles_trust_only_this_accounts_tasks(prod: Evaluation) -> None:
    roles = by_name(prod, "aws:iam/role:Role")
    tasks = {
        name: json.loads(r["assumeRolePolicy"]) for name, r in roles.items() if "ecs-tasks" in r["assumeRolePolicy"]
    }
    assert {"api-execution-role", "api-task-role", "restore-execution-role", "restore-task-role"} <= set(tasks)
    for name, document in tasks.items():
        [statement] = document["Statement"]
        assert statement["Condition"] == {
            "StringEquals": {"aws:SourceAccount": ACCOUNT},
            "ArnLike": {"aws:SourceArn": f"arn:aws:ecs:eu-west-1:{ACCOUNT}:*"},
        }, name
    # Services that do not say whom they act for keep a trust without the condition.
    others = [json.loads(r["assumeRolePolicy"]) for r in roles.values() if "ecs-tasks" not in r["assumeRolePolicy"]]
    assert others and not any("Condition" in d["Statement"][0] for d in others)
