"""Three bridges with three jobs.

- frontend: what the API and the dev tools publish from.
- backend: internal (no route off the host): the only network on which the API,
  the exporters and the data tier talk to each other.
- ops: carries the loopback-published admin ports of Postgres and Redis. Docker
  cannot publish a port from an internal network, and the provider that manages
  roles and schemas connects from the host, so the data tier needs one
  non-internal attachment; nothing else joins this network.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network

import pulumi
import pulumi_docker as docker

from components.model.naming import Names


@dataclass(frozen=True)
class NetworkArgs:
    names: Names
    frontend_subnet: IPv4Network
    backend_subnet: IPv4Network
    ops_subnet: IPv4Network


class Network(pulumi.ComponentResource):
    frontend: docker.Network
    backend: docker.Network
    ops: docker.Network

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("wondernest:local:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        names = args.names
        self.frontend = self._bridge("frontend", names, args.frontend_subnet, internal=False, opts=child)
        self.backend = self._bridge("backend", names, args.backend_subnet, internal=True, opts=child)
        self.ops = self._bridge("ops", names, args.ops_subnet, internal=False, opts=child)
        self.register_outputs(
            {
                "frontend": self.frontend.name,
                "backend": self.backend.name,
                "ops": self.ops.name,
            }
        )

    @staticmethod
    def _bridge(
        role: str, names: Names, subnet: IPv4Network, *, internal: bool, opts: pulumi.ResourceOptions
    ) -> docker.Network:
        return docker.Network(
            role,
            name=names.resource(role),
            driver="bridge",
            internal=internal,
            attachable=False,
            # The gateway Docker would pick, stated: the provider reads it back,
            # and an IPAM entry that differs from the state replaces the network.
            ipam_configs=[docker.NetworkIpamConfigArgs(subnet=str(subnet), gateway=str(subnet.network_address + 1))],
            labels=[
                docker.NetworkLabelArgs(label=key, value=value)
                for key, value in sorted(names.labels(f"network-{role}").items())
            ],
            # Named: a replacement created first would collide with its own name.
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(delete_before_replace=True)),
        )
