"""One `pulumi up` of a stack on the tests' Docker engine: the program's own
graph through the applier, its Postgres objects through a dynamic provider
host started for the run, as the engine starts one."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from tests.e2e.applier import EngineMocks, State, Step
from tests.e2e.engine import Engine
from tests.harness import evaluate, stack_config
from tests.provider_host import provider_host

CONTAINER = "docker:index/container:Container"
# Grafana publishes no Debian package (nor a PyPI one) to stand in with; only it is left out.
SKIPPED = {
    ("docker:index/remoteImage:RemoteImage", "grafana-image"): "no Debian package of Grafana",
    (CONTAINER, "grafana"): "no Debian package of Grafana",
}
# What verify cannot pass without Grafana: its health, and its scrape target.
NEEDS_GRAFANA = {"grafana health", "prometheus targets up"}


@dataclass
class Run:
    outputs: dict[str, Any]
    steps: list[Step]
    mocks: EngineMocks

    def ops(self) -> Counter[str]:
        return Counter(step.op for step in self.steps)


def apply(
    engine: Engine,
    state: State,
    config: dict[str, Any] | None = None,
    *,
    quiet: bool = False,
    secret_keys: list[str] | None = None,
) -> Run:
    """One `pulumi up` (of the dev stack's file unless `config` says otherwise,
    `secret_keys` naming its keys set with --secret); `quiet` leaves out the
    line per resource."""
    with provider_host() as host:
        log = (lambda _line: None) if quiet else (lambda line: print(line, flush=True))
        mocks = EngineMocks(engine, state, skip=SKIPPED, log=log, host=host)
        evaluation = evaluate(stack_config() if config is None else config, mocks=mocks, secret_keys=secret_keys)
    return Run(evaluation.outputs, mocks.steps, mocks)
