"""The admin connection by a secret's ARN, as the AWS stack gives it: the
provider reads the password from Secrets Manager (moto's server standing in)
when it connects, so a rotation of it changes no object's inputs."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import psycopg
import pytest
from moto.server import ThreadedMotoServer

from components.postgres.provider import RoleProvider
from tests.servers import PostgresServer, free_port, postgres_server

pytestmark = pytest.mark.servers

REGION = "eu-west-1"


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    # What boto3 reads in the provider's process, as `pulumi up` would pass it credentials.
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    yield boto3.client("secretsmanager", region_name=REGION)
    # moto's backends live in the process, not in the server: a second run in
    # this process (a mutation run's) would find this run's secret.
    urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/moto-api/reset", method="POST"))
    server.stop()


@pytest.fixture
def pg() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


def test_a_rotated_admin_password_changes_no_input_and_the_next_connection_reads_it(
    pg: PostgresServer, secrets: Any
) -> None:
    arn = secrets.create_secret(
        Name="rds!db-0123", SecretString=json.dumps({"username": pg.superuser, "password": pg.superuser_password})
    )["ARN"]
    connection = {
        "host": "127.0.0.1", "port": pg.port, "user": pg.superuser, "database": "wondernest", "sslmode": "disable",
        "password_secret": {"arn": arn, "region": REGION},
    }  # fmt: skip
    props = {"name": "rotated_reader", "connection_limit": 2, "login": True, "member_of": [], "members": [],
             "settings": [], "rotated": False, "password": "reader-pass-0000", "connection": connection}  # fmt: skip
    provider = RoleProvider()
    created = provider.create(props)
    assert created.id == "rotated_reader"
    # RDS rotates the master password: a new server password and a new secret version.
    with pg.admin() as conn:
        conn.execute(f"ALTER ROLE {pg.superuser} PASSWORD 'rotated-0000'")
    secrets.put_secret_value(
        SecretId=arn, SecretString=json.dumps({"username": pg.superuser, "password": "rotated-0000"})
    )
    try:
        # The same inputs: nothing to show in a preview.
        assert not provider.diff("rotated_reader", props, props).changes
        # And the provider still reaches the server, with the password of now.
        outs = provider.read("rotated_reader", props).outs or {}
        assert outs["name"] == "rotated_reader" and outs["escalations"] == []
        provider.delete("rotated_reader", props)
    finally:
        # The server is this test's alone: put the password its fixture knows back.
        with psycopg.connect(pg.dsn(password="rotated-0000"), autocommit=True) as conn:
            conn.execute(f"ALTER ROLE {pg.superuser} PASSWORD '{pg.superuser_password}'")
