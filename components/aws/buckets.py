"""A private S3 bucket: owner-enforced, public access blocked, versioned, encrypted, TLS only."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.aws.iam import policy_document


@dataclass(frozen=True)
class PrivateBucket:
    bucket: aws.s3.Bucket
    policy: aws.s3.BucketPolicy
    """What a writer must wait for: until it exists, writes may be refused."""


def private_bucket(
    resource_name: str,
    *,
    bucket_name: pulumi.Input[str],
    kms_key_arn: pulumi.Input[str] | None,
    lifecycle: Sequence[aws.s3.BucketLifecycleConfigurationRuleArgs],
    extra_statements: Sequence[dict[str, Any]] = (),
    parent: pulumi.Resource,
) -> PrivateBucket:
    """`kms_key_arn` None means SSE-S3: the only encryption ALB access logs accept.
    Bucket names are global: callers qualify them with the account id."""
    child = pulumi.ResourceOptions(parent=parent)
    bucket = aws.s3.Bucket(resource_name, bucket=bucket_name, force_destroy=False, opts=child)
    owned = pulumi.ResourceOptions(parent=bucket)
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
    aws.s3.BucketVersioning(
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
    return PrivateBucket(bucket, policy)


def expire_noncurrent(days: int) -> aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs:
    return aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(noncurrent_days=days)


def abort_uploads() -> aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs:
    return aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(days_after_initiation=7)
