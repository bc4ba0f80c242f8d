"""The pack's secret detectors on their own: each case differs from a clean one
in one way, and the exact problems reported are asserted."""

from __future__ import annotations

import pytest
from wondernest_policies import credentials
from wondernest_policies.secret_values import command_problems, value_problem, variable_problems

TOKEN = "q7Rk2ZpW9xLm4TbV8nYc3HsJ"  # 24 characters, letters and digits, near base64's entropy


@pytest.mark.parametrize(
    ("command", "problems"),
    [
        (["redis-cli", "ping"], []),
        (["redis-cli", "-a", "hunter2", "ping"], ["the command passes a literal secret to -a."]),
        (["/usr/bin/redis-cli", "-h", "cache", "-a", "hunter2"], ["the command passes a literal secret to -a."]),
        # `-a` is redis-cli's password flag only: elsewhere it means something else.
        (["tar", "-a", "hunter2"], []),
        (["redis-cli", "-a"], []),
        (["redis-cli", "-a", "$REDIS_PASSWORD"], []),
        (["redis-cli", "-a", "@/run/secrets/redis"], []),  # a file the program reads
        (["sh", "-c", "DB_PASSWORD=@/run/secrets/db ./app"], []),
        (["./app", "--password", "hunter2"], ["the command passes a literal secret to --password."]),
        (["./app", "--password=hunter2"], ["the command passes a literal secret to --password."]),
        (["./app", "--password=a=b"], ["the command passes a literal secret to --password."]),
        (["./app", "--db-password=hunter2"], ["the command passes a literal secret to --db-password."]),
        (["./app", "-requirepass", "hunter2"], ["the command passes a literal secret to -requirepass."]),
        (["./app", "--password", "--verbose"], []),
        # A secret flag followed by another flag, upper-case too, takes no value (mysql then prompts for it),
        # and the words after them are still judged.
        (["mysql", "--password", "-P", "3306"], []),
        (["./app", "--password", "--verbose", "--apikey", "hunter2"],
         ["the command passes a literal secret to --apikey."]),
        (["./app", "--password"], []),
        (["./app", "--password", "/run/secrets/db"], []),
        # `@file` is a path only where the program reads one: a flag's value is taken as written.
        (["./app", "--password", "@hunter2"], ["the command passes a literal secret to --password."]),
        (["./app", "--password", "${PW}"], []),
        (["./app", "--password", "${PW:-hunter2}"], ["the command passes a literal secret to --password."]),
        (["./app", "--password", "$(cat /run/secrets/db)"], []),
        (["./app", "--password", "x$(cat /run/secrets/db)"], []),
        (["./app", "--password", "</run/secrets/db"], []),
        (["./app", "--passes", "3"], []),
        (["./app", "--pass", "hunter2"], ["the command passes a literal secret to --pass."]),
        (["sh", "-c", "export DB_PASSWORD=hunter2 && exec ./app"],
         ["the command sets DB_PASSWORD to a literal secret."]),
        (["sh", "-c", "DB_PASSWORD=$DB_PASSWORD_FILE ./app"], []),
        (["sh", "-c", "DB_NAME=app ./app"], []),
        (["./app", f"--dsn=postgres://app:{TOKEN}@db/app"],
         ["the command holds a URL with credentials."]),
        # Every problem of a command, not the first only.
        (["./app", "--password", "hunter2", "--api-key", "k3y", "--", f"--note={TOKEN}"],
         ["the command passes a literal secret to --password.", "the command passes a literal secret to --api-key.",
          "the command holds a random-looking token."]),
        (["sh", "-c", "export DB_PASSWORD=x; redis-cli -a y"],
         ["the command sets DB_PASSWORD to a literal secret.", "the command passes a literal secret to -a."]),
        (["redis-cli", "-a", "hunter2", "--user", "app", "--pass", "hunter3"],
         ["the command passes a literal secret to -a.", "the command passes a literal secret to --pass."]),
        # A word with no space reaches the program as written, no shell reading it: quoted, `$PW` is not expanded.
        (["./app", "--password='$PW'"], ["the command passes a literal secret to --password."]),
        # A shell string the shell itself would refuse is split on spaces.
        (["sh", "-c", "echo 'unbalanced --password hunter2"], ["the command passes a literal secret to --password."]),
        # ... and leaves the words before it judged.
        (["./app", "--password", "hunter2", "--motd", "it's a fine day"],
         ["the command passes a literal secret to --password."]),
    ],
)  # fmt: skip
def test_command_problems(command: list[str], problems: list[str]) -> None:
    assert command_problems("the command", command) == problems


@pytest.mark.parametrize(
    ("name", "value", "problems"),
    [
        ("DB_PASSWORD", "hunter2", ["environment variable DB_PASSWORD carries a literal secret."]),
        ("db_password", "hunter2", ["environment variable db_password carries a literal secret."]),
        ("DB_PASSWORD", "", []),
        ("DB_PASSWORD_FILE", "/run/secrets/db", []),
        ("DB_PASSWORD_FILE", f"postgres://a:{TOKEN}@db",
         ["environment variable DB_PASSWORD_FILE holds a URL with credentials."]),
        ("API_KEY", "x", ["environment variable API_KEY carries a literal secret."]),
        ("KEYBOARD", "us", []),
        ("BYPASS", "yes", []),
        ("NOTE", TOKEN, ["environment variable NOTE holds a random-looking token."]),
        ("IMAGE_SHA", TOKEN, []),
        ("NOTE", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:" + TOKEN, []),
        ("NOTE", "AKIAABCDEFGHIJKLMNOP", ["environment variable NOTE holds an AWS access key id."]),
    ],
)  # fmt: skip
def test_variable_problems(name: str, value: str, problems: list[str]) -> None:
    assert variable_problems(name, value) == problems


@pytest.mark.parametrize(
    ("value", "found"),
    [
        ("hello world, version 1.2.3", None),
        ("0123456789abcdef0123456789abcdef", "a random-looking token"),  # 32 hex characters, every one different
        ("0123456789abcdef0123456789abcde", None),  # 31
        ("00000000000000000000000000000000", None),  # hex, but nothing random in it
        ("sha256:" + "0123456789abcdef" * 4, None),  # a digest says what it is
        (f"{TOKEN[:21]}=sha256:" + "0123456789abcdef" * 4, None),  # cut out, it adds nothing to what precedes it
        ("q7Rk2ZpW9xLm4TbV8nYc3Hs", None),  # 23 characters
        ("abcdefghijklmnopqrstuvwxyzab", None),  # no digit: a word, however long
        ("1234567890123456789012345678", None),  # no letter
        ("q7Rk2ZpW-9xLm4TbV-8nYc3HsJ", None),  # `-` splits tokens
        (f"=={TOKEN}==", "a random-looking token"),  # padding is not part of the token
        ("X" + TOKEN[1:], "a random-looking token"),  # an `X` is: 24 characters still
        ("aaaaaaaaaaaa111111111111bbbb", None),  # letters and digits, but repetitive
        ("abcdef01" * 4, "a random-looking token"),  # hex at 3 bits a character: random enough for hex
        (("abcdef01" * 4)[:31], None),
        ("ghijklmn01234567" * 2, "a random-looking token"),  # exactly 4 bits a character
        ("q7Rk2ZpW9xLm4TbV8nYc3H==", None),  # 22 characters once the padding is gone
        ("Q7RK2ZPW9XLM4TBV8NYC3HSJ", "a random-looking token"),
        ("q7rk2zpw9xlm4tbv8nyc3hsj", "a random-looking token"),
        ("-----BEGIN RSA PRIVATE KEY-----", "a private key"),
        ("redis://:hunter2@cache:6379", "a URL with credentials"),
        ("app:hunter2@db:5432/app", "credentials before a host"),
        ("host=db password=hunter2", "a password parameter"),
        ("eyJhbGciOiJIUzI1.eyJzdWIiOiIx.c2lnbmF0dXJl", "a JSON Web Token"),
    ],
)
def test_value_problem(value: str, found: str | None) -> None:
    assert value_problem(value) == found


ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:wondernest/prod/postgres-app-AbCdEf"


@pytest.mark.parametrize(
    ("value_from", "pinned"),
    [
        ("arn:aws:ssm:eu-west-1:123456789012:parameter/x", False),
        (ARN, True),  # the whole secret: a JSON document, no field of it
        (f"{ARN}:password", False),
        (f"{ARN}:password::", False),
        (f"{ARN}:password:AWSCURRENT:", True),
        (f"{ARN}:password::0f5e0c2a-0000-4000-8000-000000000000", True),
        (f"{ARN}:::0f5e0c2a-0000-4000-8000-000000000000", True),
    ],
)
def test_a_reference_is_pinned_when_it_names_a_stage_a_version_or_no_field(value_from: str, pinned: bool) -> None:
    assert credentials._pinned(value_from) is pinned


@pytest.mark.parametrize(
    ("value", "credentials_document"),
    [
        ('{"engine": "postgres", "username": "app", "password": "x"}', True),
        ('{"password": "x"}', False),
        ('{"engine": "postgres"}', False),
        ('["engine", "password"]', False),
        ("not json", False),
        (None, False),
        ("04da6b54-80e4-46f7-96ec-b56ff0331ba9", False),  # not known yet
    ],
)
def test_a_database_credentials_document_names_its_engine_and_password(
    value: str | None, credentials_document: bool
) -> None:
    assert credentials._is_credentials_document(value) is credentials_document
