"""A private S3 bucket: owner-enforced, public access blocked, versioned, encrypted, TLS only."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.aws.iam import policy_document

# S3 server access logs land under this prefix of the log bucket, one folder per bucket.
ACCESS_LOG_PREFIX = "s3-access"


@dataclass(frozen=True)
class PrivateBucket:
    bucket: aws.s3.Bucket
    policy: aws.s3.BucketPolicy
    """What a writer must wait for: until it exists, writes may be refused."""
    versioning: aws.s3.BucketVersioning
    """What replication must wait for: S3 refuses it on an unversioned bucket."""


def access_log_statement(log_bucket_name: pulumi.Input[str], account_id: pulumi.Input[str]) -> dict[str, Any]:
    """Lets S3's log delivery write server access logs of this account's buckets
    into a log bucket (which must use SSE-S3: log delivery cannot use a KMS key)."""
    return {
        "Sid": "S3ServerAccessLogs",
        "Effect": "Allow",
        "Principal": {"Service": "logging.s3.amazonaws.com"},
        "Action": "s3:PutObject",
        "Resource": pulumi.Output.concat("arn:aws:s3:::", log_bucket_name, f"/{ACCESS_LOG_PREFIX}/*"),
        "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
    }


def private_bucket(
    resource_name: str,
    *,
    bucket_name: pulumi.Input[str],
    kms_key_arn: pulumi.Input[str] | None,
    lifecycle: Sequence[aws.s3.BucketLifecycleConfigurationRuleArgs],
    extra_statements: Sequence[dict[str, Any]] = (),
    access_log_bucket: aws.s3.Bucket | None = None,
    provider: aws.Provider | None = None,
    parent: pulumi.Resource,
) -> PrivateBucket:
    """`kms_key_arn` None means SSE-S3: the only encryption ALB access logs and
    S3 server access logs accept. `access_log_bucket` (in the same region) gets
    this bucket's server access logs; a bucket that is itself a log destination
    has none. Bucket names are global: callers qualify them with the account id."""
    child = pulumi.ResourceOptions(parent=parent, provider=provider)
    bucket = aws.s3.Bucket(resource_name, bucket=bucket_name, force_destroy=False, opts=child)
    owned = pulumi.ResourceOptions(parent=bucket)
    if access_log_bucket is not None:
        aws.s3.BucketLogging(
            resource_name,
            bucket=bucket.id,
            target_bucket=access_log_bucket.id,
            target_prefix=f"{ACCESS_LOG_PREFIX}/{resource_name}/",
            opts=owned,
        )
    aws.s3.BucketOwnershipControls(
        resource_name,
        bucket=bucket.id,
        rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
        opts=owned,
    )
    block = aws.s3.BucketPublicAccessBlock(
        resource_name,
        bucket=bucket.id,
        block_public_acls=True,
        block_public_policy=True,
        ignore_public_acls=True,
        restrict_public_buckets=True,
        opts=owned,
    )
    versioning = aws.s3.BucketVersioning(
        resource_name,
        bucket=bucket.id,
        versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"),
        opts=owned,
    )
    default = (
        aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
            sse_algorithm="aws:kms", kms_master_key_id=kms_key_arn
        )
        if kms_key_arn is not None
        else aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
            sse_algorithm="AES256"
        )
    )
    aws.s3.BucketServerSideEncryptionConfiguration(
        resource_name,
        bucket=bucket.id,
        rules=[
            aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=default,
                bucket_key_enabled=kms_key_arn is not None,
            )
        ],
        opts=owned,
    )
    objects = bucket.arn.apply(lambda arn: f"{arn}/*")
    policy = aws.s3.BucketPolicy(
        resource_name,
        bucket=bucket.id,
        policy=policy_document(
            [
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [bucket.arn, objects],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                },
                *extra_statements,
            ]
        ),
        # S3 refuses a policy while the public access block is being applied.
        opts=pulumi.ResourceOptions(parent=bucket, depends_on=[block]),
    )
    aws.s3.BucketLifecycleConfiguration(resource_name, bucket=bucket.id, rules=list(lifecycle), opts=owned)
    return PrivateBucket(bucket, policy, versioning)


def expire_noncurrent(days: int) -> aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs:
    return aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(noncurrent_days=days)


def abort_uploads() -> aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs:
    return aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(days_after_initiation=7)


def expire_logs(days: int) -> list[aws.s3.BucketLifecycleConfigurationRuleArgs]:
    """A log bucket's lifecycle: every object, current or not, gone after its retention."""
    return [
        aws.s3.BucketLifecycleConfigurationRuleArgs(
            id="expire",
            status="Enabled",
            filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
            expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=days),
            noncurrent_version_expiration=expire_noncurrent(7),
            abort_incomplete_multipart_upload=abort_uploads(),
        )
    ]
