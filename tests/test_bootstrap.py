"""`make aws-bootstrap` with a fake `aws` CLI that answers as the real one
does: a new account gets its key and bucket; a second run changes nothing; a
bucket that exists unsafely is named, not used."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.fake_commands import FakeCommands

ROOT = Path(__file__).resolve().parents[1]
KEY = "arn:aws:kms:eu-west-1:123456789012:key/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"


def fake_aws(box: FakeCommands, *, key_exists: bool, bucket: str | None) -> None:
    """`bucket`: None (absent), "safe" or "unversioned"."""
    metadata = json.dumps({"KeyMetadata": {"Arn": KEY}})
    missing_key = "An error occurred (NotFoundException) when calling the DescribeKey operation: Alias not found"
    missing_bucket = "An error occurred (404) when calling the HeadBucket operation: Not Found"
    settings = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
    blocked = json.dumps({"PublicAccessBlockConfiguration": dict.fromkeys(settings, True)})
    versioning = json.dumps({"Status": "Enabled"} if bucket == "safe" else {})
    answers = {
        "kms describe-key": f"echo '{metadata}'" if key_exists else f"echo '{missing_key}' >&2; exit 254",
        "kms create-key": f"echo '{metadata}'",
        "s3api head-bucket": "exit 0" if bucket else f"echo '{missing_bucket}' >&2; exit 254",
        "s3api get-bucket-versioning": f"echo '{versioning}'",
        "s3api get-public-access-block": f"echo '{blocked}'",
    }
    cases = "".join(f'  "{pattern}") {answer} ;;\n' for pattern, answer in answers.items())
    box.tool("aws", f'case "$1 $2" in\n{cases}esac')


def bootstrap(box: FakeCommands, *args: str) -> subprocess.CompletedProcess[str]:
    return box.run_module("components.commands.bootstrap", *args)


def test_a_new_account_gets_a_rotated_key_and_a_private_versioned_tls_only_bucket(tmp_path: Path) -> None:
    box = FakeCommands(tmp_path)
    fake_aws(box, key_exists=False, bucket=None)
    result = bootstrap(box, "--bucket", "acme-pulumi-state", "--region", "eu-west-1")
    assert result.returncode == 0, result.stderr
    calls = [c.split(" --region")[0] for c in box.called()]
    assert calls[:4] == [
        "aws kms describe-key --key-id alias/wondernest-pulumi",
        "aws kms create-key --description Pulumi state secrets --key-usage ENCRYPT_DECRYPT",
        f"aws kms create-alias --alias-name alias/wondernest-pulumi --target-key-id {KEY}",
        f"aws kms enable-key-rotation --key-id {KEY}",
    ]
    made = " ".join(calls[4:])
    assert "create-bucket --bucket acme-pulumi-state --object-ownership BucketOwnerEnforced" in made
    assert '--create-bucket-configuration {"LocationConstraint": "eu-west-1"}' in made
    assert "BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true" in made
    assert "put-bucket-versioning --bucket acme-pulumi-state --versioning-configuration Status=Enabled" in made
    assert f'"KMSMasterKeyID": "{KEY}"' in made and '"aws:SecureTransport": "false"' in made
    assert result.stdout.splitlines()[-2:] == [
        "STATE=s3://acme-pulumi-state/wondernest",
        "SECRETS='awskms://alias/wondernest-pulumi?region=eu-west-1'",
    ]


def test_a_second_run_changes_nothing(tmp_path: Path) -> None:
    box = FakeCommands(tmp_path)
    fake_aws(box, key_exists=True, bucket="safe")
    result = bootstrap(box, "--bucket", "acme-pulumi-state", "--region", "eu-west-1")
    assert result.returncode == 0, result.stderr
    changing = [c for c in box.called() if any(verb in c for verb in ("create-", "put-"))]
    assert changing == []


def test_an_unsafe_bucket_or_a_bad_name_is_refused(tmp_path: Path) -> None:
    box = FakeCommands(tmp_path)
    fake_aws(box, key_exists=True, bucket="unversioned")
    unsafe = bootstrap(box, "--bucket", "acme-pulumi-state", "--region", "eu-west-1")
    assert unsafe.returncode == 1 and "bucket acme-pulumi-state exists but versioning is off" in unsafe.stderr
    bad = bootstrap(box, "--bucket", "Acme_State", "--region", "europe", "--alias", "a b")
    assert bad.returncode == 1
    assert "--bucket 'Acme_State'" in bad.stderr and "--region 'europe'" in bad.stderr and "--alias 'a b'" in bad.stderr
