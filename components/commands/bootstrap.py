"""`make aws-bootstrap`: what an AWS stack needs before its first `pulumi up`,
the state bucket and the key for its secrets, made once and safe to run again.

    python -m components.commands.bootstrap --bucket NAME --region REGION [--alias NAME]

The key: symmetric, rotated yearly, under an alias. The bucket: versioned (a
bad state write can be undone), encrypted with that key, every public access
blocked, ownership enforced (no ACLs), and a policy that refuses anything but
TLS. What exists already is left as it is and checked: an existing bucket
without versioning or with public access allowed is named, not used. It ends
by printing the STATE and SECRETS values `make aws-preview` and `make aws-up`
take.
"""

from __future__ import annotations

import argparse
import json
import re
import sys

from components.commands.aws_cli import AwsError, aws
from components.commands.errors import CommandError

BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
ALIAS = re.compile(r"^[A-Za-z0-9/_-]{1,250}$")
REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]$")


def key(region: str, alias: str) -> str:
    """The alias's key ARN, the key made first when the alias is new."""
    try:
        found = aws(region, "kms", "describe-key", "--key-id", f"alias/{alias}")
        arn = str(found["KeyMetadata"]["Arn"])
        print(f"key alias/{alias} exists: {arn}")
    except AwsError as exc:
        if exc.code != "NotFoundException":
            raise
        made = aws(
            region, "kms", "create-key", "--description", "Pulumi state secrets", "--key-usage", "ENCRYPT_DECRYPT"
        )
        arn = str(made["KeyMetadata"]["Arn"])
        aws(region, "kms", "create-alias", "--alias-name", f"alias/{alias}", "--target-key-id", arn)
        print(f"key alias/{alias} made: {arn}")
    aws(region, "kms", "enable-key-rotation", "--key-id", arn)
    return arn


def tls_only(bucket: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "TLSOnly",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ],
        }
    )


def bucket(region: str, name: str, key_arn: str) -> None:
    try:
        aws(region, "s3api", "head-bucket", "--bucket", name)
        exists = True
    except AwsError as exc:
        if exc.code not in ("404", "NotFound", "NoSuchBucket", ""):
            raise
        exists = False
    if exists:
        versioning = aws(region, "s3api", "get-bucket-versioning", "--bucket", name)
        problems = [] if versioning.get("Status") == "Enabled" else ["versioning is off"]
        try:
            blocked = aws(region, "s3api", "get-public-access-block", "--bucket", name)
        except AwsError as exc:
            if exc.code != "NoSuchPublicAccessBlockConfiguration":
                raise
            problems.append("public access is not blocked")
        else:
            settings = blocked["PublicAccessBlockConfiguration"]
            problems += [f"{setting} is off" for setting, on in sorted(settings.items()) if not on]
        if problems:
            raise CommandError(f"bucket {name} exists but {'; '.join(problems)}: fix it or choose another name")
        print(f"bucket {name} exists, versioned and private")
        return
    create = ["s3api", "create-bucket", "--bucket", name, "--object-ownership", "BucketOwnerEnforced"]
    if region != "us-east-1":
        create += ["--create-bucket-configuration", json.dumps({"LocationConstraint": region})]
    aws(region, *create)
    aws(region, "s3api", "put-public-access-block", "--bucket", name, "--public-access-block-configuration",
        "BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true")  # fmt: skip
    aws(region, "s3api", "put-bucket-versioning", "--bucket", name, "--versioning-configuration", "Status=Enabled")
    encryption = {
        "Rules": [
            {
                "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn},
                "BucketKeyEnabled": True,
            }
        ]
    }
    aws(region, "s3api", "put-bucket-encryption", "--bucket", name, "--server-side-encryption-configuration",
        json.dumps(encryption))  # fmt: skip
    aws(region, "s3api", "put-bucket-policy", "--bucket", name, "--policy", tls_only(name))
    print(f"bucket {name} made: versioned, encrypted with the key, private, TLS only")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m components.commands.bootstrap", description=__doc__.split("\n")[0])
    parser.add_argument("--bucket", required=True, help="the state bucket's name (globally unique)")
    parser.add_argument("--region", required=True, help="where the bucket and the key live")
    parser.add_argument("--alias", default="wondernest-pulumi", help="the key's alias (default wondernest-pulumi)")
    parser.add_argument("--prefix", default="wondernest", help="the stacks' folder in the bucket")
    args = parser.parse_args(argv)
    problems = [
        message
        for ok, message in (
            (BUCKET.match(args.bucket), f"--bucket {args.bucket!r}: 3 to 63 lower-case letters, digits, '.' and '-'"),
            (REGION.match(args.region), f"--region {args.region!r}: a region like eu-west-1"),
            (ALIAS.match(args.alias), f"--alias {args.alias!r}: letters, digits, '/', '_' and '-'"),
        )
        if not ok
    ]
    if problems:
        raise CommandError("" + "; ".join(problems))
    try:
        arn = key(args.region, args.alias)
        bucket(args.region, args.bucket, arn)
    except AwsError as exc:
        raise CommandError(f"{exc}") from None
    print(f"STATE=s3://{args.bucket}/{args.prefix}")
    print(f"SECRETS='awskms://alias/{args.alias}?region={args.region}'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
