"""What AWS would answer: ids, ARNs and endpoints shaped like the real ones.

Each resource's outputs are derived from its logical name alone, so two
evaluations see the same values and a test can predict them.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

ACCOUNT = "123456789012"
REGION = "eu-west-1"
ZONES = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
MASTER_PASSWORD = "RdsManaged" + "0" * 22


def _hex(name: str, n: int) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:n]


def ec2_id(prefix: str, name: str) -> str:
    """The id the mocks give an EC2 resource of that logical name."""
    return f"{prefix}-{_hex(name, 17)}"


def _uuid(name: str) -> str:
    return str(uuid.UUID(_hex(name, 32)))


# Resource id prefixes EC2 uses, by type.
_EC2_IDS = {
    "aws:ec2/vpc:Vpc": "vpc",
    "aws:ec2/subnet:Subnet": "subnet",
    "aws:ec2/securityGroup:SecurityGroup": "sg",
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": "sg",
    "aws:ec2/internetGateway:InternetGateway": "igw",
    "aws:ec2/natGateway:NatGateway": "nat",
    "aws:ec2/eip:Eip": "eipalloc",
    "aws:ec2/routeTable:RouteTable": "rtb",
    "aws:ec2/vpcEndpoint:VpcEndpoint": "vpce",
    "aws:ec2/flowLog:FlowLog": "fl",
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": "sgr",
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": "sgr",
    "aws:ec2/instance:Instance": "i",
}


def aws_mock_state(typ: str, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    state = dict(inputs)
    module = typ.split(":")[1].split("/")[0]
    physical = str(inputs.get("name") or f"{name}-{_hex(name, 7)}")
    state.setdefault("name", physical)
    state.setdefault("arn", f"arn:aws:{module}:{REGION}:{ACCOUNT}:{physical}")
    rid = ec2_id(_EC2_IDS[typ], name) if typ in _EC2_IDS else physical
    if typ == "aws:kms/key:Key":
        rid = _uuid(name)
        state.update(arn=f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{rid}", keyId=rid)
    elif typ == "aws:iam/role:Role":
        state["arn"] = f"arn:aws:iam::{ACCOUNT}:role/{physical}"
    elif typ == "aws:secretsmanager/secretVersion:SecretVersion":
        # A new value is a new version: the id follows the value, as in AWS.
        state["versionId"] = _uuid(f"{name}:{inputs.get('secretString')}")
    elif typ == "aws:secretsmanager/secret:Secret":
        state["arn"] = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{physical}-{_hex(name, 6)}"
        rid = state["arn"]
    elif typ == "aws:rds/instance:Instance":
        ident = inputs["identifier"]
        state.update(
            arn=f"arn:aws:rds:{REGION}:{ACCOUNT}:db:{ident}",
            address=f"{ident}.c{_hex(name, 11)}.{REGION}.rds.amazonaws.com",
            masterUserSecrets=[
                {
                    "secretArn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:rds!db-{_uuid(name)}-AbCdEf",
                    "kmsKeyId": inputs.get("masterUserSecretKmsKeyId"),
                    "secretStatus": "active",
                }
            ],
        )
        rid = ident
    elif typ == "aws:elasticache/replicationGroup:ReplicationGroup":
        group = inputs["replicationGroupId"]
        state.update(
            arn=f"arn:aws:elasticache:{REGION}:{ACCOUNT}:replicationgroup:{group}",
            primaryEndpointAddress=f"master.{group}.{_hex(name, 6)}.euw1.cache.amazonaws.com",
        )
        rid = group
    elif typ == "aws:amp/workspace:Workspace":
        rid = f"ws-{_uuid(name)}"
        state.update(
            arn=f"arn:aws:aps:{REGION}:{ACCOUNT}:workspace/{rid}",
            prometheusEndpoint=f"https://aps-workspaces.{REGION}.amazonaws.com/workspaces/{rid}/",
        )
    elif typ == "aws:grafana/workspace:Workspace":
        rid = f"g-{_hex(name, 10)}"
        state["endpoint"] = f"{rid}.grafana-workspace.{REGION}.amazonaws.com"
    elif typ == "aws:grafana/workspaceServiceAccount:WorkspaceServiceAccount":
        state["serviceAccountId"] = _hex(name, 8)
    elif typ == "aws:grafana/workspaceServiceAccountToken:WorkspaceServiceAccountToken":
        state["key"] = "glsa_" + _hex(name + "token", 32)
    elif typ == "aws:acm/certificate:Certificate":
        domain = str(inputs["domainName"])
        state.update(
            arn=f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/{_uuid(name)}",
            domainValidationOptions=[
                {
                    "domainName": domain,
                    "resourceRecordName": f"_{_hex(name, 32)}.{domain}.",
                    "resourceRecordType": "CNAME",
                    "resourceRecordValue": f"_{_hex(name + 'v', 32)}.xlfgrmvvlj.acm-validations.aws.",
                }
            ],
        )
    elif typ == "aws:route53/record:Record":
        state["fqdn"] = str(inputs["name"]).rstrip(".")
    elif typ in ("aws:lb/loadBalancer:LoadBalancer", "aws:lb/targetGroup:TargetGroup"):
        kind = "loadbalancer/app" if typ.endswith("LoadBalancer") else "targetgroup"
        suffix = f"{'app/' if kind != 'targetgroup' else 'targetgroup/'}{physical}/{_hex(name, 16)}"
        state.update(
            arn=f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:{kind}/{physical}/{_hex(name, 16)}",
            arnSuffix=suffix,
            dnsName=f"{physical}-{_hex(name, 9)}.{REGION}.elb.amazonaws.com",
            # eu-west-1's ALB hosted zone, as AWS lists it.
            zoneId="Z32O12XQLNTSW2",
        )
        rid = state["arn"]
    elif typ == "aws:ecs/cluster:Cluster":
        state["arn"] = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{physical}"
    elif typ == "aws:ecs/taskDefinition:TaskDefinition":
        state["arn"] = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{inputs['family']}:1"
        rid = inputs["family"]
    elif typ == "aws:ecr/repository:Repository":
        state.update(
            registryId=ACCOUNT,
            repositoryUrl=f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{physical}",
            arn=f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{physical}",
        )
    elif typ == "aws:s3/bucket:Bucket":
        state.update(bucket=inputs["bucket"], arn=f"arn:aws:s3:::{inputs['bucket']}")
        rid = inputs["bucket"]
    elif typ == "aws:sns/topic:Topic":
        state["arn"] = f"arn:aws:sns:{REGION}:{ACCOUNT}:{physical}"
    elif typ == "aws:sqs/queue:Queue":
        # The provider's id for a queue is its URL.
        rid = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{physical}"
        state.update(arn=f"arn:aws:sqs:{REGION}:{ACCOUNT}:{physical}", url=rid)
    elif typ == "aws:sesv2/emailIdentity:EmailIdentity":
        identity = str(inputs["emailIdentity"])
        rid = identity
        state.update(
            arn=f"arn:aws:ses:{REGION}:{ACCOUNT}:identity/{identity}",
            identityType="DOMAIN",
            verifiedForSendingStatus=False,
            # Easy DKIM's three tokens, as SES issues them for a domain.
            dkimSigningAttributes={
                **dict(inputs.get("dkimSigningAttributes") or {}),
                "currentSigningKeyLength": "RSA_2048_BIT",
                "signingAttributesOrigin": "AWS_SES",
                "status": "PENDING",
                "tokens": [_hex(f"{identity}{n}", 32) for n in range(3)],
            },
        )
    elif typ == "aws:cloudwatch/logGroup:LogGroup":
        state["arn"] = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{physical}"
    elif typ == "aws:serverlessrepository/cloudFormationStack:CloudFormationStack":
        # The rotation application's one output, as the deployed stack reports it.
        function = inputs["parameters"]["functionName"]
        state["outputs"] = {"RotationLambdaARN": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function}"}
    elif typ == "aws:backup/vault:Vault":
        state["arn"] = f"arn:aws:backup:{REGION}:{ACCOUNT}:backup-vault:{physical}"
    elif typ == "aws:backup/plan:Plan":
        rid = _uuid(name)
    return rid, state


AWS_CALLS: dict[str, dict[str, Any]] = {
    "aws:index/getAvailabilityZones:getAvailabilityZones": {
        "id": REGION,
        "names": ZONES,
        "zoneIds": ["euw1-az1", "euw1-az2", "euw1-az3"],
        "groupNames": [REGION],
    },
    "aws:index/getRegion:getRegion": {"id": REGION, "name": REGION, "region": REGION},
    "aws:index/getCallerIdentity:getCallerIdentity": {
        "id": ACCOUNT,
        "accountId": ACCOUNT,
        "arn": f"arn:aws:iam::{ACCOUNT}:user/ci",
        "userId": "AIDAEXAMPLE",
    },
    "aws:index/getPartition:getPartition": {
        "id": "aws",
        "partition": "aws",
        "dnsSuffix": "amazonaws.com",
        "reverseDnsPrefix": "com.amazonaws",
    },
    "aws:ecr/getAuthorizationToken:getAuthorizationToken": {
        "id": REGION,
        "userName": "AWS",
        "password": "EcrToken" + "1" * 24,
        "authorizationToken": "QVdTOkVjclRva2Vu",
        "proxyEndpoint": f"https://{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com",
        "expiresAt": "2026-11-27T06:00:00Z",
    },
    "aws:secretsmanager/getSecretVersion:getSecretVersion": {
        "id": "rds-master",
        "secretString": json.dumps({"username": "postgres", "password": MASTER_PASSWORD}),
        "versionStages": ["AWSCURRENT"],
    },
    "aws:elb/getServiceAccount:getServiceAccount": {"id": "156460612806", "arn": "arn:aws:iam::156460612806:root"},
    "aws:ssm/getParameter:getParameter": {
        "id": "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64",
        "name": "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64",
        "type": "String",
        "value": "ami-0123456789abcdef0",
        "insecureValue": "ami-0123456789abcdef0",
        "version": 42,
        "arn": "arn:aws:ssm:eu-west-1::parameter/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64",
        "withDecryption": True,
    },
}
