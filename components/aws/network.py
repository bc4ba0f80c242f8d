"""The VPC: public, private and isolated subnets per AZ, NAT, flow logs, endpoints,
and the security groups chained ALB → API → Postgres/Redis."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network

import pulumi
import pulumi_aws as aws

from components.aws.iam import service_role
from components.aws.tasks import log_group_name
from components.model.naming import Names

TIERS = ("public", "private", "isolated")
# Each tier takes a block of 8 subnet slots, so a VPC may grow to 6 AZs without renumbering.
_SLOTS_PER_TIER = 8
INTERFACE_ENDPOINTS = ("ecr.api", "ecr.dkr", "logs", "secretsmanager", "aps-workspaces", "sts")
HTTPS = 443
POSTGRES_PORT = 5432
REDIS_PORT = 6379


def subnet_cidrs(vpc: IPv4Network, az_count: int) -> dict[str, list[IPv4Network]]:
    """Each tier's subnets, one per AZ: the VPC cut into 32 equal slots."""
    slots = list(vpc.subnets(prefixlen_diff=5))
    return {tier: [slots[t * _SLOTS_PER_TIER + i] for i in range(az_count)] for t, tier in enumerate(TIERS)}


@dataclass(frozen=True)
class NetworkArgs:
    names: Names
    region: str
    cidr: IPv4Network
    az_count: int
    single_nat_gateway: bool
    interface_endpoints: bool
    log_retention_days: int
    kms_key_arn: pulumi.Output[str]
    app_port: int
    """The port the load balancer reaches the app's tasks on."""


class SecurityGroups:
    """One group per tier; rules are separate resources so each carries its description."""

    def __init__(
        self, names: Names, vpc_id: pulumi.Output[str], vpc_cidr: str, app_port: int, parent: pulumi.Resource
    ) -> None:
        child = pulumi.ResourceOptions(parent=parent)

        def group(key: str, description: str) -> aws.ec2.SecurityGroup:
            return aws.ec2.SecurityGroup(
                f"sg-{key}",
                name=names.resource(key),
                description=description,
                vpc_id=vpc_id,
                tags={"Name": names.resource(key)},
                opts=child,
            )

        self.alb = group("alb", "The public load balancer")
        self.api = group("api", "API tasks, reached only by the load balancer")
        self.postgres = group("postgres", "RDS PostgreSQL, reached by API, exporter and backup tasks")
        self.redis = group("redis", "ElastiCache Redis, reached by API and exporter tasks")
        self.exporters = group("exporters", "postgres_exporter and redis_exporter tasks")
        self.backup = group("backup", "The scheduled backup task")
        self.rotation = group("rotation", "The Secrets Manager rotation function for the Postgres roles")
        self.secret_rotation = group("secret-rotation", "The platform's own rotation functions: AWS APIs only")
        self.endpoints = group("endpoints", "Interface VPC endpoints, reached from inside the VPC")
        self._parent = parent
        self._rules: list[pulumi.Resource] = []

        for port in (80, HTTPS):
            self.ingress_cidr(f"alb-in-{port}", self.alb, "0.0.0.0/0", port, f"Clients to the load balancer on {port}")
        self.chain("alb-to-api", self.alb, self.api, app_port, "Load balancer to the API's port")
        clients = (
            (self.api, "api", "api tasks"),
            (self.exporters, "exporters", "exporters tasks"),
            (self.backup, "backup", "backup tasks"),
            (self.rotation, "rotation", "The rotation function"),
        )
        for source, key, who in clients:
            self.chain(f"{key}-to-postgres", source, self.postgres, POSTGRES_PORT, f"{who} to PostgreSQL")
        for source, key in ((self.api, "api"), (self.exporters, "exporters")):
            self.chain(f"{key}-to-redis", source, self.redis, REDIS_PORT, f"{key} tasks to Redis")
        self.ingress_cidr("endpoints-in", self.endpoints, vpc_cidr, HTTPS, "VPC to interface endpoints over TLS")
        for sg, key, who in clients:
            # ECR layers come from S3 and AMP/Secrets Manager may be reached
            # through NAT in regions without an endpoint; RDS's API (the rotation
            # function's) always is: HTTPS out is needed.
            self.egress_cidr(f"{key}-out-https", sg, "0.0.0.0/0", HTTPS, f"{who} to AWS APIs over HTTPS")
        # Secrets Manager (its endpoint) and ElastiCache's API (through NAT): nothing else.
        self.egress_cidr(
            "secret-rotation-out-https", self.secret_rotation, "0.0.0.0/0", HTTPS,
            "The platform's rotation functions to AWS APIs over HTTPS",
        )  # fmt: skip

    def chain(
        self, key: str, source: aws.ec2.SecurityGroup, target: aws.ec2.SecurityGroup, port: int, why: str
    ) -> None:
        """Both halves of one hop: the source may send, the target may receive."""
        self._rule(aws.vpc.SecurityGroupEgressRule, f"{key}-egress", source, port, why, peer_group=target)
        self._rule(aws.vpc.SecurityGroupIngressRule, f"{key}-ingress", target, port, why, peer_group=source)

    def ingress_cidr(self, key: str, sg: aws.ec2.SecurityGroup, cidr: str, port: int, why: str) -> None:
        self._rule(aws.vpc.SecurityGroupIngressRule, key, sg, port, why, cidr=cidr)

    def egress_cidr(self, key: str, sg: aws.ec2.SecurityGroup, cidr: str, port: int, why: str) -> None:
        self._rule(aws.vpc.SecurityGroupEgressRule, key, sg, port, why, cidr=cidr)

    def _rule(
        self,
        kind: type[aws.vpc.SecurityGroupIngressRule] | type[aws.vpc.SecurityGroupEgressRule],
        key: str,
        sg: aws.ec2.SecurityGroup,
        port: int,
        why: str,
        *,
        peer_group: aws.ec2.SecurityGroup | None = None,
        cidr: str | None = None,
    ) -> None:
        self._rules.append(
            kind(
                key,
                security_group_id=sg.id,
                referenced_security_group_id=peer_group.id if peer_group is not None else None,
                cidr_ipv4=cidr,
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
                description=why,
                opts=pulumi.ResourceOptions(parent=self._parent),
            )
        )


class Network(pulumi.ComponentResource):
    vpc: aws.ec2.Vpc
    subnets: dict[str, list[aws.ec2.Subnet]]
    security_groups: SecurityGroups

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("wondernest:aws:Network", name, None, opts)
        names = args.names
        child = pulumi.ResourceOptions(parent=self)
        self.vpc = aws.ec2.Vpc(
            "vpc",
            cidr_block=str(args.cidr),
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={"Name": names.resource("vpc")},
            opts=child,
        )
        # Nothing may use the default group: with no rules it admits and emits nothing.
        aws.ec2.DefaultSecurityGroup("default-sg", vpc_id=self.vpc.id, ingress=[], egress=[], opts=child)
        zones = aws.get_availability_zones_output(state="available", opts=pulumi.InvokeOutputOptions(parent=self))
        cidrs = subnet_cidrs(args.cidr, args.az_count)
        self.cidrs = cidrs
        self.subnets = {tier: [] for tier in TIERS}
        for tier in TIERS:
            for i, cidr in enumerate(cidrs[tier]):
                self.subnets[tier].append(
                    aws.ec2.Subnet(
                        f"{tier}-{i}",
                        vpc_id=self.vpc.id,
                        cidr_block=str(cidr),
                        availability_zone=zones.names[i],
                        map_public_ip_on_launch=False,
                        tags={"Name": names.resource(f"{tier}-{i}"), "tier": tier},
                        opts=child,
                    )
                )
        igw = aws.ec2.InternetGateway("igw", vpc_id=self.vpc.id, tags={"Name": names.resource("igw")}, opts=child)
        public_rt = aws.ec2.RouteTable(
            "public-rt",
            vpc_id=self.vpc.id,
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=igw.id)],
            tags={"Name": names.resource("public")},
            opts=child,
        )
        for i, subnet in enumerate(self.subnets["public"]):
            aws.ec2.RouteTableAssociation(f"public-{i}", subnet_id=subnet.id, route_table_id=public_rt.id, opts=child)
        nat_count = 1 if args.single_nat_gateway else args.az_count
        nats = []
        for i in range(nat_count):
            eip = aws.ec2.Eip(f"nat-{i}", domain="vpc", tags={"Name": names.resource(f"nat-{i}")}, opts=child)
            nats.append(
                aws.ec2.NatGateway(
                    f"nat-{i}",
                    allocation_id=eip.id,
                    subnet_id=self.subnets["public"][i].id,
                    tags={"Name": names.resource(f"nat-{i}")},
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]),
                )
            )
        route_tables = [public_rt]
        for i, subnet in enumerate(self.subnets["private"]):
            rt = aws.ec2.RouteTable(
                f"private-rt-{i}",
                vpc_id=self.vpc.id,
                routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", nat_gateway_id=nats[i % nat_count].id)],
                tags={"Name": names.resource(f"private-{i}")},
                opts=child,
            )
            aws.ec2.RouteTableAssociation(f"private-{i}", subnet_id=subnet.id, route_table_id=rt.id, opts=child)
            route_tables.append(rt)
        # The isolated tier has no route out of the VPC at all.
        isolated_rt = aws.ec2.RouteTable(
            "isolated-rt", vpc_id=self.vpc.id, tags={"Name": names.resource("isolated")}, opts=child
        )
        for i, subnet in enumerate(self.subnets["isolated"]):
            aws.ec2.RouteTableAssociation(
                f"isolated-{i}", subnet_id=subnet.id, route_table_id=isolated_rt.id, opts=child
            )
        route_tables.append(isolated_rt)

        self.security_groups = SecurityGroups(names, self.vpc.id, str(args.cidr), args.app_port, self)
        aws.ec2.VpcEndpoint(
            "s3-endpoint",
            vpc_id=self.vpc.id,
            service_name=f"com.amazonaws.{args.region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[rt.id for rt in route_tables],
            tags={"Name": names.resource("s3")},
            opts=child,
        )
        for service in INTERFACE_ENDPOINTS if args.interface_endpoints else ():
            key = service.replace(".", "-")
            aws.ec2.VpcEndpoint(
                f"{key}-endpoint",
                vpc_id=self.vpc.id,
                service_name=f"com.amazonaws.{args.region}.{service}",
                vpc_endpoint_type="Interface",
                private_dns_enabled=True,
                subnet_ids=[s.id for s in self.subnets["private"]],
                security_group_ids=[self.security_groups.endpoints.id],
                tags={"Name": names.resource(key)},
                opts=child,
            )

        flow_logs = aws.cloudwatch.LogGroup(
            "flow-logs",
            name=log_group_name(names, "vpc-flow-logs"),
            retention_in_days=args.log_retention_days,
            kms_key_id=args.kms_key_arn,
            opts=child,
        )
        role = service_role(
            "flow-logs-role",
            service="vpc-flow-logs.amazonaws.com",
            description="VPC flow logs delivery to CloudWatch Logs",
            statements=[
                {
                    "Effect": "Allow",
                    "Action": [
                        "logs:CreateLogStream",
                        "logs:PutLogEvents",
                        "logs:DescribeLogGroups",
                        "logs:DescribeLogStreams",
                    ],
                    "Resource": [flow_logs.arn, flow_logs.arn.apply(lambda arn: f"{arn}:*")],
                }
            ],
            parent=self,
        )
        aws.ec2.FlowLog(
            "flow-log",
            vpc_id=self.vpc.id,
            traffic_type="ALL",
            log_destination_type="cloud-watch-logs",
            log_destination=flow_logs.arn,
            iam_role_arn=role.arn,
            max_aggregation_interval=60,
            opts=child,
        )
        self.register_outputs({"vpcId": self.vpc.id})

    def subnet_ids(self, tier: str) -> list[pulumi.Output[str]]:
        return [s.id for s in self.subnets[tier]]
