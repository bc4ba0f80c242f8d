"""`make check-config`: the program's own config message, without the Pulumi CLI."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _check(*args: str, root: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "components.commands.check_config", *args, "--root", str(root)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def _stack_file(tmp_path: Path, body: str, stack: str = "bad") -> Path:
    """A project directory holding this project's file and the given stack file."""
    (tmp_path / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    (tmp_path / f"Pulumi.{stack}.yaml").write_text(body)
    return tmp_path


@pytest.mark.parametrize("stack", ["dev", "staging"])
def test_the_projects_stacks_are_valid(stack: str) -> None:
    result = _check(stack)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(rf"Pulumi\.{stack}\.yaml: valid \(target (docker|aws), appName wondernest\)\n", result.stdout)


def test_the_committed_prod_stack_asks_for_its_page_destination_first() -> None:
    result = _check("prod")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("error: Pulumi.prod.yaml: invalid stack configuration (1 problem):\n")
    assert "wondernest:alerting.page = (default): a production stack must page someone" in result.stderr


def test_the_readme_example_prints_the_readmes_message(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    shown = re.search(r"```\n(invalid stack configuration \(3 problems\):\n.*?)```", readme, re.S)
    assert shown is not None
    root = _stack_file(
        tmp_path,
        "config:\n"
        "  wondernest:target: docker\n"
        "  wondernest:postgres:\n"
        "    hostPort: 70000\n"
        "    memory: 300MiB\n"
        "  wondernest:postgre:\n"
        "    hostPort: 5432\n",
    )
    result = _check("bad", root=root)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == f"error: Pulumi.bad.yaml: {shown[1]}"


def test_scalars_are_parsed_as_the_engine_passes_them(tmp_path: Path) -> None:
    root = _stack_file(tmp_path, "config:\n  wondernest:target: docker\n  wondernest:appName: '42'\n")
    result = _check("bad", root=root)
    assert result.returncode == 1
    # The engine hands the program the text 42, which parses as a number, as here.
    assert "wondernest:appName = 42: Input should be a valid string" in result.stderr


def test_encrypted_values_are_named_and_left_for_pulumi_up(tmp_path: Path) -> None:
    root = _stack_file(
        tmp_path,
        "config:\n"
        "  wondernest:target: docker\n"
        "  wondernest:alerting:\n"
        "    ticket:\n"
        "      slackChannel: '#ops'\n"
        "      slackWebhookUrl:\n"
        "        secure: v1:abc\n"
        "    runbookUrl: https://git.example.org/p/blob/main/docs/runbooks.md\n",
    )
    result = _check("bad", root=root)
    assert result.returncode == 0, result.stderr
    assert "1 encrypted value(s) not checked here (alerting.ticket.slackWebhookUrl)" in result.stdout


def test_other_problems_are_still_reported_beside_encrypted_values(tmp_path: Path) -> None:
    root = _stack_file(
        tmp_path,
        "config:\n"
        "  wondernest:target: docker\n"
        "  wondernest:redis:\n"
        "    maxMemory: 1MiB\n"
        "  wondernest:alerting:\n"
        "    ticket:\n"
        "      slackChannel: '#ops'\n"
        "      slackWebhookUrl:\n"
        "        secure: v1:abc\n"
        "    runbookUrl: https://git.example.org/p/blob/main/docs/runbooks.md\n",
    )
    result = _check("bad", root=root)
    assert result.returncode == 1
    assert "wondernest:redis.maxMemory = '1MiB'" in result.stderr
    assert "slackWebhookUrl" not in result.stderr


def test_a_missing_stack_lists_the_stacks_there(tmp_path: Path) -> None:
    _stack_file(tmp_path, "config: {}\n", stack="dev")
    result = _check("nope", root=tmp_path)
    assert result.returncode == 1
    assert result.stderr == f"error: no Pulumi.nope.yaml in {tmp_path}; the stacks here are: dev\n"


def test_yaml_that_does_not_parse(tmp_path: Path) -> None:
    root = _stack_file(tmp_path, "config: [unclosed\n")
    result = _check("bad", root=root)
    assert result.returncode == 1 and result.stderr.startswith("error: Pulumi.bad.yaml is not valid YAML")


def test_ports_flag_fails_on_a_busy_host_port(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        root = _stack_file(tmp_path, f"config:\n  wondernest:target: docker\n  wondernest:api:\n    hostPort: {port}\n")
        without = _check("bad", root=root)
        busy = _check("bad", "--ports", root=root)
    assert without.returncode == 0
    assert busy.returncode == 1
    assert f"preflight FAIL wondernest:api.hostPort: 127.0.0.1:{port} is in use" in busy.stderr


def test_the_container_prefix_follows_the_app_name(tmp_path: Path) -> None:
    root = _stack_file(tmp_path, "config:\n  wondernest:target: docker\n  wondernest:appName: shop\n", stack="dev")
    result = _check("dev", "--container-prefix", root=root)
    assert result.returncode == 0 and result.stdout == "shop-dev-\n"
    # Encrypted values elsewhere do not hide it.
    root = _stack_file(
        tmp_path,
        "config:\n  wondernest:target: docker\n  wondernest:alerting:\n    page:\n      slackChannel: '#ops'\n"
        "      slackWebhookUrl:\n        secure: v1:x\n"
        "    runbookUrl: https://git.example.org/p/blob/main/docs/runbooks.md\n",
        stack="qa",
    )
    assert _check("qa", "--container-prefix", root=root).stdout == "wondernest-qa-\n"


APP_WITH_SECRETS = (
    "config:\n"
    "  wondernest:target: docker\n"
    "  wondernest:app:\n"
    "    build: {context: tests/fixtures/notes_app}\n"
    "    command: [python, /srv/notes.py]\n"
    "    migrations: null\n"
    "    metrics: null\n"
    "    externalSecrets: [mail-key, sms-key]\n"
    "    platformEnvironment: {MAIL_KEY: secrets.mail-key, SMS_KEY: secrets.sms-key}\n"
    "  wondernest:appSecrets:\n"
    "    mail-key:\n"
    "      secure: v1:abc\n"
)


def test_app_secrets_stored_encrypted_are_left_for_pulumi_up(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "tests" / "fixtures" / "notes_app", tmp_path / "tests" / "fixtures" / "notes_app")
    root = _stack_file(tmp_path, APP_WITH_SECRETS + "    sms-key:\n      secure: v1:def\n")
    result = _check("bad", root=root)
    assert result.returncode == 0, result.stderr
    assert "2 encrypted value(s) not checked here (appSecrets.mail-key, appSecrets.sms-key)" in result.stdout


def test_an_app_secret_in_plain_text_beside_encrypted_ones_is_refused_and_not_shown(tmp_path: Path) -> None:
    """The engine marks the whole key secret when any value under it is: only the file tells."""
    shutil.copytree(ROOT / "tests" / "fixtures" / "notes_app", tmp_path / "tests" / "fixtures" / "notes_app")
    root = _stack_file(tmp_path, APP_WITH_SECRETS + "    sms-key: plain-sms-token\n")
    result = _check("bad", root=root)
    assert result.returncode == 1
    assert result.stderr == (
        "error: Pulumi.bad.yaml: invalid stack configuration (1 problem):\n"
        "  - wondernest:appSecrets.sms-key: stored in plain text in Pulumi.bad.yaml; set it again with "
        "pulumi config set --secret --path 'appSecrets.sms-key' <value>\n"
    )
