"""What evaluating the prod program costs against loading the provider classes
it declares, measured in one run.

    python tests/bench_program.py [--rounds 5]

Each measurement is a fresh interpreter, so imports are paid every time, as
`pulumi up` pays them: "classes" imports the Pulumi SDK and resolves every
provider resource class the prod program declares (`pulumi_aws.rds.Instance`,
...); "program" runs the prod program once under the test harness's mocks
(config parsing, the components, every resource registered and its outputs
resolved). The two alternate for several rounds; the figure is the median of
the paired ratios program/classes, with the rounds' spread.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {
    "aws": "pulumi_aws",
    "random": "pulumi_random",
    "tls": "pulumi_tls",
    "grafana": "pulumiverse_grafana",
    "docker": "pulumi_docker",
}

PROGRAM = """
import sys, time
start = time.perf_counter()
sys.path[:0] = [{root!r}]
from tests.harness import evaluate, stack_config
config = stack_config(stack="prod")
ev = evaluate(config, stack="prod")
print(time.perf_counter() - start)
"""

CLASSES = """
import sys, time
start = time.perf_counter()
sys.path[:0] = [{root!r}]
from tests.bench_program import resolve
import pulumi
for token in {tokens!r}:
    resolve(token)
print(time.perf_counter() - start)
"""


def resolve(token: str) -> type:
    """The SDK class of a resource type token: `aws:rds/instance:Instance` is
    `pulumi_aws.rds.Instance`, `pulumi:providers:aws` is `pulumi_aws.Provider`."""
    package, module, name = token.split(":")
    if package == "pulumi" and module == "providers":
        return importlib.import_module(PACKAGES[name]).Provider  # type: ignore[no-any-return]
    sdk = importlib.import_module(PACKAGES[package])
    owner = sdk if module.startswith("index") else getattr(sdk, module.split("/")[0])
    return getattr(owner, name)  # type: ignore[no-any-return]


def provider_tokens() -> list[str]:
    """The provider resource types the prod program declares."""
    code = (
        f"import sys, json; sys.path[:0] = [{str(ROOT)!r}]\n"
        "from tests.harness import evaluate, stack_config\n"
        "ev = evaluate(stack_config(stack='prod'), stack='prod')\n"
        "print(json.dumps(sorted({d.typ for d in ev.declared})))\n"
    )
    types = json.loads(_run(code))
    return [t for t in types if t.split(":")[0] in PACKAGES or t.startswith("pulumi:providers:")]


def _run(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return result.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    tokens = provider_tokens()
    for token in tokens:
        resolve(token)  # every token names a class, or the figure would compare unlike work
    programs = {
        "classes": CLASSES.format(root=str(ROOT), tokens=tokens),
        "program": PROGRAM.format(root=str(ROOT)),
    }
    print(f"{len(tokens)} provider resource types; fresh interpreter per run; {args.rounds} alternating rounds\n")
    runs: dict[str, list[float]] = {name: [] for name in programs}
    for _ in range(args.rounds):
        for name, code in programs.items():
            runs[name].append(float(_run(code)))
    print(f"{'':<10}{'median s':>10}{'min s':>8}{'max s':>8}")
    for name, seconds in runs.items():
        print(f"{name:<10}{statistics.median(seconds):>10.2f}{min(seconds):>8.2f}{max(seconds):>8.2f}")
    paired = [p / c for p, c in zip(runs["program"], runs["classes"], strict=True)]
    print(f"\nprogram / classes: {statistics.median(paired):.2f}x (rounds {min(paired):.2f}-{max(paired):.2f})")


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"({time.perf_counter() - started:.0f} s)")
