"""`make logs`: the local stack's containers' logs, interleaved by time and
prefixed with the service, as `docker compose logs` shows them.

    python -m components.commands.logs <container-prefix> [--service NAME] [--lines N] [--follow]

Without --follow, the last N lines of each service, merged in time order, then
it exits. With --follow, every service's new lines as they come.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from components.commands.errors import CommandError


@dataclass(frozen=True)
class Line:
    at: str
    """Docker's RFC 3339 timestamp, nanoseconds included: it sorts as text."""
    service: str
    text: str


def _docker(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=False)


def services(prefix: str) -> list[str]:
    result = _docker(["ps", "--all", "--filter", f"name=^{prefix}", "--format", "{{.Names}}"])
    if result.returncode != 0:
        raise CommandError(f"docker ps failed: {result.stderr.strip()}")
    return sorted(name.removeprefix(prefix) for name in result.stdout.split() if name.startswith(prefix))


def parse(service: str, output: str) -> list[Line]:
    """`docker logs --timestamps` lines: `<timestamp> <text>`."""
    lines = []
    for raw in output.splitlines():
        at, _, text = raw.partition(" ")
        lines.append(Line(at, service, text))
    return lines


def interleaved(lines: Iterable[Line], width: int) -> str:
    return "".join(f"{line.service:<{width}} | {line.text}\n" for line in sorted(lines, key=lambda x: x.at))


def _tail(prefix: str, names: Sequence[str], count: int) -> None:
    lines: list[Line] = []
    for name in names:
        # A container's stdout and stderr both, as `docker logs` prints them.
        result = _docker(["logs", "--timestamps", "--tail", str(count), f"{prefix}{name}"])
        lines += parse(name, result.stdout + result.stderr)
    sys.stdout.write(interleaved(lines, max(map(len, names))))


def _follow(prefix: str, names: Sequence[str], count: int) -> None:
    width = max(map(len, names))
    lock = threading.Lock()

    def pump(name: str) -> None:
        command = ["docker", "logs", "--follow", "--tail", str(count), f"{prefix}{name}"]
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
            assert process.stdout is not None
            for text in process.stdout:
                with lock:
                    sys.stdout.write(f"{name:<{width}} | {text}")
                    sys.stdout.flush()

    threads = [threading.Thread(target=pump, args=(name,), daemon=True) for name in names]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    except KeyboardInterrupt:
        return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m components.commands.logs", description=__doc__.split("\n")[0])
    parser.add_argument("prefix", help="the stack's container name prefix (<app>-<stack>-)")
    parser.add_argument("--service", help="one service (make status lists them)")
    parser.add_argument("--lines", type=int, default=200, help="lines of each service to start from (default 200)")
    parser.add_argument("--follow", action="store_true", help="keep printing new lines")
    args = parser.parse_args(argv)
    found = services(args.prefix)
    if not found:
        raise CommandError(f"no container of {args.prefix.rstrip('-')}: make up first")
    if args.service is not None and args.service not in found:
        raise CommandError(f"no service {args.service!r}; these exist: {', '.join(found)}")
    names = [args.service] if args.service else found
    if args.follow:
        _follow(args.prefix, names, args.lines)
    else:
        _tail(args.prefix, names, args.lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
