"""Data from before the platform, on a real PostgreSQL: a database another
role built (then `pulumi up`, then a baseline of the migrations), and a
`pg_dump` made elsewhere with its own owners and grants (`import-dump`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
import pytest
from wondernest_api.migrate import MigrationError, baseline, migrate
from wondernest_backup.imports import import_dump, toc
from wondernest_backup.pgtools import BackupError, Endpoint, tool

from components.model.database import SCHEMAS, database_spec
from components.model.naming import Names
from tests.api_stack import APP_DIR, database_tls
from tests.platform_db import PASSWORDS, apply_spec, connect_as
from tests.servers import PostgresServer, postgres_server

pytestmark = pytest.mark.servers

NAMES = Names(app="wondernest", stack="test")
MIGRATIONS = resources.files("wondernest_api.migrations")


@pytest.fixture
def pg() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


def migrated_platform(pg: PostgresServer) -> Any:
    """The platform's roles and schemas, and its migrations applied: where an
    import of data alone goes."""
    spec = database_spec(NAMES)
    apply_spec(pg, spec)
    migrate(as_role(pg, "migrator"))
    return spec


def superuser(pg: PostgresServer, database: str = "wondernest") -> Endpoint:
    return Endpoint("127.0.0.1", pg.port, pg.superuser, pg.superuser_password, database, sslmode="disable")


def migrator(pg: PostgresServer) -> Endpoint:
    """How an import logs in: as the role that will own what it makes."""
    return Endpoint("127.0.0.1", pg.port, "wondernest_migrator", PASSWORDS["migrator"], "wondernest", sslmode="disable")


def as_role(pg: PostgresServer, key: str) -> str:
    return pg.dsn(user=f"wondernest_{key}", password=PASSWORDS[key], dbname="wondernest")


def owners(pg: PostgresServer, schema: str) -> dict[str, str]:
    with pg.admin("wondernest") as conn:
        rows = conn.execute(
            "SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'v', 'S') ORDER BY 1",
            (schema,),
        ).fetchall()
    return dict(rows)


def grantees(pg: PostgresServer, schema: str) -> set[str]:
    with pg.admin("wondernest") as conn:
        rows = conn.execute(
            "SELECT DISTINCT coalesce(pg_get_userbyid(nullif(a.grantee, 0)), 'PUBLIC') "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a "
            "WHERE n.nspname = %s AND a.grantee <> c.relowner",
            (schema,),
        ).fetchall()
    return {row[0] for row in rows}


# --- a database another role built


def test_a_database_built_before_the_platform_is_handed_over_kept_and_baselined(pg: PostgresServer) -> None:
    with pg.admin("wondernest") as conn:
        conn.execute("CREATE ROLE legacy LOGIN PASSWORD 'legacy-pass'")
        conn.execute("CREATE SCHEMA core AUTHORIZATION legacy; CREATE SCHEMA audit AUTHORIZATION legacy")
        conn.execute("SET ROLE legacy")
        for name in ("0001_core_users_and_sessions.sql", "0002_audit_activity_logs.sql"):
            conn.execute(MIGRATIONS.joinpath(name).read_text().encode())
        conn.execute(
            "INSERT INTO core.users (email, password_hash) SELECT 'u' || g || '@example.com', 'x' "
            "FROM generate_series(1, 250) g"
        )
        conn.execute("GRANT SELECT ON core.users TO PUBLIC")
        conn.execute("RESET ROLE")
    spec = database_spec(NAMES)
    # What `pulumi up` does over it: the schemas' objects go to the migrator,
    # rights nobody declared are taken back, the declared grants are made.
    apply_spec(pg, spec)
    assert set(owners(pg, "core").values()) == {"wondernest_migrator"}
    assert "PUBLIC" not in grantees(pg, "core") and "legacy" not in grantees(pg, "core")
    with connect_as(pg, spec, "app") as app:
        assert app.execute("SELECT count(*) FROM core.users").fetchone() == (250,)

    migrator = as_role(pg, "migrator")
    with pytest.raises(MigrationError, match="no migration 0099"):
        baseline(migrator, "0099")
    assert baseline(migrator, "0002") == ["0001", "0002"]
    with pytest.raises(MigrationError, match="0001, 0002 are already recorded"):
        baseline(migrator, "0002")
    assert migrate(migrator) == ["0003", "0004"]
    with pg.admin("wondernest") as conn:
        assert conn.execute("SELECT count(*) FROM core.users").fetchone() == (250,)
        recorded = conn.execute("SELECT version FROM core.schema_migrations ORDER BY 1").fetchall()
    assert [row[0] for row in recorded] == ["0001", "0002", "0003", "0004"]


def test_the_baseline_is_a_migrate_option_as_an_operator_runs_it(pg: PostgresServer) -> None:
    apply_spec(pg, database_spec(NAMES))
    with connect_as(pg, database_spec(NAMES), "migrator") as conn:
        conn.execute(MIGRATIONS.joinpath("0001_core_users_and_sessions.sql").read_text().encode())
    env = {
        "PATH": os.environ["PATH"], "PYTHONPATH": str(APP_DIR), "DB_HOST": "127.0.0.1", "DB_PORT": str(pg.port),
        "DB_NAME": "wondernest", "DB_USER": "wondernest_migrator", "DB_PASSWORD": PASSWORDS["migrator"],
        **database_tls(pg),
    }  # fmt: skip

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "wondernest_api", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)

    misplaced = cli("serve", "--baseline", "0001")
    assert misplaced.returncode == 2 and "--baseline goes with migrate" in misplaced.stderr
    done = cli("migrate", "--baseline", "0001")
    assert done.returncode == 0, done.stderr
    assert '"msg":"migrations baselined","versions":["0001"]' in done.stdout
    again = cli("migrate", "--baseline", "0001")
    assert again.returncode == 1 and "error: migrations 0001 are already recorded" in again.stderr
    assert cli("migrate").returncode == 0


def test_a_baseline_on_a_database_with_no_tables_is_refused(pg: PostgresServer) -> None:
    apply_spec(pg, database_spec(NAMES))
    with pytest.raises(MigrationError, match="hold no table: there is nothing to baseline"):
        baseline(as_role(pg, "migrator"), "0002")
    with pg.admin("wondernest") as conn:
        assert conn.execute("SELECT to_regclass('core.schema_migrations')").fetchone() == (None,)


# --- a dump made elsewhere


def dump_of(
    pg: PostgresServer,
    tmp_path: Path,
    setup: str,
    *,
    plain: bool = False,
    options: tuple[str, ...] = (),
    encoding: str = "UTF8",
) -> Path:
    """A database built by other roles on the same server, dumped the usual way."""
    database = f"elsewhere_{len(list(tmp_path.iterdir()))}"
    with pg.admin() as conn:
        conn.execute(f"CREATE DATABASE {database} ENCODING '{encoding}' LOCALE 'C' TEMPLATE template0")
    with pg.admin(database) as conn:
        conn.execute(
            "DO $$ BEGIN CREATE ROLE shop_owner; EXCEPTION WHEN duplicate_object THEN NULL; END $$; "
            "DO $$ BEGIN CREATE ROLE shop_reader; EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        )
        # The setup is UTF-8 whatever the database's encoding (libpq would take the database's).
        conn.execute("SET client_encoding = 'UTF8'")
        conn.execute(setup.encode())
    path = tmp_path / f"{database}.{'sql' if plain else 'dump'}"
    subprocess.run(
        [tool("pg_dump"), "--format", "plain" if plain else "custom", *options, "--file", str(path),
         pg.dsn(dbname=database)],
        check=True, capture_output=True,
    )  # fmt: skip
    return path


SHOP = """
CREATE SCHEMA shop AUTHORIZATION shop_owner;
COMMENT ON SCHEMA shop IS 'the old shop';
SET ROLE shop_owner;
CREATE TYPE shop.state AS ENUM ('open', 'paid');
CREATE TABLE shop.orders (id bigserial PRIMARY KEY, state shop.state NOT NULL DEFAULT 'open', body jsonb);
CREATE VIEW shop.open_orders AS SELECT id FROM shop.orders WHERE state = 'open';
CREATE FUNCTION shop.total() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM shop.orders';
INSERT INTO shop.orders (body) SELECT jsonb_build_object('n', g) FROM generate_series(1, 500) g;
COMMENT ON TABLE shop.orders IS 'orders, open or paid';
GRANT SELECT ON ALL TABLES IN SCHEMA shop TO shop_reader, PUBLIC;
RESET ROLE;
"""


@pytest.fixture
def platform(pg: PostgresServer) -> Any:
    spec = database_spec(NAMES, (*SCHEMAS, "shop"))
    apply_spec(pg, spec)
    return spec


def test_a_dump_with_other_owners_and_grants_is_imported_as_the_platforms_own(
    pg: PostgresServer, platform: Any, tmp_path: Path
) -> None:
    dump = dump_of(pg, tmp_path, SHOP)
    # The schema's comment, database-wide in the archive, goes with the schema the stack made.
    assert ("COMMENT", "-") in {(e.desc, e.schema) for e in toc(dump)}
    rows = import_dump(migrator(pg), dump, schemas=platform.schemas, owner="wondernest_migrator")
    assert rows == {"shop.orders": 500}
    with pg.admin("wondernest") as conn:
        comments = "SELECT obj_description('shop.orders'::regclass), obj_description('shop'::regnamespace)"
        assert conn.execute(comments).fetchone() == ("orders, open or paid", None)
    assert owners(pg, "shop") == {
        "open_orders": "wondernest_migrator",
        "orders": "wondernest_migrator",
        "orders_id_seq": "wondernest_migrator",
    }
    # The dump's grants are gone; the migrator's default privileges made the platform's.
    assert not grantees(pg, "shop") & {"PUBLIC", "shop_reader", "shop_owner"}
    with connect_as(pg, platform, "app") as app:
        assert app.execute("SELECT count(*) FROM shop.orders").fetchone() == (500,)
        app.execute("INSERT INTO shop.orders (body) VALUES ('{}')")
        # No routine is granted to anyone: the platform declares rights on tables and sequences only.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app.execute("SELECT shop.total()")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app.execute("DROP TABLE shop.orders")
    with connect_as(pg, platform, "analytics") as analytics:
        assert analytics.execute("SELECT count(*) FROM shop.open_orders").fetchone() == (501,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            analytics.execute("DELETE FROM shop.orders")


def test_an_import_never_writes_over_tables(pg: PostgresServer, platform: Any, tmp_path: Path) -> None:
    dump = dump_of(pg, tmp_path, SHOP + "CREATE TABLE shop.refunds (id int);")
    import_dump(migrator(pg), dump, schemas=platform.schemas, owner="wondernest_migrator")
    refusal = (
        "the schemas the dump fills already hold shop.orders, shop.refunds; an import of definitions never writes "
        "over tables: drop them first, or dump the data alone (pg_dump --data-only) to fill them; nothing imported"
    )
    with pytest.raises(BackupError, match=f"^{re.escape(refusal)}$"):
        import_dump(migrator(pg), dump, schemas=platform.schemas, owner="wondernest_migrator")
    with pg.admin("wondernest") as conn:
        assert conn.execute("SELECT count(*) FROM shop.orders").fetchone() == (500,)


@pytest.mark.parametrize(
    ("setup", "refusal"),
    [
        # Beyond the declared schemas, public included.
        (SHOP + "CREATE TABLE public.stray (id int);", "objects in schema public, which the stack does not declare"),
        (
            "CREATE SCHEMA billing AUTHORIZATION shop_owner; CREATE TABLE billing.invoices (id int);",
            "objects in schema billing, which the stack does not declare",
        ),
        # What needs a superuser.
        (
            SHOP + "CREATE FUNCTION shop.trg() RETURNS event_trigger LANGUAGE plpgsql AS 'BEGIN END';"
            "CREATE EVENT TRIGGER snoop ON ddl_command_end EXECUTE FUNCTION shop.trg();",
            "database-wide objects (EVENT TRIGGER)",
        ),
    ],
)
def test_a_dump_reaching_beyond_the_platform_is_refused_before_anything_is_written(
    pg: PostgresServer, platform: Any, tmp_path: Path, setup: str, refusal: str
) -> None:
    dump = dump_of(pg, tmp_path, setup)
    with pytest.raises(BackupError, match=re.escape(refusal)):
        import_dump(migrator(pg), dump, schemas=platform.schemas, owner="wondernest_migrator")
    assert owners(pg, "shop") == {}


def test_every_reason_a_dump_is_refused_is_given_at_once(pg: PostgresServer, platform: Any, tmp_path: Path) -> None:
    setup = (
        SHOP + "CREATE SCHEMA billing AUTHORIZATION shop_owner; CREATE TABLE billing.invoices (id int); "
        "CREATE SCHEMA ledger AUTHORIZATION shop_owner; CREATE TABLE ledger.entries (id int); "
        "CREATE FUNCTION shop.trg() RETURNS event_trigger LANGUAGE plpgsql AS 'BEGIN END'; "
        "CREATE EVENT TRIGGER snoop ON ddl_command_end EXECUTE FUNCTION shop.trg(); "
        "CREATE PUBLICATION everything FOR ALL TABLES;"
    )
    dump = dump_of(pg, tmp_path, setup)
    refusal = (
        "objects in schema billing, ledger, which the stack does not declare: add it to postgres.schemas (and make "
        "up), or dump only the declared ones (pg_dump -n); database-wide objects (EVENT TRIGGER, PUBLICATION), which "
        "need a superuser the platform's roles are not; dump without them; nothing imported"
    )
    with pytest.raises(BackupError, match=f"^{re.escape(refusal)}$"):
        import_dump(migrator(pg), dump, schemas=platform.schemas, owner="wondernest_migrator")
    assert owners(pg, "shop") == {}


def test_a_dump_that_fails_half_way_leaves_nothing(pg: PostgresServer, platform: Any, tmp_path: Path) -> None:
    # The table restores, then its data cannot: one transaction, so neither stays.
    setup = (
        SHOP
        + "CREATE EXTENSION IF NOT EXISTS pg_trgm; CREATE INDEX ON shop.orders USING gin ((body::text) gin_trgm_ops);"
    )
    dump = dump_of(pg, tmp_path, setup)
    assert {e.desc for e in toc(dump)} >= {"EXTENSION", "INDEX", "TABLE DATA"}
    with pytest.raises(BackupError, match="nothing imported"):
        import_dump(migrator(pg), dump, schemas=platform.schemas, owner="wondernest_migrator")
    assert owners(pg, "shop") == {}


def test_a_plain_sql_dump_is_refused_with_the_way_to_make_one_it_reads(
    pg: PostgresServer, platform: Any, tmp_path: Path
) -> None:
    dump = dump_of(pg, tmp_path, SHOP, plain=True)
    refusal = (
        f"{dump} is not an archive pg_restore reads (a plain-SQL dump: make a custom-format one with pg_dump -Fc): "
        "pg_restore: error: input file appears to be a text format dump. Please use psql."
    )
    with pytest.raises(BackupError, match=f"^{re.escape(refusal)}$"):
        import_dump(migrator(pg), dump, schemas=platform.schemas, owner="wondernest_migrator")


def test_a_file_pg_restore_cannot_read_is_refused_with_its_reason(tmp_path: Path) -> None:
    dump = tmp_path / "notes.txt"
    dump.write_text("not a dump\n")
    refusal = (
        f"{dump} is not an archive pg_restore reads: "
        "pg_restore: error: input file does not appear to be a valid archive (too short?)"
    )
    with pytest.raises(BackupError, match=f"^{re.escape(refusal)}$"):
        toc(dump)


def test_an_entry_of_a_kind_this_pg_dump_does_not_know_is_read_by_its_first_word(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A newer pg_dump's kind of object: its first word stands for the kind,
    and the schema and name are read after it."""
    listing = ";", "5; 2615 16390 TABLE shop orders shop_owner", "7; 1259 16400 WIDGET shop gadget one shop_owner"
    (tmp_path / "pg_restore").write_text(
        "#!/bin/sh\nprintf '%s\\n' " + " ".join(f"'{line}'" for line in listing) + "\n"
    )
    (tmp_path / "pg_restore").chmod(0o755)
    monkeypatch.setenv("PG_BINDIR", str(tmp_path))
    entries = [(e.desc, e.schema, e.name) for e in toc(tmp_path / "any.dump")]
    assert entries == [("TABLE", "shop", "orders"), ("WIDGET", "shop", "gadget one")]


GUIDE_ERA = "".join(
    MIGRATIONS.joinpath(name).read_text() + "\n"
    for name in ("0001_core_users_and_sessions.sql", "0002_audit_activity_logs.sql")
)


def test_the_data_alone_fills_the_tables_the_migrations_made(pg: PostgresServer, tmp_path: Path) -> None:
    """The guide's way (`pg_dump --data-only`): the rows of a database the
    migrations never ran on, into the tables they made, as the migrator."""
    setup = (
        "CREATE SCHEMA core AUTHORIZATION shop_owner; CREATE SCHEMA audit AUTHORIZATION shop_owner; "
        "SET ROLE shop_owner; " + GUIDE_ERA + "INSERT INTO core.users (email, password_hash) "
        "SELECT 'u' || g || '@example.com', 'x' FROM generate_series(1, 40) g; RESET ROLE;"
    )
    # The accounts; the audit trail's rows stay behind (its trigger would rewrite them).
    dump = dump_of(pg, tmp_path, setup, options=("--data-only", "-n", "core"))
    spec = database_spec(NAMES)
    apply_spec(pg, spec)
    # Not yet: the tables are the migrations' to make.
    refusal = (
        "core.users does not exist (run the migrations first: make up); core.user_sessions does not exist (run the "
        "migrations first: make up); an import of data fills only existing, empty tables; nothing imported"
    )
    with pytest.raises(BackupError, match=f"^{re.escape(refusal)}$"):
        import_dump(migrator(pg), dump, schemas=spec.schemas, owner="wondernest_migrator")
    migrate(as_role(pg, "migrator"))
    rows = import_dump(migrator(pg), dump, schemas=spec.schemas, owner="wondernest_migrator")
    assert rows["core.users"] == 40
    assert owners(pg, "core")["users"] == "wondernest_migrator"
    with connect_as(pg, spec, "app") as app:
        assert app.execute("SELECT count(*) FROM core.users").fetchone() == (40,)
    with pytest.raises(BackupError, match=r"core\.users holds rows; an import of data fills only existing, empty"):
        import_dump(migrator(pg), dump, schemas=spec.schemas, owner="wondernest_migrator")
    with pg.admin("wondernest") as conn:
        assert conn.execute("SELECT count(*) FROM core.users").fetchone() == (40,)


def test_a_table_missing_for_a_data_dump_is_named_as_postgres_writes_it(pg: PostgresServer, tmp_path: Path) -> None:
    setup = (
        'CREATE SCHEMA shop AUTHORIZATION shop_owner; CREATE TABLE shop."Order Lines" (id int); '
        'INSERT INTO shop."Order Lines" VALUES (1);'
    )
    dump = dump_of(pg, tmp_path, setup, options=("--data-only",))
    spec = database_spec(NAMES, (*SCHEMAS, "shop"))
    apply_spec(pg, spec)
    with pytest.raises(BackupError, match=re.escape('shop."Order Lines" does not exist')):
        import_dump(migrator(pg), dump, schemas=spec.schemas, owner="wondernest_migrator")


# --- what a hostile or careless dump cannot do


def test_a_dump_whose_code_resets_the_role_gains_nothing(pg: PostgresServer, platform: Any, tmp_path: Path) -> None:
    """A CHECK calls a function as each row loads; the function tries to leave
    the owner's role and make the app a superuser. The import logs in as the
    migrator, so there is no role to go back to: it fails, and leaves nothing."""
    setup = SHOP + (
        # Only once it loads into the platform's database (roles are the cluster's, and this is one server).
        "CREATE FUNCTION shop.ok(bigint) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN "
        "IF current_database() = 'wondernest' THEN RESET ROLE; EXECUTE 'ALTER ROLE wondernest_app SUPERUSER'; "
        "END IF; RETURN true; END $$; "
        "CREATE TABLE shop.items (id bigint CHECK (shop.ok(id))); INSERT INTO shop.items VALUES (1);"
    )
    dump = dump_of(pg, tmp_path, setup.replace("SET ROLE shop_owner;", "").replace("RESET ROLE;\n", ""))
    with pytest.raises(BackupError, match="nothing imported"):
        import_dump(migrator(pg), dump, schemas=platform.schemas, owner="wondernest_migrator")
    with pg.admin("wondernest") as conn:
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = 'wondernest_app'").fetchone() == (False,)
    assert owners(pg, "shop") == {}


def test_an_import_as_another_role_than_the_owner_is_refused(pg: PostgresServer, platform: Any, tmp_path: Path) -> None:
    dump = dump_of(pg, tmp_path, SHOP)
    refusal = (
        "connected as 'postgres', not 'wondernest_migrator': an import logs in as the role that will own what it "
        "makes, so the dump's code runs with that role's rights and no more"
    )
    with pytest.raises(BackupError, match=f"^{re.escape(refusal)}$"):
        import_dump(superuser(pg), dump, schemas=platform.schemas, owner="wondernest_migrator")
    assert owners(pg, "shop") == {}


def test_definitions_without_a_table_are_definitions(pg: PostgresServer, tmp_path: Path) -> None:
    """A post-data dump (a rule, an index) into a schema holding tables is refused like any definitions."""
    spec = migrated_platform(pg)
    setup = (
        "CREATE SCHEMA core AUTHORIZATION shop_owner; SET ROLE shop_owner; "
        + MIGRATIONS.joinpath("0001_core_users_and_sessions.sql").read_text()
        + "CREATE RULE swallow AS ON INSERT TO core.users DO INSTEAD NOTHING; RESET ROLE;"
    )
    dump = dump_of(pg, tmp_path, setup, options=("--section=post-data", "-t", "core.users"))
    assert "RULE" in {e.desc for e in toc(dump)}
    with pytest.raises(BackupError, match=r"already hold .*core\.users"):
        import_dump(migrator(pg), dump, schemas=spec.schemas, owner="wondernest_migrator")
    with pg.admin("wondernest") as conn:
        assert conn.execute("SELECT count(*) FROM pg_rules WHERE rulename = 'swallow'").fetchone() == (0,)


def test_data_alone_sets_only_its_own_tables_sequences_and_spares_triggered_tables(
    pg: PostgresServer, tmp_path: Path
) -> None:
    spec = migrated_platform(pg)
    setup = (
        "CREATE SCHEMA core AUTHORIZATION shop_owner; CREATE SCHEMA audit AUTHORIZATION shop_owner; "
        "SET ROLE shop_owner; " + GUIDE_ERA + "INSERT INTO audit.activity_logs (action) VALUES ('login'), ('logout'); "
        "CREATE SEQUENCE audit.counter; SELECT nextval('audit.counter'); RESET ROLE;"
    )
    # The audit trail's sequence set back, without its rows, and a sequence of no table.
    only_sequence = dump_of(
        pg, tmp_path, setup, options=("--data-only", "-n", "audit", "--exclude-table-data=audit.activity_logs")
    )
    assert {e.desc for e in toc(only_sequence)} == {"SEQUENCE SET"}
    refusal = (
        "sequence audit.activity_logs_id_seq belongs to no table the dump fills; "
        "sequence audit.counter belongs to no table the dump fills; nothing imported"
    )
    with pytest.raises(BackupError, match=f"^{re.escape(refusal)}$"):
        import_dump(migrator(pg), only_sequence, schemas=spec.schemas, owner="wondernest_migrator")
    # The audit trail's rows: its stamp trigger would renumber and redate them.
    audit = dump_of(pg, tmp_path, setup, options=("--data-only", "-n", "audit"))
    triggers = (
        r"^audit\.activity_logs has triggers \([a-z_, ]+\) that would rewrite the rows as they load; leave its data "
        r"out \(pg_dump --exclude-table-data\); an import of data fills only existing, empty tables; nothing imported$"
    )
    with pytest.raises(BackupError, match=triggers):
        import_dump(migrator(pg), audit, schemas=spec.schemas, owner="wondernest_migrator")
    with pg.admin("wondernest") as conn:
        assert conn.execute("SELECT count(*) FROM audit.activity_logs").fetchone() == (0,)


def test_data_alone_sets_the_sequence_of_a_table_it_fills(pg: PostgresServer, tmp_path: Path) -> None:
    """A table with its own sequence (an identity column), filled by data
    alone: its sequence is set past the imported rows, so the next row gets an
    id no row has."""
    spec = migrated_platform(pg)
    notes = "CREATE TABLE core.notes (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, body text NOT NULL); "
    with psycopg.connect(as_role(pg, "migrator"), autocommit=True) as conn:
        conn.execute(notes)
    setup = (
        "CREATE SCHEMA core AUTHORIZATION shop_owner; SET ROLE shop_owner; " + notes + "INSERT INTO core.notes (body) "
        "SELECT 'note ' || g FROM generate_series(1, 7) g; RESET ROLE;"
    )
    dump = dump_of(pg, tmp_path, setup, options=("--data-only", "-t", "core.notes"))
    assert {e.desc for e in toc(dump)} == {"TABLE DATA", "SEQUENCE SET"}
    assert import_dump(migrator(pg), dump, schemas=spec.schemas, owner="wondernest_migrator") == {"core.notes": 7}
    with psycopg.connect(as_role(pg, "migrator"), autocommit=True) as conn:
        assert conn.execute("INSERT INTO core.notes (body) VALUES ('next') RETURNING id").fetchone() == (8,)


def test_a_row_refused_in_the_dumps_own_encoding_is_named_and_nothing_is_imported(
    pg: PostgresServer, tmp_path: Path
) -> None:
    """pg_restore speaks the dump's encoding: a row of a LATIN1 database that
    the table refuses comes back in LATIN1 bytes, which the refusal keeps
    (the byte UTF-8 cannot read replaced) instead of failing to read them."""
    spec = migrated_platform(pg)
    with psycopg.connect(as_role(pg, "migrator"), autocommit=True) as conn:
        conn.execute("CREATE TABLE core.notes (id bigint PRIMARY KEY, body varchar(4) NOT NULL)")
    setup = (
        "CREATE SCHEMA core AUTHORIZATION shop_owner; SET ROLE shop_owner; "
        "CREATE TABLE core.notes (id bigint PRIMARY KEY, body text NOT NULL); "
        "INSERT INTO core.notes VALUES (1, 'café au lait'); RESET ROLE;"
    )
    dump = dump_of(pg, tmp_path, setup, options=("--data-only", "-t", "core.notes"), encoding="LATIN1")
    refusal = (
        rf"^importing {re.escape(dump.name)} failed, nothing imported: pg_restore: error: .*"
        r'value too long for type character varying\(4\).*column body: "caf\ufffd au lait"'
    )
    with pytest.raises(BackupError, match=re.compile(refusal, re.DOTALL)):
        import_dump(migrator(pg), dump, schemas=spec.schemas, owner="wondernest_migrator")
    with pg.admin("wondernest") as conn:
        assert conn.execute("SELECT count(*) FROM core.notes").fetchone() == (0,)


@pytest.mark.parametrize("encoding", ["LATIN1", "UTF8"])
def test_names_outside_ascii_are_read_in_the_dumps_own_encoding(
    pg: PostgresServer, platform: Any, tmp_path: Path, encoding: str
) -> None:
    """pg_restore lists names as the archive holds them, in its database's
    encoding: a LATIN1 database's `notés` is LATIN1 bytes in the listing,
    which UTF-8 cannot read. Each name is read as it is, whichever encoding."""
    table = (
        'CREATE SCHEMA shop AUTHORIZATION shop_owner; SET ROLE shop_owner; CREATE TABLE shop."notés" '
        "(id bigint PRIMARY KEY, body text NOT NULL); INSERT INTO shop.\"notés\" VALUES (1, 'café au lait'); "
        "RESET ROLE;"
    )
    dump = dump_of(pg, tmp_path, table, encoding=encoding)
    assert ("TABLE", "shop", "notés") in {(e.desc, e.schema, e.name) for e in toc(dump)}
    assert import_dump(migrator(pg), dump, schemas=platform.schemas, owner="wondernest_migrator") == {'shop."notés"': 1}
    # The same table's data alone: named as it is when refused, and filled once empty.
    data = dump_of(pg, tmp_path, table, options=("--data-only",), encoding=encoding)
    refusal = 'shop."notés" holds rows; an import of data fills only existing, empty tables; nothing imported'
    with pytest.raises(BackupError, match=f"^{re.escape(refusal)}$"):
        import_dump(migrator(pg), data, schemas=platform.schemas, owner="wondernest_migrator")
    with psycopg.connect(as_role(pg, "migrator"), autocommit=True) as conn:
        conn.execute('TRUNCATE shop."notés"')
    assert import_dump(migrator(pg), data, schemas=platform.schemas, owner="wondernest_migrator") == {'shop."notés"': 1}
    with pg.admin("wondernest") as conn:
        assert conn.execute('SELECT body FROM shop."notés"').fetchone() == ("café au lait",)
    # A schema the stack does not declare, named as it is.
    outside = dump_of(pg, tmp_path, 'CREATE SCHEMA "bücher"; CREATE TABLE "bücher".t (id int);', encoding=encoding)
    with pytest.raises(BackupError, match=r"^objects in schema bücher, which the stack does not declare: "):
        import_dump(migrator(pg), outside, schemas=platform.schemas, owner="wondernest_migrator")


def test_names_read_otherwise_by_python_are_named_as_the_server_converts_them(
    pg: PostgresServer, platform: Any, tmp_path: Path
) -> None:
    """EUC_JP's 0xA1C1 is the fullwidth tilde to PostgreSQL and the wave dash
    to Python, whose codec has no circled digits: the tables a dump of data
    alone fills are named as the server reads the archive."""
    memo = "\uff5eメモ"  # the fullwidth tilde
    tables = (
        f'CREATE SCHEMA shop AUTHORIZATION shop_owner; SET ROLE shop_owner; CREATE TABLE shop."{memo}" (id int); '
        f'CREATE TABLE shop."①" (id int); INSERT INTO shop."{memo}" VALUES (1); INSERT INTO shop."①" VALUES (1), (2); '
        "RESET ROLE;"
    )
    data = dump_of(pg, tmp_path, tables, options=("--data-only",), encoding="EUC_JP")
    with psycopg.connect(as_role(pg, "migrator"), autocommit=True) as conn:
        conn.execute(f'CREATE TABLE shop."{memo}" (id int); CREATE TABLE shop."①" (id int)')
    imported = import_dump(migrator(pg), data, schemas=platform.schemas, owner="wondernest_migrator")
    assert imported == {'shop."①"': 2, f'shop."{memo}"': 1}


def test_a_name_holding_another_kind_of_line_break_stays_one_entry(
    pg: PostgresServer, platform: Any, tmp_path: Path
) -> None:
    """pg_restore lists an entry a line, a name's newline written as a space;
    a form feed or a NEL (LATIN1's 0x85) in a name ends no line. Read as one,
    a name shaped as an entry would add that entry to the restore."""
    forged = "notes\x0c1; 0 0 TABLE public injected postgres"
    tables = (
        f'CREATE SCHEMA shop AUTHORIZATION shop_owner; SET ROLE shop_owner; CREATE TABLE shop."{forged}" (id int); '
        'CREATE TABLE shop."old\x85notes" (id int); INSERT INTO shop."old\x85notes" VALUES (1); RESET ROLE;'
    )
    dump = dump_of(pg, tmp_path, tables, encoding="LATIN1")
    listed = sorted((e.desc, e.schema, e.name) for e in toc(dump) if e.desc.startswith("TABLE"))
    assert listed == [
        ("TABLE", "shop", forged),
        ("TABLE", "shop", "old\x85notes"),
        ("TABLE DATA", "shop", forged),
        ("TABLE DATA", "shop", "old\x85notes"),
    ]
    imported = import_dump(migrator(pg), dump, schemas=platform.schemas, owner="wondernest_migrator")
    assert imported == {f'shop."{forged}"': 0, 'shop."old\x85notes"': 1}


def test_an_import_into_a_database_without_the_schemas_it_fills_is_refused(pg: PostgresServer, tmp_path: Path) -> None:
    spec = migrated_platform(pg)
    setup = (
        "CREATE SCHEMA core AUTHORIZATION shop_owner; CREATE SCHEMA audit AUTHORIZATION shop_owner; "
        "SET ROLE shop_owner; " + GUIDE_ERA + "RESET ROLE;"
    )
    dump = dump_of(pg, tmp_path, setup, options=("--data-only",))
    with pg.admin("wondernest") as conn:
        conn.execute("DROP SCHEMA audit CASCADE; DROP SCHEMA core CASCADE")
    refusal = (
        "database 'wondernest' has no schema audit, core: the stack creates the schemas it declares "
        "(postgres.schemas); run make up first"
    )
    with pytest.raises(BackupError, match=re.escape(refusal)):
        import_dump(migrator(pg), dump, schemas=spec.schemas, owner="wondernest_migrator")


def test_a_baseline_past_what_the_database_holds_is_refused(pg: PostgresServer) -> None:
    """Only 0001's tables are here: recording 0002-0004 as applied would let the
    API start on a database without the audit trail."""
    spec = database_spec(NAMES)
    apply_spec(pg, spec)
    with connect_as(pg, spec, "migrator") as conn:
        conn.execute(MIGRATIONS.joinpath("0001_core_users_and_sessions.sql").read_text().encode())
    migrator_dsn = as_role(pg, "migrator")
    with pytest.raises(MigrationError, match=r"table audit\.activity_logs.*which this database lacks"):
        baseline(migrator_dsn, "0004")
    with pg.admin("wondernest") as conn:
        ledger = conn.execute("SELECT to_regclass('core.schema_migrations')").fetchone()
        recorded = conn.execute("SELECT count(*) FROM core.schema_migrations").fetchone() if ledger != (None,) else (0,)
    assert recorded == (0,)
    assert baseline(migrator_dsn, "0001") == ["0001"]
    assert migrate(migrator_dsn) == ["0002", "0003", "0004"]
