"""Every operator command ends on an error the same way: `CommandError`, which
prints one `error: …` message on stderr and exits 1."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from components.commands.aws_cli import AwsError, aws
from components.commands.errors import CommandError

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = ROOT / "components" / "commands"


def _raised_or_printed_errors(path: Path) -> list[str]:
    """Lines that end a command on an error another way: a bare SystemExit
    carrying text, or an `error:` text written to stderr by hand."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            func = node.exc.func
            if isinstance(func, ast.Name) and func.id == "SystemExit" and node.exc.args:
                arg = node.exc.args[0]
                if isinstance(arg, ast.Constant | ast.JoinedStr | ast.BinOp):
                    found.append(f"{path.name}:{node.lineno}")
        if isinstance(node, ast.Call) and any(
            isinstance(a, ast.Constant | ast.JoinedStr) and "error:" in ast.unparse(a) for a in node.args
        ):
            text = ast.unparse(node.func)
            if text.endswith("stderr.write") or (
                text == "print" and any(k.arg == "file" and "stderr" in ast.unparse(k.value) for k in node.keywords)
            ):
                found.append(f"{path.name}:{node.lineno}")
    return found


def test_no_command_ends_on_an_error_another_way() -> None:
    others = [line for path in sorted(COMMANDS.rglob("*.py")) for line in _raised_or_printed_errors(path)]
    assert others == []


def test_the_check_sees_each_other_way(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import sys\n"
        "raise SystemExit('error: one')\n"
        "raise SystemExit(f'error: {sys}')\n"
        "sys.stderr.write('error: two\\n')\n"
        "print(f'error: {sys}', file=sys.stderr)\n"
        "raise SystemExit(main())\n"
        "print('error: three')\n"
    )
    assert _raised_or_printed_errors(sample) == ["sample.py:2", "sample.py:3", "sample.py:4", "sample.py:5"]


def test_a_command_error_is_one_prefixed_message_and_exit_status_1() -> None:
    error = CommandError("the backup task stopped")
    assert error.code == "error: the backup task stopped" and error.message == "the backup task stopped"
    with pytest.raises(SystemExit):
        raise error
    script = "from components.commands.errors import CommandError\nraise CommandError('no such stack')"
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=False)
    assert (result.returncode, result.stdout, result.stderr) == (1, "", "error: no such stack\n")


def test_a_bad_tunnel_port_is_one_error_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "components.commands.tunnel", "x"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert (result.returncode, result.stderr) == (
        1,
        "error: 'x' is not a port number (make tunnel TUNNEL_PORT=15432)\n",
    )


def test_a_missing_aws_cli_is_an_aws_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(AwsError, match=r"^aws s3api list-buckets: the aws CLI is not on PATH$"):
        aws("eu-west-1", "s3api", "list-buckets")
