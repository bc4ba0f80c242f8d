"""AWS's limits on the physical names the AWS target derives from appName and
the stack's name: refused at config time, naming both, before anything is
declared; and at the longest accepted names, every name of the prod graph
within AWS's limit for its type (the mock runtime accepts any length)."""

from __future__ import annotations

import pytest

from components.config import ConfigError, parse_config
from components.model.naming import AWS_NAME_LIMITS
from tests.harness import declared_by, evaluate
from tests.test_stack_prod import CERT, prod_config

# AWS's documented maximum lengths, per type and argument.
LIMITS = {
    ("aws:lb/loadBalancer:LoadBalancer", "name"): 32,
    ("aws:lb/targetGroup:TargetGroup", "name"): 32,
    ("aws:elasticache/replicationGroup:ReplicationGroup", "replicationGroupId"): 40,
    ("aws:elasticache/user:User", "userId"): 40,
    ("aws:backup/vault:Vault", "name"): 50,
    ("aws:backup/plan:Plan", "name"): 50,
    ("aws:backup/selection:Selection", "name"): 50,
    ("aws:s3/bucket:Bucket", "bucket"): 63,
    ("aws:rds/instance:Instance", "identifier"): 63,
    ("aws:scheduler/schedule:Schedule", "name"): 64,
    ("aws:iam/role:Role", "name"): 64,
    ("aws:iam/role:Role", "namePrefix"): 38,
    ("aws:lambda/function:Function", "name"): 64,
    ("aws:elasticache/subnetGroup:SubnetGroup", "name"): 255,
    ("aws:iam/instanceProfile:InstanceProfile", "name"): 128,
}
NAME_KEYS = ("name", "namePrefix", "identifier", "replicationGroupId", "userId", "bucket", "alias")
EVERYTHING = {
    "domainName": "api.example.com",
    "certificateArn": CERT,
    "adminBastion": True,
    "backupCopyRegion": "eu-central-1",
    "dbReadReplicas": 5,
}


def test_names_over_aws_limits_are_refused_naming_app_name_and_the_stack() -> None:
    config = prod_config(appName="abcdefghijklmnopqrst")
    with pytest.raises(ConfigError) as raised:
        parse_config(config, stack="production")
    text = str(raised.value)
    assert "wondernest:appName = 'abcdefghijklmnopqrst' with the stack name 'production'" in text
    assert "abcdefghijklmnopqrst-production-api (35 characters; AWS allows 32)" in text
    assert declared_by(config, stack="production") == []
    # The same app name with a short stack fits; a local stack has no such limits.
    parse_config(config, stack="p")
    parse_config({"target": "docker", "appName": "abcdefghijklmnopqrst"}, stack="production-eu-west-1")


def test_at_the_longest_accepted_names_every_name_is_within_its_limit() -> None:
    # The tightest limit leaves appName and stack 22 characters between them.
    app, stack = "abcdefghijklmno", "prod-eu"
    config = prod_config(EVERYTHING, appName=app)
    parse_config(config, stack=stack)
    with pytest.raises(ConfigError):
        parse_config(config, stack=stack + "x")
    over = []
    for declared in evaluate(config, stack=stack).declared:
        for key in NAME_KEYS:
            value = declared.inputs.get(key)
            if isinstance(value, str):
                limit = LIMITS.get((declared.typ, key), 255)
                if len(value) > limit:
                    over.append(f"{declared.typ} {key} {value!r}: {len(value)} > {limit}")
    assert over == []


def test_the_limit_table_names_real_names_of_the_graph() -> None:
    """Each name the config check measures is one the stack declares."""
    app, stack = "acme", "prod"
    names = {
        d.inputs.get(key)
        for d in evaluate(prod_config(EVERYTHING, appName=app), stack=stack).declared
        for key in NAME_KEYS
    }
    for kind in AWS_NAME_LIMITS:
        assert f"{app}-{stack}{kind.suffix}" in names, kind.what
