"""An optional SSM-only host for reaching the database from outside the VPC.

No inbound rule, no key pair, no public address: `aws ssm start-session` with
AWS-StartPortForwardingSessionToRemoteHost forwards a local port to the RDS
endpoint through it, and the database's security group admits it on 5432 only.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.aws.iam import service_role
from components.aws.network import HTTPS, POSTGRES_PORT, Network
from components.model.naming import Names

SSM_CORE = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"


@dataclass(frozen=True)
class BastionArgs:
    names: Names
    network: Network
    kms_key_arn: pulumi.Input[str]


class Bastion(pulumi.ComponentResource):
    instance: aws.ec2.Instance

    def __init__(self, name: str, args: BastionArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("wondernest:aws:Bastion", name, None, opts)
        names, network, kms_key_arn = args.names, args.network, args.kms_key_arn
        child = pulumi.ResourceOptions(parent=self)
        sgs = network.security_groups
        group = aws.ec2.SecurityGroup(
            "sg-bastion",
            name=names.resource("bastion"),
            description="SSM port-forwarding host: no inbound rules",
            vpc_id=network.vpc.id,
            tags={"Name": names.resource("bastion")},
            opts=child,
        )
        sgs.chain("bastion-to-postgres", group, sgs.postgres, POSTGRES_PORT, "Admin tunnel to PostgreSQL")
        sgs.egress_cidr("bastion-out-https", group, "0.0.0.0/0", HTTPS, "Bastion to the SSM endpoints over HTTPS")
        role = service_role(
            "bastion-role",
            service="ec2.amazonaws.com",
            description="SSM Session Manager only",
            managed_policy_arns=[SSM_CORE],
            parent=self,
        )
        profile = aws.iam.InstanceProfile("bastion", name=names.resource("bastion"), role=role.name, opts=child)
        ami = aws.ssm.get_parameter_output(name=AMI_PARAMETER, opts=pulumi.InvokeOutputOptions(parent=self))
        self.instance = aws.ec2.Instance(
            "bastion",
            ami=ami.value,
            instance_type="t4g.nano",
            subnet_id=network.subnets["private"][0].id,
            vpc_security_group_ids=[group.id],
            iam_instance_profile=profile.name,
            associate_public_ip_address=False,
            metadata_options=aws.ec2.InstanceMetadataOptionsArgs(http_tokens="required", http_endpoint="enabled"),
            root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(
                encrypted=True, kms_key_id=kms_key_arn, volume_type="gp3", volume_size=8
            ),
            monitoring=True,
            tags={"Name": names.resource("bastion")},
            # The parameter moves to each new AMI; a new image waits for a
            # deliberate replacement instead of showing in every preview.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["ami"]),
        )
        self.register_outputs({"instanceId": self.instance.id})
