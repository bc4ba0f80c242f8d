"""A check's outcome, and running checks side by side, each within its time."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Literal

Status = Literal["pass", "fail", "skip"]


class CheckFailed(Exception):
    """The check ran and what it found is wrong; the message says what."""


class Skipped(Exception):
    """The check cannot run from here; the message says why."""


@dataclass(frozen=True)
class Probe:
    service: str
    check: str
    run: Callable[[], str]
    """Returns what it found when all is well; raises CheckFailed or Skipped otherwise."""


@dataclass(frozen=True)
class Result:
    service: str
    check: str
    status: Status
    detail: str
    seconds: float


def _run(probe: Probe) -> Result:
    start = time.monotonic()
    try:
        detail, status = probe.run(), "pass"
    except Skipped as exc:
        detail, status = str(exc), "skip"
    except CheckFailed as exc:
        detail, status = str(exc), "fail"
    except Exception as exc:
        detail, status = f"{type(exc).__name__}: {exc}".strip().rstrip(":"), "fail"
    return Result(probe.service, probe.check, status, detail, time.monotonic() - start)  # type: ignore[arg-type]


def run_all(probes: Sequence[Probe], timeout: float) -> list[Result]:
    """Every probe at once, results in the given order. A probe still running
    `timeout` seconds after the start fails; each one's own I/O has the same limit."""
    pool = ThreadPoolExecutor(max_workers=max(len(probes), 1), thread_name_prefix="verify")
    deadline = time.monotonic() + timeout
    futures = [pool.submit(_run, probe) for probe in probes]
    results: list[Result] = []
    for probe, future in zip(probes, futures, strict=True):
        try:
            results.append(future.result(timeout=max(deadline - time.monotonic(), 0)))
        except FutureTimeout:
            results.append(Result(probe.service, probe.check, "fail", f"no answer within {timeout:g} s", timeout))
    pool.shutdown(wait=False, cancel_futures=True)
    return results
