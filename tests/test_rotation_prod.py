"""Prod's role passwords rotate through Secrets Manager with the AWS-provided
alternating-users function, and every service is redeployed before the
credentials it started with can expire (mock runtime)."""

from __future__ import annotations

import json
import re

import pytest

from components.aws.rotation import ROTATION_APPLICATION, ROTATION_APPLICATION_VERSION, redeploy_every_days
from tests.aws_mocks import ACCOUNT, ec2_id
from tests.harness import Evaluation, evaluate, fake_secret, is_secret, unwrap
from tests.test_stack_dev import DYNAMIC
from tests.test_stack_prod import prod_config, secret_arn

STACK = "aws:serverlessrepository/cloudFormationStack:CloudFormationStack"
VERSION = "aws:secretsmanager/secretVersion:SecretVersion"
ROTATION = "aws:secretsmanager/secretRotation:SecretRotation"
SCHEDULE = "aws:scheduler/schedule:Schedule"
ROTATED = ("postgres-migrator", "postgres-app", "postgres-analytics", "postgres-monitoring", "postgres-backup")
SELF_ROTATED = ("redis-app", "redis-monitoring", "jwt-signing-key")
MASTER_SECRET = re.compile(r"^arn:aws:secretsmanager:eu-west-1:\d{12}:secret:rds!db-")


@pytest.fixture(scope="module")
def prod() -> Evaluation:
    return evaluate(prod_config(), stack="prod")


def test_the_aws_function_is_pinned_and_runs_in_the_private_subnets(prod: Evaluation) -> None:
    stack = prod.named(STACK, "postgres-rotation").inputs
    assert stack["applicationId"] == ROTATION_APPLICATION and ROTATION_APPLICATION.endswith("RotationMultiUser")
    assert stack["semanticVersion"] == ROTATION_APPLICATION_VERSION
    assert sorted(stack["capabilities"]) == ["CAPABILITY_IAM", "CAPABILITY_RESOURCE_POLICY"]
    p = stack["parameters"]
    assert p["functionName"] == "wondernest-prod-postgres-rotation"
    assert p["endpoint"] == "https://secretsmanager.eu-west-1.amazonaws.com"
    assert p["vpcSubnetIds"].split(",") == [ec2_id("subnet", f"private-{i}") for i in range(3)]
    assert p["vpcSecurityGroupIds"] == ec2_id("sg", "sg-rotation")
    # The RDS-managed master secret is its superuser, decrypted with the platform key.
    assert MASTER_SECRET.match(p["masterSecretArn"])
    assert p["kmsKeyArn"] == p["masterSecretKmsKeyArn"] and p["kmsKeyArn"].startswith("arn:aws:kms:")


def test_each_roles_secret_holds_what_the_function_reads(prod: Evaluation) -> None:
    versions = {d.name: d for d in prod.of_type(VERSION)}
    master = prod.named(STACK, "postgres-rotation").inputs["parameters"]["masterSecretArn"]
    host, port = prod.outputs["postgresEndpoint"].rsplit(":", 1)
    assert port == "5432" and host.endswith(".eu-west-1.rds.amazonaws.com")
    for key in ROTATED:
        version = versions[f"{key}-credentials"]
        assert is_secret(version.inputs["secretString"])
        document = json.loads(unwrap(version.inputs["secretString"]))
        role = key.removeprefix("postgres-")
        assert document == {
            "engine": "postgres",
            "host": host,
            "port": 5432,
            "username": f"wondernest_{role}",
            "password": fake_secret(key),
            "dbname": "wondernest",
            "masterarn": master,
            "ssl": True,
        }
        # Rotation owns every later version and where AWSCURRENT points.
        assert sorted(version.options["ignore_changes"]) == ["secretString", "versionStages"]
    # The platform's own rotations write documents of their own; only the
    # operator's sign-in keeps a plain version, and no rotation.
    assert {d.name for d in prod.of_type(ROTATION)} == {*ROTATED, *SELF_ROTATED}
    assert set(versions) == {
        *(f"{k}-credentials" for k in ROTATED), "redis-app-credentials", "redis-monitoring-credentials",
        "jwt-signing-key-keys", "verify-login",
    }  # fmt: skip


def test_the_signing_keys_and_cache_passwords_rotate_by_the_platforms_functions(prod: Evaluation) -> None:
    """One function per kind, its code from components/aws/functions/, in the
    private subnets, invoked by Secrets Manager for this account only; each
    secret's first version written once, then the rotation's."""
    functions = {d.name: d.inputs for d in prod.of_type("aws:lambda/function:Function")}
    assert set(functions) == {"signing-keys-rotation", "cache-users-rotation"}
    for name, module in (("signing-keys", "rotate_signing_keys"), ("cache-users", "rotate_cache_users")):
        f = functions[f"{name}-rotation"]
        assert f["handler"] == f"functions.{module}.handler" and f["runtime"] == "python3.12"
        assert f["vpcConfig"]["subnetIds"] == [ec2_id("subnet", f"private-{i}") for i in range(3)]
        permission = prod.named("aws:lambda/permission:Permission", f"{name}-rotation-invoke").inputs
        assert permission["principal"] == "secretsmanager.amazonaws.com" and permission["sourceAccount"] == ACCOUNT
    assert json.loads(functions["cache-users-rotation"]["environment"]["variables"]["USER_IDS"]) == {
        secret_arn(prod, f"redis-{u}"): f"wondernest-prod-redis-{u}" for u in ("app", "monitoring")
    }
    for f in functions.values():
        assert f["vpcConfig"]["securityGroupIds"] == [ec2_id("sg", "sg-secret-rotation")]
    for key in SELF_ROTATED:
        rotation = prod.named(ROTATION, key).inputs
        assert rotation["secretId"] == secret_arn(prod, key)
        assert rotation["rotationRules"] == {"automaticallyAfterDays": 30} and rotation["rotateImmediately"] is True
    versions = {d.name: d for d in prod.of_type(VERSION)}
    keys = json.loads(unwrap(versions["jwt-signing-key-keys"].inputs["secretString"]))
    assert sorted(keys) == ["current", "next", "previous"] and len(set(keys.values())) == 3
    assert keys["current"] == fake_secret("jwt-signing-key")
    cache = json.loads(unwrap(versions["redis-app-credentials"].inputs["secretString"]))
    assert cache == {"username": "wondernest_app", "password": fake_secret("redis-app"),
                     "user_id": "wondernest-prod-redis-app"}  # fmt: skip
    for version in versions.values():
        if version.name != "verify-login":
            assert sorted(version.options["ignore_changes"]) == ["secretString", "versionStages"]
    # The users' passwords are the rotation's after its first run.
    users = {d.name: d for d in prod.of_type("aws:elasticache/user:User")}
    assert users["redis-user-app"].options["ignore_changes"] == ["authenticationMode"]
    assert not users["redis-user-default"].options.get("ignore_changes")


def test_the_rotation_functions_may_touch_only_their_own_secrets_and_users(prod: Evaluation) -> None:
    policies = {d.name: json.loads(d.inputs["policy"]) for d in prod.of_type("aws:iam/rolePolicy:RolePolicy")}
    keys = policies["signing-keys-rotation-role"]["Statement"]
    [writes] = [s for s in keys if "secretsmanager:PutSecretValue" in s["Action"]]
    assert writes["Resource"] == [secret_arn(prod, "jwt-signing-key")]
    assert not [s for s in keys if any(str(a).startswith("elasticache:") for a in s["Action"])]
    cache = policies["cache-users-rotation-role"]["Statement"]
    [modify] = [s for s in cache if "elasticache:ModifyUser" in s["Action"]]
    assert modify["Resource"] == [
        f"arn:aws:elasticache:eu-west-1:{ACCOUNT}:user:wondernest-prod-redis-{u}" for u in ("app", "monitoring")
    ]


def test_rotation_runs_on_schedule_and_at_once_after_both_users_exist(prod: Evaluation) -> None:
    function = f"arn:aws:lambda:eu-west-1:{ACCOUNT}:function:wondernest-prod-postgres-rotation"
    roles = {d.name: d for d in prod.of_type(f"{DYNAMIC}Role")}
    for key in ROTATED:
        rotation = prod.named(ROTATION, key)
        assert rotation.inputs["secretId"] == secret_arn(prod, key)
        assert rotation.inputs["rotationLambdaArn"] == function
        assert rotation.inputs["rotationRules"] == {"automaticallyAfterDays": 30}
        assert rotation.inputs["rotateImmediately"] is True
        role = key.removeprefix("postgres-")
        needed = {f"role-{role}", f"role-{role}-alternate", f"{key}-credentials", "postgres-rotation"}
        assert needed <= {u.rsplit("::", 1)[1] for u in rotation.options["dependencies"]}, key
        assert f"role-{role}" in roles and f"role-{role}-alternate" in roles


def test_each_role_and_its_alternate_are_declared_for_the_function(prod: Evaluation) -> None:
    roles = {d.name: unwrap(d.inputs) for d in prod.of_type(f"{DYNAMIC}Role")}
    for key in ("app", "analytics", "monitoring", "backup"):
        role, alternate = roles[f"role-{key}"], roles[f"role-{key}-alternate"]
        assert alternate["name"] == f"{role['name']}_clone"  # the function's own naming
        assert role["members"] == [alternate["name"]] and alternate["member_of"] == [role["name"]]
        # The alternate logs in with the role's session settings, and takes the role on.
        session = [s for s in role["settings"] if not s.startswith("role=")]
        assert alternate["settings"] == sorted([*session, f"role={role['name']}"])
        assert role["settings"] == session
        assert role["rotated"] is True and alternate["rotated"] is True
        assert alternate["connection_limit"] == role["connection_limit"]
        assert is_secret(prod.named(f"{DYNAMIC}Role", f"role-{key}-alternate").inputs["password"])


def test_the_function_reaches_only_postgres_and_https(prod: Evaluation) -> None:
    sg = ec2_id("sg", "sg-rotation")
    egress = sorted(
        (d.inputs["fromPort"], d.inputs.get("cidrIpv4") or d.inputs.get("referencedSecurityGroupId"))
        for d in prod.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
        if d.inputs["securityGroupId"] == sg
    )
    assert egress == [(443, "0.0.0.0/0"), (5432, ec2_id("sg", "sg-postgres"))]
    ingress = [
        d
        for d in prod.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        if d.inputs["securityGroupId"] == sg
    ]
    assert ingress == []


def test_every_service_is_redeployed_within_half_a_rotation(prod: Evaluation) -> None:
    schedules = {d.name: d.inputs for d in prod.of_type(SCHEDULE)}
    assert set(schedules) == {"redeploy-api", "redeploy-exporters", "redeploy-backups"}
    services = {d.name: d.inputs["name"] for d in prod.of_type("aws:ecs/service:Service")}
    for key, schedule in schedules.items():
        assert schedule["scheduleExpression"] == "rate(15 days)"
        target = schedule["target"]
        assert target["arn"] == "arn:aws:scheduler:::aws-sdk:ecs:updateService"
        request = json.loads(target["input"])
        assert request["ForceNewDeployment"] is True
        assert request["Service"] == services[f"{key.removeprefix('redeploy-')}-service"]
        assert request["Cluster"].startswith("arn:aws:ecs:eu-west-1:")
    policy = json.loads(prod.named("aws:iam/rolePolicy:RolePolicy", "redeploy-role").inputs["policy"])
    [statement] = policy["Statement"]
    assert statement["Action"] == "ecs:UpdateService" and len(statement["Resource"]) == 3
    trust = json.loads(prod.named("aws:iam/role:Role", "redeploy-role").inputs["assumeRolePolicy"])
    assert trust["Statement"][0]["Principal"] == {"Service": "scheduler.amazonaws.com"}


@pytest.mark.parametrize(("days", "every"), [(2, 1), (7, 3), (30, 15), (90, 45), (365, 182)])
def test_a_task_never_outlives_its_credentials(days: int, every: int) -> None:
    """A task's credentials stop working one full period after the rotation that
    retired them; a task is at most `every` days old, plus its rollout."""
    assert redeploy_every_days(days) == every
    assert every < days


def test_the_rotation_period_is_one_setting() -> None:
    ev = evaluate(prod_config({"secretRotationDays": 7}), stack="prod")
    assert {d.inputs["rotationRules"]["automaticallyAfterDays"] for d in ev.of_type(ROTATION)} == {7}
    assert {d.inputs["scheduleExpression"] for d in ev.of_type(SCHEDULE)} == {"rate(3 days)"}
