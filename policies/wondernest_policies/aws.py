"""Rules for the AWS target, each anchored on the Checkov check for the same type
(named in the description) so a reviewer can compare them."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from wondernest_policies.model import (
    Resource,
    Rule,
    Violation,
    at,
    has_unknown,
    holds,
    includes,
    is_true,
    mapping,
    mappings,
    unknown,
)
from wondernest_policies.policy_documents import key_policy_problems
from wondernest_policies.secret_values import command_problems, undeclared_variable, variable_problems

RDS = "aws:rds/instance:Instance"
REPLICATION_GROUP = "aws:elasticache/replicationGroup:ReplicationGroup"
CACHE_CLUSTER = "aws:elasticache/cluster:Cluster"
SERVERLESS_CACHE = "aws:elasticache/serverlessCache:ServerlessCache"
ELASTICACHE_USER = "aws:elasticache/user:User"
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
SERVICE = "aws:ecs/service:Service"
CLUSTER = "aws:ecs/cluster:Cluster"
LOAD_BALANCER = "aws:lb/loadBalancer:LoadBalancer"
LISTENER = "aws:lb/listener:Listener"
BUCKET = "aws:s3/bucket:Bucket"
BUCKET_SSE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
BUCKET_VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"
BUCKET_PAB = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
KMS_KEY = "aws:kms/key:Key"
KEY_POLICY = "aws:kms/keyPolicy:KeyPolicy"
SECRET = "aws:secretsmanager/secret:Secret"  # noqa: S105 (a type token)
SG = "aws:ec2/securityGroup:SecurityGroup"
SG_INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
ECR = "aws:ecr/repository:Repository"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
AWS_PROVIDER = "pulumi:providers:aws"
EC2_INSTANCE = "aws:ec2/instance:Instance"

REQUIRED_TAGS = ("app", "environment", "owner", "cost-center")
# TLS 1.2 and 1.3 only; older ELB policies still negotiate TLS 1.0/1.1.
TLS12_POLICIES = frozenset(
    {
        "ELBSecurityPolicy-TLS13-1-2-2021-06",
        "ELBSecurityPolicy-TLS13-1-2-Res-2021-06",
        "ELBSecurityPolicy-TLS13-1-2-Ext1-2021-06",
        "ELBSecurityPolicy-TLS13-1-2-Ext2-2021-06",
        "ELBSecurityPolicy-TLS13-1-3-2021-06",
        "ELBSecurityPolicy-TLS-1-2-2017-01",
        "ELBSecurityPolicy-TLS-1-2-Ext-2018-06",
        "ELBSecurityPolicy-FS-1-2-2019-08",
        "ELBSecurityPolicy-FS-1-2-Res-2019-08",
        "ELBSecurityPolicy-FS-1-2-Res-2020-10",
    }
)
# The current RDS certificate authorities; rds-ca-2019 expired in 2024.
RDS_CAS = frozenset({"rds-ca-rsa2048-g1", "rds-ca-rsa4096-g1", "rds-ca-ecc384-g1"})
RDS_PARAMETER_GROUP = "aws:rds/parameterGroup:ParameterGroup"
SNS_TOPIC = "aws:sns/topic:Topic"
SQS_QUEUE = "aws:sqs/queue:Queue"
BACKUP_VAULT = "aws:backup/vault:Vault"
VAULT_LOCK = "aws:backup/vaultLockConfiguration:VaultLockConfiguration"
BUCKET_LOGGING = "aws:s3/bucketLogging:BucketLogging"
BUCKET_LOGGING_V2 = "aws:s3/bucketLoggingV2:BucketLoggingV2"
WEB_ACL = "aws:wafv2/webAcl:WebAcl"
WEB_ACL_ASSOCIATION = "aws:wafv2/webAclAssociation:WebAclAssociation"
WEB_ACL_LOGGING = "aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration"
FLOW_LOG = "aws:ec2/flowLog:FlowLog"
# AWS's managed rule groups the WAF must run: the common web exploits, and
# known-bad inputs (Log4Shell among them).
REQUIRED_WAF_GROUPS = ("AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet")


def _known(*values: Any) -> bool:
    return not any(unknown(v) for v in values)


# --- RDS ----------------------------------------------------------------------------


def _rds(resource: Resource, config: Mapping[str, Any]) -> Iterable[str]:
    p = resource.get
    checks: list[tuple[bool, str]] = [
        (is_true(p("storageEncrypted")) and _is_customer_key(p("kmsKeyId")),
         "storage is not encrypted with a customer key."),
        (p("publiclyAccessible") is not True, "is publicly accessible."),
        (includes(p("enabledCloudwatchLogsExports") or [], "postgresql"), "does not export its log to CloudWatch."),
        (is_true(p("iamDatabaseAuthenticationEnabled")), "has IAM authentication off."),
        (p("performanceInsightsEnabled") is not True or _is_customer_key(p("performanceInsightsKmsKeyId")),
         "encrypts Performance Insights with the AWS-managed key."),
        (not _known(p("caCertIdentifier")) or p("caCertIdentifier") in RDS_CAS,
         f"uses the certificate authority {p('caCertIdentifier')!r}, not one of {sorted(RDS_CAS)}."),
    ]  # fmt: skip
    # A read replica holds no data of its own: its source is protected,
    # Multi-AZ and backed up, and it must be removable when the count drops.
    if not p("replicateSourceDb"):
        checks += [
            (is_true(p("deletionProtection")), "has no deletion protection."),
            (p("skipFinalSnapshot") is not True and bool(p("finalSnapshotIdentifier")),
             "skips its final snapshot."),
        ]  # fmt: skip
        if not config.get("allowSingleAz"):
            checks.append((is_true(p("multiAz")), "is single-AZ."))
        minimum = int(config.get("minBackupRetentionDays", 14))
        retention = p("backupRetentionPeriod")
        if _known(retention):
            checks.append((isinstance(retention, (int, float)) and retention >= minimum,
                           f"keeps backups {retention or 0} days, under {minimum}."))  # fmt: skip
    return [message for ok, message in checks if not ok]


def _rds_tls(resources: Sequence[Resource], _config: Mapping[str, Any]) -> Iterable[Violation]:
    groups = [r for r in resources if r.type == RDS_PARAMETER_GROUP]
    for instance in (r for r in resources if r.type == RDS):
        mine = [g for g in groups if instance.refers_to("parameterGroupName", g)]
        if not mine:
            yield Violation(f"{instance.name}: uses no parameter group of the stack's, so TLS is not forced.",
                            instance.urn)  # fmt: skip
            continue
        parameters = mine[0].get("parameters") or []
        # Any entry or name not known yet may be the one that sets TLS: judged at `up`
        # (`at` returns an entry not known yet itself).
        if unknown(parameters) or any(unknown(at(p, "name")) for p in parameters):
            continue
        values = {str(p.get("name")): p.get("value") for p in mappings(parameters)}
        if not holds(values.get("rds.force_ssl"), lambda v: str(v) == "1"):
            yield Violation(f"{instance.name}: its parameter group does not set rds.force_ssl = 1.", instance.urn)
        if not holds(values.get("ssl_min_protocol_version"), lambda v: v in ("TLSv1.2", "TLSv1.3")):
            yield Violation(f"{instance.name}: its parameter group allows TLS below 1.2.", instance.urn)


# --- ElastiCache --------------------------------------------------------------------


def _elasticache(resource: Resource, config: Mapping[str, Any]) -> Iterable[str]:
    p = resource.get
    minimum = int(config.get("minSnapshotRetentionDays", 7))
    kept = p("snapshotRetentionLimit")
    enough = unknown(kept) or (_number(kept) or 0) >= minimum
    if resource.type == CACHE_CLUSTER:
        # A member of a replication group is judged as the group; one on its
        # own can neither encrypt at rest nor fail over.
        if p("replicationGroupId"):
            return []
        return ["is a cache cluster outside a replication group: no encryption at rest, no failover."]
    if resource.type == SERVERLESS_CACHE:
        # Encrypted at rest and in transit, across AZs, by design.
        serverless = [
            (enough, f"keeps snapshots {_days(kept)}, under {minimum}."),
            (bool(p("userGroupId")) or p("engine") == "memcached", "requires no authentication."),
        ]
        return [message for ok, message in serverless if not ok]
    checks = [
        (enough, f"keeps snapshots {_days(kept)}, under {minimum}."),
        (is_true(p("atRestEncryptionEnabled")), "is not encrypted at rest."),
        (is_true(p("transitEncryptionEnabled")), "is not encrypted in transit."),
        # "preferred" is the migration mode: TLS is offered and plaintext still accepted.
        (p("transitEncryptionMode") != "preferred", "still accepts plaintext connections (transitEncryptionMode "
         "preferred)."),
        (bool(p("authToken")) or bool(p("userGroupIds")), "requires no authentication."),
        (is_true(p("automaticFailoverEnabled")) and is_true(p("multiAzEnabled")), "has no Multi-AZ failover."),
    ]  # fmt: skip
    return [message for ok, message in checks if not ok]


def _number(value: Any) -> float | None:
    """A count as the provider takes it: `7`, `7.0` or `"7"`; None for anything else."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _days(value: Any) -> str:
    number = _number(value)
    if number is None or number <= 0:
        return "never" if not value else f"{value!r} days"
    return f"{int(number)} day{'s' if int(number) != 1 else ''}"


def _vault_locks(resources: Sequence[Resource], config: Mapping[str, Any]) -> Iterable[Violation]:
    """Every backup vault is locked, and for long enough: a lock whose
    minimum is a day lets anyone with the role delete tomorrow's recovery
    points."""
    minimum = int(config.get("minLockDays", 7))
    locks = [r for r in resources if r.type == VAULT_LOCK]
    for vault in (r for r in resources if r.type == BACKUP_VAULT):
        # By the vault's own name, or its name written out (a lock tied by dependsOn alone).
        name = vault.get("name")
        if not any(
            lock.refers_to("backupVaultName", vault) or (name and lock.get("backupVaultName") == name) for lock in locks
        ):
            yield Violation(f"{vault.name}: has no vault lock: its recovery points can be deleted at once.", vault.urn)
    for lock in locks:
        if len(lock.depends_on.get("backupVaultName", ())) > 1:
            # A lock applies to one vault: the name it is given comes from one.
            yield Violation(f"{lock.name}: its vault name comes from more than one resource.", lock.urn)
        days = lock.get("minRetentionDays")
        if unknown(days):
            continue
        if (_number(days) or 0) < minimum:
            yield Violation(f"{lock.name}: locks recovery points for {_days(days)}, under {minimum}.", lock.urn)


def _elasticache_user(resource: Resource, _config: Mapping[str, Any]) -> Iterable[str]:
    problems = []
    access = resource.get("accessString")
    if resource.get("userName") == "default" and not unknown(access) and str(access).split()[:1] != ["off"]:
        problems.append("the default user is on: every connection that does not name a user gets its rights.")
    mode = resource.get("authenticationMode")
    if resource.get("noPasswordRequired") is True or (
        isinstance(mode, Mapping) and mode.get("type") == "no-password-required"
    ):
        problems.append("logs in without a password.")
    return problems


# --- ECS ----------------------------------------------------------------------------


def _task_definition(resource: Resource, config: Mapping[str, Any]) -> Iterable[str]:
    containers = resource.container_definitions
    if containers is None:
        return []
    declared = {str(n) for n in config.get("nonSecretEnvironment") or []}
    if not isinstance(containers, list) or not all(isinstance(c, Mapping) for c in containers):
        return ["its containerDefinitions are not a list of containers."]
    problems = []
    for c in containers:
        name = c.get("name", "?")
        environment = c.get("environment") or []
        if not isinstance(environment, list) or not all(isinstance(v, Mapping) for v in environment):
            problems.append(f"container {name}: its environment is not a list of name and value.")
            environment = []
        if c.get("environmentFiles"):
            # Variables from a file in S3 reach the process unread by this rule or by `secrets`.
            problems.append(f"container {name} takes variables from environmentFiles, which nothing here can read.")
        for secret in c.get("secrets") or []:
            if isinstance(secret, Mapping) and ("value" in secret or not secret.get("valueFrom")):
                problems.append(f"container {name}: secret {secret.get('name')} is not a reference (valueFrom).")
        if c.get("privileged") is True:
            problems.append(f"container {name} is privileged.")
        added = ((c.get("linuxParameters") or {}).get("capabilities") or {}).get("add") or []
        if added:
            problems.append(f"container {name} adds Linux capabilities {sorted(added)}.")
        if c.get("readonlyRootFilesystem") is not True:
            problems.append(f"container {name} has a writable root filesystem.")
        user = str(c.get("user") or "")
        if not user or user.split(":")[0] in ("0", "root"):
            problems.append(f"container {name} runs as root.")
        if (c.get("logConfiguration") or {}).get("logDriver") != "awslogs":
            problems.append(f"container {name} does not log to CloudWatch.")
        for variable in environment:
            key, value = str(variable.get("name", "")), str(variable.get("value", ""))
            found = variable_problems(key, value)
            if not found and (undeclared := undeclared_variable(key, declared)):
                found = [undeclared]
            problems += [f"container {name}: {p}" for p in found]
        commands = {
            "command": c.get("command"),
            "entryPoint": c.get("entryPoint"),
            "healthCheck": (c.get("healthCheck") or {}).get("command"),
        }
        for label, command in commands.items():
            problems += [f"container {name}: {p}" for p in command_problems(f"its {label}", command or [])]
    return problems


def _service(resource: Resource, _config: Mapping[str, Any]) -> Iterable[str]:
    problems = []
    network = resource.get("networkConfiguration") or {}
    if not unknown(network) and network.get("assignPublicIp") is True:
        problems.append("tasks get public IP addresses.")
    breaker = resource.get("deploymentCircuitBreaker")
    if not (is_true(at(breaker, "enable")) and is_true(at(breaker, "rollback"))):
        problems.append("has no deployment circuit breaker with rollback.")
    if resource.get("enableExecuteCommand") is True:
        problems.append("allows ECS Exec, a shell in its running tasks.")
    return problems


def _cluster(resource: Resource, _config: Mapping[str, Any]) -> Iterable[str]:
    settings = resource.get("settings") or []
    on = holds(
        settings,
        lambda v: any(s.get("name") == "containerInsights" and s.get("value") in ("enabled", "enhanced")
                      for s in mappings(v)),
    )  # fmt: skip
    return [] if on else ["has Container Insights off."]


def _instance(resource: Resource, _config: Mapping[str, Any]) -> Iterable[str]:
    metadata = resource.get("metadataOptions") or {}
    root = resource.get("rootBlockDevice") or {}
    checks = [
        (holds(at(metadata, "httpTokens"), lambda v: v == "required"), "allows IMDSv1 (httpTokens not required)."),
        (is_true(at(root, "encrypted")), "has an unencrypted root volume."),
        (resource.get("associatePublicIpAddress") is not True, "has a public IP address."),
    ]
    return [message for ok, message in checks if not ok]


# --- load balancer ------------------------------------------------------------------


def _load_balancer(resource: Resource, _config: Mapping[str, Any]) -> Iterable[str]:
    p = resource.get
    logs = p("accessLogs") or {}
    checks = [
        (is_true(p("dropInvalidHeaderFields")), "forwards invalid HTTP headers."),
        (is_true(at(logs, "enabled")), "writes no access logs."),
        (is_true(p("enableDeletionProtection")), "has no deletion protection."),
    ]
    return [message for ok, message in checks if not ok]


def _listener(resource: Resource, config: Mapping[str, Any]) -> Iterable[str]:
    protocol = resource.get("protocol")
    if protocol == "HTTPS":
        policy = resource.get("sslPolicy")
        if _known(policy) and policy not in TLS12_POLICIES:
            return [f"allows TLS below 1.2 (policy {policy!r})."]
        return []
    if protocol != "HTTP" or config.get("allowPlainHttp"):
        return []
    actions = resource.get("defaultActions") or []
    if unknown(actions):
        return []
    redirects = bool(actions) and all(
        holds(at(a, "type"), lambda t: t == "redirect") and holds(at(a, "redirect", "protocol"), lambda p: p == "HTTPS")
        for a in actions
    )
    return [] if redirects else ["serves plain HTTP instead of redirecting to HTTPS."]


def _waf_problems(acl: Resource) -> list[str]:
    rules = acl.get("rules") or []
    if has_unknown(rules):
        return []
    problems = []
    groups = {}
    for rule in rules:
        managed = (rule.get("statement") or {}).get("managedRuleGroupStatement") or {}
        if managed.get("vendorName") == "AWS":
            groups[managed.get("name")] = rule
    for name in REQUIRED_WAF_GROUPS:
        if name not in groups:
            problems.append(f"does not run {name}.")
        elif "count" in (groups[name].get("overrideAction") or {}):
            problems.append(f"only counts what {name} matches (overrideAction count).")
    rate = [r for r in rules if (r.get("statement") or {}).get("rateBasedStatement")]
    if not any("block" in (r.get("action") or {}) for r in rate):
        problems.append("has no rate-based rule that blocks.")
    return problems


def _waf(resources: Sequence[Resource], _config: Mapping[str, Any]) -> Iterable[Violation]:
    acls = [r for r in resources if r.type == WEB_ACL]
    associations = [r for r in resources if r.type == WEB_ACL_ASSOCIATION]
    logging = [r for r in resources if r.type == WEB_ACL_LOGGING]
    for acl in acls:
        for problem in _waf_problems(acl):
            yield Violation(f"{acl.name}: {problem}", acl.urn)
        if not any(log.refers_to("resourceArn", acl) for log in logging):
            yield Violation(f"{acl.name}: logs no requests (a WebAclLoggingConfiguration).", acl.urn)
    for lb in (r for r in resources if r.type == LOAD_BALANCER):
        if lb.get("internal") is True or lb.get("loadBalancerType") not in (None, "application"):
            continue
        mine = [a for a in associations if a.refers_to("resourceArn", lb)]
        if not any(a.refers_to("webAclArn", acl) for a in mine for acl in acls):
            yield Violation(f"{lb.name}: faces the internet with no web ACL in front of it.", lb.urn)


# --- S3, as separate resources per bucket --------------------------------------------


def _configuring(resources: Sequence[Resource], typ: str, bucket: Resource) -> Resource | None:
    """The resource of `typ` that configures the bucket: its `bucket` came from
    the bucket (how a preview relates them, ids being unknown), or names it."""
    name = bucket.get("bucket")
    maybe = None
    for r in resources:
        if r.type != typ:
            continue
        if r.refers_to("bucket", bucket):
            return r
        if r.depends_on.get("bucket"):
            continue  # another bucket's
        value = r.get("bucket")
        if unknown(value) or unknown(name):
            maybe = maybe or r  # may be this bucket's once the names are known: judged at `up`
        elif value == name:
            return r
    return maybe


def _buckets(resources: Sequence[Resource], _config: Mapping[str, Any]) -> Iterable[Violation]:
    for bucket in (r for r in resources if r.type == BUCKET):
        sse = _configuring(resources, BUCKET_SSE, bucket)
        if sse is None and not bucket.get("serverSideEncryptionConfiguration"):
            yield Violation(f"{bucket.name}: has no default encryption.", bucket.urn)
        versioning = _configuring(resources, BUCKET_VERSIONING, bucket) or bucket
        if not holds(at(versioning.get("versioningConfiguration"), "status"), lambda v: v == "Enabled"):
            yield Violation(f"{bucket.name}: is not versioned.", bucket.urn)
        block = _configuring(resources, BUCKET_PAB, bucket)
        flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
        if block is None or not all(is_true(block.get(f)) for f in flags):
            yield Violation(f"{bucket.name}: public access is not blocked on all four settings.", bucket.urn)
        if not _denies_insecure_transport(_configuring(resources, BUCKET_POLICY, bucket)):
            yield Violation(f"{bucket.name}: its policy does not deny requests without TLS.", bucket.urn)


def _access_logged(resources: Sequence[Resource], _config: Mapping[str, Any]) -> Iterable[Violation]:
    """Every bucket's requests are logged, but the buckets logs go to: logging
    those would log their own writes."""
    loggings = [r for r in resources if r.type in (BUCKET_LOGGING, BUCKET_LOGGING_V2)]
    writers = [*loggings, *(r for r in resources if r.type in (LOAD_BALANCER, FLOW_LOG))]
    for bucket in (r for r in resources if r.type == BUCKET):
        destination = any(
            w.refers_to(key, bucket) for w in writers for key in ("targetBucket", "accessLogs", "logDestination")
        )
        if destination or any(log.refers_to("bucket", bucket) for log in loggings):
            continue
        yield Violation(f"{bucket.name}: logs no access to it (a BucketLogging to a log bucket).", bucket.urn)


def _redrive(queue: Resource) -> Mapping[str, Any] | None:
    """A queue's redrive policy ({} for none); None while it is not known."""
    raw = queue.get("redrivePolicy")
    if unknown(raw):
        return None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return {}  # not JSON, or "": no policy
    return mapping(raw)


def _receive_count(value: Any) -> bool:
    """AWS takes maxReceiveCount as a number or as its digits."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 1


def _dead_letters(resources: Sequence[Resource], _config: Mapping[str, Any]) -> Iterable[Violation]:
    """A queue that is another queue's dead-letter target needs none of its own:
    found by the relation the engine records (a preview knows no ARN yet), or
    by its ARN or name in the other's redrive policy."""
    queues = [r for r in resources if r.type == SQS_QUEUE]
    policies = {q.urn: _redrive(q) for q in queues}

    def sends_to(queue: Resource, dlq: Resource) -> bool:
        """Whether `queue` may send to `dlq`: until either is known, it may."""
        policy = policies[queue.urn]
        if policy is None or queue.refers_to("redrivePolicy", dlq):
            return True
        target, arn, name = policy.get("deadLetterTargetArn"), dlq.get("arn"), dlq.get("name")
        if not isinstance(target, str) or not target:
            return False
        if unknown(arn) or unknown(name):
            return True
        return target == arn or (isinstance(name, str) and bool(name) and target.endswith(f":{name}"))

    def is_dead_letter_queue(dlq: Resource) -> bool:
        return any(queue is not dlq and sends_to(queue, dlq) for queue in queues)

    for queue in queues:
        policy = policies[queue.urn]
        if policy is None or is_dead_letter_queue(queue):
            continue
        if not policy.get("deadLetterTargetArn"):
            yield Violation(
                f"{queue.name}: sends no failed message to a dead-letter queue (a redrivePolicy).", queue.urn
            )
        elif not _receive_count(policy.get("maxReceiveCount")):
            yield Violation(f"{queue.name}: its redrive policy sets no maxReceiveCount of 1 or more.", queue.urn)


def _denies_insecure_transport(policy: Resource | None) -> bool:
    if policy is None:
        return False
    text = policy.get("policy")
    if unknown(text):
        return True
    for statement in json.loads(text).get("Statement") or []:
        condition = (statement.get("Condition") or {}).get("Bool") or {}
        if statement.get("Effect") == "Deny" and str(condition.get("aws:SecureTransport")).lower() == "false":
            return True
    return False


# --- keys, secrets, registries, logs -----------------------------------------------------


def _kms(resource: Resource, _config: Mapping[str, Any]) -> Iterable[str]:
    return [] if is_true(resource.get("enableKeyRotation")) else ["does not rotate its key material."]


def _kms_policy(resource: Resource, _config: Mapping[str, Any]) -> Iterable[str]:
    """A key's own policy, or one attached to it by a KeyPolicy resource: both are judged alike."""
    policy = resource.get("policy")
    if not policy and resource.type == KMS_KEY:
        return ["has no key policy of its own: AWS's default lets any IAM policy of the account use it."]
    return key_policy_problems(policy)


CUSTOMER_KEY_PROPERTY = {
    REPLICATION_GROUP: "kmsKeyId",
    SNS_TOPIC: "kmsMasterKeyId",
    SQS_QUEUE: "kmsMasterKeyId",
    BACKUP_VAULT: "kmsKeyArn",
}


def _customer_key(resource: Resource, _config: Mapping[str, Any]) -> Iterable[str]:
    key = resource.get(CUSTOMER_KEY_PROPERTY[resource.type])
    if not _is_customer_key(key):
        return [f"is encrypted at rest with {'an AWS-managed key' if key else 'no customer key'}."]
    return []


def _is_customer_key(key: Any) -> bool:
    """Set, and not an AWS-managed key's alias (`alias/aws/sns`, or its ARN
    `arn:aws:kms:<region>:<account>:alias/aws/sns`). A key not known yet (a
    preview) is the engine's placeholder: set, and no alias."""
    return bool(key) and not re.search(r"(^|:)alias/aws/", str(key))


def _secret(resource: Resource, _config: Mapping[str, Any]) -> Iterable[str]:
    if _is_customer_key(resource.get("kmsKeyId")):
        return []
    return ["is encrypted with the AWS-managed key, not a customer key."]


def _ecr(resource: Resource, _config: Mapping[str, Any]) -> Iterable[str]:
    problems = []
    if not holds(resource.get("imageTagMutability"), lambda v: v in ("IMMUTABLE", "IMMUTABLE_WITH_EXCLUSION")):
        problems.append("allows tags to be overwritten.")
    if not is_true(at(resource.get("imageScanningConfiguration"), "scanOnPush")):
        problems.append("does not scan images on push.")
    return problems


def _log_group(resource: Resource, config: Mapping[str, Any]) -> Iterable[str]:
    problems = []
    days = resource.get("retentionInDays")
    minimum = int(config.get("minRetentionDays", 30))
    if _known(days) and (not days or days < minimum):
        problems.append(f"keeps logs {'forever' if not days else f'{days} days'}; the policy wants {minimum} or more.")
    if not _is_customer_key(resource.get("kmsKeyId")):
        problems.append("is not encrypted with a customer key.")
    return problems


# --- tags ---------------------------------------------------------------------------


def _default_tags(provider: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A provider's default tags; None while they are not known."""
    raw = (provider or {}).get("defaultTags")
    if unknown(raw):
        return None
    if isinstance(raw, str):
        raw = json.loads(raw)
    tags = mapping(raw).get("tags")
    if unknown(tags):
        return None
    return dict(tags) if isinstance(tags, Mapping) else {}


def _required_tags(resources: Sequence[Resource], _config: Mapping[str, Any]) -> Iterable[Violation]:
    """Judged per resource but over every aws: type, which a resource rule cannot list."""
    for resource in resources:
        own = resource.get("tags") or {}
        defaults = _default_tags(resource.provider)
        if not resource.type.startswith("aws:") or unknown(own) or defaults is None:
            continue
        tags = {**defaults, **mapping(own)}
        missing = [t for t in REQUIRED_TAGS if not tags.get(t)]
        if missing:
            yield Violation(f"{resource.name}: lacks the tags {missing}.", resource.urn)


def _providers_tag(resource: Resource, _config: Mapping[str, Any]) -> Iterable[str]:
    defaults = _default_tags(resource.props)
    missing = [] if defaults is None else [t for t in REQUIRED_TAGS if not defaults.get(t)]
    return [f"sets no default tags {missing}."] if missing else []


AWS_RESOURCE_RULES: list[Rule] = [
    Rule(
        "aws-rds-hardened",
        "RDS is encrypted with a customer key, private, Multi-AZ, deletion-protected with a final snapshot, keeps "
        "backups long enough, exports its log, uses IAM auth and a current certificate authority (Checkov "
        "CKV_AWS_16, 17, 157, 293, 133, 129, 161, 354, 211). A read replica, which holds no data of its own, "
        "is held to all but Multi-AZ, deletion protection, the final snapshot and backups.",
        "critical",
        "Set the listed properties on the instance (components/aws/database.py); a staging stack may set the "
        "policy config allowSingleAz.",
        (RDS,),
        _rds,
        config_schema={
            "allowSingleAz": {"type": "boolean", "default": False},
            "minBackupRetentionDays": {"type": "integer", "default": 14},
        },
    ),
    Rule(
        "aws-elasticache-hardened",
        "ElastiCache is encrypted at rest and in transit with plaintext refused, requires authentication (users "
        "of a user group, or an auth token), fails over across AZs and keeps a week of snapshots (Checkov "
        "CKV_AWS_29, 30, 31).",
        "critical",
        "Enable atRestEncryption, transitEncryption with userGroupIds (or an authToken), automaticFailover and "
        "multiAz; set snapshotRetentionLimit (aws.cacheSnapshotRetentionDays) to 7 or more.",
        (REPLICATION_GROUP, CACHE_CLUSTER, SERVERLESS_CACHE),
        _elasticache,
        config_schema={"minSnapshotRetentionDays": {"type": "integer", "default": 7}},
    ),
    Rule(
        "aws-elasticache-users-authenticate",
        "ElastiCache users log in with a password, and the default user is off: a client that names no user "
        "gets no rights.",
        "high",
        "Give every user a password and the default user the access string `off -@all`.",
        (ELASTICACHE_USER,),
        _elasticache_user,
    ),
    Rule(
        "aws-ecs-task-hardened",
        "Every container of a task runs as a non-root user on a read-only root filesystem, unprivileged and with "
        "no added Linux capability, logs to "
        "CloudWatch, and takes its secrets by reference: never in `environment`, a command, an entry point or a "
        "health check (a `NAME=value` assignment in a command included), judged by the variable's name and by "
        "the value itself (Checkov CKV_AWS_336, 334, 97); a plain variable must be one the platform declares "
        "non-secret (or the rule's `nonSecretEnvironment`), no variable comes from environmentFiles, and every "
        "secret is a reference.",
        "critical",
        "Set user, readonlyRootFilesystem and awslogs; pass secrets in `secrets` with valueFrom.",
        (TASK_DEFINITION,),
        _task_definition,
    ),
    Rule(
        "aws-ecs-service-private",
        "Services give their tasks no public IP, roll back failed deployments and allow no ECS Exec shell "
        "(Checkov CKV_AWS_333).",
        "high",
        "Set assignPublicIp false, deploymentCircuitBreaker {enable, rollback} and leave enableExecuteCommand off.",
        (SERVICE,),
        _service,
    ),
    Rule(
        "aws-ecs-container-insights",
        "ECS clusters have Container Insights on (Checkov CKV_AWS_65).",
        "medium",
        "Add the containerInsights setting with value enabled.",
        (CLUSTER,),
        _cluster,
    ),
    Rule(
        "aws-ec2-hardened",
        "Instances require IMDSv2, encrypt their root volume and have no public address (Checkov CKV_AWS_79, 8, 88).",
        "high",
        "Set metadataOptions.httpTokens required, rootBlockDevice.encrypted, associatePublicIpAddress false.",
        (EC2_INSTANCE,),
        _instance,
    ),
    Rule(
        "aws-alb-hardened",
        "Load balancers drop invalid headers, write access logs and are deletion-protected (Checkov CKV_AWS_131, "
        "91, 150).",
        "high",
        "Set dropInvalidHeaderFields, accessLogs.enabled and enableDeletionProtection.",
        (LOAD_BALANCER,),
        _load_balancer,
    ),
    Rule(
        "aws-alb-https",
        "Listeners serve HTTPS with a TLS 1.2+ policy; HTTP only redirects to HTTPS (Checkov CKV_AWS_2, 103, "
        "CKV2_AWS_20). A stack without a certificate yet may set the policy config allowPlainHttp.",
        "high",
        "Set aws.domainName and aws.certificateArn in the stack config.",
        (LISTENER,),
        _listener,
        config_schema={"allowPlainHttp": {"type": "boolean", "default": False}},
    ),
    Rule(
        "aws-kms-rotation",
        "Customer KMS keys rotate their key material (Checkov CKV_AWS_7).",
        "high",
        "Set enableKeyRotation.",
        (KMS_KEY,),
        _kms,
    ),
    Rule(
        "aws-kms-key-policy",
        "Customer KMS keys carry a least-privilege key policy of their own (a KeyPolicy resource's is judged "
        "alike): AWS's default (the account allowed kms:*, so any IAM policy of the account may use the key) is "
        "refused, as is a policy naming more than one account, or any statement that lets the "
        "account as a whole, or anyone, encrypt, decrypt, make data keys or grants except through named "
        "services (kms:ViaService, with kms:CallerAccount pinned for '*'), or lets a service principal use the "
        "key without aws:SourceAccount, aws:SourceArn or an encryption context of this account "
        "(Checkov CKV2_AWS_64, CKV_AWS_109).",
        "high",
        "Let the account administer the key (kms:Describe*, kms:Put*, kms:ScheduleKeyDeletion, ...) without "
        "kms:*; grant use to named roles, or through the services that use the key (kms:ViaService "
        "<service>.<region>.amazonaws.com and kms:CallerAccount); condition service principals on this account.",
        (KMS_KEY, KEY_POLICY),
        _kms_policy,
    ),
    Rule(
        "aws-encryption-customer-key",
        "ElastiCache, SNS topics, SQS queues and backup vaults encrypt at rest with a customer KMS key, whose "
        "policy and rotation the platform controls; SQS's own SSE key is AWS's (Checkov CKV_AWS_191, 26, 166, 27).",
        "high",
        "Set kmsKeyId / kmsMasterKeyId / kmsKeyArn to the platform key.",
        (REPLICATION_GROUP, SNS_TOPIC, SQS_QUEUE, BACKUP_VAULT),
        _customer_key,
    ),
    Rule(
        "aws-secret-customer-key",
        "Secrets Manager secrets are encrypted with a customer KMS key (Checkov CKV_AWS_149).",
        "high",
        "Set kmsKeyId to the platform key.",
        (SECRET,),
        _secret,
    ),
    Rule(
        "aws-ecr-immutable-scanned",
        "ECR repositories have immutable tags and scan on push (Checkov CKV_AWS_51, 163).",
        "high",
        "Set imageTagMutability IMMUTABLE and imageScanningConfiguration.scanOnPush.",
        (ECR,),
        _ecr,
    ),
    Rule(
        "aws-log-retention",
        "Log groups expire their logs and are encrypted with a customer key (Checkov CKV_AWS_66, 158).",
        "medium",
        "Set retentionInDays (aws.logRetentionDays) and kmsKeyId.",
        (LOG_GROUP,),
        _log_group,
        config_schema={"minRetentionDays": {"type": "integer", "default": 30}},
    ),
    Rule(
        "aws-provider-default-tags",
        "Every AWS provider sets the default tags app, environment, owner and cost-center, so every taggable "
        "resource carries them.",
        "medium",
        "Pass default_tags to the aws.Provider (components/aws/platform.py).",
        (AWS_PROVIDER,),
        _providers_tag,
    ),
]

AWS_STACK_RULES: list[Rule] = [
    Rule(
        "aws-backup-vault-locked",
        "Every AWS Backup vault has a vault lock that keeps each recovery point at least a week: without one, "
        "whoever may delete recovery points deletes every backup at once. The lock is in governance mode, so "
        "only a principal allowed backup:DeleteBackupVaultLockConfiguration can lift it (compliance mode "
        "cannot be undone by anyone, AWS included).",
        "high",
        "Declare aws.backup.VaultLockConfiguration for the vault with minRetentionDays "
        "(aws.backupVaultLockMinDays) of 7 or more.",
        check_stack=_vault_locks,
        config_schema={"minLockDays": {"type": "integer", "default": 7}},
    ),
    Rule(
        "aws-s3-hardened",
        "Buckets have default encryption, versioning, all four public-access blocks and a policy that refuses "
        "requests without TLS (Checkov CKV_AWS_19, 21, CKV2_AWS_6, CKV_AWS_379).",
        "critical",
        "Declare the bucket with components/aws/buckets.py's private_bucket.",
        check_stack=_buckets,
    ),
    Rule(
        "aws-rds-tls-enforced",
        "Every RDS instance uses a parameter group of the stack's that forces TLS (rds.force_ssl = 1) at 1.2 or "
        "newer; the RDS default accepts plaintext (Checkov CKV2_AWS_69).",
        "critical",
        "Keep rds.force_ssl and ssl_min_protocol_version in components/model/postgres_conf.py rds_parameters.",
        check_stack=_rds_tls,
    ),
    Rule(
        "aws-alb-waf",
        "Every internet-facing load balancer sits behind a web ACL that runs AWS's common and known-bad-inputs "
        "rule groups in blocking mode and a blocking rate-based rule, and logs its requests (Checkov "
        "CKV2_AWS_28, 31, CKV_AWS_192).",
        "high",
        "Keep the Api component's web ACL, its association and its logging configuration (components/aws/waf.py).",
        check_stack=_waf,
    ),
    Rule(
        "aws-s3-access-logged",
        "Every bucket that is not itself a log destination logs the requests made to it (Checkov CKV_AWS_18).",
        "medium",
        "Declare the bucket with private_bucket(..., access_log_bucket=...) (components/aws/buckets.py).",
        check_stack=_access_logged,
    ),
    Rule(
        "aws-sqs-dead-letter",
        "Every SQS queue moves a message that keeps failing to a dead-letter queue after a bounded number of "
        "receives, so a poison message neither cycles forever nor is lost; a queue that is itself another's "
        "dead-letter queue needs none.",
        "medium",
        "Give the queue a redrivePolicy naming its dead-letter queue (deadLetterTargetArn) and a maxReceiveCount.",
        check_stack=_dead_letters,
    ),
    Rule(
        "aws-required-tags",
        "Every AWS resource carries app, environment, owner and cost-center, through its provider's default "
        "tags or its own.",
        "medium",
        "Create the resource under the platform's provider, which carries the default tags.",
        check_stack=_required_tags,
    ),
]
