"""IAM documents at their edges: what a task's role may do and reach, what a
policy document or a key policy lets in, and the model helpers they read with."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from wondernest_policies import aws, policy_documents
from wondernest_policies.model import Resource, Violation, at

from tests.test_policies import UNKNOWN, assert_reports
from tests.test_policies_aws import (
    API,
    BY_ID,
    JOBS_ARN,
    KEY_POLICY_TYPE,
    OUTSIDE,
    POLICIES_ATTACHMENT,
    READ_DUMPS,
    SCOPED,
    TASK_ROLE_ARN,
    UPLOADS_ARN,
    attached,
    beside,
    component,
    doc,
    res,
    task_role,
)

ROLE, ROLE_POLICY = policy_documents.ROLE, policy_documents.ROLE_POLICY
PURGE = {"Effect": "Allow", "Action": "sqs:PurgeQueue", "Resource": JOBS_ARN}
PURGE_REFUSED = (
    "api-task-role: api-task-role-policy allows sqs:PurgeQueue, which no task's code takes on its data; name it in "
    "the rule's allowedActions if the app must."
)
DUMPS_OUTSIDE = f"api-task-role: api-task-role-policy allows s3:GetObject on arn:aws:s3:::dumps/*, {OUTSIDE}"
EVERY_RESOURCE = "on every resource but those named (or names none)."
SESSIONS = "arn:aws:sts::123456789012:assumed-role"
PATHED_ROLE_ARN = "arn:aws:iam::123456789012:role/services/api-task-role"
UPLOADS_POLICY_REFUSED = (
    "api-task-role: uploads's policy allows s3:PutBucketPolicy, which no task's code takes on its data; name it in "
    "the rule's allowedActions if the app must."
)
STACK_URN = "urn:pulumi:prod::wondernest::pulumi:pulumi:Stack::wondernest-prod"
PLATFORM_URN = "urn:pulumi:prod::wondernest::wondernest:aws:Platform::platform"


def declared(typ: str, resource_name: str, **props: Any) -> Resource:
    """A resource with exactly these properties (`name` among them, which `res` cannot take)."""
    return dataclasses.replace(res(typ, resource_name), props=props)


def refused(arn: str) -> str:
    return f"api-task-role: a task's role has {arn} attached, a policy written for no resource of this stack."


def stranger(task_name: str, arn: str) -> str:
    return f"{task_name}: runs as {arn}, a role this stack does not declare, so what its code may do is judged nowhere."


def changed(resources: list[Resource], resource_name: str, **props: Any) -> list[Resource]:
    """The resources, the one of that name holding these properties instead of its own."""
    return [dataclasses.replace(r, props=props) if r.name == resource_name else r for r in resources]


def with_policy(text: Any) -> list[Resource]:
    """The task role's graph, its role policy's document replaced."""
    return changed(task_role(*SCOPED), "api-task-role-policy", policy=text)


def pending_dumps(*extra: Resource) -> list[Resource]:
    """A task reading a bucket beside it that is not created yet: neither its name nor its ARN known."""
    return changed(beside(API, API, *extra), "dumps", arn=UNKNOWN, bucket=UNKNOWN)


def task_under_stack() -> list[Resource]:
    """A task declared at the stack's root, recognised by its parent's URN alone (the Stack resource not
    among those handed over), whose role reads a bucket of a component under the stack."""
    stack = Resource("pulumi:pulumi:Stack", "wondernest-prod", STACK_URN, {})
    api = dataclasses.replace(component("Api", "api"), parent=STACK_URN)
    return [r for r in beside(stack, api) if r is not stack]


def task_above_another() -> list[Resource]:
    """The role shared with a task declared under the platform component, which holds the API's task too."""
    platform_task = Resource(
        aws.TASK_DEFINITION,
        "platform-task",
        f"urn:pulumi:prod::wondernest::{aws.TASK_DEFINITION}::platform-task",
        {"taskRoleArn": TASK_ROLE_ARN},
        parent=PLATFORM_URN,
    )
    return [*beside(API, API), platform_task]


# (what it shows, resources, the messages aws-task-role-scoped reports).
TASK_ROLE_EDGES: list[tuple[str, list[Resource], list[str]]] = [
    # Which role a task runs as.
    ("a task may name its role by name, as ECS allows",
     changed(task_role(PURGE, linked=False), "api-task", taskRoleArn="api-task-role"), [PURGE_REFUSED]),
    ("a role ARN not known yet is the role the engine says it came from",
     changed(task_role(PURGE), "api-task", taskRoleArn=UNKNOWN), [PURGE_REFUSED]),
    ("a task with no role of its own does not end the check",
     [res(aws.TASK_DEFINITION, "worker-task"),
      res(aws.TASK_DEFINITION, "api-task", taskRoleArn="arn:aws:iam::123456789012:role/Admin")],
     [stranger("api-task", "arn:aws:iam::123456789012:role/Admin")]),
    ("a role not created yet whose name is not known either may be the one named",
     [declared(ROLE, "deploy-role", arn=UNKNOWN, name=UNKNOWN),
      res(aws.TASK_DEFINITION, "api-task", taskRoleArn="arn:aws:iam::123456789012:role/deploy")], []),
    ("a task that may run as such a role does not end the check",
     [declared(ROLE, "deploy-role", arn=UNKNOWN, name=UNKNOWN),
      res(aws.TASK_DEFINITION, "deploy-task", taskRoleArn="arn:aws:iam::123456789012:role/deploy"),
      *task_role(PURGE)], [PURGE_REFUSED]),
    # Which policies the role holds.
    ("an attachment may name the role by name",
     [*task_role(*SCOPED), res(policy_documents.POLICY_ATTACHMENT, "api-task-role-sqs", role="api-task-role",
                               policyArn="arn:aws:iam::aws:policy/AmazonSQSFullAccess")],
     [refused("arn:aws:iam::aws:policy/AmazonSQSFullAccess")]),
    ("another role's attachment is not this role's",
     [*task_role(*SCOPED), res(POLICIES_ATTACHMENT, "other-s3", roles=["other-role"],
                               policyArn="arn:aws:iam::aws:policy/AmazonS3FullAccess")], []),
    ("a managed policy of the stack's own is judged by its document",
     attached("arn:aws:iam::123456789012:policy/own",
              res(policy_documents.IAM_POLICY, "own", arn="arn:aws:iam::123456789012:policy/own", policy=doc(PURGE))),
     [PURGE_REFUSED.replace("api-task-role-policy", "own")]),
    ("a customer policy the stack does not declare is refused like an AWS one",
     task_role(*SCOPED, managedPolicyArns=["arn:aws:iam::210987654321:policy/shared"]),
     [refused("arn:aws:iam::210987654321:policy/shared")]),
    ("only a policy not created yet may be the policy attached, not another identity not created yet",
     [*task_role(*SCOPED, managedPolicyArns=["arn:aws:iam::123456789012:policy/stranger"]),
      declared(ROLE, "deploy-role", arn=UNKNOWN, name=UNKNOWN)],
     [refused("arn:aws:iam::123456789012:policy/stranger")]),
    ("a policy not created yet is found past resources of other types not created yet",
     [*task_role(*SCOPED, managedPolicyArns=["arn:aws:iam::123456789012:policy/own"]),
      declared(aws.SQS_QUEUE, "later", arn=UNKNOWN, name="later"),
      declared(policy_documents.IAM_POLICY, "own", arn=UNKNOWN, name="own")], []),
    ("a role whose ARN is not known yet is taken for no principal, not even one not known yet",
     [*changed(task_role(*SCOPED), "api-task-role", arn=UNKNOWN, name="api-task-role"),
      res(policy_documents.BUCKET_POLICY, "uploads", policy=doc(
          {"Effect": "Allow", "Principal": {"AWS": UNKNOWN}, "Action": "s3:PutBucketAcl", "Resource": UPLOADS_ARN}))],
     []),
    # What its documents say, and how they are read.
    ("a document that is not JSON is the least-privilege rule's to report",
     with_policy("{not json"), []),
    ("a document that is not an object allows nothing", with_policy("[]"), []),
    ("every action beyond the data plane is named",
     task_role({"Effect": "Allow", "Action": ["sqs:PurgeQueue", "sqs:SetQueueAttributes"], "Resource": JOBS_ARN}),
     ["api-task-role: api-task-role-policy allows sqs:PurgeQueue, sqs:SetQueueAttributes, which no task's code "
      "takes on its data; name it in the rule's allowedActions if the app must."]),
    ("every resource outside is named, with every action of a statement without a Sid",
     task_role({"Effect": "Allow", "Action": ["sqs:SendMessage", "sqs:ReceiveMessage"],
                "Resource": ["arn:aws:sqs:eu-west-1:123456789012:a", "*"]}),
     ["api-task-role: api-task-role-policy allows sqs:SendMessage, sqs:ReceiveMessage on "
      f"arn:aws:sqs:eu-west-1:123456789012:a, *, {OUTSIDE}"]),
    ("a resource that is not text reaches outside",
     task_role({"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": [JOBS_ARN, 7]}),
     [f"api-task-role: api-task-role-policy allows sqs:SendMessage on 7, {OUTSIDE}"]),
    ("a statement of the role's own that names no resource allows every one",
     task_role({"Effect": "Allow", "Action": "sqs:SendMessage"}),
     [f"api-task-role: api-task-role-policy allows sqs:SendMessage {EVERY_RESOURCE}"]),
    ("a NotResource beside a Resource still allows every resource but those named",
     task_role({"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": JOBS_ARN, "NotResource": UPLOADS_ARN}),
     [f"api-task-role: api-task-role-policy allows sqs:SendMessage {EVERY_RESOURCE}"]),
    ("a resource's policy that names resources is held to them",
     [*task_role(*SCOPED), res(policy_documents.BUCKET_POLICY, "uploads", policy=doc(
         {"Effect": "Allow", "Principal": {"AWS": TASK_ROLE_ARN}, "Action": "s3:GetObject",
          "Resource": "arn:aws:s3:::someone-elses/*"}))],
     [f"api-task-role: uploads's policy allows s3:GetObject on arn:aws:s3:::someone-elses/*, {OUTSIDE}"]),
    ("a resource's policy that leaves its Resource out is about the resource itself",
     [*task_role(*SCOPED), res(policy_documents.BUCKET_POLICY, "uploads", policy=doc(
         {"Effect": "Allow", "Principal": {"AWS": TASK_ROLE_ARN}, "Action": "s3:GetObject"}))], []),
    # What lies beside the task, and what is outside.
    ("a Resource that is no ARN names nothing, not an identity whose ARN is not set",
     changed(task_role({"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "None"}), "key"),
     [f"api-task-role: api-task-role-policy allows kms:Decrypt on None, {OUTSIDE}"]),
    ("an identity whose ARN is not an ARN names no account",
     [*task_role(*SCOPED), res(aws.SQS_QUEUE, "odd", arn="not-an-arn")], []),
    ("a bucket not created yet is matched by its bucket name, not its resource name",
     changed(task_role({"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::attacker-exfil/*"}),
             "uploads", arn=UNKNOWN, bucket="wondernest-prod-uploads-123456789012"),
     [f"api-task-role: api-task-role-policy allows s3:PutObject on arn:aws:s3:::attacker-exfil/*, {OUTSIDE}"]),
    ("a bucket not created yet whose name is not known either may be the one named", pending_dumps(), []),
    ("a log bucket whose name is not known yet protects no bucket of unknown name",
     pending_dumps(res(aws.BUCKET_LOGGING, "uploads-logging", bucket="uploads", targetBucket=UNKNOWN)), []),
    ("a name in capitals is no wildcard",
     changed(task_role({"Effect": "Allow", "Action": "sqs:SendMessage",
                        "Resource": "arn:aws:sqs:eu-west-1:123456789012:Jobs-XL"}),
             "jobs", arn=UNKNOWN, name="Jobs-XL"), []),
    # A resource's policy lets the role in by letting anyone in, or one of its sessions.
    ("a policy letting anyone of the account in lets the role in",
     [*task_role(*SCOPED), res(policy_documents.BUCKET_POLICY, "uploads", policy=doc(
         {"Effect": "Allow", "Principal": "*", "Action": "s3:PutBucketPolicy", "Resource": UPLOADS_ARN,
          "Condition": {"StringEquals": {"aws:PrincipalAccount": "123456789012"}}}))],
     [UPLOADS_POLICY_REFUSED]),
    ("a policy naming one of the role's sessions lets the role in",
     [*task_role(*SCOPED), res(policy_documents.BUCKET_POLICY, "uploads", policy=doc(
         {"Effect": "Allow", "Principal": {"AWS": f"{SESSIONS}/api-task-role/task"},
          "Action": "s3:PutBucketPolicy", "Resource": UPLOADS_ARN}))],
     [UPLOADS_POLICY_REFUSED]),
    ("a session of the role's name in another account is not the role's",
     [*task_role(*SCOPED), res(policy_documents.BUCKET_POLICY, "uploads", policy=doc(
         {"Effect": "Allow", "Principal": {"AWS": "arn:aws:sts::210987654321:assumed-role/api-task-role/task"},
          "Action": "s3:PutBucketPolicy", "Resource": UPLOADS_ARN}))], []),
    ("a session of another role is not the role's",
     [*task_role(*SCOPED), res(policy_documents.BUCKET_POLICY, "uploads", policy=doc(
         {"Effect": "Allow", "Principal": {"AWS": f"{SESSIONS}/deploy/task"},
          "Action": "s3:PutBucketPolicy", "Resource": UPLOADS_ARN}))], []),
    ("a key policy's anyone is every task's use of the stack's key, which every task may have",
     [*task_role(*SCOPED), res(KEY_POLICY_TYPE, "key-policy", policy=doc(
         {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:Decrypt", "Resource": "*",
          "Condition": {"StringEquals": {"kms:CallerAccount": "123456789012"}}}))], []),
    ("a key policy letting anyone administer the key lets the role administer it",
     [*task_role(*SCOPED), res(KEY_POLICY_TYPE, "key-policy", policy=doc(
         {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:ScheduleKeyDeletion", "Resource": "*",
          "Condition": {"StringEquals": {"kms:CallerAccount": "123456789012"}}}))],
     ["api-task-role: key-policy's policy allows kms:ScheduleKeyDeletion, which no task's code takes on its data; "
      "name it in the rule's allowedActions if the app must."]),
    ("a key policy naming the role lets it use that key, its `*` resource being the key",
     [*task_role(*SCOPED), res(KEY_POLICY_TYPE, "key-policy", policy=doc(
         {"Effect": "Allow", "Principal": {"AWS": TASK_ROLE_ARN}, "Action": "kms:Decrypt", "Resource": "*"}))], []),
    ("a session is named by the role's name alone, without the role's path",
     [*changed(changed(task_role(*SCOPED), "api-task-role", arn=PATHED_ROLE_ARN, name="api-task-role"), "api-task",
               taskRoleArn=PATHED_ROLE_ARN),
      res(policy_documents.BUCKET_POLICY, "uploads", policy=doc(
          {"Effect": "Allow", "Principal": {"AWS": f"{SESSIONS}/api-task-role/task"},
           "Action": "s3:PutBucketPolicy", "Resource": UPLOADS_ARN}))],
     [UPLOADS_POLICY_REFUSED]),
    ("a task at the stack's root reaches only what is shared", task_under_stack(), [DUMPS_OUTSIDE]),
    ("a task above another component's task reaches only what is shared", task_above_another(), [DUMPS_OUTSIDE]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("resources", "messages"), [c[1:] for c in TASK_ROLE_EDGES], ids=[c[0] for c in TASK_ROLE_EDGES]
)
def test_a_task_role_at_its_edges(resources: list[Resource], messages: list[str]) -> None:
    assert_reports("aws-task-role-scoped", resources, messages)


def public(**condition: dict[str, Any]) -> Resource:
    statement = {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}
    return res(policy_documents.BUCKET_POLICY, "b", policy=doc({**statement, "Condition": condition}))


def key_policy(**statement: Any) -> Resource:
    return res(KEY_POLICY_TYPE, "key-policy", policy=doc({"Effect": "Allow", "Action": "kms:Decrypt", **statement}))


def trust(**statement: Any) -> Resource:
    return res(ROLE, "role", assumeRolePolicy=doc({"Effect": "Allow", "Action": "sts:AssumeRole", **statement}))


ANYONE = "a statement allows anyone (Principal '*') with no condition on account or source."
ACCOUNT_ROOT = {"AWS": "arn:aws:iam::123456789012:root"}
THROUGH_S3 = "s3.eu-west-1.amazonaws.com"
ECS_TASKS = "ecs-tasks.amazonaws.com"


def whole_account(uses: str) -> str:
    return (
        f"a statement lets every identity of the account use the key ({uses}) as far as IAM allows: AWS's default "
        "key policy. Grant use through named services (kms:ViaService) or to named roles."
    )


# (what it shows, rule, resource, the problems reported).
DOCUMENT_EDGES: list[tuple[str, str, Resource, list[str]]] = [
    # Who a condition pins.
    ("a source ARN not known until apply pins it",
     "aws-policies-least-privilege", public(ArnEquals={"aws:SourceArn": UNKNOWN}), []),
    ("every known value must pin, beside one not known yet",
     "aws-policies-least-privilege", public(StringEquals={"aws:SourceAccount": [UNKNOWN, "not-an-account"]}),
     [ANYONE]),
    ("StringLike with `?` pins no ARN",
     "aws-policies-least-privilege",
     public(StringLike={"aws:SourceArn": "arn:aws:sns:eu-west-1:123456789012:alert?"}), [ANYONE]),
    ("StringLike with no wildcard pins an ARN",
     "aws-policies-least-privilege",
     public(StringLike={"aws:SourceArn": "arn:aws:sns:eu-west-1:123456789012:alerts"}), []),
    # Roles' trust and policies.
    ("a role's trust is judged as a document too",
     "aws-policies-least-privilege", trust(Principal="*"), [ANYONE]),
    ("a Deny in a trust trusts no one", "aws-policies-least-privilege",
     trust(Effect="Deny", Principal={"Service": ECS_TASKS}), []),
    ("a trust that is not an object trusts no one", "aws-policies-least-privilege",
     res(ROLE, "role", assumeRolePolicy="[]"), []),
    ("each service the trust names is shown", "aws-policies-least-privilege",
     trust(Principal={"Service": [ECS_TASKS, ECS_TASKS]}),
     [f"trusts {ECS_TASKS}, {ECS_TASKS} for any account: pin aws:SourceAccount (or aws:SourceArn) to this one."]),
    ("a document given as an object is judged as one", "aws-policies-least-privilege",
     res(ROLE_POLICY, "p", policy={"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject"}]}),
     [ANYONE]),
    ("the policy attached is named by the ARN's last segment", "aws-policies-least-privilege",
     res(policy_documents.POLICY_ATTACHMENT, "a", policyArn="arn:aws:iam::aws/x:policy/AdministratorAccess"),
     ["attaches AdministratorAccess, which allows every action."]),
    # Which actions are every action.
    ("a wildcard service and action is every action", "aws-policies-least-privilege",
     res(ROLE_POLICY, "p", policy=doc({**READ_DUMPS, "Action": "*:*"})), ["a statement allows every action ('*:*')."]),
    ("any spelling of a wildcard service is every service", "aws-policies-least-privilege",
     res(ROLE_POLICY, "p", policy=doc({**READ_DUMPS, "Action": "?*:*"})),
     ["a statement allows every action ('?*:*')."]),
    ("any spelling of a wildcard action is every action", "aws-policies-least-privilege",
     res(ROLE_POLICY, "p", policy=doc({**READ_DUMPS, "Action": "*:?*"})),
     ["a statement allows every action ('*:?*')."]),
    ("an action is split at its first colon: a wildcard after a second one matches no action",
     "aws-policies-least-privilege", res(ROLE_POLICY, "p", policy=doc({**READ_DUMPS, "Action": "s3:Get:*"})), []),
    # Key policies.
    ("anyone through a service with the principal's account pinned",
     "aws-kms-key-policy", key_policy(Principal={"AWS": "*"}, Condition={"StringEquals": {
         "kms:ViaService": THROUGH_S3, "aws:PrincipalAccount": "123456789012"}}), []),
    ("anyone through a service with the principal's organisation pinned",
     "aws-kms-key-policy", key_policy(Principal={"AWS": "*"}, Condition={"StringEquals": {
         "kms:ViaService": THROUGH_S3, "aws:PrincipalOrgID": "o-a1b2c3d4e5"}}), []),
    ("anyone through a service with no caller pinned",
     "aws-kms-key-policy", key_policy(Principal={"AWS": "*"}, Condition={"StringEquals": {
         "kms:ViaService": THROUGH_S3}}),
     ["a statement lets anyone use the key through a service, with no kms:CallerAccount pinned."]),
    ("a policy variable is no account",
     "aws-kms-key-policy", key_policy(Principal={"AWS": "arn:aws:iam::123456789012:role/app"}, Condition={
         "StringEquals": {"kms:CallerAccount": "${aws:PrincipalAccount}"}}), []),
    ("a service not known until apply is a named one",
     "aws-kms-key-policy", key_policy(Principal=ACCOUNT_ROOT, Condition={"StringEquals": {"kms:ViaService": UNKNOWN}}),
     []),
    ("up to three uses are listed",
     "aws-kms-key-policy", key_policy(Principal=ACCOUNT_ROOT, Action=["kms:Encrypt", "kms:Decrypt"]),
     [whole_account("kms:Encrypt, kms:Decrypt")]),
    ("four uses or more are summed up",
     "aws-kms-key-policy", key_policy(Principal=ACCOUNT_ROOT, Action=["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*"]),
     [whole_account("kms:Encrypt, kms:Decrypt, kms:ReEncryptFrom and more")]),
    ("each service let use the key is named",
     "aws-kms-key-policy", key_policy(Principal={"Service": ["logs.eu-west-1.amazonaws.com", "sns.amazonaws.com"]}),
     ["a statement lets logs.eu-west-1.amazonaws.com, sns.amazonaws.com use the key for any account: pin "
      "aws:SourceAccount, aws:SourceArn or the encryption context to this account's."]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("rule_id", "resource", "problems"), [c[1:] for c in DOCUMENT_EDGES], ids=[c[0] for c in DOCUMENT_EDGES]
)
def test_a_policy_document_at_its_edges(rule_id: str, resource: Resource, problems: list[str]) -> None:
    rule = BY_ID[rule_id]
    assert rule.run_resource(resource, {}) == [
        Violation(f"{resource.name}: {p} Fix: {rule.remediation}", resource.urn) for p in problems
    ]


@pytest.mark.parametrize(
    ("value", "path", "found"),
    [
        (["a", "b"], (-2,), "a"),
        (["a", "b"], (-3,), None),
        (["a", "b"], (2,), None),
        ({"rules": [{"bucket": "logs"}]}, ("rules", -1, "bucket"), "logs"),
    ],
)
def test_a_value_is_found_at_a_path_counting_from_either_end(value: Any, path: tuple[Any, ...], found: Any) -> None:
    assert at(value, *path) == found


def test_a_resource_property_that_is_absent_reads_as_the_default_given() -> None:
    resource = res(aws.BUCKET, "b", bucket="b")
    assert resource.get("bucket", "fallback") == "b"
    assert resource.get("arn", "fallback") == "fallback"
    assert resource.get("arn") is None
