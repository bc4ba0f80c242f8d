"""The results as a table for people (coloured on a terminal) or JSON for programs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict

from components.commands.verify.results import Result, Status

_LABELS: dict[Status, str] = {"pass": "ok", "fail": "FAIL", "skip": "skip"}
_COLOURS: dict[Status, str] = {"pass": "32", "fail": "1;31", "skip": "33"}


def table(results: Sequence[Result], *, colour: bool) -> str:
    rows = [(_LABELS[r.status], r.service, r.check, f"{r.seconds * 1000:.0f} ms", r.detail) for r in results]
    header = ("", "service", "check", "time", "detail")
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(4)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(header[:4], widths, strict=True)) + "  detail"]
    for result, row in zip(results, rows, strict=True):
        cells = [cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)]
        if colour:
            cells[0] = f"\033[{_COLOURS[result.status]}m{cells[0]}\033[0m"
        lines.append("  ".join(cells) + "  " + row[4])
    failed = sum(r.status == "fail" for r in results)
    skipped = sum(r.status == "skip" for r in results)
    lines.append(
        f"{len(results) - failed - skipped} passed, {failed} failed, {skipped} skipped"
        + ("" if not failed else ": the stack is not healthy")
    )
    return "\n".join(lines) + "\n"


def as_json(results: Sequence[Result]) -> str:
    document = {
        "ok": not any(r.status == "fail" for r in results),
        "checks": [{**asdict(r), "seconds": round(r.seconds, 3)} for r in results],
    }
    return json.dumps(document, indent=2) + "\n"
