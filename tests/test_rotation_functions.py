"""The rotation functions for the API's signing keys and the ElastiCache users'
passwords (components/aws/functions/), through Secrets Manager's four steps.

The Secrets Manager here follows the documented rotation protocol ("How
rotation works", and AWS's own rotation functions): RotateSecret registers a
new version id under AWSPENDING with no value, then invokes the function with
createSecret, setSecret, testSecret and finishSecret; a value read by the
pending version before createSecret has put one is ResourceNotFoundException.
(moto's RotateSecret copies the current value into the pending version, which
would hide a createSecret that never writes.)"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pulumi
import pytest

from components.aws.functions import rotate_cache_users, rotate_signing_keys


class ResourceNotFoundException(Exception):
    pass


class SecretsManager:
    class exceptions:
        ResourceNotFoundException = ResourceNotFoundException

    def __init__(self, value: dict[str, str]) -> None:
        self.arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:wondernest/prod/x"
        first = str(uuid.uuid4())
        self.values: dict[str, str] = {first: json.dumps(value)}
        self.stages: dict[str, list[str]] = {first: ["AWSCURRENT"]}

    def describe_secret(self, SecretId: str) -> dict[str, Any]:
        return {"RotationEnabled": True, "VersionIdsToStages": {k: list(v) for k, v in self.stages.items()}}

    def get_secret_value(self, SecretId: str, VersionId: str | None = None, VersionStage: str = "AWSCURRENT") -> Any:
        found = [v for v, s in self.stages.items() if VersionStage in s and VersionId in (None, v)]
        if not found or found[0] not in self.values:
            raise ResourceNotFoundException(f"no {VersionStage} value")
        version = found[0]
        return {"SecretString": self.values[version]}

    def put_secret_value(
        self, SecretId: str, ClientRequestToken: str, SecretString: str, VersionStages: list[str]
    ) -> None:
        assert VersionStages == ["AWSPENDING"] and ClientRequestToken in self.stages
        self.values[ClientRequestToken] = SecretString

    def update_secret_version_stage(
        self, SecretId: str, VersionStage: str, MoveToVersionId: str, RemoveFromVersionId: str
    ) -> None:
        self.stages[RemoveFromVersionId].remove(VersionStage)
        self.stages[MoveToVersionId] = [s for s in self.stages[MoveToVersionId] if s != "AWSPENDING"] + [VersionStage]
        self.stages[RemoveFromVersionId].append("AWSPREVIOUS")

    def get_random_password(self, PasswordLength: int, ExcludeCharacters: str) -> dict[str, str]:
        password = uuid.uuid4().hex + uuid.uuid4().hex
        assert not set(password) & set(ExcludeCharacters)
        return {"RandomPassword": password[:PasswordLength]}

    def current(self) -> dict[str, str]:
        return dict(json.loads(self.get_secret_value(SecretId=self.arn)["SecretString"]))

    def rotate(self, function: Callable[..., None], **extra: Any) -> None:
        """RotateSecret: a pending version with no value, then the four steps."""
        token = str(uuid.uuid4())
        self.stages[token] = ["AWSPENDING"]
        for step in ("createSecret", "setSecret", "testSecret", "finishSecret"):
            function({"SecretId": self.arn, "ClientRequestToken": token, "Step": step}, None, client=self, **extra)


KEYS = {f: f"{f}-" + "k" * 40 for f in ("previous", "current", "next")}


def test_a_rotation_moves_each_signing_key_down_one_place() -> None:
    sm = SecretsManager(KEYS)
    sm.rotate(rotate_signing_keys.handler)
    after = sm.current()
    assert after["previous"] == KEYS["current"] and after["current"] == KEYS["next"]
    assert after["next"] not in KEYS.values() and len(after["next"]) >= 64
    sm.rotate(rotate_signing_keys.handler)
    assert sm.current()["previous"] == KEYS["next"]
    assert sum("AWSCURRENT" in s for s in sm.stages.values()) == 1


def test_a_step_run_twice_changes_nothing_more() -> None:
    """Secrets Manager retries a failed step: createSecret must not write a second new key."""
    sm = SecretsManager(KEYS)
    token = str(uuid.uuid4())
    sm.stages[token] = ["AWSPENDING"]
    event = {"SecretId": sm.arn, "ClientRequestToken": token, "Step": "createSecret"}
    rotate_signing_keys.handler(event, None, client=sm)
    written = sm.values[token]
    rotate_signing_keys.handler(event, None, client=sm)
    assert sm.values[token] == written


@pytest.mark.parametrize(
    ("document", "words"),
    [
        ({"current": "c" * 40, "next": "n" * 40}, "previous key is missing"),
        ({**KEYS, "next": "tiny-7"}, "next key is missing or shorter"),
        ({**KEYS, "next": KEYS["current"]}, "not all different"),
    ],
)
def test_a_malformed_document_is_refused_without_showing_a_key(document: dict[str, str], words: str) -> None:
    sm = SecretsManager(document)
    with pytest.raises(ValueError, match=words) as caught:
        sm.rotate(rotate_signing_keys.handler)
    assert not any(value in str(caught.value) for value in document.values())


def test_a_version_that_is_not_pending_is_refused() -> None:
    sm = SecretsManager(KEYS)
    [current] = sm.stages
    sm.stages["stray"] = ["AWSPREVIOUS"]
    with pytest.raises(ValueError, match="not AWSPENDING"):
        rotate_signing_keys.handler(
            {"SecretId": sm.arn, "ClientRequestToken": "stray", "Step": "createSecret"}, None, client=sm
        )
    # The current version itself: nothing to do.
    rotate_signing_keys.handler(
        {"SecretId": sm.arn, "ClientRequestToken": current, "Step": "finishSecret"}, None, client=sm
    )
    assert sm.stages[current] == ["AWSCURRENT"]


class ElastiCache:
    """DescribeUsers and ModifyUser as ElastiCache answers them: a modified
    user is `modifying` for a while, then `active` with the passwords given."""

    def __init__(self, user_id: str, password: str) -> None:
        self.users = {user_id: {"UserId": user_id, "Status": "active", "passwords": [password]}}
        self.calls: list[tuple[str, list[str]]] = []
        self._busy = 0

    def describe_users(self, UserId: str) -> dict[str, Any]:
        user = self.users[UserId]
        if self._busy:
            self._busy -= 1
            user["Status"] = "modifying" if self._busy else "active"
        return {"Users": [dict(user)]}

    def modify_user(self, UserId: str, Passwords: list[str]) -> None:
        assert self.users[UserId]["Status"] == "active", "ElastiCache refuses a user that is being modified"
        assert 1 <= len(Passwords) <= 2
        self.users[UserId]["passwords"] = list(Passwords)
        self.users[UserId]["Status"] = "modifying"
        self.calls.append((UserId, list(Passwords)))
        self._busy = 3


USER = {"username": "wondernest_app", "password": "p" * 40, "user_id": "wondernest-prod-redis-app"}


def test_a_cache_user_takes_the_new_password_and_keeps_the_old_one(monkeypatch: pytest.MonkeyPatch) -> None:
    sm, cache = SecretsManager(USER), ElastiCache(USER["user_id"], USER["password"])
    monkeypatch.setenv(
        "USER_IDS", json.dumps({sm.arn: USER["user_id"], "arn:other": "wondernest-prod-redis-monitoring"})
    )
    sm.rotate(rotate_cache_users.handler, cache=cache, poll=0)
    after = sm.current()
    assert after["password"] != USER["password"] and {k: after[k] for k in ("username", "user_id")} == {
        "username": USER["username"], "user_id": USER["user_id"]}  # fmt: skip
    assert cache.calls == [(USER["user_id"], [after["password"], USER["password"]])]
    assert cache.users[USER["user_id"]]["Status"] == "active"
    # The next rotation retires the first password.
    sm.rotate(rotate_cache_users.handler, cache=cache, poll=0)
    assert cache.calls[-1][1] == [sm.current()["password"], after["password"]]


def test_a_cache_user_this_function_may_not_rotate_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    sm, cache = SecretsManager(USER), ElastiCache(USER["user_id"], USER["password"])
    # This secret may name only the monitoring user: pointing it at the app's user is refused.
    monkeypatch.setenv("USER_IDS", json.dumps({sm.arn: "wondernest-prod-redis-monitoring"}))
    with pytest.raises(ValueError, match="does not rotate the user 'wondernest-prod-redis-app' with this secret"):
        sm.rotate(rotate_cache_users.handler, cache=cache, poll=0)
    assert cache.calls == []


def test_a_generated_password_is_one_elasticache_takes() -> None:
    """16 to 128 characters, none of `,`, `"`, `/`, `@` (ElastiCache's RBAC guide)."""
    assert set(',"/@') <= set(rotate_cache_users.EXCLUDED_CHARACTERS)
    assert 16 <= rotate_cache_users.PASSWORD_LENGTH <= 128


def test_a_user_that_never_settles_fails_the_step(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = ElastiCache(USER["user_id"], USER["password"])
    cache.users[USER["user_id"]]["Status"] = "modifying"
    with pytest.raises(ValueError, match="still modifying"):
        rotate_cache_users.wait_active(cache, USER["user_id"], timeout=0, poll=0)


@pytest.mark.parametrize("module", ["rotate_signing_keys", "rotate_cache_users"])
def test_each_archive_imports_its_handler_on_its_own(tmp_path: Any, module: str) -> None:
    """Unpacked as Lambda unpacks it, with nothing of the project beside it: the
    handler the function names imports (boto3 is the runtime's)."""
    import subprocess
    import sys
    from pathlib import Path

    from components.aws.secret_rotation import PACKAGE, function_archive

    for name, asset in function_archive(module).assets.items():
        assert isinstance(asset, pulumi.FileAsset)
        target = Path(tmp_path) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(Path(str(asset.path)).read_text())
    script = f"import importlib; print(callable(importlib.import_module('{PACKAGE}.{module}').handler))"
    result = subprocess.run([sys.executable, "-E", "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert result.stdout.strip() == "True", result.stderr
