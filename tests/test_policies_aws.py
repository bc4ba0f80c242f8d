"""The AWS rules of the policy pack: each both ways, and the whole prod stack."""

from __future__ import annotations

import collections.abc
import copy
import dataclasses
import json
from typing import Any

import pytest
from pulumi_policy import ResourceValidationArgs
from pulumi_policy.policy import PolicyProviderResource
from pulumi_policy.proxy import unknown_checking_proxy
from wondernest_policies import aws, aws_network, credentials, policy_documents, secret_values
from wondernest_policies import platform as policies_platform
from wondernest_policies.model import Resource, Violation
from wondernest_policies.registry import RULES, policies

from tests.harness import evaluate_once, stack_config
from tests.test_policies import RESOURCE_CASES, UNKNOWN, _options, as_resources, assert_reports, enforcement, violations
from tests.test_stack_prod import CERT, prod_config

BY_ID = {rule.id: rule for rule in RULES}
TAGS = {"app": "wondernest", "environment": "prod", "owner": "platform-team", "cost-center": "wondernest"}


def res(typ: str, name: str, provider: dict[str, Any] | None = None, **props: Any) -> Resource:
    return Resource(typ, name, f"urn:pulumi:prod::wondernest::{typ}::{name}", props, provider=provider)


def link(resource: Resource, **sources: Resource | list[Resource]) -> Resource:
    """The resource with its properties' values taken from those resources, as the engine records it."""
    deps = {key: tuple(r.urn for r in (v if isinstance(v, list) else [v])) for key, v in sources.items()}
    return dataclasses.replace(resource, depends_on={**resource.depends_on, **deps})


def doc(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


ROOT_ADMIN = {"Sid": "AccountAdministers", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
              "Action": "kms:*", "Resource": "*"}  # fmt: skip
KEY_ADMIN = {"Sid": "AccountAdministers", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
             "Action": ["kms:Describe*", "kms:Get*", "kms:List*", "kms:Put*", "kms:Update*", "kms:Enable*",
                        "kms:Disable*", "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion", "kms:TagResource"],
             "Resource": "*"}  # fmt: skip
THROUGH_SERVICES = {"Sid": "UseThroughServices", "Effect": "Allow",
                    "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
                    "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*",
                               "kms:CreateGrant", "kms:DescribeKey"], "Resource": "*",
                    "Condition": {"StringEquals": {"kms:ViaService": ["secretsmanager.eu-west-1.amazonaws.com"],
                                                   "kms:CallerAccount": "123456789012"}}}  # fmt: skip
LOGS_USE = {"Sid": "CloudWatchLogsEncrypts", "Effect": "Allow",
            "Principal": {"Service": "logs.eu-west-1.amazonaws.com"},
            "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:GenerateDataKey*"], "Resource": "*",
            "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn":
                                      "arn:aws:logs:eu-west-1:123456789012:log-group:*"}}}  # fmt: skip
SCOPED_KEY_POLICY = doc(KEY_ADMIN, THROUGH_SERVICES, LOGS_USE)
KEY_POLICY_TYPE = "aws:kms/keyPolicy:KeyPolicy"
READ_DUMPS = {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::b/*"}
RANDOM_TOKEN = "kP9vQ2mX7rT4wZ8nB3cF6hJ1sL5dG0aE"
ORG_ONLY = {"StringEquals": {"aws:PrincipalOrgID": "o-a1b2c3d4e5"}}


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
        "caCertIdentifier": "rds-ca-rsa2048-g1",
    }
    return res(aws.RDS, "postgres", **{**props, **overrides})


def redis(**overrides: Any) -> Resource:
    props = {
        "atRestEncryptionEnabled": True,
        "transitEncryptionEnabled": True,
        "authToken": "x" * 32,
        "automaticFailoverEnabled": True,
        "multiAzEnabled": True,
        "snapshotRetentionLimit": 7,
    }
    return res(aws.REPLICATION_GROUP, "redis", **{**props, **overrides})


def cache_user(**overrides: Any) -> Resource:
    props = {
        "userName": "default",
        "accessString": "off -@all",
        "authenticationMode": {"type": "password", "passwords": ["x" * 32]},
    }
    return res(aws.ELASTICACHE_USER, "redis-user", **{**props, **overrides})


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

SUBNET = aws_network.SUBNET
ROLE_POLICY = policy_documents.ROLE_POLICY
ROLE = policy_documents.ROLE
ATTACHMENT = policy_documents.POLICY_ATTACHMENT

# The ARN of an AWS-managed key's alias, less the service: `arn:...:alias/aws/sns`.
KEY_ALIAS_ARN = "arn:aws:kms:eu-west-1:123456789012:alias/aws"

AWS_RESOURCE_CASES: list[tuple[str, Resource, Resource, str]] = [
    ("aws-rds-hardened", rds(), rds(storageEncrypted=False), "storage is not encrypted with a customer key."),
    ("aws-rds-hardened", rds(), rds(publiclyAccessible=True), "is publicly accessible."),
    ("aws-rds-hardened", rds(), rds(multiAz=False), "is single-AZ."),
    ("aws-rds-hardened", rds(), rds(deletionProtection=False), "has no deletion protection."),
    ("aws-rds-hardened", rds(), rds(skipFinalSnapshot=True), "skips its final snapshot."),
    ("aws-rds-hardened", rds(), rds(backupRetentionPeriod=7), "keeps backups 7 days, under 14."),
    ("aws-rds-hardened", rds(), rds(enabledCloudwatchLogsExports=[]), "does not export its log to CloudWatch."),
    ("aws-rds-hardened", rds(), rds(iamDatabaseAuthenticationEnabled=False), "has IAM authentication off."),
    ("aws-rds-hardened", rds(), rds(performanceInsightsKmsKeyId=None),
     "encrypts Performance Insights with the AWS-managed key."),
    # An AWS-managed key is no customer key however it is named: its alias, or the alias's ARN.
    ("aws-rds-hardened", rds(), rds(kmsKeyId=f"{KEY_ALIAS_ARN}/rds"), "storage is not encrypted with a customer key."),
    ("aws-rds-hardened", rds(), rds(performanceInsightsKmsKeyId="alias/aws/rds"),
     "encrypts Performance Insights with the AWS-managed key."),
    ("aws-encryption-customer-key", res(aws.SNS_TOPIC, "alerts", kmsMasterKeyId=LOGS_KEY),
     res(aws.SNS_TOPIC, "alerts", kmsMasterKeyId=f"{KEY_ALIAS_ARN}/sns"),
     "is encrypted at rest with an AWS-managed key."),
    ("aws-secret-customer-key", res(aws.SECRET, "postgres-app", kmsKeyId=LOGS_KEY),
     res(aws.SECRET, "postgres-app", kmsKeyId="alias/aws/secretsmanager"),
     "is encrypted with the AWS-managed key, not a customer key."),
    ("aws-log-retention", res(aws.LOG_GROUP, "api-logs", retentionInDays=90, kmsKeyId=LOGS_KEY),
     res(aws.LOG_GROUP, "api-logs", retentionInDays=90, kmsKeyId=f"{KEY_ALIAS_ARN}/logs"),
     "is not encrypted with a customer key."),
    ("aws-elasticache-hardened", redis(), redis(atRestEncryptionEnabled=False), "is not encrypted at rest."),
    ("aws-elasticache-hardened", redis(), redis(transitEncryptionEnabled=False), "is not encrypted in transit."),
    ("aws-elasticache-hardened", redis(), redis(authToken=None), "requires no authentication."),
    ("aws-elasticache-hardened", redis(authToken=None, userGroupIds=["wondernest-prod-redis-users"]),
     redis(authToken=None, userGroupIds=[]), "requires no authentication."),
    ("aws-elasticache-users-authenticate", cache_user(), cache_user(accessString="on ~* +@all"),
     "the default user is on: every connection that does not name a user gets its rights."),
    ("aws-elasticache-users-authenticate", cache_user(userName="wondernest_app", accessString="on ~* +@all"),
     cache_user(userName="wondernest_app", authenticationMode={"type": "no-password-required"}),
     "logs in without a password."),
    ("aws-elasticache-users-authenticate", cache_user(), cache_user(noPasswordRequired=True),
     "logs in without a password."),
    ("aws-elasticache-hardened", redis(), redis(automaticFailoverEnabled=False), "has no Multi-AZ failover."),
    ("aws-ecs-task-hardened", task(), task(readonlyRootFilesystem=False),
     "container api has a writable root filesystem."),
    ("aws-ecs-task-hardened", task(), task(privileged=True), "container api is privileged."),
    ("aws-ecs-task-hardened", task(), task(user="0"), "container api runs as root."),
    ("aws-ecs-task-hardened", task(), task(logConfiguration={"logDriver": "json-file"}),
     "container api does not log to CloudWatch."),
    (
        "aws-ecs-task-hardened",
        task(),
        task(environment=[{"name": "DB_PASSWORD", "value": "hunter2"}]),
        "container api: environment variable DB_PASSWORD carries a literal secret.",
    ),
    (
        "aws-ecs-task-hardened",
        task(),
        task(environment=[{"name": "DATABASE_URL", "value": "postgres://app:hunter2@db/app"}]),
        "container api: environment variable DATABASE_URL holds a URL with credentials.",
    ),
    ("aws-ecs-service-private", service(), service(networkConfiguration={"assignPublicIp": True}),
     "tasks get public IP addresses."),
    ("aws-ecs-service-private", service(), service(deploymentCircuitBreaker={"enable": True}),
     "has no deployment circuit breaker with rollback."),
    (
        "aws-ecs-container-insights",
        res(aws.CLUSTER, "cluster", settings=[{"name": "containerInsights", "value": "enabled"}]),
        res(aws.CLUSTER, "cluster", settings=[{"name": "containerInsights", "value": "disabled"}]),
        "has Container Insights off.",
    ),
    (
        "aws-ec2-hardened",
        res(
            aws.EC2_INSTANCE, "bastion", metadataOptions={"httpTokens": "required"}, rootBlockDevice={"encrypted": True}
        ),
        res(
            aws.EC2_INSTANCE, "bastion", metadataOptions={"httpTokens": "optional"}, rootBlockDevice={"encrypted": True}
        ),
        "allows IMDSv1 (httpTokens not required).",
    ),
    (
        "aws-ec2-hardened",
        res(
            aws.EC2_INSTANCE, "bastion", metadataOptions={"httpTokens": "required"}, rootBlockDevice={"encrypted": True}
        ),
        res(aws.EC2_INSTANCE, "bastion", metadataOptions={"httpTokens": "required"}, rootBlockDevice={}),
        "has an unencrypted root volume.",
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
        "has a public IP address.",
    ),
    ("aws-alb-hardened", alb(), alb(dropInvalidHeaderFields=False), "forwards invalid HTTP headers."),
    ("aws-alb-hardened", alb(), alb(accessLogs={"enabled": False}), "writes no access logs."),
    ("aws-alb-hardened", alb(), alb(enableDeletionProtection=False), "has no deletion protection."),
    (
        "aws-alb-https",
        res(aws.LISTENER, "http", protocol="HTTP", defaultActions=REDIRECT),
        res(aws.LISTENER, "http", protocol="HTTP", defaultActions=FORWARD),
        "serves plain HTTP instead of redirecting to HTTPS.",
    ),
    (
        "aws-alb-https",
        res(aws.LISTENER, "https", protocol="HTTPS", sslPolicy="ELBSecurityPolicy-TLS13-1-2-2021-06"),
        res(aws.LISTENER, "https", protocol="HTTPS", sslPolicy="ELBSecurityPolicy-2016-08"),
        "allows TLS below 1.2 (policy 'ELBSecurityPolicy-2016-08').",
    ),
    (
        "aws-kms-rotation",
        res(aws.KMS_KEY, "key", enableKeyRotation=True),
        res(aws.KMS_KEY, "key", enableKeyRotation=False),
        "does not rotate its key material.",
    ),
    (
        "aws-secret-customer-key",
        res(aws.SECRET, "postgres-app", kmsKeyId=LOGS_KEY),
        res(aws.SECRET, "postgres-app"),
        "is encrypted with the AWS-managed key, not a customer key.",
    ),
    (
        "aws-ecr-immutable-scanned",
        res(aws.ECR, "api-repository", imageTagMutability="IMMUTABLE", imageScanningConfiguration={"scanOnPush": True}),
        res(aws.ECR, "api-repository", imageTagMutability="MUTABLE", imageScanningConfiguration={"scanOnPush": True}),
        "allows tags to be overwritten.",
    ),
    (
        "aws-ecr-immutable-scanned",
        res(aws.ECR, "api-repository", imageTagMutability="IMMUTABLE", imageScanningConfiguration={"scanOnPush": True}),
        res(aws.ECR, "api-repository", imageTagMutability="IMMUTABLE", imageScanningConfiguration={}),
        "does not scan images on push.",
    ),
    (
        "aws-log-retention",
        res(aws.LOG_GROUP, "api-logs", retentionInDays=90, kmsKeyId=LOGS_KEY),
        res(aws.LOG_GROUP, "api-logs", kmsKeyId=LOGS_KEY),
        "keeps logs forever; the policy wants 30 or more.",
    ),
    (
        "aws-log-retention",
        res(aws.LOG_GROUP, "api-logs", retentionInDays=90, kmsKeyId=LOGS_KEY),
        res(aws.LOG_GROUP, "api-logs", retentionInDays=90),
        "is not encrypted with a customer key.",
    ),
    ("aws-rds-hardened", rds(), rds(caCertIdentifier="rds-ca-2019"),
     "uses the certificate authority 'rds-ca-2019', not one of ['rds-ca-ecc384-g1', 'rds-ca-rsa2048-g1', "
     "'rds-ca-rsa4096-g1']."),
    ("aws-elasticache-hardened", redis(), redis(transitEncryptionMode="preferred"),
     "still accepts plaintext connections (transitEncryptionMode preferred)."),
    ("aws-elasticache-hardened", redis(), redis(snapshotRetentionLimit=1), "keeps snapshots 1 day, under 7."),
    ("aws-elasticache-hardened", redis(), redis(snapshotRetentionLimit=None), "keeps snapshots never, under 7."),
    ("aws-ecs-task-hardened", task(),
     task(linuxParameters={"capabilities": {"add": ["SYS_PTRACE"]}}),
     "container api adds Linux capabilities ['SYS_PTRACE']."),
    ("aws-ecs-task-hardened", task(), task(environment=[{"name": "API_CREDS", "value": "AKIAIOSFODNN7EXAMPLE"}]),
     "container api: environment variable API_CREDS holds an AWS access key id."),
    ("aws-ecs-task-hardened", task(), task(environment=[{"name": "SETTINGS", "value": f"k={RANDOM_TOKEN}"}]),
     "container api: environment variable SETTINGS holds a random-looking token."),
    # A human-chosen password under a name no pattern knows: neither its name nor its value gives it away.
    ("aws-ecs-task-hardened", task(), task(environment=[{"name": "APP_PIN", "value": "1234"}]),
     "container api: environment variable APP_PIN is not one the platform declares non-secret: pass it by "
     "reference (`secrets`, valueFrom), or name it in the rule's `nonSecretEnvironment`."),
    ("aws-ecs-task-hardened", task(), task(environment=[{"name": "ADMIN_PHRASE", "value": "correct horse"}]),
     "container api: environment variable ADMIN_PHRASE is not one the platform declares non-secret: pass it "
     "by reference (`secrets`, valueFrom), or name it in the rule's `nonSecretEnvironment`."),
    # A path's name does not make its value safe; credentials without a user, or without a scheme.
    ("aws-ecs-task-hardened", task(), task(environment=[{"name": "REDIS_CA_FILE", "value": "AKIAIOSFODNN7EXAMPLE"}]),
     "container api: environment variable REDIS_CA_FILE holds an AWS access key id."),
    ("aws-ecs-task-hardened", task(), task(environment=[{"name": "REDIS_ADDR", "value": "redis://:hunter2@redis:6379"}]),
     "container api: environment variable REDIS_ADDR holds a URL with credentials."),
    ("aws-ecs-task-hardened", task(),
     task(environment=[{"name": "DATA_SOURCE_URI", "value": "postgres:hunter2@db:5432/app?sslmode=require"}]),
     "container api: environment variable DATA_SOURCE_URI holds credentials before a host."),
    ("aws-ecs-task-hardened", task(), task(environment=[{"name": "DATA_SOURCE_URI", "value": "db/app?password=x1"}]),
     "container api: environment variable DATA_SOURCE_URI holds a password parameter."),
    # Secrets set in a command, and flags that take one without saying so.
    ("aws-ecs-task-hardened", task(command=["sh", "-c", "exec ./app"]),
     task(command=["sh", "-c", "export DB_PASSWORD=hunter2 && exec ./app"]),
     "container api: its command sets DB_PASSWORD to a literal secret."),
    ("aws-ecs-task-hardened", task(healthCheck={"command": ["CMD-SHELL", "redis-cli ping"]}),
     task(healthCheck={"command": ["CMD-SHELL", "redis-cli -a hunter2 ping"]}),
     "container api: its healthCheck passes a literal secret to -a."),
    ("aws-ecs-task-hardened", task(command=["./app", "--apikey-file", "/run/secrets/k"]),
     task(command=["./app", "--apikey", "hunter2"]),
     "container api: its command passes a literal secret to --apikey."),
    ("aws-ecs-task-hardened", task(command=["./app", "--password", "$PW"]),
     task(command=["./app", "--password=${PW:-hunter2}"]),
     "container api: its command passes a literal secret to --password."),
    # Variables from a file nothing reads, and a secret that is no reference.
    ("aws-ecs-task-hardened", task(),
     task(environmentFiles=[{"type": "s3", "value": "arn:aws:s3:::b/app.env"}]),
     "container api takes variables from environmentFiles, which nothing here can read."),
    ("aws-ecs-task-hardened", task(), task(secrets=[{"name": "DB_PASSWORD", "value": "hunter2"}]),
     "container api: secret DB_PASSWORD is not a reference (valueFrom)."),
    ("aws-ecs-task-hardened", task(), task(environment=["DB_PASSWORD=hunter2"]),
     "container api: its environment is not a list of name and value."),
    ("aws-ecs-task-hardened", task(command=["serve", "--password-file", "/run/secrets/db"]),
     task(command=["serve", "--password", "hunter2"]),
     "container api: its command passes a literal secret to --password."),
    ("aws-ecs-task-hardened", task(healthCheck={"command": ["CMD-SHELL", "curl -f http://127.0.0.1/health"]}),
     task(healthCheck={"command": ["CMD-SHELL", "curl -f https://ops:hunter2@127.0.0.1/health"]}),
     "container api: its healthCheck holds a URL with credentials."),
    ("aws-ecs-service-private", service(), service(enableExecuteCommand=True),
     "allows ECS Exec, a shell in its running tasks."),
    ("aws-kms-key-policy", res(aws.KMS_KEY, "key", policy=SCOPED_KEY_POLICY), res(aws.KMS_KEY, "key"),
     "has no key policy of its own: AWS's default lets any IAM policy of the account use it."),
    ("aws-kms-key-policy", res(aws.KMS_KEY, "key", policy=SCOPED_KEY_POLICY),
     res(aws.KMS_KEY, "key", policy=doc(ROOT_ADMIN)),
     "statement 'AccountAdministers' lets every identity of the account use the key (kms:Encrypt, "
     "kms:Decrypt, kms:ReEncryptFrom and more) as far as IAM allows: AWS's default key policy. Grant use "
     "through named services (kms:ViaService) or to named roles."),
    ("aws-kms-key-policy", res(aws.KMS_KEY, "key", policy=SCOPED_KEY_POLICY),
     res(aws.KMS_KEY, "key", policy=doc(KEY_ADMIN, {**KEY_ADMIN, "Sid": "More", "Action": "kms:Create*"})),
     "statement 'More' lets every identity of the account use the key (kms:CreateGrant) as far as IAM allows: "
     "AWS's default key policy. Grant use through named services (kms:ViaService) or to named roles."),
    ("aws-kms-key-policy", res(aws.KMS_KEY, "key", policy=SCOPED_KEY_POLICY),
     res(aws.KMS_KEY, "key", policy=doc(KEY_ADMIN, {**THROUGH_SERVICES, "Condition": {"StringLike": {
         "kms:ViaService": "*.amazonaws.com"}}})),
     "statement 'UseThroughServices' lets every identity of the account use the key (kms:Encrypt, "
     "kms:Decrypt, kms:ReEncryptFrom and more) as far as IAM allows: AWS's default key policy. Grant use "
     "through named services (kms:ViaService) or to named roles."),
    ("aws-kms-key-policy", res(aws.KMS_KEY, "key", policy=SCOPED_KEY_POLICY),
     res(aws.KMS_KEY, "key", policy=doc(KEY_ADMIN, {**THROUGH_SERVICES, "Condition": {"StringEqualsIfExists": {
         "kms:ViaService": "s3.eu-west-1.amazonaws.com"}}})),
     "statement 'UseThroughServices' lets every identity of the account use the key (kms:Encrypt, "
     "kms:Decrypt, kms:ReEncryptFrom and more) as far as IAM allows: AWS's default key policy. Grant use "
     "through named services (kms:ViaService) or to named roles."),
    ("aws-kms-key-policy", res(aws.KMS_KEY, "key", policy=SCOPED_KEY_POLICY),
     res(aws.KMS_KEY, "key", policy=doc(KEY_ADMIN, {**THROUGH_SERVICES, "Principal": "*", "Condition": {
         "StringEquals": {"kms:ViaService": "s3.eu-west-1.amazonaws.com"}}})),
     "statement 'UseThroughServices' lets anyone use the key through a service, with no kms:CallerAccount "
     "pinned."),
    ("aws-kms-key-policy", res(aws.KMS_KEY, "key", policy=SCOPED_KEY_POLICY),
     res(aws.KMS_KEY, "key", policy=doc(KEY_ADMIN, {**LOGS_USE, "Condition": {}})),
     "statement 'CloudWatchLogsEncrypts' lets logs.eu-west-1.amazonaws.com use the key for any account: pin "
     "aws:SourceAccount, aws:SourceArn or the encryption context to this account's."),
    # Another account's root, through a service, or pinned as the caller.
    ("aws-kms-key-policy", res(aws.KMS_KEY, "key", policy=SCOPED_KEY_POLICY),
     res(aws.KMS_KEY, "key", policy=doc(KEY_ADMIN, {**THROUGH_SERVICES,
                                                    "Principal": {"AWS": "arn:aws:iam::999999999999:root"}})),
     "names more than one account (123456789012, 999999999999): a key serves its own account only."),
    ("aws-kms-key-policy", res(aws.KMS_KEY, "key", policy=SCOPED_KEY_POLICY),
     res(aws.KMS_KEY, "key", policy=doc(KEY_ADMIN, {**THROUGH_SERVICES, "Principal": "*", "Condition": {
         "StringEquals": {"kms:ViaService": "s3.eu-west-1.amazonaws.com", "kms:CallerAccount": "999999999999"}}})),
     "names more than one account (123456789012, 999999999999): a key serves its own account only."),
    # A policy attached by its own resource is judged as the key's would be.
    ("aws-kms-key-policy", res(KEY_POLICY_TYPE, "key-policy", policy=SCOPED_KEY_POLICY),
     res(KEY_POLICY_TYPE, "key-policy", policy=doc(ROOT_ADMIN)),
     "statement 'AccountAdministers' lets every identity of the account use the key (kms:Encrypt, "
     "kms:Decrypt, kms:ReEncryptFrom and more) as far as IAM allows: AWS's default key policy. Grant use "
     "through named services (kms:ViaService) or to named roles."),
    ("aws-kms-key-policy", res(aws.KMS_KEY, "key", policy=doc(KEY_ADMIN, {
         "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:role/backups"}, "Action": "kms:Decrypt",
         "Resource": "*"})),
     res(aws.KMS_KEY, "key", policy=doc(KEY_ADMIN, {"Effect": "Allow", "Principal": {"AWS": "123456789012"},
                                                    "Action": "kms:Decrypt", "Resource": "*"})),
     "a statement lets every identity of the account use the key (kms:Decrypt) as far as IAM allows: AWS's "
     "default key policy. Grant use through named services (kms:ViaService) or to named roles."),
    ("aws-encryption-customer-key", redis(kmsKeyId=LOGS_KEY), redis(), "is encrypted at rest with no customer key."),
    ("aws-encryption-customer-key", res(aws.SNS_TOPIC, "alerts", kmsMasterKeyId=LOGS_KEY),
     res(aws.SNS_TOPIC, "alerts", kmsMasterKeyId="alias/aws/sns"), "is encrypted at rest with an AWS-managed key."),
    ("aws-encryption-customer-key", res(aws.BACKUP_VAULT, "vault", kmsKeyArn=LOGS_KEY),
     res(aws.BACKUP_VAULT, "vault"), "is encrypted at rest with no customer key."),
    ("aws-encryption-customer-key", res(aws.SQS_QUEUE, "jobs", kmsMasterKeyId=LOGS_KEY),
     res(aws.SQS_QUEUE, "jobs", sqsManagedSseEnabled=True), "is encrypted at rest with no customer key."),
    ("aws-encryption-customer-key", res(aws.SQS_QUEUE, "jobs", kmsMasterKeyId=LOGS_KEY),
     res(aws.SQS_QUEUE, "jobs", kmsMasterKeyId="alias/aws/sqs"), "is encrypted at rest with an AWS-managed key."),
    ("aws-subnets-no-automatic-addresses", res(SUBNET, "public-0", mapPublicIpOnLaunch=False),
     res(SUBNET, "public-0", mapPublicIpOnLaunch=True), "gives every instance launched in it a public IPv4 address."),
    ("aws-subnets-no-automatic-addresses", res(SUBNET, "public-0"),
     res(SUBNET, "public-0", assignIpv6AddressOnCreation=True),
     "gives every network interface in it an IPv6 address."),
    ("aws-policies-least-privilege", res(aws.KMS_KEY, "key", policy=doc(ROOT_ADMIN)),
     res(aws.KMS_KEY, "key", policy=doc(ROOT_ADMIN, {"Effect": "Allow", "Principal": "*", "Action": "kms:Decrypt",
                                                     "Resource": "*"})),
     "a statement allows anyone (Principal '*') with no condition on account or source."),
    ("aws-policies-least-privilege",
     res(aws.KMS_KEY, "key", policy=doc({"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:Decrypt",
                                         "Resource": "*", "Condition": ORG_ONLY})),
     res(aws.KMS_KEY, "key", policy=doc({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:role/app"},
                                         "Action": "kms:*", "Resource": "*"})),
     "a statement allows every kms action ('kms:*')."),
    ("aws-policies-least-privilege", res(ROLE_POLICY, "task-policy", policy=doc(READ_DUMPS)),
     res(ROLE_POLICY, "task-policy", policy=doc({**READ_DUMPS, "Action": "s3:*"})),
     "a statement allows every s3 action ('s3:*')."),
    ("aws-policies-least-privilege", res(ROLE_POLICY, "task-policy", policy=doc(READ_DUMPS)),
     res(ROLE_POLICY, "task-policy", policy=doc({**READ_DUMPS, "Action": "*"})),
     "a statement allows every action ('*')."),
    ("aws-policies-least-privilege", res(ROLE_POLICY, "task-policy", policy=doc(READ_DUMPS)),
     res(ROLE_POLICY, "task-policy", policy=doc({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"})),
     "a statement allows by NotAction, which grants everything not listed."),
    ("aws-policies-least-privilege", res(aws.BUCKET_POLICY, "dumps", policy=doc(
        {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "*",
         "Condition": {"Bool": {"aws:SecureTransport": "false"}}})),
     res(aws.BUCKET_POLICY, "dumps", policy=doc({**READ_DUMPS, "Principal": {"AWS": ["*"]}})),
     "a statement allows anyone (Principal '*') with no condition on account or source."),
    ("aws-policies-least-privilege",
     res(ROLE, "task-role", managedPolicyArns=["arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"]),
     res(ROLE, "task-role", managedPolicyArns=["arn:aws:iam::aws:policy/AdministratorAccess"]),
     "attaches AdministratorAccess, which allows every action."),
    ("aws-policies-least-privilege",
     res(ATTACHMENT, "role-0", policyArn="arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"),
     res(ATTACHMENT, "role-0", policyArn="arn:aws:iam::aws:policy/PowerUserAccess"),
     "attaches PowerUserAccess, which allows every action."),
    (
        "aws-provider-default-tags",
        res(aws.AWS_PROVIDER, "aws", defaultTags=json.dumps({"tags": TAGS})),
        res(aws.AWS_PROVIDER, "aws", defaultTags=json.dumps({"tags": {"app": "wondernest"}})),
        "sets no default tags ['environment', 'owner', 'cost-center'].",
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("rule_id", "good", "bad", "problem"), AWS_RESOURCE_CASES, ids=[c[0] for c in AWS_RESOURCE_CASES]
)
def test_each_aws_resource_rule_both_ways(rule_id: str, good: Resource, bad: Resource, problem: str) -> None:
    rule = BY_ID[rule_id]
    assert rule.run_resource(good, {}) == []
    assert rule.run_resource(bad, {}) == [Violation(f"{bad.name}: {problem} Fix: {rule.remediation}", bad.urn)]


S3_ALL = doc({**READ_DUMPS, "Action": "s3:*"})
ADMIN = "arn:aws:iam::aws:policy/AdministratorAccess"
PERMISSION = policy_documents.LAMBDA_PERMISSION
INVOKE: dict[str, Any] = {"principal": "*", "action": "lambda:InvokeFunction"}
NAMELESS = {k: v for k, v in container(user="0").items() if k != "name"}

# Each check at its edges, the problems it reports exact: (rule, resource, problems).
AWS_EDGES: list[tuple[str, Resource, list[str]]] = [
    ("aws-policies-least-privilege", res(ROLE, "r", inlinePolicies=[{"name": "p", "policy": S3_ALL}]),
     ["a statement allows every s3 action ('s3:*')."]),
    ("aws-policies-least-privilege", res(ROLE, "r", inlinePolicies=[None, {"name": "p", "policy": doc(READ_DUMPS)}]),
     []),
    ("aws-policies-least-privilege", res(ROLE, "r", inlinePolicies=UNKNOWN, managedPolicyArns=UNKNOWN), []),
    ("aws-policies-least-privilege",
     res(ROLE, "r", inlinePolicies=[{"name": "p", "policy": S3_ALL}], managedPolicyArns=[ADMIN]),
     ["a statement allows every s3 action ('s3:*').", "attaches AdministratorAccess, which allows every action."]),
    ("aws-policies-least-privilege", res(PERMISSION, "p", **INVOKE, sourceArn="arn:aws:events:x"), []),
    ("aws-policies-least-privilege", res(PERMISSION, "p", **INVOKE, principalOrgId="o-a1b2c3d4e5"), []),
    ("aws-policies-least-privilege", res(PERMISSION, "p", **{**INVOKE, "principal": "events.amazonaws.com"}), []),
    ("aws-policies-least-privilege", res(PERMISSION, "p", **INVOKE),
     ["lets anyone (principal '*') invoke the function, with no source account, ARN or organisation."]),
    ("aws-ecs-task-hardened", res(aws.TASK_DEFINITION, "t", containerDefinitions=json.dumps({"name": "api"})),
     ["its containerDefinitions are not a list of containers."]),
    ("aws-ecs-task-hardened", res(aws.TASK_DEFINITION, "t", containerDefinitions=json.dumps([container(), "api"])),
     ["its containerDefinitions are not a list of containers."]),
    ("aws-ecs-task-hardened", res(aws.TASK_DEFINITION, "t", containerDefinitions=json.dumps([NAMELESS])),
     ["container ? runs as root."]),
    ("aws-ecs-task-hardened", task(user="root:root"), ["container api runs as root."]),
    ("aws-ecs-task-hardened", task(user="0:1001"), ["container api runs as root."]),
    ("aws-ecs-task-hardened", task(user="1001:0"), []),
    ("aws-ecs-task-hardened", task(user=None), ["container api runs as root."]),
    ("aws-ecs-task-hardened", task(environment=[{"name": "DB_HOST"}, {"name": "DB_PORT", "value": "5432"}]), []),
    ("aws-ecs-task-hardened", task(environment=[{"value": "x"}]),
     ["container api: environment variable  is not one the platform declares non-secret: pass it by reference "
      "(`secrets`, valueFrom), or name it in the rule's `nonSecretEnvironment`."]),
    ("aws-ecs-task-hardened", task(entryPoint=["sh", "-c", "export DB_PASSWORD=hunter2 && exec ./app"]),
     ["container api: its entryPoint sets DB_PASSWORD to a literal secret."]),
    ("aws-ecs-task-hardened", task(secrets=[{"name": "DB_PASSWORD", "valueFrom": "arn:x", "value": "hunter2"},
                                            {"name": "JWT_SECRET"}]),
     ["container api: secret DB_PASSWORD is not a reference (valueFrom).",
      "container api: secret JWT_SECRET is not a reference (valueFrom)."]),
    ("aws-elasticache-hardened", res(aws.SERVERLESS_CACHE, "c", engine="memcached", snapshotRetentionLimit=7), []),
    ("aws-elasticache-hardened", res(aws.SERVERLESS_CACHE, "c", engine="valkey", snapshotRetentionLimit=7),
     ["requires no authentication."]),
    ("aws-elasticache-hardened", redis(snapshotRetentionLimit=UNKNOWN), []),
    ("aws-elasticache-hardened", redis(snapshotRetentionLimit=0), ["keeps snapshots never, under 7."]),
    ("aws-policies-least-privilege", res(ROLE_POLICY, "p", policy=doc({**READ_DUMPS, "NotPrincipal": {"AWS": "x"}})),
     ["a statement allows by NotPrincipal, which grants everything not listed."]),
    ("aws-policies-least-privilege",
     res(ROLE_POLICY, "p", policy=doc({"Effect": "Allow", "Action": "s3:GetObject", "NotResource": "arn:x"})),
     ["a statement allows by NotResource, which grants everything not listed."]),
    ("postgres-role-not-superuser", res(policies_platform.ROLE, "role", superuser=True), ["is a superuser."]),
    ("postgres-role-not-superuser", res(policies_platform.ROLE, "role", superuser=UNKNOWN, member_of=UNKNOWN), []),
    ("aws-elasticache-hardened", res(aws.CACHE_CLUSTER, "c"),
     ["is a cache cluster outside a replication group: no encryption at rest, no failover."]),
    ("aws-elasticache-hardened", res(aws.CACHE_CLUSTER, "c", replicationGroupId="redis"), []),
    ("aws-elasticache-hardened",
     res(aws.SERVERLESS_CACHE, "c", engine="valkey", userGroupId="g", snapshotRetentionLimit=1),
     ["keeps snapshots 1 day, under 7."]),
    ("aws-policies-least-privilege", res(ROLE_POLICY, "p", policy="{not json"), ["is not a JSON policy document."]),
    ("aws-policies-least-privilege", res(ROLE_POLICY, "p", policy=doc({**READ_DUMPS, "Action": "s3:*"},
                                                                      {**READ_DUMPS, "Action": "*"})),
     ["a statement allows every s3 action ('s3:*').", "a statement allows every action ('*')."]),
    ("aws-policies-least-privilege",
     res(ROLE, "r", assumeRolePolicy=doc({"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                                          "Action": "sts:AssumeRole"}),
         inlinePolicies=[{"name": "p", "policy": S3_ALL}], managedPolicyArns=[ADMIN]),
     ["trusts ecs-tasks.amazonaws.com for any account: pin aws:SourceAccount (or aws:SourceArn) to this one.",
      "a statement allows every s3 action ('s3:*').", "attaches AdministratorAccess, which allows every action."]),
    ("aws-ecs-task-hardened", task(environment=[{"name": "DB_PASSWORD"}]),
     ["container api: environment variable DB_PASSWORD is not one the platform declares non-secret: pass it by "
      "reference (`secrets`, valueFrom), or name it in the rule's `nonSecretEnvironment`."]),
    ("aws-elasticache-hardened", redis(snapshotRetentionLimit=2), ["keeps snapshots 2 days, under 7."]),
    ("aws-elasticache-hardened", redis(snapshotRetentionLimit="a week"), ["keeps snapshots 'a week' days, under 7."]),
    ("aws-rds-hardened", rds(backupRetentionPeriod=None), ["keeps backups 0 days, under 14."]),
    ("aws-ecs-container-insights",
     res(aws.CLUSTER, "cluster", settings=[{"name": "containerInsights", "value": "enhanced"}]), []),
    ("aws-ecr-immutable-scanned", res(aws.ECR, "api-repository", imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
                                      imageScanningConfiguration={"scanOnPush": True}), []),
    # A redirect, but to plain HTTP.
    ("aws-alb-https", res(aws.LISTENER, "http", protocol="HTTP",
                          defaultActions=[{"type": "redirect", "redirect": {"protocol": "HTTP"}}]),
     ["serves plain HTTP instead of redirecting to HTTPS."]),
    # Default tags not known yet (a preview) are judged at `up`.
    ("aws-provider-default-tags", res(aws.AWS_PROVIDER, "aws", defaultTags={"tags": UNKNOWN}), []),
    ("postgres-role-connection-limit", res(policies_platform.ROLE, "role", connection_limit=1), []),
]  # fmt: skip


@pytest.mark.parametrize(("rule_id", "resource", "problems"), AWS_EDGES, ids=[c[0] for c in AWS_EDGES])
def test_each_aws_check_at_its_edges(rule_id: str, resource: Resource, problems: list[str]) -> None:
    rule = BY_ID[rule_id]
    assert rule.run_resource(resource, {}) == [
        Violation(f"{resource.name}: {p} Fix: {rule.remediation}", resource.urn) for p in problems
    ]


def test_a_secret_named_with_its_reason_may_stay_unrotated() -> None:
    rule = BY_ID["aws-secrets-rotate"]
    reason = {"mail-api-key": "issued by the mail provider's console, which has no API to rotate it"}
    assert rule.run_stack([API_KEY], {"unrotatedSecrets": reason}) == []
    # A name without a reason, or the default list (the platform's own sign-in only), does not excuse it.
    for config in ({"unrotatedSecrets": {"mail-api-key": " "}}, {}):
        [found] = rule.run_stack([API_KEY], config)
        assert "mail-api-key: nothing rotates this secret" in found.message

    def secret(resource_name: str, secret_name: str) -> Resource:
        return dataclasses.replace(res(aws.SECRET, resource_name), props={"kmsKeyId": "k", "name": secret_name})

    verify_login = secret("verify-login", "wondernest/prod/verify-login")
    assert rule.run_stack([verify_login], {}) == []
    assert rule.run_stack([verify_login], {"unrotatedSecrets": {}}) != []
    # A resource merely called so, holding another secret, is not excused.
    disguised = secret("verify-login", "wondernest/prod/stripe-api-key")
    assert rule.run_stack([disguised], {}) != []
    # A name without a path, and one not known yet (a preview), excuse it too.
    assert rule.run_stack([secret("verify-login", "verify-login")], {}) == []
    assert rule.run_stack([secret("verify-login", UNKNOWN)], {}) == []


def test_the_floors_are_the_configs_too() -> None:
    from components.config import ConfigError
    from tests.harness import evaluate
    from tests.test_stack_prod import CERT, prod_config

    for key in ("cacheSnapshotRetentionDays", "backupVaultLockMinDays"):
        with pytest.raises(ConfigError, match=f"aws.{key}"):
            evaluate(prod_config({"domainName": "api.example.com", "certificateArn": CERT, key: 6}), stack="prod")
    assert BY_ID["aws-elasticache-hardened"].run_resource(redis(snapshotRetentionLimit=3),
                                                          {"minSnapshotRetentionDays": 3}) == []  # fmt: skip
    assert BY_ID["aws-backup-vault-locked"].run_stack([VAULT, vault_lock(3)], {"minLockDays": 3}) == []


def test_policy_config_relaxes_only_what_it_names() -> None:
    single_az = rds(multiAz=False)
    assert BY_ID["aws-rds-hardened"].run_resource(single_az, {"allowSingleAz": True}) == []
    short = rds(backupRetentionPeriod=7)
    assert BY_ID["aws-rds-hardened"].run_resource(short, {"allowSingleAz": True, "minBackupRetentionDays": 7}) == []
    plain = res(aws.LISTENER, "http", protocol="HTTP", defaultActions=FORWARD)
    assert BY_ID["aws-alb-https"].run_resource(plain, {"allowPlainHttp": True}) == []


def test_an_apps_own_plain_variables_are_declared_in_the_rules_config() -> None:
    rule = BY_ID["aws-ecs-task-hardened"]
    plain = task(environment=[{"name": "FEATURE_FLAGS", "value": "beta,dark-mode"}])
    assert len(rule.run_resource(plain, {})) == 1
    assert rule.run_resource(plain, {"nonSecretEnvironment": ["FEATURE_FLAGS"]}) == []
    # A declared name does not make a secret value plain.
    leaked = task(environment=[{"name": "FEATURE_FLAGS", "value": "AKIAIOSFODNN7EXAMPLE"}])
    [found] = rule.run_resource(leaked, {"nonSecretEnvironment": ["FEATURE_FLAGS"]})
    assert "FEATURE_FLAGS holds an AWS access key id" in found.message


def test_every_plain_variable_of_the_prod_tasks_is_one_the_platform_declares() -> None:
    """The list is the platform's: a variable added to a task without adding it here fails this test."""
    from tests.harness import evaluate
    from tests.test_stack_prod import CERT, TASK_DEF, prod_config

    ev = evaluate(prod_config({"domainName": "api.example.com", "certificateArn": CERT}), stack="prod")
    names = {
        variable["name"]
        for task_definition in ev.of_type(TASK_DEF)
        for c in json.loads(task_definition.inputs["containerDefinitions"])
        for variable in c.get("environment") or []
    }
    assert names and names <= secret_values.PLATFORM_ENVIRONMENT, names - secret_values.PLATFORM_ENVIRONMENT


def test_another_apps_task_passes_once_the_stacks_config_declares_its_plain_names() -> None:
    """An app's own plain settings are refused until the stack's policy config
    names them; its secrets, by reference, need nothing."""
    from tests.test_app_contract import notes_prod
    from tests.test_stack_prod import TASK_DEF

    ev = evaluate_once(notes_prod(), stack="prod")
    [api_task] = [r for r in as_resources(ev, "prod") if r.type == TASK_DEF and r.name == "api-task"]
    [definition] = json.loads(api_task.props["containerDefinitions"])
    plain = sorted(v["name"] for v in definition["environment"] if v["name"] not in secret_values.PLATFORM_ENVIRONMENT)
    assert plain and all(name.startswith("NOTES_") for name in plain)
    rule = BY_ID["aws-ecs-task-hardened"]
    found = rule.run_resource(api_task, {})
    assert {name for name in plain if any(name in v.message for v in found)} == set(plain)
    assert rule.run_resource(api_task, {"nonSecretEnvironment": plain}) == []


PUBLIC_READ = {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}


@pytest.mark.parametrize(
    "condition",
    [
        {"StringEquals": {"aws:SourceAccount": "123456789012"}},
        {"StringEqualsIgnoreCase": {"aws:PrincipalOrgID": "o-a1b2c3d4e5"}},
        {"StringEquals": {"aws:SourceVpce": ["vpce-0a1b2c3d4e5f60718"]}},
        {"StringEquals": {"aws:SourceVpc": "vpc-0a1b2c3d"}},
        {"ArnLike": {"aws:SourceArn": "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:*"}},
        {"ArnEquals": {"aws:PrincipalArn": "arn:aws:iam::123456789012:role/reader"}},
        {"ArnEquals": {"aws:SourceArn": "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:*"}},
        {"StringLike": {"aws:SourceAccount": "123456789012"}},
    ],
)
def test_a_condition_that_pins_an_account_organisation_vpc_or_source_scopes_anyone(
    condition: dict[str, Any],
) -> None:
    policy = res(aws.BUCKET_POLICY, "b", policy=doc({**PUBLIC_READ, "Condition": condition}))
    assert BY_ID["aws-policies-least-privilege"].run_resource(policy, {}) == []


@pytest.mark.parametrize(
    "condition",
    [
        # Naming a key is not pinning it.
        {"StringEqualsIfExists": {"aws:SourceVpce": "vpce-0a1b2c3d4e5f60718"}},
        {"StringLike": {"aws:SourceAccount": "*"}},
        {"StringLike": {"aws:PrincipalOrgID": "o-*"}},
        {"Null": {"aws:SourceVpce": "false"}},
        {"StringNotEquals": {"aws:SourceAccount": "123456789012"}},
        {"ArnNotLike": {"aws:SourceArn": "arn:aws:sns:eu-west-1:123456789012:topic"}},
        {"ForAllValues:StringEquals": {"aws:PrincipalOrgID": "o-a1b2c3d4e5"}},
        {"ArnLike": {"aws:SourceArn": "arn:aws:cloudwatch:eu-west-1:*:alarm:*"}},
        {"StringEquals": {"aws:SourceAccount": ""}},
        {"StringEquals": {"aws:SourceAccount": []}},
        # The owner's own account in its own resource's policy: true whoever calls.
        {"StringEquals": {"aws:ResourceAccount": "123456789012"}},
        # StringLike's `*` crosses colons: a function named for the account, in another one, matches.
        {"StringLike": {"aws:SourceArn": "arn:aws:lambda:*:123456789012:*"}},
        # A condition on something else entirely.
        {"Bool": {"aws:SecureTransport": "true"}},
    ],
    ids=lambda c: json.dumps(c),
)
def test_a_condition_that_only_names_a_scoping_key_does_not_scope_anyone(condition: dict[str, Any]) -> None:
    policy = res(aws.BUCKET_POLICY, "b", policy=doc({**PUBLIC_READ, "Condition": condition}))
    [found] = BY_ID["aws-policies-least-privilege"].run_resource(policy, {})
    assert "allows anyone (Principal '*')" in found.message


@pytest.mark.parametrize("action", ["*", "**", "*:*", "?*", "?*:*", "*:?*", "s3:**", "s3:?*", "s3:*"])
def test_wildcards_of_any_spelling_are_every_action(action: str) -> None:
    policy = res(ROLE_POLICY, "task-policy", policy=doc({**READ_DUMPS, "Action": action}))
    [found] = BY_ID["aws-policies-least-privilege"].run_resource(policy, {})
    assert "allows every" in found.message


@pytest.mark.parametrize(
    ("typ", "key"),
    [
        (policy_documents.KEY_POLICY, "policy"),
        ("aws:sqs/queue:Queue", "policy"),
        ("aws:sns/topic:Topic", "policy"),
        ("aws:backup/vaultPolicy:VaultPolicy", "policy"),
        ("aws:secretsmanager/secret:Secret", "policy"),
        ("aws:opensearch/domainPolicy:DomainPolicy", "accessPolicies"),
    ],
)
def test_every_resource_with_a_policy_document_is_judged(typ: str, key: str) -> None:
    public = {"Effect": "allow", "Principal": "*", "Action": "sqs:SendMessage", "Resource": "*"}
    resource = dataclasses.replace(res(typ, "x"), props={key: doc(public)})
    [found] = BY_ID["aws-policies-least-privilege"].run_resource(resource, {})
    assert "allows anyone" in found.message


def test_a_function_anyone_may_invoke_is_refused() -> None:
    rule = BY_ID["aws-policies-least-privilege"]
    permission = policy_documents.LAMBDA_PERMISSION
    [found] = rule.run_resource(res(permission, "p", principal="*", action="lambda:InvokeFunction"), {})
    assert "lets anyone" in found.message
    scoped = res(permission, "p", principal="*", action="lambda:InvokeFunction", sourceAccount="123456789012")
    assert rule.run_resource(scoped, {}) == []


def test_vault_locks_and_snapshot_counts_as_the_provider_takes_them() -> None:
    locks = BY_ID["aws-backup-vault-locked"]
    named = dataclasses.replace(VAULT, props={**VAULT.props, "name": "wondernest-prod-vault"})
    by_name = res(aws.VAULT_LOCK, "lock", backupVaultName="wondernest-prod-vault", minRetentionDays="30")
    assert locks.run_stack([named, by_name], {}) == []
    nan = link(res(aws.VAULT_LOCK, "lock", backupVaultName="v", minRetentionDays=float("nan")), backupVaultName=VAULT)
    [found] = locks.run_stack([VAULT, nan], {})
    assert "under 7" in found.message
    elasticache = BY_ID["aws-elasticache-hardened"]
    assert elasticache.run_resource(redis(snapshotRetentionLimit="35"), {}) == []
    assert len(elasticache.run_resource(redis(snapshotRetentionLimit=float("nan")), {})) == 1


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
    out: list[Resource] = []
    for typ, props in parts.items():
        change = broken.get(typ.rsplit(":", 1)[1])
        if change == "absent":
            continue
        part = res(typ, "dumps", **{**props, **(change or {})})
        # As the engine records it: the configuration's `bucket` came from the bucket.
        out.append(part if typ == aws.BUCKET else link(part, bucket=out[0]))
    return out


def unlinked(resources: list[Resource]) -> list[Resource]:
    return [dataclasses.replace(r, depends_on={}) for r in resources]


def ingress(name: str, port: int, cidr: str = "0.0.0.0/0", group: str = "sg-alb") -> Resource:
    return res(aws.SG_INGRESS, name, cidrIpv4=cidr, fromPort=port, toPort=port, securityGroupId=group)


N = aws_network
VPC = res(N.VPC, "vpc")
IGW = link(res(N.INTERNET_GATEWAY, "igw"), vpcId=VPC)
PUBLIC_RT = link(res(N.ROUTE_TABLE, "public-rt", routes=[{"cidrBlock": "0.0.0.0/0", "gatewayId": "igw-1"}]),
                 routes=IGW)  # fmt: skip
ISOLATED_RT = res(N.ROUTE_TABLE, "isolated-rt")
PUBLIC_SUBNET, ISOLATED_SUBNET = res(N.SUBNET, "public-0"), res(N.SUBNET, "isolated-0")
NETWORK = [
    VPC, IGW, PUBLIC_RT, ISOLATED_RT, PUBLIC_SUBNET, ISOLATED_SUBNET,
    link(res(N.ROUTE_TABLE_ASSOCIATION, "public-0"), subnetId=PUBLIC_SUBNET, routeTableId=PUBLIC_RT),
    link(res(N.ROUTE_TABLE_ASSOCIATION, "isolated-0"), subnetId=ISOLATED_SUBNET, routeTableId=ISOLATED_RT),
]  # fmt: skip


def public_with(*routes: Resource, table_routes: Any = None) -> set[str]:
    """Whether the one subnet is public, its table holding `table_routes` inline
    and `routes` (Route resources) pointing at it."""
    table = res(N.ROUTE_TABLE, "rt", routes=table_routes) if table_routes is not None else res(N.ROUTE_TABLE, "rt")
    if isinstance(table_routes, list) and any(r.get("gatewayId") == "linked" for r in table_routes):
        table = link(table, routes=IGW)
    subnet = res(N.SUBNET, "s")
    association = link(res(N.ROUTE_TABLE_ASSOCIATION, "s"), subnetId=subnet, routeTableId=table)
    linked = [link(r, routeTableId=table, **({"gatewayId": IGW} if r.get("gatewayId") == "linked" else {}))
              for r in routes]  # fmt: skip
    return N.public_subnets([VPC, IGW, table, subnet, association, *linked])


def route(**props: Any) -> Resource:
    return res(N.ROUTE, "r", **props)


@pytest.mark.parametrize(
    ("table_routes", "routes", "public"),
    [
        ([{"cidrBlock": "0.0.0.0/0", "gatewayId": "igw-1"}], [], True),
        ([{"ipv6CidrBlock": "::/0", "gatewayId": "igw-1"}], [], True),
        ([{"cidrBlock": "0.0.0.0/0", "gatewayId": "linked"}], [], True),
        ([{"cidrBlock": "0.0.0.0/0", "gatewayId": "vgw-1"}], [], False),
        ([{"cidrBlock": "0.0.0.0/0", "natGatewayId": "nat-1"}], [], False),
        ([{"cidrBlock": "10.0.0.0/8", "gatewayId": "igw-1"}], [], False),
        ([{"cidrBlock": UNKNOWN, "gatewayId": "igw-1"}], [], True),
        (UNKNOWN, [], False),
        ([], [route(destinationCidrBlock="0.0.0.0/0", gatewayId="igw-1")], True),
        ([], [route(destinationIpv6CidrBlock="::/0", gatewayId="igw-1")], True),
        ([], [route(destinationCidrBlock="0.0.0.0/0", gatewayId="linked")], True),
        ([], [route(destinationCidrBlock="0.0.0.0/0", gatewayId="vgw-1")], False),
        ([], [route(destinationCidrBlock="0.0.0.0/0", natGatewayId="nat-1")], False),
        ([], [route(destinationIpv6CidrBlock="2001:db8::/32", gatewayId="igw-1")], False),
    ],
)
def test_a_subnet_is_public_when_its_table_routes_the_internet_to_an_internet_gateway(
    table_routes: Any, routes: list[Resource], public: bool
) -> None:
    assert public_with(*routes, table_routes=table_routes) == ({res(N.SUBNET, "s").urn} if public else set())


def test_a_route_of_another_table_makes_no_subnet_public() -> None:
    other = res(N.ROUTE_TABLE, "other")
    stray = link(route(destinationCidrBlock="0.0.0.0/0", gatewayId="igw-1"), routeTableId=other)
    subnet = res(N.SUBNET, "s")
    table = res(N.ROUTE_TABLE, "rt")
    association = link(res(N.ROUTE_TABLE_ASSOCIATION, "s"), subnetId=subnet, routeTableId=table)
    assert N.public_subnets([VPC, IGW, table, other, subnet, association, stray]) == set()
    assert N.public_subnets([res(N.SUBNET, "s", mapPublicIpOnLaunch=True)]) == {subnet.urn}


def subnet_group(typ: str, subnet: Resource) -> Resource:
    return link(res(typ, "subnets", subnetIds=["subnet-1"]), subnetIds=subnet)


FLOW_LOG = link(res(N.FLOW_LOG, "flow-log", trafficType="ALL"), vpcId=VPC)
DEFAULT_SG = link(res(N.DEFAULT_SG, "default-sg", ingress=[], egress=[]), vpcId=VPC)
FORCE_TLS = [{"name": "rds.force_ssl", "value": "1"}, {"name": "ssl_min_protocol_version", "value": "TLSv1.2"}]


def rds_with(parameters: list[Any] | None) -> list[Resource]:
    group = res(aws.RDS_PARAMETER_GROUP, "parameters", parameters=parameters or [])
    instance = rds()
    return [group, link(instance, parameterGroupName=group) if parameters is not None else instance]


def managed(name: str, override: str = "none") -> dict[str, Any]:
    return {"name": name, "overrideAction": {override: {}},
            "statement": {"managedRuleGroupStatement": {"name": name, "vendorName": "AWS"}}}  # fmt: skip


RATE = {"name": "rate", "action": {"block": {}}, "statement": {"rateBasedStatement": {"limit": 2000}}}
ACL_RULES = [RATE, managed("AWSManagedRulesCommonRuleSet"), managed("AWSManagedRulesKnownBadInputsRuleSet")]


def waf(rules: list[dict[str, Any]] = ACL_RULES, associated: bool = True, logged: bool = True) -> list[Resource]:
    lb = alb(internal=False)
    acl = res(aws.WEB_ACL, "web-acl", rules=rules)
    out = [lb, acl]
    if associated:
        out.append(link(res(aws.WEB_ACL_ASSOCIATION, "web-acl-association"), resourceArn=lb, webAclArn=acl))
    if logged:
        out.append(link(res(aws.WEB_ACL_LOGGING, "web-acl-logging"), resourceArn=acl))
    return out


QUEUE_DLQ = dataclasses.replace(res(aws.SQS_QUEUE, "jobs-dlq"), props={"name": "wondernest-prod-jobs-dlq"})
DLQ_ARN = "arn:aws:sqs:eu-west-1:1:wondernest-prod-jobs-dlq"


def queues(count: Any = 5, *, linked: bool = True) -> list[Resource]:
    """A queue and its dead-letter queue, related as the engine records them
    (or, `linked=False`, by the dead-letter queue's name in the policy only)."""
    return [QUEUE_DLQ, jobs_queue(DLQ_ARN, to=QUEUE_DLQ if linked else None, count=count)]


def jobs_queue(target: str, *, to: Resource | None = None, count: Any = 5) -> Resource:
    """The jobs queue with a redrive policy naming `target`, the engine recording it as taken from `to`."""
    policy = {"deadLetterTargetArn": target, "maxReceiveCount": count}
    queue = res(aws.SQS_QUEUE, "jobs", redrivePolicy=json.dumps(policy))
    return link(queue, redrivePolicy=to) if to is not None else queue


TASK_ROLE_ARN = "arn:aws:iam::123456789012:role/api-task-role"
JOBS_ARN = "arn:aws:sqs:eu-west-1:123456789012:wondernest-prod-jobs"
UPLOADS_ARN = "arn:aws:s3:::wondernest-prod-uploads-123456789012"
KEY_ARN = "arn:aws:kms:eu-west-1:123456789012:key/0c1d"
SCOPED: list[dict[str, Any]] = [
    {"Effect": "Allow", "Action": ["sqs:SendMessage", "sqs:ReceiveMessage"], "Resource": JOBS_ARN},
    {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": UPLOADS_ARN},
    {"Effect": "Allow", "Action": "s3:GetObject", "Resource": [f"{UPLOADS_ARN}/*", f"{UPLOADS_ARN}/avatars/*"]},
    {"Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": KEY_ARN},
    # A Deny narrows: it is never judged.
    {"Effect": "Deny", "Action": "s3:*", "Resource": "*"},
]


def task_role(*statements: dict[str, Any], linked: bool = True, **extra: Any) -> list[Resource]:
    """A task, its role with one inline role policy, and the queue and bucket
    that policy may name; `extra` adds properties to the role (inlinePolicies)."""
    role = dataclasses.replace(
        res(policy_documents.ROLE, "api-task-role", arn=TASK_ROLE_ARN, **extra),
        props={"arn": TASK_ROLE_ARN, "name": "api-task-role", **extra},
    )
    task = res(aws.TASK_DEFINITION, "api-task", taskRoleArn=TASK_ROLE_ARN)
    policy = link(res(policy_documents.ROLE_POLICY, "api-task-role-policy", policy=doc(*statements)), role=role)
    # An execution role is not the task's: what it may do is other rules' business.
    execution = res(policy_documents.ROLE, "api-execution-role", arn="arn:aws:iam::123456789012:role/exec")
    execution_policy = link(
        res(policy_documents.ROLE_POLICY, "api-execution-role", policy=doc({"Effect": "Allow", "Action": "logs:*",
                                                                         "Resource": "*"})),
        role=execution,
    )  # fmt: skip
    graph = [
        res(aws.SQS_QUEUE, "jobs", arn=JOBS_ARN),
        res(aws.BUCKET, "uploads", arn=UPLOADS_ARN),
        res(aws.KMS_KEY, "key", arn=KEY_ARN),
        role,
        link(task, taskRoleArn=role) if linked else task,
        policy,
        execution,
        execution_policy,
    ]
    # All declared under the API's component, as the platform declares them.
    return [dataclasses.replace(r, parent=API_COMPONENT) for r in graph]


OUTSIDE = "which is neither declared beside the task nor a key or metrics workspace of this stack."
REPLICATION = "aws:s3/bucketReplicationConfig:BucketReplicationConfig"
POLICIES_ATTACHMENT = "aws:iam/policyAttachment:PolicyAttachment"


API_COMPONENT = "urn:pulumi:prod::wondernest::wondernest:aws:Platform$wondernest:aws:Api::api"


def component(kind: str, name: str) -> Resource:
    return Resource(
        f"wondernest:aws:{kind}",
        name,
        f"urn:pulumi:prod::wondernest::wondernest:aws:Platform$wondernest:aws:{kind}::{name}",
        {},
        parent="urn:pulumi:prod::wondernest::wondernest:aws:Platform::platform",
    )


def beside(task_in: Resource, bucket_in: Resource, *extra: Resource) -> list[Resource]:
    """A task under one component instance whose role reads a bucket under another, with the engine's parents."""

    def under(parent: Resource, typ: str, name: str, **props: Any) -> Resource:
        return Resource(typ, name, f"{parent.urn.split('::')[0]}::wondernest::{typ}::{name}", props, parent=parent.urn)

    role = under(task_in, policy_documents.ROLE, "api-task-role", arn=TASK_ROLE_ARN)
    statement = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::dumps/*"}
    return [
        task_in, bucket_in, *extra,
        under(bucket_in, aws.BUCKET, "dumps", arn="arn:aws:s3:::dumps", bucket="dumps"),
        under(component("Secrets", "secrets"), aws.KMS_KEY, "key", arn="arn:aws:kms:eu-west-1:123456789012:key/k"),
        role,
        under(task_in, aws.TASK_DEFINITION, "api-task", taskRoleArn=TASK_ROLE_ARN),
        link(under(task_in, policy_documents.ROLE_POLICY, "api-task-role-policy",
                   policy=doc(statement, {"Effect": "Allow", "Action": "kms:Decrypt",
                                          "Resource": "arn:aws:kms:eu-west-1:123456789012:key/k"})), role=role),
    ]  # fmt: skip


API, BACKUPS = component("Api", "api"), component("Backups", "backups")


def attached(policy_arn: str, *documents: Resource) -> list[Resource]:
    role = task_role(*SCOPED)
    attachment = link(res(policy_documents.POLICY_ATTACHMENT, "api-task-role-0", policyArn=policy_arn), role=role[3])
    return [*role, *documents, attachment]


def logged_buckets(logged: bool) -> list[Resource]:
    logs, dumps = res(aws.BUCKET, "alb-logs", bucket="logs"), res(aws.BUCKET, "dumps", bucket="dumps")
    writer = link(res(aws.LOAD_BALANCER, "alb"), accessLogs=logs)
    out = [logs, dumps, writer]
    if logged:
        out.append(link(res(aws.BUCKET_LOGGING, "dumps"), bucket=dumps, targetBucket=logs))
    return out


DB_SECRET = res(aws.SECRET, "postgres-app", kmsKeyId="arn:aws:kms:eu-west-1:1:key/k")
DB_SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:1:secret:wondernest/prod/postgres-app-AbCdEf"
DB_DOCUMENT = link(
    res(
        credentials.SECRET_VERSION,
        "postgres-app",
        secretString=json.dumps({"engine": "postgres", "host": "db", "username": "app", "password": "p"}),
    ),
    secretId=DB_SECRET,
)


def db_rotation(**rules: Any) -> Resource:
    return link(
        res(
            credentials.SECRET_ROTATION,
            "postgres-app",
            rotationLambdaArn="arn:aws:lambda:eu-west-1:1:function:r",
            rotationRules=rules or {"automaticallyAfterDays": 30},
        ),
        secretId=DB_SECRET,
    )


NO_FUNCTION = dataclasses.replace(db_rotation(), props={"rotationRules": {"automaticallyAfterDays": 7}})


def reading(value_from: str) -> list[Resource]:
    return [task(secrets=[{"name": "DB_PASSWORD", "valueFrom": value_from}])]


KEYS_ARN = "arn:aws:secretsmanager:eu-west-1:1:secret:wondernest/prod/jwt-signing-key-AbCdEf"
KEYS_SECRET = res(aws.SECRET, "jwt-signing-key", kmsKeyId="arn:aws:kms:eu-west-1:1:key/k", arn=KEYS_ARN)
KEYS_ROTATION = link(
    res(credentials.SECRET_ROTATION, "jwt-signing-key", rotationLambdaArn="arn:aws:lambda:eu-west-1:1:function:k",
        rotationRules={"automaticallyAfterDays": 30}),
    secretId=KEYS_SECRET,
)  # fmt: skip
API_KEY = res(aws.SECRET, "mail-api-key", kmsKeyId="arn:aws:kms:eu-west-1:1:key/k")


def signing(value_from: str) -> list[Resource]:
    return [KEYS_SECRET, KEYS_ROTATION, task(secrets=[{"name": "JWT_SECRET", "valueFrom": value_from}])]


def signing_with(value_from: str, **props: Any) -> list[Resource]:
    """`signing`, the keys' secret as the engine may pass it: by its name, and its ARN where known."""
    secret = dataclasses.replace(KEYS_SECRET, props={"kmsKeyId": "arn:aws:kms:eu-west-1:1:key/k", **props})
    return [secret, *signing(value_from)[1:]]


KEYS_NAME = "wondernest/prod/jwt-signing-key"
PINNED_KEYS = ("api-task: api reads JWT_SECRET pinned to one version (or with no JSON field) of a secret that "
               "rotates, so it keeps a value rotation has retired.")  # fmt: skip


VAULT = res(aws.BACKUP_VAULT, "vault", kmsKeyArn=LOGS_KEY)


def vault_lock(days: Any = 7) -> Resource:
    return link(res(aws.VAULT_LOCK, "vault-lock", backupVaultName="v", minRetentionDays=days), backupVaultName=VAULT)


PREFIX_LIST_RES = res(aws_network.PREFIX_LIST, "list")


def prefix_list(cidrs: list[str]) -> Resource:
    return dataclasses.replace(PREFIX_LIST_RES, props={"entries": [{"cidr": c} for c in cidrs]})


STACK_CASES: list[tuple[str, list[Resource], list[Resource], str]] = [
    ("aws-backup-vault-locked", [VAULT, vault_lock()], [VAULT],
     "vault: has no vault lock: its recovery points can be deleted at once."),
    ("aws-backup-vault-locked", [VAULT, vault_lock()], [VAULT, vault_lock(1)],
     "vault-lock: locks recovery points for 1 day, under 7."),
    # One lock cannot hold two vaults.
    ("aws-backup-vault-locked", [VAULT, vault_lock()],
     [VAULT, link(res(aws.VAULT_LOCK, "vault-lock", minRetentionDays=30),
                  backupVaultName=[VAULT, res(aws.BACKUP_VAULT, "vault2")])],
     "vault-lock: its vault name comes from more than one resource."),
    # A lock on another vault locks nothing here.
    ("aws-backup-vault-locked", [VAULT, vault_lock()],
     [VAULT, link(res(aws.VAULT_LOCK, "other-lock", minRetentionDays=30),
                  backupVaultName=res(aws.BACKUP_VAULT, "other"))],
     "vault: has no vault lock: its recovery points can be deleted at once."),
    ("aws-database-credentials-rotate", [DB_SECRET, DB_DOCUMENT, db_rotation()], [DB_SECRET, DB_DOCUMENT],
     "postgres-app: holds database credentials that nothing rotates."),
    ("aws-database-credentials-rotate", [DB_SECRET, DB_DOCUMENT, db_rotation(scheduleExpression="rate(7 days)")],
     [DB_SECRET, DB_DOCUMENT, db_rotation(automaticallyAfterDays=365)],
     "postgres-app: rotates every 365 days; at most every 90 days."),
    ("aws-database-credentials-rotate", [DB_SECRET, DB_DOCUMENT, db_rotation()],
     [DB_SECRET, DB_DOCUMENT, NO_FUNCTION],
     "postgres-app: its rotation is switched off or has no function."),
    ("aws-database-credentials-rotate", reading(f"{DB_SECRET_ARN}:password::"),
     reading(f"{DB_SECRET_ARN}:password::AWSPREVIOUS"),
     "api-task: api reads DB_PASSWORD pinned to one version (or with no JSON field), so it keeps a password "
     "rotation has retired."),
    ("aws-database-credentials-rotate", reading(f"{DB_SECRET_ARN}:password::"),
     reading(f"{DB_SECRET_ARN}:::0f5e0c2a-0000-4000-8000-000000000000"),
     "api-task: api reads DB_PASSWORD pinned to one version (or with no JSON field), so it keeps a password "
     "rotation has retired."),
    ("aws-database-credentials-rotate", reading(f"{DB_SECRET_ARN}:password::"), reading(DB_SECRET_ARN),
     "api-task: api reads DB_PASSWORD pinned to one version (or with no JSON field), so it keeps a password "
     "rotation has retired."),
    ("aws-secrets-rotate", [KEYS_SECRET, KEYS_ROTATION], [KEYS_SECRET],
     "jwt-signing-key: nothing rotates this secret; rotate it, or name it in unrotatedSecrets with the reason "
     "it cannot be."),
    ("aws-secrets-rotate", signing(f"{KEYS_ARN}:current::"), signing(f"{KEYS_ARN}:::0f5e0c2a-0000-4000-8000-0000"),
     "api-task: api reads JWT_SECRET pinned to one version (or with no JSON field) of a secret that rotates, "
     "so it keeps a value rotation has retired."),
    ("aws-secrets-rotate", signing(f"{KEYS_ARN}:current::"), signing(KEYS_ARN),
     "api-task: api reads JWT_SECRET pinned to one version (or with no JSON field) of a secret that rotates, "
     "so it keeps a value rotation has retired."),
    ("aws-s3-hardened", bucket_set("b"), bucket_set("b", BucketServerSideEncryptionConfiguration="absent"),
     "dumps: has no default encryption."),
    ("aws-s3-hardened", bucket_set("b"),
     bucket_set("b", BucketVersioning={"versioningConfiguration": {"status": "Suspended"}}),
     "dumps: is not versioned."),
    # Configuration that names its bucket literally, as a hand-written program may.
    ("aws-s3-hardened", unlinked(bucket_set("b")),
     unlinked(bucket_set("b", BucketVersioning={"versioningConfiguration": {"status": "Suspended"}})),
     "dumps: is not versioned."),
    ("aws-s3-hardened", bucket_set("b"), bucket_set("b", BucketPublicAccessBlock={"restrictPublicBuckets": False}),
     "dumps: public access is not blocked on all four settings."),
    ("aws-s3-hardened", bucket_set("b"),
     bucket_set("b", BucketPolicy={"policy": json.dumps({"Statement": []})}),
     "dumps: its policy does not deny requests without TLS."),
    ("aws-no-open-ingress", [alb(securityGroups=["sg-alb"]), ingress("alb-in-443", 443)],
     [alb(securityGroups=["sg-alb"]), ingress("db-in", 5432, group="sg-db")],
     "db-in: opens port 5432 to the internet (0.0.0.0/0)."),
    ("aws-no-open-ingress", [alb(securityGroups=["sg-alb"]), ingress("alb-in-443", 443)],
     [alb(securityGroups=["sg-alb"]), ingress("api-in-443", 443, group="sg-api")],
     "api-in-443: opens port 443 to the internet on a group no load balancer uses."),
    ("aws-no-open-ingress", [alb(securityGroups=["sg-alb"]), ingress("alb-in-80", 80)],
     [ingress("v6", 22, cidr="::/0")], "v6: opens port 22 to the internet (::/0)."),
    ("aws-no-open-ingress", [ingress("office", 22, cidr="203.0.113.0/24")],
     [ingress("half-the-internet", 22, cidr="0.0.0.0/1")],
     "half-the-internet: opens port 22 to the internet (0.0.0.0/1)."),
    ("aws-no-open-ingress", [ingress("partner", 22, cidr="198.51.100.0/22")],
     [ingress("a-provider", 22, cidr="100.0.0.0/12")], "a-provider: opens port 22 to the internet (100.0.0.0/12)."),
    ("aws-no-open-ingress", [ingress("vpn", 5432, cidr="203.0.0.0/16")],
     [ingress("two-slash-16s", 5432, cidr="203.0.0.0/15")],
     "two-slash-16s: opens port 5432 to the internet (203.0.0.0/15)."),
    ("aws-no-open-ingress", [ingress("office", 22, cidr="2001:db8:1::/48")],
     [res(aws_network.SG_INGRESS, "isp", cidrIpv6="2a00:1450::/29", fromPort=22, toPort=22, ipProtocol="tcp")],
     "isp: opens port 22 to the internet (2a00:1450::/29)."),
    ("aws-no-open-ingress", [ingress("office", 5432, cidr="2001:db8::/48")],
     [res(aws_network.SG_INGRESS, "v6-range", cidrIpv6="2000::/3", fromPort=5432, toPort=5432, ipProtocol="tcp")],
     "v6-range: opens port 5432 to the internet (2000::/3)."),
    ("aws-no-open-ingress", [alb(securityGroups=["sg-alb"]), ingress("alb-in-443", 443)],
     [res(aws_network.SG_INGRESS, "wide", cidrIpv4="0.0.0.0/0", fromPort=0, toPort=65535, ipProtocol="tcp")],
     "wide: opens port 0-65535 to the internet (0.0.0.0/0)."),
    ("aws-no-open-ingress",
     [res(aws_network.SG_EGRESS, "out", cidrIpv4="0.0.0.0/0", fromPort=443, toPort=443, ipProtocol="tcp")],
     [res(aws_network.SG_EGRESS, "out", cidrIpv4="0.0.0.0/0", ipProtocol="-1")],
     "out: allows every protocol and port to its source."),
    # Web ports open to the internet with no load balancer to take them.
    ("aws-no-open-ingress", [alb(securityGroups=["sg-alb"]), ingress("alb-in-443", 443)],
     [ingress("app-in-443", 443, group="sg-app")],
     "app-in-443: opens port 443 to the internet, and the stack has no load balancer for it."),
    # Protocols whose ports are not ports: ICMP's type and code, GRE or ESP's none.
    ("aws-no-open-ingress",
     [res(aws_network.SG_EGRESS, "out", cidrIpv4="0.0.0.0/0", fromPort=443, toPort=443, ipProtocol="tcp")],
     [res(aws_network.SG_EGRESS, "out", cidrIpv4="0.0.0.0/0", fromPort=443, toPort=443, ipProtocol="50")],
     "out: allows protocol 50 to the internet (0.0.0.0/0): only TCP or UDP ports."),
    ("aws-no-open-ingress",
     [res(aws_network.SG_EGRESS, "out", cidrIpv4="10.40.0.0/16", fromPort=-1, toPort=-1, ipProtocol="icmp")],
     [res(aws_network.SG_EGRESS, "out", cidrIpv4="0.0.0.0/0", fromPort=-1, toPort=-1, ipProtocol="icmp")],
     "out: allows protocol icmp to the internet (0.0.0.0/0): only TCP or UDP ports."),
    # A prefix list of the stack's own that holds the internet is the internet.
    ("aws-no-open-ingress",
     [prefix_list(["10.40.0.0/16"]), link(res(aws_network.SG_INGRESS, "via-list", fromPort=22, toPort=22,
                                                ipProtocol="tcp", prefixListId="pl"), prefixListId=PREFIX_LIST_RES)],
     [prefix_list(["0.0.0.0/0"]), link(res(aws_network.SG_INGRESS, "via-list", fromPort=22, toPort=22,
                                             ipProtocol="tcp", prefixListId="pl"), prefixListId=PREFIX_LIST_RES)],
     "via-list: opens port 22 to the internet (0.0.0.0/0)."),
    # The older SecurityGroupRule resource: ingress or egress by its `type`, IPv4, IPv6 and prefix lists.
    ("aws-no-open-ingress",
     [res(N.LEGACY_SG_RULE, "legacy", type="ingress", fromPort=22, toPort=22, protocol="tcp",
          cidrBlocks=["10.0.0.0/16"], ipv6CidrBlocks=["fd00::/8"])],
     [res(N.LEGACY_SG_RULE, "legacy", type="ingress", fromPort=22, toPort=22, protocol="tcp",
          cidrBlocks=["10.0.0.0/16", "0.0.0.0/0"])],
     "legacy: opens port 22 to the internet (0.0.0.0/0)."),
    ("aws-no-open-ingress",
     [res(N.LEGACY_SG_RULE, "legacy", type="ingress", fromPort=22, toPort=22, protocol="tcp", ipv6CidrBlocks=[])],
     [res(N.LEGACY_SG_RULE, "legacy", type="ingress", fromPort=22, toPort=22, protocol="tcp",
          ipv6CidrBlocks=["::/0"])],
     "legacy: opens port 22 to the internet (::/0)."),
    ("aws-no-open-ingress",
     [prefix_list(["10.40.0.0/16"]), link(res(N.LEGACY_SG_RULE, "legacy", type="ingress", fromPort=22, toPort=22,
                                             protocol="tcp", prefixListIds=["pl"]), prefixListIds=PREFIX_LIST_RES)],
     [prefix_list(["0.0.0.0/0"]), link(res(N.LEGACY_SG_RULE, "legacy", type="ingress", fromPort=22, toPort=22,
                                          protocol="tcp", prefixListIds=["pl"]), prefixListIds=PREFIX_LIST_RES)],
     "legacy: opens port 22 to the internet (0.0.0.0/0)."),
    ("aws-no-open-ingress",
     [res(N.LEGACY_SG_RULE, "legacy", type="egress", fromPort=443, toPort=443, protocol="tcp",
          cidrBlocks=["0.0.0.0/0"])],
     [res(N.LEGACY_SG_RULE, "legacy", type="egress", fromPort=22, toPort=22, protocol="tcp",
          cidrBlocks=["0.0.0.0/0"])],
     "legacy: allows traffic to the internet (0.0.0.0/0) on port 22, a port no service should reach it on."),
    # "All ports" written as a range, out to the world, or a range that covers a sensitive port.
    ("aws-no-open-ingress",
     [res(aws_network.SG_EGRESS, "out", cidrIpv4="0.0.0.0/0", fromPort=443, toPort=443, ipProtocol="tcp")],
     [res(aws_network.SG_EGRESS, "out", cidrIpv4="0.0.0.0/0", fromPort=0, toPort=65535, ipProtocol="tcp")],
     "out: allows traffic to the internet (0.0.0.0/0) on ports 0-65535, sensitive ports [22, 23, 25, 135, "
     "139, 445, 1433, 1521, 2049, 2375, 2376, 3306, 3389, 5432, 5984, 6379, 9200, 11211, 27017] among them: "
     "name the one port needed."),
    ("aws-no-open-ingress",
     [res(aws_network.SG_EGRESS, "out", cidrIpv6="::/0", fromPort=443, toPort=443, ipProtocol="udp")],
     [res(aws_network.SG_EGRESS, "out", cidrIpv6="::/0", fromPort=5000, toPort=6500, ipProtocol="udp")],
     "out: allows traffic to the internet (::/0) on ports 5000-6500, sensitive ports [5432, 5984, 6379] among "
     "them: name the one port needed."),
    ("aws-no-open-ingress",
     [res(aws_network.SG_EGRESS, "out", cidrIpv4="10.40.0.0/16", fromPort=0, toPort=65535, ipProtocol="tcp")],
     [res(aws_network.SG_EGRESS, "out", cidrIpv4="0.0.0.0/1", fromPort=22, toPort=22, ipProtocol="tcp")],
     "out: allows traffic to the internet (0.0.0.0/1) on port 22, a port no service should reach it on."),
    ("aws-no-open-ingress",
     [res(aws_network.SG_EGRESS, "out", cidrIpv4="0.0.0.0/0", fromPort=443, toPort=443, ipProtocol="tcp")],
     [res(aws_network.SG_EGRESS, "out", cidrIpv4="0.0.0.0/0", ipProtocol="ALL")],
     "out: allows every protocol and port to its source."),
    ("aws-no-open-ingress", [res(aws_network.SG, "g", egress=[])],
     [res(aws_network.SG, "g", egress=[{"protocol": "tcp", "fromPort": 1, "toPort": 65535,
                                        "cidrBlocks": ["0.0.0.0/0"]}])],
     "g: an inline egress rule allows traffic to the internet (0.0.0.0/0) on ports 1-65535, sensitive ports "
     "[22, 23, 25, 135, 139, 445, 1433, 1521, 2049, 2375, 2376, 3306, 3389, 5432, 5984, 6379, 9200, 11211, "
     "27017] among them: name the one port needed."),
    ("aws-no-open-ingress",
     [res(aws_network.SG_INGRESS, "peer", referencedSecurityGroupId="sg-api", fromPort=5432, toPort=5432,
          ipProtocol="tcp")],
     [res(aws_network.SG_INGRESS, "peer", referencedSecurityGroupId="sg-api", ipProtocol="-1")],
     "peer: allows every protocol and port from its source."),
    ("aws-no-open-ingress", [res(aws_network.SG, "g", ingress=[])],
     [res(aws_network.SG, "g", ingress=[{"protocol": "tcp", "fromPort": 22, "toPort": 22,
                                         "ipv6CidrBlocks": ["::/0"]}])],
     "g: an inline ingress rule opens port 22 to the internet (::/0)."),
    ("aws-vpc-flow-logs", [VPC, FLOW_LOG], [VPC], "vpc: no flow log records its traffic."),
    ("aws-vpc-flow-logs", [VPC, FLOW_LOG], [VPC, dataclasses.replace(FLOW_LOG, props={"trafficType": "REJECT"})],
     "vpc: its flow logs record only part of the traffic (trafficType ALL)."),
    ("aws-vpc-flow-logs", [VPC, FLOW_LOG], [VPC, res(N.FLOW_LOG, "flow-log", trafficType="ALL")],
     "vpc: no flow log records its traffic."),
    ("aws-default-security-group-closed", [VPC, DEFAULT_SG], [VPC],
     "vpc: its default security group keeps AWS's allow-all rules."),
    ("aws-default-security-group-closed", [VPC, DEFAULT_SG],
     [VPC, dataclasses.replace(DEFAULT_SG, props={"ingress": [{"protocol": "-1", "self": True}], "egress": []})],
     "default-sg: the default security group has ingress rules."),
    ("aws-default-security-group-closed", [VPC, DEFAULT_SG],
     [VPC, DEFAULT_SG, link(res(N.SG_INGRESS, "sneaky", fromPort=22, toPort=22), securityGroupId=VPC)],
     "sneaky: adds a rule to a default security group."),
    ("aws-data-tier-private-subnets", [*NETWORK, subnet_group(N.RDS_SUBNET_GROUP, ISOLATED_SUBNET)],
     [*NETWORK, subnet_group(N.RDS_SUBNET_GROUP, PUBLIC_SUBNET)],
     "subnets: puts the database on public subnets ['public-0']."),
    ("aws-data-tier-private-subnets", [*NETWORK, subnet_group(N.CACHE_SUBNET_GROUP, ISOLATED_SUBNET)],
     [*NETWORK, subnet_group(N.CACHE_SUBNET_GROUP, PUBLIC_SUBNET)],
     "subnets: puts the cache on public subnets ['public-0']."),
    ("aws-data-tier-private-subnets", [*NETWORK, subnet_group(N.RDS_SUBNET_GROUP, ISOLATED_SUBNET)],
     [*NETWORK, subnet_group(N.RDS_SUBNET_GROUP, ISOLATED_SUBNET),
      link(res(N.ROUTE, "leak", destinationCidrBlock="0.0.0.0/0", gatewayId="igw-1"), routeTableId=ISOLATED_RT,
           gatewayId=IGW)], "subnets: puts the database on public subnets ['isolated-0']."),
    ("aws-rds-tls-enforced", rds_with(FORCE_TLS), rds_with([FORCE_TLS[1]]),
     "postgres: its parameter group does not set rds.force_ssl = 1."),
    ("aws-rds-tls-enforced", rds_with(FORCE_TLS),
     rds_with([FORCE_TLS[0], {"name": "ssl_min_protocol_version", "value": "TLSv1"}]),
     "postgres: its parameter group allows TLS below 1.2."),
    ("aws-rds-tls-enforced", rds_with(FORCE_TLS), rds_with(None),
     "postgres: uses no parameter group of the stack's, so TLS is not forced."),
    ("aws-alb-waf", waf(), waf(associated=False), "alb: faces the internet with no web ACL in front of it."),
    ("aws-alb-waf", waf(), waf(logged=False), "web-acl: logs no requests (a WebAclLoggingConfiguration)."),
    ("aws-alb-waf", waf(), waf(rules=[RATE, managed("AWSManagedRulesCommonRuleSet")]),
     "web-acl: does not run AWSManagedRulesKnownBadInputsRuleSet."),
    ("aws-alb-waf", waf(), waf(rules=[RATE, managed("AWSManagedRulesCommonRuleSet"),
                                      managed("AWSManagedRulesKnownBadInputsRuleSet", "count")]),
     "web-acl: only counts what AWSManagedRulesKnownBadInputsRuleSet matches (overrideAction count)."),
    ("aws-alb-waf", waf(), waf(rules=[{**RATE, "action": {"count": {}}}, *ACL_RULES[1:]]),
     "web-acl: has no rate-based rule that blocks."),
    ("aws-s3-access-logged", logged_buckets(True), logged_buckets(False),
     "dumps: logs no access to it (a BucketLogging to a log bucket)."),
    ("aws-sqs-dead-letter", queues(), [res(aws.SQS_QUEUE, "jobs")],
     "jobs: sends no failed message to a dead-letter queue (a redrivePolicy)."),
    ("aws-sqs-dead-letter", queues(), queues(count=0),
     "jobs: its redrive policy sets no maxReceiveCount of 1 or more."),
    ("aws-sqs-dead-letter", queues(), queues(count="x"),
     "jobs: its redrive policy sets no maxReceiveCount of 1 or more."),
    ("aws-sqs-dead-letter", queues(), [res(aws.SQS_QUEUE, "jobs", redrivePolicy="")],
     "jobs: sends no failed message to a dead-letter queue (a redrivePolicy)."),
    # The dead-letter queue found by name alone still needs none; a queue named by nothing does.
    ("aws-sqs-dead-letter", queues(linked=False), [*queues(linked=False), res(aws.SQS_QUEUE, "orphan")],
     "orphan: sends no failed message to a dead-letter queue (a redrivePolicy)."),
    ("aws-task-role-scoped", task_role(*SCOPED),
     task_role({"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*"}),
     f"api-task-role: api-task-role-policy allows sqs:SendMessage on *, {OUTSIDE}"),
    ("aws-task-role-scoped", task_role(*SCOPED),
     task_role({"Sid": "Jobs", "Effect": "Allow", "Action": "sqs:SendMessage",
                "Resource": [JOBS_ARN, "arn:aws:sqs:eu-west-1:210987654321:wondernest-prod-jobs"]}),
     f"api-task-role: api-task-role-policy allows Jobs on arn:aws:sqs:eu-west-1:210987654321:wondernest-prod-jobs, "
     f"{OUTSIDE}"),
    # A bucket's objects only: not another bucket's, and not every bucket whose name begins alike.
    ("aws-task-role-scoped", task_role(*SCOPED),
     task_role({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::someone-elses/*"}),
     f"api-task-role: api-task-role-policy allows s3:GetObject on arn:aws:s3:::someone-elses/*, {OUTSIDE}"),
    ("aws-task-role-scoped", task_role(*SCOPED),
     task_role({"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"{UPLOADS_ARN}*"}),
     f"api-task-role: api-task-role-policy allows s3:GetObject on {UPLOADS_ARN}*, {OUTSIDE}"),
    ("aws-task-role-scoped", task_role(*SCOPED),
     task_role({"Effect": "Allow", "Action": "sns:Publish", "NotResource": JOBS_ARN}),
     "api-task-role: api-task-role-policy allows sns:Publish on every resource but those named (or names none)."),
    # Administering what it reaches, even its own resources: a way to more.
    ("aws-task-role-scoped", task_role(*SCOPED),
     task_role({"Effect": "Allow", "Action": ["sqs:SendMessage", "sqs:SetQueueAttributes"], "Resource": JOBS_ARN}),
     "api-task-role: api-task-role-policy allows sqs:SetQueueAttributes, which no task's code takes on its data; "
     "name it in the rule's allowedActions if the app must."),
    ("aws-task-role-scoped", task_role(*SCOPED),
     task_role({"Effect": "Allow", "Action": ["kms:Decrypt", "kms:ScheduleKeyDeletion"], "Resource": KEY_ARN}),
     "api-task-role: api-task-role-policy allows kms:ScheduleKeyDeletion, which no task's code takes on its data; "
     "name it in the rule's allowedActions if the app must."),
    ("aws-task-role-scoped", task_role(*SCOPED),
     task_role({"Effect": "Allow", "NotAction": "iam:*", "Resource": JOBS_ARN}),
     "api-task-role: api-task-role-policy allows every action but those named."),
    # Found by the task's ARN alone (no recorded relation), and in the role's own inline policies.
    ("aws-task-role-scoped", task_role(*SCOPED, linked=False),
     task_role(*SCOPED, linked=False, inlinePolicies=[
         {"name": "extra", "policy": doc({"Effect": "Allow", "Action": "ses:SendEmail", "Resource": "*"})}]),
     f"api-task-role: inline policy extra allows ses:SendEmail on *, {OUTSIDE}"),
    # A managed policy of the stack's own is judged like an inline one; AWS's is refused, by every route.
    ("aws-task-role-scoped",
     attached("arn:aws:iam::123456789012:policy/own",
              res(policy_documents.IAM_POLICY, "own", arn="arn:aws:iam::123456789012:policy/own",
                  policy=doc(*SCOPED))),
     attached("arn:aws:iam::aws:policy/AmazonSQSFullAccess"),
     "api-task-role: a task's role has arn:aws:iam::aws:policy/AmazonSQSFullAccess attached, a policy written for "
     "no resource of this stack."),
    ("aws-task-role-scoped", task_role(*SCOPED),
     task_role(*SCOPED, managedPolicyArns=["arn:aws:iam::aws:policy/AmazonS3FullAccess"]),
     "api-task-role: a task's role has arn:aws:iam::aws:policy/AmazonS3FullAccess attached, a policy written for "
     "no resource of this stack."),
    ("aws-task-role-scoped", task_role(*SCOPED),
     [*task_role(*SCOPED), res(POLICIES_ATTACHMENT, "api-task-role-s3", roles=["api-task-role"],
                               policyArn="arn:aws:iam::aws:policy/AmazonS3FullAccess")],
     "api-task-role: a task's role has arn:aws:iam::aws:policy/AmazonS3FullAccess attached, a policy written for "
     "no resource of this stack."),
    # A task whose role is not the stack's is judged nowhere else.
    ("aws-task-role-scoped", task_role(*SCOPED),
     [res(aws.TASK_DEFINITION, "api-task", taskRoleArn="arn:aws:iam::123456789012:role/OrganizationAccountAccessRole")],
     "api-task: runs as arn:aws:iam::123456789012:role/OrganizationAccountAccessRole, a role this stack does not "
     "declare, so what its code may do is judged nowhere."),
    # An `arn` that is an input naming something else (an EventTarget's) declares nothing.
    ("aws-task-role-scoped", task_role(*SCOPED),
     [*task_role({"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "arn:aws:sqs:eu-west-1:123456789012:x"}),
      res("aws:cloudwatch/eventTarget:EventTarget", "target", arn="arn:aws:sqs:eu-west-1:123456789012:x")],
     f"api-task-role: api-task-role-policy allows sqs:SendMessage on arn:aws:sqs:eu-west-1:123456789012:x, {OUTSIDE}"),
    # Only what is declared beside the task (under its component), or a key: not another component's bucket.
    ("aws-task-role-scoped", beside(API, API), beside(API, BACKUPS),
     f"api-task-role: api-task-role-policy allows s3:GetObject on arn:aws:s3:::dumps/*, {OUTSIDE}"),
    # Another instance of the same component type is not beside it either.
    ("aws-task-role-scoped", beside(API, API), beside(API, component("Api", "second-api")),
     f"api-task-role: api-task-role-policy allows s3:GetObject on arn:aws:s3:::dumps/*, {OUTSIDE}"),
    # Beside it, but holding another bucket's access logs: no task's.
    ("aws-task-role-scoped", beside(API, API),
     beside(API, API, res(aws.BUCKET_LOGGING, "uploads-logging", bucket="uploads", targetBucket="dumps")),
     f"api-task-role: api-task-role-policy allows s3:GetObject on arn:aws:s3:::dumps/*, {OUTSIDE}"),
    # Nor one a load balancer writes its logs to, or one another bucket replicates into.
    ("aws-task-role-scoped", beside(API, API),
     beside(API, API, res(aws.LOAD_BALANCER, "alb", accessLogs={"bucket": "dumps", "enabled": True})),
     f"api-task-role: api-task-role-policy allows s3:GetObject on arn:aws:s3:::dumps/*, {OUTSIDE}"),
    ("aws-task-role-scoped", beside(API, API),
     beside(API, API, res(REPLICATION, "uploads-replication",
                          rules=[{"id": "copy", "destination": {"bucket": "arn:aws:s3:::dumps"}}])),
     f"api-task-role: api-task-role-policy allows s3:GetObject on arn:aws:s3:::dumps/*, {OUTSIDE}"),
    # A task placed at the stack's root (or above other components' tasks) sharing the role reaches only what is
    # shared: a decoy does not widen the role.
    ("aws-task-role-scoped", beside(API, API),
     [*beside(API, API), res(aws.TASK_DEFINITION, "decoy", taskRoleArn=TASK_ROLE_ARN)],
     f"api-task-role: api-task-role-policy allows s3:GetObject on arn:aws:s3:::dumps/*, {OUTSIDE}"),
    # A resource's policy naming the role lets it in as much as its own policies do.
    ("aws-task-role-scoped", task_role(*SCOPED),
     [*task_role(*SCOPED), res(policy_documents.BUCKET_POLICY, "uploads", policy=doc(
         {"Effect": "Allow", "Principal": {"AWS": TASK_ROLE_ARN}, "Action": ["s3:GetObject", "s3:PutBucketPolicy"],
          "Resource": f"{UPLOADS_ARN}/*"}))],
     "api-task-role: uploads's policy allows s3:PutBucketPolicy, which no task's code takes on its data; name it "
     "in the rule's allowedActions if the app must."),
    ("aws-task-role-scoped", task_role(*SCOPED),
     [*task_role(*SCOPED), res(policy_documents.ROLE, "redeploy-role", assumeRolePolicy=doc(
         {"Effect": "Allow", "Principal": {"AWS": [TASK_ROLE_ARN]}, "Action": "sts:AssumeRole"}))],
     "api-task-role: redeploy-role's policy allows sts:AssumeRole, which no task's code takes on its data; name it "
     "in the rule's allowedActions if the app must."),
    # Read twice by readers that disagree: `*` for one, the bucket for the other.
    ("aws-task-role-scoped", task_role(*SCOPED),
     [*task_role(*SCOPED)[:5], dataclasses.replace(task_role(*SCOPED)[5], props={
         "policy": '{"Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*", '
                   f'"Resource": "{UPLOADS_ARN}/*"}}]}}'}), *task_role(*SCOPED)[6:]],
     "api-task-role: api-task-role-policy has a key twice in one object: readers disagree."),
    ("aws-required-tags", [res(aws.KMS_KEY, "key", provider={"defaultTags": json.dumps({"tags": TAGS})})],
     [res(aws.KMS_KEY, "key", provider={"region": "eu-west-1"})],
     "key: lacks the tags ['app', 'environment', 'owner', 'cost-center']."),
    ("aws-required-tags", [res(aws.KMS_KEY, "key", provider={}, tags=TAGS)],
     [res(aws.KMS_KEY, "key", provider={}, tags={"app": "wondernest"})],
     "key: lacks the tags ['environment', 'owner', 'cost-center']."),
    # A bucket with no policy at all, and a policy whose only Deny is not about TLS.
    ("aws-s3-hardened", bucket_set("b"), bucket_set("b", BucketPolicy="absent"),
     "dumps: its policy does not deny requests without TLS."),
    ("aws-s3-hardened", bucket_set("b"),
     bucket_set("b", BucketPolicy={"policy": json.dumps({"Statement": [
         {"Effect": "Deny", "Principal": "*", "Action": "s3:DeleteBucket"}]})}),
     "dumps: its policy does not deny requests without TLS."),
    # A rotated secret known by its name alone (its ARN is the engine's output): references to it are judged.
    ("aws-secrets-rotate", signing_with(f"{KEYS_ARN}:current::", name=KEYS_NAME),
     signing_with(KEYS_ARN, name=KEYS_NAME), PINNED_KEYS),
    # A secret that holds no credentials does not end the check: the credentials after it are still judged.
    ("aws-database-credentials-rotate", [DB_SECRET, DB_DOCUMENT, db_rotation()],
     [API_KEY, DB_SECRET, DB_DOCUMENT], "postgres-app: holds database credentials that nothing rotates."),
]  # fmt: skip


@pytest.mark.parametrize(("rule_id", "good", "bad", "problem"), STACK_CASES, ids=[c[0] for c in STACK_CASES])
def test_each_aws_stack_rule_both_ways(rule_id: str, good: list[Resource], bad: list[Resource], problem: str) -> None:
    rule = BY_ID[rule_id]
    assert rule.run_stack(good, {}) == []
    [found] = rule.run_stack(bad, {})
    assert found.message == f"{problem} Fix: {rule.remediation}"
    # Reported against a resource of the name the message starts with (a bucket and its policy share one).
    assert found.urn in {r.urn for r in bad if r.name == problem.split(":", 1)[0]}


# --- the prod stack -----------------------------------------------------------------


def prod_violations(resources: list[Resource]) -> dict[str, list[str]]:
    return violations(resources, "prod")


@pytest.fixture(scope="module")
def prod_resources() -> list[Resource]:
    """Prod with everything optional switched on: certificate, alert email,
    bastion, cross-region copies, a read replica of its own class."""
    config = prod_config(
        {
            "domainName": "api.example.com",
            "certificateArn": CERT,
            "adminBastion": True,
            "backupCopyRegion": "eu-central-1",
            "dbReadReplicas": 1,
            "dbReplicaInstanceClass": "db.r6g.large",
        }
    )
    return as_resources(evaluate_once(config, stack="prod"), "prod")


def test_the_prod_stack_passes_the_whole_pack(prod_resources: list[Resource]) -> None:
    assert all(level == "mandatory" for level in enforcement("prod").values())
    assert prod_violations(prod_resources) == {}


def test_prod_with_a_certificate_made_in_its_hosted_zone_passes_the_whole_pack() -> None:
    config = prod_config({"domainName": "api.example.com", "hostedZoneId": "Z0123456789ABCDEFGHIJ"})
    assert prod_violations(as_resources(evaluate_once(config, stack="prod"), "prod")) == {}


def test_prod_without_a_certificate_is_refused_for_plain_http() -> None:
    resources = as_resources(evaluate_once(prod_config(), stack="prod"), "prod")
    assert prod_violations(resources) == {"aws-alb-https": ["http"]}


def test_a_broken_prod_stack_produces_exactly_the_expected_violations() -> None:
    # Single-AZ and a short log retention come through the stack config; the rest
    # are mistakes made as if something had slipped past the config layer.
    ev = evaluate_once(
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
        broken.append(dataclasses.replace(r, props=props, provider=provider))
    logs = sorted(r.name for r in broken if r.type == aws.LOG_GROUP)
    assert prod_violations(broken) == {
        "aws-rds-hardened": ["postgres", "postgres"],
        "aws-no-open-ingress": ["api-to-postgres-ingress"],
        "aws-ecs-task-hardened": ["api-task"],
        "aws-log-retention": logs,
        "aws-required-tags": sorted(r.name for r in broken if r.type == aws.KMS_KEY),
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


SELECTION = res(policies_platform.BACKUP_SELECTION, "selection")


def backup_task(*variables: str, definitions: Any = None) -> Resource:
    containers = [container(environment=[{"name": v, "value": "x"} for v in variables])]
    return res(aws.TASK_DEFINITION, "backups-task", containerDefinitions=definitions or json.dumps(containers))


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        ([rds(), SELECTION, backup_task("BACKUP_SCHEDULE")], []),
        ([rds(), SELECTION, backup_task("DB_HOST")],
         ["postgres: no backup task verifies its dumps by restoring them."]),
        ([rds(), backup_task("BACKUP_SCHEDULE")], ["postgres: no AWS Backup selection takes its snapshots."]),
        ([rds(), SELECTION, backup_task(definitions=UNKNOWN)], []),
        ([rds(), SELECTION, res(aws.SERVICE, "backups", containerDefinitions=UNKNOWN)],
         ["postgres: no backup task verifies its dumps by restoring them."]),
        # A replica's data is its source's.
        ([rds(replicateSourceDb="postgres")], []),
    ],
    ids=["backed-up", "not-verified", "no-selection", "task-unknown", "not-a-task", "replica"],
)  # fmt: skip
def test_a_database_on_aws_is_backed_up_and_its_dumps_verified(resources: list[Resource], expected: list[str]) -> None:
    assert_reports("postgres-backup-verified", resources, expected)


def test_the_staging_stack_passes_with_its_own_policy_config() -> None:
    ev = evaluate_once(stack_config(stack="staging"), stack="staging")
    resources = as_resources(ev, "staging")
    assert len(ev.of_type("aws:ec2/natGateway:NatGateway")) == 1
    assert not [d for d in ev.of_type("aws:ec2/vpcEndpoint:VpcEndpoint") if d.inputs["vpcEndpointType"] == "Interface"]
    assert ev.named("aws:rds/instance:Instance", "postgres").inputs["multiAz"] is False
    assert violations(resources, "staging") == {}
    # The same graph under prod's policy config: exactly what staging relaxes.
    assert prod_violations(resources) == {"aws-rds-hardened": ["postgres"], "aws-alb-https": ["http"]}


# --- the pack over the prod graph, mutated one meaning at a time --------------------------------

Props = dict[str, Any]


def _set(**values: Any) -> Any:
    return lambda props: {**props, **values}


def _json_edit(key: str, edit: Any) -> Any:
    def apply(props: Props) -> Props:
        return {**props, key: json.dumps(edit(json.loads(props[key])))}

    return apply


def _container_edit(edit: Any) -> Any:
    def apply(containers: list[dict[str, Any]]) -> list[dict[str, Any]]:
        edit(containers[1] if containers[0]["name"] == "migrate" else containers[0])
        return containers

    return _json_edit("containerDefinitions", apply)


def _add_statement(statement: dict[str, Any]) -> Any:
    return _json_edit("policy", lambda d: {**d, "Statement": [*d["Statement"], statement]})


def _without_parameter(name: str) -> Any:
    return lambda props: {**props, "parameters": [p for p in props["parameters"] if p["name"] != name]}


# (what changes, type, resource name, how its properties change or None to remove it, expected violations)
MUTATIONS: list[tuple[str, str, str, Any, dict[str, list[str]]]] = [
    ("cache under the AWS-owned key", aws.REPLICATION_GROUP, "redis", _set(kmsKeyId=None),
     {"aws-encryption-customer-key": ["redis"]}),
    ("page topic under aws/sns", aws.SNS_TOPIC, "alerts-page", _set(kmsMasterKeyId="alias/aws/sns"),
     {"aws-encryption-customer-key": ["alerts-page"]}),
    ("backup vault under the default key", aws.BACKUP_VAULT, "vault", _set(kmsKeyArn=None),
     {"aws-encryption-customer-key": ["vault"]}),
    ("default security group opened", N.DEFAULT_SG, "default-sg",
     _set(ingress=[{"protocol": "-1", "fromPort": 0, "toPort": 0, "self": True}]),
     {"aws-default-security-group-closed": ["default-sg"]}),
    ("default security group left to AWS", N.DEFAULT_SG, "default-sg", None,
     {"aws-default-security-group-closed": ["vpc"]}),
    ("flow log removed", N.FLOW_LOG, "flow-log", None, {"aws-vpc-flow-logs": ["vpc"]}),
    ("flow log of rejected traffic only", N.FLOW_LOG, "flow-log", _set(trafficType="REJECT"),
     {"aws-vpc-flow-logs": ["vpc"]}),
    ("public subnet hands out addresses", N.SUBNET, "public-0", _set(mapPublicIpOnLaunch=True),
     {"aws-subnets-no-automatic-addresses": ["public-0"]}),
    ("isolated subnets routed to the internet gateway", N.ROUTE_TABLE, "isolated-rt",
     _set(routes=[{"cidrBlock": "0.0.0.0/0", "gatewayId": "igw-fe010647d32ab9a6f"}]),
     {"aws-data-tier-private-subnets": ["subnets", "subnets"]}),
    ("expired RDS certificate authority", aws.RDS, "postgres", _set(caCertIdentifier="rds-ca-2019"),
     {"aws-rds-hardened": ["postgres"]}),
    ("TLS no longer forced", aws.RDS_PARAMETER_GROUP, "parameters", _without_parameter("rds.force_ssl"),
     {"aws-rds-tls-enforced": ["postgres"]}),
    ("replica made public", aws.RDS, "postgres-replica-1", _set(publiclyAccessible=True),
     {"aws-rds-hardened": ["postgres-replica-1"]}),
    ("replica under the AWS-owned key", aws.RDS, "postgres-replica-1", _set(kmsKeyId=None),
     {"aws-rds-hardened": ["postgres-replica-1"]}),
    ("replica's TLS no longer forced", aws.RDS_PARAMETER_GROUP, "replica-parameters",
     _without_parameter("rds.force_ssl"), {"aws-rds-tls-enforced": ["postgres-replica-1"]}),
    ("TLS 1.0 allowed", aws.RDS_PARAMETER_GROUP, "parameters", _without_parameter("ssl_min_protocol_version"),
     {"aws-rds-tls-enforced": ["postgres"]}),
    ("key usable by anyone", aws.KMS_KEY, "key",
     _add_statement({"Effect": "Allow", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*"}),
     {"aws-policies-least-privilege": ["key"], "aws-kms-key-policy": ["key"]}),
    ("copy key with AWS's default policy", aws.KMS_KEY, "copy-key", _set(policy=None),
     {"aws-kms-key-policy": ["copy-key"]}),
    ("platform key back to AWS's default policy written out", aws.KMS_KEY, "key", _set(policy=doc(ROOT_ADMIN)),
     {"aws-kms-key-policy": ["key"]}),
    ("copy key usable by the account outside its services", aws.KMS_KEY, "copy-key",
     _add_statement({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
                     "Action": "kms:Decrypt", "Resource": "*"}),
     {"aws-kms-key-policy": ["copy-key"]}),
    ("alert publishers unconditioned", aws.KMS_KEY, "key",
     _json_edit("policy", lambda d: {**d, "Statement": [
         {k: v for k, v in st.items() if k != "Condition"} if st.get("Sid") == "AlertPublishersEncrypt" else st
         for st in d["Statement"]]}),
     {"aws-kms-key-policy": ["key"]}),
    ("task role allowed all of S3", policy_documents.ROLE_POLICY, "backups-task-role-bucket",
     _add_statement({"Effect": "Allow", "Action": "s3:*", "Resource": "*"}),
     {"aws-policies-least-privilege": ["backups-task-role-bucket"],
      "aws-task-role-scoped": ["backups-task-role", "backups-task-role"]}),
    ("API task role reaching another stack's queue", policy_documents.ROLE_POLICY, "api-task-role",
     _add_statement({"Effect": "Allow", "Action": "sqs:SendMessage",
                     "Resource": "arn:aws:sqs:eu-west-1:123456789012:another-stack-jobs"}),
     {"aws-task-role-scoped": ["api-task-role"]}),
    ("dumps readable by anyone", aws.BUCKET_POLICY, "dumps",
     _add_statement({"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "s3:GetObject", "Resource": "*"}),
     # Anyone includes every task's role, to which the statement gives every resource.
     {"aws-policies-least-privilege": ["dumps"],
      "aws-task-role-scoped": ["api-task-role", "backups-task-role", "exporters-task-role", "restore-task-role"]}),
    ("execution role made administrator", policy_documents.POLICY_ATTACHMENT, "api-execution-role-0",
     _set(policyArn="arn:aws:iam::aws:policy/AdministratorAccess"),
     {"aws-policies-least-privilege": ["api-execution-role-0"]}),
    ("cache still accepting plaintext", aws.REPLICATION_GROUP, "redis", _set(transitEncryptionMode="preferred"),
     {"aws-elasticache-hardened": ["redis"]}),
    ("cache's default user switched on", aws.ELASTICACHE_USER, "redis-user-default", _set(accessString="on ~* +@all"),
     {"aws-elasticache-users-authenticate": ["redis-user-default"]}),
    ("a token pasted under an innocent name", aws.TASK_DEFINITION, "api-task",
     _container_edit(lambda c: c["environment"].append({"name": "FEATURE_FLAGS", "value": RANDOM_TOKEN})),
     {"aws-ecs-task-hardened": ["api-task"]}),
    ("a password on the command line", aws.TASK_DEFINITION, "backups-task",
     _container_edit(lambda c: c.update(command=["serve", "--password=hunter2"])),
     {"aws-ecs-task-hardened": ["backups-task"]}),
    ("a capability added", aws.TASK_DEFINITION, "exporters-task",
     _container_edit(lambda c: c.update(linuxParameters={"capabilities": {"add": ["SYS_PTRACE"]}})),
     {"aws-ecs-task-hardened": ["exporters-task"]}),
    ("ECS Exec on", aws.SERVICE, "api-service", _set(enableExecuteCommand=True),
     {"aws-ecs-service-private": ["api-service"]}),
    ("database port open over IPv6", N.SG_INGRESS, "api-to-postgres-ingress",
     _set(cidrIpv6="::/0", referencedSecurityGroupId=None), {"aws-no-open-ingress": ["api-to-postgres-ingress"]}),
    ("API port open to half the internet", N.SG_INGRESS, "alb-to-api-ingress",
     _set(cidrIpv4="0.0.0.0/1", referencedSecurityGroupId=None), {"aws-no-open-ingress": ["alb-to-api-ingress"]}),
    ("egress on every protocol", N.SG_EGRESS, "api-out-https", _set(ipProtocol="-1", fromPort=None, toPort=None),
     {"aws-no-open-ingress": ["api-out-https"]}),
    ("web ACL detached", aws.WEB_ACL_ASSOCIATION, "web-acl-association", None, {"aws-alb-waf": ["alb"]}),
    ("web ACL only counting", aws.WEB_ACL, "web-acl",
     lambda p: {**p, "rules": [{**r, "overrideAction": {"count": {}}} if "overrideAction" in r else r
                               for r in p["rules"]]},
     {"aws-alb-waf": ["web-acl", "web-acl"]}),
    ("dumps access logging removed", aws.BUCKET_LOGGING, "dumps", None, {"aws-s3-access-logged": ["dumps"]}),
    ("app credentials never rotated", credentials.SECRET_ROTATION, "postgres-app", None,
     {"aws-database-credentials-rotate": ["postgres-app"]}),
    ("backup credentials rotated yearly", credentials.SECRET_ROTATION, "postgres-backup",
     _set(rotationRules={"automaticallyAfterDays": 365}), {"aws-database-credentials-rotate": ["postgres-backup"]}),
    ("the API pinned to its first password", aws.TASK_DEFINITION, "api-task",
     _container_edit(lambda c: [s.update(valueFrom=s["valueFrom"].replace(":password::", ":::v1"))
                                for s in c.get("secrets", []) if s["name"] == "DB_PASSWORD"]),
     {"aws-database-credentials-rotate": ["api-task"]}),
    ("the API pinned to the first signing keys", aws.TASK_DEFINITION, "api-task",
     _container_edit(lambda c: [s.update(valueFrom=s["valueFrom"].replace(":current::", ":::v1"))
                                for s in c.get("secrets", [])]),
     {"aws-secrets-rotate": ["api-task"]}),
    ("signing keys never rotated", credentials.SECRET_ROTATION, "jwt-signing-key", None,
     {"aws-secrets-rotate": ["jwt-signing-key"]}),
    ("a cache password rotated yearly", credentials.SECRET_ROTATION, "redis-monitoring",
     _set(rotationRules={"automaticallyAfterDays": 365}), {"aws-database-credentials-rotate": ["redis-monitoring"]}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("what", "typ", "name", "change", "expected"), MUTATIONS, ids=[m[0].replace(" ", "-") for m in MUTATIONS]
)
def test_the_pack_catches_each_mutation_of_prod(
    prod_resources: list[Resource], what: str, typ: str, name: str, change: Any, expected: dict[str, list[str]]
) -> None:
    targets = [r for r in prod_resources if r.type == typ and r.name == name]
    assert len(targets) == 1, f"{typ} {name}: {len(targets)} in the prod graph"
    mutated = []
    for r in prod_resources:
        if r is targets[0]:
            if change is None:
                continue
            r = dataclasses.replace(r, props=change(copy.deepcopy(dict(r.props))))
        mutated.append(r)
    assert prod_violations(mutated) == expected, what


def test_a_policy_document_with_a_key_twice_is_refused() -> None:
    from wondernest_policies.policy_documents import document_problems

    doubled = (
        '{"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Effect": "Allow", '
        '"Principal": "*", "Action": "s3:GetObject", "Resource": "*"}]}'
    )
    assert document_problems(doubled) == ["has the key Effect twice in one object: readers disagree on which counts."]
    assert document_problems(doubled.replace('"Effect": "Deny", ', "")) != []  # the same without the twin: still judged


def test_caches_of_every_kind_are_judged() -> None:
    rule = BY_ID["aws-elasticache-hardened"]
    lone = res(aws.CACHE_CLUSTER, "lone", engine="redis", numCacheNodes=1, snapshotRetentionLimit=1)
    [found] = rule.run_resource(lone, {})
    assert "outside a replication group" in found.message
    member = res(aws.CACHE_CLUSTER, "member", replicationGroupId="rg")
    assert rule.run_resource(member, {}) == []
    serverless = res(aws.SERVERLESS_CACHE, "sl", engine="redis", snapshotRetentionLimit=1)
    messages = [v.message for v in rule.run_resource(serverless, {})]
    assert any("keeps snapshots" in m for m in messages) and any("no authentication" in m for m in messages)
    good = res(aws.SERVERLESS_CACHE, "sl", engine="redis", snapshotRetentionLimit=7, userGroupId="ug")
    assert rule.run_resource(good, {}) == []


def test_a_group_with_inline_web_rules_fronts_a_balancer_that_names_it_literally() -> None:
    rule = BY_ID["aws-no-open-ingress"]
    web = [{"protocol": "tcp", "fromPort": 443, "toPort": 443, "cidrBlocks": ["0.0.0.0/0"]}]
    group = res(aws_network.SG, "web", id="sg-0a1b2c3d4e5f60718", ingress=web)
    named = alb(securityGroups=["sg-0a1b2c3d4e5f60718"])
    assert list(rule.run_stack([named, group], {})) == []
    elsewhere = alb(securityGroups=["sg-0ffffffffffffffff"])
    [found] = rule.run_stack([elsewhere, group], {})
    assert "an inline ingress rule opens port 443 to the internet on a group no load balancer uses" in found.message


def test_a_task_role_trusts_only_this_accounts_tasks() -> None:
    rule = BY_ID["aws-policies-least-privilege"]
    trust = {"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}
    open_role = res("aws:iam/role:Role", "task", assumeRolePolicy=json.dumps({"Statement": [trust]}))
    [found] = rule.run_resource(open_role, {})
    assert "trusts ecs-tasks.amazonaws.com for any account" in found.message
    scoped = {**trust, "Condition": {"StringEquals": {"aws:SourceAccount": "123456789012"}}}
    assert (
        rule.run_resource(res("aws:iam/role:Role", "task", assumeRolePolicy=json.dumps({"Statement": [scoped]})), {})
        == []
    )
    # A key that only names the account pins nothing.
    loose = {**trust, "Condition": {"StringLike": {"aws:SourceAccount": "*"}}}
    assert rule.run_resource(res("aws:iam/role:Role", "task", assumeRolePolicy=json.dumps({"Statement": [loose]})), {})
    # Lambda sets no source keys: its trust is not held to them.
    lam = {**trust, "Principal": {"Service": "lambda.amazonaws.com"}}
    assert (
        rule.run_resource(res("aws:iam/role:Role", "fn", assumeRolePolicy=json.dumps({"Statement": [lam]})), {}) == []
    )


@pytest.mark.parametrize(
    ("rotation", "problem"),
    [
        (db_rotation(automaticallyAfterDays=90), None),
        (db_rotation(automaticallyAfterDays=91), "rotates every 91 days; at most every 90 days."),
        (db_rotation(scheduleExpression="rate(4 hours)"), None),
        (db_rotation(scheduleExpression="rate(2160 hours)"), None),
        (db_rotation(scheduleExpression="rate(2184 hours)"), "rotates every 91 days; at most every 90 days."),
        (db_rotation(scheduleExpression="rate(91 days)"), "rotates every 91 days; at most every 90 days."),
        (db_rotation(scheduleExpression="cron(0 4 * * ? *)"), "rotates no period; at most every 90 days."),
        (dataclasses.replace(db_rotation(), props={**db_rotation().props, "rotationEnabled": False}),
         "its rotation is switched off or has no function."),
        (dataclasses.replace(db_rotation(), props={**db_rotation().props, "rotationEnabled": True}), None),
    ],
)  # fmt: skip
def test_a_rotation_at_its_edges(rotation: Resource, problem: str | None) -> None:
    rule = BY_ID["aws-database-credentials-rotate"]
    found = rule.run_stack([DB_SECRET, DB_DOCUMENT, rotation], {})
    expected = [] if problem is None else [Violation(f"postgres-app: {problem} Fix: {rule.remediation}", rotation.urn)]
    assert found == expected


def test_a_policy_document_is_judged_as_a_key_policy_only_when_it_is_one() -> None:
    # The account root allowed `kms:*` is AWS's default key policy (judged by aws-kms-key-policy);
    # anywhere else it is a wildcard action.
    assert policy_documents.document_problems(doc(ROOT_ADMIN)) == [
        "statement 'AccountAdministers' allows every kms action ('kms:*')."
    ]
    assert policy_documents.document_problems(doc(ROOT_ADMIN), key_policy=True) == []


def test_the_floors_come_from_the_rules_config() -> None:
    cache = BY_ID["aws-elasticache-hardened"]
    assert cache.run_resource(redis(snapshotRetentionLimit=None), {"minSnapshotRetentionDays": 1}) == [
        Violation(f"redis: keeps snapshots never, under 1. Fix: {cache.remediation}", redis().urn)
    ]
    assert cache.run_resource(redis(snapshotRetentionLimit=1), {"minSnapshotRetentionDays": 1}) == []
    logs = BY_ID["aws-log-retention"]
    group = res(aws.LOG_GROUP, "api-logs", retentionInDays=14, kmsKeyId=LOGS_KEY)
    assert logs.run_resource(group, {"minRetentionDays": 7}) == []
    assert logs.run_resource(group, {}) == [
        Violation(f"api-logs: keeps logs 14 days; the policy wants 30 or more. Fix: {logs.remediation}", group.urn)
    ]
    locks = BY_ID["aws-backup-vault-locked"]
    assert locks.run_stack([VAULT, vault_lock(0)], {"minLockDays": 1}) == [
        Violation(f"vault-lock: locks recovery points for never, under 1. Fix: {locks.remediation}", vault_lock().urn)
    ]
    rotate = BY_ID["aws-database-credentials-rotate"]
    rotation = db_rotation(automaticallyAfterDays=60)
    assert rotate.run_stack([DB_SECRET, DB_DOCUMENT, rotation], {}) == []
    message = f"postgres-app: rotates every 60 days; at most every 30 days. Fix: {rotate.remediation}"
    assert rotate.run_stack([DB_SECRET, DB_DOCUMENT, rotation], {"maxRotationDays": 30}) == [
        Violation(message, rotation.urn)
    ]


def _with_each_value_unknown(resources: list[Resource]) -> collections.abc.Iterator[tuple[str, list[Resource]]]:
    from tests.test_policy_unknowns import paths, unknown_at

    for i, resource in enumerate(resources):
        for path in paths(resource.props):
            variant = dataclasses.replace(resource, props=unknown_at(resource.props, path))
            yield f"{resource.name} {path}", [*resources[:i], variant, *resources[i + 1 :]]


LB_SG, API_SG = res(N.SG, "alb-sg"), res(N.SG, "api-sg")
PREVIEW_LB = [link(alb(securityGroups=[UNKNOWN]), securityGroups=LB_SG), LB_SG, API_SG]
WEB_IN = {"fromPort": 443, "toPort": 443, "protocol": "tcp", "cidrBlocks": ["0.0.0.0/0"]}


def legacy_in(port: int) -> Resource:
    return res(N.LEGACY_SG_RULE, "legacy", type="ingress", fromPort=port, toPort=port, protocol="tcp",
               cidrBlocks=["0.0.0.0/0"], securityGroupId=UNKNOWN)  # fmt: skip


PENDING_PARAMETERS = res(aws.RDS_PARAMETER_GROUP, "pending-parameters", parameters=UNKNOWN)
FLOW_LOGS_BUCKET = res(aws.BUCKET, "flow-logs", bucket="flow-logs")
SHARED_NETWORK = res("pulumi:pulumi:StackReference", "network")
YEARLY_KEYS_ROTATION = dataclasses.replace(
    KEYS_ROTATION, props={**KEYS_ROTATION.props, "rotationRules": {"automaticallyAfterDays": 365}}
)


# Stack checks at their edges: (rule, resources, the messages reported).
SQS_HERE, SQS_ELSEWHERE = "arn:aws:sqs:eu-west-1:123456789012", "arn:aws:sqs:eu-west-1:999999999999"


def pending_jobs(*statements: dict[str, Any]) -> list[Resource]:
    """The task role's graph in a preview where the queue is not created yet: its name known, its ARN not."""
    graph = task_role(*statements)
    pending = {"arn": UNKNOWN, "name": "wondernest-prod-jobs"}
    return [dataclasses.replace(r, props=pending) if r.name == "jobs" else r for r in graph]


STACK_EDGES: list[tuple[str, list[Resource], list[str]]] = [
    # A wildcard is decided beside values not known yet; a specific ARN may be
    # a resource not created yet only if it names it, in this account.
    ("aws-task-role-scoped", task_role({"Effect": "Allow", "Action": "s3:GetObject", "Resource": [UNKNOWN, "*"]}),
     [f"api-task-role: api-task-role-policy allows s3:GetObject on *, {OUTSIDE}"]),
    ("aws-task-role-scoped", pending_jobs(*SCOPED), []),
    ("aws-task-role-scoped",
     pending_jobs({"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": f"{SQS_HERE}:another-teams-queue"}),
     [f"api-task-role: api-task-role-policy allows sqs:SendMessage on {SQS_HERE}:another-teams-queue, {OUTSIDE}"]),
    ("aws-task-role-scoped",
     pending_jobs({"Effect": "Allow", "Action": "sqs:SendMessage",
                   "Resource": f"{SQS_ELSEWHERE}:wondernest-prod-jobs"}),
     [f"api-task-role: api-task-role-policy allows sqs:SendMessage on {SQS_ELSEWHERE}:wondernest-prod-jobs, "
      f"{OUTSIDE}"]),
    ("aws-task-role-scoped",
     pending_jobs({"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::attacker-exfil/*"}),
     [f"api-task-role: api-task-role-policy allows s3:PutObject on arn:aws:s3:::attacker-exfil/*, {OUTSIDE}"]),
    # Every grant from others is judged, the role's own trust included.
    ("aws-task-role-scoped",
     [*task_role(*SCOPED), res(policy_documents.BUCKET_POLICY, "uploads", policy=doc(
         {"Effect": "Allow", "Principal": {"AWS": TASK_ROLE_ARN}, "Action": "s3:PutBucketAcl",
          "Resource": UPLOADS_ARN})),
      res(policy_documents.QUEUE_POLICY, "jobs", policy=doc(
          {"Effect": "Allow", "Principal": {"AWS": TASK_ROLE_ARN}, "Action": "sqs:SetQueueAttributes",
           "Resource": JOBS_ARN}))],
     ["api-task-role: uploads's policy allows s3:PutBucketAcl, which no task's code takes on its data; name it in "
      "the rule's allowedActions if the app must.",
      "api-task-role: jobs's policy allows sqs:SetQueueAttributes, which no task's code takes on its data; name it "
      "in the rule's allowedActions if the app must."]),
    # A role known by name only (its ARN not known yet) is still found by the policies naming it.
    ("aws-task-role-scoped",
     [dataclasses.replace(r, props={**r.props, "arn": UNKNOWN}) if r.name == "api-task-role" else r
      for r in task_role({"Effect": "Allow", "Action": "iam:PassRole", "Resource": JOBS_ARN})],
     ["api-task-role: api-task-role-policy allows iam:PassRole, which no task's code takes on its data; name it in "
      "the rule's allowedActions if the app must."]),
    # Unknown items of a list leave the known ones judged.
    ("aws-task-role-scoped",
     task_role(*SCOPED, managedPolicyArns=[UNKNOWN, "arn:aws:iam::aws:policy/AmazonS3FullAccess"]),
     ["api-task-role: a task's role has arn:aws:iam::aws:policy/AmazonS3FullAccess attached, a policy written for "
      "no resource of this stack."]),
    # An action or resource not known yet is decided at `up`.
    ("aws-task-role-scoped",
     task_role({"Effect": "Allow", "Action": [UNKNOWN, "sqs:SendMessage"], "Resource": JOBS_ARN}), []),
    # A task may run as a role not created yet only if it names that role.
    ("aws-task-role-scoped",
     [dataclasses.replace(task_role(*SCOPED)[3], props={"arn": UNKNOWN, "name": "api-task-role"}),
      res(aws.TASK_DEFINITION, "api-task", taskRoleArn="arn:aws:iam::123456789012:role/api-task-role")], []),
    ("aws-task-role-scoped",
     [dataclasses.replace(task_role(*SCOPED)[3], props={"arn": UNKNOWN, "name": "api-task-role"}),
      res(aws.TASK_DEFINITION, "api-task", taskRoleArn="arn:aws:iam::123456789012:role/Admin")],
     ["api-task: runs as arn:aws:iam::123456789012:role/Admin, a role this stack does not declare, so what its "
      "code may do is judged nowhere."]),
    # Only a balancer that faces the internet, and speaks HTTP, needs a web ACL.
    ("aws-alb-waf", [alb(internal=True)], []),
    ("aws-alb-waf", [alb(internal=False, loadBalancerType="network")], []),
    ("aws-alb-waf", [alb(internal=False, loadBalancerType="application")],
     ["alb: faces the internet with no web ACL in front of it."]),
    ("aws-rds-tls-enforced", rds_with([FORCE_TLS[0], {"name": "ssl_min_protocol_version", "value": "TLSv1.3"}]), []),
    ("aws-rds-tls-enforced", rds_with([FORCE_TLS[0], UNKNOWN]), []),
    ("aws-rds-tls-enforced", rds_with([FORCE_TLS[0], {"name": UNKNOWN, "value": "TLSv1"}]), []),
    # In a preview the groups' ids are unknown: where a rule's group id came from decides.
    ("aws-no-open-ingress", [*PREVIEW_LB, link(ingress("lb-in", 443, group=UNKNOWN), securityGroupId=LB_SG)], []),
    ("aws-no-open-ingress", [*PREVIEW_LB, link(ingress("api-in", 443, group=UNKNOWN), securityGroupId=API_SG)],
     ["api-in: opens port 443 to the internet on a group no load balancer uses."]),
    ("aws-no-open-ingress", [*PREVIEW_LB, ingress("unrelated", 443, group=UNKNOWN)], []),
    ("aws-no-open-ingress", [PREVIEW_LB[0], dataclasses.replace(LB_SG, props={"ingress": [WEB_IN]}), API_SG], []),
    ("aws-no-open-ingress", [PREVIEW_LB[0], LB_SG, dataclasses.replace(API_SG, props={"ingress": [WEB_IN]})],
     ["api-sg: an inline ingress rule opens port 443 to the internet on a group no load balancer uses."]),
    ("aws-no-open-ingress", [dataclasses.replace(LB_SG, props={"ingress": [WEB_IN]})],
     ["alb-sg: an inline ingress rule opens port 443 to the internet, and the stack has no load balancer for it."]),
    ("aws-no-open-ingress", [*PREVIEW_LB, link(legacy_in(443), securityGroupId=LB_SG)], []),
    ("aws-no-open-ingress", [*PREVIEW_LB, link(legacy_in(443), securityGroupId=API_SG)],
     ["legacy: opens port 443 to the internet on a group no load balancer uses."]),
    ("aws-no-open-ingress", [legacy_in(443)],
     ["legacy: opens port 443 to the internet, and the stack has no load balancer for it."]),
    ("aws-no-open-ingress", [res(N.LEGACY_SG_RULE, "first", type=UNKNOWN, fromPort=22, toPort=22, protocol="tcp",
                                 cidrBlocks=["0.0.0.0/0"]), legacy_in(22)],
     ["legacy: opens port 22 to the internet (0.0.0.0/0)."]),
    # What counts as the internet: wider than a /16 of IPv4 or a /32 of IPv6, and public.
    ("aws-no-open-ingress", [res(N.SG_INGRESS, "isp", cidrIpv6="2a00:1450::/32", fromPort=22, toPort=22)], []),
    ("aws-no-open-ingress", [res(N.SG_INGRESS, "wide", cidrIpv6="2a00:1450::/31", fromPort=22, toPort=22)],
     ["wide: opens port 22 to the internet (2a00:1450::/31)."]),
    ("aws-no-open-ingress", [ingress("office", 22, cidr="198.51.0.0/16")], []),
    ("aws-no-open-ingress", [ingress("host-bits", 22, cidr="8.8.8.8/0")],
     ["host-bits: opens port 22 to the internet (8.8.8.8/0)."]),
    ("aws-no-open-ingress", [ingress("garbage", 22, cidr="not-a-cidr")], []),
    ("aws-no-open-ingress", [res(N.SG_INGRESS, "icmp-in", cidrIpv4="0.0.0.0/0", ipProtocol="icmp", fromPort=-1,
                                 toPort=-1)],
     ["icmp-in: allows protocol icmp from the internet (0.0.0.0/0): only TCP or UDP ports."]),
    ("aws-no-open-ingress", [res(N.LEGACY_SG_RULE, "legacy", type="ingress", fromPort=22, toPort=22, protocol="tcp",
                                 cidrBlocks=["0.0.0.0/0"], ipv6CidrBlocks=["::/0"])],
     ["legacy: opens port 22 to the internet (0.0.0.0/0, ::/0)."]),
    ("aws-default-security-group-closed",
     [VPC, dataclasses.replace(DEFAULT_SG, props={"ingress": [], "egress": [{"protocol": "-1"}]})],
     ["default-sg: the default security group has egress rules."]),
    ("aws-default-security-group-closed", [VPC, dataclasses.replace(DEFAULT_SG, props={"ingress": UNKNOWN})], []),
    ("aws-default-security-group-closed",
     [VPC, DEFAULT_SG, link(res(N.SG_EGRESS, "out", fromPort=443, toPort=443), securityGroupId=DEFAULT_SG),
      link(res(N.LEGACY_SG_RULE, "legacy", type="ingress"), securityGroupId=VPC)],
     ["out: adds a rule to a default security group.", "legacy: adds a rule to a default security group."]),
    # Every instance judged: one without a group of the stack's does not end the check.
    ("aws-rds-tls-enforced", [res(aws.RDS, "first"), *rds_with([FORCE_TLS[1]])],
     ["first: uses no parameter group of the stack's, so TLS is not forced.",
      "postgres: its parameter group does not set rds.force_ssl = 1."]),
    # An instance whose parameters are not known yet is judged at `up`; the next one now.
    ("aws-rds-tls-enforced",
     [PENDING_PARAMETERS, link(res(aws.RDS, "first"), parameterGroupName=PENDING_PARAMETERS),
      *rds_with([FORCE_TLS[1]])],
     ["postgres: its parameter group does not set rds.force_ssl = 1."]),
    # Likewise a lock whose days are not known yet, and a balancer that is internal.
    ("aws-backup-vault-locked",
     [VAULT, link(res(aws.VAULT_LOCK, "pending-lock", minRetentionDays=UNKNOWN), backupVaultName=VAULT),
      vault_lock(1)],
     ["vault-lock: locks recovery points for 1 day, under 7."]),
    ("aws-alb-waf", [alb(internal=True), res(aws.LOAD_BALANCER, "public-alb", internal=False)],
     ["public-alb: faces the internet with no web ACL in front of it."]),
    # A bucket that flow logs are written to is a log destination.
    ("aws-s3-access-logged",
     [FLOW_LOGS_BUCKET, link(res(aws.FLOW_LOG, "flow-log"), logDestination=FLOW_LOGS_BUCKET)], []),
    # Default encryption set on the bucket itself (the provider's older inline property).
    ("aws-s3-hardened",
     bucket_set("b", BucketServerSideEncryptionConfiguration="absent",
                Bucket={"serverSideEncryptionConfiguration": {"rule": {"applyServerSideEncryptionByDefault": {
                    "sseAlgorithm": "aws:kms"}}}}), []),
    # Another bucket's configuration configures not this one, even while its names are not known.
    ("aws-s3-hardened",
     [res(aws.BUCKET, "bare", bucket="bare"),
      *bucket_set("b", **{part: {"bucket": UNKNOWN} for part in (
          "BucketServerSideEncryptionConfiguration", "BucketVersioning", "BucketPublicAccessBlock", "BucketPolicy")})],
     ["bare: has no default encryption.", "bare: is not versioned.",
      "bare: public access is not blocked on all four settings.",
      "bare: its policy does not deny requests without TLS."]),
    # The dead-letter queue found by the relation the engine records (it has no name: AWS makes one), by its
    # ARN, or not yet told apart (its ARN unknown): it needs none of its own. An empty target names no queue.
    ("aws-sqs-dead-letter", [res(aws.SQS_QUEUE, "jobs-dlq"), jobs_queue(DLQ_ARN, to=res(aws.SQS_QUEUE, "jobs-dlq"))],
     []),
    ("aws-sqs-dead-letter", [res(aws.SQS_QUEUE, "jobs-dlq", arn=DLQ_ARN), jobs_queue(DLQ_ARN)], []),
    ("aws-sqs-dead-letter", [res(aws.SQS_QUEUE, "jobs-dlq", arn=UNKNOWN), jobs_queue(DLQ_ARN)], []),
    ("aws-sqs-dead-letter", [res(aws.SQS_QUEUE, "jobs-dlq", arn=UNKNOWN), jobs_queue("")],
     ["jobs-dlq: sends no failed message to a dead-letter queue (a redrivePolicy).",
      "jobs: sends no failed message to a dead-letter queue (a redrivePolicy)."]),
    # A queue whose name the target does not end with is no dead-letter queue of it.
    ("aws-sqs-dead-letter",
     [*queues(linked=False),
      dataclasses.replace(res(aws.SQS_QUEUE, "orphan"), props={"name": "wondernest-prod-orphan"})],
     ["orphan: sends no failed message to a dead-letter queue (a redrivePolicy)."]),
    # maxReceiveCount as AWS takes it: its digits, and 1 is enough.
    ("aws-sqs-dead-letter", queues(count="5"), []),
    ("aws-sqs-dead-letter", queues(count=1), []),
    # Subnets known only by the URN they came from (another stack's, through a StackReference).
    ("aws-data-tier-private-subnets",
     [VPC, IGW, PUBLIC_RT, SHARED_NETWORK,
      link(res(N.ROUTE_TABLE_ASSOCIATION, "shared-0"), subnetId=SHARED_NETWORK, routeTableId=PUBLIC_RT),
      subnet_group(N.RDS_SUBNET_GROUP, SHARED_NETWORK)],
     [f"subnets: puts the database on public subnets ['{SHARED_NETWORK.urn}']."]),
    # Ids written literally relate nothing: the public subnet's id, written out, names no subnet of the stack's.
    ("aws-data-tier-private-subnets",
     [*[dataclasses.replace(r, props={**r.props, "id": "subnet-1"}) if r is PUBLIC_SUBNET else r for r in NETWORK],
      res(N.RDS_SUBNET_GROUP, "subnets", subnetIds=["subnet-1"])], []),
    ("aws-data-tier-private-subnets",
     [*NETWORK, link(res(N.ROUTE_TABLE_ASSOCIATION, "literal", subnetId="subnet-1"), routeTableId=PUBLIC_RT),
      subnet_group(N.RDS_SUBNET_GROUP, ISOLATED_SUBNET)], []),
    # Egress: every range it reaches is named; a range's sensitive ports from its first to its last.
    ("aws-no-open-ingress",
     [res(N.LEGACY_SG_RULE, "legacy", type="egress", fromPort=8000, toPort=8080, protocol="tcp",
          cidrBlocks=["0.0.0.0/0"], ipv6CidrBlocks=["::/0"])],
     ["legacy: allows traffic to the internet (0.0.0.0/0, ::/0) on ports 8000-8080: name the one port needed."]),
    ("aws-no-open-ingress",
     [res(N.SG_EGRESS, "out", cidrIpv4="0.0.0.0/0", fromPort=5432, toPort=6379, ipProtocol="tcp")],
     ["out: allows traffic to the internet (0.0.0.0/0) on ports 5432-6379, sensitive ports [5432, 5984, 6379] "
      "among them: name the one port needed."]),
    ("aws-no-open-ingress",
     [res(N.LEGACY_SG_RULE, "legacy", type="ingress", protocol="50", fromPort=0, toPort=0,
          cidrBlocks=["0.0.0.0/0"], ipv6CidrBlocks=["::/0"])],
     ["legacy: allows protocol 50 from the internet (0.0.0.0/0, ::/0): only TCP or UDP ports."]),
    ("aws-no-open-ingress",
     [res(N.LEGACY_SG_RULE, "legacy", type="ingress", protocol="-1", fromPort=0, toPort=0,
          sourceSecurityGroupId="sg-api")],
     ["legacy: allows every protocol and port from its source."]),
    # With one of a balancer's groups not known yet, the known ids do not decide: the port alone does.
    ("aws-no-open-ingress", [alb(securityGroups=["sg-alb", UNKNOWN]), ingress("web-in", 443, group="sg-web")], []),
    # Ports as the provider takes them ("443", 443.0); a number that is no port is shown as it is.
    ("aws-no-open-ingress",
     [res(N.SG_INGRESS, "web-in", cidrIpv4="0.0.0.0/0", fromPort="443", toPort=443.0, ipProtocol="tcp")],
     ["web-in: opens port 443 to the internet, and the stack has no load balancer for it."]),
    ("aws-no-open-ingress",
     [res(N.SG_INGRESS, "odd", cidrIpv4="0.0.0.0/0", fromPort=443.5, toPort=443.5, ipProtocol="tcp")],
     ["odd: opens port 443.5 to the internet (0.0.0.0/0)."]),
    # Rotation: every secret judged, and a task's secret with no reference is the task rule's business.
    ("aws-database-credentials-rotate",
     [DB_SECRET, DB_DOCUMENT, YEARLY_KEYS_ROTATION, KEYS_SECRET],
     ["postgres-app: holds database credentials that nothing rotates.",
      "jwt-signing-key: rotates every 365 days; at most every 90 days."]),
    ("aws-database-credentials-rotate", [task(secrets=[{"name": "DB_PASSWORD", "value": "hunter2"}])], []),
    # A secret whose contents are not known yet may be database credentials: judged at `up`.
    ("aws-secrets-rotate",
     [API_KEY, link(res(credentials.SECRET_VERSION, "mail-api-key", secretString=UNKNOWN), secretId=API_KEY)], []),
    # Its ARN not known yet (a preview), a rotated secret is found by its name; a name not known finds none.
    ("aws-secrets-rotate", signing_with(KEYS_ARN, name=KEYS_NAME, arn=UNKNOWN), [PINNED_KEYS]),
    ("aws-secrets-rotate",
     signing_with(f"arn:aws:secretsmanager:eu-west-1:1:secret:{UNKNOWN}-AbCdEf", name=UNKNOWN), []),
]  # fmt: skip


@pytest.mark.parametrize(("rule_id", "resources", "messages"), STACK_EDGES, ids=[c[0] for c in STACK_EDGES])
def test_each_aws_stack_check_at_its_edges(rule_id: str, resources: list[Resource], messages: list[str]) -> None:
    assert_reports(rule_id, resources, messages)


def test_a_task_role_may_take_more_actions_only_as_the_rule_is_told() -> None:
    rule = BY_ID["aws-task-role-scoped"]
    graph = task_role({"Effect": "Allow", "Action": ["sqs:SendMessage", "sqs:PurgeQueue"], "Resource": JOBS_ARN})
    assert len(rule.run_stack(graph, {})) == 1
    assert rule.run_stack(graph, {"allowedActions": ["SQS:PurgeQueue"]}) == []


@pytest.mark.parametrize(
    ("rule_id", "good"),
    [(c[0], [c[1]]) for c in (*RESOURCE_CASES, *AWS_RESOURCE_CASES)] + [(c[0], c[1]) for c in STACK_CASES],
    ids=[c[0] for c in (*RESOURCE_CASES, *AWS_RESOURCE_CASES, *STACK_CASES)],
)
def test_a_compliant_case_with_any_one_value_unknown_still_passes(rule_id: str, good: list[Resource]) -> None:
    """A preview: each check an unknown reaches is silenced, never decided against the resource."""
    rule = BY_ID[rule_id]
    for where, resources in _with_each_value_unknown(good):
        found = rule.run_stack(resources, {}) + [v for r in resources for v in rule.run_resource(r, {})]
        assert found == [], where
