"""Network rules for the AWS target, judged over the whole graph.

Resources are related through their property dependencies (a flow log's
`vpcId` came from that VPC, a subnet group's `subnetIds` from those subnets),
not through ids or names: a preview knows the first and not the second.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from wondernest_policies.model import Resource, Rule, Violation, has_unknown, items, mappings, unknown

VPC = "aws:ec2/vpc:Vpc"
SUBNET = "aws:ec2/subnet:Subnet"
ROUTE_TABLE = "aws:ec2/routeTable:RouteTable"
ROUTE = "aws:ec2/route:Route"
ROUTE_TABLE_ASSOCIATION = "aws:ec2/routeTableAssociation:RouteTableAssociation"
INTERNET_GATEWAY = "aws:ec2/internetGateway:InternetGateway"
FLOW_LOG = "aws:ec2/flowLog:FlowLog"
DEFAULT_SG = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
SG = "aws:ec2/securityGroup:SecurityGroup"
SG_INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
SG_EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
LEGACY_SG_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
RDS_SUBNET_GROUP = "aws:rds/subnetGroup:SubnetGroup"
CACHE_SUBNET_GROUP = "aws:elasticache/subnetGroup:SubnetGroup"
LOAD_BALANCER = "aws:lb/loadBalancer:LoadBalancer"
PREFIX_LIST = "aws:ec2/managedPrefixList:ManagedPrefixList"

WEB_PORTS = (80, 443)
PORT_PROTOCOLS = ("tcp", "udp", "6", "17")
ALL_PROTOCOLS = ("-1", "all")
# Ports whose services should never be reached across the internet, in either
# direction: remote shells and desktops, file shares, mail relays, databases,
# caches and container engines. Traffic out to them is how data leaves.
SENSITIVE_PORTS = frozenset(
    {22, 23, 25, 135, 139, 445, 1433, 1521, 2049, 2375, 2376, 3306, 3389, 5432, 5984, 6379, 9200, 11211, 27017}
)


def _of(resources: Sequence[Resource], *types: str) -> list[Resource]:
    return [r for r in resources if r.type in types]


def _internet_wide(cidr: Any) -> bool:
    """0.0.0.0/0 and ::/0, and any other range that spans public address space
    wholesale (0.0.0.0/1, 2000::/3, a public /12): more than a /16 of IPv4
    (65,536 addresses) or a /32 of IPv6 (an ISP's allocation) is no office's,
    partner's or VPN's range. A private range, the VPC's own, is not."""
    try:
        network = ipaddress.ip_network(cidr, strict=False)
    except (TypeError, ValueError):
        return False  # not a range, or (a preview) not known yet
    widest = 16 if network.version == 4 else 32
    return network.prefixlen < widest and not network.is_private


# --- flow logs and the default security group ------------------------------------------


def _flow_logs(resources: Sequence[Resource], _config: Mapping[str, Any]) -> Iterable[Violation]:
    logs = _of(resources, FLOW_LOG)
    for vpc in _of(resources, VPC):
        mine = [log for log in logs if log.refers_to("vpcId", vpc)]
        if not mine:
            yield Violation(f"{vpc.name}: no flow log records its traffic.", vpc.urn)
        elif not any(log.get("trafficType") in ("ALL", None) or unknown(log.get("trafficType")) for log in mine):
            yield Violation(f"{vpc.name}: its flow logs record only part of the traffic (trafficType ALL).", vpc.urn)


def _default_security_group(resources: Sequence[Resource], _config: Mapping[str, Any]) -> Iterable[Violation]:
    adopted = _of(resources, DEFAULT_SG)
    for vpc in _of(resources, VPC):
        if not any(group.refers_to("vpcId", vpc) for group in adopted):
            yield Violation(f"{vpc.name}: its default security group keeps AWS's allow-all rules.", vpc.urn)
    for group in adopted:
        for direction in ("ingress", "egress"):
            rules = group.get(direction)
            if rules and not unknown(rules):
                yield Violation(f"{group.name}: the default security group has {direction} rules.", group.urn)
    # A rule attached to the default group names it through the VPC or the adopted group.
    for rule in _of(resources, SG_INGRESS, SG_EGRESS, LEGACY_SG_RULE):
        if any(rule.refers_to("securityGroupId", owner) for owner in (*_of(resources, VPC), *adopted)):
            yield Violation(f"{rule.name}: adds a rule to a default security group.", rule.urn)


# --- subnets -------------------------------------------------------------------------------


def _subnet(resource: Resource, _config: Mapping[str, Any]) -> Iterable[str]:
    problems = []
    if resource.get("mapPublicIpOnLaunch") is True:
        problems.append("gives every instance launched in it a public IPv4 address.")
    if resource.get("assignIpv6AddressOnCreation") is True:
        problems.append("gives every network interface in it an IPv6 address.")
    return problems


def _routes_to_internet(table: Resource, resources: Sequence[Resource]) -> bool:
    gateways = _of(resources, INTERNET_GATEWAY)

    def internet_route(route: Mapping[str, Any], owner: Resource, key: str) -> bool:
        destination = route.get("cidrBlock") or route.get("destinationCidrBlock")
        destination = destination or route.get("ipv6CidrBlock") or route.get("destinationIpv6CidrBlock")
        gateway = route.get("gatewayId")
        if not gateway or not (_internet_wide(destination) or unknown(destination)):
            return False
        return (isinstance(gateway, str) and gateway.startswith("igw-")) or any(
            owner.refers_to(key, igw) for igw in gateways
        )

    # Routes not known yet are the engine's placeholder, a string: no route of it is an object.
    inline = table.get("routes") or []
    if any(internet_route(r, table, "routes") for r in inline if isinstance(r, Mapping)):
        return True
    return any(
        route.refers_to("routeTableId", table) and internet_route(route.props, route, "gatewayId")
        for route in _of(resources, ROUTE)
    )


def public_subnets(resources: Sequence[Resource]) -> set[str]:
    """URNs of the subnets whose route table sends internet traffic to an internet gateway."""
    public_tables = [t for t in _of(resources, ROUTE_TABLE) if _routes_to_internet(t, resources)]
    found: set[str] = set()
    for association in _of(resources, ROUTE_TABLE_ASSOCIATION):
        if any(association.refers_to("routeTableId", table) for table in public_tables):
            found.update(association.depends_on.get("subnetId", ()))
    found.update(s.urn for s in _of(resources, SUBNET) if s.get("mapPublicIpOnLaunch") is True)
    return found


def _data_tier_private(resources: Sequence[Resource], _config: Mapping[str, Any]) -> Iterable[Violation]:
    public = public_subnets(resources)
    names = {r.urn: r.name for r in _of(resources, SUBNET)}
    for group in _of(resources, RDS_SUBNET_GROUP, CACHE_SUBNET_GROUP):
        exposed = sorted(names.get(urn, urn) for urn in group.depends_on.get("subnetIds", ()) if urn in public)
        if exposed:
            what = "database" if group.type == RDS_SUBNET_GROUP else "cache"
            yield Violation(f"{group.name}: puts the {what} on public subnets {exposed}.", group.urn)


# --- security group rules ------------------------------------------------------------------


def _ports(rule: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    return rule.get("ipProtocol") or rule.get("protocol"), rule.get("fromPort"), rule.get("toPort")


def _rule_problem(
    rule: Mapping[str, Any], cidrs: Iterable[Any], direction: str, on_lb: bool | None, *, no_balancer: bool
) -> str | None:
    protocol, low, high = _ports(rule)
    open_to = [c for c in cidrs if _internet_wide(c)]
    if unknown(protocol):
        return None
    if str(protocol).lower() in ALL_PROTOCOLS:
        return f"allows every protocol and port {'from' if direction == 'ingress' else 'to'} its source."
    if not open_to or unknown(low) or unknown(high):
        return None
    if protocol is not None and str(protocol).lower() not in PORT_PROTOCOLS:
        # ICMP's "ports" are a type and a code; other protocols have none, and
        # AWS then opens the whole protocol.
        way = "from" if direction == "ingress" else "to"
        return f"allows protocol {protocol} {way} the internet ({', '.join(map(str, open_to))}): only TCP or UDP ports."
    low, high = _port(low), _port(high)
    if direction == "egress":
        return _egress_problem(low, high, open_to)
    if low in WEB_PORTS and high == low:
        if on_lb is False:
            return f"opens port {low} to the internet on a group no load balancer uses."
        if on_lb is None and no_balancer:
            return f"opens port {low} to the internet, and the stack has no load balancer for it."
        return None
    shown = f"{low}" if low == high else f"{low}-{high}"
    return f"opens port {shown} to the internet ({', '.join(map(str, open_to))})."


def _port(value: Any) -> Any:
    """A port as a number: the provider takes `"443"` and `443.0` for 443."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value
    return int(number) if number.is_integer() else value


def _egress_problem(low: Any, high: Any, open_to: Sequence[Any]) -> str | None:
    """Out to the internet, one named port at a time (HTTPS to AWS's APIs,
    say), never a range (TCP 0-65535 is every port written another way) and
    never a sensitive one."""
    try:
        first, last = int(low), int(high)
    except (TypeError, ValueError):
        return f"allows traffic to the internet on ports {low}-{high}, not one named port."
    where = ", ".join(map(str, open_to))
    if first != last:
        covered = sorted(p for p in SENSITIVE_PORTS if first <= p <= last)
        return (
            f"allows traffic to the internet ({where}) on ports {first}-{last}"
            + (f", sensitive ports {covered} among them" if covered else "")
            + ": name the one port needed."
        )
    if first in SENSITIVE_PORTS:
        return f"allows traffic to the internet ({where}) on port {first}, a port no service should reach it on."
    return None


def _open_ingress(resources: Sequence[Resource], _config: Mapping[str, Any]) -> Iterable[Violation]:
    balancers = _of(resources, LOAD_BALANCER)
    groups = _of(resources, SG)

    lb_group_ids = {g for lb in balancers for g in items(lb.get("securityGroups")) if isinstance(g, str)}
    # With a balancer's groups unknown, ids decide nothing: where they came from does.
    ids_decide = bool(lb_group_ids) and not any(has_unknown(lb.get("securityGroups")) for lb in balancers)

    def on_lb(rule: Resource) -> bool | None:
        """Whether the rule's group fronts a load balancer: by id where ids are
        known, by where the id came from where they are not (a preview)."""
        if not balancers:
            return None
        group_id = rule.get("securityGroupId")
        if isinstance(group_id, str) and not unknown(group_id) and ids_decide:
            return group_id in lb_group_ids
        owner = [g for g in groups if rule.refers_to("securityGroupId", g)]
        if not owner:
            return None  # not relatable: the port alone decides
        return any(lb.refers_to("securityGroups", owner[0]) for lb in balancers)

    def group_on_lb(group: Resource) -> bool | None:
        """A group with inline rules fronts a balancer that names it: by the id
        where ids are known (a balancer may list it literally), by where the id
        came from otherwise."""
        if not balancers:
            return None
        group_id = group.get("id")
        # The balancers' ids are known ones only (`items` drops the unknowns).
        if ids_decide and isinstance(group_id, str) and group_id in lb_group_ids:
            return True
        return any(lb.refers_to("securityGroups", group) for lb in balancers)

    prefix_lists = _of(resources, PREFIX_LIST)

    def listed(rule: Resource, key: str) -> list[Any]:
        """The ranges of the stack's own prefix lists the rule names: a list holding 0.0.0.0/0 is the internet."""
        return [
            entry.get("cidr") for pl in prefix_lists if rule.refers_to(key, pl) for entry in mappings(pl.get("entries"))
        ]

    no_balancer = not balancers
    for rule in _of(resources, SG_INGRESS, SG_EGRESS):
        direction = "ingress" if rule.type == SG_INGRESS else "egress"
        cidrs = [rule.get("cidrIpv4"), rule.get("cidrIpv6"), *listed(rule, "prefixListId")]
        problem = _rule_problem(rule.props, cidrs, direction, on_lb(rule), no_balancer=no_balancer)
        if problem:
            yield Violation(f"{rule.name}: {problem}", rule.urn)
    for rule in _of(resources, LEGACY_SG_RULE):
        if unknown(rule.get("type")):
            continue  # ingress or egress: not known yet
        cidrs = [*items(rule.get("cidrBlocks")), *items(rule.get("ipv6CidrBlocks")), *listed(rule, "prefixListIds")]
        problem = _rule_problem(rule.props, cidrs, str(rule.get("type")), on_lb(rule), no_balancer=no_balancer)
        if problem:
            yield Violation(f"{rule.name}: {problem}", rule.urn)
    for group in groups:
        for direction in ("ingress", "egress"):
            for entry in mappings(group.get(direction)):
                cidrs = [*items(entry.get("cidrBlocks")), *items(entry.get("ipv6CidrBlocks"))]
                lb = group_on_lb(group)
                problem = _rule_problem(entry, cidrs, direction, lb, no_balancer=no_balancer)
                if problem:
                    yield Violation(f"{group.name}: an inline {direction} rule {problem}", group.urn)


NETWORK_RESOURCE_RULES: list[Rule] = [
    Rule(
        "aws-subnets-no-automatic-addresses",
        "Subnets give nothing launched in them a public IPv4 or an IPv6 address by default: an address is "
        "asked for where it is needed (Checkov CKV_AWS_130).",
        "high",
        "Leave mapPublicIpOnLaunch and assignIpv6AddressOnCreation unset or false.",
        (SUBNET,),
        _subnet,
    ),
]

NETWORK_STACK_RULES: list[Rule] = [
    Rule(
        "aws-no-open-ingress",
        "Nothing is reachable from the internet (0.0.0.0/0, ::/0 or any other range spanning public address "
        "space, a prefix list of the stack's own holding one included) but a load balancer's ports 80 and 443 "
        "(none without a load balancer); traffic out to the internet names one TCP or UDP port at a time, never a "
        "range (TCP 0-65535 is every port) nor a sensitive port (SSH, SMTP, databases, caches); no other protocol "
        "reaches the internet; and no rule, in or out, allows every protocol (Checkov CKV_AWS_24, 25, 260, 277).",
        "critical",
        "Reference the source security group instead of a CIDR, and name the protocol and ports.",
        check_stack=_open_ingress,
    ),
    Rule(
        "aws-vpc-flow-logs",
        "Every VPC has a flow log recording all of its traffic, so an incident can be reconstructed "
        "(Checkov CKV2_AWS_11).",
        "high",
        "Declare an aws.ec2.FlowLog with trafficType ALL for the VPC (components/aws/network.py).",
        check_stack=_flow_logs,
    ),
    Rule(
        "aws-default-security-group-closed",
        "Every VPC's default security group is adopted with no rules, and nothing adds rules to it: anything "
        "launched without a group of its own is cut off instead of trusted (Checkov CKV2_AWS_12).",
        "high",
        "Declare aws.ec2.DefaultSecurityGroup for the VPC with ingress=[] and egress=[]; give each service a "
        "security group of its own.",
        check_stack=_default_security_group,
    ),
    Rule(
        "aws-data-tier-private-subnets",
        "The database's and the cache's subnet groups hold no public subnet (one whose route table sends "
        "internet traffic to an internet gateway, or that gives out public addresses).",
        "critical",
        "Build the subnet groups from the isolated subnets (components/aws/network.py subnet_ids('isolated')).",
        check_stack=_data_tier_private,
    ),
]
