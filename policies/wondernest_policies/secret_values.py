"""Secrets recognised by what they are, not only by the variable that holds them.

A name check alone misses `API_CREDS=AKIA...`, a password passed as
`--requirepass hunter2` in a command, or a token pasted into an innocently named
variable. These checks judge the value: known credential formats, credentials
inside URLs, and long random-looking strings; and in a command line, a secret
flag followed by a literal value.
"""

from __future__ import annotations

import math
import re
import shlex
from collections import Counter
from collections.abc import Iterable, Sequence

# Secret-looking variable names; `*_FILE` variants name a path, not a secret.
SECRET_NAME = re.compile(
    r"(PASSWORD|PASSWD|_PASS|SECRET|TOKEN|_KEY|APIKEY|CREDENTIALS?|DATA_SOURCE_NAME|REQUIREPASS|MASTERAUTH)$",
    re.IGNORECASE,
)
# A user (or none, as in `redis://:password@host`) and a password before the host.
URL_CREDENTIALS = re.compile(r"://[^/\s:@]*:[^/\s@]+@")
# The same without a scheme (postgres_exporter's `user:password@host:port/db`),
# and a password given as a connection-string or query parameter.
BARE_CREDENTIALS = re.compile(r"^[A-Za-z0-9_.-]+:[^/\s@:]+@[A-Za-z0-9_.-]+(:\d+)?(/|$)")
PASSWORD_PARAMETER = re.compile(r"(?:^|[?&;\s])(?:password|passwd|pwd)=[^&;\s]+", re.IGNORECASE)

KNOWN_FORMATS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("an AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("a private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
    ("a JSON Web Token", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
    ("a GitHub token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b")),
    ("a Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    ("a Slack webhook URL", re.compile(r"hooks\.slack\.com/services/T[A-Za-z0-9]+/B[A-Za-z0-9]+/[A-Za-z0-9]+")),
    ("a URL with credentials", URL_CREDENTIALS),
    ("credentials before a host", BARE_CREDENTIALS),
    ("a password parameter", PASSWORD_PARAMETER),
)

# `-`, `_` and `/` split tokens: they join words in names and paths far more
# often than they occur in generated secrets.
_TOKEN = re.compile(r"[A-Za-z0-9+=]{20,}")
_DIGEST = re.compile(r"\bsha(?:1|256|512):[0-9a-f]+", re.IGNORECASE)
_HEX = re.compile(r"^[0-9a-fA-F]+$")
# Names whose values are digests or versions, which look random by design.
_DIGEST_NAME = re.compile(r"(SHA|DIGEST|COMMIT|REVISION|HASH|CHECKSUM|VERSION)$", re.IGNORECASE)
# Shannon entropy, bits per character: generated passwords and keys are near
# the alphabet's maximum (about 5.9 for base64, 4 for hex), words and
# identifiers well below.
RANDOM_BITS = 4.0
RANDOM_HEX_BITS = 3.0


def _entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def _random_token(value: str, name: str) -> bool:
    if value.startswith("arn:") or _DIGEST_NAME.search(name):
        return False
    for token in _TOKEN.findall(_DIGEST.sub("", value)):
        stripped = token.strip("=")
        if len(stripped) >= 32 and _HEX.match(stripped) and _entropy(stripped) >= RANDOM_HEX_BITS:
            return True
        mixed = re.search(r"[A-Za-z]", stripped) and re.search(r"\d", stripped)
        if len(stripped) >= 24 and mixed and _entropy(stripped) >= RANDOM_BITS:
            return True
    return False


def value_problem(value: str, name: str = "") -> str | None:  # pragma: no mutate (no other default names a digest)
    """What a literal value looks like, when it looks like a secret."""
    for what, pattern in KNOWN_FORMATS:
        if pattern.search(value):
            return what
    if _random_token(value, name):
        return "a random-looking token"
    return None


# What the platform passes to its tasks as plain `environment`: endpoints,
# ports, names, paths, limits, the collector's config. Anything else a task
# receives must come by reference (`secrets`, `valueFrom`): a human-chosen
# password under an innocent name (`APP_PIN=1234`) looks like neither a
# secret name nor a random value, so a value check alone cannot refuse it.
# An app brings its own plain names through the rule's `nonSecretEnvironment`.
PLATFORM_ENVIRONMENT = frozenset(
    {
        # The API and its migrations.
        "DB_HOST", "DB_PORT", "DB_NAME", "DB_SSLMODE", "DB_SSLROOTCERT", "DB_POOL_MIN", "DB_POOL_MAX",
        "DB_READ_HOSTS", "REDIS_HOST", "REDIS_PORT", "REDIS_USER", "REDIS_TLS", "REDIS_CA_FILE", "PORT",
        "METRICS_PORT", "FORWARDED_ALLOW_IPS", "HASH_CONCURRENCY", "JWT_ISSUER", "JWT_AUDIENCE", "LOG_LEVEL",
        # The backup service.
        "BACKUP_DIR", "BACKUP_SCHEDULE", "RETENTION_LAST", "RETENTION_DAILY", "RETENTION_WEEKLY",
        "RETENTION_MONTHLY", "S3_BUCKET", "S3_KMS_KEY_ID", "S3_PREFIX", "S3_REGION", "S3_SSE",
        # The exporters and the metrics collector.
        "DATA_SOURCE_URI", "REDIS_ADDR", "REDIS_EXPORTER_WEB_LISTEN_ADDRESS", "AOT_CONFIG_CONTENT",
    }
)  # fmt: skip


def undeclared_variable(name: str, declared: frozenset[str] | set[str]) -> str | None:
    """A plain variable the platform (or the rule's config) does not declare as non-secret."""
    if name in PLATFORM_ENVIRONMENT or name in declared:
        return None
    return (
        f"environment variable {name} is not one the platform declares non-secret: pass it by reference "
        "(`secrets`, valueFrom), or name it in the rule's `nonSecretEnvironment`."
    )


def variable_problems(name: str, value: str) -> list[str]:
    """A variable carries a secret by its name (with a value) or by its value.
    A `*_FILE` name names a path, so only its value is judged."""
    if not value:
        return []
    if SECRET_NAME.search(name.strip()):  # anchored at the end: never a `*_FILE` name
        return [f"environment variable {name} carries a literal secret."]
    found = value_problem(value, name)
    return [f"environment variable {name} holds {found}."] if found else []


def _words(command: Sequence[str]) -> list[str]:
    """A command's words, a shell string (`CMD-SHELL`, `sh -c`) split as the shell would."""
    words: list[str] = []
    for part in command:
        try:
            words += shlex.split(part) if " " in part else [part]
        except ValueError:
            words += part.split()
    return words


def _literal(value: str, *, allow_at: bool = True) -> bool:
    """Not a reference the process resolves itself: `$VAR` (with no default
    written in), `$(cat file)`, a path, `@file` where the program reads one."""
    if not value or value.startswith(("/", "<")) or (allow_at and value.startswith("@")):
        return False
    if value.startswith("$") or "$(" in value:
        # `${PW:-hunter2}` falls back to a literal.
        return bool(re.search(r"\$\{[^}]*:?-[^}]+\}", value))
    return True


# Flags that take a password without saying so: redis-cli's, mysql's attached `-p<password>`.
SHORT_PASSWORD_FLAGS = {"redis-cli": "-a"}
ASSIGNMENT = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)$")


def command_problems(label: str, command: Iterable[str]) -> list[str]:
    words = _words([str(c) for c in command])
    problems: list[str] = []
    for i, word in enumerate(words):
        # `export DB_PASSWORD=hunter2`, `env DB_PASSWORD=hunter2 ./app`, `PGPASSWORD=... psql`.
        assigned = ASSIGNMENT.match(word)
        if assigned and SECRET_NAME.search(assigned["name"]) and _literal(assigned["value"]):
            problems.append(f"{label} sets {assigned['name']} to a literal secret.")
            continue
        if (
            any(
                word == flag and program in (w.rsplit("/")[-1] for w in words[:i])
                for program, flag in SHORT_PASSWORD_FLAGS.items()
            )
            and i + 1 < len(words)
            and _literal(words[i + 1])
        ):
            problems.append(f"{label} passes a literal secret to {word}.")
            continue
        flag = re.match(r"^--?(?P<name>[A-Za-z][A-Za-z0-9_-]*)(?:=(?P<value>.*))?$", word)
        if flag and SECRET_NAME.search("_" + flag["name"].replace("-", "_")):
            value = flag["value"] if flag["value"] is not None else (words[i + 1] if i + 1 < len(words) else "")
            if flag["value"] is None and re.match(r"^--?[A-Za-z]", value):
                continue
            if _literal(value, allow_at=False):
                problems.append(f"{label} passes a literal secret to {word.split('=')[0]}.")
                continue
        found = value_problem(word)
        if found:
            problems.append(f"{label} holds {found}.")
    return problems
