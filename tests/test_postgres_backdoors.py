"""What a server can carry beyond the platform's declaration, on a real
PostgreSQL 15 of its own (these tests edit pg_hba.conf and ALTER SYSTEM):
each backdoor is read as drift, then removed by an update or refused by name."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg import errors

from components.postgres import backdoors
from components.postgres.provider import DatabaseAccessProvider, PostgresResourceError, RoleProvider, scram_matches
from tests.platform_db import PASSWORDS, Applied, connect_as, platform_with_users
from tests.servers import PostgresServer, postgres_server

pytestmark = pytest.mark.servers


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with postgres_server() as pg:
        yield pg


@pytest.fixture(scope="module")
def applied(server: PostgresServer) -> Applied:
    return platform_with_users(server)


def access(applied: Applied) -> tuple[DatabaseAccessProvider, dict[str, Any], str]:
    props = applied.props["database-access"]
    return DatabaseAccessProvider(), props, props["database"]


def read(applied: Applied) -> dict[str, Any]:
    provider, props, database = access(applied)
    return provider.read(database, props).outs or {}


def test_a_clean_server_has_nothing_undeclared_or_refused(applied: Applied) -> None:
    provider, props, database = access(applied)
    clean = read(applied)
    assert clean["undeclared"] == [] and clean["refused"] == []
    assert not provider.diff(database, clean, props).changes


def test_an_undeclared_role_that_reaches_the_database_is_refused_by_name(
    server: PostgresServer, applied: Applied
) -> None:
    provider, props, database = access(applied)
    with server.admin() as conn:
        conn.execute("CREATE ROLE side_door LOGIN PASSWORD 'side-door-pass'")
        conn.execute(f"GRANT CONNECT ON DATABASE {database} TO side_door")
        conn.execute("CREATE ROLE streamer REPLICATION")
        conn.execute("CREATE ROLE hidden_root SUPERUSER")
        conn.execute("CREATE ROLE delegate CREATEROLE")
        conn.execute("CREATE ROLE unfiltered LOGIN BYPASSRLS")
        # Another database's role, with no way into this one: not this stack's to judge.
        conn.execute("CREATE ROLE elsewhere LOGIN")
    try:
        drifted = read(applied)
        assert drifted["refused"] == [
            "role delegate (CREATEROLE) is not declared: drop it (DROP OWNED BY delegate; "
            "DROP ROLE delegate) if nobody should have it, or declare it",
            "role hidden_root (SUPERUSER, CONNECT) is not declared: drop it (DROP OWNED BY hidden_root; "
            "DROP ROLE hidden_root) if nobody should have it, or declare it",
            "role streamer (REPLICATION) is not declared: drop it (DROP OWNED BY streamer; "
            "DROP ROLE streamer) if nobody should have it, or declare it",
            "role unfiltered (LOGIN, BYPASSRLS) is not declared: drop it (DROP OWNED BY unfiltered; "
            "DROP ROLE unfiltered) if nobody should have it, or declare it",
        ]
        # `elsewhere` reaches none of this database: it is named nowhere.
        assert drifted["undeclared"] == ["role side_door (LOGIN, CONNECT) is not declared and reaches this database"]
        assert provider.diff(database, drifted, props).changes
        with pytest.raises(PostgresResourceError, match=r"4 thing.*delegate.*hidden_root.*streamer.*unfiltered"):
            provider.update(database, drifted, props)
        # The plain login lost its way in; the powerful roles are refused, not removed: an operator's to judge.
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            psycopg.connect(server.dsn(user="side_door", password="side-door-pass", dbname=database))
        with server.admin() as conn:
            left = conn.execute(
                "SELECT count(*) FROM pg_roles WHERE rolname IN ('streamer', 'hidden_root', 'delegate', 'unfiltered')"
            ).fetchone()
        assert left == (4,)
    finally:
        with server.admin(database) as conn:
            for role in ("side_door", "streamer", "hidden_root", "delegate", "unfiltered", "elsewhere"):
                conn.execute(f"DROP OWNED BY {role}")
                conn.execute(f"DROP ROLE {role}")
    assert read(applied)["refused"] == []


def test_an_undeclared_roles_finding_carries_the_statement_that_takes_its_connect(
    server: PostgresServer, applied: Applied
) -> None:
    """The update revokes every undeclared database right before it reads the
    backdoors, so this statement is checked on its own."""
    database = applied.props["database-access"]["database"]
    with server.admin(database) as conn:
        try:
            conn.execute(f"CREATE ROLE side_door LOGIN; GRANT CONNECT ON DATABASE {database} TO side_door")
            with conn.cursor() as cur:
                (finding,) = backdoors.undeclared_roles(cur, applied.props["database-access"]["connect_roles"])
                assert finding.remedy is not None
                cur.execute(finding.remedy)
            held = conn.execute(f"SELECT has_database_privilege('side_door', '{database}', 'CONNECT')").fetchone()
            assert held == (False,)
        finally:
            conn.execute(f"REVOKE CONNECT ON DATABASE {database} FROM side_door; DROP ROLE side_door")


def test_bypassrls_on_a_managed_role_is_drift_and_update_removes_it(server: PostgresServer, applied: Applied) -> None:
    props = applied.props["role-app"]
    name = props["name"]
    provider = RoleProvider()
    with server.admin() as conn:
        conn.execute(f"ALTER ROLE {name} BYPASSRLS")
    drifted = provider.read(name, props).outs or {}
    assert "BYPASSRLS" in drifted["escalations"]
    assert provider.diff(name, drifted, props).changes
    provider.update(name, drifted, props)
    assert (provider.read(name, props).outs or {})["escalations"] == []
    with server.admin() as conn:
        assert conn.execute("SELECT rolbypassrls FROM pg_roles WHERE rolname = %s", (name,)).fetchone() == (False,)


def test_settings_of_a_role_everywhere_or_of_another_database_are_not_this_databases(
    server: PostgresServer, applied: Applied
) -> None:
    """A role's own settings are its resource's drift; another database's are its own."""
    try:
        with server.admin() as conn:
            conn.execute("CREATE ROLE lax_role; ALTER ROLE lax_role SET statement_timeout = 0")
            conn.execute("ALTER ROLE wondernest_migrator IN DATABASE postgres SET session_replication_role = replica")
            conn.execute("ALTER DATABASE postgres SET session_replication_role = replica")
        found = read(applied)
        assert (found["undeclared"], found["refused"]) == ([], [])
    finally:
        with server.admin() as conn:
            conn.execute("DROP ROLE IF EXISTS lax_role")
            conn.execute("ALTER ROLE wondernest_migrator IN DATABASE postgres RESET ALL")
            conn.execute("ALTER DATABASE postgres RESET ALL")


def test_a_setting_made_with_alter_system_is_drift_and_update_resets_it(
    server: PostgresServer, applied: Applied
) -> None:
    provider, props, database = access(applied)
    with server.admin() as conn:
        conn.execute("ALTER SYSTEM SET log_connections = off")
        conn.execute("ALTER SYSTEM SET password_encryption = 'md5'")
        conn.execute("SELECT pg_reload_conf()")
    drifted = read(applied)
    assert "setting log_connections = 'off' made with ALTER SYSTEM" in drifted["undeclared"]
    assert "setting password_encryption = 'md5' made with ALTER SYSTEM" in drifted["undeclared"]
    provider.update(database, drifted, props)
    assert read(applied)["undeclared"] == []
    with server.admin() as conn:
        assert conn.execute("SHOW password_encryption").fetchone() == ("scram-sha-256",)


def test_a_trust_line_in_pg_hba_is_refused_and_named(server: PostgresServer, applied: Applied) -> None:
    provider, props, database = access(applied)
    hba = server.root / "pg_hba.conf"
    rendered = hba.read_text()
    analytics = applied.spec.role("analytics").name
    # Ahead of the rendered lines, as an intruder would put it: the first match wins.
    hba.write_text(f"host {database} {analytics} 127.0.0.1/32 trust\n" + rendered)
    with server.admin() as conn:
        conn.execute("SELECT pg_reload_conf()")
    try:
        with connect_as(server, applied.spec, "analytics", password="not-the-password") as conn:
            assert conn.execute("SELECT current_user").fetchone() == (analytics,)
        drifted = read(applied)
        assert drifted["refused"] == [
            f"pg_hba.conf line 1: host {database} {analytics} 127.0.0.1/32 trust: only scram-sha-256 is the "
            "platform's; replace the Postgres container (pulumi up --replace <its URN>) to put the rendered file back"
        ]
        with pytest.raises(PostgresResourceError, match=r"pg_hba.conf line 1"):
            provider.update(database, drifted, props)
    finally:
        hba.write_text(rendered)
        with server.admin() as conn:
            conn.execute("SELECT pg_reload_conf()")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect_as(server, applied.spec, "analytics", password="not-the-password")
    assert read(applied)["refused"] == []


def test_every_pg_hba_line_but_scram_or_reject_is_named_with_its_type_databases_users_address_and_method(
    server: PostgresServer, applied: Applied
) -> None:
    hba = server.root / "pg_hba.conf"
    rendered = hba.read_text()
    hba.write_text(
        "local all all trust\n"
        "host all all 10.0.0.0/8 bogus\n"
        "host all all 10.1.0.0 255.255.0.0 md5\n"
        "host all all 10.2.0.0 255.0.255.0 md5\n"
        "host all all fd00::/64 password\n"
        "host all all samenet reject\n"
        "host wondernest,postgres all samehost ident\n"
        "host all +wondernest_app .example.com md5\n"
        "hostnossl all all all trust\n"
        # Its own kind, but the server has no TLS: such a line can never match.
        "hostssl all all 127.0.0.1/32 scram-sha-256\n" + rendered
    )
    platform = ": only scram-sha-256 is the platform's; replace the Postgres container"
    unusable = ": the server cannot use it; if the rendered file has no such line, replace the Postgres container"
    suffix = " (pulumi up --replace <its URN>) to put the rendered file back"
    try:
        assert read(applied)["refused"] == [
            "pg_hba.conf line 1: local all all trust" + platform + suffix,
            'pg_hba.conf line 2: invalid authentication method "bogus"' + unusable + suffix,
            "pg_hba.conf line 3: host all all 10.1.0.0/16 md5" + platform + suffix,
            # PostgreSQL takes a mask that is no prefix; no /n could name it.
            "pg_hba.conf line 4: host all all 10.2.0.0 255.0.255.0 md5" + platform + suffix,
            "pg_hba.conf line 5: host all all fd00::/64 password" + platform + suffix,
            "pg_hba.conf line 7: host wondernest,postgres all samehost ident" + platform + suffix,
            "pg_hba.conf line 8: host all +wondernest_app .example.com md5" + platform + suffix,
            "pg_hba.conf line 9: hostnossl all all all trust" + platform + suffix,
            "pg_hba.conf line 10: hostssl all all 127.0.0.1/32 scram-sha-256 (hostssl record cannot match because "
            "SSL is disabled)" + unusable + suffix,
        ]
    finally:
        hba.write_text(rendered)
    assert read(applied)["refused"] == []


def test_catalog_rights_handed_to_platform_roles_are_drift_and_update_revokes_them(
    server: PostgresServer, applied: Applied
) -> None:
    provider, props, database = access(applied)
    app, analytics = applied.spec.role("app").name, applied.spec.role("analytics").name
    with server.admin(database) as conn:
        conn.execute(f"GRANT EXECUTE ON FUNCTION pg_read_file(text) TO {app}")
        conn.execute(f"GRANT SELECT (rolname, rolpassword) ON pg_authid TO {analytics}")
        conn.execute(f"GRANT SELECT ON pg_catalog.pg_statistic TO {analytics}")
    with connect_as(server, applied.spec, "analytics") as conn:
        assert conn.execute("SELECT count(rolpassword) FROM pg_authid").fetchone() != (0,)
    drifted = read(applied)
    assert sorted(f for f in drifted["undeclared"] if "catalog" in f) == [
        f"EXECUTE on catalog function pg_read_file(text) to {app}",
        f"SELECT on catalog table pg_authid (rolname) to {analytics}",
        f"SELECT on catalog table pg_authid (rolpassword) to {analytics}",
        f"SELECT on catalog table pg_statistic to {analytics}",
    ]
    provider.update(database, drifted, props)
    assert read(applied)["undeclared"] == []
    with connect_as(server, applied.spec, "analytics") as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute("SELECT rolpassword FROM pg_authid")
    with connect_as(server, applied.spec, "app") as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute("SELECT pg_read_file('postgresql.conf')")
    # The migrator keeps the lock functions it is declared to have.
    with connect_as(server, applied.spec, "migrator") as conn:
        conn.execute("SELECT pg_advisory_lock(7)")
        assert conn.execute("SELECT pg_advisory_unlock(7)").fetchone() == (True,)


def test_undeclared_schemas_lose_the_platforms_rights_and_what_they_hold_is_refused(
    server: PostgresServer, applied: Applied
) -> None:
    provider, props, database = access(applied)
    app = applied.spec.role("app").name
    with server.admin(database) as conn:
        conn.execute("GRANT CREATE ON SCHEMA public TO PUBLIC")
        conn.execute("CREATE SCHEMA side")
        conn.execute(f"GRANT USAGE, CREATE ON SCHEMA side TO {app}")
        conn.execute("CREATE SCHEMA stash")
        conn.execute("CREATE TABLE stash.copied (email text)")
    try:
        drifted = read(applied)
        assert sorted(f for f in drifted["undeclared"] if "schema" in f) == [
            "CREATE on undeclared schema public to PUBLIC",
            f"CREATE on undeclared schema side to {app}",
            f"USAGE on undeclared schema side to {app}",
            "empty undeclared schema side",
        ]
        assert drifted["refused"] == [
            "table stash.copied in undeclared schema stash: move it into a declared schema, or drop it if nothing "
            "needs it"
        ]
        with pytest.raises(PostgresResourceError, match=r"stash.copied"):
            provider.update(database, drifted, props)
        # What was safe to remove is gone, even though the update refused the rest.
        with server.admin(database) as conn:
            assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'side'").fetchone() == (0,)
        with connect_as(server, applied.spec, "app") as conn, pytest.raises(errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE public.dropped (id int)")
    finally:
        with server.admin(database) as conn:
            conn.execute("DROP SCHEMA IF EXISTS side")
            conn.execute("DROP SCHEMA stash CASCADE")
            conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    clean = read(applied)
    assert clean["undeclared"] == [] and clean["refused"] == []


def test_what_an_undeclared_schema_holds_is_refused_by_kind_and_name(server: PostgresServer, applied: Applied) -> None:
    provider, props, database = access(applied)
    try:
        with server.admin(database) as conn:
            conn.execute("CREATE SCHEMA stash")
            conn.execute("CREATE TABLE stash.copied (email text)")
            conn.execute("CREATE TABLE stash.by_month (at date) PARTITION BY RANGE (at)")
            conn.execute("CREATE VIEW stash.emails AS SELECT email FROM stash.copied")
            conn.execute("CREATE MATERIALIZED VIEW stash.counted AS SELECT count(*) FROM stash.copied")
            conn.execute("CREATE SEQUENCE stash.ticket")
            conn.execute("CREATE FUNCTION stash.leak(text, int) RETURNS int LANGUAGE sql AS 'SELECT 1'")
            conn.execute("CREATE EXTENSION file_fdw SCHEMA stash")
            conn.execute("CREATE SERVER files FOREIGN DATA WRAPPER file_fdw")
            conn.execute("CREATE FOREIGN TABLE stash.passwd (line text) SERVER files OPTIONS (filename '/etc/passwd')")
        drifted = read(applied)
        advice = "move it into a declared schema, or drop it if nothing needs it"
        # file_fdw's own handler and validator are the extension's, installed in that very schema: not named.
        assert drifted["refused"] == [
            f"table stash.by_month in undeclared schema stash: {advice}",
            f"table stash.copied in undeclared schema stash: {advice}",
            f"materialized view stash.counted in undeclared schema stash: {advice}",
            f"view stash.emails in undeclared schema stash: {advice}",
            f"function stash.leak(text, integer) in undeclared schema stash: {advice}",
            f"foreign table stash.passwd in undeclared schema stash: {advice}",
            f"sequence stash.ticket in undeclared schema stash: {advice}",
        ]
        assert drifted["undeclared"] == []
        with pytest.raises(PostgresResourceError, match=r"^7 thing"):
            provider.update(database, drifted, props)
    finally:
        with server.admin(database) as conn:
            conn.execute("DROP SCHEMA IF EXISTS stash CASCADE")
            conn.execute("DROP SERVER IF EXISTS files")
    clean = read(applied)
    assert clean["undeclared"] == [] and clean["refused"] == []


def test_a_cheap_verifier_of_the_declared_password_is_drift(server: PostgresServer, applied: Applied) -> None:
    """The declared password, but one PBKDF2 iteration: a stolen catalog then cracks it 4096 times faster."""
    import base64
    import hashlib
    import hmac

    props = applied.props["role-analytics"]
    salt, password = b"0123456789abcdef", PASSWORDS["analytics"]
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 1)
    client = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    encode = base64.b64encode
    verifier = (
        f"SCRAM-SHA-256$1:{encode(salt).decode()}${encode(hashlib.sha256(client).digest()).decode()}:"
        f"{encode(server_key).decode()}"
    )
    with connect_as(server, applied.spec, "analytics") as conn:
        conn.execute(f"ALTER ROLE {props['name']} PASSWORD '{verifier}'")
    # It still logs in with the declared password, which is the point.
    connect_as(server, applied.spec, "analytics").close()
    provider = RoleProvider()
    drifted = provider.read(props["name"], props).outs or {}
    assert drifted["escalations"] == ["PASSWORD not the declared one"]
    provider.update(props["name"], drifted, props)
    assert (provider.read(props["name"], props).outs or {})["escalations"] == []


@pytest.mark.parametrize("encryption", ["scram-sha-256", "md5"])
def test_a_password_a_role_set_itself_is_drift_and_update_puts_the_declared_one_back(
    server: PostgresServer, applied: Applied, encryption: str
) -> None:
    props = applied.props["role-analytics"]
    name = props["name"]
    provider = RoleProvider()
    with connect_as(server, applied.spec, "analytics") as conn:
        conn.execute(f"SET password_encryption = '{encryption}'")
        conn.execute(f"ALTER ROLE {name} PASSWORD 'x'")
    if encryption == "scram-sha-256":
        # The change took: the role's own password now lets it in (an md5 one cannot pass SCRAM at all).
        connect_as(server, applied.spec, "analytics", password="x").close()
    drifted = provider.read(name, props).outs or {}
    assert drifted["escalations"] == ["PASSWORD not the declared one"]
    assert provider.diff(name, drifted, props).changes
    provider.update(name, drifted, props)
    assert (provider.read(name, props).outs or {})["escalations"] == []
    with connect_as(server, applied.spec, "analytics") as conn:
        assert conn.execute("SELECT current_user").fetchone() == (name,)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect_as(server, applied.spec, "analytics", password="x")


def test_verifiers_never_reach_a_statements_text(
    server: PostgresServer, applied: Applied, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Everything the provider sends as statement text goes to the server log
    here; pg_stat_activity shows the same text to the monitoring role. The
    provider's session is left unquieted, as an admin that is no superuser
    (RDS's master) leaves it."""
    monkeypatch.setattr("components.postgres.base.QUIET_SESSION", ())
    provider = RoleProvider()
    admin = server.superuser
    with server.admin() as conn:
        conn.execute(f"ALTER ROLE {admin} SET log_statement = 'all'")
    try:
        before = len(server.log())
        for key in ("app", "analytics"):
            props = applied.props[f"role-{key}"]
            changed = {**props, "password": PASSWORDS[key] + "-next"}
            provider.update(props["name"], props, changed)
            provider.update(props["name"], changed, props)
        logged = server.log()[before:]
    finally:
        with server.admin() as conn:
            conn.execute(f"ALTER ROLE {admin} RESET log_statement")
    assert "ALTER ROLE" in logged and "statement:" in logged
    assert "SCRAM-SHA-256$" not in logged and PASSWORDS["app"] not in logged
    with server.admin() as conn:
        stored = conn.execute(
            "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (applied.spec.role("app").name,)
        ).fetchone()
    assert stored is not None and scram_matches(stored[0], PASSWORDS["app"])
    assert not scram_matches(stored[0], PASSWORDS["app"] + "-next")


def test_scram_matches_only_the_password_a_verifier_was_made_from(server: PostgresServer) -> None:
    with server.admin() as conn:
        conn.execute("CREATE ROLE pencil_holder")
        try:
            conn.execute("SET password_encryption = 'scram-sha-256'")
            conn.execute("ALTER ROLE pencil_holder PASSWORD 'pencil'")
            row = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = 'pencil_holder'").fetchone()
            client_side = conn.pgconn.encrypt_password(b"pencil", b"pencil_holder", b"scram-sha-256").decode()
            conn.execute("SET password_encryption = 'md5'")
            conn.execute("ALTER ROLE pencil_holder PASSWORD 'pencil'")
            md5 = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = 'pencil_holder'").fetchone()
        finally:
            conn.execute("DROP ROLE pencil_holder")
    assert row is not None and md5 is not None
    for verifier in (row[0], client_side):
        assert scram_matches(verifier, "pencil")
        assert not scram_matches(verifier, "pencil ")
        assert not scram_matches(verifier, "Pencil")
    assert not scram_matches(md5[0], "pencil")
    assert not scram_matches(None, "pencil")
    # A verifier whose keys are not both the password's, the other key kept:
    # either one alone would let a password in that the server does not hold.
    method, salt, stored_key, server_key = re.fullmatch(r"(.+)\$(.+)\$(.+):(.+)", row[0]).groups()  # type: ignore[union-attr]
    other = client_side.rsplit(":", 1)[1]
    other_stored = client_side.rsplit("$", 1)[1].split(":")[0]
    assert scram_matches(f"{method}${salt}${stored_key}:{server_key}", "pencil")
    assert not scram_matches(f"{method}${salt}${stored_key}:{other}", "pencil")
    assert not scram_matches(f"{method}${salt}${other_stored}:{server_key}", "pencil")
    assert not scram_matches("SCRAM-SHA-256$4096:bad", "pencil")


# Each: what an operator with the superuser's password does by hand, the one
# finding the read then makes of it (whole), whether the update removes it or
# refuses it, and what is left to clean up when it refuses.
HAND_MADE: list[tuple[str, list[str], str, bool, list[str]]] = [
    ("a role merely named rdsadmin exempts nothing",
     ["CREATE ROLE rdsadmin NOLOGIN", "CREATE ROLE rds_ops SUPERUSER LOGIN"],
     "role rds_ops (LOGIN, SUPERUSER, CONNECT) is not declared: drop it (DROP OWNED BY rds_ops; DROP ROLE rds_ops) "
     "if nobody should have it, or declare it", False,
     ["DROP ROLE rds_ops", "DROP ROLE rdsadmin"]),
    ("pg_monitor made a member of pg_execute_server_program",
     ["GRANT pg_execute_server_program TO pg_monitor"],
     "built-in role pg_monitor is a member of pg_execute_server_program", True, []),
    ("the verifiers opened to PUBLIC", ["GRANT SELECT ON pg_catalog.pg_authid TO PUBLIC"],
     "SELECT on catalog table pg_authid to PUBLIC", True, []),
    ("a file reader opened to PUBLIC", ["GRANT EXECUTE ON FUNCTION pg_read_file(text) TO PUBLIC"],
     "EXECUTE on catalog function pg_read_file(text) to PUBLIC", True, []),
    ("CREATE on pg_catalog itself", ["GRANT CREATE ON SCHEMA pg_catalog TO wondernest_app"],
     "CREATE on catalog schema pg_catalog to wondernest_app", True, []),
    ("a function planted in pg_catalog",
     ["CREATE FUNCTION pg_catalog.wn_diag(text) RETURNS void LANGUAGE plpgsql SECURITY DEFINER "
      "AS $$BEGIN EXECUTE $1; END$$"],
     "function wn_diag(text) was made in a system schema after initdb: drop it if nobody should have it", False,
     ["DROP FUNCTION pg_catalog.wn_diag(text)"]),
    ("a view planted in information_schema",
     ["CREATE VIEW information_schema.wn_verifiers AS SELECT rolname, rolpassword FROM pg_authid"],
     "relation information_schema.wn_verifiers was made in a system schema after initdb: drop it if nobody "
     "should have it", False,
     ["DROP VIEW information_schema.wn_verifiers"]),
    ("a parameter a role may set", ["GRANT SET ON PARAMETER session_replication_role TO wondernest_migrator"],
     "SET on parameter session_replication_role to wondernest_migrator", True, []),
    ("a parameter everyone may set", ["GRANT SET ON PARAMETER session_replication_role TO PUBLIC"],
     "SET on parameter session_replication_role to PUBLIC", True, []),
    ("triggers silenced for the whole database",
     ["ALTER DATABASE wondernest SET session_replication_role = replica",
      "ALTER DATABASE wondernest SET statement_timeout = 0"],
     "settings made for the database: session_replication_role=replica, statement_timeout=0", True, []),
    ("triggers silenced for one role in the database",
     ["ALTER ROLE wondernest_migrator IN DATABASE wondernest SET session_replication_role = replica"],
     "settings made for role wondernest_migrator in the database: session_replication_role=replica", True, []),
    ("triggers silenced for every role", ["ALTER ROLE ALL SET session_replication_role = replica"],
     "settings made for every role: session_replication_role=replica", True, []),
    ("the database handed to the app role", ["ALTER DATABASE wondernest OWNER TO wondernest_app"],
     "the database is owned by wondernest_app, not the admin", True, []),
    ("a function hidden in an extension installed elsewhere",
     ["CREATE FUNCTION public.stats_reset_all(text) RETURNS void LANGUAGE plpgsql SECURITY DEFINER "
      "AS $$BEGIN EXECUTE $1; END$$", "ALTER EXTENSION plpgsql ADD FUNCTION public.stats_reset_all(text)"],
     "function public.stats_reset_all(text) in undeclared schema public: move it into a declared schema, or drop "
     "it if nothing needs it", False,
     ["ALTER EXTENSION plpgsql DROP FUNCTION public.stats_reset_all(text)",
      "DROP FUNCTION public.stats_reset_all(text)"]),
    ("an ALTER SYSTEM setting reset in the file but still loaded",
     ["ALTER SYSTEM SET log_connections = off", "SELECT pg_reload_conf()", "ALTER SYSTEM RESET log_connections"],
     "setting log_connections = 'off' in effect from ALTER SYSTEM", True, []),
]  # fmt: skip


@pytest.mark.parametrize(
    ("what", "statements", "named", "removed", "cleanup"), HAND_MADE, ids=[c[0] for c in HAND_MADE]
)
def test_what_a_superuser_changes_by_hand_is_named_and_removed_or_refused(
    server: PostgresServer,
    applied: Applied,
    what: str,
    statements: list[str],
    named: str,
    removed: bool,
    cleanup: list[str],
) -> None:
    provider, props, database = access(applied)
    with server.admin(database) as conn:
        for statement in statements:
            conn.execute(statement)
    try:
        drifted = read(applied)
        assert (drifted["undeclared"], drifted["refused"]) == (([named], []) if removed else ([], [named]))
        assert provider.diff(database, drifted, props).changes
        if removed:
            provider.update(database, drifted, props)
            clean = read(applied)
            assert clean["undeclared"] == [] and clean["refused"] == [], what
        else:
            with pytest.raises(PostgresResourceError, match=re.escape(named)):
                provider.update(database, drifted, props)
    finally:
        with server.admin(database) as conn:
            for statement in cleanup:
                conn.execute(statement)
    assert read(applied)["refused"] == []


@contextmanager
def master_like(server: PostgresServer, database: str, name: str, password: str) -> Iterator[None]:
    """A role like RDS's master user for the test's length: LOGIN and
    CREATEROLE, no superuser, with CONNECT (earlier updates take it from
    whoever the declaration does not name)."""
    with server.admin(database) as conn:
        conn.execute(f"CREATE ROLE {name} LOGIN CREATEROLE PASSWORD '{password}'")
        conn.execute(f"GRANT CONNECT ON DATABASE {database} TO {name}")
    try:
        yield
    finally:
        with server.admin(database) as conn:
            conn.execute(f"REVOKE CONNECT ON DATABASE {database} FROM {name}")
            conn.execute(f"DROP ROLE {name}")


def test_where_the_admin_is_no_superuser_catalog_rights_of_platform_roles_are_still_seen(
    server: PostgresServer, applied: Applied
) -> None:
    """As RDS's master user: no superuser, so initdb's catalog rights cannot be
    compared; what a platform role was handed in the catalog is still read."""
    provider, props, database = access(applied)
    app = applied.spec.role("app").name
    admin, password = "master_like_rds", "master-like-rds-7777"
    with master_like(server, database, admin, password):
        with server.admin(database) as conn:
            conn.execute(f"GRANT EXECUTE ON FUNCTION pg_read_file(text) TO {app}")
            conn.execute(f"CREATE ROLE side_door LOGIN; GRANT CONNECT ON DATABASE {database} TO side_door")
        try:
            as_master = {**props, "connection": {**props["connection"], "user": admin, "password": password}}
            found = provider.read(database, as_master).outs or {}
            # The rest of what a superuser's read finds is found too; the database is not this admin's.
            assert (found["undeclared"], found["refused"]) == (
                [
                    f"EXECUTE on catalog function pg_read_file(text) to {app}",
                    "role side_door (LOGIN, CONNECT) is not declared and reaches this database",
                    "the database is owned by postgres, not the admin",
                ],
                [],
            )
        finally:
            with server.admin(database) as conn:
                conn.execute(f"REVOKE EXECUTE ON FUNCTION pg_read_file(text) FROM {app}")
                conn.execute(f"REVOKE CONNECT ON DATABASE {database} FROM side_door; DROP ROLE side_door")


def test_where_the_admin_is_no_superuser_what_it_handed_out_in_the_catalog_it_revokes(
    server: PostgresServer, applied: Applied
) -> None:
    """RDS's master holds some catalog rights with their grant option and can
    pass them on: a function, a column of pg_authid. Each is named, the
    column with it, and revoked by the statement the finding carries."""
    database = applied.props["database-access"]["database"]
    app = applied.spec.role("app").name
    admin, password = "master_with_options", "master-with-options-7777"
    with master_like(server, database, admin, password):
        with server.admin(database) as conn:
            conn.execute(f"GRANT EXECUTE ON FUNCTION pg_read_file(text) TO {admin} WITH GRANT OPTION")
            conn.execute(f"GRANT SELECT (rolpassword) ON pg_authid TO {admin} WITH GRANT OPTION")
        try:
            dsn = server.dsn(user=admin, password=password, dbname=database)
            with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor() as cur:
                cur.execute(f"GRANT EXECUTE ON FUNCTION pg_read_file(text) TO {app}")
                cur.execute(f"GRANT SELECT (rolpassword) ON pg_authid TO {app}")
                found = backdoors.catalog_rights(cur, [app], {})
                assert [f.description for f in found] == [
                    f"EXECUTE on catalog function pg_read_file(text) to {app}",
                    f"SELECT on catalog table pg_authid (rolpassword) to {app}",
                ]
                for finding in found:
                    assert finding.remedy is not None
                    cur.execute(finding.remedy)
                assert backdoors.catalog_rights(cur, [app], {}) == []
            with server.admin(database) as conn:
                held = conn.execute(
                    "SELECT has_function_privilege(%s, 'pg_read_file(text)', 'EXECUTE'), "
                    "has_column_privilege(%s, 'pg_authid', 'rolpassword', 'SELECT')",
                    (app, app),
                ).fetchone()
            assert held == (False, False)
        finally:
            with server.admin(database) as conn:
                conn.execute(f"REVOKE EXECUTE ON FUNCTION pg_read_file(text) FROM {app}, {admin} CASCADE")
                conn.execute(f"REVOKE SELECT (rolpassword) ON pg_authid FROM {app}, {admin} CASCADE")


def test_each_right_on_an_undeclared_schema_is_judged_by_itself(server: PostgresServer, applied: Applied) -> None:
    """Rights read in grantee order: one passed over (an undeclared role's, an
    extension reader's USAGE) must not end the reading of those after it, and
    PUBLIC's is revoked from PUBLIC, not from a role of that name."""
    props = applied.props["database-access"]
    database = props["database"]
    app, monitoring = applied.spec.role("app").name, applied.spec.role("monitoring").name
    with server.admin(database) as conn:
        try:
            conn.execute("CREATE ROLE a_reader; CREATE SCHEMA side; CREATE TABLE side.kept (id int)")
            conn.execute(f"GRANT USAGE ON SCHEMA side TO PUBLIC, a_reader, {app}, {monitoring}")
            conn.execute(f"GRANT CREATE ON SCHEMA side TO {monitoring}")
            with conn.cursor() as cur:
                readers = {**props["extension_readers"], "side": [app]}
                found = backdoors.undeclared_schemas(cur, [app, monitoring], props["schemas"], readers)
                assert [f.description for f in found] == [
                    "USAGE on undeclared schema side to PUBLIC",
                    f"CREATE on undeclared schema side to {monitoring}",
                    f"USAGE on undeclared schema side to {monitoring}",
                    "table side.kept in undeclared schema side: move it into a declared schema, or drop it if "
                    "nothing needs it",
                ]
                for finding in found:
                    if finding.remedy is not None:
                        cur.execute(finding.remedy)
            left = conn.execute(
                "SELECT a.grantee::regrole::text, a.privilege_type FROM pg_namespace n, aclexplode(n.nspacl) a "
                "WHERE n.nspname = 'side' AND a.grantee <> n.nspowner ORDER BY 1, 2"
            ).fetchall()
            assert left == [("a_reader", "USAGE"), (app, "USAGE")]
        finally:
            conn.execute("DROP SCHEMA IF EXISTS side CASCADE; DROP ROLE IF EXISTS a_reader")


def test_an_undeclared_schema_that_holds_only_a_type_is_left_standing(server: PostgresServer, applied: Applied) -> None:
    """DROP SCHEMA would stop on the type: the schema is not empty, and the
    update neither tries nor fails; what the platform's roles held there is
    still revoked."""
    provider, props, database = access(applied)
    app = applied.spec.role("app").name
    try:
        with server.admin(database) as conn:
            conn.execute("CREATE SCHEMA typed")
            conn.execute("CREATE TYPE typed.mood AS ENUM ('calm')")
            conn.execute(f"GRANT USAGE ON SCHEMA typed TO {app}")
        drifted = read(applied)
        assert (drifted["undeclared"], drifted["refused"]) == ([f"USAGE on undeclared schema typed to {app}"], [])
        provider.update(database, drifted, props)
        with server.admin(database) as conn:
            assert conn.execute("SELECT has_schema_privilege(%s, 'typed', 'USAGE')", (app,)).fetchone() == (False,)
    finally:
        with server.admin(database) as conn:
            conn.execute("DROP SCHEMA IF EXISTS typed CASCADE")


def test_what_an_extension_installed_in_a_system_schema_made_there_is_its_own(
    server: PostgresServer, applied: Applied
) -> None:
    """An extension's members are the extension's, wherever it is installed:
    its view and functions in information_schema are not objects made by hand."""
    database = applied.props["database-access"]["database"]
    try:
        with server.admin(database) as conn:
            conn.execute("CREATE EXTENSION pg_buffercache SCHEMA information_schema")
        found = read(applied)
        assert (found["undeclared"], found["refused"]) == ([], [])
    finally:
        with server.admin(database) as conn:
            conn.execute("DROP EXTENSION IF EXISTS pg_buffercache")
